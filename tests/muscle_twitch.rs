//! TwitchForce stage and twitch-parameter functions: twitch shape of the IIR, gains, delays,
//! saturation, batching, %MVC, and typed errors.

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::kernel::{BufferSpec, Ctx, Simulation, to_vec_f64};
use myodiff::muscle::{
    GainMode, MyogenForceModel, TwitchForce, Twitches, fuglevand_gain_f64, fuglevand_twitches,
    iir_coeffs, mean_force_at_rate_n, percent_mvc, twitch_shape,
};

fn ctx() -> Ctx {
    Ctx::cpu().f64()
}

// The published formulas, written out here (independent of the library's implementations).

/// Fuglevand's twitch `h(t) = (t/T)·e^{1 − t/T}` for `t ≥ 0`, else 0.
fn h(t: f64, tc: f64) -> f64 {
    if t < 0.0 {
        0.0
    } else {
        t / tc * (1.0 - t / tc).exp()
    }
}

/// Fuglevand's gain (1993, eq. 17) at `r = T/ISI`: 1 for `r ≤ 0.4`, else
/// `[(1 − e^{−2r³})/r] / [(1 − e^{−2·0.4³})/0.4]`.
fn gain(r: f64) -> f64 {
    if r <= 0.4 {
        1.0
    } else {
        ((1.0 - (-2.0 * r.powi(3)).exp()) / r) / ((1.0 - (-2.0 * 0.4f64.powi(3)).exp()) / 0.4)
    }
}

/// Fuglevand's laws (1993, eqs. 13, 14), units `i = 1..=n`: `P_i = e^{(ln RP / n)·i}`,
/// `T_i = T_L · (1/P_i)^{1/log_RT(RP)}` (returned 0-based).
fn p_and_t(rp: f64, t_l: f64, rt: f64, n: usize) -> (Vec<f64>, Vec<f64>) {
    let p: Vec<f64> = (1..=n)
        .map(|i| (rp.ln() / n as f64 * i as f64).exp())
        .collect();
    let t = p
        .iter()
        .map(|pi| t_l * (1.0 / pi).powf(1.0 / (rp.ln() / rt.ln())))
        .collect();
    (p, t)
}

#[test]
fn host_functions_match_the_published_formulas() {
    for tc in [0.03, 0.09] {
        for t in [-1e-3, 0.0, 0.01, 0.03, 0.09, 0.4] {
            assert!(
                (twitch_shape(t, tc) - h(t, tc)).abs() <= 1e-15,
                "h({t}, {tc})"
            );
        }
    }
    for r in [0.0, 0.1, 0.4, 0.41, 0.8, 1.5, 3.0, 10.0] {
        assert!(
            (fuglevand_gain_f64(r) - gain(r)).abs() <= 1e-14 * gain(r),
            "g({r})"
        );
    }
}

fn p11(ctx: &Ctx, v: f64) -> Tensor<2> {
    ctx.tensor(vec![v], [1, 1])
}

fn twitches(ctx: &Ctx, rp: f64, t_l_s: f64, rt: f64, n: usize) -> Twitches {
    fuglevand_twitches(&p11(ctx, rp), &p11(ctx, t_l_s), &p11(ctx, rt), n).unwrap()
}

/// Runs `stage` over a host spike raster `spikes[t][b][u]` and returns force `[t][b]`.
fn run(
    ctx: &Ctx,
    stage: TwitchForce,
    spikes: &[Vec<Vec<f64>>],
    dt_s: f64,
) -> Result<Vec<Vec<f64>>, Error> {
    let n_t = spikes.len();
    let batch = spikes[0].len();
    let n = spikes[0][0].len();
    let flat: Vec<f64> = spikes.iter().flatten().flatten().copied().collect();
    let mut sim = Simulation::new(ctx.clone(), batch, dt_s, n_t)?;
    sim.add_input(
        BufferSpec::new("spikes", &[n], "1"),
        ctx.tensor(flat, [n_t, batch, n]),
    )?;
    sim.add_stage(stage);
    let roll = sim.run()?;
    let f = to_vec_f64(roll.trace("force_n")?);
    Ok((0..n_t)
        .map(|t| (0..batch).map(|b| f[t * batch + b]).collect())
        .collect())
}

