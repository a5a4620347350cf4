//! Gradient check of the analytic noise PSD: autodiff (f64) vs central finite differences for
//! every continuous parameter, relative error ≤ 1e-4.

use burn::tensor::Tensor;
use myodiff::emg::noise::{
    N_PARAMS, NoiseConfig, NoiseParams, NoisePsdModel, PARAM_NAMES, PsdModelOptions,
};
use myodiff::kernel::{Ctx, to_vec_f64};

fn setup() -> (NoisePsdModel, Vec<f64>) {
    // 0.5 s at 2048 Hz, Welch L = 256; drift band 4–40 Hz so the drift is on.
    let mut cfg = NoiseConfig::new(2048.0, 1024);
    cfg.baseline_drift_low_hz = Some(4.0);
    cfg.baseline_drift_high_hz = 40.0;
    let model = NoisePsdModel::new(&cfg, PsdModelOptions::new(256)).unwrap();
    // Parameters away from every kink: band edges [450, 850] Hz unclipped, k = 3 (spikes on,
    // p = k/2000 < 0.005, ν = 9 > 4), drift and common mode on.
    let p = NoiseParams {
        noise_rms_v: 2.0,
        spectral_slope: -0.7,
        peak_hz: 650.0,
        band_bandwidth_hz: 400.0,
        band_blend: 0.35,
        excess_kurtosis: 3.0,
        analog_hpf_hz: 15.0,
        powerline_amplitude: 0.4,
        powerline_harmonic_ratios: [1.0, 0.6, 0.3, 0.2, 0.1],
        powerline_frequency_drift_hz: 0.5,
        powerline_am_depth: 0.2,
        baseline_drift_rms_v: 0.3,
        baseline_drift_alpha: 1.5,
        common_mode_fraction: 0.6,
    };
    (model, p.to_vec())
}

/// Loss = Σ_k w_k ln P_k + Σ_k w'_k ln X_k over the PSD P and the cross-PSD X = c·P (so the
/// common-mode fraction enters), with fixed pseudo-random weights.
fn loss(model: &NoisePsdModel, ctx: &Ctx, theta: Tensor<2>) -> Tensor<1> {
    let op = model.on(ctx);
    let nf = model.n_freqs();
    let w: Vec<f64> = (0..nf)
        .map(|k| ((k * 7919 % 101) as f64 / 101.0) - 0.3)
        .collect();
    let w2: Vec<f64> = (0..nf)
        .map(|k| ((k * 104_729 % 97) as f64 / 97.0) - 0.5)
        .collect();
    let p = op.expected_psd(theta.clone()).unwrap();
    let x = op.expected_cross_psd(theta).unwrap();
    (p.log() * ctx.tensor(w, [1, nf])).sum() + (x.log() * ctx.tensor(w2, [1, nf])).sum()
}

#[test]
fn analytic_psd_gradient_matches_finite_differences() {
    let (model, p0) = setup();
    let ad = Ctx::cpu().f64().autodiff();
    let theta = ad.tensor(p0.clone(), [1, N_PARAMS]).require_grad();
    let l = loss(&model, &ad, theta.clone());
    let grads = l.backward();
    let g = to_vec_f64(theta.grad(&grads).unwrap());
    let plain = Ctx::cpu().f64();
    let f = |v: &[f64]| {
        to_vec_f64(loss(
            &model,
            &plain,
            plain.tensor(v.to_vec(), [1, N_PARAMS]),
        ))[0]
    };
    let mut worst = 0.0f64;
    for i in 0..N_PARAMS {
        let h = 1e-5 * p0[i].abs().max(1.0);
        let (mut a, mut b) = (p0.clone(), p0.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (f(&a) - f(&b)) / (2.0 * h);
        let rel = (g[i] - fd).abs() / fd.abs().max(g[i].abs()).max(1e-6);
        println!(
            "{:30} autodiff {:+.8e}  FD {:+.8e}  rel {rel:.2e}",
            PARAM_NAMES[i], g[i], fd
        );
        assert!(g[i] != 0.0, "{} has a zero gradient", PARAM_NAMES[i]);
        worst = worst.max(rel);
    }
    assert!(worst <= 1e-4, "worst relative error {worst}");
}

/// The batch axis carries candidates: a `[3, N_PARAMS]` evaluation equals three `[1, N_PARAMS]`.
#[test]
fn batch_rows_are_independent() {
    let (model, p0) = setup();
    let ctx = Ctx::cpu().f64();
    let op = model.on(&ctx);
    let mut rows = p0.clone();
    let mut p1 = p0.clone();
    p1[1] = -1.2;
    let mut p2 = p0.clone();
    p2[13] = 0.0;
    rows.extend(&p1);
    rows.extend(&p2);
    let all = to_vec_f64(op.expected_psd(ctx.tensor(rows, [3, N_PARAMS])).unwrap());
    let nf = model.n_freqs();
    for (b, p) in [p0, p1, p2].iter().enumerate() {
        let one = to_vec_f64(
            op.expected_psd(ctx.tensor(p.clone(), [1, N_PARAMS]))
                .unwrap(),
        );
        for k in 0..nf {
            assert!((all[b * nf + k] - one[k]).abs() <= 1e-12 * one[k].abs());
        }
    }
    assert!(op.expected_psd(ctx.tensor(vec![0.0; 5], [1, 5])).is_err());
}
