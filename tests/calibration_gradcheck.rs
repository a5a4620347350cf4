//! f64 gradient checks of the objectives the calibrations actually optimise (joint, recording,
//! Watanabe smooth model, noise PSD): autodiff against central differences with
//! `h_i = 1e-5·|x_i|` on every parameter, relative error ≤ 1e-5 per component (each against its
//! own magnitude, floor 1e-3 of the largest), and a negative control: the same check with any one
//! analytic component 0.1 % off must fail.

#[macro_use]
mod joint_support;

use myodiff::drive::KnotTimes;
use myodiff::fit::Objective;
use myodiff::fit::joint::{JointModel, JointObjective, JointSpec, targets};
use myodiff::fit::recording::{RecordingModel, Targets};
use myodiff::fit::watanabe::{WatanabeModel, WatanabeSpec};
use myodiff::gradcheck::GradCheck;
use myodiff::kernel::Precision;
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig};

/// Relative step of the central differences.
const REL_H: f64 = 1e-5;
/// Per-component relative tolerance.
const REL_TOL: f64 = 1e-5;
/// Minimum cosine similarity.
const MIN_COS: f64 = 0.999_999;

fn steps(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| REL_H * v.abs()).collect()
}

/// Central differences with every ±h point evaluated in one batched call of `losses`.
fn batched_central(
    losses: &mut dyn FnMut(&[Vec<f64>]) -> Vec<f64>,
    x: &[f64],
    h: &[f64],
) -> Vec<f64> {
    let mut pts = Vec::with_capacity(2 * x.len());
    for i in 0..x.len() {
        assert!(h[i] > 0.0, "step {i} must be positive (x_i ≠ 0)");
        let mut p = x.to_vec();
        p[i] = x[i] + h[i];
        pts.push(p.clone());
        p[i] = x[i] - h[i];
        pts.push(p);
    }
    let l = losses(&pts);
    (0..x.len())
        .map(|i| (l[2 * i] - l[2 * i + 1]) / (2.0 * h[i]))
        .collect()
}

/// Floor of the per-component normalisation, relative to the largest `|x_j·n_j|`.
const REL_FLOOR: f64 = 1e-6;

