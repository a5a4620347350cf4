//! `myodiff gradcheck <spec>`: the gradient a calibration problem's gradient methods use, checked
//! against a reference, component by component, at the spec's starting point (or `--at`).
//!
//! - Deterministic objectives (the smooth network of `joint` / `recording`, the Watanabe smooth
//!   slope, the analytic noise PSD): the gradient by autodiff in **f64** against the central
//!   difference `n_i = (L(x + h_i e_i) − L(x − h_i e_i)) / 2h_i`, `h_i = rel_h·max(|x_i|, 1e-3)`
//!   (the lower point clipped at the parameter's lower bound, the spacing adjusted); per-component
//!   relative error `|a_i − n_i| / max(|n_i|, 1e-3·max_j |n_j|)` ≤ `tol`
//!   ([`crate::gradcheck::GradCheck`]).
//! - The spiking network (`[gradient] model = "spiking"`): the gradient is itself a central
//!   difference with common random numbers (one seed, the spec's). The reference is the same
//!   estimator averaged over `seeds` other network seeds, `ḡ ± SE`; the spec-seed estimate passes
//!   when `|z| = |a − ḡ| / (s·√(1 + 1/S))` ≤ 3 (`s` the per-seed standard deviation, S seeds),
//!   i.e. when it is a typical draw of the seed-averaged central difference.
//!
//! Units: each parameter in its own unit (the suffix of its name: `_hz` Hz, `_us` µS, …); the
//! gradient in loss units per parameter unit.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fit::Objective;
use crate::fit::difference::stencil;
use crate::fit::spec::FitModel;
use crate::gradcheck::GradCheck;
use crate::kernel::Precision;

/// Options of a gradient check.
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Parameters to check (empty: all the problem fits).
    pub params: Vec<String>,
    /// Overrides of the starting point, `(name, value)` in the parameter's unit.
    pub at: Vec<(String, f64)>,
    /// Relative central-difference step of deterministic objectives.
    pub rel_h: f64,
    /// Per-component relative tolerance of deterministic objectives.
    pub tol: f64,
    /// Seeds of the spiking model's reference (≥ 2).
    pub seeds: usize,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        Self {
            params: Vec::new(),
            at: Vec::new(),
            rel_h: 1e-5,
            tol: 1e-4,
            seeds: 8,
        }
    }
}

impl GradcheckOptions {
    /// Typed errors naming the option.
    pub fn validate(&self) -> Result<()> {
        if !(self.rel_h.is_finite() && self.rel_h > 0.0 && self.rel_h < 0.1) {
            return Err(Error::invalid("--rel-h", self.rel_h, "(0, 0.1)"));
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(Error::invalid("--tol", self.tol, "> 0"));
        }
        if self.seeds < 2 {
            return Err(Error::invalid("--seeds", self.seeds, ">= 2"));
        }
        for (name, v) in &self.at {
            if !v.is_finite() {
                return Err(Error::invalid(format!("--at {name}"), v, "a finite number"));
            }
        }
        Ok(())
    }
}

/// One checked parameter.
#[derive(Clone, Debug, Serialize)]
pub struct GradcheckRow {
    /// Parameter name.
    pub name: String,
    /// Its value at the check point.
    pub x: f64,
    /// The calibration's gradient component (autodiff, or the spec-seed CRN difference).
    pub analytic: f64,
    /// The reference (central difference, or its seed average).
    pub reference: f64,
    /// Standard error of the reference (0 for a deterministic objective).
    pub reference_se: f64,
    /// Deterministic: per-component relative error; spiking: `|z|`.
    pub error: f64,
    /// Whether this component passes.
    pub pass: bool,
}

/// The outcome of `myodiff gradcheck`.
#[derive(Clone, Debug, Serialize)]
pub struct GradcheckReport {
    /// Problem kind.
    pub kind: String,
    /// What the analytic gradient is.
    pub analytic: String,
    /// What the reference is and the pass rule.
    pub reference: String,
    /// Loss at the check point.
    pub loss: f64,
    /// Loss evaluations spent.
    pub evaluations: usize,
    /// Checked parameters.
    pub rows: Vec<GradcheckRow>,
    /// Whether every row passes.
    pub passed: bool,
}

