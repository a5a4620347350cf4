//! [`DelayLine`]: the host delay line of the stream path ([`super::host`]) — the last inputs of a
//! stage, `width` values per tick, read back `d` ticks later (`0 ≤ d ≤ depth`), with the matching
//! reverse: adjoints of past inputs held until the reverse sweep reaches their tick.
//!
//! Slot `τ mod len` holds the input of tick `τ`. [`DelayLine::push`] stores tick `t`'s input
//! first, so [`DelayLine::get`] with `d = 0` reads it; the line has `depth + 1` slots, lengthened
//! by one segment for a reverse sweep ([`DelayLine::lengthen`]) so that recomputing a segment never
//! overwrites an input the sweep of that segment still reads.

use super::host::SaveAt;

/// A delay line of `width` values per tick and its pending adjoints (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DelayLine {
    width: usize,
    depth: usize,
    len: usize,
    ring: Vec<f64>,
    pending: Vec<f64>,
}

impl DelayLine {
    /// A line for delays up to `depth` ticks of `width` values each, all zero.
    pub fn new(width: usize, depth: usize) -> Self {
        Self {
            width,
            depth,
            len: depth + 1,
            ring: vec![0.0; (depth + 1) * width],
            pending: Vec::new(),
        }
    }

    /// The largest delay (ticks).
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn len(&self) -> usize {
        self.len
    }

    /// `t mod len`, for [`DelayLine::get_from`] (one division per tick instead of per element).
    #[inline]
    pub fn base(&self, t: usize) -> usize {
        t % self.len
    }

    /// [`DelayLine::get`] given `base = self.base(t)`.
    #[inline(always)]
    pub fn get_from(&self, t: usize, base: usize, d: usize, k: usize) -> f64 {
        if t < d {
            return 0.0;
        }
        let s = if base >= d {
            base - d
        } else {
            base + self.len - d
        };
        self.ring[s * self.width + k]
    }

    /// `out[i] = get(t, delays[i], offset + i)` for every `i` (one row of per-element delays),
    /// given `base = self.base(t)`.
    #[inline]
    pub fn gather(&self, t: usize, base: usize, delays: &[usize], offset: usize, out: &mut [f64]) {
        let (len, width, ring) = (self.len, self.width, &self.ring[..]);
        for ((o, &d), k) in out.iter_mut().zip(delays).zip(offset..) {
            *o = if t < d {
                0.0
            } else {
                let s = if base >= d { base - d } else { base + len - d };
                ring[s * width + k]
            };
        }
    }

    /// Stores the input of tick `t` (`width` values).
    pub fn push(&mut self, t: usize, x: &[f64]) {
        let s = (t % self.len()) * self.width;
        self.ring[s..s + self.width].copy_from_slice(x);
    }

    /// The input of tick `t − d` (after [`DelayLine::push`] of tick `t`); `None` before tick 0.
    pub fn row(&self, t: usize, d: usize) -> Option<&[f64]> {
        if t < d {
            return None;
        }
        let s = ((t - d) % self.len()) * self.width;
        Some(&self.ring[s..s + self.width])
    }

    /// Element `k` of the input of tick `t − d` (0 before tick 0).
    #[inline]
    pub fn get(&self, t: usize, d: usize, k: usize) -> f64 {
        if t < d {
            0.0
        } else {
            self.ring[((t - d) % self.len()) * self.width + k]
        }
    }

    /// For a reverse sweep in segments of `segment` ticks: lengthens the line by `segment` slots
    /// (zeroed) and allocates the pending adjoints.
    pub fn lengthen(&mut self, segment: usize) {
        self.len = self.depth + 1 + segment;
        self.ring = vec![0.0; self.len * self.width];
        self.pending = vec![0.0; (self.depth + 1) * self.width];
    }

    /// Checkpoints (`at.full`) save the inputs of ticks `t_next − depth … t_next − 1` (zeros
    /// before tick 0); per-tick snapshots save nothing.
    pub fn save(&self, at: SaveAt, into: &mut Vec<f64>) {
        if !at.full {
            return;
        }
        for tau in at.t_next as i64 - self.depth as i64..at.t_next as i64 {
            if tau < 0 {
                into.extend(std::iter::repeat_n(0.0, self.width));
            } else {
                let s = (tau as usize % self.len()) * self.width;
                into.extend_from_slice(&self.ring[s..s + self.width]);
            }
        }
    }

    /// Restores what [`DelayLine::save`] saved with the same `at`; returns the values read.
    pub fn load(&mut self, at: SaveAt, from: &[f64]) -> usize {
        if !at.full {
            return 0;
        }
        let (w, len) = (self.width, self.len());
        for (k, tau) in (at.t_next as i64 - self.depth as i64..at.t_next as i64).enumerate() {
            if tau >= 0 {
                let s = (tau as usize % len) * w;
                self.ring[s..s + w].copy_from_slice(&from[k * w..(k + 1) * w]);
            }
        }
        self.depth * w
    }

    /// Adds `g` to the pending adjoint of element `k` of the input of tick `t − d` (dropped
    /// before tick 0).
    #[inline]
    pub fn add_adjoint(&mut self, t: usize, d: usize, k: usize, g: f64) {
        if t >= d {
            let len = self.depth + 1;
            self.pending[((t - d) % len) * self.width + k] += g;
        }
    }

    /// The pending adjoints of the input of tick `t − d`, to add into (`None` before tick 0).
    pub fn adjoint_row(&mut self, t: usize, d: usize) -> Option<&mut [f64]> {
        if t < d {
            return None;
        }
        let s = ((t - d) % (self.depth + 1)) * self.width;
        Some(&mut self.pending[s..s + self.width])
    }

    /// Adds the pending adjoints of tick `t`'s input into `g` and clears them.
    pub fn take_adjoint(&mut self, t: usize, g: &mut [f64]) {
        let s = (t % (self.depth + 1)) * self.width;
        for (g, p) in g.iter_mut().zip(&mut self.pending[s..s + self.width]) {
            *g += *p;
            *p = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_checkpoints_and_pending_adjoints() {
        let mut line = DelayLine::new(2, 3);
        for t in 0..6 {
            line.push(t, &[t as f64, 10.0 + t as f64]);
            assert_eq!(line.get(t, 0, 0), t as f64);
            assert_eq!(line.get(t, 3, 1), if t >= 3 { 7.0 + t as f64 } else { 0.0 });
        }
        // a checkpoint before tick 6 restores ticks 3..5 into a fresh, lengthened line
        let mut saved = Vec::new();
        let at = SaveAt {
            t_next: 6,
            full: true,
        };
        line.save(at, &mut saved);
        let mut other = DelayLine::new(2, 3);
        other.lengthen(4);
        assert_eq!(other.load(at, &saved), 6);
        other.push(6, &[6.0, 16.0]);
        assert_eq!(other.row(6, 3), Some(&[3.0, 13.0][..]));
        // adjoints reach the tick they belong to, once
        other.add_adjoint(6, 2, 1, 0.5);
        let mut g = [0.0; 2];
        other.take_adjoint(5, &mut g);
        assert_eq!(g, [0.0, 0.0]);
        other.take_adjoint(4, &mut g);
        assert_eq!(g, [0.0, 0.5]);
        other.take_adjoint(4, &mut g);
        assert_eq!(g, [0.0, 0.5]);
    }
}
