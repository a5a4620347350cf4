//! Joint fit of the oscillating-drive parameters to force and firing statistics (issue 5 item 2),
//! and how gradient and derivative-free methods scale with the number of fitted parameters.
//!
//! **Model.** The smooth network ([`super::smooth`], exact autodiff gradients) or, with
//! `[gradient] model = "spiking"`, the spiking network ([`spiking`]: event-time fast pool, CRN
//! central-difference gradients), driven by
//! `r(t) = clip(dc + A·sin(2π f t) + σ·ξ(t), 0, ∞)` (Hz), synaptic weight w (µS in the
//! parameter vector, S inside). Parameters, in fitting order: `dc_hz`, `amp_hz`, `weight_us`,
//! `noise_sd_hz`; a run of dimension d fits the first d and holds the rest at the truth.
//!
//! **Observables** over the second half of the run (n steps of dt):
//! - mean force `F̄ = mean_t F(t)` (N);
//! - force amplitude at the drive frequency `A_f = (2/n)·|Σ_t (F(t) − F̄)·e^{−i2πf t}|` (N)
//!   (√ of the one-sided power at f);
//! - per-unit rate `r_i = Σ_t s_i(t) / (n·dt)` (Hz); soft activity weight
//!   `a_i = σ((r_i − r_on)/κ)` (r_on = 2 Hz, κ = 0.5 Hz: MyoGen counts units with ≥ 2 spikes and
//!   FR ≥ 0.5 Hz; the smooth model's silent units sit at σ(−β)/dt ≈ 0.45 Hz at dt = 0.1 ms);
//! - pool mean rate `m = Σ a_i r_i / Σ a_i` and spread `sd = √(Σ a_i (r_i − m)² / Σ a_i)` (Hz).
//!
//! **Loss** `L = Σ_k ((y_k − y*_k)/y*_k)²` over the four observables, with targets `y*` from a
//! truth parameter set (synthetic, so the optimum L = 0 is known) or given explicitly
//! (e.g. MyoGen's finetune targets 16.82 ± 2.5 Hz).

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Tensor, activation::sigmoid};
use serde::{Deserialize, Serialize};

use super::objective::Objective;
use super::optimize::{Budget, FitReport, Method, minimize_within};
use super::params::ParamSet;
use super::plot::{Scale, Series, line_plot};
use super::report::{RunSummary, write_report};
use super::smooth::{check_finite_values, gradients, run_network, smooth_config};
use super::spec::FitModel;
use crate::drive::{DriveParams, DriveRate};
use crate::error::{Error, Result, check};
use crate::kernel::{Ctx, Precision, to_vec_f64};
use crate::network::NetworkConfig;

pub mod spiking;
pub use spiking::{SpikingJoint, SpikingJointObjective};

/// The four observables ([`OBSERVABLES`]) of full parameter rows ([`PARAM_NAMES`] order), on
/// either network.
pub trait JointObservables {
    /// Observables `[B][4]` of `rows` `[B][4]` (force N, rates Hz).
    fn evaluate(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>>;
    /// The network, in words (for reports).
    fn describe(&self) -> String;
    /// The loss `L(x)` of [`loss_of`] with the first `x.len()` parameters free, the rest at
    /// `base`, and this network's gradient (settings in `gradient`).
    fn objective<'a>(
        &'a self,
        targets: [f64; 4],
        base: Vec<f64>,
        gradient: &JointGradientSpec,
    ) -> Box<dyn Objective + 'a>;
}

/// The full parameter row: `base` with its first `x.len()` entries replaced by `x`.
pub fn full_row(base: &[f64], x: &[f64]) -> Vec<f64> {
    let mut r = base.to_vec();
    r[..x.len()].copy_from_slice(x);
    r
}

/// `L = Σ_k ((y_k − y*_k)/y*_k)²`.
pub fn loss_of(y: &[f64], targets: &[f64; 4]) -> f64 {
    y.iter()
        .zip(targets)
        .map(|(v, t)| ((v - t) / t).powi(2))
        .sum()
}

/// Names of the four parameters, in fitting order.
pub const PARAM_NAMES: [&str; 4] = ["dc_hz", "amp_hz", "weight_us", "noise_sd_hz"];
/// Names of the four observables.
pub const OBSERVABLES: [&str; 4] = ["mean_force_n", "amp_at_f_n", "rate_mean_hz", "rate_sd_hz"];
/// Rate above which a unit counts as active (Hz).
pub const ACTIVE_HZ: f64 = 2.0;
/// Losses below this are drawn at it on the log-scale scaling plot (an exact 0 in f32).
const PLOT_FLOOR: f64 = 1e-14;
/// Width of the soft activity threshold (Hz).
pub const ACTIVE_WIDTH_HZ: f64 = 0.5;

