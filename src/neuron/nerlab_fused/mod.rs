#![allow(deprecated)]
// burn 0.22 marks its NdArray backend deprecated; myodiff keeps it selectable
// Index loops over the units of a block (structure of arrays) are what the compiler vectorises.
#![allow(clippy::needless_range_loop)]

//! The fused path of [`super::nerlab::NerlabPool`]: ONE custom burn op runs every step of the
//! NERLab pool in a host loop and supplies a hand-written adjoint (backpropagation through time),
//! registered with burn's autodiff so it composes with ordinary tensor ops and `loss.backward()`.
//!
//! Op: `nerlab_scan(g [T, B, N], coef [14, B, N]) → out [T, B, N]` (spikes) or `[T, B, 2N]`
//! (spikes, then the soma potential in mV), with `g` the synaptic conductance trace in siemens
//! (scaled by [`NerlabScanSpec::g_scale`] = 1e6 to µS inside, as the tape does) and the
//! coefficient rows of [`row`] (the [`NerlabCoeffs`](super::nerlab::NerlabCoeffs) of every unit,
//! the L-gate factor `1 − e^{−dt/Ltau}` and the somatic bias current, nA), built differentiably
//! by the stage, so gradients reach the conductance densities and geometry through ordinary
//! tensor ops.
//!
//! # Forward
//! Per unit and step exactly the tape step [`Nerlab::step`](super::nerlab::Nerlab::step), in the
//! tensor dtype (f32 or f64) and in the tape's operation order: Crank–Nicolson 2×2 voltage solve
//! with the gates of step n, exponential-Euler gates at the new voltage, spike at the upward
//! +50 mV crossing (`Hard`/`Surrogate`: `H(v_{n+1} − 50)(1 − H(v_n − 50))`; `Rate`:
//! `σ(β(v_{n+1} − 50))(1 − σ(β(v_n − 50)))`), starting from the steady state at `v_init`.
//!
//! Two arithmetic flavours ([`NerlabScanSpec::exact`]):
//! - **exact**: `exp` of the Rust standard library (what burn's flex backend calls) — on flex the
//!   spike and voltage traces are bit-identical to the tape path, f32 and f64;
//! - **fast** (default of the stage): branch-free code the compiler vectorises over the units of
//!   a block (AVX2 / AVX-512 chosen at run time; no result depends on the choice). In f32 its
//!   `exp` is a replica of glibc's `expf` (table + cubic in f64), so the fast f32 path is *also*
//!   bit-identical to the tape (on glibc ≥ 2.28 with an FMA CPU: the replica matches `f32::exp`
//!   on all 2³² inputs here); in f64 it is a degree-12 polynomial within 3 ulp of libm's `exp`,
//!   so f64 voltages agree with the tape to rounding (a spiking trajectory can amplify the
//!   rounding differences over long runs).
//!
//! # Adjoint
//! With `λ` the adjoint of the state after step n (`v_s, v_d, m, h, p, n, r, L`) and `ḡ_s, ḡ_v`
//! the incoming gradients of the step's spike and voltage outputs:
//! 1. spike: `λ_{v_s'} += ḡ_s ∂s/∂v_s'` (surrogate: `β/(1+β|v_s' − 50|)²·(1 − H(v_s − 50))`;
//!    rate: the sigmoid derivatives, also `∂s/∂v_s`; hard: 0), `λ_{v_s'} += ḡ_v`;
//! 2. gates `x' = x + f(k)(a/k − x)`, `k = a + b`, `f = 1 − e^{−dt k}`:
//!    `∂x'/∂a = dt e^{−dt k}(a/k − x) + f b/k²`, `∂x'/∂b = dt e^{−dt k}(a/k − x) − f a/k²`,
//!    `λ_{v_s'} += λ_{x'}(∂x'/∂a·a'(v₂) + ∂x'/∂b·b'(v₂))`, `λ_x = (1 − f)λ_{x'}`; `L' = L +
//!    φ(σ(v_d' − vtraub + 30) − L)`;
//! 3. CN solve `A Δ = rhs`, `v' = v + 2Δ`, `A = [[a11, −g_ax], [−g_ax, a22]]`: `μ = A⁻¹(2λ_{v'})`,
//!    `∂rhs = μ`, `∂a11 = −μ_s Δ_s`, `∂a22 = −μ_d Δ_d`, `∂g_ax ∋ μ_s Δ_d + μ_d Δ_s`; then through
//!    the conductances and currents to the gates of step n, the voltages, the coefficients and the
//!    synaptic conductance of the step (`∂L/∂g_syn = −μ_d(v_d − E_syn) + ∂a22`);
//! 4. the initial steady state: `r₀ = α_r/(α_r + rinact)`, `L₀ = σ(v₀ − vtraub + 30)`.
//!
//! Parameter gradients accumulate in f64; the adjoint runs in f64 on the recomputed f32/f64
//! states. Memory: the forward keeps the state every [`NerlabScanSpec::checkpoint_every`] steps;
//! the backward recomputes one segment at a time (one extra forward), so the op stores the input
//! trace, the coefficients and `8·T/K` states per unit.
//!
//! Units are independent: blocks of [`BLOCK`] units run on [`NerlabScanSpec::threads`] threads.
//! Backends: `Flex`, `NdArray` and `Autodiff` over them ([`fused_supported`]); elsewhere the stage
//! falls back to being stepped alone. Bit-identity with the tape holds on flex; on ndarray the
//! tape's `powi`/`sigmoid` kernels may round differently.

