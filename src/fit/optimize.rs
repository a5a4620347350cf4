//! Gradient and derivative-free optimisers as thin adapters over one [`Tracked`] objective.
//!
//! - Gradient: burn's Adam (over the unconstrained θ), argmin's L-BFGS (More–Thuente line search).
//! - Derivative-free: argmin's Nelder–Mead (in θ), particle swarm (physical box, whole swarm in one
//!   batched evaluation via `bulk_cost`), Brent (1-D), and an Optuna-like random search.
//!
//! argmin works on `Vec<f64>` here (its ndarray support lags burn's); the conversion happens in
//! this file only.

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::brent::BrentOpt;
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::particleswarm::{Particle, ParticleSwarm};
use argmin::solver::quasinewton::LBFGS;
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Tensor;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::objective::{Evaluation, Objective, Tracked};
use super::params::ParamSet;
use crate::error::{Error, Result};
use crate::kernel::{Ctx, to_vec_f64};

/// An optimiser and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// burn's Adam on θ; `lr` in θ units per step.
    Adam {
        /// Learning rate.
        lr: f64,
        /// Maximum gradient evaluations.
        iters: usize,
    },
    /// argmin L-BFGS with More–Thuente line search on θ.
    Lbfgs {
        /// Maximum iterations.
        iters: usize,
        /// History size.
        memory: usize,
    },
    /// argmin Nelder–Mead on θ; initial simplex θ₀ + `step`·eᵢ.
    NelderMead {
        /// Maximum loss evaluations.
        budget: usize,
        /// Initial simplex size in θ units.
        step: f64,
    },
    /// argmin particle swarm in the physical box.
    ParticleSwarm {
        /// Maximum loss evaluations.
        budget: usize,
        /// Seed one particle at the start point `x0` (the others uniform in the box, as argmin
        /// draws them), so the swarm starts where the other methods start. Default false:
        /// argmin's own uniform initialisation.
        #[serde(default)]
        start_particle: bool,
        /// Swarm size (one batched evaluation per iteration).
        particles: usize,
        /// RNG seed.
        seed: u64,
    },
    /// argmin Brent minimisation on the physical interval (1-D problems only).
    Brent {
        /// Maximum loss evaluations.
        budget: usize,
    },
    /// Levenberg–Marquardt on θ for least-squares objectives ([`super::lm`]): residuals and a
    /// Jacobian from the objective (on the spiking network: CRN differences).
    LevenbergMarquardt {
        /// Maximum Jacobian evaluations.
        iters: usize,
        /// Initial damping relative to the largest diagonal entry of JᵀJ (default 1e-3).
        #[serde(default = "default_lm_damping")]
        damping: f64,
    },
    /// Uniform random search in the physical box, evaluated in batches (Optuna-like baseline).
    RandomSearch {
        /// Maximum loss evaluations.
        budget: usize,
        /// Points per batched evaluation.
        batch: usize,
        /// RNG seed.
        seed: u64,
    },
}

fn default_lm_damping() -> f64 {
    1e-3
}

impl Method {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Adam { .. } => "adam",
            Method::Lbfgs { .. } => "lbfgs",
            Method::NelderMead { .. } => "nelder_mead",
            Method::ParticleSwarm { .. } => "particle_swarm",
            Method::Brent { .. } => "brent",
            Method::RandomSearch { .. } => "random_search",
            Method::LevenbergMarquardt { .. } => "levenberg_marquardt",
        }
    }
    /// Whether the method uses gradients.
    pub fn uses_gradient(&self) -> bool {
        matches!(
            self,
            Method::Adam { .. } | Method::Lbfgs { .. } | Method::LevenbergMarquardt { .. }
        )
    }
}

/// Refuses a least-squares method (Levenberg–Marquardt) in `methods` of a problem whose objective
/// has no residuals; `problem` says which problems do (the error's "allowed" text).
pub fn refuse_least_squares(methods: &[Method], problem: &str) -> Result<()> {
    match methods
        .iter()
        .position(|m| matches!(m, Method::LevenbergMarquardt { .. }))
    {
        Some(i) => Err(Error::invalid(
            format!("methods[{i}].method"),
            "levenberg_marquardt",
            format!(
                "a method for this problem's scalar loss ({problem} has no residuals; \
                 Levenberg–Marquardt runs on the recording fit with [gradient] model = \"spiking\")"
            ),
        )),
        None => Ok(()),
    }
}

