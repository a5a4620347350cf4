//! Tape-path gradient of the LIF pool vs central finite differences (f64, smooth Rate mode), for
//! the input trace and every parameter; plus the fused adjoint against the same differences.

mod lif_support;

use lif_support::*;
use myodiff::kernel::{Ctx, ExecPath, to_vec_f64};
use myodiff::neuron::SpikeMode;
use myodiff::neuron::lif::{LifConfig, LifParams, LifUnitValues};
use rand::{Rng, SeedableRng, rngs::StdRng};

const DT: f64 = 1e-4;
const T: usize = 400;
const B: usize = 1;
const N: usize = 3;

/// Parameter vectors in a fixed order; index 9 = input trace.
fn pack(v: &LifUnitValues) -> Vec<Vec<f64>> {
    vec![
        v.tau_m_s.clone(),
        v.r_ohm.clone(),
        v.v_rest_v.clone(),
        v.v_thresh_v.clone(),
        v.v_reset_v.clone(),
        v.tau_ahp_s.clone(),
        v.ahp_jump_a.clone(),
        v.e_syn_v.clone(),
        v.i_bias_a.clone(),
    ]
}

fn unpack(p: &[Vec<f64>]) -> LifUnitValues {
    LifUnitValues {
        tau_m_s: p[0].clone(),
        r_ohm: p[1].clone(),
        v_rest_v: p[2].clone(),
        v_thresh_v: p[3].clone(),
        v_reset_v: p[4].clone(),
        tau_ahp_s: p[5].clone(),
        ahp_jump_a: p[6].clone(),
        e_syn_v: p[7].clone(),
        i_bias_a: p[8].clone(),
    }
}

fn cfg() -> LifConfig {
    LifConfig {
        mode: SpikeMode::Rate,
        beta: 2.0,
        record_v: true,
        detach_spike_state: false, // the exact derivative of the smooth forward

        ..Default::default()
    }
}

/// loss = Σ w·spikes + Σ u·v/1 mV (no autodiff); `p[9]` = input trace.
fn loss(p: &[Vec<f64>], w: &[f64], u: &[f64], path: ExecPath) -> f64 {
    let ctx = Ctx::cpu().f64();
    let params = LifParams::from_values(&ctx, &unpack(p)).unwrap();
    let x = ctx.tensor(p[9].clone(), [T, B, N]);
    let (s, v) = run_pool(&ctx, params, cfg(), x, DT, path).unwrap();
    let s = to_vec_f64(s);
    let v = to_vec_f64(v.unwrap());
    s.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()
        + v.iter().zip(u).map(|(a, b)| a * b * 1e3).sum::<f64>()
}

fn autodiff_grads(p: &[Vec<f64>], w: &[f64], u: &[f64], path: ExecPath) -> Vec<Vec<f64>> {
    let ctx = Ctx::cpu().f64().autodiff();
    let mut params = LifParams::from_values(&ctx, &unpack(p)).unwrap();
    let mut leaves = Vec::new();
    for t in [
        &mut params.tau_m_s,
        &mut params.r_ohm,
        &mut params.v_rest_v,
        &mut params.v_thresh_v,
        &mut params.v_reset_v,
        &mut params.tau_ahp_s,
        &mut params.ahp_jump_a,
        &mut params.e_syn_v,
        &mut params.i_bias_a,
    ] {
        *t = t.clone().require_grad();
        leaves.push(t.clone());
    }
    let x = ctx.tensor(p[9].clone(), [T, B, N]).require_grad();
    let (s, v) = run_pool(&ctx, params, cfg(), x.clone(), DT, path).unwrap();
    let l = (s * ctx.tensor(w.to_vec(), [T, B, N])).sum()
        + (v.unwrap() * ctx.tensor(u.to_vec(), [T, B, N]) * 1e3).sum();
    let g = l.backward();
    let mut out: Vec<Vec<f64>> = leaves
        .iter()
        .map(|t| to_vec_f64(t.grad(&g).unwrap()))
        .collect();
    out.push(to_vec_f64(x.grad(&g).unwrap()));
    out
}

