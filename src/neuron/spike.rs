//! Spike functions and their three differentiability modes (MyoGen `jax_models.py`, §8.1).
//!
//! With `m` the (dimensionless) distance above threshold:
//! - `Hard`: `s = H(m)` (Heaviside, `H(0) = 0`), zero gradient.
//! - `Surrogate`: forward exactly `H(m)`; backward uses the fast-sigmoid (SuperSpike) slope
//!   `dH/dm := β / (1 + β|m|)²` (straight-through: `s = H(m) + g(m) − detach(g(m))`,
//!   `g(m) = β m / (1 + β|m|)`, so `g − detach(g)` is exactly 0 in the forward pass).
//! - `Rate`: smooth expected firing `s = σ(β m)` (a different, continuous forward model).

use burn::tensor::{Tensor, activation::sigmoid};

/// MyoGen's surrogate sharpness `SURROGATE_BETA` (per unit of `m`).
pub const SURROGATE_BETA: f64 = 10.0;

/// How spikes are made differentiable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpikeMode {
    /// Heaviside; no gradient.
    #[default]
    Hard,
    /// Heaviside forward (bit-identical to `Hard`), fast-sigmoid surrogate backward.
    Surrogate,
    /// Smooth sigmoid forward and backward.
    Rate,
}

impl std::str::FromStr for SpikeMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hard" => Ok(SpikeMode::Hard),
            "surrogate" | "pathwise" => Ok(SpikeMode::Surrogate),
            "rate" => Ok(SpikeMode::Rate),
            _ => Err(crate::Error::invalid(
                "spike_mode",
                s,
                "one of hard, surrogate, rate",
            )),
        }
    }
}

/// Heaviside step `H(m) = 1 if m > 0 else 0`, as floats of `m`'s dtype, no gradient.
pub fn heaviside<const D: usize>(m: Tensor<D>) -> Tensor<D> {
    let m = m.detach();
    let mask = m.clone().greater_elem(0.0);
    m.zeros_like().mask_fill(mask, 1.0)
}

/// The spike function `s(m)` in the given mode (see module docs); `beta` is the surrogate/rate
/// sharpness in units of 1/m.
pub fn spike_fn<const D: usize>(m: Tensor<D>, mode: SpikeMode, beta: f64) -> Tensor<D> {
    match mode {
        SpikeMode::Hard => heaviside(m),
        SpikeMode::Surrogate => {
            let h = heaviside(m.clone());
            let g = m.clone() * beta / (m.abs() * beta + 1.0);
            h + (g.clone() - g.detach())
        }
        SpikeMode::Rate => sigmoid(m * beta),
    }
}

/// The surrogate derivative `β / (1 + β|m|)²` (used by hand-written adjoints of fused ops).
#[inline]
pub fn surrogate_slope(m: f64, beta: f64) -> f64 {
    let d = 1.0 + beta * m.abs();
    beta / (d * d)
}
