//! The streaming path's driver ([`super::host`]): the tick-major host loop over every stage, and
//! its adjoint ([`Simulation::stream_gradient`]) with checkpointed recomputation.

use std::collections::BTreeMap;

use super::ctx::to_vec_f64;
use super::events::{EventRecorder, EventTrace};
use super::graph::Graph;
use super::host::{AdjointUse, HostCx, HostStage, SaveAt, VjpIo};
use super::pipeline::{choose_cut, cut_at};
use super::simulation::{Rollout, Simulation, check_trace_finite, memory_error};
use super::stage::{StageDecl, Traces};
use super::state::SimState;
use crate::error::{Error, Result, check};

/// Which buffers a stage reads (id, delayed) and writes.
pub(super) struct Plan {
    pub(super) stage: usize,
    pub(super) ins: Vec<(usize, bool)>,
    pub(super) outs: Vec<usize>,
}

/// Ticks measured on one thread before the pipeline is cut ([`super::pipeline`]): 5 % of the
/// rollout, at least this many (or all of a shorter one)…
const PIPELINE_WARMUP_MIN: usize = 200;
/// …and at most this many.
const PIPELINE_WARMUP_MAX: usize = 2_000;

/// The live host state of a streaming rollout.
pub(super) struct Streamer {
    names: Vec<String>,
    pub(super) cur: Vec<Vec<f64>>,
    pub(super) prev: Vec<Vec<f64>>,
    pub(super) delayed: Vec<usize>,
    pub(super) inputs: Vec<(usize, Vec<f64>)>,
    pub(super) plans: Vec<Plan>,
    pub(super) cx: HostCx,
    /// Wall time of each plan's steps (s).
    pub(super) wall: Vec<f64>,
}

/// A checkpoint: every buffer and every stage's internal state at the end of a tick.
#[derive(Clone)]
struct Snapshot {
    buffers: Vec<Vec<f64>>,
    stages: Vec<Vec<f64>>,
}

impl Snapshot {
    /// Bytes of its values.
    fn bytes(&self) -> usize {
        8 * self
            .buffers
            .iter()
            .chain(&self.stages)
            .map(Vec::len)
            .sum::<usize>()
    }
}

/// The result of [`Simulation::stream_gradient`].
pub struct StreamGradient {
    /// The forward rollout (recorded traces in the context's precision).
    pub rollout: Rollout,
    /// `dL/dp` per parameter, named `<stage>.<parameter>`, in the parameter's `[1|batch]` layout.
    pub grads: BTreeMap<String, Vec<f64>>,
}

impl Streamer {
    fn new(
        sim: &mut Simulation,
        graph: &Graph,
        decls: &[StageDecl],
        state: &SimState,
    ) -> Result<Self> {
        if sim.ctx.is_autodiff() {
            return Err(Error::config(
                "path",
                "the stream path runs on the host with its own adjoint (stream_gradient); use a \
                 context without autodiff, or the tape path for burn gradients",
            ));
        }
        if !sim.callbacks.is_empty() {
            return Err(Error::config(
                "path",
                "per-step callbacks need the tape path; the stream path runs on the host",
            ));
        }
        let names: Vec<String> = state.names().cloned().collect();
        let id = |n: &str| names.iter().position(|x| x == n);
        let cur: Vec<Vec<f64>> = names
            .iter()
            .map(|n| to_vec_f64(state.get(n).expect("allocated")))
            .collect();
        let delayed: Vec<usize> = graph.delayed.iter().filter_map(|n| id(n)).collect();
        let inputs = sim
            .inputs
            .iter()
            .map(|(s, t)| (id(&s.name).expect("allocated"), to_vec_f64(t.clone())))
            .collect();
        let mut plans = Vec::with_capacity(graph.order.len());
        for &i in &graph.order {
            let name = sim.stages[i].name().to_string();
            if sim.stages[i].host().is_none() {
                return Err(Error::config(
                    "path",
                    format!("stage `{name}` has no host step; use the tape or fused path"),
                ));
            }
            let missing = |b: &str| Error::MissingBuffer {
                stage: name.clone(),
                buffer: b.into(),
            };
            let ins = decls[i]
                .reads
                .iter()
                .map(|r| Ok((id(&r.name).ok_or_else(|| missing(&r.name))?, r.delayed)))
                .collect::<Result<Vec<_>>>()?;
            let outs = decls[i]
                .writes
                .iter()
                .map(|w| id(&w.name).ok_or_else(|| missing(&w.name)))
                .collect::<Result<Vec<_>>>()?;
            plans.push(Plan {
                stage: i,
                ins,
                outs,
            });
        }
        let cx = HostCx {
            batch: sim.batch,
            dt_s: sim.dt_s,
            n_steps: sim.n_steps,
            threads: sim.threads,
        };
        let prev = cur.clone();
        let wall = vec![0.0; plans.len()];
        let mut s = Self {
            names,
            cur,
            prev,
            delayed,
            inputs,
            plans,
            cx,
            wall,
        };
        for k in 0..s.plans.len() {
            let p = &s.plans[k];
            let mut outs: Vec<Vec<f64>> = p
                .outs
                .iter()
                .map(|&b| std::mem::take(&mut s.cur[b]))
                .collect();
            let res = sim.stages[p.stage]
                .host()
                .expect("checked above")
                .host_init(&s.cx, &mut outs);
            for (&b, v) in p.outs.iter().zip(outs) {
                s.cur[b] = v;
            }
            res?;
        }
        Ok(s)
    }

