//! Host-side loops of the fused LIF scan: forward (with checkpoints) and the hand-written adjoint
//! (backpropagation through time). Generic over the float type (`f32` for simulation, `f64` for
//! gradient checks); every forward operation is written in exactly the order of the tape step
//! [`crate::neuron::lif::lif_step`], so the two paths agree bit for bit in the forward pass.
//!
//! Layouts (row-major): input `x` `[T, B·N]`; coefficients `[P, B·N]` (see [`Coef`]); output
//! `[T, B·N]` spikes, followed by `[T, B·N]` membrane potentials when `record_v`.

use std::ops::{Add, Mul, Sub};

use super::{LifScanSpec, ScanIssue};
use crate::neuron::SpikeMode;
use crate::neuron::lif::LifInput;
use crate::neuron::spike::surrogate_slope;

/// Index of each per-unit coefficient in the stacked coefficient tensor `[P, B, N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Coef {
    /// `α = dt/τ_m` (dimensionless).
    Alpha = 0,
    /// Input resistance `R` (Ω).
    R = 1,
    /// Resting potential (V); also the initial membrane potential.
    VRest = 2,
    /// Spike threshold (V).
    VThresh = 3,
    /// Reset potential (V).
    VReset = 4,
    /// AHP decay factor per step `k = exp(−dt/τ_ahp)` (dimensionless).
    AhpDecay = 5,
    /// AHP current increment per spike (A).
    AhpJump = 6,
    /// Synaptic reversal potential (V).
    ESyn = 7,
    /// Tonic injected bias current (A).
    IBias = 8,
}

/// Number of stacked coefficients.
pub const N_COEF: usize = 9;

/// The float types the host loops run in.
pub trait Real:
    Copy + Send + Sync + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Largest finite value.
    const MAX: Self;
    /// Conversion from f64 (rounding like burn's scalar conversion, `as`).
    fn from_f64(v: f64) -> Self;
    /// Widening to f64.
    fn to_f64(self) -> f64;
    /// Numerically stable logistic function, same formula as burn-flex.
    fn sigmoid(self) -> Self;
    /// Finite (not NaN, not ±∞).
    fn finite(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MAX: Self = <$t>::MAX;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sigmoid(self) -> Self {
                if self >= 0.0 {
                    1.0 / (1.0 + (-self).exp())
                } else {
                    let e = self.exp();
                    e / (1.0 + e)
                }
            }
            #[inline(always)]
            fn finite(self) -> bool {
                self.is_finite()
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// Borrowed per-unit coefficient rows (each `[B·N]`).
struct Rows<'a, T> {
    al: &'a [T],
    r: &'a [T],
    vr: &'a [T],
    th: &'a [T],
    vres: &'a [T],
    k: &'a [T],
    jump: &'a [T],
    e: &'a [T],
    ib: &'a [T],
}

impl<'a, T> Rows<'a, T> {
    fn new(p: &'a [T], bn: usize) -> Self {
        let row = |c: Coef| &p[c as usize * bn..(c as usize + 1) * bn];
        Self {
            al: row(Coef::Alpha),
            r: row(Coef::R),
            vr: row(Coef::VRest),
            th: row(Coef::VThresh),
            vres: row(Coef::VReset),
            k: row(Coef::AhpDecay),
            jump: row(Coef::AhpJump),
            e: row(Coef::ESyn),
            ib: row(Coef::IBias),
        }
    }
}

/// One element's forward step; returns `(i, v1, m, s, v_new, a_new)`. Exactly the tape's op order:
/// `i = (drive + i_bias) − a`, `v1 = v + α·(R·i − (v − v_rest))`, `m = (v1 − θ)·inv_scale`,
/// `s = S(m)`, `v' = v1 − s·(v1 − v_reset)`, `a' = k·a + s·jump`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn elem<T: Real, const COND: bool, const RATE: bool>(
    x: T,
    v: T,
    a: T,
    rw: &Rows<'_, T>,
    j: usize,
    inv: T,
    beta: T,
) -> (T, T, T, T, T, T) {
    let drive = if COND { x * (rw.e[j] - v) } else { x };
    let i = drive + rw.ib[j] - a;
    let v1 = v + rw.al[j] * (rw.r[j] * i - (v - rw.vr[j]));
    let m = (v1 - rw.th[j]) * inv;
    let s = if RATE {
        (m * beta).sigmoid()
    } else if m > T::ZERO {
        T::ONE
    } else {
        T::ZERO
    };
    let vn = v1 - s * (v1 - rw.vres[j]);
    let an = rw.k[j] * a + s * rw.jump[j];
    (i, v1, m, s, vn, an)
}

