//! Fitting a time-varying descending drive to a real force + motor-unit recording (issue 5 item 3).
//!
//! **Problem.** The development block of the test recording (`../DATA.md`: vastus lateralis,
//! trapezoidal isometric contraction, 2048 Hz) gives the force `F*(t)` (%MVC) and the discharge
//! trains of decomposed motor units. The simulation starts at sample 0 (t = 0 s) and runs to the
//! end of the fitted window `[w0, w1)` (samples). Its descending drive is piecewise linear through
//! K knots ([`crate::drive::PiecewiseLinearDrive`]) plus noise of level σ; the simulated force
//! (N) is mapped to %MVC by a fitted scale `s` (%MVC/N). Fitted vector
//! `x = (v_0 … v_{K−1} [Hz], σ [Hz] (optional), s [%MVC/N])`.
//!
//! **Comparison grid.** Time is cut into bins of `bin_samples` samples (default 128 = 62.5 ms);
//! a bin holds a whole number of simulation steps. Per bin: mean force; spike counts of a unit.
//! Smoothed discharge rate `R = H·c / Δ` (Hz): counts `c` per bin filtered by a unit-sum Hann
//! window `H` of `smooth_s` seconds (same operator for recorded and simulated units, zero-padded
//! at the edges), divided by the bin width Δ.
//!
//! **Matching of units.** Recorded unit j (recruited at its first discharge) is matched to one
//! simulated motor neuron i_j, frozen for the whole fit: either an explicit list, or
//! `recruitment` — at the initial parameters, the simulated unit whose recruitment time (first
//! bin with smoothed rate ≥ `recruit_hz`) is nearest the recorded unit's (same rule on its
//! smoothed rate), each simulated unit used at most once, recorded units taken in recruitment
//! order.
//!
//! **Loss** (dimensionless):
//! `L = mean_{b∈W} ((s·F̄_b − F*_b)/F_ref)² + λ · Σ_j Σ_{b∈M_j} ((R_{i_j,b} − R*_{j,b})/R_ref)² / Σ_j |M_j|`
//! over the bins W inside the window; `M_j` = bins of W from the recorded unit's recruitment bin
//! plus half the smoothing window on; `F_ref` = mean target force over W (%MVC), `R_ref` = mean
//! target rate over all masked bins (Hz), λ = `rate_weight`.
//!
//! The model is the smooth network ([`super::smooth`]), so `∂L/∂x` by autodiff is exact; gradient
//! methods (L-BFGS, Adam) and derivative-free ones (Nelder–Mead, particle swarm; populations in
//! one batched rollout) minimise the same L under the same wall-time budget.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::objective::Objective;
use super::optimize::{FitReport, Method, minimize};
use super::params::{ParamSet, ParamSpec, Transform};
use super::plot::{Scale, Series, line_plot};
use super::report::{RunSummary, write_report};
use super::smooth::{
    calibrate_smooth_gain, check_finite_values, gradients, run_network, smooth_config,
};
use crate::drive::{KnotTimes, PiecewiseLinearDrive};
use crate::error::{Error, Result, check};
use crate::io::recording::{DEV_SAMPLES, Recording};
use crate::kernel::{Ctx, to_vec_f64};
use crate::network::{MYOGEN_WEIGHT_S, NetworkConfig};

