//! Study of the pathwise (event-time) gradient with the kernel-density spike-creation term
//! (`event::estimator::creation_term`, bands 0.25–1 mV, horizons 0.05–0.5 s, both kernels)
//! against the seed-averaged central difference (BENCHMARKS.md §7).
//! `cargo run --release --example event_study -- <n_mn> <duration_s> <dc_hz> <seeds> <h_hz>`
use std::time::Instant;

use myodiff::event::{EventDrive, GradientProblem, Param, RunOptions};
use myodiff::network::NetworkConfig;

fn main() -> myodiff::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let n_mn = arg(1, 800.0) as usize;
    let dur = arg(2, 5.0);
    let dc = arg(3, 40.0);
    let seeds: Vec<u64> = (1..=arg(4, 8.0) as u64).collect();
    let h = arg(5, 0.5);
    let cfg = NetworkConfig {
        n_mn,
        n_dd: (n_mn / 2).max(1),
        duration_s: dur,
        ..Default::default()
    };
    let prob = GradientProblem::mean_force_second_half(cfg.clone(), EventDrive::watanabe(dc));
    let net = prob.network(1)?;
    let t0 = Instant::now();
    let r0 = net.run(&prob.drive, prob.weight_s, &RunOptions::default())?;
    let fwd = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let r1 = net.run(
        &prob.drive,
        prob.weight_s,
        &RunOptions {
            params: vec![Param::Dc],
            creation: None,
            insertion: None,
        },
    )?;
    let tan = t1.elapsed().as_secs_f64();
    let spikes: usize = r0.spikes_s.iter().map(|s| s.len()).sum();
    let active = r0.spikes_s.iter().filter(|s| !s.is_empty()).count();
    println!(
        "forward {fwd:.3} s, with dc tangent {tan:.3} s ({:.2}x); spikes {spikes}, active {active}, inputs {}",
        tan / fwd,
        r0.n_input_spikes
    );
    println!(
        "value {:.5} N (tangent run {:.5})",
        prob.observable.eval(&r0)?.0,
        prob.observable.eval(&r1)?.0
    );
    let pw = prob.pathwise(&[Param::Dc], &seeds)?;
    let g: Vec<f64> = pw.iter().map(|x| x.1[0]).collect();
    let e = myodiff::event::Estimate::from_samples(&g)?;
    println!(
        "pathwise: {:.5} ± {:.5} N/Hz  per seed {:?}",
        e.mean,
        e.se,
        g.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>()
    );
    use myodiff::event::estimator::Kernel;
    for (band, hor) in [
        (0.5e-3, 0.2),
        (0.25e-3, 0.2),
        (1e-3, 0.2),
        (0.5e-3, 0.05),
        (0.5e-3, 0.5),
    ] {
        let t = Instant::now();
        let est = prob.with_creation(
            &[Param::Dc],
            &seeds,
            myodiff::event::CreationOpts {
                band_v: band,
                horizon_s: hor,
            },
            Kernel::Linear,
        )?;
        let el = t.elapsed().as_secs_f64();
        let tot: Vec<f64> = est.iter().map(|e| e.pathwise[0] + e.creation[0]).collect();
        let cr: Vec<f64> = est.iter().map(|e| e.creation[0]).collect();
        let e1 = myodiff::event::Estimate::from_samples(&tot)?;
        let e2 = myodiff::event::Estimate::from_samples(&cr)?;
        println!(
            "band {band} V horizon {hor} s (linear kernel): total {:.5} ± {:.5}, creation {:.5} ± {:.5}  ({el:.2} s for {} seeds)",
            e1.mean,
            e1.se,
            e2.mean,
            e2.se,
            seeds.len()
        );
    }
    let est = prob.with_creation(
        &[Param::Dc],
        &seeds,
        myodiff::event::CreationOpts {
            band_v: 0.5e-3,
            horizon_s: 0.2,
        },
        Kernel::Uniform,
    )?;
    let tot: Vec<f64> = est.iter().map(|e| e.pathwise[0] + e.creation[0]).collect();
    let e1 = myodiff::event::Estimate::from_samples(&tot)?;
    println!(
        "band 0.5 mV uniform kernel: total {:.5} ± {:.5}",
        e1.mean, e1.se
    );
    let net = prob.network(1)?;
    let t = Instant::now();
    let run = net.run(
        &prob.drive,
        prob.weight_s,
        &RunOptions {
            params: vec![Param::Dc],
            creation: Some(myodiff::event::CreationOpts {
                band_v: 0.5e-3,
                horizon_s: 0.2,
            }),
            insertion: None,
        },
    )?;
    println!(
        "one run with creation record: {:.3} s, {} peaks",
        t.elapsed().as_secs_f64(),
        run.peaks.len()
    );
    for hh in [h, h / 4.0, h * 4.0] {
        let r = prob.reference(Param::Dc, hh, &seeds)?;
        println!("reference h={hh}: {:.5} ± {:.5} N/Hz", r.mean, r.se);
    }
    Ok(())
}
