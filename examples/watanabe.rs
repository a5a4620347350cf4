//! Runs the Watanabe oscillating-DC calibration (MODEL.md §7.1) and writes the report.
//! Usage: `cargo run --release --example watanabe [SPEC] [OUT_DIR]`
//! (defaults `calibration/watanabe.toml`, `reports/watanabe`).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("calibration/watanabe.toml"));
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("reports/watanabe"));
    match myodiff::fit::watanabe::run_watanabe_calibration(&spec, &out) {
        Ok(summary) => {
            println!("{}\n", summary.description);
            println!(
                "| method | dc (Hz) | |error| | evaluations | gradients | rollouts | wall (s) | end to end (s) |"
            );
            println!("|---|---|---|---|---|---|---|---|");
            if let Some(ms) = summary.extra.get("methods").and_then(|m| m.as_array()) {
                for m in ms {
                    println!(
                        "| {} | {:.4} | {:.2e} | {} | {} | {} | {:.2} | {:.2} |",
                        m["method"].as_str().unwrap_or("?"),
                        m["dc_hz"].as_f64().unwrap_or(f64::NAN),
                        m["abs_rel_error"].as_f64().unwrap_or(f64::NAN),
                        m["evaluations"],
                        m["gradients"],
                        m["rollouts"],
                        m["wall_s"].as_f64().unwrap_or(f64::NAN),
                        m["end_to_end_s"].as_f64().unwrap_or(f64::NAN),
                    );
                }
            }
            for f in &summary.fits {
                println!("{}: {}", f.method, f.stop_reason);
            }
            println!("report written to {}", out.display());
        }
        Err(e) => {
            eprintln!("watanabe calibration failed: {e}");
            std::process::exit(1);
        }
    }
}
