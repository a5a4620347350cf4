//! The FAITHFUL membrane model: MyoGen's default "NERLab" two-compartment conductance-based motor
//! neuron (MODEL.md §1.1–1.4; MyoGen `nmodl_files/napp.mod`, `caL.mod`, `cells.py` `AlphaMN`,
//! `populations/motor_neurons.py`), as a batched burn tensor step on `[batch, n_units]` tensors.
//!
//! # Units
//! Inside: NEURON's units — mV, ms, µS, nA, nF, µm, S/cm² (µS·mV = nA, nA·ms/nF = mV). At the
//! [`NerlabPool`] stage boundary: SI (`syn_conductance_s` in S, `v_soma_v` in V, `dt_s` in s).
//!
//! # Model (NERLab frame: rest ≈ 0 mV, `el = 0`, `ena = 120`, `ek = −10`, `ecaL = 140` mV)
//! Soma (cylinder `L = diam = d_s`, area `A_s = π d_s²`), channel `napp` with gates `m, h, p, n, r`
//! evaluated at `v2 = v − vtraub_napp`, `vtrap(x, y) = x/(e^{x/y} − 1)`:
//! - `α_m = 0.64·vtrap(15 − v2, 4)`, `β_m = 0.56·vtrap(v2 − 40, 5)`;
//! - `α_h = 0.928·e^{(17 − v2)/18}`, `β_h = 9/(e^{(40 − v2)/5} + 1)`;
//! - `α_p = 0.64·vtrap(5 − v2, 4)`, `β_p = 0.56·vtrap(v2 − 30, 5)`;
//! - `α_n = 0.08·vtrap(15 − v2, 7)`, `β_n = 2·e^{(10 − v2)/40}`;
//! - `α_r = 3.5/(e^{(55 − v2)/4} + 1)`, `β_r = rinact`;
//! - `I_s = (ḡ_Na m³h + ḡ_NaP p³)(v − ena) + (ḡ_Kf n⁴ + ḡ_Ks r²)(v − ek) + g_l (v − el)`.
//!
//! Dendrite (cylinder `L_d`, `d_d`, area `A_d = π d_d L_d`), channel `caL` with one gate `L`:
//! `L∞ = 1/(1 + e^{−(v − vtraub_caL + 30)/1})`, `dL/dt = (L∞ − L)/Ltau`,
//! `I_d = ḡ_caL·γ·L·(v − ecaL) + g_l,d (v − el_caL) + g_syn (v − E_syn)`.
//!
//! Cable: `C_s dv_s/dt = −A_s I_s + I_inj + g_ax (v_d − v_s)`, `C_d dv_d/dt = −A_d I_d + g_ax (v_s − v_d)`,
//! `C = cm·A`, `1/g_ax = Ra (d_s/2)/(π d_s²/4) + Ra (L_d/2)/(π d_d²/4)` (the half-section
//! resistances; the dendrite hangs from the soma's zero-area 0-end node, which NEURON eliminates
//! exactly into this series resistance).
//!
//! # Integration (what NEURON does with `secondorder = 2`, fixed step)
//! Per step, with the gates `g_n` and voltages `v_n`:
//! 1. Crank–Nicolson for the voltage pair: with the channel conductances frozen at `g_n`, solve
//!    the 2×2 system `(2C/dt + G + G_ax) Δ = −I(v_n) + I_inj + axial(v_n)` per unit and set
//!    `v_{n+1} = v_n + 2Δ` (NEURON's `cj = 2/dt` and `v += 2·rhs`); the injected current is the
//!    value at the step midpoint (NEURON evaluates IClamp at `t + dt/2`).
//! 2. Gates by exponential Euler (`cnexp`) at the NEW voltage:
//!    `x_{n+1} = x_n + (1 − e^{−dt(α+β)})(α/(α+β) − x_n)` (gates staggered half a step).
//! 3. Spike when the soma crosses +50 mV upward: `v_{n+1} > 50 ≥ v_n` (a NetCon with threshold 50).
//!
//! Checked against MyoGen/NEURON 8.2.7 (`tests/nerlab_fixtures.rs`): in f64 the voltage traces of
//! `fi_vtrace.csv` are reproduced to ~1e-8 mV over 150 ms. NEURON's napp.mod in MyoGen 0.12 has no
//! rate TABLE (an earlier upstream version had one; the fixtures match the analytic rates).

use burn::tensor::{Tensor, activation::sigmoid};

use crate::error::{Error, Result, check};
use crate::kernel::{BufferSpec, Ctx, ReadSpec, Stage, StageDecl, StageIo, Traces, to_vec_f64};
use crate::neuron::nerlab_fused;
use crate::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use crate::neuron::recruitment::RecruitmentThresholds;
use crate::neuron::spike::{SURROGATE_BETA, SpikeMode};

/// Spike detection threshold at the soma, mV (upward crossing).
pub const SPIKE_THRESHOLD_MV: f64 = 50.0;
/// Excitatory synaptic reversal potential of NERLab motor neurons, mV (MyoGen sets `syn.e = 70`).
pub const E_SYN_EXC_MV: f64 = 70.0;
/// Initial membrane potential MyoGen writes into soma and dendrite, mV (the cell then relaxes to ≈0 mV).
pub const V_INIT_MV: f64 = -67.0;
/// Largest usable time step, ms. Above it the Na spike (activation τ ≈ 0.1–0.3 ms) is not resolved:
/// Crank–Nicolson rings and spikes are lost (at 0.5 ms unit 0 fires 2 instead of 40 spikes at 4×
/// rheobase). MyoGen uses 0.025–0.1 ms.
pub const MAX_DT_MS: f64 = 0.25;

