//! The fused NERLab pool scan (`ExecPath::Fused`, one custom op with a hand-written adjoint)
//! against the tape path (per-step tensor ops): forward bit-identity (exact arithmetic, flex),
//! closeness of the fast arithmetic, gradients w.r.t. the input conductance trace, the bias
//! current and the per-unit parameters (rel. err ≤ 1e-6 in f64), checkpoint/thread invariance,
//! bad input.

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation, scalar_f64, to_vec_f64};
use myodiff::neuron::SpikeMode;
use myodiff::neuron::nerlab::{self, NerlabPool, NerlabTensors};
use myodiff::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use myodiff::neuron::recruitment::{RecruitmentMode, RecruitmentThresholds};

const UNITS: [usize; 4] = [0, 250, 520, 799];
const DT_S: f64 = 1e-4;

fn params(ctx: &Ctx) -> NerlabTensors {
    let rt = RecruitmentThresholds::new(800, 100.0, 5.0, 1.0, RecruitmentMode::Combined).unwrap();
    let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())
        .unwrap()
        .select(&UNITS)
        .unwrap();
    NerlabTensors::new(ctx, &p).unwrap()
}

/// Deterministic pseudo-random numbers in [0, 1).
fn lcg(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// Conductance trace `[T, B, 4]` in siemens: per-unit tonic levels (1–9 µS), a 20 Hz modulation
/// and noise, different per batch element.
fn conductance(t_steps: usize, batch: usize) -> Vec<f64> {
    let levels = [1.2e-6, 3.0e-6, 5.0e-6, 9.0e-6];
    let noise = lcg(7, t_steps * batch * 4);
    let mut g = Vec::with_capacity(t_steps * batch * 4);
    for t in 0..t_steps {
        for b in 0..batch {
            for (i, lv) in levels.iter().enumerate() {
                let ph = 2.0 * std::f64::consts::PI * 20.0 * t as f64 * DT_S + i as f64;
                let k = (t * batch + b) * 4 + i;
                g.push(
                    lv * (1.0 + 0.2 * b as f64) * (1.0 + 0.4 * ph.sin()) * (0.6 + 0.8 * noise[k]),
                );
            }
        }
    }
    g
}

struct Run {
    spikes: Tensor<3>,
    v: Tensor<3>,
}

#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Ctx,
    p: NerlabTensors,
    g: Tensor<3>,
    bias: Option<Tensor<2>>,
    mode: SpikeMode,
    path: ExecPath,
    exact: bool,
    tweak: impl FnOnce(NerlabPool) -> NerlabPool,
) -> myodiff::Result<Run> {
    let [t_steps, batch, n] = g.dims();
    let mut pool = NerlabPool::new(p, mode)
        .with_voltage_output()
        .with_fused_exact(exact);
    if let Some(b) = bias {
        pool = pool.with_bias_current_na(b);
    }
    let pool = tweak(pool);
    let mut sim = Simulation::new(ctx.clone(), batch, DT_S, t_steps)?;
    sim.add_stage(pool).record(&[nerlab::V_SOMA_V]);
    sim.add_input(BufferSpec::new(nerlab::SYN_CONDUCTANCE_S, &[n], "S"), g)?;
    let r = sim.run_path(path)?;
    Ok(Run {
        spikes: r.trace(nerlab::SPIKES)?,
        v: r.trace(nerlab::V_SOMA_V)?,
    })
}

fn forward(
    ctx: &Ctx,
    mode: SpikeMode,
    path: ExecPath,
    exact: bool,
    t: usize,
) -> (Vec<f64>, Vec<f64>) {
    let g = ctx.tensor(conductance(t, 2), [t, 2, 4]);
    let bias = ctx.tensor(vec![0.5, 1.0, 2.0, 0.0], [1, 4]);
    let r = run(ctx, params(ctx), g, Some(bias), mode, path, exact, |p| p).unwrap();
    (to_vec_f64(r.spikes), to_vec_f64(r.v))
}

fn count(s: &[f64]) -> f64 {
    s.iter().sum()
}

