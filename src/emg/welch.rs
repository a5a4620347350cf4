//! Welch power-spectral-density estimator, equivalent to
//! `scipy.signal.welch(x, fs, window="hann", nperseg, noverlap, detrend="constant",
//! scaling="density", return_onesided=True, average="mean" | "median")`.
//!
//! For segments `s = 0..S` (start `s·(L − O)`, `L` = nperseg, `O` = noverlap,
//! `S = ⌊(n − O)/(L − O)⌋`), with the periodic Hann window `w_m = ½ − ½ cos(2πm/L)`:
//!
//! `P_s[k] = c_k · |Σ_m (x_{s,m} − x̄_s) w_m e^{−2πikm/L}|² / (fs · Σ_m w_m²)`  [units²/Hz],
//!
//! `c_k = 2` for `0 < k < L/2` (one-sided doubling), `1` at DC and (even `L`) Nyquist.
//! `average = Mean`: `P[k] = mean_s P_s[k]`; `Median`: `P[k] = median_s P_s[k] / b(S)` with scipy's
//! bias `b(S) = 1 + Σ_{i=1}^{⌊(S−1)/2⌋} (1/(2i+1) − 1/(2i))` (the median of a χ²₂ sample).
//! Frequencies `f_k = k·fs/L`, `k = 0..=⌊L/2⌋`. Host code (f64, rustfft).

use std::sync::Arc;

use rustfft::{Fft, FftPlanner, num_complex::Complex64};

use crate::error::{Error, Result, check};

/// How the per-segment periodograms are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// Arithmetic mean over segments.
    #[default]
    Mean,
    /// Median over segments divided by scipy's median bias `b(S)`.
    Median,
}

/// Welch settings (`fs_hz` in Hz; lengths in samples).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WelchConfig {
    /// Sampling rate (Hz), > 0.
    pub fs_hz: f64,
    /// Segment length `L` (samples), >= 1 and <= the signal length.
    pub nperseg: usize,
    /// Overlap `O` between segments (samples), `O < L`.
    pub noverlap: usize,
    /// Segment averaging.
    pub average: Average,
}

impl WelchConfig {
    /// scipy's defaults for a given segment length: `noverlap = L/2` (integer division), mean.
    pub fn new(fs_hz: f64, nperseg: usize) -> Self {
        Self {
            fs_hz,
            nperseg,
            noverlap: nperseg / 2,
            average: Average::Mean,
        }
    }
    /// Same settings with overlap `noverlap` samples.
    pub fn with_noverlap(mut self, noverlap: usize) -> Self {
        self.noverlap = noverlap;
        self
    }
    /// Same settings with the given averaging.
    pub fn with_average(mut self, average: Average) -> Self {
        self.average = average;
        self
    }
    /// Checks `fs_hz > 0`, `nperseg >= 1`, `noverlap < nperseg` (signal-independent checks).
    pub fn validate(&self) -> Result<()> {
        check::positive("fs_hz", self.fs_hz)?;
        if self.nperseg == 0 {
            return Err(Error::invalid("nperseg", 0, ">= 1"));
        }
        if self.noverlap >= self.nperseg {
            return Err(Error::invalid(
                "noverlap",
                self.noverlap,
                format!("< nperseg = {}", self.nperseg),
            ));
        }
        Ok(())
    }
    /// Number of one-sided frequency bins `⌊L/2⌋ + 1`.
    pub fn n_freqs(&self) -> usize {
        self.nperseg / 2 + 1
    }
    /// One-sided frequency grid `f_k = k·fs/L` (Hz).
    pub fn freqs_hz(&self) -> Vec<f64> {
        welch_freqs_hz(self.fs_hz, self.nperseg)
    }
    /// Number of segments `S = ⌊(n − O)/(L − O)⌋` for a signal of `n >= L` samples.
    pub fn n_segments(&self, n: usize) -> usize {
        (n - self.noverlap) / (self.nperseg - self.noverlap)
    }
}

/// A one-sided power spectral density.
#[derive(Clone, Debug, PartialEq)]
pub struct Psd {
    /// Frequencies (Hz).
    pub freqs_hz: Vec<f64>,
    /// Density (units²/Hz), one value per frequency.
    pub density: Vec<f64>,
}

