//! Contract tests of the lockstep kernel with toy stages only (no physiology).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::kernel::*;

/// Writes `out = t + offset` (per batch element b: + b*1000) each tick.
struct Clock {
    name: String,
    out: String,
    offset: f64,
}
impl Stage for Clock {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![],
            writes: vec![BufferSpec::new(&self.out, &[1], "1")],
        }
    }
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> myodiff::Result<()> {
        let b = io.batch();
        let v: Vec<f64> = (0..b)
            .map(|k| t as f64 + self.offset + 1000.0 * k as f64)
            .collect();
        let x = io.ctx().tensor(v, [b, 1]);
        io.write(&self.out, x)
    }
}

/// `out = input * gain + add`, reading `input` delayed or not.
struct Affine {
    name: String,
    input: String,
    out: String,
    delayed: bool,
    gain: f64,
    add: f64,
    log: Option<Arc<Mutex<Vec<String>>>>,
}
impl Affine {
    fn new(name: &str, input: &str, out: &str, delayed: bool) -> Self {
        Self {
            name: name.into(),
            input: input.into(),
            out: out.into(),
            delayed,
            gain: 1.0,
            add: 0.0,
            log: None,
        }
    }
}
impl Stage for Affine {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![if self.delayed {
                ReadSpec::delayed(&self.input)
            } else {
                ReadSpec::now(&self.input)
            }],
            writes: vec![BufferSpec::new(&self.out, &[1], "1")],
        }
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> myodiff::Result<()> {
        if let Some(l) = &self.log {
            l.lock().unwrap().push(self.name.clone());
        }
        let x = io.read(&self.input)?;
        io.write(&self.out, x * self.gain + self.add)
    }
}

/// Accumulates its input into its own state: `acc(t) = acc(t-1) + x(t)`; initial value `init`.
struct Accumulator {
    input: String,
    init: f64,
}
impl Stage for Accumulator {
    fn name(&self) -> &str {
        "acc"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::now(&self.input)],
            writes: vec![BufferSpec::new("acc", &[1], "1")],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> myodiff::Result<()> {
        let b = io.batch();
        let v = io.ctx().full([b, 1], self.init);
        io.write("acc", v)
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> myodiff::Result<()> {
        let prev = io.read("acc")?;
        let x = io.read(&self.input)?;
        io.write("acc", prev + x)
    }
}

/// A stage that misbehaves in a configurable way.
enum Misbehave {
    ReadUndeclared,
    WriteUndeclared,
    WrongShape,
    WriteNan,
}
struct Bad(Misbehave);
impl Stage for Bad {
    fn name(&self) -> &str {
        "bad"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![],
            writes: vec![BufferSpec::new("bad_out", &[2], "1")],
        }
    }
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> myodiff::Result<()> {
        let b = io.batch();
        match self.0 {
            Misbehave::ReadUndeclared => io.read("secret").map(|_| ()),
            Misbehave::WriteUndeclared => io.write("other", io.ctx().zeros([b, 2])),
            Misbehave::WrongShape => io.write("bad_out", io.ctx().zeros([b, 3])),
            Misbehave::WriteNan => {
                let v = if t == 3 { f64::NAN } else { 0.0 };
                let x = io.ctx().tensor(
                    (0..b * 2).map(|i| if i == 1 { v } else { 0.0 }).collect(),
                    [b, 2],
                );
                io.write("bad_out", x)
            }
        }
    }
}

fn sim(batch: usize, n: usize) -> Simulation {
    Simulation::new(Ctx::cpu().f64(), batch, 1e-3, n).unwrap()
}

fn trace(r: &Rollout, name: &str) -> Vec<f64> {
    to_vec_f64(r.trace(name).unwrap())
}

fn clock(out: &str) -> Clock {
    Clock {
        name: format!("clock_{out}"),
        out: out.into(),
        offset: 0.0,
    }
}

#[test]
fn stages_are_ordered_by_their_reads_not_by_insertion() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut s = sim(1, 2);
    let mut b = Affine::new("b", "x1", "x2", false);
    b.log = Some(log.clone());
    let mut a = Affine::new("a", "x0", "x1", false);
    a.log = Some(log.clone());
    s.add_stage(b)
        .add_stage(a)
        .add_stage(clock("x0"))
        .record(&["x2"]);
    let r = s.run().unwrap();
    assert_eq!(*log.lock().unwrap(), vec!["a", "b", "a", "b"]);
    // same-tick propagation: x2(t) = x0(t) = t
    assert_eq!(trace(&r, "x2"), vec![0.0, 1.0]);
}

