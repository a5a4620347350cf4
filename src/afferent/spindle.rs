//! Muscle spindle of Mileusnic et al. (2006): primary (Ia) and secondary (II) afferent rates from
//! fascicle length, velocity and acceleration under dynamic and static fusimotor (gamma) drive.
//!
//! Plain burn tensor code over `[batch, …]` state, so a rollout is differentiable with respect to
//! the inputs (length, gamma drives, …).
//!
//! # Units
//! Length `L` in L0 (fascicle length / optimal length), velocity `V` in L0/s (positive =
//! lengthening), acceleration `A` in L0/s², gamma drives `γ_dyn`, `γ_stat` in Hz (pulses/s),
//! rates Ia, II in Hz, intrafusal tensions `T` in the model's force units (FU), time in s.
//!
//! # Equations (MyoGen 0.12 Cython `_spindle.pyx`, which the reference fixtures come from)
//! Fusimotor activation targets `act(g, f₀) = g^P / (g^P + f₀^P)`; bag 1 follows `γ_dyn` (f₀ =
//! `f_bag1`), bag 2 follows `γ_stat` (`f_bag2`), both through `da/dt = (act − a)/τ` (τ₁, τ₂,
//! one RK4 step per call); the chain is instantaneous, `a_chain = act(γ_stat, f_chain)`.
//!
//! Per fibre k ∈ {bag 1, bag 2, chain}: `β_k = β₀_k + β_fus_k·a_k`, `Γ_k = G_k·a_k`, and
//!
//! ```text
//! d²T/dt² = K_SR/M · [ C·β·sign(x)·|x|^a · (L − L0_SR − T/K_SR − R) + M·A + Γ − T
//!                      + K_PR·(L − L0_SR − T/K_SR − L0_PR) ],   x = V − (dT/dt)/K_SR,
//! C = C_L if x ≥ 0 else C_S,   sign(0) = +1.
//! ```
//!
//! Primary: `Ia_k = g_k · max(0, T_k/K_SR − (LN_SR − L0_SR))`, occlusion with
//! `S₂ = Ia_bag2 + Ia_chain`: `Ia = S₂ + S·Ia_bag1` if `S₂ ≥ Ia_bag1`, else `Ia_bag1 + S·S₂`.
//! Secondary (bag 2 and chain, rectified per region):
//! `II_k = g_k · [max(0, X·Lsec/L0_SR·(T/K_SR − (LN_SR − L0_SR)))
//!               + max(0, (1−X)·Lsec/L0_PR·(L − T/K_SR − L0_SR − LN_PR))]`, `II = II_bag2 + II_chain`.
//!
//! # Integration schemes ([`SpindleScheme`])
//! - [`SpindleScheme::MyoGen012`] (default) reproduces MyoGen 0.12 exactly: its staggered RK
//!   scheme with the d(dT)/dt stage slopes of the previous call kept as state, the tension update
//!   using the bag activations from *before* this call's activation update, and the rates
//!   computed from the tensions *before* the update (a one-step output lag; II also uses the
//!   current `L`). `reference/afferents/README.md` D-S1, D-S4, D-S5.
//! - [`SpindleScheme::Rk4`]: the numerics of MODEL.md §5.1 (classic RK4 on (T, dT/dt), freshly
//!   updated activations, rates from the updated tensions) with the same physics. Within 0.3 Hz
//!   of MyoGen 0.12 (README tier 2).
//!
//! Not switchable here: MODEL.md's sign-free velocity term (D-S2) and summed II rectification
//! (D-S3), which differ from MyoGen 0.12 by tens of Hz.

use burn::tensor::Tensor;

use crate::error::{Error, Result, check};
use crate::muscle::twitch::tensor_like;

/// Largest time step accepted (s). The tension ODE is stiff near zero relative velocity
/// (`|x|^0.3`); MyoGen validated the scheme up to 0.1 ms, where Ia already moves by 3 %.
pub const SPINDLE_MAX_DT_S: f64 = 1e-4;

