//! Descending-drive spike generators (MODEL.md §2.2, §8.1): a population of `n_dd` Poisson or gamma
//! input neurons, all driven by the same rate r(t) (Hz), with MyoGen's hazard accumulator.
//!
//! Per neuron and step: `y ← y + r·dt` (dimensionless hazard, r in Hz, dt in s); spike when
//! `y ≥ θ`; then `y ← 0` and θ ← the neuron's next threshold. Thresholds are i.i.d. `Exp(1)`
//! (Poisson; exact discrete-time Poisson by time rescaling) or `Gamma(k, 1)/k` (gamma process with
//! ISI CV ≈ 1/√k). At most one spike per step.
//!
//! Pathwise randomness: each neuron has its own seeded threshold sequence θ_0, θ_1, …, consumed
//! in order (one per spike), drawn up front — so the k-th threshold of a neuron does not depend on
//! the rate, and the rollout is a deterministic function of the rate. The sequences are bounded
//! by `max_rate_hz` (length ≈ max_rate·T + 8√(max_rate·T) + 16); a neuron that would need more
//! ends the run with a typed error naming `max_rate_hz`. By default all batch rows share the same
//! sequences (common random numbers across candidates).
//!
//! Modes ([`GeneratorMode`], the generator counterpart of `SpikeMode`):
//! - `Hard`: spikes `H(y − θ)` (0/1, `H(0) = 1` as in MyoGen's `y ≥ θ`), no gradient;
//! - `Pathwise` (= surrogate): forward bit-identical to `Hard`; backward straight-through
//!   `s = H(m) + g(m) − detach(g(m))`, `m = y − detach(θ)`, `g(m) = βm/(1+β|m|)` (fast-sigmoid
//!   slope `β/(1+β|m|)²`, β = 10 per unit of hazard), so the gradient flows rate → y → spike; the
//!   reset `y ← y·(1 − H)` uses the detached spike (gradient of y passes where no spike occurred);
//! - `Rate`: emits the expected count `r·dt` per neuron and step (no threshold, no reset), so
//!   `d(total count)/d r = n_steps·n_dd·dt` exactly.
//!
//! Rates: a negative rate is treated as 0 (no spike, the accumulator does not decrease), as
//! MyoGen's generators ignore r ≤ 0. A NaN rate ends the run with [`Error::NonFinite`] naming
//! `drive_rate_hz` and the first step where it occurred.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Int, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp1, Gamma};

use super::fused::{HazardCfg, hazard_scan};
use super::rate::DRIVE_RATE_HZ;
use crate::error::{Error, Result, check};
use crate::kernel::{
    AdjointUse, BufferSpec, Ctx, HostCx, HostStage, ReadSpec, SaveAt, Stage, StageDecl, StageIo,
    Traces, VjpIo, to_vec_f64,
};
use crate::neuron::spike::SURROGATE_BETA;

/// Expected spikes per step of the hard Poisson generator at rate `r` (Hz) and step `dt_s` (s):
/// `1 − e^{−max(r, 0)·dt}` (see [`GeneratorMode::GridRate`]).
fn grid_count<const D: usize>(r: Tensor<D>, dt_s: f64) -> Tensor<D> {
    (r.clamp_min(0.0).mul_scalar(-dt_s))
        .exp()
        .neg()
        .add_scalar(1.0)
}

/// Name of the descending-drive spike buffer (`[n_dd]`, spikes per step).
pub const DD_SPIKES: &str = "dd_spikes";

/// Threshold value placed after the last pre-drawn threshold of each neuron (never reached by a
/// valid run; reaching it means `max_rate_hz` was too low).
pub(crate) const SENTINEL: f64 = 1e30;

/// Inter-spike statistics of the generators.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeProcess {
    /// Thresholds ~ Exp(1): Poisson process (ISI CV = 1).
    Poisson,
    /// Thresholds ~ Gamma(k, 1)/k: gamma process (ISI CV ≈ 1/√k). MyoGen's DD default k = 3.
    Gamma {
        /// Shape k (> 0).
        shape_k: f64,
    },
}

