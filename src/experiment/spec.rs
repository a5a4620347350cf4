//! The experiment spec of `myodiff simulate`: a TOML file describing one simulated experiment
//! (network, descending drive, parameter sets, what to record, EMG grid and MUAPs).
//!
//! Every table rejects unknown keys (`deny_unknown_fields`) and every value is checked with a
//! typed [`Error`] naming its key. Units are SI and in the key names (`_s`, `_hz`, `_m`, `_n`,
//! `_v`). A complete, commented example is `experiments/watanabe_trial.toml`.
//!
//! ```toml
//! name = "my_run"                # default output directory: runs/<name>
//! description = "…"
//! backend = "flex"               # flex | ndarray | wgpu
//! path = "fused"                 # tape | fused
//! record = ["spikes", "force_n"] # buffers to save (any buffer a stage writes)
//! synaptic_weight_s = 5e-8       # drive → motor-neuron weight (S)
//!
//! [network]                      # crate::network::NetworkConfig: model, n_mn, n_dd, p_connect,
//! model = "fast"                 #   recruitment, dt_s, duration_s, seed, …
//!
//! [drive]                        # kind = "sine": DC + A·sin(2π f t + φ) + σ·ξ (Hz)
//! kind = "sine"                  # kind = "knots": piecewise-linear through (times_s, values_hz)
//! dc_hz = 40.0
//!
//! [[sets]]                       # optional: one batch row per set, overriding drive values
//! dc_hz = 30.0
//!
//! [emg]                          # optional: surface EMG on an electrode grid
//! grid = "gr08mm1305"
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::emg::electrodes::{Differentiation, ElectrodeArray};
use crate::emg::muap::PoolGeometry;
use crate::error::{Error, Result, check};
use crate::kernel::{BackendKind, ExecPath};
use crate::network::{MYOGEN_WEIGHT_S, NetworkConfig};

/// A parsed and validated experiment, with the spec text it came from.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The spec.
    pub spec: ExperimentSpec,
    /// The TOML text (stored verbatim in the NPZ and NWB files).
    pub text: String,
}

impl Experiment {
    /// Reads and validates the spec at `path` ([`Error::Io`] naming the path, [`Error::Format`]
    /// for TOML syntax, unknown keys and wrong types, typed value errors naming the key).
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = crate::fit::spec::read_text(path)?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates spec text; `what` names the source in errors (e.g. the file path).
    pub fn from_toml(text: &str, what: &str) -> Result<Self> {
        let spec: ExperimentSpec =
            crate::fit::spec::parse_toml(text, &format!("experiment spec {what}"))?;
        spec.validate()?;
        Ok(Self {
            spec,
            text: text.to_string(),
        })
    }
}

/// The top level of an experiment spec (module docs).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Name of the experiment (default output directory `runs/<name>`; letters, digits, `_`, `-`).
    pub name: String,
    /// Free-text description (NWB `session_description`).
    #[serde(default)]
    pub description: String,
    /// Backend (default flex).
    #[serde(default = "default_backend")]
    pub backend: BackendKind,
    /// Execution path (default fused).
    #[serde(default = "default_path")]
    pub path: ExecPath,
    /// Buffers to record and save (default: spikes, force_n, and surface_emg_v when `[emg]` is
    /// given). Each must be written by some stage of the experiment.
    #[serde(default)]
    pub record: Option<Vec<String>>,
    /// Age of the modelled subject as an ISO 8601 duration (NWB `subject/age`; the models are of
    /// adult human muscle). Default `P30Y`.
    #[serde(default = "default_age")]
    pub subject_age: String,
    /// Synaptic weight drive inputs → motor neurons (S). Default MyoGen's 0.05 µS.
    #[serde(default = "default_weight")]
    pub synaptic_weight_s: f64,
    /// The network (sizes, models, dt, duration, seed).
    #[serde(default)]
    pub network: NetworkConfig,
    /// The descending drive.
    pub drive: DriveSpec,
    /// Parameter sets (batch rows); empty = one set with the `[drive]` values.
    #[serde(default)]
    pub sets: Vec<SetSpec>,
    /// Surface EMG (optional).
    #[serde(default)]
    pub emg: Option<EmgSpec>,
}

