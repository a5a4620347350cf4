//! The FAST motor-neuron pool model: a reduced leaky integrate-and-fire neuron with a spike-
//! triggered after-hyperpolarisation (AHP) current, one per motor unit, with per-unit parameters
//! following the size principle (scaled with the unit's recruitment threshold `rt ∈ (0, 1]`),
//! calibrated against the faithful NERLab model's f–I curves (MyoGen fixtures).
//!
//! Membrane (SI; voltages in the NERLab frame where rest ≈ 0 V), explicit Euler with step `dt`:
//!
//! ```text
//! i   = (g_syn·(E_syn − v) [or I_inj] + I_bias) − a          current into the cell (A)
//! v1  = v + α·(R·i − (v − v_rest)),  α = dt/τ_m              membrane potential (V)
//! m   = (v1 − θ)/spike_scale_v ;  s = spike_fn(m, mode, β)   spike (0/1 per step)
//! v'  = v1 − s·(v1 − v_reset)                                reset
//! a'  = k·a + s·ΔI_ahp,  k = exp(−dt/τ_ahp)                  AHP current (A)
//! ```
//!
//! By default the gradient does not flow through `s` into the state (reset, AHP increment);
//! see [`LifConfig::detach_spike_state`].
//!
//! The rheobase (smallest constant current that eventually fires) is `(θ − v_rest)/R − I_bias`.
//! Per unit (calibrated defaults, see [`calib`]): rheobase `I_rh(rt)`, `R = ΔV/I_rh`,
//! `τ_ahp(rt)`, `τ_m = ρ·τ_ahp`, `ΔI_ahp = w·I_rh`, `v_reset = v_rest + u_r·ΔV`.
//!
//! Two execution paths compute the same thing: the tape path ([`lif_step`], a handful of burn
//! tensor ops per step, via [`LifPool`]'s `Stage::step`) and the fused path (one custom op with a
//! hand-written adjoint, [`crate::neuron::fused::lif_scan`], via `Stage::scan`).

use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;

use super::fused::{self, LifScanSpec, host::N_COEF};

mod host;
use super::spike::{SURROGATE_BETA, SpikeMode, spike_fn};
use crate::error::{Error, Result, check};
use crate::kernel::{
    BufferSpec, Ctx, HostStage, ReadSpec, Stage, StageDecl, StageIo, Traces, to_vec_f64,
};
use host::HostLif;

/// Calibrated constants of the default fast model.
///
/// How they were obtained (`cargo run --release --example fit_lif -- smooth`, see
/// `examples/fit_lif.rs`): the MyoGen NERLab f–I fixtures (`tests/fixtures/fi_summary.csv`, dt
/// 0.1 ms, units 0, 100, 200, 400, 600, 799 with rt from `lif_fi_units_rt.csv`, currents
/// 1.1–4 × rheobase) were fitted with the dimensionless LIF+AHP under the fixture protocol (1100
/// ms, step at 100 ms, rate = 1/mean ISI over 600–1100 ms):
/// 1. rheobase: relative least squares of a quadratic in rt through the six fixture rheobases
///    (residuals ≤ 0.25 %);
/// 2. shape and time scale: Nelder–Mead on the log-rate error (weight 1 for fixture rates in
///    8–35 Hz, 0.2 outside) over ρ = τ_m/τ_ahp, w = ΔI_ahp/I_rh, u_r = (v_reset − v_rest)/ΔV and
///    1/τ_ahp = d0 + d1·rt + d2·rt² (one shared shape; the f–I curves of all units are nearly the
///    same curve in units of rheobase, scaled in rate by ≈4× from unit 0 to unit 799).
///
/// Result: worst in-band (8–35 Hz) rate error 12.8 % (unit 600 at 1.1×), typical 1–5 %.
pub mod calib {
    /// Threshold above rest ΔV = θ − v_rest (V).
    pub const DELTA_V_V: f64 = 0.010;
    /// Resting potential (V), NERLab frame (leak reversal 0 mV).
    pub const V_REST_V: f64 = 0.0;
    /// Excitatory synaptic reversal potential (V): MyoGen's NERLab Exp2Syn E = +70 mV.
    pub const E_SYN_V: f64 = 0.070;
    /// Rheobase `I_rh(rt) = c0 + c1·rt + c2·rt²` (A).
    pub const RHEOBASE_A: [f64; 3] = [4.828195724e-9, 9.447893085e-9, 4.110492401e-9];
    /// `1/τ_ahp(rt) = d0 + d1·rt + d2·rt²` (1/s).
    pub const INV_TAU_AHP_PER_S: [f64; 3] = [23.779594, 48.834798, 23.046287];
    /// ρ = τ_m / τ_ahp.
    pub const TAU_M_OVER_TAU_AHP: f64 = 0.902736804;
    /// w = ΔI_ahp / I_rh.
    pub const AHP_JUMP_OVER_RHEOBASE: f64 = 0.676499183;
    /// u_r = (v_reset − v_rest)/ΔV (reset below rest: the AHP undershoot).
    pub const RESET_FRACTION: f64 = -0.811159646;
}

