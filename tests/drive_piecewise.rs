//! Piecewise-linear drive stage: interpolation weights, tape == fused, exact gradient w.r.t. the
//! knot values (the profile is linear in them before the clip).

use myodiff::drive::rate::{DriveNoise, RateClip};
use myodiff::drive::{DRIVE_RATE_HZ, KnotTimes, PiecewiseLinearDrive};
use myodiff::kernel::{Ctx, ExecPath, Simulation, to_vec_f64};

const DT: f64 = 1e-3;
const T: usize = 500;

fn stage(ctx: &Ctx, values: Vec<f64>, sd: f64) -> PiecewiseLinearDrive {
    PiecewiseLinearDrive::new(
        KnotTimes::new(vec![0.05, 0.2, 0.3, 0.45]).unwrap(),
        ctx.tensor(values, [2, 4]),
        ctx.tensor(vec![sd], [1, 1]),
        DriveNoise {
            seed: 5,
            ..Default::default()
        },
        RateClip::Relu,
    )
}

fn rollout(ctx: &Ctx, path: ExecPath, values: Vec<f64>, sd: f64) -> Vec<f64> {
    let mut sim = Simulation::new(ctx.clone(), 2, DT, T).unwrap();
    sim.add_stage(stage(ctx, values, sd));
    sim.record(&[DRIVE_RATE_HZ]);
    to_vec_f64(sim.run_path(path).unwrap().trace(DRIVE_RATE_HZ).unwrap())
}

const V: [f64; 8] = [10.0, 30.0, 25.0, 5.0, 40.0, 0.0, 60.0, 20.0];

#[test]
fn profile_interpolates_knots_and_holds_outside() {
    let ctx = Ctx::cpu().f64();
    let r = rollout(&ctx, ExecPath::Tape, V.to_vec(), 0.0);
    // Row-major [T, 2, 1]: row 0 at step k is r[2k].
    let at = |k: usize, b: usize| r[2 * k + b];
    assert!(
        (at(0, 0) - 10.0).abs() < 1e-12,
        "flat before the first knot"
    );
    assert!((at(50, 0) - 10.0).abs() < 1e-12, "first knot");
    assert!((at(125, 0) - 20.0).abs() < 1e-9, "halfway 0.05 → 0.2 s");
    assert!(
        (at(250, 1) - 30.0).abs() < 1e-9,
        "row 1 halfway 0.2 → 0.3 s: (0 + 60)/2"
    );
    assert!((at(499, 0) - 5.0).abs() < 1e-12, "flat after the last knot");
    let knots = KnotTimes::new(vec![0.05, 0.2, 0.3, 0.45]).unwrap();
    let host = knots.eval(&V[..4], &[0.125]);
    assert!((host[0] - 20.0).abs() < 1e-12);
}

#[test]
fn fused_equals_tape_with_noise() {
    let ctx = Ctx::cpu().f64();
    let a = rollout(&ctx, ExecPath::Tape, V.to_vec(), 3.0);
    let b = rollout(&ctx, ExecPath::Fused, V.to_vec(), 3.0);
    let max = a
        .iter()
        .zip(&b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(max < 1e-9, "tape vs fused differ by {max}");
    let c = rollout(&ctx, ExecPath::Tape, V.to_vec(), 0.0);
    assert!(a != c, "noise must change the trace");
}

#[test]
fn gradient_wrt_knots_matches_central_differences() {
    let ctx = Ctx::cpu().f64().autodiff();
    let v = ctx.tensor(V.to_vec(), [2, 4]).require_grad();
    let s = PiecewiseLinearDrive::new(
        KnotTimes::new(vec![0.05, 0.2, 0.3, 0.45]).unwrap(),
        v.clone(),
        ctx.tensor(vec![3.0], [1, 1]),
        DriveNoise {
            seed: 5,
            ..Default::default()
        },
        RateClip::Relu,
    );
    // L = Σ_t r_t² over both rows.
    let r = s.trace(&ctx, 2, T, DT).unwrap();
    let loss = r.powi_scalar(2).sum();
    let g = to_vec_f64(v.grad(&loss.backward()).unwrap());
    let plain = Ctx::cpu().f64();
    let l_of = |vals: Vec<f64>| -> f64 {
        rollout(&plain, ExecPath::Fused, vals, 3.0)
            .iter()
            .map(|x| x * x)
            .sum()
    };
    for i in [0usize, 2, 5, 7] {
        let h = 1e-4;
        let (mut p, mut m) = (V.to_vec(), V.to_vec());
        p[i] += h;
        m[i] -= h;
        let fd = (l_of(p) - l_of(m)) / (2.0 * h);
        let rel = (g[i] - fd).abs() / fd.abs().max(1e-9);
        assert!(rel < 1e-6, "knot {i}: autodiff {} vs fd {fd}", g[i]);
    }
}
