//! Descending-drive generators: statistics, modes, gradients, fused == tape, bad input.

mod common_drive;

use common_drive::*;
use myodiff::Error;
use myodiff::drive::{
    DD_SPIKES, DRIVE_RATE_HZ, DriveNoise, DriveParams, DriveRate, GeneratorMode, InputPopulation,
    InputPopulationConfig, NoiseKind, RateClip, SpikeProcess,
};
use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation, scalar_f64, to_vec_f64};

const DT: f64 = 1e-4;

fn chain(
    ctx: &Ctx,
    dc: f64,
    n_dd: usize,
    process: SpikeProcess,
    mode: GeneratorMode,
    seed: u64,
) -> Chain {
    Chain {
        params: DriveParams::scalars(ctx, dc, 0.0, 0.0, 0.0, 0.0),
        noise: DriveNoise::default(),
        clip: RateClip::Relu,
        gen_cfg: InputPopulationConfig {
            n_dd,
            process,
            mode,
            seed,
            ..Default::default()
        },
        syn: None,
    }
}

/// Mean rate within 5 standard errors of the exact discrete-time Poisson rate
/// (1 − e^{−r dt})/dt, and ISI CV ≈ 1 (± 0.03), for 10, 30 and 100 Hz.
#[test]
fn poisson_rate_and_cv() {
    let ctx = Ctx::cpu();
    let (n_dd, n_t) = (400, 50_000);
    for (k, &r) in [10.0, 30.0, 100.0].iter().enumerate() {
        let ro = chain(
            &ctx,
            r,
            n_dd,
            SpikeProcess::Poisson,
            GeneratorMode::Hard,
            11 + k as u64,
        )
        .run(&ctx, 1, DT, n_t, ExecPath::Fused)
        .unwrap();
        let s = host(ro.trace(DD_SPIKES).unwrap());
        let count: f64 = s.iter().sum();
        let t_total = n_t as f64 * DT;
        let expected_rate = (1.0 - (-r * DT).exp()) / DT;
        let expected = expected_rate * t_total * n_dd as f64;
        let z = (count - expected) / expected.sqrt();
        let measured = count / (t_total * n_dd as f64);
        let cv = pooled_cv(&isis(&s, n_t, n_dd));
        println!(
            "r = {r} Hz: measured {measured:.3} Hz (expected {expected_rate:.3}), z = {z:.2}, CV = {cv:.4}"
        );
        assert!(
            z.abs() < 5.0,
            "rate {r}: count {count} vs expected {expected} (z = {z})"
        );
        assert!((cv - 1.0).abs() < 0.03, "rate {r}: CV {cv}");
        assert!(s.iter().all(|&v| v == 0.0 || v == 1.0));
    }
}

/// Gamma(k,1)/k thresholds: ISI CV ≈ 1/√k (± 0.03) for k = 3 and 9; mean rate ≈ r within 3 %.
#[test]
fn gamma_cv() {
    let ctx = Ctx::cpu();
    let (n_dd, n_t, r) = (400, 50_000, 30.0);
    for k in [3.0, 9.0] {
        let ro = chain(
            &ctx,
            r,
            n_dd,
            SpikeProcess::Gamma { shape_k: k },
            GeneratorMode::Hard,
            5,
        )
        .run(&ctx, 1, DT, n_t, ExecPath::Fused)
        .unwrap();
        let s = host(ro.trace(DD_SPIKES).unwrap());
        let rate = s.iter().sum::<f64>() / (n_t as f64 * DT * n_dd as f64);
        let cv = pooled_cv(&isis(&s, n_t, n_dd));
        println!(
            "gamma k = {k}: rate {rate:.3} Hz, CV {cv:.4} (1/sqrt(k) = {:.4})",
            1.0 / f64::sqrt(k)
        );
        assert!((cv - 1.0 / k.sqrt()).abs() < 0.03, "k {k}: CV {cv}");
        assert!(rel_err(rate, r, 1.0) < 0.03, "k {k}: rate {rate}");
    }
}

