//! The **analytic expected Welch PSD** of the noise model, as a differentiable burn function of the
//! parameters: `[batch, N_PARAMS]` → `[batch, n_freq]` on the Welch grid `f_k = k·fs/L`.
//!
//! Two parts, each exact in expectation for the generator in `generate.rs` (stationary limit):
//!
//! **Broadband** on the generator's FFT grid `f_j = j·fs/N`, `j = 1..=N/2` (`N` = even FFT length
//! of one realisation), as the variance `σ²_j` of the component at `f_j`:
//! 1. `u₁ ∝ ω_j f_j^slope` (unit total), `ω_j = 1`, `½` at Nyquist;
//! 2. `u₂ ∝ u₁·G²`, `G = b|H_bp|² + (1−b)` (filtfilt: amplitude `|H|²`), unit total;
//! 3. `u₃ = u₂ + V_s·ω_j/(N/2)`, white spikes of variance `V_s = p·ν/(ν−2)·(2.5+0.3k)²`,
//!    `p = max(1/n, min(k/2000, 0.005))` (MyoGen floors `n·p` to an integer count; the smooth
//!    value keeps the PSD differentiable in `k`, relative error of `V_s` ≤ 1/(n·p)),
//!    `ν = max(4, 12−k)`, `V_s = 0` for `k ≤ 0.5`;
//! 4. `u₄ = u₃·|H_hp|⁴`; 5. `σ²_bb = rms²·u₄/Σu₄`;
//! 6. drift `σ²_dr = rms_d²·ω_j f_j^−α 1[lo ≤ f_j ≤ hi] / Σ(…)`.
//!
//! The expected Welch periodogram of a sum of random-phase sinusoids is
//! `E P[k] = c_k/(fs Σw²) · Σ_j σ²_j (|V_k(f_j)|² + |V_k(−f_j)|²)/2`, with
//! `V_k(f) = Σ_m v_k(m) e^{−2πi f m/fs}` and `v_k(m) = w_m e^{−2πikm/L} − (1/L)Σ_n w_n e^{−2πikn/L}`
//! (the "constant" detrend; it only changes bins 0 and 1 for the periodic Hann window). Rows
//! `k ≥ 2` keep the fine bins within `leakage_half_width_bins` Welch bins of `±f_k` (and of
//! `fs − f_k`); rows 0 and 1 are dense (the detrend gives them Dirichlet `1/Δ²` tails).
//!
//! **Mains** in the lag domain: harmonic `h` (skipped at/above Nyquist) has the autocorrelation
//! `R_h(τ) = ½(A r_h)²(rms² + rms_d²)·(1 + m²ρ_z(τ))·exp(−½(2πhσ_d/fs)² g(τ))·cos(2πh f0 τ/fs)`,
//! Gaussian phase noise from the integrated drift (`g(τ) = Var Σ_{s≤τ} d̃_s`, `d̃` the unit-variance
//! 0.5 Hz-low-passed drift) and AM with normalised autocorrelation `ρ_z` of the 2 Hz-low-passed
//! `z` (clipping of `AM` at 0 neglected). Then `E P[k] = Σ_τ R(τ)·Q[τ,k]`,
//! `Q[τ,k] = (2 − δ_τ0)·Re C_k(τ)·c_k/(fs Σw²)`, `C_k(τ) = Σ_m v_k(m+τ) conj v_k(m)`: the Hann
//! window's leakage of the lines at the analysed `nperseg`, FM broadening and AM sidebands.
//!
//! Expected value of `average = "mean"`; scipy's median with its bias correction has the same
//! expectation for χ²₂ bins (broadband), not for the (non-Gaussian) lines.
//! Not modelled: MyoGen's per-realisation normalisation of `d` and `z` by their *sample* std
//! without de-meaning (for realisations shorter than a few seconds this inflates the effective
//! drift/AM), filtfilt edge transients. Host precomputation (f64) builds the constant operators;
//! the parameter-dependent part is burn tensor code (autodiff-ready).

use std::collections::BTreeSet;

use burn::tensor::{Int, Tensor, TensorData};
use rustfft::{FftPlanner, num_complex::Complex64};

