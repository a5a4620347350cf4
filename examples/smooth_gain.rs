//! Calibrating the smooth (rate-mode) network as a surrogate of the hard spiking one:
//! `NetworkConfig::smooth_synaptic_gain`.
//!
//! For constant drives (Hz) it runs the hard network once and the smooth network at each gain,
//! and prints the mean force over the second half (N) and the mean rate of active units (> 2 Hz)
//! side by side, then the gain `fit::smooth::calibrate_smooth_gain` picks (what
//! `[surrogate] auto_gain = true` does before a recording fit).
//!
//! `cargo run --release --example smooth_gain -- [n_mn] [dt_s] [gains…]`
//! (defaults: 200 MNs, dt 2.5e-4 s, gains 1.0 1.3 1.45 1.6; 400 inputs, 2 s per run).

use myodiff::drive::{DriveParams, DriveRate, GeneratorMode, NoiseKind};
use myodiff::fit::smooth::{run_network, smooth_config};
use myodiff::kernel::{Ctx, to_vec_f64};
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig};
use myodiff::neuron::spike::SpikeMode;

/// (mean force of the second half in N, active units, their mean rate in Hz).
fn run(cfg: &NetworkConfig, dc_hz: f64) -> myodiff::Result<(f64, usize, f64)> {
    let ctx = Ctx::cpu();
    let drive = DriveRate::new(
        DriveParams::constant(&ctx, dc_hz),
        cfg.drive_noise_spec(),
        cfg.rate_clip,
    );
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let (f, s) = run_network(cfg, &ctx, 1, Box::new(drive), w)?;
    let n = f.dims()[0];
    let (f, s) = (to_vec_f64(f), to_vec_f64(s));
    let h = n / 2;
    let secs = (n - h) as f64 * cfg.dt_s;
    let rates: Vec<f64> = (0..cfg.n_mn)
        .map(|i| (h..n).map(|t| s[t * cfg.n_mn + i]).sum::<f64>() / secs)
        .filter(|r| *r > 2.0)
        .collect();
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    Ok((
        f[h..].iter().sum::<f64>() / (n - h) as f64,
        rates.len(),
        mean,
    ))
}

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, name: &str, default: f64| -> myodiff::Result<f64> {
        match args.get(i) {
            None => Ok(default),
            Some(a) => a
                .parse()
                .map_err(|_| myodiff::Error::invalid(name, a, "a number")),
        }
    };
    let n_mn = num(0, "n_mn", 200.0)? as usize;
    let dt_s = num(1, "dt_s", 2.5e-4)?;
    let gains: Vec<f64> = if args.len() > 2 {
        (2..args.len())
            .map(|i| num(i, "gain", 1.0))
            .collect::<myodiff::Result<_>>()?
    } else {
        vec![1.0, 1.3, 1.45, 1.6]
    };
    let base = NetworkConfig {
        n_mn,
        n_dd: 400,
        dt_s,
        duration_s: 2.0,
        drive_noise: NoiseKind::Rectified,
        ..NetworkConfig::default()
    };
    let hard = NetworkConfig {
        spike_mode: SpikeMode::Hard,
        generator_mode: GeneratorMode::Hard,
        ..base.clone()
    };
    println!("n_mn {n_mn}, dt {dt_s} s; force N (second half) / active units / mean rate Hz");
    for dc in [50.0, 70.0, 90.0] {
        let (f, a, r) = run(&hard, dc)?;
        print!("dc {dc:>5.1} Hz | hard {f:7.2} N {a:4} {r:5.1} Hz");
        for g in &gains {
            let cfg = NetworkConfig {
                smooth_synaptic_gain: *g,
                ..smooth_config(&base)
            };
            let (f, a, r) = run(&cfg, dc)?;
            print!(" | smooth×{g} {f:7.2} N {a:4} {r:5.1} Hz");
        }
        println!();
    }
    let (g, _) = myodiff::fit::smooth::calibrate_smooth_gain(&base, &[50.0, 70.0, 90.0], 2.0, 8)?;
    println!("calibrate_smooth_gain (equal geometric-mean force ratio at 50/70/90 Hz): {g:.3}");
    Ok(())
}
