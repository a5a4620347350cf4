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

use crate::drive::GeneratorMode;
use crate::error::{Error, Result};
use crate::kernel::{Ctx, ExecPath, Stage, names, to_vec_f64};
use crate::network::{MuscleParams, NetworkConfig, build_with_drive};
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