/// Checks one input row and the new state; returns the first issue found (cold path).
#[cold]
#[allow(clippy::too_many_arguments)]
fn diagnose<T: Real>(
    cond: bool,
    x: &[T],
    v: &[T],
    rw: &Rows<'_, T>,
    t: usize,
    n: usize,
    dt_s: f64,
) -> Option<ScanIssue> {
    for j in 0..x.len() {
        let xv = x[j].to_f64();
        let (b, u) = (j / n, j % n);
        if !xv.is_finite() {
            return Some(ScanIssue::NonFiniteInput {
                step: t,
                batch: b,
                unit: u,
                value: xv,
            });
        }
        if cond && xv < 0.0 {
            return Some(ScanIssue::NegativeConductance {
                step: t,
                batch: b,
                unit: u,
                value: xv,
            });
        }
        if cond {
            let f = rw.al[j].to_f64() * (1.0 + rw.r[j].to_f64() * xv);
            if f >= 1.0 {
                return Some(ScanIssue::Unstable {
                    step: t,
                    batch: b,
                    unit: u,
                    factor: f,
                    dt_s,
                });
            }
        }
        if !v[j].finite() {
            return Some(ScanIssue::NonFiniteState {
                step: t,
                batch: b,
                unit: u,
            });
        }
    }
    None
}

/// Result of a forward scan.
pub struct Forward<T> {
    /// Output `[T·B·N]` spikes (+ `[T·B·N]` v when recorded).
    pub out: Vec<T>,
    /// `(v, a)` at the start of every `checkpoint_every`-th step (empty if not requested).
    pub checkpoints: Vec<(Vec<T>, Vec<T>)>,
    /// First problem met (the scan stops writing meaningful values after it).
    pub issue: Option<ScanIssue>,
}

/// Forward scan over all steps. `x`: `[T·B·N]`, `p`: `[P·B·N]`. With `keep_checkpoints`, stores the
/// state `(v, a)` before every `spec.checkpoint_every`-th step for the adjoint's recomputation.
pub fn forward<T: Real>(x: &[T], p: &[T], t_steps: usize, bn: usize, n: usize, spec: &LifScanSpec, keep_checkpoints: bool) -> Forward<T> {
    let cond = spec.input == LifInput::Conductance;
    let rate = spec.mode == SpikeMode::Rate;
    match (cond, rate) {
        (true, true) => forward_impl::<T, true, true>(x, p, t_steps, bn, n, spec, keep_checkpoints),
        (true, false) => forward_impl::<T, true, false>(x, p, t_steps, bn, n, spec, keep_checkpoints),
        (false, true) => forward_impl::<T, false, true>(x, p, t_steps, bn, n, spec, keep_checkpoints),
        (false, false) => forward_impl::<T, false, false>(x, p, t_steps, bn, n, spec, keep_checkpoints),
    }
}