impl Psd {
    /// Frequency spacing `fs/L` (Hz).
    pub fn df_hz(&self) -> f64 {
        if self.freqs_hz.len() > 1 {
            self.freqs_hz[1] - self.freqs_hz[0]
        } else {
            0.0
        }
    }
    /// Total power `Σ_k P[k]·Δf` (units²), scipy's "integral of the PSD".
    pub fn total_power(&self) -> f64 {
        self.density.iter().sum::<f64>() * self.df_hz()
    }
    /// Power in the closed band `[f_lo, f_hi]` Hz: `Σ_{f_lo ≤ f_k ≤ f_hi} P[k]·Δf` (units²).
    pub fn band_power(&self, f_lo: f64, f_hi: f64) -> f64 {
        self.freqs_hz
            .iter()
            .zip(&self.density)
            .filter(|(f, _)| **f >= f_lo && **f <= f_hi)
            .map(|(_, p)| p)
            .sum::<f64>()
            * self.df_hz()
    }
}

/// One-sided Welch frequency grid `f_k = k·fs/L`, `k = 0..=⌊L/2⌋` (Hz).
pub fn welch_freqs_hz(fs_hz: f64, nperseg: usize) -> Vec<f64> {
    (0..=nperseg / 2)
        .map(|k| k as f64 * fs_hz / nperseg as f64)
        .collect()
}

/// Periodic ("DFT-even", scipy `get_window("hann", L)` / `hann(L, sym=False)`) Hann window
/// `w_m = ½ − ½ cos(2πm/L)`, `m = 0..L`. `L = 1` gives `[1]`.
pub fn hann_periodic(n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![1.0];
    }
    (0..n)
        .map(|m| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * m as f64 / n as f64).cos())
        .collect()
}

/// scipy's `_median_bias(S) = 1 + Σ_{i=1}^{⌊(S−1)/2⌋} (1/(2i+1) − 1/(2i))` (dimensionless).
pub fn median_bias(n_segments: usize) -> f64 {
    let m = n_segments.saturating_sub(1) / 2;
    1.0 + (1..=m)
        .map(|i| {
            let ii = 2.0 * i as f64;
            1.0 / (ii + 1.0) - 1.0 / ii
        })
        .sum::<f64>()
}

/// One-sided doubling factor `c_k` (2 inside, 1 at DC and at the Nyquist bin of even `L`).
pub fn onesided_factor(k: usize, nperseg: usize) -> f64 {
    if k == 0 || (nperseg.is_multiple_of(2) && k == nperseg / 2) {
        1.0
    } else {
        2.0
    }
}

/// numpy-style median (mean of the two middle values for an even count); sorts `v` in place.
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite values"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// A planned Welch estimator (window and FFT plan reused across signals of any length >= L).
pub struct Welch {
    cfg: WelchConfig,
    window: Vec<f64>,
    scale: f64,
    fft: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for Welch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Welch").field("cfg", &self.cfg).finish()
    }
}

