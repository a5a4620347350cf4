//! Shared helpers of the drive tests.
#![allow(dead_code)]

use burn::tensor::Tensor;
use myodiff::drive::{
    DD_SPIKES, DRIVE_RATE_HZ, DriveNoise, DriveParams, DriveRate, InputPopulation,
    InputPopulationConfig, RateClip, SYN_CONDUCTANCE_S, Synapse, SynapseConfig,
};
use myodiff::kernel::{Ctx, ExecPath, Rollout, Simulation, to_vec_f64};

/// A drive chain: rate → generators (→ synapse if given).
pub struct Chain {
    pub params: DriveParams,
    pub noise: DriveNoise,
    pub clip: RateClip,
    pub gen_cfg: InputPopulationConfig,
    pub syn: Option<(SynapseConfig, Tensor<2>)>,
}

impl Chain {
    pub fn run(
        &self,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
        n_steps: usize,
        path: ExecPath,
    ) -> myodiff::Result<Rollout> {
        let mut sim = Simulation::new(ctx.clone(), batch, dt_s, n_steps)?;
        sim.add_stage(DriveRate::new(self.params.clone(), self.noise, self.clip));
        sim.add_stage(InputPopulation::new(self.gen_cfg.clone())?);
        if let Some((cfg, w)) = &self.syn {
            sim.add_stage(Synapse::new(cfg.clone(), w.clone())?);
        }
        sim.record(&[DRIVE_RATE_HZ, DD_SPIKES, SYN_CONDUCTANCE_S]);
        sim.run_path(path)
    }
}

pub fn host(t: Tensor<3>) -> Vec<f64> {
    to_vec_f64(t)
}

/// Relative error |a − b| / max(|b|, floor).
pub fn rel_err(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / b.abs().max(floor)
}

/// Central finite difference of `f` at `x` with step `h`.
pub fn central_fd(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}

/// Inter-spike intervals (in steps) of each column of a 0/1 trace `[n_t, n]` (batch row 0).
pub fn isis(spikes: &[f64], n_t: usize, n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| {
            let times: Vec<usize> = (0..n_t).filter(|&t| spikes[t * n + i] > 0.5).collect();
            times.windows(2).map(|w| (w[1] - w[0]) as f64).collect()
        })
        .collect()
}

/// Pooled CV of the ISIs (std/mean over all intervals).
pub fn pooled_cv(isis: &[Vec<f64>]) -> f64 {
    let all: Vec<f64> = isis.iter().flatten().copied().collect();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    var.sqrt() / mean
}
