//! Descending-drive rate r(t) (MODEL.md §2.1), in Hz.
//!
//! `r(t_k) = clip(DC + A·sin(2π f t_k + φ) + σ·ξ_k, 0, ∞)`, `t_k = k·dt`, with ξ_k drawn up front
//! from a seeded RNG (pathwise randomness): either ξ ~ N(0, 1) (Watanabe's oscillating protocol,
//! zero-mean noise added *before* the clip) or ξ = max(0, N(0, 1)) (MyoGen's constant protocol
//! `DC + max(0, N(0,1))`, use [`NoiseKind::Rectified`] with σ = 1, A = 0).
//!
//! The clip at 0 is a choice of [`RateClip`]:
//! - `Relu` (default): `max(r, 0)`; gradient 1 where r > 0 and 0 where r < 0 — gradients are not
//!   killed where the rate is positive;
//! - `StraightThrough`: forward `max(r, 0)`, backward identity everywhere
//!   (`r + detach(max(r,0) − r)`), so a candidate whose rate dips below 0 still gets a gradient;
//! - `Softplus { sharpness_per_hz: β }`: smooth `softplus_β(r) = ln(1 + e^{βr})/β` (a different,
//!   smooth forward model; ≈ r for r ≫ 1/β).
//!
//! Parameters are tensors `[batch, 1]` (or `[1, 1]`, broadcast) so the batch axis can carry
//! candidate parameter sets and any of them may `require_grad()`.

use burn::tensor::{Tensor, activation::softplus};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result, check};
use crate::kernel::host::row;
use crate::kernel::{
    BufferSpec, Ctx, HostCx, HostStage, ReadSpec, Stage, StageDecl, StageIo, Traces, VjpIo,
    to_vec_f64,
};

/// Name of the drive-rate buffer (`[1]` per batch element, Hz).
pub const DRIVE_RATE_HZ: &str = "drive_rate_hz";

/// How the rate is clipped at 0 (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateClip {
    /// `max(r, 0)`; gradient 1 for r > 0, 0 for r < 0.
    #[default]
    Relu,
    /// Forward `max(r, 0)`, backward identity (straight-through).
    StraightThrough,
    /// `ln(1 + exp(β r))/β` with β in 1/Hz (smooth).
    Softplus {
        /// β (1/Hz).
        sharpness_per_hz: f64,
    },
}

impl RateClip {
    /// Checks the clip's own parameter (β finite and > 0).
    pub fn validate(&self) -> Result<()> {
        if let RateClip::Softplus { sharpness_per_hz } = self {
            check::positive("rate_clip.sharpness_per_hz", *sharpness_per_hz)?;
        }
        Ok(())
    }

    /// Applies the clip element-wise: `r ↦ clip(r, 0, ∞)` in the chosen form (Hz → Hz).
    pub fn apply<const D: usize>(&self, r: Tensor<D>) -> Tensor<D> {
        match *self {
            RateClip::Relu => r.clamp_min(0.0),
            RateClip::StraightThrough => {
                let c = r.clone().detach().clamp_min(0.0) - r.clone().detach();
                r + c
            }
            RateClip::Softplus { sharpness_per_hz } => softplus(r, sharpness_per_hz),
        }
    }
}

/// Distribution of the per-step noise ξ_k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// ξ ~ N(0, 1) (zero mean, added before the clip).
    #[default]
    Gaussian,
    /// ξ = max(0, N(0, 1)) (MyoGen's constant protocol; mean 1/√(2π) ≈ 0.3989).
    Rectified,
}

/// Draws ξ `[n_steps, batch, 1]` (dimensionless) from `StdRng::seed_from_u64(seed)`, step-major.
/// With `shared_across_batch` every batch row gets the same sequence (common random numbers for
/// comparing candidates); otherwise row b uses its own draws.
pub fn draw_noise(
    n_steps: usize,
    batch: usize,
    seed: u64,
    kind: NoiseKind,
    shared_across_batch: bool,
) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = if shared_across_batch { 1 } else { batch };
    let mut draws = vec![0.0; n_steps * rows];
    for v in draws.iter_mut() {
        let x: f64 = StandardNormal.sample(&mut rng);
        *v = match kind {
            NoiseKind::Gaussian => x,
            NoiseKind::Rectified => x.max(0.0),
        };
    }
    if shared_across_batch {
        draws
            .iter()
            .flat_map(|&x| std::iter::repeat_n(x, batch))
            .collect()
    } else {
        draws
    }
}