fn default_backend() -> BackendKind {
    BackendKind::Flex
}
fn default_path() -> ExecPath {
    ExecPath::Fused
}
fn default_age() -> String {
    "P30Y".into()
}
fn default_weight() -> f64 {
    MYOGEN_WEIGHT_S
}

/// The descending drive rate (Hz).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DriveSpec {
    /// `r(t) = clip(DC + A·sin(2π f t + φ) + σ·ξ, 0, ∞)` (Hz; see `drive::rate`).
    Sine {
        /// DC (Hz).
        dc_hz: f64,
        /// Oscillation amplitude A (Hz). Default 0.
        #[serde(default)]
        amp_hz: f64,
        /// Oscillation frequency f (Hz). Default 0.
        #[serde(default)]
        freq_hz: f64,
        /// Phase φ (rad). Default 0.
        #[serde(default)]
        phase_rad: f64,
        /// Noise standard deviation σ (Hz). Default 1.
        #[serde(default = "one")]
        noise_sd_hz: f64,
    },
    /// Piecewise-linear through knots `(times_s[j], values_hz[j])`, held flat outside, plus σ·ξ.
    Knots {
        /// Knot times (s), strictly increasing, ≥ 0.
        times_s: Vec<f64>,
        /// Knot values (Hz), one per knot.
        values_hz: Vec<f64>,
        /// Noise standard deviation σ (Hz). Default 1.
        #[serde(default = "one")]
        noise_sd_hz: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// One parameter set (batch row): overrides of the drive values and the synaptic weight.
/// Keys that do not apply to the drive kind are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    /// DC (Hz), sine drive.
    pub dc_hz: Option<f64>,
    /// Oscillation amplitude (Hz), sine drive.
    pub amp_hz: Option<f64>,
    /// Oscillation frequency (Hz), sine drive.
    pub freq_hz: Option<f64>,
    /// Phase (rad), sine drive.
    pub phase_rad: Option<f64>,
    /// Knot values (Hz), knots drive.
    pub values_hz: Option<Vec<f64>>,
    /// Noise standard deviation (Hz), either drive.
    pub noise_sd_hz: Option<f64>,
    /// Synaptic weight (S).
    pub synaptic_weight_s: Option<f64>,
}

/// The electrode grid of `[emg]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridKind {
    /// OT Bioelettronica GR08MM1305: 13 × 5, 8 mm, 1.5 mm radius.
    #[default]
    Gr08mm1305,
    /// `rows × cols`, `ied_m`, `radius_m` from the table.
    Custom,
}

impl GridKind {
    /// The spec's name of the grid.
    pub fn name(self) -> &'static str {
        match self {
            GridKind::Gr08mm1305 => "gr08mm1305",
            GridKind::Custom => "custom",
        }
    }
}

/// Surface EMG: grid, differentiation and MUAP geometry (SI).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmgSpec {
    /// Grid (default gr08mm1305).
    #[serde(default)]
    pub grid: GridKind,
    /// Rows along the fibres (custom grid).
    pub rows: Option<usize>,
    /// Columns across the fibres (custom grid).
    pub cols: Option<usize>,
    /// Inter-electrode distance (m; custom grid).
    pub ied_m: Option<f64>,
    /// Electrode radius (m; custom grid, default 0.5 mm).
    pub radius_m: Option<f64>,
    /// Spatial differentiation (default monopolar).
    #[serde(default)]
    pub differentiation: Differentiation,
    /// Seed of the MUAP territory draws (default 1).
    #[serde(default = "default_muap_seed")]
    pub seed: u64,
    /// Layout of the units in the muscle.
    #[serde(default)]
    pub muap: MuapSpec,
}

fn default_muap_seed() -> u64 {
    1
}

/// Overrides of [`PoolGeometry`] (defaults: its defaults; the size ratio is the pool's twitch
/// range RP).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MuapSpec {
    /// Total fibres of the pool.
    pub total_fibres: f64,
    /// Shallowest territory centre (m).
    pub depth_min_m: f64,
    /// Deepest territory centre (m).
    pub depth_max_m: f64,
    /// Half width of the muscle across the fibres (m).
    pub x_half_width_m: f64,
    /// Slowest conduction velocity (m/s).
    pub cv_min_m_s: f64,
    /// Fastest conduction velocity (m/s).
    pub cv_max_m_s: f64,
    /// Innervation-zone centre along the fibres (m).
    pub iz_z_m: f64,
    /// Half spread of the NMJ positions (m).
    pub iz_spread_m: f64,
    /// Fibre semi-length towards −z (m).
    pub fibre_left_m: f64,
    /// Fibre semi-length towards +z (m).
    pub fibre_right_m: f64,
}

