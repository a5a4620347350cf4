//! Calibration problems from TOML specs: `kind` selects the problem; each kind runs its gradient
//! method and derivative-free baselines on one objective and writes a report directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::fit::RunSummary;

#[derive(Deserialize)]
struct Header {
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

/// Reads the `kind` of a problem spec and runs it; writes the report into `out` (default
/// `reports/<name>`). Returns the run summary.
pub fn run_problem(spec: &Path, out: Option<&Path>) -> Result<RunSummary> {
    let text = std::fs::read_to_string(spec).map_err(|e| Error::Io {
        path: spec.display().to_string(),
        source: e,
    })?;
    let header: Header = toml::from_str(&text)
        .map_err(|e| Error::format(format!("problem spec {}", spec.display()), e.to_string()))?;
    let name = header.name.clone().unwrap_or_else(|| {
        spec.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "problem".into())
    });
    let out: PathBuf = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("reports").join(&name));
    match header.kind.as_str() {
        "noise" => crate::fit::noise::run_noise_calibration(spec, &out),
        "watanabe" => crate::fit::watanabe::run_watanabe_calibration(spec, &out),
        "recording" => crate::fit::recording::run_recording_calibration(spec, &out),
        "joint" => crate::fit::joint::run_joint_calibration(spec, &out),
        other => Err(Error::invalid(
            "kind",
            other,
            "one of: noise, watanabe, recording, joint",
        )),
    }
}
