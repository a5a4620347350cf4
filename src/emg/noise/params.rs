//! Parameters of the realistic EMG noise model (MyoGen `generate_realistic_noise`, MODEL.md §4.3)
//! and their flat tensor layout `[batch, N_PARAMS]` for the analytic PSD.

use crate::error::{Error, Result, check};

/// Number of continuous parameters in the flat layout (see [`idx`]).
pub const N_PARAMS: usize = 18;

/// Column indices of the flat parameter layout `[batch, N_PARAMS]`.
pub mod idx {
    /// Broadband RMS after the analog HPF, before drift and mains (signal units, V).
    pub const NOISE_RMS: usize = 0;
    /// PSD slope of the coloured base (`PSD ∝ |f|^slope`).
    pub const SPECTRAL_SLOPE: usize = 1;
    /// Centre of the EMG-band emphasis (Hz).
    pub const PEAK_HZ: usize = 2;
    /// Width of the emphasis band-pass (Hz); MyoGen fixes 1400.
    pub const BAND_BANDWIDTH_HZ: usize = 3;
    /// Blend of the band-passed signal (dimensionless); MyoGen fixes 0.4.
    pub const BAND_BLEND: usize = 4;
    /// Target excess kurtosis of the sparse-spike heavy-tail stage.
    pub const EXCESS_KURTOSIS: usize = 5;
    /// Analog high-pass corner (Hz), 0 = off.
    pub const ANALOG_HPF_HZ: usize = 6;
    /// Mains fundamental amplitude as a fraction of the broadband std.
    pub const POWERLINE_AMPLITUDE: usize = 7;
    /// First of the 5 harmonic ratios (columns 8..13).
    pub const HARMONIC_RATIO_0: usize = 8;
    /// Std of the mains frequency drift (Hz).
    pub const POWERLINE_DRIFT_HZ: usize = 13;
    /// Mains amplitude-modulation depth (dimensionless).
    pub const POWERLINE_AM_DEPTH: usize = 14;
    /// RMS of the band-limited 1/f^α baseline drift (signal units, V), 0 = off.
    pub const BASELINE_DRIFT_RMS: usize = 15;
    /// Exponent α of the drift PSD `∝ f^−α`.
    pub const BASELINE_DRIFT_ALPHA: usize = 16;
    /// Fraction of each channel's noise power common to all channels (0..1).
    pub const COMMON_MODE_FRACTION: usize = 17;
}

/// Names of the flat parameters, in column order.
pub const PARAM_NAMES: [&str; N_PARAMS] = [
    "noise_rms_v",
    "spectral_slope",
    "peak_hz",
    "band_bandwidth_hz",
    "band_blend",
    "excess_kurtosis",
    "analog_hpf_hz",
    "powerline_amplitude",
    "powerline_harmonic_ratio_1",
    "powerline_harmonic_ratio_2",
    "powerline_harmonic_ratio_3",
    "powerline_harmonic_ratio_4",
    "powerline_harmonic_ratio_5",
    "powerline_frequency_drift_hz",
    "powerline_am_depth",
    "baseline_drift_rms_v",
    "baseline_drift_alpha",
    "common_mode_fraction",
];

/// Continuous parameters of the noise model (defaults = MyoGen 0.12 signature defaults).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NoiseParams {
    /// Broadband RMS (signal units; V for myodiff EMG), set exactly after the analog HPF.
    pub noise_rms_v: f64,
    /// PSD slope of the coloured base, `PSD ∝ |f|^slope` (0 white, −1 pink).
    pub spectral_slope: f64,
    /// Centre of the EMG-band emphasis (Hz). MyoGen default 1000 (its docstring says 750).
    pub peak_hz: f64,
    /// Width of the emphasis band-pass (Hz), MyoGen 1400: edges `peak ∓ bw/2`, clipped to
    /// `[0.01, 0.99]·Nyquist`.
    pub band_bandwidth_hz: f64,
    /// Blend of the band-passed signal `x' = b·BP(x) + (1 − b)·x`, MyoGen 0.4.
    pub band_blend: f64,
    /// Target excess kurtosis (sparse Student-t spikes when > 0.5).
    pub excess_kurtosis: f64,
    /// Analog high-pass corner (Hz), 2nd-order Butterworth, zero-phase; 0 disables it.
    pub analog_hpf_hz: f64,
    /// Mains fundamental amplitude as a fraction of the broadband std.
    pub powerline_amplitude: f64,
    /// Amplitude ratios of harmonics 1..5 relative to `powerline_amplitude`.
    pub powerline_harmonic_ratios: [f64; 5],
    /// Std of the slow mains-frequency drift (Hz); harmonic k drifts k times as much.
    pub powerline_frequency_drift_hz: f64,
    /// Amplitude-modulation depth of the mains carriers.
    pub powerline_am_depth: f64,
    /// RMS of the band-limited `f^−α` baseline drift (signal units, V); 0 disables it.
    pub baseline_drift_rms_v: f64,
    /// Exponent α of the baseline-drift PSD.
    pub baseline_drift_alpha: f64,
    /// Fraction `c` of each channel's noise that is common to all channels:
    /// `x_ch = √c·n_common + √(1−c)·n_ch` (pairwise correlation `c`). Not a MyoGen parameter.
    pub common_mode_fraction: f64,
}