/// How recorded units are matched to simulated motor neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Matching {
    /// `"recruitment"`: nearest recruitment time at the initial parameters (module docs).
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
/// ([`super::smooth::calibrate_smooth_gain`]).
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
    /// Wall-time budget per method (s): every method gets the same.
    pub time_budget_s: f64,
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
    /// Parses TOML and validates.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let s: Self = super::spec::parse_toml(text, "recording problem spec")?;
        s.validate()?;
        Ok(s)
    }

    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = super::spec::read_text(path)?;
        Self::from_toml_str(&text)
    }

    /// Data-independent checks (typed errors naming the field).
    pub fn validate(&self) -> Result<()> {
        if self.kind != "recording" {
            return Err(Error::invalid("kind", &self.kind, "recording"));
        }
        check::positive("time_budget_s", self.time_budget_s)?;
        check::count_at_least("max_batch", self.max_batch, 1)?;
        check::count_at_least("methods", self.methods.len(), 1)?;
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
        check::positive("data.smooth_s", self.data.smooth_s)?;
        check::non_negative("data.rate_weight", self.data.rate_weight)?;
        check::positive("data.recruit_hz", self.data.recruit_hz)?;
        check::count_at_least("data.bin_samples", self.data.bin_samples, 1)?;
        if let Matching::Rule(r) = &self.data.matching
            && r != "recruitment"
        {
            return Err(Error::invalid(
                "data.matching",
                r,
                "\"recruitment\" or a list of simulated unit indices",
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

/// The comparison targets on the bin grid (host data; built from the recording or synthesised).
#[derive(Clone, Debug)]
pub struct Targets {
    /// Bin width (s).
    pub bin_s: f64,
    /// Number of bins simulated (from t = 0).
    pub n_bins: usize,
    /// Bins inside the fitted window.
    pub loss_bins: Range<usize>,
    /// Target force per bin (%MVC), all `n_bins` (only `loss_bins` enter the loss).
    pub force_pct: Vec<f64>,
    /// Recorded units (identifiers for reports).
    pub units: Vec<usize>,
    /// Target smoothed rates, one `[n_bins]` vector per unit (Hz).
    pub rates_hz: Vec<Vec<f64>>,
    /// Recruitment bin of each unit (first bin with smoothed rate ≥ `recruit_hz`).
    pub recruit_bin: Vec<usize>,
}

/// Unit-sum Hann smoothing matrix `[n, n]` (row-major) of `len` bins (odd, ≥ 1), zero-padded
/// at the edges: `(H c)_b = Σ_k h_k c_{b+k−len/2}`, `h_k ∝ sin²(π(k+1)/(len+1))`.
pub fn hann_matrix(n: usize, len: usize) -> Vec<f64> {
    let len = len.max(1) | 1;
    let h: Vec<f64> = (0..len)
        .map(|k| {
            (std::f64::consts::PI * (k + 1) as f64 / (len + 1) as f64)
                .sin()
                .powi(2)
        })
        .collect();
    let total: f64 = h.iter().sum();
    let half = len / 2;
    let mut m = vec![0.0; n * n];
    for b in 0..n {
        for (k, hk) in h.iter().enumerate() {
            let c = b as isize + k as isize - half as isize;
            if c >= 0 && (c as usize) < n {
                m[b * n + c as usize] = hk / total;
            }
        }
    }
    m
}

/// Smoothed rate (Hz) from counts per bin: `H·c / bin_s`.
pub fn smooth_counts(h: &[f64], counts: &[f64], bin_s: f64) -> Vec<f64> {
    let n = counts.len();
    (0..n)
        .map(|b| (0..n).map(|c| h[b * n + c] * counts[c]).sum::<f64>() / bin_s)
        .collect()
}

/// First bin `≥ from` whose value is ≥ `level`.
pub fn first_at_least(v: &[f64], level: f64, from: usize) -> Option<usize> {
    (from..v.len()).find(|&b| v[b] >= level)
}

/// Smoothing window length in bins (odd).
fn smooth_bins(smooth_s: f64, bin_s: f64) -> usize {
    ((smooth_s / bin_s).round() as usize).max(1) | 1
}

impl Targets {
    /// From the development block of `rec`: the window, bins and units of `spec`.
    /// Errors: window outside the development block or empty, bins that do not tile it, an
    /// unknown unit, a unit that never reaches `recruit_hz`, a zero target force.
    pub fn from_recording(spec: &DataSpec, rec: &Recording) -> Result<Self> {
        let dev = rec.development()?;
        let [w0, w1] = spec.window;
        if w0 >= w1 || w1 > DEV_SAMPLES.end {
            return Err(Error::invalid(
                "data.window",
                format!("[{w0}, {w1})"),
                format!(
                    "a non-empty window inside the development block [0, {})",
                    DEV_SAMPLES.end
                ),
            ));
        }
        let bs = spec.bin_samples;
        let n_bins = w1 / bs;
        let first = w0.div_ceil(bs);
        if first >= n_bins {
            return Err(Error::invalid(
                "data.bin_samples",
                bs,
                format!("at most the window length {}", w1 - w0),
            ));
        }
        let fs = dev.fs_hz();
        let bin_s = bs as f64 / fs;
        let f = dev.force_pct_mvc(0..n_bins * bs)?;
        let force_pct: Vec<f64> = (0..n_bins)
            .map(|b| f[b * bs..(b + 1) * bs].iter().sum::<f64>() / bs as f64)
            .collect();
        let h = hann_matrix(n_bins, smooth_bins(spec.smooth_s, bin_s));
        let mut rates_hz = Vec::new();
        let mut recruit_bin = Vec::new();
        for &u in &spec.units {
            if u >= dev.n_units() {
                return Err(Error::invalid(
                    "data.units",
                    u,
                    format!("< {} (decomposed units in the recording)", dev.n_units()),
                ));
            }
            let mut counts = vec![0.0; n_bins];
            for s in dev.discharge_samples(u, 0..n_bins * bs)? {
                counts[s / bs] += 1.0;
            }
            let r = smooth_counts(&h, &counts, bin_s);
            let rb = first_at_least(&r, spec.recruit_hz, 0).ok_or_else(|| {
                Error::invalid(
                    "data.units",
                    u,
                    format!(
                        "a unit whose smoothed rate reaches data.recruit_hz = {} Hz",
                        spec.recruit_hz
                    ),
                )
            })?;
            rates_hz.push(r);
            recruit_bin.push(rb);
        }
        Self::new(
            bin_s,
            n_bins,
            first..n_bins,
            force_pct,
            spec.units.clone(),
            rates_hz,
            recruit_bin,
        )
    }

    /// Checks and assembles targets (errors: shapes, empty window, non-finite values, a target
    /// force that is zero over the window).
    pub fn new(
        bin_s: f64,
        n_bins: usize,
        loss_bins: Range<usize>,
        force_pct: Vec<f64>,
        units: Vec<usize>,
        rates_hz: Vec<Vec<f64>>,
        recruit_bin: Vec<usize>,
    ) -> Result<Self> {
        check::positive("targets.bin_s", bin_s)?;
        if loss_bins.start >= loss_bins.end || loss_bins.end > n_bins {
            return Err(Error::invalid(
                "data.window",
                format!("bins {loss_bins:?}"),
                format!("a non-empty range inside [0, {n_bins})"),
            ));
        }
        if force_pct.len() != n_bins {
            return Err(Error::shape("targets.force_pct", n_bins, force_pct.len()));
        }
        check::all_finite("targets.force_pct", &force_pct)?;
        let f_ref = force_pct[loss_bins.clone()].iter().sum::<f64>() / loss_bins.len() as f64;
        if f_ref.abs() <= f64::EPSILON {
            return Err(Error::invalid(
                "targets.force_pct",
                f_ref,
                "a target force that is not zero over the window (mean ≠ 0 %MVC)",
            ));
        }
        if rates_hz.len() != units.len() || recruit_bin.len() != units.len() {
            return Err(Error::shape(
                "targets.rates_hz",
                units.len(),
                rates_hz.len(),
            ));
        }
        for r in &rates_hz {
            if r.len() != n_bins {
                return Err(Error::shape("targets.rates_hz[j]", n_bins, r.len()));
            }
            check::all_finite("targets.rates_hz", r)?;
        }
        Ok(Self {
            bin_s,
            n_bins,
            loss_bins,
            force_pct,
            units,
            rates_hz,
            recruit_bin,
        })
    }

    /// Mean target force over the window (%MVC).
    pub fn f_ref(&self) -> f64 {
        self.force_pct[self.loss_bins.clone()].iter().sum::<f64>() / self.loss_bins.len() as f64
    }

    /// Rate mask of unit j: bins of the window from `recruit_bin + half_window` on.
    pub fn mask(&self, j: usize, half_window: usize) -> Vec<f64> {
        (0..self.n_bins)
            .map(|b| {
                let on = b >= self.loss_bins.start
                    && b < self.loss_bins.end
                    && b >= self.recruit_bin[j] + half_window;
                if on { 1.0 } else { 0.0 }
            })
            .collect()
    }
}

/// The recording problem: smooth network, knots, targets, frozen unit matching.
pub struct RecordingModel {
    /// Smooth network (duration = `n_bins · bin_s`).
    pub cfg: NetworkConfig,
    /// Knot times.
    pub knots: KnotTimes,
    /// Targets.
    pub targets: Targets,
    /// Matched simulated units, one per target unit.
    pub matched: Vec<usize>,
    /// Fit σ (else fixed at `noise_sd_hz`).
    pub fit_noise: bool,
    /// σ when fixed (Hz).
    pub noise_sd_hz: f64,
    /// Synaptic weight (S).
    pub weight_s: f64,
    /// Rate weight λ.
    pub rate_weight: f64,
    /// Largest batch per rollout.
    pub max_batch: usize,
    steps_per_bin: usize,
    hann: Vec<f64>,
    masks: Vec<Vec<f64>>,
    r_ref: f64,
    /// Rollouts run (a batch counts once).
    pub rollouts: usize,
}

/// Summary numbers of a fit (see [`RecordingModel::quality`]).
#[derive(Clone, Debug, Serialize)]
pub struct Quality {
    /// Force RMSE over the window (%MVC).
    pub force_rmse_pct: f64,
    /// Per matched unit: (simulated, recorded) mean rate over the last half of the window (Hz).
    pub late_rates_hz: Vec<(f64, f64)>,
}

/// Simulated force (%MVC) and matched smoothed rates (Hz) of one parameter set, per bin.
#[derive(Clone, Debug)]
pub struct Simulated {
    /// `s·F̄_b` (%MVC).
    pub force_pct: Vec<f64>,
    /// One vector per matched unit (Hz).
    pub rates_hz: Vec<Vec<f64>>,
}

impl RecordingModel {
    /// Builds the model. `cfg` is made smooth and its duration set to `n_bins · bin_s`; the
    /// time step must tile a bin. `matched` must hold one simulated unit per target unit.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &NetworkConfig,
        knots: KnotTimes,
        targets: Targets,
        matched: Vec<usize>,
        fit_noise: bool,
        noise_sd_hz: f64,
        weight_s: f64,
        rate_weight: f64,
        smooth_s: f64,
        max_batch: usize,
    ) -> Result<Self> {
        let spb_f = targets.bin_s / cfg.dt_s;
        let steps_per_bin = spb_f.round() as usize;
        if steps_per_bin == 0 || (spb_f - steps_per_bin as f64).abs() > 1e-6 * spb_f {
            return Err(Error::invalid(
                "network.dt_s",
                cfg.dt_s,
                format!(
                    "a divisor of the bin width {} s (data.bin_samples / fs)",
                    targets.bin_s
                ),
            ));
        }
        let mut cfg = smooth_config(cfg);
        cfg.duration_s = steps_per_bin as f64 * targets.n_bins as f64 * cfg.dt_s;
        cfg.validate()?;
        if cfg.n_mn < 2 * targets.units.len().max(1) {
            return Err(Error::invalid(
                "network.n_mn",
                cfg.n_mn,
                format!(
                    ">= {} (twice the number of matched units); a pool this small cannot \
                     produce the recorded force and rates",
                    2 * targets.units.len().max(1)
                ),
            ));
        }
        if matched.len() != targets.units.len() {
            return Err(Error::shape(
                "data.matching",
                targets.units.len(),
                matched.len(),
            ));
        }
        if let Some(&bad) = matched.iter().find(|&&i| i >= cfg.n_mn) {
            return Err(Error::invalid(
                "data.matching",
                bad,
                format!("< network.n_mn = {}", cfg.n_mn),
            ));
        }
        check::non_negative("drive.noise_sd_hz", noise_sd_hz)?;
        let hb = smooth_bins(smooth_s, targets.bin_s);
        let hann = hann_matrix(targets.n_bins, hb);
        let masks: Vec<Vec<f64>> = (0..targets.units.len())
            .map(|j| targets.mask(j, hb / 2))
            .collect();
        let (mut sum, mut cnt) = (0.0, 0.0);
        for (r, m) in targets.rates_hz.iter().zip(&masks) {
            for (v, w) in r.iter().zip(m) {
                sum += v * w;
                cnt += w;
            }
        }
        if !targets.units.is_empty() && cnt == 0.0 {
            return Err(Error::invalid(
                "data.window",
                format!("bins {:?}", targets.loss_bins),
                "a window in which the matched units fire after their recruitment",
            ));
        }
        let r_ref = if cnt > 0.0 { sum / cnt } else { 1.0 };
        Ok(Self {
            cfg,
            knots,
            targets,
            matched,
            fit_noise,
            noise_sd_hz,
            weight_s,
            rate_weight,
            max_batch: max_batch.max(1),
            steps_per_bin,
            hann,
            masks,
            r_ref,
            rollouts: 0,
        })
    }

    /// Number of fitted parameters (K knots, σ if fitted, s).
    pub fn n_params(&self) -> usize {
        self.knots.len() + usize::from(self.fit_noise) + 1
    }

    /// Splits the fitted vectors of a batch into knot values `[B·K]`, σ `[B]`, s `[B]`.
    fn split(&self, xs: &[Vec<f64>]) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let k = self.knots.len();
        let (mut v, mut sd, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for x in xs {
            if x.len() != self.n_params() {
                return Err(Error::shape("x", self.n_params(), x.len()));
            }
            check::all_finite("x", x)?;
            v.extend_from_slice(&x[..k]);
            sd.push(if self.fit_noise {
                x[k]
            } else {
                self.noise_sd_hz
            });
            s.push(x[self.n_params() - 1]);
        }
        Ok((v, sd, s))
    }

    /// Per-row losses `[B]` and the simulated bins, on `ctx` (autodiff or not), for tensors
    /// `values [B, K]` (Hz), `sd [B, 1]` (Hz), `scale [B, 1]` (%MVC/N).
    fn forward(
        &mut self,
        ctx: &Ctx,
        values: Tensor<2>,
        sd: Tensor<2>,
        scale: Tensor<2>,
    ) -> Result<(Tensor<1>, Tensor<2>, Tensor<2>)> {
        let b = values.dims()[0];
        let drive = PiecewiseLinearDrive::new(
            self.knots.clone(),
            values,
            sd,
            self.cfg.drive_noise_spec(),
            self.cfg.rate_clip,
        );
        let weight = ctx.tensor(vec![self.weight_s], [1, 1]);
        let (force, spikes) = run_network(&self.cfg, ctx, b, Box::new(drive), weight)?;
        self.rollouts += 1;
        let (nb, spb) = (self.targets.n_bins, self.steps_per_bin);
        // Force: bin means × s → [nb, B] (%MVC).
        let f_bins = force.reshape([nb, spb, b]).mean_dim(1).reshape([nb, b])
            * scale.clone().reshape([1, b]);
        let lb = self.targets.loss_bins.clone();
        let nl = lb.len();
        let f_tgt = ctx.tensor(self.targets.force_pct[lb.clone()].to_vec(), [nl, 1]);
        let inv_f = 1.0 / self.targets.f_ref();
        let f_err = (f_bins.clone().slice([lb.clone(), 0..b]) - f_tgt) * inv_f;
        let f_loss = f_err.powi_scalar(2).mean_dim(0).reshape([b]);
        // Rates of the matched units: counts per bin → Hann → Hz, [nb, B·M].
        let m = self.matched.len();
        if m == 0 {
            let empty = ctx.zeros([nb, 0]);
            return Ok((f_loss, f_bins, empty));
        }
        let n_mn = self.cfg.n_mn;
        let idx = Tensor::<1, Int>::from_ints(
            TensorData::new(
                self.matched.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [m],
            ),
            &ctx.device,
        );
        let sel = spikes.reshape([nb * spb, b, n_mn]).select(2, idx);
        let counts = sel
            .reshape([nb, spb, b * m])
            .sum_dim(1)
            .reshape([nb, b * m]);
        let h: Tensor<2> = ctx.tensor(self.hann.clone(), [nb, nb]);
        let rates = h.matmul(counts) * (1.0 / self.targets.bin_s);
        let tile = |v: &[Vec<f64>]| -> Tensor<2> {
            let mut out = vec![0.0; nb * b * m];
            for t in 0..nb {
                for r in 0..b {
                    for (j, vj) in v.iter().enumerate() {
                        out[t * b * m + r * m + j] = vj[t];
                    }
                }
            }
            ctx.tensor(out, [nb, b * m])
        };
        let r_tgt = tile(&self.targets.rates_hz);
        let mask = tile(&self.masks);
        let n_mask: f64 = self.masks.iter().flatten().sum();
        let r_err = (rates.clone() - r_tgt) * mask * (1.0 / self.r_ref);
        let r_loss = r_err
            .powi_scalar(2)
            .sum_dim(0)
            .reshape([b, m])
            .sum_dim(1)
            .reshape([b])
            * (self.rate_weight / n_mask);
        Ok((f_loss + r_loss, f_bins, rates))
    }

    fn tensors(&self, ctx: &Ctx, xs: &[Vec<f64>]) -> Result<(Tensor<2>, Tensor<2>, Tensor<2>)> {
        let (v, sd, s) = self.split(xs)?;
        let b = xs.len();
        Ok((
            ctx.tensor(v, [b, self.knots.len()]),
            ctx.tensor(sd, [b, 1]),
            ctx.tensor(s, [b, 1]),
        ))
    }

    /// Losses of a population (batched rollouts of at most `max_batch` rows; f32, no tape).
    pub fn losses(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let ctx = Ctx::cpu();
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(self.max_batch) {
            let (v, sd, s) = self.tensors(&ctx, chunk)?;
            let (l, _, _) = self.forward(&ctx, v, sd, s)?;
            out.extend(to_vec_f64(l));
        }
        check_finite_values("recording loss", &out)?;
        Ok(out)
    }

    /// Loss and exact gradient `∂L/∂x` (one forward + one backward pass through the fused ops).
    pub fn loss_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let ctx = Ctx::cpu().autodiff();
        let (v, sd, s) = self.tensors(&ctx, &[x.to_vec()])?;
        let (v, sd, s) = (v.require_grad(), sd.require_grad(), s.require_grad());
        let (l, _, _) = self.forward(&ctx, v.clone(), sd.clone(), s.clone())?;
        let value = to_vec_f64(l.clone())[0];
        let g = gradients(l.sum(), &[&v, &sd, &s]);
        let mut grad = g[0].clone();
        if self.fit_noise {
            grad.push(g[1][0]);
        }
        grad.push(g[2][0]);
        check_finite_values("recording loss", &[value])?;
        check_finite_values("recording gradient", &grad)?;
        Ok((value, grad))
    }

    /// Simulated force and matched rates per bin at `x` (for plots and initialisation).
    pub fn simulate(&mut self, x: &[f64]) -> Result<Simulated> {
        let ctx = Ctx::cpu();
        let (v, sd, s) = self.tensors(&ctx, &[x.to_vec()])?;
        let (_, f, r) = self.forward(&ctx, v, sd, s)?;
        let m = self.matched.len();
        let r = to_vec_f64(r);
        Ok(Simulated {
            force_pct: to_vec_f64(f),
            rates_hz: (0..m)
                .map(|j| (0..self.targets.n_bins).map(|t| r[t * m + j]).collect())
                .collect(),
        })
    }

    /// The same rollout on the hard spiking network (Heaviside spikes, Poisson inputs; no
    /// gradient): how well a drive fitted on the smooth model transfers to the spiking one.
    pub fn simulate_hard(&mut self, x: &[f64]) -> Result<Simulated> {
        let smooth = self.cfg.clone();
        self.cfg = NetworkConfig {
            spike_mode: crate::neuron::spike::SpikeMode::Hard,
            generator_mode: crate::drive::GeneratorMode::Hard,
            ..smooth.clone()
        };
        let out = self.simulate(x);
        self.cfg = smooth;
        out
    }

    /// Fit quality of simulated bins against the targets: force RMSE over the window (%MVC) and,
    /// per matched unit, the mean rate over the last half of the window (simulated, recorded; Hz).
    pub fn quality(&self, sim: &Simulated) -> Quality {
        let lb = self.targets.loss_bins.clone();
        let n = lb.len() as f64;
        let force_rmse_pct = (lb
            .clone()
            .map(|b| (sim.force_pct[b] - self.targets.force_pct[b]).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let late = lb.start + lb.len() / 2..lb.end;
        let mean = |v: &[f64]| v[late.clone()].iter().sum::<f64>() / late.len() as f64;
        Quality {
            force_rmse_pct,
            late_rates_hz: sim
                .rates_hz
                .iter()
                .zip(&self.targets.rates_hz)
                .map(|(s, r)| (mean(s), mean(r)))
                .collect(),
        }
    }

    /// Smoothed rates of every simulated unit (Hz, `[n_mn][n_bins]`) and the force per bin (N)
    /// at knot values `v` (Hz) and σ (Hz): used to match units and initialise the scale.
    pub fn all_rates(&mut self, v: &[f64], sd: f64) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
        let ctx = Ctx::cpu();
        let k = self.knots.len();
        let drive = PiecewiseLinearDrive::new(
            self.knots.clone(),
            ctx.tensor(v.to_vec(), [1, k]),
            ctx.tensor(vec![sd], [1, 1]),
            self.cfg.drive_noise_spec(),
            self.cfg.rate_clip,
        );
        let weight = ctx.tensor(vec![self.weight_s], [1, 1]);
        let (force, spikes) = run_network(&self.cfg, &ctx, 1, Box::new(drive), weight)?;
        self.rollouts += 1;
        let (nb, spb, n) = (self.targets.n_bins, self.steps_per_bin, self.cfg.n_mn);
        let f = to_vec_f64(force.reshape([nb, spb]).mean_dim(1).reshape([nb]));
        let c = to_vec_f64(spikes.reshape([nb, spb, n]).sum_dim(1).reshape([nb, n]));
        let rates = (0..n)
            .map(|i| {
                let counts: Vec<f64> = (0..nb).map(|t| c[t * n + i]).collect();
                smooth_counts(&self.hann, &counts, self.targets.bin_s)
            })
            .collect();
        Ok((rates, f))
    }
}

/// Recruitment matching (module docs): for recorded units in recruitment order, the unused
/// simulated unit whose recruitment bin (first bin ≥ `recruit_hz`) is nearest; never-recruited
/// simulated units are not candidates. Error if there are fewer recruited simulated units than
/// recorded ones.
pub fn match_by_recruitment(
    sim_rates: &[Vec<f64>],
    recorded_recruit_bin: &[usize],
    recruit_hz: f64,
) -> Result<Vec<usize>> {
    let sim_rb: Vec<Option<usize>> = sim_rates
        .iter()
        .map(|r| first_at_least(r, recruit_hz, 0))
        .collect();
    let mut order: Vec<usize> = (0..recorded_recruit_bin.len()).collect();
    order.sort_by_key(|&j| recorded_recruit_bin[j]);
    let mut used = vec![false; sim_rates.len()];
    let mut out = vec![0; recorded_recruit_bin.len()];
    for j in order {
        let best = sim_rb
            .iter()
            .enumerate()
            .filter(|(i, rb)| !used[*i] && rb.is_some())
            .min_by_key(|(i, rb)| (rb.unwrap_or(0).abs_diff(recorded_recruit_bin[j]), *i))
            .map(|(i, _)| i)
            .ok_or_else(|| {
                Error::invalid(
                    "network.n_mn",
                    sim_rates.len(),
                    "a pool with at least as many recruited units as matched recorded units \
                     at the initial drive (raise n_mn or drive.init_peak_hz)",
                )
            })?;
        used[best] = true;
        out[j] = best;
    }
    Ok(out)
}

/// The objective wrapper for the optimisers.
pub struct RecordingObjective<'m> {
    /// The model.
    pub model: &'m mut RecordingModel,
}

impl Objective for RecordingObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.model.losses(&[x.to_vec()])?[0])
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.model.loss_and_grad(x)
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        self.model.losses(xs)
    }
}

