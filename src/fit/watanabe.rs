//! Watanabe oscillating-DC calibration (MODEL.md §7.1, issue 5 item 1).
//!
//! Find the DC offset `dc` (Hz) of the oscillating descending drive
//! `r(t) = clip(dc + A·sin(2π f t) + σ·ξ(t), 0, ∞)` (A = 20 Hz, f = 20 Hz, ξ ~ N(0,1)) such that
//! the mean muscle force over the second half of the run matches a reference:
//!
//! `L(dc) = |F̄(dc) − F_ref| / F_ref`,  `F̄ = mean_{t ≥ T/2} F(t)` (N).
//!
//! Reference (MyoGen's `01_compute_baseline_force.py`): a constant drive `dc_ref + max(0, N(0,1))`
//! (40 Hz) and the mean force over its second half. Two flaws of MyoGen's example are fixed, not
//! copied: the force is absolute (N) by default — MyoGen divides each run's force by that run's
//! own maximum (× 100 N), i.e. matches a mean-to-peak ratio; that is available as
//! [`Normalisation::MyogenPerRunMax`] for the side-by-side — and the network, inputs and noise
//! are fixed across evaluations (common random numbers), so `F̄(dc)` is a deterministic function.
//!
//! Methods (one [`WatanabeModel`] serves them all, so the comparison is fair):
//! - derivative-free with MyoGen's 25-evaluation budget: Brent, Nelder–Mead, particle swarm (the
//!   whole swarm in one batched rollout), random search (Optuna-like);
//! - `newton_fd`: safeguarded Newton on the residual `F̄(dc) − F_ref` whose slope is a *batched
//!   central difference* — one rollout of the batch `{dc − h, dc, dc + h}` (the batch axis as the
//!   derivative device; this is NOT autodiff);
//! - `secant`: the same safeguarded root-finder with the slope from one batched forward
//!   difference `{dc, dc + h}` at the start and secant slopes from consecutive hard evaluations
//!   afterwards;
//! - `secant_chord`: the same, but the first slope is the chord from `(lower, 0)` (no motor
//!   unit fires at the lower bound) to the first point, so no evaluation is spent on it;
//! - `newton_autodiff`: the slope model is the EXACT autodiff derivative of the smooth
//!   (`spike_mode = rate`) network at the current iterate (one smooth forward + backward), applied
//!   to the hard objective, with a bracket (bisection) safeguard;
//! - `smooth_lbfgs`: L-BFGS with exact autodiff gradients on the smooth model's own problem (its
//!   reference is the smooth model's constant-drive force).
//!
//! The hard spiking model's force is not differentiable (its spikes have zero derivative) and the
//! surrogate/pathwise BPTT gradients of this network are biased by 70–15000× (measured; see the
//! report); the smooth model's gradient is exact but for a different forward model (7.5 N vs
//! 31.8 N at 40 Hz). All numbers are in SI units at this API (Hz, s, N, S).

use std::path::Path;
use std::time::Instant;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::journal::Journal;
use super::objective::{Evaluation, Objective};
use super::optimize::{Budget, FitReport, Method, minimize_within};
use super::params::{ParamSet, ParamSpec, Transform};
use super::report::{RunSummary, write_report};
use crate::drive::generator::GeneratorMode;
use crate::drive::rate::{DriveParams, NoiseKind};
use crate::error::{Error, Result, check};
use crate::event::reference::{default_threads, par_map};
use crate::event::{EventDrive, EventNetwork, RunOptions};
use crate::kernel::{Ctx, ExecPath, Precision, to_vec_f64};
use crate::network::{MYOGEN_WEIGHT_S, MembraneModel, MuscleParams, NetworkConfig, build};
use crate::neuron::spike::SpikeMode;

/// How the force is turned into the matched quantity.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalisation {
    /// Absolute force in newtons (default).
    #[default]
    Absolute,
    /// MyoGen's example: each run's force divided by that run's own maximum, times 100 N
    /// (compatibility option; matches a mean-to-peak ratio, not a force).
    MyogenPerRunMax,
}

/// Which implementation of the spiking network evaluates `F̄(dc)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// The burn tensor network (fused or tape path; spikes on the step grid; batched rows).
    #[default]
    Tensor,
    /// The event-time network (`crate::event`: fast pool only, spikes at the interpolated
    /// threshold crossing, so `F̄(dc)` is continuous under common random numbers); each row is
    /// one run, rows run in parallel on every core.
    Event,
}

/// Drive protocol of the reference run.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceProtocol {
    /// MyoGen's reference: constant `dc + max(0, N(0,1))`.
    #[default]
    Constant,
    /// The task's own oscillating protocol at a known `dc` (synthetic truth recovery).
    Oscillating,
}

/// The reference force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceSpec {
    /// Reference drive protocol.
    pub protocol: ReferenceProtocol,
    /// Drive DC of the reference run (Hz).
    pub dc_hz: f64,
    /// Duration of the reference run (s); default: the task's duration (MyoGen uses 10 s).
    pub duration_s: Option<f64>,
    /// A given target force (N, after normalisation) instead of a reference run.
    pub force_n: Option<f64>,
}

impl Default for ReferenceSpec {
    fn default() -> Self {
        Self {
            protocol: ReferenceProtocol::Constant,
            dc_hz: 40.0,
            duration_s: None,
            force_n: None,
        }
    }
}

/// The oscillating task drive `dc + amp·sin(2π·freq·t) + noise_sd·N(0,1)` (Hz).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolSpec {
    /// Oscillation amplitude (Hz).
    pub amp_hz: f64,
    /// Oscillation frequency (Hz).
    pub freq_hz: f64,
    /// Noise standard deviation (Hz).
    pub noise_sd_hz: f64,
}

