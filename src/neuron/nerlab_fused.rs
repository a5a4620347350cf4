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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, NdArray, TensorMetadata, backend_extension,
    tensor::FloatTensor, try_read_sync,
};
use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{Error, Result};
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

// ================================================================================================
// arithmetic

/// A float the host loops run in: f32 or f64, with the standard-library and the fast
/// transcendental functions.
trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + burn::tensor::Element
    + 'static
{
    fn c(v: f64) -> Self;
    fn f(self) -> f64;
    fn exp_std(self) -> Self;
    fn exp_fast(self) -> Self;
    fn finite(self) -> bool;
}

impl Real for f32 {
    #[inline(always)]
    fn c(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn f(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_std(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        expf_glibc(self)
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl Real for f64 {
    #[inline(always)]
    fn c(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn f(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_std(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f64(self)
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
}

/// Branch-free `e^x` in f64 (Cody–Waite reduction by ln 2, degree-12 Taylor polynomial on
/// `|r| ≤ ln2/2`; ≤ 1 ulp; arguments clamped to [−708, 709]; NaN propagates).
#[inline(always)]
fn exp_f64(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5·2^52: adding it rounds to an integer
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000); // fdlibm ln2_hi
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76); // fdlibm ln2_lo
    let x = x.clamp(-708.0, 709.0);
    let t = x * LOG2E + SHIFT;
    let n = t - SHIFT;
    let ni = (t.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    p * f64::from_bits(((ni + 1023) << 52) as u64)
}

/// glibc's `expf` (since 2.28; the ARM optimized-routines algorithm, FMA build), branch-free:
/// `x·32/ln2 = k + r`, `2^{k/32}` from a 32-entry table, `2^{r/32}` by a cubic, all in f64,
/// rounded once to f32. Checked against the standard library over all 2³² f32 inputs on this
/// machine kind (glibc 2.36, FMA CPU): identical, so the fast f32 path reproduces the tape bit
/// for bit. (On a CPU without FMA glibc's non-FMA build differs on 2 of the 4.3·10⁹ inputs.)
#[inline(always)]
fn expf_glibc(x: f32) -> f32 {
    const N: u64 = 32;
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 0x1.8p52
    const INVLN2N: f64 = std::f64::consts::LOG2_E * 32.0; // 0x1.71547652b82fep+0 · N
    const C0: f64 = f64::from_bits(0x3FAC_6AF8_4B91_2394) / (32.0 * 32.0 * 32.0); // 0x1.c6af84b912394p-5 / N³
    const C1: f64 = f64::from_bits(0x3FCE_BFCE_50FA_C4F3) / (32.0 * 32.0); // 0x1.ebfce50fac4f3p-3 / N²
    const C2: f64 = f64::from_bits(0x3FE6_2E42_FF0C_52D6) / 32.0; // 0x1.62e42ff0c52d6p-1 / N
    let over = x > f32::from_bits(0x42b1_7217); // 0x1.62e42ep6: overflow to +inf
    let under = x < -f32::from_bits(0x42cf_f1b4); // -0x1.9fe368p6: underflow to 0
    let nan = x.is_nan();
    let xd = if over || under || nan { 0.0 } else { x as f64 };
    let kd = INVLN2N.mul_add(xd, SHIFT);
    let ki = kd.to_bits();
    let kd = kd - SHIFT;
    let r = INVLN2N.mul_add(xd, -kd);
    let t = EXP2F_TAB[(ki % N) as usize].wrapping_add(ki << 47);
    let s = f64::from_bits(t);
    let z = C0.mul_add(r, C1);
    let r2 = r * r;
    let y = C2.mul_add(r, 1.0);
    let y = (z.mul_add(r2, y) * s) as f32;
    if nan {
        x
    } else if over {
        f32::INFINITY
    } else if under {
        0.0
    } else {
        y
    }
}

/// glibc's `__exp2f_data.tab`: `bits(2^{i/32}) − (i << 47)`.
const EXP2F_TAB: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

#[inline(always)]
fn ex<R: Real, const FAST: bool>(x: R) -> R {
    if FAST { x.exp_fast() } else { x.exp_std() }
}

/// `x³` as the tape computes it: `(x·x)·x`.
#[inline(always)]
fn pw3<R: Real>(x: R) -> R {
    x * x * x
}

/// `x⁴` as the tape computes it: `(x·x)·(x·x)`.
#[inline(always)]
fn pw4<R: Real>(x: R) -> R {
    let x2 = x * x;
    x2 * x2
}

#[inline(always)]
fn sel<R: Real>(c: bool, a: R, b: R) -> R {
    if c { a } else { b }
}

/// Flex's sigmoid: `1/(1 + e^{−x})` for `x ≥ 0`, `e^x/(1 + e^x)` otherwise.
#[inline(always)]
fn sigm<R: Real, const FAST: bool>(x: R) -> R {
    let one = R::c(1.0);
    let pos = x >= R::c(0.0);
    let e = ex::<R, FAST>(sel(pos, -x, x));
    sel(pos, one / (one + e), e / (one + e))
}

/// The tape's `vtrap(x, y)` (series where `|x/y| < 1e-3`).
#[inline(always)]
fn vtrap<R: Real, const FAST: bool>(x: R, y: f64) -> R {
    let one = R::c(1.0);
    let z = x * R::c(1.0 / y);
    let az = sel(z < R::c(0.0), -z, z);
    let small = az < R::c(1e-3);
    let zs = sel(small, one, z);
    let direct = zs / (ex::<R, FAST>(zs) - one);
    let series = (z * R::c(1.0 / 12.0) - R::c(0.5)) * z + one;
    sel(small, series, direct) * R::c(y)
}

/// Rates `(α, β)` of m, h, p, n and `α_r` at `v2` (tape op order).
#[inline(always)]
fn rates<R: Real, const FAST: bool>(v2: R) -> ([(R, R); 4], R) {
    let nv = -v2;
    let one = R::c(1.0);
    (
        [
            (
                vtrap::<R, FAST>(nv + R::c(15.0), 4.0) * R::c(0.64),
                vtrap::<R, FAST>(v2 - R::c(40.0), 5.0) * R::c(0.56),
            ),
            (
                ex::<R, FAST>((nv + R::c(17.0)) * R::c(1.0 / 18.0)) * R::c(0.928),
                one / (ex::<R, FAST>((nv + R::c(40.0)) * R::c(1.0 / 5.0)) + one) * R::c(9.0),
            ),
            (
                vtrap::<R, FAST>(nv + R::c(5.0), 4.0) * R::c(0.64),
                vtrap::<R, FAST>(v2 - R::c(30.0), 5.0) * R::c(0.56),
            ),
            (
                vtrap::<R, FAST>(nv + R::c(15.0), 7.0) * R::c(0.08),
                ex::<R, FAST>((nv + R::c(10.0)) * R::c(1.0 / 40.0)) * R::c(2.0),
            ),
        ],
        one / (ex::<R, FAST>((nv + R::c(55.0)) * R::c(1.0 / 4.0)) + one) * R::c(3.5),
    )
}

/// Exponential Euler in the tape's op order.
#[inline(always)]
fn exp_euler<R: Real, const FAST: bool>(x: R, a: R, b: R, neg_dt: R) -> R {
    let k = a + b;
    let f = -ex::<R, FAST>(k * neg_dt) + R::c(1.0);
    x + f * (a / k - x)
}

/// Scalar constants of a scan in the working precision.
#[derive(Clone, Copy, Debug)]
struct Konst<R> {
    two_dt: R,
    neg_dt: R,
    ena: R,
    ek: R,
    els: R,
    ecal: R,
    eld: R,
    esyn: R,
    vtraub: R,
    thr: R,
    beta: R,
    g_scale: R,
}

impl<R: Real> Konst<R> {
    fn new(s: &NerlabScanSpec) -> Self {
        let [ena, ek, els, ecal, eld, vtraub] = s.reversal_mv;
        Self {
            two_dt: R::c(2.0 / s.dt_ms),
            neg_dt: R::c(-s.dt_ms),
            ena: R::c(ena),
            ek: R::c(ek),
            els: R::c(els),
            ecal: R::c(ecal),
            eld: R::c(eld),
            esyn: R::c(s.e_syn_mv),
            vtraub: R::c(vtraub),
            thr: R::c(super::nerlab::SPIKE_THRESHOLD_MV),
            beta: R::c(s.beta),
            g_scale: R::c(s.g_scale),
        }
    }
}

/// State variable indices.
const VS: usize = 0;
const VD: usize = 1;
const GM: usize = 2;
const GH: usize = 3;
const GP: usize = 4;
const GN: usize = 5;
const GR: usize = 6;
const GL: usize = 7;
const N_STATE: usize = 8;
const STATE_NAMES: [&str; N_STATE] = ["v_soma_mv", "v_dend_mv", "m", "h", "p", "n", "r", "l"];

type Arr<R> = [R; BLOCK];

/// One forward step of one unit: returns the new state and the spike output.
#[inline(always)]
fn step_unit<R: Real, const FAST: bool, const RATE: bool>(
    s: [R; N_STATE],
    c: &[R; N_COEF],
    g_in: R,
    k: &Konst<R>,
) -> ([R; N_STATE], R) {
    use row::*;
    let (vs, vd) = (s[VS], s[VD]);
    let gsyn = g_in * k.g_scale;
    let gax = c[G_AX];
    let g_na = c[G_NA] * pw3(s[GM]) * s[GH];
    let g_nap = c[G_NAP] * pw3(s[GP]);
    let g_k = c[G_KF] * pw4(s[GN]) + c[G_KS] * (s[GR] * s[GR]);
    let g_na_all = g_na + g_nap;
    let g_soma = g_na_all + g_k + c[G_L_SOMA];
    let i_soma = g_na_all * (vs - k.ena) + g_k * (vs - k.ek) + c[G_L_SOMA] * (vs - k.els);
    let g_cal = c[G_CAL] * s[GL];
    let g_dend = g_cal + c[G_L_DEND] + gsyn;
    let i_dend = g_cal * (vd - k.ecal) + c[G_L_DEND] * (vd - k.eld) + gsyn * (vd - k.esyn);
    let axial = gax * (vd - vs);
    let rhs_s = c[I_INJ] - i_soma + axial;
    let rhs_d = -axial - i_dend;
    let a11 = c[C_SOMA] * k.two_dt + g_soma + gax;
    let a22 = c[C_DEND] * k.two_dt + g_dend + gax;
    let det = a11 * a22 - gax * gax;
    let d_s = (rhs_s * a22 + gax * rhs_d) / det;
    let d_d = (a11 * rhs_d + gax * rhs_s) / det;
    let two = R::c(2.0);
    let vs1 = vs + d_s * two;
    let vd1 = vd + d_d * two;
    let v2 = vs1 - k.vtraub;
    let ([(am, bm), (ah, bh), (ap, bp), (an, bn)], ar) = rates::<R, FAST>(v2);
    let l_target = sigm::<R, FAST>(vd1 - c[VTRAUB_CAL] + R::c(30.0));
    let l1 = s[GL] + c[L_FACTOR] * (l_target - s[GL]);
    let m_new = vs1 - k.thr;
    let m_old = vs - k.thr;
    let zero = R::c(0.0);
    let one = R::c(1.0);
    let spike = if RATE {
        sigm::<R, FAST>(m_new * k.beta) * (-sigm::<R, FAST>(m_old * k.beta) + one)
    } else {
        sel(m_new > zero, one, zero) * (-sel(m_old > zero, one, zero) + one)
    };
    (
        [
            vs1,
            vd1,
            exp_euler::<R, FAST>(s[GM], am, bm, k.neg_dt),
            exp_euler::<R, FAST>(s[GH], ah, bh, k.neg_dt),
            exp_euler::<R, FAST>(s[GP], ap, bp, k.neg_dt),
            exp_euler::<R, FAST>(s[GN], an, bn, k.neg_dt),
            exp_euler::<R, FAST>(s[GR], ar, c[RINACT], k.neg_dt),
            l1,
        ],
        spike,
    )
}

/// The steady state at `v0` (the tape's `initial_state`).
fn initial_unit<R: Real, const FAST: bool>(v0: f64, c: &[R; N_COEF], k: &Konst<R>) -> [R; N_STATE] {
    let v = R::c(v0);
    let v2 = v - k.vtraub;
    let ([(am, bm), (ah, bh), (ap, bp), (an, bn)], ar) = rates::<R, FAST>(v2);
    let inf = |a: R, b: R| a / (a + b);
    [
        v,
        v,
        inf(am, bm),
        inf(ah, bh),
        inf(ap, bp),
        inf(an, bn),
        inf(ar, c[row::RINACT]),
        sigm::<R, FAST>(v - c[row::VTRAUB_CAL] + R::c(30.0)),
    ]
}

/// A block of units: coefficients and state, structure of arrays.
struct Block<R> {
    j0: usize,
    len: usize,
    coef: [Arr<R>; N_COEF],
    state: [Arr<R>; N_STATE],
}

impl<R: Real> Block<R> {
    /// Block starting at flat unit `j0` (padded by repeating the last unit).
    fn new(p: &Problem<'_, R>, j0: usize) -> Self {
        let len = BLOCK.min(p.bn - j0);
        let mut coef = [[R::default(); BLOCK]; N_COEF];
        for (r, row) in coef.iter_mut().enumerate() {
            for (jj, v) in row.iter_mut().enumerate() {
                *v = p.coef[r * p.bn + j0 + jj.min(len - 1)];
            }
        }
        Self {
            j0,
            len,
            coef,
            state: [[R::default(); BLOCK]; N_STATE],
        }
    }

    fn coef_of(&self, jj: usize) -> [R; N_COEF] {
        std::array::from_fn(|r| self.coef[r][jj])
    }

    fn init<const FAST: bool>(&mut self, p: &Problem<'_, R>) {
        for jj in 0..BLOCK {
            let s = initial_unit::<R, FAST>(p.v_init, &self.coef_of(jj), &p.k);
            for (v, x) in s.into_iter().enumerate() {
                self.state[v][jj] = x;
            }
        }
    }

    /// Gathers the input of step `t` (scaled later); returns the first bad index, if any.
    #[inline(always)]
    fn gather(&self, p: &Problem<'_, R>, t: usize, g: &mut Arr<R>) -> Option<usize> {
        let src = &p.g[t * p.bn + self.j0..t * p.bn + self.j0 + self.len];
        let mut ok = true;
        for (d, &x) in g.iter_mut().zip(src) {
            *d = x;
            ok &= x >= R::c(0.0) && x.finite();
        }
        for d in g.iter_mut().skip(self.len) {
            *d = R::c(0.0);
        }
        if ok {
            None
        } else {
            src.iter()
                .position(|&x| !(x >= R::c(0.0) && x.finite()))
                .map(|jj| self.j0 + jj)
        }
    }

    /// First non-finite state variable `(var, flat unit)`.
    fn non_finite(&self) -> Option<(usize, usize)> {
        for (v, a) in self.state.iter().enumerate() {
            if let Some(jj) = a[..self.len].iter().position(|x| !x.finite()) {
                return Some((v, self.j0 + jj));
            }
        }
        None
    }
}

/// Called after every step with `(t, block, spikes)`; `false` stops the loop.
type StepVisit<'a, R> = dyn FnMut(usize, &Block<R>, &Arr<R>) -> bool + 'a;

/// One step of a whole block (the loop that gets vectorised).
#[inline(always)]
fn block_step<R: Real, const FAST: bool, const RATE: bool>(
    state: &mut [Arr<R>; N_STATE],
    coef: &[Arr<R>; N_COEF],
    g: &Arr<R>,
    k: &Konst<R>,
    spk: &mut Arr<R>,
) {
    for jj in 0..BLOCK {
        let s: [R; N_STATE] = std::array::from_fn(|v| state[v][jj]);
        let c: [R; N_COEF] = std::array::from_fn(|r| coef[r][jj]);
        let (ns, sp) = step_unit::<R, FAST, RATE>(s, &c, g[jj], k);
        for v in 0..N_STATE {
            state[v][jj] = ns[v];
        }
        spk[jj] = sp;
    }
}

/// Runs steps `t0..t1` of a block; `each(t, block, spikes)` after every step.
#[inline(always)]
fn run_steps_generic<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    let mut g = [R::default(); BLOCK];
    let mut spk = [R::default(); BLOCK];
    for t in t0..t1 {
        if let Some(j) = b.gather(p, t, &mut g) {
            p.report(ScanFault::BadConductance {
                step: t,
                unit: j,
                value: p.g[t * p.bn + j].f(),
            });
        }
        block_step::<R, FAST, RATE>(&mut b.state, &b.coef, &g, &p.k, &mut spk);
        if !each(t, b, &spk) {
            break;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn run_steps_avx512<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    run_steps_generic::<R, FAST, RATE>(p, b, t0, t1, each)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_steps_avx2<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    run_steps_generic::<R, FAST, RATE>(p, b, t0, t1, each)
}

/// Runs steps `t0..t1` with the widest SIMD the CPU has (the arithmetic — and so the result —
/// is the same on every path: no fused multiply-adds are used).
fn run_steps<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    b: &mut Block<R>,
    t0: usize,
    t1: usize,
    each: &mut StepVisit<'_, R>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if FAST
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU supports the enabled features (checked just above).
            return unsafe { run_steps_avx512::<R, FAST, RATE>(p, b, t0, t1, each) };
        }
        if FAST
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { run_steps_avx2::<R, FAST, RATE>(p, b, t0, t1, each) };
        }
    }
    run_steps_generic::<R, FAST, RATE>(p, b, t0, t1, each)
}

/// Everything the host loops need (borrowed host data + constants).
struct Problem<'a, R> {
    g: &'a [R],
    coef: &'a [R],
    t_steps: usize,
    bn: usize,
    n: usize,
    k: Konst<R>,
    v_init: f64,
    spec: &'a NerlabScanSpec,
}

impl<R: Real> Problem<'_, R> {
    fn report(&self, f: ScanFault) {
        if let Ok(mut slot) = self.spec.fault.lock() {
            let replace = match slot.as_ref() {
                None => true,
                Some(old) => f.step() < old.step(),
            };
            if replace {
                *slot = Some(f);
            }
        }
    }
    fn n_blocks(&self) -> usize {
        self.bn.div_ceil(BLOCK)
    }
    fn out_width(&self) -> usize {
        if self.spec.record_voltage {
            2 * self.n
        } else {
            self.n
        }
    }
    /// Output offsets `(spike, voltage)` of flat unit `j` within a step.
    fn out_off(&self, j: usize) -> (usize, usize) {
        let w = self.out_width();
        let (b, i) = (j / self.n, j % self.n);
        (b * w + i, b * w + self.n + i)
    }
}

/// A raw pointer that threads may write through at disjoint indices.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only to write disjoint elements from different threads (each unit belongs to one
// block, each block to one thread).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// # Safety
    /// `i` in bounds and no other thread writes index `i`.
    #[inline(always)]
    unsafe fn write(self, i: usize, v: T) {
        unsafe { self.0.add(i).write(v) }
    }
}

