//! The event-time spiking network (`myodiff::event`): its tangents are the exact derivative of
//! its forward map between events (f64 central differences at a step small enough that no event
//! changes, checked), its forward stays close to the tensor network's, the insertion estimator
//! agrees with the seed-averaged central difference of the spiking network within the combined
//! standard errors while the pathwise derivative (blind to spike creation) fails the same test,
//! and bad input gives typed errors.

use myodiff::Error;
use myodiff::drive::generator::SpikeProcess;
use myodiff::drive::piecewise::KnotTimes;
use myodiff::event::estimator::insertion_term;
use myodiff::event::{
    Estimate, EventDrive, EventNetwork, GradientProblem, InsertionOpts, Observable, Param,
    RunOptions,
};
use myodiff::network::{MYOGEN_WEIGHT_S, MembraneModel, NetworkConfig};

fn small_cfg(seed: u64) -> NetworkConfig {
    NetworkConfig {
        n_mn: 100,
        n_dd: 200,
        duration_s: 0.5,
        seed,
        ..Default::default()
    }
}

fn observables() -> Vec<Observable> {
    vec![
        Observable::MeanForce {
            t0_s: 0.1,
            t1_s: 0.5,
        },
        Observable::ForceAmplitude {
            t0_s: 0.1,
            t1_s: 0.5,
            freq_hz: 20.0,
        },
        Observable::PoolRate {
            t0_s: 0.1,
            t1_s: 0.5,
            taper_s: 0.05,
        },
        Observable::UnitRate {
            unit: 0,
            t0_s: 0.1,
            t1_s: 0.5,
            taper_s: 0.05,
        },
    ]
}