/// Drive parameters, each `[batch, 1]` or `[1, 1]` (broadcast): DC (Hz), oscillation amplitude
/// A (Hz), frequency f (Hz), phase φ (rad) and noise standard deviation σ (Hz).
#[derive(Clone, Debug)]
pub struct DriveParams {
    /// DC offset (Hz).
    pub dc_hz: Tensor<2>,
    /// Oscillation amplitude (Hz).
    pub amp_hz: Tensor<2>,
    /// Oscillation frequency (Hz).
    pub freq_hz: Tensor<2>,
    /// Oscillation phase (rad).
    pub phase_rad: Tensor<2>,
    /// Noise standard deviation (Hz).
    pub noise_sd_hz: Tensor<2>,
}

impl DriveParams {
    /// All five parameters as scalars shared by the batch (`[1, 1]` tensors).
    pub fn scalars(
        ctx: &Ctx,
        dc_hz: f64,
        amp_hz: f64,
        freq_hz: f64,
        phase_rad: f64,
        noise_sd_hz: f64,
    ) -> Self {
        let s = |v: f64| ctx.tensor(vec![v], [1, 1]);
        Self {
            dc_hz: s(dc_hz),
            amp_hz: s(amp_hz),
            freq_hz: s(freq_hz),
            phase_rad: s(phase_rad),
            noise_sd_hz: s(noise_sd_hz),
        }
    }

    /// Constant drive `DC` with unit noise (use with [`NoiseKind::Rectified`] for MyoGen's
    /// `DC + max(0, N(0,1))`).
    pub fn constant(ctx: &Ctx, dc_hz: f64) -> Self {
        Self::scalars(ctx, dc_hz, 0.0, 0.0, 0.0, 1.0)
    }

    /// Watanabe's oscillating protocol: `DC + 20 sin(2π·20 t) + N(0,1)` (Hz).
    pub fn watanabe_oscillating(ctx: &Ctx, dc_hz: f64) -> Self {
        Self::scalars(ctx, dc_hz, 20.0, 20.0, 0.0, 1.0)
    }

    /// Checks shapes (`[batch, 1]` or `[1, 1]`) and values: all finite, f ≥ 0, σ ≥ 0.
    pub fn validate(&self, batch: usize) -> Result<()> {
        for (name, t, nonneg) in [
            ("dc_hz", &self.dc_hz, false),
            ("amp_hz", &self.amp_hz, false),
            ("freq_hz", &self.freq_hz, true),
            ("phase_rad", &self.phase_rad, false),
            ("noise_sd_hz", &self.noise_sd_hz, true),
        ] {
            let v = batch_rows(name, t, batch, 1)?;
            for (b, x) in v.iter().enumerate() {
                let field = format!("{name}[{b}]");
                if nonneg {
                    check::non_negative(&field, *x)?;
                } else {
                    check::finite(&field, *x)?;
                }
            }
        }
        Ok(())
    }
}

/// Checks that a per-batch parameter tensor is `[batch, width]` or `[1, width]` (broadcast) and
/// returns its values (row-major, f64); the error names `name` and both shapes.
pub(crate) fn batch_rows(
    name: &str,
    t: &Tensor<2>,
    batch: usize,
    width: usize,
) -> Result<Vec<f64>> {
    let d = t.dims();
    if d[1] != width || (d[0] != 1 && d[0] != batch) {
        return Err(Error::shape(
            name,
            format!("[{batch}, {width}] or [1, {width}]"),
            format!("{d:?}"),
        ));
    }
    Ok(to_vec_f64(t.clone()))
}

/// `t` `[1 or batch, w]` repeated to `[batch, w]` (the broadcast of a shared parameter row).
pub(crate) fn broadcast_rows(t: Tensor<2>, batch: usize) -> Tensor<2> {
    if t.dims()[0] != batch {
        t.repeat_dim(0, batch)
    } else {
        t
    }
}

/// Rate at step `k` for every batch row, `[batch, 1]` (Hz):
/// `clip(DC + A·sin(f·(2π k dt) + φ) + σ·ξ_k)`. `xi_k` is `[batch, 1]`.
pub fn drive_rate_step(
    p: &DriveParams,
    xi_k: Tensor<2>,
    k: usize,
    dt_s: f64,
    clip: RateClip,
) -> Tensor<2> {
    let c = 2.0 * std::f64::consts::PI * (k as f64) * dt_s;
    let osc = (p.freq_hz.clone().mul_scalar(c) + p.phase_rad.clone()).sin();
    let r = p.dc_hz.clone() + p.amp_hz.clone() * osc + p.noise_sd_hz.clone() * xi_k;
    clip.apply(r)
}

