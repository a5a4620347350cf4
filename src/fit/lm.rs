//! Levenberg–Marquardt on a least-squares objective `L(x) = Σ_k r_k(x)²` whose residuals and
//! Jacobian come from the objective ([`super::objective::Objective::residuals_and_jacobian`]; on
//! the spiking network: common-random-number differences, the estimator chosen by measurement,
//! BENCHMARKS.md §7), in the unconstrained coordinates θ of the [`super::params::ParamSet`]
//! (`J_θ = J_x · diag(dx/dθ)`).
//!
//! Step (Marquardt's scaled damping): `(JᵀJ + μ·diag(JᵀJ)) δ = −Jᵀr`, solved by Cholesky.
//! Gain ratio `ρ = (L(θ) − L(θ + δ)) / (L(θ) − ‖r + Jδ‖²)`. Accepted when ρ > 0 (then a new
//! Jacobian at θ + δ and `μ ← μ·max(1/3, 1 − (2ρ − 1)³)`, ν = 2), else `μ ← μ·ν`, `ν ← 2ν`
//! (Nielsen 1999; Madsen, Nielsen & Tingleff 2004, "Methods for non-linear least squares
//! problems", §3.2). A rejected step costs one residual evaluation, an accepted one a Jacobian.
//! The dimension is that of a calibration (≤ tens of parameters), so the dense `n × n` solve is
//! written here rather than pulling in a linear-algebra crate.

use super::objective::Tracked;
use crate::error::{Error, Result};

/// Settings of [`run_lm`].
#[derive(Clone, Copy, Debug)]
pub struct LmOptions {
    /// Maximum Jacobian evaluations (accepted steps + 1).
    pub iters: usize,
    /// Initial damping relative to the largest diagonal entry of `JᵀJ`.
    pub damping: f64,
}

fn sq(r: &[f64]) -> f64 {
    r.iter().map(|v| v * v).sum()
}

/// Solves the symmetric positive-definite system `a·x = b` (`a` row-major `n × n`) by Cholesky;
/// `None` when `a` is not numerically positive definite.
pub fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    if a.len() != n * n {
        return None;
    }
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if !s.is_finite() || s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    Some(x)
}

