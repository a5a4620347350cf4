//! The hand-written adjoint (backpropagation through time): per-unit derivatives, blocks,
//! SIMD dispatch and the segment-wise recomputation from checkpoints.

use crate::neuron::spike::SpikeMode;

use super::arith::{Real, exp_f64};
use super::forward::{
    Arr, Block, GH, GL, GM, GN, GP, GR, N_STATE, Problem, SendPtr, VD, VS, par_blocks, run_steps,
};
use super::{BLOCK, N_COEF, row};

/// `vtrap(x, y)` and `d vtrap/dx` in f64, branch-free (the tape's branches: series below
/// `|x/y| < 1e-3`).
#[inline(always)]
fn vtrap_d(x: f64, y: f64) -> (f64, f64) {
    let z = x * (1.0 / y);
    let small = z.abs() < 1e-3;
    let zs = if small { 1.0 } else { z };
    let e = exp_f64(zs);
    let em1 = e - 1.0;
    let v_direct = zs / em1 * y;
    let d_direct = 1.0 / em1 - zs * e / (em1 * em1);
    let v_series = ((z * (1.0 / 12.0) - 0.5) * z + 1.0) * y;
    let d_series = z * (1.0 / 6.0) - 0.5;
    if small {
        (v_series, d_series)
    } else {
        (v_direct, d_direct)
    }
}

/// `(α, β, dα/dv2, dβ/dv2)` of m, h, p, n and `(α_r, dα_r/dv2)` in f64.
#[inline(always)]
fn rates_d(v2: f64) -> ([[f64; 4]; 4], [f64; 2]) {
    let (am, dam) = vtrap_d(15.0 - v2, 4.0);
    let (bm, dbm) = vtrap_d(v2 - 40.0, 5.0);
    let ah = exp_f64((17.0 - v2) * (1.0 / 18.0)) * 0.928;
    let qh = 1.0 / (exp_f64((40.0 - v2) * 0.2) + 1.0);
    let (ap, dap) = vtrap_d(5.0 - v2, 4.0);
    let (bp, dbp) = vtrap_d(v2 - 30.0, 5.0);
    let (an, dan) = vtrap_d(15.0 - v2, 7.0);
    let bn = exp_f64((10.0 - v2) * (1.0 / 40.0)) * 2.0;
    let qr = 1.0 / (exp_f64((55.0 - v2) * 0.25) + 1.0);
    (
        [
            [am * 0.64, bm * 0.56, -dam * 0.64, dbm * 0.56],
            [
                ah,
                qh * 9.0,
                -ah * (1.0 / 18.0),
                9.0 * qh * (1.0 - qh) * 0.2,
            ],
            [ap * 0.64, bp * 0.56, -dap * 0.64, dbp * 0.56],
            [an * 0.08, bn, -dan * 0.08, -bn * (1.0 / 40.0)],
        ],
        [qr * 3.5, 3.5 * qr * (1.0 - qr) * 0.25],
    )
}

