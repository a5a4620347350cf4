//! Watanabe oscillating-DC calibration (MODEL.md §7.1, issue 5 item 1).
//!
//! Find the DC offset `dc` (Hz) of the oscillating descending drive
//! `r(t) = clip(dc + A·sin(2π f t) + σ·ξ(t), 0, ∞)` (A = 20 Hz, f = 20 Hz, ξ ~ N(0,1)) such that
//! the mean muscle force over the second half of the run matches a reference:
//!
//! `L(dc) = |F̄(dc) − F_ref| / F_ref`,  `F̄ = mean_{t ≥ T/2} F(t)` (N).
//!
//! Reference (MyoGen's `01_compute_baseline_force.py`): a constant drive `dc_ref + max(0, N(0,1))`
//! (40 Hz) and the mean force over its second half. Two flaws of MyoGen's example are fixed, not
//! copied: the force is absolute (N) by default — MyoGen divides each run's force by that run's
//! own maximum (× 100 N), i.e. matches a mean-to-peak ratio; that is available as
//! [`Normalisation::MyogenPerRunMax`] for the side-by-side — and the network, inputs and noise
//! are fixed across evaluations (common random numbers), so `F̄(dc)` is a deterministic function.
//!
//! Methods (one [`WatanabeModel`] serves them all, so the comparison is fair):
//! - derivative-free with MyoGen's 25-evaluation budget: Brent, Nelder–Mead, particle swarm (the
//!   whole swarm in one batched rollout), random search (Optuna-like);
//! - `newton_fd`: safeguarded Newton on the residual `F̄(dc) − F_ref` whose slope is a *batched
//!   central difference* — one rollout of the batch `{dc − h, dc, dc + h}` (the batch axis as the
//!   derivative device; this is NOT autodiff);
//! - `secant`: the same safeguarded root-finder with the slope from one batched forward
//!   difference `{dc, dc + h}` at the start and secant slopes from consecutive hard evaluations
//!   afterwards;
//! - `secant_chord`: the same, but the first slope is the chord from `(lower, 0)` (no motor
//!   unit fires at the lower bound) to the first point, so no evaluation is spent on it;
//! - `newton_autodiff`: the slope model is the EXACT autodiff derivative of the smooth
//!   (`spike_mode = rate`) network at the current iterate (one smooth forward + backward), applied
//!   to the hard objective, with a bracket (bisection) safeguard;
//! - `smooth_lbfgs`: L-BFGS with exact autodiff gradients on the smooth model's own problem (its
//!   reference is the smooth model's constant-drive force).
//!
//! The hard spiking model's force is not differentiable (its spikes have zero derivative) and the
//! surrogate/pathwise BPTT gradients of this network are biased by 70–15000× (measured; see the
//! report); the smooth model's gradient is exact but for a different forward model (7.5 N vs
//! 31.8 N at 40 Hz). All numbers are in SI units at this API (Hz, s, N, S).

mod model;
mod root;
mod run;
mod spec;

pub use model::{WatanabeModel, WatanabeObjective, second_half_means};
pub use root::{SlopeSource, root_find};
pub use run::{reference_force, run_watanabe_calibration, run_watanabe_spec};
pub use spec::{
    DcSpec, Engine, Normalisation, ProtocolSpec, ReferenceProtocol, ReferenceSpec, SmoothSpec,
    WatanabeMethod, WatanabeSpec,
};
