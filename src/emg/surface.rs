//! Surface EMG readout (MODEL.md §4.2): `EMG = Σ_units spikes ⋆ MUAP` as one whole-trace
//! [`Readout`] after the rollout, in volts, differentiable w.r.t. the spike trains.
//!
//! ```text
//! emg[t, b, c] = Σ_u Σ_{k=0}^{K−1} s[t + ℓ − k, b, u] · h[u, c, k]
//! ```
//!
//! `s` = the `spikes` trace `[n_steps, batch, n_units]` (0/1 per step, or surrogate/rate values),
//! `h` = MUAP templates `[n_units, rows·cols, K]` (V) sampled at the simulation `dt_s`, output
//! `surface_emg_v` `[n_steps, batch, rows·cols]` declared with shape `[rows, cols]` (so
//! `SimResult` gets `grid_shape`).
//!
//! **Alignment.** Default [`Alignment::Causal`] (`ℓ = 0`): a spike at step `t` produces its MUAP
//! from step `t` on, tap 0 at the spike — the physical, causal choice (the IAP starts at the NMJ
//! when the spike arrives). MyoGen instead computes `np.correlate(s, MUAP, "same")`, i.e.
//! `emg[t] = Σ_m s[t + m − ⌊K/2⌋]·MUAP[m]`: the template is time-reversed and centred on the spike
//! (non-causal by `⌊K/2⌋` steps). [`Alignment::MyogenSame`] reproduces that exactly (kernel
//! reversed, `ℓ = K − 1 − ⌊K/2⌋`) for comparisons with MyoGen output.
//!
//! **Method.** [`ConvMethod::Fft`] — one custom burn op (FFT overlap-save + per-frequency GEMM,
//! hand-written adjoint; see [`super::conv`]) — is ≈K/4 times fewer operations than direct
//! convolution and needs no `im2col` buffer; it is what makes 800 units × 64 channels × 50,000
//! steps take seconds. [`ConvMethod::Direct`] is burn's `conv1d` (plain tensor ops on the tape: the
//! reference the tests compare against, and the only method on backends without the FFT op).
//! [`ConvMethod::Auto`] picks the FFT op where it runs (flex, ndarray).

use std::sync::Arc;

use burn::tensor::Tensor;

use super::conv::{ConvPlan, conv1d_reference, fft_supported, muap_conv};
use super::muap::MuapTemplates;
use crate::error::{Error, Result};
use crate::kernel::{BufferSpec, Ctx, Precision, Readout, Traces, names};

/// Where a spike's MUAP sits relative to the spike (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    /// Tap 0 at the spike step (causal).
    #[default]
    Causal,
    /// MyoGen's `np.correlate(spikes, muap, "same")`.
    MyogenSame,
}

/// How the convolution is computed (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvMethod {
    /// FFT op where supported, else direct.
    #[default]
    Auto,
    /// The FFT custom op (flex / ndarray).
    Fft,
    /// burn `conv1d` (tape reference; memory `O(B·U·K·T)`).
    Direct,
}

/// The surface-EMG readout.
#[derive(Clone, Debug)]
pub struct SurfaceEmg {
    name: String,
    input: String,
    output: String,
    rows: usize,
    cols: usize,
    dt_s: f64,
    alignment: Alignment,
    method: ConvMethod,
    plan: Arc<ConvPlan>,
}

impl SurfaceEmg {
    /// A readout of `spikes` → `surface_emg_v` with these templates (causal, automatic method).
    pub fn new(templates: &MuapTemplates) -> Result<Self> {
        Self::with_alignment(templates, Alignment::Causal)
    }