/// The check at `x`, its report, and the negative control on every component above the floor.
/// Components are compared as `x_i·g_i` (= ∂L/∂ln x_i): dimensionally comparable across
/// parameters of different units, and the same per-component relative error as `g_i`.
fn assert_gradient(what: &str, x: &[f64], analytic: Vec<f64>, numeric: Vec<f64>) {
    let scaled = |g: &[f64]| -> Vec<f64> { g.iter().zip(x).map(|(g, x)| g * x.abs()).collect() };
    let (a, n) = (scaled(&analytic), scaled(&numeric));
    let floor = REL_FLOOR * n.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let c = GradCheck::compare_with_floor(a, n, floor).unwrap();
    let fmt = |v: &[f64]| -> String {
        let s: Vec<String> = v.iter().map(|x| format!("{x:.3e}")).collect();
        s.join(", ")
    };
    eprintln!(
        "{what}: per-component rel errs [{}]; analytic ∂L/∂x [{}]",
        fmt(&c.rel_errs),
        fmt(&analytic)
    );
    assert!(
        c.analytic.iter().all(|g| *g != 0.0),
        "{what}: every parameter must reach the loss: {c:?}"
    );
    c.check(REL_TOL, MIN_COS)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let checked = c.above_floor();
    assert_eq!(
        checked.len(),
        x.len(),
        "{what}: components below the floor: {c:?}"
    );
    for i in checked {
        let bad = c.perturbed(i, 1.001).unwrap();
        assert!(
            bad.check(REL_TOL, MIN_COS).is_err(),
            "{what}: component {i} perturbed by 0.1 % passed the check: {bad:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Joint fit (src/fit/joint.rs)
// ------------------------------------------------------------------------------------------

const JOINT_SPEC: &str = concat!(
    r#"
kind = "joint"
max_evals = 10
max_batch = 8
dims = [4]
[network]
n_mn = 40
n_dd = 400
duration_s = 0.6
dt_s = 2e-4
seed = 3
"#,
    joint_truth_and_bounds!(),
    joint_start!(),
    r#"[[methods]]
method = "lbfgs"
iters = 1
memory = 2
"#
);

#[test]
fn joint_loss_gradient_f64_every_parameter() {
    let spec = JointSpec::from_toml_str(JOINT_SPEC).unwrap();
    let model = JointModel::new(&spec.network, spec.freq_hz, spec.max_batch)
        .unwrap()
        .with_precision(Precision::F64);
    let tgt = targets(&spec, &model).unwrap();
    assert!(tgt[2] > 2.0, "active pool at the truth: {tgt:?}");
    let mut obj = JointObjective {
        model: &model,
        targets: tgt,
        base: spec.truth.to_vec(),
    };
    let x = vec![55.0, 14.0, 0.06, 4.0];
    let (v, g) = obj.value_and_grad(&x).unwrap();
    let l = obj.values(std::slice::from_ref(&x)).unwrap()[0];
    assert!(
        (v - l).abs() <= 1e-12 * l.abs(),
        "taped and plain loss {v} vs {l}"
    );
    let fd = batched_central(&mut |p| obj.values(p).unwrap(), &x, &steps(&x));
    assert_gradient("joint", &x, g, fd);
}

// ------------------------------------------------------------------------------------------
// Recording fit (src/fit/recording/model.rs)
// ------------------------------------------------------------------------------------------

const BIN_S: f64 = 0.0625;
const N_BINS: usize = 24; // 1.5 s
const UNITS: [usize; 3] = [4, 14, 24];

fn recording_model(targets: Targets) -> RecordingModel {
    let net = NetworkConfig {
        n_mn: 40,
        n_dd: 400,
        dt_s: 2.5e-4,
        seed: 7,
        ..NetworkConfig::default()
    };
    let knots = KnotTimes::uniform(6, 0.0, N_BINS as f64 * BIN_S).unwrap();
    RecordingModel::new(
        &net,
        knots,
        targets,
        UNITS.to_vec(),
        true,
        2.0,
        MYOGEN_WEIGHT_S,
        1.0,
        0.25,
        16,
    )
    .unwrap()
    .with_precision(Precision::F64)
}

#[test]
fn recording_loss_gradient_f64_every_parameter() {
    // Targets: the model's own output at a truth, shifted so the loss is not at its minimum.
    let placeholder = Targets::new(
        BIN_S,
        N_BINS,
        2..N_BINS,
        vec![1.0; N_BINS],
        UNITS.to_vec(),
        vec![vec![0.0; N_BINS]; UNITS.len()],
        vec![0; UNITS.len()],
    )
    .unwrap();
    let truth = [40.0, 70.0, 95.0, 90.0, 80.0, 75.0, 2.0, 0.8];
    let sim = recording_model(placeholder).simulate(&truth).unwrap();
    let recruit: Vec<usize> = sim
        .rates_hz
        .iter()
        .map(|r| myodiff::fit::recording::first_at_least(r, 3.0, 0).expect("unit recruited"))
        .collect();
    let targets = Targets::new(
        BIN_S,
        N_BINS,
        2..N_BINS,
        sim.force_pct,
        UNITS.to_vec(),
        sim.rates_hz,
        recruit,
    )
    .unwrap();
    let model = recording_model(targets);
    // 6 knots, σ, force scale: every parameter of the fit.
    let x = vec![50.0, 60.0, 85.0, 95.0, 85.0, 70.0, 3.0, 0.6];
    assert_eq!(model.n_params(), x.len());
    let (v, g) = model.loss_and_grad(&x).unwrap();
    let l = model.losses(std::slice::from_ref(&x)).unwrap()[0];
    assert!(
        (v - l).abs() <= 1e-12 * l.abs(),
        "taped and plain loss {v} vs {l}"
    );
    assert!(l > 1e-3, "away from the optimum: {l}");
    let fd = batched_central(&mut |p| model.losses(p).unwrap(), &x, &steps(&x));
    assert_gradient("recording", &x, g, fd);
}

// ------------------------------------------------------------------------------------------
// Watanabe smooth model (src/fit/watanabe.rs: the autodiff slope of `newton_autodiff` and
// `smooth_lbfgs`)
// ------------------------------------------------------------------------------------------

#[test]
fn watanabe_smooth_slope_f64() {
    let spec = WatanabeSpec::from_toml_str(
        r#"
kind = "watanabe"
[network]
n_mn = 40
n_dd = 400
duration_s = 1.0
[dc]
lower = 1.0
upper = 100.0
init = 50.0
[[methods]]
method = "brent"
budget = 3
"#,
    )
    .unwrap();
    let mut model = WatanabeModel::from_spec(&spec).with_precision(Precision::F64);
    let beta = spec.smooth.beta;
    let dc = 60.0;
    let (f, g) = model.smooth_force_and_slope(beta, dc).unwrap();
    eprintln!("smooth mean force {f:.6e} N at dc {dc} Hz");
    assert!(f > 1e-3, "an active pool: force {f} N");
    let h = REL_H * dc;
    let fp = model.smooth_force_and_slope(beta, dc + h).unwrap().0;
    let fm = model.smooth_force_and_slope(beta, dc - h).unwrap().0;
    assert_gradient(
        "watanabe smooth dF/d dc",
        &[dc],
        vec![g],
        vec![(fp - fm) / (2.0 * h)],
    );
}

// ------------------------------------------------------------------------------------------
// Noise objective (src/fit/noise.rs) on the shipped spec and the real rest window
// ------------------------------------------------------------------------------------------

#[test]
fn noise_objective_gradient_f64_every_parameter() {
    use myodiff::fit::noise::{NoiseCalibrationSpec, NoiseProblem, RestData};
    use myodiff::io::recording::{FETCH_HINT, Recording, default_data_path};
    let path = default_data_path();
    assert!(
        path.exists(),
        "the test recording {} is missing: {FETCH_HINT}",
        path.display()
    );
    let spec_path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/noise_rest.toml");
    let spec = NoiseCalibrationSpec::load(&spec_path).unwrap();
    let rec = Recording::load(&path).unwrap();
    let data = RestData::from_recording(&spec, &rec).unwrap();
    let mut problem = NoiseProblem::new(&spec, data).unwrap();
    // The start point of the calibration, and a point 5 % away from it in every parameter
    // (alternating directions).
    let x0 = problem.params.init();
    let x1: Vec<f64> = x0
        .iter()
        .zip(&problem.params.params)
        .enumerate()
        .map(|(i, (v, p))| {
            let f = if i % 2 == 0 { 0.95 } else { 1.05 };
            (v * f).clamp(p.lower, p.upper)
        })
        .collect();
    for (name, x) in [("start", x0), ("shifted", x1)] {
        let obj = &mut problem.objective;
        let (_, g) = obj.value_and_grad(&x).unwrap();
        let fd = batched_central(&mut |p| obj.values(p).unwrap(), &x, &steps(&x));
        assert_gradient(&format!("noise objective ({name})"), &x, g, fd);
    }
}