/// What drives the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifInput {
    /// Synaptic conductance `syn_conductance_s` (S); current `g·(E_syn − v)`.
    #[default]
    Conductance,
    /// Injected current `inj_current_a` (A).
    Current,
}

impl LifInput {
    /// The buffer the pool reads.
    pub fn buffer(self) -> &'static str {
        match self {
            LifInput::Conductance => "syn_conductance_s",
            LifInput::Current => "inj_current_a",
        }
    }
}

/// Static settings of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct LifConfig {
    /// Spike mode.
    pub mode: SpikeMode,
    /// Surrogate / rate sharpness β (per unit of m).
    pub beta: f64,
    /// Voltage scale of m = (v1 − θ)/spike_scale_v (V).
    pub spike_scale_v: f64,
    /// Input kind (conductance or current).
    pub input: LifInput,
    /// Also record the membrane potential as buffer `mn_v_v`.
    pub record_v: bool,
    /// Adjoint checkpoint interval of the fused path (steps; 0 = ⌈√T⌉).
    pub checkpoint_every: usize,
    /// Cut the gradient through the spike where it feeds back into the state: the reset
    /// `v' = v1 − detach(s)·(v1 − v_reset)` and the AHP increment `a' = k·a + detach(s)·ΔI_ahp`
    /// (forward unchanged; the spike output itself keeps its surrogate/rate gradient).
    /// Default true: the full derivative multiplies the adjoint by ≈ −(v1 − v_reset)·S'(m)/
    /// spike_scale_v (≈ −180 with the defaults) at every spike, and the AHP–surrogate loop has a
    /// gain of ≈ 0.2 per step near threshold, so surrogate gradients explode over long rollouts
    /// (measured: inf in f32 after 50,000 steps; cf. Zenke & Vogels 2021 on detaching the reset).
    /// Set false for the exact derivative of the smooth (Rate-mode) forward, e.g. for
    /// finite-difference checks on short rollouts.
    pub detach_spike_state: bool,
}

impl Default for LifConfig {
    fn default() -> Self {
        Self {
            mode: SpikeMode::Hard,
            beta: SURROGATE_BETA,
            spike_scale_v: 1e-3,
            input: LifInput::Conductance,
            record_v: false,
            checkpoint_every: 0,
            detach_spike_state: true,
        }
    }
}

/// Name of the membrane-potential buffer (V) written when `record_v`.
pub const MN_V: &str = "mn_v_v";

/// Per-unit parameters as (differentiable) tensors, each `[1, n]` (shared) or `[batch, n]`.
#[derive(Clone, Debug)]
pub struct LifParams {
    /// Membrane time constant τ_m (s).
    pub tau_m_s: Tensor<2>,
    /// Input resistance R (Ω).
    pub r_ohm: Tensor<2>,
    /// Resting potential (V); also the initial membrane potential.
    pub v_rest_v: Tensor<2>,
    /// Spike threshold θ (V).
    pub v_thresh_v: Tensor<2>,
    /// Reset potential (V).
    pub v_reset_v: Tensor<2>,
    /// AHP decay time constant τ_ahp (s).
    pub tau_ahp_s: Tensor<2>,
    /// AHP current increment per spike ΔI_ahp (A).
    pub ahp_jump_a: Tensor<2>,
    /// Synaptic reversal potential E_syn (V).
    pub e_syn_v: Tensor<2>,
    /// Tonic bias current (A), default 0.
    pub i_bias_a: Tensor<2>,
}

