//! The TOML problem spec of a Watanabe calibration (`kind = "watanabe"`): reference, protocol,
//! dc bounds, methods, and its validation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check};
use crate::fit::optimize::Budget;
use crate::fit::params::{ParamSet, ParamSpec, Transform};
use crate::kernel::ExecPath;
use crate::network::{MYOGEN_WEIGHT_S, MembraneModel, NetworkConfig};

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
    /// Execution path of the tensor engine (`fused`, `tape` or `stream`; with `stream` the
    /// forward rollouts run on the stream path — both cores — and the
    /// autodiff slopes on the fused path).
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
        let s: Self = crate::fit::spec::parse_toml(text, "watanabe spec")?;
        s.validate()?;
        Ok(s)
    }

    /// Reads, parses and validates a TOML spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::fit::spec::read_text(path)?;
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
