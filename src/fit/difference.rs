//! Central-difference gradients with common random numbers (CRN), the spiking-network gradient
//! estimator chosen by measurement (BENCHMARKS.md §7): every point of a difference runs the same
//! network, inputs and noise, so `L` is a deterministic function of `x` and
//!
//! `∂L/∂x_i ≈ (L(x + h_i e_i) − L(x − h_i e_i)) / 2h_i`
//!
//! costs `2n` loss evaluations (plus one at `x`), run in parallel on every core. Where
//! `x_i − h_i` falls below the parameter's domain (`lower_i`, e.g. σ ≥ 0), the lower point is
//! moved to `lower_i` and the difference divided by the actual spacing.

use crate::error::{Error, Result};
use crate::event::reference::{default_threads, par_map};
use crate::fit::smooth::check_finite_values;

/// Loss at `x` and its CRN central-difference gradient with steps `h` (same units as `x`),
/// evaluating `loss` at the `2n + 1` points on [`default_threads`] threads; `lower` is the
/// domain's lower edge per coordinate (`f64::NEG_INFINITY` for none). `what` names the loss in
/// errors (a non-finite value or gradient is a typed error, never passed on).
pub fn central_gradient(
    what: &str,
    x: &[f64],
    h: &[f64],
    lower: &[f64],
    loss: impl Fn(&[f64]) -> Result<f64> + Sync,
) -> Result<(f64, Vec<f64>)> {
    if h.len() != x.len() {
        return Err(Error::shape("difference steps", x.len(), h.len()));
    }
    if lower.len() != x.len() {
        return Err(Error::shape("difference lower edges", x.len(), lower.len()));
    }
    for &hi in h {
        crate::error::check::positive("difference step", hi)?;
    }
    let (mut points, spacing) = stencil(x, h, lower);
    points.insert(0, x.to_vec());
    let l = par_map(&points, default_threads(), |p| loss(p))?;
    let g: Vec<f64> = (0..x.len())
        .map(|i| (l[1 + 2 * i] - l[2 + 2 * i]) / spacing[i])
        .collect();
    check_finite_values(&format!("{what} (value)"), &l[..1])?;
    check_finite_values(&format!("{what} (gradient)"), &g)?;
    Ok((l[0], g))
}

/// The central-difference stencil at `x` with steps `h`: for every coordinate `i` the points
/// `x + h_i e_i` and `max(x_i − h_i, lower_i) e_i` (in that order, `2n` points) and their spacing
/// `up_i − down_i`, so `∂L/∂x_i ≈ (L(up_i) − L(down_i)) / spacing_i`.
pub fn stencil(x: &[f64], h: &[f64], lower: &[f64]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut points = Vec::with_capacity(2 * x.len());
    let mut spacing = Vec::with_capacity(x.len());
    for (i, &hi) in h.iter().enumerate() {
        let (up, down) = (x[i] + hi, (x[i] - hi).max(lower[i]).min(x[i]));
        spacing.push(up - down);
        for v in [up, down] {
            let mut p = x.to_vec();
            p[i] = v;
            points.push(p);
        }
    }
    (points, spacing)
}

/// Losses of a population on every core (the derivative-free methods' batch).
pub fn parallel_values(
    xs: &[Vec<f64>],
    loss: impl Fn(&[f64]) -> Result<f64> + Sync,
) -> Result<Vec<f64>> {
    par_map(xs, default_threads(), |p| loss(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quadratic's central difference is exact; a clipped lower point uses the real spacing.
    #[test]
    fn central_gradient_of_a_quadratic() {
        let f = |p: &[f64]| Ok(3.0 * p[0] * p[0] + 2.0 * p[1] + p[0] * p[1]);
        let (v, g) = central_gradient("q", &[1.0, 0.1], &[0.5, 0.5], &[f64::NEG_INFINITY, 0.0], f)
            .expect("gradient");
        assert!((v - (3.0 + 0.2 + 0.1)).abs() < 1e-12);
        assert!((g[0] - (6.0 + 0.1)).abs() < 1e-12, "{g:?}");
        // ∂/∂p1 = 2 + p0 = 3, exact for a linear direction even with the one-sided stencil.
        assert!((g[1] - 3.0).abs() < 1e-12, "{g:?}");
        let bad = central_gradient("q", &[1.0], &[0.0], &[0.0], |_| Ok(0.0));
        assert!(bad.is_err());
        let nan = central_gradient("q", &[1.0], &[0.1], &[0.0], |p| Ok(p[0].ln() * f64::NAN));
        assert!(nan.is_err());
    }
}
