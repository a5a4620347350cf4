//! Pathwise generator of MyoGen's realistic EMG noise (MODEL.md §4.3), **host code** (f64,
//! rustfft): all random numbers are drawn up front into [`NoiseDraws`] from a seeded `StdRng`,
//! and [`generate_with_draws`] is then a deterministic function of the parameters.
//!
//! Pipeline (MyoGen order), for `n` samples at `fs`:
//! 1. coloured base: `c = Re(IFFT(W·|f|^{slope/2}))[..n]`, `W_k = a_k + i b_k`, `a, b ~ N(0,1)`,
//!    DC bin 0, even FFT length `n + n mod 2`; `c /= std(c)` (PSD ∝ |f|^slope);
//! 2. band emphasis: `x' = b·BP(x) + (1 − b)·x`, BP = 2nd-order Butterworth band-pass on
//!    [`emphasis_edges_hz`], zero-phase; `x' *= std(x)/std(x')`;
//! 3. heavy tails (k > 0.5): `n_sp` distinct random samples get `+ t_ν·(2.5 + 0.3k)`, then
//!    rescale to the previous std ([`NoiseParams::spike_layout`]);
//! 4. analog high-pass (2nd-order Butterworth, zero-phase) if `analog_hpf_hz > 0`;
//! 5. scale to RMS `noise_rms_v`;
//! 6. baseline drift (if its RMS > 0): `Re(IFFT(W·|f|^{−α/2}·1[lo ≤ |f| ≤ hi]))`, de-meaned,
//!    scaled to `baseline_drift_rms_v`, added;
//! 7. mains (if `powerline_hz > 0` and amplitude > 0): `base = A·std(x)`; for harmonics
//!    `h = 1..5` below Nyquist with `r_h > 0`:
//!    `x += base·r_h·AM(t)·sin(2π Σ_{s≤t}(h f0 + h d_s)/fs + φ_h)`, `d` = N(0,1) low-passed
//!    (2nd-order Butterworth 0.5 Hz, zero-phase) scaled to std `σ_d`; `AM = max(0, 1 + m·z/std(z))`,
//!    `z` = N(0,1) low-passed at 2 Hz; `φ_h ~ U(0, 2π)`.
//!
//! Differences from MyoGen (documented, deliberate): zero-phase filtering is done in the frequency
//! domain (multiply the length-`n` DFT by the filter's `|H(f)|²`, i.e. circular filtfilt), where
//! scipy's `sosfiltfilt` runs the recursion forward and backward with odd-extension padding; the
//! two agree away from the first/last few time constants and have the same power response.
//! The random streams are `StdRng`, not numpy's PCG64, so realisations differ sample by sample;
//! statistics (PSD, RMS, kurtosis) are what is compared.
//!
//! Multi-channel: `x_ch = √c·n_common + √(1−c)·n_ch` with independent realisations `n_common`,
//! `n_ch` ([`generate_channels`]); each channel keeps the single-channel PSD, and distinct channels
//! correlate with coefficient `c` (`common_mode_fraction`).

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal, StudentT};
use rustfft::{FftPlanner, num_complex::Complex64};

use super::butter::{bandpass_gain2, emphasis_edges_hz, highpass_gain2, lowpass_gain2};
use super::params::{NoiseConfig, NoiseParams};
use crate::error::{Error, Result};
use crate::kernel::Ctx;

/// Corner of the mains frequency-drift low-pass (Hz), MyoGen constant.
pub const DRIFT_LOWPASS_HZ: f64 = 0.5;
/// Corner of the mains amplitude-modulation low-pass (Hz), MyoGen constant.
pub const AM_LOWPASS_HZ: f64 = 2.0;
/// Largest spike fraction of the heavy-tail stage, MyoGen constant.
pub const MAX_SPIKE_FRACTION: f64 = 0.005;

