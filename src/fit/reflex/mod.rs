//! The stretch-reflex calibration (issue 11, item 6; TOML `kind = "reflex"`): fit the Ia → MN
//! synaptic weight and the dynamic fusimotor drive so that the closed loop's force response to a
//! tendon tap matches a target trace.
//!
//! **Model.** [`crate::closed_loop`] with the spec's `[loop]` settings (hard spikes by default:
//! the network users simulate), constant descending drive `drive_hz`, static gamma
//! `gamma_stat_hz`. Parameters, in fitting order: `w_ia_us` (µS in the parameter vector, S
//! inside) and `gamma_dyn_hz` (Hz).
//!
//! **Observable.** The muscle force `F(t)` (N) over `window_s`, averaged in bins of `bin_s`:
//! `y_k` (N). **Loss** `L = Σ_k (y_k − y*_k)² / Σ_k y*_k²` with `y*` from a truth parameter set
//! (synthetic, so the optimum L = 0 and the parameters to recover are known).
//!
//! **Gradient.** Central differences with common random numbers (every row of a batched rollout
//! shares the generators' thresholds and the connectivity), `h_i = h_rel·x_i`, all 2d + 1 points in
//! one batched rollout: the estimator chosen for the spiking network by measurement (BENCHMARKS.md
//! §7). Autodiff through the closed loop is available on the tape path (smooth mode,
//! `tests/closed_loop.rs`) but its backward pass costs ≈ 10× the forward per second of
//! simulation and grows faster than linearly (BENCHMARKS.md §9), so it is not used here.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::objective::Objective;
use super::optimize::{Budget, FitReport, Method, minimize_within};
use super::params::ParamSet;
use super::report::{RunSummary, write_report};
use super::smooth::check_finite_values;
use crate::afferent::Stretch;
use crate::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams};
use crate::drive::DriveParams;
use crate::error::{Error, Result, check};
use crate::event::reference::{default_threads, par_map};
use crate::kernel::{Ctx, ExecPath, to_vec_f64};

/// Names of the two parameters, in fitting order.
pub const PARAM_NAMES: [&str; 2] = ["w_ia_us", "gamma_dyn_hz"];

/// One point of the parameter space (physical units).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReflexPoint {
    /// Ia → MN weight (µS).
    pub w_ia_us: f64,
    /// Dynamic fusimotor drive (Hz).
    pub gamma_dyn_hz: f64,
}

impl ReflexPoint {
    /// As a vector in [`PARAM_NAMES`] order.
    pub fn to_vec(self) -> Vec<f64> {
        vec![self.w_ia_us, self.gamma_dyn_hz]
    }
}

fn default_loop() -> ClosedLoopConfig {
    ClosedLoopConfig {
        n_mn: 60,
        duration_s: 0.6,
        stretch: vec![Stretch::Tap {
            onset_s: 0.4,
            amplitude: 0.05,
            duration_s: 0.1,
        }],
        ii: None,
        ib: None,
        ..ClosedLoopConfig::default()
    }
}

/// A reflex calibration problem (TOML `kind = "reflex"`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReflexSpec {
    /// `"reflex"`.
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// The closed loop (default: 60 MNs, 0.6 s, Ia pathway only, a 5 % / 100 ms tap at 0.4 s).
    #[serde(default = "default_loop", rename = "loop")]
    pub loop_cfg: ClosedLoopConfig,
    /// Descending drive (Hz).
    pub drive_hz: f64,
    /// Static fusimotor drive (Hz), held fixed.
    #[serde(default)]
    pub gamma_stat_hz: f64,
    /// Window of the compared force trace `[start, end)` (s).
    pub window_s: [f64; 2],
    /// Bin of the compared force trace (s).
    pub bin_s: f64,
    /// Relative central-difference step of the gradient.
    pub h_rel: f64,
    /// Parameters generating the target.
    pub truth: ReflexPoint,
    /// Starting point of every method.
    pub start: ReflexPoint,
    /// Lower bounds.
    pub lower: ReflexPoint,
    /// Upper bounds.
    pub upper: ReflexPoint,
    /// Wall-time budget per method (s).
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// Loss-evaluation budget per method (a population of B counts B).
    #[serde(default)]
    pub max_evals: Option<usize>,
    /// Largest batch per population rollout.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Methods.
    pub methods: Vec<Method>,
}