/// Host-side per-unit parameter values (SI), e.g. to inspect or to build [`LifParams`].
#[derive(Clone, Debug, PartialEq)]
pub struct LifUnitValues {
    /// τ_m (s).
    pub tau_m_s: Vec<f64>,
    /// R (Ω).
    pub r_ohm: Vec<f64>,
    /// v_rest (V).
    pub v_rest_v: Vec<f64>,
    /// θ (V).
    pub v_thresh_v: Vec<f64>,
    /// v_reset (V).
    pub v_reset_v: Vec<f64>,
    /// τ_ahp (s).
    pub tau_ahp_s: Vec<f64>,
    /// ΔI_ahp (A).
    pub ahp_jump_a: Vec<f64>,
    /// E_syn (V).
    pub e_syn_v: Vec<f64>,
    /// I_bias (A).
    pub i_bias_a: Vec<f64>,
}

impl LifUnitValues {
    /// Calibrated defaults for recruitment thresholds `rt` (each in (0, 1]), see [`calib`]:
    /// `I_rh = c0 + c1 rt + c2 rt²` (A), `R = ΔV/I_rh` (Ω), `1/τ_ahp = d0 + d1 rt + d2 rt²` (1/s),
    /// `τ_m = ρ τ_ahp` (s), `ΔI_ahp = w I_rh` (A), `v_reset = v_rest + u_r ΔV` (V).
    pub fn calibrated(rt: &[f64]) -> Result<Self> {
        check::count_at_least("n_units", rt.len(), 1)?;
        for (i, &r) in rt.iter().enumerate() {
            if !(r.is_finite() && r > 0.0 && r <= 1.0) {
                return Err(Error::invalid(
                    format!("recruitment_thresholds[{i}]"),
                    r,
                    "(0, 1]",
                ));
            }
        }
        use calib::*;
        let poly = |c: [f64; 3], x: f64| c[0] + c[1] * x + c[2] * x * x;
        let n = rt.len();
        let rh: Vec<f64> = rt.iter().map(|&x| poly(RHEOBASE_A, x)).collect();
        let tau_ahp: Vec<f64> = rt
            .iter()
            .map(|&x| 1.0 / poly(INV_TAU_AHP_PER_S, x))
            .collect();
        Ok(Self {
            tau_m_s: tau_ahp.iter().map(|t| TAU_M_OVER_TAU_AHP * t).collect(),
            r_ohm: rh.iter().map(|i| DELTA_V_V / i).collect(),
            v_rest_v: vec![V_REST_V; n],
            v_thresh_v: vec![V_REST_V + DELTA_V_V; n],
            v_reset_v: vec![V_REST_V + RESET_FRACTION * DELTA_V_V; n],
            tau_ahp_s: tau_ahp,
            ahp_jump_a: rh.iter().map(|i| AHP_JUMP_OVER_RHEOBASE * i).collect(),
            e_syn_v: vec![E_SYN_V; n],
            i_bias_a: vec![0.0; n],
        })
    }

    /// Rheobase per unit `(θ − v_rest)/R − I_bias` (A).
    pub fn rheobase_a(&self) -> Vec<f64> {
        (0..self.r_ohm.len())
            .map(|j| (self.v_thresh_v[j] - self.v_rest_v[j]) / self.r_ohm[j] - self.i_bias_a[j])
            .collect()
    }
}

