//! The fixed-seed network model (`dc` values → second-half mean force, hard or smooth) and the
//! objectives on it.

use burn::tensor::Tensor;

use crate::drive::generator::GeneratorMode;
use crate::drive::rate::{DriveParams, NoiseKind};
use crate::error::Result;
use crate::event::reference::{default_threads, par_map};
use crate::event::{EventDrive, EventNetwork, RunOptions};
use crate::fit::journal::Journal;
use crate::fit::objective::Objective;
use crate::kernel::{Ctx, ExecPath, Precision, to_vec_f64};
use crate::network::{MuscleParams, NetworkConfig, build};
use crate::neuron::spike::SpikeMode;

use super::spec::{Engine, Normalisation, ProtocolSpec, WatanabeSpec};

/// The network and protocol with fixed seeds: `dc` values → mean force of the second half.
#[derive(Debug)]
pub struct WatanabeModel {
    /// Network (task duration).
    pub cfg: NetworkConfig,
    /// Synaptic weight (S).
    pub weight_s: f64,
    /// Task drive.
    pub protocol: ProtocolSpec,
    /// Normalisation.
    pub normalisation: Normalisation,
    /// Execution path.
    pub path: ExecPath,
    /// Network implementation.
    pub engine: Engine,
    /// Largest batch per rollout.
    pub max_batch: usize,
    /// Rollouts run (batched ones count once).
    pub rollouts: usize,
    /// Float precision of every rollout (f32 by default; f64 for gradient checks).
    pub precision: Precision,
    /// Evaluation journal of the root-finder running on this model (resumable runs).
    pub journal: Option<Journal>,
}

/// Mean of the second half of each batch row of a host force trace `[n_steps, batch]`, with the
/// chosen normalisation: `F̄_b = mean_{t ≥ ⌊n/2⌋} F[t, b]` (N) or `100 N · F̄_b / max_t F[t, b]`.
pub fn second_half_means(f: &[f64], n_steps: usize, batch: usize, norm: Normalisation) -> Vec<f64> {
    let half = n_steps / 2;
    (0..batch)
        .map(|b| {
            let m = (half..n_steps).map(|t| f[t * batch + b]).sum::<f64>()
                / (n_steps - half).max(1) as f64;
            match norm {
                Normalisation::Absolute => m,
                Normalisation::MyogenPerRunMax => {
                    let mx = (0..n_steps).map(|t| f[t * batch + b]).fold(0.0, f64::max);
                    if mx > 0.0 { m / mx * 100.0 } else { 0.0 }
                }
            }
        })
        .collect()
}

impl WatanabeModel {
    /// From a validated spec.
    pub fn from_spec(spec: &WatanabeSpec) -> Self {
        Self {
            cfg: spec.network.clone(),
            weight_s: spec.weight_s,
            protocol: spec.protocol.clone(),
            normalisation: spec.normalisation,
            path: spec.path,
            engine: spec.engine,
            max_batch: spec.max_batch,
            rollouts: 0,
            precision: Precision::F32,
            journal: None,
        }
    }

    /// The same model in another float precision (f64 for gradient checks).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The CPU context of this model's precision (no autodiff).
    pub fn ctx(&self) -> Ctx {
        Ctx::cpu().with_precision(self.precision)
    }

    fn run_batch(
        &mut self,
        cfg: &NetworkConfig,
        drive: DriveParams,
        batch: usize,
        ctx: &Ctx,
    ) -> Result<Tensor<3>> {
        let muscle = MuscleParams::from_config(cfg, ctx)?;
        let mut sim = build(
            cfg,
            ctx,
            batch,
            drive,
            ctx.tensor(vec![self.weight_s], [1, 1]),
            &muscle,
        )?;
        self.rollouts += 1;
        // the stream path has no burn autodiff: gradient rollouts take the fused path
        let path = if ctx.is_autodiff() && self.path == ExecPath::Stream {
            ExecPath::Fused
        } else {
            self.path
        };
        sim.run_path(path)?.trace("force_n")
    }

