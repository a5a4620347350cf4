//! The plain-Rust reference of the benchmark (issue 12): the fast open-loop network written as
//! one loop over ticks with every stage inlined — what a programmer would write by hand without
//! the kernel — doing the same arithmetic per tick as the stream path: drive rate (DC + sine +
//! noise), 400 threshold generators (integrated rate against unit-mean exponential thresholds),
//! event-driven DD → MN arrivals after a 1 ms delay (p = 0.3), Exp2Syn filters, the conductance
//! LIF with AHP (hard spikes), and the twitch force (per-unit axonal delays, Fuglevand gain from
//! the time since the last spike, critically damped IIR, tanh saturation, `F0·Σ P_i·y_i`).
//!
//! Its constants are representative, not the model's (the pool's parameters are private to the
//! stages): the point is the cost of the arithmetic, so the table reports its spike count next
//! to the network's to show comparable activity.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, StandardNormal};

/// Runs `steps` ticks at dt = 0.1 ms; returns (mean force over the second half, spike count).
pub fn run(steps: usize) -> (f64, usize) {
    let (n_dd, n_mn, dt) = (400usize, 800usize, 1e-4f64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // drive: 40 Hz + 20 Hz · sin(2π·20 t) + 5 Hz · white noise
    let noise: Vec<f64> = (0..steps)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    // generators: integrated rate against exponential thresholds
    let mut y = vec![0.0f64; n_dd];
    let mut th: Vec<f64> = (0..n_dd).map(|_| Exp1.sample(&mut rng)).collect();
    let mut s_dd = vec![0.0f64; n_dd];
    // connectivity and the synapse (1 ms delay ring of source spikes, Exp2Syn 0.5 / 3 ms)
    let targets: Vec<Vec<u32>> = (0..n_dd)
        .map(|_| {
            (0..n_mn as u32)
                .filter(|_| rng.random::<f64>() < 0.3)
                .collect()
        })
        .collect();
    let delay = 10usize;
    let mut ring = vec![0.0f64; (delay + 1) * n_dd];
    let (a1, a2) = ((-dt / 0.5e-3f64).exp(), (-dt / 3e-3f64).exp());
    let w = 1e-9f64;
    let (mut ga, mut gb, mut x) = (vec![0.0; n_mn], vec![0.0; n_mn], vec![0.0; n_mn]);
    // LIF: per-unit input resistance 50 → 10 MΩ, τ_m 10 ms, AHP 20 ms
    let frac = |i: usize| i as f64 / (n_mn - 1) as f64;
    let r_in: Vec<f64> = (0..n_mn).map(|i| 5e7 * (0.2f64).powf(frac(i))).collect();
    let alpha = dt / 10e-3;
    let (e_syn, v_rest, v_th, v_reset) = (0.0, -0.07, -0.05, -0.07);
    let (k_ahp, jump) = ((-dt / 20e-3f64).exp(), 2e-10);
    let mut v = vec![v_rest; n_mn];
    let mut a = vec![0.0f64; n_mn];
    let mut s_mn = vec![0.0f64; n_mn];
    // twitch: P 1 → 100, T 90 → 30 ms, delays 1 → 5 ms, saturation c = 1/(2P)
    let p: Vec<f64> = (0..n_mn).map(|i| 100f64.powf(frac(i))).collect();
    let t_tw: Vec<f64> = (0..n_mn)
        .map(|i| 0.09 * (1.0 / 3.0f64).powf(frac(i)))
        .collect();
    let d_tw: Vec<usize> = (0..n_mn).map(|i| 10 + (40.0 * frac(i)) as usize).collect();
    let depth = 50usize;
    let mut tw_ring = vec![0.0f64; (depth + 1) * n_mn];
    let c_sat: Vec<f64> = p.iter().map(|p| 1.0 / (2.0 * p)).collect();
    let ea: Vec<f64> = t_tw.iter().map(|t| (-dt / t).exp()).collect();
    let (ca, cb, cc): (Vec<f64>, Vec<f64>, Vec<f64>) = (
        ea.iter().map(|e| 2.0 * e).collect(),
        ea.iter().map(|e| e * e).collect(),
        t_tw.iter()
            .zip(&ea)
            .map(|(t, e)| dt / t * std::f64::consts::E * e)
            .collect(),
    );
    let (mut f_cur, mut f_prev) = (vec![0.0f64; n_mn], vec![0.0f64; n_mn]);
    let mut tau = vec![1e3f64; n_mn];
    let f0 = 0.01;
    let (mut force_sum, mut spikes) = (0.0, 0usize);
    let sf = |r: f64| 1.0 - (-2.0 * r * r * r).exp();
    let gain = |r: f64| {
        if r > 0.4 {
            (sf(r) / r) / (sf(0.4) / 0.4)
        } else {
            1.0
        }
    };
    for t in 0..steps {
        let time = t as f64 * dt;
        let rate =
            (40.0 + 20.0 * (2.0 * std::f64::consts::PI * 20.0 * time).sin() + 5.0 * noise[t])
                .max(0.0);
        for i in 0..n_dd {
            y[i] += rate * dt;
            if y[i] >= th[i] {
                s_dd[i] = 1.0;
                y[i] = 0.0;
                th[i] = Exp1.sample(&mut rng);
            } else {
                s_dd[i] = 0.0;
            }
        }
        let slot = t % (delay + 1);
        ring[slot * n_dd..(slot + 1) * n_dd].copy_from_slice(&s_dd);
        x.fill(0.0);
        if t >= delay {
            let old = (t - delay) % (delay + 1);
            for (i, &s) in ring[old * n_dd..(old + 1) * n_dd].iter().enumerate() {
                if s != 0.0 {
                    for &j in &targets[i] {
                        x[j as usize] += s;
                    }
                }
            }
        }
        for j in 0..n_mn {
            ga[j] = ga[j] * a1 + w * x[j];
            gb[j] = gb[j] * a2 + w * x[j];
            let g = gb[j] - ga[j];
            let i_in = g * (e_syn - v[j]) - a[j];
            let v1 = v[j] + alpha * (r_in[j] * i_in - (v[j] - v_rest));
            let s = if v1 > v_th { 1.0 } else { 0.0 };
            v[j] = v1 - s * (v1 - v_reset);
            a[j] = k_ahp * a[j] + s * jump;
            s_mn[j] = s;
            spikes += s as usize;
        }
        let slot = t % (depth + 1);
        tw_ring[slot * n_mn..(slot + 1) * n_mn].copy_from_slice(&s_mn);
        let mut acc = 0.0;
        for i in 0..n_mn {
            let sd = if t >= d_tw[i] {
                tw_ring[((t - d_tw[i]) % (depth + 1)) * n_mn + i]
            } else {
                0.0
            };
            let u = if sd != 0.0 {
                sd * gain(t_tw[i] / tau[i])
            } else {
                0.0
            };
            tau[i] = tau[i] + dt - sd * tau[i];
            let e = (-c_sat[i] * f_cur[i]).exp();
            acc += p[i] * (1.0 - e) / (1.0 + e);
            let f_next = ca[i] * f_cur[i] - cb[i] * f_prev[i] + cc[i] * u;
            f_prev[i] = f_cur[i];
            f_cur[i] = f_next;
        }
        if t >= steps / 2 {
            force_sum += acc * f0;
        }
    }
    (force_sum / (steps - steps / 2) as f64, spikes)
}
