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

/// The faithful (NERLab) pool on the stream path runs the fused scan's own block step tick by
/// tick: in f64 its spike trains equal the fused path's and the force agrees to 1e-9.
#[test]
fn the_faithful_pool_on_the_stream_path_equals_the_fused_path() {
    let ctx = Ctx::cpu().f64();
    let mut c = cfg(40, 0.2, SpikeMode::Hard, GeneratorMode::Hard);
    c.model = MembraneModel::Faithful;
    let (dc, w) = rows(&ctx);
    let fused = sim(&c, &ctx, &dc, &w).run_path(ExecPath::Fused).unwrap();
    let f = to_vec_f64(fused.trace("spikes").unwrap());
    assert!(f.iter().sum::<f64>() > 50.0, "the pool fires");
    // one thread; the pipeline; the pipeline and the pool's helper thread (same result)
    for threads in [1, 2, 3] {
        let mut s = sim(&c, &ctx, &dc, &w);
        s.threads(threads).unwrap();
        let stream = s.run_path(ExecPath::Stream).unwrap();
        let sp = to_vec_f64(stream.trace("spikes").unwrap());
        assert_eq!(sp, f, "spike trains differ ({threads} threads)");
        let d = max_rel(
            &to_vec_f64(stream.trace("force_n").unwrap()),
            &to_vec_f64(fused.trace("force_n").unwrap()),
        );
        assert!(d <= 1e-9, "force differs by {d:.3e} ({threads} threads)");
    }
}

/// The memory limit: a typed error naming `memory_limit` when the rollout would exceed it. The
/// stream path keeps hard spikes as events, so a limit far below the dense spike trace passes
/// there and is refused up front on the fused path (which materialises every buffer's trace);
/// the stream adjoint's checkpoints are charged before it runs; 0 is refused.
#[test]
fn memory_limit_is_a_typed_error_and_counts_spike_events() {
    let ctx = Ctx::cpu().f64();
    let c = cfg(60, 0.25, SpikeMode::Hard, GeneratorMode::Hard);
    let (dc, w) = rows(&ctx);
    let field = |e: myodiff::Error| match e {
        myodiff::Error::InvalidParameter { field, .. } => field,
        other => panic!("expected a typed parameter error, got {other}"),
    };
    // dense f64 spikes would be 2,500 steps × 2 rows × 60 units × 8 B = 2.4 MB
    let limit = 600_000;
    let mut s = sim(&c, &ctx, &dc, &w);
    s.memory_limit_bytes(limit).unwrap();
    let r = s.run_path(ExecPath::Stream).unwrap();
    let ev = r.events.get("spikes").expect("spikes recorded as events");
    assert!(ev.len() > 100, "the pool fires ({} spikes)", ev.len());
    let mut s = sim(&c, &ctx, &dc, &w);
    s.memory_limit_bytes(limit).unwrap();
    let e = s
        .run_path(ExecPath::Fused)
        .err()
        .expect("fused path refused");
    assert_eq!(field(e), "memory_limit");
    // a limit below the dense force trace (2,500 × 2 × 8 B = 40 kB) stops the stream rollout
    let mut s = sim(&c, &ctx, &dc, &w);
    s.memory_limit_bytes(20_000).unwrap();
    assert_eq!(
        field(s.run_path(ExecPath::Stream).err().unwrap()),
        "memory_limit"
    );
    // the adjoint's checkpoints (every tick: 2,500 snapshots) do not fit either
    let mut s = sim(&c, &ctx, &dc, &w);
    s.memory_limit_bytes(limit).unwrap();
    let e = s
        .stream_gradient(1, |_| Ok(Default::default()))
        .err()
        .expect("checkpoints refused");
    assert!(e.to_string().contains("checkpoints"), "{e}");
    assert_eq!(field(e), "memory_limit");
    assert_eq!(
        field(sim(&c, &ctx, &dc, &w).memory_limit_bytes(0).err().unwrap()),
        "memory_limit"
    );
}