/// Buffer read by [`NerlabPool`]: synaptic conductance onto each unit's dendrite, siemens.
pub const SYN_CONDUCTANCE_S: &str = "syn_conductance_s";
/// Buffer written by [`NerlabPool`]: spikes per step.
pub const SPIKES: &str = "spikes";
/// Optional buffer written by [`NerlabPool`]: soma membrane potential, volts (NERLab frame, rest ≈ 0).
pub const V_SOMA_V: &str = "v_soma_v";

/// Per-unit NERLab parameters as tensors (`[1, n]` broadcast over the batch, or `[batch, n]` to
/// give each batch element its own values), in NEURON units. Any of them may be a
/// `require_grad()` tensor: the step is differentiable in all of them.
#[derive(Clone, Debug)]
pub struct NerlabTensors {
    /// Soma diameter = length, µm.
    pub soma_diam_um: Tensor<2>,
    /// Dendrite length, µm.
    pub dend_l_um: Tensor<2>,
    /// Dendrite diameter, µm.
    pub dend_diam_um: Tensor<2>,
    /// Fast Na conductance density, S/cm².
    pub gnabar: Tensor<2>,
    /// Persistent Na conductance density, S/cm².
    pub gnapbar: Tensor<2>,
    /// Fast K conductance density, S/cm².
    pub gkfbar: Tensor<2>,
    /// Slow K (AHP) conductance density, S/cm².
    pub gksbar: Tensor<2>,
    /// Soma leak conductance density, S/cm².
    pub gl_soma: Tensor<2>,
    /// Slow-K deactivation rate `rinact`, 1/ms.
    pub rinact_per_ms: Tensor<2>,
    /// caL conductance density (before γ), S/cm².
    pub gcalbar: Tensor<2>,
    /// Dendrite leak conductance density, S/cm².
    pub gl_dend: Tensor<2>,
    /// caL activation offset, mV.
    pub vtraub_cal_mv: Tensor<2>,
    /// caL time constant, ms.
    pub ltau_cal_ms: Tensor<2>,
    /// Neuromodulation factor γ (`[1, 1]` or per unit).
    pub gamma: Tensor<2>,
    /// Pool constants (reversal potentials, Ra, cm; the axon entries are not used here).
    pub constants: NerlabConstants,
    n_units: usize,
}

impl NerlabTensors {
    /// `[1, n]` tensors of the given parameters on `ctx` (validated first).
    pub fn new(ctx: &Ctx, p: &NerlabParams) -> Result<Self> {
        p.validate()?;
        let n = p.len();
        let t = |v: &Vec<f64>| ctx.tensor(v.clone(), [1, n]);
        Ok(Self {
            soma_diam_um: t(&p.soma_diam_um),
            dend_l_um: t(&p.dend_l_um),
            dend_diam_um: t(&p.dend_diam_um),
            gnabar: t(&p.gnabar),
            gnapbar: t(&p.gnapbar),
            gkfbar: t(&p.gkfbar),
            gksbar: t(&p.gksbar),
            gl_soma: t(&p.gl_soma),
            rinact_per_ms: t(&p.rinact_per_ms),
            gcalbar: t(&p.gcalbar),
            gl_dend: t(&p.gl_dend),
            vtraub_cal_mv: t(&p.vtraub_cal_mv),
            ltau_cal_ms: t(&p.ltau_cal_ms),
            gamma: ctx.tensor(vec![p.constants.gamma], [1, 1]),
            constants: p.constants.clone(),
            n_units: n,
        })
    }

    /// Number of units (width of every per-unit tensor).
    pub fn n_units(&self) -> usize {
        self.n_units
    }

    /// Absolute electrical coefficients of each unit (see [`NerlabCoeffs`]), as tensor ops on the
    /// parameters (so gradients flow back to the densities and geometry).
    pub fn coeffs(&self) -> NerlabCoeffs {
        let pi = std::f64::consts::PI;
        let c = &self.constants;
        // areas in cm²: soma π d² (L = d), dendrite π d L; 1 µm² = 1e-8 cm²
        let area_s = self.soma_diam_um.clone().square() * (pi * 1e-8);
        let area_d = self.dend_diam_um.clone() * self.dend_l_um.clone() * (pi * 1e-8);
        // S/cm² · cm² = S → µS (×1e6); µF/cm² · cm² = µF → nF (×1e3)
        let us_s = |g: &Tensor<2>| g.clone() * area_s.clone() * 1e6;
        let us_d = |g: &Tensor<2>| g.clone() * area_d.clone() * 1e6;
        // half-section axial resistances, Ω: Ra·(L/2)/(π d²/4) with µm → cm (×1e4 overall)
        let r_s = self.soma_diam_um.clone().recip() * (c.ra_ohm_cm * 2.0 / pi * 1e4);
        let r_d = self.dend_l_um.clone() / self.dend_diam_um.clone().square()
            * (c.ra_ohm_cm * 2.0 / pi * 1e4);
        NerlabCoeffs {
            c_soma_nf: area_s.clone() * (c.cm_uf_cm2 * 1e3),
            c_dend_nf: area_d.clone() * (c.cm_uf_cm2 * 1e3),
            g_na_us: us_s(&self.gnabar),
            g_nap_us: us_s(&self.gnapbar),
            g_kf_us: us_s(&self.gkfbar),
            g_ks_us: us_s(&self.gksbar),
            g_l_soma_us: us_s(&self.gl_soma),
            rinact_per_ms: self.rinact_per_ms.clone(),
            g_cal_us: us_d(&self.gcalbar) * self.gamma.clone(),
            g_l_dend_us: us_d(&self.gl_dend),
            vtraub_cal_mv: self.vtraub_cal_mv.clone(),
            ltau_cal_ms: self.ltau_cal_ms.clone(),
            g_ax_us: (r_s + r_d).recip() * 1e6,
            constants: c.clone(),
        }
    }
}

