//! The streaming (tick-major host) path computes what the tape path computes: the closed loop with
//! every pathway (spindle, GTO, afferent populations, interneurons, Hill muscle, joint) in f64,
//! smooth and hard modes, several parameter rows; and its refusals are typed errors.

use myodiff::Error;
use myodiff::afferent::{AfferentKind, Stretch};
use myodiff::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams, Pathway};
use myodiff::drive::rate::DriveParams;
use myodiff::kernel::{Ctx, ExecPath, Rollout, to_vec_f64};
use myodiff::neuron::spike::SpikeMode;

fn all_pathways(n_mn: usize, duration_s: f64, mode: SpikeMode) -> ClosedLoopConfig {
    let path = |kind, n| {
        let mut p = Pathway::myogen(kind);
        p.pool.n = n;
        p
    };
    let mut cfg = ClosedLoopConfig {
        n_mn,
        duration_s,
        spike_mode: mode,
        stretch: vec![Stretch::Tap {
            onset_s: duration_s / 3.0,
            amplitude: 0.05,
            duration_s: 0.05,
        }],
        ia: Some(path(AfferentKind::Ia, 20)),
        ii: Some(path(AfferentKind::Ii, 16)),
        ib: Some(path(AfferentKind::Ib, 12)),
        ..Default::default()
    };
    // (interneurons at their default 2 nA rheobase: made much more excitable, the smooth pool's
    // sigmoid reset becomes chaotic — rounding differences of 1e-16 grow to 1e-2 in 30 ms)
    cfg.gii.n = 10;
    cfg.gib.n = 10;
    cfg
}

/// Two parameter rows (different drive, Ia weight, gamma drives and GTO gain).
fn two_rows(ctx: &Ctx) -> ClosedLoopParams {
    let col = |a: f64, b: f64| ctx.tensor(vec![a, b], [2, 1]);
    ClosedLoopParams {
        drive: DriveParams {
            dc_hz: col(55.0, 70.0),
            amp_hz: col(0.0, 10.0),
            freq_hz: col(0.0, 8.0),
            phase_rad: col(0.0, 0.3),
            noise_sd_hz: col(1.0, 2.0),
        },
        w_dd_s: col(5e-8, 6e-8),
        w_ia_s: col(5e-8, 8e-8),
        gamma_dyn_hz: col(50.0, 70.0),
        gamma_stat_hz: col(30.0, 40.0),
        gto_g1_hz: col(40.0, 60.0),
    }
}

fn run(cfg: &ClosedLoopConfig, ctx: &Ctx, params: &ClosedLoopParams, path: ExecPath) -> Rollout {
    let batch = params.w_ia_s.dims()[0];
    let mut sim = closed_loop::build(cfg, ctx, batch, params).unwrap();
    sim.record(&[
        "g_ia_s",
        "gii_mn_s",
        "gib_mn_s",
        "ia_spikes",
        "ib_spikes",
        "gib_spikes",
        "mn_current_a",
    ]);
    sim.run_path(path).unwrap()
}

/// Largest |a − b| / (max |b| + tiny) over every recorded trace, and the trace where it occurs.
fn worst_rel_diff(a: &Rollout, b: &Rollout) -> (String, f64) {
    let mut worst = (String::new(), 0.0);
    assert_eq!(a.recorded(), b.recorded());
    for name in &a.recorded() {
        let va = to_vec_f64(a.trace(name).unwrap());
        let vb = to_vec_f64(b.trace(name).unwrap());
        assert_eq!(va.len(), vb.len(), "{name}");
        let scale = vb.iter().fold(0.0f64, |m, x| m.max(x.abs())) + 1e-300;
        let d = va
            .iter()
            .zip(&vb)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale;
        if d > worst.1 {
            worst = (name.clone(), d);
        }
    }
    worst
}

#[test]
fn stream_equals_tape_in_the_smooth_closed_loop() {
    let ctx = Ctx::cpu().f64();
    let cfg = all_pathways(30, 0.15, SpikeMode::Rate);
    let params = two_rows(&ctx);
    let tape = run(&cfg, &ctx, &params, ExecPath::Tape);
    let stream = run(&cfg, &ctx, &params, ExecPath::Stream);
    let (name, d) = worst_rel_diff(&stream, &tape);
    assert!(d <= 1e-9, "largest relative difference {d:.3e} in `{name}`");
    // the loop is closed: the afferent pathways carry activity in both rows
    for name in ["g_ia_s", "gib_mn_s", "muscle_force_n"] {
        let v = to_vec_f64(stream.trace(name).unwrap());
        assert!(v.iter().any(|x| *x > 0.0), "{name} is all zero");
    }
}

#[test]
fn stream_equals_tape_in_the_hard_spiking_closed_loop() {
    let ctx = Ctx::cpu().f64();
    let cfg = all_pathways(60, 0.3, SpikeMode::Hard);
    let params = two_rows(&ctx);
    let tape = run(&cfg, &ctx, &params, ExecPath::Tape);
    let stream = run(&cfg, &ctx, &params, ExecPath::Stream);
    let spikes = |r: &Rollout, n: &str| to_vec_f64(r.trace(n).unwrap());
    for name in ["spikes", "ia_spikes"] {
        let (a, b) = (spikes(&stream, name), spikes(&tape, name));
        let count: f64 = b.iter().sum();
        assert!(count > 10.0, "{name}: only {count} spikes");
        assert_eq!(a, b, "{name}: spike trains differ");
    }
    let (name, d) = worst_rel_diff(&stream, &tape);
    assert!(d <= 1e-9, "largest relative difference {d:.3e} in `{name}`");
}