/// `σ(x)` in f64, branch-free.
#[inline(always)]
fn sig64(x: f64) -> f64 {
    let e = exp_f64(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 { r } else { e * r }
}

/// Constants of the adjoint (f64).
struct AdjK {
    dt: f64,
    two_dt: f64,
    rev: [f64; 6],
    esyn: f64,
    beta: f64,
}

/// Spike-gradient modes of the adjoint (const generic): hard, surrogate, rate.
const M_HARD: u8 = 0;
const M_SURR: u8 = 1;
const M_RATE: u8 = 2;

/// One step of the adjoint for one unit (module docs): from the pre-step state `s`, the new
/// voltages `(vs1, vd1)`, the coefficients `c`, the step's synaptic conductance (µS) and the
/// incoming gradients of its spike and voltage outputs, maps the adjoint `lam` of the state after
/// the step to the one before it, adds the coefficient gradients to `gc` and returns
/// `∂L/∂g_syn` (per µS).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adj_unit<const MODE: u8>(
    s: [f64; N_STATE],
    vs1: f64,
    vd1: f64,
    c: [f64; N_COEF],
    gsyn: f64,
    gspk: f64,
    gv: f64,
    k: &AdjK,
    lam: &mut [f64; N_STATE],
    gc: &mut [f64; N_COEF],
) -> f64 {
    use row::*;
    let [ena, ek, els, ecal, eld, vtraub] = k.rev;
    let (vs, vd) = (s[VS], s[VD]);
    let mut lvs1 = lam[VS] + gv;
    let mut lvd1 = lam[VD];
    // 1. spike
    let m_new = vs1 - crate::neuron::nerlab::SPIKE_THRESHOLD_MV;
    let m_old = vs - crate::neuron::nerlab::SPIKE_THRESHOLD_MV;
    let mut lvs_extra = 0.0;
    if MODE == M_SURR {
        let not_old = if m_old > 0.0 { 0.0 } else { 1.0 };
        let d = 1.0 + k.beta * m_new.abs();
        lvs1 += gspk * (k.beta / (d * d)) * not_old;
    } else if MODE == M_RATE {
        let sn = sig64(m_new * k.beta);
        let so = sig64(m_old * k.beta);
        lvs1 += gspk * k.beta * sn * (1.0 - sn) * (1.0 - so);
        lvs_extra = -gspk * sn * k.beta * so * (1.0 - so);
    }
    // 2. gates at the new voltage
    let v2 = vs1 - vtraub;
    let (rt, [ar, dar]) = rates_d(v2);
    let mut lg = [0.0f64; N_STATE];
    let gate = |x: f64, a: f64, b: f64| {
        let kk = a + b;
        let e = exp_f64(-k.dt * kk);
        let f = 1.0 - e;
        let fpq = k.dt * e * (a / kk - x);
        let ik2 = f / (kk * kk);
        (fpq + b * ik2, fpq - a * ik2, 1.0 - f)
    };
    for (gi, v) in [GM, GH, GP, GN].into_iter().enumerate() {
        let [ga, gb, da, db] = rt[gi];
        let (dxa, dxb, keep) = gate(s[v], ga, gb);
        lvs1 += lam[v] * (dxa * da + dxb * db);
        lg[v] = lam[v] * keep;
    }
    {
        let (dxa, dxb, keep) = gate(s[GR], ar, c[RINACT]);
        lvs1 += lam[GR] * dxa * dar;
        gc[RINACT] += lam[GR] * dxb;
        lg[GR] = lam[GR] * keep;
    }
    {
        let lf = c[L_FACTOR];
        let sg = sig64(vd1 - c[VTRAUB_CAL] + 30.0);
        let ds = sg * (1.0 - sg);
        lg[GL] = lam[GL] * (1.0 - lf);
        lvd1 += lam[GL] * lf * ds;
        gc[VTRAUB_CAL] -= lam[GL] * lf * ds;
        gc[L_FACTOR] += lam[GL] * (sg - s[GL]);
    }
    // 3. Crank–Nicolson solve
    let gax = c[G_AX];
    let m2 = s[GM] * s[GM];
    let m3h = m2 * s[GM] * s[GH];
    let p2 = s[GP] * s[GP];
    let p3 = p2 * s[GP];
    let n3 = s[GN] * s[GN] * s[GN];
    let n4 = n3 * s[GN];
    let r2 = s[GR] * s[GR];
    let g_na_all = c[G_NA] * m3h + c[G_NAP] * p3;
    let g_k = c[G_KF] * n4 + c[G_KS] * r2;
    let g_soma = g_na_all + g_k + c[G_L_SOMA];
    let i_soma = g_na_all * (vs - ena) + g_k * (vs - ek) + c[G_L_SOMA] * (vs - els);
    let g_cal = c[G_CAL] * s[GL];
    let g_dend = g_cal + c[G_L_DEND] + gsyn;
    let i_dend = g_cal * (vd - ecal) + c[G_L_DEND] * (vd - eld) + gsyn * (vd - k.esyn);
    let axial = gax * (vd - vs);
    let rhs_s = c[I_INJ] - i_soma + axial;
    let rhs_d = -axial - i_dend;
    let a11 = c[C_SOMA] * k.two_dt + g_soma + gax;
    let a22 = c[C_DEND] * k.two_dt + g_dend + gax;
    let idet = 1.0 / (a11 * a22 - gax * gax);
    let d_s = (rhs_s * a22 + gax * rhs_d) * idet;
    let d_d = (a11 * rhs_d + gax * rhs_s) * idet;
    let (ls, ld) = (2.0 * lvs1, 2.0 * lvd1);
    let mu_s = (a22 * ls + gax * ld) * idet;
    let mu_d = (gax * ls + a11 * ld) * idet;
    let da11 = -mu_s * d_s;
    let da22 = -mu_d * d_d;
    let g_naall_bar = -mu_s * (vs - ena) + da11;
    let g_k_bar = -mu_s * (vs - ek) + da11;
    let g_cal_bar = -mu_d * (vd - ecal) + da22;
    lg[GM] += g_naall_bar * c[G_NA] * 3.0 * m2 * s[GH];
    lg[GH] += g_naall_bar * c[G_NA] * m2 * s[GM];
    lg[GP] += g_naall_bar * c[G_NAP] * 3.0 * p2;
    lg[GN] += g_k_bar * c[G_KF] * 4.0 * n3;
    lg[GR] += g_k_bar * c[G_KS] * 2.0 * s[GR];
    lg[GL] += g_cal_bar * c[G_CAL];
    gc[G_NA] += g_naall_bar * m3h;
    gc[G_NAP] += g_naall_bar * p3;
    gc[G_KF] += g_k_bar * n4;
    gc[G_KS] += g_k_bar * r2;
    gc[G_L_SOMA] += -mu_s * (vs - els) + da11;
    gc[G_CAL] += g_cal_bar * s[GL];
    gc[G_L_DEND] += -mu_d * (vd - eld) + da22;
    gc[C_SOMA] += da11 * k.two_dt;
    gc[C_DEND] += da22 * k.two_dt;
    gc[G_AX] += da11 + da22 + mu_s * d_d + mu_d * d_s + (mu_s - mu_d) * (vd - vs);
    gc[I_INJ] += mu_s;
    lg[VS] = lvs1 + mu_s * (-g_soma - gax) + mu_d * gax + lvs_extra;
    lg[VD] = lvd1 + mu_s * gax + mu_d * (-gax - g_dend);
    *lam = lg;
    -mu_d * (vd - k.esyn) + da22
}

