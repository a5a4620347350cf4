//! The batched tensor step of the NERLab model (the tape path): per-unit parameters, electrical
//! coefficients, state, gate rates, and the Crank–Nicolson + exponential-Euler step.

use burn::tensor::{Tensor, activation::sigmoid};

use crate::error::{Error, Result, check};
use crate::kernel::{Ctx, to_vec_f64};
use crate::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use crate::neuron::spike::{SURROGATE_BETA, SpikeMode};

use super::{MAX_DT_MS, SPIKE_THRESHOLD_MV};

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
    /// after writing `v` (MyoGen: −67 mV, [`V_INIT_MV`](super::V_INIT_MV)).
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
    /// - `e_syn_mv`: its reversal potential, mV ([`E_SYN_EXC_MV`](super::E_SYN_EXC_MV) for
    ///   excitation).
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
