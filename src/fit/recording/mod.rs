//! Fitting a time-varying descending drive to a real force + motor-unit recording (issue 5 item 3).
//!
//! **Problem.** The development block of the test recording (`../DATA.md`: vastus lateralis,
//! trapezoidal isometric contraction, 2048 Hz) gives the force `F*(t)` (%MVC) and the discharge
//! trains of decomposed motor units. The simulation starts at sample 0 (t = 0 s) and runs to the
//! end of the fitted window `[w0, w1)` (samples). Its descending drive is piecewise linear through
//! K knots ([`crate::drive::PiecewiseLinearDrive`]) plus noise of level σ; the simulated force
//! (N) is mapped to %MVC by a fitted scale `s` (%MVC/N). Fitted vector
//! `x = (v_0 … v_{K−1} [Hz], σ [Hz] (optional), s [%MVC/N])`.
//!
//! **Comparison grid.** Time is cut into bins of `bin_samples` samples (default 128 = 62.5 ms);
//! a bin holds a whole number of simulation steps. Per bin: mean force; spike counts of a unit.
//! Smoothed discharge rate `R = H·c / Δ` (Hz): counts `c` per bin filtered by a unit-sum Hann
//! window `H` of `smooth_s` seconds (same operator for recorded and simulated units, zero-padded
//! at the edges), divided by the bin width Δ.
//!
//! **Matching of units.** Recorded unit j (recruited at its first discharge) is matched to one
//! simulated motor neuron i_j, frozen for the whole fit: either an explicit list, or
//! `recruitment` — at the initial parameters, the simulated unit whose recruitment time (first
//! bin with smoothed rate ≥ `recruit_hz`) is nearest the recorded unit's (same rule on its
//! smoothed rate) — or `rates` — the simulated unit whose smoothed rate at the initial parameters
//! is nearest the recorded one over the loss's own masked bins, `argmin_i Σ_b m_jb (r_ib − R_jb)²`
//! (the matching that minimises the rate term at the start, one unit at a time); each simulated
//! unit used at most once, recorded units taken in recruitment order.
//!
//! **Loss** (dimensionless):
//! `L = mean_{b∈W} ((s·F̄_b − F*_b)/F_ref)² + λ · Σ_j Σ_{b∈M_j} ((R_{i_j,b} − R*_{j,b})/R_ref)² / Σ_j |M_j|`
//! over the bins W inside the window; `M_j` = bins of W from the recorded unit's recruitment bin
//! plus half the smoothing window on; `F_ref` = mean target force over W (%MVC), `R_ref` = mean
//! target rate over all masked bins (Hz), λ = `rate_weight`.
//!
//! The model is the smooth network ([`super::smooth`]), so `∂L/∂x` by autodiff is exact; gradient
//! methods (L-BFGS, Adam) and derivative-free ones (Nelder–Mead, particle swarm; populations in
//! one batched rollout) minimise the same L under the same budget.

mod model;
mod spec;
mod spiking;
mod targets;

pub use model::{
    Quality, RecordingModel, RecordingObjective, Simulated, match_by_rates, match_by_recruitment,
};
pub use spec::{
    DataSpec, DriveSpec, FitModel, GradientSpec, Matching, RecordingFitSpec, ScaleSpec,
    SurrogateSpec,
};
pub use spiking::SpikingRecording;
pub use targets::{Targets, first_at_least, hann_matrix, smooth_counts};

use std::path::Path;
use std::time::Instant;

use super::objective::Objective;
use super::optimize::{FitReport, minimize_within};
use super::params::{ParamSet, ParamSpec, Transform};
use super::plot::{Scale, Series, line_plot};
use super::report::{RunSummary, write_report};
use super::smooth::calibrate_smooth_gain;
use crate::drive::KnotTimes;
use crate::error::{Error, Result, check};
use crate::io::recording::Recording;

/// Parameter set of the problem: knots (logit in [lower, upper] Hz), σ (logit in [0, upper]),
/// s (log in [lower, upper]).
pub fn param_set(spec: &RecordingFitSpec, init: &[f64]) -> Result<ParamSet> {
    let k = spec.drive.knots;
    let mut ps: Vec<ParamSpec> = (0..k)
        .map(|j| {
            ParamSpec::new(
                &format!("knot_{j}_hz"),
                spec.drive.lower_hz,
                spec.drive.upper_hz,
                init[j].clamp(spec.drive.lower_hz, spec.drive.upper_hz),
            )
        })
        .collect();
    if spec.drive.fit_noise {
        ps.push(ParamSpec::new(
            "noise_sd_hz",
            0.0,
            spec.drive.noise_upper_hz,
            init[k].clamp(0.0, spec.drive.noise_upper_hz),
        ));
    }
    let s = *init.last().unwrap_or(&1.0);
    ps.push(
        ParamSpec::new(
            "force_scale_pct_per_n",
            spec.scale.lower,
            spec.scale.upper,
            s.clamp(spec.scale.lower, spec.scale.upper),
        )
        .with_transform(Transform::Log),
    );
    ParamSet::new(ps)
}

