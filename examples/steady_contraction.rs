//! Steady isometric contraction in the closed loop, with and without afferent feedback: force
//! steadiness (coefficient of variation of the muscle force) and discharge-rate variability
//! (mean rate and ISI CV of the active motor units) over the second half of the run.
//!
//! `cargo run --release --example steady_contraction [-- <n_mn> <duration_s> <dc_hz>]`
//! (defaults 120 MNs, 2 s, 60 Hz; gamma 50 Hz, no stretch).

use myodiff::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams, metrics};
use myodiff::kernel::{Ctx, ExecPath, to_vec_f64};

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n_mn, duration_s, dc_hz) = (arg(0, 120.0) as usize, arg(1, 2.0), arg(2, 60.0));
    let ctx = Ctx::cpu();
    let (t0, t1) = (duration_s / 2.0, duration_s);
    println!(
        "steady contraction: {n_mn} MNs, drive {dc_hz} Hz, gamma 50 Hz, statistics over {t0}–{t1} s"
    );
    println!(
        "{:<14} {:>12} {:>9} {:>8} {:>14} {:>10}",
        "pathways", "force (N)", "force CV", "active", "rate (Hz)", "ISI CV"
    );
    for feedback in ["none", "Ia", "Ia + II + Ib"] {
        let mut cfg = ClosedLoopConfig {
            n_mn,
            duration_s,
            ..Default::default()
        };
        match feedback {
            "none" => (cfg.ia, cfg.ii, cfg.ib) = (None, None, None),
            "Ia" => (cfg.ii, cfg.ib) = (None, None),
            _ => {}
        }
        let params = ClosedLoopParams::myogen(&ctx, dc_hz, 50.0);
        let wall = std::time::Instant::now();
        let out = closed_loop::build(&cfg, &ctx, 1, &params)?.run_path(ExecPath::Stream)?;
        let wall = wall.elapsed().as_secs_f64();
        let force = to_vec_f64(out.trace("muscle_force_n")?);
        let (a, b) = ((t0 / cfg.dt_s) as usize, (t1 / cfg.dt_s) as usize);
        let mean_f = force[a..b].iter().sum::<f64>() / (b - a) as f64;
        let cv = metrics::coefficient_of_variation(&force, cfg.dt_s, t0, t1)?;
        let spikes = to_vec_f64(out.trace("spikes")?);
        let units = metrics::discharge_stats(&spikes, n_mn, cfg.dt_s, t0, t1);
        let k = units.len().max(1) as f64;
        let rate = units.iter().map(|u| u.1).sum::<f64>() / k;
        let isi_cv = units.iter().map(|u| u.2).sum::<f64>() / k;
        println!(
            "{feedback:<14} {mean_f:>12.3} {cv:>9.4} {:>8} {rate:>14.2} {isi_cv:>10.3}   ({wall:.0} s)",
            units.len()
        );
    }
    Ok(())
}
