//! Descending-drive benchmark at MyoGen's Watanabe size: 400 Poisson inputs → 800 motor neurons,
//! p = 0.3, w = 0.05 µS, Exp2Syn, 1 ms delay, 5 s at dt = 0.1 ms (50,000 steps), batch 1, f32,
//! flex backend. Drive: 40 Hz + 20 sin(2π·20 t) + N(0,1).
//!
//! `cargo run --release --example drive_bench -- [n_steps] [cases…]`
//! cases: fused_fwd fused_grad tape_fwd tape_grad (default: all).

use std::time::Instant;

use myodiff::drive::synapse::MYOGEN_WEIGHT_S;
use myodiff::drive::{
    DD_SPIKES, DriveNoise, DriveParams, DriveRate, GeneratorMode, InputPopulation,
    InputPopulationConfig, RateClip, SYN_CONDUCTANCE_S, Synapse, SynapseConfig,
};
use myodiff::kernel::{Ctx, ExecPath, Simulation, scalar_f64};

fn run(n_steps: usize, path: ExecPath, grad: bool) -> myodiff::Result<(f64, f64, f64)> {
    let ctx = if grad {
        Ctx::cpu().autodiff()
    } else {
        Ctx::cpu()
    };
    let dc = ctx.tensor(vec![40.0], [1, 1]);
    let dc = if grad { dc.require_grad() } else { dc };
    let mut p = DriveParams::watanabe_oscillating(&ctx, 40.0);
    p.dc_hz = dc.clone();
    let t0 = Instant::now();
    let mut sim = Simulation::new(ctx.clone(), 1, 1e-4, n_steps)?;
    sim.add_stage(DriveRate::new(p, DriveNoise::default(), RateClip::Relu));
    sim.add_stage(InputPopulation::new(InputPopulationConfig {
        n_dd: 400,
        mode: if grad {
            GeneratorMode::Pathwise
        } else {
            GeneratorMode::Hard
        },
        ..Default::default()
    })?);
    sim.add_stage(Synapse::new(
        SynapseConfig::default(),
        ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]),
    )?);
    sim.record(&[SYN_CONDUCTANCE_S, DD_SPIKES]);
    sim.check_finite(std::env::var("DRIVE_BENCH_NO_CHECK").is_err());
    let ro = sim.run_path(path)?;
    let g = ro.trace(SYN_CONDUCTANCE_S)?;
    let loss = g.mean() * 1e9;
    let mean_ns = scalar_f64(loss.clone());
    let t_fwd = t0.elapsed().as_secs_f64();
    let mut dldc = f64::NAN;
    if grad {
        let grads = loss.backward();
        dldc = scalar_f64(dc.grad(&grads).expect("gradient"));
    }
    let t_all = t0.elapsed().as_secs_f64();
    let n_dd: f64 = scalar_f64(ro.trace(DD_SPIKES)?.sum());
    println!(
        "  {path:?} grad={grad}: forward {t_fwd:.3} s, total {t_all:.3} s | mean g {mean_ns:.4} nS, DD spikes {n_dd}, dL/dDC {dldc:.5e}"
    );
    Ok((t_fwd, t_all, mean_ns))
}

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n_steps = args.first().and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let cases: Vec<&str> = args.iter().skip(1).map(|s| s.as_str()).collect();
    let want = |c: &str| cases.is_empty() || cases.contains(&c);
    println!("drive benchmark: 400 → 800, p = 0.3, {n_steps} steps of 0.1 ms, batch 1, f32, flex");
    if want("fused_fwd") {
        run(n_steps, ExecPath::Fused, false)?;
    }
    if want("fused_grad") {
        run(n_steps, ExecPath::Fused, true)?;
    }
    if want("tape_fwd") {
        run(n_steps, ExecPath::Tape, false)?;
    }
    if want("tape_grad") {
        run(n_steps, ExecPath::Tape, true)?;
    }
    Ok(())
}