/// Per-step coefficient tensors `[batch, n]` used by [`lif_step`] (the same values the fused op
/// receives stacked).
#[derive(Clone, Debug)]
pub struct LifCoefs {
    /// α = dt/τ_m.
    pub alpha: Tensor<2>,
    /// R (Ω).
    pub r: Tensor<2>,
    /// v_rest (V).
    pub v_rest: Tensor<2>,
    /// θ (V).
    pub v_thresh: Tensor<2>,
    /// v_reset (V).
    pub v_reset: Tensor<2>,
    /// k = exp(−dt/τ_ahp).
    pub ahp_decay: Tensor<2>,
    /// ΔI_ahp (A).
    pub ahp_jump: Tensor<2>,
    /// E_syn (V).
    pub e_syn: Tensor<2>,
    /// I_bias (A).
    pub i_bias: Tensor<2>,
}

impl LifCoefs {
    /// Stacked `[P=9, batch, n]` in the order of [`fused::host::Coef`].
    pub fn stacked(&self) -> Tensor<3> {
        Tensor::stack::<3>(
            vec![
                self.alpha.clone(),
                self.r.clone(),
                self.v_rest.clone(),
                self.v_thresh.clone(),
                self.v_reset.clone(),
                self.ahp_decay.clone(),
                self.ahp_jump.clone(),
                self.e_syn.clone(),
                self.i_bias.clone(),
            ],
            0,
        )
    }
}

impl LifParams {
    /// Tensors `[1, n]` from host values (in `ctx`'s precision; not marked `require_grad`).
    pub fn from_values(ctx: &Ctx, v: &LifUnitValues) -> Result<Self> {
        let n = v.r_ohm.len();
        check::count_at_least("n_units", n, 1)?;
        let fields: [(&str, &Vec<f64>); 9] = [
            ("tau_m_s", &v.tau_m_s),
            ("r_ohm", &v.r_ohm),
            ("v_rest_v", &v.v_rest_v),
            ("v_thresh_v", &v.v_thresh_v),
            ("v_reset_v", &v.v_reset_v),
            ("tau_ahp_s", &v.tau_ahp_s),
            ("ahp_jump_a", &v.ahp_jump_a),
            ("e_syn_v", &v.e_syn_v),
            ("i_bias_a", &v.i_bias_a),
        ];
        for (name, vals) in fields {
            if vals.len() != n {
                return Err(Error::shape(name, n, vals.len()));
            }
            check::all_finite(name, vals)?;
        }
        let t = |x: &Vec<f64>| ctx.tensor(x.clone(), [1, n]);
        Ok(Self {
            tau_m_s: t(&v.tau_m_s),
            r_ohm: t(&v.r_ohm),
            v_rest_v: t(&v.v_rest_v),
            v_thresh_v: t(&v.v_thresh_v),
            v_reset_v: t(&v.v_reset_v),
            tau_ahp_s: t(&v.tau_ahp_s),
            ahp_jump_a: t(&v.ahp_jump_a),
            e_syn_v: t(&v.e_syn_v),
            i_bias_a: t(&v.i_bias_a),
        })
    }

    /// Calibrated defaults (see [`LifUnitValues::calibrated`]) for recruitment thresholds `rt`.
    pub fn calibrated(ctx: &Ctx, rt: &[f64]) -> Result<Self> {
        Self::from_values(ctx, &LifUnitValues::calibrated(rt)?)
    }

    /// Number of units n.
    pub fn n_units(&self) -> usize {
        self.r_ohm.dims()[1]
    }