use super::butter::{bandpass_gain2_t, highpass_gain2_t, lowpass_gain2, warp_tables};
use super::generate::{AM_LOWPASS_HZ, DRIFT_LOWPASS_HZ};
use super::params::{N_PARAMS, NoiseConfig, NoiseParams, idx};
use crate::emg::welch::{hann_periodic, onesided_factor, welch_freqs_hz};
use crate::error::{Error, Result, check};
use crate::kernel::{Ctx, to_vec_f64};

const TWO_PI: f64 = 2.0 * std::f64::consts::PI;

/// Settings of the analytic PSD beyond the noise configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PsdModelOptions {
    /// Welch segment length `L` (samples) the PSD is predicted for.
    pub nperseg: usize,
    /// Half-width (in Welch bins) of the Hann leakage kept for rows `k ≥ 2`; default 16
    /// (the Hann sidelobes at 16 bins are ≈ −130 dB).
    pub leakage_half_width_bins: usize,
}

impl PsdModelOptions {
    /// `nperseg`, leakage half-width 16 bins.
    pub fn new(nperseg: usize) -> Self {
        Self {
            nperseg,
            leakage_half_width_bins: 16,
        }
    }
}

/// `D(φ) = Σ_{m<L} e^{−iφm}` (Dirichlet kernel), stable at `φ ≡ 0 (mod 2π)`.
fn dirichlet(phi: f64, l: usize) -> Complex64 {
    let r = phi - TWO_PI * (phi / TWO_PI).round();
    let lf = l as f64;
    let ph = Complex64::from_polar(1.0, -r * (lf - 1.0) / 2.0);
    if r.abs() < 1e-12 {
        ph * lf
    } else {
        ph * ((lf * r / 2.0).sin() / (r / 2.0).sin())
    }
}

/// DTFT of the periodic Hann window, `W(φ) = ½D(φ) − ¼D(φ−2π/L) − ¼D(φ+2π/L)`.
fn hann_dtft(phi: f64, l: usize) -> Complex64 {
    let a = TWO_PI / l as f64;
    dirichlet(phi, l) * 0.5 - dirichlet(phi - a, l) * 0.25 - dirichlet(phi + a, l) * 0.25
}

/// `V_k(f)` at angular frequency `θ = 2πf/fs` (detrended, windowed DFT functional).
fn v_k(theta: f64, k: usize, l: usize) -> Complex64 {
    let thk = TWO_PI * k as f64 / l as f64;
    let cbar = hann_dtft(thk, l) / l as f64;
    hann_dtft(theta + thk, l) - cbar * dirichlet(theta, l)
}