/// Runs `f(block index)` for every block on `threads` threads.
fn par_blocks(n_blocks: usize, threads: usize, f: impl Fn(usize) + Sync) {
    let threads = threads.clamp(1, n_blocks.max(1));
    if threads == 1 {
        (0..n_blocks).for_each(f);
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n_blocks {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}

/// Forward of all units; returns the output `[T, B, W]` and (if `keep`) the checkpoints per block
/// (`[segment][var][BLOCK]` flattened).
fn forward_host<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    keep: bool,
) -> (Vec<R>, Vec<Vec<R>>) {
    let w = p.out_width();
    let stride = p.bn / p.n * w;
    let mut out = vec![R::default(); p.t_steps * stride];
    let ptr = SendPtr(out.as_mut_ptr());
    let kk = p.spec.checkpoint_every.max(1);
    let n_seg = p.t_steps.div_ceil(kk);
    let ckpts: Vec<Mutex<Vec<R>>> = (0..p.n_blocks()).map(|_| Mutex::new(Vec::new())).collect();
    let check_every = p.spec.check_every.max(1);
    par_blocks(p.n_blocks(), p.spec.threads, |bi| {
        let mut b = Block::new(p, bi * BLOCK);
        b.init::<FAST>(p);
        let offs: Vec<(usize, usize)> = (0..b.len).map(|jj| p.out_off(b.j0 + jj)).collect();
        let mut ck = if keep {
            Vec::with_capacity(n_seg * N_STATE * BLOCK)
        } else {
            Vec::new()
        };
        let mut fault = false;
        for seg in 0..n_seg {
            let (t0, t1) = (seg * kk, ((seg + 1) * kk).min(p.t_steps));
            if keep {
                for a in &b.state {
                    ck.extend_from_slice(a);
                }
            }
            run_steps::<R, FAST, RATE>(p, &mut b, t0, t1, &mut |t, b, spk| {
                let base = t * stride;
                for (jj, &(os, ov)) in offs.iter().enumerate() {
                    // SAFETY: unit j0+jj is written only by this block; indices are in bounds.
                    unsafe {
                        ptr.write(base + os, spk[jj]);
                        if p.spec.record_voltage {
                            ptr.write(base + ov, b.state[VS][jj]);
                        }
                    }
                }
                if !fault
                    && ((t + 1).is_multiple_of(check_every) || t + 1 == p.t_steps)
                    && let Some((v, j)) = b.non_finite()
                {
                    p.report(ScanFault::NonFinite {
                        var: STATE_NAMES[v],
                        step: t,
                        unit: j,
                    });
                    fault = true;
                }
                true
            });
        }
        if keep {
            *ckpts[bi].lock().expect("checkpoint slot") = ck;
        }
    });
    let ckpts = ckpts
        .into_iter()
        .map(|m| m.into_inner().expect("checkpoint slot"))
        .collect();
    (out, ckpts)
}

// ================================================================================================
// adjoint

/// `vtrap(x, y)` and `d vtrap/dx` in f64, branch-free (the tape's branches: series below
/// `|x/y| < 1e-3`).
#[inline(always)]
fn vtrap_d(x: f64, y: f64) -> (f64, f64) {
    let z = x * (1.0 / y);
    let small = z.abs() < 1e-3;
    let zs = if small { 1.0 } else { z };
    let e = exp_f64(zs);
    let em1 = e - 1.0;
    let v_direct = zs / em1 * y;
    let d_direct = 1.0 / em1 - zs * e / (em1 * em1);
    let v_series = ((z * (1.0 / 12.0) - 0.5) * z + 1.0) * y;
    let d_series = z * (1.0 / 6.0) - 0.5;
    if small {
        (v_series, d_series)
    } else {
        (v_direct, d_direct)
    }
}

/// `(α, β, dα/dv2, dβ/dv2)` of m, h, p, n and `(α_r, dα_r/dv2)` in f64.
#[inline(always)]
fn rates_d(v2: f64) -> ([[f64; 4]; 4], [f64; 2]) {
    let (am, dam) = vtrap_d(15.0 - v2, 4.0);
    let (bm, dbm) = vtrap_d(v2 - 40.0, 5.0);
    let ah = exp_f64((17.0 - v2) * (1.0 / 18.0)) * 0.928;
    let qh = 1.0 / (exp_f64((40.0 - v2) * 0.2) + 1.0);
    let (ap, dap) = vtrap_d(5.0 - v2, 4.0);
    let (bp, dbp) = vtrap_d(v2 - 30.0, 5.0);
    let (an, dan) = vtrap_d(15.0 - v2, 7.0);
    let bn = exp_f64((10.0 - v2) * (1.0 / 40.0)) * 2.0;
    let qr = 1.0 / (exp_f64((55.0 - v2) * 0.25) + 1.0);
    (
        [
            [am * 0.64, bm * 0.56, -dam * 0.64, dbm * 0.56],
            [
                ah,
                qh * 9.0,
                -ah * (1.0 / 18.0),
                9.0 * qh * (1.0 - qh) * 0.2,
            ],
            [ap * 0.64, bp * 0.56, -dap * 0.64, dbp * 0.56],
            [an * 0.08, bn, -dan * 0.08, -bn * (1.0 / 40.0)],
        ],
        [qr * 3.5, 3.5 * qr * (1.0 - qr) * 0.25],
    )
}

/// `σ(x)` in f64, branch-free.
#[inline(always)]
fn sig64(x: f64) -> f64 {
    let e = exp_f64(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 { r } else { e * r }
}

/// Constants of the adjoint (f64).
struct AdjK {
    dt: f64,
    two_dt: f64,
    rev: [f64; 6],
    esyn: f64,
    beta: f64,
}

/// Spike-gradient modes of the adjoint (const generic): hard, surrogate, rate.
const M_HARD: u8 = 0;
const M_SURR: u8 = 1;
const M_RATE: u8 = 2;

/// One step of the adjoint for one unit (module docs): from the pre-step state `s`, the new
/// voltages `(vs1, vd1)`, the coefficients `c`, the step's synaptic conductance (µS) and the
/// incoming gradients of its spike and voltage outputs, maps the adjoint `lam` of the state after
/// the step to the one before it, adds the coefficient gradients to `gc` and returns
/// `∂L/∂g_syn` (per µS).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adj_unit<const MODE: u8>(
    s: [f64; N_STATE],
    vs1: f64,
    vd1: f64,
    c: [f64; N_COEF],
    gsyn: f64,
    gspk: f64,
    gv: f64,
    k: &AdjK,
    lam: &mut [f64; N_STATE],
    gc: &mut [f64; N_COEF],
) -> f64 {
    use row::*;
    let [ena, ek, els, ecal, eld, vtraub] = k.rev;
    let (vs, vd) = (s[VS], s[VD]);
    let mut lvs1 = lam[VS] + gv;
    let mut lvd1 = lam[VD];
    // 1. spike
    let m_new = vs1 - super::nerlab::SPIKE_THRESHOLD_MV;
    let m_old = vs - super::nerlab::SPIKE_THRESHOLD_MV;
    let mut lvs_extra = 0.0;
    if MODE == M_SURR {
        let not_old = if m_old > 0.0 { 0.0 } else { 1.0 };
        let d = 1.0 + k.beta * m_new.abs();
        lvs1 += gspk * (k.beta / (d * d)) * not_old;
    } else if MODE == M_RATE {
        let sn = sig64(m_new * k.beta);
        let so = sig64(m_old * k.beta);
        lvs1 += gspk * k.beta * sn * (1.0 - sn) * (1.0 - so);
        lvs_extra = -gspk * sn * k.beta * so * (1.0 - so);
    }
    // 2. gates at the new voltage
    let v2 = vs1 - vtraub;
    let (rt, [ar, dar]) = rates_d(v2);
    let mut lg = [0.0f64; N_STATE];
    let gate = |x: f64, a: f64, b: f64| {
        let kk = a + b;
        let e = exp_f64(-k.dt * kk);
        let f = 1.0 - e;
        let fpq = k.dt * e * (a / kk - x);
        let ik2 = f / (kk * kk);
        (fpq + b * ik2, fpq - a * ik2, 1.0 - f)
    };
    for (gi, v) in [GM, GH, GP, GN].into_iter().enumerate() {
        let [ga, gb, da, db] = rt[gi];
        let (dxa, dxb, keep) = gate(s[v], ga, gb);
        lvs1 += lam[v] * (dxa * da + dxb * db);
        lg[v] = lam[v] * keep;
    }
    {
        let (dxa, dxb, keep) = gate(s[GR], ar, c[RINACT]);
        lvs1 += lam[GR] * dxa * dar;
        gc[RINACT] += lam[GR] * dxb;
        lg[GR] = lam[GR] * keep;
    }
    {
        let lf = c[L_FACTOR];
        let sg = sig64(vd1 - c[VTRAUB_CAL] + 30.0);
        let ds = sg * (1.0 - sg);
        lg[GL] = lam[GL] * (1.0 - lf);
        lvd1 += lam[GL] * lf * ds;
        gc[VTRAUB_CAL] -= lam[GL] * lf * ds;
        gc[L_FACTOR] += lam[GL] * (sg - s[GL]);
    }
    // 3. Crank–Nicolson solve
    let gax = c[G_AX];
    let m2 = s[GM] * s[GM];
    let m3h = m2 * s[GM] * s[GH];
    let p2 = s[GP] * s[GP];
    let p3 = p2 * s[GP];
    let n3 = s[GN] * s[GN] * s[GN];
    let n4 = n3 * s[GN];
    let r2 = s[GR] * s[GR];
    let g_na_all = c[G_NA] * m3h + c[G_NAP] * p3;
    let g_k = c[G_KF] * n4 + c[G_KS] * r2;
    let g_soma = g_na_all + g_k + c[G_L_SOMA];
    let i_soma = g_na_all * (vs - ena) + g_k * (vs - ek) + c[G_L_SOMA] * (vs - els);
    let g_cal = c[G_CAL] * s[GL];
    let g_dend = g_cal + c[G_L_DEND] + gsyn;
    let i_dend = g_cal * (vd - ecal) + c[G_L_DEND] * (vd - eld) + gsyn * (vd - k.esyn);
    let axial = gax * (vd - vs);
    let rhs_s = c[I_INJ] - i_soma + axial;
    let rhs_d = -axial - i_dend;
    let a11 = c[C_SOMA] * k.two_dt + g_soma + gax;
    let a22 = c[C_DEND] * k.two_dt + g_dend + gax;
    let idet = 1.0 / (a11 * a22 - gax * gax);
    let d_s = (rhs_s * a22 + gax * rhs_d) * idet;
    let d_d = (a11 * rhs_d + gax * rhs_s) * idet;
    let (ls, ld) = (2.0 * lvs1, 2.0 * lvd1);
    let mu_s = (a22 * ls + gax * ld) * idet;
    let mu_d = (gax * ls + a11 * ld) * idet;
    let da11 = -mu_s * d_s;
    let da22 = -mu_d * d_d;
    let g_naall_bar = -mu_s * (vs - ena) + da11;
    let g_k_bar = -mu_s * (vs - ek) + da11;
    let g_cal_bar = -mu_d * (vd - ecal) + da22;
    lg[GM] += g_naall_bar * c[G_NA] * 3.0 * m2 * s[GH];
    lg[GH] += g_naall_bar * c[G_NA] * m2 * s[GM];
    lg[GP] += g_naall_bar * c[G_NAP] * 3.0 * p2;
    lg[GN] += g_k_bar * c[G_KF] * 4.0 * n3;
    lg[GR] += g_k_bar * c[G_KS] * 2.0 * s[GR];
    lg[GL] += g_cal_bar * c[G_CAL];
    gc[G_NA] += g_naall_bar * m3h;
    gc[G_NAP] += g_naall_bar * p3;
    gc[G_KF] += g_k_bar * n4;
    gc[G_KS] += g_k_bar * r2;
    gc[G_L_SOMA] += -mu_s * (vs - els) + da11;
    gc[G_CAL] += g_cal_bar * s[GL];
    gc[G_L_DEND] += -mu_d * (vd - eld) + da22;
    gc[C_SOMA] += da11 * k.two_dt;
    gc[C_DEND] += da22 * k.two_dt;
    gc[G_AX] += da11 + da22 + mu_s * d_d + mu_d * d_s + (mu_s - mu_d) * (vd - vs);
    gc[I_INJ] += mu_s;
    lg[VS] = lvs1 + mu_s * (-g_soma - gax) + mu_d * gax + lvs_extra;
    lg[VD] = lvd1 + mu_s * gax + mu_d * (-gax - g_dend);
    *lam = lg;
    -mu_d * (vd - k.esyn) + da22
}

/// Per-block adjoint buffers (structure of arrays, f64).
struct AdjBlock {
    lam: [[f64; BLOCK]; N_STATE],
    gc: [[f64; BLOCK]; N_COEF],
    coef: [[f64; BLOCK]; N_COEF],
}

/// Inputs of one adjoint step of a block: states before and after (working precision, SoA),
/// the step's conductance (µS) and incoming gradients; writes `∂L/∂g_syn` into `dg`.
struct AdjStep<'a, R> {
    s: &'a [Arr<R>; N_STATE],
    s1: &'a [Arr<R>; N_STATE],
    gsyn: &'a [f64; BLOCK],
    gspk: &'a [f64; BLOCK],
    gv: &'a [f64; BLOCK],
}