/// What one optimiser run achieved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitReport {
    /// Method name.
    pub method: String,
    /// Parameter names.
    pub names: Vec<String>,
    /// Best physical parameters found.
    pub x_best: Vec<f64>,
    /// Best loss.
    pub loss_best: f64,
    /// Loss evaluations (a population of B counts B).
    pub evaluations: usize,
    /// Gradient evaluations.
    pub gradients: usize,
    /// Wall time (s).
    pub wall_s: f64,
    /// Why it stopped.
    pub stop_reason: String,
    /// Every evaluation.
    pub history: Vec<Evaluation>,
}

/// Shared limits of one optimiser run, on top of the method's own iteration / evaluation count:
/// a cap on loss evaluations (a population of B counts B) and on wall time (s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Maximum loss evaluations (None = only the method's own limit).
    pub max_evals: Option<usize>,
    /// Maximum wall time in seconds (None = unlimited).
    pub time_s: Option<f64>,
}

impl Budget {
    /// Typed errors: a time budget must be > 0, an evaluation cap ≥ 1.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.time_s {
            crate::error::check::positive("time_budget_s", t)?;
        }
        if let Some(n) = self.max_evals {
            crate::error::check::count_at_least("max_evals", n, 1)?;
        }
        Ok(())
    }

    /// Words for reports: "30 s of wall time", "at most 200 loss evaluations", both, or "only
    /// its own iteration limit".
    pub fn describe(&self) -> String {
        match (self.time_s, self.max_evals) {
            (Some(t), Some(n)) => format!("{t} s of wall time and at most {n} loss evaluations"),
            (Some(t), None) => format!("{t} s of wall time"),
            (None, Some(n)) => format!("at most {n} loss evaluations"),
            (None, None) => "only its own iteration limit".into(),
        }
    }
}

/// Minimises `objective` over `params` with `method`, starting from `x0` (physical; default:
/// the parameters' `init`). `time_budget_s` optionally caps the wall time.
pub fn minimize(
    objective: &mut dyn Objective,
    params: &ParamSet,
    method: &Method,
    x0: Option<&[f64]>,
    time_budget_s: Option<f64>,
) -> Result<FitReport> {
    let budget = Budget {
        max_evals: None,
        time_s: time_budget_s,
    };
    minimize_within(objective, params, method, x0, budget)
}

