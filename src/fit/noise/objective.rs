//! The noise-calibration objective: analytic expected Welch PSD vs the target, autodiff gradient.

use std::ops::Range;

use burn::tensor::Tensor;

use crate::emg::noise::{
    N_PARAMS, NoiseConfig, NoiseParams, NoisePsd, NoisePsdModel, PsdDistance, PsdModelOptions, idx,
};
use crate::error::{Error, Result, check};
use crate::fit::objective::Objective;
use crate::kernel::{Ctx, to_vec_f64};

use super::data::RestTarget;
use super::spec::LossKind;

const LN10: f64 = std::f64::consts::LN_10;
/// Operators on one context.
struct Ops {
    ctx: Ctx,
    psd: NoisePsd,
    target_log10: Tensor<2>,
    ratio_log10: Tensor<2>,
    base: Tensor<2>,
    select: Tensor<2>,
}

/// The noise-calibration objective: physical values of the free parameters → loss (decades), with
/// an exact autodiff gradient (f64) and a batched population evaluation (see the module docs).
pub struct NoiseObjective {
    model: NoisePsdModel,
    free: Vec<usize>,
    base: Vec<f64>,
    band: Range<usize>,
    loss: LossKind,
    cm_weight: f64,
    n_channels: usize,
    plain: Ops,
    grad: Ops,
}

