//! Calibration problems from TOML specs: `kind` selects the problem; each kind runs its gradient
//! method and derivative-free baselines on one objective and writes a report directory.

pub mod gradcheck;

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

/// What to do with the report directory of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// A new run: the directory must not exist yet (or be empty).
    New,
    /// Continue an interrupted run in the directory from its `checkpoints/` journals (see
    /// [`crate::fit::journal`]): same final parameters and evaluation counts as an uninterrupted
    /// run.
    Resume,
    /// Start over, replacing whatever the directory holds.
    Force,
}

/// Name of the journal folder inside a report directory.
pub const CHECKPOINTS: &str = "checkpoints";

fn non_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some())
}

/// Reads the `kind` of a problem spec and runs it; writes the report into `out` (default
/// `reports/<name>`), overwriting it, without journals. Returns the run summary and the report
/// directory. (The CLI uses [`run_problem_mode`].)
pub fn run_problem(spec: &Path, out: Option<&Path>) -> Result<(RunSummary, PathBuf)> {
    let text = crate::fit::spec::read_text(spec)?;
    let header: Header =
        crate::fit::spec::parse_toml(&text, &format!("problem spec {}", spec.display()))?;
    let out = report_dir(spec, &header, out);
    dispatch(spec, &header, &out).map(|s| (s, out))
}

/// [`run_problem`] with a journal of every evaluation in `<out>/checkpoints/` and the report
/// directory handled by `mode`: an existing non-empty directory is refused for a new run;
/// `Resume` needs the journals of an earlier run of the same spec (a journal of another spec or
/// method list is refused with the reason); `Force` removes the directory first.
pub fn run_problem_mode(
    spec: &Path,
    out: Option<&Path>,
    mode: OutputMode,
) -> Result<(RunSummary, PathBuf)> {
    let text = crate::fit::spec::read_text(spec)?;
    let header: Header =
        crate::fit::spec::parse_toml(&text, &format!("problem spec {}", spec.display()))?;
    let out = report_dir(spec, &header, out);
    let ck = out.join(CHECKPOINTS);
    match mode {
        OutputMode::New if non_empty_dir(&out) => {
            return Err(Error::invalid(
                "--out",
                out.display(),
                "a report directory that does not exist yet (it holds an earlier run: pass \
                 --resume to continue it or --force to replace it)",
            ));
        }
        OutputMode::Resume if !ck.is_dir() => {
            return Err(Error::invalid(
                "--resume",
                out.display(),
                format!(
                    "a report directory with {CHECKPOINTS}/ from an earlier run of this spec \
                     (none there: run without --resume)"
                ),
            ));
        }
        OutputMode::Force if out.exists() => {
            std::fs::remove_dir_all(&out).map_err(|e| Error::Io {
                path: out.display().to_string(),
                source: e,
            })?;
        }
        _ => {}
    }
    let jmode = if mode == OutputMode::Resume {
        crate::fit::journal::Mode::Resume
    } else {
        crate::fit::journal::Mode::Fresh
    };
    crate::fit::journal::begin(&ck, &crate::fit::journal::fingerprint(&text), jmode);
    let r = dispatch(spec, &header, &out);
    crate::fit::journal::end();
    r.map(|s| (s, out))
}

fn dispatch(spec: &Path, header: &Header, out: &Path) -> Result<RunSummary> {
    let out = out.to_path_buf();
    match header.kind.as_str() {
        "noise" => crate::fit::noise::run_noise_calibration(spec, &out),
        "watanabe" => crate::fit::watanabe::run_watanabe_calibration(spec, &out),
        "recording" => crate::fit::recording::run_recording_calibration(spec, &out),
        "joint" => crate::fit::joint::run_joint_calibration(spec, &out),
        "reflex" => crate::fit::reflex::run_reflex_calibration(spec, &out),
        other => Err(Error::invalid(
            "kind",
            other,
            "one of: noise, watanabe, recording, joint, reflex",
        )),
    }
}