/// Against MyoGen (fixture 3, `n_dd_spikes`): 400 Poisson DD, drive DC + max(0, N(0,1)), 2 s at
/// 0.1 ms (20001 steps), DC = 20…60 Hz. Our count (one seed) must match the mean of MyoGen's 3
/// seeds within 1.5 % (≈ 4 combined standard errors at DC 20).
#[test]
fn dd_spike_counts_match_myogen_fixture() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pool_stats_summary.csv"
    ))
    .expect("fixture");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_dc, c_dd) = (col("dc_hz"), col("n_dd_spikes"));
    let mut by_dc: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        by_dc
            .entry(f[c_dc].parse::<f64>().unwrap() as i64)
            .or_default()
            .push(f[c_dd].parse().unwrap());
    }
    let ctx = Ctx::cpu();
    for (dc, counts) in by_dc {
        let myogen = counts.iter().sum::<f64>() / counts.len() as f64;
        let c = Chain {
            params: DriveParams::constant(&ctx, dc as f64),
            noise: DriveNoise {
                seed: 42,
                kind: NoiseKind::Rectified,
                shared_across_batch: true,
            },
            clip: RateClip::Relu,
            gen_cfg: InputPopulationConfig {
                n_dd: 400,
                seed: 42,
                ..Default::default()
            },
            syn: None,
        };
        let ro = c.run(&ctx, 1, DT, 20_001, ExecPath::Fused).unwrap();
        let ours: f64 = host(ro.trace(DD_SPIKES).unwrap()).iter().sum();
        println!("DC {dc}: ours {ours}, MyoGen mean {myogen:.1} ({counts:?})");
        assert!(
            rel_err(ours, myogen, 1.0) < 0.015,
            "DC {dc}: {ours} vs {myogen}"
        );
    }
}

/// Hard and pathwise forward outputs are bit-identical (tape and fused), and the fused scan
/// reproduces the tape's spikes exactly (f32 and f64).
#[test]
fn hard_pathwise_tape_fused_identical() {
    for ctx in [Ctx::cpu(), Ctx::cpu().f64().autodiff()] {
        let mut outs = Vec::new();
        for mode in [GeneratorMode::Hard, GeneratorMode::Pathwise] {
            for path in [ExecPath::Tape, ExecPath::Fused] {
                let c = Chain {
                    params: DriveParams::scalars(&ctx, 60.0, 40.0, 25.0, 0.3, 5.0),
                    noise: DriveNoise::default(),
                    clip: RateClip::Relu,
                    gen_cfg: InputPopulationConfig {
                        n_dd: 16,
                        mode,
                        seed: 3,
                        ..Default::default()
                    },
                    syn: None,
                };
                let ro = c.run(&ctx, 3, DT, 3000, path).unwrap();
                outs.push((
                    host(ro.trace(DD_SPIKES).unwrap()),
                    host(ro.trace(DRIVE_RATE_HZ).unwrap()),
                ));
            }
        }
        let n_spk: f64 = outs[0].0.iter().sum();
        assert!(n_spk > 50.0, "too few spikes to be a test: {n_spk}");
        for o in &outs[1..] {
            assert_eq!(o.0, outs[0].0, "spikes differ");
            assert_eq!(o.1, outs[0].1, "rates differ");
        }
    }
}

/// Rate mode: gradient of the total count w.r.t. a constant rate is n_steps·n_dd·dt (tape and fused).
#[test]
fn rate_mode_count_gradient_exact() {
    let ctx = Ctx::cpu().f64().autodiff();
    let (n_dd, n_t, batch) = (7, 500, 2);
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let dc = ctx.tensor(vec![30.0, 45.0], [batch, 1]).require_grad();
        let mut p = DriveParams::scalars(&ctx, 0.0, 0.0, 0.0, 0.0, 0.0);
        p.dc_hz = dc.clone();
        let c = Chain {
            params: p,
            noise: DriveNoise::default(),
            clip: RateClip::Relu,
            gen_cfg: InputPopulationConfig {
                n_dd,
                mode: GeneratorMode::Rate,
                ..Default::default()
            },
            syn: None,
        };
        let ro = c.run(&ctx, batch, DT, n_t, path).unwrap();
        let total = ro.trace(DD_SPIKES).unwrap().sum();
        let g = to_vec_f64(dc.grad(&total.backward()).unwrap());
        let expected = n_t as f64 * n_dd as f64 * DT;
        for v in g {
            assert!(
                rel_err(v, expected, 1e-300) < 1e-12,
                "{path:?}: {v} vs {expected}"
            );
        }
    }
}

