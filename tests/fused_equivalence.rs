//! Fused path (one custom op, hand-written adjoint) == tape path (plain burn ops): forward bit for
//! bit in hard mode, gradients in surrogate mode (f64), on small cases.

mod lif_support;

use lif_support::*;
use myodiff::kernel::{Ctx, ExecPath, to_vec_f32, to_vec_f64};
use myodiff::neuron::SpikeMode;
use myodiff::neuron::lif::{LifConfig, LifInput, LifParams, LifUnitValues};

const DT: f64 = 1e-4;

fn forward_pair(
    ctx: &Ctx,
    mode: SpikeMode,
    input: LifInput,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (t, b, n) = (3000, 2, 6);
    let mut xs = conductance_values(t, b, n, 7);
    if input == LifInput::Current {
        xs.iter_mut().for_each(|g| *g *= 0.06); // ≈ g·(E_syn − v)
    }
    let cfg = LifConfig {
        mode,
        input,
        record_v: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let params = LifParams::calibrated(ctx, &rts(n)).unwrap();
        let x = ctx.tensor(xs.clone(), [t, b, n]);
        let (s, v) = run_pool(ctx, params, cfg.clone(), x, DT, path).unwrap();
        out.push((to_vec_f32(s), to_vec_f32(v.unwrap())));
    }
    let (t1, f1) = (out.remove(0), out.remove(0));
    (t1.0, f1.0, t1.1, f1.1)
}

#[test]
fn fused_forward_is_bit_identical_to_tape_in_hard_mode() {
    for ctx in [
        Ctx::cpu(),
        Ctx::cpu().f64(),
        Ctx::new(myodiff::kernel::BackendKind::Ndarray).unwrap(),
    ] {
        for input in [LifInput::Conductance, LifInput::Current] {
            let (st, sf, vt, vf) = forward_pair(&ctx, SpikeMode::Hard, input);
            let n_spikes: f32 = st.iter().sum();
            assert!(n_spikes > 50.0, "the case must spike ({n_spikes})");
            assert_eq!(st, sf, "spikes differ ({:?}, {input:?})", ctx.precision);
            let bits_equal = vt.iter().zip(&vf).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                bits_equal,
                "membrane potential differs ({:?}, {input:?})",
                ctx.precision
            );
        }
    }
}

#[test]
fn hard_and_surrogate_forward_are_identical_on_both_paths() {
    let ctx = Ctx::cpu();
    let (sh, sfh, vh, vfh) = forward_pair(&ctx, SpikeMode::Hard, LifInput::Conductance);
    let (ss, sfs, vs, vfs) = forward_pair(
        &ctx.clone().autodiff(),
        SpikeMode::Surrogate,
        LifInput::Conductance,
    );
    assert_eq!(sh, ss);
    assert_eq!(sfh, sfs);
    assert_eq!(vh, vs);
    assert_eq!(vfh, vfs);
}

