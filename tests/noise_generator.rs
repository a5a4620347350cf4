//! Generator contracts: determinism, typed errors, RMS, common-mode correlation, drift, and the
//! analytic fine-grid variance adding up to the RMS budget.

use myodiff::emg::noise::{
    NoiseConfig, NoiseParams, NoisePsdModel, PsdModelOptions, generate, generate_channels, rms,
};

#[test]
fn deterministic_per_seed_and_rms_exact_without_mains() {
    let cfg = NoiseConfig::new(2048.0, 8192);
    let mut p = NoiseParams {
        powerline_amplitude: 0.0,
        noise_rms_v: 3e-6,
        ..Default::default()
    };
    let a = generate(&cfg, &p, 3).unwrap();
    assert_eq!(a, generate(&cfg, &p, 3).unwrap());
    assert_ne!(a, generate(&cfg, &p, 4).unwrap());
    assert!((rms(&a) / 3e-6 - 1.0).abs() < 1e-12);
    p.baseline_drift_rms_v = 4e-6;
    let cfg2 = NoiseConfig {
        baseline_drift_high_hz: 5.0,
        ..cfg.clone()
    };
    let b = generate(&cfg2, &p, 3).unwrap();
    let want = (3e-6f64.powi(2) + 4e-6f64.powi(2)).sqrt();
    assert!((rms(&b) / want - 1.0).abs() < 0.05, "{} vs {want}", rms(&b));
}

#[test]
fn common_mode_fraction_sets_channel_correlation() {
    let cfg = NoiseConfig::new(2048.0, 20480);
    let p = NoiseParams {
        common_mode_fraction: 0.8,
        ..Default::default()
    };
    let ch = generate_channels(&cfg, &p, 3, 11).unwrap();
    let corr = |a: &[f64], b: &[f64]| {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let c: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        c / (va * vb).sqrt()
    };
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let r = corr(&ch[i], &ch[j]);
        assert!((r - 0.8).abs() < 0.05, "corr({i},{j}) = {r}");
    }
}

#[test]
fn typed_errors_name_the_field() {
    let cfg = NoiseConfig::new(2048.0, 4096);
    let bad = |p: NoiseParams, field: &str| {
        let e = generate(&cfg, &p, 0).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    };
    bad(
        NoiseParams {
            noise_rms_v: 0.0,
            ..Default::default()
        },
        "noise_rms_v",
    );
    bad(
        NoiseParams {
            analog_hpf_hz: 1024.0,
            ..Default::default()
        },
        "analog_hpf_hz",
    );
    bad(
        NoiseParams {
            band_blend: 1.5,
            ..Default::default()
        },
        "band_blend",
    );
    bad(
        NoiseParams {
            common_mode_fraction: f64::NAN,
            ..Default::default()
        },
        "common_mode_fraction",
    );
    bad(
        NoiseParams {
            powerline_harmonic_ratios: [1.0, -1.0, 0.0, 0.0, 0.0],
            ..Default::default()
        },
        "powerline_harmonic_ratios[1]",
    );
    bad(
        NoiseParams {
            peak_hz: 1900.0,
            ..Default::default()
        },
        "peak_hz",
    );
    // drift on with an empty band (fs/n = 2 Hz > 1 Hz)
    let short = NoiseConfig::new(2048.0, 1024);
    let e = generate(
        &short,
        &NoiseParams {
            baseline_drift_rms_v: 1.0,
            ..Default::default()
        },
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("baseline_drift_low_hz"), "{e}");
    let e = generate(&NoiseConfig::new(-1.0, 4096), &NoiseParams::default(), 0).unwrap_err();
    assert!(e.to_string().contains("fs_hz"), "{e}");
    let e = NoisePsdModel::new(&cfg, PsdModelOptions::new(8192)).unwrap_err();
    assert!(e.to_string().contains("nperseg"), "{e}");
}

#[test]
fn fine_variance_adds_up_to_the_rms_budget() {
    let mut cfg = NoiseConfig::new(2048.0, 4096);
    cfg.baseline_drift_high_hz = 3.0;
    let model = NoisePsdModel::new(&cfg, PsdModelOptions::new(512)).unwrap();
    let p = NoiseParams {
        noise_rms_v: 2.0,
        baseline_drift_rms_v: 0.5,
        ..Default::default()
    };
    let v = model.fine_variance_host(&p).unwrap();
    let total: f64 = v.iter().sum();
    assert!((total - (4.0 + 0.25)).abs() < 1e-9, "{total}");
}
