//! Descending drive (MODEL.md §2): drive rate r(t) → Poisson/gamma input neurons → fixed random
//! connectivity → synaptic conductance onto the motor neurons.
//!
//! Buffers: `drive_rate_hz` `[1]` (Hz) → `dd_spikes` `[n_dd]` (spikes/step) →
//! `syn_conductance_s` `[n_mn]` (siemens). Every stage has a tape path (per-step tensor ops) and a
//! fused whole-trace scan ([`fused`]) computing the same thing.

pub mod fused;
pub mod generator;
mod host;
pub mod piecewise;
pub mod rate;
pub mod synapse;

pub use generator::{
    DD_SPIKES, GeneratorMode, InputPopulation, InputPopulationConfig, SpikeProcess,
};
pub use piecewise::{KnotTimes, PiecewiseLinearDrive};
pub use rate::{DRIVE_RATE_HZ, DriveNoise, DriveParams, DriveRate, NoiseKind, RateClip};
pub use synapse::{
    ConnectivityMatrix, ConnectivityRule, SYN_CONDUCTANCE_S, Synapse, SynapseConfig,
    SynapseKinetics,
};
