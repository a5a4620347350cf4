#![allow(deprecated)] // burn 0.22 marks its NdArray backend deprecated; myodiff keeps it selectable

//! The fused execution path of the fast motor-neuron pool ([`crate::neuron::lif`]): ONE custom burn
//! op runs the whole LIF+AHP scan over all steps in a tight host loop and supplies a hand-written
//! adjoint (backpropagation through time), registered with burn's autodiff so it composes with
//! ordinary tensor ops and `loss.backward()`.
//!
//! Op: `lif_scan(x [T, B, N], coef [P, B, N]) -> spikes [T, B, N]` (or `[2T, B, N]` = spikes then
//! membrane potentials when `record_v`), where `x` is the synaptic conductance (S) or injected
//! current (A) per step and `coef` the stacked per-unit coefficients of
//! [`host::Coef`] (built differentiably by [`crate::neuron::lif::LifParams::coefficients`]).
//! Per element and step (identical op order to the tape step [`crate::neuron::lif::lif_step`]):
//!
//! ```text
//! i  = (g·(E_syn − v) [or x] + I_bias) − a                     (A)
//! v1 = v + α·(R·i − (v − v_rest))                              (V), α = dt/τ_m
//! m  = (v1 − θ)·inv_scale ;  s = S(m)   (Heaviside, or σ(βm) in Rate mode)
//! v' = v1 − s·(v1 − v_reset) ;  a' = k·a + s·ΔI_ahp            k = exp(−dt/τ_ahp)
//! ```
//!
//! Adjoint: λ_v, λ_a (f64) swept backwards; parameter gradients accumulated per element in f64;
//! the spike slope is [`crate::neuron::spike::surrogate_slope`] in Surrogate mode, `βσ(1−σ)` in
//! Rate mode and 0 in Hard mode (as on the tape). Memory: the op keeps the input trace and the
//! state every `checkpoint_every` steps; the backward pass recomputes each segment's states (one
//! extra forward) and writes `dL/dx` into the incoming gradient buffer in place.
//!
//! Backends: `Flex`, `NdArray` and `Autodiff` over them (others, e.g. wgpu, are rejected by
//! [`lif_scan`] with a typed error; use the tape path there).

pub mod host;
pub mod reference;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

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

use self::host::{N_COEF, Real};
use crate::error::{Error, Result};
use crate::neuron::SpikeMode;
use crate::neuron::lif::LifInput;

/// A problem met inside the scan (reported through [`LifScanSpec::report`], turned into a typed
/// [`Error`] by [`lif_scan`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ScanIssue {
    /// NaN or ±∞ in the input trace.
    NonFiniteInput {
        /// Step index.
        step: usize,
        /// Batch element.
        batch: usize,
        /// Unit.
        unit: usize,
        /// The value.
        value: f64,
    },
    /// A negative synaptic conductance.
    NegativeConductance {
        /// Step index.
        step: usize,
        /// Batch element.
        batch: usize,
        /// Unit.
        unit: usize,
        /// The value (S).
        value: f64,
    },
    /// Explicit Euler factor `dt·(1 + R·g)/τ_m ≥ 1` (the step overshoots the reversal potential).
    Unstable {
        /// Step index.
        step: usize,
        /// Batch element.
        batch: usize,
        /// Unit.
        unit: usize,
        /// `dt·(1 + R·g)/τ_m`.
        factor: f64,
        /// Time step (s).
        dt_s: f64,
    },
    /// The membrane potential became non-finite.
    NonFiniteState {
        /// Step index.
        step: usize,
        /// Batch element.
        batch: usize,
        /// Unit.
        unit: usize,
    },
}

impl ScanIssue {
    /// The step at which the issue occurred.
    pub fn step(&self) -> usize {
        match self {
            ScanIssue::NonFiniteInput { step, .. }
            | ScanIssue::NegativeConductance { step, .. }
            | ScanIssue::Unstable { step, .. }
            | ScanIssue::NonFiniteState { step, .. } => *step,
        }
    }

