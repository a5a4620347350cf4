//! [`SynapticCurrent`]: the total synaptic current into a pool from several conductances, each
//! with its own reversal potential, at the **previous** tick's membrane potential (MODEL.md §5
//! step 4):
//!
//! `I = Σ_k g_k·(E_k − v_prev)` (A), `g_k` in S, `E_k` and `v` in V.
//!
//! Feeding this to a pool with current input ([`crate::neuron::lif::LifInput::Current`]) computes
//! exactly what a conductance input computes for a single excitatory conductance (the LIF's
//! conductance drive `g·(E − v)` uses the state before the update, which is `v_prev`), so the
//! closed loop without feedback reduces to the open-loop network.

use crate::error::{Error, Result};
use crate::kernel::{BufferSpec, HostCx, HostStage, ReadSpec, Stage, StageDecl, StageIo, VjpIo};

/// Stage: reads every conductance `[n]` (same tick) and `v` `[n]` one tick delayed, writes
/// `output` `[n]` (A).
pub struct SynapticCurrent {
    name: String,
    conductances: Vec<(String, f64)>,
    v: String,
    output: String,
    n: usize,
}

impl SynapticCurrent {
    /// A current of `n` units from `conductances` (buffer name, reversal potential in V) at the
    /// membrane potential buffer `v`. Errors: no conductance, or a non-finite reversal potential.
    pub fn new(
        name: impl Into<String>,
        n: usize,
        conductances: Vec<(String, f64)>,
        v: impl Into<String>,
        output: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        crate::error::check::count_at_least(&format!("{name}.n"), n, 1)?;
        crate::error::check::count_at_least(
            &format!("{name}.conductances"),
            conductances.len(),
            1,
        )?;
        for (b, e) in &conductances {
            crate::error::check::finite(&format!("{name}.{b}.reversal_v"), *e)?;
        }
        Ok(Self {
            name,
            conductances,
            v: v.into(),
            output: output.into(),
            n,
        })
    }
}

impl Stage for SynapticCurrent {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        let mut reads: Vec<ReadSpec> = self
            .conductances
            .iter()
            .map(|(b, _)| ReadSpec::now(b.clone()))
            .collect();
        reads.push(ReadSpec::delayed(self.v.clone()));
        StageDecl {
            reads,
            writes: vec![BufferSpec::new(self.output.clone(), &[self.n], "A")],
        }
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let v = io.read(&self.v)?;
        let mut total = None;
        for (b, e) in &self.conductances {
            let g = io.read(b)?;
            if g.dims() != v.dims() {
                return Err(Error::shape(
                    format!("{}.{b}", self.name),
                    format!("{:?}", v.dims()),
                    format!("{:?}", g.dims()),
                ));
            }
            let i = g * (v.clone().neg().add_scalar(*e));
            total = Some(match total {
                Some(t) => t + i,
                None => i,
            });
        }
        io.write(&self.output, total.expect("at least one conductance"))
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for SynapticCurrent {
    fn host_init(&mut self, _cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        Ok(())
    }
    /// `I = Σ_k g_k·(E_k − v_prev)` (A); `ins` = the conductances, then `v` (delayed).
    fn host_step(
        &mut self,
        _cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        _t: usize,
    ) -> Result<()> {
        let k = self.conductances.len();
        let v = ins[k];
        for (m, ((b, _), g)) in self.conductances.iter().zip(&ins[..k]).enumerate() {
            if g.len() != v.len() {
                return Err(Error::shape(
                    format!("{}.{b}", self.name),
                    format!("{} values", v.len()),
                    format!("{} values", g.len()),
                ));
            }
            let e = self.conductances[m].1;
            for ((o, &gj), &vj) in outs[0].iter_mut().zip(g.iter()).zip(v) {
                let i = gj * (e - vj);
                *o = if m == 0 { i } else { *o + i };
            }
        }
        Ok(())
    }
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        Ok(())
    }
    /// `∂I/∂g_k = E_k − v`, `∂I/∂v = −Σ_k g_k`.
    fn host_vjp(&mut self, _cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        let k = self.conductances.len();
        let v = ins[k];
        for (m, (_, e)) in self.conductances.iter().enumerate() {
            for j in 0..v.len() {
                let gi = g_outs[0][j];
                g_ins[m][j] += gi * (e - v[j]);
                g_ins[k][j] -= gi * ins[m][j];
            }
        }
        Ok(())
    }
}