fn default_max_batch() -> usize {
    8
}

impl ReflexSpec {
    /// The shared budget of every method.
    pub fn budget(&self) -> Budget {
        Budget {
            max_evals: self.max_evals,
            time_s: self.time_budget_s,
        }
    }

    /// Parses TOML and validates.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let s: Self = super::spec::parse_toml(text, "reflex problem spec")?;
        s.validate()?;
        Ok(s)
    }

    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_toml_str(&super::spec::read_text(path)?)
    }

    /// Checks every field (typed errors naming it).
    pub fn validate(&self) -> Result<()> {
        if self.kind != "reflex" {
            return Err(Error::invalid("kind", &self.kind, "reflex"));
        }
        self.loop_cfg.validate()?;
        if self.loop_cfg.ia.is_none() {
            return Err(Error::invalid(
                "loop.ia",
                "none",
                "an Ia pathway (its weight is fitted)",
            ));
        }
        check::non_negative("drive_hz", self.drive_hz)?;
        check::non_negative("gamma_stat_hz", self.gamma_stat_hz)?;
        let [a, b] = self.window_s;
        check::non_negative("window_s[0]", a)?;
        if !(b > a && b <= self.loop_cfg.duration_s + 1e-12) {
            return Err(Error::invalid(
                "window_s[1]",
                b,
                format!("in ({a}, loop.duration_s = {}]", self.loop_cfg.duration_s),
            ));
        }
        check::in_range("bin_s", self.bin_s, self.loop_cfg.dt_s, b - a)?;
        check::in_range("h_rel", self.h_rel, 1e-6, 0.5)?;
        self.budget().validate()?;
        check::count_at_least("max_batch", self.max_batch, 1)?;
        check::count_at_least("methods", self.methods.len(), 1)?;
        crate::fit::optimize::refuse_least_squares(&self.methods, "the reflex problem")?;
        for (name, v) in PARAM_NAMES.iter().zip(self.lower.to_vec()) {
            check::non_negative(&format!("lower.{name}"), v)?;
        }
        super::spec::check_points_in_bounds(
            &PARAM_NAMES,
            &self.lower.to_vec(),
            &self.upper.to_vec(),
            &[
                ("truth", self.truth.to_vec()),
                ("start", self.start.to_vec()),
            ],
        )?;
        if self.lower.w_ia_us <= 0.0 {
            return Err(Error::invalid("lower.w_ia_us", self.lower.w_ia_us, "> 0"));
        }
        Ok(())
    }
}

/// The closed loop as a function of parameter rows → binned force traces.
pub struct ReflexModel {
    spec: ReflexSpec,
}

impl ReflexModel {
    /// From a validated spec.
    pub fn new(spec: &ReflexSpec) -> Result<Self> {
        spec.validate()?;
        Ok(Self { spec: spec.clone() })
    }

    /// Binned force traces `[B][K]` (N) of parameter rows `[B][2]`: the rows split into batches
    /// of at most `max_batch`, one batch per core ([`default_threads`]).
    pub fn traces(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        self.traces_on(rows, default_threads())
    }

    /// [`ReflexModel::traces`] on `threads` threads (≥ 1). Every row is computed on its own (the
    /// stream path has no arithmetic across rows), so the result does not depend on `threads`.
    pub fn traces_on(&self, rows: &[Vec<f64>], threads: usize) -> Result<Vec<Vec<f64>>> {
        check::count_at_least("threads", threads, 1)?;
        let per = rows
            .len()
            .div_ceil(threads)
            .clamp(1, self.spec.max_batch.max(1));
        let chunks: Vec<&[Vec<f64>]> = rows.chunks(per).collect();
        Ok(par_map(&chunks, threads, |c| self.rollout(c))?
            .into_iter()
            .flatten()
            .collect())
    }

