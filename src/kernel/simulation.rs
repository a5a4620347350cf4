//! `Simulation`: owns the stages, orders them ([`Graph`]) and steps them in lockstep for
//! `n_steps`, recording the requested buffers into whole traces `[n_steps, batch, width]`.
//!
//! Two execution paths compute the same thing:
//! - [`ExecPath::Tape`]: tick-major — every tick runs every stage (the lockstep reference; any
//!   graph, feedback included; per-step callbacks).
//! - [`ExecPath::Fused`]: stage-major — each stage runs over the whole trace before the next,
//!   through its fused [`Stage::scan`] op where it has one (one custom op with a hand-written
//!   adjoint) and by stepping it alone otherwise. Needs a feed-forward graph: a delayed read of a
//!   buffer written by a *later* stage (closed-loop feedback) is rejected.
//! - [`ExecPath::Stream`]: tick-major on the host — every stage's [`Stage::host`] step on flat
//!   `f64` buffers in one loop ([`super::host`]); any graph, feedback included; forward only.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::Tensor;

use super::ctx::{Ctx, to_vec_f64};
use super::events::EventTrace;
use super::graph::Graph;
use super::result::SimResult;
use super::stage::{Readout, Stage, StageDecl, StageIo, Traces};
use super::state::{BufferSpec, SimState};
use crate::error::{Error, Result, check};

/// Which execution path runs the rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecPath {
    /// Tick-major lockstep with plain tensor ops (burn's autodiff tape records every op).
    #[default]
    Tape,
    /// Stage-major; stages with a fused scan op use it (hand-written adjoint).
    Fused,
    /// Tick-major on the host (every stage's host step, feedback included); forward only.
    Stream,
}

/// A per-step callback (closed-loop hook), called after all stages of tick `t`.
pub type StepCallback = Box<dyn FnMut(&SimState, usize) -> Result<()>>;

/// Canonical buffer names.
pub mod names {
    /// Motor-neuron spikes `[n_units]` (1 = spike in this step).
    pub const SPIKES: &str = "spikes";
    /// Muscle force `[n_pools]` in newtons.
    pub const FORCE_N: &str = "force_n";
    /// Surface EMG `[rows, cols]` in volts.
    pub const SURFACE_EMG_V: &str = "surface_emg_v";
}

/// The outcome of a rollout: every recorded trace (differentiable when the context is autodiff).
pub struct Rollout {
    /// Recorded traces `[n_steps, batch, width]` (dense).
    pub traces: Traces,
    /// Recorded binary traces kept as events (the stream path records hard spikes this way);
    /// [`Rollout::trace`] makes them dense on request.
    pub events: BTreeMap<String, EventTrace>,
    /// The context the traces live on.
    pub ctx: Ctx,
    /// Buffer declarations.
    pub specs: BTreeMap<String, BufferSpec>,
    /// Time step (s).
    pub dt_s: f64,
    /// Batch size.
    pub batch: usize,
    /// Number of steps.
    pub n_steps: usize,
    /// Wall time of each stage (s) on the fused (stage-major) path, in execution order; empty on
    /// the tape path, where stages interleave every tick. Backends that execute lazily may
    /// attribute time to a later stage.
    pub stage_wall_s: Vec<(String, f64)>,
}

impl Rollout {
    /// A recorded trace `[n_steps, batch, width]` (an event trace is made dense here).
    pub fn trace(&self, name: &str) -> Result<Tensor<3>> {
        if let Some(e) = self.events.get(name) {
            return Ok(e.dense(&self.ctx));
        }
        self.traces
            .get(name)
            .cloned()
            .ok_or_else(|| Error::config(name, "this buffer was not recorded in the rollout"))
    }
    /// Whether buffer `name` was recorded (densely or as events).
    pub fn has_trace(&self, name: &str) -> bool {
        self.traces.contains_key(name) || self.events.contains_key(name)
    }
    /// The names of every recorded trace, dense or events, sorted.
    pub fn recorded(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .traces
            .keys()
            .chain(self.events.keys())
            .cloned()
            .collect();
        v.sort();
        v
    }
    /// The host-side result of batch element `b`.
    pub fn result(&self, b: usize) -> Result<SimResult> {
        let mut res = SimResult::from_traces(&self.traces, &self.specs, self.dt_s, b)?;
        if let Some(ev) = self.events.get(names::SPIKES) {
            if b >= ev.batch {
                return Err(Error::invalid(
                    "batch_index",
                    b,
                    format!("0..{} (trace `{}`)", ev.batch, names::SPIKES),
                ));
            }
            res.n_units = ev.width;
            res.spike_times_s = ev.times_s(b, self.dt_s, res.t_start_s);
        }
        Ok(res)
    }
}

