//! Every optimiser on a known objective: reaches the optimum, respects its budget, reports
//! evaluations; bad specs give typed errors.

use myodiff::Error;
use myodiff::fit::*;

/// L(x) = Σ w_i (x_i − c_i)², with an evaluation log.
struct Quadratic {
    c: Vec<f64>,
    w: Vec<f64>,
    batched_calls: usize,
}
impl Objective for Quadratic {
    fn value(&mut self, x: &[f64]) -> myodiff::Result<f64> {
        Ok(x.iter()
            .zip(&self.c)
            .zip(&self.w)
            .map(|((x, c), w)| w * (x - c).powi(2))
            .sum())
    }
    fn value_and_grad(&mut self, x: &[f64]) -> myodiff::Result<(f64, Vec<f64>)> {
        let g = x
            .iter()
            .zip(&self.c)
            .zip(&self.w)
            .map(|((x, c), w)| 2.0 * w * (x - c))
            .collect();
        Ok((self.value(x)?, g))
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> myodiff::Result<Vec<f64>> {
        self.batched_calls += 1;
        xs.iter().map(|x| self.value(x)).collect()
    }
}

fn problem(n: usize) -> (Quadratic, ParamSet) {
    let c: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let w: Vec<f64> = (0..n).map(|i| 1.0 + 0.5 * i as f64).collect();
    let specs = (0..n)
        .map(|i| ParamSpec::new(&format!("p{i}"), 0.1, 10.0, 5.0))
        .collect();
    (
        Quadratic {
            c,
            w,
            batched_calls: 0,
        },
        ParamSet::new(specs).unwrap(),
    )
}

fn assert_close(r: &FitReport, c: &[f64], tol: f64) {
    for (x, c) in r.x_best.iter().zip(c) {
        assert!(
            (x - c).abs() < tol,
            "{}: x = {:?}, loss {}",
            r.method,
            r.x_best,
            r.loss_best
        );
    }
}

#[test]
fn lbfgs_converges_with_few_gradient_evaluations() {
    let (mut q, ps) = problem(3);
    let c = q.c.clone();
    let r = minimize(
        &mut q,
        &ps,
        &Method::Lbfgs {
            iters: 50,
            memory: 5,
        },
        None,
        None,
    )
    .unwrap();
    assert_close(&r, &c, 1e-5);
    assert!(
        r.gradients > 0 && r.evaluations < 200,
        "{} evaluations",
        r.evaluations
    );
}

#[test]
fn adam_converges() {
    let (mut q, ps) = problem(2);
    let c = q.c.clone();
    let r = minimize(
        &mut q,
        &ps,
        &Method::Adam {
            lr: 0.1,
            iters: 600,
        },
        None,
        None,
    )
    .unwrap();
    assert_close(&r, &c, 1e-2);
    assert_eq!(r.gradients, 600);
}

#[test]
fn nelder_mead_respects_its_budget_and_improves() {
    let (mut q, ps) = problem(2);
    let c = q.c.clone();
    let r = minimize(
        &mut q,
        &ps,
        &Method::NelderMead {
            budget: 120,
            step: 0.5,
        },
        None,
        None,
    )
    .unwrap();
    assert!(r.evaluations <= 120, "{}", r.evaluations);
    assert_close(&r, &c, 1e-2);
}

/// A budget that ends inside Nelder–Mead's initial simplex (n + 1 points) stops the run with a
/// report of what was evaluated — it used to panic inside argmin, which unwraps the simplex's
/// costs (found by the recording fit with `max_evals = 2`); an objective error there is returned
/// as a typed error.
#[test]
fn nelder_mead_budget_inside_the_initial_simplex_is_not_a_panic() {
    let (mut q, ps) = problem(4);
    let nm = Method::NelderMead {
        budget: 100,
        step: 0.5,
    };
    let budget = Budget {
        max_evals: Some(2),
        time_s: None,
    };
    let r = minimize_within(&mut q, &ps, &nm, None, budget).unwrap();
    assert_eq!(r.evaluations, 2);
    assert!(
        r.stop_reason.contains("initial simplex"),
        "{}",
        r.stop_reason
    );
    // a budget that covers the simplex: its n + 1 values are not evaluated twice
    let budget = Budget {
        max_evals: Some(5),
        time_s: None,
    };
    let r = minimize_within(&mut q, &ps, &nm, None, budget).unwrap();
    assert_eq!(r.evaluations, 5);
    struct Failing;
    impl Objective for Failing {
        fn value(&mut self, _x: &[f64]) -> myodiff::Result<f64> {
            Err(Error::invalid("x", "NaN", "a finite loss"))
        }
        fn value_and_grad(&mut self, _x: &[f64]) -> myodiff::Result<(f64, Vec<f64>)> {
            Err(Error::invalid("x", "NaN", "a finite loss"))
        }
    }
    let e = minimize_within(&mut Failing, &ps, &nm, None, Budget::default()).unwrap_err();
    assert!(e.to_string().contains("finite loss"), "{e}");
}

#[test]
fn particle_swarm_evaluates_the_swarm_in_batches() {
    let (mut q, ps) = problem(2);
    let c = q.c.clone();
    let r = minimize(
        &mut q,
        &ps,
        &Method::ParticleSwarm {
            budget: 400,
            start_particle: false,
            particles: 20,
            seed: 1,
        },
        None,
        None,
    )
    .unwrap();
    assert!(r.evaluations <= 420, "{}", r.evaluations);
    assert!(
        q.batched_calls >= 10 && q.batched_calls <= 22,
        "{} batched calls",
        q.batched_calls
    );
    assert_close(&r, &c, 0.1);
}

#[test]
fn brent_solves_one_dimension() {
    let (mut q, ps) = problem(1);
    let r = minimize(&mut q, &ps, &Method::Brent { budget: 25 }, None, None).unwrap();
    assert!(r.evaluations <= 25);
    assert_close(&r, &[1.0], 1e-4);
}

#[test]
fn random_search_uses_exactly_its_budget() {
    let (mut q, ps) = problem(2);
    let r = minimize(
        &mut q,
        &ps,
        &Method::RandomSearch {
            budget: 100,
            batch: 16,
            seed: 3,
        },
        None,
        None,
    )
    .unwrap();
    assert_eq!(r.evaluations, 100);
    assert_eq!(r.history.len(), 100);
    assert!(r.loss_best < 2.0);
    // best-so-far is monotone
    assert!(
        r.history
            .windows(2)
            .all(|w| w[1].best_loss <= w[0].best_loss)
    );
}

#[test]
fn bad_parameter_specs_are_typed_errors() {
    let e = ParamSet::new(vec![ParamSpec::new("dc_hz", 10.0, 1.0, 5.0)])
        .err()
        .unwrap();
    assert!(
        matches!(&e, Error::InvalidParameter { field, .. } if field == "dc_hz.lower/upper"),
        "{e}"
    );
    let e = ParamSet::new(vec![ParamSpec::new("dc_hz", 1.0, 100.0, 500.0)])
        .err()
        .unwrap();
    assert!(
        matches!(&e, Error::InvalidParameter { field, .. } if field == "dc_hz.init"),
        "{e}"
    );
    let e = ParamSet::new(vec![
        ParamSpec::new("w", -1.0, 1.0, 0.5).with_transform(Transform::Log),
    ])
    .err()
    .unwrap();
    assert!(
        matches!(&e, Error::InvalidParameter { field, .. } if field == "w.lower"),
        "{e}"
    );
    assert!(ParamSet::new(vec![]).is_err());
    let (mut q, ps) = problem(1);
    let e = minimize(
        &mut q,
        &ps,
        &Method::Brent { budget: 5 },
        Some(&[f64::NAN]),
        None,
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::InvalidParameter { .. }));
}

