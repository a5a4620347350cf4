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

/// Elements per block of the backward sweep (recomputed segment states of a block stay in
/// cache). The forward runs row by row (time outer): blocking it was measured 2× slower at
/// B·N = 12,800 (strided rows defeat the prefetcher and the TLB).
const BLOCK: usize = 2048;

/// The float types the host loops run in.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + 'static
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
    /// The columns `j0..j0+w`.
    fn sub(&self, j0: usize, w: usize) -> Rows<'a, T> {
        let r = j0..j0 + w;
        Rows {
            al: &self.al[r.clone()],
            r: &self.r[r.clone()],
            vr: &self.vr[r.clone()],
            th: &self.th[r.clone()],
            vres: &self.vres[r.clone()],
            k: &self.k[r.clone()],
            jump: &self.jump[r.clone()],
            e: &self.e[r.clone()],
            ib: &self.ib[r],
        }
    }

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

/// Whether one input is valid: finite, and with conductance input (`COND`) also `≥ 0` with
/// Euler factor `α(1 + R·x) < 1` (branch-free; the scan, the host tick and the tape's check).
#[inline(always)]
pub(crate) fn input_valid<T: Real, const COND: bool>(x: T, alpha: T, r: T) -> bool {
    let big = T::MAX;
    if COND {
        (x >= T::ZERO) & (x <= big) & (alpha * (T::ONE + r * x) < T::ONE)
    } else {
        (x >= T::ZERO - big) & (x <= big)
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

/// One tick of the pool on the host (the streaming path, [`crate::kernel::host`]): the same
/// element step as the scan, for every element of `x` `[B·N]`; `v`, `a` are updated in place and
/// the spikes (or rates) written to `s`. `coef` = the stacked coefficients `[P, B·N]`. Returns
/// whether every input was valid, as the scan checks it (finite; with conductance input also
/// `≥ 0` and Euler factor `α(1 + R·x) < 1`); the caller names the culprit when not.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tick<T: Real>(
    x: &[T],
    v: &mut [T],
    a: &mut [T],
    s: &mut [T],
    coef: &[T],
    cond: bool,
    rate: bool,
    inv: T,
    beta: T,
) -> bool {
    fn run<T: Real, const COND: bool, const RATE: bool>(
        x: &[T],
        v: &mut [T],
        a: &mut [T],
        s: &mut [T],
        rw: &Rows<'_, T>,
        inv: T,
        beta: T,
    ) -> bool {
        let mut ok = true;
        for j in 0..x.len() {
            let xj = x[j];
            let (_, _, _, sj, vn, an) = elem::<T, COND, RATE>(xj, v[j], a[j], rw, j, inv, beta);
            ok &= input_valid::<T, COND>(xj, rw.al[j], rw.r[j]);
            s[j] = sj;
            v[j] = vn;
            a[j] = an;
        }
        ok
    }
    let rw = Rows::new(coef, x.len());
    match (cond, rate) {
        (true, true) => run::<T, true, true>(x, v, a, s, &rw, inv, beta),
        (true, false) => run::<T, true, false>(x, v, a, s, &rw, inv, beta),
        (false, true) => run::<T, false, true>(x, v, a, s, &rw, inv, beta),
        (false, false) => run::<T, false, false>(x, v, a, s, &rw, inv, beta),
    }
}

/// The forward intermediates of one tick for the stream path's adjoint: for every element `j` of
/// `x` `[B·N]` with state `v`, `a` before the tick, calls `f(j, i, v1, m, s)` with the values of
/// the same element step as [`tick`] (`coef` = the stacked coefficients `[P, B·N]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tick_intermediates(
    x: &[f64],
    v: &[f64],
    a: &[f64],
    coef: &[f64],
    cond: bool,
    rate: bool,
    inv: f64,
    beta: f64,
    f: impl FnMut(usize, f64, f64, f64, f64),
) {
    fn run<const COND: bool, const RATE: bool>(
        x: &[f64],
        v: &[f64],
        a: &[f64],
        rw: &Rows<'_, f64>,
        inv: f64,
        beta: f64,
        mut f: impl FnMut(usize, f64, f64, f64, f64),
    ) {
        for j in 0..x.len() {
            let (i, v1, m, s, _, _) = elem::<f64, COND, RATE>(x[j], v[j], a[j], rw, j, inv, beta);
            f(j, i, v1, m, s);
        }
    }
    let rw = Rows::new(coef, x.len());
    match (cond, rate) {
        (true, true) => run::<true, true>(x, v, a, &rw, inv, beta, f),
        (true, false) => run::<true, false>(x, v, a, &rw, inv, beta, f),
        (false, true) => run::<false, true>(x, v, a, &rw, inv, beta, f),
        (false, false) => run::<false, false>(x, v, a, &rw, inv, beta, f),
    }
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
    j0: usize,
    n: usize,
    dt_s: f64,
) -> Option<ScanIssue> {
    for j in 0..x.len() {
        let xv = x[j].to_f64();
        let (b, u) = ((j0 + j) / n, (j0 + j) % n);
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
    /// `(v, a)` `[B·N]` at the start of every `checkpoint_every`-th step (empty if not requested).
    pub checkpoints: Vec<(Vec<T>, Vec<T>)>,
    /// First problem met (the scan stops writing meaningful values after it).
    pub issue: Option<ScanIssue>,
}

/// Forward scan over all steps. `x`: `[T·B·N]`, `p`: `[P·B·N]`. With `keep_checkpoints`, stores the
/// state `(v, a)` before every `spec.checkpoint_every`-th step for the adjoint's recomputation.
pub fn forward<T: Real>(
    x: &[T],
    p: &[T],
    t_steps: usize,
    bn: usize,
    n: usize,
    spec: &LifScanSpec,
    keep_checkpoints: bool,
) -> Forward<T> {
    let cond = spec.input == LifInput::Conductance;
    let rate = spec.mode == SpikeMode::Rate;
    match (cond, rate) {
        (true, true) => forward_impl::<T, true, true>(x, p, t_steps, bn, n, spec, keep_checkpoints),
        (true, false) => {
            forward_impl::<T, true, false>(x, p, t_steps, bn, n, spec, keep_checkpoints)
        }
        (false, true) => {
            forward_impl::<T, false, true>(x, p, t_steps, bn, n, spec, keep_checkpoints)
        }
        (false, false) => {
            forward_impl::<T, false, false>(x, p, t_steps, bn, n, spec, keep_checkpoints)
        }
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
    let rows = if spec.record_v { 2 * t_steps } else { t_steps };
    let mut out: Vec<T> = vec![T::ZERO; rows * bn];
    let ck = spec.checkpoint_every.max(1);
    let n_ck = if keep_checkpoints {
        t_steps.div_ceil(ck)
    } else {
        0
    };
    let mut checkpoints = vec![(vec![T::ZERO; bn], vec![T::ZERO; bn]); n_ck];
    let mut issue: Option<ScanIssue> = None;
    let big = T::MAX;
    // one block = the whole row: time outer, elements inner (see BLOCK)
    for j0 in (0..bn).step_by(bn.max(1)) {
        let w = bn - j0;
        let rb = rw.sub(j0, w);
        let mut v: Vec<T> = rb.vr.to_vec();
        let mut a: Vec<T> = vec![T::ZERO; w];
        for t in 0..t_steps {
            if keep_checkpoints && t % ck == 0 {
                let c = &mut checkpoints[t / ck];
                c.0[j0..j0 + w].copy_from_slice(&v);
                c.1[j0..j0 + w].copy_from_slice(&a);
            }
            let xr = &x[t * bn + j0..t * bn + j0 + w];
            let (s_out, v_out) = out.split_at_mut(t_steps * bn);
            let sr = &mut s_out[t * bn + j0..t * bn + j0 + w];
            let mut ok = true;
            for l in 0..w {
                let xj = xr[l];
                let (_, _, _, s, vn, an) = elem::<T, COND, RATE>(xj, v[l], a[l], &rb, l, inv, beta);
                // a valid input; v finite
                let good = input_valid::<T, COND>(xj, rb.al[l], rb.r[l]);
                ok &= good & (vn >= T::ZERO - big) & (vn <= big);
                v[l] = vn;
                a[l] = an;
                sr[l] = s;
            }
            if spec.record_v {
                v_out[t * bn + j0..t * bn + j0 + w].copy_from_slice(&v);
            }
            if !ok && let Some(found) = diagnose(COND, xr, &v, &rb, t, j0, n, spec.dt_s) {
                // keep the earliest step (then the lowest index) over all blocks
                if issue.as_ref().is_none_or(|i| i.step() > found.step()) {
                    issue = Some(found);
                }
                break;
            }
        }
    }
    Forward {
        out,
        checkpoints,
        issue,
    }
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
        (true, SpikeMode::Rate) => {
            adjoint_impl::<T, true, 2, true>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx)
        }
        (true, SpikeMode::Surrogate) => {
            adjoint_impl::<T, true, 1, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx)
        }
        (true, SpikeMode::Hard) => {
            adjoint_impl::<T, true, 0, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx)
        }
        (false, SpikeMode::Rate) => {
            adjoint_impl::<T, false, 2, true>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx)
        }
        (false, SpikeMode::Surrogate) => {
            adjoint_impl::<T, false, 1, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx)
        }
        (false, SpikeMode::Hard) => {
            adjoint_impl::<T, false, 0, false>(x, p, checkpoints, g_out, t_steps, bn, spec, want_gx)
        }
    }
}