impl Default for NoiseParams {
    fn default() -> Self {
        Self {
            noise_rms_v: 1.0,
            spectral_slope: -0.5,
            peak_hz: 1000.0,
            band_bandwidth_hz: 1400.0,
            band_blend: 0.4,
            excess_kurtosis: 3.0,
            analog_hpf_hz: 10.0,
            powerline_amplitude: 0.1,
            powerline_harmonic_ratios: [1.0, 0.5, 0.3, 0.15, 0.08],
            powerline_frequency_drift_hz: 0.3,
            powerline_am_depth: 0.15,
            baseline_drift_rms_v: 0.0,
            baseline_drift_alpha: 1.75,
            common_mode_fraction: 0.0,
        }
    }
}

impl NoiseParams {
    /// Checks every field (typed error naming the field and value). `fs_hz` bounds the corner
    /// frequencies (`< fs/2`).
    pub fn validate(&self, fs_hz: f64) -> Result<()> {
        let nyq = fs_hz / 2.0;
        check::positive("noise_rms_v", self.noise_rms_v)?;
        check::in_range("spectral_slope", self.spectral_slope, -6.0, 6.0)?;
        check::positive("peak_hz", self.peak_hz)?;
        check::positive("band_bandwidth_hz", self.band_bandwidth_hz)?;
        check::in_range("band_blend", self.band_blend, 0.0, 1.0)?;
        check::in_range("excess_kurtosis", self.excess_kurtosis, 0.0, 1000.0)?;
        check::non_negative("analog_hpf_hz", self.analog_hpf_hz)?;
        if self.analog_hpf_hz >= nyq {
            return Err(Error::invalid(
                "analog_hpf_hz",
                self.analog_hpf_hz,
                format!("[0, Nyquist = {nyq})"),
            ));
        }
        check::non_negative("powerline_amplitude", self.powerline_amplitude)?;
        for (i, r) in self.powerline_harmonic_ratios.iter().enumerate() {
            check::non_negative(&format!("powerline_harmonic_ratios[{i}]"), *r)?;
        }
        check::non_negative(
            "powerline_frequency_drift_hz",
            self.powerline_frequency_drift_hz,
        )?;
        check::non_negative("powerline_am_depth", self.powerline_am_depth)?;
        check::non_negative("baseline_drift_rms_v", self.baseline_drift_rms_v)?;
        check::positive("baseline_drift_alpha", self.baseline_drift_alpha)?;
        check::in_range("common_mode_fraction", self.common_mode_fraction, 0.0, 1.0)?;
        Ok(())
    }

    /// The flat layout (column order of [`PARAM_NAMES`]).
    pub fn to_vec(&self) -> Vec<f64> {
        let r = self.powerline_harmonic_ratios;
        vec![
            self.noise_rms_v,
            self.spectral_slope,
            self.peak_hz,
            self.band_bandwidth_hz,
            self.band_blend,
            self.excess_kurtosis,
            self.analog_hpf_hz,
            self.powerline_amplitude,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            self.powerline_frequency_drift_hz,
            self.powerline_am_depth,
            self.baseline_drift_rms_v,
            self.baseline_drift_alpha,
            self.common_mode_fraction,
        ]
    }