    fn fields(&self) -> [(&'static str, &Tensor<2>); 9] {
        [
            ("tau_m_s", &self.tau_m_s),
            ("r_ohm", &self.r_ohm),
            ("v_rest_v", &self.v_rest_v),
            ("v_thresh_v", &self.v_thresh_v),
            ("v_reset_v", &self.v_reset_v),
            ("tau_ahp_s", &self.tau_ahp_s),
            ("ahp_jump_a", &self.ahp_jump_a),
            ("e_syn_v", &self.e_syn_v),
            ("i_bias_a", &self.i_bias_a),
        ]
    }

    /// Checks shapes (`[1, n]` or `[batch, n]`), values (finite; τ_m, τ_ahp, R > 0; ΔI_ahp ≥ 0;
    /// θ > v_reset) and stability of the time step: `dt/τ_m < 1` else
    /// [`Error::UnstableTimeStep`].
    pub fn validate(&self, dt_s: f64, batch: usize) -> Result<()> {
        check::positive("dt_s", dt_s)?;
        let n = self.n_units();
        check::count_at_least("n_units", n, 1)?;
        let mut host = Vec::new();
        for (name, t) in self.fields() {
            let [b, w] = t.dims();
            if w != n || (b != 1 && b != batch) {
                return Err(Error::shape(
                    name,
                    format!("[1, {n}] or [{batch}, {n}]"),
                    format!("{:?}", t.dims()),
                ));
            }
            let v = to_vec_f64(t.clone());
            check::all_finite(name, &v)?;
            host.push(v);
        }
        let pos = |k: usize, name: &str| -> Result<()> {
            match host[k].iter().position(|&x| x <= 0.0) {
                Some(i) => Err(Error::invalid(format!("{name}[{i}]"), host[k][i], "> 0")),
                None => Ok(()),
            }
        };
        pos(0, "tau_m_s")?;
        pos(1, "r_ohm")?;
        pos(5, "tau_ahp_s")?;
        if let Some(i) = host[6].iter().position(|&x| x < 0.0) {
            return Err(Error::invalid(
                format!("ahp_jump_a[{i}]"),
                host[6][i],
                ">= 0",
            ));
        }
        let nt = host[3].len().max(host[4].len());
        for i in 0..nt {
            let th = host[3][i % host[3].len()];
            let vr = host[4][i % host[4].len()];
            if th <= vr {
                return Err(Error::invalid(
                    format!("v_reset_v[{}]", i % n),
                    vr,
                    format!("< v_thresh_v = {th}"),
                ));
            }
        }
        let tau_min = host[0].iter().cloned().fold(f64::INFINITY, f64::min);
        if dt_s >= tau_min {
            return Err(Error::UnstableTimeStep {
                dt_s,
                model: "LIF motor-neuron pool".into(),
                reason: format!("explicit Euler needs dt < τ_m; the smallest τ_m is {tau_min} s"),
            });
        }
        Ok(())
    }

    /// Per-step coefficients `[batch, n]` (differentiable): `α = dt/τ_m`, `k = exp(−dt/τ_ahp)`,
    /// the others broadcast. Validates first (see [`Self::validate`]).
    pub fn coefficients(&self, dt_s: f64, batch: usize) -> Result<LifCoefs> {
        self.validate(dt_s, batch)?;
        let n = self.n_units();
        let ex = |t: &Tensor<2>| t.clone().expand([batch, n]);
        Ok(LifCoefs {
            alpha: ex(&(self.tau_m_s.clone().recip() * dt_s)),
            r: ex(&self.r_ohm),
            v_rest: ex(&self.v_rest_v),
            v_thresh: ex(&self.v_thresh_v),
            v_reset: ex(&self.v_reset_v),
            ahp_decay: ex(&(self.tau_ahp_s.clone().recip() * (-dt_s)).exp()),
            ahp_jump: ex(&self.ahp_jump_a),
            e_syn: ex(&self.e_syn_v),
            i_bias: ex(&self.i_bias_a),
        })
    }
}

/// Membrane state of the pool: potential `v` (V) and AHP current `a` (A), each `[batch, n]`.
#[derive(Clone, Debug)]
pub struct LifState {
    /// Membrane potential (V).
    pub v: Tensor<2>,
    /// AHP current (A).
    pub a: Tensor<2>,
}

impl LifState {
    /// Initial state: `v = v_rest`, `a = 0`.
    pub fn rest(c: &LifCoefs) -> Self {
        Self {
            v: c.v_rest.clone(),
            a: c.v_rest.zeros_like(),
        }
    }
}

/// One tape step (see module docs for the equations; op order is what the fused op reproduces
/// bit for bit): `x` `[batch, n]` is the synaptic conductance (S) or injected current (A).
/// Returns the new state and the spikes `[batch, n]`.
pub fn lif_step(
    state: &LifState,
    x: Tensor<2>,
    c: &LifCoefs,
    cfg: &LifConfig,
) -> (LifState, Tensor<2>) {
    let v = state.v.clone();
    let a = state.a.clone();
    let drive = match cfg.input {
        LifInput::Conductance => x * (c.e_syn.clone() - v.clone()),
        LifInput::Current => x,
    };
    let i = drive + c.i_bias.clone() - a.clone();
    let v1 = v.clone() + c.alpha.clone() * (c.r.clone() * i - (v - c.v_rest.clone()));
    let m = (v1.clone() - c.v_thresh.clone()) * (1.0 / cfg.spike_scale_v);
    let s = spike_fn(m, cfg.mode, cfg.beta);
    let s_state = if cfg.detach_spike_state {
        s.clone().detach()
    } else {
        s.clone()
    };
    let v_new = v1.clone() - s_state.clone() * (v1 - c.v_reset.clone());
    let a_new = c.ahp_decay.clone() * a + s_state * c.ahp_jump.clone();
    (LifState { v: v_new, a: a_new }, s)
}

/// The fast motor-neuron pool as a kernel [`Stage`]: reads `syn_conductance_s` (or
/// `inj_current_a`), writes `spikes` `[n]` (and `mn_v_v` when `record_v`). Tape path:
/// [`lif_step`] per tick; fused path: [`fused::lif_scan`] over the whole trace.
pub struct LifPool {
    name: String,
    params: LifParams,
    cfg: LifConfig,
    buffers: [String; 3],
    tape: Option<(LifState, LifCoefs, Vec<f64>, Vec<f64>)>,
    host_state: HostLif,
}

impl LifPool {
    /// A pool named `name` with the given parameters and settings.
    pub fn new(name: impl Into<String>, params: LifParams, cfg: LifConfig) -> Result<Self> {
        check::positive("spike_scale_v", cfg.spike_scale_v)?;
        check::positive("beta", cfg.beta)?;
        let buffers = [
            cfg.input.buffer().to_string(),
            crate::kernel::names::SPIKES.to_string(),
            MN_V.to_string(),
        ];
        Ok(Self {
            name: name.into(),
            params,
            cfg,
            buffers,
            tape: None,
            host_state: HostLif::default(),
        })
    }

