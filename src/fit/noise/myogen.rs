//! MyoGen's metric: median single-periodogram target and the generated-realisation distance.

use crate::emg::noise::{NoiseConfig, NoiseParams, PsdDistance, generate};
use crate::emg::welch::{Average, Welch, WelchConfig};
use crate::error::{Error, Result};

use super::data::{RestData, pool};
use super::spec::{MyogenMetricSpec, Pooling};

/// MyoGen's reference target: median across channels of one Welch PSD per channel with
/// `nperseg` = window (Hann, 75 % overlap, median averaging — one segment).
pub fn myogen_target(data: &RestData) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = data.n_samples();
    let cfg = WelchConfig::new(data.fs_hz, n)
        .with_noverlap(n * 3 / 4)
        .with_average(Average::Median);
    let w = Welch::new(cfg.clone())?;
    let per: Vec<Vec<f64>> = data
        .signals
        .iter()
        .map(|s| w.psd(s).map(|p| p.density))
        .collect::<Result<_>>()?;
    Ok((cfg.freqs_hz(), pool(&per, cfg.n_freqs(), Pooling::Median)))
}

/// MyoGen's L1 log10-PSD distance (decades) between the recording and parameters `p`: the
/// median across `realisations` generated single-channel windows (seeded from `seed`) of their
/// Welch PSDs (`nperseg` = window), against [`myogen_target`], over `band_hz`.
pub fn myogen_distance(
    data: &RestData,
    cfg: &NoiseConfig,
    p: &NoiseParams,
    realisations: usize,
    seed: u64,
    band_hz: [f64; 2],
) -> Result<f64> {
    let (freqs, target) = myogen_target(data)?;
    let n = data.n_samples();
    if cfg.n_samples != n {
        return Err(Error::invalid(
            "noise config n_samples",
            cfg.n_samples,
            format!("the window length {n}"),
        ));
    }
    let wcfg = WelchConfig::new(data.fs_hz, n)
        .with_noverlap(n * 3 / 4)
        .with_average(Average::Median);
    let w = Welch::new(wcfg.clone())?;
    let per: Vec<Vec<f64>> = (0..realisations as u64)
        .map(|r| {
            let x = generate(cfg, p, seed.wrapping_mul(1_000_003).wrapping_add(r))?;
            w.psd(&x).map(|p| p.density)
        })
        .collect::<Result<_>>()?;
    let model = pool(&per, wcfg.n_freqs(), Pooling::Median);
    PsdDistance::new(band_hz[0], band_hz[1])?.host(&model, &target, &freqs)
}

/// Mean and SD of [`myogen_distance`] over `seeds`.
pub fn myogen_distance_stats(
    data: &RestData,
    cfg: &NoiseConfig,
    p: &NoiseParams,
    m: &MyogenMetricSpec,
) -> Result<(f64, f64)> {
    let d: Vec<f64> = m
        .seeds
        .iter()
        .map(|&s| myogen_distance(data, cfg, p, m.realisations, s, m.band_hz))
        .collect::<Result<_>>()?;
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok((mean, sd))
}