/// Absolute per-unit coefficients in NEURON units: capacitances (nF), maximal conductances (µS,
/// density × membrane area; `g_cal_us` includes γ), axial coupling conductance (µS).
#[derive(Clone, Debug)]
pub struct NerlabCoeffs {
    /// Soma capacitance `cm·A_s`, nF.
    pub c_soma_nf: Tensor<2>,
    /// Dendrite capacitance `cm·A_d`, nF.
    pub c_dend_nf: Tensor<2>,
    /// Fast Na maximal conductance, µS.
    pub g_na_us: Tensor<2>,
    /// Persistent Na maximal conductance, µS.
    pub g_nap_us: Tensor<2>,
    /// Fast K maximal conductance, µS.
    pub g_kf_us: Tensor<2>,
    /// Slow K maximal conductance, µS.
    pub g_ks_us: Tensor<2>,
    /// Soma leak conductance, µS.
    pub g_l_soma_us: Tensor<2>,
    /// Slow-K deactivation rate, 1/ms.
    pub rinact_per_ms: Tensor<2>,
    /// caL maximal conductance × γ, µS.
    pub g_cal_us: Tensor<2>,
    /// Dendrite leak conductance, µS.
    pub g_l_dend_us: Tensor<2>,
    /// caL activation offset, mV.
    pub vtraub_cal_mv: Tensor<2>,
    /// caL time constant, ms.
    pub ltau_cal_ms: Tensor<2>,
    /// Soma–dendrite coupling conductance, µS.
    pub g_ax_us: Tensor<2>,
    /// Reversal potentials etc.
    pub constants: NerlabConstants,
}

/// State of a batch of NERLab units, every tensor `[batch, n_units]`.
#[derive(Clone, Debug)]
pub struct NerlabState {
    /// Soma membrane potential, mV.
    pub v_soma_mv: Tensor<2>,
    /// Dendrite membrane potential, mV.
    pub v_dend_mv: Tensor<2>,
    /// Na activation.
    pub m: Tensor<2>,
    /// Na inactivation.
    pub h: Tensor<2>,
    /// Persistent Na activation.
    pub p: Tensor<2>,
    /// Fast K activation.
    pub n: Tensor<2>,
    /// Slow K (AHP) activation.
    pub r: Tensor<2>,
    /// Dendritic caL activation.
    pub l: Tensor<2>,
    /// Spike output of the step that produced this state (0/1 in hard and surrogate mode).
    pub spikes: Tensor<2>,
}

impl NerlabState {
    /// The named state variables (for error reports): `(name, tensor)`.
    pub fn fields(&self) -> [(&'static str, &Tensor<2>); 9] {
        [
            ("v_soma_mv", &self.v_soma_mv),
            ("v_dend_mv", &self.v_dend_mv),
            ("m", &self.m),
            ("h", &self.h),
            ("p", &self.p),
            ("n", &self.n),
            ("r", &self.r),
            ("l", &self.l),
            ("spikes", &self.spikes),
        ]
    }

    /// Typed [`Error::NonFinite`] naming the state variable, step, batch element and unit of the
    /// first non-finite value (reads the state back to the host).
    pub fn check_finite(&self, step: usize) -> Result<()> {
        for (name, t) in self.fields() {
            let [_, w] = t.dims();
            let v = to_vec_f64(t.clone());
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    buffer: format!("nerlab.{name}"),
                    step,
                    batch: i / w,
                    unit: i % w,
                });
            }
        }
        Ok(())
    }
}

/// `vtrap(x, y) = x/(e^{x/y} − 1)`, with the series `y·(1 − z/2 + z²/12)` (`z = x/y`) where
/// `|z| < 1e-3` (NEURON uses `y·(1 − z/2)` below 1e-6; the difference is < 1e-12 relative).
/// The removable singularity is masked on both branches so no NaN reaches the gradient.
/// (Divisions by constants are written `* (1/k)`: burn 0.22's `tensor / scalar` backward rounds
/// the scalar to f32, which would cost f64 gradients ~1e-8 relative per use.)
fn vtrap(x: Tensor<2>, y: f64) -> Tensor<2> {
    let z = x * (1.0 / y);
    let small = z.clone().abs().lower_elem(1e-3);
    let z_safe = z.clone().mask_fill(small.clone(), 1.0);
    let direct = z_safe.clone() / (z_safe.exp() - 1.0);
    let series = (z.clone() * (1.0 / 12.0) - 0.5) * z + 1.0;
    direct.mask_where(small, series) * y
}

