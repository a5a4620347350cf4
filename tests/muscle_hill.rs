//! Hill muscle–tendon model (MODEL.md §3.2, §5.4) against MyoGen 0.12 fixtures
//! (`tests/fixtures/afferents/`, copied from `reference/afferents/`; see its README §3, §8), bad
//! input, the kernel stage, and f64 gradient checks.
//!
//! Tolerance tiers (fixtures README §8):
//! - static functions (force–length, force–velocity, geometry, rest length, per-unit constants)
//!   are the same formulas as 0.12 → tier 1, limited by the CSV's 15 digits and by `powf` vs
//!   0.12's complex `cpow` (≤ 1 ulp per evaluation);
//! - dynamics: myodiff uses classic RK4, same-step activation and post-update outputs (MODEL.md),
//!   0.12 a staggered scheme with a one-step activation lag → tier 2.

mod fixture_csv;
use fixture_csv::{col, csv};
use std::collections::HashMap;

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::gradcheck::{GradCheck, central_differences};
use myodiff::kernel::{BufferSpec, Ctx, Simulation, scalar_f64, to_vec_f64};
use myodiff::muscle::hill::{
    HillModel, HillMuscle, HillParams, HillState, MotorPoolParams, curves,
};
use myodiff::muscle::joint::{Joint, JointParams};

const DT_S: f64 = 2.5e-5;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn ctx64() -> Ctx {
    Ctx::cpu().f64()
}

/// One-element tensor helper.
fn t1(ctx: &Ctx, v: f64) -> Tensor<2> {
    ctx.full([1, 1], v)
}

#[test]
fn motor_unit_constants_match_myogen() {
    let (h, rows) = csv("hill_mu_params.csv");
    let mut max = HashMap::<&str, f64>::new();
    for (n1, n2) in [(102usize, 18usize), (8, 2)] {
        let pool = MotorPoolParams {
            n_type1: n1,
            n_type2: n2,
            ..MotorPoolParams::myogen_default()
        };
        let u = pool.units().unwrap();
        let ctx = ctx64();
        let model = HillModel::new(&ctx, HillParams::fdi(), &u, DT_S).unwrap();
        let a1 = to_vec_f64(model.a1.clone());
        let a2 = to_vec_f64(model.a2.clone());
        let b = to_vec_f64(model.b.clone());
        let n = n1 + n2;
        let mine: Vec<&Vec<f64>> = rows.iter().filter(|r| r[0] as usize == n).collect();
        assert_eq!(mine.len(), n);
        for r in mine {
            let i = r[col(&h, "mu")] as usize;
            let ty = if i < n1 { 1.0 } else { 2.0 };
            assert_eq!(r[col(&h, "fibre_type")], ty);
            for (name, got, tol) in [
                ("P", u.p[i], 1e-12),
                ("T_ms", u.t_ms[i], 1e-12),
                ("muSatFreq_Hz", u.sat_freq_hz[i], 1e-12),
                // 0.12 solves c by a secant to ~1e-8; ours is the exact root (README §8: 1e-6)
                ("c", u.c[i], 1e-6),
                ("tetF", u.tet_f[i], 1e-6),
                ("twiAmp", u.twi_amp[i], 1e-6),
                ("iir_a1", a1[i], 1e-12),
                ("iir_a2", a2[i], 1e-12),
                ("iir_b_per_spike", b[i], 1e-12),
            ] {
                let e = rel(got, r[col(&h, name)]);
                let m = max.entry(name).or_insert(0.0);
                *m = m.max(e);
                assert!(
                    e <= tol,
                    "N={n} mu {i} {name}: {got} vs {} (rel {e:.2e})",
                    r[col(&h, name)]
                );
            }
        }
    }
    eprintln!("max rel errors: {max:?}");
}