impl Default for MuapSpec {
    fn default() -> Self {
        let g = PoolGeometry::default();
        Self {
            total_fibres: g.total_fibres,
            depth_min_m: g.depth_min_m,
            depth_max_m: g.depth_max_m,
            x_half_width_m: g.x_half_width_m,
            cv_min_m_s: g.cv_min_m_s,
            cv_max_m_s: g.cv_max_m_s,
            iz_z_m: g.iz_z_m,
            iz_spread_m: g.iz_spread_m,
            fibre_left_m: g.fibre_left_m,
            fibre_right_m: g.fibre_right_m,
        }
    }
}

impl MuapSpec {
    /// The pool geometry with size ratio `size_ratio` (the twitch range RP).
    pub fn geometry(&self, size_ratio: f64) -> PoolGeometry {
        PoolGeometry {
            total_fibres: self.total_fibres,
            size_ratio,
            depth_min_m: self.depth_min_m,
            depth_max_m: self.depth_max_m,
            x_half_width_m: self.x_half_width_m,
            cv_min_m_s: self.cv_min_m_s,
            cv_max_m_s: self.cv_max_m_s,
            iz_z_m: self.iz_z_m,
            iz_spread_m: self.iz_spread_m,
            fibre_left_m: self.fibre_left_m,
            fibre_right_m: self.fibre_right_m,
        }
    }
}

impl EmgSpec {
    /// The electrode array (errors name `emg.<key>`).
    pub fn array(&self) -> Result<ElectrodeArray> {
        match self.grid {
            GridKind::Gr08mm1305 => {
                for (key, set) in [
                    ("rows", self.rows.is_some()),
                    ("cols", self.cols.is_some()),
                    ("ied_m", self.ied_m.is_some()),
                    ("radius_m", self.radius_m.is_some()),
                ] {
                    if set {
                        return Err(Error::config(
                            format!("emg.{key}"),
                            "only for grid = \"custom\" (gr08mm1305 has a fixed geometry)",
                        ));
                    }
                }
                ElectrodeArray::gr08mm1305(self.differentiation)
            }
            GridKind::Custom => {
                let need = |key: &str| {
                    Error::config(format!("emg.{key}"), "required for grid = \"custom\"")
                };
                ElectrodeArray::new(
                    self.rows.ok_or_else(|| need("rows"))?,
                    self.cols.ok_or_else(|| need("cols"))?,
                    self.ied_m.ok_or_else(|| need("ied_m"))?,
                    self.radius_m.unwrap_or(0.5e-3),
                    0.0,
                    0.0,
                    self.differentiation,
                )
            }
        }
    }
}

impl ExperimentSpec {
    /// Number of parameter sets (batch rows), ≥ 1.
    pub fn n_sets(&self) -> usize {
        self.sets.len().max(1)
    }

    /// The buffers to record (explicit `record`, or the defaults of the field docs).
    pub fn recorded(&self) -> Vec<String> {
        match &self.record {
            Some(r) => r.clone(),
            None => {
                let mut r = vec!["spikes".to_string(), "force_n".to_string()];
                if self.emg.is_some() {
                    r.push("surface_emg_v".into());
                }
                r
            }
        }
    }