fn raster(
    n_t: usize,
    batch: usize,
    n: usize,
    events: &[(usize, usize, usize)],
) -> Vec<Vec<Vec<f64>>> {
    let mut s = vec![vec![vec![0.0; n]; batch]; n_t];
    for &(t, b, u) in events {
        s[t][b][u] = 1.0;
    }
    s
}

#[test]
fn p_and_t_follow_fuglevand_laws() {
    let c = ctx();
    let tw = twitches(&c, 100.0, 0.09, 3.0, 800);
    let p = to_vec_f64(tw.p.clone());
    let t = to_vec_f64(tw.t_s.clone());
    // same numbers as MyoGen's ForceModel (RP = rt ratio = 100), T converted from samples
    let rt: Vec<f64> = (0..800)
        .map(|i| 0.01 + (1.0 - 0.01) * i as f64 / 799.0)
        .collect();
    let m = MyogenForceModel::new(&rt, 2048.0, 90.0, 3.0).unwrap();
    let (p_ref, t_ref) = p_and_t(100.0, 0.09, 3.0, 800);
    for i in 0..800 {
        assert!((p[i] - m.p[i]).abs() <= 1e-12 * m.p[i]);
        assert!((t[i] - m.t_samples[i] / 2048.0).abs() <= 1e-12 * t[i]);
        assert!((p[i] - p_ref[i]).abs() <= 1e-12 * p_ref[i], "P[{i}]");
        assert!((t[i] - t_ref[i]).abs() <= 1e-12 * t_ref[i], "T[{i}]");
    }
    assert!((p[799] - 100.0).abs() < 1e-9 && (t[799] - 0.03).abs() < 1e-12);
}

#[test]
fn iir_impulse_response_is_the_sampled_twitch() {
    // gain None: one spike of unit k gives F0·P_k·(t/T)e^{1−t/T}, t = (step − spike)·dt
    let c = ctx();
    let dt = 1e-4;
    let n = 5;
    let tw = twitches(&c, 100.0, 0.09, 3.0, n);
    let (p, t_s) = p_and_t(100.0, 0.09, 3.0, n);
    let f0 = 2.5;
    let n_t = 2000;
    for k in [0usize, 4] {
        let stage = TwitchForce::new(tw.clone(), p11(&c, f0))
            .unwrap()
            .with_gain(GainMode::None);
        let f = run(&c, stage, &raster(n_t, 1, n, &[(100, 0, k)]), dt).unwrap();
        let mut worst: f64 = 0.0;
        for (t, row) in f.iter().enumerate() {
            let want = f0 * p[k] * h((t as f64 - 100.0) * dt, t_s[k]);
            worst = worst.max((row[0] - want).abs() / (f0 * p[k]));
        }
        assert!(
            worst < 1e-10,
            "unit {k}: max deviation from the sampled twitch {worst:e} (of peak)"
        );
        let (kmax, fmax) = f
            .iter()
            .enumerate()
            .fold((0, 0.0), |a, (t, r)| if r[0] > a.1 { (t, r[0]) } else { a });
        let t_peak = (kmax - 100) as f64 * dt;
        assert!(
            (t_peak - t_s[k]).abs() <= dt,
            "peak at {t_peak} s, T = {} s",
            t_s[k]
        );
        assert!(
            (fmax - f0 * p[k]).abs() <= 1e-6 * f0 * p[k],
            "peak {fmax} vs F0·P {}",
            f0 * p[k]
        );
    }
}

#[test]
fn compat_gain_reproduces_myogen_single_spike() {
    // GainMode::MyogenCompat on MyoGen's own grid (0.1 ms): peak P·g at T, and the whole twitch
    // equal to MyoGen's (linearly resampled, truncated at 5T) to 2e-4 of the peak
    let c = ctx();
    let n = 800;
    let dt = 1e-4;
    let tw = twitches(&c, 100.0, 0.09, 3.0, n);
    let rt: Vec<f64> = (0..n)
        .map(|i| 0.01 + (1.0 - 0.01) * i as f64 / 799.0)
        .collect();
    let m = MyogenForceModel::new(&rt, 2048.0, 90.0, 3.0).unwrap();
    let n_t = 1500;
    for k in [0usize, 799] {
        let stage = TwitchForce::new(tw.clone(), p11(&c, 1.0))
            .unwrap()
            .with_gain(GainMode::MyogenCompat);
        let f = run(&c, stage, &raster(n_t, 1, n, &[(10, 0, k)]), dt).unwrap();
        let mut sp = vec![Vec::new(); n];
        sp[k] = vec![10];
        let want = m.force_on_spike_grid(&sp, n_t, dt).unwrap();
        let g = m.gains_at_spikes(k, &[10], n_t)[0];
        let peak = m.p[k] * g;
        let t_end = 10 + (5.0 * m.t_samples[k] / 2048.0 / dt) as usize - 2;
        for t in 0..t_end.min(n_t) {
            assert!(
                (f[t][0] - want[t]).abs() <= 2e-4 * peak,
                "unit {k} step {t}: {} vs {}",
                f[t][0],
                want[t]
            );
        }
        let fmax = f.iter().map(|r| r[0]).fold(0.0, f64::max);
        assert!(
            (fmax - peak).abs() <= 1e-6 * peak,
            "unit {k}: peak {fmax} vs P·g {peak}"
        );
    }
}