/// Which numerics to use (the physics is the same; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpindleScheme {
    /// MyoGen 0.12's staggered scheme, old activations, pre-update rates (matches the fixtures).
    #[default]
    MyoGen012,
    /// Classic RK4, new activations, post-update rates (MODEL.md §5.1 numerics).
    Rk4,
}

/// Mileusnic spindle parameters (MyoGen `SpindleModel.create_default_spindle_parameters()`,
/// species "human"). Tensions in FU, lengths in L0, times in s.
#[derive(Clone, Debug, PartialEq)]
#[allow(non_snake_case)]
pub struct SpindleParams {
    /// Fusimotor half-activation frequency of bag 1 (Hz).
    pub f_bag1: f64,
    /// Fusimotor half-activation frequency of bag 2 (Hz).
    pub f_bag2: f64,
    /// Fusimotor half-activation frequency of the chain (Hz).
    pub f_chain: f64,
    /// Exponent of the activation law (MyoGen stores it as an int).
    pub p: f64,
    /// Active-force coefficient of bag 1 (FU).
    pub g1: f64,
    /// Active-force coefficient of bag 2 (FU).
    pub g2: f64,
    /// Active-force coefficient of the chain (FU).
    pub g2_chain: f64,
    /// Sensory-region spring constant (FU/L0).
    pub k_sr: f64,
    /// Sensory-region rest length (L0).
    pub l0_sr: f64,
    /// Sensory-region threshold length (L0).
    pub ln_sr: f64,
    /// Polar-region spring constant (FU/L0).
    pub k_pr: f64,
    /// Polar-region rest length (L0).
    pub l0_pr: f64,
    /// Polar-region threshold length (L0).
    pub ln_pr: f64,
    /// Intrafusal mass (FU·s²/L0).
    pub m: f64,
    /// Passive damping of bag 1 (FU/(L0/s)^a).
    pub b0_bag1: f64,
    /// Passive damping of bag 2.
    pub b0_bag2: f64,
    /// Passive damping of the chain.
    pub b0_chain: f64,
    /// Fusimotor damping coefficient of bag 1.
    pub b1_bag1: f64,
    /// Fusimotor damping coefficient of bag 2.
    pub b2_bag2: f64,
    /// Fusimotor damping coefficient of the chain.
    pub b2_chain: f64,
    /// Velocity exponent `a` of the damping term.
    pub a: f64,
    /// Damping asymmetry for lengthening (`x ≥ 0`).
    pub c_l: f64,
    /// Damping asymmetry for shortening (`x < 0`).
    pub c_s: f64,
    /// Fascicle length below which the damping force vanishes (L0).
    pub r: f64,
    /// Fraction of the secondary ending on the sensory region.
    pub x: f64,
    /// Secondary-afferent rest length (L0).
    pub l_sec: f64,
    /// Occlusion factor of the primary ending.
    pub s: f64,
    /// Bag 1 activation time constant (s).
    pub tau1: f64,
    /// Bag 2 activation time constant (s).
    pub tau2: f64,
    /// Ia gain of bag 1 (Hz/L0).
    pub g_bag1: f64,
    /// Ia gain of bag 2 (Hz/L0).
    pub g_bag2_a1: f64,
    /// Ia gain of the chain (Hz/L0).
    pub g_chain_a1: f64,
    /// II gain of bag 2 (Hz/L0).
    pub g_bag2_a2: f64,
    /// II gain of the chain (Hz/L0).
    pub g_chain_a2: f64,
}