    /// A readout with the given alignment (module docs).
    pub fn with_alignment(templates: &MuapTemplates, alignment: Alignment) -> Result<Self> {
        let (u, c, k) = (templates.n_units, templates.n_channels(), templates.n_taps);
        let (kernels, lead) = match alignment {
            Alignment::Causal => (templates.data.clone(), 0),
            Alignment::MyogenSame => {
                let mut rev = templates.data.clone();
                for ch in rev.chunks_mut(k) {
                    ch.reverse();
                }
                (rev, k - 1 - k / 2)
            }
        };
        Ok(Self {
            name: "surface_emg".into(),
            input: names::SPIKES.into(),
            output: names::SURFACE_EMG_V.into(),
            rows: templates.rows,
            cols: templates.cols,
            dt_s: templates.dt_s,
            alignment,
            method: ConvMethod::Auto,
            plan: Arc::new(ConvPlan::new(kernels, u, c, k, lead)?),
        })
    }

    /// Chooses the convolution method.
    pub fn method(mut self, method: ConvMethod) -> Self {
        self.method = method;
        self
    }

    /// Reads another spike buffer (default `spikes`).
    pub fn input(mut self, name: impl Into<String>) -> Self {
        self.input = name.into();
        self
    }

    /// Output grid `(rows, cols)`.
    pub fn grid_shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    /// Number of units the templates expect.
    pub fn n_units(&self) -> usize {
        self.plan.n_in()
    }
    /// Lead ℓ (steps) of the alignment.
    pub fn lead_steps(&self) -> usize {
        self.plan.lead()
    }
    /// The alignment.
    pub fn alignment(&self) -> Alignment {
        self.alignment
    }

    /// `emg[t,b,c] = Σ_u Σ_k s[t + ℓ − k, b, u]·h[u, c, k]` (V) for spikes `s [T, B, U]` →
    /// `[T, B, rows·cols]`. Differentiable w.r.t. `s`. Errors: unit count mismatch, non-finite
    /// spikes (names the first bad entry), FFT method on an unsupported backend.
    pub fn convolve(&self, spikes: Tensor<3>, ctx: &Ctx) -> Result<Tensor<3>> {
        let [_, _, u] = spikes.dims();
        if u != self.n_units() {
            return Err(Error::shape(
                format!("{} (n_units)", self.input),
                self.n_units(),
                u,
            ));
        }
        crate::kernel::check_trace_finite(&self.input, spikes.clone())?;
        let use_fft = match self.method {
            ConvMethod::Fft => true,
            ConvMethod::Direct => false,
            ConvMethod::Auto => fft_supported(&spikes.device()),
        };
        if use_fft {
            muap_conv(spikes, &self.plan)
        } else {
            let (n_in, n_out, k) = (self.plan.n_in(), self.plan.n_out(), self.plan.taps());
            // kernels on the spikes' device, in their precision
            let mut hc = ctx.clone();
            hc.device = spikes.device();
            hc.precision = if spikes.dtype() == burn::tensor::DType::F64 {
                Precision::F64
            } else {
                Precision::F32
            };
            let h = hc.tensor(self.plan.kernels().to_vec(), [n_in, n_out, k]);
            conv1d_reference(spikes, h, self.plan.lead())
        }
    }
}

impl Readout for SurfaceEmg {
    fn name(&self) -> &str {
        &self.name
    }
    fn reads(&self) -> Vec<String> {
        vec![self.input.clone()]
    }
    fn writes(&self) -> Vec<BufferSpec> {
        vec![BufferSpec::new(&self.output, &[self.rows, self.cols], "V")]
    }
    fn run(&self, traces: &Traces, ctx: &Ctx, dt_s: f64) -> Result<Traces> {
        if (dt_s - self.dt_s).abs() > 1e-9 * self.dt_s {
            return Err(Error::invalid(
                "dt_s",
                dt_s,
                format!("the MUAP templates' sampling step {} s", self.dt_s),
            ));
        }
        let s = traces
            .get(&self.input)
            .cloned()
            .ok_or_else(|| Error::MissingBuffer {
                stage: self.name.clone(),
                buffer: self.input.clone(),
            })?;
        let y = self.convolve(s, ctx)?;
        Ok([(self.output.clone(), y)].into_iter().collect())
    }
}
