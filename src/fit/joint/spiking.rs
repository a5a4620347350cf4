//! The joint problem on the spiking network: the four observables of [`super`] computed on the
//! event-time fast pool ([`crate::event`]: hard spikes at the interpolated threshold crossing,
//! the same seeds and parameters as the tensor network), the gradient of the loss by central
//! differences with common random numbers ([`crate::fit::difference`], the estimator chosen by
//! measurement, BENCHMARKS.md §7).
//!
//! Observables over the second half `[⌊n/2⌋, n)` of the force samples (`t_k = (k+1)·dt`) and of
//! the spike times `t ≥ ⌊n/2⌋·dt`:
//! - mean force `F̄ = mean_k F_k` (N);
//! - amplitude at f `A_f = (2/m)·|Σ_k (F_k − F̄)·e^{−iω k}|`, `ω = 2π f dt`, m samples (N);
//! - per-unit rate `r_i = (spikes of unit i in the window) / (m·dt)` (Hz), soft activity weight
//!   `a_i = σ((r_i − 2 Hz)/0.5 Hz)`, pool mean `Σ a_i r_i / Σ a_i` and spread
//!   `√(Σ a_i (r_i − m)² / Σ a_i)` (Hz) — the same definitions as the smooth model's.
//!
//! Gradient steps: `h_hz` for dc, amplitude and σ (Hz), `h_weight_rel·w` for the weight (µS).

use super::{ACTIVE_HZ, ACTIVE_WIDTH_HZ, JointGradientSpec, JointObservables, full_row, loss_of};
use crate::error::{Error, Result, check};
use crate::event::{EventDrive, EventNetwork, RunOptions};
use crate::fit::difference::{central_gradient, parallel_values};
use crate::fit::objective::Objective;
use crate::network::NetworkConfig;

/// The event-time spiking network of a joint problem.
#[derive(Debug)]
pub struct SpikingJoint {
    net: EventNetwork,
    /// Oscillation frequency (Hz).
    pub freq_hz: f64,
}

impl SpikingJoint {
    /// The event-time network of `cfg` (fast model, hard spikes) at oscillation frequency
    /// `freq_hz` (Hz). Errors: the faithful model, surrogate/rate modes, or any invalid field.
    pub fn new(cfg: &NetworkConfig, freq_hz: f64) -> Result<Self> {
        check::positive("freq_hz", freq_hz)?;
        Ok(Self {
            net: EventNetwork::new(cfg)?,
            freq_hz,
        })
    }

    /// The four observables (N, N, Hz, Hz) of one full row `[dc_hz, amp_hz, weight_us, σ_hz]`.
    pub fn observables(&self, row: &[f64]) -> Result<[f64; 4]> {
        if row.len() != 4 {
            return Err(Error::shape("parameter row", 4, row.len()));
        }
        check::all_finite("parameter row", row)?;
        check::positive("weight_us", row[2])?;
        let drive = EventDrive::Sine {
            dc_hz: row[0],
            amp_hz: row[1],
            freq_hz: self.freq_hz,
            phase_rad: 0.0,
            noise_sd_hz: row[3],
        };
        let run = self
            .net
            .run(&drive, row[2] * 1e-6, &RunOptions::default())?;
        let n = run.n_steps();
        let h = n / 2;
        let m = (n - h) as f64;
        let f = &run.force_n[h..];
        let mean = f.iter().sum::<f64>() / m;
        let omega = 2.0 * std::f64::consts::PI * self.freq_hz * run.dt_s;
        let (re, im) = f.iter().enumerate().fold((0.0, 0.0), |(re, im), (j, &v)| {
            let ph = omega * (h + j) as f64;
            (re + (v - mean) * ph.cos(), im + (v - mean) * ph.sin())
        });
        let amp_f = (re * re + im * im).sqrt() * 2.0 / m;
        let t_half = h as f64 * run.dt_s;
        let window_s = m * run.dt_s;
        let rates: Vec<f64> = run
            .spikes_s
            .iter()
            .map(|sp| sp.iter().filter(|&&t| t >= t_half).count() as f64 / window_s)
            .collect();
        let a: Vec<f64> = rates
            .iter()
            .map(|r| 1.0 / (1.0 + (-(r - ACTIVE_HZ) / ACTIVE_WIDTH_HZ).exp()))
            .collect();
        let na: f64 = a.iter().sum();
        let rate_mean = a.iter().zip(&rates).map(|(a, r)| a * r).sum::<f64>() / na;
        let var = a
            .iter()
            .zip(&rates)
            .map(|(a, r)| a * (r - rate_mean).powi(2))
            .sum::<f64>()
            / na;
        Ok([mean, amp_f, rate_mean, (var + 1e-12).sqrt()])
    }
}

impl JointObservables for SpikingJoint {
    fn evaluate(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        crate::event::reference::par_map(rows, crate::event::reference::default_threads(), |r| {
            self.observables(r).map(|y| y.to_vec())
        })
    }

    fn describe(&self) -> String {
        let c = self.net.config();
        format!(
            "the spiking network (event-time fast pool, {} MNs, {} s, dt {} s; CRN \
             central-difference gradients)",
            c.n_mn, c.duration_s, c.dt_s
        )
    }

    fn objective<'a>(
        &'a self,
        targets: [f64; 4],
        base: Vec<f64>,
        gradient: &JointGradientSpec,
    ) -> Box<dyn Objective + 'a> {
        Box::new(SpikingJointObjective {
            model: self,
            targets,
            base,
            h_hz: gradient.h_hz,
            h_weight_rel: gradient.h_weight_rel,
        })
    }
}

/// `L(x) = Σ_k ((y_k(x) − y*_k)/y*_k)²` on the spiking network, the first `x.len()` parameters
/// free; gradient by CRN central differences (`2·x.len()` runs, on every core).
pub struct SpikingJointObjective<'m> {
    /// Model.
    pub model: &'m SpikingJoint,
    /// Targets y*.
    pub targets: [f64; 4],
    /// Values of the held parameters (full row; the first d are overwritten).
    pub base: Vec<f64>,
    /// Difference step of dc, amplitude, σ (Hz).
    pub h_hz: f64,
    /// Relative difference step of the weight.
    pub h_weight_rel: f64,
}

impl SpikingJointObjective<'_> {
    fn loss(&self, x: &[f64]) -> Result<f64> {
        let y = self.model.observables(&full_row(&self.base, x))?;
        let l = loss_of(&y, &self.targets);
        crate::fit::smooth::check_finite_values("joint loss (spiking)", &[l])?;
        Ok(l)
    }
}

impl Objective for SpikingJointObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.loss(x)
    }

    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let h: Vec<f64> = (0..x.len())
            .map(|i| {
                if i == 2 {
                    self.h_weight_rel * x[i].abs().max(1e-12)
                } else {
                    self.h_hz
                }
            })
            .collect();
        // Domain: weight > 0, σ ≥ 0 (dc and amplitude unrestricted).
        let lower: Vec<f64> = (0..x.len())
            .map(|i| match i {
                2 => 0.5 * x[i],
                3 => 0.0,
                _ => f64::NEG_INFINITY,
            })
            .collect();
        let this = &*self;
        central_gradient("joint loss (spiking)", x, &h, &lower, |p| this.loss(p))
    }

    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let this = &*self;
        parallel_values(xs, |p| this.loss(p))
    }
}
