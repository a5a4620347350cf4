//! Moment-based initial estimate (MyoGen's `calibrate_realistic_noise_profile`, MODEL.md §4.4).

use crate::emg::noise::{
    NoiseConfig, NoiseParams, NoisePsdModel, PsdModelOptions, excess_kurtosis,
};
use crate::emg::welch::{Average, Welch, WelchConfig};
use crate::error::Result;

use super::data::{RestData, median, pool, remove_mains};
use super::spec::Pooling;

/// Least-squares slope of `log10 P` vs `log10 f` over `[f_a, f_b]` (NaN if < 3 bins).
fn loglog_slope(freqs: &[f64], psd: &[f64], f_a: f64, f_b: f64) -> f64 {
    let pts: Vec<(f64, f64)> = freqs
        .iter()
        .zip(psd)
        .filter(|(f, p)| **f >= f_a && **f <= f_b && **f > 0.0 && **p > 0.0)
        .map(|(f, p)| (f.log10(), p.log10()))
        .collect();
    if pts.len() < 3 {
        return f64::NAN;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

/// MyoGen-style closed-form (moment-based) estimate of the noise parameters from rest data
/// (see the module docs for the deviations). Units: the data's (V), Hz.
///
/// - residual = each channel with mains harmonics removed; `noise_rms_v = √(Σ P·Δf)` of the
///   median-across-channels residual Welch PSD (`nperseg = min(n, 4 fs)`, 75 % overlap, median);
/// - `peak_hz` = argmax of that PSD in [100, 2000] Hz;
/// - slope: measured log-log slope over `[1.2·peak, 0.9·Nyquist]`, inverted linearly through the
///   analytic PSD at input slopes −0.2 and −1.2 (default −0.5 if undetermined);
/// - `analog_hpf_hz`: first frequency below 30 Hz whose PSD ≥ ½·median PSD in
///   `[30, min(max(peak/2, 60), 200)]` Hz (default 10);
/// - `excess_kurtosis` = median over channels of the residual's `m4/m2² − 3`, clamped at 0;
/// - mains: per harmonic, excess power in `f ± 2` Hz over the median density of `f−8..f−2`,
///   `f+2..f+8` Hz on the raw median PSD, `amp_k = √(2·excess)`; amplitude `amp_1/noise_rms`,
///   ratios `amp_k/amp_1`;
/// - `common_mode_fraction` = median pairwise correlation of the channels, clamped to [0, 0.99].
pub fn initial_estimate(data: &RestData, powerline_hz: f64) -> Result<NoiseParams> {
    initial_estimate_with(data, powerline_hz, None)
}

/// [`initial_estimate`] with a prebuilt analytic model for the slope inversion (its `n_samples`
/// must equal the window length; any `nperseg`), which saves building one.
pub fn initial_estimate_with(
    data: &RestData,
    powerline_hz: f64,
    probe_model: Option<&NoisePsdModel>,
) -> Result<NoiseParams> {
    let fs = data.fs_hz;
    let n = data.n_samples();
    let l = n.min((4.0 * fs) as usize).max(64).min(n);
    let cfg = WelchConfig::new(fs, l)
        .with_noverlap(l * 3 / 4)
        .with_average(Average::Median);
    let w = Welch::new(cfg.clone())?;
    let nf = cfg.n_freqs();
    let freqs = cfg.freqs_hz();
    let df = fs / l as f64;
    let resid: Vec<Vec<f64>> = data
        .signals
        .iter()
        .map(|s| remove_mains(s, fs, powerline_hz, 5, 2.0))
        .collect();
    let rp: Vec<Vec<f64>> = resid
        .iter()
        .map(|s| w.psd(s).map(|p| p.density))
        .collect::<Result<_>>()?;
    let raw: Vec<Vec<f64>> = data
        .signals
        .iter()
        .map(|s| w.psd(s).map(|p| p.density))
        .collect::<Result<_>>()?;
    let res_psd = pool(&rp, nf, Pooling::Median);
    let raw_psd = pool(&raw, nf, Pooling::Median);
    let floor = (res_psd.iter().sum::<f64>() * df).sqrt();
    let mut p = NoiseParams {
        noise_rms_v: floor,
        powerline_frequency_drift_hz: 0.3,
        ..NoiseParams::default()
    };
    // peak
    let band: Vec<usize> = (0..nf)
        .filter(|&k| freqs[k] >= 100.0 && freqs[k] <= 2000.0)
        .collect();
    if let Some(&k) = band.iter().max_by(|a, b| {
        res_psd[**a]
            .partial_cmp(&res_psd[**b])
            .unwrap_or(std::cmp::Ordering::Equal)
    }) {
        p.peak_hz = freqs[k];
    }
    // slope inversion through the analytic PSD
    let nyq = fs / 2.0;
    let measured = loglog_slope(&freqs, &res_psd, 1.2 * p.peak_hz, 0.9 * nyq);
    if measured.is_finite() {
        // The probe only needs the smooth broadband shape: a short analytic segment suffices.
        let own;
        let model = match probe_model {
            Some(m) if m.config().n_samples == n => m,
            _ => {
                let mut ncfg = NoiseConfig::new(fs, n);
                ncfg.powerline_hz = 0.0;
                own = NoisePsdModel::new(&ncfg, PsdModelOptions::new(l.min(256)))?;
                &own
            }
        };
        let pfreqs = model.freqs_hz();
        let probe = |s: f64| -> Result<f64> {
            let q = NoiseParams {
                spectral_slope: s,
                excess_kurtosis: 0.0,
                powerline_amplitude: 0.0,
                ..p.clone()
            };
            let psd = model.expected_psd_host(&q)?;
            Ok(loglog_slope(&pfreqs, &psd, 1.2 * p.peak_hz, 0.9 * nyq))
        };
        let (m1, m2) = (probe(-0.2)?, probe(-1.2)?);
        if m1.is_finite() && m2.is_finite() && (m1 - m2).abs() > 1e-6 {
            let a = (-0.2 - -1.2) / (m1 - m2);
            p.spectral_slope = (-0.2 + a * (measured - m1)).clamp(-3.0, 1.0);
        }
    }
    // analog HPF
    let ref_hi = (p.peak_hz / 2.0).clamp(60.0, 200.0);
    let reference = median(
        &(0..nf)
            .filter(|&k| freqs[k] >= 30.0 && freqs[k] <= ref_hi)
            .map(|k| res_psd[k])
            .collect::<Vec<_>>(),
    );
    if reference.is_finite()
        && let Some(k) = (1..nf).find(|&k| freqs[k] < 30.0 && res_psd[k] >= 0.5 * reference)
    {
        p.analog_hpf_hz = freqs[k];
    }
    // kurtosis from moments
    let ks: Vec<f64> = resid.iter().map(|s| excess_kurtosis(s)).collect();
    p.excess_kurtosis = median(&ks).max(0.0);
    // mains
    if powerline_hz > 0.0 {
        let amps: Vec<f64> = (1..=5)
            .map(|h| {
                let f0 = h as f64 * powerline_hz;
                if f0 >= nyq {
                    return 0.0;
                }
                let line: Vec<f64> = (0..nf)
                    .filter(|&k| (freqs[k] - f0).abs() <= 2.0)
                    .map(|k| raw_psd[k])
                    .collect();
                let neigh: Vec<f64> = (0..nf)
                    .filter(|&k| {
                        let d = (freqs[k] - f0).abs();
                        d > 2.0 && d <= 8.0
                    })
                    .map(|k| raw_psd[k])
                    .collect();
                let nd = median(&neigh);
                let excess = line.iter().map(|v| v - nd).sum::<f64>() * df;
                if excess.is_finite() && excess > 0.0 {
                    (2.0 * excess).sqrt()
                } else {
                    0.0
                }
            })
            .collect();
        if amps[0] > 0.0 {
            p.powerline_amplitude = amps[0] / floor;
            for h in 0..5 {
                p.powerline_harmonic_ratios[h] = amps[h] / amps[0];
            }
        } else {
            p.powerline_amplitude = 0.0;
            p.powerline_harmonic_ratios = [1.0, 0.0, 0.0, 0.0, 0.0];
        }
    }
    // common mode from moments
    let k = data.n_channels();
    if k >= 2 {
        let sd: Vec<f64> = data
            .signals
            .iter()
            .map(|s| crate::emg::noise::std_dev(s))
            .collect();
        let mu: Vec<f64> = data
            .signals
            .iter()
            .map(|s| s.iter().sum::<f64>() / n as f64)
            .collect();
        let mut cs = Vec::new();
        for i in 0..k {
            for j in i + 1..k {
                let c: f64 = (0..n)
                    .map(|t| (data.signals[i][t] - mu[i]) * (data.signals[j][t] - mu[j]))
                    .sum::<f64>()
                    / (n as f64 * sd[i] * sd[j]);
                cs.push(c);
            }
        }
        p.common_mode_fraction = median(&cs).clamp(0.0, 0.99);
    }
    Ok(p)
}