/// Differentiability mode of the generators (§8.1: hard → hard, surrogate → pathwise, rate → rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorMode {
    /// 0/1 spikes, no gradient.
    #[default]
    Hard,
    /// Hard forward, straight-through surrogate backward (gradient rate → accumulator → spike).
    Pathwise,
    /// Expected count `r·dt` per step (smooth).
    Rate,
    /// Expected count of the hard Poisson generator on the step grid, `1 − e^{−r·dt}` per step
    /// (smooth; the hard accumulator fires after `⌈θ/(r·dt)⌉` steps, `θ ~ Exp(1)`, so its rate is
    /// `(1 − e^{−r·dt})/dt`; → `r·dt` as dt → 0). Used by the mean-field twin.
    GridRate,
    /// Hard forward (bit-identical to `Hard`); backward uses the derivative of the expected count,
    /// `∂s/∂r := dt` per neuron and step (a straight-through expected-value estimator). Unlike the
    /// per-step surrogate of `Pathwise`, whose slope is applied at every step between spikes and
    /// so overstates `∂count/∂r` by a factor of order 1/(r·dt), its gradient of any linear
    /// function of the spikes is exactly the gradient of that function's expectation.
    Expected,
}

impl std::str::FromStr for GeneratorMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hard" => Ok(Self::Hard),
            "pathwise" | "surrogate" => Ok(Self::Pathwise),
            "rate" => Ok(Self::Rate),
            "grid_rate" | "gridrate" => Ok(Self::GridRate),
            "expected" => Ok(Self::Expected),
            _ => Err(Error::invalid(
                "generator_mode",
                s,
                "one of hard, pathwise, rate, grid_rate, expected",
            )),
        }
    }
}

impl From<crate::neuron::spike::SpikeMode> for GeneratorMode {
    fn from(m: crate::neuron::spike::SpikeMode) -> Self {
        use crate::neuron::spike::SpikeMode;
        match m {
            SpikeMode::Hard => Self::Hard,
            SpikeMode::Surrogate => Self::Pathwise,
            SpikeMode::Rate => Self::Rate,
        }
    }
}

/// Configuration of an [`InputPopulation`].
#[derive(Clone, Debug, PartialEq)]
pub struct InputPopulationConfig {
    /// Number of input neurons (≥ 1).
    pub n_dd: usize,
    /// Poisson or gamma.
    pub process: SpikeProcess,
    /// Differentiability mode.
    pub mode: GeneratorMode,
    /// Seed of the threshold sequences.
    pub seed: u64,
    /// Surrogate sharpness β (per unit of hazard) for `Pathwise`.
    pub surrogate_beta: f64,
    /// Upper bound of the drive rate (Hz), sizes the pre-drawn threshold sequences.
    pub max_rate_hz: f64,
    /// Same threshold sequences for every batch row (default true).
    pub shared_across_batch: bool,
}

impl Default for InputPopulationConfig {
    fn default() -> Self {
        Self {
            n_dd: 400,
            process: SpikeProcess::Poisson,
            mode: GeneratorMode::Hard,
            seed: 0,
            surrogate_beta: SURROGATE_BETA,
            max_rate_hz: 500.0,
            shared_across_batch: true,
        }
    }
}

impl InputPopulationConfig {
    /// Checks every field (typed errors naming the field).
    pub fn validate(&self) -> Result<()> {
        check::count_at_least("n_dd", self.n_dd, 1)?;
        if let SpikeProcess::Gamma { shape_k } = self.process {
            check::positive("shape_k", shape_k)?;
        }
        check::positive("surrogate_beta", self.surrogate_beta)?;
        check::positive("max_rate_hz", self.max_rate_hz)?;
        Ok(())
    }

