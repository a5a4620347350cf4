//! MyoGen's Watanabe task on the spiking network (event-time fast pool), solved by Newton steps
//! whose slope is the CRN central difference (the spiking-network gradient chosen by measurement,
//! BENCHMARKS.md §7): find the DC of `dc + 20·sin(2π·20 t) + N(0,1)` whose mean force over the
//! second half equals that of a constant `40 + max(0, N(0,1))` Hz drive (800 MNs, 400 inputs, 5 s).
//! Each Newton step costs two runs at `dc ± h` (their mean is the value, O(h²)); it counts every
//! run. With `log` the Newton step is taken on ln F (the mean force grows roughly exponentially
//! with the drive near recruitment, so ln F is closer to linear):
//! `cargo run --release --example watanabe_event -- [dc0_hz] [h_hz] [seed] [linear|log]`
use myodiff::drive::rate::NoiseKind;
use myodiff::event::{EventDrive, EventNetwork, Observable, RunOptions};
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig};

fn main() -> myodiff::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let dc0: f64 = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(50.0);
    let h: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let seed: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(42);
    let log = a.get(4).is_some_and(|s| s == "log");
    let cfg = NetworkConfig {
        seed,
        ..Default::default()
    };
    let obs = Observable::MeanForce {
        t0_s: cfg.duration_s / 2.0,
        t1_s: cfg.duration_s,
    };
    let constant = EventNetwork::new(&NetworkConfig {
        drive_noise: NoiseKind::Rectified,
        ..cfg.clone()
    })?;
    let osc = EventNetwork::new(&cfg)?;
    let t0 = std::time::Instant::now();
    let f_ref = obs
        .eval(&constant.run(
            &EventDrive::Sine {
                dc_hz: 40.0,
                amp_hz: 0.0,
                freq_hz: 0.0,
                phase_rad: 0.0,
                noise_sd_hz: 1.0,
            },
            MYOGEN_WEIGHT_S,
            &RunOptions::default(),
        )?)?
        .0;
    let fwd = t0.elapsed().as_secs_f64();
    println!("reference: constant 40 Hz + max(0, N(0,1)) → mean force {f_ref:.5} N ({fwd:.2} s)");
    let f = |dc: f64| -> myodiff::Result<f64> {
        Ok(obs
            .eval(&osc.run(
                &EventDrive::watanabe(dc),
                MYOGEN_WEIGHT_S,
                &RunOptions::default(),
            )?)?
            .0)
    };
    let (mut dc, mut runs) = (dc0, 0usize);
    let t1 = std::time::Instant::now();
    println!(
        "| step | dc (Hz) | F(dc−h), F(dc+h) (N) | value ≈ mean (N) | |error| | slope (N/Hz) | runs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for step in 0..8 {
        let (fm, fp) = std::thread::scope(|s| {
            let m = s.spawn(|| f(dc - h));
            let p = s.spawn(|| f(dc + h));
            (m.join().expect("run"), p.join().expect("run"))
        });
        let (fm, fp) = (fm?, fp?);
        runs += 2;
        let value = 0.5 * (fm + fp);
        let slope = (fp - fm) / (2.0 * h);
        let err = (value - f_ref).abs() / f_ref;
        println!(
            "| {step} | {dc:.3} | {fm:.5}, {fp:.5} | {value:.5} | {err:.2e} | {slope:.5} | {runs} |"
        );
        if err < 0.005 {
            // confirm with one run at dc itself
            let fc = f(dc)?;
            runs += 1;
            let e = (fc - f_ref).abs() / f_ref;
            println!(
                "converged: dc = {dc:.3} Hz, F(dc) = {fc:.5} N, |error| = {e:.2e}, {runs} runs (incl. the check), {:.1} s ({:.1} forward-equivalents of wall time)",
                t1.elapsed().as_secs_f64(),
                t1.elapsed().as_secs_f64() / fwd
            );
            return Ok(());
        }
        if slope.is_nan() || slope <= 0.0 {
            return Err(myodiff::Error::invalid(
                "slope",
                slope,
                "> 0 (mean force increasing in dc)",
            ));
        }
        dc = if log {
            // ln F(dc) ≈ ln value + (slope/value)(dc' − dc) = ln F_ref
            (dc - (value / f_ref).ln() * value / slope).clamp(1.0, 100.0)
        } else {
            (dc - (value - f_ref) / slope).clamp(1.0, 100.0)
        };
    }
    println!("not converged in 8 steps");
    Ok(())
}
