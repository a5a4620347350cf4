//! The forward host loop: one unit's step, blocks of [`BLOCK`](super::BLOCK) units, SIMD dispatch,
//! threads and checkpoints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::arith::{Real, exp_euler, pw3, pw4, rates, sel, sigm};
use super::{BLOCK, N_COEF, NerlabScanSpec, ScanFault, row};

/// Scalar constants of a scan in the working precision.
#[derive(Clone, Copy, Debug)]
pub(super) struct Konst<R> {
    two_dt: R,
    neg_dt: R,
    ena: R,
    ek: R,
    els: R,
    ecal: R,
    eld: R,
    esyn: R,
    vtraub: R,
    thr: R,
    beta: R,
    pub(super) g_scale: R,
}

impl<R: Real> Konst<R> {
    pub(super) fn new(s: &NerlabScanSpec) -> Self {
        let [ena, ek, els, ecal, eld, vtraub] = s.reversal_mv;
        Self {
            two_dt: R::c(2.0 / s.dt_ms),
            neg_dt: R::c(-s.dt_ms),
            ena: R::c(ena),
            ek: R::c(ek),
            els: R::c(els),
            ecal: R::c(ecal),
            eld: R::c(eld),
            esyn: R::c(s.e_syn_mv),
            vtraub: R::c(vtraub),
            thr: R::c(crate::neuron::nerlab::SPIKE_THRESHOLD_MV),
            beta: R::c(s.beta),
            g_scale: R::c(s.g_scale),
        }
    }
}

/// State variable indices.
pub(super) const VS: usize = 0;
pub(super) const VD: usize = 1;
pub(super) const GM: usize = 2;
pub(super) const GH: usize = 3;
pub(super) const GP: usize = 4;
pub(super) const GN: usize = 5;
pub(super) const GR: usize = 6;
pub(super) const GL: usize = 7;
pub(super) const N_STATE: usize = 8;
pub(super) const STATE_NAMES: [&str; N_STATE] =
    ["v_soma_mv", "v_dend_mv", "m", "h", "p", "n", "r", "l"];

pub(super) type Arr<R> = [R; BLOCK];

/// One forward step of one unit: returns the new state and the spike output.
#[inline(always)]
fn step_unit<R: Real, const FAST: bool, const RATE: bool>(
    s: [R; N_STATE],
    c: &[R; N_COEF],
    g_in: R,
    k: &Konst<R>,
) -> ([R; N_STATE], R) {
    use row::*;
    let (vs, vd) = (s[VS], s[VD]);
    let gsyn = g_in * k.g_scale;
    let gax = c[G_AX];
    let g_na = c[G_NA] * pw3(s[GM]) * s[GH];
    let g_nap = c[G_NAP] * pw3(s[GP]);
    let g_k = c[G_KF] * pw4(s[GN]) + c[G_KS] * (s[GR] * s[GR]);
    let g_na_all = g_na + g_nap;
    let g_soma = g_na_all + g_k + c[G_L_SOMA];
    let i_soma = g_na_all * (vs - k.ena) + g_k * (vs - k.ek) + c[G_L_SOMA] * (vs - k.els);
    let g_cal = c[G_CAL] * s[GL];
    let g_dend = g_cal + c[G_L_DEND] + gsyn;
    let i_dend = g_cal * (vd - k.ecal) + c[G_L_DEND] * (vd - k.eld) + gsyn * (vd - k.esyn);
    let axial = gax * (vd - vs);
    let rhs_s = c[I_INJ] - i_soma + axial;
    let rhs_d = -axial - i_dend;
    let a11 = c[C_SOMA] * k.two_dt + g_soma + gax;
    let a22 = c[C_DEND] * k.two_dt + g_dend + gax;
    let det = a11 * a22 - gax * gax;
    let d_s = (rhs_s * a22 + gax * rhs_d) / det;
    let d_d = (a11 * rhs_d + gax * rhs_s) / det;
    let two = R::c(2.0);
    let vs1 = vs + d_s * two;
    let vd1 = vd + d_d * two;
    let v2 = vs1 - k.vtraub;
    let ([(am, bm), (ah, bh), (ap, bp), (an, bn)], ar) = rates::<R, FAST>(v2);
    let l_target = sigm::<R, FAST>(vd1 - c[VTRAUB_CAL] + R::c(30.0));
    let l1 = s[GL] + c[L_FACTOR] * (l_target - s[GL]);
    let m_new = vs1 - k.thr;
    let m_old = vs - k.thr;
    let zero = R::c(0.0);
    let one = R::c(1.0);
    let spike = if RATE {
        sigm::<R, FAST>(m_new * k.beta) * (-sigm::<R, FAST>(m_old * k.beta) + one)
    } else {
        sel(m_new > zero, one, zero) * (-sel(m_old > zero, one, zero) + one)
    };
    (
        [
            vs1,
            vd1,
            exp_euler::<R, FAST>(s[GM], am, bm, k.neg_dt),
            exp_euler::<R, FAST>(s[GH], ah, bh, k.neg_dt),
            exp_euler::<R, FAST>(s[GP], ap, bp, k.neg_dt),
            exp_euler::<R, FAST>(s[GN], an, bn, k.neg_dt),
            exp_euler::<R, FAST>(s[GR], ar, c[RINACT], k.neg_dt),
            l1,
        ],
        spike,
    )
}

