//! Gradient checking: autodiff (or a hand-written adjoint) against central finite differences.
//!
//! `numeric_i = (f(x + h_i e_i) − f(x − h_i e_i)) / (2 h_i)`, error `O(h²)`; compared with the
//! analytic gradient by
//! - per-component relative error `e_i = |a_i − n_i| / max(|n_i|, floor)`: each component against
//!   its own magnitude, so a small component is checked as strictly as a large one, down to the
//!   `floor` (default [`DEFAULT_REL_FLOOR`] `· max_j |n_j|`, below which a component's magnitude
//!   is at the level of the finite-difference round-off of the large ones);
//! - the global relative error `max_i |a_i − n_i| / max_j |n_j|` (kept for reporting), and
//! - cosine similarity `a·n / (|a| |n|)`.
//!
//! [`GradCheck::check`] passes when every `e_i ≤ rel_tol` and the cosine is at least the minimum.

use crate::error::{Error, Result};

/// Default floor of the per-component normalisation, relative to the largest numeric component.
pub const DEFAULT_REL_FLOOR: f64 = 1e-3;

/// The outcome of a comparison.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Analytic gradient (autodiff / adjoint).
    pub analytic: Vec<f64>,
    /// Central finite-difference gradient.
    pub numeric: Vec<f64>,
    /// `max_i |a_i − n_i| / max(max_j |n_j|, 1e-300)` (normalised by the largest component).
    pub max_rel_err: f64,
    /// Per component: `|a_i − n_i| / max(|n_i|, floor)` (infinite when either value is not finite).
    pub rel_errs: Vec<f64>,
    /// `max_i rel_errs[i]`: what [`GradCheck::check`] compares with its tolerance.
    pub max_component_rel_err: f64,
    /// The absolute floor of the per-component normalisation.
    pub floor: f64,
    /// Cosine similarity of the two gradients (1 when both are zero).
    pub cosine: f64,
}

impl GradCheck {
    /// Compares two gradients of equal length, with the per-component floor
    /// `DEFAULT_REL_FLOOR · max_j |n_j|`.
    pub fn compare(analytic: Vec<f64>, numeric: Vec<f64>) -> Result<Self> {
        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        Self::compare_with_floor(analytic, numeric, DEFAULT_REL_FLOOR * scale)
    }

    /// Compares two gradients of equal length; each component's error is divided by
    /// `max(|n_i|, floor)` (`floor` absolute, in the gradient's units; at least 1e-300).
    pub fn compare_with_floor(analytic: Vec<f64>, numeric: Vec<f64>, floor: f64) -> Result<Self> {
        if analytic.len() != numeric.len() {
            return Err(Error::shape("gradient", numeric.len(), analytic.len()));
        }
        if floor.is_nan() || floor < 0.0 {
            return Err(Error::invalid("gradcheck floor", floor, ">= 0"));
        }
        let floor = floor.max(1e-300);
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
        let finite = analytic.iter().chain(&numeric).all(|v| v.is_finite());
        let max_rel_err = if finite {
            max_abs / scale
        } else {
            f64::INFINITY
        };
        let rel_errs: Vec<f64> = analytic
            .iter()
            .zip(&numeric)
            .map(|(a, n)| {
                if a.is_finite() && n.is_finite() {
                    (a - n).abs() / n.abs().max(floor)
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        let max_component_rel_err = rel_errs.iter().fold(0.0f64, |m, e| m.max(*e));
        Ok(Self {
            analytic,
            numeric,
            max_rel_err,
            rel_errs,
            max_component_rel_err,
            floor,
            cosine,
        })
    }

    /// Indices of the components whose magnitude `|n_i|` is at least the floor (those checked
    /// against their own magnitude).
    pub fn above_floor(&self) -> Vec<usize> {
        (0..self.numeric.len())
            .filter(|&i| self.numeric[i].abs() >= self.floor)
            .collect()
    }

    /// The same comparison (same numeric gradient and floor) with analytic component `i`
    /// multiplied by `factor`: a negative control, e.g. `factor = 1.001` must fail a check at
    /// `rel_tol < 1e-3` for every component above the floor. `i` past the end is an error.
    pub fn perturbed(&self, i: usize, factor: f64) -> Result<Self> {
        if i >= self.analytic.len() {
            return Err(Error::invalid(
                "gradcheck component",
                i,
                format!("< {}", self.analytic.len()),
            ));
        }
        let mut a = self.analytic.clone();
        a[i] *= factor;
        Self::compare_with_floor(a, self.numeric.clone(), self.floor)
    }

    /// `Ok` when every per-component relative error is `<= rel_tol` and `cosine >= min_cosine`;
    /// otherwise a message naming the worst component, with both gradients.
    pub fn check(&self, rel_tol: f64, min_cosine: f64) -> std::result::Result<(), String> {
        if self.max_component_rel_err <= rel_tol && self.cosine >= min_cosine {
            Ok(())
        } else {
            let worst = (0..self.rel_errs.len())
                .max_by(|&a, &b| self.rel_errs[a].total_cmp(&self.rel_errs[b]))
                .unwrap_or(0);
            Err(format!(
                "gradient check failed: component {worst} rel err {:.3e} (tol {rel_tol:.1e}, floor {:.3e}), \
                 global rel err {:.3e}, cosine {:.6} (min {min_cosine}); per-component rel errs {:?}; analytic {:?}, numeric {:?}",
                self.max_component_rel_err,
                self.floor,
                self.max_rel_err,
                self.cosine,
                self.rel_errs,
                self.analytic,
                self.numeric
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
