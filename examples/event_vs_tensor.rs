//! Development aid: event-time network vs the tensor (hard-spike) network on the same seed.
use myodiff::drive::rate::DriveParams;
use myodiff::event::{EventDrive, EventNetwork, Observable, RunOptions};
use myodiff::kernel::{BackendKind, Ctx, ExecPath, to_vec_f64};
use myodiff::network::{MYOGEN_WEIGHT_S, MuscleParams, NetworkConfig, build};
fn main() -> myodiff::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let n_mn: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let dur: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let dc: f64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let cfg = NetworkConfig {
        n_mn,
        n_dd: 400,
        duration_s: dur,
        ..Default::default()
    };
    let ctx = Ctx::new(BackendKind::Flex)?.with_precision(myodiff::kernel::Precision::F64);
    let muscle = MuscleParams::from_config(&cfg, &ctx)?;
    let drive = DriveParams::watanabe_oscillating(&ctx, dc);
    let mut sim = build(
        &cfg,
        &ctx,
        1,
        drive,
        ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]),
        &muscle,
    )?;
    let r = sim.run_path(ExecPath::Fused)?;
    let f = to_vec_f64(r.trace("force_n")?);
    let res = r.result(0)?;
    let n_t = f.len();
    let mean_t = f[n_t / 2..].iter().sum::<f64>() / (n_t - n_t / 2) as f64;
    let sp_t: usize = res.spike_times_s.iter().map(|s| s.len()).sum();
    let net = EventNetwork::new(&cfg)?;
    let run = net.run(
        &EventDrive::watanabe(dc),
        MYOGEN_WEIGHT_S,
        &RunOptions::default(),
    )?;
    let mean_e = Observable::MeanForce {
        t0_s: dur / 2.0,
        t1_s: dur,
    }
    .eval(&run)?
    .0;
    let sp_e: usize = run.spikes_s.iter().map(|s| s.len()).sum();
    println!(
        "tensor: mean force {mean_t:.5} N, spikes {sp_t}; event: {mean_e:.5} N, spikes {sp_e}"
    );
    Ok(())
}
