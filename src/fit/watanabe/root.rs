//! The hand-written safeguarded Newton/secant root-finders for `F̄(dc) = F_ref` and their
//! bookkeeping.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::fit::objective::Evaluation;
use crate::fit::optimize::FitReport;

use super::model::WatanabeModel;

/// Counter, clock and history for the hand-written root-finders (same bookkeeping as
/// [`crate::fit::objective::Tracked`]: a batch of B counts B evaluations).
struct Recorder {
    start: Instant,
    evaluations: usize,
    gradients: usize,
    history: Vec<Evaluation>,
    best: Option<(f64, f64)>,
    progress: Option<indicatif::ProgressBar>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            evaluations: 0,
            gradients: 0,
            history: Vec::new(),
            best: None,
            progress: None,
        }
    }
    fn message(&self) -> String {
        match self.best {
            Some((dc, l)) => format!(
                "{} evals, best dc {dc:.3} Hz, loss {l:.3e}",
                self.evaluations
            ),
            None => format!("{} evals", self.evaluations),
        }
    }
    fn record(&mut self, dc: f64, loss: f64, grad: bool) {
        self.evaluations += 1;
        if grad {
            self.gradients += 1;
        }
        if loss.is_finite() && self.best.is_none_or(|(_, b)| loss < b) {
            self.best = Some((dc, loss));
        }
        self.history.push(Evaluation {
            evaluations: self.evaluations,
            gradients: self.gradients,
            wall_s: self.start.elapsed().as_secs_f64(),
            loss,
            best_loss: self.best.map(|b| b.1).unwrap_or(f64::INFINITY),
        });
        if let Some(pb) = &self.progress {
            pb.set_position(self.evaluations as u64);
            pb.set_message(self.message());
        }
    }
    fn finish(self, method: &str, stop: String) -> Result<FitReport> {
        if let Some(pb) = &self.progress {
            pb.finish_with_message(self.message());
        }
        let (x, l) = self.best.ok_or_else(|| Error::Optimizer {
            method: method.into(),
            reason: "no finite loss was evaluated".into(),
        })?;
        Ok(FitReport {
            method: method.into(),
            names: vec!["dc_hz".into()],
            x_best: vec![x],
            loss_best: l,
            evaluations: self.evaluations,
            gradients: self.gradients,
            wall_s: self.start.elapsed().as_secs_f64(),
            stop_reason: stop,
            history: self.history,
        })
    }
}

/// Where the slope of the safeguarded root-finder comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SlopeSource {
    /// Batched central difference `{dc − h, dc, dc + h}` at every iterate.
    CentralDifference {
        /// Step (Hz).
        h_hz: f64,
    },
    /// One batched forward difference `{dc, dc + h}` at the start, then secant slopes.
    Secant {
        /// Step (Hz).
        h_hz: f64,
    },
    /// First slope = chord from `(lo, 0)` to the first point, then secant slopes.
    SecantChord,
    /// The smooth model's exact autodiff slope at every iterate (sharpness β per mV).
    SmoothAutodiff {
        /// β (per mV).
        beta: f64,
    },
}

/// Safeguarded Newton/secant root-finder for `F̄(dc) = F_ref` on `[lo, hi]`, assuming `F̄`
/// increases with `dc`: the bracket `[a, b]` (initially the bounds) shrinks with the sign of each
/// residual; a Newton step `dc − (F̄ − F_ref)/slope` leaving the bracket (or a non-positive
/// slope) is replaced by bisection. Stops when `|F̄ − F_ref|/F_ref ≤ tol` or the budget is spent.
/// Every evaluated `(dc, F̄)` is appended to `evaluated`.
#[allow(clippy::too_many_arguments)]
pub fn root_find(
    model: &mut WatanabeModel,
    f_ref: f64,
    x0: f64,
    lo: f64,
    hi: f64,
    slope: SlopeSource,
    budget: usize,
    tol: f64,
    evaluated: &mut Vec<(f64, f64)>,
    method: &str,
) -> Result<FitReport> {
    model.journal = crate::fit::journal::open_next(method)?;
    let r = root_find_inner(
        model, f_ref, x0, lo, hi, slope, budget, tol, evaluated, method,
    );
    model.journal = None;
    r
}

