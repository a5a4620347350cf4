//! The noise model vs MyoGen's own generator (fixture 4: 10 seeds × 20 s at 2048 Hz, Welch
//! nperseg 2048, noverlap 1536, mean) and the generator vs the analytic PSD.

use myodiff::emg::noise::{
    NoiseConfig, NoiseParams, NoisePsdModel, PsdModelOptions, excess_kurtosis, generate, rms,
};
use myodiff::emg::welch::{Welch, WelchConfig};

const FS: f64 = 2048.0;
const N: usize = 40960;

struct Fixture {
    freqs: Vec<f64>,
    psd: [Vec<f64>; 3],
    summary: serde_json::Value,
}

const SETS: [&str; 3] = [
    "A_defaults",
    "B_slope-1_peak500_hpf20",
    "C_powerline0.5_ratios",
];

fn fixture() -> Fixture {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let csv = std::fs::read_to_string(format!("{dir}noise_psd_welch_mean10seeds.csv")).unwrap();
    let mut freqs = vec![];
    let mut psd: [Vec<f64>; 3] = Default::default();
    for line in csv.lines().skip(1) {
        let v: Vec<f64> = line.split(',').map(|s| s.parse().unwrap()).collect();
        freqs.push(v[0]);
        for i in 0..3 {
            psd[i].push(v[i + 1]);
        }
    }
    let summary =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}noise_summary.json")).unwrap())
            .unwrap();
    Fixture {
        freqs,
        psd,
        summary,
    }
}

fn params(set: usize) -> NoiseParams {
    let mut p = NoiseParams::default();
    match set {
        1 => {
            p.spectral_slope = -1.0;
            p.peak_hz = 500.0;
            p.analog_hpf_hz = 20.0;
        }
        2 => {
            p.powerline_amplitude = 0.5;
            p.powerline_harmonic_ratios = [1.0, 2.0, 0.3, 0.15, 0.08];
        }
        _ => {}
    }
    p
}

fn db(a: f64, b: f64) -> f64 {
    10.0 * (a / b).log10()
}

/// Bins in [lo, hi] Hz farther than `gap` Hz from every mains harmonic 50..250 Hz.
fn away_from_mains(freqs: &[f64], lo: f64, hi: f64, gap: f64) -> Vec<usize> {
    (0..freqs.len())
        .filter(|&k| {
            let f = freqs[k];
            f >= lo && f <= hi && (1..=5).all(|h| (f - 50.0 * h as f64).abs() > gap)
        })
        .collect()
}

fn db_stats(a: &[f64], b: &[f64], ks: &[usize]) -> (f64, f64) {
    let e: Vec<f64> = ks.iter().map(|&k| db(a[k], b[k]).abs()).collect();
    (
        e.iter().sum::<f64>() / e.len() as f64,
        e.iter().cloned().fold(0.0, f64::max),
    )
}

/// Excess power of harmonic h in ±4 Hz over the median density of the neighbours 6..14 Hz away.
fn line_power(psd: &[f64], h: usize) -> f64 {
    let f0 = 50 * h;
    let mut nb: Vec<f64> = (6..=14).flat_map(|d| [psd[f0 - d], psd[f0 + d]]).collect();
    nb.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let floor = nb[nb.len() / 2];
    (f0 - 4..=f0 + 4).map(|k| psd[k] - floor).sum::<f64>()
}

/// Mean |dB| over 32-bin blocks of `ks` (averaging removes most of the estimator noise, so this
/// measures bias); returns the largest block error.
fn block_db(a: &[f64], b: &[f64], ks: &[usize]) -> f64 {
    ks.chunks(32)
        .map(|c| {
            let sa: f64 = c.iter().map(|&k| a[k]).sum();
            let sb: f64 = c.iter().map(|&k| b[k]).sum();
            db(sa, sb).abs()
        })
        .fold(0.0, f64::max)
}

struct Run {
    ana: Vec<f64>,
    gen_psd: Vec<f64>,
    gen_rms: f64,
}

fn run(set: usize) -> Run {
    let cfg = NoiseConfig::new(FS, N);
    let model = NoisePsdModel::new(&cfg, PsdModelOptions::new(2048)).unwrap();
    let welch = Welch::new(WelchConfig::new(FS, 2048).with_noverlap(1536)).unwrap();
    let p = params(set);
    let ana = model.expected_psd_host(&p).unwrap();
    let seeds = 10;
    let mut gen_psd = vec![0.0; ana.len()];
    let mut gen_rms = 0.0;
    for seed in 0..seeds {
        let x = generate(&cfg, &p, 1000 + seed).unwrap();
        let w = welch.psd(&x).unwrap();
        gen_psd
            .iter_mut()
            .zip(&w.density)
            .for_each(|(a, b)| *a += b / seeds as f64);
        gen_rms += rms(&x) / seeds as f64;
    }
    Run {
        ana,
        gen_psd,
        gen_rms,
    }
}

