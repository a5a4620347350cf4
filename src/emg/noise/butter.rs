//! Magnitude responses of scipy's digital Butterworth filters (`scipy.signal.butter(N, Wn, btype)`,
//! bilinear transform with pre-warping), used by the generator (host f64) and by the analytic
//! PSD (burn tensors, differentiable w.r.t. the corner frequencies).
//!
//! The bilinear transform maps the analog axis `jΩ` onto the unit circle with
//! `Ω = 2·fs'·tan(ω/2)`, and scipy pre-warps the corners the same way, so the digital magnitude is
//! the analog Butterworth magnitude at warped frequencies. With `t(f) = tan(π f/fs)`:
//! - low-pass:  `|H|² = 1 / (1 + (t(f)/t(fc))^{2N})`
//! - high-pass: `|H|² = 1 / (1 + (t(fc)/t(f))^{2N})`
//! - band-pass (`lp2bp` of an order-N prototype; digital order 2N): with `Ω = t(f)`,
//!   `Ω₀² = t(f₁)t(f₂)`, `B = t(f₂) − t(f₁)`, `ν = (Ω² − Ω₀²)/(Ω·B)`: `|H|² = 1/(1 + ν^{2N})`.
//!
//! Zero-phase filtering (`sosfiltfilt`) applies `|H|²` to the amplitude, i.e. `|H|⁴` to the power.

use burn::tensor::Tensor;

/// Warped frequency `t(f) = tan(π f/fs)` (dimensionless; `f`, `fs` in Hz).
pub fn warp(f_hz: f64, fs_hz: f64) -> f64 {
    (std::f64::consts::PI * f_hz / fs_hz).tan()
}

/// Low-pass power response `1/(1 + (t(f)/t(fc))^{2N})` (one pass).
pub fn lowpass_gain2(f_hz: f64, fc_hz: f64, order: i32, fs_hz: f64) -> f64 {
    let r = warp(f_hz, fs_hz) / warp(fc_hz, fs_hz);
    1.0 / (1.0 + r.powi(2 * order))
}

/// High-pass power response `1/(1 + (t(fc)/t(f))^{2N})` (one pass); 0 at DC.
pub fn highpass_gain2(f_hz: f64, fc_hz: f64, order: i32, fs_hz: f64) -> f64 {
    if f_hz <= 0.0 {
        return 0.0;
    }
    let r = warp(fc_hz, fs_hz) / warp(f_hz, fs_hz);
    1.0 / (1.0 + r.powi(2 * order))
}

/// Band-pass power response (one pass) with edges `f1 < f2` Hz, prototype order `N`
/// (scipy `butter(N, [f1, f2], "band")`); 0 at DC.
pub fn bandpass_gain2(f_hz: f64, f1_hz: f64, f2_hz: f64, order: i32, fs_hz: f64) -> f64 {
    if f_hz <= 0.0 {
        return 0.0;
    }
    let (w, w1, w2) = (warp(f_hz, fs_hz), warp(f1_hz, fs_hz), warp(f2_hz, fs_hz));
    let nu = (w * w - w1 * w2) / (w * (w2 - w1));
    1.0 / (1.0 + nu.powi(2 * order))
}

/// MyoGen's EMG-band edges (Hz): `[max(peak − bw/2, 0.01·nyq), min(peak + bw/2, 0.99·nyq)]`.
pub fn emphasis_edges_hz(peak_hz: f64, bandwidth_hz: f64, fs_hz: f64) -> (f64, f64) {
    let nyq = fs_hz / 2.0;
    (
        (peak_hz - bandwidth_hz / 2.0).max(0.01 * nyq),
        (peak_hz + bandwidth_hz / 2.0).min(0.99 * nyq),
    )
}

/// Host constants for the tensor responses on a frequency grid: `t(f)` and `1/t(f)`, with `t`
/// capped at 1e4 (Nyquist) and `1/t` at 1e12 (DC) so that f32 powers stay finite.
pub fn warp_tables(freqs_hz: &[f64], fs_hz: f64) -> (Vec<f64>, Vec<f64>) {
    let t: Vec<f64> = freqs_hz
        .iter()
        .map(|&f| warp(f, fs_hz).clamp(1e-12, 1e4))
        .collect();
    let c = t.iter().map(|v| 1.0 / v).collect();
    (t, c)
}

