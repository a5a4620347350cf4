//! The TOML problem spec of a recording calibration (`kind = "recording"`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check};
use crate::fit::optimize::{Budget, Method};
use crate::network::{MYOGEN_WEIGHT_S, NetworkConfig};

/// How recorded units are matched to simulated motor neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Matching {
    /// `"recruitment"`: nearest recruitment time at the initial parameters; `"rates"`: smallest
    /// masked rate error (Hz²) at the initial parameters (module docs).
    Rule(String),
    /// Explicit simulated unit indices, one per recorded unit (0-based, recruitment order of the
    /// pool: 0 = lowest threshold).
    Units(Vec<usize>),
}

impl Default for Matching {
    fn default() -> Self {
        Matching::Rule("recruitment".into())
    }
}

/// Which part of the recording is fitted and how it is compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSpec {
    /// Recording path (default: `calibration/data/otb_testfile.mat` or `$MYODIFF_DATA_DIR`);
    /// relative paths are relative to the spec file.
    pub path: Option<PathBuf>,
    /// Fitted window `[w0, w1)` in samples (inside the development block [0, 33280)). Default:
    /// ramp-up + plateau `[1792, 33280)`.
    pub window: [usize; 2],
    /// Recorded units to match (0-based among the decomposed units; unit 0 is unreliable).
    pub units: Vec<usize>,
    /// Bin width (samples).
    pub bin_samples: usize,
    /// Hann smoothing window of the discharge rates (s).
    pub smooth_s: f64,
    /// Weight λ of the rate term.
    pub rate_weight: f64,
    /// Unit matching.
    pub matching: Matching,
    /// Smoothed rate that counts as recruited (Hz).
    pub recruit_hz: f64,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            path: None,
            window: [1792, 33_280],
            units: vec![1, 2, 3, 4],
            bin_samples: 128,
            smooth_s: 1.0,
            rate_weight: 1.0,
            matching: Matching::default(),
            recruit_hz: 3.0,
        }
    }
}

/// The piecewise-linear drive and its bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriveSpec {
    /// Number of knots K (≥ 2; the issue asks for ≥ 8), equally spaced over the simulated time
    /// `[0, w1/fs]` unless `times_s` is given.
    pub knots: usize,
    /// Explicit knot times (s), strictly increasing.
    pub times_s: Option<Vec<f64>>,
    /// Knot-value bounds (Hz).
    pub lower_hz: f64,
    /// Knot-value upper bound (Hz).
    pub upper_hz: f64,
    /// Initial knot values: `floor_hz + (peak_hz − floor_hz)·F*(τ_j)/max F*` (Hz), unless
    /// `init_hz` is given.
    pub init_peak_hz: f64,
    /// See `init_peak_hz`.
    pub init_floor_hz: f64,
    /// Explicit initial knot values (Hz).
    pub init_hz: Option<Vec<f64>>,
    /// Fit the noise level σ.
    pub fit_noise: bool,
    /// Initial (or fixed) σ (Hz).
    pub noise_sd_hz: f64,
    /// Upper bound of σ (Hz).
    pub noise_upper_hz: f64,
    /// Synaptic weight (S), fixed.
    pub weight_s: f64,
}

impl Default for DriveSpec {
    fn default() -> Self {
        Self {
            knots: 10,
            times_s: None,
            lower_hz: 0.0,
            upper_hz: 150.0,
            init_peak_hz: 75.0,
            init_floor_hz: 20.0,
            init_hz: None,
            fit_noise: true,
            noise_sd_hz: 2.0,
            noise_upper_hz: 20.0,
            weight_s: MYOGEN_WEIGHT_S,
        }
    }
}

/// The force scale `s` (%MVC per N).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleSpec {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Initial value (default: least squares at the initial drive).
    pub init: Option<f64>,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        Self {
            lower: 1e-3,
            upper: 1e3,
            init: None,
        }
    }
}

/// Optional calibration of the smooth model as a surrogate of the hard spiking one before the fit
/// ([`crate::fit::smooth::calibrate_smooth_gain`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurrogateSpec {
    /// Calibrate `network.smooth_synaptic_gain` (overrides the configured value).
    pub auto_gain: bool,
    /// Constant drives of the calibration runs (Hz).
    pub drives_hz: Vec<f64>,
    /// Duration of each calibration run (s).
    pub duration_s: f64,
    /// Bisection steps on ln(gain).
    pub iterations: usize,
}

impl Default for SurrogateSpec {
    fn default() -> Self {
        Self {
            auto_gain: false,
            drives_hz: vec![50.0, 70.0, 90.0],
            duration_s: 2.0,
            iterations: 8,
        }
    }
}

pub use crate::fit::spec::FitModel;

/// The model of the fit and its gradient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradientSpec {
    /// Network of the loss.
    pub model: FitModel,
    /// Central-difference step of the knot values and σ (Hz; spiking model).
    pub h_hz: f64,
    /// Relative central-difference step of the force scale (spiking model).
    pub h_scale_rel: f64,
}