    fn id(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|x| x == name)
    }

    /// One tick of every stage, in graph order.
    fn tick(&mut self, sim: &mut Simulation, t: usize) -> Result<()> {
        begin_tick(
            &mut self.cur,
            &mut self.prev,
            &self.delayed,
            &self.inputs,
            t,
        );
        for (p, wall) in self.plans.iter().zip(self.wall.iter_mut()) {
            let t0 = std::time::Instant::now();
            let stage = sim.stages[p.stage].host().expect("checked");
            step_plan(stage, p, &self.cx, &mut self.cur, &self.prev, t)?;
            *wall += t0.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// Ticks `ticks` on this thread, each recorded into `rec`.
    fn run_ticks(
        &mut self,
        sim: &mut Simulation,
        rec: &mut Recorder,
        ticks: std::ops::Range<usize>,
    ) -> Result<()> {
        for t in ticks {
            self.tick(sim, t)?;
            rec.push(&self.cur)?;
        }
        Ok(())
    }

    /// Every buffer and every stage's state before tick `at.t_next`.
    fn snapshot(&self, sim: &mut Simulation, at: SaveAt) -> Snapshot {
        let mut snap = Snapshot {
            buffers: Vec::new(),
            stages: Vec::new(),
        };
        self.snapshot_into(sim, at, &mut snap);
        snap
    }

    /// [`Streamer::snapshot`] into existing storage (its allocations are reused: the reverse
    /// sweep takes one snapshot per tick).
    fn snapshot_into(&self, sim: &mut Simulation, at: SaveAt, into: &mut Snapshot) {
        into.buffers.resize_with(self.cur.len(), Vec::new);
        for (d, s) in into.buffers.iter_mut().zip(&self.cur) {
            d.clear();
            d.extend_from_slice(s);
        }
        into.stages.resize_with(self.plans.len(), Vec::new);
        for (p, v) in self.plans.iter().zip(into.stages.iter_mut()) {
            v.clear();
            sim.stages[p.stage]
                .host()
                .expect("checked")
                .host_save(at, v);
        }
    }

    fn load_stages(&self, sim: &mut Simulation, at: SaveAt, states: &[Vec<f64>]) {
        for (p, st) in self.plans.iter().zip(states) {
            sim.stages[p.stage]
                .host()
                .expect("checked")
                .host_load(at, st);
        }
    }

    /// Recorded traces of the requested buffers: events while binary, else dense in the
    /// context's precision ([`EventRecorder`]).
    fn recorder(&self, sim: &Simulation) -> Recorder {
        let recorded: Vec<(String, usize)> = sim
            .record
            .iter()
            .filter_map(|n| self.id(n).map(|k| (n.clone(), k)))
            .collect();
        let width = |k: usize| self.cur[k].len() / sim.batch;
        Recorder {
            limit: sim.memory_limit.map(|l| {
                (
                    l,
                    std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                )
            }),
            mine: 0,
            recs: recorded
                .iter()
                .map(|(_, k)| {
                    EventRecorder::Events(EventTrace::new(sim.n_steps, sim.batch, width(*k)))
                })
                .collect(),
            recorded,
            f32_rec: sim.ctx.precision == super::Precision::F32,
            t: 0,
            n_steps: sim.n_steps,
        }
    }
}

/// The recorded buffers of a streaming rollout.
pub(super) struct Recorder {
    /// The memory limit (bytes) and the bytes held by every recorder of the rollout.
    limit: Option<(usize, std::sync::Arc<std::sync::atomic::AtomicUsize>)>,
    /// The bytes this recorder last reported.
    mine: usize,
    recorded: Vec<(String, usize)>,
    f32_rec: bool,
    recs: Vec<EventRecorder>,
    /// The next tick to record.
    t: usize,
    n_steps: usize,
}

impl Recorder {
    /// Splits by buffer: those with `late[id]` into the second recorder (both at the same tick).
    pub(super) fn split(self, late: &[bool]) -> (Recorder, Recorder) {
        let (mut a, mut b) = (self.empty_like(), self.empty_like());
        for (r, e) in self.recorded.into_iter().zip(self.recs) {
            let side = if late[r.1] { &mut b } else { &mut a };
            side.recorded.push(r);
            side.recs.push(e);
        }
        // the shared count already holds these bytes
        a.mine = a.held();
        b.mine = b.held();
        (a, b)
    }

    fn empty_like(&self) -> Recorder {
        Recorder {
            limit: self.limit.clone(),
            mine: 0,
            recorded: Vec::new(),
            f32_rec: self.f32_rec,
            recs: Vec::new(),
            t: self.t,
            n_steps: self.n_steps,
        }
    }

    /// Joins what [`Recorder::split`] separated (after both recorded the same ticks).
    pub(super) fn join(mut self, other: Recorder) -> Recorder {
        self.recorded.extend(other.recorded);
        self.recs.extend(other.recs);
        self
    }

    /// Records one tick; errors when the recorders of the rollout together exceed the memory
    /// limit.
    pub(super) fn push(&mut self, cur: &[Vec<f64>]) -> Result<()> {
        for (r, (_, k)) in self.recs.iter_mut().zip(&self.recorded) {
            r.push(self.t, &cur[*k], self.f32_rec, cur[*k].len() * self.n_steps);
        }
        self.t += 1;
        if let Some((limit, used)) = &self.limit {
            let now = self.held();
            let grown = now.saturating_sub(self.mine);
            self.mine = now;
            let total = used.fetch_add(grown, std::sync::atomic::Ordering::Relaxed) + grown;
            if total > *limit {
                return Err(memory_error(*limit, total, "the recorded traces"));
            }
        }
        Ok(())
    }

    /// Adds `bytes` held elsewhere (the adjoint's checkpoints) to the rollout's count.
    fn charge(&self, bytes: usize) {
        if let Some((_, used)) = &self.limit {
            used.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Bytes held by this recorder's buffers.
    fn held(&self) -> usize {
        self.recs.iter().map(EventRecorder::bytes).sum()
    }

    /// The dense traces and the event traces.
    fn traces(self, sim: &Simulation) -> (Traces, BTreeMap<String, EventTrace>) {
        let mut dense = Traces::new();
        let mut events = BTreeMap::new();
        for ((name, _), r) in self.recorded.into_iter().zip(self.recs) {
            match r {
                EventRecorder::Events(e) => {
                    events.insert(name, e);
                }
                EventRecorder::Dense64(v) => {
                    let w = v.len() / (sim.n_steps * sim.batch);
                    dense.insert(name, sim.ctx.tensor(v, [sim.n_steps, sim.batch, w]));
                }
                EventRecorder::Dense32(v) => {
                    let w = v.len() / (sim.n_steps * sim.batch);
                    dense.insert(name, sim.ctx.tensor_f32(v, [sim.n_steps, sim.batch, w]));
                }
            }
        }
        (dense, events)
    }
}

/// The start of tick `t`: delayed buffers keep the previous tick's value, input traces give
/// tick `t`'s.
pub(super) fn begin_tick(
    cur: &mut [Vec<f64>],
    prev: &mut [Vec<f64>],
    delayed: &[usize],
    inputs: &[(usize, Vec<f64>)],
    t: usize,
) {
    for &k in delayed {
        prev[k].copy_from_slice(&cur[k]);
    }
    for (k, trace) in inputs {
        let w = cur[*k].len();
        cur[*k].copy_from_slice(&trace[t * w..(t + 1) * w]);
    }
}

/// One stage's tick `t`: its outputs are taken out of `cur`, stepped and put back.
pub(super) fn step_plan(
    stage: &mut dyn HostStage,
    p: &Plan,
    cx: &HostCx,
    cur: &mut [Vec<f64>],
    prev: &[Vec<f64>],
    t: usize,
) -> Result<()> {
    let mut outs: Vec<Vec<f64>> = p
        .outs
        .iter()
        .map(|&k| std::mem::take(&mut cur[k]))
        .collect();
    let res = {
        let ins: Vec<&[f64]> = p
            .ins
            .iter()
            .map(|&(k, d)| if d { &prev[k][..] } else { &cur[k][..] })
            .collect();
        stage.host_step(cx, &ins, &mut outs, t)
    };
    for (&k, v) in p.outs.iter().zip(outs) {
        cur[k] = v;
    }
    res
}

impl Simulation {
    /// The streaming path's forward (see [`super::host`]).
    pub(super) fn run_stream(
        &mut self,
        graph: &Graph,
        decls: &[StageDecl],
        state: SimState,
        stage_wall_s: &mut Vec<(String, f64)>,
    ) -> Result<(Traces, BTreeMap<String, EventTrace>)> {
        let mut st = Streamer::new(self, graph, decls, &state)?;
        let mut rec = st.recorder(self);
        // with two threads, the first ticks measure the stages, then the rest is pipelined
        let warm = if self.threads >= 2 {
            (self.n_steps / 20).clamp(PIPELINE_WARMUP_MIN.min(self.n_steps), PIPELINE_WARMUP_MAX)
        } else {
            self.n_steps
        };
        st.run_ticks(self, &mut rec, 0..warm)?;
        if warm < self.n_steps {
            let cut = match self.pipeline_cut {
                Some(at) => Some(cut_at(&st.plans, st.cur.len(), at).ok_or_else(|| {
                    Error::invalid("pipeline_cut", at, "a valid cut of this graph")
                })?),
                None => choose_cut(&st.plans, st.cur.len(), &st.wall),
            };
            match cut {
                Some(cut) => rec = st.run_pipelined(self, rec, warm, &cut)?,
                None => st.run_ticks(self, &mut rec, warm..self.n_steps)?,
            }
        }
        for (p, w) in st.plans.iter().zip(&st.wall) {
            stage_wall_s.push((self.stages[p.stage].name().to_string(), *w));
        }
        Ok(rec.traces(self))
    }

    /// Runs the rollout on the stream path and then its adjoint: `loss_grad` receives the forward
    /// rollout and returns `dL/d(trace)` for any recorded buffers (host `[n_steps·batch·width]`,
    /// step-major like the traces); the result holds the rollout and `dL/dp` of every parameter
    /// the stages expose (named `<stage>.<parameter>`). The state is checkpointed every
    /// `checkpoint_every` ticks and recomputed segment by segment in the reverse sweep.
    ///
    /// Errors: `checkpoint_every` 0 or above the step count; a stage without an adjoint (e.g.
    /// pathwise generators, the GTO's direct-form filter; pools have one in hard, surrogate and
    /// rate modes, generators in hard, expected, rate and grid-rate modes); a gradient for a
    /// buffer that was not recorded, or of the wrong length; any forward error.
    pub fn stream_gradient(
        &mut self,
        checkpoint_every: usize,
        loss_grad: impl FnOnce(&Rollout) -> Result<BTreeMap<String, Vec<f64>>>,
    ) -> Result<StreamGradient> {
        check::count_at_least("checkpoint_every", checkpoint_every, 1)?;
        if checkpoint_every > self.n_steps {
            return Err(Error::invalid(
                "checkpoint_every",
                checkpoint_every,
                format!("<= the number of steps ({})", self.n_steps),
            ));
        }
        let (graph, decls, state, specs) = self.prepared()?;
        let mut st = Streamer::new(self, &graph, &decls, &state)?;
        for p in &st.plans {
            let name = self.stages[p.stage].name().to_string();
            let mut seen = std::collections::BTreeSet::new();
            for &(k, d) in &p.ins {
                if !seen.insert((k, d)) || (d && p.outs.contains(&k)) {
                    return Err(Error::config(
                        "path",
                        format!(
                            "stage `{name}` reads `{}` twice; the stream adjoint needs one read per buffer",
                            st.names[k]
                        ),
                    ));
                }
            }
            self.stages[p.stage]
                .host()
                .expect("checked")
                .adjoint_init(&st.cx, checkpoint_every)
                .map_err(|e| match e {
                    Error::Config { field, reason } => Error::Config {
                        field,
                        reason: format!("stage `{name}`: {reason}"),
                    },
                    e => e,
                })?;
        }
        // tell every reader how the writer of each buffer it reads uses that buffer's adjoint
        let mut uses = Vec::new();
        for (pi, p) in st.plans.iter().enumerate() {
            for (ri, &(b, _)) in p.ins.iter().enumerate() {
                let writer = st
                    .plans
                    .iter()
                    .find_map(|w| w.outs.iter().position(|&o| o == b).map(|k| (w.stage, k)));
                let u = match writer {
                    Some((w, k)) => self.stages[w]
                        .host()
                        .expect("checked")
                        .output_adjoint_use(k),
                    None => AdjointUse::Unused, // an external input trace
                };
                uses.push((pi, ri, u));
            }
        }
        for (pi, ri, u) in uses {
            let stage = st.plans[pi].stage;
            self.stages[stage]
                .host()
                .expect("checked")
                .set_input_adjoint_use(ri, u);
        }
        // forward, keeping a checkpoint at the start of every segment
        let k = checkpoint_every;
        let n_checkpoints = self.n_steps.div_ceil(k);
        let mut checkpoints = Vec::with_capacity(n_checkpoints);
        let rec = st.recorder(self);
        if self.memory_limit.is_some() {
            // the checkpoints and one segment's per-tick snapshots, charged before the run
            let mut size = |full| st.snapshot(self, SaveAt { t_next: 0, full }).bytes();
            let need = size(true) * n_checkpoints + size(false) * (k + 1);
            self.check_memory(need, "the stream adjoint's checkpoints")?;
            rec.charge(need);
        }
        let mut rec = rec;
        for t in 0..self.n_steps {
            if t % k == 0 {
                checkpoints.push(st.snapshot(
                    self,
                    SaveAt {
                        t_next: t,
                        full: true,
                    },
                ));
            }
            st.tick(self, t)?;
            rec.push(&st.cur)?;
        }
        let (traces, events) = rec.traces(self);
        if self.check_finite {
            for (name, t) in &traces {
                check_trace_finite(name, t.clone())?;
            }
        }
        let rollout = Rollout {
            traces,
            events,
            ctx: self.ctx.clone(),
            specs,
            dt_s: self.dt_s,
            batch: self.batch,
            n_steps: self.n_steps,
            stage_wall_s: Vec::new(),
        };
        let grads_out = loss_grad(&rollout)?;
        let mut g_trace: Vec<(usize, Vec<f64>)> = Vec::new();
        for (name, g) in grads_out {
            let Some(b) = st.id(&name).filter(|_| rollout.has_trace(&name)) else {
                return Err(Error::config(
                    "loss_grad",
                    format!("a gradient for `{name}`, which was not recorded"),
                ));
            };
            let len = self.n_steps * st.cur[b].len();
            if g.len() != len {
                return Err(Error::shape(format!("loss_grad.{name}"), len, g.len()));
            }
            g_trace.push((b, g));
        }
        // reverse sweep, segment by segment
        let mut lam_cur: Vec<Vec<f64>> = st.cur.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut lam_prev = lam_cur.clone();
        let mut snaps: Vec<Snapshot> = Vec::new();
        for (seg, cp) in checkpoints.iter().enumerate().rev() {
            let t0 = seg * k;
            let t1 = (t0 + k).min(self.n_steps);
            for (d, s) in st.cur.iter_mut().zip(&cp.buffers) {
                d.copy_from_slice(s);
            }
            st.load_stages(
                self,
                SaveAt {
                    t_next: t0,
                    full: true,
                },
                &cp.stages,
            );
            // per-tick snapshots leave the delay lines out: they were sized at adjoint_init so
            // that this recomputation keeps every value the sweep of the segment reads
            if snaps.len() < t1 - t0 + 1 {
                snaps.resize_with(t1 - t0 + 1, || Snapshot {
                    buffers: Vec::new(),
                    stages: Vec::new(),
                });
            }
            let light = |t_next| SaveAt {
                t_next,
                full: false,
            };
            st.snapshot_into(self, light(t0), &mut snaps[0]);
            for t in t0..t1 {
                st.tick(self, t)?;
                st.snapshot_into(self, light(t + 1), &mut snaps[t + 1 - t0]);
            }
            for t in (t0..t1).rev() {
                let j = t - t0 + 1;
                let (before, after) = (&snaps[j - 1], &snaps[j]);
                st.load_stages(
                    self,
                    SaveAt {
                        t_next: t,
                        full: false,
                    },
                    &before.stages,
                );
                for (b, g) in &g_trace {
                    let w = lam_cur[*b].len();
                    for (l, x) in lam_cur[*b].iter_mut().zip(&g[t * w..(t + 1) * w]) {
                        *l += x;
                    }
                }
                for p in st.plans.iter().rev() {
                    let ins: Vec<&[f64]> = p
                        .ins
                        .iter()
                        .map(|&(b, d)| {
                            if d {
                                &before.buffers[b][..]
                            } else {
                                &after.buffers[b][..]
                            }
                        })
                        .collect();
                    let outs_prev: Vec<&[f64]> =
                        p.outs.iter().map(|&b| &before.buffers[b][..]).collect();
                    let outs: Vec<&[f64]> = p.outs.iter().map(|&b| &after.buffers[b][..]).collect();
                    let g_outs_v: Vec<Vec<f64>> = p
                        .outs
                        .iter()
                        .map(|&b| std::mem::take(&mut lam_cur[b]))
                        .collect();
                    let mut g_ins: Vec<Vec<f64>> = p
                        .ins
                        .iter()
                        .map(|&(b, d)| {
                            std::mem::take(if d { &mut lam_prev[b] } else { &mut lam_cur[b] })
                        })
                        .collect();
                    let mut g_outs_prev: Vec<Vec<f64>> = p
                        .outs
                        .iter()
                        .map(|&b| std::mem::take(&mut lam_prev[b]))
                        .collect();
                    let res = {
                        let g_outs: Vec<&[f64]> = g_outs_v.iter().map(|v| &v[..]).collect();
                        let io = VjpIo {
                            ins: &ins,
                            outs_prev: &outs_prev,
                            outs: &outs,
                            g_outs: &g_outs,
                            g_ins: &mut g_ins,
                            g_outs_prev: &mut g_outs_prev,
                        };
                        self.stages[p.stage]
                            .host()
                            .expect("checked")
                            .host_vjp(&st.cx, io, t)
                    };
                    for (&(b, d), v) in p.ins.iter().zip(g_ins) {
                        if d {
                            lam_prev[b] = v;
                        } else {
                            lam_cur[b] = v;
                        }
                    }
                    for (&b, v) in p.outs.iter().zip(g_outs_prev) {
                        lam_prev[b] = v;
                    }
                    for (&b, mut v) in p.outs.iter().zip(g_outs_v) {
                        v.fill(0.0); // consumed by the writer
                        lam_cur[b] = v;
                    }
                    res?;
                }
                std::mem::swap(&mut lam_cur, &mut lam_prev);
                for v in &mut lam_prev {
                    v.fill(0.0);
                }
            }
        }
        let mut grads = BTreeMap::new();
        for p in &st.plans {
            let name = self.stages[p.stage].name().to_string();
            for (param, g) in self.stages[p.stage].host().expect("checked").param_grads() {
                grads.insert(format!("{name}.{param}"), g);
            }
        }
        Ok(StreamGradient { rollout, grads })
    }
}
