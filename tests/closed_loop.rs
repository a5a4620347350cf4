//! The closed loop (issue 11): reduction to the open-loop network without feedback, the stretch
//! reflex through the Ia pathway, gradient checks through the whole loop (smooth mode, f64,
//! autodiff against central differences), and typed errors.

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::afferent::{AfferentKind, ConductionDelay, Stretch};
use myodiff::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams, Pathway, metrics};
use myodiff::drive::rate::DriveParams;
use myodiff::gradcheck::{GradCheck, central_differences};
use myodiff::kernel::{Ctx, scalar_f64, to_vec_f64};
use myodiff::network::{self, MuscleParams, NetworkConfig};
use myodiff::neuron::spike::SpikeMode;

fn tap(onset_s: f64, duration_s: f64) -> Vec<Stretch> {
    vec![Stretch::Tap {
        onset_s,
        amplitude: 0.05,
        duration_s,
    }]
}

/// Without afferent pathways the loop's pool receives exactly the open-loop network's drive, and
/// the current input `g·(E − v_prev)` is the LIF's conductance drive: the spikes must be identical.
#[test]
fn without_feedback_the_pool_spikes_as_in_the_open_loop_network() {
    let ctx = Ctx::cpu();
    let (n_mn, duration_s, dc) = (40, 0.3, 55.0);
    let cfg = ClosedLoopConfig {
        n_mn,
        duration_s,
        ia: None,
        ii: None,
        ib: None,
        ..Default::default()
    };
    let params = ClosedLoopParams::myogen(&ctx, dc, 0.0);
    let closed = closed_loop::build(&cfg, &ctx, 1, &params)
        .unwrap()
        .run()
        .unwrap();
    let net = NetworkConfig {
        n_mn,
        duration_s,
        seed: cfg.seed,
        ..Default::default()
    };
    let muscle = MuscleParams::from_config(&net, &ctx).unwrap();
    let open = network::build(
        &net,
        &ctx,
        1,
        DriveParams::constant(&ctx, dc),
        ctx.full([1, 1], 5e-8),
        &muscle,
    )
    .unwrap()
    .run()
    .unwrap();
    let a = to_vec_f64(closed.trace("spikes").unwrap());
    let b = to_vec_f64(open.trace("spikes").unwrap());
    let n_spikes: f64 = b.iter().sum();
    assert!(
        n_spikes > 50.0,
        "the test drive must make the pool fire ({n_spikes} spikes)"
    );
    assert_eq!(
        a, b,
        "closed loop without feedback differs from the open-loop pool"
    );
}

fn reflex(cfg: &ClosedLoopConfig, onset_s: f64) -> metrics::ReflexResponse {
    let ctx = Ctx::cpu();
    let params = ClosedLoopParams::myogen(&ctx, 60.0, 50.0);
    let out = closed_loop::build(cfg, &ctx, 1, &params)
        .unwrap()
        .run()
        .unwrap();
    let f = to_vec_f64(out.trace("muscle_force_n").unwrap());
    metrics::reflex_response(&f, cfg.dt_s, onset_s, 0.2, 0.15, 3.0).unwrap()
}

/// A tendon tap stretches only the spindle: the muscle force responds only through the Ia
/// pathway, with a latency of tens of ms (fibre conduction 8–10 ms, motor axons ≈ 10 ms, twitch
/// rise) and an amplitude well above the no-feedback response.
#[test]
fn tendon_tap_evokes_a_reflex_only_through_ia() {
    let onset = 0.5;
    let base = ClosedLoopConfig {
        n_mn: 80,
        duration_s: 0.7,
        stretch: tap(onset, 0.1),
        ii: None,
        ib: None,
        ..Default::default()
    };
    let with_ia = reflex(&base, onset);
    let without = reflex(
        &ClosedLoopConfig {
            ia: None,
            ..base.clone()
        },
        onset,
    );
    assert!(
        with_ia.amplitude_n > 2.0 * without.amplitude_n.max(0.0)
            && with_ia.amplitude_n > 3.0 * with_ia.baseline_sd_n,
        "reflex with Ia {with_ia:?} vs without {without:?}"
    );
    let lat = with_ia.latency_s.expect("a reflex latency");
    assert!(
        (0.015..0.12).contains(&lat),
        "reflex latency {lat} s outside 15–120 ms ({with_ia:?})"
    );
}

// ------------------------------------------------------------------ gradients (smooth, f64)

const N_T_WIN: (f64, f64) = (0.04, 0.12);

