//! The mean-field twin (`smooth_twin = meanfield`) against the spiking (hard) fast pool, and its
//! f64 gradient check (issue 9 item 4).
//!
//! Match: 100 motor neurons, 400 Poisson inputs, constant drives 60 and 100 Hz
//! (`dc + max(0, N(0,1))`), dt 0.1 and 0.5 ms, 2 s, second-half means averaged over seeds 1–2:
//! pool mean rate within 1 Hz and mean force within 5 % of the hard network. Negative control:
//! the sigmoid twin at gain 1 (the old smooth model without its fitted gain) fails the same check.
//!
//! Gradient: autodiff of (mean force + pool mean rate) over the second half w.r.t. the drive DC
//! (Hz) and the synaptic weight (S) against central differences, f64.

use myodiff::drive::{DriveParams, DriveRate, NoiseKind};
use myodiff::fit::smooth::{constant_drive_rate_force, gradients, run_network, smooth_config};
use myodiff::gradcheck::GradCheck;
use myodiff::kernel::{Ctx, to_vec_f64};
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig, SmoothTwin};

const DRIVES_HZ: [f64; 2] = [60.0, 100.0];
const SEEDS: [u64; 2] = [1, 2];

/// Per drive: (pool mean rate Hz, mean force N), second half, averaged over `SEEDS`.
fn observables(cfg: &NetworkConfig) -> Vec<(f64, f64)> {
    let mut acc = vec![(0.0, 0.0); DRIVES_HZ.len()];
    for seed in SEEDS {
        let cfg = NetworkConfig {
            seed,
            ..cfg.clone()
        };
        let obs = constant_drive_rate_force(&cfg, &DRIVES_HZ).unwrap();
        for (a, (r, f)) in acc.iter_mut().zip(obs) {
            a.0 += r / SEEDS.len() as f64;
            a.1 += f / SEEDS.len() as f64;
        }
    }
    acc
}

/// Worst |Δ rate| (Hz) and worst |Δ force| / force (fraction) of `twin` against the hard network.
fn mismatch(hard: &[(f64, f64)], twin: &[(f64, f64)]) -> (f64, f64) {
    hard.iter().zip(twin).fold((0.0, 0.0), |(dr, df), (h, t)| {
        assert!(
            h.1 > 0.0,
            "the hard pool must produce force at these drives"
        );
        (
            f64::max(dr, (t.0 - h.0).abs()),
            f64::max(df, ((t.1 - h.1) / h.1).abs()),
        )
    })
}

#[test]
fn meanfield_twin_matches_the_spiking_pool_without_a_gain() {
    for dt_s in [1e-4, 5e-4] {
        let base = NetworkConfig {
            n_mn: 100,
            n_dd: 400,
            dt_s,
            duration_s: 2.0,
            drive_noise: NoiseKind::Rectified,
            ..NetworkConfig::default()
        };
        let hard = observables(&base);
        let mf = observables(&NetworkConfig {
            smooth_twin: SmoothTwin::MeanField,
            ..smooth_config(&base)
        });
        let (dr, df) = mismatch(&hard, &mf);
        eprintln!(
            "dt {dt_s}: hard {hard:?} meanfield {mf:?}: |Δrate| {dr:.3} Hz, |Δforce| {df:.3}"
        );
        assert!(dr <= 1.0, "dt {dt_s}: pool rate off by {dr} Hz");
        assert!(df <= 0.05, "dt {dt_s}: force off by {:.1} %", 100.0 * df);
        // negative control: the old smooth twin without its fitted gain fails the same check
        let sig = observables(&smooth_config(&base));
        let (sr, sf) = mismatch(&hard, &sig);
        assert!(
            sr > 1.0 && sf > 0.05,
            "dt {dt_s}: the control (sigmoid twin, gain 1) should fail: {sr} Hz, {sf}"
        );
    }
}

