//! Reading calibration problem specs (TOML): one place for the file read and the parse errors.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Parses TOML into `T`; syntax errors and unknown fields are [`Error::Format`] naming `what`.
pub fn parse_toml<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::format(what, e.to_string()))
}

/// Reads a spec file as text ([`Error::Io`] naming the path).
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

/// The recording a spec names: its `data.path` (relative paths are relative to the spec file), or
/// the default data path (`calibration/data/otb_testfile.mat` or `$MYODIFF_DATA_DIR`).
pub fn resolve_data_path(configured: Option<&Path>, spec_path: &Path) -> PathBuf {
    match configured {
        None => crate::io::recording::default_data_path(),
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => spec_path
            .parent()
            .map(|d| d.join(p))
            .unwrap_or_else(|| p.to_path_buf()),
    }
}

/// Checks a problem's box and named points in it: every `lower.<name>` finite, `upper.<name>` >
/// `lower.<name>`, and every `(what, point)` inside `[lower, upper]` (errors name
/// `<what>.<name>`).
pub fn check_points_in_bounds(
    names: &[&str],
    lower: &[f64],
    upper: &[f64],
    points: &[(&str, Vec<f64>)],
) -> Result<()> {
    for (i, name) in names.iter().enumerate() {
        crate::error::check::finite(&format!("lower.{name}"), lower[i])?;
        if upper[i].is_nan() || upper[i] <= lower[i] {
            return Err(Error::invalid(
                format!("upper.{name}"),
                upper[i],
                format!("> lower.{name} = {}", lower[i]),
            ));
        }
        for (what, p) in points {
            let v = p[i];
            if !(v >= lower[i] && v <= upper[i]) {
                return Err(Error::invalid(
                    format!("{what}.{name}"),
                    v,
                    format!("[{}, {}]", lower[i], upper[i]),
                ));
            }
        }
    }
    Ok(())
}

/// Which network the loss and gradient are computed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitModel {
    /// The smooth (rate-mode) network, exact autodiff gradient (a surrogate of the spiking one).
    #[default]
    Smooth,
    /// The spiking network (event-time fast pool, `crate::event`), gradient by central
    /// differences with common random numbers (the estimator chosen by measurement,
    /// BENCHMARKS.md §7).
    Spiking,
}