/// Knot times of the spec (explicit, or K equally spaced over `[0, duration_s]`).
pub fn knot_times(spec: &DriveSpec, duration_s: f64) -> Result<KnotTimes> {
    match &spec.times_s {
        Some(t) => {
            if t.len() != spec.knots {
                return Err(Error::shape("drive.times_s", spec.knots, t.len()));
            }
            KnotTimes::new(t.clone())
        }
        None => KnotTimes::uniform(spec.knots, 0.0, duration_s),
    }
}

/// Initial knot values: explicit, or scaled to the target force at the knot times.
pub fn initial_knots(spec: &DriveSpec, knots: &KnotTimes, targets: &Targets) -> Result<Vec<f64>> {
    if let Some(v) = &spec.init_hz {
        if v.len() != knots.len() {
            return Err(Error::shape("drive.init_hz", knots.len(), v.len()));
        }
        check::all_finite("drive.init_hz", v)?;
        return Ok(v.clone());
    }
    let fmax = targets.force_pct.iter().cloned().fold(f64::MIN, f64::max);
    Ok(knots
        .times_s()
        .iter()
        .map(|&t| {
            let b = ((t / targets.bin_s) as usize).min(targets.n_bins - 1);
            let u = if fmax > 0.0 {
                (targets.force_pct[b] / fmax).clamp(0.0, 1.0)
            } else {
                0.0
            };
            spec.init_floor_hz + (spec.init_peak_hz - spec.init_floor_hz) * u
        })
        .collect())
}

/// Sets up the model from a spec and targets: knot times, initial drive, unit matching (at the
/// initial drive) and the least-squares initial force scale. Returns the model and `x0`.
pub fn setup(spec: &RecordingFitSpec, targets: Targets) -> Result<(RecordingModel, Vec<f64>)> {
    spec.validate()?;
    let duration = targets.n_bins as f64 * targets.bin_s;
    let knots = knot_times(&spec.drive, duration)?;
    let v0 = initial_knots(&spec.drive, &knots, &targets)?;
    let n_units = targets.units.len();
    let provisional = match &spec.data.matching {
        Matching::Units(u) => u.clone(),
        Matching::Rule(_) => (0..n_units).collect(),
    };
    let recruit = targets.recruit_bin.clone();
    let mut model = RecordingModel::new(
        &spec.network,
        knots,
        targets,
        provisional,
        spec.drive.fit_noise,
        spec.drive.noise_sd_hz,
        spec.drive.weight_s,
        spec.data.rate_weight,
        spec.data.smooth_s,
        spec.max_batch,
    )?;
    // units are matched (and the force scaled) on the network the fit runs on
    let (rates, f_n) = match spec.gradient.model {
        FitModel::Smooth => model.all_rates(&v0, spec.drive.noise_sd_hz)?,
        FitModel::Spiking => spiking::all_rates(&model, &v0, spec.drive.noise_sd_hz)?,
    };
    if let Matching::Rule(rule) = &spec.data.matching {
        model.matched = if rule == "rates" {
            match_by_rates(&rates, &model.targets.rates_hz, &model.masks, &recruit)?
        } else {
            match_by_recruitment(&rates, &recruit, spec.data.recruit_hz)?
        };
    }
    let lb = model.targets.loss_bins.clone();
    let (mut num, mut den) = (0.0, 0.0);
    for b in lb {
        num += f_n[b] * model.targets.force_pct[b];
        den += f_n[b] * f_n[b];
    }
    if den.is_nan() || den <= 0.0 {
        return Err(Error::invalid(
            "network.n_mn",
            model.cfg.n_mn,
            "a pool that produces force at the initial drive (raise n_mn or drive.init_peak_hz)",
        ));
    }
    let s0 = spec.scale.init.unwrap_or(num / den);
    let mut x0 = v0;
    if spec.drive.fit_noise {
        x0.push(spec.drive.noise_sd_hz);
    }
    x0.push(s0.clamp(spec.scale.lower, spec.scale.upper));
    Ok((model, x0))
}