#[test]
fn exact_fused_forward_is_bit_identical_to_the_tape() {
    let t = 3000;
    for (ctx, name) in [(Ctx::cpu(), "f32"), (Ctx::cpu().f64(), "f64")] {
        for mode in [SpikeMode::Hard, SpikeMode::Rate] {
            let (s_tape, v_tape) = forward(&ctx, mode, ExecPath::Tape, true, t);
            let (s_fused, v_fused) = forward(&ctx, mode, ExecPath::Fused, true, t);
            println!("{name} {mode:?}: {} spikes (tape)", count(&s_tape));
            assert!(count(&s_tape) >= 10.0, "the test must see spikes");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&s_tape), bits(&s_fused), "{name} {mode:?} spikes");
            assert_eq!(bits(&v_tape), bits(&v_fused), "{name} {mode:?} voltage");
        }
    }
}

/// Spike count per (batch, unit) column of a `[T, B, 4]` trace.
fn counts(s: &[f64]) -> Vec<f64> {
    let w = 8;
    (0..w).map(|c| s.iter().skip(c).step_by(w).sum()).collect()
}

#[test]
fn fast_fused_forward_f32_is_bit_identical_and_f64_close() {
    // f32: the fast path's exp is a replica of glibc's expf → bit-identical to the tape.
    let t = 3000;
    let ctx = Ctx::cpu();
    for mode in [SpikeMode::Hard, SpikeMode::Rate] {
        let (s_tape, v_tape) = forward(&ctx, mode, ExecPath::Tape, false, t);
        let (s_fast, v_fast) = forward(&ctx, mode, ExecPath::Fused, false, t);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&s_tape), bits(&s_fast), "f32 {mode:?} spikes");
        assert_eq!(bits(&v_tape), bits(&v_fast), "f32 {mode:?} voltage");
    }
    // f64: a polynomial exp within 3 ulp of libm; a spiking trajectory amplifies such
    // differences, so: early voltages within 1e-6 mV, spike counts within one.
    let ctx = Ctx::cpu().f64();
    let (s_tape, v_tape) = forward(&ctx, SpikeMode::Hard, ExecPath::Tape, false, t);
    let (s_fast, v_fast) = forward(&ctx, SpikeMode::Hard, ExecPath::Fused, false, t);
    let early = 400 * 8;
    let dv = v_tape[..early]
        .iter()
        .zip(&v_fast[..early])
        .map(|(a, b)| (a - b).abs() * 1e3)
        .fold(0.0, f64::max);
    let (ct, cf) = (counts(&s_tape), counts(&s_fast));
    println!("f64: spike counts tape {ct:?} fast {cf:?}; max |Δv| over 40 ms = {dv:.3e} mV");
    assert!(dv < 1e-6, "f64: max |Δv| = {dv} mV");
    for (a, b) in ct.iter().zip(&cf) {
        assert!((a - b).abs() <= 1.0, "f64: {ct:?} vs {cf:?}");
    }
}

#[test]
fn hard_and_surrogate_fused_forward_are_identical() {
    let ctx = Ctx::cpu();
    let (s_h, v_h) = forward(&ctx, SpikeMode::Hard, ExecPath::Fused, false, 2000);
    let (s_s, v_s) = forward(&ctx, SpikeMode::Surrogate, ExecPath::Fused, false, 2000);
    assert_eq!(s_h, s_s);
    assert_eq!(v_h, v_s);
}

/// Per-unit parameters made differentiable through scalar multipliers (and an offset for
/// vtraub_caL): `θ = [gnabar, gnapbar, gkfbar, gksbar, gl_soma, rinact, gcalbar, gl_dend, ltau,
/// soma_diam, dend_l, dend_diam, vtraub_caL offset]`.
const N_THETA: usize = 13;