#[test]
fn transforms_round_trip_and_chain_rule_matches_finite_differences() {
    for t in [Transform::Identity, Transform::Log, Transform::Logit] {
        let p = ParamSpec::new("x", 0.5, 20.0, 3.0).with_transform(t);
        let th = p.to_unconstrained(3.0);
        assert!((p.to_physical(th) - 3.0).abs() < 1e-9);
        let h = 1e-6;
        let fd = (p.to_physical(th + h) - p.to_physical(th - h)) / (2.0 * h);
        assert!((fd - p.dphys_dtheta(th)).abs() < 1e-6 * fd.abs().max(1.0));
    }
}

#[test]
fn reports_are_written_with_json_markdown_and_png_plots() {
    let (mut q, ps) = problem(2);
    let a = minimize(
        &mut q,
        &ps,
        &Method::Lbfgs {
            iters: 20,
            memory: 5,
        },
        None,
        None,
    )
    .unwrap();
    let b = minimize(
        &mut q,
        &ps,
        &Method::NelderMead {
            budget: 40,
            step: 0.5,
        },
        None,
        None,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("myodiff-report-test-{}", std::process::id()));
    let summary = RunSummary {
        problem: "quadratic".into(),
        description: "test".into(),
        fits: vec![a, b],
        extra: serde_json::json!({"note": 1}),
    };
    let files = write_report(&dir, &summary).unwrap();
    assert_eq!(files.len(), 4);
    assert!(
        files.last().unwrap().ends_with("summary.json"),
        "summary.json is written last (it marks a complete report): {files:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["fits"][1]["method"], "nelder_mead");
    let png = std::fs::read(dir.join("loss_vs_evaluations.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 5_000,
        "plot suspiciously small: {} bytes",
        png.len()
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| lbfgs |") && md.contains("| nelder_mead |"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn particle_swarm_can_start_one_particle_at_x0() {
    let (mut q, ps) = problem(2);
    let c = q.c.clone();
    let x0 = ps.init();
    let l0 = q.value(&x0).unwrap();
    let r = minimize(
        &mut q,
        &ps,
        &Method::ParticleSwarm {
            budget: 400,
            start_particle: true,
            particles: 20,
            seed: 1,
        },
        None,
        None,
    )
    .unwrap();
    // The first batched evaluation is the seeded swarm, x0 first.
    assert_eq!(r.history[0].loss, l0, "first particle evaluated at x0");
    assert!(r.loss_best <= l0);
    assert!(r.evaluations <= 420, "{}", r.evaluations);
    assert_close(&r, &c, 0.1);
}

/// Levenberg–Marquardt needs residuals: every problem whose loss is a scalar refuses it at
/// validation, naming `methods[i].method` (the shipped specs with an LM method appended); the
/// recording fit on the spiking network accepts it.
#[test]
fn least_squares_method_is_refused_where_the_loss_has_no_residuals() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration");
    let lm = "\n[[methods]]\nmethod = \"levenberg_marquardt\"\niters = 5\n";
    let with_lm = |f: &str| std::fs::read_to_string(root.join(f)).unwrap() + lm;
    let errs = [
        joint::JointSpec::from_toml_str(&with_lm("joint.toml")).map(|_| ()),
        noise::NoiseCalibrationSpec::from_toml_str(&with_lm("noise_rest.toml")).map(|_| ()),
        reflex::ReflexSpec::from_toml_str(&with_lm("reflex.toml")).map(|_| ()),
        recording::RecordingFitSpec::from_toml_str(&with_lm("recording.toml")).map(|_| ()),
    ];
    for e in errs {
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("methods[") && e.contains("levenberg_marquardt"),
            "{e}"
        );
    }
    recording::RecordingFitSpec::from_toml_str(&with_lm("recording_spiking.toml")).unwrap();
}