fn forward_impl<T: Real, const COND: bool, const RATE: bool>(
    x: &[T],
    p: &[T],
    t_steps: usize,
    bn: usize,
    n: usize,
    spec: &LifScanSpec,
    keep_checkpoints: bool,
) -> Forward<T> {
    let rw = Rows::new(p, bn);
    let inv = T::from_f64(spec.inv_scale);
    let beta = T::from_f64(spec.beta);
    let mut v: Vec<T> = rw.vr.to_vec();
    let mut a: Vec<T> = vec![T::ZERO; bn];
    let rows = if spec.record_v { 2 * t_steps } else { t_steps };
    let mut out: Vec<T> = vec![T::ZERO; rows * bn];
    let ck = spec.checkpoint_every.max(1);
    let mut checkpoints = Vec::new();
    let mut issue = None;
    let big = T::MAX;
    let one = T::ONE;
    for t in 0..t_steps {
        if keep_checkpoints && t % ck == 0 {
            checkpoints.push((v.clone(), a.clone()));
        }
        let xr = &x[t * bn..(t + 1) * bn];
        let (s_out, v_out) = out.split_at_mut(t_steps * bn);
        let sr = &mut s_out[t * bn..(t + 1) * bn];
        let mut ok = true;
        for j in 0..bn {
            let xj = xr[j];
            let (_, _, _, s, vn, an) = elem::<T, COND, RATE>(xj, v[j], a[j], &rw, j, inv, beta);
            // x >= 0 && finite (conductance) or |x| finite (current); v finite; Euler factor < 1
            let good = if COND {
                xj >= T::ZERO && xj <= big && rw.al[j] * (one + rw.r[j] * xj) < one
            } else {
                xj >= T::ZERO - big && xj <= big
            };
            ok &= good & (vn >= T::ZERO - big) & (vn <= big);
            v[j] = vn;
            a[j] = an;
            sr[j] = s;
        }
        if spec.record_v {
            v_out[t * bn..(t + 1) * bn].copy_from_slice(&v);
        }
        if !ok && issue.is_none() {
            issue = diagnose(COND, xr, &v, &rw, t, n, spec.dt_s);
            if issue.is_some() {
                break;
            }
        }
    }
    Forward { out, checkpoints, issue }
}

/// Gradients returned by the adjoint.
pub struct Adjoint<T> {
    /// d loss / d x `[T·B·N]` (empty when not requested).
    pub gx: Vec<T>,
    /// d loss / d coefficients `[P·B·N]` (accumulated in f64).
    pub gp: Vec<f64>,
}

/// Backpropagation through time. `g_out`: gradient of the loss w.r.t. the op output (same layout
/// as [`Forward::out`]); it is overwritten in place by `dL/dx` when `want_gx` and `!record_v`
/// (saving one trace of memory). The forward states are recomputed segment by segment from the
/// checkpoints (one extra forward pass), so memory is `O(checkpoint_every · B·N)`.
#[allow(clippy::too_many_arguments)]
pub fn adjoint<T: Real>(
    x: &[T],
    p: &[T],
    checkpoints: &[(Vec<T>, Vec<T>)],
    g_out: Vec<T>,
    t_steps: usize,
    bn: usize,
    spec: &LifScanSpec,
    want_gx: bool,
) -> Adjoint<T> {
    let cond = spec.input == LifInput::Conductance;
    match (cond, spec.mode) {
        (true, SpikeMode::Rate) => adjoint_impl::<T, true, 2, true>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx),
        (true, SpikeMode::Surrogate) => adjoint_impl::<T, true, 1, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx),
        (true, SpikeMode::Hard) => adjoint_impl::<T, true, 0, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx),
        (false, SpikeMode::Rate) => adjoint_impl::<T, false, 2, true>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx),
        (false, SpikeMode::Surrogate) => adjoint_impl::<T, false, 1, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx),
        (false, SpikeMode::Hard) => adjoint_impl::<T, false, 0, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx),
    }
}