impl Default for GradientSpec {
    fn default() -> Self {
        Self {
            model: FitModel::Smooth,
            h_hz: 1.0,
            h_scale_rel: 1e-3,
        }
    }
}

fn default_network() -> NetworkConfig {
    NetworkConfig {
        n_mn: 200,
        n_dd: 400,
        dt_s: 2.5e-4,
        smooth_synaptic_gain: 1.45,
        ..NetworkConfig::default()
    }
}

/// A recording calibration problem (TOML `kind = "recording"`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingFitSpec {
    /// Problem kind (`"recording"`).
    pub kind: String,
    /// Name (report directory).
    #[serde(default)]
    pub name: Option<String>,
    /// Network (made smooth; `duration_s` is set from the window).
    #[serde(default = "default_network")]
    pub network: NetworkConfig,
    /// Data selection.
    #[serde(default)]
    pub data: DataSpec,
    /// Drive.
    #[serde(default)]
    pub drive: DriveSpec,
    /// Force scale.
    #[serde(default)]
    pub scale: ScaleSpec,
    /// Smooth-surrogate calibration.
    #[serde(default)]
    pub surrogate: SurrogateSpec,
    /// Model of the loss and its gradient (default: smooth, autodiff).
    #[serde(default)]
    pub gradient: GradientSpec,
    /// Wall-time budget per method (s): every method gets the same; optional (tests use
    /// `max_evals`).
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// Loss-evaluation budget per method (a population of B counts B); optional.
    #[serde(default)]
    pub max_evals: Option<usize>,
    /// Largest batch of one population rollout.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Methods, each run from the same initial point.
    pub methods: Vec<Method>,
}

fn default_max_batch() -> usize {
    8
}

impl RecordingFitSpec {
    /// The shared budget of every method.
    pub fn budget(&self) -> Budget {
        Budget {
            max_evals: self.max_evals,
            time_s: self.time_budget_s,
        }
    }

    /// Parses TOML and validates.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let s: Self = crate::fit::spec::parse_toml(text, "recording problem spec")?;
        s.validate()?;
        Ok(s)
    }

    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::fit::spec::read_text(path)?;
        Self::from_toml_str(&text)
    }

    /// Data-independent checks (typed errors naming the field).
    pub fn validate(&self) -> Result<()> {
        if self.kind != "recording" {
            return Err(Error::invalid("kind", &self.kind, "recording"));
        }
        self.budget().validate()?;
        check::count_at_least("max_batch", self.max_batch, 1)?;
        check::count_at_least("methods", self.methods.len(), 1)?;
        if self.gradient.model != FitModel::Spiking {
            crate::fit::optimize::refuse_least_squares(
                &self.methods,
                "the recording fit on the smooth model",
            )?;
        }
        check::count_at_least("drive.knots", self.drive.knots, 2)?;
        check::finite("drive.lower_hz", self.drive.lower_hz)?;
        if self.drive.upper_hz.is_nan() || self.drive.upper_hz <= self.drive.lower_hz {
            return Err(Error::invalid(
                "drive.upper_hz",
                self.drive.upper_hz,
                format!("> drive.lower_hz = {}", self.drive.lower_hz),
            ));
        }
        check::non_negative("drive.noise_sd_hz", self.drive.noise_sd_hz)?;
        check::positive("drive.noise_upper_hz", self.drive.noise_upper_hz)?;
        check::positive("drive.weight_s", self.drive.weight_s)?;
        check::positive("scale.lower", self.scale.lower)?;
        if self.scale.upper.is_nan() || self.scale.upper <= self.scale.lower {
            return Err(Error::invalid(
                "scale.upper",
                self.scale.upper,
                format!("> scale.lower = {}", self.scale.lower),
            ));
        }
        check::count_at_least("surrogate.drives_hz", self.surrogate.drives_hz.len(), 1)?;
        check::all_finite("surrogate.drives_hz", &self.surrogate.drives_hz)?;
        check::positive("surrogate.duration_s", self.surrogate.duration_s)?;
        check::count_at_least("surrogate.iterations", self.surrogate.iterations, 1)?;
        check::positive("gradient.h_hz", self.gradient.h_hz)?;
        check::positive("gradient.h_scale_rel", self.gradient.h_scale_rel)?;
        check::positive("data.smooth_s", self.data.smooth_s)?;
        check::non_negative("data.rate_weight", self.data.rate_weight)?;
        check::positive("data.recruit_hz", self.data.recruit_hz)?;
        check::count_at_least("data.bin_samples", self.data.bin_samples, 1)?;
        if let Matching::Rule(r) = &self.data.matching
            && r != "recruitment"
            && r != "rates"
        {
            return Err(Error::invalid(
                "data.matching",
                r,
                "\"recruitment\", \"rates\" or a list of simulated unit indices",
            ));
        }
        if let Matching::Units(u) = &self.data.matching
            && u.len() != self.data.units.len()
        {
            return Err(Error::shape(
                "data.matching",
                self.data.units.len(),
                u.len(),
            ));
        }
        Ok(())
    }
}