/// Compares tangents with central differences of the same run (f64, h tiny, event structure
/// unchanged); `perturb` scales one analytic component to show that the check can fail.
fn check_tangents(
    drive: &EventDrive,
    params: &[Param],
    perturb: Option<usize>,
) -> Result<(), String> {
    let net = EventNetwork::new(&small_cfg(3)).map_err(|e| e.to_string())?;
    let run = net
        .run(
            drive,
            MYOGEN_WEIGHT_S,
            &RunOptions {
                params: params.to_vec(),
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
    let n_spikes: usize = run.spikes_s.iter().map(|s| s.len()).sum();
    assert!(
        n_spikes > 10,
        "the test network must fire ({n_spikes} spikes)"
    );
    for o in observables() {
        let (v, mut g) = o.eval(&run).map_err(|e| e.to_string())?;
        if let Some(q) = perturb {
            g[q] *= 1.001;
        }
        for (q, &p) in params.iter().enumerate() {
            let h = if p == Param::Weight {
                MYOGEN_WEIGHT_S * 1e-7
            } else {
                1e-6
            };
            let at = |d: f64| {
                let (dr, w) = if p == Param::Weight {
                    (drive.clone(), MYOGEN_WEIGHT_S + d)
                } else {
                    (
                        drive.with(p, drive.get(p).unwrap() + d).unwrap(),
                        MYOGEN_WEIGHT_S,
                    )
                };
                let r = net.run(&dr, w, &RunOptions::default()).unwrap();
                let n: Vec<usize> = r.spikes_s.iter().map(|s| s.len()).collect();
                (o.eval(&r).unwrap().0, n)
            };
            let (fp, np) = at(h);
            let (fm, nm) = at(-h);
            assert_eq!(np, nm, "an event changed inside ±h: choose a smaller h");
            let fd = (fp - fm) / (2.0 * h);
            // relative 1e-5 of the component, plus the differences' rounding (≈ 1e-13·|F|/h in f64)
            let tol = 1e-5 * fd.abs() + 1e-13 * v.abs().max(1e-12) / h;
            if (g[q] - fd).abs() > tol {
                return Err(format!(
                    "{} / {}: tangent {:.10e} vs central difference {:.10e} (tol {tol:.1e})",
                    o.label(),
                    p.name(),
                    g[q],
                    fd
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn tangents_are_the_exact_derivative_between_events() {
    let params = [Param::Dc, Param::Amp, Param::NoiseSd, Param::Weight];
    check_tangents(&EventDrive::watanabe(60.0), &params, None).unwrap();
    let knots = EventDrive::Knots {
        knots: KnotTimes::uniform(4, 0.0, 0.5).unwrap(),
        values_hz: vec![40.0, 70.0, 60.0, 50.0],
        noise_sd_hz: 1.0,
    };
    check_tangents(
        &knots,
        &[Param::Knot(1), Param::Knot(2), Param::NoiseSd],
        None,
    )
    .unwrap();
}

#[test]
fn tangent_check_negative_control() {
    // one component wrong by 0.1 %: the same check must fail
    let params = [Param::Dc, Param::Weight];
    let r = check_tangents(&EventDrive::watanabe(60.0), &params, Some(0));
    assert!(r.is_err(), "a 0.1 % error in d/d(dc) was not detected");
    let r = check_tangents(&EventDrive::watanabe(60.0), &params, Some(1));
    assert!(r.is_err(), "a 0.1 % error in d/d(weight) was not detected");
}

#[test]
fn forward_close_to_the_tensor_network() {
    use myodiff::drive::rate::DriveParams;
    use myodiff::kernel::{BackendKind, Ctx, ExecPath, Precision, to_vec_f64};
    use myodiff::network::{MuscleParams, build};
    let cfg = NetworkConfig {
        n_mn: 200,
        n_dd: 400,
        duration_s: 1.0,
        ..Default::default()
    };
    let ctx = Ctx::new(BackendKind::Flex)
        .unwrap()
        .with_precision(Precision::F64);
    let muscle = MuscleParams::from_config(&cfg, &ctx).unwrap();
    let drive = DriveParams::watanabe_oscillating(&ctx, 60.0);
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let mut sim = build(&cfg, &ctx, 1, drive, w, &muscle).unwrap();
    let r = sim.run_path(ExecPath::Fused).unwrap();
    let f = to_vec_f64(r.trace("force_n").unwrap());
    let n_t = f.len();
    let mean_tensor = f[n_t / 2..].iter().sum::<f64>() / (n_t - n_t / 2) as f64;
    let spikes_tensor: usize = r
        .result(0)
        .unwrap()
        .spike_times_s
        .iter()
        .map(|s| s.len())
        .sum();
    let run = EventNetwork::new(&cfg)
        .unwrap()
        .run(
            &EventDrive::watanabe(60.0),
            MYOGEN_WEIGHT_S,
            &RunOptions::default(),
        )
        .unwrap();
    let mean_event = Observable::MeanForce {
        t0_s: 0.5,
        t1_s: 1.0,
    }
    .eval(&run)
    .unwrap()
    .0;
    let spikes_event: usize = run.spikes_s.iter().map(|s| s.len()).sum();
    // measured: +3.9 % spikes, +6.7 % force (the grid-sampled Exp2Syn's charge depends on the
    // arrival phase inside the step, which the event network keeps and the tensor one rounds)
    let ds = spikes_event as f64 / spikes_tensor as f64 - 1.0;
    let df = mean_event / mean_tensor - 1.0;
    assert!(
        ds.abs() < 0.08,
        "spike counts {spikes_event} vs {spikes_tensor}"
    );
    assert!(
        df.abs() < 0.12,
        "mean force {mean_event} vs {mean_tensor} N"
    );
}

#[test]
fn bad_input_gives_typed_errors() {
    let faithful = NetworkConfig {
        model: MembraneModel::Faithful,
        ..small_cfg(1)
    };
    let e = EventNetwork::new(&faithful).unwrap_err();
    assert!(e.to_string().contains("model"), "{e}");
    let net = EventNetwork::new(&small_cfg(1)).unwrap();
    let knots_only = RunOptions {
        params: vec![Param::Knot(0)],
        ..Default::default()
    };
    let e = net
        .run(&EventDrive::watanabe(40.0), MYOGEN_WEIGHT_S, &knots_only)
        .unwrap_err();
    assert!(e.to_string().contains("parameter"), "{e}");
    let e = net
        .run(
            &EventDrive::watanabe(f64::NAN),
            MYOGEN_WEIGHT_S,
            &RunOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("dc_hz"), "{e}");
    let e = net
        .run(&EventDrive::watanabe(40.0), -1.0, &RunOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("weight_s"), "{e}");
    let bad_ins = RunOptions {
        insertion: Some(InsertionOpts {
            rate_near_hz: 1e6,
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = net
        .run(&EventDrive::watanabe(40.0), MYOGEN_WEIGHT_S, &bad_ins)
        .unwrap_err();
    assert!(e.to_string().contains("rate_near_hz"), "{e}");
    let run = net
        .run(
            &EventDrive::watanabe(40.0),
            MYOGEN_WEIGHT_S,
            &RunOptions::default(),
        )
        .unwrap();
    let e = Observable::UnitRate {
        unit: 1000,
        t0_s: 0.0,
        t1_s: 0.5,
        taper_s: 0.1,
    }
    .eval(&run)
    .unwrap_err();
    assert!(e.to_string().contains("observable.unit"), "{e}");
    let e = Observable::MeanForce {
        t0_s: 0.0,
        t1_s: 9.0,
    }
    .eval(&run)
    .unwrap_err();
    assert!(e.to_string().contains("t1_s"), "{e}");
    // the insertion estimator differentiates Poisson intensities only
    let gamma = NetworkConfig {
        process: SpikeProcess::Gamma { shape_k: 3.0 },
        ..small_cfg(1)
    };
    let gnet = EventNetwork::new(&gamma).unwrap();
    let grun = gnet
        .run(
            &EventDrive::watanabe(40.0),
            MYOGEN_WEIGHT_S,
            &RunOptions::default(),
        )
        .unwrap();
    let e = insertion_term(&gnet, &grun, observables()[0]).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }) && e.to_string().contains("process"));
    // a reference from one seed has no standard error
    let prob = GradientProblem {
        cfg: small_cfg(1),
        drive: EventDrive::watanabe(40.0),
        weight_s: MYOGEN_WEIGHT_S,
        observable: observables()[0],
    };
    let e = prob.reference(Param::Dc, 1.0, &[1]).unwrap_err();
    assert!(e.to_string().contains("seeds"), "{e}");
    let _ = Estimate::from_samples(&[1.0]).unwrap();
}

/// Accuracy at a small size (100 MNs, 400 inputs, 1 s, DC 50 Hz, 16 seeds) against the
/// seed-averaged central difference (±1 Hz, common random numbers in each seed): the insertion
/// estimator's seed mean lies within 3 combined standard errors of the reference; the pathwise
/// derivative (blind to spike creation) fails the same test — the negative control. Measured:
/// reference 0.583 ± 0.030 N/Hz, insertion 0.590 ± 0.17, pathwise 0.171 ± 0.036 (8.8 SE off).
#[test]
fn insertion_estimator_matches_the_seed_averaged_reference() {
    let prob = GradientProblem {
        cfg: NetworkConfig {
            n_mn: 100,
            n_dd: 400,
            duration_s: 1.0,
            ..Default::default()
        },
        drive: EventDrive::watanabe(50.0),
        weight_s: MYOGEN_WEIGHT_S,
        observable: Observable::MeanForce {
            t0_s: 0.5,
            t1_s: 1.0,
        },
    };
    let seeds: Vec<u64> = (1..=16).collect();
    let reference = prob.reference(Param::Dc, 1.0, &seeds).unwrap();
    assert!(
        reference.mean > 5.0 * reference.se,
        "the reference must resolve the gradient: {reference:?}"
    );
    let est = prob
        .with_insertion(&[Param::Dc], &seeds, InsertionOpts::default())
        .unwrap();
    let ins = Estimate::from_samples(
        &est.iter()
            .map(|e| e.insertion_gradient(&[Param::Dc])[0])
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let pw =
        Estimate::from_samples(&est.iter().map(|e| e.pathwise[0]).collect::<Vec<_>>()).unwrap();
    let within = |e: &Estimate| {
        (e.mean - reference.mean).abs() <= 3.0 * (e.se.powi(2) + reference.se.powi(2)).sqrt()
    };
    assert!(within(&ins), "insertion {ins:?} vs reference {reference:?}");
    assert!(
        !within(&pw),
        "negative control: pathwise {pw:?} passed against {reference:?}"
    );
}