/// All random numbers of one realisation, drawn up front from one seed.
#[derive(Clone, Debug)]
pub struct NoiseDraws {
    n: usize,
    white: Vec<Complex64>,
    spike_positions: Vec<usize>,
    spike_seed: u64,
    drift_white: Vec<Complex64>,
    fm_white: Vec<f64>,
    am_white: Vec<f64>,
    phases: [f64; 5],
}

fn normal(rng: &mut StdRng) -> f64 {
    <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng)
}

fn complex_white(rng: &mut StdRng, n: usize) -> Vec<Complex64> {
    let re: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
    re.into_iter()
        .map(|a| Complex64::new(a, normal(rng)))
        .collect()
}

impl NoiseDraws {
    /// Draws everything a realisation of `n` samples can need (any parameters), from `seed`:
    /// complex white spectra (base, drift), up to `max(1, ⌊0.005 n⌋)` distinct spike positions in
    /// random order, a seed for the Student-t spike amplitudes (their law depends on the
    /// kurtosis parameter), white noise for the mains FM and AM, and 5 uniform phases.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n_fft = n + n % 2;
        let white = complex_white(&mut rng, n_fft);
        let n_max = ((n as f64 * MAX_SPIKE_FRACTION).floor() as usize).clamp(1, n.max(1));
        let spike_positions = rand::seq::index::sample(&mut rng, n, n_max).into_vec();
        let spike_seed = rng.random::<u64>();
        let drift_white = complex_white(&mut rng, n_fft);
        let fm_white = (0..n).map(|_| normal(&mut rng)).collect();
        let am_white = (0..n).map(|_| normal(&mut rng)).collect();
        let phases = std::array::from_fn(|_| rng.random::<f64>() * 2.0 * std::f64::consts::PI);
        Self {
            n,
            white,
            spike_positions,
            spike_seed,
            drift_white,
            fm_white,
            am_white,
            phases,
        }
    }
}

/// Population standard deviation (numpy `std`, ddof 0).
pub fn std_dev(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt()
}

/// Root mean square `√(mean x²)`.
pub fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

/// Excess kurtosis (scipy `kurtosis(fisher=True, bias=True)`): `m4/m2² − 3`.
pub fn excess_kurtosis(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let (mut m2, mut m4) = (0.0, 0.0);
    for v in x {
        let d = (v - m) * (v - m);
        m2 += d;
        m4 += d * d;
    }
    m2 /= n;
    m4 /= n;
    m4 / (m2 * m2) - 3.0
}

/// `|f|` of DFT bin `k` of length `n` at `fs` (Hz), numpy `fftfreq` folded.
fn bin_hz(k: usize, n: usize, fs: f64) -> f64 {
    k.min(n - k) as f64 * fs / n as f64
}

/// `Re(IFFT(spec · shape(|f_k|)))[..n]` with numpy's 1/N inverse normalisation.
fn shaped_ifft(spec: &[Complex64], n: usize, fs: f64, shape: impl Fn(f64) -> f64) -> Vec<f64> {
    let n_fft = spec.len();
    let mut buf: Vec<Complex64> = spec
        .iter()
        .enumerate()
        .map(|(k, w)| w * shape(bin_hz(k, n_fft, fs)))
        .collect();
    FftPlanner::new().plan_fft_inverse(n_fft).process(&mut buf);
    buf.iter().take(n).map(|c| c.re / n_fft as f64).collect()
}

/// Zero-phase (circular filtfilt) filtering: `IFFT(FFT(x)·g2(|f_k|))` with `g2 = |H|²` the one-pass
/// power response, i.e. amplitude response `|H|²` and power response `|H|⁴`.
pub fn zero_phase_filter(x: &[f64], fs_hz: f64, g2: impl Fn(f64) -> f64) -> Vec<f64> {
    let n = x.len();
    let mut buf: Vec<Complex64> = x.iter().map(|v| Complex64::new(*v, 0.0)).collect();
    let mut planner = FftPlanner::new();
    planner.plan_fft_forward(n).process(&mut buf);
    for (k, b) in buf.iter_mut().enumerate() {
        *b *= g2(bin_hz(k, n, fs_hz));
    }
    planner.plan_fft_inverse(n).process(&mut buf);
    buf.iter().map(|c| c.re / n as f64).collect()
}

