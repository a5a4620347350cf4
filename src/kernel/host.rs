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
//! the context's precision at the end. No gradient flows through it: on an autodiff context the
//! kernel refuses it with a typed error (use the tape path for gradients).

use crate::error::Result;

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
}

/// `value[b]` of a `[1|batch]` parameter column read to the host (row 0 broadcast).
#[inline]
pub fn row(values: &[f64], b: usize) -> f64 {
    if values.len() == 1 { values[0] } else { values[b] }
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