/// Parameter set of the problem: knots (logit in [lower, upper] Hz), σ (logit in [0, upper]),
/// s (log in [lower, upper]).
pub fn param_set(spec: &RecordingFitSpec, init: &[f64], fit_noise: bool) -> Result<ParamSet> {
    let k = spec.drive.knots;
    let mut ps: Vec<ParamSpec> = (0..k)
        .map(|j| {
            ParamSpec::new(
                &format!("knot_{j}_hz"),
                spec.drive.lower_hz,
                spec.drive.upper_hz,
                init[j].clamp(spec.drive.lower_hz, spec.drive.upper_hz),
            )
        })
        .collect();
    if fit_noise {
        ps.push(ParamSpec::new(
            "noise_sd_hz",
            0.0,
            spec.drive.noise_upper_hz,
            init[k].clamp(0.0, spec.drive.noise_upper_hz),
        ));
    }
    let s = *init.last().unwrap_or(&1.0);
    ps.push(
        ParamSpec::new(
            "force_scale_pct_per_n",
            spec.scale.lower,
            spec.scale.upper,
            s.clamp(spec.scale.lower, spec.scale.upper),
        )
        .with_transform(Transform::Log),
    );
    ParamSet::new(ps)
}

/// Knot times of the spec (explicit, or K equally spaced over `[0, duration_s]`).
pub fn knot_times(spec: &DriveSpec, duration_s: f64) -> Result<KnotTimes> {
    match &spec.times_s {
        Some(t) => {
            if t.len() != spec.knots {
                return Err(Error::shape("drive.times_s", spec.knots, t.len()));
            }
            KnotTimes::new(t.clone())
        }
        None => KnotTimes::uniform(spec.knots, 0.0, duration_s),
    }
}

