#![allow(deprecated)] // burn 0.22 marks its NdArray backend deprecated; myodiff keeps it selectable

//! The multichannel spike-train ⋆ MUAP convolution as ONE custom burn op (FFT overlap-save with a
//! hand-written adjoint), registered with burn's autodiff so it composes with ordinary tensor ops.
//!
//! Op: `muap_conv(s [T, B, U]) → y [T, B, C]` with frozen kernels `h [U, C, K]` and a lead of
//! `ℓ` steps (0 = causal):
//!
//! ```text
//! y[t, b, c] = Σ_u Σ_{k=0}^{K−1} s[t + ℓ − k, b, u] · h[u, c, k]      (s = 0 outside [0, T))
//! ∂L/∂s[τ, b, u] = Σ_c Σ_k ∂L/∂y[τ − ℓ + k, b, c] · h[u, c, k]        (the adjoint: a correlation)
//! ```
//!
//! **Algorithm and cost.** Overlap-save with FFT length `L = max(256, 2^⌈log₂ 2K⌉)`, hop
//! `H = L − K + 1`. Each block of every input channel is transformed once (two real signals per
//! complex FFT); the channel mixing is, per frequency bin, one complex matrix product
//! `[blocks·B, U] × [U, C]` (four real GEMMs, ndarray/matrixmultiply); `C` inverse FFTs per block
//! finish it. Cost ≈ `2·T·B·U·C·L/H` real multiply-adds plus `T·B·(U + C)·(L/H)·log₂L` for the
//! FFTs, against `T·B·U·C·K` for direct convolution (burn's `conv1d`): ≈ `K/4` times fewer
//! (≈60× for K = 250 taps), and no `im2col` buffer (`B·U·K·T` values = 40 GB at 800 units,
//! 250 taps and 50,000 steps). The adjoint is the same computation with `conj(H)` and the
//! transposed mixing, so gradients cost one more forward. The op keeps no activations (it is
//! linear): the backward pass needs only the incoming gradient and the cached kernel spectra.
//!
//! Precision: f32 tensors are computed in f32 (FFT rounding ≈1e-7 relative to the largest value),
//! f64 tensors in f64 (≈1e-15). Backends: `Flex`, `NdArray` and `Autodiff` over them.

use std::sync::{Arc, OnceLock};

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
use ndarray::{ArrayView2, ArrayViewMut2, linalg::general_mat_mul};
use rustfft::{FftNum, FftPlanner, num_complex::Complex, num_traits::Float};

use crate::error::{Error, Result};

/// Scalar types the host kernels run in (f32, f64).
pub trait ConvFloat: FftNum + Float + ndarray::LinalgScalar + Send + Sync {
    /// From f64.
    fn of(x: f64) -> Self;
}
impl ConvFloat for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
}
impl ConvFloat for f64 {
    fn of(x: f64) -> Self {
        x
    }
}

/// Kernel spectra `H[f][u][c]` (real and imaginary parts), f = 0..=L/2.
struct Spectra<T> {
    re: Vec<T>,
    im: Vec<T>,
}

/// The frozen kernels of a convolution and their cached spectra.
pub struct ConvPlan {
    kernels: Vec<f64>,
    n_in: usize,
    n_out: usize,
    taps: usize,
    lead: usize,
    fft_len: usize,
    f32_spectra: OnceLock<Spectra<f32>>,
    f64_spectra: OnceLock<Spectra<f64>>,
}

impl std::fmt::Debug for ConvPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConvPlan {{ n_in: {}, n_out: {}, taps: {}, lead: {}, fft_len: {} }}",
            self.n_in, self.n_out, self.taps, self.lead, self.fft_len
        )
    }
}

impl ConvPlan {
    /// A plan for kernels `h` row-major `[n_in, n_out, taps]` and lead `ℓ` steps (module docs).
    /// Errors: zero sizes, wrong length, non-finite kernels, `lead ≥ taps`.
    pub fn new(
        kernels: Vec<f64>,
        n_in: usize,
        n_out: usize,
        taps: usize,
        lead: usize,
    ) -> Result<Self> {
        crate::error::check::count_at_least("n_units", n_in, 1)?;
        crate::error::check::count_at_least("n_channels", n_out, 1)?;
        crate::error::check::count_at_least("n_taps", taps, 1)?;
        if kernels.len() != n_in * n_out * taps {
            return Err(Error::shape(
                "muap kernels",
                format!("[{n_in}, {n_out}, {taps}]"),
                kernels.len(),
            ));
        }
        crate::error::check::all_finite("muap kernels", &kernels)?;
        if lead >= taps {
            return Err(Error::invalid("lead_steps", lead, format!("0..{taps}")));
        }
        let fft_len = (2 * taps).next_power_of_two().max(256);
        Ok(Self {
            kernels,
            n_in,
            n_out,
            taps,
            lead,
            fft_len,
            f32_spectra: OnceLock::new(),
            f64_spectra: OnceLock::new(),
        })
    }

