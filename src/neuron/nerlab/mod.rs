//! The FAITHFUL membrane model: MyoGen's default "NERLab" two-compartment conductance-based motor
//! neuron (MODEL.md §1.1–1.4; MyoGen `nmodl_files/napp.mod`, `caL.mod`, `cells.py` `AlphaMN`,
//! `populations/motor_neurons.py`), as a batched burn tensor step on `[batch, n_units]` tensors.
//!
//! # Units
//! Inside: NEURON's units — mV, ms, µS, nA, nF, µm, S/cm² (µS·mV = nA, nA·ms/nF = mV). At the
//! [`NerlabPool`] stage boundary: SI (`syn_conductance_s` in S, `v_soma_v` in V, `dt_s` in s).
//!
//! # Model (NERLab frame: rest ≈ 0 mV, `el = 0`, `ena = 120`, `ek = −10`, `ecaL = 140` mV)
//! Soma (cylinder `L = diam = d_s`, area `A_s = π d_s²`), channel `napp` with gates `m, h, p, n, r`
//! evaluated at `v2 = v − vtraub_napp`, `vtrap(x, y) = x/(e^{x/y} − 1)`:
//! - `α_m = 0.64·vtrap(15 − v2, 4)`, `β_m = 0.56·vtrap(v2 − 40, 5)`;
//! - `α_h = 0.928·e^{(17 − v2)/18}`, `β_h = 9/(e^{(40 − v2)/5} + 1)`;
//! - `α_p = 0.64·vtrap(5 − v2, 4)`, `β_p = 0.56·vtrap(v2 − 30, 5)`;
//! - `α_n = 0.08·vtrap(15 − v2, 7)`, `β_n = 2·e^{(10 − v2)/40}`;
//! - `α_r = 3.5/(e^{(55 − v2)/4} + 1)`, `β_r = rinact`;
//! - `I_s = (ḡ_Na m³h + ḡ_NaP p³)(v − ena) + (ḡ_Kf n⁴ + ḡ_Ks r²)(v − ek) + g_l (v − el)`.
//!
//! Dendrite (cylinder `L_d`, `d_d`, area `A_d = π d_d L_d`), channel `caL` with one gate `L`:
//! `L∞ = 1/(1 + e^{−(v − vtraub_caL + 30)/1})`, `dL/dt = (L∞ − L)/Ltau`,
//! `I_d = ḡ_caL·γ·L·(v − ecaL) + g_l,d (v − el_caL) + g_syn (v − E_syn)`.
//!
//! Cable: `C_s dv_s/dt = −A_s I_s + I_inj + g_ax (v_d − v_s)`, `C_d dv_d/dt = −A_d I_d + g_ax (v_s − v_d)`,
//! `C = cm·A`, `1/g_ax = Ra (d_s/2)/(π d_s²/4) + Ra (L_d/2)/(π d_d²/4)` (the half-section
//! resistances; the dendrite hangs from the soma's zero-area 0-end node, which NEURON eliminates
//! exactly into this series resistance).
//!
//! # Integration (what NEURON does with `secondorder = 2`, fixed step)
//! Per step, with the gates `g_n` and voltages `v_n`:
//! 1. Crank–Nicolson for the voltage pair: with the channel conductances frozen at `g_n`, solve
//!    the 2×2 system `(2C/dt + G + G_ax) Δ = −I(v_n) + I_inj + axial(v_n)` per unit and set
//!    `v_{n+1} = v_n + 2Δ` (NEURON's `cj = 2/dt` and `v += 2·rhs`); the injected current is the
//!    value at the step midpoint (NEURON evaluates IClamp at `t + dt/2`).
//! 2. Gates by exponential Euler (`cnexp`) at the NEW voltage:
//!    `x_{n+1} = x_n + (1 − e^{−dt(α+β)})(α/(α+β) − x_n)` (gates staggered half a step).
//! 3. Spike when the soma crosses +50 mV upward: `v_{n+1} > 50 ≥ v_n` (a NetCon with threshold 50).
//!
//! Checked against MyoGen/NEURON 8.2.7 (`tests/nerlab_fixtures.rs`): in f64 the voltage traces of
//! `fi_vtrace.csv` are reproduced to ~1e-8 mV over 150 ms. NEURON's napp.mod in MyoGen 0.12 has no
//! rate TABLE (an earlier upstream version had one; the fixtures match the analytic rates).

mod model;
mod pool;

pub use model::{Nerlab, NerlabCoeffs, NerlabState, NerlabTensors, check_dt};
pub use pool::NerlabPool;

/// Spike detection threshold at the soma, mV (upward crossing).
pub const SPIKE_THRESHOLD_MV: f64 = 50.0;
/// Excitatory synaptic reversal potential of NERLab motor neurons, mV (MyoGen sets `syn.e = 70`).
pub const E_SYN_EXC_MV: f64 = 70.0;
/// Initial membrane potential MyoGen writes into soma and dendrite, mV (the cell then relaxes to ≈0 mV).
pub const V_INIT_MV: f64 = -67.0;
/// Largest usable time step, ms. Above it the Na spike (activation τ ≈ 0.1–0.3 ms) is not resolved:
/// Crank–Nicolson rings and spikes are lost (at 0.5 ms unit 0 fires 2 instead of 40 spikes at 4×
/// rheobase). MyoGen uses 0.025–0.1 ms.
pub const MAX_DT_MS: f64 = 0.25;

/// Buffer read by [`NerlabPool`]: synaptic conductance onto each unit's dendrite, siemens.
pub const SYN_CONDUCTANCE_S: &str = "syn_conductance_s";
/// Buffer written by [`NerlabPool`]: spikes per step.
pub const SPIKES: &str = "spikes";
/// Optional buffer written by [`NerlabPool`]: soma membrane potential, volts (NERLab frame, rest ≈ 0).
pub const V_SOMA_V: &str = "v_soma_v";