    /// Mean force of the second half (N, normalised as configured) of the oscillating task at
    /// each `dc` (Hz), in batched rollouts of at most `max_batch` rows (hard model, in the model's precision).
    pub fn mean_forces(&mut self, dcs: &[f64]) -> Result<Vec<f64>> {
        let cfg = self.cfg.clone();
        self.journalled("f", dcs, |m| m.mean_forces_with(&cfg, dcs))
    }

    /// `f(self)`, served from / appended to the root-finder's journal when one is open.
    fn journalled(
        &mut self,
        kind: &str,
        x: &[f64],
        f: impl FnOnce(&mut Self) -> Result<Vec<f64>>,
    ) -> Result<Vec<f64>> {
        match self.journal.take() {
            Some(mut j) => {
                let r = j.eval(kind, x, || f(self));
                self.journal = Some(j);
                r
            }
            None => f(self),
        }
    }

    fn mean_forces_with(&mut self, cfg: &NetworkConfig, dcs: &[f64]) -> Result<Vec<f64>> {
        if self.engine == Engine::Event {
            let (amp, f, sd) = (
                self.protocol.amp_hz,
                self.protocol.freq_hz,
                self.protocol.noise_sd_hz,
            );
            return self.event_mean_forces(cfg, dcs, amp, f, sd);
        }
        let ctx = self.ctx();
        let mut out = Vec::with_capacity(dcs.len());
        for chunk in dcs.chunks(self.max_batch.max(1)) {
            let b = chunk.len();
            let mut drive = DriveParams::scalars(
                &ctx,
                0.0,
                self.protocol.amp_hz,
                self.protocol.freq_hz,
                0.0,
                self.protocol.noise_sd_hz,
            );
            drive.dc_hz = ctx.tensor(chunk.to_vec(), [b, 1]);
            let f = self.run_batch(cfg, drive, b, &ctx)?;
            let n = f.dims()[0];
            out.extend(second_half_means(&to_vec_f64(f), n, b, self.normalisation));
        }
        Ok(out)
    }

    /// MyoGen's reference: constant drive `dc + max(0, N(0,1))` (Hz) for `duration_s`, mean
    /// force of the second half (N, normalised as configured). Same network and seeds.
    pub fn constant_reference(&mut self, dc_hz: f64, duration_s: f64) -> Result<f64> {
        let ctx = self.ctx();
        let cfg = NetworkConfig {
            duration_s,
            drive_noise: NoiseKind::Rectified,
            ..self.cfg.clone()
        };
        if self.engine == Engine::Event {
            return Ok(self.event_mean_forces(&cfg, &[dc_hz], 0.0, 0.0, 1.0)?[0]);
        }
        let f = self.run_batch(&cfg, DriveParams::constant(&ctx, dc_hz), 1, &ctx)?;
        let n = f.dims()[0];
        Ok(second_half_means(&to_vec_f64(f), n, 1, self.normalisation)[0])
    }