/// f64 copies of the coefficients the adjoint needs.
struct Rows64 {
    al: Vec<f64>,
    r: Vec<f64>,
    vr: Vec<f64>,
    vres: Vec<f64>,
    k: Vec<f64>,
    jump: Vec<f64>,
    e: Vec<f64>,
}

/// Where a tile lies: steps `t0..t1` of `t_steps`, elements `j0..j0+w` of `bn`; its states sit
/// at `(t − t0)·seg_stride + seg_off + l` in the segment buffers.
#[derive(Clone, Copy)]
struct Geo {
    t0: usize,
    t1: usize,
    t_steps: usize,
    bn: usize,
    j0: usize,
    w: usize,
    seg_stride: usize,
    seg_off: usize,
}

/// Tile width of the reverse sweep (elements whose adjoint state stays in registers).
const TILE: usize = 16;

/// Reverse sweep over steps `t1−1 … t0` for the elements `j0..j0+w` (one tile): the adjoint
/// state λ_v, λ_a and the parameter-gradient sums of the tile live in locals. `seg_v`/`seg_a`:
/// recomputed states before each step of the segment (see [`Geo`]); `g_out`: incoming
/// gradients (spikes rows `0..T`, membrane rows `T..2T` when `record_v`); `gx`: receives dL/dx
/// at `[t·bn + j]` (may be `g_out` itself: each slot is read before it is overwritten).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn adjoint_tile<
    T: Real,
    const COND: bool,
    const MODE: u8,
    const RATE: bool,
    const DETACH: bool,
    const RECV: bool,
