//! The descending drive of the event-time network and its parameter tangents.
//!
//! Rate at step `k` (`t_k = k·dt`, Hz), held constant over `[t_k, t_{k+1})`:
//!
//! ```text
//! r_k = max(0, b(t_k; θ) + σ·ξ_k)
//! b(t) = DC + A·sin(2π f t + φ)              (sine drive, MyoGen's Watanabe protocol)
//! b(t) = Σ_j w_j(t)·v_j                       (piecewise-linear drive through knots v_j)
//! ```
//!
//! with ξ_k the network's seeded noise (`NetworkConfig::drive_noise_spec`, shared with the
//! tensor network). The tangent `∂r_k/∂p` of every requested parameter is exact: `1`, `sin(…)`,
//! `ξ_k` or the hat weight `w_j(t_k)` where `r_k > 0`, and `0` where the clip is active.

use serde::{Deserialize, Serialize};

use crate::drive::piecewise::KnotTimes;
use crate::error::{Error, Result, check};

/// A drive profile (all rates in Hz, times in s).
#[derive(Clone, Debug, PartialEq)]
pub enum EventDrive {
    /// `DC + A·sin(2π f t + φ) + σ ξ`.
    Sine {
        /// DC offset (Hz).
        dc_hz: f64,
        /// Oscillation amplitude A (Hz).
        amp_hz: f64,
        /// Oscillation frequency f (Hz).
        freq_hz: f64,
        /// Phase φ (rad).
        phase_rad: f64,
        /// Noise standard deviation σ (Hz).
        noise_sd_hz: f64,
    },
    /// Piecewise-linear profile through `values_hz` at `knots` plus `σ ξ`.
    Knots {
        /// Knot times (s).
        knots: KnotTimes,
        /// Knot values (Hz), one per knot.
        values_hz: Vec<f64>,
        /// Noise standard deviation σ (Hz).
        noise_sd_hz: f64,
    },
}

impl EventDrive {
    /// MyoGen's Watanabe oscillating protocol `DC + 20·sin(2π·20 t) + N(0, 1)` (Hz).
    pub fn watanabe(dc_hz: f64) -> Self {
        EventDrive::Sine {
            dc_hz,
            amp_hz: 20.0,
            freq_hz: 20.0,
            phase_rad: 0.0,
            noise_sd_hz: 1.0,
        }
    }

    /// Checks every value (finite; σ, f ≥ 0; one value per knot).
    pub fn validate(&self) -> Result<()> {
        match self {
            EventDrive::Sine {
                dc_hz,
                amp_hz,
                freq_hz,
                phase_rad,
                noise_sd_hz,
            } => {
                check::finite("dc_hz", *dc_hz)?;
                check::finite("amp_hz", *amp_hz)?;
                check::non_negative("freq_hz", *freq_hz)?;
                check::finite("phase_rad", *phase_rad)?;
                check::non_negative("noise_sd_hz", *noise_sd_hz)?;
            }
            EventDrive::Knots {
                knots,
                values_hz,
                noise_sd_hz,
            } => {
                if values_hz.len() != knots.len() {
                    return Err(Error::shape("values_hz", knots.len(), values_hz.len()));
                }
                check::all_finite("values_hz", values_hz)?;
                check::non_negative("noise_sd_hz", *noise_sd_hz)?;
            }
        }
        Ok(())
    }

    /// Whether `p` is a parameter of this drive (the synaptic weight always is).
    pub fn has(&self, p: Param) -> bool {
        match (self, p) {
            (_, Param::Weight | Param::NoiseSd) => true,
            (EventDrive::Sine { .. }, Param::Dc | Param::Amp) => true,
            (EventDrive::Knots { values_hz, .. }, Param::Knot(j)) => j < values_hz.len(),
            _ => false,
        }
    }

    /// Value of parameter `p` (Hz; the weight is not a drive value: error).
    pub fn get(&self, p: Param) -> Result<f64> {
        match (self, p) {
            (EventDrive::Sine { dc_hz, .. }, Param::Dc) => Ok(*dc_hz),
            (EventDrive::Sine { amp_hz, .. }, Param::Amp) => Ok(*amp_hz),
            (EventDrive::Sine { noise_sd_hz, .. }, Param::NoiseSd)
            | (EventDrive::Knots { noise_sd_hz, .. }, Param::NoiseSd) => Ok(*noise_sd_hz),
            (EventDrive::Knots { values_hz, .. }, Param::Knot(j)) if j < values_hz.len() => {
                Ok(values_hz[j])
            }
            _ => Err(Error::invalid(
                "parameter",
                p.name(),
                "a parameter of this drive",
            )),
        }
    }

