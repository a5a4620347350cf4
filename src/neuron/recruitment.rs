//! Recruitment thresholds of a motor-unit pool (MODEL.md §1.6; MyoGen
//! `simulator/core/physiological_distribution.py`, `RecruitmentThresholds`).
//!
//! With `i = 1..N`, recruitment range `RR`, De Luca slope `b` and maximum threshold `RTmax`:
//! - fuglevand: `rt_i = exp(i·ln(RR)/N) / 100`, `rtz = rt − rt_1`;
//! - deluca: `rt_i = (b·i/N)·exp(i·ln(RR/b)/N) / 100`, `rtz = rt − rt_1`;
//! - konstantin: `rt_i = (RTmax/RR)·exp((i−1)·ln(RR)/(N−1))`,
//!   `rtz_i = (RTmax/RR)·(exp((i−1)·ln(RR+1)/N) − 1)`;
//! - combined: `s_i = (b·i/N)·exp(i·ln(RR/b)/N)`,
//!   `rt_i = RTmax/RR + (s_i − s_1)·(RTmax − RTmax/RR)/(s_N − s_1)`, `rtz = rt − rt_1`;
//!
//! and finally `rtz ← rtz · max(rt) / max(rtz)` in every mode. Thresholds are dimensionless
//! (fractions of the maximal excitation).

use std::str::FromStr;

use crate::error::{Error, Result, check};

/// Which threshold distribution to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecruitmentMode {
    /// Fuglevand et al. (1993): exponential, `rt_N / rt_1 = RR^{(N−1)/N}`.
    Fuglevand,
    /// De Luca & Contessa (2012) with slope correction `b` (does not keep RR).
    Deluca,
    /// Konstantin et al. (2020): exponential with explicit maximum `RTmax` (MyoGen's default).
    #[default]
    Konstantin,
    /// De Luca shape rescaled to span exactly `[RTmax/RR, RTmax]` (the Watanabe setup).
    Combined,
}

impl FromStr for RecruitmentMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fuglevand" => Ok(Self::Fuglevand),
            "deluca" => Ok(Self::Deluca),
            "konstantin" => Ok(Self::Konstantin),
            "combined" => Ok(Self::Combined),
            _ => Err(Error::invalid(
                "recruitment_mode",
                s,
                "one of fuglevand, deluca, konstantin, combined",
            )),
        }
    }
}

/// Recruitment thresholds `rt` (sorted, increasing) and their zero-based variant `rtz`
/// (`rtz_1 = 0`, rescaled so that `max(rtz) = max(rt)`), both dimensionless.
#[derive(Clone, Debug, PartialEq)]
pub struct RecruitmentThresholds {
    /// Thresholds `rt_i`, i = 1..N.
    pub rt: Vec<f64>,
    /// Zero-based thresholds `rtz_i`.
    pub rtz: Vec<f64>,
}

