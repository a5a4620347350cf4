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
//! path = "fused"                 # tape | fused | stream (stream: sine drive; the
//!                                #   default of a closed loop, which runs on stream or tape)
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
//!
//! A closed-loop experiment (motor neurons → Hill muscle ⇄ joint → spindle / GTO → afferents →
//! motor neurons, [`crate::closed_loop`]) replaces `[network]` by `[closed_loop]` (every key of
//! [`ClosedLoopConfig`]: sizes, dt, duration, muscle, joint, stretches, pathways) and may set the
//! loop's parameters in `[loop_params]`; its drive is a sine drive, it runs on the stream path
//! (tick-major on the host, [`crate::kernel::host`]; `path = "tape"` runs the tensor reference —
//! the stage-major fused path needs a feed-forward graph), has no EMG readout, and records by default
//! `spikes`, `muscle_force_n` (saved as the run's force), `joint_angle_rad`, `fibre_length_l0`,
//! `ia_hz`, `ii_hz` and `ib_hz`. Example: `experiments/stretch_reflex.toml`.

use std::path::Path;

use serde::Deserialize;

use crate::closed_loop::ClosedLoopConfig;
use crate::drive::KnotTimes;
use crate::emg::electrodes::{Differentiation, ElectrodeArray};
use crate::emg::muap::PoolGeometry;
use crate::error::{Error, Result, check};
use crate::event::EventDrive;
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
        let mut spec: ExperimentSpec =
            crate::fit::spec::parse_toml(text, &format!("experiment spec {what}"))?;
        spec.network_given = text
            .parse::<toml::Table>()
            .is_ok_and(|t| t.contains_key("network"));
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
    /// Execution path (default fused; stream for a closed loop, which runs on stream or tape).
    #[serde(default)]
    pub path: Option<ExecPath>,
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
    /// The closed loop (optional; replaces `[network]`, see the module docs).
    #[serde(default)]
    pub closed_loop: Option<ClosedLoopConfig>,
    /// Parameters of the closed loop (only with `[closed_loop]`).
    #[serde(default)]
    pub loop_params: Option<LoopParamsSpec>,
    /// Whether the TOML has a `[network]` table (set by [`Experiment::from_toml`]; a closed loop
    /// takes its sizes from `[closed_loop]`, so the two together are refused).
    #[serde(skip)]
    pub network_given: bool,
}

/// The closed loop's parameters (MyoGen's example 11 by default).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopParamsSpec {
    /// Ia → motor-neuron synaptic weight (S).
    pub w_ia_s: f64,
    /// Dynamic fusimotor drive (Hz).
    pub gamma_dyn_hz: f64,
    /// Static fusimotor drive (Hz).
    pub gamma_stat_hz: f64,
    /// Golgi tendon organ gain G1 (Hz).
    pub gto_g1_hz: f64,
}

impl Default for LoopParamsSpec {
    fn default() -> Self {
        Self {
            w_ia_s: MYOGEN_WEIGHT_S,
            gamma_dyn_hz: 50.0,
            gamma_stat_hz: 50.0,
            gto_g1_hz: crate::afferent::GtoParams::default().g1_hz,
        }
    }
}

impl LoopParamsSpec {
    fn validate(&self) -> Result<()> {
        check::positive("loop_params.w_ia_s", self.w_ia_s)?;
        check::non_negative("loop_params.gamma_dyn_hz", self.gamma_dyn_hz)?;
        check::non_negative("loop_params.gamma_stat_hz", self.gamma_stat_hz)?;
        check::non_negative("loop_params.gto_g1_hz", self.gto_g1_hz)?;
        Ok(())
    }
}

fn default_backend() -> BackendKind {
    BackendKind::Flex
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
    /// Layout of the units in the muscle: any field of [`PoolGeometry`] but `size_ratio`
    /// (which is the pool's twitch range RP); the others default to `PoolGeometry::default()`.
    #[serde(default)]
    pub muap: toml::Table,
}

fn default_muap_seed() -> u64 {
    1
}