impl NoiseObjective {
    /// Builds the objective. `cfg`: the model's fixed settings (`n_samples` = window length);
    /// `nperseg`: the estimator's segment length; `base`: values of every parameter (free ones
    /// are overwritten); `free`: fitted columns of the flat layout.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &NoiseConfig,
        opts: PsdModelOptions,
        target: &RestTarget,
        band_hz: [f64; 2],
        loss: LossKind,
        common_mode_weight: f64,
        base: &NoiseParams,
        free: Vec<usize>,
    ) -> Result<Self> {
        let model = NoisePsdModel::new(cfg, opts)?;
        Self::from_model(model, target, band_hz, loss, common_mode_weight, base, free)
    }

    /// As [`NoiseObjective::new`] with a prebuilt analytic model.
    pub fn from_model(
        model: NoisePsdModel,
        target: &RestTarget,
        band_hz: [f64; 2],
        loss: LossKind,
        common_mode_weight: f64,
        base: &NoiseParams,
        free: Vec<usize>,
    ) -> Result<Self> {
        let freqs = model.freqs_hz();
        if freqs.len() != target.freqs_hz.len() {
            return Err(Error::shape(
                "target psd",
                freqs.len(),
                target.freqs_hz.len(),
            ));
        }
        let band = PsdDistance::new(band_hz[0], band_hz[1])?.band_range(&freqs)?;
        for (i, &f) in free.iter().enumerate() {
            if f >= N_PARAMS || free[..i].contains(&f) {
                return Err(Error::invalid("free parameter column", f, "distinct, < 18"));
            }
        }
        for (name, v) in [
            ("psd", &target.psd),
            ("mean_channel_psd", &target.mean_channel_psd),
        ] {
            if let Some(k) = band.clone().find(|&k| !(v[k] > 0.0 && v[k].is_finite())) {
                return Err(Error::invalid(
                    format!("target {name} at {} Hz", freqs[k]),
                    v[k],
                    "finite and > 0",
                ));
            }
        }
        let lt: Vec<f64> = band.clone().map(|k| target.psd[k].log10()).collect();
        let lr: Vec<f64> = band
            .clone()
            .map(|k| (target.mean_channel_psd[k] / target.psd[k]).log10())
            .collect();
        let base_v = base.to_vec();
        let mut b0 = base_v.clone();
        let mut sel = vec![0.0; free.len() * N_PARAMS];
        for (i, &f) in free.iter().enumerate() {
            b0[f] = 0.0;
            sel[i * N_PARAMS + f] = 1.0;
        }
        let k = band.len();
        let mk = |ctx: Ctx| Ops {
            psd: model.on(&ctx),
            target_log10: ctx.tensor(lt.clone(), [1, k]),
            ratio_log10: ctx.tensor(lr.clone(), [1, k]),
            base: ctx.tensor(b0.clone(), [1, N_PARAMS]),
            select: ctx.tensor(sel.clone(), [free.len(), N_PARAMS]),
            ctx,
        };
        let plain = mk(Ctx::cpu().f64());
        let grad = mk(Ctx::cpu().f64().autodiff());
        Ok(Self {
            model,
            free,
            base: base_v,
            band,
            loss,
            cm_weight: common_mode_weight,
            n_channels: target.n_channels,
            plain,
            grad,
        })
    }

    /// The full parameter vector (flat layout) for free values `x`.
    pub fn full_params(&self, x: &[f64]) -> Vec<f64> {
        let mut v = self.base.clone();
        for (&f, &xi) in self.free.iter().zip(x) {
            v[f] = xi;
        }
        v
    }

    /// The analytic model.
    pub fn model(&self) -> &NoisePsdModel {
        &self.model
    }

    /// The band's bin range on the model's frequency grid.
    pub fn band(&self) -> Range<usize> {
        self.band.clone()
    }

    fn rho(&self, r: Tensor<2>) -> Tensor<2> {
        match self.loss {
            LossKind::L1Log10 => r.abs(),
            LossKind::L2Log10 => r.square(),
            LossKind::HuberLog10 { delta } => {
                // `* (1/δ)`, not `/ δ`: burn 0.22.1's div-by-scalar backward rounds the scalar
                // to f32 (a 1e-8 relative gradient error)
                ((r * (1.0 / delta)).square() + 1.0).sqrt().sub_scalar(1.0) * (delta * delta)
            }
        }
    }

    /// Losses `[B]` of free-parameter rows `x` `[B, n_free]` on `ops`.
    fn loss_tensor(&self, ops: &Ops, x: Tensor<2>) -> Result<Tensor<1>> {
        let b = x.dims()[0];
        let p = x.matmul(ops.select.clone()) + ops.base.clone();
        let s = ops.psd.expected_psd(p.clone())?;
        let ls = s.slice([0..b, self.band.clone()]).clamp_min(1e-300).log() * (1.0 / LN10);
        let main = self.rho(ls - ops.target_log10.clone()).mean_dim(1);
        let total = if self.cm_weight > 0.0 {
            let c = p.slice([
                0..b,
                idx::COMMON_MODE_FRACTION..idx::COMMON_MODE_FRACTION + 1,
            ]);
            let n = self.n_channels as f64;
            let g = c.clone() + (c.neg() + 1.0) / n;
            let lg = g.clamp_min(1e-300).log() * (1.0 / LN10);
            let cm = self.rho(lg - ops.ratio_log10.clone()).mean_dim(1);
            main + cm * self.cm_weight
        } else {
            main
        };
        Ok(total.reshape([b]))
    }

    fn check_x(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.free.len() {
            return Err(Error::shape("free parameters", self.free.len(), x.len()));
        }
        check::all_finite("free parameters", x)
    }

    /// The analytic PSD (host f64) of free values `x` on the model grid.
    pub fn model_psd(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.check_x(x)?;
        let p = self.plain.ctx.tensor(self.full_params(x), [1, N_PARAMS]);
        Ok(to_vec_f64(self.plain.psd.expected_psd(p)?))
    }
}

impl Objective for NoiseObjective {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.values(&[x.to_vec()])?[0])
    }

    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.check_x(x)?;
        let n = x.len();
        let t = self.grad.ctx.tensor(x.to_vec(), [1, n]).require_grad();
        let l = self.loss_tensor(&self.grad, t.clone())?;
        let grads = l.clone().backward();
        let g = t.grad(&grads).ok_or_else(|| Error::Optimizer {
            method: "noise objective".into(),
            reason: "no gradient reached the parameters".into(),
        })?;
        Ok((to_vec_f64(l)[0], to_vec_f64(g)))
    }

    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        if xs.is_empty() {
            return Ok(Vec::new());
        }
        for x in xs {
            self.check_x(x)?;
        }
        let n = self.free.len();
        let flat: Vec<f64> = xs.iter().flatten().copied().collect();
        let t = self.plain.ctx.tensor(flat, [xs.len(), n]);
        Ok(to_vec_f64(self.loss_tensor(&self.plain, t)?))
    }
}
