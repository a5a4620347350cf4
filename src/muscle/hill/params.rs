//! Parameters of the Hill muscle–tendon model and its Fuglevand motor-unit pool (MODEL.md §3.2,
//! §5.4), with validation and the host-side (f64) per-unit constants.
//!
//! Units: lengths of the fascicle in `L0` (optimal fascicle length), velocities in `L0/s`, forces
//! normalised by `F0` unless a field says N; the geometry polynomials map the joint angle **in
//! radians** to metres (MyoGen 0.12's Cython path, fixtures README D-H1 — MODEL.md says degrees).

use crate::error::{Error, Result, check};

/// Force–length curve of one fibre type: `fL(LM) = exp(−|(LM^b − 1)/o|^r)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForceLength {
    /// Exponent `b` (> 0).
    pub b: f64,
    /// Width `o` (> 0).
    pub o: f64,
    /// Shape exponent `r` (> 0; ≥ 1 keeps `fL` differentiable at `LM = 1`).
    pub r: f64,
}

/// Force–velocity curve of one fibre type (velocity `V` in `L0/s`, `V > 0` lengthening):
/// `V > 0`: `(bv − V·(av0 + av1·LM + av2·LM²)) / (bv + V)`;
/// `V ≤ 0`: `(vmax − V) / (vmax + V·(cv0 + cv1·LM))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForceVelocity {
    /// Maximal shortening velocity (L0/s, < 0).
    pub vmax: f64,
    /// Lengthening-branch coefficients.
    pub av0: f64,
    /// Lengthening-branch coefficient of `LM`.
    pub av1: f64,
    /// Lengthening-branch coefficient of `LM²`.
    pub av2: f64,
    /// Lengthening-branch constant `bv` (L0/s, > 0).
    pub bv: f64,
    /// Shortening-branch constant (≥ 0).
    pub cv0: f64,
    /// Shortening-branch coefficient of `LM` (≥ 0).
    pub cv1: f64,
}

/// Hill muscle–tendon constants (`HillModel.create_default_muscle_parameters`).
#[derive(Clone, Debug, PartialEq)]
pub struct HillParams {
    /// Pennation angle at the optimal length (rad), `φ = asin(sin α0 / LM)`.
    pub alfa0_rad: f64,
    /// Maximal isometric force `F0` (N).
    pub f0_n: f64,
    /// Optimal fascicle length `L0` (m).
    pub l0_m: f64,
    /// Moving mass `m` (kg).
    pub mass_kg: f64,
    /// Passive element exponent `Kpe`.
    pub kpe: f64,
    /// Passive viscosity `b` (F0 per L0/s).
    pub b_visc: f64,
    /// Passive strain scale `Em_0`.
    pub em0: f64,
    /// Tendon slack-ish reference length `LT_0` (m).
    pub lt0_m: f64,
    /// Tendon stiffness `Kse` (F0 per LT_0).
    pub kse: f64,
    /// Tendon softplus width `cT` (LT_0).
    pub ct: f64,
    /// Tendon reference length `LT_r` (LT_0).
    pub lt_r: f64,
    /// Force–length curves of type I and type II fibres.
    pub fl: [ForceLength; 2],
    /// Force–velocity curves of type I and type II fibres.
    pub fv: [ForceVelocity; 2],
    /// MTU length polynomial (m), increasing powers of the angle in rad.
    pub ak: [f64; 5],
    /// Moment-arm polynomial (m), increasing powers of the angle in rad.
    pub bk: [f64; 5],
}

const FL_FDI: [ForceLength; 2] = [
    ForceLength {
        b: 2.3,
        o: 1.12,
        r: 1.62,
    },
    ForceLength {
        b: 1.55,
        o: 0.75,
        r: 2.12,
    },
];
const FV_FDI: [ForceVelocity; 2] = [
    ForceVelocity {
        vmax: -7.88,
        av0: -4.7,
        av1: 8.41,
        av2: -5.34,
        bv: 0.35,
        cv0: 5.88,
        cv1: 0.0,
    },
    ForceVelocity {
        vmax: -9.15,
        av0: -1.53,
        av1: 0.0,
        av2: 0.0,
        bv: 0.69,
        cv0: 5.7,
        cv1: 9.18,
    },
];

impl HillParams {
    /// First dorsal interosseous (MyoGen `"FDI"`; MODEL.md §3.2, `hill_meta.json`).
    pub fn fdi() -> Self {
        Self {
            alfa0_rad: 0.1606,
            f0_n: 33.75,
            l0_m: 38.9e-3,
            mass_kg: 4.67e-3,
            kpe: 5.0,
            b_visc: 0.01,
            em0: 0.5,
            lt0_m: 49e-3,
            kse: 27.8,
            ct: 0.0047,
            lt_r: 0.964,
            fl: FL_FDI,
            fv: FV_FDI,
            ak: [
                85.199931e-3,
                -1.184782e-4,
                -4.6264098e-7,
                9.416143e-10,
                4.854117e-12,
            ],
            bk: [6.82847e-3, 4.8396e-5, 3.6942e-8, 6.3113e-10, -6.35837e-11],
        }
    }