    /// Checks every value (typed errors naming the key, e.g. `sets[1].values_hz`).
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid(
                "name",
                format!("{:?}", self.name),
                "a non-empty name of letters, digits, `_` and `-`",
            ));
        }
        if !self.subject_age.starts_with('P') || self.subject_age.len() < 3 {
            return Err(Error::invalid(
                "subject_age",
                format!("{:?}", self.subject_age),
                "an ISO 8601 duration such as \"P30Y\"",
            ));
        }
        self.network.validate().map_err(|e| prefix("network", e))?;
        check::positive("synaptic_weight_s", self.synaptic_weight_s)?;
        match &self.drive {
            DriveSpec::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad,
                noise_sd_hz,
            } => {
                check::finite("drive.dc_hz", *dc_hz)?;
                check::finite("drive.amp_hz", *amp_hz)?;
                check::non_negative("drive.freq_hz", *freq_hz)?;
                check::finite("drive.phase_rad", *phase_rad)?;
                check::non_negative("drive.noise_sd_hz", *noise_sd_hz)?;
            }
            DriveSpec::Knots {
                times_s,
                values_hz,
                noise_sd_hz,
            } => {
                crate::drive::KnotTimes::new(times_s.clone()).map_err(|e| prefix("drive", e))?;
                knot_values("drive.values_hz", values_hz, times_s.len())?;
                check::non_negative("drive.noise_sd_hz", *noise_sd_hz)?;
            }
        }
        for (i, s) in self.sets.iter().enumerate() {
            self.validate_set(i, s)?;
        }
        let recorded = self.recorded();
        if recorded.is_empty() {
            return Err(Error::invalid("record", "[]", "at least one buffer"));
        }
        // Whether a stage writes each buffer is checked against the built network
        // (`experiment::run`); the EMG readout is the one case the spec alone decides.
        for (i, r) in recorded.iter().enumerate() {
            if r == "surface_emg_v" && self.emg.is_none() {
                return Err(Error::config(
                    format!("record[{i}]"),
                    "`surface_emg_v` is written by the EMG readout only; add an [emg] table",
                ));
            }
        }
        if let Some(emg) = &self.emg {
            emg.array()?;
            self.emg_geometry_check(emg)?;
        }
        Ok(())
    }

    fn emg_geometry_check(&self, emg: &EmgSpec) -> Result<()> {
        let m = &emg.muap;
        check::positive("emg.muap.total_fibres", m.total_fibres)?;
        check::non_negative("emg.muap.depth_min_m", m.depth_min_m)?;
        check::in_range(
            "emg.muap.depth_max_m",
            m.depth_max_m,
            m.depth_min_m,
            f64::INFINITY,
        )?;
        check::positive("emg.muap.cv_min_m_s", m.cv_min_m_s)?;
        check::in_range("emg.muap.cv_max_m_s", m.cv_max_m_s, m.cv_min_m_s, 1e3)?;
        Ok(())
    }

    fn validate_set(&self, i: usize, s: &SetSpec) -> Result<()> {
        let key = |k: &str| format!("sets[{i}].{k}");
        let sine = matches!(self.drive, DriveSpec::Sine { .. });
        let wrong = |k: &str| {
            Error::config(
                key(k),
                format!(
                    "does not apply to a {} drive",
                    if sine { "sine" } else { "knots" }
                ),
            )
        };
        if sine {
            if s.values_hz.is_some() {
                return Err(wrong("values_hz"));
            }
        } else {
            for (k, v) in [
                ("dc_hz", s.dc_hz),
                ("amp_hz", s.amp_hz),
                ("freq_hz", s.freq_hz),
                ("phase_rad", s.phase_rad),
            ] {
                if v.is_some() {
                    return Err(wrong(k));
                }
            }
        }
        for (k, v) in [
            ("dc_hz", s.dc_hz),
            ("amp_hz", s.amp_hz),
            ("phase_rad", s.phase_rad),
        ] {
            if let Some(v) = v {
                check::finite(&key(k), v)?;
            }
        }
        if let Some(v) = s.freq_hz {
            check::non_negative(&key("freq_hz"), v)?;
        }
        if let Some(v) = s.noise_sd_hz {
            check::non_negative(&key("noise_sd_hz"), v)?;
        }
        if let Some(v) = s.synaptic_weight_s {
            check::positive(&key("synaptic_weight_s"), v)?;
        }
        if let (Some(v), DriveSpec::Knots { times_s, .. }) = (&s.values_hz, &self.drive) {
            knot_values(&key("values_hz"), v, times_s.len())?;
        }
        Ok(())
    }
}

fn knot_values(field: &str, v: &[f64], k: usize) -> Result<()> {
    if v.len() != k {
        return Err(Error::shape(
            field,
            format!("{k} values (one per knot time)"),
            v.len(),
        ));
    }
    check::all_finite(field, v)
}

/// Prefixes the field of a value error with `table.` (so `dt_s` reads `network.dt_s`).
fn prefix(table: &str, e: Error) -> Error {
    match e {
        Error::InvalidParameter {
            field,
            value,
            allowed,
        } if !field.starts_with(&format!("{table}.")) => Error::InvalidParameter {
            field: format!("{table}.{field}"),
            value,
            allowed,
        },
        other => other,
    }
}