impl Default for SpindleParams {
    fn default() -> Self {
        Self {
            f_bag1: 60.0,
            f_bag2: 60.0,
            f_chain: 90.0,
            p: 2.0,
            g1: 0.0289,
            g2: 0.0636,
            g2_chain: 0.0954,
            k_sr: 10.4649,
            l0_sr: 0.04,
            ln_sr: 0.0423,
            k_pr: 0.15,
            l0_pr: 0.76,
            ln_pr: 0.89,
            m: 0.0002,
            b0_bag1: 0.0605,
            b0_bag2: 0.0822,
            b0_chain: 0.0822,
            b1_bag1: 0.2592,
            b2_bag2: -0.046,
            b2_chain: -0.069,
            a: 0.3,
            c_l: 1.0,
            c_s: 0.42,
            r: 0.46,
            x: 0.7,
            l_sec: 0.04,
            s: 0.156,
            tau1: 0.149,
            tau2: 0.205,
            g_bag1: 6500.0,
            g_bag2_a1: 3250.0,
            g_chain_a1: 3250.0,
            g_bag2_a2: 3500.0,
            g_chain_a2: 3500.0,
        }
    }
}

impl SpindleParams {
    /// Checks every field: all finite; frequencies, `p`, `k_sr`, `m`, `a`, `c_l`, `c_s`, time
    /// constants and the rest lengths `l0_sr`, `l0_pr` > 0; gains and `s` ≥ 0; `x` in [0, 1].
    /// Damping coefficients may be negative (bag 2 / chain fusimotor terms are).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("f_bag1", self.f_bag1),
            ("f_bag2", self.f_bag2),
            ("f_chain", self.f_chain),
            ("p", self.p),
            ("k_sr", self.k_sr),
            ("l0_sr", self.l0_sr),
            ("l0_pr", self.l0_pr),
            ("m", self.m),
            ("a", self.a),
            ("c_l", self.c_l),
            ("c_s", self.c_s),
            ("tau1", self.tau1),
            ("tau2", self.tau2),
        ];
        for (f, v) in positive {
            check::positive(&format!("spindle.{f}"), v)?;
        }
        let non_negative = [
            ("g1", self.g1),
            ("g2", self.g2),
            ("g2_chain", self.g2_chain),
            ("k_pr", self.k_pr),
            ("l_sec", self.l_sec),
            ("s", self.s),
            ("g_bag1", self.g_bag1),
            ("g_bag2_a1", self.g_bag2_a1),
            ("g_chain_a1", self.g_chain_a1),
            ("g_bag2_a2", self.g_bag2_a2),
            ("g_chain_a2", self.g_chain_a2),
        ];
        for (f, v) in non_negative {
            check::non_negative(&format!("spindle.{f}"), v)?;
        }
        let finite = [
            ("ln_sr", self.ln_sr),
            ("ln_pr", self.ln_pr),
            ("b0_bag1", self.b0_bag1),
            ("b0_bag2", self.b0_bag2),
            ("b0_chain", self.b0_chain),
            ("b1_bag1", self.b1_bag1),
            ("b2_bag2", self.b2_bag2),
            ("b2_chain", self.b2_chain),
            ("r", self.r),
        ];
        for (f, v) in finite {
            check::finite(&format!("spindle.{f}"), v)?;
        }
        check::in_range("spindle.x", self.x, 0.0, 1.0)?;
        Ok(())
    }
}

/// Checks a spindle time step: finite, > 0 and ≤ [`SPINDLE_MAX_DT_S`].
pub fn check_spindle_dt(dt_s: f64) -> Result<f64> {
    if !(dt_s.is_finite() && dt_s > 0.0) {
        return Err(Error::invalid("dt_s", dt_s, "finite and > 0 (s)"));
    }
    if dt_s > SPINDLE_MAX_DT_S {
        return Err(Error::UnstableTimeStep {
            dt_s,
            model: "Mileusnic spindle".into(),
            reason: format!(
                "dt_s must be <= {SPINDLE_MAX_DT_S} s: the explicit scheme on the stiff tension \
                 ODE is validated only up to 0.1 ms"
            ),
        });
    }
    Ok(dt_s)
}

