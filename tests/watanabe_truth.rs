//! Watanabe DC calibration: synthetic truth recovery and the CI smoke calibration (small pool,
//! short window, so the whole file runs in a few seconds in release mode).

use myodiff::fit::watanabe::{WatanabeModel, WatanabeSpec, run_watanabe_spec};

/// Small pool (100 motor neurons, 400 inputs so each neuron still receives ~120 inputs at
/// MyoGen's weight), `duration` s, reference from the oscillating protocol at 35 Hz (truth).
fn synthetic_spec(methods: &str, duration: f64) -> WatanabeSpec {
    synthetic_spec_on("tensor", methods, duration)
}

/// [`synthetic_spec`] on a chosen engine (`tensor` or `event`).
fn synthetic_spec_on(engine: &str, methods: &str, duration: f64) -> WatanabeSpec {
    WatanabeSpec::from_toml_str(&format!(
        r#"
kind = "watanabe"
name = "watanabe_truth"
engine = "{engine}"
[network]
n_mn = 100
n_dd = 400
duration_s = {duration}
[reference]
protocol = "oscillating"
dc_hz = 35.0
[dc]
lower = 1.0
upper = 100.0
init = 80.0
{methods}
"#
    ))
    .expect("valid spec")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("myodiff_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn hard_model_truth_recovery_secant_and_brent() {
    let spec = synthetic_spec(
        r#"
[[methods]]
method = "secant"
budget = 15
h_hz = 0.5
tol = 0.001
[[methods]]
method = "brent"
budget = 25
"#,
        2.0,
    );
    let out = tmp("watanabe_truth");
    let s = run_watanabe_spec(&spec, &out).expect("calibration runs");
    for f in &s.fits {
        let dc = f.x_best[0];
        let rel = (dc - 35.0).abs() / 35.0;
        println!(
            "{}: dc = {dc:.4} Hz (rel. err {rel:.2e}), loss {:.2e}, {} evaluations, {:.2} s",
            f.method, f.loss_best, f.evaluations, f.wall_s
        );
        assert!(rel < 0.02, "{}: dc {dc} not within 2 % of 35 Hz", f.method);
        assert!(
            f.loss_best < 0.01,
            "{}: force error {}",
            f.method,
            f.loss_best
        );
    }
    for p in [
        "summary.json",
        "report.md",
        "force_vs_dc.png",
        "loss_vs_time.png",
    ] {
        assert!(out.join(p).exists(), "{p} written");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// On the event-time spiking network the secant (slope: CRN forward difference, then secants)
/// recovers the truth from the task's start (50 Hz, as in calibration/watanabe*.toml), every
/// run counted. Measured: 10 runs at this size (100 MNs, 2 s: F̄(dc) has slope jumps of
/// 0.2–0.8 N/Hz near the root), 8 at the full size (BENCHMARKS.md §7).
#[test]
fn event_network_truth_recovery_by_secant() {
    let mut spec = synthetic_spec_on(
        "event",
        r#"
[[methods]]
method = "secant"
budget = 15
h_hz = 1.0
tol = 0.005
"#,
        2.0,
    );
    spec.dc.init = 50.0;
    let out = tmp("watanabe_event_truth");
    let s = run_watanabe_spec(&spec, &out).expect("calibration runs");
    let f = &s.fits[0];
    let dc = f.x_best[0];
    println!(
        "event secant: dc = {dc:.4} Hz, loss {:.2e}, {} evaluations; {}",
        f.loss_best, f.evaluations, f.stop_reason
    );
    assert!(f.evaluations <= 15);
    assert!(f.loss_best <= 0.005, "force error {}", f.loss_best);
    assert!((dc - 35.0).abs() / 35.0 < 0.02, "dc {dc}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn event_engine_needs_the_fast_pool() {
    let e = WatanabeSpec::from_toml_str(
        "kind = \"watanabe\"\nengine = \"event\"\n[network]\nmodel = \"faithful\"\n\
         [[methods]]\nmethod = \"brent\"\nbudget = 5\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("engine"), "{e}");
}

#[test]
fn smooth_model_truth_recovery_by_autodiff_lbfgs() {
    // Exact autodiff gradients through the smooth (rate-mode) model, its own reference at 35 Hz.
    let spec = synthetic_spec(
        r#"
[[methods]]
method = "smooth_lbfgs"
iters = 10
memory = 5
"#,
        0.5,
    );
    let out = tmp("watanabe_smooth");
    let s = run_watanabe_spec(&spec, &out).expect("calibration runs");
    let f = &s.fits[0];
    let dc = f.x_best[0];
    println!(
        "smooth_lbfgs: dc = {dc:.5}, |error| {:.2e}, {} evaluations ({} gradients), {:.2} s",
        f.loss_best, f.evaluations, f.gradients, f.wall_s
    );
    assert!((dc - 35.0).abs() / 35.0 < 0.02, "dc {dc}");
    assert!(f.loss_best < 1e-3, "loss {}", f.loss_best);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn smooth_autodiff_slope_matches_central_difference() {
    // The smooth model's exact slope dF̄/d dc vs a central difference of its own forward.
    let spec = synthetic_spec("[[methods]]\nmethod = \"brent\"\nbudget = 1\n", 0.5);
    let mut m = WatanabeModel::from_spec(&spec);
    let (f, g) = m.smooth_force_and_slope(10.0, 40.0).unwrap();
    let h = 0.5;
    let (fp, _) = m.smooth_force_and_slope(10.0, 40.0 + h).unwrap();
    let (fm, _) = m.smooth_force_and_slope(10.0, 40.0 - h).unwrap();
    let fd = (fp - fm) / (2.0 * h);
    println!("smooth F̄ = {f:.4} N, autodiff slope {g:.5} N/Hz, central difference {fd:.5} N/Hz");
    assert!(f > 0.0 && g > 0.0);
    assert!((g - fd).abs() / fd.abs() < 0.02, "autodiff {g} vs FD {fd}");
}

#[test]
fn ci_smoke_calibration_reduces_loss_50x() {
    // MyoGen's task shape (constant 40 Hz + max(0,N(0,1)) reference), small pool, 1 s window.
    let spec = WatanabeSpec::from_toml_str(
        r#"
kind = "watanabe"
name = "watanabe_smoke"
[network]
n_mn = 100
n_dd = 400
duration_s = 1.0
[reference]
dc_hz = 40.0
[dc]
init = 90.0
[[methods]]
method = "secant"
budget = 12
h_hz = 0.5
tol = 0.002
"#,
    )
    .unwrap();
    let out = tmp("watanabe_smoke");
    let s = run_watanabe_spec(&spec, &out).unwrap();
    let f = &s.fits[0];
    let initial = f.history[1].loss; // the middle row of the first batch {x−h, x, x+h}
    println!(
        "smoke: initial loss {initial:.4} at dc 90 Hz → {:.2e} at dc {:.3} Hz ({} evaluations, {:.2} s)",
        f.loss_best, f.x_best[0], f.evaluations, f.wall_s
    );
    assert!(initial > 0.1, "the start must be far from the optimum");
    assert!(
        f.loss_best * 50.0 < initial,
        "loss must drop by 50×: {initial} → {}",
        f.loss_best
    );
    let _ = std::fs::remove_dir_all(&out);
}
