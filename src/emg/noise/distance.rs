//! MyoGen's PSD distance (`tune_noise_profile_with_optuna`): the mean absolute difference of
//! log10 PSDs over the closed band `[f_lo, f_hi]`,
//! `d = mean_{f_lo ≤ f_k ≤ f_hi} |log10 max(P_a[k], ε) − log10 max(P_b[k], ε)|`, `ε = 1e−30`
//! (decades, dimensionless). Host f64 and burn-tensor versions (for a calibration objective).

use burn::tensor::Tensor;

use crate::error::{Error, Result, check};

/// MyoGen's floor before the logarithm.
pub const LOG_FLOOR: f64 = 1e-30;

/// The band-limited L1 log10-PSD distance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PsdDistance {
    /// Lower band edge (Hz, inclusive).
    pub f_lo_hz: f64,
    /// Upper band edge (Hz, inclusive).
    pub f_hi_hz: f64,
}

impl PsdDistance {
    /// Band `[f_lo, f_hi]` Hz; errors unless `0 <= f_lo < f_hi` (finite).
    pub fn new(f_lo_hz: f64, f_hi_hz: f64) -> Result<Self> {
        check::non_negative("f_lo_hz", f_lo_hz)?;
        check::finite("f_hi_hz", f_hi_hz)?;
        if f_hi_hz <= f_lo_hz {
            return Err(Error::invalid(
                "f_hi_hz",
                f_hi_hz,
                format!("> f_lo_hz = {f_lo_hz}"),
            ));
        }
        Ok(Self { f_lo_hz, f_hi_hz })
    }

    /// The contiguous index range of `freqs_hz` (ascending) inside the band; errors if empty.
    pub fn band_range(&self, freqs_hz: &[f64]) -> Result<std::ops::Range<usize>> {
        let a = freqs_hz.iter().position(|f| *f >= self.f_lo_hz);
        let b = freqs_hz.iter().rposition(|f| *f <= self.f_hi_hz);
        match (a, b) {
            (Some(a), Some(b)) if a <= b => Ok(a..b + 1),
            _ => Err(Error::invalid(
                "psd distance band",
                format!("[{}, {}] Hz", self.f_lo_hz, self.f_hi_hz),
                "a band holding at least one frequency of the grid",
            )),
        }
    }

    /// Host distance between PSDs `a`, `b` on `freqs_hz` (decades).
    pub fn host(&self, a: &[f64], b: &[f64], freqs_hz: &[f64]) -> Result<f64> {
        if a.len() != freqs_hz.len() {
            return Err(Error::shape("psd a", freqs_hz.len(), a.len()));
        }
        if b.len() != freqs_hz.len() {
            return Err(Error::shape("psd b", freqs_hz.len(), b.len()));
        }
        let r = self.band_range(freqs_hz)?;
        let n = r.len() as f64;
        Ok(
            r.map(|k| (a[k].max(LOG_FLOOR).log10() - b[k].max(LOG_FLOOR).log10()).abs())
                .sum::<f64>()
                / n,
        )
    }

    /// Tensor distance: `model` `[B, F]`, `target` `[1, F]` or `[B, F]` on `freqs_hz` → `[B]`
    /// (decades); differentiable w.r.t. both.
    pub fn tensor(
        &self,
        model: Tensor<2>,
        target: Tensor<2>,
        freqs_hz: &[f64],
    ) -> Result<Tensor<1>> {
        let [b, f] = model.dims();
        if f != freqs_hz.len() {
            return Err(Error::shape(
                "model psd",
                format!("[B, {}]", freqs_hz.len()),
                format!("{:?}", model.dims()),
            ));
        }
        let td = target.dims();
        if td[1] != f || (td[0] != 1 && td[0] != b) {
            return Err(Error::shape(
                "target psd",
                format!("[1 or {b}, {f}]"),
                format!("{td:?}"),
            ));
        }
        let r = self.band_range(freqs_hz)?;
        let ln10 = std::f64::consts::LN_10;
        let lm = model.slice([0..b, r.clone()]).clamp_min(LOG_FLOOR).log() / ln10;
        let lt = target.slice([0..td[0], r]).clamp_min(LOG_FLOOR).log() / ln10;
        Ok((lm - lt).abs().mean_dim(1).reshape([b]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Ctx, to_vec_f64};

    #[test]
    fn host_and_tensor_agree_and_use_the_band() {
        let freqs: Vec<f64> = (0..6).map(|k| k as f64 * 10.0).collect();
        let a = vec![1.0, 10.0, 100.0, 1.0, 1.0, 5.0];
        let b = vec![1.0, 1.0, 1.0, 1.0, 10.0, 5.0];
        let d = PsdDistance::new(10.0, 40.0).unwrap();
        // bins 10..40 Hz: |1| + |2| + 0 + |−1| over 4 = 1.0
        let h = d.host(&a, &b, &freqs).unwrap();
        assert!((h - 1.0).abs() < 1e-12, "{h}");
        let ctx = Ctx::cpu().f64();
        let ta = ctx.tensor([a.clone(), b.clone()].concat(), [2, 6]);
        let tb = ctx.tensor(b.clone(), [1, 6]);
        let t = to_vec_f64(d.tensor(ta, tb, &freqs).unwrap());
        assert!((t[0] - 1.0).abs() < 1e-12 && t[1].abs() < 1e-12, "{t:?}");
        assert!(PsdDistance::new(5.0, 5.0).is_err());
        assert!(
            PsdDistance::new(1.0, 2.0)
                .unwrap()
                .host(&a, &b, &freqs)
                .is_err()
        );
    }
}
