//! Fused whole-trace ops of the drive (burn `extension` custom ops with hand-written adjoints):
//!
//! - [`hazard_scan`]: the generators' hazard accumulator over all steps (forward = host loop,
//!   bit-identical to the tape steps; backward = the pathwise straight-through adjoint
//!   `λ_t = g_t·β/(1+β|m_t|)² + (1 − H_t)·λ_{t+1}`, `∂L/∂r_t = dt·Σ_i λ_{t,i}`).
//! - [`syn_iir`]: the synaptic conductance filter over all steps, `g_t = a·g_{t−1} + w·x_t`
//!   (single exponential) or `A_t = a1·A_{t−1} + w·x_t`, `B_t = a2·B_{t−1} + w·x_t`,
//!   `g_t = B_t − A_t` (Exp2Syn), with adjoints for x and w (f64 accumulators).
//!
//! Both run on the host over the tensor data (CPU backends: flex, ndarray, and their autodiff).

#![allow(deprecated)] // burn 0.22 marks its ndarray backend deprecated; we still support it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, NdArray, backend_extension, tensor::FloatTensor,
};
use burn::tensor::Tensor;

use super::host::{HostFloat, from_host, to_host};
use crate::neuron::spike::surrogate_slope;

/// Configuration of [`hazard_scan`].
#[derive(Clone, Debug)]
pub struct HazardCfg {
    /// Threshold streams `[rows·n, k1]` (last column a sentinel).
    pub streams: Arc<Vec<f64>>,
    /// Neurons per row.
    pub n: usize,
    /// Stream length per neuron (sentinel included).
    pub k1: usize,
    /// 1 (shared by the batch) or `batch`.
    pub rows: usize,
    /// Batch size.
    pub batch: usize,
    /// Time step (s).
    pub dt_s: f64,
    /// Surrogate sharpness β.
    pub beta: f64,
    /// Set when a neuron reached its sentinel threshold.
    pub exhausted: Arc<AtomicBool>,
}

/// Synaptic filter kinetics of [`syn_iir`] (per-step decay factors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IirKind {
    /// `g_t = a·g_{t−1} + w·x_t`.
    Single {
        /// e^{−dt/τ}.
        a: f64,
    },
    /// `g_t = B_t − A_t` with decays a1 = e^{−dt/τ_rise}, a2 = e^{−dt/τ_decay}.
    Exp2 {
        /// Rise decay factor.
        a1: f64,
        /// Decay factor.
        a2: f64,
    },
}

/// Configuration of [`syn_iir`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IirCfg {
    /// Kinetics.
    pub kind: IirKind,
}

#[backend_extension(Flex, NdArray, Autodiff)]
pub trait DriveOps: Backend {
    /// rate `[T, B]` (Hz, already clipped at 0) → spikes `[T, B, n]`.
    fn hazard_scan(rate: FloatTensor<Self>, cfg: HazardCfg) -> FloatTensor<Self>;
    /// x `[T, B, M]`, w `[Bw, Mw]` (Bw ∈ {1, B}, Mw ∈ {1, M}) → g `[T, B, M]`.
    fn syn_iir(x: FloatTensor<Self>, w: FloatTensor<Self>, cfg: IirCfg) -> FloatTensor<Self>;
}

// ------------------------------------------------------------------------------------------------
// hazard accumulator

fn hazard_forward<F: HostFloat>(
    rate: &[F],
    t_steps: usize,
    cfg: &HazardCfg,
    keep_m: bool,
) -> (Vec<F>, Vec<F>) {
    let (b, n, k1) = (cfg.batch, cfg.n, cfg.k1);
    let bn = b * n;
    let dt = F::from_f64(cfg.dt_s);
    let base = |j: usize| {
        let (bb, i) = (j / n, j % n);
        let row = if cfg.rows == 1 { 0 } else { bb };
        (row * n + i) * k1
    };
    let bases: Vec<usize> = (0..bn).map(base).collect();
    let mut yi = vec![F::zero(); bn];
    let mut k = vec![0usize; bn];
    let mut th: Vec<F> = (0..bn)
        .map(|j| F::from_f64(cfg.streams[bases[j]]))
        .collect();
    let mut spikes = vec![F::zero(); t_steps * bn];
    let mut ms = if keep_m {
        vec![F::zero(); t_steps * bn]
    } else {
        Vec::new()
    };
    for t in 0..t_steps {
        for bb in 0..b {
            let rdt = rate[t * b + bb] * dt;
            for i in 0..n {
                let j = bb * n + i;
                let y = yi[j] + rdt;
                let m = y - th[j];
                if keep_m {
                    ms[t * bn + j] = m;
                }
                if m >= F::zero() {
                    spikes[t * bn + j] = F::one();
                    yi[j] = F::zero();
                    k[j] += 1;
                    th[j] = F::from_f64(cfg.streams[bases[j] + k[j].min(k1 - 1)]);
                } else {
                    yi[j] = y;
                }
            }
        }
    }
    if k.iter().any(|&kk| kk >= k1 - 1) {
        cfg.exhausted.store(true, Ordering::Relaxed);
    }
    (spikes, ms)
}