/// Rate constants `(α, β)` in 1/ms of the napp gates m, h, p, n at `v2 = v − vtraub` (mV).
fn napp_rates(v2: &Tensor<2>) -> [(Tensor<2>, Tensor<2>); 4] {
    let v = || v2.clone();
    [
        (
            vtrap(v().neg() + 15.0, 4.0) * 0.64,
            vtrap(v() - 40.0, 5.0) * 0.56,
        ),
        (
            ((v().neg() + 17.0) * (1.0 / 18.0)).exp() * 0.928,
            (((v().neg() + 40.0) * (1.0 / 5.0)).exp() + 1.0).recip() * 9.0,
        ),
        (
            vtrap(v().neg() + 5.0, 4.0) * 0.64,
            vtrap(v() - 30.0, 5.0) * 0.56,
        ),
        (
            vtrap(v().neg() + 15.0, 7.0) * 0.08,
            ((v().neg() + 10.0) * (1.0 / 40.0)).exp() * 2.0,
        ),
    ]
}

/// `α_r = 3.5/(e^{(55 − v2)/4} + 1)`, 1/ms.
fn alpha_r(v2: &Tensor<2>) -> Tensor<2> {
    (((v2.clone().neg() + 55.0) * (1.0 / 4.0)).exp() + 1.0).recip() * 3.5
}

/// `L∞ = 1/(1 + e^{−(v − vtraub_caL + 30)})`.
fn l_inf(v_dend: &Tensor<2>, vtraub_cal: &Tensor<2>) -> Tensor<2> {
    sigmoid(v_dend.clone() - vtraub_cal.clone() + 30.0)
}

/// Heaviside `H(m) = [m > 0]` in the dtype of `m` (no gradient).
///
/// Same as `spike::heaviside`, which converts through `bool.float()` and so always yields the
/// default float dtype (f32) — that breaks f64 rollouts; this variant keeps `m`'s dtype.
fn heaviside_like(m: &Tensor<2>) -> Tensor<2> {
    let mask = m.clone().detach().greater_elem(0.0);
    m.zeros_like().detach().mask_fill(mask, 1.0)
}

/// Spike output of an upward threshold crossing, `m_new = v_{n+1} − 50`, `m_old = v_n − 50` (mV):
/// - `Hard`: `H(m_new)·(1 − H(m_old))`;
/// - `Surrogate`: same forward; backward through `H(m_new)` uses the fast-sigmoid slope
///   `β/(1 + β|m|)²` (straight-through, exactly `spike::spike_fn`'s construction);
/// - `Rate`: `σ(β m_new)·(1 − σ(β m_old))`.
fn crossing_spikes(m_new: Tensor<2>, m_old: Tensor<2>, mode: SpikeMode, beta: f64) -> Tensor<2> {
    match mode {
        SpikeMode::Rate => sigmoid(m_new * beta) * (sigmoid(m_old * beta).neg() + 1.0),
        SpikeMode::Hard => heaviside_like(&m_new) * (heaviside_like(&m_old).neg() + 1.0),
        SpikeMode::Surrogate => {
            let g = m_new.clone() * beta / (m_new.clone().abs() * beta + 1.0);
            (heaviside_like(&m_new) + (g.clone() - g.detach()))
                * (heaviside_like(&m_old).neg() + 1.0)
        }
    }
}

/// Exponential Euler (NEURON `cnexp`): `x + (1 − e^{−dt(α+β)})(α/(α+β) − x)`.
fn exp_euler(x: Tensor<2>, a: Tensor<2>, b: Tensor<2>, dt_ms: f64) -> Tensor<2> {
    let k = a.clone() + b;
    let f = (k.clone() * (-dt_ms)).exp().neg() + 1.0;
    x.clone() + f * (a / k - x)
}

/// One NERLab pool at a fixed time step: coefficients + integration settings.
#[derive(Clone, Debug)]
pub struct Nerlab {
    /// Electrical coefficients (from [`NerlabTensors::coeffs`]).
    pub coeffs: NerlabCoeffs,
    /// Time step, ms.
    pub dt_ms: f64,
    /// Spike mode.
    pub mode: SpikeMode,
    /// Surrogate / rate sharpness per mV of `v − 50 mV` (default [`SURROGATE_BETA`]).
    pub beta: f64,
    l_factor: Tensor<2>,
}

/// Checks a time step for the NERLab model: finite, > 0 and ≤ [`MAX_DT_MS`].
pub fn check_dt(dt_s: f64) -> Result<f64> {
    if !(dt_s.is_finite() && dt_s > 0.0) {
        return Err(Error::UnstableTimeStep {
            dt_s,
            model: "NERLab".into(),
            reason: "dt must be finite and > 0".into(),
        });
    }
    let dt_ms = dt_s * 1e3;
    if dt_ms > MAX_DT_MS * (1.0 + 1e-12) {
        return Err(Error::UnstableTimeStep {
            dt_s,
            model: "NERLab".into(),
            reason: format!(
                "dt = {dt_ms} ms > {MAX_DT_MS} ms: the Na spike is not resolved (Crank–Nicolson rings, spikes are lost); use dt <= {MAX_DT_MS} ms (MyoGen uses 0.025–0.1 ms)"
            ),
        });
    }
    Ok(dt_ms)
}

