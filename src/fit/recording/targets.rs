//! Comparison targets on the bin grid: force per bin and Hann-smoothed discharge rates.

use std::ops::Range;

use crate::error::{Error, Result, check};
use crate::io::recording::{DEV_SAMPLES, Recording};

use super::spec::DataSpec;

/// The comparison targets on the bin grid (host data; built from the recording or synthesised).
#[derive(Clone, Debug)]
pub struct Targets {
    /// Bin width (s).
    pub bin_s: f64,
    /// Number of bins simulated (from t = 0).
    pub n_bins: usize,
    /// Bins inside the fitted window.
    pub loss_bins: Range<usize>,
    /// Target force per bin (%MVC), all `n_bins` (only `loss_bins` enter the loss).
    pub force_pct: Vec<f64>,
    /// Recorded units (identifiers for reports).
    pub units: Vec<usize>,
    /// Target smoothed rates, one `[n_bins]` vector per unit (Hz).
    pub rates_hz: Vec<Vec<f64>>,
    /// Recruitment bin of each unit (first bin with smoothed rate ≥ `recruit_hz`).
    pub recruit_bin: Vec<usize>,
}

/// Unit-sum Hann smoothing matrix `[n, n]` (row-major) of `len` bins (odd, ≥ 1), zero-padded
/// at the edges: `(H c)_b = Σ_k h_k c_{b+k−len/2}`, `h_k ∝ sin²(π(k+1)/(len+1))`.
pub fn hann_matrix(n: usize, len: usize) -> Vec<f64> {
    let len = len.max(1) | 1;
    let h: Vec<f64> = (0..len)
        .map(|k| {
            (std::f64::consts::PI * (k + 1) as f64 / (len + 1) as f64)
                .sin()
                .powi(2)
        })
        .collect();
    let total: f64 = h.iter().sum();
    let half = len / 2;
    let mut m = vec![0.0; n * n];
    for b in 0..n {
        for (k, hk) in h.iter().enumerate() {
            let c = b as isize + k as isize - half as isize;
            if c >= 0 && (c as usize) < n {
                m[b * n + c as usize] = hk / total;
            }
        }
    }
    m
}

/// Smoothed rate (Hz) from counts per bin: `H·c / bin_s`.
pub fn smooth_counts(h: &[f64], counts: &[f64], bin_s: f64) -> Vec<f64> {
    let n = counts.len();
    (0..n)
        .map(|b| (0..n).map(|c| h[b * n + c] * counts[c]).sum::<f64>() / bin_s)
        .collect()
}

/// First bin `≥ from` whose value is ≥ `level`.
pub fn first_at_least(v: &[f64], level: f64, from: usize) -> Option<usize> {
    (from..v.len()).find(|&b| v[b] >= level)
}

/// Smoothing window length in bins (odd).
pub(super) fn smooth_bins(smooth_s: f64, bin_s: f64) -> usize {
    ((smooth_s / bin_s).round() as usize).max(1) | 1
}

