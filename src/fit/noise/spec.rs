//! The TOML problem spec of a noise calibration (`kind = "noise"`) and its validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::emg::noise::{NoiseParams, PARAM_NAMES};
use crate::emg::welch::{Average, WelchConfig};
use crate::error::{Error, Result, check};
use crate::fit::optimize::{Budget, Method};
use crate::fit::params::{ParamSpec, Transform};

/// Where the rest window comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// MAT file; relative paths are resolved against the spec file's directory; absent = the
    /// default data path ([`crate::io::recording::default_data_path`], honours `MYODIFF_DATA_DIR`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Sampling rate the spec assumes (Hz); the recording must have exactly this rate.
    pub fs_hz: f64,
    /// Rest window `[start, end)` in samples.
    pub window: [usize; 2],
    /// EMG channels (0-based); absent = the development channels (0–31 without 17, 30).
    #[serde(default)]
    pub channels: Option<Vec<usize>>,
    /// Restrict to the development block of the test recording (DATA.md); default true.
    #[serde(default = "yes")]
    pub development_block: bool,
}

fn yes() -> bool {
    true
}

/// How per-channel PSDs are combined across channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean across channels (unbiased for the expected PSD; what the analytic model predicts).
    #[default]
    Mean,
    /// Median across channels (robust; biased low by up to ln 2 for independent channels).
    Median,
}

/// The target PSD estimator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorSpec {
    /// Welch segment length (samples), `8 ≤ nperseg ≤ window length`.
    pub nperseg: usize,
    /// Overlap (samples), default `nperseg/2`.
    #[serde(default)]
    pub noverlap: Option<usize>,
    /// Segment averaging, default mean.
    #[serde(default)]
    pub average: Average,
    /// Cross-channel pooling, default mean.
    #[serde(default)]
    pub pooling: Pooling,
}

impl EstimatorSpec {
    /// Welch settings of this estimator at `fs_hz`.
    pub fn welch(&self, fs_hz: f64) -> WelchConfig {
        WelchConfig::new(fs_hz, self.nperseg)
            .with_noverlap(self.noverlap.unwrap_or(self.nperseg / 2))
            .with_average(self.average)
    }
}

/// Per-bin loss on the log10-PSD residual `r` (decades).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LossKind {
    /// `|r|` (MyoGen's distance; non-smooth at 0).
    L1Log10,
    /// `r²`.
    L2Log10,
    /// Pseudo-Huber `δ²(√(1 + (r/δ)²) − 1)`: quadratic for `|r| ≪ δ`, `δ|r|` for `|r| ≫ δ`
    /// (smooth and robust to unmodelled lines).
    HuberLog10 {
        /// Transition `δ` (decades), > 0.
        delta: f64,
    },
}

/// The objective's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSpec {
    /// Band `[f_lo, f_hi]` (Hz) of the comparison.
    pub band_hz: [f64; 2],
    /// Per-bin loss.
    pub loss: LossKind,
    /// Weight `w_cm` of the common-mode term (0 = do not fit the common-mode fraction).
    #[serde(default = "one")]
    pub common_mode_weight: f64,
}

fn one() -> f64 {
    1.0
}

/// Fixed (non-fitted) model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Mains fundamental (Hz).
    #[serde(default = "fifty")]
    pub powerline_hz: f64,
    /// Values for non-fitted parameters (by [`PARAM_NAMES`]); unnamed ones come from the
    /// moment-based initial estimate (or MyoGen's defaults where it has none).
    #[serde(default)]
    pub fixed: BTreeMap<String, f64>,
    /// Hann leakage half-width of the analytic PSD (Welch bins).
    #[serde(default = "sixteen")]
    pub leakage_half_width_bins: usize,
    /// Band `[lo, hi]` (Hz) of the baseline-drift component (`f^−α` noise); absent = MyoGen's
    /// default `[fs/n, 1 Hz]` (empty for windows shorter than 1 s, i.e. no drift).
    #[serde(default)]
    pub drift_band_hz: Option<[f64; 2]>,
}

fn fifty() -> f64 {
    50.0
}
fn sixteen() -> usize {
    16
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            powerline_hz: 50.0,
            fixed: BTreeMap::new(),
            leakage_half_width_bins: 16,
            drift_band_hz: None,
        }
    }
}