/// Per-block adjoint buffers (structure of arrays, f64).
struct AdjBlock {
    lam: [[f64; BLOCK]; N_STATE],
    gc: [[f64; BLOCK]; N_COEF],
    coef: [[f64; BLOCK]; N_COEF],
}

/// Inputs of one adjoint step of a block: states before and after (working precision, SoA),
/// the step's conductance (µS) and incoming gradients; writes `∂L/∂g_syn` into `dg`.
struct AdjStep<'a, R> {
    s: &'a [Arr<R>; N_STATE],
    s1: &'a [Arr<R>; N_STATE],
    gsyn: &'a [f64; BLOCK],
    gspk: &'a [f64; BLOCK],
    gv: &'a [f64; BLOCK],
}

#[inline(always)]
fn adj_block_step<R: Real, const MODE: u8>(
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    for jj in 0..BLOCK {
        let s: [f64; N_STATE] = std::array::from_fn(|v| a.s[v][jj].f());
        let c: [f64; N_COEF] = std::array::from_fn(|r| ab.coef[r][jj]);
        let mut lam: [f64; N_STATE] = std::array::from_fn(|v| ab.lam[v][jj]);
        let mut gc = [0.0f64; N_COEF];
        dg[jj] = adj_unit::<MODE>(
            s,
            a.s1[VS][jj].f(),
            a.s1[VD][jj].f(),
            c,
            a.gsyn[jj],
            a.gspk[jj],
            a.gv[jj],
            k,
            &mut lam,
            &mut gc,
        );
        for v in 0..N_STATE {
            ab.lam[v][jj] = lam[v];
        }
        for r in 0..N_COEF {
            ab.gc[r][jj] += gc[r];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn adj_block_step_avx512<R: Real, const MODE: u8>(
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    adj_block_step::<R, MODE>(a, k, ab, dg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn adj_block_step_avx2<R: Real, const MODE: u8>(
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    adj_block_step::<R, MODE>(a, k, ab, dg)
}

/// Which SIMD path the CPU supports: 2 = AVX-512, 1 = AVX2 + FMA, 0 = baseline.
pub(super) fn simd_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return 2;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return 1;
        }
    }
    0
}

fn adj_block_step_dispatch<R: Real, const MODE: u8>(
    level: u8,
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if level == 2 {
            // SAFETY: the CPU supports the enabled features (simd_level).
            return unsafe { adj_block_step_avx512::<R, MODE>(a, k, ab, dg) };
        }
        if level == 1 {
            // SAFETY: as above.
            return unsafe { adj_block_step_avx2::<R, MODE>(a, k, ab, dg) };
        }
    }
    let _ = level;
    adj_block_step::<R, MODE>(a, k, ab, dg)
}

/// Adjoint of all units. `gout`: incoming gradient `[T, B, W]`. Returns `(∂L/∂g [T, B, N] if
/// wanted (working precision), ∂L/∂coef [N_COEF, B, N] (f64))`.
pub(super) fn adjoint_host<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    ckpts: &[Vec<R>],
    gout: &[R],
    want_g: bool,
) -> (Vec<R>, Vec<f64>) {
    match p.spec.mode {
        SpikeMode::Hard => adjoint_mode::<R, FAST, RATE, M_HARD>(p, ckpts, gout, want_g),
        SpikeMode::Surrogate => adjoint_mode::<R, FAST, RATE, M_SURR>(p, ckpts, gout, want_g),
        SpikeMode::Rate => adjoint_mode::<R, FAST, RATE, M_RATE>(p, ckpts, gout, want_g),
    }
}

