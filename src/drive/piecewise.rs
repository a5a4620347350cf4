//! Time-varying descending drive: a piecewise-linear rate profile through K knots plus noise.
//!
//! With knot times `τ_0 < τ_1 < … < τ_{K−1}` (s, fixed) and knot values `v_j` (Hz, differentiable,
//! one row per batch element), the rate at step `k` (`t_k = k·dt`) is
//!
//! `r_k = clip(Σ_j w_kj v_j + σ·ξ_k, 0, ∞)`,
//!
//! where `w_kj` are the linear-interpolation ("hat") weights: for `τ_j ≤ t_k < τ_{j+1}`,
//! `w_kj = (τ_{j+1} − t_k)/(τ_{j+1} − τ_j)`, `w_k,j+1 = 1 − w_kj`; the profile is held flat before
//! the first knot (`w_k0 = 1`) and after the last (`w_k,K−1 = 1`). σ (Hz) scales the seeded noise ξ
//! ([`DriveNoise::draw`]), and the clip is a [`RateClip`]. The map `v ↦ r` is linear before
//! the clip, so `∂r/∂v` is exact and cheap: the whole trace is one `[T, K] × [K, B]` product.

use burn::tensor::Tensor;

use super::rate::{DRIVE_RATE_HZ, DriveNoise, DriveRate, RateClip, batch_rows, broadcast_rows};
use crate::error::{Error, Result, check};
use crate::kernel::{Ctx, ReadSpec, Stage, StageDecl, StageIo, Traces};

/// Knot times of a piecewise-linear profile (s), validated: finite, ≥ 0, strictly increasing.
#[derive(Clone, Debug, PartialEq)]
pub struct KnotTimes {
    times_s: Vec<f64>,
}

impl KnotTimes {
    /// Validates `times_s`; errors name `knots.times_s[i]` (non-finite, negative, or not strictly
    /// after its predecessor, i.e. a zero or negative segment duration). At least 2 knots.
    pub fn new(times_s: Vec<f64>) -> Result<Self> {
        check::count_at_least("knots.times_s (number of knots)", times_s.len(), 2)?;
        for (i, &t) in times_s.iter().enumerate() {
            let field = format!("knots.times_s[{i}]");
            check::non_negative(&field, t)?;
            if i > 0 && t <= times_s[i - 1] {
                return Err(Error::invalid(
                    field,
                    t,
                    format!(
                        "> knots.times_s[{}] = {} (knots strictly increasing; segment durations > 0)",
                        i - 1,
                        times_s[i - 1]
                    ),
                ));
            }
        }
        Ok(Self { times_s })
    }

    /// `k` knots equally spaced over `[start_s, end_s]` (s).
    pub fn uniform(k: usize, start_s: f64, end_s: f64) -> Result<Self> {
        check::count_at_least("knots.count", k, 2)?;
        check::non_negative("knots.start_s", start_s)?;
        check::finite("knots.end_s", end_s)?;
        if end_s <= start_s {
            return Err(Error::invalid(
                "knots.end_s",
                end_s,
                format!("> knots.start_s = {start_s}"),
            ));
        }
        let step = (end_s - start_s) / (k - 1) as f64;
        Self::new((0..k).map(|j| start_s + step * j as f64).collect())
    }

    /// Number of knots K.
    pub fn len(&self) -> usize {
        self.times_s.len()
    }

    /// Whether empty (never: at least two knots).
    pub fn is_empty(&self) -> bool {
        self.times_s.is_empty()
    }

    /// The knot times (s).
    pub fn times_s(&self) -> &[f64] {
        &self.times_s
    }

    /// The two non-zero interpolation weights at time `t` (s): `(j, w_j, w_{j+1})` with
    /// `w_j + w_{j+1} = 1` (flat extrapolation outside `[τ_0, τ_{K−1}]`).
    pub fn weights_at(&self, t: f64) -> (usize, f64, f64) {
        let k = self.times_s.len();
        if t <= self.times_s[0] {
            return (0, 1.0, 0.0);
        }
        if t >= self.times_s[k - 1] {
            return (k - 2, 0.0, 1.0);
        }
        // Last j with τ_j ≤ t (exists: t > τ_0).
        let j = self.times_s.partition_point(|&x| x <= t) - 1;
        let (a, b) = (self.times_s[j], self.times_s[j + 1]);
        let w = (b - t) / (b - a);
        (j, w, 1.0 - w)
    }

    /// Dense interpolation matrix `W` `[n_steps, K]` (row-major, dimensionless) for `t_k = k·dt`.
    pub fn matrix(&self, n_steps: usize, dt_s: f64) -> Vec<f64> {
        let k = self.times_s.len();
        let mut w = vec![0.0; n_steps * k];
        for s in 0..n_steps {
            let (j, a, b) = self.weights_at(s as f64 * dt_s);
            w[s * k + j] = a;
            w[s * k + j + 1] = b;
        }
        w
    }