impl Welch {
    /// Plans the estimator; errors on `fs_hz <= 0`, `nperseg == 0`, `noverlap >= nperseg`.
    pub fn new(cfg: WelchConfig) -> Result<Self> {
        cfg.validate()?;
        let window = hann_periodic(cfg.nperseg);
        let s2: f64 = window.iter().map(|w| w * w).sum();
        let scale = 1.0 / (cfg.fs_hz * s2);
        let fft = FftPlanner::new().plan_fft_forward(cfg.nperseg);
        Ok(Self {
            cfg,
            window,
            scale,
            fft,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WelchConfig {
        &self.cfg
    }

    /// Per-segment one-sided periodograms `P_s[k]` (units²/Hz), `[S][⌊L/2⌋+1]` (see module docs).
    /// Errors: `nperseg > x.len()`, non-finite samples.
    pub fn segments(&self, x: &[f64]) -> Result<Vec<Vec<f64>>> {
        let l = self.cfg.nperseg;
        if l > x.len() {
            return Err(Error::invalid(
                "nperseg",
                l,
                format!("<= signal length {}", x.len()),
            ));
        }
        check::all_finite("x", x)?;
        let step = l - self.cfg.noverlap;
        let n_seg = self.cfg.n_segments(x.len());
        let nf = self.cfg.n_freqs();
        let mut buf = vec![Complex64::new(0.0, 0.0); l];
        let mut scratch = vec![Complex64::new(0.0, 0.0); self.fft.get_inplace_scratch_len()];
        let mut out = Vec::with_capacity(n_seg);
        for s in 0..n_seg {
            let seg = &x[s * step..s * step + l];
            let mean = seg.iter().sum::<f64>() / l as f64;
            for ((b, v), w) in buf.iter_mut().zip(seg).zip(&self.window) {
                *b = Complex64::new((v - mean) * w, 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            out.push(
                (0..nf)
                    .map(|k| buf[k].norm_sqr() * self.scale * onesided_factor(k, l))
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Welch PSD of `x` (units²/Hz) on `f_k = k·fs/L`.
    pub fn psd(&self, x: &[f64]) -> Result<Psd> {
        let segs = self.segments(x)?;
        let nf = self.cfg.n_freqs();
        let n_seg = segs.len();
        let density = match self.cfg.average {
            Average::Mean => (0..nf)
                .map(|k| segs.iter().map(|p| p[k]).sum::<f64>() / n_seg as f64)
                .collect(),
            Average::Median => {
                let bias = median_bias(n_seg);
                let mut col = vec![0.0; n_seg];
                (0..nf)
                    .map(|k| {
                        for (c, p) in col.iter_mut().zip(&segs) {
                            *c = p[k];
                        }
                        median_in_place(&mut col) / bias
                    })
                    .collect()
            }
        };
        Ok(Psd {
            freqs_hz: self.cfg.freqs_hz(),
            density,
        })
    }
}

/// One-shot Welch PSD: `Welch::new(cfg)?.psd(x)` (see module docs for the equation).
pub fn welch(x: &[f64], cfg: &WelchConfig) -> Result<Psd> {
    Welch::new(cfg.clone())?.psd(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn hann_is_periodic() {
        let w = hann_periodic(4);
        let want = [0.0, 0.5, 1.0, 0.5];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-15);
        }
    }

    #[test]
    fn median_bias_values() {
        // b(1) = b(2) = 1; b(3) = b(4) = 1 + 1/3 − 1/2 = 5/6; b(5) = 5/6 + 1/5 − 1/4.
        assert_eq!(median_bias(1), 1.0);
        assert_eq!(median_bias(2), 1.0);
        assert!((median_bias(3) - 5.0 / 6.0).abs() < 1e-15);
        assert!((median_bias(4) - 5.0 / 6.0).abs() < 1e-15);
        assert!((median_bias(5) - (5.0 / 6.0 + 0.2 - 0.25)).abs() < 1e-15);
    }

    /// Hand-computed: L = 4, w = [0, ½, 1, ½], Σw² = 3/2, fs = 1.
    /// x = [0, 1, 0, −1]: X_1 = −i → P_1 = 2·1/1.5 = 4/3; P_0 = P_2 = 0.
    /// x = [1, 2, 3, 4]: detrended [−1.5, −.5, .5, 1.5]·w = [0, −.25, .5, .75];
    /// X_0 = 1, X_1 = −0.5 + i, X_2 = 0 → P = [2/3, 5/3, 0].
    #[test]
    fn hand_computed_single_segment() {
        let cfg = WelchConfig::new(1.0, 4).with_noverlap(0);
        let p = welch(&[0.0, 1.0, 0.0, -1.0], &cfg).unwrap();
        for (a, b) in p.density.iter().zip([0.0, 4.0 / 3.0, 0.0]) {
            assert!((a - b).abs() < 1e-14, "{:?}", p.density);
        }
        let p = welch(&[1.0, 2.0, 3.0, 4.0], &cfg).unwrap();
        for (a, b) in p.density.iter().zip([2.0 / 3.0, 5.0 / 3.0, 0.0]) {
            assert!((a - b).abs() < 1e-14, "{:?}", p.density);
        }
        assert_eq!(p.freqs_hz, vec![0.0, 0.25, 0.5]);
    }

    /// Three segments (L = 4, no overlap) whose bin-1 periodograms are 4/3·{1, 9, 4}
    /// (amplitudes 1, 3, 2 of [0, a, 0, −a]): mean = 4/3·14/3, median = 4/3·4 / (5/6).
    #[test]
    fn hand_computed_mean_and_median() {
        let x = [
            0.0, 1.0, 0.0, -1.0, 0.0, 3.0, 0.0, -3.0, 0.0, 2.0, 0.0, -2.0,
        ];
        let cfg = WelchConfig::new(1.0, 4).with_noverlap(0);
        let m = welch(&x, &cfg).unwrap();
        assert!((m.density[1] - 4.0 / 3.0 * 14.0 / 3.0).abs() < 1e-13);
        let md = welch(&x, &cfg.clone().with_average(Average::Median)).unwrap();
        assert!((md.density[1] - 4.0 / 3.0 * 4.0 / (5.0 / 6.0)).abs() < 1e-13);
        // With 50 % overlap there are ⌊(12 − 2)/2⌋ = 5 segments.
        assert_eq!(cfg.clone().with_noverlap(2).n_segments(12), 5);
    }

    /// White noise of variance σ² has the one-sided density 2σ²/fs. With 400 000 samples,
    /// L = 256 (3124 half-overlapping segments), the band average over 100 bins has a relative
    /// standard error ≈ 0.2 %; the tolerance is 2 %.
    #[test]
    fn white_noise_level() {
        let mut rng = StdRng::seed_from_u64(7);
        let sigma = 0.3;
        let fs = 1000.0;
        let x: Vec<f64> = (0..400_000)
            .map(|_| {
                sigma * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
            })
            .collect();
        for avg in [Average::Mean, Average::Median] {
            let p = welch(&x, &WelchConfig::new(fs, 256).with_average(avg)).unwrap();
            let band = &p.density[10..110];
            let level = band.iter().sum::<f64>() / band.len() as f64;
            let want = 2.0 * sigma * sigma / fs;
            assert!(
                (level / want - 1.0).abs() < 0.02,
                "{avg:?}: {level} vs {want}"
            );
        }
    }

    /// A sine `A sin(2π f0 t)` on a bin centre: Σ_k P[k]·Δf = A²/2 exactly with mean averaging
    /// (Parseval with the density scaling), and A²/2 / b(S) with median averaging (every segment
    /// has the same periodogram, and scipy divides by the χ² median bias b(31) ≈ 0.709 anyway).
    /// The peak sits at f0.
    #[test]
    fn sine_power_integrates_to_half_a_squared() {
        let fs = 512.0;
        let (amp, f0) = (1.7, 40.0);
        let x: Vec<f64> = (0..4096)
            .map(|n| amp * (2.0 * std::f64::consts::PI * f0 * n as f64 / fs + 0.3).sin())
            .collect();
        for avg in [Average::Mean, Average::Median] {
            let p = welch(&x, &WelchConfig::new(fs, 256).with_average(avg)).unwrap();
            let total = p.total_power();
            let want = match avg {
                Average::Mean => amp * amp / 2.0,
                Average::Median => amp * amp / 2.0 / median_bias(31),
            };
            assert!(
                (total - want).abs() < 1e-9 * amp * amp,
                "{avg:?}: {total} vs {want}"
            );
            let kmax = (0..p.density.len())
                .max_by(|&a, &b| p.density[a].partial_cmp(&p.density[b]).unwrap())
                .unwrap();
            assert_eq!(p.freqs_hz[kmax], f0);
            // Hann main lobe: neighbours carry 1/4 of the centre bin.
            assert!((p.density[kmax + 1] / p.density[kmax] - 0.25).abs() < 1e-9);
        }
    }

    #[test]
    fn odd_nperseg_doubles_last_bin() {
        assert_eq!(onesided_factor(2, 5), 2.0);
        assert_eq!(onesided_factor(2, 4), 1.0);
        assert_eq!(welch_freqs_hz(10.0, 5).len(), 3);
    }

    #[test]
    fn typed_errors() {
        let x = vec![0.0; 16];
        let e = welch(&x, &WelchConfig::new(1.0, 32))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nperseg") && e.contains("32"), "{e}");
        let e = welch(&x, &WelchConfig::new(1.0, 0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nperseg"), "{e}");
        let e = welch(&x, &WelchConfig::new(1.0, 8).with_noverlap(8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("noverlap"), "{e}");
        let e = welch(&x, &WelchConfig::new(0.0, 8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fs_hz"), "{e}");
        let mut y = x.clone();
        y[3] = f64::NAN;
        let e = welch(&y, &WelchConfig::new(1.0, 8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x[3]"), "{e}");
    }
}
