//! The open-loop network (drive → inputs → synapses → fast pool → twitch force) on the streaming
//! path: its forward equals the tape and fused paths (f64: spike trains identical, force to
//! 1e-9), and its adjoint equals burn's autodiff through the tape (smooth mode, and the surrogate
//! pool with expected-count input gradients).

use myodiff::drive::generator::GeneratorMode;
use myodiff::drive::rate::DriveParams;
use myodiff::kernel::{Ctx, ExecPath, Rollout, Simulation, to_vec_f64};
use myodiff::network::{self, MembraneModel, MuscleParams, NetworkConfig};
use myodiff::neuron::spike::SpikeMode;

fn cfg(n_mn: usize, duration_s: f64, mode: SpikeMode, generator: GeneratorMode) -> NetworkConfig {
    NetworkConfig {
        n_mn,
        duration_s,
        spike_mode: mode,
        generator_mode: generator,
        ..Default::default()
    }
}

fn sim(
    cfg: &NetworkConfig,
    ctx: &Ctx,
    dc: &burn::tensor::Tensor<2>,
    w: &burn::tensor::Tensor<2>,
) -> Simulation {
    let muscle = MuscleParams::from_config(cfg, ctx).unwrap();
    let mut drive = DriveParams::watanabe_oscillating(ctx, 40.0);
    drive.dc_hz = dc.clone();
    network::build(cfg, ctx, 2, drive, w.clone(), &muscle).unwrap()
}

fn rows(ctx: &Ctx) -> (burn::tensor::Tensor<2>, burn::tensor::Tensor<2>) {
    (
        ctx.tensor(vec![40.0, 55.0], [2, 1]),
        ctx.tensor(vec![5e-8, 6e-8], [2, 1]),
    )
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())) + 1e-300;
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn stream_equals_tape_and_fused_on_the_open_loop_network() {
    let ctx = Ctx::cpu().f64();
    let c = cfg(60, 0.25, SpikeMode::Hard, GeneratorMode::Hard);
    let (dc, w) = rows(&ctx);
    let run = |p: ExecPath| -> Rollout { sim(&c, &ctx, &dc, &w).run_path(p).unwrap() };
    let stream = run(ExecPath::Stream);
    for other in [run(ExecPath::Tape), run(ExecPath::Fused)] {
        let s = to_vec_f64(stream.trace("spikes").unwrap());
        let o = to_vec_f64(other.trace("spikes").unwrap());
        assert!(o.iter().sum::<f64>() > 100.0, "the pool fires");
        assert_eq!(s, o, "spike trains differ");
        let d = max_rel(
            &to_vec_f64(stream.trace("force_n").unwrap()),
            &to_vec_f64(other.trace("force_n").unwrap()),
        );
        assert!(d <= 1e-9, "force differs by {d:.3e}");
    }
}

/// `d(mean force over the second half)/d(DC, w)` per row: tape autodiff vs the stream adjoint.
fn grads(c: &NetworkConfig) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let ctx = Ctx::cpu().f64().autodiff();
    let (dc, w) = rows(&ctx);
    let (dc, w) = (dc.require_grad(), w.require_grad());
    let out = sim(c, &ctx, &dc, &w).run().unwrap();
    let f = out.trace("force_n").unwrap();
    let n_t = out.n_steps;
    let loss = f.slice(n_t / 2..n_t).mean();
    let g = loss.backward();
    let tape = vec![
        to_vec_f64(dc.grad(&g).unwrap()),
        to_vec_f64(w.grad(&g).unwrap()),
    ];
    let ctx = Ctx::cpu().f64();
    let (dc, w) = rows(&ctx);
    let r = sim(c, &ctx, &dc, &w)
        .stream_gradient(50, |r| {
            let (t, b) = (r.n_steps, r.batch);
            let wt = 1.0 / ((t - t / 2) * b) as f64;
            let g = (0..t * b)
                .map(|i| if i / b >= t / 2 { wt } else { 0.0 })
                .collect();
            Ok([("force_n".to_string(), g)].into_iter().collect())
        })
        .unwrap();
    let gain = c.fast_synaptic_gain;
    let stream = vec![
        r.grads["drive_rate.dc_hz"].clone(),
        r.grads["synapse.weight_s"]
            .iter()
            .map(|g| g * gain)
            .collect(),
    ];
    (tape, stream)
}

fn assert_close(tape: &[Vec<f64>], stream: &[Vec<f64>], tol: f64) {
    for (name, (a, b)) in ["dc_hz", "weight_s"].iter().zip(stream.iter().zip(tape)) {
        eprintln!("{name}: stream {a:?} tape {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!(y.abs() > 0.0, "{name}: zero gradient");
            let rel = (x - y).abs() / y.abs();
            assert!(
                rel <= tol,
                "{name}: stream {x:e} tape {y:e} (rel {rel:.2e})"
            );
        }
    }
}

#[test]
fn stream_adjoint_equals_tape_autodiff_on_the_smooth_network() {
    let c = cfg(20, 0.05, SpikeMode::Rate, GeneratorMode::Rate);
    let (tape, stream) = grads(&c);
    assert_close(&tape, &stream, 1e-7);
}

#[test]
fn stream_adjoint_equals_tape_autodiff_with_surrogate_spikes() {
    let c = cfg(20, 0.05, SpikeMode::Surrogate, GeneratorMode::Expected);
    let (tape, stream) = grads(&c);
    assert_close(&tape, &stream, 1e-7);
}

#[test]
fn the_faithful_pool_has_no_stream_path_yet() {
    let ctx = Ctx::cpu();
    let mut c = cfg(10, 0.01, SpikeMode::Hard, GeneratorMode::Hard);
    c.model = MembraneModel::Faithful;
    let (dc, w) = rows(&ctx);
    let err = sim(&c, &ctx, &dc, &w)
        .run_path(ExecPath::Stream)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("has no host step"), "{err}");
}
