//! The burn op: backend extension, forward on flex/ndarray, the autodiff backward and the
//! public [`nerlab_scan`] entry point.

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

use crate::error::{Error, Result};
use crate::neuron::spike::SpikeMode;

use super::adjoint::adjoint_host;
use super::arith::Real;
use super::forward::{Konst, Problem, forward_host};
use super::{N_COEF, NerlabScanSpec};

/// The fused NERLab scan as a burn backend extension.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait NerlabScanOps: Backend {
    /// `g: [T, B, N]`, `coef: [N_COEF, B, N]` → `[T, B, N]` (or `[T, B, 2N]` with voltage).
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self>;
}

fn read<B: Backend>(t: FloatTensor<B>) -> TensorData {
    try_read_sync(B::float_into_data(t))
        .expect("CPU backend reads synchronously")
        .expect("tensor read")
}

fn slice_of<R: Real>(d: &TensorData) -> &[R] {
    d.as_slice::<R>().expect("dtype checked by the caller")
}

/// Dispatches on (precision, arithmetic, spike mode).
macro_rules! dispatch {
    ($r:ty, $spec:expr, $f:ident, $($arg:expr),*) => {
        match ($spec.exact, $spec.mode == SpikeMode::Rate) {
            (false, false) => $f::<$r, true, false>($($arg),*),
            (false, true) => $f::<$r, true, true>($($arg),*),
            (true, false) => $f::<$r, false, false>($($arg),*),
            (true, true) => $f::<$r, false, true>($($arg),*),
        }
    };
}

fn problem<'a, R: Real>(
    g: &'a [R],
    coef: &'a [R],
    dims: (usize, usize, usize),
    spec: &'a NerlabScanSpec,
) -> Problem<'a, R> {
    let (t_steps, b, n) = dims;
    Problem {
        g,
        coef,
        t_steps,
        bn: b * n,
        n,
        k: Konst::new(spec),
        v_init: spec.v_init_mv,
        spec,
    }
}

/// Forward on host data of dtype R → (output data, checkpoints if `keep`).
fn forward_typed<R: Real>(
    g: &TensorData,
    coef: &TensorData,
    dims: (usize, usize, usize),
    spec: &NerlabScanSpec,
    keep: bool,
) -> (TensorData, Checkpoints) {
    let p = problem::<R>(slice_of(g), slice_of(coef), dims, spec);
    let (out, ck) = dispatch!(R, spec, forward_host, &p, keep);
    let shape = vec![dims.0, dims.1, p.out_width()];
    (TensorData::new(out, shape), Checkpoints::wrap(ck))
}

fn forward_data(
    g: &TensorData,
    coef: &TensorData,
    dims: (usize, usize, usize),
    spec: &NerlabScanSpec,
    keep: bool,
) -> (TensorData, Checkpoints) {
    match g.dtype() {
        DType::F64 => forward_typed::<f64>(g, coef, dims, spec, keep),
        _ => forward_typed::<f32>(g, coef, dims, spec, keep),
    }
}

/// The stored states of the adjoint, per block.
#[derive(Clone)]
enum Checkpoints {
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
}

impl Checkpoints {
    fn wrap<R: Real>(v: Vec<Vec<R>>) -> Self {
        let any: Box<dyn std::any::Any> = Box::new(v);
        match any.downcast::<Vec<Vec<f64>>>() {
            Ok(v) => Checkpoints::F64(*v),
            Err(any) => Checkpoints::F32(
                *any.downcast::<Vec<Vec<f32>>>()
                    .expect("f32 or f64 checkpoints"),
            ),
        }
    }
}

fn dims3(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2])
}

fn forward_only<B: Backend>(
    g: FloatTensor<B>,
    coef: FloatTensor<B>,
    spec: &NerlabScanSpec,
) -> FloatTensor<B> {
    let device = g.device();
    let dims = dims3(&g.shape());
    let gd = read::<B>(g);
    let cd = read::<B>(coef);
    let (out, _) = forward_data(&gd, &cd, dims, spec, false);
    B::float_from_data(out, &device)
}

impl NerlabScanOps for Flex {
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(g, coef, &spec)
    }
}

impl NerlabScanOps for NdArray {
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(g, coef, &spec)
    }
}

/// What the adjoint keeps: the input trace, the coefficients and the checkpoints.
#[derive(Clone)]
struct ScanState {
    g: TensorData,
    coef: TensorData,
    ckpts: Checkpoints,
    dims: (usize, usize, usize),
    spec: NerlabScanSpec,
}

impl std::fmt::Debug for ScanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NerlabScanState {{ dims: {:?} }}", self.dims)
    }
}

