//! Bad input to the LIF pool → typed errors naming the field (both execution paths).

mod lif_support;

use lif_support::*;
use myodiff::Error;
use myodiff::kernel::{Ctx, ExecPath};
use myodiff::neuron::lif::{LifConfig, LifParams, LifUnitValues};

const PATHS: [ExecPath; 2] = [ExecPath::Tape, ExecPath::Fused];

fn run(x: Vec<f64>, t: usize, dt_s: f64, path: ExecPath) -> myodiff::Result<()> {
    let ctx = Ctx::cpu();
    let n = 3;
    let params = LifParams::calibrated(&ctx, &rts(n))?;
    run_pool(
        &ctx,
        params,
        LifConfig::default(),
        ctx.tensor(x, [t, 1, n]),
        dt_s,
        path,
    )
    .map(|_| ())
}

#[test]
fn too_large_dt_is_an_unstable_time_step() {
    for path in PATHS {
        // τ_m of the largest unit is ≈ 9.4 ms
        let e = run(conductance_values(10, 1, 3, 1), 10, 0.02, path).unwrap_err();
        assert!(matches!(e, Error::UnstableTimeStep { .. }), "{path:?}: {e}");
    }
}

#[test]
fn too_large_conductance_for_dt_is_an_unstable_time_step() {
    for path in PATHS {
        let mut x = conductance_values(50, 1, 3, 1);
        x[20 * 3 + 1] = 1e-2; // 10 mS: dt·(1 + R·g)/τ_m ≫ 1
        let e = run(x, 50, 1e-4, path).unwrap_err();
        match e {
            Error::UnstableTimeStep { reason, .. } => assert!(
                reason.contains("step 20") && reason.contains("unit 1"),
                "{reason}"
            ),
            other => panic!("{path:?}: {other}"),
        }
    }
}

#[test]
fn nan_input_is_a_typed_error_naming_step_and_unit() {
    for path in PATHS {
        let mut x = conductance_values(50, 1, 3, 1);
        x[7 * 3 + 2] = f64::NAN;
        let e = run(x, 50, 1e-4, path).unwrap_err();
        match e {
            Error::InvalidParameter { field, .. } => {
                assert!(
                    field.contains("syn_conductance_s")
                        && field.contains("step 7")
                        && field.contains("unit 2"),
                    "{field}"
                )
            }
            other => panic!("{path:?}: {other}"),
        }
    }
}

#[test]
fn negative_conductance_is_a_typed_error() {
    for path in PATHS {
        let mut x = conductance_values(50, 1, 3, 1);
        x[3 * 3] = -1e-9;
        let e = run(x, 50, 1e-4, path).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParameter { field, .. } if field.contains("step 3")),
            "{path:?}: {e}"
        );
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let ctx = Ctx::cpu();
    assert!(matches!(
        LifUnitValues::calibrated(&[]),
        Err(Error::InvalidParameter { .. })
    ));
    let e = LifUnitValues::calibrated(&[0.5, 1.5]).unwrap_err();
    assert!(e.to_string().contains("recruitment_thresholds[1]"), "{e}");
    assert!(LifUnitValues::calibrated(&[f64::NAN]).is_err());
    let mut v = LifUnitValues::calibrated(&rts(3)).unwrap();
    v.tau_m_s[1] = -1e-3;
    let p = LifParams::from_values(&ctx, &v).unwrap();
    let e = p.validate(1e-4, 1).unwrap_err();
    assert!(e.to_string().contains("tau_m_s[1]"), "{e}");
    // a [2, n] parameter in a batch-3 rollout
    let mut p = LifParams::calibrated(&ctx, &rts(3)).unwrap();
    p.r_ohm = p.r_ohm.clone().expand([2, 3]);
    assert!(matches!(
        p.validate(1e-4, 3),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(p.validate(1e-4, 2).is_ok());
    // spike scale must be positive
    let cfg = LifConfig {
        spike_scale_v: 0.0,
        ..Default::default()
    };
    assert!(
        myodiff::neuron::lif::LifPool::new(
            "mn",
            LifParams::calibrated(&ctx, &rts(3)).unwrap(),
            cfg
        )
        .is_err()
    );
}

#[test]
fn earliest_bad_input_is_reported_across_element_blocks() {
    // a NaN in a later unit at an earlier step than one in an earlier unit must be the one reported
    let ctx = Ctx::cpu();
    let (t, n) = (30, 300);
    let mut x = conductance_values(t, 1, n, 1);
    x[20 * n + 5] = f64::NAN;
    x[10 * n + 280] = f64::NAN;
    for path in PATHS {
        let params = LifParams::calibrated(&ctx, &rts(n)).unwrap();
        let e = run_pool(
            &ctx,
            params,
            LifConfig::default(),
            ctx.tensor(x.clone(), [t, 1, n]),
            1e-4,
            path,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("step 10") && e.to_string().contains("unit 280"),
            "{path:?}: {e}"
        );
    }
}
