//! The one error type of myodiff. Every variant names the field (or buffer, file, stage) and the
//! offending value, so a user can fix the input without reading the source.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a user can get wrong, and everything that can go wrong at run time.
#[derive(Debug, Error)]
pub enum Error {
    /// A scalar parameter is NaN, infinite or outside its allowed range.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    InvalidParameter {
        field: String,
        value: String,
        allowed: String,
    },
    /// Two tensors/arrays that must agree in shape do not.
    #[error("shape mismatch for `{field}`: expected {expected}, got {got}")]
    ShapeMismatch {
        field: String,
        expected: String,
        got: String,
    },
    /// The time step is not usable for this model (too large for stability, or not positive).
    #[error("unstable or invalid time step dt_s = {dt_s} for {model}: {reason}")]
    UnstableTimeStep {
        dt_s: f64,
        model: String,
        reason: String,
    },
    /// A simulation produced a non-finite value.
    #[error("non-finite value in buffer `{buffer}` at step {step}, batch {batch}, unit {unit}")]
    NonFinite {
        buffer: String,
        step: usize,
        batch: usize,
        unit: usize,
    },
    /// A stage asked for a buffer nobody writes.
    #[error("stage `{stage}` reads buffer `{buffer}`, which no stage writes")]
    MissingBuffer { stage: String, buffer: String },
    /// A stage touched a buffer it did not declare.
    #[error("stage `{stage}` {access} buffer `{buffer}` without declaring it")]
    UndeclaredAccess {
        stage: String,
        buffer: String,
        access: String,
    },
    /// Two stages (or one stage twice) declare the same output buffer.
    #[error("buffer `{buffer}` is written by both `{first}` and `{second}`")]
    DuplicateBuffer {
        buffer: String,
        first: String,
        second: String,
    },
    /// The stage graph has a cycle of undelayed reads.
    #[error("undeclared cycle between stages: {}; declare one of the reads as delayed (one tick)", stages.join(" -> "))]
    Cycle { stages: Vec<String> },
    /// Something about how a simulation or stage is configured is inconsistent.
    #[error("configuration error in `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// A file could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file is malformed (truncated, corrupt, wrong type).
    #[error("malformed {what}: {detail}")]
    Format { what: String, detail: String },
    /// A data file the user must obtain first is absent.
    #[error("data file {path} not found: {hint}")]
    DataMissing { path: String, hint: String },
    /// An optimiser failed.
    #[error("optimiser `{method}` failed: {reason}")]
    Optimizer { method: String, reason: String },
}

impl Error {
    /// Shorthand for [`Error::InvalidParameter`]. An empty value is shown as `""`, so the
    /// message still shows what was given (e.g. `kind = ""`).
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        let value = value.to_string();
        Error::InvalidParameter {
            field: field.into(),
            value: if value.is_empty() {
                "\"\"".into()
            } else {
                value
            },
            allowed: allowed.into(),
        }
    }
    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn shape(field: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Error::ShapeMismatch {
            field: field.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
    /// Shorthand for [`Error::Config`].
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// Shorthand for [`Error::Format`].
    pub fn format(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Format {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// Validation helpers: every check returns a typed error naming the field.
pub mod check {
    use super::{Error, Result};

    /// `value` must be finite.
    pub fn finite(field: &str, value: f64) -> Result<f64> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Error::invalid(field, value, "a finite number"))
        }
    }
    /// `value` must be finite and > 0.
    pub fn positive(field: &str, value: f64) -> Result<f64> {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(Error::invalid(field, value, "finite and > 0"))
        }
    }
    /// `value` must be finite and >= 0.
    pub fn non_negative(field: &str, value: f64) -> Result<f64> {
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(Error::invalid(field, value, "finite and >= 0"))
        }
    }
    /// `value` must lie in the closed interval [lo, hi].
    pub fn in_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
        if value.is_finite() && value >= lo && value <= hi {
            Ok(value)
        } else {
            Err(Error::invalid(field, value, format!("[{lo}, {hi}]")))
        }
    }
    /// A count must be >= `min`.
    pub fn count_at_least(field: &str, value: usize, min: usize) -> Result<usize> {
        if value >= min {
            Ok(value)
        } else {
            Err(Error::invalid(field, value, format!(">= {min}")))
        }
    }
    /// Every element must be finite; names the first offending index.
    pub fn all_finite(field: &str, values: &[f64]) -> Result<()> {
        match values.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(Error::invalid(
                format!("{field}[{i}]"),
                values[i],
                "a finite number",
            )),
        }
    }
}