/// Whole rate trace `[n_steps, batch, 1]` (Hz) as tensor ops on the parameters, from the noise
/// `xi` `[n_steps, batch, 1]`: `r_k = clip(DC + A·sin(f·(2π k dt) + φ) + σ·ξ_k)`.
/// Computes exactly (bit for bit) what `n_steps` calls of [`drive_rate_step`] compute.
pub fn drive_rate_trace(
    ctx: &Ctx,
    p: &DriveParams,
    xi: Tensor<3>,
    dt_s: f64,
    clip: RateClip,
) -> Tensor<3> {
    let n_steps = xi.dims()[0];
    let c: Vec<f64> = (0..n_steps)
        .map(|k| 2.0 * std::f64::consts::PI * (k as f64) * dt_s)
        .collect();
    let c = ctx.tensor(c, [n_steps, 1, 1]);
    let u = |t: &Tensor<2>| t.clone().unsqueeze_dim::<3>(0);
    let osc = (u(&p.freq_hz) * c + u(&p.phase_rad)).sin();
    let r = u(&p.dc_hz) + u(&p.amp_hz) * osc + u(&p.noise_sd_hz) * xi;
    clip.apply(r)
}

/// Configuration of the drive-rate stage's noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriveNoise {
    /// RNG seed.
    pub seed: u64,
    /// Distribution of ξ.
    pub kind: NoiseKind,
    /// Same ξ sequence for every batch row (default true: common random numbers).
    pub shared_across_batch: bool,
}

impl DriveNoise {
    /// ξ `[n_steps, batch, 1]` drawn with these settings ([`draw_noise`]).
    pub fn draw(&self, n_steps: usize, batch: usize) -> Vec<f64> {
        draw_noise(
            n_steps,
            batch,
            self.seed,
            self.kind,
            self.shared_across_batch,
        )
    }
}

impl Default for DriveNoise {
    fn default() -> Self {
        Self {
            seed: 0,
            kind: NoiseKind::Gaussian,
            shared_across_batch: true,
        }
    }
}

/// Stage writing `drive_rate_hz` `[1]` (Hz) each step from [`DriveParams`] (tape path: per-step
/// tensor ops on the parameters, so the tape stays O(n_steps); fused path: [`drive_rate_trace`]).
pub struct DriveRate {
    name: String,
    params: DriveParams,
    noise: DriveNoise,
    clip: RateClip,
    xi: Vec<f64>,
    n_steps: usize,
    /// Host copies of (dc, amp, freq, phase, σ) per `[1|batch]` row (streaming path).
    host_p: [Vec<f64>; 5],
    /// Their gradients (stream adjoint).
    host_g: [Vec<f64>; 5],
}

impl RateClip {
    /// The clip of one value on the host (same function as [`RateClip::apply`]; burn's softplus
    /// returns `r` where `β·r > 20`).
    pub fn apply_host(&self, r: f64) -> f64 {
        match *self {
            RateClip::Relu | RateClip::StraightThrough => r.max(0.0),
            RateClip::Softplus {
                sharpness_per_hz: b,
            } => {
                if b * r > 20.0 {
                    r
                } else {
                    (b * r).exp().ln_1p() / b
                }
            }
        }
    }

    /// The derivative the clip passes back at `r` (the backward of [`RateClip::apply`]): 1 for
    /// `r > 0` (Relu), 1 (straight-through), `σ(β·r)` (softplus; 1 where `β·r > 20`).
    pub fn slope_host(&self, r: f64) -> f64 {
        match *self {
            RateClip::Relu => f64::from(r > 0.0),
            RateClip::StraightThrough => 1.0,
            RateClip::Softplus {
                sharpness_per_hz: b,
            } => {
                if b * r > 20.0 {
                    1.0
                } else {
                    1.0 / (1.0 + (-(b * r)).exp())
                }
            }
        }
    }
}

impl DriveRate {
    /// A drive-rate stage named `drive_rate`.
    pub fn new(params: DriveParams, noise: DriveNoise, clip: RateClip) -> Self {
        Self {
            name: "drive_rate".into(),
            params,
            noise,
            clip,
            xi: Vec::new(),
            n_steps: 0,
            host_p: Default::default(),
            host_g: Default::default(),
        }
    }

