//! DD → MN synapse: connectivity, impulse response, gradient checks, fused == tape, bad input.

mod common_drive;

use burn::tensor::Tensor;
use common_drive::*;
use myodiff::Error;
use myodiff::drive::synapse::MYOGEN_WEIGHT_S;
use myodiff::drive::{
    ConnectivityMatrix, ConnectivityRule, DD_SPIKES, DriveNoise, DriveParams, GeneratorMode,
    InputPopulationConfig, RateClip, SYN_CONDUCTANCE_S, Synapse, SynapseConfig, SynapseKinetics,
};
use myodiff::gradcheck::GradCheck;
use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation, scalar_f64, to_vec_f64};

const DT: f64 = 1e-4;

#[test]
fn connectivity_fraction() {
    let c =
        ConnectivityMatrix::generate(400, 800, ConnectivityRule::Bernoulli { p: 0.3 }, 1).unwrap();
    // standard error sqrt(p(1-p)/320000) = 8.1e-4
    assert!((c.fraction() - 0.3).abs() < 4e-3, "{}", c.fraction());
    assert_eq!(
        c,
        ConnectivityMatrix::generate(400, 800, ConnectivityRule::Bernoulli { p: 0.3 }, 1).unwrap()
    );
    assert_ne!(
        c,
        ConnectivityMatrix::generate(400, 800, ConnectivityRule::Bernoulli { p: 0.3 }, 2).unwrap()
    );
    let f = ConnectivityMatrix::generate(50, 101, ConnectivityRule::FixedOutDegree { p: 0.3 }, 1)
        .unwrap();
    for i in 0..50 {
        assert_eq!(f.targets(i).len(), 30);
    }
    let d = f.dense();
    assert_eq!(d.iter().sum::<f64>(), 1500.0);
    assert_eq!(
        ConnectivityMatrix::generate(10, 10, ConnectivityRule::Bernoulli { p: 0.0 }, 1)
            .unwrap()
            .n_connections(),
        0
    );
    assert_eq!(
        ConnectivityMatrix::generate(10, 10, ConnectivityRule::Bernoulli { p: 1.0 }, 1)
            .unwrap()
            .n_connections(),
        100
    );
}

/// One presynaptic spike at step 5 → conductance on its targets: 0 before arrival (step 5 + 10
/// for the 1 ms delay), then w·h(k·dt) with h the analytic kernel (1e-12 relative, f64), on
/// both paths. Single exponential: peak w at arrival, ratio e^{−dt/τ} per step.
#[test]
fn impulse_response() {
    let ctx = Ctx::cpu().f64();
    let (n_t, w) = (60, MYOGEN_WEIGHT_S);
    let conn = ConnectivityMatrix::from_targets(3, vec![vec![0, 2], vec![1]]).unwrap();
    for kin in [
        SynapseKinetics::default(),
        SynapseKinetics::SingleExp { tau_s: 0.3e-3 },
        SynapseKinetics::SingleExp { tau_s: 2e-3 },
    ] {
        for path in [ExecPath::Tape, ExecPath::Fused] {
            let mut spikes = vec![0.0; n_t * 2];
            spikes[5 * 2] = 1.0; // source 0 at step 5
            let mut sim = Simulation::new(ctx.clone(), 1, DT, n_t).unwrap();
            sim.add_input(
                BufferSpec::new(DD_SPIKES, &[2], "spike/step"),
                ctx.tensor(spikes, [n_t, 1, 2]),
            )
            .unwrap();
            let cfg = SynapseConfig {
                kinetics: kin,
                ..Default::default()
            };
            sim.add_stage(
                Synapse::with_connectivity(cfg, conn.clone(), ctx.tensor(vec![w], [1, 1])).unwrap(),
            );
            sim.record(&[SYN_CONDUCTANCE_S]);
            let g = host(
                sim.run_path(path)
                    .unwrap()
                    .trace(SYN_CONDUCTANCE_S)
                    .unwrap(),
            );
            for t in 0..n_t {
                let expected = if t < 15 {
                    0.0
                } else {
                    w * kin.impulse_response((t - 15) as f64 * DT)
                };
                for j in [0, 2] {
                    assert!(
                        (g[t * 3 + j] - expected).abs() <= 1e-12 * w,
                        "{kin:?} {path:?} t {t}: {} vs {expected}",
                        g[t * 3 + j]
                    );
                }
                assert_eq!(g[t * 3 + 1], 0.0);
            }
            if let SynapseKinetics::SingleExp { tau_s } = kin {
                assert!((g[15 * 3] - w).abs() < 1e-12 * w);
                assert!((g[16 * 3] / g[15 * 3] - (-DT / tau_s).exp()).abs() < 1e-12);
            }
        }
    }
    // Exp2Syn is normalised to a continuous-time peak of exactly w at t_p = τ1τ2/(τ2−τ1)·ln(τ2/τ1).
    let k = SynapseKinetics::default();
    let tp = 0.2e-3 * 0.3e-3 / 0.1e-3 * 1.5f64.ln();
    assert!((k.impulse_response(tp) - 1.0).abs() < 1e-12);
    assert!(k.impulse_response(tp * 0.9) < 1.0 && k.impulse_response(tp * 1.1) < 1.0);
}

