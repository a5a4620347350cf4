//! Descending drive → motor neuron synapses (MODEL.md §2.3): fixed random connectivity, a
//! transmission delay, and the synaptic conductance filter.
//!
//! - Connectivity `C ∈ {0,1}^{n_dd × n_mn}`, seeded: each (dd, mn) pair independently with
//!   probability p ([`ConnectivityRule::Bernoulli`], MyoGen's `Network.connect`), or exactly
//!   `round(p·n_mn)` distinct random targets per source ([`ConnectivityRule::FixedOutDegree`]).
//!   Watanabe: 400 DD → 800 MN, p = 0.3.
//! - Delay: a spike of step t arrives at step `t + D`, `D = round(delay_s/dt)` (NetCon delay,
//!   default 1 ms), an integer-step FIFO.
//! - Conductance (siemens), with `x_t = s_{t−D} @ C` (presynaptic spikes arriving per MN):
//!   - [`SynapseKinetics::Exp2Syn`] (default; NEURON's `Exp2Syn` used by MyoGen, τ_rise = 0.2 ms,
//!     τ_decay = 0.3 ms): `A ← A·e^{−dt/τ1} + w·f·x`, `B ← B·e^{−dt/τ2} + w·f·x`, `g = B − A`,
//!     with `f = 1/(e^{−t_p/τ2} − e^{−t_p/τ1})`, `t_p = τ1τ2/(τ2−τ1)·ln(τ2/τ1)`, so one event gives
//!     `g(t) = w·f·(e^{−t/τ2} − e^{−t/τ1})`, whose continuous-time peak is exactly w (at t_p =
//!     0.243 ms for MyoGen's values; sampled on a 0.1 ms grid the largest sample is below w).
//!   - [`SynapseKinetics::SingleExp`] (MyoGen's JAX closed loop): `g ← g·e^{−dt/τ} + w·x`, peak w
//!     at the arrival step.
//!
//!   Both updates are the exact solution of the linear ODEs for events on the step grid, so they
//!   are stable for every dt; a dt above 5·τ_decay is rejected as a units mistake (the filter would
//!   no longer resolve the synaptic time course).
//! - Weight w (siemens at the API; MyoGen 0.05 µS = 5e-8 S) is a tensor `[1|batch, 1|n_mn]`.

use std::collections::VecDeque;

use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::fused::{IirCfg, IirKind, syn_iir};

mod host;
use super::generator::DD_SPIKES;
use crate::error::{Error, Result, check};
use crate::kernel::{
    BufferSpec, Ctx, HostStage, Precision, ReadSpec, Stage, StageDecl, StageIo, Traces, to_vec_f32,
    to_vec_f64,
};
use host::HostSyn;

/// Name of the synaptic conductance buffer (`[n_mn]`, siemens).
pub const SYN_CONDUCTANCE_S: &str = "syn_conductance_s";

/// MyoGen's DD → MN weight in the Watanabe examples: 0.05 µS.
pub const MYOGEN_WEIGHT_S: f64 = 0.05e-6;

/// How sources are connected to targets.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectivityRule {
    /// Each pair independently with probability p.
    Bernoulli {
        /// Connection probability in [0, 1].
        p: f64,
    },
    /// Exactly `round(p·n_tgt)` distinct random targets per source.
    FixedOutDegree {
        /// Fraction of targets per source in [0, 1].
        p: f64,
    },
}

impl ConnectivityRule {
    /// The probability / fraction p.
    pub fn p(&self) -> f64 {
        match *self {
            ConnectivityRule::Bernoulli { p } | ConnectivityRule::FixedOutDegree { p } => p,
        }
    }
    /// Checks p ∈ [0, 1].
    pub fn validate(&self) -> Result<()> {
        check::in_range("connection_probability", self.p(), 0.0, 1.0).map(|_| ())
    }
}

/// A fixed 0/1 connectivity matrix (stored as target lists per source).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectivityMatrix {
    n_src: usize,
    n_tgt: usize,
    targets: Vec<Vec<usize>>,
}

impl ConnectivityMatrix {
    /// Draws the matrix from `StdRng::seed_from_u64(seed)` (sources in order; Bernoulli draws
    /// target-major within a source).
    pub fn generate(n_src: usize, n_tgt: usize, rule: ConnectivityRule, seed: u64) -> Result<Self> {
        check::count_at_least("n_dd", n_src, 1)?;
        check::count_at_least("n_mn", n_tgt, 1)?;
        rule.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let targets = match rule {
            ConnectivityRule::Bernoulli { p } => (0..n_src)
                .map(|_| (0..n_tgt).filter(|_| rng.random::<f64>() < p).collect())
                .collect(),
            ConnectivityRule::FixedOutDegree { p } => {
                let k = (p * n_tgt as f64).round() as usize;
                (0..n_src)
                    .map(|_| {
                        let mut v = rand::seq::index::sample(&mut rng, n_tgt, k).into_vec();
                        v.sort_unstable();
                        v
                    })
                    .collect()
            }
        };
        Ok(Self {
            n_src,
            n_tgt,
            targets,
        })
    }