/// As [`minimize`], under a shared [`Budget`]: the evaluation cap applies to every method (the
/// smaller of it and a derivative-free method's own `budget`), the wall-time cap likewise.
pub fn minimize_within(
    objective: &mut dyn Objective,
    params: &ParamSet,
    method: &Method,
    x0: Option<&[f64]>,
    budget: Budget,
) -> Result<FitReport> {
    let x0 = x0.map(|x| x.to_vec()).unwrap_or_else(|| params.init());
    params.check_in_bounds(&x0)?;
    let theta0 = params.to_unconstrained(&x0);
    let mut t = Tracked::new(objective, params.clone());
    t.journal = super::journal::open_next(method.name())?;
    t.progress = Some(crate::progress::fit_bar(
        method.name(),
        budget.max_evals,
        budget.time_s,
    ));
    t.progress_in_time = budget.max_evals.is_none() && budget.time_s.is_some();
    t.time_budget_s = budget.time_s;
    t.budget = budget.max_evals;
    // A derivative-free method's own evaluation count, capped by the shared one.
    let cap = |own: usize| budget.max_evals.map_or(own, |m| m.min(own));
    let stop = match method {
        Method::Adam { lr, iters } => run_adam(&mut t, theta0, *lr, *iters)?,
        Method::Lbfgs { iters, memory } => {
            let solver = LBFGS::new(MoreThuenteLineSearch::new(), *memory);
            // L-BFGS's first step is the raw gradient. With a logit transform a large first step
            // saturates the sigmoid where the gradient vanishes; a tiny one stays inside one flat
            // piece of a spiking loss (piecewise constant in the parameters under common random
            // numbers: measured on the reflex fit, whose first step of 5e-4 θ moved no spike, so
            // every line-search trial returned the start's loss). Scaling the loss by the initial
            // gradient's max-norm (a constant factor: same minimiser, same later quasi-Newton
            // steps) makes the first trial step exactly one θ unit in max-norm.
            let (_, g0) = t.value_and_grad_theta(&theta0)?;
            let scale = g0.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            let scale = if scale > 0.0 && scale.is_finite() {
                scale
            } else {
                1.0
            };
            let mut adapter = Adapter::new(&mut t, Space::Theta);
            adapter.scale = scale;
            finish_argmin(
                Executor::new(adapter, solver)
                    .configure(|s| s.param(theta0).max_iters(*iters as u64))
                    .run()
                    .map(|r| r.state().get_termination_reason().map(|r| r.to_string())),
                &t,
            )?
        }
        Method::NelderMead { budget, step } => {
            let budget = &cap(*budget);
            t.budget = Some(*budget);
            let mut simplex = vec![theta0.clone()];
            for i in 0..theta0.len() {
                let mut v = theta0.clone();
                v[i] += step;
                simplex.push(v);
            }
            // argmin evaluates the initial simplex with `cost(..).unwrap()` (a panic on any
            // error, the budget's included): evaluate it here, where an error is ours to report,
            // and hand argmin the values from the adapter's cache.
            let mut known = Vec::with_capacity(simplex.len());
            for v in &simplex {
                match t.value_theta(v) {
                    Ok(c) => known.push((v.clone(), c)),
                    Err(_) if t.exhausted() => break,
                    Err(e) => return Err(e),
                }
            }
            if known.len() < simplex.len() {
                if let Some(pb) = t.progress.take() {
                    pb.finish_and_clear();
                }
                return finish_report(method, params, t, "budget spent in the initial simplex");
            }
            let solver = NelderMead::new(simplex)
                .with_sd_tolerance(1e-10)
                .map_err(|e| opt_err("nelder_mead", e))?;
            let mut adapter = Adapter::new(&mut t, Space::Theta);
            adapter.known = RefCell::new(known);
            finish_argmin(
                Executor::new(adapter, solver)
                    .configure(|s| s.max_iters(*budget as u64))
                    .run()
                    .map(|r| r.state().get_termination_reason().map(|r| r.to_string())),
                &t,
            )?
        }
        Method::ParticleSwarm {
            budget,
            start_particle,
            particles,
            seed,
        } => {
            let budget = &cap(*budget);
            t.budget = Some(*budget);
            let (lo, hi) = (params.lower(), params.upper());
            let population = if *start_particle {
                Some(start_population(&mut t, &x0, *particles, *seed)?)
            } else {
                None
            };
            let solver = ParticleSwarm::new((lo, hi), *particles)
                .with_rng_generator(StdRng::seed_from_u64(*seed));
            let adapter = Adapter::new(&mut t, Space::Physical);
            finish_argmin(
                Executor::new(adapter, solver)
                    .configure(|s| {
                        let s = s.max_iters(*budget as u64);
                        match population {
                            Some(p) => s.population(p),
                            None => s,
                        }
                    })
                    .run()
                    .map(|r| r.state().get_termination_reason().map(|r| r.to_string())),
                &t,
            )?
        }
        Method::LevenbergMarquardt { iters, damping } => super::lm::run_lm(
            &mut t,
            theta0,
            super::lm::LmOptions {
                iters: *iters,
                damping: *damping,
            },
        )?,
        Method::Brent { budget } => {
            if params.len() != 1 {
                return Err(Error::config(
                    "method",
                    "Brent minimises one parameter only",
                ));
            }
            let budget = &cap(*budget);
            t.budget = Some(*budget);
            let solver = BrentOpt::new(params.lower()[0], params.upper()[0]);
            let adapter = Adapter1d {
                t: RefCell::new(&mut t),
            };
            finish_argmin(
                Executor::new(adapter, solver)
                    .configure(|s| s.max_iters(*budget as u64))
                    .run()
                    .map(|r| r.state().get_termination_reason().map(|r| r.to_string())),
                &t,
            )?
        }
        Method::RandomSearch {
            budget,
            batch,
            seed,
        } => {
            let budget = &cap(*budget);
            t.budget = Some(*budget);
            let mut rng = StdRng::seed_from_u64(*seed);
            let (lo, hi) = (params.lower(), params.upper());
            let mut reason = "budget spent".to_string();
            while t.evaluations < *budget {
                let n = (*batch).max(1).min(budget - t.evaluations);
                let xs: Vec<Vec<f64>> = (0..n)
                    .map(|_| {
                        lo.iter()
                            .zip(&hi)
                            .map(|(l, h)| rng.random_range(*l..*h))
                            .collect()
                    })
                    .collect();
                if t.values_phys(&xs).is_err() {
                    if !t.exhausted() {
                        return Err(Error::Optimizer {
                            method: "random_search".into(),
                            reason: "evaluation failed".into(),
                        });
                    }
                    reason = "time budget spent".into();
                    break;
                }
            }
            reason
        }
    };
    if let Some(pb) = t.progress.take() {
        pb.finish_with_message(format!("{} ({stop})", t.progress_message()));
    }
    finish_report(method, params, t, &stop)
}

