//! The assembled faithful network (NERLab pool, Poisson drive, MyoGen's Watanabe sizes) against
//! MyoGen's pool statistics (fixture 3, `tests/fixtures/pool_stats_summary.csv`: 800 MNs, 400
//! Poisson inputs, p = 0.3, w = 0.05 µS, 2 s, drive DC + max(0, N(0,1)); seeds 42–44). MyoGen's
//! runs are stochastic and ours use another RNG, so the comparison is statistical: over eight
//! seeds of ours (42–49), the mean firing rate and the number of active units (≥ 2 spikes) must lie within
//! 3 combined standard errors `3·√(s_ours²/n_ours + s_myogen²/n_myogen)` of MyoGen's seed mean.

use myodiff::drive::rate::{DriveParams, NoiseKind};
use myodiff::kernel::Ctx;
use myodiff::network::{MYOGEN_WEIGHT_S, MembraneModel, MuscleParams, NetworkConfig, build};

fn stats(dc: f64, seed: u64) -> (usize, f64) {
    let ctx = Ctx::cpu();
    let cfg = NetworkConfig {
        model: MembraneModel::Faithful,
        duration_s: 2.0,
        drive_noise: NoiseKind::Rectified,
        seed,
        ..Default::default()
    };
    let muscle = MuscleParams::from_config(&cfg, &ctx).unwrap();
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let mut sim = build(&cfg, &ctx, 1, DriveParams::constant(&ctx, dc), w, &muscle).unwrap();
    let res = sim.run().unwrap().result(0).unwrap();
    let active = res.spike_times_s.iter().filter(|s| s.len() > 1).count();
    // MyoGen's calculate_firing_rate_statistics: 1/mean ISI per unit with >= 2 spikes, kept if >= 0.5 Hz
    let rates: Vec<f64> = res
        .spike_times_s
        .iter()
        .filter(|s| s.len() >= 2)
        .map(|s| (s.len() - 1) as f64 / (s[s.len() - 1] - s[0]))
        .filter(|r| *r >= 0.5)
        .collect();
    (active, rates.iter().sum::<f64>() / rates.len() as f64)
}

/// Mean and sample SD.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

/// (active units ≥ 2 spikes, whole-run mean rate) per seed of the fixture at `dc` (Hz).
fn fixture(dc: f64) -> Vec<(f64, f64)> {
    let path = format!(
        "{}/tests/fixtures/pool_stats_summary.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (c_dc, c_act, c_fr) = (
        col("dc_hz"),
        col("n_active_ge2spikes"),
        col("fr_mean_whole"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .map(|x| x.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|r| r[c_dc] == dc)
        .map(|r| (r[c_act], r[c_fr]))
        .collect()
}

/// Measured (seeds 42–49): at 40 Hz active units +2.5 SE (360.3 ± 8.0 vs 351.7 ± 3.5), rate
/// +1.9 SE (6.35 ± 0.17 vs 6.17 ± 0.12 Hz); at 50 Hz active units +1.0 SE (471.3 ± 6.0 vs
/// 468.0 ± 4.6), rate +0.5 SE (9.91 ± 0.16 vs 9.85 ± 0.18 Hz). (With only seeds 42–44 the 40 Hz
/// active-unit count is +3.1 SE: ours is ≈ 2.4 % high there.)
fn check_pool_statistics(dc: f64) {
    let seeds: Vec<u64> = (42..50).collect();
    let mut fails = Vec::new();
    {
        let reference = fixture(dc);
        assert_eq!(reference.len(), 3, "fixture seeds at {dc} Hz");
        let ours: Vec<(usize, f64)> = seeds.iter().map(|&s| stats(dc, s)).collect();
        for (what, r, o) in [
            (
                "active units",
                reference.iter().map(|x| x.0).collect::<Vec<_>>(),
                ours.iter().map(|x| x.0 as f64).collect::<Vec<_>>(),
            ),
            (
                "mean rate (Hz)",
                reference.iter().map(|x| x.1).collect(),
                ours.iter().map(|x| x.1).collect(),
            ),
        ] {
            let (mr, sr) = mean_sd(&r);
            let (mo, so) = mean_sd(&o);
            let se = (sr * sr / r.len() as f64 + so * so / o.len() as f64).sqrt();
            let z = (mo - mr) / se;
            eprintln!(
                "dc {dc}: {what}: ours {mo:.3} ± {so:.3} (seeds {o:?}) vs MyoGen {mr:.3} ± {sr:.3}; \
                 {z:+.2} combined SE"
            );
            if z.abs() > 3.0 {
                fails.push(format!("dc {dc}: {what}: {mo:.3} vs {mr:.3} ({z:+.2} SE)"));
            }
        }
    }
    assert!(fails.is_empty(), "{fails:#?}");
}

#[test]
fn faithful_pool_matches_myogen_pool_statistics_at_40_hz() {
    check_pool_statistics(40.0);
}

#[test]
fn faithful_pool_matches_myogen_pool_statistics_at_50_hz() {
    check_pool_statistics(50.0);
}

fn stats_of(model: MembraneModel, dc: f64) -> (usize, f64) {
    let ctx = Ctx::cpu();
    let cfg = NetworkConfig {
        model,
        duration_s: 2.0,
        drive_noise: NoiseKind::Rectified,
        ..Default::default()
    };
    let muscle = MuscleParams::from_config(&cfg, &ctx).unwrap();
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let mut sim = build(&cfg, &ctx, 1, DriveParams::constant(&ctx, dc), w, &muscle).unwrap();
    let res = sim
        .run_path(myodiff::kernel::ExecPath::Fused)
        .unwrap()
        .result(0)
        .unwrap();
    let rates: Vec<f64> = res
        .spike_times_s
        .iter()
        .filter(|s| s.len() >= 2)
        .map(|s| (s.len() - 1) as f64 / (s[s.len() - 1] - s[0]))
        .filter(|r| *r >= 0.5)
        .collect();
    (
        rates.len(),
        rates.iter().sum::<f64>() / rates.len().max(1) as f64,
    )
}

#[test]
fn fast_pool_follows_the_faithful_pool_under_descending_drive() {
    // The fast model's synaptic gain is calibrated on the faithful pool's rate-vs-drive curve.
    for dc in [40.0, 50.0] {
        let (n_fast, fr_fast) = stats_of(MembraneModel::Fast, dc);
        let (n_faith, fr_faith) = stats_of(MembraneModel::Faithful, dc);
        assert!(
            (fr_fast - fr_faith).abs() <= 1.0,
            "dc {dc}: fast {fr_fast:.2} Hz vs faithful {fr_faith:.2} Hz"
        );
        let rel = (n_fast as f64 - n_faith as f64).abs() / n_faith as f64;
        assert!(
            rel <= 0.25,
            "dc {dc}: fast {n_fast} vs faithful {n_faith} active units"
        );
    }
}
