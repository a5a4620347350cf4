//! The accuracy study of the spiking-network gradient estimators: for one drive level, every
//! (observable, parameter) pair, each estimator against the seed-averaged central difference.
//!
//! Per seed `s` (its own network, inputs and drive noise):
//! - `pathwise`: the event-time derivative ([`super::sim`]), one run with tangents;
//! - `insertion`: the Russo–Margulis insertion estimate for drive parameters (pathwise for the
//!   weight), one run with alternative paths ([`super::estimator::insertion_term`]);
//! - `difference`: the central difference `(F_s(θ+h) − F_s(θ−h))/2h` with common random numbers;
//!   its seed mean is the reference (the estimator "one seed's difference" is then compared with
//!   the mean of the *other* seeds' differences, so that it is not compared with itself).

use serde::Serialize;

use super::drive::Param;
use super::estimator::insertion_term;
use super::observable::Observable;
use super::paths::InsertionOpts;
use super::reference::{Estimate, GradientProblem, default_threads, par_map};
use super::sim::RunOptions;
use crate::error::{Result, check};

/// One estimator's result for one (observable, parameter).
#[derive(Clone, Debug, Serialize)]
pub struct EstimatorRow {
    /// Estimator name.
    pub estimator: String,
    /// Seed mean ± standard error of the estimate.
    pub mean: f64,
    /// Standard error of the seed mean.
    pub se: f64,
    /// `|mean − reference| / |reference|`.
    pub rel_err_of_mean: f64,
    /// Median over seeds of `|estimate_s − reference| / |reference|` (what one call gives).
    pub median_rel_err_single: f64,
    /// Whether the seed mean has the opposite sign of a reference beyond 3 standard errors.
    pub sign_error: bool,
    /// Cost of one estimate in forward-run equivalents (measured wall time / forward wall time).
    pub cost_forward_eq: f64,
}

/// All estimators for one (observable, parameter).
#[derive(Clone, Debug, Serialize)]
pub struct AccuracyRow {
    /// Observable label.
    pub observable: String,
    /// Parameter label.
    pub param: String,
    /// Observable value (seed mean).
    pub value: f64,
    /// Reference: seed mean ± SE of the central differences.
    pub reference: f64,
    /// Standard error of the reference.
    pub reference_se: f64,
    /// Step of the central differences (the parameter's unit).
    pub h: f64,
    /// Estimator rows.
    pub estimators: Vec<EstimatorRow>,
}

/// Settings of a study.
#[derive(Clone, Debug)]
pub struct StudySpec {
    /// Observables (all evaluated on the same runs).
    pub observables: Vec<Observable>,
    /// Parameters with their central-difference steps.
    pub params: Vec<(Param, f64)>,
    /// Seeds (at least 3).
    pub seeds: Vec<u64>,
    /// Insertion-estimator settings.
    pub insertion: InsertionOpts,
}

struct SeedRuns {
    values: Vec<f64>,
    pathwise: Vec<Vec<f64>>,
    insertion: Vec<Vec<f64>>,
    differences: Vec<Vec<f64>>,
    wall: [f64; 3],
}

fn median(mut x: Vec<f64>) -> f64 {
    x.sort_by(|a, b| a.total_cmp(b));
    let n = x.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        x[n / 2]
    } else {
        0.5 * (x[n / 2 - 1] + x[n / 2])
    }
}