fn rate_chain(p: DriveParams, w: Tensor<2>, mode: GeneratorMode, kin: SynapseKinetics) -> Chain {
    Chain {
        params: p,
        noise: DriveNoise {
            seed: 4,
            ..Default::default()
        },
        clip: RateClip::Softplus {
            sharpness_per_hz: 0.2,
        },
        gen_cfg: InputPopulationConfig {
            n_dd: 6,
            mode,
            seed: 8,
            ..Default::default()
        },
        syn: Some((
            SynapseConfig {
                n_dd: 6,
                n_mn: 5,
                rule: ConnectivityRule::Bernoulli { p: 0.5 },
                seed: 2,
                kinetics: kin,
                delay_s: 3e-4,
            },
            w,
        )),
    }
}

/// mean conductance (nS) of the chain in rate mode as a function of (DC, A, w).
fn mean_g(path: ExecPath, dc: f64, amp: f64, w: f64, kin: SynapseKinetics) -> f64 {
    let ctx = Ctx::cpu().f64();
    let p = DriveParams::scalars(&ctx, dc, amp, 30.0, 0.2, 3.0);
    let c = rate_chain(p, ctx.tensor(vec![w], [1, 1]), GeneratorMode::Rate, kin);
    let ro = c.run(&ctx, 1, DT, 400, path).unwrap();
    scalar_f64(ro.trace(SYN_CONDUCTANCE_S).unwrap().mean()) * 1e9
}

/// Autodiff `[d/dDC, d/dA, d/dw]` of the mean conductance (nS) at (dc0, a0, w0).
fn autodiff_grad(path: ExecPath, kin: SynapseKinetics, dc0: f64, a0: f64, w0: f64) -> Vec<f64> {
    let ctx = Ctx::cpu().f64().autodiff();
    let dc = ctx.tensor(vec![dc0], [1, 1]).require_grad();
    let amp = ctx.tensor(vec![a0], [1, 1]).require_grad();
    let w = ctx.tensor(vec![w0], [1, 1]).require_grad();
    let mut p = DriveParams::scalars(&ctx, 0.0, 0.0, 30.0, 0.2, 3.0);
    p.dc_hz = dc.clone();
    p.amp_hz = amp.clone();
    let c = rate_chain(p, w.clone(), GeneratorMode::Rate, kin);
    let ro = c.run(&ctx, 1, DT, 400, path).unwrap();
    let loss = ro.trace(SYN_CONDUCTANCE_S).unwrap().mean() * 1e9;
    let g = loss.backward();
    vec![
        scalar_f64(dc.grad(&g).unwrap()),
        scalar_f64(amp.grad(&g).unwrap()),
        scalar_f64(w.grad(&g).unwrap()),
    ]
}

/// Central differences `[d/dDC, d/dA, d/dw]` of the mean conductance at (dc0, a0, w0).
fn fd_grad(path: ExecPath, kin: SynapseKinetics, dc0: f64, a0: f64, w0: f64) -> Vec<f64> {
    vec![
        central_fd(|x| mean_g(path, x, a0, w0, kin), dc0, 1e-3),
        central_fd(|x| mean_g(path, dc0, x, w0, kin), a0, 1e-3),
        central_fd(|x| mean_g(path, dc0, a0, x, kin), w0, 1e-3 * w0),
    ]
}