/// Runs the recording calibration of the spec at `spec_path` and writes its report.
pub fn run_recording_calibration(spec_path: &Path, out_dir: &Path) -> Result<RunSummary> {
    let spec = RecordingFitSpec::load(spec_path)?;
    let path = crate::fit::spec::resolve_data_path(spec.data.path.as_deref(), spec_path);
    let rec = Recording::load(path)?;
    let targets = Targets::from_recording(&spec.data, &rec)?;
    run_recording_spec(&spec, targets, out_dir)
}

/// Runs every method of `spec` on `targets` from the same initial point, each under the same
/// shared budget ([`RecordingFitSpec::budget`]), and writes the report (summary.json, report.md, loss plots, `force_fit.png`,
/// `rates_fit.png`, `drive_fit.png`, `transfer_hard.png`).
pub fn run_recording_spec(
    spec: &RecordingFitSpec,
    targets: Targets,
    out_dir: &Path,
) -> Result<RunSummary> {
    let t0 = Instant::now();
    let mut spec = spec.clone();
    let mut gain_table = Vec::new();
    // the mean-field twin has no gain to calibrate
    if spec.surrogate.auto_gain && spec.network.smooth_twin != crate::network::SmoothTwin::MeanField
    {
        let (g, table) = calibrate_smooth_gain(
            &spec.network,
            &spec.surrogate.drives_hz,
            spec.surrogate.duration_s,
            spec.surrogate.iterations,
        )?;
        spec.network.smooth_synaptic_gain = g;
        gain_table = table;
    }
    let gain_s = t0.elapsed().as_secs_f64();
    let spec = &spec;
    let (model, x0) = setup(spec, targets)?;
    let setup_s = t0.elapsed().as_secs_f64() - gain_s;
    let params = param_set(spec, &x0)?;
    let mut spiking = match spec.gradient.model {
        FitModel::Spiking => Some(SpikingRecording::new(
            &model,
            spec.gradient.h_hz,
            spec.gradient.h_scale_rel,
        )?),
        FitModel::Smooth => None,
    };
    let loss0 = match spiking.as_mut() {
        Some(sp) => sp.value(&x0)?,
        None => model.losses(std::slice::from_ref(&x0))?[0],
    };
    let mut fits: Vec<FitReport> = Vec::new();
    for method in &spec.methods {
        let rep = match spiking.as_mut() {
            Some(sp) => minimize_within(sp, &params, method, None, spec.budget())?,
            None => {
                let mut obj = RecordingObjective { model: &model };
                minimize_within(&mut obj, &params, method, None, spec.budget())?
            }
        };
        fits.push(rep);
    }
    let best_fit = fits
        .iter()
        .min_by(|a, b| a.loss_best.total_cmp(&b.loss_best));
    let best = best_fit.map_or_else(|| x0.clone(), |f| f.x_best.clone());
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io {
        path: out_dir.display().to_string(),
        source: e,
    })?;
    let spin = crate::progress::spinner("report");
    spin.set_message("fit plots and quality metrics (initial and best drive)");
    // plots and quality on the network the fit ran on (the smooth fit adds its hard transfer)
    let quality = match spiking.as_ref() {
        Some(sp) => plot_fit(
            &model,
            &|x: &[f64]| sp.simulate(x),
            "spiking network",
            &x0,
            best_fit,
            out_dir,
        )?,
        None => plot_fit(
            &model,
            &|x: &[f64]| model.simulate(x),
            "smooth model",
            &x0,
            best_fit,
            out_dir,
        )?,
    };
    spin.finish_and_clear();
    let model_label = match spec.gradient.model {
        FitModel::Smooth => "smooth (rate-mode) fast LIF pool, exact autodiff gradient",
        FitModel::Spiking => {
            "spiking event-time fast LIF pool, central differences with common random numbers"
        }
    };
    let extra = serde_json::json!({
        "initial_loss": loss0,
        "initial_x": x0,
        "best_x": best,
        "matched_sim_units": model.matched,
        "recorded_units": model.targets.units,
        "knot_times_s": model.knots.times_s(),
        "setup_s": setup_s,
        "smooth_synaptic_gain": spec.network.smooth_synaptic_gain,
        "gain_calibration": { "auto": spec.surrogate.auto_gain, "wall_s": gain_s,
            "drive_hz_hard_n_smooth_n": gain_table },
        "quality": quality.iter().map(|(n, q)| serde_json::json!({"point": n, "force_rmse_pct": q.force_rmse_pct,
            "late_rates_hz_sim_vs_recorded": q.late_rates_hz})).collect::<Vec<_>>(),
        "time_budget_s_per_method": spec.time_budget_s,
        "max_evals_per_method": spec.max_evals,
        "network": { "n_mn": model.cfg.n_mn, "n_dd": model.cfg.n_dd, "dt_s": model.cfg.dt_s,
                     "duration_s": model.cfg.duration_s, "model": model_label },
        "units": "force %MVC, rates Hz, knots Hz, scale %MVC/N",
    });
    let summary = RunSummary {
        problem: spec.name.clone().unwrap_or_else(|| "recording".into()),
        description: format!(
            "Piecewise-linear drive ({} knots) + noise + force scale fitted to the recorded force \
             (%MVC) and {} matched units' smoothed rates over bins {:?} of {:.4} s; {}; every method \
             gets {}. Initial loss {:.4}.",
            model.knots.len(),
            model.matched.len(),
            model.targets.loss_bins,
            model.targets.bin_s,
            model_label,
            spec.budget().describe(),
            loss0
        ),
        fits,
        extra,
    };
    write_report(out_dir, &summary)?;
    Ok(summary)
}