fn small_loop() -> ClosedLoopConfig {
    let small = |kind, n| {
        let mut p = Pathway::myogen(kind);
        p.pool.n = n;
        p.p_connect = 1.0;
        p
    };
    let mut cfg = ClosedLoopConfig {
        n_mn: 12,
        n_dd: 400,
        duration_s: 0.12,
        spike_mode: SpikeMode::Rate,
        stretch: tap(0.04, 0.04),
        ia: Some(small(AfferentKind::Ia, 10)),
        ii: Some(small(AfferentKind::Ii, 8)),
        ib: Some(small(AfferentKind::Ib, 8)),
        ..Default::default()
    };
    // small, excitable interneurons so that the smooth Ib → gIb path carries a gradient
    for ins in [&mut cfg.gii, &mut cfg.gib] {
        ins.n = 6;
        ins.rheobase_a = 0.05e-9;
    }
    cfg
}

/// x = [w_ia (µS), gamma_dyn (Hz), G1 (Hz)] → the loop's parameters (drive 60 Hz, no noise).
fn loop_params(ctx: &Ctx, x: &[Tensor<2>; 3]) -> ClosedLoopParams {
    ClosedLoopParams {
        drive: DriveParams::scalars(ctx, 60.0, 0.0, 0.0, 0.0, 0.0),
        w_dd_s: ctx.full([1, 1], 5e-8),
        w_ia_s: x[0].clone() * 1e-6,
        gamma_dyn_hz: x[1].clone(),
        gamma_stat_hz: ctx.full([1, 1], 30.0),
        gto_g1_hz: x[2].clone(),
    }
}

/// Mean over the window of the recorded `[T, 1, 1]` trace `name`.
fn window_mean(ctx: &Ctx, x: &[Tensor<2>; 3], name: &str, scale: f64) -> Tensor<1> {
    let cfg = small_loop();
    let out = closed_loop::build(&cfg, ctx, 1, &loop_params(ctx, x))
        .unwrap()
        .run()
        .unwrap();
    let t = out.trace(name).unwrap();
    let (a, b) = (
        (N_T_WIN.0 / cfg.dt_s).round() as usize,
        (N_T_WIN.1 / cfg.dt_s).round() as usize,
    );
    t.slice([a..b, 0..1, 0..1]).mean().reshape([1]) * scale
}

const X0: [f64; 3] = [0.05, 60.0, 40.0];

fn check(name: &str, scale: f64, rel_tol: f64) -> GradCheck {
    let ad = Ctx::cpu().f64().autodiff();
    let x = X0.map(|v| ad.full([1, 1], v).require_grad());
    let grads = window_mean(&ad, &x, name, scale).backward();
    let analytic: Vec<f64> = x
        .iter()
        .map(|t| scalar_f64(t.grad(&grads).expect("gradient")))
        .collect();
    let ctx = Ctx::cpu().f64();
    let h: Vec<f64> = X0.iter().map(|v| 1e-4 * v).collect();
    let numeric = central_differences(
        &mut |p: &[f64]| {
            let x = [0, 1, 2].map(|i| ctx.full([1, 1], p[i]));
            Ok(scalar_f64(window_mean(&ctx, &x, name, scale)))
        },
        &X0,
        &h,
    )
    .unwrap();
    let gc = GradCheck::compare(analytic, numeric).unwrap();
    eprintln!(
        "d({name})/d(w_ia, gamma_dyn, G1): analytic {:?}, numeric {:?}",
        gc.analytic, gc.numeric
    );
    if let Err(e) = gc.check(rel_tol, 0.999_999) {
        panic!("d({name})/d(w_ia, gamma_dyn, G1): {e}");
    }
    gc
}

/// Whole-loop gradient of the mean muscle force in the tap window with respect to the Ia weight,
/// the dynamic fusimotor drive and the GTO gain (autodiff vs central differences, f64, relative
/// step 1e-4, per-component relative tolerance 1e-4). The three must be non-zero: the Ia weight
/// and gamma raise the reflex force, the GTO gain lowers it (Ib → gIb inhibition).
#[test]
fn grad_reflex_force_wrt_ia_weight_fusimotor_drive_and_gto_gain() {
    let gc = check("muscle_force_n", 1.0, 1e-4);
    let n = &gc.numeric;
    assert!(
        n[0] > 0.0 && n[1] > 0.0,
        "Ia weight and gamma raise the force: {n:?}"
    );
    assert!(
        n[2] < 0.0,
        "the GTO gain lowers the force (autogenic inhibition): {n:?}"
    );
}

/// Whole-loop gradient of the mean joint angle (in mrad) with respect to the same parameters.
#[test]
fn grad_joint_angle_wrt_fusimotor_drive() {
    let gc = check("joint_angle_rad", 1e3, 1e-4);
    assert!(
        gc.numeric[1] != 0.0,
        "gamma moves the joint: {:?}",
        gc.numeric
    );
}