/// Initial knot values: explicit, or scaled to the target force at the knot times.
pub fn initial_knots(spec: &DriveSpec, knots: &KnotTimes, targets: &Targets) -> Result<Vec<f64>> {
    if let Some(v) = &spec.init_hz {
        if v.len() != knots.len() {
            return Err(Error::shape("drive.init_hz", knots.len(), v.len()));
        }
        check::all_finite("drive.init_hz", v)?;
        return Ok(v.clone());
    }
    let fmax = targets.force_pct.iter().cloned().fold(f64::MIN, f64::max);
    Ok(knots
        .times_s()
        .iter()
        .map(|&t| {
            let b = ((t / targets.bin_s) as usize).min(targets.n_bins - 1);
            let u = if fmax > 0.0 {
                (targets.force_pct[b] / fmax).clamp(0.0, 1.0)
            } else {
                0.0
            };
            spec.init_floor_hz + (spec.init_peak_hz - spec.init_floor_hz) * u
        })
        .collect())
}

/// Sets up the model from a spec and targets: knot times, initial drive, unit matching (at the
/// initial drive) and the least-squares initial force scale. Returns the model and `x0`.
pub fn setup(spec: &RecordingFitSpec, targets: Targets) -> Result<(RecordingModel, Vec<f64>)> {
    spec.validate()?;
    let duration = targets.n_bins as f64 * targets.bin_s;
    let knots = knot_times(&spec.drive, duration)?;
    let v0 = initial_knots(&spec.drive, &knots, &targets)?;
    let n_units = targets.units.len();
    let provisional = match &spec.data.matching {
        Matching::Units(u) => u.clone(),
        Matching::Rule(_) => (0..n_units).collect(),
    };
    let recruit = targets.recruit_bin.clone();
    let mut model = RecordingModel::new(
        &spec.network,
        knots,
        targets,
        provisional,
        spec.drive.fit_noise,
        spec.drive.noise_sd_hz,
        spec.drive.weight_s,
        spec.data.rate_weight,
        spec.data.smooth_s,
        spec.max_batch,
    )?;
    let (rates, f_n) = model.all_rates(&v0, spec.drive.noise_sd_hz)?;
    if matches!(spec.data.matching, Matching::Rule(_)) {
        model.matched = match_by_recruitment(&rates, &recruit, spec.data.recruit_hz)?;
    }
    let lb = model.targets.loss_bins.clone();
    let (mut num, mut den) = (0.0, 0.0);
    for b in lb {
        num += f_n[b] * model.targets.force_pct[b];
        den += f_n[b] * f_n[b];
    }
    if den.is_nan() || den <= 0.0 {
        return Err(Error::invalid(
            "network.n_mn",
            model.cfg.n_mn,
            "a pool that produces force at the initial drive (raise n_mn or drive.init_peak_hz)",
        ));
    }
    let s0 = spec.scale.init.unwrap_or(num / den);
    let mut x0 = v0;
    if spec.drive.fit_noise {
        x0.push(spec.drive.noise_sd_hz);
    }
    x0.push(s0.clamp(spec.scale.lower, spec.scale.upper));
    Ok((model, x0))
}

