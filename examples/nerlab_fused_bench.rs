//! NERLab pool benchmark at MyoGen's Watanabe size: 800 motor neurons, 5 s at dt = 0.1 ms
//! (50,000 steps), f32, flex backend, fused path (one custom op) — forward, and forward +
//! backward of a loss on the spike trace (surrogate mode) w.r.t. the conductance trace and the
//! per-unit conductance densities. The input is a synthetic conductance trace (tonic level rising
//! with the unit index + 20 Hz modulation + noise), so most units fire.
//!
//! `cargo run --release --example nerlab_fused_bench -- [n_steps] [batch] [cases…]`
//! cases: fwd grad exact_fwd tape_fwd network (default: fwd grad). `network` = the whole assembled
//! faithful Watanabe network (drive → 400 Poisson inputs → synapses → pool → force, `n_steps`
//! steps, constant 40 Hz drive) forward on the fused path. Env `NERLAB_THREADS` sets the threads.

use std::time::Instant;

use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation, scalar_f64};
use myodiff::neuron::SpikeMode;
use myodiff::neuron::nerlab::{self, NerlabPool, NerlabTensors};
use myodiff::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use myodiff::neuron::recruitment::{RecruitmentMode, RecruitmentThresholds};

const N: usize = 800;
const DT_S: f64 = 1e-4;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse::<f64>().ok()))
                .flatten()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn conductance(t_steps: usize, batch: usize) -> Vec<f32> {
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut out = Vec::with_capacity(t_steps * batch * N);
    for t in 0..t_steps {
        let ph = (2.0 * std::f64::consts::PI * 20.0 * t as f64 * DT_S).sin();
        for b in 0..batch {
            for i in 0..N {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                let level = (1.0 + 8.0 * i as f64 / N as f64) * 1e-6 * (1.0 + 0.05 * b as f64);
                out.push((level * (1.0 + 0.3 * ph) * (0.5 + u)) as f32);
            }
        }
    }
    out
}

fn run(
    t_steps: usize,
    batch: usize,
    path: ExecPath,
    grad: bool,
    exact: bool,
) -> myodiff::Result<(f64, f64, f64)> {
    let ctx = if grad {
        Ctx::cpu().autodiff()
    } else {
        Ctx::cpu()
    };
    let rt = RecruitmentThresholds::new(N, 100.0, 5.0, 1.0, RecruitmentMode::Combined)?;
    let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?;
    let mut params = NerlabTensors::new(&ctx, &p)?;
    if grad {
        params.gnabar = params.gnabar.require_grad();
        params.gksbar = params.gksbar.require_grad();
    }
    let g = ctx.tensor_f32(conductance(t_steps, batch), [t_steps, batch, N]);
    let g = if grad { g.require_grad() } else { g };
    let t0 = Instant::now();
    let mut pool = NerlabPool::new(
        params.clone(),
        if grad {
            SpikeMode::Surrogate
        } else {
            SpikeMode::Hard
        },
    )
    .with_fused_exact(exact);
    if let Ok(th) = std::env::var("NERLAB_THREADS") {
        pool = pool.with_fused_threads(th.parse().expect("NERLAB_THREADS"))?;
    }
    let mut sim = Simulation::new(ctx.clone(), batch, DT_S, t_steps)?;
    sim.add_stage(pool);
    sim.add_input(
        BufferSpec::new(nerlab::SYN_CONDUCTANCE_S, &[N], "S"),
        g.clone(),
    )?;
    let r = sim.run_path(path)?;
    let spikes = r.trace(nerlab::SPIKES)?;
    let n_spk = scalar_f64(spikes.clone().sum().detach());
    let t_fwd = t0.elapsed().as_secs_f64();
    if grad {
        let t1 = Instant::now();
        let loss = spikes.sum();
        let grads = loss.backward();
        let gg = g.grad(&grads).expect("grad g");
        let gn = params.gnabar.grad(&grads).expect("grad gnabar");
        let _ = (scalar_f64(gg.abs().sum()), scalar_f64(gn.abs().sum()));
        let t_bwd = t1.elapsed().as_secs_f64();
        return Ok((t_fwd, t_bwd, n_spk));
    }
    Ok((t_fwd, 0.0, n_spk))
}

fn network(t_steps: usize, batch: usize) -> myodiff::Result<(f64, f64)> {
    use myodiff::drive::rate::{DriveParams, NoiseKind};
    use myodiff::network::{MYOGEN_WEIGHT_S, MembraneModel, MuscleParams, NetworkConfig, build};
    let ctx = Ctx::cpu();
    let cfg = NetworkConfig {
        model: MembraneModel::Faithful,
        duration_s: t_steps as f64 * DT_S,
        drive_noise: NoiseKind::Rectified,
        ..Default::default()
    };
    let t0 = Instant::now();
    let muscle = MuscleParams::from_config(&cfg, &ctx)?;
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let mut sim = build(
        &cfg,
        &ctx,
        batch,
        DriveParams::constant(&ctx, 40.0),
        w,
        &muscle,
    )?;
    let r = sim.run_path(ExecPath::Fused)?;
    let n_spk = scalar_f64(r.trace(nerlab::SPIKES)?.sum());
    Ok((t0.elapsed().as_secs_f64(), n_spk))
}

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let t_steps: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut cases: Vec<&str> = args.iter().skip(2).map(|s| s.as_str()).collect();
    if cases.is_empty() {
        cases = vec!["fwd", "grad"];
    }
    println!(
        "NERLab pool, {N} units × {t_steps} steps, batch {batch}, f32 flex, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for case in cases {
        if case == "network" {
            let (t, n_spk) = network(t_steps, batch)?;
            println!(
                "   network: build + forward {t:7.3} s; {n_spk} spikes; peak RSS {:.0} MB",
                peak_rss_mb()
            );
            continue;
        }
        let (path, grad, exact) = match case {
            "fwd" => (ExecPath::Fused, false, false),
            "exact_fwd" => (ExecPath::Fused, false, true),
            "grad" => (ExecPath::Fused, true, false),
            "tape_fwd" => (ExecPath::Tape, false, false),
            other => panic!("unknown case {other}"),
        };
        let (tf, tb, n_spk) = run(t_steps, batch, path, grad, exact)?;
        let rate = n_spk / (batch * N) as f64 / (t_steps as f64 * DT_S);
        println!(
            "{case:>10}: forward {tf:7.3} s{}; {n_spk} spikes ({rate:.1} Hz/unit); peak RSS {:.0} MB",
            if grad {
                format!(", backward {tb:7.3} s (fwd+bwd {:.3} s)", tf + tb)
            } else {
                String::new()
            },
            peak_rss_mb()
        );
    }
    Ok(())
}