#[test]
fn fuglevand_gain_depends_on_the_previous_interval() {
    // unit 4 (T = 30 ms) fires at 50 Hz (ISI 20 ms, r = 1.5) and then a doublet (ISI 5 ms):
    // the output must equal Σ_k g_k F0 P h(t − t_k) with g_k = g(T/ISI_{k}) and g_0 = 1.
    let c = ctx();
    let dt = 5e-4;
    let n = 5;
    let tw = twitches(&c, 100.0, 0.09, 3.0, n);
    let (ps, ts) = p_and_t(100.0, 0.09, 3.0, n);
    let (p, t_c) = (ps[4], ts[4]);
    let times = [10usize, 50, 90, 130, 140, 300];
    let ev: Vec<_> = times.iter().map(|&t| (t, 0, 4)).collect();
    let n_t = 600;
    let stage = TwitchForce::new(tw.clone(), p11(&c, 1.0)).unwrap();
    let f = run(&c, stage, &raster(n_t, 1, n, &ev), dt).unwrap();
    let gains: Vec<f64> = (0..times.len())
        .map(|k| {
            if k == 0 {
                1.0
            } else {
                gain(t_c / ((times[k] - times[k - 1]) as f64 * dt))
            }
        })
        .collect();
    // eq. 17: the gain rises above 1 at mid rates (r = 1.5 → 2.22) and falls at high ones (r = 6 → 0.55)
    assert!(
        gains[1] > 2.0 && gains[4] < 0.6 && gains[5] == 1.0,
        "{gains:?}"
    );
    for (t, row) in f.iter().enumerate() {
        let want: f64 = times
            .iter()
            .zip(&gains)
            .map(|(&tk, g)| g * p * h((t as f64 - tk as f64) * dt, t_c))
            .sum();
        assert!(
            (row[0] - want).abs() <= 1e-9 * p,
            "step {t}: {} vs {want}",
            row[0]
        );
    }
}

#[test]
fn steady_mean_force_matches_closed_form() {
    // regular firing of all units at 40 Hz: the mean over whole periods after the transient
    // equals F0 Σ P_i g(T_i f) e T_i f (up to the sampling of the twitch)
    let c = ctx();
    let dt = 5e-4;
    let n = 4;
    let tw = twitches(&c, 50.0, 0.09, 3.0, n);
    let isi = 50; // 25 ms
    let n_t = 4000;
    let ev: Vec<_> = (0..n_t)
        .step_by(isi)
        .flat_map(|t| (0..n).map(move |u| (t, 0, u)))
        .collect();
    let f0 = 3.0;
    let stage = TwitchForce::new(tw.clone(), p11(&c, f0)).unwrap();
    let f = run(&c, stage, &raster(n_t, 1, n, &ev), dt).unwrap();
    let tail = &f[2000..4000];
    let mean = tail.iter().map(|r| r[0]).sum::<f64>() / tail.len() as f64;
    // F̄ = F0 Σ_i P_i g(T_i f) e T_i f (the mean of a periodic twitch train), written out here
    let rate = 1.0 / (isi as f64 * dt);
    let (p, t) = p_and_t(50.0, 0.09, 3.0, n);
    let want: f64 = f0
        * p.iter()
            .zip(&t)
            .map(|(pi, ti)| pi * gain(ti * rate) * std::f64::consts::E * ti * rate)
            .sum::<f64>();
    assert!(
        (mean - want).abs() <= 1e-3 * want,
        "mean {mean} vs closed form {want}"
    );
    let lib = to_vec_f64(mean_force_at_rate_n(&tw, &p11(&c, f0), rate).unwrap())[0];
    assert!(
        (lib - want).abs() <= 1e-12 * want,
        "library closed form {lib} vs {want}"
    );
    let pct = to_vec_f64(percent_mvc(c.tensor(vec![mean], [1]), want).unwrap())[0];
    assert!((pct - 100.0).abs() < 0.1);
    assert!(percent_mvc(c.tensor(vec![mean], [1]), 0.0).is_err());
}