/// `MODE`: 0 hard (zero spike slope), 1 surrogate (fast-sigmoid slope), 2 rate (sigmoid);
/// `RATE` = (`MODE == 2`).
#[allow(clippy::too_many_arguments)]
fn adjoint_impl<T: Real, const COND: bool, const MODE: u8, const RATE: bool>(
    x: &[T],
    p: &[T],
    checkpoints: &[(Vec<T>, Vec<T>)],
    mut g_out: Vec<T>,
    t_steps: usize,
    bn: usize,
    spec: &LifScanSpec,
    want_gx: bool,
) -> Adjoint<T> {
    let rw = Rows::new(p, bn);
    let inv = T::from_f64(spec.inv_scale);
    let beta = T::from_f64(spec.beta);
    let (inv64, beta64) = (inv.to_f64(), beta.to_f64());
    let ck = spec.checkpoint_every.max(1);
    let in_place = want_gx && !spec.record_v;
    let mut gx_sep: Vec<T> = if want_gx && !in_place { vec![T::ZERO; t_steps * bn] } else { Vec::new() };
    let mut gp = vec![0.0f64; N_COEF * bn];
    let mut lam_v = vec![0.0f64; bn];
    let mut lam_a = vec![0.0f64; bn];
    // per-segment recomputed states before each step
    let mut seg_v: Vec<T> = vec![T::ZERO; ck.min(t_steps) * bn];
    let mut seg_a: Vec<T> = vec![T::ZERO; ck.min(t_steps) * bn];
    let n_seg = t_steps.div_ceil(ck);
    let pf = |c: Coef, j: usize| p[c as usize * bn + j].to_f64();
    for sgi in (0..n_seg).rev() {
        let t0 = sgi * ck;
        let t1 = ((sgi + 1) * ck).min(t_steps);
        // recompute the forward states of this segment
        let (mut v, mut a) = checkpoints[sgi].clone();
        for t in t0..t1 {
            let o = (t - t0) * bn;
            seg_v[o..o + bn].copy_from_slice(&v);
            seg_a[o..o + bn].copy_from_slice(&a);
            let xr = &x[t * bn..(t + 1) * bn];
            for j in 0..bn {
                let (_, _, _, _, vn, an) = elem::<T, COND, RATE>(xr[j], v[j], a[j], &rw, j, inv, beta);
                v[j] = vn;
                a[j] = an;
            }
        }
        // reverse sweep
        for t in (t0..t1).rev() {
            let o = (t - t0) * bn;
            for j in 0..bn {
                let (vt, at) = (seg_v[o + j], seg_a[o + j]);
                let xt = x[t * bn + j];
                let (i, v1, m, s, _, _) = elem::<T, COND, RATE>(xt, vt, at, &rw, j, inv, beta);
                let (v, a, xf) = (vt.to_f64(), at.to_f64(), xt.to_f64());
                let (i, v1, m, s) = (i.to_f64(), v1.to_f64(), m.to_f64(), s.to_f64());
                let gvn = lam_v[j]
                    + if spec.record_v {
                        g_out[(t_steps + t) * bn + j].to_f64()
                    } else {
                        0.0
                    };
                let gan = lam_a[j];
                let (al, r, vr, vres, k, jump) = (
                    pf(Coef::Alpha, j),
                    pf(Coef::R, j),
                    pf(Coef::VRest, j),
                    pf(Coef::VReset, j),
                    pf(Coef::AhpDecay, j),
                    pf(Coef::AhpJump, j),
                );
                let gs = if spec.detach_spike_state {
                    g_out[t * bn + j].to_f64()
                } else {
                    g_out[t * bn + j].to_f64() - gvn * (v1 - vres) + gan * jump
                };
                let slope = match MODE {
                    0 => 0.0,
                    1 => surrogate_slope(m, beta64),
                    _ => {
                        let sg = (m * beta64).sigmoid();
                        beta64 * sg * (1.0 - sg)
                    }
                };
                let gm = gs * slope;
                let gv1 = gvn * (1.0 - s) + gm * inv64;
                gp[Coef::VReset as usize * bn + j] += gvn * s;
                gp[Coef::AhpJump as usize * bn + j] += gan * s;
                gp[Coef::AhpDecay as usize * bn + j] += gan * a;
                let mut ga = gan * k;
                gp[Coef::VThresh as usize * bn + j] -= gm * inv64;
                gp[Coef::Alpha as usize * bn + j] += gv1 * (r * i - (v - vr));
                gp[Coef::R as usize * bn + j] += gv1 * al * i;
                let gi = gv1 * al * r;
                gp[Coef::VRest as usize * bn + j] += gv1 * al;
                let mut gv = gv1 * (1.0 - al);
                let gxv = if COND {
                    let e = pf(Coef::ESyn, j);
                    gp[Coef::ESyn as usize * bn + j] += gi * xf;
                    gv -= gi * xf;
                    gi * (e - v)
                } else {
                    gi
                };
                gp[Coef::IBias as usize * bn + j] += gi;
                ga -= gi;
                lam_v[j] = gv;
                lam_a[j] = ga;
                if want_gx {
                    if in_place {
                        g_out[t * bn + j] = T::from_f64(gxv);
                    } else {
                        gx_sep[t * bn + j] = T::from_f64(gxv);
                    }
                }
            }
        }
    }
    // the initial membrane potential is v_rest
    for j in 0..bn {
        gp[Coef::VRest as usize * bn + j] += lam_v[j];
    }
    let gx = if !want_gx {
        Vec::new()
    } else if in_place {
        g_out.truncate(t_steps * bn);
        g_out
    } else {
        gx_sep
    };
    Adjoint { gx, gp }
}
