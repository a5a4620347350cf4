//! Faithful pool under constant Poisson drive vs MyoGen's pool statistics (fixture 3).
//! `cargo run --release --example pool_stats -- [dc_hz] [duration_s] [tape|fused] [faithful|fast]`
use myodiff::drive::rate::{DriveParams, NoiseKind};
use myodiff::kernel::{Ctx, ExecPath, to_vec_f64};
use myodiff::muscle::force::GainMode;
use myodiff::network::{MYOGEN_WEIGHT_S, MembraneModel, MuscleParams, NetworkConfig, build};

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, field: &str, default: f64| -> myodiff::Result<f64> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| myodiff::Error::invalid(field, s, "a number")),
        }
    };
    let dc = num(1, "dc_hz", 40.0)?;
    let dur = num(2, "duration_s", 2.0)?;
    let path = if args.get(3).map(|s| s == "fused").unwrap_or(false) {
        ExecPath::Fused
    } else {
        ExecPath::Tape
    };
    let model: MembraneModel = match args.get(4) {
        Some(s) => s.parse()?,
        None => MembraneModel::Faithful,
    };
    let ctx = Ctx::cpu();
    let cfg = NetworkConfig {
        model,
        duration_s: dur,
        drive_noise: NoiseKind::Rectified,
        gain: GainMode::MyogenCompat,
        fast_synaptic_gain: match std::env::var("FAST_GAIN") {
            Ok(v) => v
                .parse()
                .map_err(|_| myodiff::Error::invalid("FAST_GAIN", &v, "a positive number"))?,
            Err(_) => myodiff::network::FAST_SYNAPTIC_GAIN,
        },
        ..Default::default()
    };
    let drive = DriveParams::constant(&ctx, dc);
    let muscle = MuscleParams::from_config(&cfg, &ctx)?;
    let t0 = std::time::Instant::now();
    let mut sim = build(
        &cfg,
        &ctx,
        1,
        drive,
        ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]),
        &muscle,
    )?;
    let r = sim.run_path(path)?;
    let el = t0.elapsed().as_secs_f64();
    let res = r.result(0)?;
    let active = res.spike_times_s.iter().filter(|s| s.len() > 1).count();
    let rates: Vec<f64> = res
        .spike_times_s
        .iter()
        .filter(|s| s.len() >= 2)
        .map(|s| (s.len() - 1) as f64 / (s[s.len() - 1] - s[0]))
        .filter(|r| *r >= 0.5)
        .collect();
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let f = to_vec_f64(r.trace("force_n")?);
    let half = f.len() / 2;
    let fmean = f[half..].iter().sum::<f64>() / (f.len() - half) as f64;
    println!(
        "dc {dc} Hz, {dur} s, {path:?}: {el:.2} s wall; active(>1 spike) {active}; FR mean {mean:.2} Hz (n {}); force mean 2nd half {fmean:.3} N (MyoGen-compatible constant twitch gain)",
        rates.len()
    );
    Ok(())
}