/// Spindle state. Shapes: `a` `[batch, 2]` (bag 1, bag 2 activations), the others
/// `[batch, 3]` (bag 1, bag 2, chain).
#[derive(Clone, Debug)]
pub struct SpindleState {
    /// Fusimotor activations of bag 1 and bag 2 (dimensionless, 0..1).
    pub a: Tensor<2>,
    /// Intrafusal tensions T (FU).
    pub t: Tensor<2>,
    /// Their rates dT/dt (FU/s).
    pub dt: Tensor<2>,
    /// d²T/dt² stage slopes k1z, k2z, k3z of the previous call (staggered scheme only; FU/s²).
    pub k1z: Tensor<2>,
    /// See `k1z`.
    pub k2z: Tensor<2>,
    /// See `k1z`.
    pub k3z: Tensor<2>,
}

impl SpindleState {
    /// The all-zero initial state of MyoGen (activations, tensions, rates, stored slopes).
    pub fn zeros(like: &Tensor<2>, batch: usize) -> Self {
        let z3 = tensor_like(like, vec![0.0; batch * 3], [batch, 3]);
        Self {
            a: tensor_like(like, vec![0.0; batch * 2], [batch, 2]),
            t: z3.clone(),
            dt: z3.clone(),
            k1z: z3.clone(),
            k2z: z3.clone(),
            k3z: z3,
        }
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.t.dims()[0]
    }
}

/// The outputs of one spindle step (`[batch, 1]` each, Hz).
#[derive(Clone, Debug)]
pub struct SpindleRates {
    /// Primary (Ia) afferent rate (Hz).
    pub ia_hz: Tensor<2>,
    /// Secondary (II) afferent rate (Hz).
    pub ii_hz: Tensor<2>,
}

/// The Mileusnic spindle: validated parameters, scheme, and the per-fibre constant rows.
#[derive(Clone, Debug)]
pub struct Spindle {
    params: SpindleParams,
    scheme: SpindleScheme,
}

/// Per-step constants `[1, k]` built from the parameters on the device of the inputs.
struct Rows {
    f0p: Tensor<2>,
    tau: Tensor<2>,
    k_sr: Tensor<2>,
    six: Tensor<2>,
    b0: Tensor<2>,
    bfus: Tensor<2>,
    g: Tensor<2>,
    g_ia: Tensor<2>,
    g_ii: Tensor<2>,
}

impl Spindle {
    /// A spindle with validated parameters and the given scheme.
    pub fn new(params: SpindleParams, scheme: SpindleScheme) -> Result<Self> {
        params.validate()?;
        Ok(Self { params, scheme })
    }

