//! Motor-neuron pool: recruitment thresholds, membrane models, spike functions.

pub mod fused;
pub mod lif;
pub mod meanfield;
pub mod nerlab;
pub mod nerlab_fused;
pub mod nerlab_params;
pub mod recruitment;
pub mod siegert;
pub mod spike;

pub use spike::{SURROGATE_BETA, SpikeMode, heaviside, spike_fn, surrogate_slope};