    /// Soleus (MyoGen `"Sol"`; MODEL.md §3.2): FDI with its own mass, size and geometry.
    pub fn soleus() -> Self {
        Self {
            alfa0_rad: 0.494,
            f0_n: 3586.0,
            l0_m: 49e-3,
            mass_kg: 0.526,
            b_visc: 0.005,
            lt0_m: 0.289,
            ak: [0.323, 7.219e-4, -2.243e-6, -3.148e-8, 9.274e-11],
            bk: [-0.041, 2.574e-4, 5.451e-6, -2.219e-8, -5.494e-11],
            ..Self::fdi()
        }
    }

    /// Checks every field (typed error naming the field and value).
    pub fn validate(&self) -> Result<()> {
        check::in_range("hill.alfa0_rad", self.alfa0_rad, 0.0, 1.5)?;
        for (f, v) in [
            ("hill.f0_n", self.f0_n),
            ("hill.l0_m", self.l0_m),
            ("hill.mass_kg", self.mass_kg),
            ("hill.em0", self.em0),
            ("hill.lt0_m", self.lt0_m),
            ("hill.kse", self.kse),
            ("hill.ct", self.ct),
            ("hill.lt_r", self.lt_r),
        ] {
            check::positive(f, v)?;
        }
        check::non_negative("hill.kpe", self.kpe)?;
        check::non_negative("hill.b_visc", self.b_visc)?;
        for (i, fl) in self.fl.iter().enumerate() {
            check::positive(&format!("hill.fl[{i}].b"), fl.b)?;
            check::positive(&format!("hill.fl[{i}].o"), fl.o)?;
            check::positive(&format!("hill.fl[{i}].r"), fl.r)?;
        }
        for (i, fv) in self.fv.iter().enumerate() {
            let vmax = check::finite(&format!("hill.fv[{i}].vmax"), fv.vmax)?;
            if vmax >= 0.0 {
                return Err(Error::invalid(
                    format!("hill.fv[{i}].vmax"),
                    vmax,
                    "finite and < 0 (shortening, L0/s)",
                ));
            }
            check::positive(&format!("hill.fv[{i}].bv"), fv.bv)?;
            check::non_negative(&format!("hill.fv[{i}].cv0"), fv.cv0)?;
            check::non_negative(&format!("hill.fv[{i}].cv1"), fv.cv1)?;
            for (n, v) in [("av0", fv.av0), ("av1", fv.av1), ("av2", fv.av2)] {
                check::finite(&format!("hill.fv[{i}].{n}"), v)?;
            }
        }
        check::all_finite("hill.ak", &self.ak)?;
        check::all_finite("hill.bk", &self.bk)?;
        Ok(())
    }

    /// Smallest admissible fascicle length (L0): `sin α0` (pennation reaches 90°), with a margin.
    pub fn min_length_l0(&self) -> f64 {
        self.alfa0_rad.sin() * 1.05
    }

    /// `cos φ(LM) = sqrt(1 − (sin α0 / LM)²)` (host f64).
    pub fn cos_pennation(&self, lm: f64) -> f64 {
        let s = self.alfa0_rad.sin() / lm;
        (1.0 - s * s).sqrt()
    }

    /// Polynomial `Σ k_i θ^i` (θ in rad) (host f64).
    pub fn poly(k: &[f64; 5], angle_rad: f64) -> f64 {
        k.iter().rev().fold(0.0, |acc, c| acc * angle_rad + c)
    }

    /// Tendon force `F_SE` (F0) at angle (rad) and fascicle length (L0) (host f64):
    /// `LT = (MTU(θ) − LM·L0·cos φ)/LT_0`, `F_SE = Kse·cT·ln(1 + e^{(LT − LT_r)/cT})`.
    pub fn tendon_force_f0(&self, angle_rad: f64, lm: f64) -> f64 {
        let lt = (Self::poly(&self.ak, angle_rad) - lm * self.l0_m * self.cos_pennation(lm))
            / self.lt0_m;
        let x = (lt - self.lt_r) / self.ct;
        self.kse * self.ct * (x.max(0.0) + (-x.abs()).exp().ln_1p())
    }

    /// Passive force `F_PE(LM, V) = e^{Kpe(LM−1)/Em_0}/e^{Kpe} + b·V` (F0) (host f64).
    pub fn passive_force_f0(&self, lm: f64, v: f64) -> f64 {
        (self.kpe * (lm - 1.0) / self.em0).exp() / self.kpe.exp() + self.b_visc * v
    }

