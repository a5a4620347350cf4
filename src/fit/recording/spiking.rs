//! The recording problem on the spiking network: the same loss as [`RecordingModel`]'s, computed
//! on the event-time fast pool ([`crate::event`], hard spikes at interpolated crossings), with
//! the gradient by central differences with common random numbers (every row of a difference
//! runs the same network, inputs and noise) — the estimator chosen by measurement
//! (BENCHMARKS.md §7; the pool is fluctuation-driven, so event-time derivatives miss most of it).
//!
//! Loss (as the smooth model's): `L = mean_b ((s·F̄_b − F_b)/F_ref)² + λ/N_mask · Σ_j Σ_b
//! m_jb ((r_jb − R_jb)/R_ref)²`, with `F̄_b` the bin means of the force (N), `s` the force scale
//! (%MVC/N), `r_jb` the Hann-smoothed spike counts of matched unit j per bin (Hz).
//! Gradient: `∂L/∂x_i ≈ (L(x + h_i e_i) − L(x − h_i e_i)) / 2h_i`, `h_i = h_hz` (knots, σ; Hz) or
//! `h_scale_rel·|s|` (scale): `2·n_params` runs, on all cores.
//! Residuals (Levenberg–Marquardt, [`crate::fit::lm`]): `L = Σ_k r_k²` with the force residuals
//! `(s·F̄_b − F_b)/(F_ref·√|W|)` and the rate residuals `√(λ/N_mask)·(r_jb − R_jb)/R_ref` over the
//! masked bins; their Jacobian by CRN forward differences (`n_params` runs) with the force
//! scale's column exact.

use super::model::{RecordingModel, Simulated};
use crate::error::{Error, Result};
use crate::event::reference::{default_threads, par_map};
use crate::event::{EventDrive, EventNetwork, RunOptions};
use crate::fit::difference::{central_gradient, parallel_values};
use crate::fit::objective::Objective;
use crate::fit::smooth::check_finite_values;

/// The recording objective on the spiking network (see the module docs).
pub struct SpikingRecording<'m> {
    model: &'m RecordingModel,
    net: EventNetwork,
    h_hz: f64,
    h_scale_rel: f64,
}

impl<'m> SpikingRecording<'m> {
    /// The spiking version of `model` (its network configuration, seed and matching) with
    /// central-difference steps `h_hz` (Hz) and `h_scale_rel` (relative).
    pub fn new(model: &'m RecordingModel, h_hz: f64, h_scale_rel: f64) -> Result<Self> {
        crate::error::check::positive("gradient.h_hz", h_hz)?;
        crate::error::check::positive("gradient.h_scale_rel", h_scale_rel)?;
        Ok(Self {
            model,
            net: network(model)?,
            h_hz,
            h_scale_rel,
        })
    }

    /// Force bins (%MVC) and matched units' smoothed rates (Hz) at `x`.
    pub fn simulate(&self, x: &[f64]) -> Result<Simulated> {
        Ok(self.run(x)?.2)
    }

    /// Loss, residuals and simulated bins at `x` (knot values Hz, [σ Hz], scale %MVC/N).
    fn run(&self, x: &[f64]) -> Result<(f64, Vec<f64>, Simulated)> {
        let m = self.model;
        let k = m.knots.len();
        if x.len() != m.n_params() {
            return Err(Error::shape("x", m.n_params(), x.len()));
        }
        crate::error::check::all_finite("x", x)?;
        let sd = if m.fit_noise { x[k] } else { m.noise_sd_hz };
        let s = x[m.n_params() - 1];
        let drive = EventDrive::Knots {
            knots: m.knots.clone(),
            values_hz: x[..k].to_vec(),
            noise_sd_hz: sd,
        };
        let run = self.net.run(&drive, m.weight_s, &RunOptions::default())?;
        let (nb, spb) = (m.targets.n_bins, m.steps_per_bin);
        let force_pct: Vec<f64> = (0..nb)
            .map(|b| s * run.force_n[b * spb..(b + 1) * spb].iter().sum::<f64>() / spb as f64)
            .collect();
        let bin_s = spb as f64 * run.dt_s;
        let lb = m.targets.loss_bins.clone();
        // force residuals (s·F̄_b − F*_b)/(F_ref·√|W|)
        let cf = self.force_coef();
        let mut residuals: Vec<f64> = lb
            .clone()
            .map(|b| (force_pct[b] - m.targets.force_pct[b]) * cf)
            .collect();
        let mut rates_hz = Vec::new();
        let n_mask: f64 = m.masks.iter().flatten().sum();
        let cr = if m.matched.is_empty() {
            0.0
        } else {
            (m.rate_weight / n_mask).sqrt() / m.r_ref
        };
        for (j, &unit) in m.matched.iter().enumerate() {
            let mut counts = vec![0.0; nb];
            for &t in &run.spikes_s[unit] {
                let b = (t / bin_s).floor() as usize;
                if b < nb {
                    counts[b] += 1.0;
                }
            }
            let r: Vec<f64> = (0..nb)
                .map(|t| {
                    (0..nb).map(|c| m.hann[t * nb + c] * counts[c]).sum::<f64>() / m.targets.bin_s
                })
                .collect();
            // rate residuals m_jb·(r_jb − R_jb)·√(λ/N_mask)/R_ref over the masked bins
            for ((rt, mt), tt) in r.iter().zip(&m.masks[j]).zip(&m.targets.rates_hz[j]) {
                if *mt != 0.0 {
                    residuals.push(mt.sqrt() * (rt - tt) * cr);
                }
            }
            rates_hz.push(r);
        }
        let loss = residuals.iter().map(|v| v * v).sum::<f64>();
        check_finite_values("recording loss (spiking)", &[loss])?;
        Ok((
            loss,
            residuals,
            Simulated {
                force_pct,
                rates_hz,
            },
        ))
    }