/// One point of the parameter space (physical units).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointPoint {
    /// DC (Hz).
    pub dc_hz: f64,
    /// Oscillation amplitude (Hz).
    pub amp_hz: f64,
    /// Synaptic weight (µS).
    pub weight_us: f64,
    /// Drive noise SD (Hz).
    pub noise_sd_hz: f64,
}

impl JointPoint {
    /// As a vector in [`PARAM_NAMES`] order.
    pub fn to_vec(self) -> Vec<f64> {
        vec![self.dc_hz, self.amp_hz, self.weight_us, self.noise_sd_hz]
    }
}

/// Explicit target overrides (any subset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOverrides {
    /// Mean force (N).
    pub mean_force_n: Option<f64>,
    /// Amplitude at f (N).
    pub amp_at_f_n: Option<f64>,
    /// Pool mean rate (Hz).
    pub rate_mean_hz: Option<f64>,
    /// Pool rate SD (Hz).
    pub rate_sd_hz: Option<f64>,
}

fn default_freq() -> f64 {
    20.0
}
fn default_max_batch() -> usize {
    8
}
fn default_dims() -> Vec<usize> {
    vec![1, 2, 3, 4]
}
fn default_network() -> NetworkConfig {
    NetworkConfig {
        n_mn: 100,
        n_dd: 400,
        duration_s: 3.0,
        ..NetworkConfig::default()
    }
}

/// A joint calibration problem (TOML `kind = "joint"`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointSpec {
    /// `"joint"`.
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Network (made smooth).
    #[serde(default = "default_network")]
    pub network: NetworkConfig,
    /// Oscillation frequency (Hz), fixed.
    #[serde(default = "default_freq")]
    pub freq_hz: f64,
    /// Parameters generating the targets.
    pub truth: JointPoint,
    /// Starting point of every method.
    pub start: JointPoint,
    /// Lower bounds.
    pub lower: JointPoint,
    /// Upper bounds.
    pub upper: JointPoint,
    /// Target overrides.
    #[serde(default)]
    pub targets: TargetOverrides,
    /// Dimensions to run (each d fits the first d parameters).
    #[serde(default = "default_dims")]
    pub dims: Vec<usize>,
    /// Wall-time budget per method and dimension (s); optional (tests use `max_evals`).
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// Loss-evaluation budget per method and dimension (a population of B counts B); optional.
    #[serde(default)]
    pub max_evals: Option<usize>,
    /// Largest batch per population rollout.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Network of the loss and its gradient (default: smooth, autodiff).
    #[serde(default)]
    pub gradient: JointGradientSpec,
    /// Methods.
    pub methods: Vec<Method>,
}

/// The model of the joint fit and its gradient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JointGradientSpec {
    /// Network of the loss: smooth (exact autodiff) or spiking (event-time fast pool, CRN
    /// central differences; see [`spiking`]).
    pub model: FitModel,
    /// Central-difference step of dc, amplitude and noise σ (Hz; spiking model).
    pub h_hz: f64,
    /// Relative central-difference step of the synaptic weight (spiking model).
    pub h_weight_rel: f64,
}

impl Default for JointGradientSpec {
    fn default() -> Self {
        Self {
            model: FitModel::Smooth,
            h_hz: 1.0,
            h_weight_rel: 0.02,
        }
    }
}

impl JointSpec {
    /// The shared budget of every method at every dimension.
    pub fn budget(&self) -> Budget {
        Budget {
            max_evals: self.max_evals,
            time_s: self.time_budget_s,
        }
    }