/// Expected mode (used by `rollout --grad`): the forward is bit-identical to Hard on both paths
/// (f32 and f64 autodiff), so only the backward differs.
#[test]
fn expected_mode_forward_is_bit_identical_to_hard() {
    for ctx in [Ctx::cpu(), Ctx::cpu().f64().autodiff()] {
        let run = |mode: GeneratorMode, path: ExecPath| {
            let c = Chain {
                params: DriveParams::scalars(&ctx, 60.0, 40.0, 25.0, 0.3, 5.0),
                noise: DriveNoise::default(),
                clip: RateClip::Relu,
                gen_cfg: InputPopulationConfig {
                    n_dd: 16,
                    mode,
                    seed: 5,
                    ..Default::default()
                },
                syn: None,
            };
            let ro = c.run(&ctx, 3, DT, 3000, path).unwrap();
            (
                host(ro.trace(DD_SPIKES).unwrap()),
                host(ro.trace(DRIVE_RATE_HZ).unwrap()),
            )
        };
        let hard = run(GeneratorMode::Hard, ExecPath::Tape);
        let n_spk: f64 = hard.0.iter().sum();
        assert!(n_spk > 50.0, "too few spikes to be a test: {n_spk}");
        assert!(hard.0.iter().all(|v| *v == 0.0 || *v == 1.0));
        for path in [ExecPath::Tape, ExecPath::Fused] {
            let e = run(GeneratorMode::Expected, path);
            assert_eq!(
                e.0, hard.0,
                "{path:?}: expected-mode spikes differ from hard"
            );
            assert_eq!(e.1, hard.1, "{path:?}: rates differ");
        }
    }
}

/// Expected mode: the gradient of the total count w.r.t. a constant positive rate is the
/// derivative of the expected count, n_steps·n_dd·dt, exactly (tape and fused), although the
/// forward counts are the hard ones.
#[test]
fn expected_mode_count_gradient_exact() {
    let ctx = Ctx::cpu().f64().autodiff();
    let (n_dd, n_t, batch) = (7, 500, 2);
    let expected = n_t as f64 * n_dd as f64 * DT;
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let dc = ctx.tensor(vec![30.0, 45.0], [batch, 1]).require_grad();
        let mut p = DriveParams::scalars(&ctx, 0.0, 0.0, 0.0, 0.0, 0.0);
        p.dc_hz = dc.clone();
        let c = Chain {
            params: p,
            noise: DriveNoise::default(),
            clip: RateClip::Relu,
            gen_cfg: InputPopulationConfig {
                n_dd,
                mode: GeneratorMode::Expected,
                seed: 2,
                ..Default::default()
            },
            syn: None,
        };
        let ro = c.run(&ctx, batch, DT, n_t, path).unwrap();
        let spikes = ro.trace(DD_SPIKES).unwrap();
        let counts = host(spikes.clone());
        assert!(
            counts.iter().all(|v| *v == 0.0 || *v == 1.0),
            "hard forward"
        );
        assert!(counts.iter().sum::<f64>() > 10.0, "spikes to count");
        let g = to_vec_f64(dc.grad(&spikes.sum().backward()).unwrap());
        assert_eq!(g.len(), batch);
        for v in g {
            assert!(
                rel_err(v, expected, 1e-300) < 1e-12,
                "{path:?}: {v} vs n_t·n_dd·dt = {expected}"
            );
        }
    }
}

/// Pathwise: the fused adjoint equals the tape's autodiff gradient (f64), for a loss that weights
/// every spike differently, w.r.t. DC and the oscillation amplitude.
#[test]
fn pathwise_fused_gradient_matches_tape() {
    let ctx = Ctx::cpu().f64().autodiff();
    let (n_dd, n_t, batch) = (5, 800, 2);
    let mut grads = Vec::new();
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let dc = ctx.tensor(vec![80.0, 120.0], [batch, 1]).require_grad();
        let amp = ctx.tensor(vec![30.0], [1, 1]).require_grad();
        let mut p = DriveParams::scalars(&ctx, 0.0, 0.0, 15.0, 0.1, 2.0);
        p.dc_hz = dc.clone();
        p.amp_hz = amp.clone();
        let c = Chain {
            params: p,
            noise: DriveNoise::default(),
            clip: RateClip::Relu,
            gen_cfg: InputPopulationConfig {
                n_dd,
                mode: GeneratorMode::Pathwise,
                seed: 9,
                ..Default::default()
            },
            syn: None,
        };
        let ro = c.run(&ctx, batch, DT, n_t, path).unwrap();
        let wts: Vec<f64> = (0..n_t * batch * n_dd)
            .map(|k| ((k * 37) % 11) as f64 - 4.0)
            .collect();
        let wts = ctx.tensor(wts, [n_t, batch, n_dd]);
        let loss = (ro.trace(DD_SPIKES).unwrap() * wts).sum();
        let g = loss.backward();
        let mut v = to_vec_f64(dc.grad(&g).unwrap());
        v.extend(to_vec_f64(amp.grad(&g).unwrap()));
        grads.push(v);
    }
    println!("tape {:?}\nfused {:?}", grads[0], grads[1]);
    assert!(
        grads[0].iter().any(|v| v.abs() > 1e-6),
        "zero gradient is no test"
    );
    for (a, b) in grads[0].iter().zip(&grads[1]) {
        assert!(rel_err(*b, *a, 1e-9) < 1e-9, "{b} vs {a}");
    }
}

