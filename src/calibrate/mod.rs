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

/// The report directory of a problem spec: `out`, or `reports/<name>` (name from the spec, else
/// the file stem).
pub fn report_dir(spec: &Path, out: Option<&Path>) -> Result<PathBuf> {
    if let Some(o) = out {
        return Ok(o.to_path_buf());
    }
    let header = read_header(spec)?;
    let name = header.name.clone().unwrap_or_else(|| {
        spec.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "problem".into())
    });
    Ok(PathBuf::from("reports").join(name))
}

fn read_header(spec: &Path) -> Result<Header> {
    let text = crate::fit::spec::read_text(spec)?;
    crate::fit::spec::parse_toml(&text, &format!("problem spec {}", spec.display()))
}

/// Reads the `kind` of a problem spec and runs it; writes the report into
/// [`report_dir`]`(spec, out)`. Returns the run summary.
pub fn run_problem(spec: &Path, out: Option<&Path>) -> Result<RunSummary> {
    let header = read_header(spec)?;
    let out = report_dir(spec, out)?;
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