    /// Input channels (units).
    pub fn n_in(&self) -> usize {
        self.n_in
    }
    /// Output channels.
    pub fn n_out(&self) -> usize {
        self.n_out
    }
    /// Kernels `[n_in, n_out, taps]` (row-major).
    pub fn kernels(&self) -> &[f64] {
        &self.kernels
    }
    /// Taps per kernel.
    pub fn taps(&self) -> usize {
        self.taps
    }
    /// Lead ℓ (steps).
    pub fn lead(&self) -> usize {
        self.lead
    }

    fn spectra<T: ConvFloat>(&self) -> &Spectra<T> {
        // One cache per precision; the `Any` dance picks the right one without unsafe code.
        use std::any::Any;
        if let Some(s) = (&self.f32_spectra as &dyn Any).downcast_ref::<OnceLock<Spectra<T>>>() {
            return s.get_or_init(|| self.compute_spectra::<T>());
        }
        let s = (&self.f64_spectra as &dyn Any)
            .downcast_ref::<OnceLock<Spectra<T>>>()
            .expect("ConvFloat is f32 or f64");
        s.get_or_init(|| self.compute_spectra::<T>())
    }

    fn compute_spectra<T: ConvFloat>(&self) -> Spectra<T> {
        let l = self.fft_len;
        let bins = l / 2 + 1;
        let (ni, no, k) = (self.n_in, self.n_out, self.taps);
        let fft = FftPlanner::<T>::new().plan_fft_forward(l);
        let mut re = vec![T::zero(); bins * ni * no];
        let mut im = vec![T::zero(); bins * ni * no];
        let mut buf = vec![Complex::new(T::zero(), T::zero()); l];
        for u in 0..ni {
            for c in 0..no {
                buf.iter_mut()
                    .for_each(|z| *z = Complex::new(T::zero(), T::zero()));
                let h = &self.kernels[(u * no + c) * k..(u * no + c + 1) * k];
                for (z, &v) in buf.iter_mut().zip(h) {
                    z.re = T::of(v);
                }
                fft.process(&mut buf);
                for f in 0..bins {
                    re[(f * ni + u) * no + c] = buf[f].re;
                    im[(f * ni + u) * no + c] = buf[f].im;
                }
            }
        }
        Spectra { re, im }
    }

    /// Forward on host data: `s` `[T, B, U]` → `[T, B, C]`.
    pub fn forward_host<T: ConvFloat>(&self, s: &[T], t: usize, b: usize) -> Vec<T> {
        ols(self, s, t, b, false)
    }

    /// Adjoint on host data: `∂L/∂y` `[T, B, C]` → `∂L/∂s` `[T, B, U]`.
    pub fn adjoint_host<T: ConvFloat>(&self, gy: &[T], t: usize, b: usize) -> Vec<T> {
        ols(self, gy, t, b, true)
    }
}

