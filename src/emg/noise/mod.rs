//! MyoGen's realistic EMG noise model (MODEL.md §4.3) with two faces:
//!
//! - [`generate`](mod@generate): a pathwise generator (host code: f64 + rustfft; seeded draws up front);
//! - [`psd`]: the analytic expected Welch PSD as a differentiable burn function of the
//!   parameters, `[batch, N_PARAMS]` → `[batch, n_freq]` (for gradient-based calibration), with
//!   the common-mode (cross-channel) component;
//!
//! plus the Butterworth responses both share ([`butter`]) and MyoGen's log-PSD distance
//! ([`distance`]). Units: the signal's (V in myodiff), Hz.

pub mod butter;
pub mod distance;
pub mod generate;
pub mod params;
pub mod psd;

pub use distance::PsdDistance;
pub use generate::{
    NoiseDraws, excess_kurtosis, generate, generate_channels, generate_tensor, generate_with_draws,
    rms, std_dev,
};
pub use params::{N_PARAMS, NoiseConfig, NoiseParams, PARAM_NAMES, idx};
pub use psd::{NoisePsd, NoisePsdModel, PsdModelOptions};