/// Minimises `Σ r²` from `theta0` by Levenberg–Marquardt (module docs) until the tracked budget,
/// `opts.iters` Jacobians, or a step below 1e-10 (θ units) ends it. Returns the stop reason.
pub fn run_lm(t: &mut Tracked, theta0: Vec<f64>, opts: LmOptions) -> Result<String> {
    crate::error::check::positive("levenberg_marquardt.damping", opts.damping)?;
    crate::error::check::count_at_least("levenberg_marquardt.iters", opts.iters, 1)?;
    let stop_on_budget = |e: Error, t: &Tracked| if t.exhausted() { Ok(()) } else { Err(e) };
    let mut theta = theta0;
    let (mut r, mut j) = match t.jacobian_theta(&theta) {
        Ok(v) => v,
        Err(e) => return stop_on_budget(e, t).map(|_| "budget spent".into()),
    };
    let n = theta.len();
    let mut jacobians = 1;
    let mut mu = f64::NAN;
    let mut nu = 2.0;
    loop {
        // normal equations A = JᵀJ, g = Jᵀr
        let mut a = vec![0.0; n * n];
        let mut g = vec![0.0; n];
        for (rk, row) in r.iter().zip(&j) {
            for p in 0..n {
                g[p] += row[p] * rk;
                for q in 0..=p {
                    a[p * n + q] += row[p] * row[q];
                }
            }
        }
        for p in 0..n {
            for q in 0..p {
                a[q * n + p] = a[p * n + q];
            }
        }
        let diag: Vec<f64> = (0..n).map(|p| a[p * n + p].max(1e-12)).collect();
        if mu.is_nan() {
            mu = opts.damping * diag.iter().cloned().fold(0.0, f64::max);
        }
        let l0 = sq(&r);
        let neg_g: Vec<f64> = g.iter().map(|v| -v).collect();
        // inner loop: raise the damping until a step lowers the loss
        let accepted = loop {
            let mut damped = a.clone();
            for p in 0..n {
                damped[p * n + p] += mu * diag[p];
            }
            let Some(delta) = cholesky_solve(&damped, &neg_g) else {
                mu *= nu;
                nu *= 2.0;
                if !mu.is_finite() {
                    return Ok("damping overflow (no descent step)".into());
                }
                continue;
            };
            let step: f64 = delta.iter().map(|d| d * d).sum::<f64>().sqrt();
            if step < 1e-10 {
                return Ok("step below 1e-10".into());
            }
            let trial: Vec<f64> = theta.iter().zip(&delta).map(|(a, b)| a + b).collect();
            let rt = match t.residuals_theta(&trial) {
                Ok(v) => v,
                Err(e) => return stop_on_budget(e, t).map(|_| "budget spent".into()),
            };
            let predicted: f64 = l0
                - r.iter()
                    .zip(&j)
                    .map(|(rk, row)| {
                        let lin = rk + row.iter().zip(&delta).map(|(a, b)| a * b).sum::<f64>();
                        lin * lin
                    })
                    .sum::<f64>();
            let lt = sq(&rt);
            let rho = (l0 - lt) / predicted.max(1e-300);
            if rho > 0.0 && lt.is_finite() {
                mu *= (1.0 - (2.0 * rho - 1.0).powi(3)).max(1.0 / 3.0);
                nu = 2.0;
                break trial;
            }
            mu *= nu;
            nu *= 2.0;
            if !mu.is_finite() {
                return Ok("damping overflow (no descent step)".into());
            }
        };
        if jacobians >= opts.iters {
            return Ok("max iterations".into());
        }
        theta = accepted;
        match t.jacobian_theta(&theta) {
            Ok((rn, jn)) => {
                r = rn;
                j = jn;
            }
            Err(e) => return stop_on_budget(e, t).map(|_| "budget spent".into()),
        }
        jacobians += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::objective::Objective;
    use crate::fit::optimize::{Budget, Method, minimize_within};
    use crate::fit::params::{ParamSet, ParamSpec};

    /// Rosenbrock as residuals `(10(y − x²), 1 − x)` with its exact Jacobian.
    struct Rosenbrock;
    impl Rosenbrock {
        fn r(x: &[f64]) -> Vec<f64> {
            vec![10.0 * (x[1] - x[0] * x[0]), 1.0 - x[0]]
        }
    }
    impl Objective for Rosenbrock {
        fn value(&mut self, x: &[f64]) -> Result<f64> {
            Ok(sq(&Self::r(x)))
        }
        fn value_and_grad(&mut self, _x: &[f64]) -> Result<(f64, Vec<f64>)> {
            unreachable!("LM asks for residuals")
        }
        fn residuals(&mut self, x: &[f64]) -> Result<Option<Vec<f64>>> {
            Ok(Some(Self::r(x)))
        }
        fn residuals_and_jacobian(
            &mut self,
            x: &[f64],
        ) -> Result<Option<crate::fit::objective::ResidualJacobian>> {
            Ok(Some((
                Self::r(x),
                vec![vec![-20.0 * x[0], 10.0], vec![-1.0, 0.0]],
            )))
        }
    }

    /// Without residuals: the default trait methods.
    struct Scalar;
    impl Objective for Scalar {
        fn value(&mut self, x: &[f64]) -> Result<f64> {
            Ok(x[0] * x[0])
        }
        fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
            Ok((x[0] * x[0], vec![2.0 * x[0]]))
        }
    }

    fn lm(iters: usize) -> Method {
        Method::LevenbergMarquardt {
            iters,
            damping: 1e-3,
        }
    }

    /// LM solves Rosenbrock from (−1.2, 1) (identity transform: θ = x) in a few dozen
    /// Jacobians; with too few it stops early and says so; a scalar objective is refused.
    #[test]
    fn levenberg_marquardt_solves_rosenbrock_and_refuses_scalar_objectives() {
        let ps = |x0: f64, y0: f64| {
            ParamSet::new(vec![
                ParamSpec::new("x", -5.0, 5.0, x0)
                    .with_transform(crate::fit::params::Transform::Identity),
                ParamSpec::new("y", -5.0, 5.0, y0)
                    .with_transform(crate::fit::params::Transform::Identity),
            ])
            .expect("params")
        };
        let rep = minimize_within(
            &mut Rosenbrock,
            &ps(-1.2, 1.0),
            &lm(100),
            None,
            Budget::default(),
        )
        .expect("lm");
        assert!(rep.loss_best < 1e-12, "{rep:?}");
        assert!((rep.x_best[0] - 1.0).abs() < 1e-5 && (rep.x_best[1] - 1.0).abs() < 1e-5);
        assert!(rep.gradients <= 60, "{} Jacobians", rep.gradients);
        let short = minimize_within(
            &mut Rosenbrock,
            &ps(-1.2, 1.0),
            &lm(2),
            None,
            Budget::default(),
        )
        .expect("lm");
        assert_eq!(short.stop_reason, "max iterations");
        assert!(short.loss_best > 1e-6);
        let err = minimize_within(&mut Scalar, &ps(1.0, 0.0), &lm(10), None, Budget::default())
            .expect_err("no residuals");
        assert!(err.to_string().contains("levenberg_marquardt"), "{err}");
    }

    #[test]
    fn cholesky_solves_a_spd_system_and_refuses_an_indefinite_one() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&a, &[2.0, 1.0]).expect("spd");
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
    }
}