/// Runs the study for `prob` (its observable is ignored: `spec.observables` are used).
pub fn study(prob: &GradientProblem, spec: &StudySpec) -> Result<Vec<AccuracyRow>> {
    check::count_at_least("seeds", spec.seeds.len(), 3)?;
    check::count_at_least("observables", spec.observables.len(), 1)?;
    check::count_at_least("params", spec.params.len(), 1)?;
    let params: Vec<Param> = spec.params.iter().map(|p| p.0).collect();
    let np = params.len();
    let runs = par_map(&spec.seeds, default_threads(), |&s| {
        let net = prob.network(s)?;
        let t0 = std::time::Instant::now();
        let base = net.run(&prob.drive, prob.weight_s, &RunOptions::default())?;
        let t_fwd = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let pw = net.run(
            &prob.drive,
            prob.weight_s,
            &RunOptions {
                params: params.clone(),
                ..Default::default()
            },
        )?;
        let t_pw = t1.elapsed().as_secs_f64();
        let t2 = std::time::Instant::now();
        let ins = net.run(
            &prob.drive,
            prob.weight_s,
            &RunOptions {
                params: params.clone(),
                creation: None,
                insertion: Some(spec.insertion),
            },
        )?;
        let mut insertion = Vec::new();
        for o in &spec.observables {
            let term = insertion_term(&net, &ins, *o)?;
            let (_, pwg) = o.eval(&ins)?;
            insertion.push(
                (0..np)
                    .map(|q| {
                        if params[q] == Param::Weight {
                            pwg[q]
                        } else {
                            term[q]
                        }
                    })
                    .collect(),
            );
        }
        let t_ins = t2.elapsed().as_secs_f64();
        let mut values = Vec::new();
        let mut pathwise = Vec::new();
        for o in &spec.observables {
            values.push(o.eval(&base)?.0);
            pathwise.push(o.eval(&pw)?.1);
        }
        let mut differences = vec![vec![0.0; np]; spec.observables.len()];
        for (q, &(p, h)) in spec.params.iter().enumerate() {
            let (dp, wp) = prob.perturbed(p, h)?;
            let (dm, wm) = prob.perturbed(p, -h)?;
            let rp = net.run(&dp, wp, &RunOptions::default())?;
            let rm = net.run(&dm, wm, &RunOptions::default())?;
            for (oi, o) in spec.observables.iter().enumerate() {
                differences[oi][q] = (o.eval(&rp)?.0 - o.eval(&rm)?.0) / (2.0 * h);
            }
        }
        Ok(SeedRuns {
            values,
            pathwise,
            insertion,
            differences,
            wall: [t_fwd, t_pw, t_ins],
        })
    })?;
    let ns = runs.len();
    let fwd: f64 = runs.iter().map(|r| r.wall[0]).sum::<f64>() / ns as f64;
    let cost_pw = runs.iter().map(|r| r.wall[1]).sum::<f64>() / ns as f64 / fwd;
    let cost_ins = runs.iter().map(|r| r.wall[2]).sum::<f64>() / ns as f64 / fwd;
    let mut rows = Vec::new();
    for (oi, o) in spec.observables.iter().enumerate() {
        for (q, &(p, h)) in spec.params.iter().enumerate() {
            let d: Vec<f64> = runs.iter().map(|r| r.differences[oi][q]).collect();
            let reference = Estimate::from_samples(&d)?;
            let value = runs.iter().map(|r| r.values[oi]).sum::<f64>() / ns as f64;
            let scale = reference.mean.abs().max(1e-300);
            let row = |name: &str, x: Vec<f64>, leave_one_out: bool, cost: f64| -> Result<_> {
                let e = Estimate::from_samples(&x)?;
                let singles: Vec<f64> = x
                    .iter()
                    .enumerate()
                    .map(|(s, v)| {
                        let r = if leave_one_out {
                            (reference.mean * ns as f64 - d[s]) / (ns as f64 - 1.0)
                        } else {
                            reference.mean
                        };
                        (v - r).abs() / r.abs().max(1e-300)
                    })
                    .collect();
                Ok(EstimatorRow {
                    estimator: name.into(),
                    mean: e.mean,
                    se: e.se,
                    rel_err_of_mean: (e.mean - reference.mean).abs() / scale,
                    median_rel_err_single: median(singles),
                    sign_error: reference.mean.abs() > 3.0 * reference.se
                        && e.mean * reference.mean < 0.0,
                    cost_forward_eq: cost,
                })
            };
            let estimators = vec![
                row(
                    "pathwise (event-time)",
                    runs.iter().map(|r| r.pathwise[oi][q]).collect(),
                    false,
                    cost_pw,
                )?,
                row(
                    "insertion (drive; pathwise for w)",
                    runs.iter().map(|r| r.insertion[oi][q]).collect(),
                    false,
                    cost_ins,
                )?,
                row("one-seed CRN central difference", d.clone(), true, 2.0)?,
            ];
            rows.push(AccuracyRow {
                observable: o.label(),
                param: p.name(),
                value,
                reference: reference.mean,
                reference_se: reference.se,
                h,
                estimators,
            });
        }
    }
    Ok(rows)
}

/// The rows as a markdown table (one line per estimator).
pub fn markdown(title: &str, rows: &[AccuracyRow]) -> String {
    let mut s = format!(
        "{title}\n\n| observable | parameter | reference ± SE | estimator | seed mean ± SE | rel. err of mean | median rel. err (one seed) | sign error | cost (fwd-eq) |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        for e in &r.estimators {
            s += &format!(
                "| {} | {} | {:.4e} ± {:.1e} | {} | {:.4e} ± {:.1e} | {:.1} % | {:.1} % | {} | {:.1} |\n",
                r.observable,
                r.param,
                r.reference,
                r.reference_se,
                e.estimator,
                e.mean,
                e.se,
                100.0 * e.rel_err_of_mean,
                100.0 * e.median_rel_err_single,
                if e.sign_error { "**yes**" } else { "no" },
                e.cost_forward_eq
            );
        }
    }
    s
}
