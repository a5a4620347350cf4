//! The stretch-reflex calibration (`kind = "reflex"`, issue 11 item 6) on a small spiking closed
//! loop: the loss vanishes at the truth, the gradient method reduces it, and bad specs are typed
//! errors. Budgets are evaluation counts, never seconds.

use myodiff::Error;
use myodiff::fit::objective::Objective;
use myodiff::fit::reflex::{ReflexModel, ReflexObjective, ReflexSpec, param_set};
use myodiff::fit::{Budget, Method, minimize_within};

const SPEC: &str = r#"
kind = "reflex"
drive_hz = 60.0
window_s = [0.25, 0.45]
bin_s = 0.002
h_rel = 0.02
max_evals = 40

[loop]
n_mn = 30
duration_s = 0.45
stretch = [{ kind = "tap", onset_s = 0.3, amplitude = 0.05, duration_s = 0.1 }]
ii = false
ib = false

[loop.ia]
p_connect = 0.8
pool = { n = 30 }

[truth]
w_ia_us = 0.05
gamma_dyn_hz = 50.0
[start]
w_ia_us = 0.02
gamma_dyn_hz = 20.0
[lower]
w_ia_us = 0.005
gamma_dyn_hz = 0.0
[upper]
w_ia_us = 0.2
gamma_dyn_hz = 120.0

[[methods]]
method = "lbfgs"
iters = 100
memory = 8
"#;

#[test]
fn reflex_fit_reduces_the_loss_from_the_start() {
    let spec = ReflexSpec::from_toml_str(SPEC).unwrap();
    assert!(spec.loop_cfg.ii.is_none() && spec.loop_cfg.ib.is_none());
    assert_eq!(spec.loop_cfg.ia.as_ref().unwrap().pool.n, 30);
    assert_eq!(
        spec.loop_cfg.ia.as_ref().unwrap().pool.velocity_m_s,
        [61.0, 75.0],
        "fields not in the table keep MyoGen's Ia defaults"
    );
    let model = ReflexModel::new(&spec).unwrap();
    let target = model.traces(&[spec.truth.to_vec()]).unwrap().remove(0);
    assert!(target.iter().any(|v| *v > 0.1), "the truth makes force");
    let mut obj = ReflexObjective {
        model: &model,
        target,
        h_rel: spec.h_rel,
    };
    let at_truth = obj.value(&spec.truth.to_vec()).unwrap();
    assert_eq!(
        at_truth, 0.0,
        "common random numbers: the truth reproduces its target"
    );
    let l0 = obj.value(&spec.start.to_vec()).unwrap();
    assert!(l0 > 0.005, "the start is off ({l0})");
    let params = param_set(&spec).unwrap();
    let rep = minimize_within(
        &mut obj,
        &params,
        &Method::Lbfgs {
            iters: 100,
            memory: 8,
        },
        None,
        Budget {
            max_evals: Some(40),
            time_s: None,
        },
    )
    .unwrap();
    eprintln!(
        "reflex fit: loss {l0:.4} -> {:.3e} at {:?} after {} evaluations",
        rep.loss_best, rep.x_best, rep.evaluations
    );
    assert!(rep.evaluations <= 40);
    assert!(
        rep.loss_best * 3.0 <= l0,
        "loss {l0} -> {} (x {:?})",
        rep.loss_best,
        rep.x_best
    );
}

#[test]
fn bad_reflex_specs_are_typed_errors() {
    let field_of = |text: String| match ReflexSpec::from_toml_str(&text) {
        Err(Error::InvalidParameter { field, .. }) => field,
        other => panic!("expected InvalidParameter, got {other:?}"),
    };
    assert_eq!(
        field_of(SPEC.replace("kind = \"reflex\"", "kind = \"joint\"")),
        "kind"
    );
    assert_eq!(
        field_of(SPEC.replace("window_s = [0.25, 0.45]", "window_s = [0.25, 0.9]")),
        "window_s[1]"
    );
    assert_eq!(
        field_of(SPEC.replace("w_ia_us = 0.05\n", "w_ia_us = 0.5\n")),
        "truth.w_ia_us"
    );
    assert_eq!(
        field_of(SPEC.replace("h_rel = 0.02", "h_rel = 0.0")),
        "h_rel"
    );
    let no_ia = SPEC
        .replace("[loop.ia]\np_connect = 0.8\npool = { n = 30 }\n", "")
        .replace("ib = false", "ib = false\nia = false");
    assert_eq!(field_of(no_ia), "loop.ia");
    match ReflexSpec::from_toml_str(&SPEC.replace("p_connect = 0.8", "p_conect = 0.8")) {
        Err(Error::Format { detail, .. }) => assert!(detail.contains("p_conect"), "{detail}"),
        other => panic!("expected a Format error naming the unknown field, got {other:?}"),
    }
}

#[test]
fn shipped_reflex_spec_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/reflex.toml");
    let spec = ReflexSpec::load(&path).unwrap();
    assert!(spec.loop_cfg.ia.is_some() && spec.loop_cfg.ii.is_none() && spec.loop_cfg.ib.is_none());
    assert_eq!(spec.methods.len(), 4);
}

/// The rows of a population run on both cores give exactly what one thread gives (the stream path
/// has no arithmetic across rows), and a thread count of 0 is a typed error.
#[test]
fn reflex_rows_on_several_threads_equal_one_thread() {
    let spec = ReflexSpec::from_toml_str(SPEC).unwrap();
    let model = ReflexModel::new(&spec).unwrap();
    let rows: Vec<Vec<f64>> = (0..5)
        .map(|k| vec![0.02 + 0.01 * k as f64, 20.0 + 10.0 * k as f64])
        .collect();
    let one = model.traces_on(&rows, 1).unwrap();
    assert_eq!(one.len(), 5);
    assert!(one[4].iter().any(|v| *v > 0.1), "the rows make force");
    for threads in [2, 3] {
        assert_eq!(
            model.traces_on(&rows, threads).unwrap(),
            one,
            "{threads} threads"
        );
    }
    let err = model.traces_on(&rows, 0).expect_err("refused");
    assert!(err.to_string().contains("threads"), "{err}");
}