/// A fitted parameter in the spec (`init` absent = the moment-based estimate, clamped to bounds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitParamSpec {
    /// One of [`PARAM_NAMES`].
    pub name: String,
    /// Lower bound (physical units).
    pub lower: f64,
    /// Upper bound (physical units).
    pub upper: f64,
    /// Initial value (physical units).
    #[serde(default)]
    pub init: Option<f64>,
    /// Reparametrisation (default logit).
    #[serde(default)]
    pub transform: Transform,
}

/// MyoGen's evaluation protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MyogenMetricSpec {
    /// Generated realisations per evaluation (MyoGen: 20).
    #[serde(default = "twenty")]
    pub realisations: usize,
    /// Seeds; the metric is reported as mean and SD over them.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Band (Hz), MyoGen: 10–1000.
    #[serde(default = "default_band")]
    pub band_hz: [f64; 2],
}

fn twenty() -> usize {
    20
}
fn default_seeds() -> Vec<u64> {
    (0..5).collect()
}
fn default_band() -> [f64; 2] {
    [10.0, 1000.0]
}

impl Default for MyogenMetricSpec {
    fn default() -> Self {
        Self {
            realisations: 20,
            seeds: default_seeds(),
            band_hz: default_band(),
        }
    }
}

/// Optional study of candidate estimators on synthetic data resembling the recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorStudySpec {
    /// Candidate segment lengths.
    pub nperseg: Vec<usize>,
    /// Synthetic replicate data sets per candidate.
    #[serde(default = "four")]
    pub replicates: usize,
    /// Seed of the synthetic data.
    #[serde(default)]
    pub seed: u64,
}

fn four() -> usize {
    4
}

/// A whole noise-calibration problem (`calibration/noise_rest.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseCalibrationSpec {
    /// Problem kind for `myodiff calibrate` (must be "noise" when given).
    #[serde(default)]
    pub kind: Option<String>,
    /// Problem name (report title).
    #[serde(default = "default_name")]
    pub name: String,
    /// The data.
    pub data: DataSpec,
    /// The target estimator.
    pub estimator: EstimatorSpec,
    /// The objective.
    pub objective: ObjectiveSpec,
    /// Fixed model settings.
    #[serde(default)]
    pub model: ModelSpec,
    /// Fitted parameters.
    pub params: Vec<FitParamSpec>,
    /// Methods, each run from the same initial point on the same objective.
    pub methods: Vec<Method>,
    /// Optional wall-time cap per method (s).
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// Optional loss-evaluation cap per method (a population of B counts B).
    #[serde(default)]
    pub max_evals: Option<usize>,
    /// MyoGen's metric settings.
    #[serde(default)]
    pub myogen_metric: MyogenMetricSpec,
    /// Optional estimator study.
    #[serde(default)]
    pub estimator_study: Option<EstimatorStudySpec>,
}

fn default_name() -> String {
    "noise_rest".into()
}

impl NoiseCalibrationSpec {
    /// The shared budget of every method.
    pub fn budget(&self) -> Budget {
        Budget {
            max_evals: self.max_evals,
            time_s: self.time_budget_s,
        }
    }

    /// Replaces the shared budget (e.g. `Budget::default()`: each method's own count only).
    pub fn set_budget(&mut self, budget: Budget) {
        self.max_evals = budget.max_evals;
        self.time_budget_s = budget.time_s;
    }