fn scale(x: &mut [f64], s: f64) {
    x.iter_mut().for_each(|v| *v *= s);
}

/// One realisation from pre-drawn randomness (see module docs for the pipeline). Output in the
/// units of `noise_rms_v` (V), length `cfg.n_samples`. Errors: invalid config/parameters, draws
/// of another length, an empty emphasis band, an empty drift band with drift on.
pub fn generate_with_draws(
    cfg: &NoiseConfig,
    p: &NoiseParams,
    draws: &NoiseDraws,
) -> Result<Vec<f64>> {
    cfg.validate()?;
    p.validate(cfg.fs_hz)?;
    let (n, fs) = (cfg.n_samples, cfg.fs_hz);
    if draws.n != n {
        return Err(Error::shape("noise draws (n_samples)", n, draws.n));
    }
    // 1. coloured base
    let half = p.spectral_slope / 2.0;
    let mut x = shaped_ifft(&draws.white, n, fs, |f| {
        if f > 0.0 { f.powf(half) } else { 0.0 }
    });
    let s = std_dev(&x);
    if s > 0.0 {
        scale(&mut x, 1.0 / s);
    }
    // 2. band emphasis
    let (f1, f2) = emphasis_edges_hz(p.peak_hz, p.band_bandwidth_hz, fs);
    if f1 >= f2 {
        return Err(Error::invalid(
            "peak_hz",
            p.peak_hz,
            format!("an emphasis band with low edge {f1} Hz < high edge {f2} Hz"),
        ));
    }
    let s0 = std_dev(&x);
    let bp = zero_phase_filter(&x, fs, |f| bandpass_gain2(f, f1, f2, 2, fs));
    let b = p.band_blend;
    let mut x: Vec<f64> = bp
        .iter()
        .zip(&x)
        .map(|(e, v)| b * e + (1.0 - b) * v)
        .collect();
    let s1 = std_dev(&x).max(1e-12);
    scale(&mut x, s0 / s1);
    // 3. heavy tails
    if let Some((n_sp, df, amp_scale)) = p.spike_layout(n) {
        let s0 = std_dev(&x);
        let t = StudentT::new(df)
            .map_err(|e| Error::invalid("excess_kurtosis", p.excess_kurtosis, e.to_string()))?;
        let mut rng = StdRng::seed_from_u64(draws.spike_seed);
        for &pos in draws.spike_positions.iter().take(n_sp) {
            x[pos] += t.sample(&mut rng) * amp_scale;
        }
        let s1 = std_dev(&x);
        scale(&mut x, s0 / s1);
    }
    // 4. analog high-pass
    if p.analog_hpf_hz > 0.0 {
        x = zero_phase_filter(&x, fs, |f| highpass_gain2(f, p.analog_hpf_hz, 2, fs));
    }
    // 5. broadband RMS
    let r = rms(&x);
    if r > 0.0 {
        scale(&mut x, p.noise_rms_v / r);
    }
    // 6. baseline drift
    if p.baseline_drift_rms_v > 0.0 {
        cfg.validate_drift_band()?;
        let (lo, hi) = cfg.drift_band_hz();
        let a = -p.baseline_drift_alpha / 2.0;
        let mut d = shaped_ifft(&draws.drift_white, n, fs, |f| {
            if f > 0.0 && f >= lo && f <= hi {
                f.powf(a)
            } else {
                0.0
            }
        });
        let m = d.iter().sum::<f64>() / n as f64;
        d.iter_mut().for_each(|v| *v -= m);
        let rd = rms(&d);
        if rd > 0.0 {
            scale(&mut d, p.baseline_drift_rms_v / rd);
        }
        x.iter_mut().zip(&d).for_each(|(v, dv)| *v += dv);
    }
    // 7. mains
    if cfg.powerline_hz > 0.0 && p.powerline_amplitude > 0.0 {
        add_powerline(&mut x, cfg, p, draws);
    }
    Ok(x)
}

