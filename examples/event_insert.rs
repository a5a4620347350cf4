//! Study of the insertion estimator at one drive level: cost, contributions by spike-count change
//! of the alternative paths, seed mean vs the pathwise derivative (and, with `ref = 1`, the
//! seed-averaged central differences at h = 0.5, 1, 2 Hz).
//! `cargo run --release --example event_insert -- <n_mn> <duration_s> <dc_hz> <seeds> <rate_near_hz>
//! <horizon_s> <ref 0|1> <rate_uniform_hz> <near_band_v>`
use myodiff::event::{Estimate, EventDrive, GradientProblem, InsertionOpts, Param, RunOptions};
use myodiff::network::NetworkConfig;
use std::time::Instant;
fn main() -> myodiff::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let n_mn = arg(1, 800.0) as usize;
    let dur = arg(2, 5.0);
    let dc = arg(3, 40.0);
    let seeds: Vec<u64> = (1..=arg(4, 8.0) as u64).collect();
    let near = arg(5, 2000.0);
    let hor = arg(6, 1.0);
    let cfg = NetworkConfig {
        n_mn,
        n_dd: (n_mn / 2).max(1),
        duration_s: dur,
        ..Default::default()
    };
    let prob = GradientProblem::mean_force_second_half(cfg, EventDrive::watanabe(dc));
    let net = prob.network(1)?;
    let t0 = Instant::now();
    net.run(&prob.drive, prob.weight_s, &RunOptions::default())?;
    let fwd = t0.elapsed().as_secs_f64();
    let ins = InsertionOpts {
        rate_near_hz: near,
        horizon_s: hor,
        rate_uniform_hz: arg(8, 4.0),
        near_band_v: arg(9, 0.3e-3),
        seed: 7,
    };
    let t1 = Instant::now();
    let r = net.run(
        &prob.drive,
        prob.weight_s,
        &RunOptions {
            params: vec![Param::Dc],
            creation: None,
            insertion: Some(ins),
        },
    )?;
    let c = t1.elapsed().as_secs_f64();
    println!(
        "forward {fwd:.3} s; with insertion record {c:.3} s ({:.2}x); {} insertions",
        c / fwd,
        r.insertions.len()
    );
    {
        let c = myodiff::event::estimator::insertion_contributions(&net, &r, prob.observable)?;
        let mut by: std::collections::BTreeMap<i64, (usize, f64)> = Default::default();
        for x in &c {
            let e = by.entry(x.spike_count_change).or_default();
            e.0 += 1;
            e.1 += x.weighted_delta;
        }
        println!("seed 1 contributions by spike-count change: {by:?}");
        let mut v: Vec<_> = c
            .iter()
            .map(|x| (x.weighted_delta, x.unit, x.spike_count_change))
            .collect();
        v.sort_by(|a, b| b.0.abs().partial_cmp(&a.0.abs()).unwrap());
        println!("largest: {:?}", &v[..10.min(v.len())]);
        let mut per_unit = vec![0.0; n_mn];
        for x in &c {
            per_unit[x.unit] += x.weighted_delta;
        }
        let mut pu: Vec<_> = per_unit
            .iter()
            .enumerate()
            .filter(|x| *x.1 != 0.0)
            .map(|(i, x)| (i, *x))
            .collect();
        pu.sort_by(|a, b| b.1.abs().partial_cmp(&a.1.abs()).unwrap());
        println!(
            "units {} ; largest per unit: {:?}",
            pu.len(),
            &pu[..10.min(pu.len())]
        );
    }
    let ps = [Param::Dc, Param::Amp];
    let est = prob.with_insertion(&ps, &seeds, ins)?;
    for (q, p) in ps.iter().enumerate() {
        let ins_g: Vec<f64> = est.iter().map(|e| e.insertion_gradient(&ps)[q]).collect();
        let pw: Vec<f64> = est.iter().map(|e| e.pathwise[q]).collect();
        let ei = Estimate::from_samples(&ins_g)?;
        let ep = Estimate::from_samples(&pw)?;
        println!(
            "{p:?}: insertion {:.5} ± {:.5}; pathwise {:.5} ± {:.5}; per seed {:?}",
            ei.mean,
            ei.se,
            ep.mean,
            ep.se,
            ins_g.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>()
        );
    }
    if arg(7, 0.0) > 0.0 {
        for h in [0.5, 1.0, 2.0] {
            let g = prob.central_differences(Param::Dc, h, &seeds)?;
            let r = Estimate::from_samples(&g)?;
            println!(
                "reference Dc h={h}: {:.5} ± {:.5} per seed {:?}",
                r.mean,
                r.se,
                g.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