/// Overlap-save. Forward (`adjoint = false`): `x [T, B, U]` → `out[n, b, c] = Σ_u Σ_k
/// x[n + ℓ − k, b, u] h[u, c, k]`; adjoint: `x [T, B, C]` → `out[n, b, u] = Σ_c Σ_k
/// x[n − ℓ + k, b, c] h[u, c, k]`.
fn ols<T: ConvFloat>(
    plan: &ConvPlan,
    x: &[T],
    t_len: usize,
    batch: usize,
    adjoint: bool,
) -> Vec<T> {
    let (nx, ny) = if adjoint {
        (plan.n_out, plan.n_in)
    } else {
        (plan.n_in, plan.n_out)
    };
    let l = plan.fft_len;
    let k = plan.taps;
    let bins = l / 2 + 1;
    let hop = l - k + 1;
    let sp = plan.spectra::<T>();
    let zero = T::zero();
    let half = T::of(0.5);
    let inv_l = T::of(1.0 / l as f64);
    // segment start relative to the block's first output, and first valid circular sample
    let (seg_off, valid0): (isize, usize) = if adjoint {
        (-(plan.lead as isize), 0)
    } else {
        (plan.lead as isize - (k as isize - 1), k - 1)
    };
    // input transposed to [B, nx, T] (contiguous time)
    let mut xt = vec![zero; t_len * batch * nx];
    for t in 0..t_len {
        for bi in 0..batch {
            for i in 0..nx {
                xt[(bi * nx + i) * t_len + t] = x[(t * batch + bi) * nx + i];
            }
        }
    }
    let mut out = vec![zero; t_len * batch * ny];
    let n_blocks = t_len.div_ceil(hop);
    let per_block = bins * batch * nx.max(ny) * 2 * std::mem::size_of::<T>();
    let nbc = (64 << 20) / per_block.max(1);
    let nbc = nbc.clamp(1, n_blocks);
    let mut planner = FftPlanner::<T>::new();
    let fft = planner.plan_fft_forward(l);
    let ifft = planner.plan_fft_inverse(l);
    let mut buf = vec![Complex::new(zero, zero); l];
    let mut scratch = vec![
        Complex::new(zero, zero);
        fft.get_inplace_scratch_len()
            .max(ifft.get_inplace_scratch_len())
    ];
    for blk0 in (0..n_blocks).step_by(nbc) {
        let blk1 = (blk0 + nbc).min(n_blocks);
        let rows = (blk1 - blk0) * batch;
        let mut xr = vec![zero; bins * rows * nx];
        let mut xi = vec![zero; bins * rows * nx];
        // forward FFTs, two real signals (row, i), (row, i+1) ... per complex transform
        let n_sig = rows * nx;
        let mut sig = 0;
        while sig < n_sig {
            let pair = sig + 1 < n_sig;
            for (p, bslot) in [(sig, 0usize), (sig + 1, 1usize)] {
                if bslot == 1 && !pair {
                    break;
                }
                let row = p / nx;
                let i = p % nx;
                let blk = blk0 + row / batch;
                let bi = row % batch;
                let a = (blk * hop) as isize + seg_off;
                let src = &xt[(bi * nx + i) * t_len..(bi * nx + i + 1) * t_len];
                for (m, z) in buf.iter_mut().enumerate() {
                    let idx = a + m as isize;
                    let v = if idx >= 0 && (idx as usize) < t_len {
                        src[idx as usize]
                    } else {
                        zero
                    };
                    if bslot == 0 {
                        *z = Complex::new(v, zero);
                    } else {
                        z.im = v;
                    }
                }
            }
            fft.process_with_scratch(&mut buf, &mut scratch);
            for f in 0..bins {
                let zf = buf[f];
                let zc = buf[(l - f) % l].conj();
                // X_p = (Z_f + conj Z_{L−f})/2, X_{p+1} = −i/2 (Z_f − conj Z_{L−f})
                let p0 = (f * rows) * nx + sig;
                xr[p0] = (zf.re + zc.re) * half;
                xi[p0] = (zf.im + zc.im) * half;
                if pair {
                    let d = zf - zc;
                    xr[p0 + 1] = d.im * half;
                    xi[p0 + 1] = -d.re * half;
                }
            }
            sig += 2;
        }
        // per-bin complex mixing, bins split across threads
        let mut yr = vec![zero; bins * rows * ny];
        let mut yi = vec![zero; bins * rows * ny];
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, bins);
        let per = bins.div_ceil(threads);
        let (xr, xi) = (&xr, &xi);
        std::thread::scope(|sc| {
            for (ti, (yr_t, yi_t)) in yr
                .chunks_mut(per * rows * ny)
                .zip(yi.chunks_mut(per * rows * ny))
                .enumerate()
            {
                sc.spawn(move || {
                    let f0 = ti * per;
                    for (df, (yr_f, yi_f)) in yr_t
                        .chunks_mut(rows * ny)
                        .zip(yi_t.chunks_mut(rows * ny))
                        .enumerate()
                    {
                        mix_bin(plan, sp, f0 + df, xr, xi, rows, nx, ny, adjoint, yr_f, yi_f);
                    }
                });
            }
        });
        // inverse FFTs, two real outputs per complex transform
        let n_sig = rows * ny;
        let mut sig = 0;
        while sig < n_sig {
            let pair = sig + 1 < n_sig;
            for f in 0..bins {
                let p0 = (f * rows) * ny + sig;
                let y0 = Complex::new(yr[p0], yi[p0]);
                let y1 = if pair {
                    Complex::new(yr[p0 + 1], yi[p0 + 1])
                } else {
                    Complex::new(zero, zero)
                };
                // Z_f = Y0_f + i Y1_f; Z_{L−f} = conj(Y0_f) + i conj(Y1_f)
                buf[f] = y0 + Complex::new(-y1.im, y1.re);
                if f != 0 && f != l - f {
                    let y0c = y0.conj();
                    let y1c = y1.conj();
                    buf[l - f] = y0c + Complex::new(-y1c.im, y1c.re);
                }
            }
            ifft.process_with_scratch(&mut buf, &mut scratch);
            for (p, use_im) in [(sig, false), (sig + 1, true)] {
                if use_im && !pair {
                    break;
                }
                let row = p / ny;
                let o = p % ny;
                let blk = blk0 + row / batch;
                let bi = row % batch;
                let n0 = blk * hop;
                for m in 0..hop {
                    let n = n0 + m;
                    if n >= t_len {
                        break;
                    }
                    let z = buf[valid0 + m];
                    let v = if use_im { z.im } else { z.re };
                    out[(n * batch + bi) * ny + o] = v * inv_l;
                }
            }
            sig += 2;
        }
    }
    out
}