#[test]
fn stream_path_refusals_are_typed_errors() {
    // burn's autodiff cannot flow through the host loop: refused on an autodiff context
    let ctx = Ctx::cpu().f64().autodiff();
    let cfg = all_pathways(10, 0.01, SpikeMode::Rate);
    let params = ClosedLoopParams::myogen(&ctx, 50.0, 30.0);
    let err = closed_loop::build(&cfg, &ctx, 1, &params)
        .unwrap()
        .run_path(ExecPath::Stream)
        .err()
        .expect("refused");
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "path"),
        "{err}"
    );
}

/// The loss of the gradient checks: `Σ_t Σ_b (F/T + 100·θ/T + 0.01·Ia/T)` over the recorded
/// muscle force (N), joint angle (rad) and Ia rate (Hz) — so that the adjoint runs back through
/// the muscle, the joint and the spindle as well as the pool.
const LOSS: [(&str, f64); 3] = [
    ("muscle_force_n", 1.0),
    ("joint_angle_rad", 100.0),
    ("ia_hz", 0.01),
];

fn tape_grads(cfg: &ClosedLoopConfig) -> Vec<Vec<f64>> {
    let ctx = Ctx::cpu().f64().autodiff();
    let p = two_rows(&ctx);
    let leaves = [
        p.drive.dc_hz.clone().require_grad(),
        p.w_dd_s.clone().require_grad(),
        p.w_ia_s.clone().require_grad(),
        p.gamma_dyn_hz.clone().require_grad(),
        p.gamma_stat_hz.clone().require_grad(),
        p.gto_g1_hz.clone().require_grad(),
    ];
    let mut params = p.clone();
    params.drive.dc_hz = leaves[0].clone();
    params.w_dd_s = leaves[1].clone();
    params.w_ia_s = leaves[2].clone();
    params.gamma_dyn_hz = leaves[3].clone();
    params.gamma_stat_hz = leaves[4].clone();
    params.gto_g1_hz = leaves[5].clone();
    let out = closed_loop::build(cfg, &ctx, 2, &params)
        .unwrap()
        .run()
        .unwrap();
    let n_t = out.n_steps as f64;
    let mut loss = None;
    for (name, w) in LOSS {
        let l = out.trace(name).unwrap().sum().mul_scalar(w / n_t);
        loss = Some(match loss {
            Some(a) => a + l,
            None => l,
        });
    }
    let g = loss.unwrap().backward();
    leaves
        .iter()
        .map(|l| to_vec_f64(l.grad(&g).expect("gradient reached the parameter")))
        .collect()
}

fn stream_grads(cfg: &ClosedLoopConfig, checkpoint_every: usize) -> Vec<Vec<f64>> {
    let ctx = Ctx::cpu().f64();
    let params = two_rows(&ctx);
    let mut sim = closed_loop::build(cfg, &ctx, 2, &params).unwrap();
    let g = sim
        .stream_gradient(checkpoint_every, |r| {
            let n_t = r.n_steps as f64;
            Ok(LOSS
                .iter()
                .map(|(name, w)| (name.to_string(), vec![w / n_t; r.n_steps * r.batch]))
                .collect())
        })
        .unwrap();
    closed_loop::param_grads(&g.grads)
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// The stream path's adjoint equals burn's autodiff through the tape path (f64, smooth closed loop
/// with every pathway, two parameter rows): d(loss)/d(DC, w_DD, w_Ia, γ_dyn, γ_stat, G1).
#[test]
fn stream_adjoint_equals_tape_autodiff_through_the_closed_loop() {
    let cfg = all_pathways(12, 0.04, SpikeMode::Rate);
    let tape = tape_grads(&cfg);
    let stream = stream_grads(&cfg, 64);
    let names = [
        "dc_hz",
        "w_dd_s",
        "w_ia_s",
        "gamma_dyn_hz",
        "gamma_stat_hz",
        "g1_hz",
    ];
    for ((name, a), b) in names.iter().zip(&stream).zip(&tape) {
        assert_eq!(a.len(), b.len(), "{name}");
        eprintln!("{name}: stream {a:?} tape {b:?}");
        for (x, y) in a.iter().zip(b) {
            let rel = (x - y).abs() / y.abs().max(1e-300);
            assert!(
                rel <= 1e-7,
                "{name}: stream {x:.10e} tape {y:.10e} (rel {rel:.2e})"
            );
            assert!(y.abs() > 0.0, "{name}: zero gradient");
        }
    }
    // the checkpoint interval changes the memory, not the result
    for k in [1, 7, 400] {
        let other = stream_grads(&cfg, k);
        for (a, b) in other.iter().zip(&stream) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-12 * y.abs(), "K = {k}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn stream_gradient_bad_input_is_a_typed_error() {
    let ctx = Ctx::cpu().f64();
    let cfg = all_pathways(6, 0.01, SpikeMode::Rate);
    let params = ClosedLoopParams::myogen(&ctx, 50.0, 30.0);
    let mut sim = closed_loop::build(&cfg, &ctx, 1, &params).unwrap();
    for k in [0, 101] {
        let err = sim
            .stream_gradient(k, |_| Ok(Default::default()))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("checkpoint_every"), "{err}");
    }
    let err = sim
        .stream_gradient(10, |_| {
            Ok([("not_recorded".to_string(), vec![0.0; 100])]
                .into_iter()
                .collect())
        })
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not_recorded"), "{err}");
    let err = sim
        .stream_gradient(10, |_| {
            Ok([("muscle_force_n".to_string(), vec![0.0; 3])]
                .into_iter()
                .collect())
        })
        .err()
        .expect("refused");
    assert!(err.to_string().contains("muscle_force_n"), "{err}");
}
