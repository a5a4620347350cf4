//! Drive rate r(t): trace == per-step values, clip modes, noise protocols, validation.

mod common_drive;

use common_drive::*;
use myodiff::Error;
use myodiff::drive::rate::{draw_noise, drive_rate_step, drive_rate_trace};
use myodiff::drive::{DRIVE_RATE_HZ, DriveNoise, DriveParams, DriveRate, NoiseKind, RateClip};
use myodiff::kernel::{Ctx, ExecPath, Simulation, scalar_f64, to_vec_f64};

const DT: f64 = 1e-4;

/// The whole-trace function equals the per-step function bit for bit and the analytic formula
/// (f64, 1e-12), with the clip at 0 active.
#[test]
fn trace_equals_steps_and_formula() {
    // f32: 1e-4 relative (float round-off of sin's argument over 1000 steps); f64: 1e-12.
    for (ctx, tol) in [(Ctx::cpu(), 1e-4), (Ctx::cpu().f64(), 1e-12)] {
        let p = DriveParams::scalars(&ctx, 5.0, 20.0, 20.0, 0.4, 1.5);
        let n_t = 1000;
        let xi = draw_noise(n_t, 2, 7, NoiseKind::Gaussian, false);
        let tr = to_vec_f64(drive_rate_trace(
            &ctx,
            &p,
            ctx.tensor(xi.clone(), [n_t, 2, 1]),
            DT,
            RateClip::Relu,
        ));
        let mut n_zero = 0;
        for k in 0..n_t {
            let step = to_vec_f64(drive_rate_step(
                &p,
                ctx.tensor(xi[2 * k..2 * k + 2].to_vec(), [2, 1]),
                k,
                DT,
                RateClip::Relu,
            ));
            for b in 0..2 {
                assert_eq!(step[b], tr[2 * k + b], "step {k}");
                let t = k as f64 * DT;
                let f = (5.0
                    + 20.0 * (2.0 * std::f64::consts::PI * 20.0 * t + 0.4).sin()
                    + 1.5 * xi[2 * k + b])
                    .max(0.0);
                assert!(
                    (tr[2 * k + b] - f).abs() <= tol * f.max(1.0),
                    "{:?}: {} vs {f} (tol {tol:e})",
                    ctx.precision,
                    tr[2 * k + b]
                );
                n_zero += (f == 0.0) as usize;
            }
        }
        assert!(n_zero > 100, "the clip must be exercised");
    }
}

/// The DriveRate stage gives the same trace on the tape and fused paths, and as an input trace.
#[test]
fn stage_tape_fused_input_agree() {
    let ctx = Ctx::cpu();
    let stage = || {
        DriveRate::new(
            DriveParams::watanabe_oscillating(&ctx, 30.0),
            DriveNoise::default(),
            RateClip::Relu,
        )
    };
    let mut out = Vec::new();
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let mut sim = Simulation::new(ctx.clone(), 2, DT, 500).unwrap();
        sim.add_stage(stage());
        sim.record(&[DRIVE_RATE_HZ]);
        out.push(host(
            sim.run_path(path).unwrap().trace(DRIVE_RATE_HZ).unwrap(),
        ));
    }
    out.push(host(stage().trace(&ctx, 2, 500, DT).unwrap()));
    assert_eq!(out[0], out[1]);
    assert_eq!(out[0], out[2]);
    // shared noise: both batch rows equal
    assert!(out[0].chunks(2).all(|c| c[0] == c[1]));
}

/// Clip gradients: Relu passes 1 where r > 0 and 0 where r < 0; straight-through passes 1
/// everywhere; softplus gives its logistic slope. Forward of relu and straight-through agree.
#[test]
fn clip_modes() {
    let ctx = Ctx::cpu().f64().autodiff();
    for (clip, g_neg, g_pos) in [
        (RateClip::Relu, 0.0, 1.0),
        (RateClip::StraightThrough, 1.0, 1.0),
        (
            RateClip::Softplus {
                sharpness_per_hz: 0.5,
            },
            1.0 / (1.0 + (1.5f64).exp()),
            1.0 / (1.0 + (-1.5f64).exp()),
        ),
    ] {
        let r = ctx.tensor(vec![-3.0, 3.0], [2, 1]).require_grad();
        let y = clip.apply(r.clone());
        let v = to_vec_f64(y.clone());
        match clip {
            RateClip::Softplus { .. } => assert!(
                v[0] > 0.0 && (v[1] - 3.0 - (1.0 + (-1.5f64).exp()).ln() / 0.5).abs() < 1e-12
            ),
            _ => assert_eq!(v, vec![0.0, 3.0]),
        }
        let g = to_vec_f64(r.grad(&y.sum().backward()).unwrap());
        assert!(
            (g[0] - g_neg).abs() < 1e-12 && (g[1] - g_pos).abs() < 1e-12,
            "{clip:?}: {g:?}"
        );
    }
    assert!(
        RateClip::Softplus {
            sharpness_per_hz: 0.0
        }
        .validate()
        .is_err()
    );
}

