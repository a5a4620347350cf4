//! [`ConductionDelay`]: a per-unit axonal conduction delay line (MODEL.md §5 step 3 and §5.4's
//! spike FIFO), as a kernel [`Stage`].
//!
//! With per-unit delays `d_i = max(1, round(delay_s_i / dt))` steps, the output of step `t` is
//! `out_i[t] = in_i[t − d_i]` (0 for `t < d_i`): a spike emitted at step t arrives exactly `d_i`
//! steps later, as MyoGen's shift-left / write-at-slot-`d_i − 1` / read-slot-0 FIFO does. The
//! values pass through unchanged (0/1 spikes, or expected counts in rate mode), so the gradient
//! of the output with respect to the input is the same delay.

use std::collections::{BTreeMap, VecDeque};

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::kernel::DelayLine;
use crate::kernel::{
    BufferSpec, HostCx, HostStage, ReadSpec, SaveAt, Stage, StageDecl, StageIo, VjpIo,
};

/// The delay line stage: reads `input` `[n]` (same tick), writes `output` `[n]`.
pub struct ConductionDelay {
    name: String,
    input: String,
    output: String,
    units: String,
    delays_s: Vec<f64>,
    /// `(d, mask [1, n])` for each distinct delay d (steps), built at `init`.
    masks: Vec<(usize, Tensor<2>)>,
    /// `hist[k]` = input of step `t − 1 − k`.
    hist: VecDeque<Tensor<2>>,
    /// Streaming path: delays in steps and the delay line (with its pending adjoints).
    host_delays: Vec<usize>,
    host_line: DelayLine,
}

impl ConductionDelay {
    /// A delay line named `name` from `input` to `output` (units `units`, e.g. `spike/step`) with
    /// per-unit delays `delays_s` (s). Errors: no units, or a delay that is negative or not
    /// finite ([`Error::InvalidParameter`] naming `<name>.delays_s[i]`).
    pub fn new(
        name: impl Into<String>,
        input: impl Into<String>,
        output: impl Into<String>,
        units: impl Into<String>,
        delays_s: Vec<f64>,
    ) -> Result<Self> {
        let name = name.into();
        crate::error::check::count_at_least(&format!("{name}.n_units"), delays_s.len(), 1)?;
        for (i, d) in delays_s.iter().enumerate() {
            if !(d.is_finite() && *d >= 0.0) {
                return Err(Error::invalid(
                    format!("{name}.delays_s[{i}]"),
                    d,
                    "a finite delay >= 0 (s)",
                ));
            }
        }
        Ok(Self {
            name,
            input: input.into(),
            output: output.into(),
            units: units.into(),
            delays_s,
            masks: Vec::new(),
            hist: VecDeque::new(),
            host_delays: Vec::new(),
            host_line: DelayLine::default(),
        })
    }

    /// The delays in whole steps for time step `dt_s`: `max(1, round(delay/dt))`.
    pub fn delay_steps(&self, dt_s: f64) -> Vec<usize> {
        self.delays_s
            .iter()
            .map(|d| ((d / dt_s).round() as usize).max(1))
            .collect()
    }

    fn max_delay(&self) -> usize {
        self.masks.iter().map(|(d, _)| *d).max().unwrap_or(1)
    }
}

impl Stage for ConductionDelay {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        let n = self.delays_s.len();
        StageDecl {
            reads: vec![ReadSpec::now(self.input.clone())],
            writes: vec![BufferSpec::new(
                self.output.clone(),
                &[n],
                self.units.clone(),
            )],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let n = self.delays_s.len();
        let mut by_delay: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for (i, d) in self.delay_steps(io.dt_s()).into_iter().enumerate() {
            by_delay.entry(d).or_insert_with(|| vec![0.0; n])[i] = 1.0;
        }
        let ctx = io.ctx().clone();
        self.masks = by_delay
            .into_iter()
            .map(|(d, m)| (d, ctx.tensor(m, [1, n])))
            .collect();
        self.hist.clear();
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let x = io.read(&self.input)?;
        let n = self.delays_s.len();
        let [b, w] = x.dims();
        if w != n {
            return Err(Error::shape(
                format!("{}.{}", self.name, self.input),
                format!("[{b}, {n}]"),
                format!("{:?}", x.dims()),
            ));
        }
        let mut out = io.ctx().zeros([b, n]);
        for (d, mask) in &self.masks {
            if let Some(h) = self.hist.get(d - 1) {
                out = out + h.clone() * mask.clone();
            }
        }
        self.hist.push_front(x);
        self.hist.truncate(self.max_delay());
        io.write(&self.output, out)
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for ConductionDelay {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        self.host_delays = self.delay_steps(cx.dt_s);
        let maxd = self.host_delays.iter().copied().max().unwrap_or(1);
        self.host_line = DelayLine::new(cx.batch * self.delays_s.len(), maxd);
        Ok(())
    }
    /// `out_i[t] = in_i[t − d_i]` (0 for `t < d_i`).
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let n = self.delays_s.len();
        let x = ins[0];
        if x.len() != cx.batch * n {
            return Err(Error::shape(
                format!("{}.{}", self.name, self.input),
                format!("[{}, {n}]", cx.batch),
                format!("{} values", x.len()),
            ));
        }
        let line = &mut self.host_line;
        line.push(t, x);
        let base = line.base(t);
        for b in 0..cx.batch {
            for (i, &d) in self.host_delays.iter().enumerate() {
                outs[0][b * n + i] = line.get_from(t, base, d, b * n + i);
            }
        }
        Ok(())
    }
    fn host_save(&self, at: SaveAt, into: &mut Vec<f64>) {
        self.host_line.save(at, into);
    }
    fn host_load(&mut self, at: SaveAt, from: &[f64]) {
        self.host_line.load(at, from);
    }
    fn adjoint_init(&mut self, _cx: &HostCx, segment: usize) -> Result<()> {
        self.host_line.lengthen(segment);
        Ok(())
    }
    /// `λ_in_i[t − d_i] += λ_out_i[t]`, delivered when the sweep reaches tick `t − d_i`.
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, t: usize) -> Result<()> {
        let VjpIo { g_outs, g_ins, .. } = io;
        let n = self.delays_s.len();
        for b in 0..cx.batch {
            for (i, &d) in self.host_delays.iter().enumerate() {
                let k = b * n + i;
                self.host_line.add_adjoint(t, d, k, g_outs[0][k]);
            }
        }
        self.host_line.take_adjoint(t, &mut g_ins[0]);
        Ok(())
    }
}
