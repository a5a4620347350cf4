//! One objective serves every optimiser: physical parameters `x` → scalar loss, with an optional
//! exact gradient (one autodiff / fused-adjoint pass) and a batched population evaluation (one
//! batched rollout). [`Tracked`] wraps it with the shared evaluation counter, clock and history,
//! so comparisons between methods are fair by construction.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::journal::Journal;
use super::params::ParamSet;
use crate::error::{Error, Result};

/// Residuals `r` and their Jacobian `J[k][i] = ∂r_k/∂x_i` (row per residual).
pub type ResidualJacobian = (Vec<f64>, Vec<Vec<f64>>);

/// A calibration loss in physical parameter units.
pub trait Objective {
    /// Loss at `x`.
    fn value(&mut self, x: &[f64]) -> Result<f64>;
    /// Loss and `∂L/∂x` at `x` (one forward + one backward pass).
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)>;
    /// Losses of a whole population (default: one at a time; override with one batched rollout).
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        xs.iter().map(|x| self.value(x)).collect()
    }
    /// Residuals `r(x)` of a least-squares loss, `L(x) = Σ_k r_k(x)²` (`None`: not a
    /// least-squares objective; Levenberg–Marquardt then refuses it).
    fn residuals(&mut self, _x: &[f64]) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
    /// Residuals and their Jacobian `J[k][i] = ∂r_k/∂x_i` (physical units), or `None`.
    fn residuals_and_jacobian(&mut self, _x: &[f64]) -> Result<Option<ResidualJacobian>> {
        Ok(None)
    }
}

/// The error of a least-squares method on an objective without residuals.
fn no_residuals() -> Error {
    Error::config(
        "method",
        "levenberg_marquardt needs a least-squares objective with residuals (the recording fit \
         on the spiking network)",
    )
}

/// One entry of the optimisation history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// Cumulative number of loss evaluations (a population of B counts B).
    pub evaluations: usize,
    /// Cumulative number of gradient evaluations.
    pub gradients: usize,
    /// Wall time since the start (s).
    pub wall_s: f64,
    /// Loss of this evaluation.
    pub loss: f64,
    /// Best loss so far.
    pub best_loss: f64,
}

/// Wraps an objective with the parameter transform, counters, clock, budget and history.
pub struct Tracked<'a> {
    objective: &'a mut dyn Objective,
    /// The fitted parameters.
    pub params: ParamSet,
    start: Instant,
    /// Loss evaluations so far.
    pub evaluations: usize,
    /// Gradient evaluations so far.
    pub gradients: usize,
    /// Maximum loss evaluations (None = unlimited).
    pub budget: Option<usize>,
    /// Maximum wall time in seconds (None = unlimited).
    pub time_budget_s: Option<f64>,
    /// Every evaluation in order.
    pub history: Vec<Evaluation>,
    /// Best physical point so far and its loss.
    pub best: Option<(Vec<f64>, f64)>,
    /// Evaluation journal (resumable runs; see [`super::journal`]); `None`: not journalled.
    pub journal: Option<Journal>,
    /// Progress bar (position = evaluations, or seconds when `progress_in_time`).
    pub progress: Option<indicatif::ProgressBar>,
    /// Whether the progress bar counts seconds of the wall-time budget.
    pub progress_in_time: bool,
}

impl<'a> Tracked<'a> {
    /// Starts the clock.
    pub fn new(objective: &'a mut dyn Objective, params: ParamSet) -> Self {
        Self {
            objective,
            params,
            start: Instant::now(),
            evaluations: 0,
            gradients: 0,
            budget: None,
            time_budget_s: None,
            history: Vec::new(),
            best: None,
            journal: None,
            progress: None,
            progress_in_time: false,
        }
    }

    /// Error when the evaluation or time budget is spent.
    pub fn exhausted(&self) -> bool {
        self.budget.is_some_and(|b| self.evaluations >= b)
            || self.time_budget_s.is_some_and(|t| self.elapsed_s() >= t)
    }

    fn budget_error(&self) -> Error {
        Error::Optimizer {
            method: "budget".into(),
            reason: format!("budget spent after {} evaluations", self.evaluations),
        }
    }

    fn record(&mut self, x: &[f64], loss: f64, grad: bool) {
        self.evaluations += 1;
        if grad {
            self.gradients += 1;
        }
        let better = match &self.best {
            None => true,
            Some((_, b)) => loss < *b,
        };
        if better && loss.is_finite() {
            self.best = Some((x.to_vec(), loss));
        }
        self.history.push(Evaluation {
            evaluations: self.evaluations,
            gradients: self.gradients,
            wall_s: self.elapsed_s(),
            loss,
            best_loss: self.best.as_ref().map(|b| b.1).unwrap_or(f64::INFINITY),
        });
        if let Some(pb) = &self.progress {
            pb.set_position(if self.progress_in_time {
                self.elapsed_s() as u64
            } else {
                self.evaluations as u64
            });
            pb.set_message(self.progress_message());
        }
    }

