//! The run: reference force, every method, the report and the force-vs-dc plot.

use std::path::Path;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::fit::optimize::{Method, minimize_within};
use crate::fit::report::{RunSummary, write_report};

use super::model::{SmoothObjective, WatanabeModel, WatanabeObjective};
use super::root::{SlopeSource, root_find};
use super::spec::{ReferenceProtocol, WatanabeMethod, WatanabeSpec};

/// Runs the Watanabe calibration described by the TOML spec at `spec_path`; writes the report
/// directory `out_dir` (summary.json, report.md, loss plots, `force_vs_dc.png`). Returns the
/// run summary.
pub fn run_watanabe_calibration(spec_path: &Path, out_dir: &Path) -> Result<RunSummary> {
    let spec = WatanabeSpec::load(spec_path)?;
    run_watanabe_spec(&spec, out_dir)
}

/// The reference force `F_ref` (N) of a spec and the wall time it took (s).
pub fn reference_force(spec: &WatanabeSpec, model: &mut WatanabeModel) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let spin = crate::progress::spinner("reference");
    spin.set_message(format!("{:?} reference rollout", spec.reference.protocol));
    let f_ref = match spec.reference.force_n {
        Some(f) => f,
        None => match spec.reference.protocol {
            ReferenceProtocol::Constant => model.constant_reference(
                spec.reference.dc_hz,
                spec.reference.duration_s.unwrap_or(spec.network.duration_s),
            )?,
            ReferenceProtocol::Oscillating => {
                if let Some(d) = spec.reference.duration_s
                    && (d - spec.network.duration_s).abs() > 1e-12
                {
                    return Err(Error::invalid(
                        "reference.duration_s",
                        d,
                        "the task duration (network.duration_s) for an oscillating reference",
                    ));
                }
                model.mean_forces(&[spec.reference.dc_hz])?[0]
            }
        },
    };
    spin.finish_and_clear();
    if !(f_ref.is_finite() && f_ref > 0.0) {
        return Err(Error::invalid(
            "network.n_mn",
            spec.network.n_mn,
            format!(
                "a pool that produces force under the reference drive (reference mean force = {f_ref} N; \
                 raise network.n_mn / n_dd / weight_s or reference.dc_hz)"
            ),
        ));
    }
    Ok((f_ref, t0.elapsed().as_secs_f64()))
}

