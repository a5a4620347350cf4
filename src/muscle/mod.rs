//! Muscle force: Fuglevand twitch model (MODEL.md §3).
//!
//! - [`twitch`]: twitch parameters `P_i`, `T_i` from `RP`, `T_L`, `RT` (differentiable), the
//!   critically damped twitch IIR, Fuglevand's gain, saturation, %MVC helpers.
//! - [`force`]: the [`TwitchForce`] stage `spikes → force_n` (axonal delays, gain modes).
//! - [`fused`]: the fused whole-trace op of `TwitchForce` (hand-written adjoint).
//! - [`hill`]: Hill muscle–tendon model with Fuglevand motor units (MODEL.md §3.2, §5.4).
//! - [`joint`]: joint dynamics (MODEL.md §5.3).
//! - [`myogen_compat`]: exact f64 emulation of MyoGen 0.12's open-loop `ForceModel`.

pub mod force;
pub mod fused;
pub mod hill;
pub mod joint;
pub mod myogen_compat;
pub mod twitch;

pub use force::{GainMode, NO_PREVIOUS_SPIKE_S, TwitchForce};
pub use myogen_compat::{MyogenForceModel, MyogenForceReadout};
pub use twitch::{
    IirCoeffs, MYOGEN_FS_HZ, Twitches, contraction_times_s, fuglevand_gain, fuglevand_gain_f64,
    fuglevand_twitches, iir_coeffs, iir_step, mean_force_at_rate_n, myogen_compat_gain,
    peak_twitch, percent_mvc, saturation, twitch_shape,
};