    /// Renames the pool's buffers: it reads its input (conductance in S or current in A, as
    /// `cfg.input` says) from `input`, writes spikes to `spikes` and, with `record_v`, the
    /// membrane potential (V) to `v` (defaults: `syn_conductance_s` / `inj_current_a`, `spikes`,
    /// `mn_v_v`). Used for the interneuron pools of the closed loop.
    pub fn with_buffers(
        mut self,
        input: impl Into<String>,
        spikes: impl Into<String>,
        v: impl Into<String>,
    ) -> Self {
        self.buffers = [input.into(), spikes.into(), v.into()];
        self
    }

    /// Number of units.
    pub fn n_units(&self) -> usize {
        self.params.n_units()
    }
    /// Parameters.
    pub fn params(&self) -> &LifParams {
        &self.params
    }
    /// Settings.
    pub fn config(&self) -> &LifConfig {
        &self.cfg
    }

    fn scan_spec(&self, dt_s: f64) -> LifScanSpec {
        LifScanSpec {
            mode: self.cfg.mode,
            beta: self.cfg.beta,
            inv_scale: 1.0 / self.cfg.spike_scale_v,
            input: self.cfg.input,
            record_v: self.cfg.record_v,
            checkpoint_every: self.cfg.checkpoint_every,
            detach_spike_state: self.cfg.detach_spike_state,
            dt_s,
            report: Arc::new(Mutex::new(None)),
        }
    }

