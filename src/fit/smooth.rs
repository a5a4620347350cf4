//! Shared machinery of the calibrations posed on the smooth (rate-mode) network, where autodiff
//! gives the exact gradient of the simulated forward model.
//!
//! The smooth network is the assembled network with `spike_mode = rate` (each motor neuron emits
//! `s = σ(β·m)` per step instead of a Heaviside spike; `s/dt` is its instantaneous rate in Hz),
//! rate-mode input generators (expected counts) and the LIF reset gradient kept. Surrogate
//! gradients through hard spikes are biased at these sizes (BENCHMARKS.md §4), so every joint or
//! time-varying fit in this crate uses the smooth model, for gradient and derivative-free methods
//! alike (one objective, compared fairly).

use burn::tensor::Tensor;

use super::watanabe::{Normalisation, second_half_means};
use crate::drive::{DriveParams, DriveRate, GeneratorMode, NoiseKind};
use crate::error::{Error, Result};
use crate::kernel::{Ctx, ExecPath, Stage, names, to_vec_f64};
use crate::network::{MYOGEN_WEIGHT_S, MuscleParams, NetworkConfig, build_with_drive};
use crate::neuron::spike::SpikeMode;

/// `cfg` turned into its smooth counterpart (rate spikes with sharpness `cfg.spike_beta`,
/// rate-mode generators).
pub fn smooth_config(cfg: &NetworkConfig) -> NetworkConfig {
    NetworkConfig {
        spike_mode: SpikeMode::Rate,
        generator_mode: GeneratorMode::Rate,
        ..cfg.clone()
    }
}

/// Force `[n_steps, batch, 1]` (N) and motor-neuron spikes `[n_steps, batch, n_mn]` (per step) of
/// one fused rollout of the network `cfg` driven by `drive`, synaptic weight `weight_s`
/// `[batch or 1, 1]` (S). Differentiable when `ctx` is an autodiff context.
pub fn run_network(
    cfg: &NetworkConfig,
    ctx: &Ctx,
    batch: usize,
    drive: Box<dyn Stage>,
    weight_s: Tensor<2>,
) -> Result<(Tensor<3>, Tensor<3>)> {
    let muscle = MuscleParams::from_config(cfg, ctx)?;
    let mut sim = build_with_drive(cfg, ctx, batch, drive, weight_s, &muscle)?;
    let out = sim.run_path(ExecPath::Fused)?;
    Ok((out.trace(names::FORCE_N)?, out.trace(names::SPIKES)?))
}

/// `∂loss/∂p` for each parameter tensor `p` (flattened, f64) after one backward pass of the
/// scalar `loss`; a parameter the loss does not reach gets zeros.
pub fn gradients(loss: Tensor<1>, params: &[&Tensor<2>]) -> Vec<Vec<f64>> {
    let grads = loss.backward();
    params
        .iter()
        .map(|p| {
            p.grad(&grads).map(to_vec_f64).unwrap_or_else(|| {
                let n: usize = p.dims().iter().product();
                vec![0.0; n]
            })
        })
        .collect()
}

/// Error unless every value is finite (`what` names the quantity; `step` reports the index).
pub fn check_finite_values(what: &str, v: &[f64]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::NonFinite {
            buffer: what.into(),
            step: i,
            batch: 0,
            unit: 0,
        }),
        None => Ok(()),
    }
}

/// Mean force over the second half (N) of constant-drive runs `dc + max(0, N(0,1))` (Hz), one
/// batch row per drive, of the network `cfg` as given (hard or smooth).
pub fn constant_drive_forces(cfg: &NetworkConfig, drives_hz: &[f64]) -> Result<Vec<f64>> {
    Ok(constant_drive_rate_force(cfg, drives_hz)?
        .into_iter()
        .map(|(_, f)| f)
        .collect())
}