>(
    x: &[T],
    seg_v: &[T],
    seg_a: &[T],
    rw: &Rows<'_, T>,
    c: &Rows64,
    g_out: &mut [T],
    gx: Option<&mut [T]>,
    want_gx: bool,
    lam_v: &mut [f64],
    lam_a: &mut [f64],
    gp: &mut [f64],
    geo: Geo,
    inv: T,
    beta: T,
) {
    let Geo {
        t0,
        t1,
        t_steps,
        bn,
        j0,
        w,
        seg_stride,
        seg_off,
    } = geo;
    let (inv64, beta64) = (inv.to_f64(), beta.to_f64());
    let mut lv = [0.0f64; TILE];
    let mut la = [0.0f64; TILE];
    lv[..w].copy_from_slice(&lam_v[j0..j0 + w]);
    la[..w].copy_from_slice(&lam_a[j0..j0 + w]);
    let mut acc = [[0.0f64; TILE]; N_COEF];
    let mut gxl = [T::ZERO; TILE];
    // tile-local coefficient slices (index l): no bounds checks in the inner loop
    let rt = rw.sub(j0, w);
    let tl = |v: &'_ [f64]| -> [f64; TILE] {
        let mut a = [0.0; TILE];
        a[..w].copy_from_slice(&v[j0..j0 + w]);
        a
    };
    let (c_al, c_r, c_vr, c_vres, c_k, c_jump, c_e) = (
        tl(&c.al),
        tl(&c.r),
        tl(&c.vr),
        tl(&c.vres),
        tl(&c.k),
        tl(&c.jump),
        tl(&c.e),
    );
    let mut gx = gx;
    for t in (t0..t1).rev() {
        let o = (t - t0) * seg_stride + seg_off;
        let xo = t * bn + j0;
        let sv = &seg_v[o..o + w];
        let sa = &seg_a[o..o + w];
        let xs = &x[xo..xo + w];
        let mut gsl = [T::ZERO; TILE];
        gsl[..w].copy_from_slice(&g_out[xo..xo + w]);
        let mut gvl = [T::ZERO; TILE];
        if RECV {
            gvl[..w].copy_from_slice(&g_out[(t_steps + t) * bn + j0..(t_steps + t) * bn + j0 + w]);
        }
        for l in 0..w {
            let (vt, at, xt) = (sv[l], sa[l], xs[l]);
            let (i, v1, m, s, _, _) = elem::<T, COND, RATE>(xt, vt, at, &rt, l, inv, beta);
            let (v, a, xf) = (vt.to_f64(), at.to_f64(), xt.to_f64());
            let (i, v1, m, s) = (i.to_f64(), v1.to_f64(), m.to_f64(), s.to_f64());
            let gvn = lv[l] + gvl[l].to_f64();
            let gan = la[l];
            let gs_in = gsl[l].to_f64();
            let gs = if DETACH {
                gs_in
            } else {
                gs_in - gvn * (v1 - c_vres[l]) + gan * c_jump[l]
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
            let (al, r) = (c_al[l], c_r[l]);
            acc[Coef::VReset as usize][l] += gvn * s;
            acc[Coef::AhpJump as usize][l] += gan * s;
            acc[Coef::AhpDecay as usize][l] += gan * a;
            acc[Coef::VThresh as usize][l] -= gm * inv64;
            acc[Coef::Alpha as usize][l] += gv1 * (r * i - (v - c_vr[l]));
            acc[Coef::R as usize][l] += gv1 * al * i;
            let gi = gv1 * al * r;
            acc[Coef::VRest as usize][l] += gv1 * al;
            acc[Coef::IBias as usize][l] += gi;
            let mut gv = gv1 * (1.0 - al);
            let gxv = if COND {
                acc[Coef::ESyn as usize][l] += gi * xf;
                gv -= gi * xf;
                gi * (c_e[l] - v)
            } else {
                gi
            };
            lv[l] = gv;
            la[l] = gan * c_k[l] - gi;
            gxl[l] = T::from_f64(gxv);
        }
        if want_gx {
            match gx.as_deref_mut() {
                Some(buf) => buf[xo..xo + w].copy_from_slice(&gxl[..w]),
                None => g_out[xo..xo + w].copy_from_slice(&gxl[..w]),
            }
        }
    }
    lam_v[j0..j0 + w].copy_from_slice(&lv[..w]);
    lam_a[j0..j0 + w].copy_from_slice(&la[..w]);
    for (k, row) in acc.iter().enumerate() {
        for l in 0..w {
            gp[k * bn + j0 + l] += row[l];
        }
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
    let f64v = |r: &[T]| r.iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
    let c = Rows64 {
        al: f64v(rw.al),
        r: f64v(rw.r),
        vr: f64v(rw.vr),
        vres: f64v(rw.vres),
        k: f64v(rw.k),
        jump: f64v(rw.jump),
        e: f64v(rw.e),
    };
    let inv = T::from_f64(spec.inv_scale);
    let beta = T::from_f64(spec.beta);
    let ck = spec.checkpoint_every.max(1);
    let mut gx_sep: Vec<T> = if want_gx && spec.record_v {
        vec![T::ZERO; t_steps * bn]
    } else {
        Vec::new()
    };
    let mut gp = vec![0.0f64; N_COEF * bn];
    let mut lam_v = vec![0.0f64; bn];
    let mut lam_a = vec![0.0f64; bn];
    let seg_len = ck.min(t_steps);
    let mut seg_v: Vec<T> = vec![T::ZERO; seg_len * BLOCK.min(bn)];
    let mut seg_a: Vec<T> = vec![T::ZERO; seg_len * BLOCK.min(bn)];
    let n_seg = t_steps.div_ceil(ck);
    let detach = spec.detach_spike_state;
    let recv = spec.record_v;
    // element blocks outer (their segment states stay in cache), segments in reverse inside
    for b0 in (0..bn).step_by(BLOCK) {
        let bw = BLOCK.min(bn - b0);
        let rb = rw.sub(b0, bw);
        for sgi in (0..n_seg).rev() {
            let t0 = sgi * ck;
            let t1 = ((sgi + 1) * ck).min(t_steps);
            // recompute the forward states of this segment (identical arithmetic)
            let mut v = checkpoints[sgi].0[b0..b0 + bw].to_vec();
            let mut a = checkpoints[sgi].1[b0..b0 + bw].to_vec();
            for t in t0..t1 {
                let o = (t - t0) * bw;
                seg_v[o..o + bw].copy_from_slice(&v);
                seg_a[o..o + bw].copy_from_slice(&a);
                let xr = &x[t * bn + b0..t * bn + b0 + bw];
                for l in 0..bw {
                    let (_, _, _, _, vn, an) =
                        elem::<T, COND, RATE>(xr[l], v[l], a[l], &rb, l, inv, beta);
                    v[l] = vn;
                    a[l] = an;
                }
            }
            // reverse sweep, tile by tile
            for j0 in (b0..b0 + bw).step_by(TILE) {
                let w = TILE.min(b0 + bw - j0);
                let geo = Geo {
                    t0,
                    t1,
                    t_steps,
                    bn,
                    j0,
                    w,
                    seg_stride: bw,
                    seg_off: j0 - b0,
                };
                let gx = if recv && want_gx {
                    Some(&mut gx_sep[..])
                } else {
                    None
                };
                macro_rules! tile {
                    ($d:expr, $r:expr) => {
                        adjoint_tile::<T, COND, MODE, RATE, $d, $r>(
                            x, &seg_v, &seg_a, &rw, &c, &mut g_out, gx, want_gx, &mut lam_v,
                            &mut lam_a, &mut gp, geo, inv, beta,
                        )
                    };
                }
                match (detach, recv) {
                    (true, true) => tile!(true, true),
                    (true, false) => tile!(true, false),
                    (false, true) => tile!(false, true),
                    (false, false) => tile!(false, false),
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
    } else if spec.record_v {
        gx_sep
    } else {
        g_out.truncate(t_steps * bn);
        g_out
    };
    Adjoint { gx, gp }
}
