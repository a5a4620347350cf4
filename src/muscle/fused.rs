#![allow(deprecated)] // burn 0.22 marks its NdArray backend deprecated; myodiff keeps it selectable

//! The fused path of [`super::TwitchForce`]: ONE custom burn op runs the whole twitch-force
//! recursion over all steps in a host loop (f64 arithmetic) and supplies a hand-written adjoint,
//! registered with burn's autodiff so it composes with ordinary tensor ops and `loss.backward()`.
//!
//! Op: `twitch_scan(s [T, B, N], coef [7, B, N]) → force [T, B, 1]` with the coefficient rows
//! `a, b, c` (IIR), `tg` (= T_i, s), `gc` (constant gain), `w` (= F0·P_i, N) and `cs`
//! (saturation constant), built differentiably by the stage. Per unit and step (same order as
//! the tape step):
//!
//! ```text
//! s̃ = s[t − d_i]          (0 for t < d_i)
//! g = G(T_i/τ)  (Fuglevand; τ ← τ + dt − s̃·τ)   or   g = gc
//! out[t] += w·Y(f_t)       (Y(f) = f, or sig(cs, f) with saturation)
//! f_{t+1} = a f_t − b f_{t−1} + c·g·s̃
//! ```
//!
//! Adjoint (per unit, backwards in time; `λ_t = ∂L/∂f_t`, `ν_t = ∂L/∂τ_t`):
//! `λ_t = ḡ_t w Y'(f_t) + a λ_{t+1} − b λ_{t+2}`, `μ_t = c λ_{t+1}` (= ∂L/∂u_t),
//! `∂L/∂s̃_t = μ_t g_t − ν_{t+1} τ_t`, `ν_t = μ_t s̃_t G'(r_t)(−T_i/τ_t²) + ν_{t+1}(1 − s̃_t)`;
//! parameter gradients accumulate in f64. Memory: the op keeps the input trace and the
//! coefficients; the backward pass recomputes the states of blocks of 64 units (one extra
//! forward; `O(T·64)` scratch). The gain is only evaluated where the input is non-zero.
//!
//! Backends: `Flex`, `NdArray` and `Autodiff` over them; elsewhere the stage falls back to being
//! stepped alone (see [`fused_supported`]).

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, NdArray, TensorMetadata, backend_extension,
    tensor::FloatTensor, try_read_sync,
};
use burn::tensor::{DType, Tensor, TensorData};

use super::twitch::{GAIN_RATE_KNEE, sf};
use crate::error::{Error, Result};

/// Number of coefficient rows of [`twitch_scan`].
pub const N_COEF: usize = 7;

/// Static (non-tensor) settings of one twitch scan.
#[derive(Clone, Debug)]
pub struct TwitchScanSpec {
    /// Fuglevand rate-dependent gain (`true`) or the constant gain row `gc` (`false`).
    pub fuglevand: bool,
    /// Apply the saturation `sig(cs, f)`.
    pub saturation: bool,
    /// Per-unit axonal delays (steps); empty = none.
    pub delays: Vec<usize>,
    /// Time step (s).
    pub dt_s: f64,
    /// Initial time since the previous spike (s).
    pub tau0_s: f64,
}

/// Fuglevand gain `G(r)` (with `r` clamped at the knee, as on the tape) and `dG/dr`.
#[inline]
fn gain(r: f64) -> (f64, f64) {
    let k = sf(GAIN_RATE_KNEE) / GAIN_RATE_KNEE;
    if r > GAIN_RATE_KNEE {
        let e = (-2.0 * r * r * r).exp();
        let s = 1.0 - e;
        let ds = 6.0 * r * r * e;
        (s / r / k, (ds * r - s) / (r * r * k))
    } else {
        (1.0, 0.0)
    }
}

/// `Y(f)`, `∂Y/∂f`, `∂Y/∂cs`.
#[inline]
fn sat(f: f64, cs: f64, on: bool) -> (f64, f64, f64) {
    if on {
        let e = (-cs * f).exp();
        let d = 2.0 * e / ((1.0 + e) * (1.0 + e));
        ((1.0 - e) / (1.0 + e), cs * d, f * d)
    } else {
        (f, 1.0, 0.0)
    }
}

/// Coefficients of one unit.
#[derive(Clone, Copy)]
struct Coef {
    a: f64,
    b: f64,
    c: f64,
    tg: f64,
    gc: f64,
    w: f64,
    cs: f64,
}

fn coef_at(p: &[f64], bn: usize, j: usize) -> Coef {
    Coef {
        a: p[j],
        b: p[bn + j],
        c: p[2 * bn + j],
        tg: p[3 * bn + j],
        gc: p[4 * bn + j],
        w: p[5 * bn + j],
        cs: p[6 * bn + j],
    }
}