#[inline(always)]
fn adj_block_step<R: Real, const MODE: u8>(
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    for jj in 0..BLOCK {
        let s: [f64; N_STATE] = std::array::from_fn(|v| a.s[v][jj].f());
        let c: [f64; N_COEF] = std::array::from_fn(|r| ab.coef[r][jj]);
        let mut lam: [f64; N_STATE] = std::array::from_fn(|v| ab.lam[v][jj]);
        let mut gc = [0.0f64; N_COEF];
        dg[jj] = adj_unit::<MODE>(
            s,
            a.s1[VS][jj].f(),
            a.s1[VD][jj].f(),
            c,
            a.gsyn[jj],
            a.gspk[jj],
            a.gv[jj],
            k,
            &mut lam,
            &mut gc,
        );
        for v in 0..N_STATE {
            ab.lam[v][jj] = lam[v];
        }
        for r in 0..N_COEF {
            ab.gc[r][jj] += gc[r];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn adj_block_step_avx512<R: Real, const MODE: u8>(
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    adj_block_step::<R, MODE>(a, k, ab, dg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn adj_block_step_avx2<R: Real, const MODE: u8>(
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    adj_block_step::<R, MODE>(a, k, ab, dg)
}

/// Which SIMD path the CPU supports: 2 = AVX-512, 1 = AVX2 + FMA, 0 = baseline.
fn simd_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return 2;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return 1;
        }
    }
    0
}

fn adj_block_step_dispatch<R: Real, const MODE: u8>(
    level: u8,
    a: &AdjStep<'_, R>,
    k: &AdjK,
    ab: &mut AdjBlock,
    dg: &mut [f64; BLOCK],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if level == 2 {
            // SAFETY: the CPU supports the enabled features (simd_level).
            return unsafe { adj_block_step_avx512::<R, MODE>(a, k, ab, dg) };
        }
        if level == 1 {
            // SAFETY: as above.
            return unsafe { adj_block_step_avx2::<R, MODE>(a, k, ab, dg) };
        }
    }
    let _ = level;
    adj_block_step::<R, MODE>(a, k, ab, dg)
}

/// Adjoint of all units. `gout`: incoming gradient `[T, B, W]`. Returns `(∂L/∂g [T, B, N] if
/// wanted (working precision), ∂L/∂coef [N_COEF, B, N] (f64))`.
fn adjoint_host<R: Real, const FAST: bool, const RATE: bool>(
    p: &Problem<'_, R>,
    ckpts: &[Vec<R>],
    gout: &[R],
    want_g: bool,
) -> (Vec<R>, Vec<f64>) {
    match p.spec.mode {
        SpikeMode::Hard => adjoint_mode::<R, FAST, RATE, M_HARD>(p, ckpts, gout, want_g),
        SpikeMode::Surrogate => adjoint_mode::<R, FAST, RATE, M_SURR>(p, ckpts, gout, want_g),
        SpikeMode::Rate => adjoint_mode::<R, FAST, RATE, M_RATE>(p, ckpts, gout, want_g),
    }
}

fn adjoint_mode<R: Real, const FAST: bool, const RATE: bool, const MODE: u8>(
    p: &Problem<'_, R>,
    ckpts: &[Vec<R>],
    gout: &[R],
    want_g: bool,
) -> (Vec<R>, Vec<f64>) {
    let w = p.out_width();
    let stride = p.bn / p.n * w;
    let kk = p.spec.checkpoint_every.max(1);
    let n_seg = p.t_steps.div_ceil(kk);
    let mut gg = if want_g {
        vec![R::default(); p.t_steps * p.bn]
    } else {
        Vec::new()
    };
    let mut gcoef = vec![0.0f64; N_COEF * p.bn];
    let gg_ptr = SendPtr(gg.as_mut_ptr());
    let gc_ptr = SendPtr(gcoef.as_mut_ptr());
    let ak = AdjK {
        dt: p.spec.dt_ms,
        two_dt: 2.0 / p.spec.dt_ms,
        rev: p.spec.reversal_mv,
        esyn: p.spec.e_syn_mv,
        beta: p.spec.beta,
    };
    let level = simd_level();
    par_blocks(p.n_blocks(), p.spec.threads, |bi| {
        let mut b = Block::new(p, bi * BLOCK);
        let len = b.len;
        let offs: Vec<(usize, usize)> = (0..len).map(|jj| p.out_off(b.j0 + jj)).collect();
        let mut ab = Box::new(AdjBlock {
            lam: [[0.0; BLOCK]; N_STATE],
            gc: [[0.0; BLOCK]; N_COEF],
            coef: std::array::from_fn(|r| std::array::from_fn(|jj| b.coef[r][jj].f())),
        });
        let ck = &ckpts[bi];
        // states of one segment: [τ] (τ = 0..=segment length), each [var][unit]
        let mut seg: Vec<[Arr<R>; N_STATE]> = vec![[[R::default(); BLOCK]; N_STATE]; kk + 1];
        let mut gsyn = [0.0f64; BLOCK];
        let mut gspk = [0.0f64; BLOCK];
        let mut gv = [0.0f64; BLOCK];
        let mut dg = [0.0f64; BLOCK];
        for si in (0..n_seg).rev() {
            let (t0, t1) = (si * kk, ((si + 1) * kk).min(p.t_steps));
            let base = si * N_STATE * BLOCK;
            for v in 0..N_STATE {
                b.state[v].copy_from_slice(&ck[base + v * BLOCK..base + (v + 1) * BLOCK]);
            }
            seg[0] = b.state;
            run_steps::<R, FAST, RATE>(p, &mut b, t0, t1, &mut |t, b, _| {
                seg[t + 1 - t0] = b.state;
                true
            });
            for t in (t0..t1).rev() {
                let tau = t - t0;
                for jj in 0..len {
                    let (os, ov) = offs[jj];
                    gspk[jj] = gout[t * stride + os].f();
                    gv[jj] = if p.spec.record_voltage {
                        gout[t * stride + ov].f()
                    } else {
                        0.0
                    };
                    gsyn[jj] = (p.g[t * p.bn + b.j0 + jj] * p.k.g_scale).f();
                }
                let a = AdjStep {
                    s: &seg[tau],
                    s1: &seg[tau + 1],
                    gsyn: &gsyn,
                    gspk: &gspk,
                    gv: &gv,
                };
                adj_block_step_dispatch::<R, MODE>(level, &a, &ak, &mut ab, &mut dg);
                if want_g {
                    for (jj, d) in dg.iter().enumerate().take(len) {
                        // SAFETY: unit j0+jj belongs to this block only; index in bounds.
                        unsafe {
                            gg_ptr.write(t * p.bn + b.j0 + jj, R::c(d * p.spec.g_scale));
                        }
                    }
                }
            }
        }
        // initial steady state: r0 = α_r/(α_r + rinact), L0 = σ(v0 − vtraub_caL + 30)
        let (_, [ar0, _]) = rates_d(p.v_init - p.spec.reversal_mv[5]);
        for jj in 0..len {
            let rin = ab.coef[row::RINACT][jj];
            ab.gc[row::RINACT][jj] += ab.lam[GR][jj] * (-ar0 / ((ar0 + rin) * (ar0 + rin)));
            let sg = sig64(p.v_init - ab.coef[row::VTRAUB_CAL][jj] + 30.0);
            ab.gc[row::VTRAUB_CAL][jj] -= ab.lam[GL][jj] * sg * (1.0 - sg);
            for r in 0..N_COEF {
                // SAFETY: as above.
                unsafe { gc_ptr.write(r * p.bn + b.j0 + jj, ab.gc[r][jj]) };
            }
        }
    });
    (gg, gcoef)
}

// ================================================================================================
// burn op

/// The fused NERLab scan as a burn backend extension.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait NerlabScanOps: Backend {
    /// `g: [T, B, N]`, `coef: [N_COEF, B, N]` → `[T, B, N]` (or `[T, B, 2N]` with voltage).
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self>;
}