#[test]
fn force_length_velocity_match_myogen() {
    let (h, rows) = csv("hill_fl_fv.csv");
    let ctx = ctx64();
    let p = HillParams::fdi();
    let lm: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    let v: Vec<f64> = rows.iter().map(|r| r[1]).collect();
    let n = rows.len();
    let l = ctx.tensor(lm, [n, 1]);
    let vt = ctx.tensor(v, [n, 1]);
    let ce1 =
        to_vec_f64(curves::force_length(&p.fl[0], &l) * curves::force_velocity(&p.fv[0], &l, &vt));
    let ce2 =
        to_vec_f64(curves::force_length(&p.fl[1], &l) * curves::force_velocity(&p.fv[1], &l, &vt));
    let pe = to_vec_f64(curves::passive_force(&p, &l, &vt));
    let mut worst = [0.0f64; 3];
    for (i, r) in rows.iter().enumerate() {
        for (k, (got, name)) in [(ce1[i], "fCE1"), (ce2[i], "fCE2"), (pe[i], "fPE_formula")]
            .into_iter()
            .enumerate()
        {
            let want = r[col(&h, name)];
            // tier 1: 1e-12 relative (15-digit CSV; powf vs complex cpow <= 1 ulp)
            let e = (got - want).abs() / (want.abs() + 1e-12);
            worst[k] = worst[k].max(e);
            assert!(
                e <= 1e-12,
                "{name} at LM={} V={}: {got} vs {want}",
                r[0],
                r[1]
            );
        }
    }
    eprintln!(
        "max rel err fCE1 {:.2e}, fCE2 {:.2e}, fPE {:.2e}",
        worst[0], worst[1], worst[2]
    );
}

#[test]
fn geometry_and_tendon_match_myogen() {
    let (h, rows) = csv("hill_geometry.csv");
    let ctx = ctx64();
    let p = HillParams::fdi();
    let n = rows.len();
    let ang = ctx.tensor(rows.iter().map(|r| r[0]).collect(), [n, 1]);
    let l = ctx.tensor(rows.iter().map(|r| r[1]).collect(), [n, 1]);
    let mtu = curves::poly(&p.ak, &ang);
    let arm = to_vec_f64(curves::poly(&p.bk, &ang));
    let cphi = curves::cos_pennation(&p, &l);
    let fse = to_vec_f64(curves::tendon_force(&p, &mtu, &l, &cphi));
    let mtu = to_vec_f64(mtu);
    let cphi = to_vec_f64(cphi);
    let mut worst = [0.0f64; 4];
    for (i, r) in rows.iter().enumerate() {
        let host = p.tendon_force_f0(r[0], r[1]);
        for (k, (got, want)) in [
            (mtu[i], r[col(&h, "MTU_length_m")]),
            (arm[i], r[col(&h, "moment_arm_m")]),
            (cphi[i], r[col(&h, "pennation_rad")].cos()),
            (fse[i], r[col(&h, "fSE_F0")]),
        ]
        .into_iter()
        .enumerate()
        {
            // tier 1: 1e-12 relative, plus 1e-15 absolute for F_SE deep in the softplus tail
            // (~5e-6 F0 there, where LT − LT_r cancels: 1e-17 F0 absolute differences)
            worst[k] = worst[k].max((got - want).abs() / (want.abs() + 1e-15));
            assert!(
                (got - want).abs() <= 1e-12 * want.abs() + 1e-15,
                "geometry col {k} at angle {} rad LM {}: {got} vs {want}",
                r[0],
                r[1]
            );
        }
        assert!(rel(host, fse[i]) <= 1e-13, "host vs tensor F_SE");
    }
    eprintln!(
        "max rel err MTU {:.2e}, arm {:.2e}, cos phi {:.2e}, fSE {:.2e}",
        worst[0], worst[1], worst[2], worst[3]
    );
}

#[test]
fn rest_length_matches_get_lhold() {
    let (h, rows) = csv("hill_lhold.csv");
    let p = HillParams::fdi();
    for r in &rows {
        let l = p.rest_length_l0(r[col(&h, "angle_rad")]).unwrap();
        // tier 1 (README §8: 1e-9 relative against the integrated getLHold)
        assert!(rel(l, r[col(&h, "L_hold_L0")]) <= 1e-9, "{l} vs {}", r[2]);
        assert!(
            rel(l, r[col(&h, "L_root_L0")]) <= 1e-12,
            "{l} vs root {}",
            r[3]
        );
    }
    let l0 = p.rest_length_l0(0.0).unwrap();
    assert!(rel(l0, 1.0058508613159034) <= 1e-12, "L[0] = {l0}");
}

