//! The `Stage` and `Readout` traits, and `StageIo`, the checked window through which a stage sees
//! the shared state (only what it declared).

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::ctx::Ctx;
use super::state::{BufferSpec, SimState};
use crate::error::{Error, Result};

/// One input of a stage. A `delayed` read sees the value of the previous tick (one-tick feedback
/// delay); an undelayed read sees the value written earlier in the same tick.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadSpec {
    /// Buffer name.
    pub name: String,
    /// Read the previous tick's value.
    pub delayed: bool,
}

impl ReadSpec {
    /// An undelayed (same-tick) read.
    pub fn now(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            delayed: false,
        }
    }
    /// A one-tick delayed read (feedback edge).
    pub fn delayed(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            delayed: true,
        }
    }
}

/// What a stage reads and writes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageDecl {
    /// Inputs.
    pub reads: Vec<ReadSpec>,
    /// Outputs (allocated by the kernel, zero-initialised, before `init`).
    pub writes: Vec<BufferSpec>,
}

/// Whole traces `[n_steps, batch, width]` by buffer name (differentiable tensors).
pub type Traces = BTreeMap<String, Tensor<3>>;

/// The trace `name` of `inputs` (for a stage's `scan`), or [`crate::Error::MissingBuffer`] naming
/// `stage` and the buffer.
pub fn input_trace(inputs: &Traces, stage: &str, name: &str) -> crate::Result<Tensor<3>> {
    inputs
        .get(name)
        .cloned()
        .ok_or_else(|| crate::Error::MissingBuffer {
            stage: stage.into(),
            buffer: name.into(),
        })
}

/// A node of the lockstep graph.
///
/// The kernel allocates every declared output before `init`; `init` may set initial values
/// (the "t = −1" state that delayed readers see at tick 0); `step` advances one tick.
pub trait Stage: Send {
    /// Unique name (used in errors).
    fn name(&self) -> &str;
    /// Inputs and outputs.
    fn declare(&self) -> StageDecl;
    /// Sets initial values of the outputs. Default: leave them at zero.
    fn init(&mut self, _io: &mut StageIo<'_>) -> Result<()> {
        Ok(())
    }
    /// Advances one tick (`t` = step index, time = t·dt_s).
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()>;
    /// Optional fused whole-trace execution (the "fused path"): given the full traces of every
    /// buffer this stage reads (`[n_steps, batch, width]`), return the full traces of every buffer
    /// it writes. Must compute exactly what `n_steps` calls of `step` compute. `None` = not
    /// available; the kernel then steps this stage alone over the input traces.
    fn scan(
        &mut self,
        _inputs: &Traces,
        _ctx: &Ctx,
        _batch: usize,
        _dt_s: f64,
    ) -> Option<Result<Traces>> {
        None
    }
    /// Optional host (streaming, tick-major) execution, see [`super::host`]. `None` = not
    /// available; the streaming path then refuses the graph naming this stage.
    fn host(&mut self) -> Option<&mut dyn super::host::HostStage> {
        None
    }
}

/// A whole-trace operation run once after the rollout on recorded traces (e.g. EMG = spikes ⋆
/// MUAPs). Use it for anything that does not feed back into the loop.
pub trait Readout {
    /// Unique name.
    fn name(&self) -> &str;
    /// Traces it needs (must be recorded or produced by an earlier readout).
    fn reads(&self) -> Vec<String>;
    /// Traces it produces.
    fn writes(&self) -> Vec<BufferSpec>;
    /// Computes its outputs `[n_steps, batch, width]`.
    fn run(&self, traces: &Traces, ctx: &Ctx, dt_s: f64) -> Result<Traces>;
}

/// A stage's checked view of the state: reads and writes only what it declared.
pub struct StageIo<'a> {
    pub(crate) state: &'a mut SimState,
    pub(crate) stage: &'a str,
    pub(crate) decl: &'a StageDecl,
}

impl<'a> StageIo<'a> {
    /// Wraps a state for one stage.
    pub fn new(state: &'a mut SimState, stage: &'a str, decl: &'a StageDecl) -> Self {
        Self { state, stage, decl }
    }

    /// Reads a declared input (the previous tick's value if declared delayed), or — for a buffer
    /// the stage writes itself — its current value (its own state from the last tick).
    pub fn read(&self, name: &str) -> Result<Tensor<2>> {
        let delayed = match self.decl.reads.iter().find(|r| r.name == name) {
            Some(r) => Some(r.delayed),
            None if self.decl.writes.iter().any(|w| w.name == name) => None,
            None => {
                return Err(Error::UndeclaredAccess {
                    stage: self.stage.into(),
                    buffer: name.into(),
                    access: "reads".into(),
                });
            }
        };
        let v = if delayed == Some(true) {
            self.state.get_previous(name)
        } else {
            self.state.get(name)
        };
        v.ok_or_else(|| Error::MissingBuffer {
            stage: self.stage.into(),
            buffer: name.into(),
        })
    }

    /// Writes a declared output (shape-checked: `[batch, width]`).
    pub fn write(&mut self, name: &str, value: Tensor<2>) -> Result<()> {
        if !self.decl.writes.iter().any(|w| w.name == name) {
            return Err(Error::UndeclaredAccess {
                stage: self.stage.into(),
                buffer: name.into(),
                access: "writes".into(),
            });
        }
        self.state.set(name, value)
    }

    /// Device and precision.
    pub fn ctx(&self) -> &Ctx {
        self.state.ctx()
    }
    /// Batch size.
    pub fn batch(&self) -> usize {
        self.state.batch()
    }
    /// Time step (s).
    pub fn dt_s(&self) -> f64 {
        self.state.dt_s()
    }
    /// Number of steps in the rollout.
    pub fn n_steps(&self) -> usize {
        self.state.n_steps()
    }
}
