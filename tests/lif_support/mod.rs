//! Shared helpers of the LIF / fused-path tests.
#![allow(dead_code)]

use burn::tensor::Tensor;
use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation};
use myodiff::neuron::lif::{LifConfig, LifInput, LifParams, LifPool, MN_V};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Recruitment thresholds spread over (0, 1].
pub fn rts(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.01 + 0.99 * i as f64 / (n.max(2) - 1) as f64)
        .collect()
}

/// A pathwise random conductance trace `[t, b, n]` (S) that makes every unit fire at moderate rates.
pub fn conductance_values(t: usize, b: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(t * b * n);
    for _ in 0..t {
        for _ in 0..b {
            for j in 0..n {
                let base = 1.2e-7 + 3.0e-7 * j as f64 / n as f64;
                out.push(base * rng.random_range(0.3..1.7));
            }
        }
    }
    out
}

pub fn input_spec(n: usize, input: LifInput) -> BufferSpec {
    match input {
        LifInput::Conductance => BufferSpec::new("syn_conductance_s", &[n], "S"),
        LifInput::Current => BufferSpec::new("inj_current_a", &[n], "A"),
    }
}

/// Runs a LIF pool alone over an input trace; returns (spikes, v) traces `[t, b, n]`.
pub fn run_pool(
    ctx: &Ctx,
    params: LifParams,
    cfg: LifConfig,
    x: Tensor<3>,
    dt_s: f64,
    path: ExecPath,
) -> myodiff::Result<(Tensor<3>, Option<Tensor<3>>)> {
    let [t, b, n] = x.dims();
    let record_v = cfg.record_v;
    let input = cfg.input;
    let mut sim = Simulation::new(ctx.clone(), b, dt_s, t)?;
    sim.add_stage(LifPool::new("mn", params, cfg)?);
    sim.add_input(input_spec(n, input), x)?;
    sim.record(&[MN_V]);
    let r = sim.run_path(path)?;
    let s = r.trace("spikes")?;
    let v = if record_v { Some(r.trace(MN_V)?) } else { None };
    Ok((s, v))
}

pub fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}