/// Runs the Hill model for `n_steps` at angle 0 from `l_init`, with spikes from
/// `hill_spikes.csv` (entering the filter at `step_consumed`) when `spikes` is true. Returns per
/// step `k` (state after k steps = 0.12's row k): (L, V, F_SE, F1, F2), F1/F2 of step k−1.
fn run_hill(n_steps: usize, l_init: f64, spikes: bool) -> Vec<[f64; 5]> {
    let ctx = ctx64();
    let u = MotorPoolParams::myogen_default().units().unwrap();
    let model = HillModel::new(&ctx, HillParams::fdi(), &u, DT_S).unwrap();
    let n = model.n_units();
    let mut by_step: HashMap<usize, Vec<usize>> = HashMap::new();
    if spikes {
        let (h, rows) = csv("hill_spikes.csv");
        for r in rows {
            by_step
                .entry(r[col(&h, "step_consumed")] as usize)
                .or_default()
                .push(r[col(&h, "mu")] as usize);
        }
    }
    let mut st: HillState = model.state(&ctx, 1, l_init).unwrap();
    let angle = t1(&ctx, 0.0);
    let p = HillParams::fdi();
    let mut out = vec![[l_init, 0.0, p.tendon_force_f0(0.0, l_init), 0.0, 0.0]];
    let zeros = ctx.zeros([1, n]);
    for k in 0..n_steps {
        let s = match by_step.get(&k) {
            Some(mus) => {
                let mut v = vec![0.0; n];
                for &m in mus {
                    v[m] = 1.0;
                }
                ctx.tensor(v, [1, n])
            }
            None => zeros.clone(),
        };
        let (next, o) = model.step(&st, s, angle.clone()).unwrap();
        let row = [
            scalar_f64(next.l_l0.clone()),
            scalar_f64(next.v_l0_s.clone()),
            scalar_f64(o.tendon_force_f0),
            scalar_f64(o.activation_f0[0].clone()),
            scalar_f64(o.activation_f0[1].clone()),
        ];
        out.push(row);
        st = next;
    }
    out
}

#[test]
fn isometric_spike_response_matches_myogen_tier2() {
    let (h, rows) = csv("hill_spike_response.csv");
    let last = rows.last().unwrap()[0] as usize;
    let sim = run_hill(last, 1.0058508613159034, true);
    let (mut ef, mut el, mut ea) = (0.0f64, 0.0f64, 0.0f64);
    let (mut peak, mut peak_k) = (0.0, 0);
    for (k, r) in sim.iter().enumerate() {
        if r[2] > peak {
            peak = r[2];
            peak_k = k;
        }
    }
    for r in &rows {
        let k = r[0] as usize;
        let f_ref = r[col(&h, "force_F0")];
        let l_ref = r[col(&h, "L_L0")];
        let got = sim[k];
        // tier 2: force within 0.5 % where >= 0.01 F0, L within 5e-5 L0
        if f_ref >= 0.01 {
            let e = rel(got[2], f_ref);
            ef = ef.max(e);
            assert!(e <= 5e-3, "force at step {k}: {} vs {f_ref}", got[2]);
        }
        let e = (got[0] - l_ref).abs();
        el = el.max(e);
        assert!(e <= 5e-5, "L at step {k}: {} vs {l_ref}", got[0]);
        // activations: 0.12 row k holds F1[k] = saturation of f[k], which myodiff computes in
        // step k−1 (same twitch filter; only our exact saturation constant c differs, ≤ 1e-6)
        if k > 0 {
            for (j, name) in [(3usize, "F1"), (4, "F2")] {
                let want = r[col(&h, name)];
                let e = (got[j] - want).abs() / (want.abs() + 1e-6);
                ea = ea.max(e);
                assert!(e <= 1e-5, "{name} at {k}: {} vs {want}", got[j]);
            }
        }
    }
    eprintln!(
        "spike response: max rel force err (>= 0.01 F0) {ef:.3e}, max |dL| {el:.3e} L0, max rel F1/F2 err {ea:.3e}; \
         peak {peak:.6} F0 at step {peak_k} (0.12: 0.149970 at 20842)"
    );
    assert!(rel(peak, 0.149970) <= 5e-3, "peak {peak}");
    assert!((peak_k as i64 - 20842).abs() <= 40, "peak step {peak_k}");
}

