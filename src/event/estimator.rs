//! The spike-creation term of the gradient of an expected observable.
//!
//! The pathwise (event-time) derivative of one realisation misses the spikes that appear or
//! vanish when a sub-threshold maximum `v_p` of a unit's membrane reaches θ. For the expected
//! observable `E[F]` that boundary contributes (smoothed perturbation analysis; Gong & Ho 1987,
//! Fu & Hu 1997)
//!
//! ```text
//! ∂E[F]/∂p = E[∂F/∂p |pathwise] + E[ Σ_peaks δ(θ − v_p) · ∂v_p/∂p · ΔF_p ]
//! ```
//!
//! where `ΔF_p` is the change of the observable when the unit fires at the maximum. The density
//! of maxima at θ is estimated from the maxima that fall within a band `b` below θ with a
//! one-sided boundary kernel, `δ(θ − v) ≈ K(u)/b`, `u = (θ − v)/b ∈ [0, 1)`:
//! `K = 1` (uniform, bias O(b)) or `K = 4 − 6u` (linear boundary kernel: `∫K = 1`, `∫uK = 0`,
//! bias O(b²)). `ΔF_p` is exact up to a horizon: the motor neurons do not interact, so the
//! alternative path is the unit alone, reset at the maximum and run on the same synaptic input
//! for `horizon_s` ([`super::paths::CreationOpts`]); its spikes replace the primal ones in the
//! horizon (with their twitch gains), after which the two paths are taken as equal.

use super::observable::{Observable, taper};
use super::sim::{EventNetwork, EventRun};
use crate::error::{Error, Result};
use crate::muscle::force::GainMode;
use crate::muscle::twitch::fuglevand_gain_f64;

/// Boundary kernel of the density estimate at threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// `K(u) = 1` on `[0, 1)`.
    Uniform,
    /// `K(u) = 4 − 6u` on `[0, 1)` (first moment 0).
    Linear,
}

impl Kernel {
    /// `K(u)` for `u ∈ [0, 1)`, 0 outside.
    pub fn weight(&self, u: f64) -> f64 {
        if !(0.0..1.0).contains(&u) {
            return 0.0;
        }
        match self {
            Kernel::Uniform => 1.0,
            Kernel::Linear => 4.0 - 6.0 * u,
        }
    }
}

/// The observable linearised in the spike trains: the effect of one spike of unit `i` at `t`
/// with twitch gain `g`.
struct Linearised<'a> {
    net: &'a EventNetwork,
    obs: Observable,
    /// Weights `c_k` of the force samples (force observables), `dObs = Σ_k c_k dF_k`.
    force_weights: Option<Vec<f64>>,
    dt: f64,
    n_units: usize,
}

impl<'a> Linearised<'a> {
    fn new(net: &'a EventNetwork, run: &EventRun, obs: Observable) -> Result<Self> {
        let dt = run.dt_s;
        let nt = run.n_steps();
        let in_window = |k: usize, t0: f64, t1: f64| {
            let t = (k + 1) as f64 * dt;
            t >= t0 - 1e-12 && t < t1 - 1e-12
        };
        let force_weights = match obs {
            Observable::MeanForce { t0_s, t1_s } => {
                let nw = (0..nt).filter(|&k| in_window(k, t0_s, t1_s)).count() as f64;
                Some(
                    (0..nt)
                        .map(|k| {
                            if in_window(k, t0_s, t1_s) {
                                1.0 / nw
                            } else {
                                0.0
                            }
                        })
                        .collect(),
                )
            }
            Observable::ForceAmplitude {
                t0_s,
                t1_s,
                freq_hz,
            } => {
                let ks: Vec<usize> = (0..nt).filter(|&k| in_window(k, t0_s, t1_s)).collect();
                let nw = ks.len() as f64;
                let w = 2.0 * std::f64::consts::PI * freq_hz;
                let mean = ks.iter().map(|&k| run.force_n[k]).sum::<f64>() / nw;
                let (mut re, mut im) = (0.0, 0.0);
                for &k in &ks {
                    let t = (k + 1) as f64 * dt;
                    re += (run.force_n[k] - mean) * (w * t).cos();
                    im -= (run.force_n[k] - mean) * (w * t).sin();
                }
                let mag = (re * re + im * im).sqrt().max(1e-300);
                // dA = (2/N)/|Z| · Σ_k (dF_k − dF̄)·Re(conj(Z) e^{−iωt_k})
                let proj: Vec<f64> = ks
                    .iter()
                    .map(|&k| {
                        let t = (k + 1) as f64 * dt;
                        re * (w * t).cos() - im * (w * t).sin()
                    })
                    .collect();
                let pm = proj.iter().sum::<f64>() / nw;
                let mut c = vec![0.0; nt];
                for (x, &k) in ks.iter().enumerate() {
                    c[k] = 2.0 / nw / mag * (proj[x] - pm);
                }
                Some(c)
            }
            Observable::PoolRate { .. } | Observable::UnitRate { .. } => None,
        };
        Ok(Self {
            net,
            obs,
            force_weights,
            dt,
            n_units: run.spikes_s.len(),
        })
    }