/// Loss = Σ w_s·spikes + Σ w_v·v/1 mV with fixed pathwise weights; returns gradients w.r.t. the input
/// trace and the nine parameter tensors.
fn grads(
    path: ExecPath,
    mode: SpikeMode,
    input: LifInput,
    x_grad: bool,
    detach_spike_state: bool,
) -> (f64, Vec<Vec<f64>>) {
    let ctx = Ctx::cpu().f64().autodiff();
    let (t, b, n) = (1500, 2, 4);
    let mut xs = conductance_values(t, b, n, 11);
    if input == LifInput::Current {
        xs.iter_mut().for_each(|g| *g *= 0.06);
    }
    let ws = conductance_values(t, b, n, 12)
        .into_iter()
        .map(|w| w * 1e7 - 1.5)
        .collect::<Vec<_>>();
    let wv = conductance_values(t, b, n, 13)
        .into_iter()
        .map(|w| w * 1e7 - 1.5)
        .collect::<Vec<_>>();
    let vals = LifUnitValues::calibrated(&rts(n)).unwrap();
    let mut params = LifParams::from_values(&ctx, &vals).unwrap();
    // a per-candidate [b, n] parameter, to exercise the batch axis
    params.tau_m_s = params.tau_m_s.clone().expand([b, n]);
    let p = [
        &mut params.tau_m_s,
        &mut params.r_ohm,
        &mut params.v_rest_v,
        &mut params.v_thresh_v,
        &mut params.v_reset_v,
        &mut params.tau_ahp_s,
        &mut params.ahp_jump_a,
        &mut params.e_syn_v,
        &mut params.i_bias_a,
    ];
    let mut leaves = Vec::new();
    for t in p {
        *t = t.clone().detach().require_grad();
        leaves.push(t.clone());
    }
    let mut x = ctx.tensor(xs, [t, b, n]);
    if x_grad {
        x = x.require_grad();
    }
    let cfg = LifConfig {
        mode,
        input,
        record_v: true,
        checkpoint_every: 97, // segments of uneven length
        detach_spike_state,
        ..Default::default()
    };
    let (s, v) = run_pool(&ctx, params, cfg, x.clone(), DT, path).unwrap();
    let loss = (s * ctx.tensor(ws, [t, b, n])).sum()
        + (v.unwrap() * ctx.tensor(wv, [t, b, n]) * 1e3).sum();
    let lv = to_vec_f64(loss.clone())[0];
    let g = loss.backward();
    let mut out = Vec::new();
    if x_grad {
        out.push(to_vec_f64(x.grad(&g).expect("grad x")));
    }
    for l in &leaves {
        let numel = l.dims().iter().product();
        // no gradient at all (parameter not on the tape, e.g. θ in hard mode) = zeros
        out.push(
            l.grad(&g)
                .map(to_vec_f64)
                .unwrap_or_else(|| vec![0.0; numel]),
        );
    }
    (lv, out)
}

const NAMES: [&str; 10] = [
    "x",
    "tau_m_s",
    "r_ohm",
    "v_rest_v",
    "v_thresh_v",
    "v_reset_v",
    "tau_ahp_s",
    "ahp_jump_a",
    "e_syn_v",
    "i_bias_a",
];

#[test]
fn fused_gradients_equal_tape_gradients_surrogate_f64() {
    for (input, detach) in [
        (LifInput::Conductance, true),
        (LifInput::Conductance, false),
        (LifInput::Current, true),
    ] {
        let (lt, gt) = grads(ExecPath::Tape, SpikeMode::Surrogate, input, true, detach);
        let (lf, gf) = grads(ExecPath::Fused, SpikeMode::Surrogate, input, true, detach);
        assert_eq!(lt, lf, "loss");
        for (k, (a, b)) in gf.iter().zip(&gt).enumerate() {
            let name = if input == LifInput::Current && k == 8 {
                "e_syn_v (unused)"
            } else {
                NAMES[k]
            };
            let nonzero = b.iter().any(|v| *v != 0.0);
            if input == LifInput::Conductance || k != 8 {
                assert!(nonzero, "{name}: tape gradient is identically zero");
            }
            let rel = max_rel(a, b);
            println!(
                "{input:?} detach_spike_state={detach} d loss / d {name}: rel err fused vs tape {rel:.3e}"
            );
            assert!(
                rel <= 1e-5,
                "{input:?} {name}: fused vs tape rel err {rel:.3e}"
            );
        }
    }
}