fn read<B: Backend>(t: FloatTensor<B>) -> TensorData {
    try_read_sync(B::float_into_data(t))
        .expect("CPU backend reads synchronously")
        .expect("tensor read")
}

fn slice_of<R: Real>(d: &TensorData) -> &[R] {
    d.as_slice::<R>().expect("dtype checked by the caller")
}

/// Dispatches on (precision, arithmetic, spike mode).
macro_rules! dispatch {
    ($r:ty, $spec:expr, $f:ident, $($arg:expr),*) => {
        match ($spec.exact, $spec.mode == SpikeMode::Rate) {
            (false, false) => $f::<$r, true, false>($($arg),*),
            (false, true) => $f::<$r, true, true>($($arg),*),
            (true, false) => $f::<$r, false, false>($($arg),*),
            (true, true) => $f::<$r, false, true>($($arg),*),
        }
    };
}

fn problem<'a, R: Real>(
    g: &'a [R],
    coef: &'a [R],
    dims: (usize, usize, usize),
    spec: &'a NerlabScanSpec,
) -> Problem<'a, R> {
    let (t_steps, b, n) = dims;
    Problem {
        g,
        coef,
        t_steps,
        bn: b * n,
        n,
        k: Konst::new(spec),
        v_init: spec.v_init_mv,
        spec,
    }
}