/// The checker of this file: every component within 1e-4 of the central difference, relative to
/// its own magnitude, and non-zero.
fn check_grad(analytic: &[f64], numeric: &[f64]) -> Result<(), String> {
    let c = GradCheck::compare_with_floor(analytic.to_vec(), numeric.to_vec(), 0.0).unwrap();
    if analytic.contains(&0.0) {
        return Err(format!("a zero component: {analytic:?}"));
    }
    c.check(1e-4, 0.9999)
}

const X0: (f64, f64, f64) = (6.0, 9.0, MYOGEN_WEIGHT_S);

/// Gradient checks (f64, central FD, rel. err ≤ 1e-4 per component): d(mean g)/d(DC), d/d(A),
/// d/d(w) in rate mode through rate → generators → synapse, on both paths and both kinetics.
#[test]
fn gradient_checks_rate_mode() {
    let (dc0, a0, w0) = X0;
    for kin in [
        SynapseKinetics::default(),
        SynapseKinetics::SingleExp { tau_s: 1e-3 },
    ] {
        for path in [ExecPath::Tape, ExecPath::Fused] {
            let ad = autodiff_grad(path, kin, dc0, a0, w0);
            let fd = fd_grad(path, kin, dc0, a0, w0);
            for (name, (a, f)) in ["DC", "A", "w"].iter().zip(ad.iter().zip(&fd)) {
                let e = rel_err(*a, *f, 1e-300);
                println!("{kin:?} {path:?} d/d{name}: autodiff {a:.10e} FD {f:.10e} rel {e:.2e}");
            }
            check_grad(&ad, &fd).unwrap_or_else(|e| panic!("{kin:?} {path:?}: {e}"));
        }
    }
}

/// Negative control: the checker above rejects wrong gradients fed to it — the true autodiff
/// gradient with one component 0.1 % off, and the exact gradient of a different function
/// (synaptic weight 1 % higher).
#[test]
fn gradient_check_negative_control() {
    let kin = SynapseKinetics::default();
    let (dc0, a0, w0) = X0;
    let path = ExecPath::Fused;
    let ad = autodiff_grad(path, kin, dc0, a0, w0);
    let fd = fd_grad(path, kin, dc0, a0, w0);
    check_grad(&ad, &fd).unwrap();
    for i in 0..ad.len() {
        let mut bad = ad.clone();
        bad[i] *= 1.001;
        assert!(
            check_grad(&bad, &fd).is_err(),
            "component {i} 0.1 % off passed"
        );
    }
    let other = autodiff_grad(path, kin, dc0, a0, 1.01 * w0);
    assert!(
        check_grad(&other, &fd).is_err(),
        "the gradient of another function passed: {other:?} vs {fd:?}"
    );
}

/// Fused == tape: forward conductance (bit-identical for 0/1 spikes, 1e-12 relative in rate mode)
/// and gradients w.r.t. DC and w (pathwise and rate), batch 2 with per-row weights.
#[test]
fn fused_matches_tape() {
    let ctx = Ctx::cpu().f64().autodiff();
    for mode in [
        GeneratorMode::Hard,
        GeneratorMode::Pathwise,
        GeneratorMode::Rate,
    ] {
        let mut res = Vec::new();
        for path in [ExecPath::Tape, ExecPath::Fused] {
            let dc = ctx.tensor(vec![150.0, 250.0], [2, 1]).require_grad();
            let w = ctx.tensor(vec![5e-8, 7e-8], [2, 1]).require_grad();
            let mut p = DriveParams::scalars(&ctx, 0.0, 40.0, 30.0, 0.2, 3.0);
            p.dc_hz = dc.clone();
            let c = rate_chain(p, w.clone(), mode, SynapseKinetics::default());
            let ro = c.run(&ctx, 2, DT, 600, path).unwrap();
            let g = ro.trace(SYN_CONDUCTANCE_S).unwrap();
            let wts: Vec<f64> = (0..600 * 2 * 5)
                .map(|k| ((k * 13) % 7) as f64 - 2.5)
                .collect();
            let loss = (g.clone() * ctx.tensor(wts, [600, 2, 5])).sum() * 1e9;
            let gr = loss.backward();
            let mut grads = to_vec_f64(w.grad(&gr).unwrap());
            if mode != GeneratorMode::Hard {
                grads.extend(to_vec_f64(dc.grad(&gr).unwrap()));
            }
            res.push((host(g), grads));
        }
        let (ft, gt) = &res[0];
        let (ff, gf) = &res[1];
        assert!(ft.iter().sum::<f64>() > 0.0);
        if mode == GeneratorMode::Rate {
            for (a, b) in ff.iter().zip(ft) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-9), "{a} vs {b}");
            }
        } else {
            assert_eq!(ff, ft, "{mode:?}: forward differs");
        }
        println!("{mode:?}: grads tape {gt:?} fused {gf:?}");
        for (a, b) in gf.iter().zip(gt) {
            assert!(rel_err(*a, *b, 1e-300) < 1e-9, "{mode:?}: {a} vs {b}");
        }
    }
}