/// The steady state at `v0` (the tape's `initial_state`).
fn initial_unit<R: Real, const FAST: bool>(v0: f64, c: &[R; N_COEF], k: &Konst<R>) -> [R; N_STATE] {
    let v = R::c(v0);
    let v2 = v - k.vtraub;
    let ([(am, bm), (ah, bh), (ap, bp), (an, bn)], ar) = rates::<R, FAST>(v2);
    let inf = |a: R, b: R| a / (a + b);
    [
        v,
        v,
        inf(am, bm),
        inf(ah, bh),
        inf(ap, bp),
        inf(an, bn),
        inf(ar, c[row::RINACT]),
        sigm::<R, FAST>(v - c[row::VTRAUB_CAL] + R::c(30.0)),
    ]
}

/// A block of units: coefficients and state, structure of arrays.
pub(super) struct Block<R> {
    pub(super) j0: usize,
    pub(super) len: usize,
    pub(super) coef: [Arr<R>; N_COEF],
    pub(super) state: [Arr<R>; N_STATE],
}

impl<R: Real> Block<R> {
    /// Block starting at flat unit `j0` (padded by repeating the last unit).
    pub(super) fn new(p: &Problem<'_, R>, j0: usize) -> Self {
        Self::from_coef(p.coef, p.bn, j0)
    }

    /// Block starting at flat unit `j0` of the coefficients `[N_COEF, bn]` (padded by repeating
    /// the last unit); state zero (see [`Block::init_at`]).
    pub(super) fn from_coef(all: &[R], bn: usize, j0: usize) -> Self {
        let len = BLOCK.min(bn - j0);
        let mut coef = [[R::default(); BLOCK]; N_COEF];
        for (r, row) in coef.iter_mut().enumerate() {
            for (jj, v) in row.iter_mut().enumerate() {
                *v = all[r * bn + j0 + jj.min(len - 1)];
            }
        }
        Self {
            j0,
            len,
            coef,
            state: [[R::default(); BLOCK]; N_STATE],
        }
    }

    fn coef_of(&self, jj: usize) -> [R; N_COEF] {
        std::array::from_fn(|r| self.coef[r][jj])
    }

    fn init<const FAST: bool>(&mut self, p: &Problem<'_, R>) {
        self.init_at::<FAST>(p.v_init, &p.k);
    }

    /// The steady state at `v_init` (mV) for every unit.
    pub(super) fn init_at<const FAST: bool>(&mut self, v_init: f64, k: &Konst<R>) {
        for jj in 0..BLOCK {
            let s = initial_unit::<R, FAST>(v_init, &self.coef_of(jj), k);
            for (v, x) in s.into_iter().enumerate() {
                self.state[v][jj] = x;
            }
        }
    }