    fn effect(&self, i: usize, t: f64, gain: f64) -> f64 {
        match (&self.force_weights, self.obs) {
            (Some(c), _) => {
                let (fpk, tt, delay) = self.net.unit_twitch(i);
                let te = t + delay;
                let nt = c.len();
                let k0 = ((te / self.dt).floor() as usize).min(nt);
                let k1 = (((te + 12.0 * tt) / self.dt).ceil() as usize).min(nt);
                let mut s = 0.0;
                for (k, ck) in c.iter().enumerate().take(k1).skip(k0) {
                    let x = (k + 1) as f64 * self.dt - te;
                    if x > 0.0 && *ck != 0.0 {
                        s += ck * x / tt * (1.0 - x / tt).exp();
                    }
                }
                fpk * gain * s
            }
            (
                None,
                Observable::PoolRate {
                    t0_s,
                    t1_s,
                    taper_s,
                },
            ) => taper(t, t0_s, t1_s, taper_s).0 / ((t1_s - t0_s - taper_s) * self.n_units as f64),
            (
                None,
                Observable::UnitRate {
                    unit,
                    t0_s,
                    t1_s,
                    taper_s,
                },
            ) if unit == i => taper(t, t0_s, t1_s, taper_s).0 / (t1_s - t0_s - taper_s),
            _ => 0.0,
        }
    }

    fn gain(&self, i: usize, t: f64, prev: Option<f64>) -> f64 {
        match (self.net.config().gain, prev) {
            (GainMode::Fuglevand, Some(tp)) if t > tp => {
                fuglevand_gain_f64(self.net.unit_twitch(i).1 / (t - tp))
            }
            _ => 1.0,
        }
    }

    /// Effect of the spikes `train` (sorted) whose predecessor is `prev`; returns the sum and
    /// the last spike.
    fn train(&self, i: usize, train: &[f64], mut prev: Option<f64>) -> (f64, Option<f64>) {
        let mut s = 0.0;
        for &t in train {
            s += self.effect(i, t, self.gain(i, t, prev));
            prev = Some(t);
        }
        (s, prev)
    }
}

impl Linearised<'_> {
    /// Change of the observable when the unit's `primal` spikes in `[from, end)` are replaced by
    /// `alt` (the twitch gain of the first primal spike after `end` follows its new predecessor).
    fn replace(&self, i: usize, primal: &[f64], from: f64, end: f64, alt: &[f64]) -> f64 {
        let i0 = primal.partition_point(|&t| t < from);
        let i1 = primal.partition_point(|&t| t < end);
        let prev = if i0 > 0 { Some(primal[i0 - 1]) } else { None };
        let (a, a_last) = self.train(i, alt, prev);
        let (p, p_last) = self.train(i, &primal[i0..i1], prev);
        let mut delta = a - p;
        if i1 < primal.len() {
            let t = primal[i1];
            delta += self.effect(i, t, self.gain(i, t, a_last))
                - self.effect(i, t, self.gain(i, t, p_last));
        }
        delta
    }
}