fn theta_params(ctx: &Ctx, th: &[Tensor<1>]) -> NerlabTensors {
    let mut p = params(ctx);
    let s = |t: &Tensor<2>, k: usize| t.clone() * th[k].clone().reshape([1, 1]);
    p.gnabar = s(&p.gnabar, 0);
    p.gnapbar = s(&p.gnapbar, 1);
    p.gkfbar = s(&p.gkfbar, 2);
    p.gksbar = s(&p.gksbar, 3);
    p.gl_soma = s(&p.gl_soma, 4);
    p.rinact_per_ms = s(&p.rinact_per_ms, 5);
    p.gcalbar = s(&p.gcalbar, 6);
    p.gl_dend = s(&p.gl_dend, 7);
    p.ltau_cal_ms = s(&p.ltau_cal_ms, 8);
    p.soma_diam_um = s(&p.soma_diam_um, 9);
    p.dend_l_um = s(&p.dend_l_um, 10);
    p.dend_diam_um = s(&p.dend_diam_um, 11);
    p.vtraub_cal_mv = p.vtraub_cal_mv.clone() + th[12].clone().reshape([1, 1]);
    p
}

struct Grads {
    loss: f64,
    g: Vec<f64>,
    bias: Vec<f64>,
    theta: Vec<f64>,
}

fn gradients(
    mode: SpikeMode,
    path: ExecPath,
    exact: bool,
    t: usize,
    tweak: impl FnOnce(NerlabPool) -> NerlabPool,
) -> Grads {
    let ctx = Ctx::cpu().f64().autodiff();
    let batch = 2;
    let g = ctx
        .tensor(conductance(t, batch), [t, batch, 4])
        .require_grad();
    let bias = ctx
        .tensor(vec![0.5, 1.0, 2.0, 0.0, 0.2, 0.8, 1.5, 0.3], [batch, 4])
        .require_grad();
    let th: Vec<Tensor<1>> = (0..N_THETA)
        .map(|k| ctx.scalar(if k == 12 { 0.0 } else { 1.0 }).require_grad())
        .collect();
    let p = theta_params(&ctx, &th);
    let r = run(
        &ctx,
        p,
        g.clone(),
        Some(bias.clone()),
        mode,
        path,
        exact,
        tweak,
    )
    .unwrap();
    let n = t * batch * 4;
    let ws = ctx.tensor(lcg(11, n), [t, batch, 4]);
    let wv = ctx.tensor(
        lcg(13, n).into_iter().map(|x| x - 0.5).collect(),
        [t, batch, 4],
    );
    let loss = (r.spikes * ws).sum() + (r.v * wv).sum() * 10.0;
    let grads = loss.backward();
    Grads {
        loss: scalar_f64(loss),
        g: to_vec_f64(g.grad(&grads).unwrap()),
        bias: to_vec_f64(bias.grad(&grads).unwrap()),
        theta: th
            .iter()
            .map(|x| scalar_f64(x.grad(&grads).unwrap()))
            .collect(),
    }
}

/// `max |a − b| / max |b|`.
fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    d / scale.max(1e-300)
}

fn check_gradients(mode: SpikeMode, exact: bool) {
    let t = std::env::var("NF_T")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let tape = gradients(mode, ExecPath::Tape, true, t, |p| p);
    let fused = gradients(mode, ExecPath::Fused, exact, t, |p| p);
    let e_g = rel(&fused.g, &tape.g);
    let e_b = rel(&fused.bias, &tape.bias);
    println!(
        "{mode:?} exact={exact}: loss tape {} fused {}; rel err dL/dg {e_g:.2e}, dL/dbias {e_b:.2e}",
        tape.loss, fused.loss
    );
    assert!(tape.g.iter().any(|x| *x != 0.0));
    assert!(e_g <= 1e-6 && e_b <= 1e-6, "{e_g} {e_b}");
    for k in 0..N_THETA {
        let (a, b) = (fused.theta[k], tape.theta[k]);
        let e = (a - b).abs() / b.abs().max(1e-300);
        println!("  θ[{k}]: fused {a:.10e} tape {b:.10e} rel err {e:.2e}");
        assert!(b != 0.0 && e <= 1e-6, "θ[{k}]: {a} vs {b}");
    }
}

