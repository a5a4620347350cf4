//! Stretch reflex in the closed loop (MyoGen example 11's network, FDI muscle): a triangular
//! tendon tap (5 % of the fascicle length, 100 ms) during a weak steady contraction, with the
//! afferent pathways on and off. Prints the reflex force response (baseline, amplitude,
//! latency, time to peak) and the Ia response.
//!
//! `cargo run --release --example stretch_reflex [-- <n_mn> <duration_s> <dc_hz>]`
//! (defaults 120 MNs, 1.0 s, 40 Hz; the tap starts at 60 % of the duration).

use myodiff::afferent::Stretch;
use myodiff::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams, metrics};
use myodiff::kernel::{Ctx, ExecPath, to_vec_f64};

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n_mn, duration_s, dc_hz) = (arg(0, 120.0) as usize, arg(1, 1.0), arg(2, 40.0));
    let onset_s = 0.6 * duration_s;
    let ctx = Ctx::cpu();
    println!(
        "closed loop: {n_mn} MNs, {duration_s} s at dt 0.1 ms, drive {dc_hz} Hz, gamma 50 Hz, tap at {onset_s:.2} s (5 %, 100 ms)"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>11} {:>11} {:>11} {:>9} {:>8}",
        "pathways",
        "base (N)",
        "sd (N)",
        "ampl (N)",
        "latency(ms)",
        "peak at(ms)",
        "Ia max",
        "spikes"
    );
    for feedback in ["none", "Ia", "Ia + II + Ib"] {
        let mut cfg = ClosedLoopConfig {
            n_mn,
            duration_s,
            stretch: vec![Stretch::Tap {
                onset_s,
                amplitude: 0.05,
                duration_s: 0.1,
            }],
            ..Default::default()
        };
        match feedback {
            "none" => (cfg.ia, cfg.ii, cfg.ib) = (None, None, None),
            "Ia" => (cfg.ii, cfg.ib) = (None, None),
            _ => {}
        }
        let params = ClosedLoopParams::myogen(&ctx, dc_hz, 50.0);
        let t0 = std::time::Instant::now();
        let mut sim = closed_loop::build(&cfg, &ctx, 1, &params)?;
        if cfg.ii.is_some() {
            sim.record(&["gii_spikes", "gib_spikes"]);
        }
        let out = sim.run_path(ExecPath::Stream)?;
        let in_rate = |name: &str, n: usize| -> myodiff::Result<f64> {
            Ok(to_vec_f64(out.trace(name)?).iter().sum::<f64>() / (n as f64 * duration_s))
        };
        let interneurons = if cfg.ii.is_some() {
            format!(
                ", gII {:.1} Hz, gIb {:.1} Hz",
                in_rate("gii_spikes", cfg.gii.n)?,
                in_rate("gib_spikes", cfg.gib.n)?
            )
        } else {
            String::new()
        };
        let wall = t0.elapsed().as_secs_f64();
        let force = to_vec_f64(out.trace("muscle_force_n")?);
        let ia = to_vec_f64(out.trace("ia_hz")?);
        let spikes = to_vec_f64(out.trace("spikes")?).iter().sum::<f64>();
        let r = metrics::reflex_response(&force, cfg.dt_s, onset_s, 0.2, 0.15, 3.0)?;
        let ia_max = ia.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<14} {:>10.4} {:>10.4} {:>11.4} {:>11} {:>11.1} {:>9.1} {:>8} ({wall:.0} s{interneurons})",
            feedback,
            r.baseline_n,
            r.baseline_sd_n,
            r.amplitude_n,
            r.latency_s
                .map(|l| format!("{:.1}", 1e3 * l))
                .unwrap_or_else(|| "-".into()),
            1e3 * r.time_to_peak_s,
            ia_max,
            spikes
        );
    }
    Ok(())
}