impl Default for ProtocolSpec {
    fn default() -> Self {
        Self {
            amp_hz: 20.0,
            freq_hz: 20.0,
            noise_sd_hz: 1.0,
        }
    }
}

/// The fitted DC parameter (Hz).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DcSpec {
    /// Lower bound (Hz).
    pub lower: f64,
    /// Upper bound (Hz).
    pub upper: f64,
    /// Start (Hz).
    pub init: f64,
}

impl Default for DcSpec {
    fn default() -> Self {
        Self {
            lower: 1.0,
            upper: 100.0,
            init: 50.0,
        }
    }
}

/// The smooth (rate-mode) network used for autodiff slopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmoothSpec {
    /// Sharpness β of the rate spike function (per mV).
    pub beta: f64,
}

impl Default for SmoothSpec {
    fn default() -> Self {
        Self { beta: 10.0 }
    }
}

/// One method of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum WatanabeMethod {
    /// argmin Brent minimisation of `L` on `[lower, upper]`.
    Brent {
        /// Loss evaluations.
        budget: usize,
    },
    /// argmin Nelder–Mead (logit-transformed dc).
    NelderMead {
        /// Loss evaluations.
        budget: usize,
        /// Initial simplex size (logit units).
        step: f64,
    },
    /// argmin particle swarm; the swarm is one batched rollout per iteration.
    ParticleSwarm {
        /// Loss evaluations.
        budget: usize,
        /// Swarm size.
        particles: usize,
        /// RNG seed.
        seed: u64,
    },
    /// Uniform random search in batches (Optuna-like baseline).
    RandomSearch {
        /// Loss evaluations.
        budget: usize,
        /// Points per batched rollout.
        batch: usize,
        /// RNG seed.
        seed: u64,
    },
    /// Safeguarded Newton with batched central-difference slopes `{dc−h, dc, dc+h}`.
    NewtonFd {
        /// Loss evaluations (a batch of 3 counts 3).
        budget: usize,
        /// Difference step (Hz).
        h_hz: f64,
        /// Stop when `L ≤ tol`.
        tol: f64,
    },
    /// Safeguarded secant: first slope from one batched forward difference, then secant slopes.
    Secant {
        /// Loss evaluations.
        budget: usize,
        /// Difference step of the first slope (Hz).
        h_hz: f64,
        /// Stop when `L ≤ tol`.
        tol: f64,
    },
    /// Safeguarded secant whose first slope is the chord from `(lower, 0)` (no unit fires at the
    /// lower bound) to the first point — no extra evaluation — then secant slopes.
    SecantChord {
        /// Loss evaluations.
        budget: usize,
        /// Stop when `L ≤ tol`.
        tol: f64,
    },
    /// Safeguarded Newton on the hard objective with the smooth model's exact autodiff slope.
    NewtonAutodiff {
        /// Hard loss evaluations.
        budget: usize,
        /// Stop when `L ≤ tol`.
        tol: f64,
    },
    /// L-BFGS with exact autodiff gradients on the smooth model's own problem.
    SmoothLbfgs {
        /// Iterations.
        iters: usize,
        /// History size.
        memory: usize,
    },
}

impl WatanabeMethod {
    /// Report name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Brent { .. } => "brent",
            Self::NelderMead { .. } => "nelder_mead",
            Self::ParticleSwarm { .. } => "particle_swarm",
            Self::RandomSearch { .. } => "random_search",
            Self::NewtonFd { .. } => "newton_fd",
            Self::Secant { .. } => "secant",
            Self::SecantChord { .. } => "secant_chord",
            Self::NewtonAutodiff { .. } => "newton_autodiff",
            Self::SmoothLbfgs { .. } => "smooth_lbfgs",
        }
    }
}

/// The whole problem spec (`calibration/watanabe.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatanabeSpec {
    /// Problem kind for the CLI dispatcher (`"watanabe"`; accepted and checked).
    #[serde(default)]
    pub kind: Option<String>,
    /// Report name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Network (sizes, seeds, model); `duration_s` is the task's duration.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Synaptic weight (S).
    #[serde(default = "default_weight")]
    pub weight_s: f64,
    /// Execution path of the tensor engine (`fused` or `tape`).
    #[serde(default = "default_path")]
    pub path: ExecPath,
    /// Network implementation (`tensor`, default, or `event`).
    #[serde(default)]
    pub engine: Engine,
    /// Largest batch per rollout (memory cap; bigger populations are split).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Force normalisation.
    #[serde(default)]
    pub normalisation: Normalisation,
    /// Task drive.
    #[serde(default)]
    pub protocol: ProtocolSpec,
    /// Reference.
    #[serde(default)]
    pub reference: ReferenceSpec,
    /// Fitted DC.
    #[serde(default)]
    pub dc: DcSpec,
    /// Smooth model for autodiff.
    #[serde(default)]
    pub smooth: SmoothSpec,
    /// Wall-time cap per method (s).
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// Loss-evaluation cap per method (a batch of B counts B), on top of each method's own
    /// `budget`.
    #[serde(default)]
    pub max_evals: Option<usize>,
    /// Methods, in order.
    pub methods: Vec<WatanabeMethod>,
}

fn default_name() -> String {
    "watanabe".into()
}
fn default_weight() -> f64 {
    MYOGEN_WEIGHT_S
}
fn default_path() -> ExecPath {
    ExecPath::Fused
}
fn default_max_batch() -> usize {
    4
}

impl WatanabeSpec {
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