/// The insertion estimate of the drive parameters' gradient (Poisson inputs):
///
/// ```text
/// ∂E[F]/∂p = Σ_i n_i ∫_0^T ∂r(t)/∂p · E[F(inputs + one spike at t on an input of i) − F] dt
/// ```
///
/// (the derivative of a Poisson functional in its intensity, Russo–Margulis / Mecke formula; the
/// motor neurons do not interact and an input's spike reaches all of its `n` targets, so the
/// sum over inputs and their targets is a sum over motor units `i` with `n_i` inputs each).
/// Each unit's time integral is estimated from the points `t_m` of its sampling process
/// ([`super::paths::InsertionOpts`], predictable intensity λ): `Σ_m ∂r(t_m − D)/∂p · ΔF_i(t_m)/λ(t_m)`
/// (unbiased by the compensator of the sampling process), with `ΔF_i` from the alternative path. Unbiased up to the
/// horizon; no pathwise term (the spike-time shifts caused by the extra input are in `ΔF`).
/// The synaptic weight is not an intensity: its entry is 0 (use the pathwise derivative).
pub fn insertion_term(net: &EventNetwork, run: &EventRun, obs: Observable) -> Result<Vec<f64>> {
    if net.config().process != crate::drive::generator::SpikeProcess::Poisson {
        return Err(Error::invalid(
            "process",
            format!("{:?}", net.config().process),
            "poisson (the insertion estimator differentiates Poisson intensities)",
        ));
    }
    let np = run.params.len();
    let nt = run.n_steps();
    let mut g = vec![0.0; np];
    for c in insertion_contributions(net, run, obs)? {
        let kg = ((c.t_gen_s / run.dt_s).floor() as usize).min(nt - 1);
        for (q, gq) in g.iter_mut().enumerate() {
            *gq += c.weighted_delta * run.rate_tan[q * nt + kg];
        }
    }
    Ok(g)
}

/// One insertion's contribution before the drive tangent: `n_i · ΔF_i / λ`.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    /// Motor unit.
    pub unit: usize,
    /// Generator time of the inserted input (s).
    pub t_gen_s: f64,
    /// `n_i · ΔF / λ` (observable units × s).
    pub weighted_delta: f64,
    /// Spikes of the alternative path minus the primal's over the horizon.
    pub spike_count_change: i64,
}

/// Every non-zero insertion contribution of a run (for [`insertion_term`] and diagnostics).
pub fn insertion_contributions(
    net: &EventNetwork,
    run: &EventRun,
    obs: Observable,
) -> Result<Vec<Contribution>> {
    let lin = Linearised::new(net, run, obs)?;
    let mut out = Vec::new();
    for ins in &run.insertions {
        let primal = &run.spikes_s[ins.unit];
        let delta = lin.replace(
            ins.unit,
            primal,
            ins.t_arrival_s,
            ins.end_s,
            &ins.alt_spikes_s,
        );
        if delta == 0.0 {
            continue;
        }
        let n_pri = primal.partition_point(|&t| t < ins.end_s)
            - primal.partition_point(|&t| t < ins.t_arrival_s);
        out.push(Contribution {
            unit: ins.unit,
            t_gen_s: ins.t_gen_s,
            weighted_delta: run.n_inputs_per_unit[ins.unit] as f64 * ins.inv_intensity_s * delta,
            spike_count_change: ins.alt_spikes_s.len() as i64 - n_pri as i64,
        });
    }
    Ok(out)
}

/// The creation term `Σ_peaks K(u)/b · ∂v_p/∂p · ΔF_p` of one run (one entry per parameter of
/// the run). The run must have been made with [`super::sim::RunOptions::creation`] set; `band_v`
/// must be the band used there.
pub fn creation_term(
    net: &EventNetwork,
    run: &EventRun,
    obs: Observable,
    band_v: f64,
    kernel: Kernel,
) -> Result<Vec<f64>> {
    if !(band_v.is_finite() && band_v > 0.0) {
        return Err(Error::invalid(
            "creation.band_v",
            band_v,
            "finite and > 0 (V)",
        ));
    }
    let lin = Linearised::new(net, run, obs)?;
    let np = run.params.len();
    let mut g = vec![0.0; np];
    for p in &run.peaks {
        let u = (net.threshold_v(p.unit) - p.v) / band_v;
        let kw = kernel.weight(u) / band_v;
        if kw == 0.0 {
            continue;
        }
        let delta = lin.replace(
            p.unit,
            &run.spikes_s[p.unit],
            p.alt_spikes_s[0],
            p.end_s,
            &p.alt_spikes_s,
        );
        for (q, gq) in g.iter_mut().enumerate() {
            *gq += kw * p.v_tan[q] * delta;
        }
    }
    Ok(g)
}