    /// The force residuals' coefficient `1/(F_ref·√|W|)` (|W| the bins of the loss window).
    fn force_coef(&self) -> f64 {
        let t = &self.model.targets;
        1.0 / (t.f_ref() * (t.loss_bins.len() as f64).sqrt())
    }

    /// Residuals and their Jacobian at `x` by CRN forward differences: `(r(x + h_i e_i) − r(x))/h_i`
    /// with `h_i = h_hz` for the knots and σ (`n − 1` runs beside the one at `x`, on all cores);
    /// the force scale's column is exact (`∂r_b/∂s = F̄_b/(F_ref·√|W|)`, rates do not depend on it).
    fn jacobian(&self, x: &[f64]) -> Result<crate::fit::objective::ResidualJacobian> {
        let n = x.len();
        let mut points = vec![x.to_vec()];
        for i in 0..n - 1 {
            let mut p = x.to_vec();
            p[i] += self.h_hz;
            points.push(p);
        }
        let runs = par_map(&points, default_threads(), |p| self.run(p).map(|r| r.1))?;
        let r0 = &runs[0];
        let s = x[n - 1];
        let n_force = self.model.targets.loss_bins.len();
        let cf = self.force_coef();
        let jac: Vec<Vec<f64>> = (0..r0.len())
            .map(|k| {
                let mut row: Vec<f64> = (0..n - 1)
                    .map(|i| (runs[i + 1][k] - r0[k]) / self.h_hz)
                    .collect();
                // r_b = (s·F̄_b − F*_b)·c  ⇒  ∂r_b/∂s = (r_b/c + F*_b)/s·c = (r_b + F*_b·c)/s
                row.push(if k < n_force {
                    let b = self.model.targets.loss_bins.start + k;
                    (r0[k] + self.model.targets.force_pct[b] * cf) / s
                } else {
                    0.0
                });
                row
            })
            .collect();
        check_finite_values(
            "recording residual Jacobian (spiking)",
            &jac.iter().flatten().copied().collect::<Vec<_>>(),
        )?;
        Ok((r0.clone(), jac))
    }
}

/// The event-time network of `model`'s configuration (hard spikes).
fn network(model: &RecordingModel) -> Result<EventNetwork> {
    EventNetwork::new(&crate::network::NetworkConfig {
        spike_mode: crate::neuron::spike::SpikeMode::Hard,
        generator_mode: crate::drive::GeneratorMode::Hard,
        ..model.cfg.clone()
    })
}

/// Every unit's smoothed rate per bin (Hz) and the force per bin (N) of the spiking network of
/// `model` at knot values `v` (Hz) and noise σ `sd` (Hz): the spiking counterpart of
/// [`RecordingModel::all_rates`], used to match units and scale the force at the initial drive.
pub fn all_rates(model: &RecordingModel, v: &[f64], sd: f64) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let drive = EventDrive::Knots {
        knots: model.knots.clone(),
        values_hz: v.to_vec(),
        noise_sd_hz: sd,
    };
    let run = network(model)?.run(&drive, model.weight_s, &RunOptions::default())?;
    let (nb, spb) = (model.targets.n_bins, model.steps_per_bin);
    let f = (0..nb)
        .map(|b| run.force_n[b * spb..(b + 1) * spb].iter().sum::<f64>() / spb as f64)
        .collect();
    let bin_s = spb as f64 * run.dt_s;
    let rates = run
        .spikes_s
        .iter()
        .map(|sp| {
            let mut counts = vec![0.0; nb];
            for &t in sp {
                let b = (t / bin_s).floor() as usize;
                if b < nb {
                    counts[b] += 1.0;
                }
            }
            super::targets::smooth_counts(&model.hann, &counts, model.targets.bin_s)
        })
        .collect();
    Ok((rates, f))
}

impl Objective for SpikingRecording<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.run(x)?.0)
    }

    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let n = x.len();
        let h: Vec<f64> = (0..n)
            .map(|i| {
                if i == n - 1 {
                    self.h_scale_rel * x[i].abs().max(1e-12)
                } else {
                    self.h_hz
                }
            })
            .collect();
        // Domain: σ ≥ 0 when fitted, scale > 0 (knot values unrestricted; the rate is clipped).
        let k = self.model.knots.len();
        let lower: Vec<f64> = (0..n)
            .map(|i| {
                if i == n - 1 {
                    0.5 * x[i]
                } else if self.model.fit_noise && i == k {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let this = &*self;
        central_gradient("recording loss (spiking)", x, &h, &lower, |p| {
            this.run(p).map(|r| r.0)
        })
    }

    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let this = &*self;
        parallel_values(xs, |p| this.run(p).map(|r| r.0))
    }

    fn residuals(&mut self, x: &[f64]) -> Result<Option<Vec<f64>>> {
        Ok(Some(self.run(x)?.1))
    }

    fn residuals_and_jacobian(
        &mut self,
        x: &[f64],
    ) -> Result<Option<crate::fit::objective::ResidualJacobian>> {
        self.jacobian(x).map(Some)
    }
}