    /// Parses and validates a TOML spec.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let s: Self = super::spec::parse_toml(text, "watanabe spec")?;
        s.validate()?;
        Ok(s)
    }

    /// Reads, parses and validates a TOML spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = super::spec::read_text(path)?;
        Self::from_toml_str(&text)
    }

    /// Checks every field (typed errors naming it).
    pub fn validate(&self) -> Result<()> {
        if let Some(k) = &self.kind
            && k != "watanabe"
        {
            return Err(Error::invalid("kind", k, "watanabe"));
        }
        self.network.validate()?;
        if self.engine == Engine::Event && self.network.model != MembraneModel::Fast {
            return Err(Error::invalid(
                "engine",
                "event",
                "tensor for network.model = faithful (the event-time network is the fast pool)",
            ));
        }
        check::positive("weight_s", self.weight_s)?;
        check::count_at_least("max_batch", self.max_batch, 1)?;
        check::finite("protocol.amp_hz", self.protocol.amp_hz)?;
        check::non_negative("protocol.freq_hz", self.protocol.freq_hz)?;
        check::non_negative("protocol.noise_sd_hz", self.protocol.noise_sd_hz)?;
        check::finite("reference.dc_hz", self.reference.dc_hz)?;
        if let Some(d) = self.reference.duration_s {
            check::positive("reference.duration_s", d)?;
        }
        if let Some(f) = self.reference.force_n {
            check::positive("reference.force_n", f)?;
        }
        self.params()?;
        check::positive("smooth.beta", self.smooth.beta)?;
        self.budget().validate()?;
        if self.methods.is_empty() {
            return Err(Error::config("methods", "at least one method is required"));
        }
        for m in &self.methods {
            let f = |s: &str| format!("methods.{}.{s}", m.name());
            match m {
                WatanabeMethod::Brent { budget }
                | WatanabeMethod::NelderMead { budget, .. }
                | WatanabeMethod::RandomSearch { budget, .. }
                | WatanabeMethod::ParticleSwarm { budget, .. } => {
                    check::count_at_least(&f("budget"), *budget, 1)?;
                }
                WatanabeMethod::NewtonFd { budget, h_hz, tol }
                | WatanabeMethod::Secant { budget, h_hz, tol } => {
                    check::count_at_least(&f("budget"), *budget, 3)?;
                    check::positive(&f("h_hz"), *h_hz)?;
                    check::positive(&f("tol"), *tol)?;
                }
                WatanabeMethod::NewtonAutodiff { budget, tol }
                | WatanabeMethod::SecantChord { budget, tol } => {
                    check::count_at_least(&f("budget"), *budget, 1)?;
                    check::positive(&f("tol"), *tol)?;
                }
                WatanabeMethod::SmoothLbfgs { iters, memory } => {
                    check::count_at_least(&f("iters"), *iters, 1)?;
                    check::count_at_least(&f("memory"), *memory, 1)?;
                }
            }
            if let WatanabeMethod::ParticleSwarm { particles, .. } = m {
                check::count_at_least(&f("particles"), *particles, 2)?;
            }
            if let WatanabeMethod::RandomSearch { batch, .. } = m {
                check::count_at_least(&f("batch"), *batch, 1)?;
            }
        }
        Ok(())
    }

    /// The fitted parameter set (`dc_hz`, logit transform on `[lower, upper]`).
    pub fn params(&self) -> Result<ParamSet> {
        ParamSet::new(vec![
            ParamSpec::new("dc_hz", self.dc.lower, self.dc.upper, self.dc.init)
                .with_transform(Transform::Logit),
        ])
    }
}

/// The network and protocol with fixed seeds: `dc` values → mean force of the second half.
#[derive(Debug)]
pub struct WatanabeModel {
    /// Network (task duration).
    pub cfg: NetworkConfig,
    /// Synaptic weight (S).
    pub weight_s: f64,
    /// Task drive.
    pub protocol: ProtocolSpec,
    /// Normalisation.
    pub normalisation: Normalisation,
    /// Execution path.
    pub path: ExecPath,
    /// Network implementation.
    pub engine: Engine,
    /// Largest batch per rollout.
    pub max_batch: usize,
    /// Rollouts run (batched ones count once).
    pub rollouts: usize,
    /// Float precision of every rollout (f32 by default; f64 for gradient checks).
    pub precision: Precision,
    /// Evaluation journal of the root-finder running on this model (resumable runs).
    pub journal: Option<Journal>,
}

/// Mean of the second half of each batch row of a host force trace `[n_steps, batch]`, with the
/// chosen normalisation: `F̄_b = mean_{t ≥ ⌊n/2⌋} F[t, b]` (N) or `100 N · F̄_b / max_t F[t, b]`.
pub fn second_half_means(f: &[f64], n_steps: usize, batch: usize, norm: Normalisation) -> Vec<f64> {
    let half = n_steps / 2;
    (0..batch)
        .map(|b| {
            let m = (half..n_steps).map(|t| f[t * batch + b]).sum::<f64>()
                / (n_steps - half).max(1) as f64;
            match norm {
                Normalisation::Absolute => m,
                Normalisation::MyogenPerRunMax => {
                    let mx = (0..n_steps).map(|t| f[t * batch + b]).fold(0.0, f64::max);
                    if mx > 0.0 { m / mx * 100.0 } else { 0.0 }
                }
            }
        })
        .collect()
}