/// Units per block of the host loops: time-major within a block keeps the input reads
/// contiguous and the recorded states of the adjoint small (`2·T·BLOCK` values).
const BLOCK: usize = 64;

/// Runs the units `j0..j1` (flat `b·N + i`) time-major; calls `visit(t, jj, f_t, tau_t, g_t, sd_t)`
/// for every step and unit of the block (`g_t` is only computed where `sd_t ≠ 0`, else 0).
#[allow(clippy::too_many_arguments)]
fn run_block<S: Copy + Into<f64>>(
    s: &[S],
    p: &[f64],
    dims: (usize, usize, usize),
    spec: &TwitchScanSpec,
    j0: usize,
    j1: usize,
    mut visit: impl FnMut(usize, usize, f64, f64, f64, f64),
) {
    let (t_steps, b, n) = dims;
    let bn = b * n;
    let m = j1 - j0;
    let ks: Vec<Coef> = (j0..j1).map(|j| coef_at(p, bn, j)).collect();
    let ds: Vec<usize> = (j0..j1)
        .map(|j| spec.delays.get(j % n).copied().unwrap_or(0))
        .collect();
    let mut f_prev = vec![0.0; m];
    let mut f_cur = vec![0.0; m];
    let mut tau = vec![spec.tau0_s; m];
    for t in 0..t_steps {
        for jj in 0..m {
            let k = ks[jj];
            let d = ds[jj];
            let sd: f64 = if t >= d {
                s[(t - d) * bn + j0 + jj].into()
            } else {
                0.0
            };
            let tau_t = tau[jj];
            let g = if spec.fuglevand {
                tau[jj] = tau_t + spec.dt_s - sd * tau_t;
                if sd != 0.0 { gain(k.tg / tau_t).0 } else { 0.0 }
            } else {
                k.gc
            };
            let f = f_cur[jj];
            visit(t, jj, f, tau_t, g, sd);
            let f_next = k.a * f - k.b * f_prev[jj] + k.c * (g * sd);
            f_prev[jj] = f;
            f_cur[jj] = f_next;
        }
    }
}

/// Forward: `s` `[T, B, N]`, `p` `[7, B, N]` (f64) → force `[T, B]`.
fn forward_host<S: Copy + Into<f64>>(
    s: &[S],
    p: &[f64],
    dims: (usize, usize, usize),
    spec: &TwitchScanSpec,
) -> Vec<f64> {
    let (t_steps, b, n) = dims;
    let bn = b * n;
    let mut out = vec![0.0; t_steps * b];
    for j0 in (0..bn).step_by(BLOCK) {
        let j1 = (j0 + BLOCK).min(bn);
        let ks: Vec<Coef> = (j0..j1).map(|j| coef_at(p, bn, j)).collect();
        // batch row of each unit, hoisted out of the time loop (an integer division per step and
        // unit cost ≈0.3 s at 50,000 × 800)
        let rows: Vec<usize> = (j0..j1).map(|j| j / n).collect();
        run_block(s, p, dims, spec, j0, j1, |t, jj, f, _, _, _| {
            let k = ks[jj];
            out[t * b + rows[jj]] += k.w * sat(f, k.cs, spec.saturation).0;
        });
    }
    out
}