/// Noise protocols: Gaussian ξ has mean 0 / sd 1; rectified ξ = max(0, N) has mean 1/√(2π).
#[test]
fn noise_protocols() {
    let n = 200_000;
    let g = draw_noise(n, 1, 1, NoiseKind::Gaussian, true);
    let m = g.iter().sum::<f64>() / n as f64;
    let sd = (g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64).sqrt();
    assert!(m.abs() < 0.01 && (sd - 1.0).abs() < 0.01);
    let r = draw_noise(n, 1, 1, NoiseKind::Rectified, true);
    let mr = r.iter().sum::<f64>() / n as f64;
    assert!(r.iter().all(|&x| x >= 0.0));
    assert!(
        (mr - 1.0 / (2.0 * std::f64::consts::PI).sqrt()).abs() < 0.005,
        "{mr}"
    );
    // independent rows when not shared
    let u = draw_noise(10, 2, 1, NoiseKind::Gaussian, false);
    assert!(u.chunks(2).any(|c| c[0] != c[1]));
}

/// d(mean r)/d(DC) = fraction of unclipped steps (relu), checked against central FD (f64).
#[test]
fn rate_gradient_fd() {
    let ctx = Ctx::cpu().f64().autodiff();
    let p0 = DriveParams::scalars(&ctx, 4.0, 10.0, 20.0, 0.0, 1.0);
    let xi = ctx.tensor(
        draw_noise(2000, 1, 3, NoiseKind::Gaussian, true),
        [2000, 1, 1],
    );
    let f = |amp: f64| {
        let c = Ctx::cpu().f64();
        let mut p = DriveParams::scalars(&c, 4.0, amp, 20.0, 0.0, 1.0);
        p.dc_hz = c.tensor(vec![4.0], [1, 1]);
        let xi = c.tensor(
            draw_noise(2000, 1, 3, NoiseKind::Gaussian, true),
            [2000, 1, 1],
        );
        scalar_f64(
            drive_rate_trace(
                &c,
                &p,
                xi,
                DT,
                RateClip::Softplus {
                    sharpness_per_hz: 0.3,
                },
            )
            .mean(),
        )
    };
    let mut p = p0;
    let amp = ctx.tensor(vec![10.0], [1, 1]).require_grad();
    p.amp_hz = amp.clone();
    let y = drive_rate_trace(
        &ctx,
        &p,
        xi,
        DT,
        RateClip::Softplus {
            sharpness_per_hz: 0.3,
        },
    )
    .mean();
    let ad = scalar_f64(amp.grad(&y.backward()).unwrap());
    let fd = central_fd(f, 10.0, 1e-4);
    assert!(rel_err(ad, fd, 1e-300) < 1e-6, "{ad} vs {fd}");
}

/// Invalid parameters → typed errors naming the field.
#[test]
fn bad_params() {
    let ctx = Ctx::cpu();
    let p = DriveParams::scalars(&ctx, f64::NAN, 0.0, 0.0, 0.0, 0.0);
    assert!(
        matches!(p.validate(1), Err(Error::InvalidParameter { field, .. }) if field == "dc_hz[0]")
    );
    let p = DriveParams::scalars(&ctx, 1.0, 0.0, -2.0, 0.0, 0.0);
    assert!(
        matches!(p.validate(1), Err(Error::InvalidParameter { field, .. }) if field == "freq_hz[0]")
    );
    let p = DriveParams::scalars(&ctx, 1.0, 0.0, 2.0, 0.0, -1.0);
    assert!(
        matches!(p.validate(1), Err(Error::InvalidParameter { field, .. }) if field == "noise_sd_hz[0]")
    );
    let mut p = DriveParams::constant(&ctx, 1.0);
    p.dc_hz = ctx.tensor(vec![1.0, 2.0, 3.0], [3, 1]);
    assert!(matches!(p.validate(2), Err(Error::ShapeMismatch { .. })));
    let mut sim = Simulation::new(ctx.clone(), 2, DT, 5).unwrap();
    sim.add_stage(DriveRate::new(p, DriveNoise::default(), RateClip::Relu));
    assert!(matches!(sim.run(), Err(Error::ShapeMismatch { .. })));
}
