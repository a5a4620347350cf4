//! The accuracy table of the spiking-network gradient estimators (BENCHMARKS.md §7).
//!
//! `cargo run --release --example spiking_gradients -- [n_mn] [duration_s] [seeds] [dc_hz,...] [n_dd]`
//! (defaults: the Watanabe size, 800 motor neurons, 400 inputs, 5 s, 8 seeds, DC 20,30,40,60,80 Hz
//! with MyoGen's 20 Hz ± 20 Hz oscillation and N(0,1) noise). Observables over the second half:
//! mean force, force amplitude at 20 Hz, pool mean rate and unit 100's rate (tapered counts,
//! 0.1 s raised-cosine ramps). Parameters: DC, oscillation amplitude, drive noise σ (Hz) and the
//! synaptic weight (S). Prints one markdown table per DC and writes `spiking_gradients.json` (the
//! committed run: `benches/results/`).
use myodiff::event::accuracy::{StudySpec, markdown, study};
use myodiff::event::{EventDrive, GradientProblem, InsertionOpts, Observable, Param};
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig};

fn main() -> myodiff::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let n_mn: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(800);
    let dur: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let n_seeds: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let dcs: Vec<f64> = a
        .get(4)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![20.0, 30.0, 40.0, 60.0, 80.0]);
    let cfg = NetworkConfig {
        n_mn,
        n_dd: a
            .get(5)
            .and_then(|s| s.parse().ok())
            .unwrap_or((n_mn / 2).max(1)),
        duration_s: dur,
        ..Default::default()
    };
    let (t0, t1) = (dur / 2.0, dur);
    let unit = 100.min(n_mn - 1);
    let spec = StudySpec {
        observables: vec![
            Observable::MeanForce { t0_s: t0, t1_s: t1 },
            Observable::ForceAmplitude {
                t0_s: t0,
                t1_s: t1,
                freq_hz: 20.0,
            },
            Observable::PoolRate {
                t0_s: t0,
                t1_s: t1,
                taper_s: 0.1,
            },
            Observable::UnitRate {
                unit,
                t0_s: t0,
                t1_s: t1,
                taper_s: 0.1,
            },
        ],
        params: vec![
            (Param::Dc, 1.0),
            (Param::Amp, 1.0),
            (Param::NoiseSd, 0.25),
            (Param::Weight, 0.02 * MYOGEN_WEIGHT_S),
        ],
        seeds: (1..=n_seeds).collect(),
        insertion: InsertionOpts::default(),
    };
    let mut all = Vec::new();
    for dc in dcs {
        let prob = GradientProblem {
            cfg: cfg.clone(),
            drive: EventDrive::watanabe(dc),
            weight_s: MYOGEN_WEIGHT_S,
            observable: spec.observables[0],
        };
        let t = std::time::Instant::now();
        let rows = study(&prob, &spec)?;
        let title = format!(
            "### DC {dc} Hz ({n_mn} MNs, {} inputs, {dur} s, {n_seeds} seeds; {:.0} s)",
            cfg.n_dd,
            t.elapsed().as_secs_f64()
        );
        println!("{}", markdown(&title, &rows));
        all.push((dc, rows));
    }
    let json = serde_json::to_string_pretty(&all)
        .map_err(|e| myodiff::Error::format("json", e.to_string()))?;
    std::fs::write("spiking_gradients.json", json)
        .map_err(|e| myodiff::Error::format("spiking_gradients.json", e.to_string()))?;
    Ok(())
}
