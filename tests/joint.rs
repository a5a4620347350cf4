//! Joint dynamics (MODEL.md §5.3) against MyoGen 0.12 `JointDynamics` (fixture
//! `tests/fixtures/afferents/joint_torque_step.csv`, README §4), bad input, and an f64 gradient
//! check of d(angle at t)/d(stiffness, damping).

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::gradcheck::{GradCheck, central_differences};
use myodiff::kernel::{Ctx, scalar_f64, to_vec_f64};
use myodiff::muscle::joint::{JointCoeffs, JointParams, JointState, joint_step};

const FIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/afferents/joint_torque_step.csv"
);
const DT_S: f64 = 2.5e-5;

#[test]
fn torque_step_matches_myogen_tier1() {
    let text = std::fs::read_to_string(FIX).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let ctx = Ctx::cpu().f64();
    // both cases as two batch rows: ex11 (I 1e-3, B 2e-3, K 0, 1e-3 N m) and spring (1e-3, 0.01, 0.1, 5e-3 N m)
    let k = JointCoeffs {
        inertia: ctx.tensor(vec![1e-3, 1e-3], [2, 1]),
        damping: ctx.tensor(vec![2e-3, 1e-2], [2, 1]),
        stiffness: ctx.tensor(vec![0.0, 0.1], [2, 1]),
    };
    for p in [
        JointParams {
            inertia_kg_m2: 1e-3,
            damping_nm_s_per_rad: 2e-3,
            stiffness_nm_per_rad: 0.0,
        },
        JointParams {
            inertia_kg_m2: 1e-3,
            damping_nm_s_per_rad: 1e-2,
            stiffness_nm_per_rad: 0.1,
        },
    ] {
        p.check_dt(DT_S).unwrap();
    }
    let mut st = JointState {
        angle_rad: ctx.zeros([2, 1]),
        velocity_rad_s: ctx.zeros([2, 1]),
    };
    let n = rows.last().unwrap()[0] as usize + 1;
    let zero = ctx.zeros([2, 1]);
    let on = ctx.tensor(vec![1e-3, 5e-3], [2, 1]);
    let mut ang = Vec::with_capacity(n);
    for kk in 0..n {
        st = joint_step(
            &k,
            &st,
            if kk < 4000 { zero.clone() } else { on.clone() },
            DT_S,
        );
        let a = to_vec_f64(st.angle_rad.clone());
        let v = to_vec_f64(st.velocity_rad_s.clone());
        ang.push([
            a[0].to_degrees(),
            a[1].to_degrees(),
            v[0].to_degrees(),
            v[1].to_degrees(),
        ]);
    }
    let mut worst = 0.0f64;
    for r in &rows {
        let kk = r[0] as usize;
        for (j, name) in [
            "ex11_angle_deg",
            "spring_angle_deg",
            "ex11_velocity_deg_per_s",
            "spring_velocity_deg_per_s",
        ]
        .iter()
        .enumerate()
        {
            let want = r[col(name)];
            // tier 1 (README §8: joint 1e-10 relative; 12-digit CSV), MyoGen returns degrees
            let d = (ang[kk][j] - want).abs();
            worst = worst.max(d / (want.abs() + 1e-12));
            assert!(
                d <= 1e-10 * want.abs() + 1e-11,
                "{name} step {kk}: {} vs {want}",
                ang[kk][j]
            );
        }
    }
    let (pk, pv) = ang
        .iter()
        .enumerate()
        .fold((0, 0.0), |m, (i, a)| if a[1] > m.1 { (i, a[1]) } else { m });
    let ss = 0.05f64.to_degrees();
    let over = (pv - ss) / ss;
    eprintln!(
        "joint: max rel err {worst:.2e}; spring peak {pv:.6} deg at step {pk}, overshoot {over:.6}"
    );
    assert_eq!(pk, 18508);
    assert!((over - 0.16300889193781173).abs() < 1e-9);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let ok = JointParams {
        inertia_kg_m2: 1e-3,
        damping_nm_s_per_rad: 1e-2,
        stiffness_nm_per_rad: 0.1,
    };
    for (p, field) in [
        (
            JointParams {
                inertia_kg_m2: 0.0,
                ..ok
            },
            "joint.inertia_kg_m2",
        ),
        (
            JointParams {
                damping_nm_s_per_rad: f64::NAN,
                ..ok
            },
            "joint.damping_nm_s_per_rad",
        ),
        (
            JointParams {
                stiffness_nm_per_rad: -1.0,
                ..ok
            },
            "joint.stiffness_nm_per_rad",
        ),
    ] {
        let e = p.validate().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParameter { field: f, .. } if f == field),
            "{e}"
        );
    }
    for dt in [0.0, f64::NAN, 0.25, 0.2] {
        assert!(
            matches!(ok.check_dt(dt).unwrap_err(), Error::UnstableTimeStep { .. }),
            "dt {dt}"
        );
    }
    ok.check_dt(1e-3).unwrap();
}

/// Angle (rad) after 300 steps of 1 ms under a 5e-3 N m torque step, for stiffness `k`, damping `b`.
fn angle_at_t(ctx: &Ctx, k: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let c = JointCoeffs {
        inertia: ctx.full([1, 1], 1e-3),
        damping: b,
        stiffness: k,
    };
    let mut st = JointState {
        angle_rad: ctx.zeros([1, 1]),
        velocity_rad_s: ctx.zeros([1, 1]),
    };
    let tau = ctx.full([1, 1], 5e-3);
    for _ in 0..300 {
        st = joint_step(&c, &st, tau.clone(), 1e-3);
    }
    st.angle_rad.reshape([1])
}

#[test]
fn grad_angle_wrt_stiffness_and_damping() {
    let x0 = [0.1, 0.01];
    let ad = {
        let ctx = Ctx::cpu().f64().autodiff();
        let k = ctx.full([1, 1], x0[0]).require_grad();
        let b = ctx.full([1, 1], x0[1]).require_grad();
        let g = angle_at_t(&ctx, k.clone(), b.clone()).backward();
        vec![
            scalar_f64(k.grad(&g).unwrap()),
            scalar_f64(b.grad(&g).unwrap()),
        ]
    };
    let ctx = Ctx::cpu().f64();
    let mut f = |x: &[f64]| {
        Ok(scalar_f64(angle_at_t(
            &ctx,
            ctx.full([1, 1], x[0]),
            ctx.full([1, 1], x[1]),
        )))
    };
    let num = central_differences(&mut f, &x0, &[1e-7, 1e-8]).unwrap();
    let c = GradCheck::compare(ad, num).unwrap();
    eprintln!(
        "d theta(0.3 s)/d [K, B]: analytic {:?}, numeric {:?}, rel errs {:?}",
        c.analytic, c.numeric, c.rel_errs
    );
    // f64, O(h²) central differences: per-component relative tolerance 1e-6
    c.check(1e-6, 0.999_999_9).unwrap();
    assert!(c.analytic.iter().all(|g| g.abs() > 1e-4));
    // negative control: 0.1 % error in dθ/dK must fail
    assert!(
        c.perturbed(0, 1.001)
            .unwrap()
            .check(1e-6, 0.999_999_9)
            .is_err()
    );
}