#[test]
fn axonal_delays_shift_each_unit() {
    let c = ctx();
    let dt = 5e-4;
    let n = 3;
    let tw = twitches(&c, 30.0, 0.09, 3.0, n);
    let ev = [(5usize, 0usize, 0usize), (5, 0, 1), (40, 0, 2), (60, 0, 1)];
    let n_t = 700;
    let delays = [0usize, 7, 23];
    let with = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0))
            .unwrap()
            .with_delay_steps(delays.to_vec())
            .unwrap(),
        &raster(n_t, 1, n, &ev),
        dt,
    )
    .unwrap();
    let shifted: Vec<_> = ev.iter().map(|&(t, b, u)| (t + delays[u], b, u)).collect();
    let want = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0)).unwrap(),
        &raster(n_t, 1, n, &shifted),
        dt,
    )
    .unwrap();
    for t in 0..n_t {
        assert!((with[t][0] - want[t][0]).abs() <= 1e-12, "step {t}");
    }
    // delays in seconds round to the same steps
    let with_s = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0))
            .unwrap()
            .with_delays_s(delays.iter().map(|&d| d as f64 * dt).collect())
            .unwrap(),
        &raster(n_t, 1, n, &ev),
        dt,
    )
    .unwrap();
    assert_eq!(with_s, with);
    assert!(
        TwitchForce::new(tw.clone(), p11(&c, 1.0))
            .unwrap()
            .with_delay_steps(vec![1])
            .is_err()
    );
    assert!(
        TwitchForce::new(tw, p11(&c, 1.0))
            .unwrap()
            .with_delays_s(vec![0.0, -1.0, 0.0])
            .is_err()
    );
}

#[test]
fn saturation_bounds_each_unit() {
    let c = ctx();
    let dt = 5e-4;
    let n = 2;
    let tw = twitches(&c, 10.0, 0.09, 3.0, n);
    let p = to_vec_f64(tw.p.clone());
    let n_t = 800;
    let ev: Vec<_> = (0..n_t).step_by(10).map(|t| (t, 0, 1)).collect(); // 200 Hz
    let lin = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0))
            .unwrap()
            .with_gain(GainMode::None),
        &raster(n_t, 1, n, &ev),
        dt,
    )
    .unwrap();
    let sat_c = 0.5;
    let sat = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0))
            .unwrap()
            .with_gain(GainMode::None)
            .with_saturation(c.tensor(vec![sat_c, sat_c], [1, 2]))
            .unwrap(),
        &raster(n_t, 1, n, &ev),
        dt,
    )
    .unwrap();
    for t in 0..n_t {
        let x = lin[t][0] / p[1];
        let want = p[1] * (1.0 - (-sat_c * x).exp()) / (1.0 + (-sat_c * x).exp());
        assert!((sat[t][0] - want).abs() <= 1e-12 * p[1]);
        assert!(sat[t][0] < p[1]);
    }
    assert!(lin.iter().map(|r| r[0]).fold(0.0, f64::max) > 3.0 * p[1]);
    assert!(
        TwitchForce::new(tw, p11(&c, 1.0))
            .unwrap()
            .with_saturation(c.tensor(vec![-1.0], [1, 1]))
            .is_err()
    );
}