#[test]
fn fused_gradients_equal_tape_gradients_rate_and_hard() {
    for (mode, detach) in [
        (SpikeMode::Rate, false),
        (SpikeMode::Rate, true),
        (SpikeMode::Hard, true),
    ] {
        let (lt, gt) = grads(ExecPath::Tape, mode, LifInput::Conductance, false, detach);
        let (lf, gf) = grads(ExecPath::Fused, mode, LifInput::Conductance, false, detach);
        assert!(
            (lt - lf).abs() <= 1e-9 * lt.abs().max(1.0),
            "{mode:?} loss {lt} vs {lf}"
        );
        for (k, (a, b)) in gf.iter().zip(&gt).enumerate() {
            let rel = max_rel(a, b);
            println!(
                "{mode:?} d loss / d {}: rel err fused vs tape {rel:.3e}",
                NAMES[k + 1]
            );
            assert!(rel <= 1e-5, "{mode:?} {}: rel err {rel:.3e}", NAMES[k + 1]);
        }
    }
}

#[test]
fn fused_op_composes_with_upstream_ops() {
    // x = scale · base (scale is a parameter upstream of the fused op), on flex and ndarray
    for ctx in [
        Ctx::cpu().f64().autodiff(),
        Ctx::new(myodiff::kernel::BackendKind::Ndarray)
            .unwrap()
            .f64()
            .autodiff(),
    ] {
        let (t, b, n) = (800, 1, 3);
        let base = ctx.tensor(conductance_values(t, b, n, 3), [t, b, n]);
        let mut out = Vec::new();
        for path in [ExecPath::Tape, ExecPath::Fused] {
            let scale = ctx.tensor(vec![1.3], [1, 1, 1]).require_grad();
            let x = base.clone() * scale.clone().expand([t, b, n]);
            let cfg = LifConfig {
                mode: SpikeMode::Surrogate,
                ..Default::default()
            };
            let params = LifParams::calibrated(&ctx, &rts(n)).unwrap();
            let (s, _) = run_pool(&ctx, params, cfg, x, DT, path).unwrap();
            let loss = (s.clone() * s).sum();
            let g = loss.backward();
            out.push(to_vec_f64(scale.grad(&g).unwrap())[0]);
        }
        assert!(out[0] != 0.0);
        assert!((out[0] - out[1]).abs() <= 1e-9 * out[0].abs(), "{out:?}");
    }
}

#[test]
fn fused_matches_tape_across_element_blocks() {
    // B·N = 2·1100 = 2200 elements: more than one block of the adjoint (2048)
    let (t, b, n) = (150, 2, 1100);
    let ctx = Ctx::cpu().f64().autodiff();
    let xs = conductance_values(t, b, n, 21);
    let ws = conductance_values(t, b, n, 22)
        .into_iter()
        .map(|w| w * 1e7 - 1.5)
        .collect::<Vec<_>>();
    let mut res = Vec::new();
    for path in [ExecPath::Tape, ExecPath::Fused] {
        let mut params = LifParams::calibrated(&ctx, &rts(n)).unwrap();
        params.v_thresh_v = params.v_thresh_v.require_grad();
        let th = params.v_thresh_v.clone();
        let x = ctx.tensor(xs.clone(), [t, b, n]).require_grad();
        let cfg = LifConfig {
            mode: SpikeMode::Surrogate,
            checkpoint_every: 64,
            ..Default::default()
        };
        let (s, _) = run_pool(&ctx, params, cfg, x.clone(), DT, path).unwrap();
        let sv = to_vec_f64(s.clone());
        let loss = (s * ctx.tensor(ws.clone(), [t, b, n])).sum();
        let g = loss.backward();
        res.push((
            sv,
            to_vec_f64(th.grad(&g).unwrap()),
            to_vec_f64(x.grad(&g).unwrap()),
        ));
    }
    assert!(res[0].0.iter().sum::<f64>() > 100.0);
    assert_eq!(res[0].0, res[1].0, "spikes");
    assert!(
        max_rel(&res[1].1, &res[0].1) <= 1e-5,
        "d/dθ {}",
        max_rel(&res[1].1, &res[0].1)
    );
    assert!(
        max_rel(&res[1].2, &res[0].2) <= 1e-5,
        "d/dx {}",
        max_rel(&res[1].2, &res[0].2)
    );
}
