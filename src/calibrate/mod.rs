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

/// The report directory of a problem: `out`, or `reports/<name>` (name from the spec header,
/// else the file stem).
fn report_dir(spec: &Path, header: &Header, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf).unwrap_or_else(|| {
        let name = header.name.clone().unwrap_or_else(|| {
            spec.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "problem".into())
        });
        PathBuf::from("reports").join(name)
    })
}

/// Reads the `kind` of a problem spec and runs it; writes the report into `out` (default
/// `reports/<name>`). Returns the run summary and the report directory.
pub fn run_problem(spec: &Path, out: Option<&Path>) -> Result<(RunSummary, PathBuf)> {
    let text = crate::fit::spec::read_text(spec)?;
    let header: Header =
        crate::fit::spec::parse_toml(&text, &format!("problem spec {}", spec.display()))?;
    let out = report_dir(spec, &header, out);
    let summary = match header.kind.as_str() {
        "noise" => crate::fit::noise::run_noise_calibration(spec, &out),
        "watanabe" => crate::fit::watanabe::run_watanabe_calibration(spec, &out),
        "recording" => crate::fit::recording::run_recording_calibration(spec, &out),
        "joint" => crate::fit::joint::run_joint_calibration(spec, &out),
        other => Err(Error::invalid(
            "kind",
            other,
            "one of: noise, watanabe, recording, joint",
        )),
    }?;
    Ok((summary, out))
}
