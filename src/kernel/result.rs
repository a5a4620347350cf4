//! `SimResult`: the host-side, buffer-first result of one batch element of a rollout.
//! Exports (NPY, NWB) live in `io/`, not here.

use std::collections::BTreeMap;

use ndarray::{Array2, Array3};

use super::ctx::to_vec_f64;
use super::simulation::names;
use super::stage::Traces;
use super::state::BufferSpec;
use crate::error::{Error, Result};

/// Result of one batch element. Units: seconds, newtons, volts.
#[derive(Clone, Debug, PartialEq)]
pub struct SimResult {
    /// Spike times per motor unit (s), from the `spikes` buffer: a step with value > 0.5 is a spike
    /// at `t_start_s + step·dt_s`. Empty when no spikes were recorded.
    pub spike_times_s: Vec<Vec<f64>>,
    /// Force `[n_t, n_pools]` in newtons, if recorded.
    pub force_n: Option<Array2<f64>>,
    /// Surface EMG `[n_t, rows, cols]` in volts, if recorded.
    pub surface_emg_v: Option<Array3<f64>>,
    /// Time step (s).
    pub dt_s: f64,
    /// Time of step 0 (s).
    pub t_start_s: f64,
    /// Number of motor units (0 if spikes were not recorded).
    pub n_units: usize,
    /// EMG grid `(rows, cols)`, if EMG was recorded.
    pub grid_shape: Option<(usize, usize)>,
}

/// Values of batch element `b` of a trace `[n_t, batch, width]`, as `[n_t, width]` row-major.
fn batch_slice(
    name: &str,
    trace: &burn::tensor::Tensor<3>,
    b: usize,
) -> Result<(usize, usize, Vec<f64>)> {
    let [n_t, batch, w] = trace.dims();
    if b >= batch {
        return Err(Error::invalid(
            "batch_index",
            b,
            format!("0..{batch} (trace `{name}`)"),
        ));
    }
    let v = to_vec_f64(trace.clone().slice([0..n_t, b..b + 1, 0..w]));
    Ok((n_t, w, v))
}

impl SimResult {
    /// Extracts batch element `b` from recorded traces. Optional buffers absent from `traces` are
    /// `None` (or empty spike lists).
    pub fn from_traces(
        traces: &Traces,
        specs: &BTreeMap<String, BufferSpec>,
        dt_s: f64,
        b: usize,
    ) -> Result<Self> {
        let mut res = SimResult {
            spike_times_s: Vec::new(),
            force_n: None,
            surface_emg_v: None,
            dt_s,
            t_start_s: 0.0,
            n_units: 0,
            grid_shape: None,
        };
        if let Some(tr) = traces.get(names::SPIKES) {
            let (n_t, w, v) = batch_slice(names::SPIKES, tr, b)?;
            res.n_units = w;
            res.spike_times_s = (0..w)
                .map(|u| {
                    (0..n_t)
                        .filter(|&t| v[t * w + u] > 0.5)
                        .map(|t| res.t_start_s + t as f64 * dt_s)
                        .collect()
                })
                .collect();
        }
        if let Some(tr) = traces.get(names::FORCE_N) {
            let (n_t, w, v) = batch_slice(names::FORCE_N, tr, b)?;
            res.force_n = Some(Array2::from_shape_vec((n_t, w), v).expect("shape checked"));
        }
        if let Some(tr) = traces.get(names::SURFACE_EMG_V) {
            let (n_t, w, v) = batch_slice(names::SURFACE_EMG_V, tr, b)?;
            let (rows, cols) = match specs.get(names::SURFACE_EMG_V).map(|s| s.shape.as_slice()) {
                Some([r, c]) => (*r, *c),
                _ => (1, w),
            };
            res.grid_shape = Some((rows, cols));
            res.surface_emg_v =
                Some(Array3::from_shape_vec((n_t, rows, cols), v).expect("shape checked"));
        }
        Ok(res)
    }

    /// Number of time steps covered (from whichever trace is present).
    pub fn n_steps(&self) -> usize {
        self.force_n
            .as_ref()
            .map(|f| f.nrows())
            .or(self.surface_emg_v.as_ref().map(|e| e.shape()[0]))
            .unwrap_or(0)
    }
}