    /// From explicit target lists (each index < `n_tgt`).
    pub fn from_targets(n_tgt: usize, targets: Vec<Vec<usize>>) -> Result<Self> {
        check::count_at_least("n_dd", targets.len(), 1)?;
        check::count_at_least("n_mn", n_tgt, 1)?;
        for (i, t) in targets.iter().enumerate() {
            if let Some(&j) = t.iter().find(|&&j| j >= n_tgt) {
                return Err(Error::invalid(
                    format!("targets[{i}]"),
                    j,
                    format!("0..{n_tgt}"),
                ));
            }
        }
        Ok(Self {
            n_src: targets.len(),
            n_tgt,
            targets,
        })
    }

    /// Number of sources.
    pub fn n_src(&self) -> usize {
        self.n_src
    }
    /// Number of targets.
    pub fn n_tgt(&self) -> usize {
        self.n_tgt
    }
    /// Targets of source `i`.
    pub fn targets(&self, i: usize) -> &[usize] {
        &self.targets[i]
    }
    /// Number of connections.
    pub fn n_connections(&self) -> usize {
        self.targets.iter().map(Vec::len).sum()
    }
    /// Fraction of connected pairs.
    pub fn fraction(&self) -> f64 {
        self.n_connections() as f64 / (self.n_src * self.n_tgt) as f64
    }
    /// Dense row-major `[n_src, n_tgt]` 0/1 matrix.
    pub fn dense(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.n_src * self.n_tgt];
        for (i, t) in self.targets.iter().enumerate() {
            for &j in t {
                d[i * self.n_tgt + j] = 1.0;
            }
        }
        d
    }
}

/// Synaptic conductance kinetics (time constants in seconds).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynapseKinetics {
    /// `g ← g·e^{−dt/τ} + w·x`.
    SingleExp {
        /// Decay time constant (s).
        tau_s: f64,
    },
    /// NEURON `Exp2Syn`, difference of exponentials normalised to a continuous-time peak of w.
    Exp2Syn {
        /// Rise time constant τ1 (s).
        tau_rise_s: f64,
        /// Decay time constant τ2 (s), > τ1.
        tau_decay_s: f64,
    },
}

impl Default for SynapseKinetics {
    /// MyoGen's `Exp2Syn` (τ1 = 0.2 ms, τ2 = 0.3 ms).
    fn default() -> Self {
        SynapseKinetics::Exp2Syn {
            tau_rise_s: 0.2e-3,
            tau_decay_s: 0.3e-3,
        }
    }
}

