//! The rest data and its target spectra: channel window, PSD pooling, mains removal, medians.

use std::ops::Range;

use serde::Serialize;

use crate::emg::welch::{Welch, median_in_place};
use crate::error::{Error, Result, check};
use crate::io::recording::{Recording, development_channels};

use super::spec::{EstimatorSpec, NoiseCalibrationSpec, Pooling};

/// The rest window of the selected channels (volts, `[channel][sample]`).
#[derive(Clone, Debug)]
pub struct RestData {
    /// Sampling rate (Hz).
    pub fs_hz: f64,
    /// Channel ids (for messages and reports).
    pub channels: Vec<usize>,
    /// Signals, volts.
    pub signals: Vec<Vec<f64>>,
}

impl RestData {
    /// Checks the signals: at least one channel, equal lengths ≥ 16, finite, not flat.
    pub fn new(fs_hz: f64, channels: Vec<usize>, signals: Vec<Vec<f64>>) -> Result<Self> {
        check::positive("fs_hz", fs_hz)?;
        if signals.is_empty() {
            return Err(Error::invalid("channels", "[]", "at least one channel"));
        }
        if channels.len() != signals.len() {
            return Err(Error::shape("channels", signals.len(), channels.len()));
        }
        let n = signals[0].len();
        for (c, s) in channels.iter().zip(&signals) {
            if s.len() != n || n < 16 {
                return Err(Error::invalid(
                    format!("channel {c} length"),
                    s.len(),
                    format!("{n} samples (>= 16), equal for all channels"),
                ));
            }
            let bad = s.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(Error::invalid(
                    format!("channel {c}"),
                    format!("{bad} of {} samples NaN/infinite", s.len()),
                    "finite samples",
                ));
            }
            if crate::emg::noise::std_dev(s) == 0.0 {
                return Err(Error::invalid(
                    format!("channel {c}"),
                    "flat (zero variance)",
                    "a channel with signal",
                ));
            }
        }
        Ok(Self {
            fs_hz,
            channels,
            signals,
        })
    }

    /// Extracts the spec's window and channels from a recording (typed errors: sampling rate,
    /// window outside the recording or the development block, bad channels, non-finite data).
    pub fn from_recording(spec: &NoiseCalibrationSpec, rec: &Recording) -> Result<Self> {
        if rec.fs_hz != spec.data.fs_hz {
            return Err(Error::invalid(
                "data.fs_hz",
                spec.data.fs_hz,
                format!("the recording's sampling rate {} Hz", rec.fs_hz),
            ));
        }
        let [a, b] = spec.data.window;
        if b > rec.n_samples {
            return Err(Error::invalid(
                "data.window",
                format!("[{a}, {b}]"),
                format!("inside the recording [0, {}]", rec.n_samples),
            ));
        }
        let window = a..b;
        let signals = if spec.data.development_block {
            let mut dev = rec.development()?;
            if let Some(ch) = &spec.data.channels {
                dev = dev.with_channels(ch)?;
            }
            dev.emg_v(window)
        } else {
            let ch = spec
                .data
                .channels
                .clone()
                .unwrap_or_else(|| (0..rec.n_emg_channels()).collect());
            rec_window(rec, &ch, window)
        };
        let signals = signals.map_err(|e| match e {
            Error::InvalidParameter {
                field,
                value,
                allowed,
            } if field == "window" => Error::InvalidParameter {
                field: "data.window".into(),
                value,
                allowed,
            },
            e => e,
        })?;
        let channels = spec.data.channels.clone().unwrap_or_else(|| {
            if spec.data.development_block {
                development_channels()
            } else {
                (0..rec.n_emg_channels()).collect()
            }
        });
        Self::new(rec.fs_hz, channels, signals)
    }

    /// Number of channels.
    pub fn n_channels(&self) -> usize {
        self.signals.len()
    }
    /// Window length (samples).
    pub fn n_samples(&self) -> usize {
        self.signals[0].len()
    }
    /// The channel-mean signal `x̄(t) = (1/n) Σ_ch x_ch(t)`.
    pub fn channel_mean(&self) -> Vec<f64> {
        let n = self.n_channels() as f64;
        (0..self.n_samples())
            .map(|t| self.signals.iter().map(|c| c[t]).sum::<f64>() / n)
            .collect()
    }
}

