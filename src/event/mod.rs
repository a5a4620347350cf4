//! The event-time fast network: exact gradients of the *spiking* network's observables between
//! events (EventProp-style, Wunderlich & Pehle 2021, in forward mode), with every spike taken at
//! its interpolated threshold crossing inside the step (Hansel et al. 1998; Shelley & Tao 2001).
//!
//! It is the fast pool of [`crate::network`] (drive → Poisson/gamma inputs → Exp2Syn synapses →
//! LIF + AHP → Fuglevand twitch force), same seeds, same parameters, stepped on the same grid
//! `t_k = k·dt`, but with the discrete decisions made continuous in the parameters:
//!
//! ```text
//! inputs   y(t) = y_k + r_k (t − t_k);  spike at y(t*) = θ_n (time rescaling), y ← y − θ_n
//!          t* = t_k + φ·dt,  φ = (θ_n − y_k)/(r_k dt),  ∂φ = −(∂y_k + φ ∂r_k dt)/(r_k dt)
//! synapse  arrival t_a = t* + D; at t_{m+1} (first grid point ≥ t_a, δ = t_{m+1} − t_a):
//!          A += w f e^{−δ/τ1},  B += w f e^{−δ/τ2},  g = B − A  (exact Exp2Syn at t_a)
//! LIF      c = R(g_k (E − v_k) + I_b − a_k) − (v_k − v_rest);  v⁻ = v_k + α c   (α = dt/τ_m)
//!          crossing v⁻ ≥ θ: φ = (θ − v_k)/(v⁻ − v_k),  ∂φ = −(∂v_k + φ(∂v⁻ − ∂v_k))/(v⁻ − v_k)
//!          (implicit function theorem on the frozen-slope line), then from v_reset at t*:
//!          v_{k+1} = v_reset + (1 − φ)·α·[R(g_k (E − v_reset) + I_b − a_k − ΔI) − (v_reset − v_rest)]
//!          a_{k+1} = k_a a_k + ΔI k_a^{1−φ}     (k_a = e^{−dt/τ_ahp}: the AHP jump decays from t*)
//! twitch   S0 = Σ g_e e^{−(t−t_e)/T},  S1 = Σ g_e (t − t_e) e^{−(t−t_e)/T}  at t_e = t* + d_i,
//!          F(t) = F0 Σ_i P_i (e/T_i) S1_i(t)  (the Fuglevand twitch (t/T)e^{1−t/T}, exact at t_e),
//!          gain g_e = g(T_i/ISI) with the interpolated inter-spike interval (smooth in it)
//! ```
//!
//! With the decisions (which step a spike falls in) fixed, the run is a smooth function of the
//! parameters, and the spike falling into the neighbouring step gives the same state (the
//! formulas agree at φ = 0 and φ = 1), so the forward map is continuous across the grid; its
//! derivative is propagated as tangents (one per parameter, `O(P)` cost) next to the state.
//! What it cannot see: spikes that appear or vanish (a sub-threshold maximum reaching θ). Their
//! contribution is estimated separately ([`estimator`]).
//!
//! Units: s, Hz, S, A, V, N.

pub mod accuracy;
pub mod drive;
pub mod estimator;
pub mod observable;
pub mod paths;
pub mod reference;
pub mod sim;

pub use drive::{EventDrive, Param};
pub use observable::Observable;
pub use paths::{CreationOpts, Insertion, InsertionOpts, Peak};
pub use reference::{Estimate, GradientProblem};
pub use sim::{EventNetwork, EventRun, RunOptions};