/// Normalised autocorrelation `ρ(τ)`, `τ = 0..L`, of white noise after a zero-phase 2nd-order
/// Butterworth low-pass at `fc` (power response `|H|⁴`), on a grid with Δf ≤ 0.005 Hz.
fn lowpass_acf(fc: f64, fs: f64, l: usize) -> Vec<f64> {
    let n = (fs / 0.005).ceil().max(2.0 * l as f64).log2().ceil().exp2() as usize;
    let mut buf: Vec<Complex64> = (0..n)
        .map(|k| {
            let f = k.min(n - k) as f64 * fs / n as f64;
            let g = lowpass_gain2(f, fc, 2, fs);
            Complex64::new(g * g, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_inverse(n).process(&mut buf);
    let r0 = buf[0].re;
    (0..l).map(|t| buf[t].re / r0).collect()
}

/// Host-precomputed operators of the analytic PSD for one `(NoiseConfig, nperseg)`.
#[derive(Clone, Debug)]
pub struct NoisePsdModel {
    cfg: NoiseConfig,
    opts: PsdModelOptions,
    n_fine: usize,
    n_welch: usize,
    ln_f: Vec<f64>,
    omega: Vec<f64>,
    t_f: Vec<f64>,
    cot_f: Vec<f64>,
    drift_shape_mask: Vec<f64>,
    band_idx: Vec<i64>,
    band_w: Vec<f64>,
    band_k: usize,
    dense_rows: Vec<f64>,
    lag_q: Vec<f64>,
    rho_z: Vec<f64>,
    g_d: Vec<f64>,
    harm_cos: Vec<Vec<f64>>,
}

impl NoisePsdModel {
    /// Precomputes the operators. Errors: invalid config, `nperseg < 8`, `nperseg > n_samples`.
    pub fn new(cfg: &NoiseConfig, opts: PsdModelOptions) -> Result<Self> {
        cfg.validate()?;
        let l = opts.nperseg;
        check::count_at_least("nperseg", l, 8)?;
        if l > cfg.n_samples {
            return Err(Error::invalid(
                "nperseg",
                l,
                format!("<= n_samples = {}", cfg.n_samples),
            ));
        }
        let fs = cfg.fs_hz;
        let n = cfg.n_fft();
        let n_fine = n / 2;
        let n_welch = l / 2 + 1;
        let fine_f: Vec<f64> = (1..=n_fine).map(|j| j as f64 * fs / n as f64).collect();
        let ln_f = fine_f.iter().map(|f| f.ln()).collect();
        let omega: Vec<f64> = (1..=n_fine)
            .map(|j| if j == n_fine { 0.5 } else { 1.0 })
            .collect();
        let (t_f, cot_f) = warp_tables(&fine_f, fs);
        let (lo, hi) = cfg.drift_band_hz();
        let drift_shape_mask = fine_f
            .iter()
            .zip(&omega)
            .map(|(f, w)| if *f >= lo && *f <= hi { *w } else { 0.0 })
            .collect();

        let window = hann_periodic(l);
        let s2: f64 = window.iter().map(|w| w * w).sum();
        let row_scale = |k: usize| onesided_factor(k, l) / (fs * s2);
        let theta = |j: usize| TWO_PI * j as f64 / n as f64;
        let weight = |k: usize, j: usize| {
            let (a, b) = (v_k(theta(j), k, l), v_k(-theta(j), k, l));
            row_scale(k) * 0.5 * (a.norm_sqr() + b.norm_sqr())
        };
        // dense rows 0, 1: [n_fine, 2]
        let mut dense_rows = vec![0.0; n_fine * 2];
        for j in 1..=n_fine {
            for k in 0..2 {
                dense_rows[(j - 1) * 2 + k] = weight(k, j);
            }
        }
        // banded rows k = 2..n_welch
        let r = n as f64 / l as f64;
        let hw = opts.leakage_half_width_bins as f64 * r;
        let mut rows: Vec<Vec<usize>> = Vec::with_capacity(n_welch.saturating_sub(2));
        for k in 2..n_welch {
            let c = k as f64 * r;
            let mut set = BTreeSet::new();
            for centre in [c, -c, n as f64 - c] {
                let a = (centre - hw).ceil().max(1.0);
                let b = (centre + hw).floor().min(n_fine as f64);
                if a <= b {
                    set.extend(a as usize..=b as usize);
                }
            }
            rows.push(set.into_iter().collect());
        }
        let band_k = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut band_idx = vec![0i64; rows.len() * band_k];
        let mut band_w = vec![0.0; rows.len() * band_k];
        for (ri, js) in rows.iter().enumerate() {
            let k = ri + 2;
            for (c, &j) in js.iter().enumerate() {
                band_idx[ri * band_k + c] = (j - 1) as i64;
                band_w[ri * band_k + c] = weight(k, j);
            }
        }
        // lag-domain operator Q [L, n_welch]
        let mut a_tau = vec![0.0; l];
        for (t, a) in a_tau.iter_mut().enumerate() {
            *a = (0..l - t).map(|m| window[m + t] * window[m]).sum();
        }
        let mut lag_q = vec![0.0; l * n_welch];
        for k in 0..n_welch {
            let sc = row_scale(k);
            if k < 2 {
                let thk = TWO_PI * k as f64 / l as f64;
                let mean: Complex64 = (0..l)
                    .map(|m| Complex64::from_polar(window[m], -thk * m as f64))
                    .sum::<Complex64>()
                    / l as f64;
                let v: Vec<Complex64> = (0..l)
                    .map(|m| Complex64::from_polar(window[m], -thk * m as f64) - mean)
                    .collect();
                for t in 0..l {
                    let c: Complex64 = (0..l - t).map(|m| v[m + t] * v[m].conj()).sum();
                    lag_q[t * n_welch + k] = if t == 0 { 1.0 } else { 2.0 } * c.re * sc;
                }
            } else {
                for (t, a) in a_tau.iter().enumerate() {
                    let c = a * (TWO_PI * (k * t % l) as f64 / l as f64).cos();
                    lag_q[t * n_welch + k] = if t == 0 { 1.0 } else { 2.0 } * c * sc;
                }
            }
        }
        let rho_z = lowpass_acf(AM_LOWPASS_HZ, fs, l);
        let rho_d = lowpass_acf(DRIFT_LOWPASS_HZ, fs, l);
        let mut g_d = vec![0.0; l];
        let mut cum = 0.0; // Σ_{u=1}^{τ−1} ρ(u)
        for t in 1..l {
            g_d[t] = g_d[t - 1] + rho_d[0] + 2.0 * cum;
            cum += rho_d[t];
        }
        let harm_cos = (1..=5)
            .map(|h| {
                let f = h as f64 * cfg.powerline_hz;
                (0..l).map(|t| (TWO_PI * f * t as f64 / fs).cos()).collect()
            })
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            opts,
            n_fine,
            n_welch,
            ln_f,
            omega,
            t_f,
            cot_f,
            drift_shape_mask,
            band_idx,
            band_w,
            band_k,
            dense_rows,
            lag_q,
            rho_z,
            g_d,
            harm_cos,
        })
    }

    /// The noise configuration.
    pub fn config(&self) -> &NoiseConfig {
        &self.cfg
    }
    /// The Welch grid `f_k = k·fs/L` (Hz) of the output columns.
    pub fn freqs_hz(&self) -> Vec<f64> {
        welch_freqs_hz(self.cfg.fs_hz, self.opts.nperseg)
    }
    /// Number of output frequencies `L/2 + 1`.
    pub fn n_freqs(&self) -> usize {
        self.n_welch
    }

    /// Moves the operators onto `ctx`'s device/precision.
    pub fn on(&self, ctx: &Ctx) -> NoisePsd {
        let f = self.n_fine;
        let l = self.opts.nperseg;
        let rows = self.n_welch - 2;
        let row = |v: &Vec<f64>| ctx.tensor(v.clone(), [1, f]);
        let idx_t = Tensor::<1, Int>::from_ints(
            TensorData::new(self.band_idx.clone(), [self.band_idx.len()]),
            &ctx.device,
        );
        let nyq = self.cfg.fs_hz / 2.0;
        let harmonics = (1..=5)
            .filter(|h| self.cfg.powerline_hz > 0.0 && *h as f64 * self.cfg.powerline_hz < nyq)
            .map(|h| (h, ctx.tensor(self.harm_cos[h - 1].clone(), [1, l])))
            .collect();
        NoisePsd {
            fs_hz: self.cfg.fs_hz,
            n_samples: self.cfg.n_samples,
            n_fine: f,
            n_welch: self.n_welch,
            band_k: self.band_k,
            ln_f: row(&self.ln_f),
            omega: row(&self.omega),
            t_f: row(&self.t_f),
            cot_f: row(&self.cot_f),
            drift_mask: row(&self.drift_shape_mask),
            drift_on: self.drift_shape_mask.iter().any(|v| *v > 0.0),
            band_idx: idx_t,
            band_w: ctx.tensor(self.band_w.clone(), [1, rows, self.band_k]),
            dense_rows: ctx.tensor(self.dense_rows.clone(), [f, 2]),
            lag_q: ctx.tensor(self.lag_q.clone(), [l, self.n_welch]),
            rho_z: ctx.tensor(self.rho_z.clone(), [1, l]),
            g_d: ctx.tensor(self.g_d.clone(), [1, l]),
            harmonics,
        }
    }

    /// Host convenience: the expected PSD of one parameter set (f64 CPU), units²/Hz.
    pub fn expected_psd_host(&self, p: &NoiseParams) -> Result<Vec<f64>> {
        p.validate(self.cfg.fs_hz)?;
        let ctx = Ctx::cpu().f64();
        let op = self.on(&ctx);
        let t = op.expected_psd(ctx.tensor(p.to_vec(), [1, N_PARAMS]))?;
        Ok(to_vec_f64(t))
    }

    /// Host convenience: the expected broadband variance per fine FFT bin `σ²_j`, `j = 1..=N/2`
    /// (drift included, mains excluded), units².
    pub fn fine_variance_host(&self, p: &NoiseParams) -> Result<Vec<f64>> {
        p.validate(self.cfg.fs_hz)?;
        let ctx = Ctx::cpu().f64();
        let op = self.on(&ctx);
        Ok(to_vec_f64(
            op.fine_variance(ctx.tensor(p.to_vec(), [1, N_PARAMS])),
        ))
    }
}

/// The analytic PSD's operators on a device (see [`NoisePsdModel::on`]).
#[derive(Clone, Debug)]
pub struct NoisePsd {
    fs_hz: f64,
    n_samples: usize,
    n_fine: usize,
    n_welch: usize,
    band_k: usize,
    ln_f: Tensor<2>,
    omega: Tensor<2>,
    t_f: Tensor<2>,
    cot_f: Tensor<2>,
    drift_mask: Tensor<2>,
    drift_on: bool,
    band_idx: Tensor<1, Int>,
    band_w: Tensor<3>,
    dense_rows: Tensor<2>,
    lag_q: Tensor<2>,
    rho_z: Tensor<2>,
    g_d: Tensor<2>,
    harmonics: Vec<(usize, Tensor<2>)>,
}

fn col(p: &Tensor<2>, i: usize) -> Tensor<2> {
    let b = p.dims()[0];
    p.clone().slice([0..b, i..i + 1])
}

impl NoisePsd {
    fn check(&self, p: &Tensor<2>) -> Result<()> {
        let d = p.dims();
        if d[1] != N_PARAMS {
            return Err(Error::shape(
                "noise params tensor",
                format!("[batch, {N_PARAMS}]"),
                format!("{d:?}"),
            ));
        }
        Ok(())
    }

    /// Expected broadband (+ drift) variance per fine bin `σ²_j` (units²), `[B, N/2]` from
    /// `[B, N_PARAMS]` (steps 1–6 of the module docs).
    pub fn fine_variance(&self, p: Tensor<2>) -> Tensor<2> {
        let fs = self.fs_hz;
        let nyq = fs / 2.0;
        let n = self.n_samples as f64;
        // 1. coloured base
        let u1 = (col(&p, idx::SPECTRAL_SLOPE) * self.ln_f.clone()).exp() * self.omega.clone();
        let u1 = u1.clone() / u1.sum_dim(1);
        // 2. band emphasis
        let peak = col(&p, idx::PEAK_HZ);
        let half_bw = col(&p, idx::BAND_BANDWIDTH_HZ) * 0.5;
        let f1 = (peak.clone() - half_bw.clone()).clamp_min(0.01 * nyq);
        let f2 = (peak + half_bw).clamp_max(0.99 * nyq);
        let hbp = bandpass_gain2_t(f1, f2, self.t_f.clone(), self.cot_f.clone(), 2, fs);
        let blend = col(&p, idx::BAND_BLEND);
        let g = hbp * blend.clone() - blend + 1.0;
        let u2 = u1 * g.square();
        let u2 = u2.clone() / u2.sum_dim(1);
        // 3. sparse spikes (white)
        let k = col(&p, idx::EXCESS_KURTOSIS);
        let active = k.zeros_like().mask_fill(k.clone().greater_elem(0.5), 1.0);
        let frac = (k.clone() / 2000.0).clamp_max(0.005).clamp_min(1.0 / n);
        let nu = (k.clone().neg() + 12.0).clamp_min(4.0);
        let et2 = nu.clone() / (nu - 2.0);
        let amp = k * 0.3 + 2.5;
        let v_s = active * frac * et2 * amp.square();
        let white = self.omega.clone() / (self.n_fine as f64);
        let u3 = u2 + v_s * white;
        // 4. analog HPF (zero-phase: |H|⁴)
        let hp = highpass_gain2_t(col(&p, idx::ANALOG_HPF_HZ), self.cot_f.clone(), 2, fs);
        let u4 = u3 * hp.square();
        // 5. RMS
        let rms2 = col(&p, idx::NOISE_RMS).square();
        let bb = u4.clone() / u4.sum_dim(1) * rms2;
        // 6. drift
        if self.drift_on {
            let shape = (col(&p, idx::BASELINE_DRIFT_ALPHA).neg() * self.ln_f.clone()).exp()
                * self.drift_mask.clone();
            let shape = shape.clone() / shape.sum_dim(1);
            bb + shape * col(&p, idx::BASELINE_DRIFT_RMS).square()
        } else {
            bb
        }
    }

    /// Welch expectation of a fine-grid variance `[B, N/2]` → `[B, n_freq]` (units²/Hz).
    pub fn welch_of_fine(&self, fine: Tensor<2>) -> Tensor<2> {
        let b = fine.dims()[0];
        let rows = self.n_welch - 2;
        let dense = fine.clone().matmul(self.dense_rows.clone());
        let g = fine
            .select(1, self.band_idx.clone())
            .reshape([b, rows, self.band_k]);
        let banded = (g * self.band_w.clone()).sum_dim(2).reshape([b, rows]);
        Tensor::cat(vec![dense, banded], 1)
    }

    /// Lag-domain autocorrelation of the mains component, `[B, L]` (units²).
    pub fn mains_acf(&self, p: Tensor<2>) -> Option<Tensor<2>> {
        if self.harmonics.is_empty() {
            return None;
        }
        let fs = self.fs_hz;
        let v_ref = col(&p, idx::NOISE_RMS).square() + col(&p, idx::BASELINE_DRIFT_RMS).square();
        let a2 = col(&p, idx::POWERLINE_AMPLITUDE).square() * v_ref * 0.5;
        let m2 = col(&p, idx::POWERLINE_AM_DEPTH).square();
        let am = self.rho_z.clone() * m2 + 1.0;
        let sd2 = col(&p, idx::POWERLINE_DRIFT_HZ).square();
        let mut acc: Option<Tensor<2>> = None;
        for (h, cos) in &self.harmonics {
            let r = col(&p, idx::HARMONIC_RATIO_0 + h - 1);
            let c = -0.5 * (TWO_PI * *h as f64 / fs).powi(2);
            let fm = (self.g_d.clone() * sd2.clone() * c).exp();
            let term = am.clone() * fm * cos.clone() * (a2.clone() * r.square());
            acc = Some(match acc {
                None => term,
                Some(a) => a + term,
            });
        }
        acc
    }

    /// The expected Welch PSD (units²/Hz) of one channel: `[B, N_PARAMS]` → `[B, L/2+1]`
    /// (broadband + drift through the Welch operator, plus mains through the lag operator).
    pub fn expected_psd(&self, p: Tensor<2>) -> Result<Tensor<2>> {
        self.check(&p)?;
        let bb = self.welch_of_fine(self.fine_variance(p.clone()));
        Ok(match self.mains_acf(p) {
            Some(r) => bb + r.matmul(self.lag_q.clone()),
            None => bb,
        })
    }

    /// Expected cross-spectral density between two distinct channels, `c·PSD` (the common-mode
    /// part is identical on every channel): `[B, N_PARAMS]` → `[B, L/2+1]`.
    pub fn expected_cross_psd(&self, p: Tensor<2>) -> Result<Tensor<2>> {
        let c = col(&p, idx::COMMON_MODE_FRACTION);
        Ok(self.expected_psd(p)? * c)
    }

    /// Expected PSD of a bipolar (difference) derivation of two channels, `2(1 − c)·PSD`.
    pub fn expected_bipolar_psd(&self, p: Tensor<2>) -> Result<Tensor<2>> {
        let c = col(&p, idx::COMMON_MODE_FRACTION);
        Ok(self.expected_psd(p)? * (c.neg() + 1.0) * 2.0)
    }

    /// Expected PSD of the mean of `n_channels` channels, `(c + (1 − c)/n)·PSD`.
    pub fn expected_channel_mean_psd(&self, p: Tensor<2>, n_channels: usize) -> Result<Tensor<2>> {
        check::count_at_least("n_channels", n_channels, 1)?;
        let c = col(&p, idx::COMMON_MODE_FRACTION);
        let g = c.clone() + (c.neg() + 1.0) / n_channels as f64;
        Ok(self.expected_psd(p)? * g)
    }
}