/// Runs the recording calibration of the spec at `spec_path` and writes its report.
pub fn run_recording_calibration(spec_path: &Path, out_dir: &Path) -> Result<RunSummary> {
    let spec = RecordingFitSpec::load(spec_path)?;
    let path = super::spec::resolve_data_path(spec.data.path.as_deref(), spec_path);
    let rec = Recording::load(path)?;
    let targets = Targets::from_recording(&spec.data, &rec)?;
    run_recording_spec(&spec, targets, out_dir)
}

/// Runs every method of `spec` on `targets` from the same initial point, each under the same
/// wall-time budget, and writes the report (summary.json, report.md, loss plots, `force_fit.png`,
/// `rates_fit.png`, `drive_fit.png`, `transfer_hard.png`).
pub fn run_recording_spec(
    spec: &RecordingFitSpec,
    targets: Targets,
    out_dir: &Path,
) -> Result<RunSummary> {
    let t0 = Instant::now();
    let mut spec = spec.clone();
    let mut gain_table = Vec::new();
    if spec.surrogate.auto_gain {
        let (g, table) = calibrate_smooth_gain(
            &spec.network,
            &spec.surrogate.drives_hz,
            spec.surrogate.duration_s,
            spec.surrogate.iterations,
        )?;
        spec.network.smooth_synaptic_gain = g;
        gain_table = table;
    }
    let gain_s = t0.elapsed().as_secs_f64();
    let spec = &spec;
    let (mut model, x0) = setup(spec, targets)?;
    let setup_s = t0.elapsed().as_secs_f64() - gain_s;
    let params = param_set(spec, &x0, spec.drive.fit_noise)?;
    let loss0 = model.losses(std::slice::from_ref(&x0))?[0];
    let mut fits: Vec<FitReport> = Vec::new();
    for method in &spec.methods {
        let mut obj = RecordingObjective { model: &mut model };
        let rep = minimize(&mut obj, &params, method, None, Some(spec.time_budget_s))?;
        fits.push(rep);
    }
    let best = fits
        .iter()
        .min_by(|a, b| a.loss_best.total_cmp(&b.loss_best))
        .map(|f| f.x_best.clone())
        .unwrap_or_else(|| x0.clone());
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io {
        path: out_dir.display().to_string(),
        source: e,
    })?;
    let quality = plot_fit(&mut model, &x0, &fits, out_dir)?;
    let extra = serde_json::json!({
        "initial_loss": loss0,
        "initial_x": x0,
        "best_x": best,
        "matched_sim_units": model.matched,
        "recorded_units": model.targets.units,
        "knot_times_s": model.knots.times_s(),
        "setup_s": setup_s,
        "smooth_synaptic_gain": spec.network.smooth_synaptic_gain,
        "gain_calibration": { "auto": spec.surrogate.auto_gain, "wall_s": gain_s,
            "drive_hz_hard_n_smooth_n": gain_table },
        "quality": quality.iter().map(|(n, q)| serde_json::json!({"point": n, "force_rmse_pct": q.force_rmse_pct,
            "late_rates_hz_sim_vs_recorded": q.late_rates_hz})).collect::<Vec<_>>(),
        "time_budget_s_per_method": spec.time_budget_s,
        "network": { "n_mn": model.cfg.n_mn, "n_dd": model.cfg.n_dd, "dt_s": model.cfg.dt_s,
                     "duration_s": model.cfg.duration_s, "model": "smooth (rate-mode) fast LIF pool" },
        "units": "force %MVC, rates Hz, knots Hz, scale %MVC/N",
    });
    let summary = RunSummary {
        problem: spec.name.clone().unwrap_or_else(|| "recording".into()),
        description: format!(
            "Piecewise-linear drive ({} knots) + noise + force scale fitted to the recorded force \
             (%MVC) and {} matched units' smoothed rates over bins {:?} of {:.4} s; smooth network \
             (exact autodiff gradient); every method gets {} s of wall time. Initial loss {:.4}.",
            model.knots.len(),
            model.matched.len(),
            model.targets.loss_bins,
            model.targets.bin_s,
            spec.time_budget_s,
            loss0
        ),
        fits,
        extra,
    };
    write_report(out_dir, &summary)?;
    Ok(summary)
}