/// A problem's objective factory: the objective at network seed `seed` (None: the spec's).
type Factory<'a> = dyn FnMut(Option<u64>) -> Result<Box<dyn Objective + 'a>> + 'a;

/// Runs the check of the problem spec at `spec` (any `kind`).
pub fn gradcheck_problem(spec: &Path, opts: &GradcheckOptions) -> Result<GradcheckReport> {
    opts.validate()?;
    let text = crate::fit::spec::read_text(spec)?;
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    let k: Kind = crate::fit::spec::parse_toml(&text, &format!("problem spec {}", spec.display()))?;
    match k.kind.as_str() {
        "joint" => joint(spec, opts),
        "recording" => recording(spec, opts),
        "noise" => noise(spec, opts),
        "watanabe" => watanabe(spec, opts),
        other => Err(Error::invalid(
            "kind",
            other,
            "one of: noise, watanabe, recording, joint",
        )),
    }
}

fn joint(path: &Path, opts: &GradcheckOptions) -> Result<GradcheckReport> {
    use crate::fit::joint::{JointModel, JointObservables, JointSpec, param_set, spiking, targets};
    let spec = JointSpec::load(path)?;
    let d = spec.dims.iter().copied().max().unwrap_or(4);
    let params = param_set(&spec, d)?;
    let base = spec.truth.to_vec();
    match spec.gradient.model {
        FitModel::Smooth => {
            let model = JointModel::new(&spec.network, spec.freq_hz, spec.max_batch)?
                .with_precision(Precision::F64);
            let tgt = targets(&spec, &model)?;
            let mut make = |_: Option<u64>| Ok(model.objective(tgt, base.clone(), &spec.gradient));
            check("joint", &params, opts, false, &mut make)
        }
        FitModel::Spiking => {
            let model = spiking::SpikingJoint::new(&spec.network, spec.freq_hz)?;
            let tgt = targets(&spec, &model)?;
            let models: Vec<spiking::SpikingJoint> = (0..=opts.seeds as u64)
                .map(|s| {
                    let mut cfg = spec.network.clone();
                    cfg.seed = spec.network.seed.wrapping_add(s);
                    spiking::SpikingJoint::new(&cfg, spec.freq_hz)
                })
                .collect::<Result<_>>()?;
            let mut make = |seed: Option<u64>| {
                let m = &models[seed.map_or(0, |s| s as usize)];
                Ok(m.objective(tgt, base.clone(), &spec.gradient))
            };
            check("joint", &params, opts, true, &mut make)
        }
    }
}

fn recording(path: &Path, opts: &GradcheckOptions) -> Result<GradcheckReport> {
    use crate::fit::recording::{
        RecordingFitSpec, RecordingObjective, SpikingRecording, Targets, param_set, setup,
    };
    let spec = RecordingFitSpec::load(path)?;
    let data = crate::fit::spec::resolve_data_path(spec.data.path.as_deref(), path);
    let rec = crate::io::recording::Recording::load(data)?;
    let targets = Targets::from_recording(&spec.data, &rec)?;
    let (model, x0) = setup(&spec, targets)?;
    let params = param_set(&spec, &x0)?;
    match spec.gradient.model {
        FitModel::Smooth => {
            let model = model.with_precision(Precision::F64);
            let mut make = |_: Option<u64>| -> Result<Box<dyn Objective + '_>> {
                Ok(Box::new(RecordingObjective { model: &model }))
            };
            check("recording", &params, opts, false, &mut make)
        }
        FitModel::Spiking => {
            let models: Vec<_> = (0..=opts.seeds as u64)
                .map(|s| {
                    let mut m = model.clone();
                    m.cfg.seed = model.cfg.seed.wrapping_add(s);
                    m
                })
                .collect();
            let (h, hs) = (spec.gradient.h_hz, spec.gradient.h_scale_rel);
            let mut make = |seed: Option<u64>| -> Result<Box<dyn Objective + '_>> {
                let m = &models[seed.map_or(0, |s| s as usize)];
                Ok(Box::new(SpikingRecording::new(m, h, hs)?))
            };
            check("recording", &params, opts, true, &mut make)
        }
    }
}

