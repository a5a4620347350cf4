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
    /// Threads the rollout may use ([`super::Simulation::threads`]); a stage may split its
    /// units over them within a tick.
    pub threads: usize,
}

/// The host (streaming) execution of a stage. Must compute what [`super::Stage::step`] computes
/// (up to `f64` rounding where the tape runs in `f32`).
pub trait HostStage: Send {
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

    /// Appends the stage's internal forward state before tick `at.t_next` (everything
    /// `host_step` reads besides `ins` and `outs`) to `into`. `at.full` (checkpoints): all of
    /// it. Otherwise (the per-tick snapshots of the reverse sweep): delay-line contents may be
    /// left out — the stage sized its lines at [`HostStage::adjoint_init`] so that a segment's
    /// recomputation never overwrites a value the sweep still needs. Default: no state.
    fn host_save(&self, _at: SaveAt, _into: &mut Vec<f64>) {}
    /// Restores what [`HostStage::host_save`] wrote with the same `at` (`from` holds exactly that).
    fn host_load(&mut self, _at: SaveAt, _from: &[f64]) {}
    /// Starts a reverse sweep whose segments are `segment` ticks long: zeroes the internal
    /// adjoints and parameter gradients and lengthens delay lines by `segment` slots. Default: the
    /// stage has no adjoint ([`Error::Config`] naming `path`).
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        Err(Error::config(
            "path",
            "this stage has no adjoint on the stream path; use the tape path for gradients",
        ))
    }
    /// The reverse of tick `t` (see the module docs), called with the internal state restored to
    /// before the tick; `io` holds the values and adjoints ([`VjpIo`]).
    fn host_vjp(&mut self, _cx: &HostCx, _io: VjpIo<'_>, _t: usize) -> Result<()> {
        Err(Error::config(
            "path",
            "this stage has no adjoint on the stream path",
        ))
    }
    /// How this stage uses the adjoint of its output `out` (declaration index) in its
    /// `host_vjp`, so that the stages reading that buffer can skip work: default
    /// [`AdjointUse::Full`].
    fn output_adjoint_use(&self, _out: usize) -> AdjointUse {
        AdjointUse::Full
    }
    /// Told once before the sweep how the writer of the stage's read `input` (declaration index)
    /// uses its adjoint. Default: ignored (the stage computes the full adjoint).
    fn set_input_adjoint_use(&mut self, _input: usize, _use: AdjointUse) {}
    /// The parameter gradients accumulated by the sweep: `(parameter name, dL/dp)` with `dL/dp`
    /// in the parameter tensor's layout (`[1|batch]` rows). Default: none.
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        Vec::new()
    }
}

/// How a writer uses the adjoint of one of its outputs `[batch, width]` in its reverse step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjointUse {
    /// Not at all (e.g. hard spikes: zero derivative): readers may leave it at zero.
    Unused,
    /// Only its sum over the width, per batch row (e.g. generators sharing one rate): readers
    /// may put each row's total in the row's first element.
    SumOnly,
    /// Element by element.
    Full,
}

/// What [`HostStage::host_vjp`] sees of tick `t`: `ins` as in `host_step`, `outs_prev` / `outs`
/// the outputs before / after the tick, `g_outs` their adjoints after the tick (complete); the
/// stage adds into `g_ins` (per read: the adjoint of the value that read saw) and `g_outs_prev`
/// (the adjoints of its outputs' previous values, when it reads them as state).
pub struct VjpIo<'a> {
    /// Inputs, in declaration order.
    pub ins: &'a [&'a [f64]],
    /// Outputs before the tick.
    pub outs_prev: &'a [&'a [f64]],
    /// Outputs after the tick.
    pub outs: &'a [&'a [f64]],
    /// Adjoints of the outputs after the tick.
    pub g_outs: &'a [&'a [f64]],
    /// Adjoints of the inputs (accumulated into).
    pub g_ins: &'a mut [Vec<f64>],
    /// Adjoints of the outputs before the tick (accumulated into).
    pub g_outs_prev: &'a mut [Vec<f64>],
}

/// Which snapshot [`HostStage::host_save`] takes: the state before tick `t_next`, in full
/// (checkpoint) or without delay-line contents (per-tick snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaveAt {
    /// The next tick to run.
    pub t_next: usize,
    /// Everything (checkpoint) or the light per-tick snapshot.
    pub full: bool,
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