#[test]
fn quick_release_matches_myogen_tier2() {
    // README §8 tier 2 says "L within 2e-3 L0 and force within 5 % in the first 5 ms; within
    // 1e-4 after that", but its own rk4-variant check (reimpl_check.csv, `hill_release,rk4`) has
    // max |dL| = 1.212e-3 L0 at step 1167 (29 ms), max |dF| = 2.41e-3 F0, and 9.3e-6 L0 from
    // 0.2 s: the RK4-vs-staggered gap of a lightly damped fast oscillation. myodiff's RK4 matches
    // that variant (measured max |dL| 1.2117e-3), so the test uses: |dL| <= 1.3e-3 L0 and
    // |dF| <= 2.5e-3 F0 everywhere, |dL| <= 2e-5 L0 from 0.2 s.
    let (h, rows) = csv("hill_release.csv");
    let last = rows.last().unwrap()[0] as usize;
    let sim = run_hill(last, 0.95, false);
    let (mut el, mut ef, mut el_late) = (0.0f64, 0.0f64, 0.0f64);
    for r in &rows {
        let k = r[0] as usize;
        let got = sim[k];
        let dl = (got[0] - r[col(&h, "L_L0")]).abs();
        let df = (got[2] - r[col(&h, "force_F0")]).abs();
        el = el.max(dl);
        ef = ef.max(df);
        assert!(
            dl <= 1.3e-3 && df <= 2.5e-3,
            "step {k}: dL {dl:.2e}, dF {df:.2e}"
        );
        if k >= 8000 {
            el_late = el_late.max(dl);
            assert!(dl <= 2e-5, "step {k}: dL {dl:.2e}");
        }
    }
    eprintln!(
        "quick release: max |dL| {el:.4e} L0, max |dF| {ef:.4e} F0, max |dL| from 0.2 s {el_late:.3e} L0"
    );
    assert!(
        (sim[last][0] - 1.00584).abs() < 1e-4,
        "final L {}",
        sim[last][0]
    );
}

fn is_invalid(e: Error, field: &str) -> bool {
    matches!(&e, Error::InvalidParameter { field: f, .. } if f == field)
}

#[test]
fn bad_inputs_are_typed_errors() {
    let ctx = Ctx::cpu();
    let u = MotorPoolParams {
        n_type1: 2,
        n_type2: 1,
        ..MotorPoolParams::myogen_default()
    }
    .units()
    .unwrap();
    let mut p = HillParams::fdi();
    p.f0_n = f64::NAN;
    assert!(is_invalid(
        HillModel::new(&ctx, p, &u, DT_S).unwrap_err(),
        "hill.f0_n"
    ));
    let mut p = HillParams::fdi();
    p.fv[1].vmax = 1.0;
    assert!(is_invalid(
        HillModel::new(&ctx, p, &u, DT_S).unwrap_err(),
        "hill.fv[1].vmax"
    ));
    let mut p = HillParams::soleus();
    p.alfa0_rad = 2.0;
    assert!(is_invalid(p.validate().unwrap_err(), "hill.alfa0_rad"));
    for dt in [f64::NAN, -1e-4, 0.0, 1e-3] {
        let e = HillModel::new(&ctx, HillParams::fdi(), &u, dt).unwrap_err();
        assert!(matches!(e, Error::UnstableTimeStep { .. }), "dt {dt}: {e}");
    }
    let e = MotorPoolParams {
        rp: 1.0,
        ..MotorPoolParams::myogen_default()
    }
    .units()
    .unwrap_err();
    assert!(is_invalid(e, "pool.rp"));
    let e = MotorPoolParams {
        n_type1: 0,
        n_type2: 0,
        ..MotorPoolParams::myogen_default()
    }
    .units()
    .unwrap_err();
    assert!(is_invalid(e, "pool.n_units"));
    let m = HillModel::new(&ctx, HillParams::fdi(), &u, DT_S).unwrap();
    for l in [0.1, 5.0, f64::NAN] {
        assert!(is_invalid(
            m.state(&ctx, 1, l).unwrap_err(),
            "hill.initial_length_l0"
        ));
    }
    let st = m.state(&ctx, 2, 1.0).unwrap();
    let e = m
        .step(&st, ctx.zeros([2, 2]), ctx.zeros([1, 1]))
        .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { ref field, .. } if field == "hill.spikes"),
        "{e}"
    );
    let e = m
        .step(&st, ctx.zeros([2, 3]), ctx.zeros([3, 1]))
        .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { ref field, .. } if field == "hill.angle_rad"),
        "{e}"
    );
    assert!(HillParams::fdi().rest_length_l0(f64::NAN).is_err());
    assert!(HillMuscle::new(m, 1.0, f64::INFINITY).is_err());
    eprintln!(
        "FDI max stable dt {:.3e} s, soleus {:.3e} s",
        HillParams::fdi().max_stable_dt_s(),
        HillParams::soleus().max_stable_dt_s()
    );
}