/// Reads channels without the development restriction, mapping NaN into the typed error of
/// [`RestData::new`] (so an all-NaN channel names itself).
fn rec_window(rec: &Recording, channels: &[usize], window: Range<usize>) -> Result<Vec<Vec<f64>>> {
    if channels.is_empty() {
        return Err(Error::invalid(
            "data.channels",
            "[]",
            "at least one channel",
        ));
    }
    channels
        .iter()
        .map(|&c| {
            let s = rec.emg_v.get(c).ok_or_else(|| {
                Error::invalid("data.channels", c, format!("0..{}", rec.n_emg_channels()))
            })?;
            Ok(s[window.clone()].iter().map(|&v| v as f64).collect())
        })
        .collect()
}

/// The target spectra of one estimator.
#[derive(Clone, Debug, Serialize)]
pub struct RestTarget {
    /// Frequencies (Hz), `f_k = k·fs/nperseg`.
    pub freqs_hz: Vec<f64>,
    /// Pooled per-channel PSD (units²/Hz).
    pub psd: Vec<f64>,
    /// PSD of the channel-mean signal (units²/Hz).
    pub mean_channel_psd: Vec<f64>,
    /// Number of channels pooled.
    pub n_channels: usize,
    /// Welch segments per channel.
    pub n_segments: usize,
}

impl RestTarget {
    /// Applies the estimator: per-channel Welch PSD, pooled across channels; and the Welch PSD of
    /// the channel mean.
    pub fn estimate(data: &RestData, est: &EstimatorSpec) -> Result<Self> {
        let cfg = est.welch(data.fs_hz);
        if est.nperseg > data.n_samples() {
            return Err(Error::invalid(
                "estimator.nperseg",
                est.nperseg,
                format!("<= window length {}", data.n_samples()),
            ));
        }
        let w = Welch::new(cfg.clone())?;
        let per: Vec<Vec<f64>> = data
            .signals
            .iter()
            .map(|s| w.psd(s).map(|p| p.density))
            .collect::<Result<_>>()?;
        let nf = cfg.n_freqs();
        let psd = pool(&per, nf, est.pooling);
        let mean_channel_psd = w.psd(&data.channel_mean())?.density;
        Ok(Self {
            freqs_hz: cfg.freqs_hz(),
            psd,
            mean_channel_psd,
            n_channels: data.n_channels(),
            n_segments: cfg.n_segments(data.n_samples()),
        })
    }
}

pub(super) fn pool(per: &[Vec<f64>], nf: usize, how: Pooling) -> Vec<f64> {
    let n = per.len() as f64;
    let mut col = vec![0.0; per.len()];
    (0..nf)
        .map(|k| match how {
            Pooling::Mean => per.iter().map(|p| p[k]).sum::<f64>() / n,
            Pooling::Median => {
                for (c, p) in col.iter_mut().zip(per) {
                    *c = p[k];
                }
                median_in_place(&mut col)
            }
        })
        .collect()
}
/// Removes the mains harmonics `k·f0` (`k = 1..=n_harm`, below Nyquist) by zeroing the DFT bins
/// within `±half_width_hz` (zero-phase, in place of MyoGen's `iirnotch(Q=30)` + `filtfilt`).
pub fn remove_mains(
    x: &[f64],
    fs_hz: f64,
    f0_hz: f64,
    n_harm: usize,
    half_width_hz: f64,
) -> Vec<f64> {
    use rustfft::{FftPlanner, num_complex::Complex64};
    let n = x.len();
    let mut buf: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    let mut planner = FftPlanner::new();
    planner.plan_fft_forward(n).process(&mut buf);
    if f0_hz > 0.0 {
        for (k, b) in buf.iter_mut().enumerate() {
            let f = k.min(n - k) as f64 * fs_hz / n as f64;
            if (1..=n_harm).any(|h| {
                let fh = h as f64 * f0_hz;
                fh < fs_hz / 2.0 && (f - fh).abs() <= half_width_hz
            }) {
                *b = Complex64::new(0.0, 0.0);
            }
        }
    }
    planner.plan_fft_inverse(n).process(&mut buf);
    buf.iter().map(|c| c.re / n as f64).collect()
}

pub(super) fn median(v: &[f64]) -> f64 {
    let mut w: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if w.is_empty() {
        return f64::NAN;
    }
    median_in_place(&mut w)
}
