//! [`EventTrace`]: a recorded `[n_steps, batch, width]` trace whose values are all 0 or 1 (hard
//! spikes), kept as the list of its ones — (step, element) pairs in step order — instead of the
//! dense array. At the Watanabe size (800 units, 50,000 steps) a dense `f32` spike trace is
//! 160 MB per batch row; its events, at 20 Hz per unit, are 6.4 MB.
//!
//! The stream path records every recorded buffer this way while its values stay binary
//! (`EventRecorder`) and switches that buffer to a dense record at the first other value.
//! [`crate::kernel::Rollout::trace`] builds the dense tensor on request.

use burn::tensor::Tensor;

use super::ctx::{Ctx, Precision};

/// The ones of a binary trace `[n_steps, batch, width]` (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct EventTrace {
    /// Number of steps.
    pub n_steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Values per batch row.
    pub width: usize,
    /// Step of each event, non-decreasing.
    pub steps: Vec<u32>,
    /// Flat element `b·width + j` of each event.
    pub elements: Vec<u32>,
}

impl EventTrace {
    /// An empty trace of the given shape.
    pub fn new(n_steps: usize, batch: usize, width: usize) -> Self {
        Self {
            n_steps,
            batch,
            width,
            steps: Vec::new(),
            elements: Vec::new(),
        }
    }

    /// Number of events (ones).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the trace has no ones.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The dense trace, step-major `[n_steps·batch·width]`, as `f64`.
    pub fn dense_f64(&self) -> Vec<f64> {
        let row = self.batch * self.width;
        let mut v = vec![0.0; self.n_steps * row];
        for (&t, &k) in self.steps.iter().zip(&self.elements) {
            v[t as usize * row + k as usize] = 1.0;
        }
        v
    }

    /// The dense tensor `[n_steps, batch, width]` in `ctx`'s precision.
    pub fn dense(&self, ctx: &Ctx) -> Tensor<3> {
        let shape = [self.n_steps, self.batch, self.width];
        if ctx.precision == Precision::F32 {
            let row = self.batch * self.width;
            let mut v = vec![0.0f32; self.n_steps * row];
            for (&t, &k) in self.steps.iter().zip(&self.elements) {
                v[t as usize * row + k as usize] = 1.0;
            }
            ctx.tensor_f32(v, shape)
        } else {
            ctx.tensor(self.dense_f64(), shape)
        }
    }

    /// Event times (s) of batch row `b`, one list per element `j < width`: `t_start_s +
    /// step·dt_s`. Rows past the batch give empty lists.
    pub fn times_s(&self, b: usize, dt_s: f64, t_start_s: f64) -> Vec<Vec<f64>> {
        let mut out = vec![Vec::new(); self.width];
        if b >= self.batch {
            return out;
        }
        let lo = (b * self.width) as u32;
        let hi = lo + self.width as u32;
        for (&t, &k) in self.steps.iter().zip(&self.elements) {
            if (lo..hi).contains(&k) {
                out[(k - lo) as usize].push(t_start_s + t as f64 * dt_s);
            }
        }
        out
    }
}

/// One recorded buffer of the stream path: events while its values are binary, dense after.
pub(super) enum EventRecorder {
    /// Every value so far was 0 or 1.
    Events(EventTrace),
    /// Dense, step-major, in `f64` or `f32` (the context's precision).
    Dense64(Vec<f64>),
    /// As `Dense64`, in `f32`.
    Dense32(Vec<f32>),
}

impl EventRecorder {
    /// Bytes held (allocated capacity).
    pub(super) fn bytes(&self) -> usize {
        match self {
            EventRecorder::Events(e) => 4 * (e.steps.capacity() + e.elements.capacity()),
            EventRecorder::Dense64(v) => 8 * v.capacity(),
            EventRecorder::Dense32(v) => 4 * v.capacity(),
        }
    }

    /// Appends tick `t`'s values `x` (`batch·width`); `f32` selects the dense precision should
    /// the buffer turn out not to be binary. `capacity` = the dense length, for the switch.
    pub(super) fn push(&mut self, t: usize, x: &[f64], f32: bool, capacity: usize) {
        match self {
            EventRecorder::Events(ev) => {
                let before = ev.len();
                let mut binary = true;
                for (k, &v) in x.iter().enumerate() {
                    if v != 0.0 {
                        if v != 1.0 {
                            binary = false;
                            break;
                        }
                        ev.steps.push(t as u32);
                        ev.elements.push(k as u32);
                    }
                }
                if binary {
                    return;
                }
                // not binary: replay the events before this tick into a dense record and go on
                // densely
                ev.steps.truncate(before);
                ev.elements.truncate(before);
                let mut d = ev.dense_f64();
                d.truncate(t * x.len());
                *self = if f32 {
                    let mut v: Vec<f32> = Vec::with_capacity(capacity);
                    v.extend(d.iter().map(|&y| y as f32));
                    EventRecorder::Dense32(v)
                } else {
                    d.reserve(capacity.saturating_sub(d.len()));
                    EventRecorder::Dense64(d)
                };
                self.push(t, x, f32, capacity);
            }
            EventRecorder::Dense64(v) => v.extend_from_slice(x),
            EventRecorder::Dense32(v) => v.extend(x.iter().map(|&y| y as f32)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_switch_to_dense() {
        let mut ev = EventTrace::new(3, 2, 2);
        ev.steps = vec![0, 2, 2];
        ev.elements = vec![3, 0, 2];
        let d = ev.dense_f64();
        assert_eq!(d, vec![0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 1., 0.]);
        assert_eq!(ev.times_s(1, 0.5, 0.0), vec![vec![1.0], vec![0.0]]);
        assert_eq!(ev.times_s(0, 0.5, 0.0), vec![vec![1.0], vec![]]);

        let mut r = EventRecorder::Events(EventTrace::new(3, 1, 2));
        r.push(0, &[0.0, 1.0], false, 6);
        assert!(matches!(&r, EventRecorder::Events(e) if e.len() == 1));
        r.push(1, &[0.5, 0.0], false, 6);
        r.push(2, &[1.0, 1.0], false, 6);
        match r {
            EventRecorder::Dense64(v) => assert_eq!(v, vec![0., 1., 0.5, 0., 1., 1.]),
            _ => panic!("expected a dense record after a non-binary value"),
        }
    }
}