impl WatanabeModel {
    /// From a validated spec.
    pub fn from_spec(spec: &WatanabeSpec) -> Self {
        Self {
            cfg: spec.network.clone(),
            weight_s: spec.weight_s,
            protocol: spec.protocol.clone(),
            normalisation: spec.normalisation,
            path: spec.path,
            engine: spec.engine,
            max_batch: spec.max_batch,
            rollouts: 0,
            precision: Precision::F32,
            journal: None,
        }
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

    fn run_batch(
        &mut self,
        cfg: &NetworkConfig,
        drive: DriveParams,
        batch: usize,
        ctx: &Ctx,
    ) -> Result<Tensor<3>> {
        let muscle = MuscleParams::from_config(cfg, ctx)?;
        let mut sim = build(
            cfg,
            ctx,
            batch,
            drive,
            ctx.tensor(vec![self.weight_s], [1, 1]),
            &muscle,
        )?;
        self.rollouts += 1;
        sim.run_path(self.path)?.trace("force_n")
    }

    /// Mean force of the second half (N, normalised as configured) of the oscillating task at
    /// each `dc` (Hz), in batched rollouts of at most `max_batch` rows (hard model, in the model's precision).
    pub fn mean_forces(&mut self, dcs: &[f64]) -> Result<Vec<f64>> {
        let cfg = self.cfg.clone();
        self.journalled("f", dcs, |m| m.mean_forces_with(&cfg, dcs))
    }

    /// `f(self)`, served from / appended to the root-finder's journal when one is open.
    fn journalled(
        &mut self,
        kind: &str,
        x: &[f64],
        f: impl FnOnce(&mut Self) -> Result<Vec<f64>>,
    ) -> Result<Vec<f64>> {
        match self.journal.take() {
            Some(mut j) => {
                let r = j.eval(kind, x, || f(self));
                self.journal = Some(j);
                r
            }
            None => f(self),
        }
    }

    fn mean_forces_with(&mut self, cfg: &NetworkConfig, dcs: &[f64]) -> Result<Vec<f64>> {
        if self.engine == Engine::Event {
            let (amp, f, sd) = (
                self.protocol.amp_hz,
                self.protocol.freq_hz,
                self.protocol.noise_sd_hz,
            );
            return self.event_mean_forces(cfg, dcs, amp, f, sd);
        }
        let ctx = self.ctx();
        let mut out = Vec::with_capacity(dcs.len());
        for chunk in dcs.chunks(self.max_batch.max(1)) {
            let b = chunk.len();
            let mut drive = DriveParams::scalars(
                &ctx,
                0.0,
                self.protocol.amp_hz,
                self.protocol.freq_hz,
                0.0,
                self.protocol.noise_sd_hz,
            );
            drive.dc_hz = ctx.tensor(chunk.to_vec(), [b, 1]);
            let f = self.run_batch(cfg, drive, b, &ctx)?;
            let n = f.dims()[0];
            out.extend(second_half_means(&to_vec_f64(f), n, b, self.normalisation));
        }
        Ok(out)
    }

    /// MyoGen's reference: constant drive `dc + max(0, N(0,1))` (Hz) for `duration_s`, mean
    /// force of the second half (N, normalised as configured). Same network and seeds.
    pub fn constant_reference(&mut self, dc_hz: f64, duration_s: f64) -> Result<f64> {
        let ctx = self.ctx();
        let cfg = NetworkConfig {
            duration_s,
            drive_noise: NoiseKind::Rectified,
            ..self.cfg.clone()
        };
        if self.engine == Engine::Event {
            return Ok(self.event_mean_forces(&cfg, &[dc_hz], 0.0, 0.0, 1.0)?[0]);
        }
        let f = self.run_batch(&cfg, DriveParams::constant(&ctx, dc_hz), 1, &ctx)?;
        let n = f.dims()[0];
        Ok(second_half_means(&to_vec_f64(f), n, 1, self.normalisation)[0])
    }

    /// Second-half mean forces (N, normalised as configured) of the event-time network of `cfg`
    /// under `dc + amp·sin(2π f t) + σ ξ` (Hz) at each `dc`: one run per row, rows in parallel
    /// on every core (each counts as one rollout).
    fn event_mean_forces(
        &mut self,
        cfg: &NetworkConfig,
        dcs: &[f64],
        amp_hz: f64,
        freq_hz: f64,
        noise_sd_hz: f64,
    ) -> Result<Vec<f64>> {
        let net = EventNetwork::new(cfg)?;
        let (w, norm) = (self.weight_s, self.normalisation);
        let out = par_map(dcs, default_threads(), |&dc_hz| {
            let drive = EventDrive::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad: 0.0,
                noise_sd_hz,
            };
            let run = net.run(&drive, w, &RunOptions::default())?;
            Ok(second_half_means(&run.force_n, run.n_steps(), 1, norm)[0])
        })?;
        self.rollouts += dcs.len();
        Ok(out)
    }

    /// The smooth (rate-mode) network: spike_mode = rate with sharpness `beta` (per mV),
    /// rate-mode generators (expected counts), LIF reset gradient kept.
    pub fn smooth_config(&self, beta: f64) -> NetworkConfig {
        NetworkConfig {
            spike_mode: SpikeMode::Rate,
            generator_mode: GeneratorMode::Rate,
            spike_beta: beta,
            ..self.cfg.clone()
        }
    }

    /// Smooth model: mean force of the second half `F̄_s(dc)` (N, absolute) and its exact
    /// derivative `dF̄_s/d dc` (N/Hz) by autodiff (one forward + one backward pass).
    pub fn smooth_force_and_slope(&mut self, beta: f64, dc_hz: f64) -> Result<(f64, f64)> {
        self.journalled("s", &[beta, dc_hz], |m| {
            m.smooth_force_and_slope_raw(beta, dc_hz)
                .map(|(f, g)| vec![f, g])
        })
        .map(|y| (y[0], y[1]))
    }

    fn smooth_force_and_slope_raw(&mut self, beta: f64, dc_hz: f64) -> Result<(f64, f64)> {
        let cfg = self.smooth_config(beta);
        let ctx = self.ctx().autodiff();
        let dc = ctx.tensor(vec![dc_hz], [1, 1]).require_grad();
        let mut drive = DriveParams::scalars(
            &ctx,
            0.0,
            self.protocol.amp_hz,
            self.protocol.freq_hz,
            0.0,
            self.protocol.noise_sd_hz,
        );
        drive.dc_hz = dc.clone();
        let f = self.run_batch(&cfg, drive, 1, &ctx)?;
        let n = f.dims()[0];
        let mean = f.slice(n / 2..n).mean();
        let value = to_vec_f64(mean.clone())[0];
        let grads = mean.backward();
        let g = dc
            .grad(&grads)
            .map(to_vec_f64)
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        Ok((value, g))
    }