    /// "evaluations, gradients, best loss" (the progress message).
    pub fn progress_message(&self) -> String {
        format!(
            "{} evals, {} grads, best loss {:.4e}",
            self.evaluations,
            self.gradients,
            self.best.as_ref().map(|b| b.1).unwrap_or(f64::INFINITY)
        )
    }

    /// Loss at unconstrained `θ`.
    pub fn value_theta(&mut self, theta: &[f64]) -> Result<f64> {
        if self.exhausted() {
            return Err(self.budget_error());
        }
        let x = self.params.to_physical(theta);
        let v = match self.journal.as_mut() {
            Some(j) => j.eval("v", &x, || self.objective.value(&x).map(|v| vec![v]))?[0],
            None => self.objective.value(&x)?,
        };
        self.record(&x, v, false);
        Ok(v)
    }

    /// Loss and `∂L/∂θ` at unconstrained `θ`.
    pub fn value_and_grad_theta(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        if self.exhausted() {
            return Err(self.budget_error());
        }
        let x = self.params.to_physical(theta);
        let (v, gx) = match self.journal.as_mut() {
            Some(j) => {
                let mut y = j.eval("g", &x, || {
                    let (v, mut g) = self.objective.value_and_grad(&x)?;
                    g.insert(0, v);
                    Ok(g)
                })?;
                let v = y.remove(0);
                (v, y)
            }
            None => self.objective.value_and_grad(&x)?,
        };
        self.record(&x, v, true);
        Ok((v, self.params.grad_to_unconstrained(theta, &gx)))
    }

    /// Residuals at unconstrained `θ` (one loss evaluation, loss `Σ r²`).
    pub fn residuals_theta(&mut self, theta: &[f64]) -> Result<Vec<f64>> {
        if self.exhausted() {
            return Err(self.budget_error());
        }
        let x = self.params.to_physical(theta);
        let obj = &mut *self.objective;
        let r = match self.journal.as_mut() {
            Some(j) => j.eval("r", &x, || obj.residuals(&x)?.ok_or_else(no_residuals))?,
            None => obj.residuals(&x)?.ok_or_else(no_residuals)?,
        };
        let loss = r.iter().map(|v| v * v).sum();
        self.record(&x, loss, false);
        Ok(r)
    }

    /// Residuals and their Jacobian in θ (`J_θ[k][i] = J_x[k][i] · dx_i/dθ_i`) at unconstrained
    /// `θ` (one gradient evaluation).
    pub fn jacobian_theta(&mut self, theta: &[f64]) -> Result<ResidualJacobian> {
        if self.exhausted() {
            return Err(self.budget_error());
        }
        let x = self.params.to_physical(theta);
        let n = x.len();
        let obj = &mut *self.objective;
        let flat = |obj: &mut dyn Objective| -> Result<Vec<f64>> {
            let (r, jac) = obj.residuals_and_jacobian(&x)?.ok_or_else(no_residuals)?;
            let mut y = vec![r.len() as f64];
            y.extend(&r);
            for row in &jac {
                if row.len() != n {
                    return Err(Error::shape("jacobian row", n, row.len()));
                }
                y.extend(row);
            }
            Ok(y)
        };
        let y = match self.journal.as_mut() {
            Some(j) => j.eval("j", &x, || flat(obj))?,
            None => flat(obj)?,
        };
        let m = y.first().copied().unwrap_or(0.0) as usize;
        if y.len() != 1 + m + m * n {
            return Err(Error::shape("jacobian", 1 + m + m * n, y.len()));
        }
        let r = y[1..1 + m].to_vec();
        let jac = y[1 + m..]
            .chunks(n)
            .map(|row| self.params.grad_to_unconstrained(theta, row))
            .collect();
        let loss = r.iter().map(|v| v * v).sum();
        self.record(&x, loss, true);
        Ok((r, jac))
    }

    /// Losses at physical points (population; counts one evaluation per point; clamps to bounds).
    pub fn values_phys(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        if self.exhausted() {
            return Err(self.budget_error());
        }
        let clamped: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| {
                x.iter()
                    .zip(&self.params.params)
                    .map(|(v, p)| v.clamp(p.lower, p.upper))
                    .collect()
            })
            .collect();
        let vs = match self.journal.as_mut() {
            Some(j) => {
                let flat: Vec<f64> = clamped.iter().flatten().copied().collect();
                j.eval("p", &flat, || self.objective.values(&clamped))?
            }
            None => self.objective.values(&clamped)?,
        };
        for (x, v) in clamped.iter().zip(&vs) {
            self.record(x, *v, false);
        }
        Ok(vs)
    }

    /// Wall time of the method (s): since the start, or the journal's clock in a resumed run.
    pub fn elapsed_s(&self) -> f64 {
        match &self.journal {
            Some(j) => j.now_s(),
            None => self.start.elapsed().as_secs_f64(),
        }
    }
}
