//! The accuracy table of the spiking-network gradient estimators (BENCHMARKS.md §7).
//!
//! `cargo run --release --example spiking_gradients -- [n_mn] [duration_s] [seeds] [dc_hz,...] [n_dd]`
//! (defaults: the Watanabe size, 800 motor neurons, 400 inputs, 5 s, 8 seeds, DC 20,30,40,60,80 Hz
//! with MyoGen's 20 Hz ± 20 Hz oscillation and N(0,1) noise). Observables over the second half:
//! mean force, force amplitude at 20 Hz, pool mean rate and unit 100's rate (tapered counts,
//! 0.1 s raised-cosine ramps). Parameters: DC, oscillation amplitude, drive noise σ (Hz) and the
//! synaptic weight (S). Prints one markdown table per DC and writes `spiking_gradients.json` (the
//! committed run: `benches/results/`).
//!
//! `cargo run --release --example spiking_gradients -- --recording [spec.toml] [seeds]`: the same
//! study at the recording-fit size (default spec `calibration/recording_spiking.toml`: 200 motor
//! neurons, 400 inputs, dt 0.25 ms, 16.25 s, the fit's initial piecewise-linear drive and its
//! σ; needs `calibration/fetch-data.sh`). Observables over the fitted window (ramp and plateau):
//! mean force, pool mean rate and the rate of the unit matched to recorded unit 1. Parameters:
//! a plateau knot (Hz), a ramp knot (Hz), drive noise σ (Hz), synaptic weight (S). Writes
//! `spiking_gradients_recording.json`.
use myodiff::event::accuracy::{StudySpec, markdown, study};
use myodiff::event::{EventDrive, GradientProblem, InsertionOpts, Observable, Param};
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig};

fn main() -> myodiff::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--recording") {
        return recording_size(
            a.get(2)
                .map(String::as_str)
                .unwrap_or("calibration/recording_spiking.toml"),
            a.get(3).and_then(|s| s.parse().ok()).unwrap_or(8),
        );
    }
    let n_mn: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(800);
    let dur: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let n_seeds: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let dcs: Vec<f64> = a
        .get(4)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![20.0, 30.0, 40.0, 60.0, 80.0]);
    let cfg = NetworkConfig {
        n_mn,
        n_dd: a
            .get(5)
            .and_then(|s| s.parse().ok())
            .unwrap_or((n_mn / 2).max(1)),
        duration_s: dur,
        ..Default::default()
    };
    let (t0, t1) = (dur / 2.0, dur);
    let unit = 100.min(n_mn - 1);
    let spec = StudySpec {
        observables: {
            let mut o = window_observables(t0, t1, unit);
            o.insert(
                1,
                Observable::ForceAmplitude {
                    t0_s: t0,
                    t1_s: t1,
                    freq_hz: 20.0,
                },
            );
            o
        },
        params: vec![
            (Param::Dc, 1.0),
            (Param::Amp, 1.0),
            (Param::NoiseSd, 0.25),
            (Param::Weight, 0.02 * MYOGEN_WEIGHT_S),
        ],
        seeds: (1..=n_seeds).collect(),
        insertion: InsertionOpts::default(),
    };
    let mut all = Vec::new();
    for dc in dcs {
        let prob = GradientProblem {
            cfg: cfg.clone(),
            drive: EventDrive::watanabe(dc),
            weight_s: MYOGEN_WEIGHT_S,
            observable: spec.observables[0],
        };
        let t = std::time::Instant::now();
        let rows = study(&prob, &spec)?;
        let title = format!(
            "### DC {dc} Hz ({n_mn} MNs, {} inputs, {dur} s, {n_seeds} seeds; {:.0} s)",
            cfg.n_dd,
            t.elapsed().as_secs_f64()
        );
        println!("{}", markdown(&title, &rows));
        all.push((dc, rows));
    }
    let json = serde_json::to_string_pretty(&all)
        .map_err(|e| myodiff::Error::format("json", e.to_string()))?;
    std::fs::write("spiking_gradients.json", json)
        .map_err(|e| myodiff::Error::format("spiking_gradients.json", e.to_string()))?;
    Ok(())
}

/// Mean force (N), pool mean rate and `unit`'s rate (Hz; 0.1 s tapers) over `[t0, t1)` (s).
fn window_observables(t0: f64, t1: f64, unit: usize) -> Vec<Observable> {
    vec![
        Observable::MeanForce { t0_s: t0, t1_s: t1 },
        Observable::PoolRate {
            t0_s: t0,
            t1_s: t1,
            taper_s: 0.1,
        },
        Observable::UnitRate {
            unit,
            t0_s: t0,
            t1_s: t1,
            taper_s: 0.1,
        },
    ]
}