/// Forward on host data of dtype R → (output data, checkpoints if `keep`).
fn forward_typed<R: Real>(
    g: &TensorData,
    coef: &TensorData,
    dims: (usize, usize, usize),
    spec: &NerlabScanSpec,
    keep: bool,
) -> (TensorData, Checkpoints) {
    let p = problem::<R>(slice_of(g), slice_of(coef), dims, spec);
    let (out, ck) = dispatch!(R, spec, forward_host, &p, keep);
    let shape = vec![dims.0, dims.1, p.out_width()];
    (TensorData::new(out, shape), Checkpoints::wrap(ck))
}

fn forward_data(
    g: &TensorData,
    coef: &TensorData,
    dims: (usize, usize, usize),
    spec: &NerlabScanSpec,
    keep: bool,
) -> (TensorData, Checkpoints) {
    match g.dtype() {
        DType::F64 => forward_typed::<f64>(g, coef, dims, spec, keep),
        _ => forward_typed::<f32>(g, coef, dims, spec, keep),
    }
}

/// The stored states of the adjoint, per block.
#[derive(Clone)]
enum Checkpoints {
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
}

impl Checkpoints {
    fn wrap<R: Real>(v: Vec<Vec<R>>) -> Self {
        let any: Box<dyn std::any::Any> = Box::new(v);
        match any.downcast::<Vec<Vec<f64>>>() {
            Ok(v) => Checkpoints::F64(*v),
            Err(any) => Checkpoints::F32(
                *any.downcast::<Vec<Vec<f32>>>()
                    .expect("f32 or f64 checkpoints"),
            ),
        }
    }
}