/// The error of a rollout that needs `need` bytes for `what` under a memory limit of `limit`.
pub(super) fn memory_error(limit: usize, need: usize, what: &str) -> Error {
    Error::invalid(
        "memory_limit",
        format!("{limit} bytes"),
        format!(
            "at least {need} bytes for {what}: raise the limit, shorten the rollout, record fewer \
             buffers or split the batch"
        ),
    )
}

/// What [`Simulation::prepared`] returns: the ordered graph, the declarations, the state after
/// every stage's `init`, and the buffer declarations.
pub(super) type Prepared = (
    Graph,
    Vec<StageDecl>,
    SimState,
    BTreeMap<String, BufferSpec>,
);

/// The lockstep driver.
pub struct Simulation {
    pub(super) ctx: Ctx,
    pub(super) batch: usize,
    pub(super) dt_s: f64,
    pub(super) n_steps: usize,
    pub(super) stages: Vec<Box<dyn Stage>>,
    pub(super) inputs: Vec<(BufferSpec, Tensor<3>)>,
    /// Threads the stream path's forward may use (default: the machine's parallelism).
    pub(super) threads: usize,
    /// Forces the stream pipeline's cut (plan index) instead of the measured choice (tests).
    pub(crate) pipeline_cut: Option<usize>,
    /// Largest memory (bytes) the recorded traces (and the stream adjoint's checkpoints) may
    /// take; `None` = no limit.
    pub(super) memory_limit: Option<usize>,
    readouts: Vec<Box<dyn Readout>>,
    pub(super) record: BTreeSet<String>,
    pub(super) callbacks: Vec<StepCallback>,
    pub(super) check_finite: bool,
}

impl Simulation {
    /// A simulation of `n_steps` ticks of `dt_s` seconds over `batch` parallel parameter sets.
    pub fn new(ctx: Ctx, batch: usize, dt_s: f64, n_steps: usize) -> Result<Self> {
        check::count_at_least("batch", batch, 1)?;
        check::positive("dt_s", dt_s)?;
        check::count_at_least("n_steps", n_steps, 1)?;
        Ok(Self {
            ctx,
            batch,
            dt_s,
            n_steps,
            stages: Vec::new(),
            inputs: Vec::new(),
            readouts: Vec::new(),
            record: [names::SPIKES, names::FORCE_N, names::SURFACE_EMG_V]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            callbacks: Vec::new(),
            check_finite: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pipeline_cut: None,
            memory_limit: None,
        })
    }