mod adjoint;
mod arith;
mod forward;
mod host;
mod op;

pub use host::{HELPER_MIN_THREADS, NerlabHost};
pub use op::{NerlabScanOps, fused_supported, nerlab_scan};

use std::sync::{Arc, Mutex};

use crate::neuron::spike::SpikeMode;

/// Rows of the coefficient tensor `[N_COEF, B, N]` of [`nerlab_scan`] (NEURON units).
pub mod row {
    /// Soma capacitance, nF.
    pub const C_SOMA: usize = 0;
    /// Dendrite capacitance, nF.
    pub const C_DEND: usize = 1;
    /// Fast Na maximal conductance, µS.
    pub const G_NA: usize = 2;
    /// Persistent Na maximal conductance, µS.
    pub const G_NAP: usize = 3;
    /// Fast K maximal conductance, µS.
    pub const G_KF: usize = 4;
    /// Slow K maximal conductance, µS.
    pub const G_KS: usize = 5;
    /// Soma leak conductance, µS.
    pub const G_L_SOMA: usize = 6;
    /// Slow-K deactivation rate, 1/ms.
    pub const RINACT: usize = 7;
    /// caL maximal conductance × γ, µS.
    pub const G_CAL: usize = 8;
    /// Dendrite leak conductance, µS.
    pub const G_L_DEND: usize = 9;
    /// caL activation offset, mV.
    pub const VTRAUB_CAL: usize = 10;
    /// Soma–dendrite coupling conductance, µS.
    pub const G_AX: usize = 11;
    /// L-gate relaxation factor per step, `1 − e^{−dt/Ltau}`.
    pub const L_FACTOR: usize = 12;
    /// Somatic bias current, nA.
    pub const I_INJ: usize = 13;
}

/// Number of coefficient rows of [`nerlab_scan`].
pub const N_COEF: usize = 14;

/// Units per block of the host loops (the loop over a block's units is what gets vectorised).
pub const BLOCK: usize = 32;

/// Default number of steps between stored states of the adjoint.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 256;

/// A problem found by the host loop: the first invalid input or non-finite state.
#[derive(Clone, Debug, PartialEq)]
pub enum ScanFault {
    /// A synaptic conductance that is negative or not finite (siemens, as given).
    BadConductance {
        /// Step index.
        step: usize,
        /// Flat unit index `b·N + i`.
        unit: usize,
        /// The value.
        value: f64,
    },
    /// A state variable became non-finite (found at the check step `step`).
    NonFinite {
        /// Name of the state variable.
        var: &'static str,
        /// Step index of the check.
        step: usize,
        /// Flat unit index `b·N + i`.
        unit: usize,
    },
}

impl ScanFault {
    fn step(&self) -> usize {
        match self {
            ScanFault::BadConductance { step, .. } | ScanFault::NonFinite { step, .. } => *step,
        }
    }
}

/// Where the forward pass reports the first [`ScanFault`] (shared with the caller).
pub type FaultSlot = Arc<Mutex<Option<ScanFault>>>;

/// Static (non-tensor) settings of one NERLab scan.
#[derive(Clone, Debug)]
pub struct NerlabScanSpec {
    /// Time step, ms.
    pub dt_ms: f64,
    /// Spike mode.
    pub mode: SpikeMode,
    /// Surrogate / rate sharpness per mV.
    pub beta: f64,
    /// Synaptic reversal potential, mV.
    pub e_syn_mv: f64,
    /// Initial potential (soma and dendrite), mV.
    pub v_init_mv: f64,
    /// Reversal potentials etc.: `[ena, ek, el_soma, ecal, el_dend, vtraub_napp]`, mV.
    pub reversal_mv: [f64; 6],
    /// Factor from the input trace's unit to µS (1e6 for siemens).
    pub g_scale: f64,
    /// Also output the soma potential (mV): output `[T, B, 2N]`.
    pub record_voltage: bool,
    /// Standard-library `exp`/`powf` (bit-identical to the flex tape) instead of the vectorised
    /// fast arithmetic.
    pub exact: bool,
    /// Steps between the non-finite state checks (the last step is always checked).
    pub check_every: usize,
    /// Steps between stored states for the adjoint (≥ 1).
    pub checkpoint_every: usize,
    /// Worker threads (≥ 1).
    pub threads: usize,
    /// Receives the first fault of the forward pass.
    pub fault: FaultSlot,
}

impl NerlabScanSpec {
    /// Default settings for time step `dt_ms`, spike `mode`, sharpness `beta` and the NERLab
    /// reversal potentials `reversal_mv = [ena, ek, el_soma, ecal, el_dend, vtraub_napp]` (mV).
    pub fn new(dt_ms: f64, mode: SpikeMode, beta: f64, reversal_mv: [f64; 6]) -> Self {
        Self {
            dt_ms,
            mode,
            beta,
            e_syn_mv: super::nerlab::E_SYN_EXC_MV,
            v_init_mv: super::nerlab::V_INIT_MV,
            reversal_mv,
            g_scale: 1e6,
            record_voltage: false,
            exact: false,
            check_every: 1000,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            fault: Arc::new(Mutex::new(None)),
        }
    }

    /// The fault reported by the last forward pass, if any (and clears it).
    pub fn take_fault(&self) -> Option<ScanFault> {
        self.fault.lock().map(|mut f| f.take()).unwrap_or(None)
    }
}