    /// Number of thresholds pre-drawn per neuron for `n_steps` steps of `dt_s`:
    /// `min(n_steps, ⌈λ + 8√λ⌉ + 16) + 1`, λ = max_rate·n_steps·dt (plus the sentinel, not counted).
    pub fn stream_len(&self, n_steps: usize, dt_s: f64) -> usize {
        let lambda = self.max_rate_hz * n_steps as f64 * dt_s;
        let k = (lambda + 8.0 * lambda.sqrt()).ceil() as usize + 16;
        k.min(n_steps) + 1
    }
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64 finaliser: decorrelates per-neuron seeds.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first `len` thresholds of neuron `neuron` of row `row` (dimensionless): i.i.d. `Exp(1)`
/// (`−ln(1 − U)`) or `Gamma(k, 1)/k`, from an RNG seeded by `(seed, row, neuron)` — so a
/// neuron's sequence does not depend on `len` or on the population size.
pub fn threshold_sequence(
    process: SpikeProcess,
    seed: u64,
    row: usize,
    neuron: usize,
    len: usize,
) -> Vec<f64> {
    let s = mix(mix(mix(seed) ^ row as u64) ^ (neuron as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut rng = StdRng::seed_from_u64(s);
    match process {
        SpikeProcess::Poisson => (0..len).map(|_| Exp1.sample(&mut rng)).collect(),
        SpikeProcess::Gamma { shape_k } => {
            let g = Gamma::new(shape_k, 1.0 / shape_k).expect("shape validated > 0");
            (0..len).map(|_| g.sample(&mut rng)).collect()
        }
    }
}

/// Thresholds of every (row, neuron): `[rows·n_dd, k1]`, the last column the sentinel.
fn threshold_streams(cfg: &InputPopulationConfig, rows: usize, k1: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * cfg.n_dd * k1);
    for row in 0..rows {
        for i in 0..cfg.n_dd {
            out.extend(threshold_sequence(cfg.process, cfg.seed, row, i, k1 - 1));
            out.push(SENTINEL);
        }
    }
    out
}

struct TapeState {
    yi: Tensor<2>,
    th: Tensor<2>,
    idx: Tensor<2, Int>,
    stream: Tensor<2>,
}

/// Stage: reads `drive_rate_hz` `[1]` (Hz), writes `dd_spikes` `[n_dd]` (spikes per step; 0/1 in
/// `Hard`/`Pathwise`, expected count `r·dt` in `Rate`). Has a fused scan (`hazard_scan`: one
/// custom op with a hand-written adjoint for `Pathwise`).
pub struct InputPopulation {
    name: String,
    cfg: InputPopulationConfig,
    k1: usize,
    streams: Arc<Vec<f64>>,
    rows: usize,
    n_steps: usize,
    state: Option<TapeState>,
    first_nan: Option<Tensor<2>>,
    input: String,
    output: String,
    rate_bound_field: String,
    host_state: HostGen,
    /// Width of the rate input (1 = one shared rate, or `n_dd`), seen at `init`.
    input_width: usize,
}

/// Streaming-path state: hazard `y`, threshold index per (row, generator).
#[derive(Default)]
struct HostGen {
    y: Vec<f64>,
    idx: Vec<usize>,
}

impl InputPopulation {
    /// A population named `input_population`; the config is checked here.
    pub fn new(cfg: InputPopulationConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            name: "input_population".into(),
            cfg,
            k1: 0,
            streams: Arc::new(Vec::new()),
            rows: 1,
            n_steps: 0,
            state: None,
            first_nan: None,
            input: DRIVE_RATE_HZ.into(),
            output: DD_SPIKES.into(),
            rate_bound_field: "max_rate_hz".into(),
            host_state: HostGen::default(),
            input_width: 1,
        })
    }

    /// Renames the stage and its buffers: it reads the rate (Hz) from `input` — `[1]` (one rate
    /// for every generator) or `[n_dd]` (one rate per generator; tape path only) — and writes the
    /// spikes `[n_dd]` to `output` (defaults: `input_population`, `drive_rate_hz`, `dd_spikes`).
    /// Used for the afferent fibre populations of the closed loop.
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

    /// Names the rate bound `field` (default `max_rate_hz`) in the error raised when a generator
    /// runs out of pre-drawn thresholds, so that it points at the user's setting (e.g.
    /// `ia.max_rate_hz` for an afferent population).
    pub fn with_rate_bound_field(mut self, field: impl Into<String>) -> Self {
        self.rate_bound_field = field.into();
        self
    }

    /// The configuration.
    pub fn config(&self) -> &InputPopulationConfig {
        &self.cfg
    }

