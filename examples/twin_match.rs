//! How well each smooth twin matches the spiking (hard) fast pool: pool mean rate and mean force
//! under constant drives, for several time steps and pool sizes (issue 9 item 4).
//!
//! Protocol: constant drive `dc + max(0, N(0,1))` Hz (MyoGen's), 400 Poisson inputs, p = 0.3,
//! w = 0.05 µS, seed 42, `duration` s (default 2 s); observables over the second half: pool mean
//! rate = spikes of all units / (units · seconds) (Hz), mean force (N). Models: the hard network,
//! the sigmoid (rate-mode) twin at smooth gain 1 and 1.45 (the value the recording fit starts
//! from), and the mean-field twin (`smooth_twin = meanfield`, no gain). Prints one markdown table.
//!
//! Each model runs with seeds 1..=S (network, inputs, noise); the table gives the seed means and,
//! for the hard network, the standard error of its mean over the seeds (the window means of the
//! spiking pool fluctuate from seed to seed because all units share the same 400 inputs).
//!
//! `cargo run --release --example twin_match -- [duration_s] [seeds] [sizes…]`
//! (defaults: 2 s; 3 seeds; sizes 100 400 800; dts 1e-4, 2.5e-4, 5e-4 s; drives 20–100 Hz).

use myodiff::drive::NoiseKind;
use myodiff::fit::smooth::{constant_drive_rate_force, smooth_config};
use myodiff::network::{NetworkConfig, SmoothTwin};

const DRIVES_HZ: [f64; 5] = [20.0, 40.0, 60.0, 80.0, 100.0];

/// Per drive: (pool mean rate over the second half in Hz, mean force over the second half in N).
fn run(cfg: &NetworkConfig) -> myodiff::Result<Vec<(f64, f64)>> {
    constant_drive_rate_force(cfg, &DRIVES_HZ)
}

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |a: &String, name: &str| -> myodiff::Result<f64> {
        a.parse()
            .map_err(|_| myodiff::Error::invalid(name, a, "a number"))
    };
    let duration_s = match args.first() {
        Some(a) => parse(a, "duration_s")?,
        None => 2.0,
    };
    let seeds = match args.get(1) {
        Some(a) => parse(a, "seeds")? as u64,
        None => 3,
    };
    let sizes: Vec<usize> = if args.len() > 2 {
        args[2..]
            .iter()
            .map(|a| parse(a, "n_mn").map(|x| x as usize))
            .collect::<myodiff::Result<_>>()?
    } else {
        vec![100, 400, 800]
    };
    println!(
        "Constant drive dc + max(0, N(0,1)) Hz, {duration_s} s, second-half means, mean over seeds 1–{seeds}; rate = pool mean over all units (Hz), force (N); ± = SE of the hard mean over seeds; Δ = twin − hard."
    );
    println!();
    println!(
        "| n_mn | dt (ms) | drive (Hz) | hard rate | hard force | sigmoid×1 rate / force | sigmoid×1.45 rate / force | mean-field rate / force | mean-field Δrate (Hz) | mean-field Δforce (%) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut worst = (0.0f64, 0.0f64);
    for &n_mn in &sizes {
        for dt_s in [1e-4, 2.5e-4, 5e-4] {
            let base = NetworkConfig {
                n_mn,
                n_dd: 400,
                dt_s,
                duration_s,
                drive_noise: NoiseKind::Rectified,
                ..NetworkConfig::default()
            };
            let mut per_seed = Vec::new();
            for seed in 1..=seeds {
                let base = NetworkConfig {
                    seed,
                    ..base.clone()
                };
                per_seed.push([
                    run(&base)?,
                    run(&smooth_config(&base))?,
                    run(&NetworkConfig {
                        smooth_synaptic_gain: 1.45,
                        ..smooth_config(&base)
                    })?,
                    run(&NetworkConfig {
                        smooth_twin: SmoothTwin::MeanField,
                        ..smooth_config(&base)
                    })?,
                ]);
            }
            // seed mean and SE of the mean of model m, drive k, observable o (0 rate, 1 force)
            let stat = |m: usize, k: usize, o: usize| -> (f64, f64) {
                let v: Vec<f64> = per_seed
                    .iter()
                    .map(|r| if o == 0 { r[m][k].0 } else { r[m][k].1 })
                    .collect();
                let n = v.len() as f64;
                let mean = v.iter().sum::<f64>() / n;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
                (mean, (var / n).sqrt())
            };
            let mean_of = |m: usize| -> Vec<(f64, f64)> {
                (0..DRIVES_HZ.len())
                    .map(|k| (stat(m, k, 0).0, stat(m, k, 1).0))
                    .collect()
            };
            let (sig1, sig145, mf) = (mean_of(1), mean_of(2), mean_of(3));
            for (k, d) in DRIVES_HZ.iter().enumerate() {
                let ((hr, hr_se), (hf, hf_se)) = (stat(0, k, 0), stat(0, k, 1));
                let (mr, mfo) = mf[k];
                let df = if hf > 0.0 {
                    100.0 * (mfo - hf) / hf
                } else {
                    f64::NAN
                };
                worst.0 = worst.0.max((mr - hr).abs());
                if hf > 0.0 {
                    worst.1 = worst.1.max(df.abs());
                }
                println!(
                    "| {n_mn} | {:.2} | {d:.0} | {hr:.3} ± {hr_se:.3} | {hf:.4} ± {hf_se:.4} | {:.3} / {:.4} | {:.3} / {:.4} | {mr:.3} / {mfo:.4} | {:+.3} | {:+.1} |",
                    dt_s * 1e3,
                    sig1[k].0,
                    sig1[k].1,
                    sig145[k].0,
                    sig145[k].1,
                    mr - hr,
                    df
                );
            }
        }
    }
    println!();
    println!(
        "Mean-field twin: worst |Δrate| {:.3} Hz (target ≤ 1), worst |Δforce| {:.1} % (target ≤ 5, rows with hard force > 0).",
        worst.0, worst.1
    );
    Ok(())
}