    /// Inverse of [`NoiseParams::to_vec`]; errors if `v.len() != N_PARAMS`.
    pub fn from_slice(v: &[f64]) -> Result<Self> {
        if v.len() != N_PARAMS {
            return Err(Error::shape("noise params", N_PARAMS, v.len()));
        }
        Ok(Self {
            noise_rms_v: v[0],
            spectral_slope: v[1],
            peak_hz: v[2],
            band_bandwidth_hz: v[3],
            band_blend: v[4],
            excess_kurtosis: v[5],
            analog_hpf_hz: v[6],
            powerline_amplitude: v[7],
            powerline_harmonic_ratios: [v[8], v[9], v[10], v[11], v[12]],
            powerline_frequency_drift_hz: v[13],
            powerline_am_depth: v[14],
            baseline_drift_rms_v: v[15],
            baseline_drift_alpha: v[16],
            common_mode_fraction: v[17],
        })
    }

    /// Heavy-tail stage constants for a signal of `n` samples (MyoGen `_make_heavy_tailed`):
    /// active iff `k > 0.5`; `n_sp = max(1, ⌊n·min(0.005, k/2000)⌋)` spikes of amplitude
    /// `t_ν·(2.5 + 0.3k)`, `ν = max(4, 12 − k)`. Returns `(n_sp, ν, scale)` or `None`.
    pub fn spike_layout(&self, n: usize) -> Option<(usize, f64, f64)> {
        let k = self.excess_kurtosis;
        if k <= 0.5 {
            return None;
        }
        let frac = (k / 2000.0).min(0.005);
        let n_sp = ((n as f64 * frac).floor() as usize).max(1);
        Some((n_sp, (12.0 - k).max(4.0), 2.5 + 0.3 * k))
    }
}

/// Fixed (non-differentiable) settings of the noise model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiseConfig {
    /// Sampling rate (Hz).
    pub fs_hz: f64,
    /// Length of one generated realisation (samples). The analytic PSD depends on it through
    /// the unit-variance normalisation of the coloured base (lowest bin `fs/n`).
    pub n_samples: usize,
    /// Mains fundamental (Hz), 0 = no mains. Fixed (50 or 60 Hz), not a fit parameter.
    pub powerline_hz: f64,
    /// Lower edge of the baseline-drift band (Hz); `None` = lowest FFT bin `fs/n_fft`.
    pub baseline_drift_low_hz: Option<f64>,
    /// Upper edge of the baseline-drift band (Hz), `< fs/2`.
    pub baseline_drift_high_hz: f64,
}

impl NoiseConfig {
    /// `fs_hz`, `n_samples`, 50 Hz mains, drift band `[fs/n_fft, 1 Hz]` (MyoGen defaults).
    pub fn new(fs_hz: f64, n_samples: usize) -> Self {
        Self {
            fs_hz,
            n_samples,
            powerline_hz: 50.0,
            baseline_drift_low_hz: None,
            baseline_drift_high_hz: 1.0,
        }
    }

    /// Even FFT length used by the spectral-shaping stages, `n + (n mod 2)`.
    pub fn n_fft(&self) -> usize {
        self.n_samples + self.n_samples % 2
    }

    /// Resolved drift band `[low, high]` (Hz).
    pub fn drift_band_hz(&self) -> (f64, f64) {
        let lo = self
            .baseline_drift_low_hz
            .unwrap_or(self.fs_hz / self.n_fft() as f64);
        (lo, self.baseline_drift_high_hz)
    }

    /// Checks the settings (typed errors).
    pub fn validate(&self) -> Result<()> {
        check::positive("fs_hz", self.fs_hz)?;
        check::count_at_least("n_samples", self.n_samples, 16)?;
        check::non_negative("powerline_hz", self.powerline_hz)?;
        let nyq = self.fs_hz / 2.0;
        check::positive("baseline_drift_high_hz", self.baseline_drift_high_hz)?;
        if self.baseline_drift_high_hz >= nyq {
            return Err(Error::invalid(
                "baseline_drift_high_hz",
                self.baseline_drift_high_hz,
                format!("(0, Nyquist = {nyq})"),
            ));
        }
        if let Some(lo) = self.baseline_drift_low_hz {
            check::positive("baseline_drift_low_hz", lo)?;
        }
        Ok(())
    }

    /// Checks that the drift band holds at least one FFT bin (needed only when the drift is on;
    /// MyoGen raises the same error).
    pub fn validate_drift_band(&self) -> Result<()> {
        let (lo, hi) = self.drift_band_hz();
        if lo >= hi {
            return Err(Error::invalid(
                "baseline_drift_low_hz",
                lo,
                format!("< baseline_drift_high_hz = {hi} (lengthen n_samples or raise the edge)"),
            ));
        }
        Ok(())
    }
}