/// Adjoint on host data of dtype R → (`∂L/∂g` data if wanted, `∂L/∂coef` data).
fn adjoint_typed<R: Real>(
    st: &ScanState,
    ck: &[Vec<R>],
    gout: TensorData,
    want_g: bool,
) -> (Option<TensorData>, TensorData) {
    let p = problem::<R>(slice_of(&st.g), slice_of(&st.coef), st.dims, &st.spec);
    let gout = if gout.dtype() == st.g.dtype() {
        gout
    } else {
        gout.convert::<R>()
    };
    let (gg, gc) = dispatch!(R, st.spec, adjoint_host, &p, ck, slice_of(&gout), want_g);
    let (t_steps, b, n) = st.dims;
    let gc: Vec<R> = gc.into_iter().map(R::c).collect();
    (
        want_g.then(|| TensorData::new(gg, vec![t_steps, b, n])),
        TensorData::new(gc, vec![N_COEF, b, n]),
    )
}

#[derive(Debug)]
struct NerlabScanBackward;

impl<B: Backend> Backward<B, 2> for NerlabScanBackward {
    type State = ScanState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node_g, node_c] = ops.parents;
        let gout = grads.consume::<B>(&ops.node);
        let device = gout.device();
        let gout = read::<B>(gout);
        let st = ops.state;
        let want_g = node_g.is_some();
        let (gg, gc) = match &st.ckpts {
            Checkpoints::F64(ck) => adjoint_typed::<f64>(&st, ck, gout, want_g),
            Checkpoints::F32(ck) => adjoint_typed::<f32>(&st, ck, gout, want_g),
        };
        if let (Some(node), Some(gg)) = (node_g, gg) {
            grads.register::<B>(node.id, B::float_from_data(gg, &device));
        }
        if let Some(node) = node_c {
            grads.register::<B>(node.id, B::float_from_data(gc, &device));
        }
    }
}

impl<B: NerlabScanOps, C: CheckpointStrategy> NerlabScanOps for Autodiff<B, C> {
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self> {
        let (g_prim, g_guard) = g.into_parts();
        let (c_prim, c_guard) = coef.into_parts();
        match NerlabScanBackward
            .prepare::<C>([g_guard, c_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let device = g_prim.device();
                let dims = dims3(&g_prim.shape());
                let gd = read::<B>(g_prim);
                let cd = read::<B>(c_prim);
                let (out, ckpts) = forward_data(&gd, &cd, dims, &spec, true);
                let out = B::float_from_data(out, &device);
                prep.finish(
                    ScanState {
                        g: gd,
                        coef: cd,
                        ckpts,
                        dims,
                        spec,
                    },
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::nerlab_scan(g_prim, c_prim, spec)),
        }
    }
}

/// Whether the fused op runs on this device (flex or ndarray, with or without autodiff).
pub fn fused_supported(device: &burn::tensor::Device) -> bool {
    crate::kernel::ctx::host_ops_supported(device)
}

/// The fused NERLab pool scan (module docs): synaptic conductance `g [T, B, N]` (unit of
/// `spec.g_scale`, siemens by default), coefficients `coef [N_COEF, B, N]` (rows of
/// [`row`](super::row)) → spikes `[T, B, N]`, or `[T, B, 2N]` = spikes then soma potential (mV)
/// with `spec.record_voltage`. Differentiable w.r.t. both inputs through the hand-written adjoint.
///
/// Invalid conductances (negative, non-finite) and non-finite states do not stop the loop; they
/// are reported through `spec.fault` ([`NerlabScanSpec::take_fault`]). Errors: shape mismatch,
/// mixed dtypes, unsupported backend, zero-sized settings.
pub fn nerlab_scan(g: Tensor<3>, coef: Tensor<3>, spec: &NerlabScanSpec) -> Result<Tensor<3>> {
    let [t, b, n] = g.dims();
    let expected = [N_COEF, b, n];
    if coef.dims() != expected {
        return Err(Error::shape(
            "nerlab coefficients",
            format!("{expected:?}"),
            format!("{:?}", coef.dims()),
        ));
    }
    if t == 0 || b == 0 || n == 0 {
        return Err(Error::shape(
            "syn_conductance trace",
            "[n_steps >= 1, batch >= 1, n_units >= 1]",
            format!("{:?}", [t, b, n]),
        ));
    }
    if spec.checkpoint_every == 0 || spec.threads == 0 || spec.check_every == 0 {
        return Err(Error::invalid(
            "checkpoint_every / threads / check_every",
            format!(
                "{} / {} / {}",
                spec.checkpoint_every, spec.threads, spec.check_every
            ),
            ">= 1",
        ));
    }
    if !fused_supported(&g.device()) {
        return Err(Error::config(
            "path",
            "the fused NERLab scan runs on the flex and ndarray CPU backends only; use the tape path",
        ));
    }
    if g.dtype() != coef.dtype() || !matches!(g.dtype(), DType::F32 | DType::F64) {
        return Err(Error::config(
            "nerlab_scan",
            "conductance and coefficients must have the same float dtype (f32 or f64)",
        ));
    }
    Ok(Tensor::from_dispatch(
        <Dispatch as NerlabScanOps>::nerlab_scan(
            g.into_dispatch(),
            coef.into_dispatch(),
            spec.clone(),
        ),
    ))
}