fn hazard_backward<F: HostFloat>(
    gs: &[f64],
    ms: &[F],
    t_steps: usize,
    cfg: &HazardCfg,
) -> Vec<f64> {
    let (b, n) = (cfg.batch, cfg.n);
    let bn = b * n;
    let mut lam = vec![0.0f64; bn];
    let mut gr = vec![0.0f64; t_steps * b];
    for t in (0..t_steps).rev() {
        for bb in 0..b {
            let mut acc = 0.0;
            for i in 0..n {
                let j = bb * n + i;
                let m = ms[t * bn + j].to_f64();
                let carry = if m >= 0.0 { 0.0 } else { lam[j] };
                let l = gs[t * bn + j] * surrogate_slope(m, cfg.beta) + carry;
                lam[j] = l;
                acc += l;
            }
            gr[t * b + bb] = acc * cfg.dt_s;
        }
    }
    gr
}

fn hazard_inner<B: Backend>(rate: FloatTensor<B>, cfg: &HazardCfg) -> FloatTensor<B> {
    let h = to_host::<B>(rate);
    let t_steps = h.shape[0];
    let shape = vec![t_steps, cfg.batch, cfg.n];
    if h.is_f64() {
        let (s, _) = hazard_forward::<f64>(&h.view(), t_steps, cfg, false);
        from_host::<B, f64>(s, shape, &h.device)
    } else {
        let (s, _) = hazard_forward::<f32>(&h.view(), t_steps, cfg, false);
        from_host::<B, f32>(s, shape, &h.device)
    }
}

#[derive(Debug, Clone)]
enum MTrace {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

#[derive(Debug, Clone)]
struct HazardState {
    ms: MTrace,
    t_steps: usize,
    cfg: HazardCfg,
}

#[derive(Debug)]
struct HazardBackward;

impl<B: Backend> Backward<B, 1> for HazardBackward {
    type State = HazardState;
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        let Some(node) = node else { return };
        let h = to_host::<B>(g);
        let gs: Vec<f64> = h.values();
        let st = ops.state;
        let gr = match &st.ms {
            MTrace::F32(m) => hazard_backward::<f32>(&gs, m, st.t_steps, &st.cfg),
            MTrace::F64(m) => hazard_backward::<f64>(&gs, m, st.t_steps, &st.cfg),
        };
        let shape = vec![st.t_steps, st.cfg.batch];
        let prim = if h.is_f64() {
            from_host::<B, f64>(gr, shape, &h.device)
        } else {
            from_host::<B, f32>(gr.into_iter().map(|v| v as f32).collect(), shape, &h.device)
        };
        grads.register::<B>(node.id, prim);
    }
}

// ------------------------------------------------------------------------------------------------
// synaptic IIR

fn widx(bw: usize, mw: usize, bb: usize, j: usize) -> usize {
    let r = if bw == 1 { 0 } else { bb };
    let c = if mw == 1 { 0 } else { j };
    r * mw + c
}

