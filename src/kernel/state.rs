//! `SimState`: the shared flat state of a lockstep rollout — named tensor buffers, each with a
//! leading batch axis `[batch, width]`, declared by stages at build time with shape and units.
//!
//! Buffers are immutable burn tensors; a stage "writes" by replacing the tensor. Reads of a buffer
//! declared *delayed* return the value it had at the end of the previous tick (the one-tick
//! feedback delay), taken as a cheap handle snapshot at the start of each tick.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::Tensor;

use super::ctx::Ctx;
use crate::error::{Error, Result};

/// Declaration of one buffer a stage writes: name, per-sample shape (without the batch axis) and
/// units (SI, also carried in the name suffix by convention, e.g. `force_n`).
#[derive(Clone, Debug, PartialEq)]
pub struct BufferSpec {
    /// Unique buffer name.
    pub name: String,
    /// Shape of one batch element (e.g. `[n_units]`, `[rows, cols]`).
    pub shape: Vec<usize>,
    /// Units of the values (e.g. "V", "N", "1" for dimensionless, "spike/step").
    pub units: String,
}

impl BufferSpec {
    /// A new buffer declaration.
    pub fn new(name: impl Into<String>, shape: &[usize], units: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            units: units.into(),
        }
    }
    /// Number of values per batch element (product of `shape`).
    pub fn width(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The live state of a rollout.
pub struct SimState {
    ctx: Ctx,
    batch: usize,
    dt_s: f64,
    n_steps: usize,
    t: usize,
    specs: BTreeMap<String, BufferSpec>,
    current: BTreeMap<String, Tensor<2>>,
    previous: BTreeMap<String, Tensor<2>>,
    delayed: BTreeSet<String>,
}

impl SimState {
    /// An empty state (no buffers yet).
    pub fn new(ctx: Ctx, batch: usize, dt_s: f64, n_steps: usize) -> Self {
        Self {
            ctx,
            batch,
            dt_s,
            n_steps,
            t: 0,
            specs: BTreeMap::new(),
            current: BTreeMap::new(),
            previous: BTreeMap::new(),
            delayed: BTreeSet::new(),
        }
    }

    /// Device and precision.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }
    /// Batch size (candidates × trials).
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Time step in seconds.
    pub fn dt_s(&self) -> f64 {
        self.dt_s
    }
    /// Number of steps of the rollout.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }
    /// Current step index (set by the driver).
    pub fn t(&self) -> usize {
        self.t
    }
    pub(crate) fn set_t(&mut self, t: usize) {
        self.t = t;
    }

    /// Allocates a zero-initialised buffer `[batch, width]`. Error if the name already exists.
    pub fn alloc(&mut self, spec: BufferSpec, owner: &str) -> Result<()> {
        if let Some(existing) = self.specs.get(&spec.name) {
            return Err(Error::DuplicateBuffer {
                buffer: existing.name.clone(),
                first: "an earlier allocation".into(),
                second: owner.into(),
            });
        }
        let z = self.ctx.zeros([self.batch, spec.width()]);
        self.current.insert(spec.name.clone(), z);
        self.specs.insert(spec.name.clone(), spec);
        Ok(())
    }

    /// Whether a buffer exists.
    pub fn has(&self, name: &str) -> bool {
        self.current.contains_key(name)
    }

    /// The declaration of a buffer.
    pub fn spec(&self, name: &str) -> Option<&BufferSpec> {
        self.specs.get(name)
    }

    /// Names of all buffers.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.specs.keys()
    }

    /// Current value `[batch, width]` of a buffer.
    pub fn get(&self, name: &str) -> Option<Tensor<2>> {
        self.current.get(name).cloned()
    }

    /// Value at the end of the previous tick (equal to the initial value during tick 0).
    pub fn get_previous(&self, name: &str) -> Option<Tensor<2>> {
        self.previous
            .get(name)
            .or_else(|| self.current.get(name))
            .cloned()
    }

    /// Replaces a buffer's value, checking its shape `[batch, width]`.
    pub fn set(&mut self, name: &str, value: Tensor<2>) -> Result<()> {
        let spec = self
            .specs
            .get(name)
            .ok_or_else(|| Error::config(name, "buffer was never allocated"))?;
        let expected = [self.batch, spec.width()];
        let got = value.dims();
        if got != expected {
            return Err(Error::shape(
                name,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }
        self.current.insert(name.to_string(), value);
        Ok(())
    }

    /// Marks buffers whose previous-tick value must be kept.
    pub(crate) fn set_delayed(&mut self, names: BTreeSet<String>) {
        self.delayed = names;
    }

    /// Snapshot of the delayed buffers, taken at the start of every tick.
    pub(crate) fn snapshot_previous(&mut self) {
        for name in &self.delayed {
            if let Some(v) = self.current.get(name) {
                self.previous.insert(name.clone(), v.clone());
            }
        }
    }
}

impl SimState {
    /// Sets the previous-tick value of a buffer (used when a stage is stepped alone).
    pub(crate) fn set_previous(&mut self, name: &str, value: Tensor<2>) {
        self.previous.insert(name.to_string(), value);
    }
}