    fn exhausted_error(&self) -> Error {
        Error::invalid(
            &self.rate_bound_field,
            self.cfg.max_rate_hz,
            format!(
                "an upper bound of the drive rate: a generator used all {} pre-drawn thresholds; raise max_rate_hz",
                self.k1 - 1
            ),
        )
    }

    fn hazard_cfg(&self, batch: usize, dt_s: f64) -> HazardCfg {
        HazardCfg {
            streams: self.streams.clone(),
            n: self.cfg.n_dd,
            k1: self.k1,
            rows: self.rows,
            batch,
            dt_s,
            beta: self.cfg.surrogate_beta,
            exhausted: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Stage for InputPopulation {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::now(self.input.clone())],
            writes: vec![BufferSpec::new(
                self.output.clone(),
                &[self.cfg.n_dd],
                "spike/step",
            )],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        self.cfg.validate()?;
        self.input_width = io.read(&self.input)?.dims()[1];
        let (b, n, dt) = (io.batch(), self.cfg.n_dd, io.dt_s());
        self.n_steps = io.n_steps();
        self.state = None;
        self.first_nan = Some(io.ctx().full([b, 1], -1.0));
        if matches!(self.cfg.mode, GeneratorMode::Rate | GeneratorMode::GridRate) {
            return Ok(());
        }
        self.k1 = self.cfg.stream_len(self.n_steps, dt);
        self.rows = if self.cfg.shared_across_batch { 1 } else { b };
        self.streams = Arc::new(threshold_streams(&self.cfg, self.rows, self.k1));
        let ctx = io.ctx().clone();
        let stream = ctx.tensor((*self.streams).clone(), [self.rows * n, self.k1]);
        let stream = if self.rows == b {
            stream
        } else {
            stream.repeat_dim(0, b)
        };
        let idx = Tensor::<2, Int>::zeros([b * n, 1], &ctx.device);
        let th = stream.clone().gather(1, idx.clone()).reshape([b, n]);
        self.state = Some(TapeState {
            yi: ctx.zeros([b, n]),
            th,
            idx,
            stream,
        });
        Ok(())
    }

    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let r = io.read(&self.input)?;
        let (b, n, dt) = (io.batch(), self.cfg.n_dd, io.dt_s());
        let w = r.dims()[1];
        if w != 1 && w != n {
            return Err(Error::shape(
                format!("{}.{}", self.name, self.input),
                format!("[{b}, 1] or [{b}, {n}]"),
                format!("{:?}", r.dims()),
            ));
        }
        // One shared rate `[b, 1]` is broadcast to the n generators; per-generator rates `[b, n]`
        // are used as they are.
        let widen = |x: Tensor<2>| if w == n { x } else { x.repeat_dim(1, n) };
        let first_nan = self
            .first_nan
            .take()
            .ok_or_else(|| Error::config("input_population", "step before init"))?;
        let bad = r.clone().detach().is_nan().any_dim(1);
        let unset = first_nan.clone().lower_elem(0.0);
        let first_nan = first_nan.mask_fill(bad.bool_and(unset), t as f64);
        if t + 1 == self.n_steps {
            let fnan = to_vec_f64(first_nan.clone());
            if let Some((bb, &step)) = fnan.iter().enumerate().find(|(_, v)| **v >= 0.0) {
                return Err(Error::NonFinite {
                    buffer: self.input.clone(),
                    step: step as usize,
                    batch: bb,
                    unit: 0,
                });
            }
        }
        self.first_nan = Some(first_nan);
        if self.cfg.mode == GeneratorMode::Rate {
            let s = widen(r.clamp_min(0.0).mul_scalar(dt));
            return io.write(&self.output, s);
        }
        if self.cfg.mode == GeneratorMode::GridRate {
            return io.write(&self.output, widen(grid_count(r, dt)));
        }
        let mode = self.cfg.mode;
        let expected_grad = if mode == GeneratorMode::Expected {
            let rdt = widen(r.clone().clamp_min(0.0).mul_scalar(dt));
            Some(rdt.clone() - rdt.detach())
        } else {
            None
        };
        let beta = self.cfg.surrogate_beta;
        let st = self
            .state
            .as_mut()
            .ok_or_else(|| Error::config("input_population", "step before init"))?;
        let r = if matches!(mode, GeneratorMode::Hard | GeneratorMode::Expected) {
            r.detach()
        } else {
            r
        };
        let rdt = r.clamp_min(0.0).mul_scalar(dt);
        let y = st.yi.clone() + rdt;
        let m = y.clone() - st.th.clone();
        let md = m.clone().detach();
        let h = md.zeros_like().mask_fill(md.greater_equal_elem(0.0), 1.0);
        let s = match mode {
            GeneratorMode::Pathwise => {
                let g = m.clone().mul_scalar(beta) / (m.abs().mul_scalar(beta) + 1.0);
                h.clone() + (g.clone() - g.detach())
            }
            GeneratorMode::Expected => h.clone() + expected_grad.expect("set for Expected"),
            _ => h.clone(),
        };
        st.yi = y * (h.clone().neg() + 1.0);
        st.idx = st.idx.clone() + h.int().reshape([b * n, 1]);
        st.th = st.stream.clone().gather(1, st.idx.clone()).reshape([b, n]);
        if t + 1 == self.n_steps {
            let max_idx = st
                .idx
                .clone()
                .max()
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .expect("int")[0];
            if max_idx as usize >= self.k1 - 1 {
                return Err(self.exhausted_error());
            }
        }
        io.write(&self.output, s)
    }

