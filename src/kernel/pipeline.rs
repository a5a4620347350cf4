//! The stream path's forward on two threads: a two-stage pipeline over the graph.
//!
//! The stages (in graph order) are cut in two: the calling thread steps the early ones for tick
//! `t` and sends the buffers the late ones read (the *crossing* buffers, e.g. the synaptic
//! conductance) to a worker thread, which steps the late ones for tick `t` while the early ones
//! go on with tick `t + 1`. A cut is valid when no early stage reads a buffer a late stage
//! writes and no late stage reads an early buffer with a one-tick delay — so an open loop (drive →
//! inputs → synapses → pool → force) can be cut anywhere, and a closed loop only before its loop
//! (its feedback edge crosses every cut inside it).
//!
//! The cut balances the stages' measured times over the first ticks, which run on one thread.
//! Every stage runs the same arithmetic in the same order as on one thread, so the results are
//! bit-identical whatever the thread count (tested).

use std::sync::mpsc;

use super::simulation::Simulation;
use super::stream::{Plan, Recorder, Streamer, begin_tick, step_plan};
use crate::error::{Error, Result};

/// Where to cut the stages (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cut {
    /// Plans `[0, at)` run on the calling thread, `[at, len)` on the worker.
    pub(super) at: usize,
    /// Buffers written before the cut and read after it, sent every tick.
    pub(super) crossing: Vec<usize>,
    /// Per buffer: written after the cut.
    pub(super) late: Vec<bool>,
}

/// The pipeline pays off only when its longer side is at most this fraction of the whole.
const WORTH_IT: f64 = 0.85;

/// The cut before plan `at` (`0 < at < plans.len()`), if valid (see the module docs).
pub(super) fn cut_at(plans: &[Plan], n_buffers: usize, at: usize) -> Option<Cut> {
    if at == 0 || at >= plans.len() {
        return None;
    }
    let mut late = vec![false; n_buffers];
    let mut early = vec![false; n_buffers];
    for p in &plans[at..] {
        p.outs.iter().for_each(|&k| late[k] = true);
    }
    for p in &plans[..at] {
        p.outs.iter().for_each(|&k| early[k] = true);
    }
    let early_reads_late = plans[..at]
        .iter()
        .any(|p| p.ins.iter().any(|&(k, _)| late[k]));
    let late_reads_early_delayed = plans[at..]
        .iter()
        .any(|p| p.ins.iter().any(|&(k, d)| d && early[k]));
    if early_reads_late || late_reads_early_delayed {
        return None;
    }
    let mut crossing: Vec<usize> = plans[at..]
        .iter()
        .flat_map(|p| p.ins.iter().map(|&(k, _)| k))
        .filter(|&k| early[k])
        .collect();
    crossing.sort_unstable();
    crossing.dedup();
    Some(Cut { at, crossing, late })
}

/// The valid cut whose longer side takes the least of the measured times `wall` (one per plan),
/// if that side is at most [`WORTH_IT`] of the total; `None` otherwise (or if no cut is valid).
pub(super) fn choose_cut(plans: &[Plan], n_buffers: usize, wall: &[f64]) -> Option<Cut> {
    let total: f64 = wall.iter().sum();
    let mut best: Option<(f64, Cut)> = None;
    for at in 1..plans.len() {
        let Some(cut) = cut_at(plans, n_buffers, at) else {
            continue;
        };
        let first: f64 = wall[..at].iter().sum();
        let longer = first.max(total - first);
        if best.as_ref().is_none_or(|(m, _)| longer < *m) {
            best = Some((longer, cut));
        }
    }
    best.filter(|(longer, _)| *longer <= WORTH_IT * total)
        .map(|(_, cut)| cut)
}

/// Ticks sent to the worker in one message (one wake-up per message, not per tick).
const TICKS_PER_MESSAGE: usize = 32;
/// Messages the worker may lag behind (bounded memory: `LAG · TICKS_PER_MESSAGE` ticks of the
/// crossing buffers).
const LAG: usize = 4;