    /// Resting fascicle length (L0) at a fixed angle (rad) with zero activation: the root of
    /// `F_SE·cos φ = F_PE(LM, 0)·cos² φ` (bisection to 1e-15). MyoGen 0.12 obtains the same
    /// length (`getLHold`) by integrating the model to rest; at 0 rad (FDI) it is 1.00585086…
    pub fn rest_length_l0(&self, angle_rad: f64) -> Result<f64> {
        self.validate()?;
        check::in_range(
            "angle_rad",
            angle_rad,
            -std::f64::consts::PI,
            std::f64::consts::PI,
        )?;
        let g = |lm: f64| {
            let c = self.cos_pennation(lm);
            self.tendon_force_f0(angle_rad, lm) * c - self.passive_force_f0(lm, 0.0) * c * c
        };
        let (mut lo, mut hi) = (self.min_length_l0(), 3.0);
        if !(g(lo) > 0.0 && g(hi) < 0.0) {
            return Err(Error::invalid(
                "angle_rad",
                angle_rad,
                "an angle at which the passive muscle–tendon unit has a rest length in (sin α0, 3) L0",
            ));
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if g(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
            if hi - lo < 1e-15 {
                break;
            }
        }
        Ok(0.5 * (lo + hi))
    }

    /// Largest time step (s) for which the explicit RK4 step is stable with a margin: the
    /// stiffest linearised rate of `dV/dt` is `λ = F0/m · (b + max fV'(0))` (viscous: passive
    /// viscosity plus the force–velocity slope at full activation) and the tendon gives
    /// `ω = sqrt(F0/m · Kse·L0/LT_0)`; RK4 is stable for `dt·max(λ, ω) ≲ 2.78`, this asks ≤ 2.5.
    pub fn max_stable_dt_s(&self) -> f64 {
        let slope = self
            .fv
            .iter()
            .map(|fv| {
                let a = fv.av0 + fv.av1 + fv.av2;
                let lengthening = (-(a + 1.0) / fv.bv).abs();
                let shortening = ((1.0 + fv.cv0 + fv.cv1) / fv.vmax).abs();
                lengthening.max(shortening)
            })
            .fold(0.0f64, f64::max);
        let g = self.f0_n / self.mass_kg;
        let lam = g * (self.b_visc + slope);
        let omega = (g * self.kse * self.l0_m / self.lt0_m).sqrt();
        2.5 / lam.max(omega)
    }
}

/// The Fuglevand motor-unit pool driving the Hill model (MODEL.md §3.2; durType 1, satType 1).
#[derive(Clone, Debug, PartialEq)]
pub struct MotorPoolParams {
    /// Peak-twitch range `RP` (> 1).
    pub rp: f64,
    /// Peak twitch of the first unit `fP` (mN; cancels in `twiAmp`, kept for the record).
    pub fp: f64,
    /// Contraction-time range `RT` (> 1).
    pub rt: f64,
    /// Longest contraction time `Tl` (ms).
    pub tl_ms: f64,
    /// Saturation frequency of the first unit (Hz).
    pub fsatf_hz: f64,
    /// Saturation frequency of the last unit (Hz, ≥ `fsatf_hz`).
    pub lsatf_hz: f64,
    /// Number of type I (slow) units: the first `n_type1` units.
    pub n_type1: usize,
    /// Number of type II (fast) units.
    pub n_type2: usize,
}

impl MotorPoolParams {
    /// MyoGen's defaults (`RP = 130, fP = 3, RT = 3, Tl = 90 ms, 50–100 Hz`) with the pool of
    /// its example 11: 102 type I + 18 type II units.
    pub fn myogen_default() -> Self {
        Self {
            rp: 130.0,
            fp: 3.0,
            rt: 3.0,
            tl_ms: 90.0,
            fsatf_hz: 50.0,
            lsatf_hz: 100.0,
            n_type1: 102,
            n_type2: 18,
        }
    }

    /// Total number of units.
    pub fn n_units(&self) -> usize {
        self.n_type1 + self.n_type2
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        for (f, v) in [("pool.rp", self.rp), ("pool.rt", self.rt)] {
            if !(v.is_finite() && v > 1.0) {
                return Err(Error::invalid(f, v, "finite and > 1"));
            }
        }
        check::positive("pool.fp", self.fp)?;
        check::positive("pool.tl_ms", self.tl_ms)?;
        check::positive("pool.fsatf_hz", self.fsatf_hz)?;
        check::in_range("pool.lsatf_hz", self.lsatf_hz, self.fsatf_hz, 1e4)?;
        check::count_at_least("pool.n_units", self.n_units(), 1)?;
        Ok(())
    }