/// One frequency bin of the channel mixing: `Y_f = X_f · H_f` (forward) or `X_f · conj(H_f)ᵀ`
/// (adjoint), complex, as four real GEMMs.
#[allow(clippy::too_many_arguments)]
fn mix_bin<T: ConvFloat>(
    plan: &ConvPlan,
    sp: &Spectra<T>,
    f: usize,
    xr: &[T],
    xi: &[T],
    rows: usize,
    nx: usize,
    ny: usize,
    adjoint: bool,
    yr_f: &mut [T],
    yi_f: &mut [T],
) {
    let (zero, one) = (T::zero(), T::one());
    let a_r =
        ArrayView2::from_shape((rows, nx), &xr[f * rows * nx..(f + 1) * rows * nx]).expect("shape");
    let a_i =
        ArrayView2::from_shape((rows, nx), &xi[f * rows * nx..(f + 1) * rows * nx]).expect("shape");
    let hsz = plan.n_in * plan.n_out;
    let h_r = ArrayView2::from_shape((plan.n_in, plan.n_out), &sp.re[f * hsz..(f + 1) * hsz])
        .expect("shape");
    let h_i = ArrayView2::from_shape((plan.n_in, plan.n_out), &sp.im[f * hsz..(f + 1) * hsz])
        .expect("shape");
    let mut c_r = ArrayViewMut2::from_shape((rows, ny), yr_f).expect("shape");
    let mut c_i = ArrayViewMut2::from_shape((rows, ny), yi_f).expect("shape");
    if adjoint {
        // Y = X · conj(H)ᵀ: Yr = Xr Hrᵀ + Xi Hiᵀ, Yi = Xi Hrᵀ − Xr Hiᵀ
        general_mat_mul(one, &a_r, &h_r.t(), zero, &mut c_r);
        general_mat_mul(one, &a_i, &h_i.t(), one, &mut c_r);
        general_mat_mul(one, &a_i, &h_r.t(), zero, &mut c_i);
        general_mat_mul(-one, &a_r, &h_i.t(), one, &mut c_i);
    } else {
        // Y = X · H: Yr = Xr Hr − Xi Hi, Yi = Xr Hi + Xi Hr
        general_mat_mul(one, &a_r, &h_r, zero, &mut c_r);
        general_mat_mul(-one, &a_i, &h_i, one, &mut c_r);
        general_mat_mul(one, &a_r, &h_i, zero, &mut c_i);
        general_mat_mul(one, &a_i, &h_r, one, &mut c_i);
    }
}

/// Static settings of one `muap_conv` call (the frozen kernels and their spectra).
#[derive(Clone, Debug)]
pub struct ConvSpec {
    /// The plan (shared; spectra are cached inside).
    pub plan: Arc<ConvPlan>,
}

/// The FFT convolution as a burn backend extension.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait MuapConvOps: Backend {
    /// `s: [T, B, U]` → `[T, B, C]` (module docs).
    fn muap_conv(s: FloatTensor<Self>, spec: ConvSpec) -> FloatTensor<Self>;
}