/// Runs a parsed spec (see [`run_watanabe_calibration`]).
pub fn run_watanabe_spec(spec: &WatanabeSpec, out_dir: &Path) -> Result<RunSummary> {
    spec.validate()?;
    let params = spec.params()?;
    let mut model = WatanabeModel::from_spec(spec);
    let (f_ref, ref_wall_s) = reference_force(spec, &mut model)?;
    let mut fits = Vec::new();
    let mut points: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut per_method = Vec::new();
    let (lo, hi, x0) = (spec.dc.lower, spec.dc.upper, spec.dc.init);
    for m in &spec.methods {
        let generic = match m {
            WatanabeMethod::Brent { budget } => Some(Method::Brent { budget: *budget }),
            WatanabeMethod::NelderMead { budget, step } => Some(Method::NelderMead {
                budget: *budget,
                step: *step,
            }),
            WatanabeMethod::ParticleSwarm {
                budget,
                particles,
                seed,
            } => Some(Method::ParticleSwarm {
                budget: *budget,
                start_particle: false,
                particles: *particles,
                seed: *seed,
            }),
            WatanabeMethod::RandomSearch {
                budget,
                batch,
                seed,
            } => Some(Method::RandomSearch {
                budget: *budget,
                batch: *batch,
                seed: *seed,
            }),
            _ => None,
        };
        let rollouts0 = model.rollouts;
        let mut evaluated = Vec::new();
        let mut smooth_ref = None;
        let report = if let Some(method) = generic {
            let mut obj = WatanabeObjective {
                model: &mut model,
                f_ref,
                evaluated: Vec::new(),
            };
            let r = minimize_within(&mut obj, &params, &method, None, spec.budget())?;
            evaluated = obj.evaluated;
            r
        } else {
            // A method's own budget, capped by the shared one.
            let cap = |own: usize| spec.max_evals.map_or(own, |m| m.min(own));
            match m {
                WatanabeMethod::NewtonFd { budget, h_hz, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::CentralDifference { h_hz: *h_hz },
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::Secant { budget, h_hz, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::Secant { h_hz: *h_hz },
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::SecantChord { budget, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::SecantChord,
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::NewtonAutodiff { budget, tol } => root_find(
                    &mut model,
                    f_ref,
                    x0,
                    lo,
                    hi,
                    SlopeSource::SmoothAutodiff {
                        beta: spec.smooth.beta,
                    },
                    cap(*budget),
                    *tol,
                    &mut evaluated,
                    m.name(),
                )?,
                WatanabeMethod::SmoothLbfgs { iters, memory } => {
                    let t0 = Instant::now();
                    let fr = match spec.reference.protocol {
                        ReferenceProtocol::Constant => model.smooth_constant_reference(
                            spec.smooth.beta,
                            spec.reference.dc_hz,
                            spec.reference.duration_s.unwrap_or(spec.network.duration_s),
                        )?,
                        ReferenceProtocol::Oscillating => {
                            model
                                .smooth_force_and_slope(spec.smooth.beta, spec.reference.dc_hz)?
                                .0
                        }
                    };
                    let ref_s = t0.elapsed().as_secs_f64();
                    if fr.is_nan() || fr <= 0.0 {
                        return Err(Error::invalid(
                            "network.n_mn",
                            spec.network.n_mn,
                            "a pool whose smooth model produces force under the reference drive",
                        ));
                    }
                    smooth_ref = Some((fr, ref_s));
                    let mut obj = SmoothObjective {
                        model: &mut model,
                        beta: spec.smooth.beta,
                        f_ref: fr,
                        evaluated: Vec::new(),
                    };
                    let mut r = minimize_within(
                        &mut obj,
                        &params,
                        &Method::Lbfgs {
                            iters: *iters,
                            memory: *memory,
                        },
                        None,
                        spec.budget(),
                    )?;
                    evaluated = obj.evaluated;
                    r.method = m.name().into();
                    // Report |relative error| (the objective is its square).
                    r.loss_best = r.loss_best.sqrt();
                    for h in &mut r.history {
                        h.loss = h.loss.sqrt();
                        h.best_loss = h.best_loss.sqrt();
                    }
                    r
                }
                _ => unreachable!("generic methods handled above"),
            }
        };
        let rollouts = model.rollouts - rollouts0;
        let e2e = report.wall_s + ref_wall_s + smooth_ref.map(|s| s.1).unwrap_or(0.0);
        per_method.push(serde_json::json!({
            "method": report.method,
            "dc_hz": report.x_best[0],
            "abs_rel_error": report.loss_best,
            "evaluations": report.evaluations,
            "gradients": report.gradients,
            "rollouts": rollouts,
            "wall_s": report.wall_s,
            "end_to_end_s": e2e,
            "smooth_reference_force_n": smooth_ref.map(|s| s.0),
            "objective": if smooth_ref.is_some() { "smooth model vs its own reference" } else { "hard model" },
        }));
        if smooth_ref.is_none() {
            points.push((report.method.clone(), evaluated));
        }
        fits.push(report);
    }
    let truth = match spec.reference.protocol {
        ReferenceProtocol::Oscillating if spec.reference.force_n.is_none() => {
            Some(spec.reference.dc_hz)
        }
        _ => None,
    };
    let description = format!(
        "Watanabe oscillating-DC calibration (MODEL.md §7.1): find dc in [{lo}, {hi}] Hz so that the \
         mean force over the second half of {} s of drive clip(dc + {}·sin(2π·{}·t) + {}·N(0,1), 0, ∞) \
         matches F_ref = {f_ref:.4} N ({}); loss |F̄ − F_ref| / F_ref. Network: {} {:?} motor neurons \
         ({:?} spikes), {} Poisson inputs, p = {}, w = {} S, dt = {} s, fixed seed {} (common random \
         numbers); normalisation {:?}; path {:?}. Reference run {ref_wall_s:.2} s. Evaluations count \
         every batch row; `newton_fd` slopes are batched central differences and `secant` starts from \
         a batched forward difference (not autodiff); `secant_chord` starts from the chord to (lower, 0); \
         `newton_autodiff` uses the exact autodiff slope of the smooth rate-mode model (β = {}/mV) as \
         the Newton slope on the hard objective; `smooth_lbfgs` fits the smooth model to its own \
         reference with exact autodiff gradients.",
        spec.network.duration_s,
        spec.protocol.amp_hz,
        spec.protocol.freq_hz,
        spec.protocol.noise_sd_hz,
        match (spec.reference.force_n, spec.reference.protocol) {
            (Some(_), _) => "given".to_string(),
            (None, ReferenceProtocol::Constant) => format!(
                "constant drive {} Hz + max(0,N(0,1)), {} s",
                spec.reference.dc_hz,
                spec.reference.duration_s.unwrap_or(spec.network.duration_s)
            ),
            (None, ReferenceProtocol::Oscillating) => format!(
                "synthetic: the oscillating protocol at dc = {} Hz",
                spec.reference.dc_hz
            ),
        },
        spec.network.n_mn,
        spec.network.model,
        spec.network.spike_mode,
        spec.network.n_dd,
        spec.network.p_connect,
        spec.weight_s,
        spec.network.dt_s,
        spec.network.seed,
        spec.normalisation,
        spec.path,
        spec.smooth.beta,
    );
    let summary = RunSummary {
        problem: spec.name.clone(),
        description,
        fits,
        extra: serde_json::json!({
            "reference_force_n": f_ref,
            "reference_wall_s": ref_wall_s,
            "true_dc_hz": truth,
            "methods": per_method,
            "myogen": {
                "total_wall_s": 1220.0,
                "reference_wall_s": 77.0,
                "trial_wall_s": 45.6,
                "trials": 25,
                "best_abs_rel_error": 0.023,
                "best_dc_hz": 35.3,
                "note": "serial, 2-core machine, per-run-max normalisation, fresh network per trial",
            },
        }),
    };
    write_report(out_dir, &summary)?;
    force_plot(
        &out_dir.join("force_vs_dc.png"),
        f_ref,
        &points,
        truth,
        &spec.name,
    )?;
    Ok(summary)
}

/// PNG: evaluated `(dc, F̄)` points per method, the reference force line and (synthetic runs)
/// the true dc.
fn force_plot(
    path: &Path,
    f_ref: f64,
    points: &[(String, Vec<(f64, f64)>)],
    truth: Option<f64>,
    name: &str,
) -> Result<()> {
    use plotters::prelude::*;
    crate::fit::plot::register_font();
    let err = |e: &dyn std::fmt::Display| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let all: Vec<(f64, f64)> = points
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f_ref, f_ref);
    for (x, y) in &all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if !x0.is_finite() || x1 <= x0 {
        x0 = 0.0;
        x1 = 100.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: mean force (2nd half) vs dc"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0 - 1.0..x1 + 1.0, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("dc (Hz)")
        .y_desc("mean force (N)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(sorted, BLACK.mix(0.3).stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("F̄(dc), all evaluations")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    chart
        .draw_series(LineSeries::new(
            vec![(x0 - 1.0, f_ref), (x1 + 1.0, f_ref)],
            RED.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label(format!("reference {f_ref:.3} N"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    if let Some(t) = truth {
        chart
            .draw_series(LineSeries::new(
                vec![(t, y0 - pad), (t, y1 + pad)],
                BLUE.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("true dc {t} Hz"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    }
    for (i, (m, p)) in points.iter().enumerate() {
        let color = Palette99::pick(i + 2).to_rgba();
        chart
            .draw_series(
                p.iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(x, y)| Circle::new((*x, *y), 4, color.filled())),
            )
            .map_err(|e| err(&e))?
            .label(m.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
