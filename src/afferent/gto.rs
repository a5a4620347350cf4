//! Golgi tendon organ (Lin & Crago 2002): Ib afferent rate from tendon force, as MyoGen 0.12's
//! Cython `_gto.pyx` computes it (the reference fixtures come from there).
//!
//! # Equations (force `F` in N, rates in Hz, `T = dt_s` in s)
//! - Static nonlinearity: `R_k = max(0, G1 · ln(max(F_k, 0)/G2 + 1))`.
//!   (MyoGen uses `F_k` unclamped and clips `R` at 0, which is the same for `F > −G2`; it gives
//!   NaN for `F ≤ −G2`, here such forces give `R = 0`.)
//! - Second-order filter, the Tustin transform (no prewarping) of
//!   `H(s) = (1.7 s² + 2.58 s + 0.4)/(s² + 2.2 s + 0.4)` (DC gain 1, instantaneous gain 1.7,
//!   poles at −0.2 and −2 s⁻¹):
//!   `y_k = b0·R_k + b1·R_{k−1} + b2·R_{k−2} − a1·y_{k−1} − a2·y_{k−2}` (zero history),
//!   with `D = 0.4T² + 4.4T + 4`, `b0 = (0.4T² + 5.16T + 6.8)/D`, `b1 = (0.8T² − 13.6)/D`,
//!   `b2 = (0.4T² − 5.16T + 6.8)/D`, `a1 = (0.8T² − 8)/D`, `a2 = (0.4T² − 4.4T + 4)/D`.
//! - Output `Ib_k = max(0, y_k)`; the recursion keeps the unclipped `y`. No output lag.
//!
//! Two realisations of the same discrete filter ([`GtoForm`]): MyoGen's direct form above, and
//! (default) the parallel form of the partial fractions
//! `H(s) = 1.7 + A/(s + 0.2) + B/(s + 2)`, `A = −0.048/1.8`, `B = −2.04/1.8`, each section
//! Tustin-transformed: `x_k = ρ·x_{k−1} + c·(R_k + R_{k−1})`, `ρ = (2 − pT)/(2 + pT)`,
//! `c = aT/(2 + pT)`, `y_k = 1.7·R_k + x1_k + x2_k` (computed as `x + (c·(R_k + R_{k−1}) − δ·x)`
//! with `δ = 1 − ρ = 2pT/(2 + pT)`, which keeps the pole exact in f32). The bilinear transform is a substitution,
//! so both are the same transfer function; they differ in round-off. The direct form's two poles
//! near 1 amplify round-off by ≈ 1/(pT)² (≈ 2.5·10⁹ at T = 0.1 ms): in f32 its output drifts by
//! tens of Hz within a second of closed-loop simulation (measured: Ib 178 Hz at 3.7 N), while the
//! parallel form's error stays at the f32 resolution.
//!
//! MODEL.md §5.2's first-order filter (`α = 0.3` per step) is *not* what MyoGen 0.12 computes
//! (README D-G1) and is not implemented here.
//!
//! `G1` and `G2` are tensors (`[batch, 1]` or `[1, 1]`), so gradients flow to them.

use burn::tensor::Tensor;

use crate::error::{Error, Result, check};
use crate::kernel::to_vec_f64;
use crate::muscle::twitch::tensor_like;

/// GTO parameters (MyoGen `GolgiTendonOrganModel.create_default_gto_parameters()`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GtoParams {
    /// Gain `G1` of the log nonlinearity (Hz), ≥ 0.
    pub g1_hz: f64,
    /// Force scale `G2` of the log nonlinearity (N), > 0.
    pub g2_n: f64,
}

impl Default for GtoParams {
    fn default() -> Self {
        Self {
            g1_hz: 40.0,
            g2_n: 4.0,
        }
    }
}

impl GtoParams {
    /// `g1_hz` finite and ≥ 0, `g2_n` finite and > 0.
    pub fn validate(&self) -> Result<()> {
        check::non_negative("gto.g1_hz", self.g1_hz)?;
        check::positive("gto.g2_n", self.g2_n)?;
        Ok(())
    }
}

/// The five Tustin coefficients of the Lin & Crago filter for a time step (dimensionless).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GtoFilter {
    /// Feed-forward coefficients.
    pub b0: f64,
    /// See `b0`.
    pub b1: f64,
    /// See `b0`.
    pub b2: f64,
    /// Feedback coefficients.
    pub a1: f64,
    /// See `a1`.
    pub a2: f64,
}

