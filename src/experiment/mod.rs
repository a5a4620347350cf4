//! Simulated experiments (`myodiff simulate`): a TOML spec ([`spec`]) run through the assembled
//! network ([`run`](mod@run)) into a run directory of NPZ, NWB, figures and a summary ([`output`],
//! [`plots`]); `myodiff export` converts a saved run ([`output::export`]).

pub mod output;
pub mod plots;
pub mod run;
pub mod spec;

pub use output::{Format, Summary, export, write_run_dir};
pub use run::{RunOutcome, run};
pub use spec::{Experiment, ExperimentSpec};

use std::path::{Path, PathBuf};

use crate::error::Result;

/// `myodiff simulate`: reads the spec at `spec_path`, runs it and writes the run directory `out`
/// (default `runs/<name>`; an existing one is refused unless `force`). Returns the directory and
/// its summary.
pub fn simulate(spec_path: &Path, out: Option<&Path>, force: bool) -> Result<(PathBuf, Summary)> {
    let exp = Experiment::from_path(spec_path)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new("runs").join(&exp.spec.name));
    // Refuse an existing directory before spending the simulation time.
    output::check_target(&out, force)?;
    let outcome = run(&exp)?;
    let summary = write_run_dir(&out, &outcome.saved, outcome.wall_s, force)?;
    Ok((out, summary))
}