fn adjoint_mode<R: Real, const FAST: bool, const RATE: bool, const MODE: u8>(
    p: &Problem<'_, R>,
    ckpts: &[Vec<R>],
    gout: &[R],
    want_g: bool,
) -> (Vec<R>, Vec<f64>) {
    let w = p.out_width();
    let stride = p.bn / p.n * w;
    let kk = p.spec.checkpoint_every.max(1);
    let n_seg = p.t_steps.div_ceil(kk);
    let mut gg = if want_g {
        vec![R::default(); p.t_steps * p.bn]
    } else {
        Vec::new()
    };
    let mut gcoef = vec![0.0f64; N_COEF * p.bn];
    let gg_ptr = SendPtr(gg.as_mut_ptr());
    let gc_ptr = SendPtr(gcoef.as_mut_ptr());
    let ak = AdjK {
        dt: p.spec.dt_ms,
        two_dt: 2.0 / p.spec.dt_ms,
        rev: p.spec.reversal_mv,
        esyn: p.spec.e_syn_mv,
        beta: p.spec.beta,
    };
    let level = simd_level();
    par_blocks(p.n_blocks(), p.spec.threads, |bi| {
        let mut b = Block::new(p, bi * BLOCK);
        let len = b.len;
        let offs: Vec<(usize, usize)> = (0..len).map(|jj| p.out_off(b.j0 + jj)).collect();
        let mut ab = Box::new(AdjBlock {
            lam: [[0.0; BLOCK]; N_STATE],
            gc: [[0.0; BLOCK]; N_COEF],
            coef: std::array::from_fn(|r| std::array::from_fn(|jj| b.coef[r][jj].f())),
        });
        let ck = &ckpts[bi];
        // states of one segment: [τ] (τ = 0..=segment length), each [var][unit]
        let mut seg: Vec<[Arr<R>; N_STATE]> = vec![[[R::default(); BLOCK]; N_STATE]; kk + 1];
        let mut gsyn = [0.0f64; BLOCK];
        let mut gspk = [0.0f64; BLOCK];
        let mut gv = [0.0f64; BLOCK];
        let mut dg = [0.0f64; BLOCK];
        for si in (0..n_seg).rev() {
            let (t0, t1) = (si * kk, ((si + 1) * kk).min(p.t_steps));
            let base = si * N_STATE * BLOCK;
            for v in 0..N_STATE {
                b.state[v].copy_from_slice(&ck[base + v * BLOCK..base + (v + 1) * BLOCK]);
            }
            seg[0] = b.state;
            run_steps::<R, FAST, RATE>(p, &mut b, t0, t1, &mut |t, b, _| {
                seg[t + 1 - t0] = b.state;
                true
            });
            for t in (t0..t1).rev() {
                let tau = t - t0;
                for jj in 0..len {
                    let (os, ov) = offs[jj];
                    gspk[jj] = gout[t * stride + os].f();
                    gv[jj] = if p.spec.record_voltage {
                        gout[t * stride + ov].f()
                    } else {
                        0.0
                    };
                    gsyn[jj] = (p.g[t * p.bn + b.j0 + jj] * p.k.g_scale).f();
                }
                let a = AdjStep {
                    s: &seg[tau],
                    s1: &seg[tau + 1],
                    gsyn: &gsyn,
                    gspk: &gspk,
                    gv: &gv,
                };
                adj_block_step_dispatch::<R, MODE>(level, &a, &ak, &mut ab, &mut dg);
                if want_g {
                    for (jj, d) in dg.iter().enumerate().take(len) {
                        // SAFETY: unit j0+jj belongs to this block only; index in bounds.
                        unsafe {
                            gg_ptr.write(t * p.bn + b.j0 + jj, R::c(d * p.spec.g_scale));
                        }
                    }
                }
            }
        }
        // initial steady state: r0 = α_r/(α_r + rinact), L0 = σ(v0 − vtraub_caL + 30)
        let (_, [ar0, _]) = rates_d(p.v_init - p.spec.reversal_mv[5]);
        for jj in 0..len {
            let rin = ab.coef[row::RINACT][jj];
            ab.gc[row::RINACT][jj] += ab.lam[GR][jj] * (-ar0 / ((ar0 + rin) * (ar0 + rin)));
            let sg = sig64(p.v_init - ab.coef[row::VTRAUB_CAL][jj] + 30.0);
            ab.gc[row::VTRAUB_CAL][jj] -= ab.lam[GL][jj] * sg * (1.0 - sg);
            for r in 0..N_COEF {
                // SAFETY: as above.
                unsafe { gc_ptr.write(r * p.bn + b.j0 + jj, ab.gc[r][jj]) };
            }
        }
    });
    (gg, gcoef)
}