impl Nerlab {
    /// The model for parameters `params` at time step `dt_s` (seconds; ≤ [`MAX_DT_MS`]) in spike
    /// mode `mode`.
    pub fn new(params: &NerlabTensors, dt_s: f64, mode: SpikeMode) -> Result<Self> {
        let dt_ms = check_dt(dt_s)?;
        let coeffs = params.coeffs();
        // L gate: constant relaxation factor 1 − e^{−dt/Ltau}
        let l_factor = (coeffs.ltau_cal_ms.clone().recip() * (-dt_ms)).exp().neg() + 1.0;
        Ok(Self {
            coeffs,
            dt_ms,
            mode,
            beta: SURROGATE_BETA,
            l_factor,
        })
    }

    /// Number of units.
    pub fn n_units(&self) -> usize {
        self.coeffs.g_na_us.dims()[1]
    }

    /// The L-gate relaxation factor per step, `1 − e^{−dt/Ltau}` (`[1, n]` or `[batch, n]`).
    pub fn l_factor(&self) -> &Tensor<2> {
        &self.l_factor
    }

    /// The state of `batch` copies at a uniform potential `v0_mv` (mV) in soma and dendrite with
    /// every gate at its steady state there (`x = α/(α+β)`, `L = L∞`) — NEURON's `finitialize()`
    /// after writing `v` (MyoGen: −67 mV, [`V_INIT_MV`]).
    pub fn initial_state(&self, ctx: &Ctx, batch: usize, v0_mv: f64) -> NerlabState {
        let n = self.n_units();
        let v = ctx.full([batch, n], v0_mv);
        let v2 = v.clone() - self.coeffs.constants.vtraub_napp_mv;
        let [(am, bm), (ah, bh), (ap, bp), (an, bn)] = napp_rates(&v2);
        let ar = alpha_r(&v2);
        let inf = |a: Tensor<2>, b: Tensor<2>| a.clone() / (a + b);
        NerlabState {
            m: inf(am, bm),
            h: inf(ah, bh),
            p: inf(ap, bp),
            n: inf(an, bn),
            r: inf(ar, self.coeffs.rinact_per_ms.clone()),
            l: l_inf(&v, &self.coeffs.vtraub_cal_mv),
            v_soma_mv: v.clone(),
            v_dend_mv: v,
            spikes: ctx.zeros([batch, n]),
        }
    }

    /// Advances one step of `dt_ms` (module docs: CN voltage pair, exponential-Euler gates at the
    /// new voltage, spike at the upward +50 mV crossing).
    ///
    /// - `i_inj_na`: current injected into the soma (IClamp), nA, `[batch, n]` or broadcastable;
    ///   the value for the step midpoint `t + dt/2`;
    /// - `g_syn_us`: synaptic conductance at the dendrite, µS (≥ 0), `[batch, n]` or broadcastable;
    /// - `e_syn_mv`: its reversal potential, mV ([`E_SYN_EXC_MV`] for excitation).
    ///
    /// Spikes: `s = S(v_{n+1} − 50)·(1 − H(v_n − 50))` with `S` the spike function of the mode
    /// (`m` in units of 1 mV; see `spike::spike_fn`); in `Rate` mode `σ(β(v_{n+1} − 50))·(1 − σ(β(v_n − 50)))`.
    pub fn step(
        &self,
        s: &NerlabState,
        i_inj_na: Tensor<2>,
        g_syn_us: Tensor<2>,
        e_syn_mv: f64,
    ) -> NerlabState {
        let c = &self.coeffs;
        let k = &c.constants;
        let dt = self.dt_ms;
        let (vs, vd) = (s.v_soma_mv.clone(), s.v_dend_mv.clone());
        // channel conductances with the gates of step n (µS)
        // powers by multiplication ((x·x)·x, (x·x)·(x·x)): burn's powi_scalar(3|4) calls libm
        // powf, which is slower and which the fused path could not reproduce bit for bit
        let cube = |x: &Tensor<2>| x.clone().square() * x.clone();
        let n2 = s.n.clone().square();
        let g_na = c.g_na_us.clone() * cube(&s.m) * s.h.clone();
        let g_nap = c.g_nap_us.clone() * cube(&s.p);
        let g_k = c.g_kf_us.clone() * (n2.clone() * n2) + c.g_ks_us.clone() * s.r.clone().square();
        let g_na_all = g_na + g_nap;
        let g_soma = g_na_all.clone() + g_k.clone() + c.g_l_soma_us.clone();
        let i_soma = g_na_all * (vs.clone() - k.ena_mv)
            + g_k * (vs.clone() - k.ek_mv)
            + c.g_l_soma_us.clone() * (vs.clone() - k.el_soma_mv);
        let g_cal = c.g_cal_us.clone() * s.l.clone();
        let g_dend = g_cal.clone() + c.g_l_dend_us.clone() + g_syn_us.clone();
        let i_dend = g_cal * (vd.clone() - k.ecal_mv)
            + c.g_l_dend_us.clone() * (vd.clone() - k.el_dend_mv)
            + g_syn_us * (vd.clone() - e_syn_mv);
        // Crank–Nicolson: (2C/dt + G + g_ax) Δ = rhs, v += 2Δ
        let gax = c.g_ax_us.clone();
        let axial = gax.clone() * (vd.clone() - vs.clone());
        let rhs_s = i_inj_na - i_soma + axial.clone();
        let rhs_d = axial.neg() - i_dend;
        let a11 = c.c_soma_nf.clone() * (2.0 / dt) + g_soma + gax.clone();
        let a22 = c.c_dend_nf.clone() * (2.0 / dt) + g_dend + gax.clone();
        let det = a11.clone() * a22.clone() - gax.clone().square();
        let d_s = (rhs_s.clone() * a22 + gax.clone() * rhs_d.clone()) / det.clone();
        let d_d = (a11 * rhs_d + gax * rhs_s) / det;
        let vs_new = vs.clone() + d_s * 2.0;
        let vd_new = vd + d_d * 2.0;
        // gates at the new voltage (exponential Euler)
        let v2 = vs_new.clone() - k.vtraub_napp_mv;
        let [(am, bm), (ah, bh), (ap, bp), (an, bn)] = napp_rates(&v2);
        let ar = alpha_r(&v2);
        let l_target = l_inf(&vd_new, &c.vtraub_cal_mv);
        let l = s.l.clone() + self.l_factor.clone() * (l_target - s.l.clone());
        // spikes: upward crossing of +50 mV
        let m_new = vs_new.clone() - SPIKE_THRESHOLD_MV;
        let m_old = vs - SPIKE_THRESHOLD_MV;
        let spikes = crossing_spikes(m_new, m_old, self.mode, self.beta);
        NerlabState {
            m: exp_euler(s.m.clone(), am, bm, dt),
            h: exp_euler(s.h.clone(), ah, bh, dt),
            p: exp_euler(s.p.clone(), ap, bp, dt),
            n: exp_euler(s.n.clone(), an, bn, dt),
            r: exp_euler(s.r.clone(), ar, c.rinact_per_ms.clone(), dt),
            l,
            v_soma_mv: vs_new,
            v_dend_mv: vd_new,
            spikes,
        }
    }