    /// Host check of one input step (finite, conductance ≥ 0, Euler factor `α(1 + R g) < 1`).
    fn check_input(
        &self,
        x: &[f64],
        alpha: &[f64],
        r: &[f64],
        n: usize,
        t: usize,
        dt_s: f64,
    ) -> Result<()> {
        let cond = self.cfg.input == LifInput::Conductance;
        // the common case first, branch-free; the slow loop below finds and names the culprit
        let valid = if cond {
            fused::host::input_valid::<f64, true>
        } else {
            fused::host::input_valid::<f64, false>
        };
        let ok = x
            .iter()
            .zip(alpha)
            .zip(r)
            .fold(true, |ok, ((&xv, &a), &rj)| ok & valid(xv, a, rj));
        if ok {
            return Ok(());
        }
        let name = self.buffers[0].as_str();
        for (j, &xv) in x.iter().enumerate() {
            let (b, u) = (j / n, j % n);
            let issue = if !xv.is_finite() {
                Some(fused::ScanIssue::NonFiniteInput {
                    step: t,
                    batch: b,
                    unit: u,
                    value: xv,
                })
            } else if self.cfg.input == LifInput::Conductance && xv < 0.0 {
                Some(fused::ScanIssue::NegativeConductance {
                    step: t,
                    batch: b,
                    unit: u,
                    value: xv,
                })
            } else if self.cfg.input == LifInput::Conductance && alpha[j] * (1.0 + r[j] * xv) >= 1.0
            {
                Some(fused::ScanIssue::Unstable {
                    step: t,
                    batch: b,
                    unit: u,
                    factor: alpha[j] * (1.0 + r[j] * xv),
                    dt_s,
                })
            } else {
                None
            };
            if let Some(i) = issue {
                return Err(i.into_error(name));
            }
        }
        Ok(())
    }
}

impl Stage for LifPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn declare(&self) -> StageDecl {
        let n = self.n_units();
        let [input, spikes, v] = &self.buffers;
        let mut writes = vec![BufferSpec::new(spikes.clone(), &[n], "spike/step")];
        if self.cfg.record_v {
            writes.push(BufferSpec::new(v.clone(), &[n], "V"));
        }
        StageDecl {
            reads: vec![ReadSpec::now(input.clone())],
            writes,
        }
    }

    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let c = self.params.coefficients(io.dt_s(), io.batch())?;
        let state = LifState::rest(&c);
        if self.cfg.record_v {
            io.write(&self.buffers[2], state.v.clone())?;
        }
        let alpha = to_vec_f64(c.alpha.clone());
        let r = to_vec_f64(c.r.clone());
        self.tape = Some((state, c, alpha, r));
        Ok(())
    }

    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let x = io.read(&self.buffers[0])?;
        let n = self.n_units();
        let dt_s = io.dt_s();
        let (state, c, alpha, r) = self
            .tape
            .take()
            .ok_or_else(|| Error::config(&self.name, "step called before init"))?;
        self.check_input(&to_vec_f64(x.clone()), &alpha, &r, n, t, dt_s)?;
        let (next, s) = lif_step(&state, x, &c, &self.cfg);
        io.write(&self.buffers[1], s)?;
        if self.cfg.record_v {
            io.write(&self.buffers[2], next.v.clone())?;
        }
        self.tape = Some((next, c, alpha, r));
        Ok(())
    }

    fn scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        if !fused::fused_supported(&ctx.device) {
            return None;
        }
        Some((|| {
            let [name, spikes, v] = &self.buffers;
            let name = name.as_str();
            let x = inputs
                .get(name)
                .cloned()
                .ok_or_else(|| Error::MissingBuffer {
                    stage: self.name.clone(),
                    buffer: name.into(),
                })?;
            let c = self.params.coefficients(dt_s, batch)?.stacked();
            let [t_steps, _, n] = x.dims();
            let out = fused::lif_scan(x, c, &self.scan_spec(dt_s), name)?;
            let mut traces = Traces::new();
            if self.cfg.record_v {
                traces.insert(
                    v.clone(),
                    out.clone().slice([t_steps..2 * t_steps, 0..batch, 0..n]),
                );
                traces.insert(spikes.clone(), out.slice([0..t_steps, 0..batch, 0..n]));
            } else {
                traces.insert(spikes.clone(), out);
            }
            Ok(traces)
        })())
    }

    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

/// Number of stacked coefficients (re-export for users of [`LifCoefs::stacked`]).
pub const LIF_N_COEF: usize = N_COEF;