    /// The typed error for this issue (`input` names the input buffer).
    pub fn into_error(self, input: &str) -> Error {
        match self {
            ScanIssue::NonFiniteInput {
                step,
                batch,
                unit,
                value,
            } => Error::invalid(
                format!("{input}[step {step}, batch {batch}, unit {unit}]"),
                value,
                "a finite number",
            ),
            ScanIssue::NegativeConductance {
                step,
                batch,
                unit,
                value,
            } => Error::invalid(
                format!("{input}[step {step}, batch {batch}, unit {unit}]"),
                value,
                "a finite conductance >= 0 S",
            ),
            ScanIssue::Unstable {
                step,
                batch,
                unit,
                factor,
                dt_s,
            } => Error::UnstableTimeStep {
                dt_s,
                model: "LIF motor-neuron pool".into(),
                reason: format!(
                    "dt·(1 + R·g)/τ_m = {factor:.4} >= 1 at step {step}, batch {batch}, unit {unit} (input `{input}` too large for this dt)"
                ),
            },
            ScanIssue::NonFiniteState { step, batch, unit } => Error::NonFinite {
                buffer: "lif membrane potential".into(),
                step,
                batch,
                unit,
            },
        }
    }
}

/// Static settings of one scan (ordinary, non-tensor arguments of the op).
#[derive(Clone, Debug)]
pub struct LifScanSpec {
    /// Spike mode (Hard and Surrogate give the same forward).
    pub mode: SpikeMode,
    /// Surrogate / rate sharpness β (per unit of m).
    pub beta: f64,
    /// `1 / spike_scale_v` (1/V): `m = (v1 − θ)·inv_scale`.
    pub inv_scale: f64,
    /// What the input trace is.
    pub input: LifInput,
    /// Also output the membrane potential trace (rows `T..2T` of the output).
    pub record_v: bool,
    /// Checkpoint interval (steps) for the adjoint's recomputation; 0 = `⌈√T⌉`.
    pub checkpoint_every: usize,
    /// No gradient through `s` into the state (reset, AHP); see [`crate::neuron::lif::LifConfig`].
    pub detach_spike_state: bool,
    /// Time step (s), for error messages.
    pub dt_s: f64,
    /// Where the scan reports the first problem it meets.
    pub report: Arc<Mutex<Option<ScanIssue>>>,
}

impl LifScanSpec {
    fn ck(&self, t_steps: usize) -> usize {
        if self.checkpoint_every == 0 {
            (t_steps as f64).sqrt().ceil().max(1.0) as usize
        } else {
            self.checkpoint_every
        }
    }
    fn set_issue(&self, issue: Option<ScanIssue>) {
        if let Some(i) = issue
            && let Ok(mut slot) = self.report.lock()
            && slot.is_none()
        {
            *slot = Some(i);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Extension trait: runtime routing to Flex / NdArray / Autodiff<_>.
// ---------------------------------------------------------------------------------------------
/// The fused LIF scan as a burn backend extension.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait LifScanOps: Backend {
    /// `x: [T, B, N]`, `coef: [P, B, N]` → spikes `[T, B, N]` (or `[2T, B, N]` with `record_v`).
    fn lif_scan(
        x: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: LifScanSpec,
    ) -> FloatTensor<Self>;
}

/// Host data of a primitive (zero-copy where the backend allows it).
fn read_data<B: Backend>(t: FloatTensor<B>) -> TensorData {
    let data = try_read_sync(B::float_into_data(t))
        .expect("CPU backend reads synchronously")
        .expect("tensor read");
    match data.dtype() {
        DType::F32 | DType::F64 => data,
        _ => data.convert::<f32>(),
    }
}

/// Borrowed (flex: zero-copy) or owned (ndarray: one copy) host view of a float primitive.
pub trait HostView: Backend {
    /// Contiguous f32 values of `t` (converted if stored in another float type).
    fn view_f32(t: &FloatTensor<Self>) -> Cow<'_, [f32]>;
    /// Contiguous f64 values of `t` (converted if stored in another float type).
    fn view_f64(t: &FloatTensor<Self>) -> Cow<'_, [f64]>;
}

fn owned<B: Backend, E: burn::tensor::Element>(t: &FloatTensor<B>) -> Vec<E> {
    read_data::<B>(t.clone())
        .convert::<E>()
        .into_vec::<E>()
        .expect("host data")
}

impl HostView for Flex {
    fn view_f32(t: &FloatTensor<Self>) -> Cow<'_, [f32]> {
        match t.as_slice::<f32>() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(owned::<Self, f32>(t)),
        }
    }
    fn view_f64(t: &FloatTensor<Self>) -> Cow<'_, [f64]> {
        match t.as_slice::<f64>() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(owned::<Self, f64>(t)),
        }
    }
}

