//! Siegert's stationary firing rate of a leaky integrate-and-fire neuron driven by white noise
//! (the diffusion approximation), host-side in f64.
//!
//! For `τ dV/dt = −(V − μ) + σ √τ ξ(t)` (ξ unit white noise; the free membrane then has mean μ
//! and variance σ²/2), threshold θ, reset V_r and no refractory period, the mean first-passage
//! time from V_r to θ gives the rate (Siegert 1951; Brunel 2000, eq. 21):
//!
//! ```text
//! 1/ν = τ √π ∫_{(V_r−μ)/σ}^{(θ−μ)/σ} e^{u²} (1 + erf u) du        ν in Hz, τ in s, V in V
//! ```
//!
//! The integrand `e^{u²}(1 + erf u) = erfcx(−u)` is evaluated without cancellation; its tail
//! below `u = −8` is integrated in closed form from `erfcx(x) ≈ (1 − 1/(2x²))/(x√π)`.

use std::f64::consts::PI;

/// Lower end of the numerical quadrature; below it the asymptotic tail is used.
const TAIL_U: f64 = -8.0;
/// Simpson intervals per quadrature piece (even).
const SIMPSON_N: usize = 32;

/// The scaled complementary error function `erfcx(x) = e^{x²} erfc(x)` for `x ≥ 0`
/// (Chebyshev fit of Numerical Recipes' `erfcc`, relative error < 1.2e-7, smooth in x).
pub fn erfcx_nonneg(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t * poly.exp()
}

/// The Siegert integrand `e^{u²}(1 + erf u)` (dimensionless) for any real u.
pub fn siegert_integrand(u: f64) -> f64 {
    if u <= 0.0 {
        erfcx_nonneg(-u)
    } else {
        // 1 + erf u = 2 − erfc u = 2 − erfcx(u)·e^{−u²}
        let e = (u * u).exp();
        2.0 * e - erfcx_nonneg(u)
    }
}

fn simpson(a: f64, b: f64) -> f64 {
    if b <= a {
        return 0.0;
    }
    let h = (b - a) / SIMPSON_N as f64;
    let mut s = siegert_integrand(a) + siegert_integrand(b);
    for k in 1..SIMPSON_N {
        let w = if k % 2 == 1 { 4.0 } else { 2.0 };
        s += w * siegert_integrand(a + h * k as f64);
    }
    s * h / 3.0
}

/// `∫_a^b e^{u²}(1 + erf u) du` (dimensionless), `a ≤ b`: closed-form tail below −8, Simpson
/// pieces on `[max(a, −8), min(b, 0)]` and `[0, b]`.
pub fn siegert_integral(a: f64, b: f64) -> f64 {
    if b <= a {
        return 0.0;
    }
    let mut s = 0.0;
    if a < TAIL_U {
        // ∫ (1 − 1/(2u²))/(|u|√π) du over [a, min(b, −8)]
        let p = -a;
        let q = (-b).max(-TAIL_U);
        s += ((p / q).ln() + 0.25 * (1.0 / (p * p) - 1.0 / (q * q))) / PI.sqrt();
    }
    let lo = a.max(TAIL_U);
    if b > lo {
        if b <= 0.0 || lo >= 0.0 {
            s += simpson(lo, b);
        } else {
            s += simpson(lo, 0.0) + simpson(0.0, b);
        }
    }
    s
}

/// Siegert's rate (Hz, see the module docs) for membrane time constant `tau_s` (s), mean `mu_v`
/// (V), noise amplitude `sigma_v` (V; the free membrane's SD is `σ/√2`), threshold `theta_v`
/// and reset `reset_v` (V, below θ). Returns 0 when the mean first-passage time overflows.
pub fn siegert_rate_hz(tau_s: f64, mu_v: f64, sigma_v: f64, theta_v: f64, reset_v: f64) -> f64 {
    let a = (reset_v - mu_v) / sigma_v;
    let b = (theta_v - mu_v) / sigma_v;
    if b > 26.0 {
        return 0.0; // e^{b²} overflows the mean first-passage time: silent
    }
    let i = siegert_integral(a, b);
    let r = 1.0 / (tau_s * PI.sqrt() * i);
    if r.is_finite() { r } else { 0.0 }
}