    fn scan(
        &mut self,
        inputs: &Traces,
        _ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        if inputs.get(&self.input).is_some_and(|r| r.dims()[2] != 1) {
            return None; // per-generator rates: stepped on the tape path
        }
        Some((|| {
            let r = inputs
                .get(&self.input)
                .cloned()
                .ok_or_else(|| Error::MissingBuffer {
                    stage: self.name.clone(),
                    buffer: self.input.clone(),
                })?;
            let [t_steps, _, _] = r.dims();
            let host = to_vec_f64(r.clone());
            if let Some(k) = host.iter().position(|v| v.is_nan()) {
                return Err(Error::NonFinite {
                    buffer: self.input.clone(),
                    step: k / batch,
                    batch: k % batch,
                    unit: 0,
                });
            }
            let n = self.cfg.n_dd;
            let s = match self.cfg.mode {
                GeneratorMode::Rate => r.clamp_min(0.0).mul_scalar(dt_s).repeat_dim(2, n),
                GeneratorMode::GridRate => grid_count(r, dt_s).repeat_dim(2, n),
                mode => {
                    let expected_grad = if mode == GeneratorMode::Expected {
                        let rdt = r.clone().clamp_min(0.0).mul_scalar(dt_s).repeat_dim(2, n);
                        Some(rdt.clone() - rdt.detach())
                    } else {
                        None
                    };
                    let r = if matches!(mode, GeneratorMode::Hard | GeneratorMode::Expected) {
                        r.detach()
                    } else {
                        r
                    };
                    let r = r.clamp_min(0.0).reshape([t_steps, batch]);
                    let cfg = self.hazard_cfg(batch, dt_s);
                    let flag = cfg.exhausted.clone();
                    let s = hazard_scan(r, cfg);
                    if flag.load(Ordering::Relaxed) {
                        return Err(self.exhausted_error());
                    }
                    match expected_grad {
                        Some(g) => s + g,
                        None => s,
                    }
                }
            };
            Ok([(self.output.clone(), s)].into_iter().collect())
        })())
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for InputPopulation {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let len = cx.batch * self.cfg.n_dd;
        self.host_state = HostGen {
            y: vec![0.0; len],
            idx: vec![0; len],
        };
        Ok(())
    }
    /// Per generator: `y ← y + max(r, 0)·dt`; spike `H(y − θ)` (then `y ← 0`, next θ) — or the
    /// expected count `max(r, 0)·dt` (Rate) / `1 − e^{−max(r,0)·dt}` (GridRate), as `step`.
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let (b, n, dt) = (cx.batch, self.cfg.n_dd, cx.dt_s);
        let r = ins[0];
        let w = r.len() / b;
        if w != 1 && w != n {
            return Err(Error::shape(
                format!("{}.{}", self.name, self.input),
                format!("[{b}, 1] or [{b}, {n}]"),
                format!("[{b}, {w}]"),
            ));
        }
        if let Some(k) = r.iter().position(|v| v.is_nan()) {
            return Err(Error::NonFinite {
                buffer: self.input.clone(),
                step: t,
                batch: k / w,
                unit: 0,
            });
        }
        let rate = |bb: usize, i: usize| r[bb * w + if w == 1 { 0 } else { i }].max(0.0);
        let out = &mut outs[0];
        match self.cfg.mode {
            GeneratorMode::Rate => {
                for bb in 0..b {
                    for i in 0..n {
                        out[bb * n + i] = rate(bb, i) * dt;
                    }
                }
            }
            GeneratorMode::GridRate => {
                for bb in 0..b {
                    for i in 0..n {
                        out[bb * n + i] = 1.0 - (-(rate(bb, i) * dt)).exp();
                    }
                }
            }
            _ => {
                let st = &mut self.host_state;
                for bb in 0..b {
                    let srow = if self.rows == 1 { 0 } else { bb };
                    for i in 0..n {
                        let k = bb * n + i;
                        let y = st.y[k] + rate(bb, i) * dt;
                        let th = self.streams[(srow * n + i) * self.k1 + st.idx[k]];
                        if y - th >= 0.0 {
                            out[k] = 1.0;
                            st.y[k] = 0.0;
                            st.idx[k] += 1;
                            if st.idx[k] >= self.k1 - 1 {
                                return Err(self.exhausted_error());
                            }
                        } else {
                            out[k] = 0.0;
                            st.y[k] = y;
                        }
                    }
                }
            }
        }
        Ok(())
    }
    fn host_save(&self, _at: SaveAt, into: &mut Vec<f64>) {
        into.extend_from_slice(&self.host_state.y);
        into.extend(self.host_state.idx.iter().map(|&i| i as f64));
    }
    fn host_load(&mut self, _at: SaveAt, from: &[f64]) {
        let n = self.host_state.y.len();
        self.host_state.y.copy_from_slice(&from[..n]);
        for (i, v) in self.host_state.idx.iter_mut().zip(&from[n..2 * n]) {
            *i = *v as usize;
        }
    }
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        match self.cfg.mode {
            GeneratorMode::Rate
            | GeneratorMode::GridRate
            | GeneratorMode::Hard
            | GeneratorMode::Expected => Ok(()),
            m => Err(Error::config(
                "path",
                format!(
                    "generator mode {m:?} has no adjoint on the stream path (rate, grid_rate: \
                     exact; expected: the expected-count gradient; hard: zero); use the tape or \
                     fused path"
                ),
            )),
        }
    }
    /// Hard: unused; one shared rate: only each row's sum over the generators (the rate's
    /// adjoint is `Σ_i λ_s_i·∂s_i/∂r`); per-generator rates: element by element.
    fn output_adjoint_use(&self, _out: usize) -> AdjointUse {
        match self.cfg.mode {
            GeneratorMode::Hard => AdjointUse::Unused,
            _ if self.input_width == 1 => AdjointUse::SumOnly,
            _ => AdjointUse::Full,
        }
    }
    /// Rate and Expected: `∂s/∂r = dt` (r > 0); GridRate: `dt·e^{−r·dt}`; Hard: 0 (as on the
    /// tape).
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        let (b, n, dt) = (cx.batch, self.cfg.n_dd, cx.dt_s);
        let w = ins[0].len() / b;
        let grid = match self.cfg.mode {
            GeneratorMode::Rate | GeneratorMode::Expected => false,
            GeneratorMode::GridRate => true,
            _ => return Ok(()),
        };
        for bb in 0..b {
            for i in 0..n {
                let k = bb * w + if w == 1 { 0 } else { i };
                let r = ins[0][k];
                if r > 0.0 {
                    let d = if grid { dt * (-(r * dt)).exp() } else { dt };
                    g_ins[0][k] += g_outs[0][bb * n + i] * d;
                }
            }
        }
        Ok(())
    }
}
