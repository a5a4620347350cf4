//! Runs the noise-profile calibration on the real recording's development rest window and writes
//! the report. Usage: `cargo run --release --example noise_calibration [SPEC] [OUT_DIR]`
//! (defaults `calibration/noise_rest.toml`, `reports/noise_rest`). Get the data first with
//! `calibration/fetch-data.sh`.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("calibration/noise_rest.toml"));
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("reports/noise_rest"));
    match myodiff::fit::noise::run_noise_calibration(&spec, &out) {
        Ok(summary) => {
            println!("{}", summary.description);
            if let Some(scores) = summary.extra.get("scores") {
                println!(
                    "{}",
                    serde_json::to_string_pretty(scores).unwrap_or_default()
                );
            }
            if let Some(s) = summary.extra.get("estimator_study") {
                println!(
                    "estimator study: {}",
                    serde_json::to_string_pretty(s).unwrap_or_default()
                );
            }
            println!("report written to {}", out.display());
        }
        Err(e) => {
            eprintln!("noise calibration failed: {e}");
            std::process::exit(1);
        }
    }
}