/// `t(fc) = tan(π fc/fs)` of a corner-frequency tensor (any shape).
pub fn warp_t<const D: usize>(fc_hz: Tensor<D>, fs_hz: f64) -> Tensor<D> {
    (fc_hz * (std::f64::consts::PI / fs_hz)).tan()
}

/// Tensor high-pass power response `1/(1 + (t(fc)·cot_f)^{2N})`: `fc` `[B,1]` Hz, `cot_f` `[1,F]`
/// from [`warp_tables`] → `[B,F]`. `fc = 0` gives 1 (filter off) with a zero gradient.
pub fn highpass_gain2_t(fc_hz: Tensor<2>, cot_f: Tensor<2>, order: i32, fs_hz: f64) -> Tensor<2> {
    let r = warp_t(fc_hz, fs_hz) * cot_f;
    (r.powi_scalar(2 * order) + 1.0).recip()
}

/// Tensor low-pass power response `1/(1 + (t_f/t(fc))^{2N})`: `fc` `[B,1]`, `t_f` `[1,F]` → `[B,F]`.
pub fn lowpass_gain2_t(fc_hz: Tensor<2>, t_f: Tensor<2>, order: i32, fs_hz: f64) -> Tensor<2> {
    let r = t_f / warp_t(fc_hz, fs_hz);
    (r.powi_scalar(2 * order) + 1.0).recip()
}

/// Tensor band-pass power response: edges `f1`, `f2` `[B,1]` Hz, `t_f`, `cot_f` `[1,F]` →
/// `[B,F]`, `ν = (t_f − Ω₀²·cot_f)/B`, `|H|² = 1/(1 + ν^{2N})`.
pub fn bandpass_gain2_t(
    f1_hz: Tensor<2>,
    f2_hz: Tensor<2>,
    t_f: Tensor<2>,
    cot_f: Tensor<2>,
    order: i32,
    fs_hz: f64,
) -> Tensor<2> {
    let w1 = warp_t(f1_hz, fs_hz);
    let w2 = warp_t(f2_hz, fs_hz);
    let w0sq = w1.clone() * w2.clone();
    let bw = w2 - w1;
    let nu = (t_f - cot_f * w0sq) / bw;
    (nu.powi_scalar(2 * order) + 1.0).recip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_are_minus_3db() {
        let fs = 2048.0;
        assert!((lowpass_gain2(100.0, 100.0, 2, fs) - 0.5).abs() < 1e-12);
        assert!((highpass_gain2(10.0, 10.0, 2, fs) - 0.5).abs() < 1e-12);
        let (f1, f2) = (300.0, 700.0);
        assert!((bandpass_gain2(f1, f1, f2, 2, fs) - 0.5).abs() < 1e-12);
        assert!((bandpass_gain2(f2, f1, f2, 2, fs) - 0.5).abs() < 1e-12);
        // Unit gain at the geometric centre of the warped edges.
        let fc = (warp(f1, fs) * warp(f2, fs)).sqrt().atan() * fs / std::f64::consts::PI;
        assert!((bandpass_gain2(fc, f1, f2, 2, fs) - 1.0).abs() < 1e-12);
    }

    /// scipy: `butter(2, 10, fs=2048, btype="high")` evaluated with `freqz` at 5 Hz gives
    /// |H|² = 1/(1 + (tan(π·10/2048)/tan(π·5/2048))⁴); check the closed form against a direct
    /// evaluation of the analog prototype 1/(s² + √2 s + 1) at the warped frequency.
    #[test]
    fn highpass_matches_prototype() {
        let fs = 2048.0;
        let f = 5.0;
        let x = warp(10.0, fs) / warp(f, fs); // lowpass-prototype frequency for HP: Ωc/Ω
        let re = 1.0 - x * x;
        let im = std::f64::consts::SQRT_2 * x;
        let g = 1.0 / (re * re + im * im);
        assert!((g - highpass_gain2(f, 10.0, 2, fs)).abs() < 1e-12);
    }

    #[test]
    fn myogen_edges_are_clipped() {
        assert_eq!(
            emphasis_edges_hz(1000.0, 1400.0, 2048.0),
            (300.0, 0.99 * 1024.0)
        );
        assert_eq!(
            emphasis_edges_hz(500.0, 1400.0, 2048.0),
            (10.24, 0.99 * 1024.0)
        );
    }
}