    /// Second-half mean forces (N, normalised as configured) of the event-time network of `cfg`
    /// under `dc + amp·sin(2π f t) + σ ξ` (Hz) at each `dc`: one run per row, rows in parallel
    /// on every core (each counts as one rollout).
    fn event_mean_forces(
        &mut self,
        cfg: &NetworkConfig,
        dcs: &[f64],
        amp_hz: f64,
        freq_hz: f64,
        noise_sd_hz: f64,
    ) -> Result<Vec<f64>> {
        let net = EventNetwork::new(cfg)?;
        let (w, norm) = (self.weight_s, self.normalisation);
        let out = par_map(dcs, default_threads(), |&dc_hz| {
            let drive = EventDrive::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad: 0.0,
                noise_sd_hz,
            };
            let run = net.run(&drive, w, &RunOptions::default())?;
            Ok(second_half_means(&run.force_n, run.n_steps(), 1, norm)[0])
        })?;
        self.rollouts += dcs.len();
        Ok(out)
    }

    /// The smooth (rate-mode) network: spike_mode = rate with sharpness `beta` (per mV),
    /// rate-mode generators (expected counts), LIF reset gradient kept.
    pub fn smooth_config(&self, beta: f64) -> NetworkConfig {
        NetworkConfig {
            spike_mode: SpikeMode::Rate,
            generator_mode: GeneratorMode::Rate,
            spike_beta: beta,
            ..self.cfg.clone()
        }
    }

    /// Smooth model: mean force of the second half `F̄_s(dc)` (N, absolute) and its exact
    /// derivative `dF̄_s/d dc` (N/Hz) by autodiff (one forward + one backward pass).
    pub fn smooth_force_and_slope(&mut self, beta: f64, dc_hz: f64) -> Result<(f64, f64)> {
        self.journalled("s", &[beta, dc_hz], |m| {
            m.smooth_force_and_slope_raw(beta, dc_hz)
                .map(|(f, g)| vec![f, g])
        })
        .map(|y| (y[0], y[1]))
    }

    fn smooth_force_and_slope_raw(&mut self, beta: f64, dc_hz: f64) -> Result<(f64, f64)> {
        let cfg = self.smooth_config(beta);
        let ctx = self.ctx().autodiff();
        let dc = ctx.tensor(vec![dc_hz], [1, 1]).require_grad();
        let mut drive = DriveParams::scalars(
            &ctx,
            0.0,
            self.protocol.amp_hz,
            self.protocol.freq_hz,
            0.0,
            self.protocol.noise_sd_hz,
        );
        drive.dc_hz = dc.clone();
        let f = self.run_batch(&cfg, drive, 1, &ctx)?;
        let n = f.dims()[0];
        let mean = f.slice(n / 2..n).mean();
        let value = to_vec_f64(mean.clone())[0];
        let grads = mean.backward();
        let g = dc
            .grad(&grads)
            .map(to_vec_f64)
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        Ok((value, g))
    }

    /// Smooth model's constant-drive reference (N, absolute; no gradient).
    pub fn smooth_constant_reference(
        &mut self,
        beta: f64,
        dc_hz: f64,
        duration_s: f64,
    ) -> Result<f64> {
        let ctx = self.ctx();
        let cfg = NetworkConfig {
            duration_s,
            drive_noise: NoiseKind::Rectified,
            ..self.smooth_config(beta)
        };
        let f = self.run_batch(&cfg, DriveParams::constant(&ctx, dc_hz), 1, &ctx)?;
        let n = f.dims()[0];
        Ok(second_half_means(&to_vec_f64(f), n, 1, Normalisation::Absolute)[0])
    }
}

/// `L(dc) = |F̄(dc) − F_ref| / F_ref` on the hard model, with batched population values.
pub struct WatanabeObjective<'m> {
    /// The model.
    pub model: &'m mut WatanabeModel,
    /// Reference force (N).
    pub f_ref: f64,
    /// Every evaluated `(dc, F̄)`.
    pub evaluated: Vec<(f64, f64)>,
}

impl Objective for WatanabeObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.values(&[x.to_vec()])?[0])
    }
    /// Batched central difference of the loss (NOT autodiff; the hard model has no useful
    /// derivative): one rollout of `{x − h, x, x + h}`, h = 0.25 Hz.
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let h = 0.25;
        let v = self.values(&[vec![x[0] - h], x.to_vec(), vec![x[0] + h]])?;
        Ok((v[1], vec![(v[2] - v[0]) / (2.0 * h)]))
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let dcs: Vec<f64> = xs.iter().map(|x| x[0]).collect();
        let f = self.model.mean_forces(&dcs)?;
        self.evaluated
            .extend(dcs.iter().copied().zip(f.iter().copied()));
        Ok(f.iter()
            .map(|v| (v - self.f_ref).abs() / self.f_ref)
            .collect())
    }
}

/// `L_s(dc) = ((F̄_s(dc) − F_ref,s) / F_ref,s)²` on the smooth model with exact autodiff gradient
/// (squared so L-BFGS sees a smooth minimum; reported loss is its square root).
pub(super) struct SmoothObjective<'m> {
    pub(super) model: &'m mut WatanabeModel,
    pub(super) beta: f64,
    pub(super) f_ref: f64,
    pub(super) evaluated: Vec<(f64, f64)>,
}

impl Objective for SmoothObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.value_and_grad(x)?.0)
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (f, g) = self.model.smooth_force_and_slope(self.beta, x[0])?;
        self.evaluated.push((x[0], f));
        let r = (f - self.f_ref) / self.f_ref;
        Ok((r * r, vec![2.0 * r * g / self.f_ref]))
    }
}