impl HostView for NdArray {
    fn view_f32(t: &FloatTensor<Self>) -> Cow<'_, [f32]> {
        Cow::Owned(owned::<Self, f32>(t))
    }
    fn view_f64(t: &FloatTensor<Self>) -> Cow<'_, [f64]> {
        Cow::Owned(owned::<Self, f64>(t))
    }
}

fn dims3(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2])
}

/// Runs the host forward in the primitive's float type; returns the output data and checkpoints.
fn run_forward<B: HostView>(
    x: &FloatTensor<B>,
    coef: &FloatTensor<B>,
    spec: &LifScanSpec,
    keep_checkpoints: bool,
) -> (TensorData, Checkpoints) {
    let (t_steps, b, n) = dims3(&x.shape());
    let rows = if spec.record_v { 2 * t_steps } else { t_steps };
    let mut sp = spec.clone();
    sp.checkpoint_every = spec.ck(t_steps);
    if x.dtype() == DType::F64 {
        let f = host::forward::<f64>(
            &B::view_f64(x),
            &B::view_f64(coef),
            t_steps,
            b * n,
            n,
            &sp,
            keep_checkpoints,
        );
        spec.set_issue(f.issue);
        (
            TensorData::new(f.out, [rows, b, n]),
            Checkpoints::F64(f.checkpoints),
        )
    } else {
        let f = host::forward::<f32>(
            &B::view_f32(x),
            &B::view_f32(coef),
            t_steps,
            b * n,
            n,
            &sp,
            keep_checkpoints,
        );
        spec.set_issue(f.issue);
        (
            TensorData::new(f.out, [rows, b, n]),
            Checkpoints::F32(f.checkpoints),
        )
    }
}

/// Forward without autodiff state.
fn forward_only<B: HostView>(
    x: FloatTensor<B>,
    coef: FloatTensor<B>,
    spec: &LifScanSpec,
) -> FloatTensor<B> {
    let device = x.device();
    let (data, _) = run_forward::<B>(&x, &coef, spec, false);
    drop((x, coef));
    B::float_from_data(data, &device)
}

impl LifScanOps for Flex {
    fn lif_scan(
        x: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: LifScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(x, coef, &spec)
    }
}
impl LifScanOps for NdArray {
    fn lif_scan(
        x: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: LifScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(x, coef, &spec)
    }
}

// ---------------------------------------------------------------------------------------------
// Autodiff: hand-written adjoint.
// ---------------------------------------------------------------------------------------------
#[derive(Clone, Debug)]
enum Checkpoints {
    F32(Vec<(Vec<f32>, Vec<f32>)>),
    F64(Vec<(Vec<f64>, Vec<f64>)>),
}

/// What the adjoint keeps: the input trace and coefficients (the primitives themselves: no copy
/// on flex) and the checkpointed states.
#[derive(Clone)]
struct ScanState<B: Backend> {
    x: FloatTensor<B>,
    p: FloatTensor<B>,
    checkpoints: Checkpoints,
    dims: (usize, usize, usize),
    spec: LifScanSpec,
}

impl<B: Backend> std::fmt::Debug for ScanState<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LifScanState {{ dims: {:?}, spec: {:?} }}",
            self.dims, self.spec
        )
    }
}

#[derive(Debug)]
struct LifScanBackward;

#[allow(clippy::too_many_arguments)]
fn adjoint_typed<T: Real + burn::tensor::Element>(
    x: &[T],
    p: &[T],
    dims: (usize, usize, usize),
    spec: &LifScanSpec,
    ck: &[(Vec<T>, Vec<T>)],
    g: TensorData,
    want_gx: bool,
) -> (Vec<T>, Vec<T>) {
    let (t_steps, b, n) = dims;
    let g_out: Vec<T> = g.convert::<T>().try_into_vec::<T>().expect("gradient data");
    let mut spec = spec.clone();
    spec.checkpoint_every = spec.ck(t_steps);
    let adj = host::adjoint::<T>(x, p, ck, g_out, t_steps, b * n, &spec, want_gx);
    let gp: Vec<T> = adj.gp.into_iter().map(T::from_f64).collect();
    (adj.gx, gp)
}