    /// Parses TOML and validates.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let s: Self = super::spec::parse_toml(text, "joint problem spec")?;
        s.validate()?;
        Ok(s)
    }

    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = super::spec::read_text(path)?;
        Self::from_toml_str(&text)
    }

    /// Checks every field (typed errors naming it).
    pub fn validate(&self) -> Result<()> {
        if self.kind != "joint" {
            return Err(Error::invalid("kind", &self.kind, "joint"));
        }
        self.network.validate()?;
        check::positive("freq_hz", self.freq_hz)?;
        check::positive("gradient.h_hz", self.gradient.h_hz)?;
        check::positive("gradient.h_weight_rel", self.gradient.h_weight_rel)?;
        self.budget().validate()?;
        check::count_at_least("max_batch", self.max_batch, 1)?;
        check::count_at_least("methods", self.methods.len(), 1)?;
        crate::fit::optimize::refuse_least_squares(&self.methods, "the joint problem")?;
        check::count_at_least("dims", self.dims.len(), 1)?;
        for &d in &self.dims {
            if !(1..=4).contains(&d) {
                return Err(Error::invalid("dims", d, "1..=4"));
            }
        }
        super::spec::check_points_in_bounds(
            &PARAM_NAMES,
            &self.lower.to_vec(),
            &self.upper.to_vec(),
            &[
                ("truth", self.truth.to_vec()),
                ("start", self.start.to_vec()),
            ],
        )?;
        if self.lower.weight_us <= 0.0 {
            return Err(Error::invalid(
                "lower.weight_us",
                self.lower.weight_us,
                "> 0",
            ));
        }
        if self.lower.noise_sd_hz < 0.0 {
            return Err(Error::invalid(
                "lower.noise_sd_hz",
                self.lower.noise_sd_hz,
                ">= 0",
            ));
        }
        let t = &self.targets;
        for (name, v) in [
            ("targets.mean_force_n", t.mean_force_n),
            ("targets.amp_at_f_n", t.amp_at_f_n),
            ("targets.rate_mean_hz", t.rate_mean_hz),
            ("targets.rate_sd_hz", t.rate_sd_hz),
        ] {
            if let Some(v) = v {
                check::positive(name, v)?;
            }
        }
        Ok(())
    }
}

/// The smooth network under the oscillating drive → the four observables.
pub struct JointModel {
    /// Smooth network.
    pub cfg: NetworkConfig,
    /// Oscillation frequency (Hz).
    pub freq_hz: f64,
    /// Largest batch per rollout.
    pub max_batch: usize,
    /// Float precision of every rollout (f32 by default; f64 for gradient checks).
    pub precision: Precision,
}

impl JointModel {
    /// From a network (made smooth).
    pub fn new(cfg: &NetworkConfig, freq_hz: f64, max_batch: usize) -> Result<Self> {
        let cfg = smooth_config(cfg);
        cfg.validate()?;
        check::positive("freq_hz", freq_hz)?;
        Ok(Self {
            cfg,
            freq_hz,
            max_batch: max_batch.max(1),
            precision: Precision::F32,
        })
    }

    /// The same model in another float precision (f64 for gradient checks).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The CPU context of this model's precision (no autodiff).
    pub fn ctx(&self) -> Ctx {
        Ctx::cpu().with_precision(self.precision)
    }

    /// Observables `[B, 4]` (module docs) for full parameter rows `[B, 4]` given as tensors
    /// `dc, amp, weight_us, sd` (each `[B, 1]`).
    fn observables(&self, ctx: &Ctx, p: [Tensor<2>; 4]) -> Result<Tensor<2>> {
        let [dc, amp, w_us, sd] = p;
        let b = dc.dims()[0];
        let drive = DriveParams {
            dc_hz: dc,
            amp_hz: amp,
            freq_hz: ctx.tensor(vec![self.freq_hz], [1, 1]),
            phase_rad: ctx.tensor(vec![0.0], [1, 1]),
            noise_sd_hz: sd,
        };
        drive.validate(b)?;
        let stage = DriveRate::new(drive, self.cfg.drive_noise_spec(), self.cfg.rate_clip);
        let (force, spikes) = run_network(&self.cfg, ctx, b, Box::new(stage), w_us * 1e-6)?;
        let t = force.dims()[0];
        let h = t / 2;
        let n = t - h;
        let dt = self.cfg.dt_s;
        let f = force.slice([h..t, 0..b, 0..1]).reshape([n, b]);
        let mean = f.clone().mean_dim(0); // [1, B]
        let omega = 2.0 * std::f64::consts::PI * self.freq_hz * dt;
        let cos: Tensor<2> = ctx.tensor((h..t).map(|k| (omega * k as f64).cos()).collect(), [1, n]);
        let sin: Tensor<2> = ctx.tensor((h..t).map(|k| (omega * k as f64).sin()).collect(), [1, n]);
        let fc = f.clone() - mean.clone();
        let re = cos.matmul(fc.clone());
        let im = sin.matmul(fc);
        // + 1e-20 (negligible against re² + im²): keeps the derivative of √ finite at A = 0.
        let amp_f = (re.powi_scalar(2) + im.powi_scalar(2) + 1e-20).sqrt() * (2.0 / n as f64);
        let n_mn = self.cfg.n_mn;
        let rates = spikes
            .slice([h..t, 0..b, 0..n_mn])
            .sum_dim(0)
            .reshape([b, n_mn])
            * (1.0 / (n as f64 * dt));
        let a = sigmoid((rates.clone() - ACTIVE_HZ) * (1.0 / ACTIVE_WIDTH_HZ));
        let na = a.clone().sum_dim(1); // [B, 1]
        let inv_na = na.recip();
        let m = (a.clone() * rates.clone()).sum_dim(1) * inv_na.clone();
        let var = (a * (rates - m.clone()).powi_scalar(2)).sum_dim(1) * inv_na;
        let sd_r = (var + 1e-12).sqrt();
        Ok(Tensor::cat(
            vec![mean.reshape([b, 1]), amp_f.reshape([b, 1]), m, sd_r],
            1,
        ))
    }