/// Adjoint: given `∂L/∂force` `[T, B]`, returns `(∂L/∂s [T, B, N], ∂L/∂p [7, B, N])`.
fn adjoint_host<S: Copy + Into<f64>>(
    s: &[S],
    p: &[f64],
    gout: &[f64],
    dims: (usize, usize, usize),
    spec: &TwitchScanSpec,
) -> (Vec<f64>, Vec<f64>) {
    let (t_steps, b, n) = dims;
    let bn = b * n;
    let mut gs = vec![0.0; t_steps * bn];
    let mut gp = vec![0.0; N_COEF * bn];
    for j0 in (0..bn).step_by(BLOCK) {
        let j1 = (j0 + BLOCK).min(bn);
        let m = j1 - j0;
        let ks: Vec<Coef> = (j0..j1).map(|j| coef_at(p, bn, j)).collect();
        let ds: Vec<usize> = (j0..j1)
            .map(|j| spec.delays.get(j % n).copied().unwrap_or(0))
            .collect();
        // recompute the block's states: f_t, tau_t, g_t, sd_t per step and unit
        let mut fs = vec![0.0; t_steps * m];
        let mut taus = vec![0.0; if spec.fuglevand { t_steps * m } else { 0 }];
        let mut gsd = vec![(0.0, 0.0); t_steps * m];
        run_block(s, p, dims, spec, j0, j1, |t, jj, f, tau, g, sd| {
            fs[t * m + jj] = f;
            if spec.fuglevand {
                taus[t * m + jj] = tau;
            }
            gsd[t * m + jj] = (g, sd);
        });
        let mut lam1 = vec![0.0; m];
        let mut lam2 = vec![0.0; m];
        let mut nu1 = vec![0.0; m];
        let mut acc = vec![[0.0f64; N_COEF]; m];
        for t in (0..t_steps).rev() {
            for jj in 0..m {
                let k = ks[jj];
                let g = &mut acc[jj];
                let f_t = fs[t * m + jj];
                let f_tm1 = if t > 0 { fs[(t - 1) * m + jj] } else { 0.0 };
                let (gn, sd) = gsd[t * m + jj];
                let l1 = lam1[jj];
                // f_{t+1} = a f_t − b f_{t−1} + c u_t,  u_t = g_t s̃_t
                g[0] += l1 * f_t;
                g[1] -= l1 * f_tm1;
                g[2] += l1 * (gn * sd);
                let mu = k.c * l1;
                let dgain = mu * sd;
                let mut gs_t = mu * gn;
                if spec.fuglevand {
                    let tau_t = taus[t * m + jj];
                    let dg_dr = if sd != 0.0 { gain(k.tg / tau_t).1 } else { 0.0 };
                    g[3] += dgain * dg_dr / tau_t;
                    gs_t -= nu1[jj] * tau_t;
                    nu1[jj] = dgain * dg_dr * (-k.tg / (tau_t * tau_t)) + nu1[jj] * (1.0 - sd);
                } else {
                    g[4] += dgain;
                }
                let go = gout[t * b + (j0 + jj) / n];
                let (y, dy_df, dy_dcs) = sat(f_t, k.cs, spec.saturation);
                g[5] += go * y;
                g[6] += go * k.w * dy_dcs;
                let lam_t = go * k.w * dy_df + k.a * l1 - k.b * lam2[jj];
                lam2[jj] = l1;
                lam1[jj] = lam_t;
                let d = ds[jj];
                if t >= d {
                    gs[(t - d) * bn + j0 + jj] += gs_t;
                }
            }
        }
        for (jj, g) in acc.iter().enumerate() {
            for (r, v) in g.iter().enumerate() {
                gp[r * bn + j0 + jj] = *v;
            }
        }
    }
    (gs, gp)
}

/// The fused twitch scan as a burn backend extension.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait TwitchScanOps: Backend {
    /// `s: [T, B, N]`, `coef: [7, B, N]` → force `[T, B, 1]`.
    fn twitch_scan(
        s: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: TwitchScanSpec,
    ) -> FloatTensor<Self>;
}

/// The spike trace on the host in its own precision (f32 traces are not widened to f64: at
/// `[T, B, N]` = 50,000 × 800 that copy alone cost ≈0.7 s of page faults).
#[derive(Clone)]
enum HostTrace {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Host copy of a trace in its own precision (other float dtypes are widened to f64).
fn read_trace<B: Backend>(t: FloatTensor<B>) -> (HostTrace, DType) {
    let data = try_read_sync(B::float_into_data(t))
        .expect("CPU backend reads synchronously")
        .expect("tensor read");
    let dtype = data.dtype();
    let v = match dtype {
        DType::F32 => HostTrace::F32(data.into_vec::<f32>().expect("f32 data")),
        DType::F64 => HostTrace::F64(data.into_vec::<f64>().expect("f64 data")),
        _ => HostTrace::F64(
            data.convert::<f64>()
                .into_vec::<f64>()
                .expect("convertible to f64"),
        ),
    };
    (v, dtype)
}

/// `forward_host` on a trace of either precision.
fn forward_trace(
    s: &HostTrace,
    p: &[f64],
    dims: (usize, usize, usize),
    spec: &TwitchScanSpec,
) -> Vec<f64> {
    match s {
        HostTrace::F32(v) => forward_host(v, p, dims, spec),
        HostTrace::F64(v) => forward_host(v, p, dims, spec),
    }
}

/// Host copy of a primitive as f64, with its original dtype (small tensors: coefficients and the
/// incoming force gradient).
fn read_f64<B: Backend>(t: FloatTensor<B>) -> (Vec<f64>, DType) {
    let (v, dtype) = read_trace::<B>(t);
    let v = match v {
        HostTrace::F32(v) => v.into_iter().map(f64::from).collect(),
        HostTrace::F64(v) => v,
    };
    (v, dtype)
}

fn write<B: Backend>(
    v: Vec<f64>,
    shape: Vec<usize>,
    dtype: DType,
    device: &burn::backend::tensor::Device<B>,
) -> FloatTensor<B> {
    let data = match dtype {
        DType::F64 => TensorData::new(v, shape),
        _ => TensorData::new(v.into_iter().map(|x| x as f32).collect::<Vec<_>>(), shape),
    };
    B::float_from_data(data, device)
}

fn dims3(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2])
}