impl Streamer {
    /// Runs ticks `t0..n_steps` as a two-thread pipeline cut at `cut`, recording into `rec`
    /// (returned). The late half's buffers live in the worker's copy: afterwards `self.cur`
    /// holds the early half's final values only.
    pub(super) fn run_pipelined(
        &mut self,
        sim: &mut Simulation,
        rec: Recorder,
        t0: usize,
        cut: &Cut,
    ) -> Result<Recorder> {
        let n_steps = sim.n_steps;
        let (mut rec_early, mut rec_late) = rec.split(&cut.late);
        // the worker's own copy of the buffers and of its plans' stages
        let mut cur_w = self.cur.clone();
        let mut prev_w = self.prev.clone();
        let delayed_w: Vec<usize> = self
            .delayed
            .iter()
            .copied()
            .filter(|&k| cut.late[k])
            .collect();
        let delayed_e: Vec<usize> = self
            .delayed
            .iter()
            .copied()
            .filter(|&k| !cut.late[k])
            .collect();
        let mut slots: Vec<Option<&mut Box<dyn super::Stage>>> =
            sim.stages.iter_mut().map(Some).collect();
        let mut take = |p: &Plan| {
            slots[p.stage]
                .take()
                .and_then(|s| s.host())
                .expect("each plan has its own stage, with a host step")
        };
        let mut early: Vec<_> = self.plans[..cut.at].iter().map(&mut take).collect();
        let mut late: Vec<_> = self.plans[cut.at..].iter().map(&mut take).collect();
        let (plans_e, plans_l) = self.plans.split_at(cut.at);
        let (wall_e, wall_l) = self.wall.split_at_mut(cut.at);
        let (cx, inputs, crossing) = (&self.cx, &self.inputs, &cut.crossing);
        let (cur, prev) = (&mut self.cur, &mut self.prev);
        let (res_e, res_l) = std::thread::scope(|scope| {
            // a message: the number of ticks it covers and their crossing values
            let (tx, rx) = mpsc::sync_channel::<(usize, Vec<f64>)>(LAG);
            let (back_tx, back_rx) = mpsc::channel::<Vec<f64>>();
            let worker = scope.spawn(move || -> Result<Option<Recorder>> {
                let mut t = t0;
                while t < n_steps {
                    // the early side stopped (its error is reported) when the channel closes
                    let Ok((ticks, msg)) = rx.recv() else {
                        return Ok(None);
                    };
                    let mut off = 0;
                    for _ in 0..ticks {
                        for &k in crossing {
                            let w = cur_w[k].len();
                            cur_w[k].copy_from_slice(&msg[off..off + w]);
                            off += w;
                        }
                        begin_tick(&mut cur_w, &mut prev_w, &delayed_w, inputs, t);
                        for ((p, stage), wall) in
                            plans_l.iter().zip(&mut late).zip(wall_l.iter_mut())
                        {
                            let c0 = std::time::Instant::now();
                            step_plan(&mut **stage, p, cx, &mut cur_w, &prev_w, t)?;
                            *wall += c0.elapsed().as_secs_f64();
                        }
                        rec_late.push(&cur_w)?;
                        t += 1;
                    }
                    let _ = back_tx.send(msg);
                }
                Ok(Some(rec_late))
            });
            let res_e = (|| -> Result<()> {
                let mut msg = Vec::new();
                let mut ticks = 0;
                for t in t0..n_steps {
                    begin_tick(cur, prev, &delayed_e, inputs, t);
                    for ((p, stage), wall) in plans_e.iter().zip(&mut early).zip(wall_e.iter_mut())
                    {
                        let c0 = std::time::Instant::now();
                        step_plan(&mut **stage, p, cx, cur, prev, t)?;
                        *wall += c0.elapsed().as_secs_f64();
                    }
                    for &k in crossing {
                        msg.extend_from_slice(&cur[k]);
                    }
                    rec_early.push(cur)?;
                    ticks += 1;
                    if ticks == TICKS_PER_MESSAGE || t + 1 == n_steps {
                        let next = back_rx.try_recv().unwrap_or_default();
                        if tx.send((ticks, std::mem::replace(&mut msg, next))).is_err() {
                            break; // the worker stopped on an error, reported below
                        }
                        msg.clear();
                        ticks = 0;
                    }
                }
                Ok(())
            })();
            drop(tx);
            let res_l = worker.join().unwrap_or_else(|_| {
                Err(Error::config("threads", "the pipeline's worker panicked"))
            });
            (res_e, res_l)
        });
        res_e?;
        match res_l? {
            Some(rec_late) => Ok(rec_early.join(rec_late)),
            None => Err(Error::config(
                "threads",
                "the pipeline's worker stopped early without an error",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Error;
    use crate::afferent::AfferentKind;
    use crate::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams, Pathway};
    use crate::drive::rate::DriveParams;
    use crate::kernel::{Ctx, ExecPath, Rollout, Simulation, to_vec_f64};
    use crate::network::{self, MuscleParams, NetworkConfig};
    use crate::neuron::spike::SpikeMode;

    /// The open-loop network, two rows, hard spikes, 1,000 steps (the first 200 on one thread).
    fn open_loop(ctx: &Ctx) -> Simulation {
        let cfg = NetworkConfig {
            n_mn: 60,
            duration_s: 0.1,
            spike_mode: SpikeMode::Hard,
            ..Default::default()
        };
        let muscle = MuscleParams::from_config(&cfg, ctx).unwrap();
        let mut drive = DriveParams::watanabe_oscillating(ctx, 40.0);
        drive.dc_hz = ctx.tensor(vec![60.0, 80.0], [2, 1]);
        let w = ctx.tensor(vec![5e-8, 6e-8], [2, 1]);
        network::build(&cfg, ctx, 2, drive, w, &muscle).unwrap()
    }

    fn run(mut sim: Simulation, threads: usize, cut: Option<usize>) -> crate::Result<Rollout> {
        sim.threads(threads)?;
        sim.pipeline_cut = cut;
        sim.run_path(ExecPath::Stream)
    }

    fn same(a: &Rollout, b: &Rollout) {
        assert_eq!(a.recorded(), b.recorded());
        assert_eq!(a.events, b.events, "event traces differ");
        for name in a.recorded() {
            let (x, y) = (
                to_vec_f64(a.trace(&name).unwrap()),
                to_vec_f64(b.trace(&name).unwrap()),
            );
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "trace `{name}` differs"
            );
        }
    }

    #[test]
    fn pipelined_forward_is_bit_identical_at_every_cut() {
        for ctx in [Ctx::cpu().f64(), Ctx::cpu()] {
            let one = run(open_loop(&ctx), 1, None).unwrap();
            assert!(
                one.events.get("spikes").is_some_and(|e| e.len() > 50),
                "the pool fires and its spikes are recorded as events"
            );
            let n_stages = one.stage_wall_s.len();
            assert!(n_stages >= 4);
            // the open loop is a chain: every cut is valid
            for at in 1..n_stages {
                let two = run(open_loop(&ctx), 2, Some(at)).unwrap();
                same(&one, &two);
            }
            // the measured choice (pipelined or not) gives the same result too
            same(&one, &run(open_loop(&ctx), 2, None).unwrap());
        }
    }

    #[test]
    fn closed_loop_cuts_only_before_the_loop_and_thread_count_zero_is_refused() {
        let ctx = Ctx::cpu().f64();
        let mut cfg = ClosedLoopConfig {
            n_mn: 20,
            duration_s: 0.05,
            ia: Some(Pathway::myogen(AfferentKind::Ia)),
            ..Default::default()
        };
        cfg.ia.as_mut().unwrap().pool.n = 10;
        let params = ClosedLoopParams::myogen(&ctx, 40.0, 50.0);
        let sim = || closed_loop::build(&cfg, &ctx, 1, &params).unwrap();
        let one = run(sim(), 1, None).unwrap();
        let n_stages = one.stage_wall_s.len();
        let (mut valid, mut refused) = (0, 0);
        for at in 1..n_stages {
            match run(sim(), 2, Some(at)) {
                // before the loop (the drive, the generators): pipelined, same result
                Ok(two) => {
                    same(&one, &two);
                    valid += 1;
                }
                // inside the loop: the feedback edge crosses the cut
                Err(Error::InvalidParameter { field, .. }) => {
                    assert_eq!(field, "pipeline_cut");
                    refused += 1;
                }
                Err(e) => panic!("cut {at}: {e}"),
            }
        }
        assert!(
            valid >= 1 && refused >= 3,
            "{valid} valid, {refused} refused"
        );
        match open_loop(&ctx).threads(0) {
            Err(Error::InvalidParameter { field, .. }) => assert_eq!(field, "threads"),
            other => panic!("threads(0): expected a typed error, got {:?}", other.err()),
        }
    }
}