    fn tensors(ctx: &Ctx, rows: &[Vec<f64>]) -> [Tensor<2>; 4] {
        let b = rows.len();
        std::array::from_fn(|i| ctx.tensor(rows.iter().map(|r| r[i]).collect(), [b, 1]))
    }

    /// Observables of full parameter rows (batched, in the model's precision, no tape), `[B][4]`.
    pub fn evaluate(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        JointObservables::evaluate(self, rows)
    }
}

impl JointObservables for JointModel {
    fn describe(&self) -> String {
        format!(
            "the smooth network ({} MNs, {} s, dt {} s; exact autodiff gradients)",
            self.cfg.n_mn, self.cfg.duration_s, self.cfg.dt_s
        )
    }

    fn objective<'a>(
        &'a self,
        targets: [f64; 4],
        base: Vec<f64>,
        _gradient: &JointGradientSpec,
    ) -> Box<dyn Objective + 'a> {
        Box::new(JointObjective {
            model: self,
            targets,
            base,
        })
    }

    fn evaluate(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let ctx = self.ctx();
        let mut out = Vec::new();
        for chunk in rows.chunks(self.max_batch) {
            let y = to_vec_f64(self.observables(&ctx, Self::tensors(&ctx, chunk))?);
            out.extend(y.chunks(4).map(|c| c.to_vec()));
        }
        Ok(out)
    }
}

/// `L(x) = Σ_k ((y_k(x) − y*_k)/y*_k)²` with the first d parameters free.
pub struct JointObjective<'m> {
    /// Model.
    pub model: &'m JointModel,
    /// Targets y*.
    pub targets: [f64; 4],
    /// Values of the held parameters (full row; the first d are overwritten).
    pub base: Vec<f64>,
}

impl Objective for JointObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.values(&[x.to_vec()])?[0])
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let ctx = self.model.ctx().autodiff();
        let full = full_row(&self.base, x);
        let p: [Tensor<2>; 4] = std::array::from_fn(|i| {
            let t = ctx.tensor(vec![full[i]], [1, 1]);
            if i < x.len() { t.require_grad() } else { t }
        });
        let y = self.model.observables(&ctx, p.clone())?;
        let tgt = ctx.tensor(self.targets.to_vec(), [1, 4]);
        let loss = ((y - tgt.clone()) / tgt).powi_scalar(2).sum();
        let value = to_vec_f64(loss.clone())[0];
        let refs: Vec<&Tensor<2>> = p.iter().take(x.len()).collect();
        let g: Vec<f64> = gradients(loss, &refs).into_iter().map(|v| v[0]).collect();
        check_finite_values("joint loss", &[value])?;
        check_finite_values("joint gradient", &g)?;
        Ok((value, g))
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let rows: Vec<Vec<f64>> = xs.iter().map(|x| full_row(&self.base, x)).collect();
        let ys = self.model.evaluate(&rows)?;
        let l: Vec<f64> = ys.iter().map(|y| loss_of(y, &self.targets)).collect();
        check_finite_values("joint loss", &l)?;
        Ok(l)
    }
}

/// Targets: the truth's observables, with any explicit override.
pub fn targets(spec: &JointSpec, model: &dyn JointObservables) -> Result<[f64; 4]> {
    let y = model.evaluate(&[spec.truth.to_vec()])?.remove(0);
    let o = &spec.targets;
    let t = [
        o.mean_force_n.unwrap_or(y[0]),
        o.amp_at_f_n.unwrap_or(y[1]),
        o.rate_mean_hz.unwrap_or(y[2]),
        o.rate_sd_hz.unwrap_or(y[3]),
    ];
    for (name, v) in OBSERVABLES.iter().zip(t) {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::invalid(
                format!("targets.{name}"),
                v,
                "> 0 (the truth produces no force or no active units: raise truth.dc_hz or weight)",
            ));
        }
    }
    Ok(t)
}