    fn rollout(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let s = &self.spec;
        let ctx = Ctx::cpu();
        let b = rows.len();
        let col =
            |i: usize, scale: f64| ctx.tensor(rows.iter().map(|r| r[i] * scale).collect(), [b, 1]);
        let params = ClosedLoopParams {
            drive: DriveParams::scalars(&ctx, s.drive_hz, 0.0, 0.0, 0.0, 0.0),
            w_ia_s: col(0, 1e-6),
            gamma_dyn_hz: col(1, 1.0),
            gamma_stat_hz: ctx.full([1, 1], s.gamma_stat_hz),
            ..ClosedLoopParams::myogen(&ctx, s.drive_hz, 0.0)
        };
        // forward only (CRN differences): the stream path
        let out = closed_loop::build(&s.loop_cfg, &ctx, b, &params)?.run_path(ExecPath::Stream)?;
        let f = to_vec_f64(out.trace(crate::muscle::hill::buffers::FORCE_N)?);
        let dt = s.loop_cfg.dt_s;
        let (a, e) = (
            (s.window_s[0] / dt).round() as usize,
            (s.window_s[1] / dt).round() as usize,
        );
        let per_bin = ((s.bin_s / dt).round() as usize).max(1);
        Ok((0..b)
            .map(|row| {
                (a..e)
                    .step_by(per_bin)
                    .map(|k0| {
                        let k1 = (k0 + per_bin).min(e);
                        (k0..k1).map(|k| f[k * b + row]).sum::<f64>() / (k1 - k0) as f64
                    })
                    .collect()
            })
            .collect())
    }
}

/// `L = Σ_k (y_k − y*_k)² / Σ_k y*_k²`.
pub fn loss_of(y: &[f64], target: &[f64]) -> f64 {
    let num: f64 = y.iter().zip(target).map(|(a, b)| (a - b).powi(2)).sum();
    num / target.iter().map(|v| v * v).sum::<f64>()
}

/// The reflex loss with its CRN central-difference gradient (all 2d + 1 points in one rollout).
pub struct ReflexObjective<'m> {
    /// Model.
    pub model: &'m ReflexModel,
    /// Target binned force trace (N).
    pub target: Vec<f64>,
    /// Relative difference step.
    pub h_rel: f64,
}

impl Objective for ReflexObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.values(&[x.to_vec()])?[0])
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let d = x.len();
        let h: Vec<f64> = x.iter().map(|v| self.h_rel * v.abs().max(1e-12)).collect();
        let mut rows = vec![x.to_vec()];
        for i in 0..d {
            for sgn in [1.0, -1.0] {
                let mut r = x.to_vec();
                r[i] += sgn * h[i];
                rows.push(r);
            }
        }
        let l: Vec<f64> = self
            .model
            .traces(&rows)?
            .iter()
            .map(|y| loss_of(y, &self.target))
            .collect();
        let g: Vec<f64> = (0..d)
            .map(|i| (l[1 + 2 * i] - l[2 + 2 * i]) / (2.0 * h[i]))
            .collect();
        check_finite_values("reflex loss", &l)?;
        check_finite_values("reflex gradient", &g)?;
        Ok((l[0], g))
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let l: Vec<f64> = self
            .model
            .traces(xs)?
            .iter()
            .map(|y| loss_of(y, &self.target))
            .collect();
        check_finite_values("reflex loss", &l)?;
        Ok(l)
    }
}

/// The parameter set (logit transforms inside the bounds).
pub fn param_set(spec: &ReflexSpec) -> Result<ParamSet> {
    ParamSet::in_box(
        &PARAM_NAMES,
        &spec.lower.to_vec(),
        &spec.upper.to_vec(),
        &spec.start.to_vec(),
    )
}

/// Runs the reflex calibration spec at `spec_path`.
pub fn run_reflex_calibration(spec_path: &Path, out_dir: &Path) -> Result<RunSummary> {
    run_reflex_spec(&ReflexSpec::load(spec_path)?, out_dir)
}