fn dims3(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2])
}

fn forward_only<B: Backend>(
    g: FloatTensor<B>,
    coef: FloatTensor<B>,
    spec: &NerlabScanSpec,
) -> FloatTensor<B> {
    let device = g.device();
    let dims = dims3(&g.shape());
    let gd = read::<B>(g);
    let cd = read::<B>(coef);
    let (out, _) = forward_data(&gd, &cd, dims, spec, false);
    B::float_from_data(out, &device)
}

impl NerlabScanOps for Flex {
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(g, coef, &spec)
    }
}

impl NerlabScanOps for NdArray {
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self> {
        forward_only::<Self>(g, coef, &spec)
    }
}

/// What the adjoint keeps: the input trace, the coefficients and the checkpoints.
#[derive(Clone)]
struct ScanState {
    g: TensorData,
    coef: TensorData,
    ckpts: Checkpoints,
    dims: (usize, usize, usize),
    spec: NerlabScanSpec,
}

impl std::fmt::Debug for ScanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NerlabScanState {{ dims: {:?} }}", self.dims)
    }
}

/// Adjoint on host data of dtype R → (`∂L/∂g` data if wanted, `∂L/∂coef` data).
fn adjoint_typed<R: Real>(
    st: &ScanState,
    ck: &[Vec<R>],
    gout: TensorData,
    want_g: bool,
) -> (Option<TensorData>, TensorData) {
    let p = problem::<R>(slice_of(&st.g), slice_of(&st.coef), st.dims, &st.spec);
    let gout = if gout.dtype() == st.g.dtype() {
        gout
    } else {
        gout.convert::<R>()
    };
    let (gg, gc) = dispatch!(R, st.spec, adjoint_host, &p, ck, slice_of(&gout), want_g);
    let (t_steps, b, n) = st.dims;
    let gc: Vec<R> = gc.into_iter().map(R::c).collect();
    (
        want_g.then(|| TensorData::new(gg, vec![t_steps, b, n])),
        TensorData::new(gc, vec![N_COEF, b, n]),
    )
}