    /// Smooth model's constant-drive reference (N, absolute; no gradient).
    pub fn smooth_constant_reference(
        &mut self,
        beta: f64,
        dc_hz: f64,
        duration_s: f64,
    ) -> Result<f64> {
        let ctx = self.ctx();
        let cfg = NetworkConfig {
            duration_s,
            drive_noise: NoiseKind::Rectified,
            ..self.smooth_config(beta)
        };
        let f = self.run_batch(&cfg, DriveParams::constant(&ctx, dc_hz), 1, &ctx)?;
        let n = f.dims()[0];
        Ok(second_half_means(&to_vec_f64(f), n, 1, Normalisation::Absolute)[0])
    }
}

/// `L(dc) = |F̄(dc) − F_ref| / F_ref` on the hard model, with batched population values.
pub struct WatanabeObjective<'m> {
    /// The model.
    pub model: &'m mut WatanabeModel,
    /// Reference force (N).
    pub f_ref: f64,
    /// Every evaluated `(dc, F̄)`.
    pub evaluated: Vec<(f64, f64)>,
}

impl Objective for WatanabeObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.values(&[x.to_vec()])?[0])
    }
    /// Batched central difference of the loss (NOT autodiff; the hard model has no useful
    /// derivative): one rollout of `{x − h, x, x + h}`, h = 0.25 Hz.
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let h = 0.25;
        let v = self.values(&[vec![x[0] - h], x.to_vec(), vec![x[0] + h]])?;
        Ok((v[1], vec![(v[2] - v[0]) / (2.0 * h)]))
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let dcs: Vec<f64> = xs.iter().map(|x| x[0]).collect();
        let f = self.model.mean_forces(&dcs)?;
        self.evaluated
            .extend(dcs.iter().copied().zip(f.iter().copied()));
        Ok(f.iter()
            .map(|v| (v - self.f_ref).abs() / self.f_ref)
            .collect())
    }
}

/// `L_s(dc) = ((F̄_s(dc) − F_ref,s) / F_ref,s)²` on the smooth model with exact autodiff gradient
/// (squared so L-BFGS sees a smooth minimum; reported loss is its square root).
struct SmoothObjective<'m> {
    model: &'m mut WatanabeModel,
    beta: f64,
    f_ref: f64,
    evaluated: Vec<(f64, f64)>,
}

impl Objective for SmoothObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.value_and_grad(x)?.0)
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (f, g) = self.model.smooth_force_and_slope(self.beta, x[0])?;
        self.evaluated.push((x[0], f));
        let r = (f - self.f_ref) / self.f_ref;
        Ok((r * r, vec![2.0 * r * g / self.f_ref]))
    }
}

/// Counter, clock and history for the hand-written root-finders (same bookkeeping as
/// [`super::objective::Tracked`]: a batch of B counts B evaluations).
struct Recorder {
    start: Instant,
    evaluations: usize,
    gradients: usize,
    history: Vec<Evaluation>,
    best: Option<(f64, f64)>,
    progress: Option<indicatif::ProgressBar>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            evaluations: 0,
            gradients: 0,
            history: Vec::new(),
            best: None,
            progress: None,
        }
    }
    fn message(&self) -> String {
        match self.best {
            Some((dc, l)) => format!(
                "{} evals, best dc {dc:.3} Hz, loss {l:.3e}",
                self.evaluations
            ),
            None => format!("{} evals", self.evaluations),
        }
    }
    fn record(&mut self, dc: f64, loss: f64, grad: bool) {
        self.evaluations += 1;
        if grad {
            self.gradients += 1;
        }
        if loss.is_finite() && self.best.is_none_or(|(_, b)| loss < b) {
            self.best = Some((dc, loss));
        }
        self.history.push(Evaluation {
            evaluations: self.evaluations,
            gradients: self.gradients,
            wall_s: self.start.elapsed().as_secs_f64(),
            loss,
            best_loss: self.best.map(|b| b.1).unwrap_or(f64::INFINITY),
        });
        if let Some(pb) = &self.progress {
            pb.set_position(self.evaluations as u64);
            pb.set_message(self.message());
        }
    }
    fn finish(self, method: &str, stop: String) -> Result<FitReport> {
        if let Some(pb) = &self.progress {
            pb.finish_with_message(self.message());
        }
        let (x, l) = self.best.ok_or_else(|| Error::Optimizer {
            method: method.into(),
            reason: "no finite loss was evaluated".into(),
        })?;
        Ok(FitReport {
            method: method.into(),
            names: vec!["dc_hz".into()],
            x_best: vec![x],
            loss_best: l,
            evaluations: self.evaluations,
            gradients: self.gradients,
            wall_s: self.start.elapsed().as_secs_f64(),
            stop_reason: stop,
            history: self.history,
        })
    }
}

/// Where the slope of the safeguarded root-finder comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SlopeSource {
    /// Batched central difference `{dc − h, dc, dc + h}` at every iterate.
    CentralDifference {
        /// Step (Hz).
        h_hz: f64,
    },
    /// One batched forward difference `{dc, dc + h}` at the start, then secant slopes.
    Secant {
        /// Step (Hz).
        h_hz: f64,
    },
    /// First slope = chord from `(lo, 0)` to the first point, then secant slopes.
    SecantChord,
    /// The smooth model's exact autodiff slope at every iterate (sharpness β per mV).
    SmoothAutodiff {
        /// β (per mV).
        beta: f64,
    },
}