#[test]
fn independent_stages_keep_insertion_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut s = sim(1, 1);
    s.add_stage(clock("x0"));
    for n in ["z", "y", "w"] {
        let mut st = Affine::new(n, "x0", &format!("o_{n}"), false);
        st.log = Some(log.clone());
        s.add_stage(st);
    }
    s.run().unwrap();
    assert_eq!(*log.lock().unwrap(), vec!["z", "y", "w"]);
}

#[test]
fn graph_reports_the_order() {
    let mut s = sim(1, 1);
    s.add_stage(Affine::new("b", "x1", "x2", false))
        .add_stage(Affine::new("a", "x0", "x1", false))
        .add_stage(clock("x0"));
    let (g, _) = s.graph().unwrap();
    assert_eq!(g.order, vec![2, 1, 0]);
}

#[test]
fn delayed_feedback_sees_the_previous_tick() {
    // fb(t) = x(t-1) (x(-1) = initial 0), x(t) = t: a later-written buffer read with delay.
    let mut s = sim(1, 4);
    s.add_stage(Affine::new("reader", "x", "fb", true))
        .add_stage(clock("x"))
        .record(&["fb", "x"]);
    let r = s.run().unwrap();
    assert_eq!(trace(&r, "x"), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(trace(&r, "fb"), vec![0.0, 0.0, 1.0, 2.0]);
}

#[test]
fn delayed_read_of_an_earlier_stage_also_sees_the_previous_tick() {
    let mut s = sim(1, 3);
    s.add_stage(clock("x"))
        .add_stage(Affine::new("reader", "x", "fb", true))
        .record(&["fb"]);
    let r = s.run().unwrap();
    assert_eq!(trace(&r, "fb"), vec![0.0, 0.0, 1.0]);
}

#[test]
fn closed_loop_with_a_declared_delay_runs() {
    // x(t) = fb_delayed + 1 ; y(t) = x(t) * 2 ; x reads y with one tick delay.
    let mut s = sim(1, 4);
    let mut a = Affine::new("a", "y", "x", true);
    a.add = 1.0;
    let mut b = Affine::new("b", "x", "y", false);
    b.gain = 2.0;
    s.add_stage(a).add_stage(b).record(&["x", "y"]);
    let r = s.run().unwrap();
    // y(-1)=0: x0=1,y0=2; x1=3,y1=6; x2=7,y2=14; x3=15
    assert_eq!(trace(&r, "x"), vec![1.0, 3.0, 7.0, 15.0]);
    assert_eq!(trace(&r, "y"), vec![2.0, 6.0, 14.0, 30.0]);
}

#[test]
fn undeclared_cycle_is_an_error_naming_the_stages() {
    let mut s = sim(1, 2);
    s.add_stage(Affine::new("a", "y", "x", false))
        .add_stage(Affine::new("b", "x", "y", false));
    match s.run() {
        Err(Error::Cycle { stages }) => {
            assert!(
                stages.contains(&"a".to_string()) && stages.contains(&"b".to_string()),
                "{stages:?}"
            );
        }
        other => panic!("expected a cycle error, got {:?}", other.err()),
    }
}

#[test]
fn three_stage_cycle_downstream_nodes_are_not_blamed() {
    let mut s = sim(1, 1);
    s.add_stage(Affine::new("a", "z", "x", false))
        .add_stage(Affine::new("b", "x", "y", false))
        .add_stage(Affine::new("c", "y", "z", false))
        .add_stage(Affine::new("tail", "z", "w", false));
    match s.run() {
        Err(Error::Cycle { stages }) => {
            assert!(!stages.contains(&"tail".to_string()), "{stages:?}");
            assert_eq!(stages.first(), stages.last());
            assert_eq!(stages.len(), 4, "{stages:?}");
        }
        other => panic!("expected a cycle error, got {:?}", other.err()),
    }
}

#[test]
fn reading_a_buffer_nobody_writes_is_an_error_naming_it() {
    let mut s = sim(1, 1);
    s.add_stage(Affine::new("a", "ghost", "x", false));
    match s.run() {
        Err(Error::MissingBuffer { stage, buffer }) => {
            assert_eq!((stage.as_str(), buffer.as_str()), ("a", "ghost"));
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn reading_an_undeclared_buffer_is_an_error() {
    let mut s = sim(1, 1);
    s.add_stage(Bad(Misbehave::ReadUndeclared));
    let e = s.run().err().unwrap();
    assert!(
        matches!(&e, Error::UndeclaredAccess { buffer, .. } if buffer == "secret"),
        "{e}"
    );
    assert!(e.to_string().contains("secret"));
}

#[test]
fn writing_an_undeclared_buffer_is_an_error() {
    let mut s = sim(1, 1);
    s.add_stage(Bad(Misbehave::WriteUndeclared));
    let e = s.run().err().unwrap();
    assert!(
        matches!(&e, Error::UndeclaredAccess { buffer, access, .. } if buffer == "other" && access == "writes")
    );
}

#[test]
fn writing_the_wrong_shape_is_an_error() {
    let mut s = sim(2, 1);
    s.add_stage(Bad(Misbehave::WrongShape));
    let e = s.run().err().unwrap();
    assert!(
        matches!(&e, Error::ShapeMismatch { field, .. } if field == "bad_out"),
        "{e}"
    );
}

#[test]
fn duplicate_buffer_is_an_error() {
    let mut s = sim(1, 1);
    s.add_stage(clock("x")).add_stage(Clock {
        name: "second".into(),
        out: "x".into(),
        offset: 0.0,
    });
    let e = s.run().err().unwrap();
    assert!(
        matches!(&e, Error::DuplicateBuffer { buffer, first, second } if buffer == "x" && first == "clock_x" && second == "second")
    );
}

#[test]
fn stage_own_state_persists_and_init_is_applied() {
    let mut s = sim(1, 3);
    s.add_stage(clock("x")).add_stage(Accumulator {
        input: "x".into(),
        init: 10.0,
    });
    s.record(&["acc"]);
    let r = s.run().unwrap();
    assert_eq!(trace(&r, "acc"), vec![10.0, 11.0, 13.0]);
}

#[test]
fn init_values_are_what_delayed_readers_see_at_tick_zero() {
    let mut s = sim(1, 2);
    s.add_stage(Affine::new("reader", "acc", "seen", true))
        .add_stage(clock("x"))
        .add_stage(Accumulator {
            input: "x".into(),
            init: 5.0,
        })
        .record(&["seen"]);
    let r = s.run().unwrap();
    assert_eq!(trace(&r, "seen"), vec![5.0, 5.0]);
}

#[test]
fn batch_axis_is_preserved() {
    let mut s = sim(3, 2);
    s.add_stage(clock("x"))
        .add_stage(Affine::new("a", "x", "y", false))
        .record(&["y"]);
    let r = s.run().unwrap();
    let y = r.trace("y").unwrap();
    assert_eq!(y.dims(), [2, 3, 1]);
    assert_eq!(
        to_vec_f64(y),
        vec![0.0, 1000.0, 2000.0, 1.0, 1001.0, 2001.0]
    );
}

#[test]
fn external_input_traces_are_fed_per_tick() {
    let ctx = Ctx::cpu().f64();
    let mut s = Simulation::new(ctx.clone(), 2, 1e-3, 3).unwrap();
    let input = ctx.tensor((0..6).map(|v| v as f64).collect(), [3, 2, 1]);
    s.add_input(BufferSpec::new("u", &[1], "1"), input).unwrap();
    let mut a = Affine::new("a", "u", "y", false);
    a.gain = 10.0;
    s.add_stage(a).record(&["y"]);
    let r = s.run().unwrap();
    assert_eq!(trace(&r, "y"), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
}

#[test]
fn input_trace_of_wrong_shape_is_an_error() {
    let ctx = Ctx::cpu().f64();
    let mut s = Simulation::new(ctx.clone(), 2, 1e-3, 3).unwrap();
    let e = s
        .add_input(BufferSpec::new("u", &[1], "1"), ctx.zeros([3, 1, 1]))
        .err()
        .unwrap();
    assert!(matches!(e, Error::ShapeMismatch { .. }));
}

#[test]
fn callbacks_run_after_all_stages_of_each_tick() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let mut s = sim(1, 3);
    s.add_stage(clock("x")).on_step(move |st, t| {
        let x = to_vec_f64(st.get("x").unwrap())[0];
        seen2.borrow_mut().push((t, x, st.t()));
        Ok(())
    });
    s.run().unwrap();
    assert_eq!(*seen.borrow(), vec![(0, 0.0, 0), (1, 1.0, 1), (2, 2.0, 2)]);
}

#[test]
fn callback_errors_stop_the_run() {
    let mut s = sim(1, 3);
    s.add_stage(clock("x")).on_step(|_, t| {
        if t == 1 {
            Err(Error::config("callback", "stop"))
        } else {
            Ok(())
        }
    });
    assert!(matches!(s.run(), Err(Error::Config { .. })));
}

#[test]
fn bad_construction_arguments_are_typed_errors() {
    for (b, dt, n, field) in [
        (0, 1e-3, 1, "batch"),
        (1, 0.0, 1, "dt_s"),
        (1, f64::NAN, 1, "dt_s"),
        (1, 1e-3, 0, "n_steps"),
    ] {
        match Simulation::new(Ctx::cpu(), b, dt, n) {
            Err(Error::InvalidParameter { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {:?}", other.err()),
        }
    }
    let mut s = sim(1, 1);
    assert!(matches!(s.run(), Err(Error::Config { .. })));
}

#[test]
fn non_finite_values_are_reported_with_step_batch_and_unit() {
    let mut s = sim(2, 5);
    s.add_stage(Bad(Misbehave::WriteNan)).record(&["bad_out"]);
    match s.run() {
        Err(Error::NonFinite {
            buffer,
            step,
            batch,
            unit,
        }) => {
            assert_eq!((buffer.as_str(), step, batch, unit), ("bad_out", 3, 0, 1));
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn fused_stagewise_path_equals_the_tape_path_on_a_feed_forward_graph() {
    let build = || {
        let mut s = sim(2, 5);
        let mut b = Affine::new("b", "x", "y", true);
        b.gain = 3.0;
        s.add_stage(clock("x"))
            .add_stage(b)
            .add_stage(Accumulator {
                input: "y".into(),
                init: 1.0,
            })
            .record(&["y", "acc"]);
        s
    };
    let tape = build().run_path(ExecPath::Tape).unwrap();
    let fused = build().run_path(ExecPath::Fused).unwrap();
    for name in ["y", "acc"] {
        assert_eq!(trace(&tape, name), trace(&fused, name), "{name}");
    }
}

#[test]
fn fused_path_rejects_feedback_and_callbacks() {
    let mut s = sim(1, 2);
    let mut a = Affine::new("a", "y", "x", true);
    a.add = 1.0;
    s.add_stage(a).add_stage(Affine::new("b", "x", "y", false));
    assert!(matches!(
        s.run_path(ExecPath::Fused),
        Err(Error::Config { .. })
    ));
    let mut s = sim(1, 2);
    s.add_stage(clock("x")).on_step(|_, _| Ok(()));
    assert!(matches!(
        s.run_path(ExecPath::Fused),
        Err(Error::Config { .. })
    ));
}

struct Doubler;
impl Readout for Doubler {
    fn name(&self) -> &str {
        "doubler"
    }
    fn reads(&self) -> Vec<String> {
        vec!["x".into()]
    }
    fn writes(&self) -> Vec<BufferSpec> {
        vec![BufferSpec::new(names::FORCE_N, &[1], "N")]
    }
    fn run(&self, traces: &Traces, _ctx: &Ctx, _dt_s: f64) -> myodiff::Result<Traces> {
        let x = traces["x"].clone();
        Ok([(names::FORCE_N.to_string(), x * 2.0)]
            .into_iter()
            .collect())
    }
}

#[test]
fn readouts_run_on_recorded_traces_after_the_rollout() {
    let mut s = sim(1, 3);
    s.add_stage(clock("x")).record(&["x"]).add_readout(Doubler);
    let r = s.run().unwrap();
    assert_eq!(trace(&r, names::FORCE_N), vec![0.0, 2.0, 4.0]);
    let res = r.result(0).unwrap();
    assert_eq!(res.force_n.unwrap().column(0).to_vec(), vec![0.0, 2.0, 4.0]);
}

#[test]
fn readout_of_an_unrecorded_trace_is_an_error() {
    let mut s = sim(1, 3);
    s.add_stage(clock("x")).add_readout(Doubler);
    assert!(matches!(s.run(), Err(Error::MissingBuffer { buffer, .. }) if buffer == "x"));
}

#[test]
fn only_requested_buffers_are_recorded() {
    let mut s = sim(1, 2);
    s.add_stage(clock("x"))
        .add_stage(Affine::new("a", "x", "y", false))
        .record(&["y"]);
    let r = s.run().unwrap();
    assert!(r.trace("y").is_ok());
    assert!(matches!(r.trace("x"), Err(Error::Config { .. })));
}

/// Writes spikes `[3]` (unit u fires at steps where (t + u) % 3 == 0) and EMG `[2, 2]`.
struct ToySpikes;
impl Stage for ToySpikes {
    fn name(&self) -> &str {
        "toy"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![],
            writes: vec![
                BufferSpec::new(names::SPIKES, &[3], "spike/step"),
                BufferSpec::new(names::SURFACE_EMG_V, &[2, 2], "V"),
            ],
        }
    }
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> myodiff::Result<()> {
        let b = io.batch();
        let s: Vec<f64> = (0..b * 3)
            .map(|i| {
                if (t + i % 3).is_multiple_of(3) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let sp = io.ctx().tensor(s, [b, 3]);
        io.write(names::SPIKES, sp)?;
        let e: Vec<f64> = (0..b * 4).map(|i| t as f64 + 0.1 * i as f64).collect();
        let em = io.ctx().tensor(e, [b, 4]);
        io.write(names::SURFACE_EMG_V, em)
    }
}

#[test]
fn result_extraction_spikes_emg_and_absent_force() {
    let mut s = Simulation::new(Ctx::cpu().f64(), 2, 0.5e-3, 6).unwrap();
    s.add_stage(ToySpikes);
    let r = s.run().unwrap();
    let res = r.result(1).unwrap();
    assert_eq!(res.n_units, 3);
    assert_eq!(res.dt_s, 0.5e-3);
    assert_eq!(res.t_start_s, 0.0);
    assert!(res.force_n.is_none());
    assert_eq!(res.spike_times_s[0], vec![0.0, 1.5e-3]);
    assert_eq!(res.spike_times_s[1], vec![1.0e-3, 2.5e-3]);
    assert_eq!(res.grid_shape, Some((2, 2)));
    let emg = res.surface_emg_v.unwrap();
    assert_eq!(emg.shape(), &[6, 2, 2]);
    assert!((emg[[2, 1, 0]] - (2.0 + 0.6)).abs() < 1e-12);
    assert!(matches!(r.result(2), Err(Error::InvalidParameter { .. })));
}

#[test]
fn result_with_nothing_recorded_has_no_optional_buffers() {
    let mut s = sim(1, 2);
    s.add_stage(clock("x"));
    let res = s.run().unwrap().result(0).unwrap();
    assert!(res.spike_times_s.is_empty() && res.force_n.is_none() && res.surface_emg_v.is_none());
    assert_eq!((res.n_units, res.grid_shape), (0, None));
}

/// `y(t) = a * y(t-1) + u(t)` with a differentiable parameter `a` `[batch, 1]`.
struct Leaky {
    a: Tensor<2>,
}
impl Stage for Leaky {
    fn name(&self) -> &str {
        "leaky"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::now("u")],
            writes: vec![BufferSpec::new("y", &[1], "1")],
        }
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> myodiff::Result<()> {
        let y = io.read("y")?;
        let u = io.read("u")?;
        io.write("y", y * self.a.clone() + u)
    }
}

#[test]
fn rollouts_are_differentiable_and_batched_parameters_get_their_own_gradients() {
    let ctx = Ctx::cpu().f64().autodiff();
    let n = 4;
    let a = ctx.tensor(vec![0.5, 0.9], [2, 1]).require_grad();
    let mut s = Simulation::new(ctx.clone(), 2, 1e-3, n).unwrap();
    s.add_input(BufferSpec::new("u", &[1], "1"), ctx.full([n, 2, 1], 1.0))
        .unwrap();
    s.add_stage(Leaky { a: a.clone() }).record(&["y"]);
    let r = s.run().unwrap();
    let loss = r.trace("y").unwrap().sum();
    let g = to_vec_f64(a.grad(&loss.backward()).unwrap());
    // sum_t y_t with y_t = sum_{k<=t} a^k  =>  d/da = sum_t sum_{k<=t} k a^{k-1}
    let expect = |a: f64| -> f64 {
        (0..n)
            .map(|t| {
                (1..=t)
                    .map(|k| k as f64 * a.powi(k as i32 - 1))
                    .sum::<f64>()
            })
            .sum()
    };
    assert!((g[0] - expect(0.5)).abs() < 1e-12, "{g:?}");
    assert!((g[1] - expect(0.9)).abs() < 1e-12, "{g:?}");
}

#[test]
fn a_stage_without_a_host_step_is_refused_by_the_stream_path_by_name() {
    let mut s = sim(1, 2);
    s.add_stage(Affine::new("a", "x0", "x1", false))
        .add_stage(clock("x0"))
        .record(&["x1"]);
    let err = s.run_path(ExecPath::Stream).err().expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("has no host step") && msg.contains("clock_x0") || msg.contains("`a`"),
        "{msg}"
    );
}