/// The parameter set of dimension d (logit transforms inside the bounds).
pub fn param_set(spec: &JointSpec, d: usize) -> Result<ParamSet> {
    ParamSet::in_box(
        &PARAM_NAMES[..d],
        &spec.lower.to_vec(),
        &spec.upper.to_vec(),
        &spec.start.to_vec(),
    )
}

/// Runs the joint calibration spec at `spec_path`.
pub fn run_joint_calibration(spec_path: &Path, out_dir: &Path) -> Result<RunSummary> {
    run_joint_spec(&JointSpec::load(spec_path)?, out_dir)
}

/// Runs every method at every dimension under the same shared budget and writes the report
/// (summary.json with a `scaling` table, report.md, loss plots, `scaling.png`).
pub fn run_joint_spec(spec: &JointSpec, out_dir: &Path) -> Result<RunSummary> {
    spec.validate()?;
    let model: Box<dyn JointObservables> = match spec.gradient.model {
        FitModel::Smooth => Box::new(JointModel::new(
            &spec.network,
            spec.freq_hz,
            spec.max_batch,
        )?),
        FitModel::Spiking => Box::new(SpikingJoint::new(&spec.network, spec.freq_hz)?),
    };
    let t0 = Instant::now();
    let spin = crate::progress::spinner("targets");
    spin.set_message("observables of the truth");
    let tgt = targets(spec, model.as_ref())?;
    spin.finish_and_clear();
    let target_s = t0.elapsed().as_secs_f64();
    let base = spec.truth.to_vec();
    let mut fits: Vec<FitReport> = Vec::new();
    let mut table = Vec::new();
    for &d in &spec.dims {
        let params = param_set(spec, d)?;
        for method in &spec.methods {
            if matches!(method, Method::Brent { .. }) && d != 1 {
                continue;
            }
            let mut obj = model.objective(tgt, base.clone(), &spec.gradient);
            let mut rep = minimize_within(obj.as_mut(), &params, method, None, spec.budget())?;
            let y = model.evaluate(&[full_row(&base, &rep.x_best)])?.remove(0);
            table.push(serde_json::json!({
                "dim": d, "method": method.name(), "loss": rep.loss_best,
                "evaluations": rep.evaluations, "gradients": rep.gradients,
                "wall_s": rep.wall_s, "x": rep.x_best, "observables": y,
            }));
            rep.method = format!("{} d={d}", method.name());
            fits.push(rep);
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io {
        path: out_dir.display().to_string(),
        source: e,
    })?;
    let mut series = Vec::new();
    for method in &spec.methods {
        let pts: Vec<(f64, f64)> = table
            .iter()
            .filter(|r| r["method"] == method.name())
            .map(|r| {
                (
                    r["dim"].as_f64().unwrap_or(0.0),
                    r["loss"].as_f64().unwrap_or(f64::NAN).max(PLOT_FLOOR),
                )
            })
            .collect();
        if !pts.is_empty() {
            series.push(Series::new(method.name(), pts));
        }
    }
    line_plot(
        &out_dir.join("scaling.png"),
        &format!(
            "Best loss with {} per method vs dimension (0 shown at 1e-14)",
            spec.budget().describe()
        ),
        "fitted parameters d",
        "loss",
        &series,
        Scale::Linear,
        Scale::Log,
    )?;
    let summary = RunSummary {
        problem: spec.name.clone().unwrap_or_else(|| "joint".into()),
        description: format!(
            "Joint fit of (dc, amplitude, weight, noise) to mean force, force amplitude at {} Hz, \
             pool mean rate and rate SD on {}; d = first d parameters free, the rest at the \
             truth; {} per method and d.",
            spec.freq_hz,
            model.describe(),
            spec.budget().describe()
        ),
        fits,
        extra: serde_json::json!({
            "targets": OBSERVABLES.iter().zip(tgt).map(|(n, v)| (n.to_string(), v))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "truth": spec.truth, "start": spec.start, "scaling": table,
            "target_run_s": target_s,
            "units": "force N, rates Hz, weight µS",
        }),
    };
    write_report(out_dir, &summary)?;
    Ok(summary)
}