#[test]
fn fused_gradients_match_the_tape_rate_mode() {
    check_gradients(SpikeMode::Rate, true);
    check_gradients(SpikeMode::Rate, false);
}

#[test]
fn fused_gradients_match_the_tape_surrogate_mode() {
    check_gradients(SpikeMode::Surrogate, true);
    check_gradients(SpikeMode::Surrogate, false);
}

#[test]
fn fused_gradients_match_the_tape_hard_mode_voltage_only() {
    // hard spikes carry no gradient: only the voltage term of the loss contributes
    check_gradients(SpikeMode::Hard, true);
}

#[test]
fn gradients_do_not_depend_on_checkpoints_or_threads() {
    let t = 500;
    let a = gradients(SpikeMode::Surrogate, ExecPath::Fused, false, t, |p| p);
    let b = gradients(SpikeMode::Surrogate, ExecPath::Fused, false, t, |p| {
        p.with_checkpoint_every(7)
            .unwrap()
            .with_fused_threads(1)
            .unwrap()
    });
    let c = gradients(SpikeMode::Surrogate, ExecPath::Fused, false, t, |p| {
        p.with_checkpoint_every(10_000)
            .unwrap()
            .with_fused_threads(3)
            .unwrap()
    });
    for other in [&b, &c] {
        assert_eq!(a.loss.to_bits(), other.loss.to_bits());
        assert_eq!(a.g, other.g);
        assert_eq!(a.bias, other.bias);
        assert_eq!(a.theta, other.theta);
    }
}

#[test]
fn fused_bad_input_gives_typed_errors() {
    let ctx = Ctx::cpu();
    let t = 50;
    let mut gv = conductance(t, 1);
    gv[20 * 4 + 1] = -1e-7;
    let g = ctx.tensor(gv, [t, 1, 4]);
    match run(
        &ctx,
        params(&ctx),
        g,
        None,
        SpikeMode::Hard,
        ExecPath::Fused,
        false,
        |p| p,
    ) {
        Err(Error::InvalidParameter { field, .. }) => assert!(
            field.contains("syn_conductance_s")
                && field.contains("unit 1")
                && field.contains("step 20"),
            "{field}"
        ),
        other => panic!("expected InvalidParameter, got {:?}", other.map(|_| ())),
    }
    let mut gv = conductance(t, 1);
    gv[3 * 4 + 2] = f64::NAN;
    let g = ctx.tensor(gv, [t, 1, 4]);
    assert!(matches!(
        run(
            &ctx,
            params(&ctx),
            g,
            None,
            SpikeMode::Hard,
            ExecPath::Fused,
            false,
            |p| p
        ),
        Err(Error::InvalidParameter { .. })
    ));
    // an exploding state (huge bias current) is reported with variable, step and unit
    let g = ctx.tensor(conductance(t, 1), [t, 1, 4]);
    let bias = ctx.tensor(vec![0.0, 0.0, f64::INFINITY, 0.0], [1, 4]);
    match run(
        &ctx,
        params(&ctx),
        g,
        Some(bias),
        SpikeMode::Hard,
        ExecPath::Fused,
        false,
        |p| p.with_check_every(10).unwrap(),
    ) {
        Err(Error::NonFinite {
            buffer, step, unit, ..
        }) => {
            assert!(buffer.starts_with("nerlab."), "{buffer}");
            assert_eq!((step, unit), (9, 2));
        }
        other => panic!("expected NonFinite, got {:?}", other.map(|_| ())),
    }
    // wrong width of the conductance trace
    let g = ctx.tensor(vec![0.0; t * 3], [t, 1, 3]);
    assert!(
        run(
            &ctx,
            params(&ctx),
            g,
            None,
            SpikeMode::Hard,
            ExecPath::Fused,
            false,
            |p| p
        )
        .is_err()
    );
    assert!(matches!(
        NerlabPool::new(params(&ctx), SpikeMode::Hard).with_checkpoint_every(0),
        Err(Error::InvalidParameter { .. })
    ));
}