    /// A copy with parameter `p` set to `v` (Hz).
    pub fn with(&self, p: Param, v: f64) -> Result<Self> {
        let mut d = self.clone();
        match (&mut d, p) {
            (EventDrive::Sine { dc_hz, .. }, Param::Dc) => *dc_hz = v,
            (EventDrive::Sine { amp_hz, .. }, Param::Amp) => *amp_hz = v,
            (EventDrive::Sine { noise_sd_hz, .. }, Param::NoiseSd)
            | (EventDrive::Knots { noise_sd_hz, .. }, Param::NoiseSd) => *noise_sd_hz = v,
            (EventDrive::Knots { values_hz, .. }, Param::Knot(j)) if j < values_hz.len() => {
                values_hz[j] = v
            }
            _ => {
                return Err(Error::invalid(
                    "parameter",
                    p.name(),
                    "a parameter of this drive",
                ));
            }
        }
        d.validate()?;
        Ok(d)
    }

    /// The rate trace `r_k` (Hz, `n_steps`) and its tangents `∂r_k/∂p` for `params`
    /// (`[params.len() · n_steps]`, parameter-major; zero rows for the weight) from noise `xi`.
    pub fn trace(
        &self,
        params: &[Param],
        xi: &[f64],
        n_steps: usize,
        dt_s: f64,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        self.validate()?;
        if xi.len() != n_steps {
            return Err(Error::shape("drive noise", n_steps, xi.len()));
        }
        for &p in params {
            if !self.has(p) {
                return Err(Error::invalid(
                    "parameter",
                    p.name(),
                    "a parameter of this drive",
                ));
            }
        }
        let np = params.len();
        let mut r = vec![0.0; n_steps];
        let mut dr = vec![0.0; np * n_steps];
        for k in 0..n_steps {
            let t = k as f64 * dt_s;
            let (base, sigma) = match self {
                EventDrive::Sine {
                    dc_hz,
                    amp_hz,
                    freq_hz,
                    phase_rad,
                    noise_sd_hz,
                } => (
                    dc_hz + amp_hz * (2.0 * std::f64::consts::PI * freq_hz * t + phase_rad).sin(),
                    *noise_sd_hz,
                ),
                EventDrive::Knots {
                    knots,
                    values_hz,
                    noise_sd_hz,
                } => {
                    let (j, a, b) = knots.weights_at(t);
                    (a * values_hz[j] + b * values_hz[j + 1], *noise_sd_hz)
                }
            };
            let raw = base + sigma * xi[k];
            if raw <= 0.0 {
                continue;
            }
            r[k] = raw;
            for (q, &p) in params.iter().enumerate() {
                dr[q * n_steps + k] = match (self, p) {
                    (_, Param::Weight) => 0.0,
                    (_, Param::NoiseSd) => xi[k],
                    (_, Param::Dc) => 1.0,
                    (
                        EventDrive::Sine {
                            freq_hz, phase_rad, ..
                        },
                        Param::Amp,
                    ) => (2.0 * std::f64::consts::PI * freq_hz * t + phase_rad).sin(),
                    (EventDrive::Knots { knots, .. }, Param::Knot(j)) => {
                        let (i, a, b) = knots.weights_at(t);
                        if i == j {
                            a
                        } else if i + 1 == j {
                            b
                        } else {
                            0.0
                        }
                    }
                    _ => 0.0,
                };
            }
        }
        Ok((r, dr))
    }
}

/// A differentiable parameter of the event-time network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    /// DC of the sine drive (Hz).
    Dc,
    /// Oscillation amplitude of the sine drive (Hz).
    Amp,
    /// Drive noise standard deviation σ (Hz).
    NoiseSd,
    /// Value of knot `j` of the piecewise-linear drive (Hz).
    Knot(usize),
    /// Synaptic weight DD → MN (S; before the fast pool's synaptic gain).
    Weight,
}

impl Param {
    /// A short name with its unit, e.g. `dc (Hz)`.
    pub fn name(&self) -> String {
        match self {
            Param::Dc => "dc (Hz)".into(),
            Param::Amp => "amp (Hz)".into(),
            Param::NoiseSd => "noise_sd (Hz)".into(),
            Param::Knot(j) => format!("knot[{j}] (Hz)"),
            Param::Weight => "weight (S)".into(),
        }
    }
}

impl std::str::FromStr for Param {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let l = s.to_ascii_lowercase();
        if let Some(j) = l.strip_prefix("knot") {
            return j
                .trim_matches(|c| c == '[' || c == ']' || c == '_')
                .parse()
                .map(Param::Knot)
                .map_err(|_| Error::invalid("parameter", s, "knot<j> with j a knot index"));
        }
        match l.as_str() {
            "dc" => Ok(Param::Dc),
            "amp" => Ok(Param::Amp),
            "noise_sd" | "sigma" => Ok(Param::NoiseSd),
            "weight" | "w" => Ok(Param::Weight),
            _ => Err(Error::invalid(
                "parameter",
                s,
                "dc, amp, noise_sd, weight or knot<j>",
            )),
        }
    }
}