    /// The whole rate trace `[n_steps, batch, 1]` (Hz), e.g. for `Simulation::add_input`.
    pub fn trace(&self, ctx: &Ctx, batch: usize, n_steps: usize, dt_s: f64) -> Result<Tensor<3>> {
        check::positive("dt_s", dt_s)?;
        self.params.validate(batch)?;
        self.clip.validate()?;
        let xi = self.noise.draw(n_steps, batch);
        Ok(drive_rate_trace(
            ctx,
            &self.params,
            ctx.tensor(xi, [n_steps, batch, 1]),
            dt_s,
            self.clip,
        ))
    }

    /// The buffer declaration of `drive_rate_hz`.
    pub fn spec() -> BufferSpec {
        BufferSpec::new(DRIVE_RATE_HZ, &[1], "Hz")
    }
}

impl Stage for DriveRate {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: Vec::<ReadSpec>::new(),
            writes: vec![Self::spec()],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        self.params.validate(io.batch())?;
        self.clip.validate()?;
        self.n_steps = io.n_steps();
        self.xi = self.noise.draw(self.n_steps, io.batch());
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let b = io.batch();
        let xi = io
            .ctx()
            .tensor(self.xi[t * b..(t + 1) * b].to_vec(), [b, 1]);
        let r = drive_rate_step(&self.params, xi, t, io.dt_s(), self.clip);
        io.write(DRIVE_RATE_HZ, broadcast_rows(r, b))
    }
    fn scan(
        &mut self,
        _inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        let xi = ctx.tensor(self.xi.clone(), [self.n_steps, batch, 1]);
        let r = drive_rate_trace(ctx, &self.params, xi, dt_s, self.clip);
        let r = if r.dims()[1] != batch {
            r.repeat_dim(1, batch)
        } else {
            r
        };
        Some(Ok([(DRIVE_RATE_HZ.to_string(), r)].into_iter().collect()))
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl DriveRate {
    /// Row `b`'s unclipped rate at step `t` (Hz), with `ψ = f·2πtΔt + φ` and `ξ_t`:
    /// `(DC + A·sin ψ + σ·ξ_t, ψ, ξ_t)`, in [`drive_rate_step`]'s operation order.
    fn host_rate(&self, cx: &HostCx, b: usize, t: usize) -> (f64, f64, f64) {
        let c = 2.0 * std::f64::consts::PI * (t as f64) * cx.dt_s;
        let [dc, amp, freq, phase, sd] = &self.host_p;
        let psi = row(freq, b) * c + row(phase, b);
        let xi = self.xi[t * cx.batch + b];
        (
            row(dc, b) + row(amp, b) * psi.sin() + row(sd, b) * xi,
            psi,
            xi,
        )
    }
}

impl HostStage for DriveRate {
    fn host_init(&mut self, _cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let p = &self.params;
        self.host_p = [
            &p.dc_hz,
            &p.amp_hz,
            &p.freq_hz,
            &p.phase_rad,
            &p.noise_sd_hz,
        ]
        .map(|t| to_vec_f64(t.clone()));
        Ok(())
    }
    /// `r = clip(DC + A·sin(f·2πkΔt + φ) + σ·ξ_k)` per row (Hz), as [`drive_rate_step`].
    fn host_step(
        &mut self,
        cx: &HostCx,
        _ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        for (b, out) in outs[0].iter_mut().enumerate() {
            *out = self.clip.apply_host(self.host_rate(cx, b, t).0);
        }
        Ok(())
    }
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        self.host_g = self.host_p.clone().map(|v| vec![0.0; v.len()]);
        Ok(())
    }
    /// `∂r/∂(DC, A, f, φ, σ) = clip'·(1, sin ψ, A·cos ψ·2πkΔt, A·cos ψ, ξ_k)`, `ψ = f·2πkΔt + φ`.
    #[allow(clippy::needless_range_loop)] // several arrays share the index
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, t: usize) -> Result<()> {
        let VjpIo { g_outs, .. } = io;
        let c = 2.0 * std::f64::consts::PI * (t as f64) * cx.dt_s;
        for b in 0..cx.batch {
            let (r, psi, xi) = self.host_rate(cx, b, t);
            let g = g_outs[0][b] * self.clip.slope_host(r);
            let a = row(&self.host_p[1], b) * psi.cos();
            for (k, d) in [1.0, psi.sin(), a * c, a, xi].into_iter().enumerate() {
                let gv = &mut self.host_g[k];
                let i = if gv.len() == 1 { 0 } else { b };
                gv[i] += g * d;
            }
        }
        Ok(())
    }
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        ["dc_hz", "amp_hz", "freq_hz", "phase_rad", "noise_sd_hz"]
            .iter()
            .zip(&self.host_g)
            .map(|(n, g)| (n.to_string(), g.clone()))
            .collect()
    }
}