    /// Checks step inputs on the host: every injected current finite, every synaptic conductance
    /// finite and ≥ 0 (typed error naming the input and the flat index). Costs a read-back.
    pub fn validate_inputs(i_inj_na: &Tensor<2>, g_syn_us: &Tensor<2>) -> Result<()> {
        check::all_finite("i_inj_na", &to_vec_f64(i_inj_na.clone()))?;
        let g = to_vec_f64(g_syn_us.clone());
        for (i, &x) in g.iter().enumerate() {
            check::non_negative(&format!("g_syn_us[{i}]"), x)?;
        }
        Ok(())
    }
}

/// The NERLab motor-neuron pool as a lockstep [`Stage`].
///
/// Reads `syn_conductance_s` `[n]` (siemens, converted to µS) as the synaptic conductance at
/// each unit's dendrite with reversal `e_syn_mv` (+70 mV); writes `spikes` `[n]` and, when
/// enabled, `v_soma_v` `[n]` (volts). An optional constant somatic bias current (nA) plays the
/// role of an IClamp. Every `check_every` steps (and at the last step) the state is checked for
/// non-finite values ([`Error::NonFinite`] naming the variable, step and unit) and the running
/// minimum of the conductance for negative values ([`Error::InvalidParameter`]).
pub struct NerlabPool {
    name: String,
    params: NerlabTensors,
    mode: SpikeMode,
    e_syn_mv: f64,
    v_init_mv: f64,
    record_voltage: bool,
    i_bias_na: Option<Tensor<2>>,
    check_every: usize,
    model: Option<Nerlab>,
    state: Option<NerlabState>,
    g_min: Option<Tensor<2>>,
    fused: FusedSettings,
}

/// Settings of the fused path of [`NerlabPool`] (see [`crate::neuron::nerlab_fused`]).
#[derive(Clone, Debug)]
struct FusedSettings {
    exact: bool,
    threads: Option<usize>,
    checkpoint_every: usize,
}

impl NerlabPool {
    /// A pool with the given per-unit parameters.
    pub fn new(params: NerlabTensors, mode: SpikeMode) -> Self {
        Self {
            name: "nerlab_pool".into(),
            params,
            mode,
            e_syn_mv: E_SYN_EXC_MV,
            v_init_mv: V_INIT_MV,
            record_voltage: false,
            i_bias_na: None,
            check_every: 1000,
            model: None,
            state: None,
            g_min: None,
            fused: FusedSettings {
                exact: false,
                threads: None,
                checkpoint_every: nerlab_fused::DEFAULT_CHECKPOINT_EVERY,
            },
        }
    }

    /// MyoGen's pool for recruitment thresholds `rt` (parameters linear in `rt`, default ranges and
    /// constants, γ = 0.2), tensors on `ctx`.
    pub fn from_recruitment(
        ctx: &Ctx,
        rt: &RecruitmentThresholds,
        mode: SpikeMode,
    ) -> Result<Self> {
        let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?;
        Ok(Self::new(NerlabTensors::new(ctx, &p)?, mode))
    }