/// Safeguarded Newton/secant root-finder for `F̄(dc) = F_ref` on `[lo, hi]`, assuming `F̄`
/// increases with `dc`: the bracket `[a, b]` (initially the bounds) shrinks with the sign of each
/// residual; a Newton step `dc − (F̄ − F_ref)/slope` leaving the bracket (or a non-positive
/// slope) is replaced by bisection. Stops when `|F̄ − F_ref|/F_ref ≤ tol` or the budget is spent.
/// Every evaluated `(dc, F̄)` is appended to `evaluated`.
#[allow(clippy::too_many_arguments)]
pub fn root_find(
    model: &mut WatanabeModel,
    f_ref: f64,
    x0: f64,
    lo: f64,
    hi: f64,
    slope: SlopeSource,
    budget: usize,
    tol: f64,
    evaluated: &mut Vec<(f64, f64)>,
    method: &str,
) -> Result<FitReport> {
    model.journal = super::journal::open_next(method)?;
    let r = root_find_inner(
        model, f_ref, x0, lo, hi, slope, budget, tol, evaluated, method,
    );
    model.journal = None;
    r
}

#[allow(clippy::too_many_arguments)]
fn root_find_inner(
    model: &mut WatanabeModel,
    f_ref: f64,
    x0: f64,
    lo: f64,
    hi: f64,
    slope: SlopeSource,
    budget: usize,
    tol: f64,
    evaluated: &mut Vec<(f64, f64)>,
    method: &str,
) -> Result<FitReport> {
    let mut rec = Recorder::new();
    rec.progress = Some(crate::progress::bar(method, budget as u64));
    let (mut a, mut b) = (lo, hi);
    let mut x = x0.clamp(lo, hi);
    let mut prev: Option<(f64, f64)> = None;
    let loss = |f: f64| (f - f_ref).abs() / f_ref;
    let mut stop = "budget spent".to_string();
    let mut iter_note = Vec::new();
    loop {
        // Evaluate x (and the slope).
        let (f, s) = match slope {
            SlopeSource::CentralDifference { h_hz } => {
                if rec.evaluations + 3 > budget {
                    break;
                }
                let xs = [x - h_hz, x, x + h_hz];
                let fs = model.mean_forces(&xs)?;
                for (xi, fi) in xs.iter().zip(&fs) {
                    evaluated.push((*xi, *fi));
                    rec.record(*xi, loss(*fi), false);
                    if *fi < f_ref {
                        a = a.max(*xi);
                    } else {
                        b = b.min(*xi);
                    }
                }
                if fs.iter().any(|f| loss(*f) <= tol) {
                    stop = format!("converged (L ≤ {tol})");
                    break;
                }
                (fs[1], (fs[2] - fs[0]) / (2.0 * h_hz))
            }
            SlopeSource::Secant { h_hz } => match prev {
                None => {
                    // One batched forward difference {dc, dc + h} (or {dc, dc − h} at the
                    // upper bound).
                    if rec.evaluations + 2 > budget {
                        break;
                    }
                    let x2 = if x + h_hz <= hi { x + h_hz } else { x - h_hz };
                    let xs = [x, x2];
                    let fs = model.mean_forces(&xs)?;
                    for (xi, fi) in xs.iter().zip(&fs) {
                        evaluated.push((*xi, *fi));
                        rec.record(*xi, loss(*fi), false);
                    }
                    if loss(fs[1]) < loss(fs[0]) {
                        // Continue from the better of the two.
                        x = x2;
                    }
                    let (f_other, x_other) = if x == x2 { (fs[0], xs[0]) } else { (fs[1], x2) };
                    let f_here = if x == x2 { fs[1] } else { fs[0] };
                    if f_other < f_ref {
                        a = a.max(x_other);
                    } else {
                        b = b.min(x_other);
                    }
                    (f_here, (fs[1] - fs[0]) / (x2 - xs[0]))
                }
                Some((xp, fp)) => {
                    if rec.evaluations >= budget {
                        break;
                    }
                    let f = model.mean_forces(&[x])?[0];
                    evaluated.push((x, f));
                    rec.record(x, loss(f), false);
                    let s = if (x - xp).abs() > 1e-9 {
                        (f - fp) / (x - xp)
                    } else {
                        f64::NAN
                    };
                    (f, s)
                }
            },
            SlopeSource::SecantChord => {
                if rec.evaluations >= budget {
                    break;
                }
                let f = model.mean_forces(&[x])?[0];
                evaluated.push((x, f));
                rec.record(x, loss(f), false);
                let (xp, fp) = prev.unwrap_or((lo, 0.0));
                let s = if (x - xp).abs() > 1e-9 {
                    (f - fp) / (x - xp)
                } else {
                    f64::NAN
                };
                (f, s)
            }
            SlopeSource::SmoothAutodiff { beta } => {
                if rec.evaluations >= budget {
                    break;
                }
                let f = model.mean_forces(&[x])?[0];
                evaluated.push((x, f));
                rec.record(x, loss(f), false);
                let (_, g) = model.smooth_force_and_slope(beta, x)?;
                rec.gradients += 1;
                (f, g)
            }
        };
        let r = f - f_ref;
        if loss(f) <= tol {
            stop = format!("converged (L ≤ {tol})");
            break;
        }
        if r < 0.0 {
            a = a.max(x);
        } else {
            b = b.min(x);
        }
        let newton = x - r / s;
        let (next, kind) = if s.is_finite() && s > 0.0 && newton > a && newton < b {
            (newton, "newton")
        } else {
            (0.5 * (a + b), "bisect")
        };
        iter_note.push(format!("{x:.3}→{next:.3} ({kind}, slope {s:.3} N/Hz)"));
        prev = Some((x, f));
        if (b - a).abs() < 1e-6 || a >= b {
            stop = "bracket collapsed".into();
            break;
        }
        x = next;
    }
    let mut report = rec.finish(method, stop)?;
    report.stop_reason = format!("{}; steps: {}", report.stop_reason, iter_note.join(", "));
    Ok(report)
}

