//! Reading calibration problem specs (TOML): one place for the file read and the parse errors.

use std::path::Path;

use serde::de::DeserializeOwned;

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