    /// Renames the stage.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Also writes the soma potential `v_soma_v` (volts).
    pub fn with_voltage_output(mut self) -> Self {
        self.record_voltage = true;
        self
    }
    /// Synaptic reversal potential, mV (default +70).
    pub fn with_e_syn_mv(mut self, e_syn_mv: f64) -> Result<Self> {
        self.e_syn_mv = check::finite("e_syn_mv", e_syn_mv)?;
        Ok(self)
    }
    /// Initial potential of soma and dendrite, mV (default −67).
    pub fn with_v_init_mv(mut self, v: f64) -> Result<Self> {
        self.v_init_mv = check::finite("v_init_mv", v)?;
        Ok(self)
    }
    /// Constant current injected into every soma, nA (`[1, n]`, `[batch, n]` or `[1, 1]`).
    pub fn with_bias_current_na(mut self, i: Tensor<2>) -> Self {
        self.i_bias_na = Some(i);
        self
    }
    /// How often (in steps) the state is read back and checked (default 1000; the last step is
    /// always checked).
    pub fn with_check_every(mut self, steps: usize) -> Result<Self> {
        self.check_every = check::count_at_least("check_every", steps, 1)?;
        Ok(self)
    }
    /// Fused path: use the standard-library `exp`/`powf` (bit-identical to the tape on flex)
    /// instead of the vectorised fast arithmetic (default `false`; see
    /// [`crate::neuron::nerlab_fused`]).
    pub fn with_fused_exact(mut self, exact: bool) -> Self {
        self.fused.exact = exact;
        self
    }
    /// Fused path: worker threads (default: all available cores).
    pub fn with_fused_threads(mut self, threads: usize) -> Result<Self> {
        self.fused.threads = Some(check::count_at_least("fused_threads", threads, 1)?);
        Ok(self)
    }
    /// Fused path: steps between the states the adjoint stores (default
    /// [`nerlab_fused::DEFAULT_CHECKPOINT_EVERY`]; memory `8·T/K` states per unit, plus one
    /// segment of `K` steps per thread during the backward pass).
    pub fn with_checkpoint_every(mut self, steps: usize) -> Result<Self> {
        self.fused.checkpoint_every = check::count_at_least("checkpoint_every", steps, 1)?;
        Ok(self)
    }
    /// Number of units.
    pub fn n_units(&self) -> usize {
        self.params.n_units()
    }
    /// The parameters.
    pub fn params(&self) -> &NerlabTensors {
        &self.params
    }
    /// The state after the last step (None before `init` and after a fused run, which keeps no
    /// per-step state).
    pub fn state(&self) -> Option<&NerlabState> {
        self.state.as_ref()
    }

    /// The fused whole-trace run ([`Stage::scan`]): one [`nerlab_fused::nerlab_scan`] op over the
    /// conductance trace `[T, batch, n]` (siemens); returns `spikes` (and `v_soma_v`) traces.
    fn fused_scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Result<Traces> {
        let n = self.n_units();
        let g = inputs
            .get(SYN_CONDUCTANCE_S)
            .cloned()
            .ok_or_else(|| Error::MissingBuffer {
                stage: self.name.clone(),
                buffer: SYN_CONDUCTANCE_S.into(),
            })?;
        let [t_steps, b, w] = g.dims();
        if b != batch || w != n {
            return Err(Error::shape(
                SYN_CONDUCTANCE_S,
                format!("[{t_steps}, {batch}, {n}]"),
                format!("[{t_steps}, {b}, {w}]"),
            ));
        }
        let model = match self.model.take() {
            Some(m) => m,
            None => Nerlab::new(&self.params, dt_s, self.mode)?,
        };
        let c = &model.coeffs;
        let bias = match &self.i_bias_na {
            Some(i) => i.clone(),
            None => ctx.zeros([1, 1]),
        };
        let rows = [
            &c.c_soma_nf,
            &c.c_dend_nf,
            &c.g_na_us,
            &c.g_nap_us,
            &c.g_kf_us,
            &c.g_ks_us,
            &c.g_l_soma_us,
            &c.rinact_per_ms,
            &c.g_cal_us,
            &c.g_l_dend_us,
            &c.vtraub_cal_mv,
            &c.g_ax_us,
            model.l_factor(),
            &bias,
        ];
        let mut expanded = Vec::with_capacity(rows.len());
        for (k, r) in rows.into_iter().enumerate() {
            let [rb, rn] = r.dims();
            if !((rb == 1 || rb == batch) && (rn == 1 || rn == n)) {
                return Err(Error::shape(
                    format!("nerlab coefficient row {k}"),
                    format!("[1 or {batch}, 1 or {n}]"),
                    format!("[{rb}, {rn}]"),
                ));
            }
            expanded.push(r.clone().expand([batch, n]));
        }
        let coef = Tensor::stack::<3>(expanded, 0);
        let k = &c.constants;
        let mut spec = nerlab_fused::NerlabScanSpec::new(
            model.dt_ms,
            model.mode,
            model.beta,
            [
                k.ena_mv,
                k.ek_mv,
                k.el_soma_mv,
                k.ecal_mv,
                k.el_dend_mv,
                k.vtraub_napp_mv,
            ],
        );
        spec.e_syn_mv = self.e_syn_mv;
        spec.v_init_mv = self.v_init_mv;
        spec.record_voltage = self.record_voltage;
        spec.exact = self.fused.exact;
        spec.check_every = self.check_every;
        spec.checkpoint_every = self.fused.checkpoint_every;
        if let Some(th) = self.fused.threads {
            spec.threads = th;
        }
        self.model = Some(model);
        self.state = None;
        let out = nerlab_fused::nerlab_scan(g, coef, &spec)?;
        if let Some(f) = spec.take_fault() {
            return Err(match f {
                nerlab_fused::ScanFault::BadConductance { step, unit, value } => Error::invalid(
                    format!(
                        "{SYN_CONDUCTANCE_S}[batch {}, unit {}] (step {step})",
                        unit / n,
                        unit % n
                    ),
                    value,
                    "finite and >= 0 siemens",
                ),
                nerlab_fused::ScanFault::NonFinite { var, step, unit } => Error::NonFinite {
                    buffer: format!("nerlab.{var}"),
                    step,
                    batch: unit / n,
                    unit: unit % n,
                },
            });
        }
        let mut traces = Traces::new();
        if self.record_voltage {
            let spikes = out.clone().slice([0..t_steps, 0..batch, 0..n]);
            let v = out.slice([0..t_steps, 0..batch, n..2 * n]) * 1e-3;
            traces.insert(SPIKES.to_string(), spikes);
            traces.insert(V_SOMA_V.to_string(), v);
        } else {
            traces.insert(SPIKES.to_string(), out);
        }
        Ok(traces)
    }
}