fn noise(path: &Path, opts: &GradcheckOptions) -> Result<GradcheckReport> {
    use crate::fit::noise::{NoiseCalibrationSpec, NoiseProblem, RestData, resolve_data_path};
    let spec = NoiseCalibrationSpec::load(path)?;
    let rec = crate::io::recording::Recording::load(resolve_data_path(&spec, path))?;
    let data = RestData::from_recording(&spec, &rec)?;
    let mut problem = NoiseProblem::new(&spec, data)?;
    let params = problem.params.clone();
    let obj = std::cell::RefCell::new(&mut problem.objective);
    let mut make = |_: Option<u64>| -> Result<Box<dyn Objective + '_>> {
        Ok(Box::new(Borrowed(obj.borrow_mut())))
    };
    check("noise", &params, opts, false, &mut make)
}

fn watanabe(path: &Path, opts: &GradcheckOptions) -> Result<GradcheckReport> {
    use crate::fit::watanabe::{WatanabeModel, WatanabeSpec};
    let spec = WatanabeSpec::load(path)?;
    let params = spec.params()?;
    let beta = spec.smooth.beta;
    let model =
        std::cell::RefCell::new(WatanabeModel::from_spec(&spec).with_precision(Precision::F64));
    /// `L(dc) = F̄_s(dc)`, the smooth model's mean force (N) and its autodiff slope (N/Hz).
    struct SmoothForce<'m>(&'m std::cell::RefCell<WatanabeModel>, f64);
    impl Objective for SmoothForce<'_> {
        fn value(&mut self, x: &[f64]) -> Result<f64> {
            Ok(self.value_and_grad(x)?.0)
        }
        fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
            let (f, g) = self.0.borrow_mut().smooth_force_and_slope(self.1, x[0])?;
            Ok((f, vec![g]))
        }
    }
    let mut make = |_: Option<u64>| -> Result<Box<dyn Objective + '_>> {
        Ok(Box::new(SmoothForce(&model, beta)))
    };
    check("watanabe", &params, opts, false, &mut make)
}

/// An objective borrowed through a `RefCell` guard.
struct Borrowed<'a, 'b, T: Objective>(std::cell::RefMut<'a, &'b mut T>);

impl<T: Objective> Objective for Borrowed<'_, '_, T> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.0.value(x)
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.0.value_and_grad(x)
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        self.0.values(xs)
    }
}

/// The check point: the parameters' initial values with the `--at` overrides.
fn point(
    params: &crate::fit::ParamSet,
    opts: &GradcheckOptions,
) -> Result<(Vec<String>, Vec<f64>)> {
    let names = params.names();
    let mut x = params.init();
    let (lo, hi) = (params.lower(), params.upper());
    for (name, v) in &opts.at {
        let i = index(&names, name, "--at")?;
        if !(*v >= lo[i] && *v <= hi[i]) {
            return Err(Error::invalid(
                format!("--at {name}"),
                v,
                format!("the parameter's bounds [{}, {}]", lo[i], hi[i]),
            ));
        }
        x[i] = *v;
    }
    Ok((names, x))
}

fn index(names: &[String], name: &str, field: &str) -> Result<usize> {
    names.iter().position(|n| n == name).ok_or_else(|| {
        Error::invalid(
            format!("{field} {name}"),
            name,
            format!("one of this problem's parameters: {}", names.join(", ")),
        )
    })
}