/// Runs the Watanabe calibration described by the TOML spec at `spec_path`; writes the report
/// directory `out_dir` (summary.json, report.md, loss plots, `force_vs_dc.png`). Returns the
/// run summary.
pub fn run_watanabe_calibration(spec_path: &Path, out_dir: &Path) -> Result<RunSummary> {
    let spec = WatanabeSpec::load(spec_path)?;
    run_watanabe_spec(&spec, out_dir)
}

/// The reference force `F_ref` (N) of a spec and the wall time it took (s).
pub fn reference_force(spec: &WatanabeSpec, model: &mut WatanabeModel) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let f_ref = match spec.reference.force_n {
        Some(f) => f,
        None => match spec.reference.protocol {
            ReferenceProtocol::Constant => model.constant_reference(
                spec.reference.dc_hz,
                spec.reference.duration_s.unwrap_or(spec.network.duration_s),
            )?,
            ReferenceProtocol::Oscillating => {
                if let Some(d) = spec.reference.duration_s
                    && (d - spec.network.duration_s).abs() > 1e-12
                {
                    return Err(Error::invalid(
                        "reference.duration_s",
                        d,
                        "the task duration (network.duration_s) for an oscillating reference",
                    ));
                }
                model.mean_forces(&[spec.reference.dc_hz])?[0]
            }
        },
    };
    if !(f_ref.is_finite() && f_ref > 0.0) {
        return Err(Error::invalid(
            "network.n_mn",
            spec.network.n_mn,
            format!(
                "a pool that produces force under the reference drive (reference mean force = {f_ref} N; \
                 raise network.n_mn / n_dd / weight_s or reference.dc_hz)"
            ),
        ));
    }
    Ok((f_ref, t0.elapsed().as_secs_f64()))
}