/// Per constant drive `dc + max(0, N(0,1))` (Hz; one batch row each) of the network `cfg` (hard
/// or smooth): (pool mean rate over the second half = spikes of all units / (units · seconds),
/// in Hz; mean force over the second half, in N).
pub fn constant_drive_rate_force(
    cfg: &NetworkConfig,
    drives_hz: &[f64],
) -> Result<Vec<(f64, f64)>> {
    let ctx = Ctx::cpu();
    let b = drives_hz.len();
    let mut drive = DriveParams::constant(&ctx, 0.0);
    drive.dc_hz = ctx.tensor(drives_hz.to_vec(), [b, 1]);
    drive.validate(b)?;
    let cfg = NetworkConfig {
        drive_noise: NoiseKind::Rectified,
        ..cfg.clone()
    };
    let stage = DriveRate::new(drive, cfg.drive_noise_spec(), cfg.rate_clip);
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let (f, s) = run_network(&cfg, &ctx, b, Box::new(stage), w)?;
    let n_t = f.dims()[0];
    let forces = second_half_means(&to_vec_f64(f), n_t, b, Normalisation::Absolute);
    let s = to_vec_f64(s);
    let (h, n) = (n_t / 2, cfg.n_mn);
    let secs = (n_t - h) as f64 * cfg.dt_s;
    Ok(forces
        .into_iter()
        .enumerate()
        .map(|(bi, force)| {
            let spikes: f64 = (h..n_t)
                .map(|t| {
                    s[(t * b + bi) * n..(t * b + bi + 1) * n]
                        .iter()
                        .sum::<f64>()
                })
                .sum();
            (spikes / (n as f64 * secs), force)
        })
        .collect())
}

/// One row of the gain calibration: (constant drive Hz, hard force N, smooth force N).
pub type GainPoint = (f64, f64, f64);

/// Calibrates [`NetworkConfig::smooth_synaptic_gain`] so that the smooth network is a surrogate
/// of the hard spiking one: the gain g with `Σ_d ln(F_smooth(d; g) / F_hard(d)) = 0` over the
/// constant drives `d` (Hz), i.e. equal geometric-mean force ratio, found by bisection on ln g in
/// [ln 0.5, ln 4] (the smooth force increases with g). `cfg` gives size, dt and seeds; each run
/// lasts `duration_s`. Returns g and, per drive, (drive Hz, hard force N, smooth force N at g).
/// Errors when the hard network produces no force at some drive (raise the drives).
pub fn calibrate_smooth_gain(
    cfg: &NetworkConfig,
    drives_hz: &[f64],
    duration_s: f64,
    iterations: usize,
) -> Result<(f64, Vec<GainPoint>)> {
    crate::error::check::count_at_least("drives_hz", drives_hz.len(), 1)?;
    crate::error::check::all_finite("drives_hz", drives_hz)?;
    let base = NetworkConfig {
        duration_s,
        ..cfg.clone()
    };
    let hard = NetworkConfig {
        spike_mode: SpikeMode::Hard,
        generator_mode: GeneratorMode::Hard,
        ..base.clone()
    };
    let f_hard = constant_drive_forces(&hard, drives_hz)?;
    if let Some((d, _)) = drives_hz.iter().zip(&f_hard).find(|(_, f)| **f <= 0.0) {
        return Err(Error::invalid(
            "drives_hz",
            d,
            "a drive at which the hard network produces force",
        ));
    }
    let smooth = |g: f64| -> Result<(f64, Vec<f64>)> {
        let c = NetworkConfig {
            smooth_synaptic_gain: g,
            ..smooth_config(&base)
        };
        let f = constant_drive_forces(&c, drives_hz)?;
        let mismatch = f
            .iter()
            .zip(&f_hard)
            .map(|(s, h)| (s.max(1e-12) / h).ln())
            .sum::<f64>();
        Ok((mismatch, f))
    };
    let (mut lo, mut hi) = (0.5f64.ln(), 4.0f64.ln());
    let mut best = (1.0, f64::INFINITY, Vec::new());
    for _ in 0..iterations.max(1) {
        let mid = 0.5 * (lo + hi);
        let (m, f) = smooth(mid.exp())?;
        if m.abs() < best.1 {
            best = (mid.exp(), m.abs(), f);
        }
        if m > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let table = drives_hz
        .iter()
        .zip(&f_hard)
        .zip(&best.2)
        .map(|((d, h), s)| (*d, *h, *s))
        .collect();
    Ok((best.0, table))
}