/// The stage gives exactly the step loop's force, and closes the loop with the joint (angle read
/// one tick delayed).
#[test]
fn stage_matches_step_loop_and_closes_with_joint() {
    let ctx = ctx64();
    let dt = 1e-4;
    let n_t = 400;
    let u = MotorPoolParams {
        n_type1: 3,
        n_type2: 1,
        ..MotorPoolParams::myogen_default()
    }
    .units()
    .unwrap();
    let model = HillModel::new(&ctx, HillParams::fdi(), &u, dt).unwrap();
    let l0 = HillParams::fdi().rest_length_l0(0.0).unwrap();
    let mut sp = vec![0.0; n_t * 4];
    for t in (10..n_t).step_by(50) {
        for j in 0..4 {
            sp[t * 4 + j] = 1.0;
        }
    }
    let spikes = ctx.tensor(sp.clone(), [n_t, 1, 4]);
    // open loop, fixed angle 0
    let mut sim = Simulation::new(ctx.clone(), 1, dt, n_t).unwrap();
    sim.add_input(BufferSpec::new("spikes", &[4], "1"), spikes.clone())
        .unwrap();
    sim.add_stage(HillMuscle::new(model.clone(), l0, 0.0).unwrap());
    sim.record(&["muscle_force_n", "fibre_length_l0"]);
    let roll = sim.run().unwrap();
    let f_stage = to_vec_f64(roll.trace("muscle_force_n").unwrap());
    let mut st = model.state(&ctx, 1, l0).unwrap();
    let mut max_d = 0.0f64;
    for t in 0..n_t {
        let s = ctx.tensor(sp[t * 4..t * 4 + 4].to_vec(), [1, 4]);
        let (next, o) = model.step(&st, s, t1(&ctx, 0.0)).unwrap();
        max_d = max_d.max((scalar_f64(o.force_n) - f_stage[t]).abs());
        st = next;
    }
    assert!(max_d == 0.0, "stage vs loop force differ by {max_d}");
    assert!(
        f_stage.iter().cloned().fold(0.0, f64::max) > 0.5,
        "force rises"
    );
    // closed loop with the joint
    let mut sim = Simulation::new(ctx.clone(), 1, dt, n_t).unwrap();
    sim.add_input(BufferSpec::new("spikes", &[4], "1"), spikes)
        .unwrap();
    sim.add_stage(
        HillMuscle::new(model, l0, 0.0)
            .unwrap()
            .with_angle("joint_angle_rad"),
    );
    sim.add_stage(Joint::new(JointParams::myogen_example11(), 0.0).unwrap());
    sim.record(&["joint_angle_rad", "muscle_torque_nm"]);
    let roll = sim.run().unwrap();
    let ang = to_vec_f64(roll.trace("joint_angle_rad").unwrap());
    assert!(
        ang[n_t - 1] > 0.0 && ang.iter().all(|a| a.is_finite()),
        "joint moves with the muscle torque"
    );
}