fn iir_forward<F: HostFloat>(
    x: &[F],
    w: &[F],
    dims: [usize; 3],
    wdims: [usize; 2],
    kind: IirKind,
) -> Vec<F> {
    let [t_steps, b, m] = dims;
    let [bw, mw] = wdims;
    let bm = b * m;
    let mut g = vec![F::zero(); t_steps * bm];
    let wv: Vec<F> = (0..bm).map(|q| w[widx(bw, mw, q / m, q % m)]).collect();
    match kind {
        IirKind::Single { a } => {
            let a = F::from_f64(a);
            let mut s = vec![F::zero(); bm];
            for t in 0..t_steps {
                let off = t * bm;
                for q in 0..bm {
                    s[q] = s[q] * a + wv[q] * x[off + q];
                    g[off + q] = s[q];
                }
            }
        }
        IirKind::Exp2 { a1, a2 } => {
            let (a1, a2) = (F::from_f64(a1), F::from_f64(a2));
            let mut sa = vec![F::zero(); bm];
            let mut sb = vec![F::zero(); bm];
            for t in 0..t_steps {
                let off = t * bm;
                for q in 0..bm {
                    let term = wv[q] * x[off + q];
                    sa[q] = sa[q] * a1 + term;
                    sb[q] = sb[q] * a2 + term;
                    g[off + q] = sb[q] - sa[q];
                }
            }
        }
    }
    g
}

/// Returns (gx [T,B,M] if wanted, gw [Bw,Mw] if wanted).
fn iir_backward(
    gg: &[f64],
    x: Option<&[f64]>,
    w: Option<&[f64]>,
    dims: [usize; 3],
    wdims: [usize; 2],
    kind: IirKind,
) -> (Option<Vec<f64>>, Option<Vec<f64>>) {
    let [t_steps, b, m] = dims;
    let [bw, mw] = wdims;
    let bm = b * m;
    let mut gx = w.map(|_| vec![0.0; t_steps * bm]);
    let mut gw = x.map(|_| vec![0.0; bw * mw]);
    let wi: Vec<usize> = (0..bm).map(|q| widx(bw, mw, q / m, q % m)).collect();
    let (a1, a2, single) = match kind {
        IirKind::Single { a } => (0.0, a, true),
        IirKind::Exp2 { a1, a2 } => (a1, a2, false),
    };
    let mut la = vec![0.0f64; bm];
    let mut lb = vec![0.0f64; bm];
    for t in (0..t_steps).rev() {
        let off = t * bm;
        for q in 0..bm {
            let gq = gg[off + q];
            lb[q] = gq + a2 * lb[q];
            let d = if single {
                lb[q]
            } else {
                la[q] = -gq + a1 * la[q];
                la[q] + lb[q]
            };
            if let (Some(gx), Some(w)) = (gx.as_mut(), w) {
                gx[off + q] = d * w[wi[q]];
            }
            if let (Some(gw), Some(x)) = (gw.as_mut(), x) {
                gw[wi[q]] += d * x[off + q];
            }
        }
    }
    (gx, gw)
}

fn iir_inner<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>, cfg: &IirCfg) -> FloatTensor<B> {
    let hx = to_host::<B>(x);
    let hw = to_host::<B>(w);
    let dims = [hx.shape[0], hx.shape[1], hx.shape[2]];
    let wdims = [hw.shape[0], hw.shape[1]];
    if hx.is_f64() {
        let g = iir_forward::<f64>(&hx.view(), &hw.view(), dims, wdims, cfg.kind);
        from_host::<B, f64>(g, hx.shape, &hx.device)
    } else {
        let g = iir_forward::<f32>(&hx.view(), &hw.view(), dims, wdims, cfg.kind);
        from_host::<B, f32>(g, hx.shape, &hx.device)
    }
}

#[derive(Debug, Clone)]
struct IirState {
    x: Option<Vec<f64>>,
    w: Option<Vec<f64>>,
    dims: [usize; 3],
    wdims: [usize; 2],
    kind: IirKind,
}

#[derive(Debug)]
struct IirBackward;

impl<B: Backend> Backward<B, 2> for IirBackward {
    type State = IirState;
    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        let h = to_host::<B>(g);
        let gg: Vec<f64> = h.values();
        let st = ops.state;
        let (gx, gw) = iir_backward(
            &gg,
            st.x.as_deref(),
            st.w.as_deref(),
            st.dims,
            st.wdims,
            st.kind,
        );
        let f64_out = h.is_f64();
        let mk = |v: Vec<f64>, shape: Vec<usize>| {
            if f64_out {
                from_host::<B, f64>(v, shape, &h.device)
            } else {
                from_host::<B, f32>(v.into_iter().map(|x| x as f32).collect(), shape, &h.device)
            }
        };
        if let (Some(node), Some(gx)) = (node_x, gx) {
            grads.register::<B>(node.id, mk(gx, st.dims.to_vec()));
        }
        if let (Some(node), Some(gw)) = (node_w, gw) {
            grads.register::<B>(node.id, mk(gw, st.wdims.to_vec()));
        }
    }
}

