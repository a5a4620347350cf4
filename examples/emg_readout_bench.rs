//! Surface-EMG readout benchmark: 800 units (default `PoolGeometry`), GR08MM1305 monopolar grid
//! (13 × 5 = 65 simulated electrodes), 50,000 steps at dt = 0.1 ms, batch 1, f32, flex backend;
//! spikes: Poisson 0/1 trains at 8–35 Hz.
//!
//! `cargo run --release --example emg_readout_bench -- [n_steps] [n_units] [batch] [direct_steps]`
//!
//! Prints the template-computation time, the FFT readout forward time (cold = including the
//! kernel spectra, warm = cached), forward + backward of `Σ emg²` w.r.t. the spikes, and burn's
//! `conv1d` (direct) on `direct_steps` steps extrapolated linearly to `n_steps`.

use std::time::Instant;

use myodiff::emg::electrodes::{Differentiation, ElectrodeArray};
use myodiff::emg::muap::{MuapModel, MuapTemplates, PoolGeometry};
use myodiff::emg::surface::{ConvMethod, SurfaceEmg};
use myodiff::kernel::{Ctx, scalar_f64, to_vec_f32};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> myodiff::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("integer argument"))
        .collect();
    let n_steps = args.first().copied().unwrap_or(50_000);
    let n_units = args.get(1).copied().unwrap_or(800);
    let batch = args.get(2).copied().unwrap_or(1);
    let direct_steps = args.get(3).copied().unwrap_or(500);
    let dt = 1e-4;

    let t0 = Instant::now();
    let grid = ElectrodeArray::gr08mm1305(Differentiation::Monopolar)?;
    let units = PoolGeometry::default().units(n_units, 1)?;
    let tp = MuapTemplates::compute(&grid, &units, &MuapModel::default(), dt, None)?;
    let t_tmpl = t0.elapsed().as_secs_f64();
    let c = tp.n_channels();
    let p2p: Vec<f64> = (0..n_units)
        .map(|u| (0..c).map(|ch| tp.peak_to_peak(u, ch)).fold(0.0, f64::max))
        .collect();
    println!(
        "templates: {n_units} units × {c} channels × {} taps in {t_tmpl:.2} s; max p2p per unit: smallest unit {:.1} µV, largest unit {:.1} µV, max {:.1} µV",
        tp.n_taps,
        p2p[0] * 1e6,
        p2p[n_units - 1] * 1e6,
        p2p.iter().cloned().fold(0.0, f64::max) * 1e6
    );

    let mut rng = StdRng::seed_from_u64(2);
    let rates: Vec<f64> = (0..n_units).map(|_| rng.random_range(8.0..35.0)).collect();
    let spikes: Vec<f32> = (0..n_steps * batch * n_units)
        .map(|i| {
            if rng.random_bool(rates[i % n_units] * dt) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let n_sp: f32 = spikes.iter().sum();
    println!(
        "spikes: {n_steps} steps × batch {batch} × {n_units} units, {n_sp} spikes (mean {:.1} Hz)",
        n_sp as f64 / (n_units * batch) as f64 / (n_steps as f64 * dt)
    );

    let emg = SurfaceEmg::new(&tp)?;
    let ctx = Ctx::cpu();
    for label in ["cold", "warm"] {
        let s = ctx.tensor_f32(spikes.clone(), [n_steps, batch, n_units]);
        let t = Instant::now();
        let y = emg.convolve(s, &ctx)?;
        let v = to_vec_f32(y);
        let el = t.elapsed().as_secs_f64();
        let rms = (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        println!(
            "FFT forward ({label}): {el:.3} s  (EMG RMS {:.1} µV; peak RSS {:.0} MB)",
            rms * 1e6,
            peak_rss_mb()
        );
    }
    let ad = Ctx::cpu().autodiff();
    let s = ad
        .tensor_f32(spikes.clone(), [n_steps, batch, n_units])
        .require_grad();
    let t = Instant::now();
    let y = emg.convolve(s.clone(), &ad)?;
    let loss = (y.clone() * y).sum();
    let grads = loss.backward();
    let g = s.grad(&grads).expect("gradient");
    let gn = scalar_f64(g.abs().max());
    println!(
        "FFT forward + backward (Σ emg² w.r.t. spikes): {:.3} s  (max |grad| {gn:.3e}; peak RSS {:.0} MB)",
        t.elapsed().as_secs_f64(),
        peak_rss_mb()
    );

    if direct_steps > 0 {
        let direct = emg.clone().method(ConvMethod::Direct);
        let s = ctx.tensor_f32(
            spikes[..direct_steps * batch * n_units].to_vec(),
            [direct_steps, batch, n_units],
        );
        let t = Instant::now();
        let y = direct.convolve(s, &ctx)?;
        let _ = to_vec_f32(y);
        let el = t.elapsed().as_secs_f64();
        println!(
            "direct conv1d: {direct_steps} steps in {el:.3} s → extrapolated {:.1} s for {n_steps} steps (peak RSS {:.0} MB)",
            el * n_steps as f64 / direct_steps as f64,
            peak_rss_mb()
        );
    }
    Ok(())
}