impl EmgSpec {
    /// The unit layout: `PoolGeometry::default()` overlaid with `[emg.muap]`, size ratio
    /// `size_ratio` (the twitch range RP). Errors name `emg.muap.<key>` (unknown key, wrong
    /// type, invalid value).
    pub fn pool_geometry(&self, size_ratio: f64) -> Result<PoolGeometry> {
        let fmt = |e: &dyn std::fmt::Display| Error::format("emg.muap", e.to_string());
        let toml::Value::Table(mut base) =
            toml::Value::try_from(PoolGeometry::default()).map_err(|e| fmt(&e))?
        else {
            return Err(fmt(&"PoolGeometry is not a table"));
        };
        for (k, v) in &self.muap {
            if k == "size_ratio" || !base.contains_key(k) {
                return Err(Error::config(
                    format!("emg.muap.{k}"),
                    "unknown key (size_ratio is the pool's twitch range; see emg::muap::PoolGeometry)",
                ));
            }
            base.insert(k.clone(), v.clone());
        }
        base.insert("size_ratio".into(), toml::Value::Float(size_ratio));
        let g: PoolGeometry = toml::Value::Table(base)
            .try_into()
            .map_err(|e: toml::de::Error| fmt(&e))?;
        // `units` validates every field.
        g.units(1, 0).map_err(|e| prefix("emg.muap", e))?;
        Ok(g)
    }

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

    /// The drive → motor-neuron weight of every parameter set (S): the set's own, else
    /// `synaptic_weight_s` (one entry when there are no sets).
    pub fn set_weights_s(&self) -> Vec<f64> {
        if self.sets.is_empty() {
            return vec![self.synaptic_weight_s];
        }
        self.sets
            .iter()
            .map(|s| s.synaptic_weight_s.unwrap_or(self.synaptic_weight_s))
            .collect()
    }

    /// The execution path: the one given, else fused (stream for a closed loop).
    pub fn exec_path(&self) -> ExecPath {
        self.path.unwrap_or(if self.closed_loop.is_some() {
            ExecPath::Stream
        } else {
            ExecPath::Fused
        })
    }

    /// The buffers to record (explicit `record`, or the defaults of the field docs).
    pub fn recorded(&self) -> Vec<String> {
        match &self.record {
            Some(r) => r.clone(),
            None if self.closed_loop.is_some() => std::iter::once("spikes")
                .chain(crate::closed_loop::RECORDED)
                .map(String::from)
                .collect(),
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
        self.validate_loop()?;
        self.network.validate().map_err(|e| prefix("network", e))?;
        check::positive("synaptic_weight_s", self.synaptic_weight_s)?;
        // The drive of every set (the base drive when there are no sets) is validated as the
        // event-time network's drive description, the one place these checks live.
        self.drive.validate().map_err(|e| prefix("drive", e))?;
        self.set_drives()?;

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
            emg.pool_geometry(self.network.recruitment_range)?;
        }
        Ok(())
    }

    /// The closed-loop tables: `[closed_loop]` valid, with a sine drive, without `[network]`,
    /// `[emg]` or the fused path; `[loop_params]` only with it.
    fn validate_loop(&self) -> Result<()> {
        let Some(cl) = &self.closed_loop else {
            if self.loop_params.is_some() {
                return Err(Error::config(
                    "loop_params",
                    "applies to a closed loop only; add a [closed_loop] table",
                ));
            }
            return Ok(());
        };
        cl.validate().map_err(|e| prefix("closed_loop", e))?;
        if let Some(p) = &self.loop_params {
            p.validate()?;
        }
        if self.network_given {
            return Err(Error::config(
                "network",
                "a closed loop takes its sizes, dt, duration and seed from [closed_loop]; \
                 remove the [network] table",
            ));
        }
        if self.emg.is_some() {
            return Err(Error::config(
                "emg",
                "the closed loop has no EMG readout yet (its Hill muscle has no MUAP geometry)",
            ));
        }
        if self.drive.sine_params().is_none() {
            return Err(Error::config(
                "drive.kind",
                "a closed loop takes a sine drive (kind = \"sine\")",
            ));
        }
        if self.path == Some(ExecPath::Fused) {
            return Err(Error::config(
                "path",
                "a closed loop runs on the stream (default) or tape path: the stage-major fused \
                 path needs a feed-forward graph; set path = \"stream\" or leave it out",
            ));
        }
        Ok(())
    }