    /// Per-unit constants (host f64; see [`MotorUnits`]).
    pub fn units(&self) -> Result<MotorUnits> {
        self.validate()?;
        let n = self.n_units();
        let expo = self.rp.ln() / self.rt.ln();
        let mut p = Vec::with_capacity(n);
        let mut t_ms = Vec::with_capacity(n);
        let mut sat = Vec::with_capacity(n);
        for i in 0..n {
            let pi = (self.rp.ln() / n as f64 * (i + 1) as f64).exp();
            p.push(pi);
            t_ms.push(self.tl_ms * (1.0 / pi).powf(1.0 / expo));
            sat.push(if n == 1 {
                self.fsatf_hz
            } else {
                self.fsatf_hz + (self.lsatf_hz - self.fsatf_hz) * i as f64 / (n - 1) as f64
            });
        }
        let mut c = Vec::with_capacity(n);
        let mut tet_f = Vec::with_capacity(n);
        for i in 0..n {
            let (ci, ti) = saturation_constants(t_ms[i], sat[i]);
            c.push(ci);
            tet_f.push(ti);
        }
        let sum_p: f64 = p.iter().map(|pi| self.fp * pi).sum();
        let twi_amp = (0..n).map(|i| self.fp * p[i] / tet_f[i] / sum_p).collect();
        Ok(MotorUnits {
            p,
            t_ms,
            sat_freq_hz: sat,
            c,
            tet_f,
            twi_amp,
            n_type1: self.n_type1,
        })
    }
}

/// Per-unit constants of the pool (host f64).
#[derive(Clone, Debug, PartialEq)]
pub struct MotorUnits {
    /// Peak twitch `P_i = exp(ln(RP)/N · i)`, `i = 1..N`.
    pub p: Vec<f64>,
    /// Contraction time `T_i = Tl·(1/P_i)^{ln RT/ln RP}` (ms).
    pub t_ms: Vec<f64>,
    /// Saturation frequency (Hz), linear from `fsatf` to `lsatf`.
    pub sat_freq_hz: Vec<f64>,
    /// Saturation constant `c_i` of `sig(c, f) = (1 − e^{−cf})/(1 + e^{−cf})`.
    pub c: Vec<f64>,
    /// `tetF_i`: the saturated peak of a single twitch (1 Hz train).
    pub tet_f: Vec<f64>,
    /// `twiAmp_i = (fP·P_i/tetF_i)/Σ_j fP·P_j` (F0).
    pub twi_amp: Vec<f64>,
    /// The first `n_type1` units are type I.
    pub n_type1: usize,
}

/// Peak of the unit-amplitude twitch train at `rate_hz` over 0–3 s on MyoGen's 0.05 ms grid.
fn train_peak(t_ms: f64, rate_hz: f64) -> f64 {
    const DT: f64 = 0.05;
    let n = (3000.0 / DT).round() as usize;
    let isi = 1000.0 / rate_hz;
    // The spike train is x[idx_k] = 1/DT at idx_k = floor(k·isi/DT) (k·isi < 3000 ms); spikes
    // falling on the same sample collapse into one. Walked in order instead of stored.
    let mut k = 0usize;
    let mut next_spike = |after: usize| -> Option<usize> {
        loop {
            let t = k as f64 * isi;
            if t >= 3000.0 {
                return None;
            }
            let idx = (t / DT) as usize;
            k += 1;
            if idx >= after && idx < n {
                return Some(idx);
            }
            if idx >= n {
                return None;
            }
        }
    };
    let mut spike = next_spike(0);
    let a1 = 2.0 * (-DT / t_ms).exp();
    let a2 = (-2.0 * DT / t_ms).exp();
    let b = DT * DT / t_ms * (1.0 - DT / t_ms).exp();
    let (mut y1, mut y2, mut peak) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        // x[i − 1]
        let xi = if i > 0 && spike == Some(i - 1) {
            spike = next_spike(i);
            1.0 / DT
        } else {
            0.0
        };
        let y = b * xi + a1 * y1 - a2 * y2;
        peak = peak.max(y);
        y2 = y1;
        y1 = y;
    }
    peak
}

/// `(c, tetF)` for a unit of contraction time `t_ms` and saturation frequency `sat_hz`:
/// `max_t sig(c, f_train(t)) = 0.999` for a train at `sat_hz` — since `sig` is monotone this is
/// `c = 2·atanh(0.999)/max f` exactly (MyoGen solves the same equation by a secant, to ~1e-8) —
/// and `tetF = sig(c, max f_1Hz)`.
pub fn saturation_constants(t_ms: f64, sat_hz: f64) -> (f64, f64) {
    let c = 2.0 * 0.999f64.atanh() / train_peak(t_ms, sat_hz);
    let tet = (0.5 * c * train_peak(t_ms, 1.0)).tanh();
    (c, tet)
}