    /// Gathers the input of step `t` (scaled later); returns the first bad index, if any.
    #[inline(always)]
    fn gather(&self, p: &Problem<'_, R>, t: usize, g: &mut Arr<R>) -> Option<usize> {
        let src = &p.g[t * p.bn + self.j0..t * p.bn + self.j0 + self.len];
        let mut ok = true;
        for (d, &x) in g.iter_mut().zip(src) {
            *d = x;
            ok &= x >= R::c(0.0) && x.finite();
        }
        for d in g.iter_mut().skip(self.len) {
            *d = R::c(0.0);
        }
        if ok {
            None
        } else {
            src.iter()
                .position(|&x| !(x >= R::c(0.0) && x.finite()))
                .map(|jj| self.j0 + jj)
        }
    }

    /// First non-finite state variable `(var, flat unit)`.
    pub(super) fn non_finite(&self) -> Option<(usize, usize)> {
        for (v, a) in self.state.iter().enumerate() {
            if let Some(jj) = a[..self.len].iter().position(|x| !x.finite()) {
                return Some((v, self.j0 + jj));
            }
        }
        None
    }
}

/// Called after every step with `(t, block, spikes)`; `false` stops the loop.
type StepVisit<'a, R> = dyn FnMut(usize, &Block<R>, &Arr<R>) -> bool + 'a;

/// One step of a whole block (the loop that gets vectorised).
#[inline(always)]
pub(super) fn block_step<R: Real, const FAST: bool, const RATE: bool>(
    state: &mut [Arr<R>; N_STATE],
    coef: &[Arr<R>; N_COEF],
    g: &Arr<R>,
    k: &Konst<R>,
    spk: &mut Arr<R>,
) {
    for jj in 0..BLOCK {
        let s: [R; N_STATE] = std::array::from_fn(|v| state[v][jj]);
        let c: [R; N_COEF] = std::array::from_fn(|r| coef[r][jj]);
        let (ns, sp) = step_unit::<R, FAST, RATE>(s, &c, g[jj], k);
        for v in 0..N_STATE {
            state[v][jj] = ns[v];
        }
        spk[jj] = sp;
    }
}

/// Runs steps `t0..t1` of a block; `each(t, block, spikes)` after every step.
#[inline(always)]
fn run_steps_generic<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    let mut g = [R::default(); BLOCK];
    let mut spk = [R::default(); BLOCK];
    for t in t0..t1 {
        if let Some(j) = b.gather(p, t, &mut g) {
            p.report(ScanFault::BadConductance {
                step: t,
                unit: j,
                value: p.g[t * p.bn + j].f(),
            });
        }
        block_step::<R, FAST, RATE>(&mut b.state, &b.coef, &g, &p.k, &mut spk);
        if !each(t, b, &spk) {
            break;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn run_steps_avx512<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    run_steps_generic::<R, FAST, RATE>(p, b, t0, t1, each)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_steps_avx2<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    run_steps_generic::<R, FAST, RATE>(p, b, t0, t1, each)
}

/// Runs steps `t0..t1` with the widest SIMD the CPU has (the arithmetic — and so the result —
/// is the same on every path: no fused multiply-adds are used).
pub(super) fn run_steps<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if FAST
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU supports the enabled features (checked just above).
            return unsafe { run_steps_avx512::<R, FAST, RATE>(p, b, t0, t1, each) };
        }
        if FAST
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { run_steps_avx2::<R, FAST, RATE>(p, b, t0, t1, each) };
        }
    }
    run_steps_generic::<R, FAST, RATE>(p, b, t0, t1, each)
}

/// Everything the host loops need (borrowed host data + constants).
pub(super) struct Problem<'a, R> {
    pub(super) g: &'a [R],
    pub(super) coef: &'a [R],
    pub(super) t_steps: usize,
    pub(super) bn: usize,
    pub(super) n: usize,
    pub(super) k: Konst<R>,
    pub(super) v_init: f64,
    pub(super) spec: &'a NerlabScanSpec,
}