    /// Default (MyoGen) parameters, MyoGen 0.12 numerics.
    pub fn myogen() -> Self {
        Self {
            params: SpindleParams::default(),
            scheme: SpindleScheme::MyoGen012,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &SpindleParams {
        &self.params
    }

    /// The scheme.
    pub fn scheme(&self) -> SpindleScheme {
        self.scheme
    }

    fn rows(&self, like: &Tensor<2>) -> Rows {
        let p = &self.params;
        Rows {
            f0p: tensor_like(like, vec![p.f_bag1.powf(p.p), p.f_bag2.powf(p.p)], [1, 2]),
            tau: tensor_like(like, vec![p.tau1, p.tau2], [1, 2]),
            k_sr: tensor_like(like, vec![p.k_sr], [1, 1]),
            six: tensor_like(like, vec![6.0], [1, 1]),
            b0: tensor_like(like, vec![p.b0_bag1, p.b0_bag2, p.b0_chain], [1, 3]),
            bfus: tensor_like(like, vec![p.b1_bag1, p.b2_bag2, p.b2_chain], [1, 3]),
            g: tensor_like(like, vec![p.g1, p.g2, p.g2_chain], [1, 3]),
            g_ia: tensor_like(like, vec![p.g_bag1, p.g_bag2_a1, p.g_chain_a1], [1, 3]),
            g_ii: tensor_like(like, vec![0.0, p.g_bag2_a2, p.g_chain_a2], [1, 3]),
        }
    }

    /// Ia and II rates (Hz, `[batch, 1]`) from tensions `t` `[batch, 3]` (FU) and length `l`
    /// `[batch, 1]` (L0).
    pub fn rates(&self, t: &Tensor<2>, l: &Tensor<2>) -> SpindleRates {
        let rows = self.rows(t);
        self.rates_with(&rows, t, l)
    }

    fn rates_with(&self, rows: &Rows, t: &Tensor<2>, l: &Tensor<2>) -> SpindleRates {
        let p = &self.params;
        let ts = t.clone() / rows.k_sr.clone(); // T/K_SR
        let srs = ts.clone() - (p.ln_sr - p.l0_sr);
        let ia3 = (rows.g_ia.clone() * srs.clone()).clamp_min(0.0);
        let ia_b1 = ia3.clone().narrow(1, 0, 1);
        let b2c = ia3.clone().narrow(1, 1, 1) + ia3.narrow(1, 2, 1);
        let hi = b2c.clone() + ia_b1.clone() * p.s; // S2 >= Ia_bag1
        let lo = ia_b1.clone() + b2c.clone() * p.s;
        let ia_hz = lo.mask_where(b2c.greater_equal(ia_b1), hi);
        let src = p.x * p.l_sec / p.l0_sr;
        let prc = (1.0 - p.x) * p.l_sec / p.l0_pr;
        let sr = (srs * src).clamp_min(0.0);
        let prs = (l.clone() - ts) - p.l0_sr - p.ln_pr;
        let pr = (prs * prc).clamp_min(0.0);
        let ii_hz = (rows.g_ii.clone() * (sr + pr)).sum_dim(1);
        SpindleRates { ia_hz, ii_hz }
    }

    /// One step of the spindle.
    ///
    /// Inputs (`[batch, 1]` each, or `[1, 1]` broadcast): `l` (L0), `v` (L0/s), `acc` (L0/s²),
    /// `gamma_dyn_hz`, `gamma_stat_hz` (Hz); `dt_s` (s, ≤ [`SPINDLE_MAX_DT_S`]). Returns the new
    /// state and the rates; see the module docs for which tensions the rates come from.
    ///
    /// Errors: bad `dt_s`; inputs not of width 1 or of a batch other than the state's (or 1).
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        state: SpindleState,
        l: Tensor<2>,
        v: Tensor<2>,
        acc: Tensor<2>,
        gamma_dyn_hz: Tensor<2>,
        gamma_stat_hz: Tensor<2>,
        dt_s: f64,
    ) -> Result<(SpindleState, SpindleRates)> {
        let dt = check_spindle_dt(dt_s)?;
        let batch = state.batch();
        for (f, x) in [
            ("l", &l),
            ("v", &v),
            ("acc", &acc),
            ("gamma_dyn_hz", &gamma_dyn_hz),
            ("gamma_stat_hz", &gamma_stat_hz),
        ] {
            let [b, w] = x.dims();
            if w != 1 || (b != batch && b != 1) {
                return Err(Error::shape(
                    format!("spindle.{f}"),
                    format!("[{batch}, 1] or [1, 1]"),
                    format!("{:?}", x.dims()),
                ));
            }
        }
        let p = &self.params;
        let rows = self.rows(&state.t);

        // Fusimotor activations: targets, one RK4 step of da/dt = (target − a)/τ.
        let g = Tensor::cat(vec![gamma_dyn_hz, gamma_stat_hz.clone()], 1);
        let gp = g.powf_scalar(p.p);
        let target = gp.clone() / (gp + rows.f0p.clone());
        let gsp = gamma_stat_hz.powf_scalar(p.p);
        let a_chain = gsp.clone() / (gsp + p.f_chain.powf(p.p));
        let fa = |a: Tensor<2>| (target.clone() - a) / rows.tau.clone();
        let a0 = state.a.clone();
        let k1 = fa(a0.clone());
        let k2 = fa(a0.clone() + k1.clone() * dt * 0.5);
        let k3 = fa(a0.clone() + k2.clone() * dt * 0.5);
        let k4 = fa(a0.clone() + k3.clone() * dt);
        let a_new = a0.clone() + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0);
        let a_used = match self.scheme {
            SpindleScheme::MyoGen012 => a0,
            SpindleScheme::Rk4 => a_new.clone(),
        };
        let act3 = Tensor::cat(vec![a_used, a_chain], 1);
        let beta = rows.b0.clone() + rows.bfus.clone() * act3.clone();
        let gamma = rows.g.clone() * act3;

        // Per-step parts of d²T/dt².
        let cb_pos = beta.clone() * p.c_l; // C·β·sign for x ≥ 0
        let cb_neg = (beta * p.c_s).neg(); // … for x < 0
        let lm = l.clone() - p.l0_sr;
        let drive = acc * p.m + gamma; // M·A + Γ
        let k_m = p.k_sr / p.m;
        let dd = |t: Tensor<2>, z: Tensor<2>| -> Tensor<2> {
            let x = v.clone() - z / rows.k_sr.clone();
            let fv = cb_neg
                .clone()
                .mask_where(x.clone().greater_equal_elem(0.0), cb_pos.clone());
            let vp = x.abs().powf_scalar(p.a);
            let q = lm.clone() - t.clone() / rows.k_sr.clone();
            let len = q.clone() - p.r;
            let polar = (q - p.l0_pr) * p.k_pr;
            let inertial = (drive.clone() - t) + polar;
            (fv * vp * len + inertial) * k_m
        };

        let (y0, z0) = (state.t.clone(), state.dt.clone());
        let half = dt * 0.5;
        let (y, z, k1z, k2z, k3z) = match self.scheme {
            SpindleScheme::MyoGen012 => {
                let k1y = z0.clone();
                let k2y = z0.clone() + state.k1z.clone() * half;
                let k3y = z0.clone() + state.k2z.clone() * half;
                let k4y = z0.clone() + state.k3z.clone() * dt;
                let y = y0.clone()
                    + ((k1y.clone() + k2y.clone() * 2.0 + k3y.clone() * 2.0 + k4y) * dt)
                        / rows.six.clone();
                let k1z = dd(y.clone(), z0.clone());
                let k2z = dd(y.clone() + k1y * half, z0.clone() + k1z.clone() * half);
                let k3z = dd(y.clone() + k2y * half, z0.clone() + k2z.clone() * half);
                let k4z = dd(y.clone() + k3y * dt, z0.clone() + k3z.clone() * dt);
                let z = z0
                    + ((k1z.clone() + k2z.clone() * 2.0 + k3z.clone() * 2.0 + k4z) * dt)
                        / rows.six.clone();
                (y, z, k1z, k2z, k3z)
            }
            SpindleScheme::Rk4 => {
                let k1y = z0.clone();
                let k1z = dd(y0.clone(), z0.clone());
                let k2y = z0.clone() + k1z.clone() * half;
                let k2z = dd(y0.clone() + k1y.clone() * half, k2y.clone());
                let k3y = z0.clone() + k2z.clone() * half;
                let k3z = dd(y0.clone() + k2y.clone() * half, k3y.clone());
                let k4y = z0.clone() + k3z.clone() * dt;
                let k4z = dd(y0.clone() + k3y.clone() * dt, k4y.clone());
                let y = y0.clone() + (k1y + k2y * 2.0 + k3y * 2.0 + k4y) * (dt / 6.0);
                let z =
                    z0 + (k1z.clone() + k2z.clone() * 2.0 + k3z.clone() * 2.0 + k4z) * (dt / 6.0);
                (y, z, k1z, k2z, k3z)
            }
        };
        let rates = match self.scheme {
            SpindleScheme::MyoGen012 => self.rates_with(&rows, &y0, &l),
            SpindleScheme::Rk4 => self.rates_with(&rows, &y, &l),
        };
        let state = SpindleState {
            a: a_new,
            t: y,
            dt: z,
            k1z,
            k2z,
            k3z,
        };
        Ok((state, rates))
    }
}