// ------------------------------------------------------------------------------ bad input

#[test]
fn bad_closed_loop_input_is_a_typed_error() {
    let ctx = Ctx::cpu();
    let params = ClosedLoopParams::myogen(&ctx, 40.0, 0.0);
    let build = |cfg: ClosedLoopConfig| closed_loop::build(&cfg, &ctx, 1, &params).err();
    let field_of = |e: Option<Error>| match e {
        Some(Error::InvalidParameter { field, .. }) => field,
        other => panic!("expected InvalidParameter, got {other:?}"),
    };
    let mut cfg = ClosedLoopConfig::default();
    cfg.ia.as_mut().unwrap().pool.n = 0;
    assert_eq!(field_of(build(cfg)), "ia.n");
    let mut cfg = ClosedLoopConfig::default();
    cfg.ib.as_mut().unwrap().pool.velocity_m_s = [-1.0, 60.0];
    assert_eq!(field_of(build(cfg)), "ib.velocity_m_s[0]");
    let mut cfg = ClosedLoopConfig::default();
    cfg.gib.weight_s = -1e-9;
    assert_eq!(field_of(build(cfg)), "gib.weight_s");
    let cfg = ClosedLoopConfig {
        stretch: vec![Stretch::Tap {
            onset_s: 0.1,
            amplitude: f64::NAN,
            duration_s: 0.1,
        }],
        ..Default::default()
    };
    assert_eq!(field_of(build(cfg)), "stretch[0].amplitude");
    let cfg = ClosedLoopConfig {
        dt_s: 5e-4,
        ..Default::default()
    };
    assert!(matches!(build(cfg), Some(Error::UnstableTimeStep { .. })));
    let cfg = ClosedLoopConfig {
        spike_mode: SpikeMode::Surrogate,
        ..Default::default()
    };
    assert_eq!(field_of(build(cfg)), "spike_mode");
    let bad = ClosedLoopParams {
        gamma_dyn_hz: ctx.full([1, 1], -5.0),
        ..params.clone()
    };
    match closed_loop::build(&ClosedLoopConfig::default(), &ctx, 1, &bad).err() {
        Some(Error::InvalidParameter { field, .. }) => assert_eq!(field, "gamma_dyn_hz[0]"),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
    // fibres firing above their population's rate bound: the error names that bound
    let mut cfg = ClosedLoopConfig {
        n_mn: 10,
        duration_s: 1.0,
        stretch: tap(0.5, 0.1),
        ii: None,
        ib: None,
        ..Default::default()
    };
    cfg.ia.as_mut().unwrap().pool.max_rate_hz = 1.0;
    let strong_gamma = ClosedLoopParams::myogen(&ctx, 40.0, 100.0);
    assert_eq!(
        field_of(
            closed_loop::build(&cfg, &ctx, 1, &strong_gamma)
                .unwrap()
                .run()
                .err()
        ),
        "ia.max_rate_hz"
    );
    match ConductionDelay::new("d", "a", "b", "1", vec![1e-3, -2e-3]).err() {
        Some(Error::InvalidParameter { field, .. }) => assert_eq!(field, "d.delays_s[1]"),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

/// The delay line delivers each input exactly `max(1, round(d/dt))` steps later.
#[test]
fn conduction_delay_shifts_each_unit_by_its_delay() {
    use myodiff::kernel::{BufferSpec, Simulation};
    let ctx = Ctx::cpu().f64();
    let (n_t, dt) = (12, 1e-3);
    let mut sim = Simulation::new(ctx.clone(), 1, dt, n_t).unwrap();
    let input: Vec<f64> = (0..n_t)
        .flat_map(|t| [t as f64 + 1.0, 10.0 * (t as f64 + 1.0), 7.0])
        .collect();
    sim.add_input(
        BufferSpec::new("x", &[3], "1"),
        ctx.tensor(input, [n_t, 1, 3]),
    )
    .unwrap();
    sim.add_stage(ConductionDelay::new("d", "x", "y", "1", vec![3e-3, 0.0, 2.4e-3]).unwrap());
    sim.record(&["y"]);
    let y = to_vec_f64(sim.run().unwrap().trace("y").unwrap());
    for t in 0..n_t {
        let want = [
            if t >= 3 { (t - 2) as f64 } else { 0.0 },
            if t >= 1 { 10.0 * t as f64 } else { 0.0 },
            if t >= 2 { 7.0 } else { 0.0 },
        ];
        assert_eq!(&y[3 * t..3 * t + 3], &want, "step {t}");
    }
}