impl GtoFilter {
    /// Coefficients for `dt_s` (s; finite and > 0). The bilinear transform is stable for every
    /// positive step, but steps above 0.1 s distort the 0.5 s pole; those are rejected as
    /// [`Error::UnstableTimeStep`].
    pub fn new(dt_s: f64) -> Result<Self> {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return Err(Error::invalid("dt_s", dt_s, "finite and > 0 (s)"));
        }
        if dt_s > 0.1 {
            return Err(Error::UnstableTimeStep {
                dt_s,
                model: "Lin & Crago GTO filter".into(),
                reason: "dt_s must be <= 0.1 s (the fast pole has a 0.5 s time constant)".into(),
            });
        }
        let dt = dt_s;
        let dt2 = dt * dt;
        let den = 0.4 * dt2 + 4.4 * dt + 4.0;
        Ok(Self {
            b0: (0.4 * dt2 + 5.16 * dt + 6.8) / den,
            b1: (0.8 * dt2 - 13.6) / den,
            b2: (0.4 * dt2 - 5.16 * dt + 6.8) / den,
            a1: (0.8 * dt2 - 8.0) / den,
            a2: (0.4 * dt2 - 4.4 * dt + 4.0) / den,
        })
    }
}

/// Which realisation of the filter (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GtoForm {
    /// Sum of two first-order sections (round-off stays at the working precision; default).
    #[default]
    Parallel,
    /// MyoGen 0.12's direct-form recursion (its round-off, exactly; use f64).
    Direct,
}

/// Filter history `[batch, width]` (Hz). Direct form: the last two log-rates `R` and unclipped
/// outputs `y`. Parallel form: `r1 = R_{k−1}`, `y1`, `y2` = the states of the sections with poles
/// −0.2 and −2 s⁻¹, `r2` unused.
#[derive(Clone, Debug)]
pub struct GtoState {
    /// `R_{k−1}`.
    pub r1: Tensor<2>,
    /// `R_{k−2}`.
    pub r2: Tensor<2>,
    /// `y_{k−1}`.
    pub y1: Tensor<2>,
    /// `y_{k−2}`.
    pub y2: Tensor<2>,
}

impl GtoState {
    /// Zero history (MyoGen's initial state).
    pub fn zeros(like: &Tensor<2>, batch: usize, width: usize) -> Self {
        let z = tensor_like(like, vec![0.0; batch * width], [batch, width]);
        Self {
            r1: z.clone(),
            r2: z.clone(),
            y1: z.clone(),
            y2: z,
        }
    }
}

/// The GTO: filter coefficients for one `dt_s` and the gains as tensors.
#[derive(Clone, Debug)]
pub struct Gto {
    filter: GtoFilter,
    form: GtoForm,
    /// Parallel form: `(δ = 1 − ρ, c)` of the two sections.
    sections: [(f64, f64); 2],
    g1_hz: Tensor<2>,
    g2_n: Tensor<2>,
}

impl Gto {
    /// A GTO with gains `g1_hz` (Hz, ≥ 0) and `g2_n` (N, > 0), each `[batch, 1]` or `[1, 1]`
    /// (differentiable), for time step `dt_s` (s).
    pub fn new(g1_hz: Tensor<2>, g2_n: Tensor<2>, dt_s: f64) -> Result<Self> {
        for (f, t, ok, allowed) in [
            (
                "gto.g1_hz",
                &g1_hz,
                (|x: f64| x >= 0.0) as fn(f64) -> bool,
                "finite and >= 0 (Hz)",
            ),
            ("gto.g2_n", &g2_n, |x: f64| x > 0.0, "finite and > 0 (N)"),
        ] {
            let [_, w] = t.dims();
            if w != 1 {
                return Err(Error::shape(
                    f,
                    "[batch, 1] or [1, 1]",
                    format!("{:?}", t.dims()),
                ));
            }
            let v = to_vec_f64(t.clone());
            if let Some(i) = v.iter().position(|x| !(x.is_finite() && ok(*x))) {
                return Err(Error::invalid(f, v[i], allowed));
            }
        }
        let section = |p: f64, a: f64| {
            (
                2.0 * p * dt_s / (2.0 + p * dt_s),
                a * dt_s / (2.0 + p * dt_s),
            )
        };
        Ok(Self {
            filter: GtoFilter::new(dt_s)?,
            form: GtoForm::default(),
            sections: [section(0.2, -0.048 / 1.8), section(2.0, -2.04 / 1.8)],
            g1_hz,
            g2_n,
        })
    }

    /// Uses the given realisation of the filter.
    pub fn with_form(mut self, form: GtoForm) -> Self {
        self.form = form;
        self
    }

    /// A GTO from host parameters, its gains created like `like` (device and dtype).
    pub fn from_params(params: GtoParams, like: &Tensor<2>, dt_s: f64) -> Result<Self> {
        params.validate()?;
        Self::new(
            tensor_like(like, vec![params.g1_hz], [1, 1]),
            tensor_like(like, vec![params.g2_n], [1, 1]),
            dt_s,
        )
    }

    /// The filter coefficients.
    pub fn filter(&self) -> GtoFilter {
        self.filter
    }

    /// The static nonlinearity `R = max(0, G1·ln(max(F, 0)/G2 + 1))` (Hz) of force `F` (N).
    pub fn log_rate(&self, force_n: Tensor<2>) -> Tensor<2> {
        let x = force_n.clamp_min(0.0) / self.g2_n.clone() + 1.0;
        (self.g1_hz.clone() * x.log()).clamp_min(0.0)
    }