#[test]
fn batch_axis_carries_parameter_sets() {
    let c = ctx();
    let dt = 5e-4;
    let n = 3;
    let rp = c.tensor(vec![20.0, 80.0], [2, 1]);
    let tl = c.tensor(vec![0.09, 0.07], [2, 1]);
    let rt = c.tensor(vec![3.0, 2.5], [2, 1]);
    let f0 = c.tensor(vec![1.0, 4.0], [2, 1]);
    let tw = fuglevand_twitches(&rp, &tl, &rt, n).unwrap();
    let ev = [
        (3usize, 0usize, 0usize),
        (3, 1, 0),
        (20, 0, 2),
        (20, 1, 2),
        (60, 0, 2),
        (60, 1, 2),
        (61, 1, 1),
    ];
    let n_t = 400;
    let both = run(
        &c,
        TwitchForce::new(tw, f0).unwrap(),
        &raster(n_t, 2, n, &ev),
        dt,
    )
    .unwrap();
    for (b, (rpv, tlv, rtv, f0v)) in [(20.0, 0.09, 3.0, 1.0), (80.0, 0.07, 2.5, 4.0)]
        .into_iter()
        .enumerate()
    {
        let tw1 = twitches(&c, rpv, tlv, rtv, n);
        let ev1: Vec<_> = ev
            .iter()
            .filter(|e| e.1 == b)
            .map(|&(t, _, u)| (t, 0, u))
            .collect();
        let one = run(
            &c,
            TwitchForce::new(tw1, p11(&c, f0v)).unwrap(),
            &raster(n_t, 1, n, &ev1),
            dt,
        )
        .unwrap();
        for t in 0..n_t {
            assert!(
                (both[t][b] - one[t][0]).abs() <= 1e-12 * (1.0 + one[t][0].abs()),
                "batch {b} step {t}"
            );
        }
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let c = ctx();
    let bad = |rp: f64, tl: f64, rt: f64, n: usize| {
        fuglevand_twitches(&p11(&c, rp), &p11(&c, tl), &p11(&c, rt), n)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(1.0, 0.09, 3.0, 5).contains("rp"));
    assert!(bad(0.5, 0.09, 3.0, 5).contains("rp"));
    assert!(bad(f64::NAN, 0.09, 3.0, 5).contains("rp"));
    assert!(bad(100.0, 0.0, 3.0, 5).contains("t_l_s"));
    assert!(bad(100.0, -0.09, 3.0, 5).contains("t_l_s"));
    assert!(bad(100.0, 0.09, 1.0, 5).contains("rt"));
    assert!(bad(100.0, 0.09, 0.5, 5).contains("rt"));
    assert!(bad(100.0, 0.09, 3.0, 0).contains("n_units"));
    // a second batch element that is wrong is named too
    let e = fuglevand_twitches(
        &c.tensor(vec![10.0, 0.9], [2, 1]),
        &p11(&c, 0.09),
        &p11(&c, 3.0),
        3,
    )
    .unwrap_err();
    assert!(e.to_string().contains("rp[1]"), "{e}");
    // parameter shapes
    assert!(
        fuglevand_twitches(
            &c.tensor(vec![10.0, 20.0], [1, 2]),
            &p11(&c, 0.09),
            &p11(&c, 3.0),
            3
        )
        .is_err()
    );
    let tw = twitches(&c, 100.0, 0.09, 3.0, 5);
    // dt <= 0, dt > T_min/2 (T_min = 30 ms)
    assert!(
        iir_coeffs(&tw.t_s, 0.0)
            .unwrap_err()
            .to_string()
            .contains("dt_s")
    );
    assert!(iir_coeffs(&tw.t_s, -1e-4).is_err());
    assert!(iir_coeffs(&tw.t_s, 0.015).is_ok());
    let e = iir_coeffs(&tw.t_s, 0.016).unwrap_err();
    assert!(matches!(e, Error::UnstableTimeStep { .. }), "{e}");
    let e = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0)).unwrap(),
        &raster(10, 1, 5, &[]),
        0.02,
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnstableTimeStep { .. }), "{e}");
    // F0 < 0, spikes of the wrong width, batch mismatch
    assert!(
        TwitchForce::new(tw.clone(), p11(&c, -1.0))
            .unwrap_err()
            .to_string()
            .contains("f0_n")
    );
    let e = run(
        &c,
        TwitchForce::new(tw.clone(), p11(&c, 1.0)).unwrap(),
        &raster(10, 1, 4, &[]),
        1e-3,
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let f0_3 = c.tensor(vec![1.0, 1.0, 1.0], [3, 1]);
    let e = run(
        &c,
        TwitchForce::new(tw, f0_3).unwrap(),
        &raster(10, 2, 5, &[]),
        1e-3,
    )
    .unwrap_err();
    assert!(e.to_string().contains("f0_n"), "{e}");
}