fn add_powerline(x: &mut [f64], cfg: &NoiseConfig, p: &NoiseParams, draws: &NoiseDraws) {
    let (n, fs) = (x.len(), cfg.fs_hz);
    let nyq = fs / 2.0;
    let base = p.powerline_amplitude * std_dev(x);
    let drift = if p.powerline_frequency_drift_hz > 0.0 {
        let mut d = zero_phase_filter(&draws.fm_white, fs, |f| {
            lowpass_gain2(f, DRIFT_LOWPASS_HZ, 2, fs)
        });
        let s = std_dev(&d);
        if s > 0.0 {
            scale(&mut d, p.powerline_frequency_drift_hz / s);
        }
        d
    } else {
        vec![0.0; n]
    };
    let am = if p.powerline_am_depth > 0.0 {
        let z = zero_phase_filter(&draws.am_white, fs, |f| {
            lowpass_gain2(f, AM_LOWPASS_HZ, 2, fs)
        });
        let s = std_dev(&z);
        if s > 0.0 {
            z.iter()
                .map(|v| (1.0 + p.powerline_am_depth * v / s).max(0.0))
                .collect()
        } else {
            vec![1.0; n]
        }
    } else {
        vec![1.0; n]
    };
    for (h, &ratio) in p.powerline_harmonic_ratios.iter().enumerate() {
        let k = (h + 1) as f64;
        let f_base = cfg.powerline_hz * k;
        if f_base >= nyq || ratio <= 0.0 {
            continue;
        }
        let mut cum = 0.0;
        for t in 0..n {
            cum += f_base + k * drift[t];
            let phase = 2.0 * std::f64::consts::PI * cum / fs + draws.phases[h];
            x[t] += base * ratio * am[t] * phase.sin();
        }
    }
}

/// One realisation with randomness from `seed` ([`NoiseDraws::new`] then [`generate_with_draws`]).
pub fn generate(cfg: &NoiseConfig, p: &NoiseParams, seed: u64) -> Result<Vec<f64>> {
    generate_with_draws(cfg, p, &NoiseDraws::new(cfg.n_samples, seed))
}

/// `n_channels` channels `x_ch = √c·n_common + √(1−c)·n_ch` (`c = common_mode_fraction`),
/// every component an independent realisation; stream seeds derive from `seed`. `[ch][sample]`.
pub fn generate_channels(
    cfg: &NoiseConfig,
    p: &NoiseParams,
    n_channels: usize,
    seed: u64,
) -> Result<Vec<Vec<f64>>> {
    let mut seeder = StdRng::seed_from_u64(seed);
    let c = p.common_mode_fraction;
    let common = if c > 0.0 {
        Some(generate(cfg, p, seeder.random())?)
    } else {
        None
    };
    (0..n_channels)
        .map(|_| {
            let own_seed: u64 = seeder.random();
            let mut own = if c < 1.0 {
                generate(cfg, p, own_seed)?
            } else {
                vec![0.0; cfg.n_samples]
            };
            let (a, b) = (c.sqrt(), (1.0 - c).sqrt());
            match &common {
                Some(cm) => own
                    .iter_mut()
                    .zip(cm)
                    .for_each(|(v, m)| *v = b * *v + a * m),
                None => scale(&mut own, b),
            }
            Ok(own)
        })
        .collect()
}

/// [`generate_channels`] as a `[n_channels, n_samples]` tensor in `ctx`'s device/precision.
pub fn generate_tensor(
    ctx: &Ctx,
    cfg: &NoiseConfig,
    p: &NoiseParams,
    n_channels: usize,
    seed: u64,
) -> Result<Tensor<2>> {
    let ch = generate_channels(cfg, p, n_channels, seed)?;
    let flat: Vec<f64> = ch.into_iter().flatten().collect();
    Ok(ctx.tensor(flat, [n_channels, cfg.n_samples]))
}