fn check(
    kind: &str,
    params: &crate::fit::ParamSet,
    opts: &GradcheckOptions,
    spiking: bool,
    make: &mut Factory<'_>,
) -> Result<GradcheckReport> {
    let (names, x) = point(params, opts)?;
    let selected: Vec<usize> = if opts.params.is_empty() {
        (0..names.len()).collect()
    } else {
        opts.params
            .iter()
            .map(|p| index(&names, p, "--param"))
            .collect::<Result<_>>()?
    };
    let mut obj = make(None)?;
    let (loss, analytic) = obj.value_and_grad(&x)?;
    if analytic.len() != x.len() {
        return Err(Error::shape("gradient", x.len(), analytic.len()));
    }
    let mut evaluations = 1;
    let (rows, analytic_what, reference_what) = if spiking {
        drop(obj);
        let mut draws = vec![Vec::with_capacity(opts.seeds); x.len()];
        for s in 1..=opts.seeds as u64 {
            let (_, g) = make(Some(s))?.value_and_grad(&x)?;
            evaluations += 2 * x.len() + 1;
            for (d, gi) in draws.iter_mut().zip(g) {
                d.push(gi);
            }
        }
        let n = opts.seeds as f64;
        let rows: Vec<GradcheckRow> = selected
            .iter()
            .map(|&i| {
                let mean = draws[i].iter().sum::<f64>() / n;
                let sd =
                    (draws[i].iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                let z = (analytic[i] - mean).abs() / (sd * (1.0 + 1.0 / n).sqrt()).max(1e-300);
                GradcheckRow {
                    name: names[i].clone(),
                    x: x[i],
                    analytic: analytic[i],
                    reference: mean,
                    reference_se: sd / n.sqrt(),
                    error: z,
                    pass: z <= 3.0,
                }
            })
            .collect();
        (
            rows,
            "central difference with common random numbers at the spec's network seed (the \
             calibration's estimator)"
                .to_string(),
            format!(
                "the same estimator averaged over {} other network seeds (mean ± SE); pass: |z| ≤ 3",
                opts.seeds
            ),
        )
    } else {
        let h: Vec<f64> = selected
            .iter()
            .map(|&i| opts.rel_h * x[i].abs().max(1e-3))
            .collect();
        let lower = params.lower();
        // the stencil over the selected coordinates only
        let lo: Vec<f64> = selected.iter().map(|&i| lower[i]).collect();
        let sub: Vec<f64> = selected.iter().map(|&i| x[i]).collect();
        let (pts_sub, spacing) = stencil(&sub, &h, &lo);
        let pts: Vec<Vec<f64>> = pts_sub
            .iter()
            .map(|p| {
                let mut full = x.clone();
                for (k, &i) in selected.iter().enumerate() {
                    full[i] = p[k];
                }
                full
            })
            .collect();
        let l = obj.values(&pts)?;
        evaluations += pts.len();
        let numeric: Vec<f64> = (0..selected.len())
            .map(|k| (l[2 * k] - l[2 * k + 1]) / spacing[k])
            .collect();
        let a: Vec<f64> = selected.iter().map(|&i| analytic[i]).collect();
        let c = GradCheck::compare(a, numeric)?;
        let rows = selected
            .iter()
            .enumerate()
            .map(|(k, &i)| GradcheckRow {
                name: names[i].clone(),
                x: x[i],
                analytic: c.analytic[k],
                reference: c.numeric[k],
                reference_se: 0.0,
                error: c.rel_errs[k],
                pass: c.rel_errs[k] <= opts.tol,
            })
            .collect();
        (
            rows,
            "autodiff, f64 (the calibration's gradient)".to_string(),
            format!(
                "central difference, h_i = {:e}·max(|x_i|, 1e-3), f64; pass: per-component \
                 relative error ≤ {:e}",
                opts.rel_h, opts.tol
            ),
        )
    };
    let passed = rows.iter().all(|r: &GradcheckRow| r.pass);
    Ok(GradcheckReport {
        kind: kind.into(),
        analytic: analytic_what,
        reference: reference_what,
        loss,
        evaluations,
        rows,
        passed,
    })
}

impl GradcheckReport {
    /// The report as a table (one row per parameter).
    pub fn table(&self) -> String {
        let mut s = format!(
            "gradcheck ({}), loss {:.6e} at the check point, {} loss evaluations\n  analytic:  {}\n  reference: {}\n",
            self.kind, self.loss, self.evaluations, self.analytic, self.reference
        );
        s.push_str(&format!(
            "{:<28} {:>13} {:>13} {:>13} {:>11} {:>10}  result\n",
            "parameter", "x", "analytic", "reference", "ref SE", "error"
        ));
        for r in &self.rows {
            s.push_str(&format!(
                "{:<28} {:>13.6e} {:>13.6e} {:>13.6e} {:>11.3e} {:>10.3e}  {}\n",
                r.name,
                r.x,
                r.analytic,
                r.reference,
                r.reference_se,
                r.error,
                if r.pass { "ok" } else { "FAIL" }
            ));
        }
        s.push_str(if self.passed { "passed\n" } else { "FAILED\n" });
        s
    }
}