// ------------------------------------------------------------------ gradient checks (f64)

const G_N: usize = 4;
const G_T: usize = 700; // 70 ms at dt = 0.1 ms: past the twitch peaks
const G_DT: f64 = 1e-4;

fn g_spikes() -> Vec<f64> {
    let mut v = vec![0.0; G_T * G_N];
    for (j, t0) in [5usize, 60, 120, 200].into_iter().enumerate() {
        for k in 0..3 {
            v[(t0 + 150 * k) * G_N + j] = 1.0;
        }
    }
    v
}

/// Peak tendon force (N) for spike weight `w` and `twiAmp` scale factors `x` (one per unit).
fn peak_force(ctx: &Ctx, w: Tensor<2>, amp: Tensor<2>) -> Tensor<1> {
    let u = MotorPoolParams {
        n_type1: 3,
        n_type2: 1,
        ..MotorPoolParams::myogen_default()
    }
    .units()
    .unwrap();
    let mut model = HillModel::new(ctx, HillParams::fdi(), &u, G_DT).unwrap();
    model.twi_amp = amp;
    let sp = g_spikes();
    let mut st = model.state(ctx, 1, 1.0058508613159034).unwrap();
    let mut forces = Vec::with_capacity(G_T);
    for t in 0..G_T {
        let s = ctx.tensor(sp[t * G_N..(t + 1) * G_N].to_vec(), [1, G_N]) * w.clone();
        let (next, o) = model.step(&st, s, t1(ctx, 0.0)).unwrap();
        forces.push(o.force_n);
        st = next;
    }
    Tensor::cat(forces, 1).max().reshape([1])
}

fn base_amp() -> Vec<f64> {
    MotorPoolParams {
        n_type1: 3,
        n_type2: 1,
        ..MotorPoolParams::myogen_default()
    }
    .units()
    .unwrap()
    .twi_amp
}

#[test]
fn grad_peak_force_wrt_spike_weight_and_twitch_amplitudes() {
    // x = [w, twiAmp_0..3]; spike weight 1 (hard spikes as a continuous input) and 0.12 amplitudes
    let mut x0 = vec![1.0];
    x0.extend(base_amp());
    let ad = {
        let ctx = ctx64().autodiff();
        let w = ctx.full([1, 1], x0[0]).require_grad();
        let a = ctx.tensor(x0[1..].to_vec(), [1, G_N]).require_grad();
        let y = peak_force(&ctx, w.clone(), a.clone());
        let g = y.backward();
        let mut v = to_vec_f64(w.grad(&g).unwrap());
        v.extend(to_vec_f64(a.grad(&g).unwrap()));
        v
    };
    let ctx = ctx64();
    let mut f = |x: &[f64]| {
        Ok(scalar_f64(peak_force(
            &ctx,
            t1(&ctx, x[0]),
            ctx.tensor(x[1..].to_vec(), [1, G_N]),
        )))
    };
    let h: Vec<f64> = x0.iter().map(|v| 1e-6 * v.abs()).collect();
    let num = central_differences(&mut f, &x0, &h).unwrap();
    let c = GradCheck::compare(ad, num).unwrap();
    eprintln!(
        "d peak F / d [w, twiAmp]: analytic {:?}\n numeric {:?}\n per-component rel err {:?}",
        c.analytic, c.numeric, c.rel_errs
    );
    // f64, O(h²) FD with h = 1e-6 relative: per-component relative tolerance 1e-6
    c.check(1e-6, 0.999_999_9).unwrap();
    for (i, g) in c.analytic.iter().enumerate() {
        assert!(g.abs() > 1e-6, "component {i} vanishes");
    }
    // negative control: a 0.1 % error in one component must fail the same check
    assert!(
        c.perturbed(0, 1.001)
            .unwrap()
            .check(1e-6, 0.999_999_9)
            .is_err()
    );
    assert!(
        c.perturbed(3, 1.001)
            .unwrap()
            .check(1e-6, 0.999_999_9)
            .is_err()
    );
}