// ------------------------------------------------------------------------------------------------
// backends

impl DriveOps for Flex {
    fn hazard_scan(rate: FloatTensor<Self>, cfg: HazardCfg) -> FloatTensor<Self> {
        hazard_inner::<Self>(rate, &cfg)
    }
    fn syn_iir(x: FloatTensor<Self>, w: FloatTensor<Self>, cfg: IirCfg) -> FloatTensor<Self> {
        iir_inner::<Self>(x, w, &cfg)
    }
}

impl DriveOps for NdArray {
    fn hazard_scan(rate: FloatTensor<Self>, cfg: HazardCfg) -> FloatTensor<Self> {
        hazard_inner::<Self>(rate, &cfg)
    }
    fn syn_iir(x: FloatTensor<Self>, w: FloatTensor<Self>, cfg: IirCfg) -> FloatTensor<Self> {
        iir_inner::<Self>(x, w, &cfg)
    }
}

impl<B: DriveOps, C: CheckpointStrategy> DriveOps for Autodiff<B, C> {
    fn hazard_scan(rate: FloatTensor<Self>, cfg: HazardCfg) -> FloatTensor<Self> {
        let (r_prim, r_guard) = rate.into_parts();
        match HazardBackward
            .prepare::<C>([r_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let h = to_host::<B>(r_prim);
                let t_steps = h.shape[0];
                let shape = vec![t_steps, cfg.batch, cfg.n];
                let (out, ms) = if h.is_f64() {
                    let (s, m) = hazard_forward::<f64>(&h.view(), t_steps, &cfg, true);
                    (from_host::<B, f64>(s, shape, &h.device), MTrace::F64(m))
                } else {
                    let (s, m) = hazard_forward::<f32>(&h.view(), t_steps, &cfg, true);
                    (from_host::<B, f32>(s, shape, &h.device), MTrace::F32(m))
                };
                prep.finish(HazardState { ms, t_steps, cfg }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::hazard_scan(r_prim, cfg)),
        }
    }

    fn syn_iir(x: FloatTensor<Self>, w: FloatTensor<Self>, cfg: IirCfg) -> FloatTensor<Self> {
        let x_tracked = x.is_tracked();
        let w_tracked = w.is_tracked();
        let (x_prim, x_guard) = x.into_parts();
        let (w_prim, w_guard) = w.into_parts();
        match IirBackward
            .prepare::<C>([x_guard, w_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let hx = to_host::<B>(x_prim);
                let hw = to_host::<B>(w_prim);
                let dims = [hx.shape[0], hx.shape[1], hx.shape[2]];
                let wdims = [hw.shape[0], hw.shape[1]];
                let out = if hx.is_f64() {
                    let g = iir_forward::<f64>(&hx.view(), &hw.view(), dims, wdims, cfg.kind);
                    from_host::<B, f64>(g, hx.shape.clone(), &hx.device)
                } else {
                    let g = iir_forward::<f32>(&hx.view(), &hw.view(), dims, wdims, cfg.kind);
                    from_host::<B, f32>(g, hx.shape.clone(), &hx.device)
                };
                let state = IirState {
                    x: w_tracked.then(|| hx.values::<f64>()),
                    w: x_tracked.then(|| hw.values::<f64>()),
                    dims,
                    wdims,
                    kind: cfg.kind,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::syn_iir(x_prim, w_prim, cfg)),
        }
    }
}

/// Fused hazard accumulator: rate `[T, B]` (Hz, ≥ 0) → spikes `[T, B, n]` (see module docs).
pub fn hazard_scan(rate: Tensor<2>, cfg: HazardCfg) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as DriveOps>::hazard_scan(
        rate.into_dispatch(),
        cfg,
    ))
}

/// Fused synaptic filter: x `[T, B, M]`, w `[Bw, Mw]` → g `[T, B, M]` (see module docs).
pub fn syn_iir(x: Tensor<3>, w: Tensor<2>, cfg: IirCfg) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as DriveOps>::syn_iir(
        x.into_dispatch(),
        w.into_dispatch(),
        cfg,
    ))
}