    /// Evaluates the profile at times `t` (s) on the host for knot values `v` (Hz).
    pub fn eval(&self, v: &[f64], t: &[f64]) -> Vec<f64> {
        t.iter()
            .map(|&x| {
                let (j, a, b) = self.weights_at(x);
                a * v[j] + b * v[j + 1]
            })
            .collect()
    }
}

/// Stage writing `drive_rate_hz` `[1]` (Hz): the piecewise-linear profile of the module docs.
/// `values_hz` is `[batch or 1, K]`, `noise_sd_hz` `[batch or 1, 1]` (both differentiable).
pub struct PiecewiseLinearDrive {
    knots: KnotTimes,
    values_hz: Tensor<2>,
    noise_sd_hz: Tensor<2>,
    noise: DriveNoise,
    clip: RateClip,
    xi: Vec<f64>,
    n_steps: usize,
}

impl PiecewiseLinearDrive {
    /// A drive stage named `drive_rate`.
    pub fn new(
        knots: KnotTimes,
        values_hz: Tensor<2>,
        noise_sd_hz: Tensor<2>,
        noise: DriveNoise,
        clip: RateClip,
    ) -> Self {
        Self {
            knots,
            values_hz,
            noise_sd_hz,
            noise,
            clip,
            xi: Vec::new(),
            n_steps: 0,
        }
    }

    /// Checks shapes (`values_hz` `[batch or 1, K]`, `noise_sd_hz` `[batch or 1, 1]`) and values
    /// (finite knot values, σ ≥ 0); errors name the field and element.
    pub fn validate(&self, batch: usize) -> Result<()> {
        let k = self.knots.len();
        let v = batch_rows("knots.values_hz", &self.values_hz, batch, k)?;
        for (i, x) in v.iter().enumerate() {
            check::finite(&format!("knots.values_hz[{}][{}]", i / k, i % k), *x)?;
        }
        let sd = batch_rows("noise_sd_hz", &self.noise_sd_hz, batch, 1)?;
        for (i, x) in sd.iter().enumerate() {
            check::non_negative(&format!("noise_sd_hz[{i}]"), *x)?;
        }
        self.clip.validate()
    }

    /// The whole rate trace `[n_steps, batch, 1]` (Hz): `clip(W·vᵀ + σ·ξ)`.
    pub fn trace(&self, ctx: &Ctx, batch: usize, n_steps: usize, dt_s: f64) -> Result<Tensor<3>> {
        check::positive("dt_s", dt_s)?;
        self.validate(batch)?;
        let xi = self.noise.draw(n_steps, batch);
        Ok(self.trace_from(ctx, batch, n_steps, dt_s, &xi))
    }

    fn trace_from(
        &self,
        ctx: &Ctx,
        batch: usize,
        n_steps: usize,
        dt_s: f64,
        xi: &[f64],
    ) -> Tensor<3> {
        let k = self.knots.len();
        let w: Tensor<2> = ctx.tensor(self.knots.matrix(n_steps, dt_s), [n_steps, k]);
        let v = broadcast_rows(self.values_hz.clone(), batch); // [B, K]
        let base = w.matmul(v.transpose()); // [T, B]
        let sd = broadcast_rows(self.noise_sd_hz.clone(), batch).reshape([1, batch]);
        let xi: Tensor<2> = ctx.tensor(xi.to_vec(), [n_steps, batch]);
        let r = base + sd * xi;
        self.clip.apply(r).reshape([n_steps, batch, 1])
    }
}

impl Stage for PiecewiseLinearDrive {
    fn name(&self) -> &str {
        "drive_rate"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: Vec::<ReadSpec>::new(),
            writes: vec![DriveRate::spec()],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        self.validate(io.batch())?;
        self.n_steps = io.n_steps();
        self.xi = self.noise.draw(self.n_steps, io.batch());
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let b = io.batch();
        let (j, wa, wb) = self.knots.weights_at(t as f64 * io.dt_s());
        let v = broadcast_rows(self.values_hz.clone(), b);
        let base = v.clone().slice([0..b, j..j + 1]) * wa + v.slice([0..b, j + 1..j + 2]) * wb;
        let xi = io
            .ctx()
            .tensor(self.xi[t * b..(t + 1) * b].to_vec(), [b, 1]);
        let r = base + broadcast_rows(self.noise_sd_hz.clone(), b) * xi;
        io.write(DRIVE_RATE_HZ, self.clip.apply(r))
    }
    fn scan(
        &mut self,
        _inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        let r = self.trace_from(ctx, batch, self.n_steps, dt_s, &self.xi);
        Some(Ok([(DRIVE_RATE_HZ.to_string(), r)].into_iter().collect()))
    }
}