    /// One step of one row on host scalars (the streaming path; same operations as
    /// [`Gto::step`]): force `force_n` (N), gains `g1_hz` (Hz) and `g2_n` (N); `h` = the row's
    /// history `[r1, r2, y1, y2]` (see [`GtoState`]). Returns the Ib rate (Hz).
    pub fn step_host(&self, h: &mut [f64; 4], force_n: f64, g1_hz: f64, g2_n: f64) -> f64 {
        let r = (g1_hz * (force_n.max(0.0) / g2_n + 1.0).ln()).max(0.0);
        let [r1, r2, y1, y2] = *h;
        if self.form == GtoForm::Parallel {
            let [(d1, c1), (d2, c2)] = self.sections;
            let rs = r + r1;
            let x1 = y1 + (rs * c1 - y1 * d1);
            let x2 = y2 + (rs * c2 - y2 * d2);
            let y = r * 1.7 + x1 + x2;
            *h = [r, r1, x1, x2];
            return y.max(0.0);
        }
        let f = &self.filter;
        let y = (r * f.b0 + r1 * f.b1 + r2 * f.b2) - (y1 * f.a1 + y2 * f.a2);
        *h = [r, r1, y, y1];
        y.max(0.0)
    }

    /// The reverse of [`Gto::step_host`] (parallel form): given the history `h` *before* the
    /// step, the adjoint `lh` of the history after it (replaced by the adjoint of `h`) and `g_ib`
    /// of the output, returns `(∂L/∂F, ∂L/∂G1)`. `None` for the direct form (no adjoint).
    pub fn vjp_host(
        &self,
        h: &[f64; 4],
        lh: &mut [f64; 4],
        g_ib: f64,
        force_n: f64,
        g1_hz: f64,
        g2_n: f64,
    ) -> Option<(f64, f64)> {
        if self.form != GtoForm::Parallel {
            return None;
        }
        let [(d1, c1), (d2, c2)] = self.sections;
        let u = force_n.max(0.0) / g2_n + 1.0;
        let r_raw = g1_hz * u.ln();
        let r = r_raw.max(0.0);
        let [r1, _, y1, y2] = *h;
        let rs = r + r1;
        let x1 = y1 + (rs * c1 - y1 * d1);
        let x2 = y2 + (rs * c2 - y2 * d2);
        let y = r * 1.7 + x1 + x2;
        let gy = if y > 0.0 { g_ib } else { 0.0 };
        let gx1 = gy + lh[2];
        let gx2 = gy + lh[3];
        let gr = 1.7 * gy + lh[0] + c1 * gx1 + c2 * gx2;
        *lh = [
            c1 * gx1 + c2 * gx2 + lh[1],
            0.0,
            gx1 * (1.0 - d1),
            gx2 * (1.0 - d2),
        ];
        if r_raw <= 0.0 {
            return Some((0.0, 0.0));
        }
        let g_f = if force_n > 0.0 {
            gr * g1_hz / (u * g2_n)
        } else {
            0.0
        };
        Some((g_f, gr * u.ln()))
    }

    /// The realisation of the filter.
    pub fn form(&self) -> GtoForm {
        self.form
    }

    /// The gains `(G1 in Hz, G2 in N)` as host columns `[1|batch]`.
    pub fn gains_host(&self) -> (Vec<f64>, Vec<f64>) {
        (
            to_vec_f64(self.g1_hz.clone()),
            to_vec_f64(self.g2_n.clone()),
        )
    }

    /// One step: force `force_n` (N, `[batch, width]`) → (new history, Ib rate in Hz).
    pub fn step(&self, state: GtoState, force_n: Tensor<2>) -> (GtoState, Tensor<2>) {
        let r = self.log_rate(force_n);
        if self.form == GtoForm::Parallel {
            // x − δ·x with δ = 1 − ρ held exactly (ρ itself rounds badly near 1 in f32)
            let [(d1, c1), (d2, c2)] = self.sections;
            let rs = r.clone() + state.r1.clone();
            let x1 = state.y1.clone() + (rs.clone() * c1 - state.y1 * d1);
            let x2 = state.y2.clone() + (rs * c2 - state.y2 * d2);
            let y = r.clone() * 1.7 + x1.clone() + x2.clone();
            let ib = y.clamp_min(0.0);
            let r2 = state.r1;
            return (
                GtoState {
                    r1: r,
                    r2,
                    y1: x1,
                    y2: x2,
                },
                ib,
            );
        }
        let f = &self.filter;
        let y = (r.clone() * f.b0 + state.r1.clone() * f.b1 + state.r2 * f.b2)
            - (state.y1.clone() * f.a1 + state.y2 * f.a2);
        let ib = y.clone().clamp_min(0.0);
        (
            GtoState {
                r1: r,
                r2: state.r1,
                y1: y,
                y2: state.y1,
            },
            ib,
        )
    }
}