/// The study at the recording-fit size (see the module docs).
fn recording_size(spec_path: &str, n_seeds: u64) -> myodiff::Result<()> {
    use myodiff::fit::recording::{RecordingFitSpec, Targets, setup};
    let path = std::path::Path::new(spec_path);
    let spec = RecordingFitSpec::load(path)?;
    let data = myodiff::fit::spec::resolve_data_path(spec.data.path.as_deref(), path);
    let rec = myodiff::io::recording::Recording::load(data)?;
    let targets = Targets::from_recording(&spec.data, &rec)?;
    let (model, x0) = setup(&spec, targets)?;
    let k = model.knots.len();
    let sd = if model.fit_noise {
        x0[k]
    } else {
        model.noise_sd_hz
    };
    let cfg = NetworkConfig {
        spike_mode: myodiff::neuron::spike::SpikeMode::Hard,
        generator_mode: myodiff::drive::GeneratorMode::Hard,
        ..model.cfg.clone()
    };
    let lb = &model.targets.loss_bins;
    let tb = model.targets.bin_s;
    let (t0, t1) = (lb.start as f64 * tb, lb.end as f64 * tb);
    // the knot nearest the middle of the late window (plateau) and the first knot inside the
    // fitted window (ramp)
    let times = model.knots.times_s();
    let nearest = |t: f64| {
        (0..k)
            .min_by(|&a, &b| (times[a] - t).abs().total_cmp(&(times[b] - t).abs()))
            .unwrap_or(0)
    };
    let plateau = nearest(0.5 * (t0 + t1));
    let ramp = (0..k)
        .find(|&j| times[j] >= lb.start as f64 * tb)
        .unwrap_or(0);
    let unit = model.matched.first().copied().unwrap_or(0);
    let spec_study = StudySpec {
        observables: window_observables(t0, t1, unit),
        params: vec![
            (Param::Knot(plateau), 1.0),
            (Param::Knot(ramp), 1.0),
            (Param::NoiseSd, 0.25),
            (Param::Weight, 0.02 * model.weight_s),
        ],
        seeds: (1..=n_seeds).collect(),
        insertion: InsertionOpts::default(),
    };
    let prob = GradientProblem {
        cfg: cfg.clone(),
        drive: EventDrive::Knots {
            knots: model.knots.clone(),
            values_hz: x0[..k].to_vec(),
            noise_sd_hz: sd,
        },
        weight_s: model.weight_s,
        observable: spec_study.observables[0],
    };
    let t = std::time::Instant::now();
    let rows = study(&prob, &spec_study)?;
    let title = format!(
        "### Recording-fit size ({} MNs, {} inputs, dt {} ms, {:.2} s, initial drive of {spec_path}: \
         knots {:?} Hz, σ {sd} Hz; window {t0:.2}–{t1:.2} s; unit {unit} = match of recorded unit {}; \
         {n_seeds} seeds; {:.0} s)",
        cfg.n_mn,
        cfg.n_dd,
        cfg.dt_s * 1e3,
        cfg.duration_s,
        x0[..k]
            .iter()
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        model.targets.units.first().copied().unwrap_or(0),
        t.elapsed().as_secs_f64()
    );
    println!("{}", markdown(&title, &rows));
    // summary over the resolved entries (|reference| > 3 SE), per estimator
    let resolved: Vec<_> = rows
        .iter()
        .filter(|r| r.reference.abs() > 3.0 * r.reference_se)
        .collect();
    for (e, name) in rows[0].estimators.iter().map(|e| &e.estimator).enumerate() {
        let mut errs: Vec<f64> = resolved
            .iter()
            .map(|r| r.estimators[e].median_rel_err_single)
            .collect();
        errs.sort_by(f64::total_cmp);
        let med = errs.get(errs.len() / 2).copied().unwrap_or(f64::NAN);
        let signs = resolved
            .iter()
            .filter(|r| r.estimators[e].sign_error)
            .count();
        println!(
            "{name}: {} resolved entries, median one-seed relative error {:.1} %, {signs} sign errors, cost {:.1} forward-equivalents",
            resolved.len(),
            100.0 * med,
            resolved
                .first()
                .map_or(f64::NAN, |r| r.estimators[e].cost_forward_eq)
        );
    }
    let json = serde_json::to_string_pretty(&rows)
        .map_err(|e| myodiff::Error::format("json", e.to_string()))?;
    std::fs::write("spiking_gradients_recording.json", json)
        .map_err(|e| myodiff::Error::format("spiking_gradients_recording.json", e.to_string()))?;
    Ok(())
}