    /// Parses TOML (syntax/unknown-field errors are [`Error::Format`]) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let spec: Self = crate::fit::spec::parse_toml(text, "noise calibration spec")?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::fit::spec::read_text(path)?;
        Self::from_toml_str(&text)
    }

    /// Window length (samples).
    pub fn window_len(&self) -> usize {
        self.data.window[1].saturating_sub(self.data.window[0])
    }

    /// Signal-independent checks (typed errors naming the field and value).
    pub fn validate(&self) -> Result<()> {
        check::positive("data.fs_hz", self.data.fs_hz)?;
        let [a, b] = self.data.window;
        if a >= b {
            return Err(Error::invalid(
                "data.window",
                format!("[{a}, {b}]"),
                "[start, end] with start < end",
            ));
        }
        if let Some(ch) = &self.data.channels
            && ch.is_empty()
        {
            return Err(Error::invalid(
                "data.channels",
                "[]",
                "at least one channel",
            ));
        }
        let n = self.window_len();
        let l = self.estimator.nperseg;
        if l < 8 || l > n {
            return Err(Error::invalid(
                "estimator.nperseg",
                l,
                format!("[8, window length = {n}]"),
            ));
        }
        if let Some(o) = self.estimator.noverlap
            && o >= l
        {
            return Err(Error::invalid(
                "estimator.noverlap",
                o,
                format!("< nperseg = {l}"),
            ));
        }
        let nyq = self.data.fs_hz / 2.0;
        let [lo, hi] = self.objective.band_hz;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo < hi && hi <= nyq) {
            return Err(Error::invalid(
                "objective.band_hz",
                format!("[{lo}, {hi}]"),
                format!("0 <= lo < hi <= Nyquist = {nyq}"),
            ));
        }
        if let LossKind::HuberLog10 { delta } = self.objective.loss {
            check::positive("objective.loss.delta", delta)?;
        }
        check::non_negative(
            "objective.common_mode_weight",
            self.objective.common_mode_weight,
        )?;
        check::non_negative("model.powerline_hz", self.model.powerline_hz)?;
        for (k, v) in &self.model.fixed {
            if !PARAM_NAMES.contains(&k.as_str()) {
                return Err(Error::invalid(
                    format!("model.fixed.{k}"),
                    k,
                    format!("one of {PARAM_NAMES:?}"),
                ));
            }
            check::finite(&format!("model.fixed.{k}"), *v)?;
        }
        if self.params.is_empty() {
            return Err(Error::config(
                "params",
                "at least one parameter must be fitted",
            ));
        }
        for p in &self.params {
            if !PARAM_NAMES.contains(&p.name.as_str()) {
                return Err(Error::invalid(
                    "params.name",
                    &p.name,
                    format!("one of {PARAM_NAMES:?}"),
                ));
            }
            if self.model.fixed.contains_key(&p.name) {
                return Err(Error::config(
                    format!("params.{}", p.name),
                    "is both fitted and fixed in model.fixed",
                ));
            }
            let spec = ParamSpec {
                name: format!("params.{}", p.name),
                lower: p.lower,
                upper: p.upper,
                init: p.init.unwrap_or(p.lower),
                transform: p.transform,
            };
            spec.validate()?;
        }
        // Bounds must describe valid noise parameters: check both corners of the box.
        for corner in [0, 1] {
            let mut v = NoiseParams::default().to_vec();
            for p in &self.params {
                v[param_index(&p.name)?] = if corner == 0 { p.lower } else { p.upper };
            }
            let np = NoiseParams::from_slice(&v)?;
            np.validate(self.data.fs_hz).map_err(|e| match e {
                Error::InvalidParameter {
                    field,
                    value,
                    allowed,
                } => Error::InvalidParameter {
                    field: format!("params.{field} bounds"),
                    value,
                    allowed,
                },
                e => e,
            })?;
        }
        if self.methods.is_empty() {
            return Err(Error::config("methods", "at least one method"));
        }
        crate::fit::optimize::refuse_least_squares(&self.methods, "the noise problem")?;
        self.budget().validate()?;
        check::count_at_least(
            "myogen_metric.realisations",
            self.myogen_metric.realisations,
            1,
        )?;
        if self.myogen_metric.seeds.is_empty() {
            return Err(Error::invalid(
                "myogen_metric.seeds",
                "[]",
                "at least one seed",
            ));
        }
        if let Some(s) = &self.estimator_study {
            for &c in &s.nperseg {
                if c < 8 || c > n {
                    return Err(Error::invalid(
                        "estimator_study.nperseg",
                        c,
                        format!("[8, window length = {n}]"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Column of a parameter name in the flat layout.
pub fn param_index(name: &str) -> Result<usize> {
    PARAM_NAMES
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| Error::invalid("parameter name", name, format!("one of {PARAM_NAMES:?}")))
}