const NAMES: [&str; 10] = [
    "tau_m_s",
    "r_ohm",
    "v_rest_v",
    "v_thresh_v",
    "v_reset_v",
    "tau_ahp_s",
    "ahp_jump_a",
    "e_syn_v",
    "i_bias_a",
    "x",
];

/// Directional derivative along a random direction d_k (scaled to each parameter's magnitude) by
/// central differences vs autodiff·d_k.
fn check(path: ExecPath) -> Vec<f64> {
    let vals = LifUnitValues::calibrated(&rts(N)).unwrap();
    let mut p = pack(&vals);
    p.push(conductance_values(T, B, N, 5));
    let mut rng = StdRng::seed_from_u64(9);
    let w: Vec<f64> = (0..T * B * N)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let u: Vec<f64> = (0..T * B * N)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let g = autodiff_grads(&p, &w, &u, path);
    let scales = [1e-2, 1e6, 1e-2, 1e-2, 1e-2, 1e-2, 1e-9, 1e-2, 1e-9, 1e-7];
    let mut errs = Vec::new();
    for k in 0..10 {
        let d: Vec<f64> = (0..p[k].len())
            .map(|_| scales[k] * rng.random_range(-1.0..1.0))
            .collect();
        let eps = 1e-5;
        let mut pp = p.clone();
        let mut pm = p.clone();
        for j in 0..d.len() {
            pp[k][j] += eps * d[j];
            pm[k][j] -= eps * d[j];
        }
        let fd =
            (loss(&pp, &w, &u, ExecPath::Tape) - loss(&pm, &w, &u, ExecPath::Tape)) / (2.0 * eps);
        let ad: f64 = g[k].iter().zip(&d).map(|(a, b)| a * b).sum();
        let rel = (ad - fd).abs() / fd.abs().max(1e-12);
        println!(
            "{path:?} d loss / d {:>10}: autodiff {ad:+.9e} fd {fd:+.9e} rel err {rel:.2e}",
            NAMES[k]
        );
        assert!(
            fd.abs() > 1e-8,
            "{}: the check needs a non-trivial derivative",
            NAMES[k]
        );
        errs.push(rel);
    }
    errs
}

#[test]
fn tape_gradient_matches_central_differences_in_rate_mode() {
    let errs = check(ExecPath::Tape);
    for (k, e) in errs.iter().enumerate() {
        assert!(*e <= 1e-4, "{}: rel err {e:.2e} > 1e-4", NAMES[k]);
    }
}

#[test]
fn fused_gradient_matches_central_differences_in_rate_mode() {
    let errs = check(ExecPath::Fused);
    for (k, e) in errs.iter().enumerate() {
        assert!(*e <= 1e-4, "{}: rel err {e:.2e} > 1e-4", NAMES[k]);
    }
}

#[test]
fn checker_fails_on_a_wrong_gradient() {
    // negative control: a perturbed autodiff gradient must fail the same comparison
    let vals = LifUnitValues::calibrated(&rts(N)).unwrap();
    let mut p = pack(&vals);
    p.push(conductance_values(T, B, N, 5));
    let w = vec![0.5; T * B * N];
    let u = vec![0.1; T * B * N];
    let g = autodiff_grads(&p, &w, &u, ExecPath::Fused);
    let eps = 1e-5 * 1e-2;
    let mut pp = p.clone();
    let mut pm = p.clone();
    pp[3][0] += eps;
    pm[3][0] -= eps;
    let fd = (loss(&pp, &w, &u, ExecPath::Tape) - loss(&pm, &w, &u, ExecPath::Tape)) / (2.0 * eps);
    let wrong = g[3][0] * 1.001;
    assert!(
        (wrong - fd).abs() / fd.abs() > 1e-4,
        "a 0.1 % wrong gradient must be detected"
    );
    assert!((g[3][0] - fd).abs() / fd.abs() <= 1e-4);
}
