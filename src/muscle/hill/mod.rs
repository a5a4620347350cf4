//! Hill muscle–tendon model driven by Fuglevand motor units (MODEL.md §3.2, §5.4), as burn tensor
//! ops over `[batch, …]` states, so a rollout is differentiable.
//!
//! State per batch row: fascicle length `L` (in `L0`, the optimal fascicle length), fascicle
//! velocity `V` (`L0/s`, `V > 0` lengthening) and the twitch-filter states `f`, `f_prev` `[n]`.
//! One call of [`HillModel::step`] with the spikes `s [batch, n]` that enter the twitch filters in
//! this step and the joint angle `θ` (rad) does, in this order (dt in s; dt_ms = 1000·dt):
//! 1. twitch IIR per unit (dt, T in ms): `f_new = 2e^{−dt/T} f − e^{−2dt/T} f_prev + (dt/T)e^{1−dt/T} s`
//!    (unit-peak twitch per spike of weight 1);
//! 2. saturation and activation: `F1 = Σ_{type I} twiAmp_i·sig(c_i, f_new_i)`, `F2` likewise over
//!    type II, `sig(c, x) = (1 − e^{−cx})/(1 + e^{−cx})` (F0);
//! 3. mechanics, classic RK4 on `(L, V)` with `F1, F2, θ` held over the step:
//!    `dL/dt = V`, `dV/dt = (F0/m)·(F_SE·cos φ − (F_CE + F_PE)·cos² φ)` (F0/m in N/kg applied to
//!    `V` in L0/s without dividing by L0, as in MyoGen), with
//!    `cos φ = sqrt(1 − (sin α0/L)²)`,
//!    `F_CE = F1·fL1(L)·fV1(L, V) + F2·fL2(L)·fV2(L, V)` ([`params::ForceLength`],
//!    [`params::ForceVelocity`]), `F_PE = e^{Kpe(L−1)/Em0}/e^{Kpe} + b·V`,
//!    `LT = (MTU(θ) − L·L0·cos φ)/LT0`, `F_SE = Kse·cT·ln(1 + e^{(LT − LT_r)/cT})`;
//!    `MTU(θ) = Σ Ak_i θ^i` and the moment arm `r(θ) = Σ Bk_i θ^i` in m, θ in **rad**
//!    (MyoGen 0.12, fixtures README D-H1);
//! 4. outputs from the updated state: tendon force `F_SE(θ, L_new)` (F0) and in N
//!    (`× F0`), contractile force `F_CE` (F0), torque `τ = F0·F_SE·r(θ)` (N·m; MyoGen 0.12's
//!    example 11 hands the joint `F_SE·r` in F0·m instead, D-J1), `L`, `V`.
//!
//! Differences from MyoGen 0.12's Cython path, which the fixtures come from (README §7): RK4
//! instead of its staggered scheme (D-H2), same-step activation (D-H3) and post-update outputs
//! (D-H4) — tolerance tier 2. Spikes are taken as given at the step they enter the filter; axonal
//! delays (MODEL.md's 200-slot FIFO, D-H5) are not part of this stage.
//!
//! The length must stay in `(sin α0, 3)` L0; the stage checks the initial state and the time step
//! ([`params::HillParams::max_stable_dt_s`]); inside a rollout the equations are not clamped.

pub mod host;
pub mod params;
mod stage;

pub use params::{
    ForceLength, ForceVelocity, HillParams, MotorPoolParams, MotorUnits, saturation_constants,
};
pub use stage::{HillMuscle, buffers};

use burn::tensor::Tensor;

use crate::error::{Error, Result, check};
use crate::kernel::Ctx;

/// State of the Hill model (`[batch, 1]` and `[batch, n]` tensors).
#[derive(Clone, Debug)]
pub struct HillState {
    /// Fascicle length (L0).
    pub l_l0: Tensor<2>,
    /// Fascicle velocity (L0/s, > 0 lengthening).
    pub v_l0_s: Tensor<2>,
    /// Twitch filter state `f[k]` per unit.
    pub f: Tensor<2>,
    /// Twitch filter state `f[k−1]` per unit.
    pub f_prev: Tensor<2>,
}

/// Outputs of one step, computed from the updated state (`[batch, 1]` each).
#[derive(Clone, Debug)]
pub struct HillOutput {
    /// Tendon (muscle–tendon unit) force `F_SE` (F0).
    pub tendon_force_f0: Tensor<2>,
    /// Tendon force in N (`F0·F_SE`).
    pub force_n: Tensor<2>,
    /// Active contractile-element force `F_CE` (F0), with the activation of this step.
    pub ce_force_f0: Tensor<2>,
    /// Joint torque `F0·F_SE·r(θ)` (N·m).
    pub torque_nm: Tensor<2>,
    /// Type I and type II activations `F1`, `F2` (F0).
    pub activation_f0: [Tensor<2>; 2],
}