impl<R: Real> Problem<'_, R> {
    fn report(&self, f: ScanFault) {
        if let Ok(mut slot) = self.spec.fault.lock() {
            let replace = match slot.as_ref() {
                None => true,
                Some(old) => f.step() < old.step(),
            };
            if replace {
                *slot = Some(f);
            }
        }
    }
    pub(super) fn n_blocks(&self) -> usize {
        self.bn.div_ceil(BLOCK)
    }
    pub(super) fn out_width(&self) -> usize {
        if self.spec.record_voltage {
            2 * self.n
        } else {
            self.n
        }
    }
    /// Output offsets `(spike, voltage)` of flat unit `j` within a step.
    pub(super) fn out_off(&self, j: usize) -> (usize, usize) {
        let w = self.out_width();
        let (b, i) = (j / self.n, j % self.n);
        (b * w + i, b * w + self.n + i)
    }
}

/// A raw pointer that threads may write through at disjoint indices.
#[derive(Clone, Copy)]
pub(super) struct SendPtr<T>(pub(super) *mut T);
// SAFETY: used only to write disjoint elements from different threads (each unit belongs to one
// block, each block to one thread).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// # Safety
    /// `i` in bounds and no other thread writes index `i`.
    #[inline(always)]
    pub(super) unsafe fn write(self, i: usize, v: T) {
        unsafe { self.0.add(i).write(v) }
    }
}

/// Runs `f(block index)` for every block on `threads` threads.
pub(super) fn par_blocks(n_blocks: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let threads = threads.clamp(1, n_blocks.max(1));
    if threads == 1 {
        (0..n_blocks).for_each(f);
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n_blocks {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}

/// Forward of all units; returns the output `[T, B, W]` and (if `keep`) the checkpoints per block
/// (`[segment][var][BLOCK]` flattened).
pub(super) fn forward_host<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    keep: bool,
) -> (Vec<R>, Vec<Vec<R>>) {
    let w = p.out_width();
    let stride = p.bn / p.n * w;
    let mut out = vec![R::default(); p.t_steps * stride];
    let ptr = SendPtr(out.as_mut_ptr());
    let kk = p.spec.checkpoint_every.max(1);
    let n_seg = p.t_steps.div_ceil(kk);
    let ckpts: Vec<Mutex<Vec<R>>> = (0..p.n_blocks()).map(|_| Mutex::new(Vec::new())).collect();
    let check_every = p.spec.check_every.max(1);
    par_blocks(p.n_blocks(), p.spec.threads, |bi| {
        let mut b = Block::new(p, bi * BLOCK);
        b.init::<FAST>(p);
        let offs: Vec<(usize, usize)> = (0..b.len).map(|jj| p.out_off(b.j0 + jj)).collect();
        let mut ck = if keep {
            Vec::with_capacity(n_seg * N_STATE * BLOCK)
        } else {
            Vec::new()
        };
        let mut fault = false;
        for seg in 0..n_seg {
            let (t0, t1) = (seg * kk, ((seg + 1) * kk).min(p.t_steps));
            if keep {
                for a in &b.state {
                    ck.extend_from_slice(a);
                }
            }
            run_steps::<R, FAST, RATE>(p, &mut b, t0, t1, &mut |t, b, spk| {
                let base = t * stride;
                for (jj, &(os, ov)) in offs.iter().enumerate() {
                    // SAFETY: unit j0+jj is written only by this block; indices are in bounds.
                    unsafe {
                        ptr.write(base + os, spk[jj]);
                        if p.spec.record_voltage {
                            ptr.write(base + ov, b.state[VS][jj]);
                        }
                    }
                }
                if !fault
                    && ((t + 1).is_multiple_of(check_every) || t + 1 == p.t_steps)
                    && let Some((v, j)) = b.non_finite()
                {
                    p.report(ScanFault::NonFinite {
                        var: STATE_NAMES[v],
                        step: t,
                        unit: j,
                    });
                    fault = true;
                }
                true
            });
        }
        if keep {
            *ckpts[bi].lock().expect("checkpoint slot") = ck;
        }
    });
    let ckpts = ckpts
        .into_iter()
        .map(|m| m.into_inner().expect("checkpoint slot"))
        .collect();
    (out, ckpts)
}