#[test]
fn meanfield_twin_converges_as_dt_shrinks() {
    // The twin follows the spiking network's step grid only through the per-event charge
    // Σ k(n·dt)·dt and the generators' rate (1 − e^{−r·dt})/dt, both 1st-order in dt: the
    // differences between dt = 0.1, 0.05 and 0.025 ms must shrink (by ≈ 2×) and end small.
    let run = |dt_s: f64| {
        let cfg = NetworkConfig {
            n_mn: 100,
            n_dd: 400,
            dt_s,
            duration_s: 0.4,
            drive_noise: NoiseKind::Rectified,
            smooth_twin: SmoothTwin::MeanField,
            seed: 1,
            ..smooth_config(&NetworkConfig::default())
        };
        observables(&cfg)
    };
    let (a, b, c) = (run(1e-4), run(5e-5), run(2.5e-5));
    let (d1r, d1f) = mismatch(&b, &a);
    let (d2r, d2f) = mismatch(&c, &b);
    eprintln!("dt 1e-4 {a:?}, 5e-5 {b:?}, 2.5e-5 {c:?}: Δ {d1r} Hz {d1f}, then {d2r} Hz {d2f}");
    assert!(d2r < 0.7 * d1r && d2f < 0.7 * d1f, "not converging");
    assert!(d2r < 0.5 && d2f < 0.03, "{d2r} Hz, {d2f}");
}

/// Loss = mean force (N) + pool mean rate (Hz), second half, for DC `x[0]` (Hz) and weight
/// `x[1]` (S); with `grad`, also its autodiff gradient.
fn loss(x: &[f64], grad: bool) -> (f64, Vec<f64>) {
    let cfg = NetworkConfig {
        n_mn: 30,
        n_dd: 100,
        dt_s: 2e-4,
        duration_s: 0.3,
        drive_noise: NoiseKind::Rectified,
        smooth_twin: SmoothTwin::MeanField,
        ..smooth_config(&NetworkConfig::default())
    };
    let ctx = Ctx::cpu().f64();
    let ctx = if grad { ctx.autodiff() } else { ctx };
    let dc = ctx.tensor(vec![x[0]], [1, 1]);
    let w = ctx.tensor(vec![x[1]], [1, 1]);
    let (dc, w) = if grad {
        (dc.require_grad(), w.require_grad())
    } else {
        (dc, w)
    };
    let mut drive = DriveParams::constant(&ctx, 0.0);
    drive.dc_hz = dc.clone();
    let stage = DriveRate::new(drive, cfg.drive_noise_spec(), cfg.rate_clip);
    let (f, s) = run_network(&cfg, &ctx, 1, Box::new(stage), w.clone()).unwrap();
    let n_t = f.dims()[0];
    let h = n_t / 2;
    let secs = (n_t - h) as f64 * cfg.dt_s;
    let force = f.slice([h..n_t, 0..1, 0..1]).mean();
    let rate = s.slice([h..n_t, 0..1, 0..cfg.n_mn]).sum() * (1.0 / (cfg.n_mn as f64 * secs));
    let l = force + rate;
    let value = to_vec_f64(l.clone())[0];
    if !grad {
        return (value, vec![]);
    }
    let g = gradients(l, &[&dc, &w]);
    (value, vec![g[0][0], g[1][0]])
}

#[test]
fn meanfield_twin_gradient_matches_central_differences_f64() {
    let x = [70.0, 1.2 * MYOGEN_WEIGHT_S];
    let (l0, analytic) = loss(&x, true);
    assert!(l0 > 0.0, "the twin must fire at this drive: loss {l0}");
    let numeric: Vec<f64> = (0..2)
        .map(|i| {
            let h = 1e-5 * x[i];
            let mut p = x;
            p[i] += h;
            let mut m = x;
            m[i] -= h;
            (loss(&p, false).0 - loss(&m, false).0) / (2.0 * h)
        })
        .collect();
    // compare ∂L/∂ln x (dimensionally comparable components)
    let scaled = |g: &[f64]| -> Vec<f64> { g.iter().zip(&x).map(|(g, x)| g * x).collect() };
    let c = GradCheck::compare(scaled(&analytic), scaled(&numeric)).unwrap();
    eprintln!(
        "analytic {analytic:?} numeric {numeric:?} rel errs {:?}",
        c.rel_errs
    );
    assert!(analytic.iter().all(|g| *g != 0.0 && g.is_finite()));
    c.check(1e-4, 0.999_999).unwrap();
    // negative control: a 0.1 % error in either component fails
    for i in 0..2 {
        assert!(
            c.perturbed(i, 1.001)
                .unwrap()
                .check(1e-4, 0.999_999)
                .is_err()
        );
    }
}