/// The Hill model prepared for one context and time step: per-unit constants as tensors
/// (`[1, n]`; public so that gradients can be taken with respect to them).
#[derive(Clone, Debug)]
pub struct HillModel {
    /// Muscle constants.
    pub params: HillParams,
    /// Time step (s).
    pub dt_s: f64,
    /// Number of type I units (the first columns).
    pub n_type1: usize,
    /// Twitch IIR `2e^{−dt/T}` `[1, n]`.
    pub a1: Tensor<2>,
    /// Twitch IIR `e^{−2dt/T}` `[1, n]`.
    pub a2: Tensor<2>,
    /// Twitch IIR input gain `(dt/T)e^{1−dt/T}` per spike `[1, n]`.
    pub b: Tensor<2>,
    /// Saturation constants `c_i` `[1, n]`.
    pub c: Tensor<2>,
    /// Unit force amplitudes `twiAmp_i` (F0) `[1, n]`.
    pub twi_amp: Tensor<2>,
}

/// Element functions of the Hill model as tensor ops (`[batch, 1]` inputs, L0 and L0/s).
pub mod curves {
    use super::*;

    /// `Σ k_i θ^i` (Horner).
    pub fn poly(k: &[f64; 5], angle_rad: &Tensor<2>) -> Tensor<2> {
        let mut acc = angle_rad.zeros_like().add_scalar(k[4]);
        for c in k[..4].iter().rev() {
            acc = (acc * angle_rad.clone()).add_scalar(*c);
        }
        acc
    }

    /// `cos φ = sqrt(1 − (sin α0/L)²)`.
    pub fn cos_pennation(p: &HillParams, l: &Tensor<2>) -> Tensor<2> {
        let s = l.clone().recip().mul_scalar(p.alfa0_rad.sin());
        (s.clone() * s).neg().add_scalar(1.0).sqrt()
    }

    /// `fL(L) = exp(−|(L^b − 1)/o|^r)`.
    pub fn force_length(fl: &ForceLength, l: &Tensor<2>) -> Tensor<2> {
        l.clone()
            .powf_scalar(fl.b)
            .sub_scalar(1.0)
            .div_scalar(fl.o)
            .abs()
            .powf_scalar(fl.r)
            .neg()
            .exp()
    }

    /// `fV(L, V)`: both branches evaluated at `max(V, 0)` and `min(V, 0)` and joined as
    /// `f₊(max(V,0)) + f₋(min(V,0)) − 1` (each branch is 1 at `V = 0`; no division by a
    /// non-admissible denominator in the branch not taken).
    pub fn force_velocity(fv: &ForceVelocity, l: &Tensor<2>, v: &Tensor<2>) -> Tensor<2> {
        let vp = v.clone().clamp_min(0.0);
        let vn = v.clone().clamp_max(0.0);
        let a = (l.clone().mul_scalar(fv.av2).add_scalar(fv.av1) * l.clone()).add_scalar(fv.av0);
        let pos = (vp.clone() * a).neg().add_scalar(fv.bv) / vp.add_scalar(fv.bv);
        let cfac = l.clone().mul_scalar(fv.cv1).add_scalar(fv.cv0);
        let neg = vn.clone().neg().add_scalar(fv.vmax) / (vn * cfac).add_scalar(fv.vmax);
        pos + neg.sub_scalar(1.0)
    }

    /// `F_PE = e^{Kpe(L−1)/Em0}/e^{Kpe} + b·V` (F0).
    pub fn passive_force(p: &HillParams, l: &Tensor<2>, v: &Tensor<2>) -> Tensor<2> {
        l.clone()
            .sub_scalar(1.0)
            .mul_scalar(p.kpe / p.em0)
            .exp()
            .div_scalar(p.kpe.exp())
            + v.clone().mul_scalar(p.b_visc)
    }

    /// `F_SE = Kse·cT·softplus((LT − LT_r)/cT)`, `LT = (MTU − L·L0·cos φ)/LT0` (F0), given
    /// `MTU` (m) and `cos φ`.
    pub fn tendon_force(
        p: &HillParams,
        mtu_m: &Tensor<2>,
        l: &Tensor<2>,
        cos_phi: &Tensor<2>,
    ) -> Tensor<2> {
        let lt =
            (mtu_m.clone() - (l.clone() * cos_phi.clone()).mul_scalar(p.l0_m)).div_scalar(p.lt0_m);
        let x = lt.sub_scalar(p.lt_r).div_scalar(p.ct);
        let sp = x.clone().clamp_min(0.0) + x.abs().neg().exp().log1p();
        sp.mul_scalar(p.kse * p.ct)
    }
}

