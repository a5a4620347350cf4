//! Noise-profile calibration: fit the parameters of MyoGen's realistic EMG noise model
//! (MODEL.md §4.3, [`crate::emg::noise`]) to the rest window of a recording.
//!
//! **Target** ([`RestTarget`]): the rest window's PSD of the selected channels with a *stable*
//! estimator ([`EstimatorSpec`]): Welch with `nperseg` < window (several Hann segments, mean
//! averaging), then pooled across channels (mean of the per-channel PSDs); plus the PSD of the
//! channel-mean signal, whose ratio to the pooled per-channel PSD carries the common-mode fraction.
//!
//! **Model**: the analytic expected Welch PSD `S(f; p)` of the noise model at the same `nperseg`
//! and window length ([`crate::emg::noise::NoisePsdModel`]); it is exact in expectation, so the
//! objective is a smooth, noise-free function of the parameters.
//!
//! **Objective** ([`NoiseObjective`]), with `r_k = log10 S(f_k; p) − log10 T(f_k)` over the band
//! `f_lo ≤ f_k ≤ f_hi` (`K` bins) and `ρ(r)` the per-bin loss ([`LossKind`]):
//! `L(p) = (1/K) Σ_k ρ(r_k) + w_cm·(1/K) Σ_k ρ(log10 g(c) − log10(T_cm[k]/T[k]))`,
//! `g(c) = c + (1 − c)/n_ch` (the model's channel-mean / per-channel PSD ratio,
//! [`crate::emg::noise::NoisePsd::expected_channel_mean_psd`]). Units: decades (dimensionless).
//!
//! **MyoGen's metric** ([`myogen_distance`]) is always reported as well, so numbers compare with
//! MyoGen's: target = median across channels of one Welch periodogram per channel
//! (`nperseg` = window, Hann, median averaging); model = median of the Welch PSDs of `R` = 20
//! generated realisations of the window length; distance = mean |Δ log10 PSD| over 10–1000 Hz.
//!
//! **Initial estimate** ([`initial_estimate`]): MyoGen's closed-form
//! `calibrate_realistic_noise_profile` (MODEL.md §4.4), with the mains harmonics removed in the
//! frequency domain instead of an IIR notch, the slope inversion done on the analytic PSD instead
//! of two probe generations, the common-mode fraction from the median pairwise correlation and the
//! excess kurtosis from moments (median over channels, clamped at 0).

mod data;
mod initial;
mod myogen;
mod objective;
mod problem;
mod run;
mod spec;

pub use data::{RestData, RestTarget, remove_mains};
pub use initial::{initial_estimate, initial_estimate_with};
pub use myogen::{myogen_distance, myogen_distance_stats, myogen_target};
pub use objective::NoiseObjective;
pub use problem::{EstimatorStudyRow, MethodScore, NoiseProblem, estimator_study};
pub use run::{resolve_data_path, run_noise_calibration, run_noise_calibration_on};
pub use spec::{
    DataSpec, EstimatorSpec, EstimatorStudySpec, FitParamSpec, LossKind, ModelSpec,
    MyogenMetricSpec, NoiseCalibrationSpec, ObjectiveSpec, Pooling, param_index,
};