#[derive(Debug)]
struct NerlabScanBackward;

impl<B: Backend> Backward<B, 2> for NerlabScanBackward {
    type State = ScanState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _ckpt: &mut Checkpointer) {
        let [node_g, node_c] = ops.parents;
        let gout = grads.consume::<B>(&ops.node);
        let device = gout.device();
        let gout = read::<B>(gout);
        let st = ops.state;
        let want_g = node_g.is_some();
        let (gg, gc) = match &st.ckpts {
            Checkpoints::F64(ck) => adjoint_typed::<f64>(&st, ck, gout, want_g),
            Checkpoints::F32(ck) => adjoint_typed::<f32>(&st, ck, gout, want_g),
        };
        if let (Some(node), Some(gg)) = (node_g, gg) {
            grads.register::<B>(node.id, B::float_from_data(gg, &device));
        }
        if let Some(node) = node_c {
            grads.register::<B>(node.id, B::float_from_data(gc, &device));
        }
    }
}

impl<B: NerlabScanOps, C: CheckpointStrategy> NerlabScanOps for Autodiff<B, C> {
    fn nerlab_scan(
        g: FloatTensor<Self>,
        coef: FloatTensor<Self>,
        spec: NerlabScanSpec,
    ) -> FloatTensor<Self> {
        let (g_prim, g_guard) = g.into_parts();
        let (c_prim, c_guard) = coef.into_parts();
        match NerlabScanBackward
            .prepare::<C>([g_guard, c_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let device = g_prim.device();
                let dims = dims3(&g_prim.shape());
                let gd = read::<B>(g_prim);
                let cd = read::<B>(c_prim);
                let (out, ckpts) = forward_data(&gd, &cd, dims, &spec, true);
                let out = B::float_from_data(out, &device);
                prep.finish(
                    ScanState {
                        g: gd,
                        coef: cd,
                        ckpts,
                        dims,
                        spec,
                    },
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::nerlab_scan(g_prim, c_prim, spec)),
        }
    }
}

/// Whether the fused op runs on this device (flex or ndarray, with or without autodiff).
pub fn fused_supported(device: &burn::tensor::Device) -> bool {
    crate::kernel::ctx::host_ops_supported(device)
}

/// The fused NERLab pool scan (module docs): synaptic conductance `g [T, B, N]` (unit of
/// `spec.g_scale`, siemens by default), coefficients `coef [N_COEF, B, N]` (rows of [`row`]) →
/// spikes `[T, B, N]`, or `[T, B, 2N]` = spikes then soma potential (mV) with
/// `spec.record_voltage`. Differentiable w.r.t. both inputs through the hand-written adjoint.
///
/// Invalid conductances (negative, non-finite) and non-finite states do not stop the loop; they
/// are reported through `spec.fault` ([`NerlabScanSpec::take_fault`]). Errors: shape mismatch,
/// mixed dtypes, unsupported backend, zero-sized settings.
pub fn nerlab_scan(g: Tensor<3>, coef: Tensor<3>, spec: &NerlabScanSpec) -> Result<Tensor<3>> {
    let [t, b, n] = g.dims();
    let expected = [N_COEF, b, n];
    if coef.dims() != expected {
        return Err(Error::shape(
            "nerlab coefficients",
            format!("{expected:?}"),
            format!("{:?}", coef.dims()),
        ));
    }
    if t == 0 || b == 0 || n == 0 {
        return Err(Error::shape(
            "syn_conductance trace",
            "[n_steps >= 1, batch >= 1, n_units >= 1]",
            format!("{:?}", [t, b, n]),
        ));
    }
    if spec.checkpoint_every == 0 || spec.threads == 0 || spec.check_every == 0 {
        return Err(Error::invalid(
            "checkpoint_every / threads / check_every",
            format!(
                "{} / {} / {}",
                spec.checkpoint_every, spec.threads, spec.check_every
            ),
            ">= 1",
        ));
    }
    if !fused_supported(&g.device()) {
        return Err(Error::config(
            "path",
            "the fused NERLab scan runs on the flex and ndarray CPU backends only; use the tape path",
        ));
    }
    if g.dtype() != coef.dtype() || !matches!(g.dtype(), DType::F32 | DType::F64) {
        return Err(Error::config(
            "nerlab_scan",
            "conductance and coefficients must have the same float dtype (f32 or f64)",
        ));
    }
    Ok(Tensor::from_dispatch(
        <Dispatch as NerlabScanOps>::nerlab_scan(
            g.into_dispatch(),
            coef.into_dispatch(),
            spec.clone(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_replica_matches_the_standard_library() {
        // every 61st f32 in [−110, 100] plus the special values (the full 2³² sweep, run once
        // by hand, also gave no mismatch)
        let mut n = 0;
        let mut x = -110.0f32;
        while x < 100.0 {
            assert_eq!(expf_glibc(x).to_bits(), x.exp().to_bits(), "exp({x})");
            n += 1;
            let b = x.to_bits();
            x = if x < 0.0 {
                if b - 0x8000_0000 <= 61 {
                    0.0
                } else {
                    f32::from_bits(b - 61)
                }
            } else {
                f32::from_bits(b + 61)
            };
        }
        assert!(n > 10_000_000);
        for x in [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.8,
            -104.0,
            1e-30,
            -1e-30,
        ] {
            assert_eq!(expf_glibc(x).to_bits(), x.exp().to_bits(), "exp({x})");
        }
        assert!(expf_glibc(f32::NAN).is_nan());
    }

    #[test]
    fn exp_f64_is_within_a_few_ulp() {
        let mut x = -700.0f64;
        while x < 700.0 {
            let (a, b) = (exp_f64(x), x.exp());
            assert!(
                (a - b).abs() <= 4.0 * f64::EPSILON * b,
                "exp({x}): {a} vs {b}"
            );
            x += 0.013_7;
        }
    }
}