impl Stage for NerlabPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn declare(&self) -> StageDecl {
        let n = self.n_units();
        let mut writes = vec![BufferSpec::new(SPIKES, &[n], "spike/step")];
        if self.record_voltage {
            writes.push(BufferSpec::new(V_SOMA_V, &[n], "V"));
        }
        StageDecl {
            reads: vec![ReadSpec::now(SYN_CONDUCTANCE_S)],
            writes,
        }
    }

    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let model = Nerlab::new(&self.params, io.dt_s(), self.mode)?;
        let state = model.initial_state(io.ctx(), io.batch(), self.v_init_mv);
        if self.record_voltage {
            io.write(V_SOMA_V, state.v_soma_mv.clone() * 1e-3)?;
        }
        self.model = Some(model);
        self.state = Some(state);
        self.g_min = None;
        Ok(())
    }

    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let (model, state) = match (&self.model, &self.state) {
            (Some(m), Some(s)) => (m, s),
            _ => return Err(Error::config(&self.name, "step called before init")),
        };
        let n = self.params.n_units();
        let g_s = io.read(SYN_CONDUCTANCE_S)?;
        let [b, w] = g_s.dims();
        if w != n || b != io.batch() {
            return Err(Error::shape(
                SYN_CONDUCTANCE_S,
                format!("[{}, {n}]", io.batch()),
                format!("[{b}, {w}]"),
            ));
        }
        let g_us = g_s * 1e6;
        self.g_min = Some(match self.g_min.take() {
            None => g_us.clone(),
            Some(m) => m.min_pair(g_us.clone()),
        });
        let i_inj = match &self.i_bias_na {
            Some(i) => i.clone(),
            None => io.ctx().zeros([1, 1]),
        };
        let next = model.step(state, i_inj, g_us, self.e_syn_mv);
        io.write(SPIKES, next.spikes.clone())?;
        if self.record_voltage {
            io.write(V_SOMA_V, next.v_soma_mv.clone() * 1e-3)?;
        }
        if (t + 1).is_multiple_of(self.check_every) || t + 1 == io.n_steps() {
            if let Some(gm) = &self.g_min {
                let v = to_vec_f64(gm.clone());
                if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
                    return Err(Error::invalid(
                        format!(
                            "{SYN_CONDUCTANCE_S}[batch {}, unit {}] (before step {t})",
                            i / n,
                            i % n
                        ),
                        v[i] * 1e-6,
                        "finite and >= 0 siemens",
                    ));
                }
            }
            next.check_finite(t)?;
            self.g_min = None;
        }
        self.state = Some(next);
        Ok(())
    }

    fn scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        if !nerlab_fused::fused_supported(&ctx.device) {
            return None;
        }
        Some(self.fused_scan(inputs, ctx, batch, dt_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtrap_matches_its_definition_and_limit() {
        let ctx = Ctx::cpu().f64();
        let xs = vec![-30.0, -1.0, -1e-5, 0.0, 1e-5, 0.5, 20.0];
        let out = to_vec_f64(vtrap(ctx.tensor(xs.clone(), [1, 7]), 4.0));
        for (x, o) in xs.iter().zip(out) {
            let z = x / 4.0f64;
            // exact series near 0 (the direct form loses digits to cancellation there)
            let want = if z.abs() < 1e-2 {
                4.0 * (1.0 - z / 2.0 + z * z / 12.0 - z.powi(4) / 720.0)
            } else {
                x / (z.exp() - 1.0)
            };
            assert!(
                (o - want).abs() < 1e-12 * want.abs().max(1.0),
                "{x}: {o} vs {want}"
            );
        }
    }

    #[test]
    fn dt_limits_are_typed_errors() {
        for dt in [0.0, -1e-4, f64::NAN, 1e-3] {
            assert!(
                matches!(check_dt(dt), Err(Error::UnstableTimeStep { .. })),
                "{dt}"
            );
        }
        assert!((check_dt(1e-4).unwrap() - 0.1).abs() < 1e-12);
    }
}