/// Hard mode has no gradient path to the rate.
#[test]
fn hard_mode_has_no_gradient() {
    let ctx = Ctx::cpu().f64().autodiff();
    let dc = ctx.tensor(vec![50.0], [1, 1]).require_grad();
    let mut p = DriveParams::scalars(&ctx, 0.0, 0.0, 0.0, 0.0, 0.0);
    p.dc_hz = dc.clone();
    let c = Chain {
        params: p,
        noise: DriveNoise::default(),
        clip: RateClip::Relu,
        gen_cfg: InputPopulationConfig {
            n_dd: 4,
            ..Default::default()
        },
        syn: None,
    };
    let ro = c.run(&ctx, 1, DT, 200, ExecPath::Tape).unwrap();
    let loss = ro.trace(DD_SPIKES).unwrap().sum() + ro.trace(DRIVE_RATE_HZ).unwrap().sum() * 0.0;
    let g = dc.grad(&loss.backward()).map(scalar_f64).unwrap_or(0.0);
    assert_eq!(g, 0.0);
}

fn run_with_rate(
    rate: Vec<f64>,
    n_t: usize,
    cfg: InputPopulationConfig,
    path: ExecPath,
) -> myodiff::Result<Vec<f64>> {
    let ctx = Ctx::cpu();
    let mut sim = Simulation::new(ctx.clone(), 1, DT, n_t)?;
    sim.add_input(DriveRate::spec(), ctx.tensor(rate, [n_t, 1, 1]))?;
    sim.add_stage(InputPopulation::new(cfg)?);
    sim.record(&[DD_SPIKES]);
    let ro = sim.run_path(path)?;
    Ok(host(ro.trace(DD_SPIKES)?))
}

/// Negative rates give no spikes (and do not drain the accumulator); NaN rates are a typed error
/// naming `drive_rate_hz` and the step; n_dd = 0, shape_k ≤ 0 and an exhausted threshold
/// sequence (max_rate_hz too low) are typed errors.
#[test]
fn bad_inputs() {
    let cfg = InputPopulationConfig {
        n_dd: 3,
        ..Default::default()
    };
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let neg = run_with_rate(vec![-500.0; 300], 300, cfg.clone(), path).unwrap();
        assert!(neg.iter().all(|&v| v == 0.0));
        for mode in [GeneratorMode::Hard, GeneratorMode::Rate] {
            let mut rate = vec![20.0; 100];
            rate[37] = f64::NAN;
            let c = InputPopulationConfig {
                mode,
                ..cfg.clone()
            };
            match run_with_rate(rate, 100, c, path) {
                Err(Error::NonFinite { buffer, step, .. }) => {
                    assert_eq!(buffer, DRIVE_RATE_HZ);
                    assert_eq!(step, 37);
                }
                other => panic!("expected NonFinite, got {other:?}"),
            }
        }
        let low = InputPopulationConfig {
            max_rate_hz: 1.0,
            ..cfg.clone()
        };
        match run_with_rate(vec![3000.0; 400], 400, low, path) {
            Err(Error::InvalidParameter { field, .. }) => assert_eq!(field, "max_rate_hz"),
            other => panic!("expected max_rate_hz error, got {other:?}"),
        }
    }
    // A negative stretch does not drain the accumulator: spikes resume at once afterwards.
    let mut rate = vec![-1e6; 100];
    rate.extend(vec![1e4; 20]);
    let s = run_with_rate(rate, 120, cfg.clone(), ExecPath::Tape).unwrap();
    assert!(s[100 * 3..].iter().sum::<f64>() > 0.0);

    let zero = InputPopulationConfig {
        n_dd: 0,
        ..cfg.clone()
    };
    assert!(
        matches!(InputPopulation::new(zero), Err(Error::InvalidParameter { field, .. }) if field == "n_dd")
    );
    let bad_k = InputPopulationConfig {
        process: SpikeProcess::Gamma { shape_k: -1.0 },
        ..cfg.clone()
    };
    assert!(
        matches!(InputPopulation::new(bad_k), Err(Error::InvalidParameter { field, .. }) if field == "shape_k")
    );
    assert!("banana".parse::<GeneratorMode>().is_err());
    // wrong input width
    let ctx = Ctx::cpu();
    let mut sim = Simulation::new(ctx.clone(), 1, DT, 10).unwrap();
    let r = sim.add_input(
        BufferSpec::new(DRIVE_RATE_HZ, &[1], "Hz"),
        ctx.zeros::<3>([10, 1, 2]),
    );
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })));
}
