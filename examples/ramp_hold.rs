//! Ramp-and-hold stretch of the spindle in the closed loop: a 5 % stretch over 100 ms held for
//! 400 ms. Prints the Ia and II responses (dynamic peak during the ramp, static level at the end
//! of the hold — Mileusnic's dynamic overshoot) and the muscle force over time, with and without
//! the Ia pathway.
//!
//! `cargo run --release --example ramp_hold [-- <n_mn> <dc_hz> <gamma_hz>]`
//! (defaults 120 MNs, 50 Hz drive, 50 Hz gamma; 1.2 s, ramp at 0.5 s).

use myodiff::afferent::Stretch;
use myodiff::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams};
use myodiff::kernel::{Ctx, ExecPath, to_vec_f64};

fn main() -> myodiff::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n_mn, dc_hz, gamma_hz) = (arg(0, 120.0) as usize, arg(1, 50.0), arg(2, 50.0));
    let (onset, ramp, hold) = (0.5, 0.1, 0.4);
    let ctx = Ctx::cpu();
    println!(
        "ramp-and-hold: {n_mn} MNs, drive {dc_hz} Hz, gamma {gamma_hz} Hz; 5 % over {ramp} s at {onset} s, held {hold} s"
    );
    for ia_on in [false, true] {
        let mut cfg = ClosedLoopConfig {
            n_mn,
            duration_s: 1.2,
            stretch: vec![Stretch::RampHold {
                onset_s: onset,
                amplitude: 0.05,
                ramp_s: ramp,
                hold_s: hold,
            }],
            ii: None,
            ib: None,
            ..Default::default()
        };
        if !ia_on {
            cfg.ia = None;
        }
        let params = ClosedLoopParams::myogen(&ctx, dc_hz, gamma_hz);
        let out = closed_loop::build(&cfg, &ctx, 1, &params)?.run_path(ExecPath::Stream)?;
        let dt = cfg.dt_s;
        let at = |t: f64| (t / dt).round() as usize;
        let ia = to_vec_f64(out.trace("ia_hz")?);
        let ii = to_vec_f64(out.trace("ii_hz")?);
        let f = to_vec_f64(out.trace("muscle_force_n")?);
        let max_in = |x: &[f64], a: f64, b: f64| {
            x[at(a)..at(b)]
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let mean_in = |x: &[f64], a: f64, b: f64| {
            x[at(a)..at(b)].iter().sum::<f64>() / (at(b) - at(a)) as f64
        };
        let end = onset + ramp + hold;
        println!("\nIa pathway {}:", if ia_on { "on" } else { "off" });
        println!(
            "  Ia: before {:.1} Hz, ramp peak {:.1} Hz, end of hold {:.1} Hz",
            mean_in(&ia, onset - 0.1, onset),
            max_in(&ia, onset, onset + ramp + 0.01),
            mean_in(&ia, end - 0.05, end)
        );
        println!(
            "  II: before {:.1} Hz, ramp peak {:.1} Hz, end of hold {:.1} Hz",
            mean_in(&ii, onset - 0.1, onset),
            max_in(&ii, onset, onset + ramp + 0.01),
            mean_in(&ii, end - 0.05, end)
        );
        print!("  force (N) every 100 ms:");
        for k in 0..12 {
            print!(" {:.2}", mean_in(&f, 0.1 * k as f64, 0.1 * (k + 1) as f64));
        }
        println!();
    }
    Ok(())
}