impl<B: HostView> Backward<B, 2> for LifScanBackward {
    type State = ScanState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node_x, node_p] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        let device = g.device();
        let gd = read_data::<B>(g);
        let s = ops.state;
        let (t_steps, b, n) = s.dims;
        let want_gx = node_x.is_some();
        let gxs = [t_steps, b, n];
        let (gx, gp) = match &s.checkpoints {
            Checkpoints::F64(ck) => {
                let (gx, gp) = adjoint_typed::<f64>(
                    &B::view_f64(&s.x),
                    &B::view_f64(&s.p),
                    s.dims,
                    &s.spec,
                    ck,
                    gd,
                    want_gx,
                );
                (
                    want_gx.then(|| TensorData::new(gx, gxs)),
                    TensorData::new(gp, [N_COEF, b, n]),
                )
            }
            Checkpoints::F32(ck) => {
                let (gx, gp) = adjoint_typed::<f32>(
                    &B::view_f32(&s.x),
                    &B::view_f32(&s.p),
                    s.dims,
                    &s.spec,
                    ck,
                    gd,
                    want_gx,
                );
                (
                    want_gx.then(|| TensorData::new(gx, gxs)),
                    TensorData::new(gp, [N_COEF, b, n]),
                )
            }
        };
        drop(s);
        if let (Some(node), Some(gx)) = (node_x, gx) {
            grads.register::<B>(node.id, B::float_from_data(gx, &device));
        }
        if let Some(node) = node_p {
            grads.register::<B>(node.id, B::float_from_data(gp, &device));
        }
    }
}

impl<B: LifScanOps + HostView, C: CheckpointStrategy> LifScanOps for Autodiff<B, C> {
    fn lif_scan(
        x: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: LifScanSpec,
    ) -> FloatTensor<Self> {
        let (x_prim, x_guard) = x.into_parts();
        let (p_prim, p_guard) = coef.into_parts();
        match LifScanBackward
            .prepare::<C>([x_guard, p_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let device = x_prim.device();
                let dims = dims3(&x_prim.shape());
                let (out, checkpoints) = run_forward::<B>(&x_prim, &p_prim, &spec, true);
                let out = B::float_from_data(out, &device);
                prep.finish(
                    ScanState {
                        x: x_prim,
                        p: p_prim,
                        checkpoints,
                        dims,
                        spec,
                    },
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::lif_scan(x_prim, p_prim, spec)),
        }
    }
}

/// Whether the fused op runs on this device (flex or ndarray, with or without autodiff).
pub fn fused_supported(device: &burn::tensor::Device) -> bool {
    crate::kernel::ctx::host_ops_supported(device)
}

/// The fused LIF scan (see module docs): `x [T, B, N]` (conductance in S or current in A per
/// step), `coef [P=9, B, N]` → spikes `[T, B, N]` (0/1, or σ(βm) in Rate mode), followed by the
/// membrane potential (V) `[T, B, N]` when `spec.record_v` (output `[2T, B, N]`).
/// Differentiable w.r.t. `x` and `coef` through the hand-written adjoint.
///
/// Errors: shape mismatch, unsupported backend, non-finite input (naming step, batch, unit),
/// negative conductance, unstable time step (`dt·(1 + R·g)/τ_m ≥ 1`), non-finite state.
pub fn lif_scan(
    x: Tensor<3>,
    coef: Tensor<3>,
    spec: &LifScanSpec,
    input_name: &str,
) -> Result<Tensor<3>> {
    let [_, b, n] = x.dims();
    let expected = [N_COEF, b, n];
    if coef.dims() != expected {
        return Err(Error::shape(
            "lif coefficients",
            format!("{expected:?}"),
            format!("{:?}", coef.dims()),
        ));
    }
    if !fused_supported(&x.device()) {
        return Err(Error::config(
            "path",
            "the fused LIF scan runs on the flex and ndarray CPU backends only; use the tape path",
        ));
    }
    if x.dtype() != coef.dtype() {
        return Err(Error::config(
            "lif_scan",
            "input and coefficients must have the same float dtype",
        ));
    }
    let report = Arc::new(Mutex::new(None));
    let mut spec = spec.clone();
    spec.report = report.clone();
    let out = Tensor::from_dispatch(<Dispatch as LifScanOps>::lif_scan(
        x.into_dispatch(),
        coef.into_dispatch(),
        spec,
    ));
    let issue = report.lock().map(|mut s| s.take()).unwrap_or(None);
    match issue {
        Some(i) => Err(i.into_error(input_name)),
        None => Ok(out),
    }
}