/// Runs every method under the same budget and writes the report (summary.json with the
/// recovered parameters and their relative errors, report.md, loss plots, `reflex.png` with the
/// target and fitted traces).
pub fn run_reflex_spec(spec: &ReflexSpec, out_dir: &Path) -> Result<RunSummary> {
    let model = ReflexModel::new(spec)?;
    let t0 = Instant::now();
    let spin = crate::progress::spinner("target");
    spin.set_message("force response of the truth");
    let target = model.traces(&[spec.truth.to_vec()])?.remove(0);
    spin.finish_and_clear();
    if target.iter().all(|v| *v == 0.0) {
        return Err(Error::invalid(
            "truth",
            format!("{:?}", spec.truth),
            "parameters that produce force in the window (raise drive_hz)",
        ));
    }
    let target_s = t0.elapsed().as_secs_f64();
    let params = param_set(spec)?;
    let truth = spec.truth.to_vec();
    let mut fits: Vec<FitReport> = Vec::new();
    let mut table = Vec::new();
    let mut fitted = Vec::new();
    for method in &spec.methods {
        let mut obj = ReflexObjective {
            model: &model,
            target: target.clone(),
            h_rel: spec.h_rel,
        };
        let rep = minimize_within(&mut obj, &params, method, None, spec.budget())?;
        let rel: Vec<f64> = rep
            .x_best
            .iter()
            .zip(&truth)
            .map(|(x, t)| (x - t) / t)
            .collect();
        table.push(serde_json::json!({
            "method": method.name(), "loss": rep.loss_best, "x": rep.x_best,
            "relative_error": rel, "evaluations": rep.evaluations,
            "gradients": rep.gradients, "wall_s": rep.wall_s,
        }));
        fitted.push((method.name().to_string(), rep.x_best.clone()));
        fits.push(rep);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io {
        path: out_dir.display().to_string(),
        source: e,
    })?;
    let rows: Vec<Vec<f64>> = fitted.iter().map(|(_, x)| x.clone()).collect();
    let traces = model.traces(&rows)?;
    let t_of = |k: usize| spec.window_s[0] + (k as f64 + 0.5) * spec.bin_s;
    let mut series = vec![super::plot::Series::new(
        "target",
        target
            .iter()
            .enumerate()
            .map(|(k, v)| (t_of(k), *v))
            .collect(),
    )];
    for ((name, _), y) in fitted.iter().zip(&traces) {
        series.push(super::plot::Series::new(
            name,
            y.iter().enumerate().map(|(k, v)| (t_of(k), *v)).collect(),
        ));
    }
    super::plot::line_plot(
        &out_dir.join("reflex.png"),
        "Tendon-tap force response: target and fits",
        "time (s)",
        "muscle force (N)",
        &series,
        super::plot::Scale::Linear,
        super::plot::Scale::Linear,
    )?;
    let summary = RunSummary {
        problem: spec.name.clone().unwrap_or_else(|| "reflex".into()),
        description: format!(
            "Fit of the Ia → MN weight and the dynamic fusimotor drive to the force response to a \
             tendon tap ({} MNs, {} spikes, drive {} Hz, window {:?} s in {} s bins), target from \
             a known truth; gradient by central differences with common random numbers \
             (h_rel {}); {} per method.",
            spec.loop_cfg.n_mn,
            if spec.loop_cfg.spike_mode == crate::neuron::spike::SpikeMode::Rate {
                "smooth (rate-mode)"
            } else {
                "hard"
            },
            spec.drive_hz,
            spec.window_s,
            spec.bin_s,
            spec.h_rel,
            spec.budget().describe()
        ),
        fits,
        extra: serde_json::json!({
            "truth": spec.truth, "start": spec.start, "results": table,
            "target_run_s": target_s, "target_n": target,
            "units": "weight µS, gamma Hz, force N",
        }),
    };
    write_report(out_dir, &summary)?;
    Ok(summary)
}
