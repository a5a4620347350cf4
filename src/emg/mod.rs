//! Surface EMG: Welch PSD estimation and the realistic EMG noise model (MyoGen §4.3).

pub mod noise;
pub mod welch;