impl RecruitmentThresholds {
    /// Thresholds of `n` units in the given mode (equations in the module docs).
    ///
    /// - `recruitment_range` = RR > 1 (ratio of the largest to the smallest threshold);
    /// - `deluca_slope` = b > 0 (used by `deluca` and `combined`);
    /// - `max_threshold` = RTmax > 0 (used by `konstantin` and `combined`).
    ///
    /// Errors: `n < 2` (the `rtz` normalisation divides by `max(rtz)`, which is 0 for one unit),
    /// RR ≤ 1 or non-finite, b ≤ 0, RTmax ≤ 0.
    pub fn new(
        n: usize,
        recruitment_range: f64,
        deluca_slope: f64,
        max_threshold: f64,
        mode: RecruitmentMode,
    ) -> Result<Self> {
        check::count_at_least("n", n, 2)?;
        if !(recruitment_range.is_finite() && recruitment_range > 1.0) {
            return Err(Error::invalid(
                "recruitment_range",
                recruitment_range,
                "finite and > 1",
            ));
        }
        check::positive("deluca_slope", deluca_slope)?;
        check::positive("max_threshold", max_threshold)?;
        let rr = recruitment_range;
        let b = deluca_slope;
        let nf = n as f64;
        let idx = (1..=n).map(|i| i as f64);
        let (rt, rtz): (Vec<f64>, Vec<f64>) = match mode {
            RecruitmentMode::Fuglevand => {
                let rt: Vec<f64> = idx.map(|i| (i * rr.ln() / nf).exp() / 100.0).collect();
                let rtz = rt.iter().map(|v| v - rt[0]).collect();
                (rt, rtz)
            }
            RecruitmentMode::Deluca => {
                let rt: Vec<f64> = idx
                    .map(|i| (b * i / nf) * (i * (rr / b).ln() / nf).exp() / 100.0)
                    .collect();
                let rtz = rt.iter().map(|v| v - rt[0]).collect();
                (rt, rtz)
            }
            RecruitmentMode::Konstantin => {
                let lo = max_threshold / rr;
                let rt = idx
                    .clone()
                    .map(|i| lo * ((i - 1.0) * rr.ln() / (nf - 1.0)).exp())
                    .collect();
                let rtz = idx
                    .map(|i| lo * (((i - 1.0) * (rr + 1.0).ln() / nf).exp() - 1.0))
                    .collect();
                (rt, rtz)
            }
            RecruitmentMode::Combined => {
                let s: Vec<f64> = idx
                    .map(|i| (b * i / nf) * (i * (rr / b).ln() / nf).exp())
                    .collect();
                let (s1, sn) = (s[0], s[n - 1]);
                let lo = max_threshold / rr;
                let rt: Vec<f64> = s
                    .iter()
                    .map(|si| lo + (si - s1) * (max_threshold - lo) / (sn - s1))
                    .collect();
                let rtz = rt.iter().map(|v| v - rt[0]).collect();
                (rt, rtz)
            }
        };
        let max_rt = rt.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let max_rtz = rtz.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if !(max_rtz.is_finite() && max_rtz > 0.0) {
            return Err(Error::config(
                "recruitment_thresholds",
                format!("degenerate thresholds (max rtz = {max_rtz}); check n, RR and the slope"),
            ));
        }
        let rtz = rtz.into_iter().map(|v| v * max_rt / max_rtz).collect();
        check::all_finite("rt", &rt)?;
        Ok(Self { rt, rtz })
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.rt.len()
    }

    /// Whether the pool is empty (never true for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.rt.is_empty()
    }

    /// The effective recruitment range `rt_N / rt_1`.
    pub fn effective_range(&self) -> f64 {
        self.rt[self.rt.len() - 1] / self.rt[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_typed_errors() {
        let m = RecruitmentMode::Combined;
        assert!(matches!(
            RecruitmentThresholds::new(0, 100.0, 5.0, 1.0, m),
            Err(Error::InvalidParameter { ref field, .. }) if field == "n"
        ));
        assert!(RecruitmentThresholds::new(1, 100.0, 5.0, 1.0, m).is_err());
        for rr in [1.0, 0.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                RecruitmentThresholds::new(10, rr, 5.0, 1.0, m),
                Err(Error::InvalidParameter { ref field, .. }) if field == "recruitment_range"
            ));
        }
        assert!(matches!(
            RecruitmentThresholds::new(10, 100.0, 0.0, 1.0, m),
            Err(Error::InvalidParameter { ref field, .. }) if field == "deluca_slope"
        ));
        assert!(matches!(
            RecruitmentThresholds::new(10, 100.0, 5.0, -1.0, m),
            Err(Error::InvalidParameter { ref field, .. }) if field == "max_threshold"
        ));
        assert!("nope".parse::<RecruitmentMode>().is_err());
        assert_eq!(
            "Combined".parse::<RecruitmentMode>().unwrap(),
            RecruitmentMode::Combined
        );
    }

    #[test]
    fn konstantin_and_combined_keep_range_and_maximum() {
        for m in [RecruitmentMode::Konstantin, RecruitmentMode::Combined] {
            let r = RecruitmentThresholds::new(50, 30.0, 5.0, 0.8, m).unwrap();
            assert!((r.rt[49] - 0.8).abs() < 1e-12 && (r.effective_range() - 30.0).abs() < 1e-9);
            assert!(r.rt.windows(2).all(|w| w[1] > w[0]));
            assert_eq!(r.rtz[0], 0.0);
        }
    }
}
