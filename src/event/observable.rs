//! Observables of an event-time run and their exact derivatives (given the run's tangents).
//!
//! Every observable is a continuous function of the force samples and spike times, so its
//! derivative between events is exact:
//! - mean force over a window `[t0, t1)` (N): `F̄ = (1/N_w) Σ_k F(t_k)`;
//! - force amplitude at frequency f (N): `|Z|·2/N_w`, `Z = Σ_k (F(t_k) − F̄) e^{−2πi f t_k}`;
//! - discharge rates (Hz) as a tapered count `Σ_s w(t_s) / ∫w` with a raised-cosine taper of
//!   length `taper_s` at both ends of the window (`w` is C¹, so a spike moving across the
//!   window edge changes the count smoothly; `∫w = t1 − t0 − taper`): pool mean (over all units)
//!   or one unit's.

use serde::{Deserialize, Serialize};

use super::sim::EventRun;
use crate::error::{Error, Result, check};

/// What to differentiate (times in s).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observable {
    /// Mean force over `[t0_s, t1_s)` (N).
    MeanForce {
        /// Window start (s).
        t0_s: f64,
        /// Window end (s).
        t1_s: f64,
    },
    /// Amplitude of the force's Fourier component at `freq_hz` over the window (N).
    ForceAmplitude {
        /// Window start (s).
        t0_s: f64,
        /// Window end (s).
        t1_s: f64,
        /// Frequency (Hz).
        freq_hz: f64,
    },
    /// Mean discharge rate of the pool (all units, Hz), tapered count.
    PoolRate {
        /// Window start (s).
        t0_s: f64,
        /// Window end (s).
        t1_s: f64,
        /// Taper length at each end (s).
        taper_s: f64,
    },
    /// Discharge rate of one unit (Hz), tapered count.
    UnitRate {
        /// Unit index.
        unit: usize,
        /// Window start (s).
        t0_s: f64,
        /// Window end (s).
        t1_s: f64,
        /// Taper length at each end (s).
        taper_s: f64,
    },
}

impl Observable {
    /// A short label with the unit.
    pub fn label(&self) -> String {
        match self {
            Observable::MeanForce { .. } => "mean force (N)".into(),
            Observable::ForceAmplitude { freq_hz, .. } => {
                format!("force amplitude at {freq_hz} Hz (N)")
            }
            Observable::PoolRate { .. } => "pool mean rate (Hz)".into(),
            Observable::UnitRate { unit, .. } => format!("unit {unit} rate (Hz)"),
        }
    }

    fn window(&self) -> (f64, f64) {
        match *self {
            Observable::MeanForce { t0_s, t1_s }
            | Observable::ForceAmplitude { t0_s, t1_s, .. }
            | Observable::PoolRate { t0_s, t1_s, .. }
            | Observable::UnitRate { t0_s, t1_s, .. } => (t0_s, t1_s),
        }
    }

    /// Checks the window against the run's duration `duration_s` (and the unit index).
    pub fn validate(&self, duration_s: f64, n_units: usize) -> Result<()> {
        let (t0, t1) = self.window();
        check::non_negative("observable.t0_s", t0)?;
        if !(t1 > t0 && t1 <= duration_s + 1e-12) {
            return Err(Error::invalid(
                "observable.t1_s",
                t1,
                format!("in (t0_s = {t0}, duration = {duration_s}] s"),
            ));
        }
        match *self {
            Observable::PoolRate { taper_s, .. } | Observable::UnitRate { taper_s, .. } => {
                if !(taper_s >= 0.0 && taper_s < (t1 - t0) / 2.0) {
                    return Err(Error::invalid(
                        "observable.taper_s",
                        taper_s,
                        format!("in [0, (t1 − t0)/2 = {}) s", (t1 - t0) / 2.0),
                    ));
                }
            }
            Observable::ForceAmplitude { freq_hz, .. } => {
                check::positive("observable.freq_hz", freq_hz)?;
            }
            Observable::MeanForce { .. } => {}
        }
        if let Observable::UnitRate { unit, .. } = *self
            && unit >= n_units
        {
            return Err(Error::invalid(
                "observable.unit",
                unit,
                format!("< number of units {n_units}"),
            ));
        }
        Ok(())
    }

