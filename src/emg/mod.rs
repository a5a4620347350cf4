//! Surface EMG: electrode grids, MUAP templates and the spikes ⋆ MUAP readout (MODEL.md §4.1–4.2),
//! Welch PSD estimation and the realistic EMG noise model (MyoGen §4.3).

pub mod conv;
pub mod electrodes;
pub mod muap;
pub mod noise;
pub mod surface;
pub mod welch;
