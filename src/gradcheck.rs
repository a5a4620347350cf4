//! Gradient checking: autodiff (or a hand-written adjoint) against central finite differences.
//!
//! `numeric_i = (f(x + h_i e_i) − f(x − h_i e_i)) / (2 h_i)`, error `O(h²)`; compared with the
//! analytic gradient by
//! - relative error `max_i |a_i − n_i| / max(max_j |n_j|, floor)` (normalised by the largest
//!   component, so tiny components do not dominate), and
//! - cosine similarity `a·n / (|a| |n|)`.

use crate::error::{Error, Result};

/// The outcome of a comparison.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Analytic gradient (autodiff / adjoint).
    pub analytic: Vec<f64>,
    /// Central finite-difference gradient.
    pub numeric: Vec<f64>,
    /// `max_i |a_i − n_i| / max(max_j |n_j|, 1e-300)`.
    pub max_rel_err: f64,
    /// Cosine similarity of the two gradients (1 when both are zero).
    pub cosine: f64,
}

impl GradCheck {
    /// Compares two gradients of equal length.
    pub fn compare(analytic: Vec<f64>, numeric: Vec<f64>) -> Result<Self> {
        if analytic.len() != numeric.len() {
            return Err(Error::shape("gradient", numeric.len(), analytic.len()));
        }
        let scale = numeric
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(1e-300);
        let max_abs = analytic
            .iter()
            .zip(&numeric)
            .fold(0.0f64, |m, (a, n)| m.max((a - n).abs()));
        let dot: f64 = analytic.iter().zip(&numeric).map(|(a, n)| a * n).sum();
        let na = analytic.iter().map(|a| a * a).sum::<f64>().sqrt();
        let nn = numeric.iter().map(|a| a * a).sum::<f64>().sqrt();
        let cosine = if na == 0.0 && nn == 0.0 {
            1.0
        } else {
            dot / (na * nn).max(1e-300)
        };
        let max_rel_err = if analytic.iter().chain(&numeric).any(|v| !v.is_finite()) {
            f64::INFINITY
        } else {
            max_abs / scale
        };
        Ok(Self {
            analytic,
            numeric,
            max_rel_err,
            cosine,
        })
    }

    /// `Ok` when `max_rel_err <= rel_tol` and `cosine >= min_cosine`; otherwise a message with both
    /// gradients.
    pub fn check(&self, rel_tol: f64, min_cosine: f64) -> std::result::Result<(), String> {
        if self.max_rel_err <= rel_tol && self.cosine >= min_cosine {
            Ok(())
        } else {
            Err(format!(
                "gradient check failed: rel err {:.3e} (tol {rel_tol:.1e}), cosine {:.6} (min {min_cosine}); analytic {:?}, numeric {:?}",
                self.max_rel_err, self.cosine, self.analytic, self.numeric
            ))
        }
    }
}

/// Central finite differences of `f` at `x` with per-coordinate steps `h` (same length as `x`).
pub fn central_differences(
    f: &mut dyn FnMut(&[f64]) -> Result<f64>,
    x: &[f64],
    h: &[f64],
) -> Result<Vec<f64>> {
    if h.len() != x.len() {
        return Err(Error::shape("h", x.len(), h.len()));
    }
    let mut g = Vec::with_capacity(x.len());
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        crate::error::check::positive(&format!("h[{i}]"), h[i])?;
        xp[i] = x[i] + h[i];
        let fp = f(&xp)?;
        xp[i] = x[i] - h[i];
        let fm = f(&xp)?;
        xp[i] = x[i];
        g.push((fp - fm) / (2.0 * h[i]));
    }
    Ok(g)
}

/// Relative steps `h_i = rel · max(|x_i|, 1)`.
pub fn relative_steps(x: &[f64], rel: f64) -> Vec<f64> {
    x.iter().map(|v| rel * v.abs().max(1.0)).collect()
}