    /// The drive of every parameter set: `[drive]` with the set's overrides applied (just
    /// `[drive]` when there are no sets). Errors name `sets[i].<key>`: a key that does not apply
    /// to the drive kind, or an invalid value.
    pub fn set_drives(&self) -> Result<Vec<DriveSpec>> {
        if self.sets.is_empty() {
            return Ok(vec![self.drive.clone()]);
        }
        let mut out = Vec::with_capacity(self.sets.len());
        for (i, s) in self.sets.iter().enumerate() {
            let table = format!("sets[{i}]");
            let d = self.drive.with_overrides(s).map_err(|k| {
                Error::config(
                    format!("{table}.{k}"),
                    format!("does not apply to a {} drive", self.drive.kind()),
                )
            })?;
            d.validate().map_err(|e| prefix(&table, e))?;
            if let Some(w) = s.synaptic_weight_s {
                check::positive(&format!("{table}.synaptic_weight_s"), w)?;
            }
            out.push(d);
        }
        Ok(out)
    }
}

impl DriveSpec {
    /// `sine` or `knots`.
    pub fn kind(&self) -> &'static str {
        match self {
            DriveSpec::Sine { .. } => "sine",
            DriveSpec::Knots { .. } => "knots",
        }
    }

    /// `[DC, A, f, φ, σ]` (Hz, Hz, Hz, rad, Hz) of a sine drive; `None` for knots.
    pub fn sine_params(&self) -> Option<[f64; 5]> {
        match self {
            DriveSpec::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad,
                noise_sd_hz,
            } => Some([*dc_hz, *amp_hz, *freq_hz, *phase_rad, *noise_sd_hz]),
            DriveSpec::Knots { .. } => None,
        }
    }

    /// This drive with the set's overrides; `Err(key)` names an override of the other kind.
    fn with_overrides(&self, s: &SetSpec) -> std::result::Result<DriveSpec, &'static str> {
        let mut d = self.clone();
        match &mut d {
            DriveSpec::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad,
                noise_sd_hz,
            } => {
                if s.values_hz.is_some() {
                    return Err("values_hz");
                }
                for (dst, src) in [
                    (dc_hz, s.dc_hz),
                    (amp_hz, s.amp_hz),
                    (freq_hz, s.freq_hz),
                    (phase_rad, s.phase_rad),
                    (noise_sd_hz, s.noise_sd_hz),
                ] {
                    *dst = src.unwrap_or(*dst);
                }
            }
            DriveSpec::Knots {
                values_hz,
                noise_sd_hz,
                ..
            } => {
                let sine_keys = [
                    ("dc_hz", s.dc_hz),
                    ("amp_hz", s.amp_hz),
                    ("freq_hz", s.freq_hz),
                    ("phase_rad", s.phase_rad),
                ];
                if let Some((k, _)) = sine_keys.iter().find(|(_, v)| v.is_some()) {
                    return Err(k);
                }
                if let Some(v) = &s.values_hz {
                    *values_hz = v.clone();
                }
                *noise_sd_hz = s.noise_sd_hz.unwrap_or(*noise_sd_hz);
            }
        }
        Ok(d)
    }

    /// The same drive as the event-time network describes it (validates the knot times).
    pub fn to_event_drive(&self) -> Result<EventDrive> {
        Ok(match self {
            DriveSpec::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad,
                noise_sd_hz,
            } => EventDrive::Sine {
                dc_hz: *dc_hz,
                amp_hz: *amp_hz,
                freq_hz: *freq_hz,
                phase_rad: *phase_rad,
                noise_sd_hz: *noise_sd_hz,
            },
            DriveSpec::Knots {
                times_s,
                values_hz,
                noise_sd_hz,
            } => EventDrive::Knots {
                knots: KnotTimes::new(times_s.clone())?,
                values_hz: values_hz.clone(),
                noise_sd_hz: *noise_sd_hz,
            },
        })
    }

    /// Checks every value (finite; f, σ ≥ 0; knot times increasing; one value per knot) —
    /// [`EventDrive::validate`]; field names without the table prefix.
    pub fn validate(&self) -> Result<()> {
        self.to_event_drive()?.validate()
    }
}

/// Prefixes the field of a value, shape or configuration error with `table.` (so `dt_s` reads
/// `network.dt_s`).
fn prefix(table: &str, e: Error) -> Error {
    let p = |field: String| {
        if field.starts_with(&format!("{table}.")) {
            field
        } else {
            format!("{table}.{field}")
        }
    };
    match e {
        Error::InvalidParameter {
            field,
            value,
            allowed,
        } => Error::InvalidParameter {
            field: p(field),
            value,
            allowed,
        },
        Error::ShapeMismatch {
            field,
            expected,
            got,
        } => Error::ShapeMismatch {
            field: p(field),
            expected,
            got,
        },
        Error::Config { field, reason } => Error::Config {
            field: p(field),
            reason,
        },
        other => other,
    }
}