/// Runs the forward (or adjoint) on a primitive in its own precision.
fn run_host<B: Backend>(x: FloatTensor<B>, plan: &ConvPlan, adjoint: bool) -> FloatTensor<B> {
    let device = x.device();
    let shape = x.shape();
    let (t, b) = (shape[0], shape[1]);
    let ny = if adjoint { plan.n_in } else { plan.n_out };
    let data = try_read_sync(B::float_into_data(x))
        .expect("CPU backend reads synchronously")
        .expect("tensor read");
    let out = match data.dtype() {
        DType::F64 => {
            let v = data.into_vec::<f64>().expect("f64 data");
            TensorData::new(ols(plan, &v, t, b, adjoint), [t, b, ny])
        }
        DType::F32 => {
            let v = data.into_vec::<f32>().expect("f32 data");
            TensorData::new(ols(plan, &v, t, b, adjoint), [t, b, ny])
        }
        _ => {
            let v = data.convert::<f32>().into_vec::<f32>().expect("to f32");
            TensorData::new(ols(plan, &v, t, b, adjoint), [t, b, ny])
        }
    };
    B::float_from_data(out, &device)
}

impl MuapConvOps for Flex {
    fn muap_conv(s: FloatTensor<Self>, spec: ConvSpec) -> FloatTensor<Self> {
        run_host::<Self>(s, &spec.plan, false)
    }
}
impl MuapConvOps for NdArray {
    fn muap_conv(s: FloatTensor<Self>, spec: ConvSpec) -> FloatTensor<Self> {
        run_host::<Self>(s, &spec.plan, false)
    }
}

#[derive(Debug)]
struct MuapConvBackward;

impl<B: Backend> Backward<B, 1> for MuapConvBackward {
    type State = ConvSpec;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node_s] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node_s {
            grads.register::<B>(node.id, run_host::<B>(g, &ops.state.plan, true));
        }
    }
}

impl<B: MuapConvOps, C: CheckpointStrategy> MuapConvOps for Autodiff<B, C> {
    fn muap_conv(s: FloatTensor<Self>, spec: ConvSpec) -> FloatTensor<Self> {
        let (s_prim, s_guard) = s.into_parts();
        match MuapConvBackward
            .prepare::<C>([s_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::muap_conv(s_prim, spec.clone());
                prep.finish(spec, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::muap_conv(s_prim, spec)),
        }
    }
}

/// Whether the FFT op runs on this device (flex or ndarray, with or without autodiff).
pub fn fft_supported(device: &burn::tensor::Device) -> bool {
    crate::kernel::ctx::host_ops_supported(device)
}

/// The FFT convolution (module docs): `s [T, B, U]` → `[T, B, C]`, differentiable w.r.t. `s`.
/// Errors: `U` ≠ the plan's units, unsupported backend.
pub fn muap_conv(s: Tensor<3>, plan: &Arc<ConvPlan>) -> Result<Tensor<3>> {
    let [_, _, u] = s.dims();
    if u != plan.n_in {
        return Err(Error::shape("spikes (units)", plan.n_in, u));
    }
    if !fft_supported(&s.device()) {
        return Err(Error::config(
            "method",
            "the FFT convolution runs on the flex and ndarray CPU backends only; use ConvMethod::Direct",
        ));
    }
    Ok(Tensor::from_dispatch(<Dispatch as MuapConvOps>::muap_conv(
        s.into_dispatch(),
        ConvSpec { plan: plan.clone() },
    )))
}

/// Reference (tape path): the same convolution with burn's `conv1d` (plain differentiable tensor
/// ops; `kernels [U, C, K]` as a tensor). `y[t,b,c] = Σ_u Σ_k s[t + ℓ − k, b, u] h[u, c, k]`.
/// Memory `O(B·U·K·T)` (im2col): for small problems and tests.
pub fn conv1d_reference(s: Tensor<3>, kernels: Tensor<3>, lead: usize) -> Result<Tensor<3>> {
    let [t, _, u] = s.dims();
    let [ku, c, k] = kernels.dims();
    if ku != u {
        return Err(Error::shape("spikes (units)", ku, u));
    }
    if lead >= k {
        return Err(Error::invalid("lead_steps", lead, format!("0..{k}")));
    }
    let x = s.permute([1, 2, 0]); // [B, U, T]
    // conv1d is a cross-correlation: out[c, n] = Σ_u Σ_j w[c, u, j] x[u, n + j − p_left]
    let w = kernels.permute([1, 0, 2]).flip([2]); // [C, U, K], w[j] = h[K−1−j]
    let opts =
        burn::tensor::ops::ConvOptions::new_with_padding([1], [(k - 1 - lead, lead)], [1], 1);
    let y = burn::tensor::module::conv1d(x, w, None, opts); // [B, C, T]
    debug_assert_eq!(y.dims()[2], t);
    let _ = c;
    Ok(y.permute([2, 0, 1]))
}
