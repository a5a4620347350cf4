//! The streaming (tick-major host) path: every stage steps on flat `f64` buffers, tick by tick,
//! in one host loop — so a graph with feedback (a closed loop) runs without burn's per-op cost, and
//! no intermediate trace is materialised except the recorded ones.
//!
//! A stage opts in through [`Stage::host`](super::Stage::host), returning its [`HostStage`]. The
//! kernel first runs every stage's tensor `init` (so initial values — what delayed readers see at
//! tick 0 — are defined once), copies the buffers to the host, calls [`HostStage::host_init`],
//! and then, for every tick in graph order, [`HostStage::host_step`] with
//!
//! - `ins[k]`: the k-th declared read, `[batch·width]` row-major (batch major); a delayed read
//!   sees the value at the end of the previous tick;
//! - `outs[k]`: the k-th declared write, holding the stage's own value from the previous tick
//!   (its state), to be overwritten with this tick's value.
//!
//! It computes the same function as the tape path (tested stage by stage and end to end); the
//! arithmetic is `f64` whatever the context's precision, and the recorded traces are converted to
//! the context's precision at the end. No burn gradient flows through it (on an autodiff context
//! the kernel refuses it with a typed error); gradients come from its own adjoint,
//! [`crate::kernel::Simulation::stream_gradient`]:
//!
//! **Adjoint.** With `λ` the adjoint of every buffer value, the reverse sweep visits the ticks
//! backwards and, within a tick, the stages in reverse graph order. A stage's
//! [`HostStage::host_vjp`] receives the adjoints of its outputs at the end of the tick (complete:
//! every same-tick reader ran after it, every next-tick reader was swept before) and adds its
//! contributions to the adjoints of what it read (the value that read saw: this tick's, or the
//! previous tick's for a delayed read), to the adjoints of its own outputs' previous values (when
//! it reads them as state), to its internal adjoint state (kept inside the stage) and to its
//! parameter gradients. The forward states of a tick are recomputed from checkpoints taken every
//! K ticks (buffers plus each stage's [`HostStage::host_save`]); memory is O(T/K + K) ticks.
//! Initial values (what `init` wrote) are treated as constants.

use crate::error::{Error, Result};

/// Sizes a host stage sees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostCx {
    /// Batch size.
    pub batch: usize,
    /// Time step (s).
    pub dt_s: f64,
    /// Number of steps of the rollout.
    pub n_steps: usize,
}

/// The host (streaming) execution of a stage. Must compute what [`super::Stage::step`] computes
/// (up to `f64` rounding where the tape runs in `f32`).
pub trait HostStage {
    /// Prepares host constants (parameter tensors read once) after the tensor `init`; `outs` hold
    /// the initial values `init` wrote, in declaration order.
    fn host_init(&mut self, cx: &HostCx, outs: &mut [Vec<f64>]) -> Result<()>;
    /// Advances one tick (`t` = step index): reads `ins`, overwrites `outs` (see the module docs).
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()>;

    /// Appends the stage's internal forward state (everything `host_step` reads besides `ins`
    /// and `outs`) to `into`, for checkpoints. Default: no internal state.
    fn host_save(&self, _into: &mut Vec<f64>) {}
    /// Restores what [`HostStage::host_save`] wrote (`from` holds exactly that).
    fn host_load(&mut self, _from: &[f64]) {}
    /// Starts a reverse sweep: zeroes the internal adjoints and parameter gradients. Default: the
    /// stage has no adjoint ([`Error::Config`] naming `path`).
    fn adjoint_init(&mut self, _cx: &HostCx) -> Result<()> {
        Err(Error::config(
            "path",
            "this stage has no adjoint on the stream path; use the tape path for gradients",
        ))
    }
    /// The reverse of tick `t` (see the module docs), called with the internal state restored to
    /// before the tick: `ins` as in `host_step`, `outs_prev` / `outs` the outputs before / after
    /// the tick, `g_outs` their adjoints after the tick; adds into `g_ins` (per read) and
    /// `g_outs_prev`.
    #[allow(clippy::too_many_arguments)]
    fn host_vjp(
        &mut self,
        _cx: &HostCx,
        _ins: &[&[f64]],
        _outs_prev: &[&[f64]],
        _outs: &[&[f64]],
        _g_outs: &[&[f64]],
        _g_ins: &mut [Vec<f64>],
        _g_outs_prev: &mut [Vec<f64>],
        _t: usize,
    ) -> Result<()> {
        Err(Error::config(
            "path",
            "this stage has no adjoint on the stream path",
        ))
    }
    /// The parameter gradients accumulated by the sweep: `(parameter name, dL/dp)` with `dL/dp`
    /// in the parameter tensor's layout (`[1|batch]` rows). Default: none.
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        Vec::new()
    }
}

/// `value[b]` of a `[1|batch]` parameter column read to the host (row 0 broadcast).
#[inline]
pub fn row(values: &[f64], b: usize) -> f64 {
    if values.len() == 1 {
        values[0]
    } else {
        values[b]
    }
}

/// `values[b·n + j]` of a `[1|batch, n]` host matrix (row 0 broadcast when it has one row).
#[inline]
pub fn row_col(values: &[f64], n: usize, b: usize, j: usize) -> f64 {
    if values.len() == n {
        values[j]
    } else {
        values[b * n + j]
    }
}