/// Runs a parsed spec (see [`run_watanabe_calibration`]).
pub fn run_watanabe_spec(spec: &WatanabeSpec, out_dir: &Path) -> Result<RunSummary> {
    spec.validate()?;
    let params = spec.params()?;
    let mut model = WatanabeModel::from_spec(spec);
    let (f_ref, ref_wall_s) = reference_force(spec, &mut model)?;
    let mut fits = Vec::new();
    let mut points: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut per_method = Vec::new();
    let (lo, hi, x0) = (spec.dc.lower, spec.dc.upper, spec.dc.init);
    for m in &spec.methods {
        let generic = match m {
            WatanabeMethod::Brent { budget } => Some(Method::Brent { budget: *budget }),
            WatanabeMethod::NelderMead { budget, step } => Some(Method::NelderMead {
                budget: *budget,
                step: *step,
            }),
            WatanabeMethod::ParticleSwarm {
                budget,
                particles,
                seed,
            } => Some(Method::ParticleSwarm {
                budget: *budget,
                start_particle: false,
                particles: *particles,
                seed: *seed,
            }),
            WatanabeMethod::RandomSearch {
                budget,
                batch,
                seed,
            } => Some(Method::RandomSearch {
                budget: *budget,
                batch: *batch,
                seed: *seed,
            }),
            _ => None,
        };
        let rollouts0 = model.rollouts;
        let mut evaluated = Vec::new();
        let mut smooth_ref = None;
        let report = if let Some(method) = generic {
            let mut obj = WatanabeObjective {
                model: &mut model,
                f_ref,
                evaluated: Vec::new(),
            };
            let r = minimize_within(&mut obj, &params, &method, None, spec.budget())?;
            evaluated = obj.evaluated;
            r
        } else {
            // A method's own budget, capped by the shared one.
            let cap = |own: usize| spec.max_evals.map_or(own, |m| m.min(own));
            match m {
                WatanabeMethod::NewtonFd { budget, h_hz, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::CentralDifference { h_hz: *h_hz },
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::Secant { budget, h_hz, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::Secant { h_hz: *h_hz },
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::SecantChord { budget, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::SecantChord,
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::NewtonAutodiff { budget, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::SmoothAutodiff {
                        beta: spec.smooth.beta,
                    },
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::SmoothLbfgs { iters, memory } => {
                    let t0 = Instant::now();
                    let fr = match spec.reference.protocol {
                        ReferenceProtocol::Constant => model.smooth_constant_reference(
                            spec.smooth.beta,
                            spec.reference.dc_hz,
                            spec.reference.duration_s.unwrap_or(spec.network.duration_s),
                        )?,
                        ReferenceProtocol::Oscillating => {
                            model
                                .smooth_force_and_slope(spec.smooth.beta, spec.reference.dc_hz)?
                                .0
                        }
                    };
                    let ref_s = t0.elapsed().as_secs_f64();
                    if fr.is_nan() || fr <= 0.0 {
                        return Err(Error::invalid(
                            "network.n_mn",
                            spec.network.n_mn,
                            "a pool whose smooth model produces force under the reference drive",
                        ));
                    }
                    smooth_ref = Some((fr, ref_s));
                    let mut obj = SmoothObjective {
                        model: &mut model,
                        beta: spec.smooth.beta,
                        f_ref: fr,
                        evaluated: Vec::new(),
                    };
                    let mut r = minimize_within(
                        &mut obj,
                        &params,
                        &Method::Lbfgs {
                            iters: *iters,
                            memory: *memory,
                        },
                        None,
                        spec.budget(),
                    )?;
                    evaluated = obj.evaluated;
                    r.method = m.name().into();
                    // Report |relative error| (the objective is its square).
                    r.loss_best = r.loss_best.sqrt();
                    for h in &mut r.history {
                        h.loss = h.loss.sqrt();
                        h.best_loss = h.best_loss.sqrt();
                    }
                    r
                }
                _ => unreachable!("generic methods handled above"),
            }
        };
        let rollouts = model.rollouts - rollouts0;
        let e2e = report.wall_s + ref_wall_s + smooth_ref.map(|s| s.1).unwrap_or(0.0);
        per_method.push(serde_json::json!({
            "method": report.method,
            "dc_hz": report.x_best[0],
            "abs_rel_error": report.loss_best,
            "evaluations": report.evaluations,
            "gradients": report.gradients,
            "rollouts": rollouts,
            "wall_s": report.wall_s,
            "end_to_end_s": e2e,
            "smooth_reference_force_n": smooth_ref.map(|s| s.0),
            "objective": if smooth_ref.is_some() { "smooth model vs its own reference" } else { "hard model" },
        }));
        if smooth_ref.is_none() {
            points.push((report.method.clone(), evaluated));
        }
        fits.push(report);
    }
    let truth = match spec.reference.protocol {
        ReferenceProtocol::Oscillating if spec.reference.force_n.is_none() => {
            Some(spec.reference.dc_hz)
        }
        _ => None,
    };
    let description = format!(
        "Watanabe oscillating-DC calibration (MODEL.md §7.1): find dc in [{lo}, {hi}] Hz so that the \
         mean force over the second half of {} s of drive clip(dc + {}·sin(2π·{}·t) + {}·N(0,1), 0, ∞) \
         matches F_ref = {f_ref:.4} N ({}); loss |F̄ − F_ref| / F_ref. Network: {} {:?} motor neurons \
         ({:?} spikes), {} Poisson inputs, p = {}, w = {} S, dt = {} s, fixed seed {} (common random \
         numbers); normalisation {:?}; path {:?}. Reference run {ref_wall_s:.2} s. Evaluations count \
         every batch row; `newton_fd` slopes are batched central differences and `secant` starts from \
         a batched forward difference (not autodiff); `secant_chord` starts from the chord to (lower, 0); \
         `newton_autodiff` uses the exact autodiff slope of the smooth rate-mode model (β = {}/mV) as \
         the Newton slope on the hard objective; `smooth_lbfgs` fits the smooth model to its own \
         reference with exact autodiff gradients.",
        spec.network.duration_s,
        spec.protocol.amp_hz,
        spec.protocol.freq_hz,
        spec.protocol.noise_sd_hz,
        match (spec.reference.force_n, spec.reference.protocol) {
            (Some(_), _) => "given".to_string(),
            (None, ReferenceProtocol::Constant) => format!(
                "constant drive {} Hz + max(0,N(0,1)), {} s",
                spec.reference.dc_hz,
                spec.reference.duration_s.unwrap_or(spec.network.duration_s)
            ),
            (None, ReferenceProtocol::Oscillating) => format!(
                "synthetic: the oscillating protocol at dc = {} Hz",
                spec.reference.dc_hz
            ),
        },
        spec.network.n_mn,
        spec.network.model,
        spec.network.spike_mode,
        spec.network.n_dd,
        spec.network.p_connect,
        spec.weight_s,
        spec.network.dt_s,
        spec.network.seed,
        spec.normalisation,
        spec.path,
        spec.smooth.beta,
    );
    let summary = RunSummary {
        problem: spec.name.clone(),
        description,
        fits,
        extra: serde_json::json!({
            "reference_force_n": f_ref,
            "reference_wall_s": ref_wall_s,
            "true_dc_hz": truth,
            "methods": per_method,
            "myogen": {
                "total_wall_s": 1220.0,
                "reference_wall_s": 77.0,
                "trial_wall_s": 45.6,
                "trials": 25,
                "best_abs_rel_error": 0.023,
                "best_dc_hz": 35.3,
                "note": "serial, 2-core machine, per-run-max normalisation, fresh network per trial",
            },
        }),
    };
    write_report(out_dir, &summary)?;
    force_plot(
        &out_dir.join("force_vs_dc.png"),
        f_ref,
        &points,
        truth,
        &spec.name,
    )?;
    Ok(summary)
}

/// PNG: evaluated `(dc, F̄)` points per method, the reference force line and (synthetic runs)
/// the true dc.
fn force_plot(
    path: &Path,
    f_ref: f64,
    points: &[(String, Vec<(f64, f64)>)],
    truth: Option<f64>,
    name: &str,
) -> Result<()> {
    use plotters::prelude::*;
    super::plot::register_font();
    let err = |e: &dyn std::fmt::Display| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let all: Vec<(f64, f64)> = points
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f_ref, f_ref);
    for (x, y) in &all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if !x0.is_finite() || x1 <= x0 {
        x0 = 0.0;
        x1 = 100.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: mean force (2nd half) vs dc"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0 - 1.0..x1 + 1.0, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("dc (Hz)")
        .y_desc("mean force (N)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(sorted, BLACK.mix(0.3).stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("F̄(dc), all evaluations")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    chart
        .draw_series(LineSeries::new(
            vec![(x0 - 1.0, f_ref), (x1 + 1.0, f_ref)],
            RED.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label(format!("reference {f_ref:.3} N"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    if let Some(t) = truth {
        chart
            .draw_series(LineSeries::new(
                vec![(t, y0 - pad), (t, y1 + pad)],
                BLUE.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("true dc {t} Hz"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    }
    for (i, (m, p)) in points.iter().enumerate() {
        let color = Palette99::pick(i + 2).to_rgba();
        chart
            .draw_series(
                p.iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(x, y)| Circle::new((*x, *y), 4, color.filled())),
            )
            .map_err(|e| err(&e))?
            .label(m.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