/// Bad inputs → typed errors naming the field.
#[test]
fn bad_inputs() {
    let ctx = Ctx::cpu();
    let w = |v: f64| ctx.tensor(vec![v], [1, 1]);
    let field = |r: myodiff::Result<Synapse>| match r {
        Err(Error::InvalidParameter { field, .. }) => field,
        Err(e) => format!("other error: {e}"),
        Ok(_) => "ok".into(),
    };
    let cfg = |f: &dyn Fn(&mut SynapseConfig)| {
        let mut c = SynapseConfig {
            n_dd: 4,
            n_mn: 3,
            ..Default::default()
        };
        f(&mut c);
        c
    };
    assert_eq!(
        field(Synapse::new(
            cfg(&|c| c.rule = ConnectivityRule::Bernoulli { p: 1.5 }),
            w(1e-8)
        )),
        "connection_probability"
    );
    assert_eq!(
        field(Synapse::new(
            cfg(&|c| c.rule = ConnectivityRule::FixedOutDegree { p: f64::NAN }),
            w(1e-8)
        )),
        "connection_probability"
    );
    assert_eq!(field(Synapse::new(cfg(&|_| {}), w(-1e-8))), "weight_s[0]");
    assert_eq!(
        field(Synapse::new(cfg(&|_| {}), w(f64::INFINITY))),
        "weight_s[0]"
    );
    assert_eq!(field(Synapse::new(cfg(&|c| c.n_mn = 0), w(1e-8))), "n_mn");
    assert_eq!(field(Synapse::new(cfg(&|c| c.n_dd = 0), w(1e-8))), "n_dd");
    assert_eq!(
        field(Synapse::new(cfg(&|c| c.delay_s = -1.0), w(1e-8))),
        "delay_s"
    );
    assert_eq!(
        field(Synapse::new(
            cfg(&|c| c.kinetics = SynapseKinetics::SingleExp { tau_s: 0.0 }),
            w(1e-8)
        )),
        "tau_s"
    );
    assert_eq!(
        field(Synapse::new(
            cfg(&|c| c.kinetics = SynapseKinetics::Exp2Syn {
                tau_rise_s: 3e-4,
                tau_decay_s: 2e-4
            }),
            w(1e-8)
        )),
        "tau_rise_s"
    );
    assert!(matches!(
        Synapse::new(cfg(&|_| {}), ctx.tensor(vec![1e-8; 2], [1, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        ConnectivityMatrix::from_targets(3, vec![vec![3]]),
        Err(Error::InvalidParameter { .. })
    ));
    // dt far above the synaptic time constant (a units mistake) and batch mismatch of w.
    let run = |dt: f64, batch: usize, wt: Tensor<2>| {
        let mut sim = Simulation::new(ctx.clone(), batch, dt, 10).unwrap();
        sim.add_input(
            BufferSpec::new(DD_SPIKES, &[4], "spike/step"),
            ctx.zeros([10, batch, 4]),
        )
        .unwrap();
        sim.add_stage(Synapse::new(cfg(&|_| {}), wt).unwrap());
        sim.run().map(|_| ())
    };
    assert!(matches!(
        run(0.1, 1, w(1e-8)),
        Err(Error::UnstableTimeStep { .. })
    ));
    assert!(matches!(
        run(1e-4, 3, ctx.tensor(vec![1e-8; 2], [2, 1])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(run(1e-4, 3, w(1e-8)).is_ok());
}