/// Coefficient of variation of the inter-spike interval of the same diffusion LIF (Brunel 2000,
/// eq. 22; dimensionless), given its rate `rate_hz` from [`siegert_rate_hz`]:
///
/// ```text
/// CV² = 2π (ν τ)² ∫_{(V_r−μ)/σ}^{(θ−μ)/σ} e^{x²} dx ∫_{−∞}^{x} e^{y²} (1 + erf y)² dy
/// ```
///
/// Trapezoid on a grid from −8 (the inner integrand `erfcx(−y)² e^{−y²}` is < 1e-29 below), with
/// the outer tail below −8 in closed form (`e^{x²} F(x) ≈ 1/(2π|x|³)`). Returns 1 (the Poisson
/// value) where the unit is silent or deep in the escape regime (`(θ−μ)/σ > 5`).
pub fn siegert_cv(
    tau_s: f64,
    mu_v: f64,
    sigma_v: f64,
    theta_v: f64,
    reset_v: f64,
    rate_hz: f64,
) -> f64 {
    let a = (reset_v - mu_v) / sigma_v;
    let b = (theta_v - mu_v) / sigma_v;
    if b > 5.0 || rate_hz <= 0.0 || b <= a {
        return 1.0;
    }
    let tail = |lo: f64, hi: f64| (1.0 / (hi * hi) - 1.0 / (lo * lo)) / (4.0 * PI);
    let mut outer = 0.0;
    if b <= TAIL_U {
        outer = tail(a, b);
    } else {
        if a < TAIL_U {
            outer += tail(a, TAIL_U);
        }
        const M: usize = 128;
        let h = (b - TAIL_U) / M as f64;
        let inner_f = |y: f64| {
            let e = siegert_integrand(y);
            e * e * (-y * y).exp()
        };
        let mut f_cum = 0.0;
        let mut prev_inner = inner_f(TAIL_U);
        let mut prev_outer: Option<f64> = None;
        for k in 1..=M {
            let x = TAIL_U + h * k as f64;
            let cur = inner_f(x);
            f_cum += 0.5 * h * (prev_inner + cur);
            prev_inner = cur;
            if x >= a {
                let o = (x * x).exp() * f_cum;
                if let Some(p) = prev_outer {
                    outer += 0.5 * h * (p + o);
                }
                prev_outer = Some(o);
            }
        }
    }
    let nt = rate_hz * tau_s;
    let cv2 = 2.0 * PI * nt * nt * outer;
    if cv2.is_finite() {
        cv2.max(0.0).sqrt()
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrand_matches_erf_identity() {
        // e^{u²}(1+erf u) at u = −1, 0, 1 (erf values from tables).
        let erf1 = 0.842_700_792_949_715;
        assert!((siegert_integrand(0.0) - 1.0).abs() < 1e-6);
        assert!((siegert_integrand(1.0) - 1f64.exp() * (1.0 + erf1)).abs() < 1e-6);
        assert!((siegert_integrand(-1.0) - 1f64.exp() * (1.0 - erf1)).abs() < 1e-6);
    }

    #[test]
    fn mean_driven_limit_is_the_deterministic_lif() {
        // σ → 0, μ > θ: 1/ν → τ ln((μ − V_r)/(μ − θ)).
        let (tau, mu, th, vr) = (0.02, 0.015, 0.010, 0.0);
        let nu = siegert_rate_hz(tau, mu, 1e-5, th, vr);
        let det = 1.0 / (tau * ((mu - vr) / (mu - th)).ln());
        assert!((nu - det).abs() / det < 2e-3, "{nu} vs {det}");
    }

    #[test]
    fn cv_is_small_when_mean_driven_and_near_one_when_noise_driven() {
        let (tau, th, vr) = (0.02, 0.010, 0.0);
        let nu = siegert_rate_hz(tau, 0.02, 5e-4, th, vr);
        assert!(siegert_cv(tau, 0.02, 5e-4, th, vr, nu) < 0.1);
        let nu = siegert_rate_hz(tau, 0.004, 2e-3, th, vr);
        let cv = siegert_cv(tau, 0.004, 2e-3, th, vr, nu);
        assert!((0.8..1.05).contains(&cv), "{cv}");
    }
}