    /// Adds a stage (order of addition breaks ties in the topological order).
    pub fn add_stage(&mut self, stage: impl Stage + 'static) -> &mut Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// Adds a boxed stage.
    pub fn add_boxed_stage(&mut self, stage: Box<dyn Stage>) -> &mut Self {
        self.stages.push(stage);
        self
    }

    /// Supplies a whole input trace `[n_steps, batch, width]` for buffer `spec` (written by no stage).
    pub fn add_input(&mut self, spec: BufferSpec, trace: Tensor<3>) -> Result<&mut Self> {
        let expected = [self.n_steps, self.batch, spec.width()];
        if trace.dims() != expected {
            return Err(Error::shape(
                &spec.name,
                format!("{expected:?}"),
                format!("{:?}", trace.dims()),
            ));
        }
        self.inputs.push((spec, trace));
        Ok(self)
    }

    /// Adds a readout (run after the rollout, in order of addition).
    pub fn add_readout(&mut self, readout: impl Readout + 'static) -> &mut Self {
        self.readouts.push(Box::new(readout));
        self
    }

    /// Also records these buffers (the canonical spikes/force/EMG buffers are recorded by default).
    pub fn record(&mut self, names: &[&str]) -> &mut Self {
        self.record.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// Registers a per-step callback (tape path only).
    pub fn on_step(
        &mut self,
        f: impl FnMut(&SimState, usize) -> Result<()> + 'static,
    ) -> &mut Self {
        self.callbacks.push(Box::new(f));
        self
    }

    /// Sets how many threads the stream path's forward may use (default: the machine's
    /// parallelism). With 2 or more, an open-loop graph runs as a two-stage pipeline (see
    /// [`super::stream`]); results do not depend on it. Errors: 0.
    pub fn threads(&mut self, n: usize) -> Result<&mut Self> {
        check::count_at_least("threads", n, 1)?;
        self.threads = n;
        Ok(self)
    }

    /// Sets the largest memory (bytes) the rollout's recorded traces may take — on the tape and
    /// fused paths every trace the path materialises, on the stream path what its recorder holds
    /// (spike events, dense traces) plus, in [`Simulation::stream_gradient`], the checkpoints.
    /// A rollout that would exceed it stops with [`Error::InvalidParameter`] naming
    /// `memory_limit` and the bytes needed, instead of exhausting the machine. Errors: 0.
    pub fn memory_limit_bytes(&mut self, bytes: usize) -> Result<&mut Self> {
        check::count_at_least("memory_limit", bytes, 1)?;
        self.memory_limit = Some(bytes);
        Ok(self)
    }

    /// Errors if `need` bytes (for `what`) exceed the memory limit.
    pub(super) fn check_memory(&self, need: usize, what: &str) -> Result<()> {
        match self.memory_limit {
            Some(limit) if need > limit => Err(memory_error(limit, need, what)),
            _ => Ok(()),
        }
    }

    /// Turns the final non-finite check of every trace on or off (default on).
    pub fn check_finite(&mut self, on: bool) -> &mut Self {
        self.check_finite = on;
        self
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Time step (s).
    pub fn dt_s(&self) -> f64 {
        self.dt_s
    }
    /// Number of steps.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }
    /// Device and precision.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Orders the stages; returns the graph and the declarations (in stage-list order).
    pub fn graph(&self) -> Result<(Graph, Vec<StageDecl>)> {
        let names: Vec<String> = self.stages.iter().map(|s| s.name().to_string()).collect();
        let decls: Vec<StageDecl> = self.stages.iter().map(|s| s.declare()).collect();
        let external: Vec<String> = self.inputs.iter().map(|(s, _)| s.name.clone()).collect();
        let graph = Graph::build(&names, &decls, &external)?;
        Ok((graph, decls))
    }

    /// Runs the rollout on the tape (lockstep) path.
    pub fn run(&mut self) -> Result<Rollout> {
        self.run_path(ExecPath::Tape)
    }

    /// Runs the rollout on the given path.
    pub fn run_path(&mut self, path: ExecPath) -> Result<Rollout> {
        if self.stages.is_empty() && self.inputs.is_empty() {
            return Err(Error::config(
                "stages",
                "a simulation needs at least one stage",
            ));
        }
        let (graph, decls, state, specs) = self.prepared()?;
        // the tape path keeps the recorded traces, the fused path every buffer's trace
        let elem = if self.ctx.precision == super::Precision::F32 {
            4
        } else {
            8
        };
        let trace_bytes = |names: Vec<&String>| -> usize {
            names
                .into_iter()
                .filter_map(|n| state.get(n))
                .map(|t| t.dims()[1])
                .sum::<usize>()
                * self.n_steps
                * self.batch
                * elem
        };
        match path {
            ExecPath::Tape => self.check_memory(
                trace_bytes(self.record.iter().collect()),
                "the recorded traces",
            )?,
            ExecPath::Fused => self.check_memory(
                trace_bytes(state.names().collect()),
                "the traces of every buffer (fused path)",
            )?,
            ExecPath::Stream => {} // checked as the recorder fills
        }
        let mut stage_wall_s = Vec::new();
        let (mut traces, mut events) = match path {
            ExecPath::Tape => (self.run_tape(&graph, &decls, state)?, BTreeMap::new()),
            ExecPath::Fused => (
                self.run_stagewise(&graph, &decls, state, &mut stage_wall_s)?,
                BTreeMap::new(),
            ),
            ExecPath::Stream => self.run_stream(&graph, &decls, state, &mut stage_wall_s)?,
        };
        let mut specs = specs;
        for r in &self.readouts {
            for name in r.reads() {
                // readouts read dense traces
                if let Some(e) = events.remove(&name) {
                    traces.insert(name.clone(), e.dense(&self.ctx));
                }
                if !traces.contains_key(&name) {
                    return Err(Error::MissingBuffer {
                        stage: r.name().into(),
                        buffer: name,
                    });
                }
            }
            let out = r.run(&traces, &self.ctx, self.dt_s)?;
            for spec in r.writes() {
                let t = out.get(&spec.name).ok_or_else(|| {
                    Error::config(
                        r.name(),
                        format!("readout did not produce declared trace `{}`", spec.name),
                    )
                })?;
                let expected = [self.n_steps, self.batch, spec.width()];
                if t.dims() != expected {
                    return Err(Error::shape(
                        &spec.name,
                        format!("{expected:?}"),
                        format!("{:?}", t.dims()),
                    ));
                }
                traces.insert(spec.name.clone(), t.clone());
                specs.insert(spec.name.clone(), spec);
            }
        }
        if self.check_finite {
            for (name, t) in &traces {
                check_trace_finite(name, t.clone())?;
            }
        }
        Ok(Rollout {
            traces,
            events,
            ctx: self.ctx.clone(),
            specs,
            dt_s: self.dt_s,
            batch: self.batch,
            n_steps: self.n_steps,
            stage_wall_s,
        })
    }

    /// The ordered graph, the declarations, the state after every stage's `init`, and the
    /// buffer declarations.
    pub(super) fn prepared(&mut self) -> Result<Prepared> {
        let (graph, decls) = self.graph()?;
        let (mut state, specs) = self.fresh_state(&decls)?;
        for &i in &graph.order {
            let name = self.stages[i].name().to_string();
            let mut io = StageIo::new(&mut state, &name, &decls[i]);
            self.stages[i].init(&mut io)?;
        }
        Ok((graph, decls, state, specs))
    }

    fn fresh_state(&self, decls: &[StageDecl]) -> Result<(SimState, BTreeMap<String, BufferSpec>)> {
        let mut state = SimState::new(self.ctx.clone(), self.batch, self.dt_s, self.n_steps);
        let mut specs = BTreeMap::new();
        for (spec, _) in &self.inputs {
            state.alloc(spec.clone(), "<external input>")?;
            specs.insert(spec.name.clone(), spec.clone());
        }
        for (i, d) in decls.iter().enumerate() {
            for w in &d.writes {
                state.alloc(w.clone(), self.stages[i].name())?;
                specs.insert(w.name.clone(), w.clone());
            }
        }
        Ok((state, specs))
    }

    fn input_at(&self, k: usize, t: usize) -> Tensor<2> {
        let (spec, trace) = &self.inputs[k];
        trace
            .clone()
            .slice([t..t + 1, 0..self.batch, 0..spec.width()])
            .reshape([self.batch, spec.width()])
    }

    fn run_tape(
        &mut self,
        graph: &Graph,
        decls: &[StageDecl],
        mut state: SimState,
    ) -> Result<Traces> {
        state.set_delayed(graph.delayed.clone());
        let recorded: Vec<String> = self
            .record
            .iter()
            .filter(|n| state.has(n))
            .cloned()
            .collect();
        let mut rec: Vec<Vec<Tensor<2>>> = vec![Vec::with_capacity(self.n_steps); recorded.len()];
        for t in 0..self.n_steps {
            state.set_t(t);
            state.snapshot_previous();
            for k in 0..self.inputs.len() {
                let v = self.input_at(k, t);
                state.set(&self.inputs[k].0.name.clone(), v)?;
            }
            for &i in &graph.order {
                let name = self.stages[i].name().to_string();
                let mut io = StageIo::new(&mut state, &name, &decls[i]);
                self.stages[i].step(&mut io, t)?;
            }
            for (r, name) in rec.iter_mut().zip(&recorded) {
                r.push(state.get(name).expect("allocated"));
            }
            for cb in &mut self.callbacks {
                cb(&state, t)?;
            }
        }
        Ok(recorded
            .into_iter()
            .zip(rec)
            .map(|(name, v)| (name, Tensor::stack::<3>(v, 0)))
            .collect())
    }

    fn run_stagewise(
        &mut self,
        graph: &Graph,
        decls: &[StageDecl],
        mut state: SimState,
        stage_wall_s: &mut Vec<(String, f64)>,
    ) -> Result<Traces> {
        if !self.callbacks.is_empty() {
            return Err(Error::config(
                "path",
                "per-step callbacks need the tape (lockstep) path; the fused path runs stage by stage",
            ));
        }
        let pos: BTreeMap<usize, usize> = graph
            .order
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, k))
            .collect();
        for (i, d) in decls.iter().enumerate() {
            for r in d.reads.iter().filter(|r| r.delayed) {
                if let Some(Some(j)) = graph.writers.get(&r.name)
                    && *j != i
                    && pos[j] >= pos[&i]
                {
                    return Err(Error::config(
                        "path",
                        format!(
                            "the fused path needs a feed-forward graph, but stage `{}` reads `{}` fed back from `{}`; use the tape path",
                            self.stages[i].name(),
                            r.name,
                            self.stages[*j].name()
                        ),
                    ));
                }
            }
        }
        let init: BTreeMap<String, Tensor<2>> = state
            .names()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|n| {
                let v = state.get(&n).expect("allocated");
                (n, v)
            })
            .collect();
        let mut traces: Traces = self
            .inputs
            .iter()
            .map(|(s, t)| (s.name.clone(), t.clone()))
            .collect();
        for &i in &graph.order {
            let name = self.stages[i].name().to_string();
            let inputs: Traces = decls[i]
                .reads
                .iter()
                .filter_map(|r| traces.get(&r.name).map(|t| (r.name.clone(), t.clone())))
                .collect();
            let t0 = std::time::Instant::now();
            let out = match self.stages[i].scan(&inputs, &self.ctx, self.batch, self.dt_s) {
                Some(res) => res?,
                None => self.step_alone(i, &decls[i], &mut state, &traces, &init)?,
            };
            stage_wall_s.push((name.clone(), t0.elapsed().as_secs_f64()));
            for w in &decls[i].writes {
                let t = out.get(&w.name).ok_or_else(|| {
                    Error::config(
                        &name,
                        format!("stage scan did not produce declared trace `{}`", w.name),
                    )
                })?;
                let expected = [self.n_steps, self.batch, w.width()];
                if t.dims() != expected {
                    return Err(Error::shape(
                        &w.name,
                        format!("{expected:?}"),
                        format!("{:?}", t.dims()),
                    ));
                }
                traces.insert(w.name.clone(), t.clone());
            }
        }
        Ok(traces)
    }