impl SynapseKinetics {
    /// Checks τ > 0 (and τ_rise < τ_decay).
    pub fn validate(&self) -> Result<()> {
        match *self {
            SynapseKinetics::SingleExp { tau_s } => {
                check::positive("tau_s", tau_s)?;
            }
            SynapseKinetics::Exp2Syn {
                tau_rise_s,
                tau_decay_s,
            } => {
                check::positive("tau_rise_s", tau_rise_s)?;
                check::positive("tau_decay_s", tau_decay_s)?;
                if tau_rise_s >= tau_decay_s {
                    return Err(Error::invalid(
                        "tau_rise_s",
                        tau_rise_s,
                        format!("< tau_decay_s = {tau_decay_s}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The slowest time constant (s).
    pub fn tau_decay_s(&self) -> f64 {
        match *self {
            SynapseKinetics::SingleExp { tau_s } => tau_s,
            SynapseKinetics::Exp2Syn { tau_decay_s, .. } => tau_decay_s,
        }
    }

    /// Exp2Syn's normalisation `f = 1/(e^{−t_p/τ2} − e^{−t_p/τ1})`, `t_p = τ1τ2/(τ2−τ1)·ln(τ2/τ1)`
    /// (1 for `SingleExp`).
    pub fn peak_factor(&self) -> f64 {
        match *self {
            SynapseKinetics::SingleExp { .. } => 1.0,
            SynapseKinetics::Exp2Syn {
                tau_rise_s: t1,
                tau_decay_s: t2,
            } => {
                let tp = t1 * t2 / (t2 - t1) * (t2 / t1).ln();
                1.0 / ((-tp / t2).exp() - (-tp / t1).exp())
            }
        }
    }

    /// Conductance per unit weight a time `t_s` ≥ 0 after an event's arrival (dimensionless):
    /// `e^{−t/τ}` or `f·(e^{−t/τ2} − e^{−t/τ1})`.
    pub fn impulse_response(&self, t_s: f64) -> f64 {
        match *self {
            SynapseKinetics::SingleExp { tau_s } => (-t_s / tau_s).exp(),
            SynapseKinetics::Exp2Syn {
                tau_rise_s,
                tau_decay_s,
            } => self.peak_factor() * ((-t_s / tau_decay_s).exp() - (-t_s / tau_rise_s).exp()),
        }
    }

    /// Charge per event and unit weight that the step-grid pool integrates (s):
    /// `Q(dt) = Σ_{n≥0} k(n·dt)·dt` with `k` = [`Self::impulse_response`] (the conductance of the
    /// arrival step and of each later step, each held for one step). Closed form:
    /// `dt/(1 − e^{−dt/τ})` (SingleExp), `f·dt·(1/(1 − e^{−dt/τ2}) − 1/(1 − e^{−dt/τ1}))`
    /// (Exp2Syn); → `∫k dt` (τ, resp. `f·(τ2 − τ1)`) as dt → 0. Errors on an invalid `dt_s`.
    pub fn grid_charge_s(&self, dt_s: f64) -> Result<f64> {
        self.check_dt(dt_s)?;
        Ok(match *self {
            SynapseKinetics::SingleExp { tau_s } => dt_s / (1.0 - (-dt_s / tau_s).exp()),
            SynapseKinetics::Exp2Syn {
                tau_rise_s,
                tau_decay_s,
            } => {
                self.peak_factor()
                    * dt_s
                    * (1.0 / (1.0 - (-dt_s / tau_decay_s).exp())
                        - 1.0 / (1.0 - (-dt_s / tau_rise_s).exp()))
            }
        })
    }

    /// Per-step decay factors for time step `dt_s`.
    pub(crate) fn iir(&self, dt_s: f64) -> IirKind {
        match *self {
            SynapseKinetics::SingleExp { tau_s } => IirKind::Single {
                a: (-dt_s / tau_s).exp(),
            },
            SynapseKinetics::Exp2Syn {
                tau_rise_s,
                tau_decay_s,
            } => IirKind::Exp2 {
                a1: (-dt_s / tau_rise_s).exp(),
                a2: (-dt_s / tau_decay_s).exp(),
            },
        }
    }

    /// Rejects `dt_s` ≤ 0, non-finite, or > 5·τ_decay (see module docs).
    pub fn check_dt(&self, dt_s: f64) -> Result<()> {
        check::positive("dt_s", dt_s)?;
        let tau = self.tau_decay_s();
        if dt_s > 5.0 * tau {
            return Err(Error::UnstableTimeStep {
                dt_s,
                model: "synapse".into(),
                reason: format!(
                    "dt exceeds 5·tau_decay = {} s; the synaptic filter is not resolved",
                    5.0 * tau
                ),
            });
        }
        Ok(())
    }
}

/// Configuration of a [`Synapse`].
#[derive(Clone, Debug, PartialEq)]
pub struct SynapseConfig {
    /// Number of presynaptic (DD) neurons.
    pub n_dd: usize,
    /// Number of motor neurons.
    pub n_mn: usize,
    /// Connectivity rule.
    pub rule: ConnectivityRule,
    /// Connectivity seed.
    pub seed: u64,
    /// Conductance kinetics.
    pub kinetics: SynapseKinetics,
    /// Transmission delay (s), rounded to whole steps.
    pub delay_s: f64,
}

impl Default for SynapseConfig {
    /// Watanabe sizes: 400 → 800, p = 0.3, Exp2Syn, 1 ms delay.
    fn default() -> Self {
        Self {
            n_dd: 400,
            n_mn: 800,
            rule: ConnectivityRule::Bernoulli { p: 0.3 },
            seed: 0,
            kinetics: SynapseKinetics::default(),
            delay_s: 1e-3,
        }
    }
}

impl SynapseConfig {
    /// Checks sizes, rule, kinetics and delay.
    pub fn validate(&self) -> Result<()> {
        check::count_at_least("n_dd", self.n_dd, 1)?;
        check::count_at_least("n_mn", self.n_mn, 1)?;
        self.rule.validate()?;
        self.kinetics.validate()?;
        check::non_negative("delay_s", self.delay_s)?;
        Ok(())
    }
    /// Delay in whole steps: `round(delay_s/dt_s)`.
    pub fn delay_steps(&self, dt_s: f64) -> usize {
        (self.delay_s / dt_s).round() as usize
    }
}

struct SynState {
    fifo: VecDeque<Tensor<2>>,
    conn: Tensor<2>,
    wf: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    delay: usize,
    kind: IirKind,
}

/// Stage: reads `dd_spikes` `[n_dd]`, writes `syn_conductance_s` `[n_mn]` (siemens). Tape path:
/// per-step `[batch, n_dd] × [n_dd, n_mn]` matmul + filter; fused path: one whole-trace input
/// (event-driven on the host for untracked spikes, one `[T·batch, n_dd] × [n_dd, n_mn]` matmul
/// for tracked ones) followed by the fused filter op [`syn_iir`].
pub struct Synapse {
    name: String,
    cfg: SynapseConfig,
    conn: ConnectivityMatrix,
    weight_s: Tensor<2>,
    input: String,
    output: String,
    state: Option<SynState>,
    host_state: HostSyn,
}

impl Synapse {
    /// A synapse with connectivity drawn from `cfg.rule`/`cfg.seed`; weight `[1|batch, 1|n_mn]` (S).
    pub fn new(cfg: SynapseConfig, weight_s: Tensor<2>) -> Result<Self> {
        cfg.validate()?;
        let conn = ConnectivityMatrix::generate(cfg.n_dd, cfg.n_mn, cfg.rule, cfg.seed)?;
        Self::with_connectivity(cfg, conn, weight_s)
    }

    /// A synapse with a given connectivity (its sizes override `cfg.n_dd`/`cfg.n_mn`).
    pub fn with_connectivity(
        mut cfg: SynapseConfig,
        conn: ConnectivityMatrix,
        weight_s: Tensor<2>,
    ) -> Result<Self> {
        cfg.n_dd = conn.n_src();
        cfg.n_mn = conn.n_tgt();
        cfg.validate()?;
        let d = weight_s.dims();
        if d[1] != 1 && d[1] != cfg.n_mn {
            return Err(Error::shape(
                "weight_s",
                format!("[batch|1, {}|1]", cfg.n_mn),
                format!("{d:?}"),
            ));
        }
        let w = to_vec_f64(weight_s.clone());
        for (k, v) in w.iter().enumerate() {
            check::non_negative(&format!("weight_s[{k}]"), *v)?;
        }
        Ok(Self {
            name: "synapse".into(),
            cfg,
            conn,
            weight_s,
            input: DD_SPIKES.into(),
            output: SYN_CONDUCTANCE_S.into(),
            state: None,
            host_state: HostSyn::default(),
        })
    }

    /// Renames the stage and its buffers: it reads presynaptic spikes `[n_src]` from `input` and
    /// writes the conductance `[n_tgt]` (S) to `output` (defaults: `synapse`, `dd_spikes`,
    /// `syn_conductance_s`). Used for the afferent and interneuron pathways of the closed loop.
    pub fn with_buffers(
        mut self,
        name: impl Into<String>,
        input: impl Into<String>,
        output: impl Into<String>,
    ) -> Self {
        self.name = name.into();
        self.input = input.into();
        self.output = output.into();
        self
    }

    /// The connectivity.
    pub fn connectivity(&self) -> &ConnectivityMatrix {
        &self.conn
    }

    /// The configuration.
    pub fn config(&self) -> &SynapseConfig {
        &self.cfg
    }

    fn check_batch(&self, batch: usize) -> Result<()> {
        let d = self.weight_s.dims();
        if d[0] != 1 && d[0] != batch {
            return Err(Error::shape(
                "weight_s",
                format!("[{batch}|1, {}|1]", self.cfg.n_mn),
                format!("{d:?}"),
            ));
        }
        Ok(())
    }

    /// Weight times Exp2Syn's peak factor (`w·f`), the per-event increment of the filter states.
    fn wf(&self) -> Tensor<2> {
        let f = self.cfg.kinetics.peak_factor();
        if f == 1.0 {
            self.weight_s.clone()
        } else {
            self.weight_s.clone().mul_scalar(f)
        }
    }

    /// The arrival input `x = s_{t−D} @ C` for a whole spike trace `[T, B, n_dd]` → `[T, B, n_mn]`.
    fn arrivals(&self, ctx: &Ctx, s: Tensor<3>, delay: usize) -> Tensor<3> {
        let [t_steps, b, n_dd] = s.dims();
        let n_mn = self.cfg.n_mn;
        if s.is_tracked() {
            let shifted = if delay == 0 {
                s
            } else if delay >= t_steps {
                ctx.zeros([t_steps, b, n_dd])
            } else {
                Tensor::cat(
                    vec![
                        ctx.zeros([delay, b, n_dd]),
                        s.slice([0..t_steps - delay, 0..b, 0..n_dd]),
                    ],
                    0,
                )
            };
            let c = ctx.tensor(self.conn.dense(), [n_dd, n_mn]);
            shifted
                .reshape([t_steps * b, n_dd])
                .matmul(c)
                .reshape([t_steps, b, n_mn])
        } else if ctx.precision == Precision::F32 {
            let x = self.event_arrivals::<f32>(&to_vec_f32(s), [t_steps, b, n_dd], delay);
            ctx.tensor_f32(x, [t_steps, b, n_mn])
        } else {
            let x = self.event_arrivals::<f64>(&to_vec_f64(s), [t_steps, b, n_dd], delay);
            ctx.tensor(x, [t_steps, b, n_mn])
        }
    }
}

impl Synapse {
    /// Event-driven `x[t + D] += s[t]·C` on the host (skips zero entries; exact for 0/1 spikes).
    fn event_arrivals<F: Copy + Default + PartialEq + std::ops::AddAssign>(
        &self,
        sv: &[F],
        dims: [usize; 3],
        delay: usize,
    ) -> Vec<F> {
        let [t_steps, b, n_dd] = dims;
        let n_mn = self.cfg.n_mn;
        let zero = F::default();
        let mut x = vec![zero; t_steps * b * n_mn];
        for t in 0..t_steps.saturating_sub(delay) {
            for bb in 0..b {
                let src = &sv[(t * b + bb) * n_dd..(t * b + bb + 1) * n_dd];
                let row = ((t + delay) * b + bb) * n_mn;
                for (i, &v) in src.iter().enumerate() {
                    if v != zero {
                        for &j in self.conn.targets(i) {
                            x[row + j] += v;
                        }
                    }
                }
            }
        }
        x
    }
}

impl Stage for Synapse {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::now(self.input.clone())],
            writes: vec![BufferSpec::new(self.output.clone(), &[self.cfg.n_mn], "S")],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        self.cfg.validate()?;
        self.cfg.kinetics.check_dt(io.dt_s())?;
        self.check_batch(io.batch())?;
        let ctx = io.ctx().clone();
        let (b, n_mn) = (io.batch(), self.cfg.n_mn);
        self.state = Some(SynState {
            fifo: VecDeque::new(),
            conn: ctx.tensor(self.conn.dense(), [self.cfg.n_dd, n_mn]),
            wf: self.wf(),
            a: ctx.zeros([b, n_mn]),
            b: ctx.zeros([b, n_mn]),
            delay: self.cfg.delay_steps(io.dt_s()),
            kind: self.cfg.kinetics.iir(io.dt_s()),
        });
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let s = io.read(&self.input)?;
        let st = self
            .state
            .as_mut()
            .ok_or_else(|| Error::config("synapse", "step before init"))?;
        let s_del = if st.delay == 0 {
            s
        } else {
            st.fifo.push_back(s);
            if st.fifo.len() > st.delay {
                st.fifo.pop_front().expect("non-empty")
            } else {
                io.ctx().zeros([io.batch(), self.cfg.n_dd])
            }
        };
        let x = s_del.matmul(st.conn.clone());
        let g = match st.kind {
            IirKind::Single { a } => {
                st.b = st.b.clone().mul_scalar(a) + st.wf.clone() * x;
                st.b.clone()
            }
            IirKind::Exp2 { a1, a2 } => {
                let term = st.wf.clone() * x;
                st.a = st.a.clone().mul_scalar(a1) + term.clone();
                st.b = st.b.clone().mul_scalar(a2) + term;
                st.b.clone() - st.a.clone()
            }
        };
        io.write(&self.output, g)
    }
    fn scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        Some((|| {
            self.cfg.kinetics.check_dt(dt_s)?;
            self.check_batch(batch)?;
            let s = inputs
                .get(&self.input)
                .cloned()
                .ok_or_else(|| Error::MissingBuffer {
                    stage: self.name.clone(),
                    buffer: self.input.clone(),
                })?;
            let delay = self.cfg.delay_steps(dt_s);
            let x = self.arrivals(ctx, s, delay);
            let g = syn_iir(
                x,
                self.wf(),
                IirCfg {
                    kind: self.cfg.kinetics.iir(dt_s),
                },
            );
            Ok([(self.output.clone(), g)].into_iter().collect())
        })())
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}
