//! The lockstep kernel — no physiology here.
//!
//! - [`SimState`]: named tensor buffers with a leading batch axis, declared by stages.
//! - [`Stage`] / [`Readout`]: per-tick nodes and whole-trace post-processing.
//! - [`Graph`]: topological order from declared reads/writes; delayed (one-tick) feedback edges.
//! - [`Simulation`]: the driver (tape path: tick-major; fused path: stage-major with fused scans;
//!   stream path: tick-major on the host, feedback included — [`host`], its driver and adjoint
//!   in [`stream`], its two-thread forward in `pipeline`, with [`DelayLine`] for stages that
//!   read their input back later and [`dual`] numbers for step Jacobians; optional memory limit
//!   `Simulation::memory_limit_bytes`).
//! - [`SimResult`]: host-side result per batch element; [`EventTrace`]: a binary trace kept as
//!   its events (the stream path's spike record).

pub mod ctx;
pub mod delay_line;
pub mod dual;
pub mod events;
pub mod fastexp;
pub mod graph;
pub mod host;
mod pipeline;
pub mod result;
pub mod simulation;
pub mod stage;
pub mod state;
pub mod stream;

pub use ctx::{BackendKind, Ctx, Precision, scalar_f64, to_vec_f32, to_vec_f64};
pub use delay_line::DelayLine;
pub use events::EventTrace;
pub use graph::Graph;
pub use host::{AdjointUse, HostCx, HostStage, SaveAt, VjpIo};
pub use result::SimResult;
pub use simulation::{ExecPath, Rollout, Simulation, StepCallback, check_trace_finite, names};
pub use stage::{ReadSpec, Readout, Stage, StageDecl, StageIo, Traces, input_trace};
pub use state::{BufferSpec, SimState};
pub use stream::StreamGradient;