    /// Steps stage `i` alone over the whole rollout, feeding its inputs from finished traces.
    fn step_alone(
        &mut self,
        i: usize,
        decl: &StageDecl,
        state: &mut SimState,
        traces: &Traces,
        init: &BTreeMap<String, Tensor<2>>,
    ) -> Result<Traces> {
        let name = self.stages[i].name().to_string();
        let slice = |t: &Tensor<3>, k: usize| {
            let [_, b, w] = t.dims();
            t.clone().slice([k..k + 1, 0..b, 0..w]).reshape([b, w])
        };
        let own_delayed: BTreeSet<String> = decl
            .reads
            .iter()
            .filter(|r| r.delayed && decl.writes.iter().any(|w| w.name == r.name))
            .map(|r| r.name.clone())
            .collect();
        state.set_delayed(own_delayed);
        let mut rec: Vec<Vec<Tensor<2>>> =
            vec![Vec::with_capacity(self.n_steps); decl.writes.len()];
        for t in 0..self.n_steps {
            state.set_t(t);
            state.snapshot_previous();
            for r in &decl.reads {
                if decl.writes.iter().any(|w| w.name == r.name) {
                    continue;
                }
                let trace = traces.get(&r.name).ok_or_else(|| Error::MissingBuffer {
                    stage: name.clone(),
                    buffer: r.name.clone(),
                })?;
                if r.delayed {
                    let prev = if t == 0 {
                        init[&r.name].clone()
                    } else {
                        slice(trace, t - 1)
                    };
                    state.set_previous(&r.name, prev);
                } else {
                    state.set(&r.name, slice(trace, t))?;
                }
            }
            let mut io = StageIo::new(state, &name, decl);
            self.stages[i].step(&mut io, t)?;
            for (r, w) in rec.iter_mut().zip(&decl.writes) {
                r.push(state.get(&w.name).expect("allocated"));
            }
        }
        Ok(decl
            .writes
            .iter()
            .zip(rec)
            .map(|(w, v)| (w.name.clone(), Tensor::stack::<3>(v, 0)))
            .collect())
    }
}

/// Fails with [`Error::NonFinite`] naming the first non-finite entry of a trace `[n_t, batch, width]`.
pub fn check_trace_finite(name: &str, trace: Tensor<3>) -> Result<()> {
    let [_, b, w] = trace.dims();
    // Cheap reduction on the device first; read the trace back only to locate a failure.
    let finite = trace
        .clone()
        .detach()
        .is_finite()
        .all()
        .into_scalar::<bool>();
    if finite {
        return Ok(());
    }
    let v = to_vec_f64(trace);
    if let Some(idx) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            buffer: name.into(),
            step: idx / (b * w),
            batch: (idx / w) % b,
            unit: idx % w,
        });
    }
    Ok(())
}