/// Tolerances. Each fixture column averages 10 seeds × 77 overlapping Hann segments (≈ 400
/// independent periodograms): per-bin standard error ≈ 0.22 dB, so the mean per-bin |dB| of an
/// unbiased prediction is ≈ 0.17 dB. Away from the mains lines (±5 Hz), in [2, 1024] Hz:
/// mean per-bin |dB| ≤ 0.25 dB, every 32-bin block average within 0.35 dB; bins 0 and 1 (detrend +
/// HPF region) within 1 dB. The same for our generator (10 other seeds) vs the analytic PSD.
#[test]
#[allow(clippy::needless_range_loop)]
fn analytic_and_generated_psd_match_myogen_fixture() {
    let fx = fixture();
    let ks = away_from_mains(&fx.freqs, 2.0, 1024.0, 5.0);
    for s in 0..3 {
        let r = run(s);
        let (m_af, x_af) = db_stats(&r.ana, &fx.psd[s], &ks);
        let (m_ga, x_ga) = db_stats(&r.gen_psd, &r.ana, &ks);
        let (b_af, b_ga) = (
            block_db(&r.ana, &fx.psd[s], &ks),
            block_db(&r.gen_psd, &r.ana, &ks),
        );
        println!(
            "{}: analytic vs MyoGen mean {m_af:.3} dB (max bin {x_af:.2}, max block {b_af:.3}); \
             generator vs analytic mean {m_ga:.3} dB (max bin {x_ga:.2}, max block {b_ga:.3})",
            SETS[s]
        );
        assert!(
            m_af <= 0.25 && b_af <= 0.35,
            "{}: analytic vs fixture {m_af} / {b_af}",
            SETS[s]
        );
        assert!(
            m_ga <= 0.25 && b_ga <= 0.35,
            "{}: generator vs analytic {m_ga} / {b_ga}",
            SETS[s]
        );
        for k in [0, 1] {
            let e = db(r.ana[k], fx.psd[s][k]).abs();
            assert!(e <= 1.0, "{} bin {k}: {e} dB", SETS[s]);
        }
        // RMS: broadband exactly noise_rms; mains adds ½Σ(A r_h)²(1 + m²).
        let sm = &fx.summary["sets"][SETS[s]];
        let fix_rms = sm["rms_mean"].as_f64().unwrap();
        let ana_rms = (r.ana.iter().sum::<f64>() * 1.0).sqrt();
        let fix_total = sm["psd_total_power"].as_f64().unwrap();
        println!(
            "   rms: MyoGen {fix_rms:.5}, generator {:.5}, analytic √ΣP·Δf {ana_rms:.5} (MyoGen √ΣP·Δf {:.5})",
            r.gen_rms,
            fix_total.sqrt()
        );
        assert!((r.gen_rms / fix_rms - 1.0).abs() < 0.005);
        assert!((ana_rms / fix_total.sqrt() - 1.0).abs() < 0.005);
    }
}

/// Mains line power (excess over the neighbouring floor, ±4 Hz) of the strong lines: set C
/// harmonics 1–3 (amplitudes 0.5, 1.0, 0.15 of the floor RMS) and set A's fundamental: analytic
/// within 10 % of MyoGen's fixture and of our generator.
#[test]
fn mains_line_power_matches() {
    let fx = fixture();
    for (s, hs) in [(2usize, vec![1usize, 2, 3]), (0, vec![1])] {
        let r = run(s);
        for h in hs {
            let (f, a, g) = (
                line_power(&fx.psd[s], h),
                line_power(&r.ana, h),
                line_power(&r.gen_psd, h),
            );
            println!(
                "{} harmonic {h}: MyoGen {f:.4e}, analytic {a:.4e}, generator {g:.4e}",
                SETS[s]
            );
            assert!((a / f - 1.0).abs() < 0.10, "{} h{h}: {a} vs {f}", SETS[s]);
            assert!((g / a - 1.0).abs() < 0.10, "{} h{h}: {g} vs {a}", SETS[s]);
        }
    }
}

/// Excess kurtosis: the per-seed value is dominated by the largest Student-t spikes (MyoGen's own
/// SD over 10 seeds is 1.8 / 6.1 / 0.7 for A / B / C), so compare means: our generator's mean over
/// 60 seeds must lie within 3 combined standard errors (MyoGen's SD/√10 and ours/√60).
#[test]
#[allow(clippy::needless_range_loop)]
fn kurtosis_matches_in_mean() {
    let fx = fixture();
    let cfg = NoiseConfig::new(FS, N);
    for s in 0..3 {
        let p = params(s);
        let k: Vec<f64> = (0..60)
            .map(|seed| excess_kurtosis(&generate(&cfg, &p, 5000 + seed).unwrap()))
            .collect();
        let m = k.iter().sum::<f64>() / k.len() as f64;
        let sd = (k.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (k.len() - 1) as f64).sqrt();
        let sm = &fx.summary["sets"][SETS[s]];
        let (fm, fsd) = (
            sm["excess_kurtosis_mean"].as_f64().unwrap(),
            sm["excess_kurtosis_sd"].as_f64().unwrap(),
        );
        let tol = 3.0 * ((fsd * fsd / 10.0) + (sd * sd / 60.0)).sqrt();
        println!(
            "{}: kurtosis generator {m:.3} ± {sd:.3} (60 seeds), MyoGen {fm:.3} ± {fsd:.3} (10 seeds), tol {tol:.3}",
            SETS[s]
        );
        assert!((m - fm).abs() <= tol);
        assert!(m > 0.1, "heavy tails must raise the kurtosis");
    }
}