impl Targets {
    /// From the development block of `rec`: the window, bins and units of `spec`.
    /// Errors: window outside the development block or empty, bins that do not tile it, an
    /// unknown unit, a unit that never reaches `recruit_hz`, a zero target force.
    pub fn from_recording(spec: &DataSpec, rec: &Recording) -> Result<Self> {
        let dev = rec.development()?;
        let [w0, w1] = spec.window;
        if w0 >= w1 || w1 > DEV_SAMPLES.end {
            return Err(Error::invalid(
                "data.window",
                format!("[{w0}, {w1})"),
                format!(
                    "a non-empty window inside the development block [0, {})",
                    DEV_SAMPLES.end
                ),
            ));
        }
        let bs = spec.bin_samples;
        let n_bins = w1 / bs;
        let first = w0.div_ceil(bs);
        if first >= n_bins {
            return Err(Error::invalid(
                "data.bin_samples",
                bs,
                format!("at most the window length {}", w1 - w0),
            ));
        }
        let fs = dev.fs_hz();
        let bin_s = bs as f64 / fs;
        let f = dev.force_pct_mvc(0..n_bins * bs)?;
        let force_pct: Vec<f64> = (0..n_bins)
            .map(|b| f[b * bs..(b + 1) * bs].iter().sum::<f64>() / bs as f64)
            .collect();
        let h = hann_matrix(n_bins, smooth_bins(spec.smooth_s, bin_s));
        let mut rates_hz = Vec::new();
        let mut recruit_bin = Vec::new();
        for &u in &spec.units {
            if u >= dev.n_units() {
                return Err(Error::invalid(
                    "data.units",
                    u,
                    format!("< {} (decomposed units in the recording)", dev.n_units()),
                ));
            }
            let mut counts = vec![0.0; n_bins];
            for s in dev.discharge_samples(u, 0..n_bins * bs)? {
                counts[s / bs] += 1.0;
            }
            let r = smooth_counts(&h, &counts, bin_s);
            let rb = first_at_least(&r, spec.recruit_hz, 0).ok_or_else(|| {
                Error::invalid(
                    "data.units",
                    u,
                    format!(
                        "a unit whose smoothed rate reaches data.recruit_hz = {} Hz",
                        spec.recruit_hz
                    ),
                )
            })?;
            rates_hz.push(r);
            recruit_bin.push(rb);
        }
        Self::new(
            bin_s,
            n_bins,
            first..n_bins,
            force_pct,
            spec.units.clone(),
            rates_hz,
            recruit_bin,
        )
    }

    /// Checks and assembles targets (errors: shapes, empty window, non-finite values, a target
    /// force that is zero over the window).
    pub fn new(
        bin_s: f64,
        n_bins: usize,
        loss_bins: Range<usize>,
        force_pct: Vec<f64>,
        units: Vec<usize>,
        rates_hz: Vec<Vec<f64>>,
        recruit_bin: Vec<usize>,
    ) -> Result<Self> {
        check::positive("targets.bin_s", bin_s)?;
        if loss_bins.start >= loss_bins.end || loss_bins.end > n_bins {
            return Err(Error::invalid(
                "data.window",
                format!("bins {loss_bins:?}"),
                format!("a non-empty range inside [0, {n_bins})"),
            ));
        }
        if force_pct.len() != n_bins {
            return Err(Error::shape("targets.force_pct", n_bins, force_pct.len()));
        }
        check::all_finite("targets.force_pct", &force_pct)?;
        let f_ref = force_pct[loss_bins.clone()].iter().sum::<f64>() / loss_bins.len() as f64;
        if f_ref.abs() <= f64::EPSILON {
            return Err(Error::invalid(
                "targets.force_pct",
                f_ref,
                "a target force that is not zero over the window (mean ≠ 0 %MVC)",
            ));
        }
        if rates_hz.len() != units.len() || recruit_bin.len() != units.len() {
            return Err(Error::shape(
                "targets.rates_hz",
                units.len(),
                rates_hz.len(),
            ));
        }
        for r in &rates_hz {
            if r.len() != n_bins {
                return Err(Error::shape("targets.rates_hz[j]", n_bins, r.len()));
            }
            check::all_finite("targets.rates_hz", r)?;
        }
        Ok(Self {
            bin_s,
            n_bins,
            loss_bins,
            force_pct,
            units,
            rates_hz,
            recruit_bin,
        })
    }

    /// Mean target force over the window (%MVC).
    pub fn f_ref(&self) -> f64 {
        self.force_pct[self.loss_bins.clone()].iter().sum::<f64>() / self.loss_bins.len() as f64
    }

    /// Rate mask of unit j: bins of the window from `recruit_bin + half_window` on.
    pub fn mask(&self, j: usize, half_window: usize) -> Vec<f64> {
        (0..self.n_bins)
            .map(|b| {
                let on = b >= self.loss_bins.start
                    && b < self.loss_bins.end
                    && b >= self.recruit_bin[j] + half_window;
                if on { 1.0 } else { 0.0 }
            })
            .collect()
    }
}
