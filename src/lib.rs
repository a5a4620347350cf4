//! # myodiff — a differentiable neuromuscular simulator
//!
//! Descending drive → motor-neuron pool → spikes → twitch force and surface EMG, stepped in
//! lockstep as burn tensor ops, so a whole rollout is differentiable. Units are SI inside
//! (s, V, N, Hz, S, A); every public function says which units it takes.
//!
//! Layers: [`kernel`] (no physiology), then the physiological stages.

pub mod afferent;
pub mod calibrate;
pub mod closed_loop;
pub mod drive;
pub mod emg;
pub mod error;
pub mod event;
pub mod experiment;
pub mod fit;
pub mod gradcheck;
pub mod io;
pub mod kernel;
pub mod muscle;
pub mod network;
pub mod neuron;
pub mod progress;

pub use error::{Error, Result};