/// The report of a finished run (its best point; an error when no finite loss was evaluated).
fn finish_report(method: &Method, params: &ParamSet, t: Tracked, stop: &str) -> Result<FitReport> {
    let (x_best, loss_best) = t.best.clone().ok_or_else(|| Error::Optimizer {
        method: method.name().into(),
        reason: format!("no finite loss was evaluated ({stop})"),
    })?;
    Ok(FitReport {
        method: method.name().into(),
        names: params.names(),
        x_best,
        loss_best,
        evaluations: t.evaluations,
        gradients: t.gradients,
        wall_s: t.elapsed_s(),
        stop_reason: stop.into(),
        history: t.history,
    })
}

/// A swarm whose first particle sits at `x0` and the rest uniformly in the box (velocities uniform
/// in ±(hi − lo), as argmin draws them), evaluated in one batched call.
fn start_population(
    t: &mut Tracked,
    x0: &[f64],
    n: usize,
    seed: u64,
) -> Result<Vec<Particle<Vec<f64>, f64>>> {
    let (lo, hi) = (t.params.lower(), t.params.upper());
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x5eed));
    let uniform = |rng: &mut StdRng, a: f64, b: f64| a + (b - a) * rng.random::<f64>();
    let mut positions = vec![x0.to_vec()];
    while positions.len() < n.max(1) {
        positions.push(
            lo.iter()
                .zip(&hi)
                .map(|(a, b)| uniform(&mut rng, *a, *b))
                .collect(),
        );
    }
    let velocities: Vec<Vec<f64>> = positions
        .iter()
        .map(|_| {
            lo.iter()
                .zip(&hi)
                .map(|(a, b)| uniform(&mut rng, -(b - a), b - a))
                .collect()
        })
        .collect();
    let costs = t.values_phys(&positions)?;
    Ok(positions
        .into_iter()
        .zip(velocities)
        .zip(costs)
        .map(|((p, v), c)| Particle::new(p, c, v))
        .collect())
}

fn opt_err(method: &str, e: impl std::fmt::Display) -> Error {
    Error::Optimizer {
        method: method.into(),
        reason: e.to_string(),
    }
}

/// An argmin run ends either normally or because our budget stopped it (which is not a failure).
fn finish_argmin(
    res: std::result::Result<Option<String>, argmin::core::Error>,
    t: &Tracked,
) -> Result<String> {
    match res {
        // argmin reports a budget stop inside a line search as a "termination reason".
        Ok(_) if t.exhausted() => Ok("budget spent".into()),
        Ok(reason) => Ok(reason.unwrap_or_else(|| "max iterations".into())),
        Err(_) if t.exhausted() => Ok("budget spent".into()),
        Err(e) => Err(opt_err("argmin", e)),
    }
}

/// (θ, loss, gradient) of the last gradient evaluation.
type CachedPoint = (Vec<f64>, f64, Vec<f64>);

#[derive(Clone, Copy, PartialEq)]
enum Space {
    Theta,
    Physical,
}