/// Force, rate and drive plots of the initial point and of the best method's best point, simulated
/// by `simulate` (the network the fit ran on, named `label`); a smooth-model fit adds its
/// hard-spiking transfer check (`transfer_hard.png`). Returns the quality numbers of each point.
fn plot_fit(
    model: &RecordingModel,
    simulate: &dyn Fn(&[f64]) -> Result<Simulated>,
    label: &str,
    x0: &[f64],
    best: Option<&FitReport>,
    dir: &Path,
) -> Result<Vec<(String, Quality)>> {
    let tb = model.targets.bin_s;
    let lb = model.targets.loss_bins.clone();
    let series = |name: &str, v: &[f64]| {
        Series::new(
            name,
            lb.clone().map(|b| ((b as f64 + 0.5) * tb, v[b])).collect(),
        )
    };
    let mut force = vec![series("recorded", &model.targets.force_pct)];
    let mut rates: Vec<Series> = model
        .targets
        .rates_hz
        .iter()
        .zip(&model.targets.units)
        .map(|(r, u)| series(&format!("recorded unit {u}"), r))
        .collect();
    let k = model.knots.len();
    let t: Vec<f64> = (0..model.targets.n_bins)
        .map(|b| (b as f64 + 0.5) * tb)
        .collect();
    let mut drive = Vec::new();
    let mut points: Vec<(String, Vec<f64>)> = vec![("initial".into(), x0.to_vec())];
    if let Some(best) = best {
        points.push((format!("{} (best)", best.method), best.x_best.clone()));
    }
    let last = points.len() - 1;
    let mut quality = Vec::new();
    let mut transfer = vec![series("recorded", &model.targets.force_pct)];
    for (p, (name, x)) in points.iter().enumerate() {
        let sim = simulate(x)?;
        force.push(series(&format!("{label}, {name}"), &sim.force_pct));
        quality.push((format!("{label}, {name}"), model.quality(&sim)));
        if p == last && p > 0 && label == "smooth model" {
            let hard = model.simulate_hard(x)?;
            transfer.push(series(
                &format!("smooth model (fitted), {name}"),
                &sim.force_pct,
            ));
            transfer.push(series(
                "hard spiking model, same drive and scale",
                &hard.force_pct,
            ));
            quality.push((
                format!("hard spiking model, {name} drive"),
                model.quality(&hard),
            ));
        }
        // Rates of the best point only (the initial ones would double an already busy plot).
        if p == last {
            for (r, i) in sim.rates_hz.iter().zip(&model.matched) {
                rates.push(series(&format!("sim MN {i}, {name}"), r));
            }
        }
        let d = model.knots.eval(&x[..k], &t);
        drive.push(Series::new(
            format!("drive, {name}"),
            t.iter().copied().zip(d).collect(),
        ));
    }
    line_plot(
        &dir.join("force_fit.png"),
        "Force: recorded vs simulated",
        "time (s)",
        "force (%MVC)",
        &force,
        Scale::Linear,
        Scale::Linear,
    )?;
    line_plot(
        &dir.join("rates_fit.png"),
        "Smoothed discharge rates: recorded vs matched simulated units",
        "time (s)",
        "rate (Hz)",
        &rates,
        Scale::Linear,
        Scale::Linear,
    )?;
    if transfer.len() > 1 {
        line_plot(
            &dir.join("transfer_hard.png"),
            "Does the smooth-model fit transfer to the hard spiking model?",
            "time (s)",
            "force (%MVC)",
            &transfer,
            Scale::Linear,
            Scale::Linear,
        )?;
    }
    line_plot(
        &dir.join("drive_fit.png"),
        "Fitted piecewise-linear drive (without noise)",
        "time (s)",
        "drive (Hz)",
        &drive,
        Scale::Linear,
        Scale::Linear,
    )?;
    Ok(quality)
}