impl HillModel {
    /// Builds the model for `ctx` and `dt_s` from validated parameters and unit constants.
    /// Errors: invalid parameters, `dt_s` not positive or above
    /// [`HillParams::max_stable_dt_s`] ([`Error::UnstableTimeStep`]).
    pub fn new(ctx: &Ctx, params: HillParams, units: &MotorUnits, dt_s: f64) -> Result<Self> {
        params.validate()?;
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return Err(Error::UnstableTimeStep {
                dt_s,
                model: "hill".into(),
                reason: "dt_s must be finite and > 0".into(),
            });
        }
        let dt_max = params.max_stable_dt_s();
        if dt_s > dt_max {
            return Err(Error::UnstableTimeStep {
                dt_s,
                model: "hill".into(),
                reason: format!(
                    "explicit RK4 on the muscle–tendon mechanics needs dt_s <= {dt_max:.3e} s"
                ),
            });
        }
        let n = units.t_ms.len();
        check::count_at_least("hill.n_units", n, 1)?;
        for (f, v) in [
            ("units.c", &units.c),
            ("units.twi_amp", &units.twi_amp),
            ("units.t_ms", &units.t_ms),
        ] {
            if v.len() != n {
                return Err(Error::shape(f, n, v.len()));
            }
            for (i, x) in v.iter().enumerate() {
                check::positive(&format!("{f}[{i}]"), *x)?;
            }
        }
        if units.n_type1 > n {
            return Err(Error::invalid(
                "units.n_type1",
                units.n_type1,
                format!("<= {n}"),
            ));
        }
        let dt_ms = dt_s * 1e3;
        let map =
            |g: &dyn Fn(f64) -> f64| ctx.tensor(units.t_ms.iter().map(|t| g(*t)).collect(), [1, n]);
        Ok(Self {
            a1: map(&|t| 2.0 * (-dt_ms / t).exp()),
            a2: map(&|t| (-2.0 * dt_ms / t).exp()),
            b: map(&|t| dt_ms / t * (1.0 - dt_ms / t).exp()),
            c: ctx.tensor(units.c.clone(), [1, n]),
            twi_amp: ctx.tensor(units.twi_amp.clone(), [1, n]),
            n_type1: units.n_type1,
            params,
            dt_s,
        })
    }

    /// Number of motor units.
    pub fn n_units(&self) -> usize {
        self.c.dims()[1]
    }

    /// A state at rest: length `l_l0` (L0) in every row, `V = 0`, twitch filters at 0.
    /// Errors: `l_l0` outside `(1.05·sin α0, 3)`.
    pub fn state(&self, ctx: &Ctx, batch: usize, l_l0: f64) -> Result<HillState> {
        check::in_range(
            "hill.initial_length_l0",
            l_l0,
            self.params.min_length_l0(),
            3.0,
        )?;
        check::count_at_least("batch", batch, 1)?;
        let n = self.n_units();
        Ok(HillState {
            l_l0: ctx.full([batch, 1], l_l0),
            v_l0_s: ctx.zeros([batch, 1]),
            f: ctx.zeros([batch, n]),
            f_prev: ctx.zeros([batch, n]),
        })
    }

    /// `dV/dt` (L0/s²) at `(l, v)` for activations `F1, F2`, MTU length (m).
    fn accel(
        &self,
        l: &Tensor<2>,
        v: &Tensor<2>,
        f1: &Tensor<2>,
        f2: &Tensor<2>,
        mtu: &Tensor<2>,
    ) -> Tensor<2> {
        let p = &self.params;
        let cphi = curves::cos_pennation(p, l);
        let fce = self.ce_force(l, v, f1, f2);
        let fpe = curves::passive_force(p, l, v);
        let fse = curves::tendon_force(p, mtu, l, &cphi);
        (fse * cphi.clone() - (fce + fpe) * (cphi.clone() * cphi)).mul_scalar(p.f0_n / p.mass_kg)
    }

    /// `F_CE = F1·fL1·fV1 + F2·fL2·fV2` (F0).
    pub fn ce_force(
        &self,
        l: &Tensor<2>,
        v: &Tensor<2>,
        f1: &Tensor<2>,
        f2: &Tensor<2>,
    ) -> Tensor<2> {
        let p = &self.params;
        let c1 = curves::force_length(&p.fl[0], l) * curves::force_velocity(&p.fv[0], l, v);
        let c2 = curves::force_length(&p.fl[1], l) * curves::force_velocity(&p.fv[1], l, v);
        f1.clone() * c1 + f2.clone() * c2
    }

    /// One step (see the module docs): `spikes [batch, n]` (spike weight per unit entering the
    /// twitch filter this step; 0/1 for hard spikes, any real for rate mode), `angle_rad`
    /// `[batch, 1]` or `[1, 1]`. Returns the new state and the outputs at the new state.
    pub fn step(
        &self,
        st: &HillState,
        spikes: Tensor<2>,
        angle_rad: Tensor<2>,
    ) -> Result<(HillState, HillOutput)> {
        let [batch, _] = st.l_l0.dims();
        let n = self.n_units();
        if spikes.dims() != [batch, n] {
            return Err(Error::shape(
                "hill.spikes",
                format!("[{batch}, {n}]"),
                format!("{:?}", spikes.dims()),
            ));
        }
        let [ba, wa] = angle_rad.dims();
        if wa != 1 || (ba != 1 && ba != batch) {
            return Err(Error::shape(
                "hill.angle_rad",
                format!("[{batch} or 1, 1]"),
                format!("{:?}", angle_rad.dims()),
            ));
        }
        let angle = if ba == batch {
            angle_rad
        } else {
            angle_rad.repeat_dim(0, batch)
        };
        let p = &self.params;
        // 1. twitch IIR
        let f_new = self.a1.clone() * st.f.clone() - self.a2.clone() * st.f_prev.clone()
            + self.b.clone() * spikes;
        // 2. saturation, F1/F2
        let e = (f_new.clone() * self.c.clone()).neg().exp();
        let fs = self.twi_amp.clone() * (e.clone().neg().add_scalar(1.0) / e.add_scalar(1.0));
        let n1 = self.n_type1;
        let zero = st.l_l0.zeros_like();
        let f1 = if n1 > 0 {
            fs.clone().slice([0..batch, 0..n1]).sum_dim(1)
        } else {
            zero.clone()
        };
        let f2 = if n1 < n {
            fs.slice([0..batch, n1..n]).sum_dim(1)
        } else {
            zero
        };
        // 3. RK4 on (L, V)
        let mtu = curves::poly(&p.ak, &angle);
        let h = self.dt_s;
        let (l, v) = (&st.l_l0, &st.v_l0_s);
        let k1l = v.clone();
        let k1v = self.accel(l, v, &f1, &f2, &mtu);
        let k2l = v.clone() + k1v.clone().mul_scalar(h / 2.0);
        let k2v = self.accel(
            &(l.clone() + k1l.clone().mul_scalar(h / 2.0)),
            &k2l,
            &f1,
            &f2,
            &mtu,
        );
        let k3l = v.clone() + k2v.clone().mul_scalar(h / 2.0);
        let k3v = self.accel(
            &(l.clone() + k2l.clone().mul_scalar(h / 2.0)),
            &k3l,
            &f1,
            &f2,
            &mtu,
        );
        let k4l = v.clone() + k3v.clone().mul_scalar(h);
        let k4v = self.accel(
            &(l.clone() + k3l.clone().mul_scalar(h)),
            &k4l,
            &f1,
            &f2,
            &mtu,
        );
        let l_new =
            l.clone() + (k1l + k2l.mul_scalar(2.0) + k3l.mul_scalar(2.0) + k4l).mul_scalar(h / 6.0);
        let v_new =
            v.clone() + (k1v + k2v.mul_scalar(2.0) + k3v.mul_scalar(2.0) + k4v).mul_scalar(h / 6.0);
        // 4. outputs at the new state
        let cphi = curves::cos_pennation(p, &l_new);
        let fse = curves::tendon_force(p, &mtu, &l_new, &cphi);
        let arm = curves::poly(&p.bk, &angle);
        let ce = self.ce_force(&l_new, &v_new, &f1, &f2);
        let out = HillOutput {
            force_n: fse.clone().mul_scalar(p.f0_n),
            torque_nm: (fse.clone() * arm).mul_scalar(p.f0_n),
            tendon_force_f0: fse,
            ce_force_f0: ce,
            activation_f0: [f1, f2],
        };
        let next = HillState {
            l_l0: l_new,
            v_l0_s: v_new,
            f_prev: st.f.clone(),
            f: f_new,
        };
        Ok((next, out))
    }
}