/// argmin adapter: caches the last value-and-gradient so L-BFGS's separate `cost` and `gradient`
/// calls at one point cost one rollout.
struct Adapter<'a, 'b> {
    t: RefCell<&'b mut Tracked<'a>>,
    space: Space,
    cache: RefCell<Option<CachedPoint>>,
    /// Loss (and gradient) are divided by this constant before argmin sees them.
    scale: f64,
    /// Losses already evaluated (and counted) at these θ, returned without a new evaluation.
    known: RefCell<Vec<(Vec<f64>, f64)>>,
}

impl<'a, 'b> Adapter<'a, 'b> {
    fn new(t: &'b mut Tracked<'a>, space: Space) -> Self {
        Self {
            t: RefCell::new(t),
            space,
            cache: RefCell::new(None),
            scale: 1.0,
            known: RefCell::new(Vec::new()),
        }
    }
}

impl CostFunction for Adapter<'_, '_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        if let Some((x, v, _)) = self.cache.borrow().as_ref()
            && x == p
        {
            return Ok(*v / self.scale);
        }
        let pos = self.known.borrow().iter().position(|(x, _)| x == p);
        if let Some(i) = pos {
            return Ok(self.known.borrow_mut().swap_remove(i).1 / self.scale);
        }
        let v = match self.space {
            Space::Theta => self.t.borrow_mut().value_theta(p)?,
            Space::Physical => self.t.borrow_mut().values_phys(std::slice::from_ref(p))?[0],
        };
        Ok(v / self.scale)
    }
    fn bulk_cost<P>(&self, params: &[P]) -> std::result::Result<Vec<f64>, argmin::core::Error>
    where
        P: std::borrow::Borrow<Vec<f64>> + argmin::core::SyncAlias,
        f64: argmin::core::SendAlias,
        Self: argmin::core::SyncAlias,
    {
        let xs: Vec<Vec<f64>> = params.iter().map(|p| p.borrow().clone()).collect();
        let phys: Vec<Vec<f64>> = match self.space {
            Space::Physical => xs,
            Space::Theta => xs
                .iter()
                .map(|x| self.t.borrow().params.to_physical(x))
                .collect(),
        };
        let vs = self.t.borrow_mut().values_phys(&phys)?;
        Ok(vs.into_iter().map(|v| v / self.scale).collect())
    }
}

impl Gradient for Adapter<'_, '_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        if let Some((x, _, g)) = self.cache.borrow().as_ref()
            && x == p
        {
            return Ok(g.iter().map(|v| v / self.scale).collect());
        }
        let (v, g) = self.t.borrow_mut().value_and_grad_theta(p)?;
        *self.cache.borrow_mut() = Some((p.clone(), v, g.clone()));
        Ok(g.iter().map(|v| v / self.scale).collect())
    }
}

struct Adapter1d<'a, 'b> {
    t: RefCell<&'b mut Tracked<'a>>,
}

impl CostFunction for Adapter1d<'_, '_> {
    type Param = f64;
    type Output = f64;
    fn cost(&self, p: &f64) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.t.borrow_mut().values_phys(&[vec![*p]])?[0])
    }
}

/// The unconstrained parameters as a burn module, so burn's Adam can update them.
#[derive(Module, Debug)]
struct Theta {
    theta: Param<Tensor<1>>,
}

fn run_adam(t: &mut Tracked, theta0: Vec<f64>, lr: f64, iters: usize) -> Result<String> {
    crate::error::check::positive("adam.lr", lr)?;
    let ctx = Ctx::cpu().f64().autodiff();
    let n = theta0.len();
    let mut module = Theta {
        theta: Param::from_tensor(ctx.tensor(theta0, [n])),
    };
    let mut optim = AdamConfig::new().init();
    for _ in 0..iters {
        let theta = to_vec_f64(module.theta.val());
        let (_, g) = match t.value_and_grad_theta(&theta) {
            Ok(r) => r,
            Err(_) if t.exhausted() => return Ok("budget spent".into()),
            Err(e) => return Err(e),
        };
        if g.iter().any(|v| !v.is_finite()) {
            return Err(Error::Optimizer {
                method: "adam".into(),
                reason: format!("non-finite gradient {g:?} at θ = {theta:?}"),
            });
        }
        let mut grads = GradientsParams::new();
        grads.register(module.theta.id, ctx.tensor(g, [n]));
        module = optim.step(lr, module, grads);
    }
    Ok("max iterations".into())
}