fn forward_only<B: Backend>(
    s: FloatTensor<B>,
    coef: FloatTensor<B>,
    spec: &TwitchScanSpec,
) -> FloatTensor<B> {
    let device = s.device();
    let dims = dims3(&s.shape());
    let (sv, dtype) = read_trace::<B>(s);
    let (pv, _) = read_f64::<B>(coef);
    let out = forward_trace(&sv, &pv, dims, spec);
    write::<B>(out, vec![dims.0, dims.1, 1], dtype, &device)
}

impl TwitchScanOps for Flex {
    fn twitch_scan(
        s: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: TwitchScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(s, coef, &spec)
    }
}
impl TwitchScanOps for NdArray {
    fn twitch_scan(
        s: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: TwitchScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(s, coef, &spec)
    }
}

/// What the adjoint keeps: the input trace and the coefficients (host, f64).
#[derive(Clone)]
struct ScanState {
    s: HostTrace,
    p: Vec<f64>,
    dims: (usize, usize, usize),
    dtype: DType,
    spec: TwitchScanSpec,
}

impl std::fmt::Debug for ScanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TwitchScanState {{ dims: {:?}, spec: {:?} }}",
            self.dims, self.spec
        )
    }
}

#[derive(Debug)]
struct TwitchScanBackward;

impl<B: Backend> Backward<B, 2> for TwitchScanBackward {
    type State = ScanState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node_s, node_p] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        let device = g.device();
        let (gout, _) = read_f64::<B>(g);
        let st = ops.state;
        let (t_steps, b, n) = st.dims;
        let (gs, gp) = match &st.s {
            HostTrace::F32(v) => adjoint_host(v, &st.p, &gout, st.dims, &st.spec),
            HostTrace::F64(v) => adjoint_host(v, &st.p, &gout, st.dims, &st.spec),
        };
        if let Some(node) = node_s {
            grads.register::<B>(
                node.id,
                write::<B>(gs, vec![t_steps, b, n], st.dtype, &device),
            );
        }
        if let Some(node) = node_p {
            grads.register::<B>(
                node.id,
                write::<B>(gp, vec![N_COEF, b, n], st.dtype, &device),
            );
        }
    }
}

impl<B: TwitchScanOps, C: CheckpointStrategy> TwitchScanOps for Autodiff<B, C> {
    fn twitch_scan(
        s: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: TwitchScanSpec,
    ) -> FloatTensor<Self> {
        let (s_prim, s_guard) = s.into_parts();
        let (p_prim, p_guard) = coef.into_parts();
        match TwitchScanBackward
            .prepare::<C>([s_guard, p_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let device = s_prim.device();
                let dims = dims3(&s_prim.shape());
                let (sv, dtype) = read_trace::<B>(s_prim);
                let (pv, _) = read_f64::<B>(p_prim);
                let out = forward_trace(&sv, &pv, dims, &spec);
                let out = write::<B>(out, vec![dims.0, dims.1, 1], dtype, &device);
                prep.finish(
                    ScanState {
                        s: sv,
                        p: pv,
                        dims,
                        dtype,
                        spec,
                    },
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::twitch_scan(s_prim, p_prim, spec)),
        }
    }
}

/// Whether the fused op runs on this device (flex or ndarray, with or without autodiff).
pub fn fused_supported(device: &burn::tensor::Device) -> bool {
    crate::kernel::ctx::host_ops_supported(device)
}

/// The fused twitch-force scan (module docs): spikes `s [T, B, N]`, coefficients
/// `coef [7, B, N]` → force `[T, B, 1]` (N). Differentiable w.r.t. both through the
/// hand-written adjoint. Errors: shape mismatch, mixed dtypes, unsupported backend.
pub fn twitch_scan(s: Tensor<3>, coef: Tensor<3>, spec: &TwitchScanSpec) -> Result<Tensor<3>> {
    let [_, b, n] = s.dims();
    let expected = [N_COEF, b, n];
    if coef.dims() != expected {
        return Err(Error::shape(
            "twitch coefficients",
            format!("{expected:?}"),
            format!("{:?}", coef.dims()),
        ));
    }
    if !spec.delays.is_empty() && spec.delays.len() != n {
        return Err(Error::shape("delay_steps", n, spec.delays.len()));
    }
    if !fused_supported(&s.device()) {
        return Err(Error::config(
            "path",
            "the fused twitch scan runs on the flex and ndarray CPU backends only; use the tape path",
        ));
    }
    if s.dtype() != coef.dtype() {
        return Err(Error::config(
            "twitch_scan",
            "spikes and coefficients must have the same float dtype",
        ));
    }
    Ok(Tensor::from_dispatch(
        <Dispatch as TwitchScanOps>::twitch_scan(
            s.into_dispatch(),
            coef.into_dispatch(),
            spec.clone(),
        ),
    ))
}