    /// Value and gradient (one entry per parameter of the run).
    pub fn eval(&self, run: &EventRun) -> Result<(f64, Vec<f64>)> {
        let dt = run.dt_s;
        let nt = run.n_steps();
        self.validate(nt as f64 * dt, run.spikes_s.len())?;
        let np = run.params.len();
        let (t0, t1) = self.window();
        // force samples at t = (k + 1)·dt inside [t0, t1)
        let ks: Vec<usize> = (0..nt)
            .filter(|&k| {
                let t = (k + 1) as f64 * dt;
                t >= t0 - 1e-12 && t < t1 - 1e-12
            })
            .collect();
        match *self {
            Observable::MeanForce { .. } => {
                if ks.is_empty() {
                    return Err(Error::invalid(
                        "observable.t1_s",
                        t1,
                        "a window holding samples",
                    ));
                }
                let nw = ks.len() as f64;
                let v = ks.iter().map(|&k| run.force_n[k]).sum::<f64>() / nw;
                let g = (0..np)
                    .map(|q| ks.iter().map(|&k| run.force_tan[q * nt + k]).sum::<f64>() / nw)
                    .collect();
                Ok((v, g))
            }
            Observable::ForceAmplitude { freq_hz, .. } => {
                if ks.len() < 2 {
                    return Err(Error::invalid(
                        "observable.t1_s",
                        t1,
                        "a window holding samples",
                    ));
                }
                let nw = ks.len() as f64;
                let w = 2.0 * std::f64::consts::PI * freq_hz;
                let dft = |x: &dyn Fn(usize) -> f64| {
                    let mean = ks.iter().map(|&k| x(k)).sum::<f64>() / nw;
                    let (mut re, mut im) = (0.0, 0.0);
                    for &k in &ks {
                        let t = (k + 1) as f64 * dt;
                        re += (x(k) - mean) * (w * t).cos();
                        im -= (x(k) - mean) * (w * t).sin();
                    }
                    (re, im)
                };
                let (re, im) = dft(&|k| run.force_n[k]);
                let mag = (re * re + im * im).sqrt();
                let g = (0..np)
                    .map(|q| {
                        let (dre, dim) = dft(&|k| run.force_tan[q * nt + k]);
                        if mag > 0.0 {
                            2.0 / nw * (re * dre + im * dim) / mag
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Ok((2.0 / nw * mag, g))
            }
            Observable::PoolRate { taper_s, .. } | Observable::UnitRate { taper_s, .. } => {
                let units: Vec<usize> = match *self {
                    Observable::UnitRate { unit, .. } => vec![unit],
                    _ => (0..run.spikes_s.len()).collect(),
                };
                let norm = (t1 - t0 - taper_s) * units.len() as f64;
                let mut v = 0.0;
                let mut g = vec![0.0; np];
                for &i in &units {
                    for (s, &ts) in run.spikes_s[i].iter().enumerate() {
                        let (w, dw) = taper(ts, t0, t1, taper_s);
                        v += w;
                        if dw != 0.0 {
                            for (q, gq) in g.iter_mut().enumerate() {
                                *gq += dw * run.spike_tan[i][s * np + q];
                            }
                        }
                    }
                }
                Ok((v / norm, g.into_iter().map(|x| x / norm).collect()))
            }
        }
    }
}

/// Raised-cosine tapered window on `[t0, t1]` with ramps of length `taper` (s): value and slope
/// (1/s). `w = ½(1 − cos(π (t − t0)/taper))` on the rising ramp, 1 inside, mirrored at `t1`.
pub fn taper(t: f64, t0: f64, t1: f64, taper: f64) -> (f64, f64) {
    if t < t0 || t > t1 {
        return (0.0, 0.0);
    }
    if taper <= 0.0 {
        return (1.0, 0.0);
    }
    let pi = std::f64::consts::PI;
    if t < t0 + taper {
        let x = pi * (t - t0) / taper;
        (0.5 * (1.0 - x.cos()), 0.5 * pi / taper * x.sin())
    } else if t > t1 - taper {
        let x = pi * (t1 - t) / taper;
        (0.5 * (1.0 - x.cos()), -0.5 * pi / taper * x.sin())
    } else {
        (1.0, 0.0)
    }
}