/// Force, rate and drive plots of the initial point and of each method's best point.
fn plot_fit(
    model: &mut RecordingModel,
    x0: &[f64],
    fits: &[FitReport],
    dir: &Path,
) -> Result<Vec<(String, Quality)>> {
    let tb = model.targets.bin_s;
    let lb = model.targets.loss_bins.clone();
    let series = |name: &str, v: &[f64]| {
        Series::new(
            name,
            lb.clone().map(|b| ((b as f64 + 0.5) * tb, v[b])).collect(),
        )
    };
    let mut force = vec![series("recorded", &model.targets.force_pct)];
    let mut rates: Vec<Series> = model
        .targets
        .rates_hz
        .iter()
        .zip(&model.targets.units)
        .map(|(r, u)| series(&format!("recorded unit {u}"), r))
        .collect();
    let k = model.knots.len();
    let t: Vec<f64> = (0..model.targets.n_bins)
        .map(|b| (b as f64 + 0.5) * tb)
        .collect();
    let mut drive = Vec::new();
    let mut points: Vec<(String, Vec<f64>)> = vec![("initial".into(), x0.to_vec())];
    if let Some(best) = fits
        .iter()
        .min_by(|a, b| a.loss_best.total_cmp(&b.loss_best))
    {
        points.push((format!("{} (best)", best.method), best.x_best.clone()));
    }
    let last = points.len() - 1;
    let mut quality = Vec::new();
    let mut transfer = vec![series("recorded", &model.targets.force_pct)];
    for (p, (name, x)) in points.iter().enumerate() {
        let sim = model.simulate(x)?;
        force.push(series(&format!("simulated, {name}"), &sim.force_pct));
        quality.push((format!("smooth model, {name}"), model.quality(&sim)));
        if p == last && p > 0 {
            let hard = model.simulate_hard(x)?;
            transfer.push(series(
                &format!("smooth model (fitted), {name}"),
                &sim.force_pct,
            ));
            transfer.push(series(
                "hard spiking model, same drive and scale",
                &hard.force_pct,
            ));
            quality.push((
                format!("hard spiking model, {name} drive"),
                model.quality(&hard),
            ));
        }
        // Rates of the best point only (the initial ones would double an already busy plot).
        if p == last {
            for (r, i) in sim.rates_hz.iter().zip(&model.matched) {
                rates.push(series(&format!("sim MN {i}, {name}"), r));
            }
        }
        let d = model.knots.eval(&x[..k], &t);
        drive.push(Series::new(
            format!("drive, {name}"),
            t.iter().copied().zip(d).collect(),
        ));
    }
    line_plot(
        &dir.join("force_fit.png"),
        "Force: recorded vs simulated",
        "time (s)",
        "force (%MVC)",
        &force,
        Scale::Linear,
        Scale::Linear,
    )?;
    line_plot(
        &dir.join("rates_fit.png"),
        "Smoothed discharge rates: recorded vs matched simulated units",
        "time (s)",
        "rate (Hz)",
        &rates,
        Scale::Linear,
        Scale::Linear,
    )?;
    if transfer.len() > 1 {
        line_plot(
            &dir.join("transfer_hard.png"),
            "Does the smooth-model fit transfer to the hard spiking model?",
            "time (s)",
            "force (%MVC)",
            &transfer,
            Scale::Linear,
            Scale::Linear,
        )?;
    }
    line_plot(
        &dir.join("drive_fit.png"),
        "Fitted piecewise-linear drive (without noise)",
        "time (s)",
        "drive (Hz)",
        &drive,
        Scale::Linear,
        Scale::Linear,
    )?;
    Ok(quality)
}
