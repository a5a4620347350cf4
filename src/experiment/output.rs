//! The run directory of `myodiff simulate` / `myodiff export`, written atomically: everything goes
//! into a hidden temporary directory (or file) beside the target, which is renamed into place only
//! when complete — an interrupted or failed run leaves no directory that looks finished.
//!
//! Contents: `experiment.toml` (the spec), `result.npz`, `result.nwb`, `summary.json`, and the
//! figures of [`super::plots`] (`raster.png`, `force.png`, `emg_channel.png`, `emg_rms_map.png`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::plots;
use crate::error::{Error, Result};
use crate::io::saved::SavedRun;
use crate::io::{npz, nwb};

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Refuses an existing `path` unless `force` ([`Error::Io`] with kind `AlreadyExists`).
pub fn check_target(path: &Path, force: bool) -> Result<()> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(io_err(
            path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; pass --force to replace it",
            ),
        ));
    }
    Ok(())
}

/// A hidden sibling of `path` named `.{file name}.{tag}-{pid}`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Creates `target` by filling a temporary sibling with `fill` and renaming it into place (an
/// existing `target` is replaced only when `force`, after the new one is complete). On error the
/// temporary is removed and `target` is untouched.
pub fn write_atomically(
    target: &Path,
    force: bool,
    is_dir: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    check_target(target, force)?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let tmp = sibling(target, "tmp");
    let remove = |p: &Path| {
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
    };
    remove(&tmp);
    if is_dir {
        std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    if let Err(e) = fill(&tmp) {
        remove(&tmp);
        return Err(e);
    }
    let old = sibling(target, "old");
    let replaced = std::fs::symlink_metadata(target).is_ok();
    if replaced {
        remove(&old);
        if let Err(e) = std::fs::rename(target, &old) {
            remove(&tmp);
            return Err(io_err(target, e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, target) {
        remove(&tmp);
        if replaced {
            let _ = std::fs::rename(&old, target);
        }
        return Err(io_err(target, e));
    }
    if replaced {
        remove(&old);
    }
    Ok(())
}

/// `summary.json` of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Experiment name.
    pub name: String,
    /// Parameter sets.
    pub n_sets: usize,
    /// Motor units.
    pub n_units: usize,
    /// Steps.
    pub n_steps: usize,
    /// Time step (s).
    pub dt_s: f64,
    /// Wall time of the simulation (s).
    pub wall_s: f64,
    /// Per set.
    pub sets: Vec<SetSummary>,
    /// Files of the run directory.
    pub files: Vec<String>,
}

/// Per-set numbers of [`Summary`].
#[derive(Clone, Debug, Serialize)]
pub struct SetSummary {
    /// Spikes of all units.
    pub spikes: usize,
    /// Mean firing rate over all units and the whole run (Hz).
    pub mean_rate_hz: f64,
    /// Mean force of the first pool (N), if recorded.
    pub mean_force_n: Option<f64>,
    /// RMS of the EMG over all channels (V), if recorded.
    pub emg_rms_v: Option<f64>,
}

/// The summary of `run` (rates in Hz, force in N, EMG RMS in V).
pub fn summarize(run: &SavedRun, wall_s: f64) -> Summary {
    let dur = run.n_steps as f64 * run.dt_s();
    let sets = run
        .sets
        .iter()
        .map(|s| {
            let spikes: usize = s.spike_times_s.iter().map(Vec::len).sum();
            SetSummary {
                spikes,
                mean_rate_hz: spikes as f64 / (s.n_units.max(1) as f64 * dur.max(1e-300)),
                mean_force_n: s
                    .force_n
                    .as_ref()
                    .map(|f| f.column(0).mean().unwrap_or(0.0)),
                emg_rms_v: s
                    .surface_emg_v
                    .as_ref()
                    .map(|e| e.mapv(|v| v * v).mean().unwrap_or(0.0).sqrt()),
            }
        })
        .collect();
    Summary {
        name: run.name.clone(),
        n_sets: run.sets.len(),
        n_units: run.n_units(),
        n_steps: run.n_steps,
        dt_s: run.dt_s(),
        wall_s,
        sets,
        files: Vec::new(),
    }
}

/// Writes the whole run directory `out` atomically (module docs); returns the summary.
pub fn write_run_dir(out: &Path, run: &SavedRun, wall_s: f64, force: bool) -> Result<Summary> {
    let mut summary = summarize(run, wall_s);
    write_atomically(out, force, true, |dir| {
        let spec = dir.join("experiment.toml");
        std::fs::write(&spec, &run.spec_toml).map_err(|e| io_err(&spec, e))?;
        npz::write(&dir.join("result.npz"), run)?;
        nwb::write(&dir.join("result.nwb"), run)?;
        let mut files = vec![
            "experiment.toml".to_string(),
            "result.npz".into(),
            "result.nwb".into(),
        ];
        for p in plots::write_all(dir, run)? {
            files.extend(p.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
        files.push("summary.json".into());
        summary.files = files;
        let js = serde_json::to_string_pretty(&summary)
            .map_err(|e| Error::format("summary.json", e.to_string()))?;
        let p = dir.join("summary.json");
        std::fs::write(&p, js).map_err(|e| io_err(&p, e))
    })?;
    Ok(summary)
}

/// Export formats of `myodiff export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// NWB 2.7 (HDF5).
    Nwb,
    /// NumPy NPZ.
    Npz,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nwb" => Ok(Self::Nwb),
            "npz" => Ok(Self::Npz),
            _ => Err(Error::invalid("format", s, "nwb or npz")),
        }
    }
}

/// Converts the saved result of run directory `run_dir` (its `result.npz`) to `format`, written
/// atomically to `out` (default `run_dir/result.<format>`; an existing file is replaced only with
/// `force`). Returns the path written.
pub fn export(run_dir: &Path, format: Format, out: Option<&Path>, force: bool) -> Result<PathBuf> {
    let src = run_dir.join("result.npz");
    if !src.is_file() {
        return Err(Error::DataMissing {
            path: src.display().to_string(),
            hint: "not a run directory of `myodiff simulate` (it holds result.npz)".into(),
        });
    }
    let run = npz::read(&src)?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
        run_dir.join(match format {
            Format::Nwb => "result.nwb",
            Format::Npz => "result.npz",
        })
    });
    write_atomically(&out, force, false, |tmp| match format {
        Format::Nwb => nwb::write(tmp, &run),
        Format::Npz => npz::write(tmp, &run),
    })?;
    Ok(out)
}