#[allow(clippy::too_many_arguments)]
fn root_find_inner(
    model: &mut WatanabeModel,
    f_ref: f64,
    x0: f64,
    lo: f64,
    hi: f64,
    slope: SlopeSource,
    budget: usize,
    tol: f64,
    evaluated: &mut Vec<(f64, f64)>,
    method: &str,
) -> Result<FitReport> {
    let mut rec = Recorder::new();
    rec.progress = Some(crate::progress::bar(method, budget as u64));
    let (mut a, mut b) = (lo, hi);
    let mut x = x0.clamp(lo, hi);
    let mut prev: Option<(f64, f64)> = None;
    let loss = |f: f64| (f - f_ref).abs() / f_ref;
    let mut stop = "budget spent".to_string();
    let mut iter_note = Vec::new();
    loop {
        // Evaluate x (and the slope).
        let (f, s) = match slope {
            SlopeSource::CentralDifference { h_hz } => {
                if rec.evaluations + 3 > budget {
                    break;
                }
                let xs = [x - h_hz, x, x + h_hz];
                let fs = model.mean_forces(&xs)?;
                for (xi, fi) in xs.iter().zip(&fs) {
                    evaluated.push((*xi, *fi));
                    rec.record(*xi, loss(*fi), false);
                    if *fi < f_ref {
                        a = a.max(*xi);
                    } else {
                        b = b.min(*xi);
                    }
                }
                if fs.iter().any(|f| loss(*f) <= tol) {
                    stop = format!("converged (L ≤ {tol})");
                    break;
                }
                (fs[1], (fs[2] - fs[0]) / (2.0 * h_hz))
            }
            SlopeSource::Secant { h_hz } => match prev {
                None => {
                    // One batched forward difference {dc, dc + h} (or {dc, dc − h} at the
                    // upper bound).
                    if rec.evaluations + 2 > budget {
                        break;
                    }
                    let x2 = if x + h_hz <= hi { x + h_hz } else { x - h_hz };
                    let xs = [x, x2];
                    let fs = model.mean_forces(&xs)?;
                    for (xi, fi) in xs.iter().zip(&fs) {
                        evaluated.push((*xi, *fi));
                        rec.record(*xi, loss(*fi), false);
                    }
                    if loss(fs[1]) < loss(fs[0]) {
                        // Continue from the better of the two.
                        x = x2;
                    }
                    let (f_other, x_other) = if x == x2 { (fs[0], xs[0]) } else { (fs[1], x2) };
                    let f_here = if x == x2 { fs[1] } else { fs[0] };
                    if f_other < f_ref {
                        a = a.max(x_other);
                    } else {
                        b = b.min(x_other);
                    }
                    (f_here, (fs[1] - fs[0]) / (x2 - xs[0]))
                }
                Some((xp, fp)) => {
                    if rec.evaluations >= budget {
                        break;
                    }
                    let f = model.mean_forces(&[x])?[0];
                    evaluated.push((x, f));
                    rec.record(x, loss(f), false);
                    let s = if (x - xp).abs() > 1e-9 {
                        (f - fp) / (x - xp)
                    } else {
                        f64::NAN
                    };
                    (f, s)
                }
            },
            SlopeSource::SecantChord => {
                if rec.evaluations >= budget {
                    break;
                }
                let f = model.mean_forces(&[x])?[0];
                evaluated.push((x, f));
                rec.record(x, loss(f), false);
                let (xp, fp) = prev.unwrap_or((lo, 0.0));
                let s = if (x - xp).abs() > 1e-9 {
                    (f - fp) / (x - xp)
                } else {
                    f64::NAN
                };
                (f, s)
            }
            SlopeSource::SmoothAutodiff { beta } => {
                if rec.evaluations >= budget {
                    break;
                }
                let f = model.mean_forces(&[x])?[0];
                evaluated.push((x, f));
                rec.record(x, loss(f), false);
                let (_, g) = model.smooth_force_and_slope(beta, x)?;
                rec.gradients += 1;
                (f, g)
            }
        };
        let r = f - f_ref;
        if loss(f) <= tol {
            stop = format!("converged (L ≤ {tol})");
            break;
        }
        if r < 0.0 {
            a = a.max(x);
        } else {
            b = b.min(x);
        }
        let newton = x - r / s;
        let (next, kind) = if s.is_finite() && s > 0.0 && newton > a && newton < b {
            (newton, "newton")
        } else {
            (0.5 * (a + b), "bisect")
        };
        iter_note.push(format!("{x:.3}→{next:.3} ({kind}, slope {s:.3} N/Hz)"));
        prev = Some((x, f));
        if (b - a).abs() < 1e-6 || a >= b {
            stop = "bracket collapsed".into();
            break;
        }
        x = next;
    }
    let mut report = rec.finish(method, stop)?;
    report.stop_reason = format!("{}; steps: {}", report.stop_reason, iter_note.join(", "));
    Ok(report)
}
