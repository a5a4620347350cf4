//! Joint dynamics (MODEL.md §5.3): `I·θ'' = τ − B·θ' − K·θ`, semi-implicit Euler, SI units
//! (θ in rad, ω in rad/s, τ in N·m, I in kg·m², B in N·m·s/rad, K in N·m/rad).
//!
//! One step with time step `dt` (s): `α = (τ − K·θ − B·ω)/I`, `ω ← ω + α·dt`, `θ ← θ + ω_new·dt`
//! (MyoGen 0.12 `JointDynamics.integrate`; it returns degrees, this returns rad).
//! `τ = τ_muscle + τ_ext`: the muscle torque plus an **external perturbation torque profile**
//! (N·m) — a tendon tap is a short torque pulse, a ramp-and-hold stretch a torque ramp to a
//! plateau (or, for an imposed-angle stretch, drive the muscle's angle input directly and skip the
//! joint). Coefficients are `[batch or 1, 1]` tensors so that gradients can be taken with respect
//! to them.

use burn::tensor::Tensor;

use crate::error::{Error, Result, check};
use crate::kernel::host::row;
use crate::kernel::{
    BufferSpec, Ctx, HostCx, HostStage, ReadSpec, Stage, StageDecl, StageIo, VjpIo, to_vec_f64,
};

/// Joint constants (SI).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointParams {
    /// Moment of inertia (kg·m², > 0).
    pub inertia_kg_m2: f64,
    /// Viscous damping (N·m·s/rad, ≥ 0).
    pub damping_nm_s_per_rad: f64,
    /// Stiffness (N·m/rad, ≥ 0).
    pub stiffness_nm_per_rad: f64,
}

impl JointParams {
    /// The joint of MyoGen's example 11: I = 0.001 kg·m², B = 0.002 N·m·s/rad, K = 0.
    pub fn myogen_example11() -> Self {
        Self {
            inertia_kg_m2: 0.001,
            damping_nm_s_per_rad: 0.002,
            stiffness_nm_per_rad: 0.0,
        }
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        check::positive("joint.inertia_kg_m2", self.inertia_kg_m2)?;
        check::non_negative("joint.damping_nm_s_per_rad", self.damping_nm_s_per_rad)?;
        check::non_negative("joint.stiffness_nm_per_rad", self.stiffness_nm_per_rad)?;
        Ok(())
    }

    /// Stability of semi-implicit Euler: with `a = B·dt/I`, `k = K·dt²/I` the step matrix has
    /// spectral radius < 1 iff `k < 2·(2 − a)` and `a < 2` (for `K > 0`; `a < 2` for `K = 0`).
    /// Errors: [`Error::UnstableTimeStep`].
    pub fn check_dt(&self, dt_s: f64) -> Result<()> {
        self.validate()?;
        let bad = |reason: String| Error::UnstableTimeStep {
            dt_s,
            model: "joint".into(),
            reason,
        };
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return Err(bad("dt_s must be finite and > 0".into()));
        }
        let a = self.damping_nm_s_per_rad * dt_s / self.inertia_kg_m2;
        let k = self.stiffness_nm_per_rad * dt_s * dt_s / self.inertia_kg_m2;
        if a >= 2.0 || k >= 2.0 * (2.0 - a) {
            return Err(bad(format!(
                "semi-implicit Euler needs B·dt/I < 2 and K·dt²/I < 2(2 − B·dt/I); got {a:.3e} and {k:.3e}"
            )));
        }
        Ok(())
    }

    /// The coefficients as `[1, 1]` tensors.
    pub fn tensors(&self, ctx: &Ctx) -> Result<JointCoeffs> {
        self.validate()?;
        Ok(JointCoeffs {
            inertia: ctx.full([1, 1], self.inertia_kg_m2),
            damping: ctx.full([1, 1], self.damping_nm_s_per_rad),
            stiffness: ctx.full([1, 1], self.stiffness_nm_per_rad),
        })
    }
}

/// Joint coefficients as tensors (`[batch or 1, 1]`), differentiable.
#[derive(Clone, Debug)]
pub struct JointCoeffs {
    /// I (kg·m²).
    pub inertia: Tensor<2>,
    /// B (N·m·s/rad).
    pub damping: Tensor<2>,
    /// K (N·m/rad).
    pub stiffness: Tensor<2>,
}

/// Joint state (`[batch, 1]`): angle (rad) and angular velocity (rad/s).
#[derive(Clone, Debug)]
pub struct JointState {
    /// θ (rad).
    pub angle_rad: Tensor<2>,
    /// ω (rad/s).
    pub velocity_rad_s: Tensor<2>,
}

/// One semi-implicit Euler step: `α = (τ − K·θ − B·ω)/I`, `ω' = ω + α·dt`, `θ' = θ + ω'·dt`
/// (τ = total torque in N·m, `[batch, 1]`; dt in s). Validate `dt_s` once with
/// [`JointParams::check_dt`].
pub fn joint_step(k: &JointCoeffs, st: &JointState, torque_nm: Tensor<2>, dt_s: f64) -> JointState {
    let acc = (torque_nm
        - k.stiffness.clone() * st.angle_rad.clone()
        - k.damping.clone() * st.velocity_rad_s.clone())
        / k.inertia.clone();
    let om = st.velocity_rad_s.clone() + acc.mul_scalar(dt_s);
    let th = st.angle_rad.clone() + om.clone().mul_scalar(dt_s);
    JointState {
        angle_rad: th,
        velocity_rad_s: om,
    }
}

/// Output buffer names of [`Joint`].
pub mod buffers {
    /// Joint angle (rad).
    pub const ANGLE_RAD: &str = "joint_angle_rad";
    /// Joint angular velocity (rad/s).
    pub const VELOCITY_RAD_S: &str = "joint_velocity_rad_s";
}

/// Kernel stage around [`joint_step`]: reads the muscle torque `[1]` (N·m, same tick; default
/// `muscle_torque_nm`) and optionally an external perturbation torque `[1]` (N·m, e.g. a
/// simulation input), writes `joint_angle_rad` and `joint_velocity_rad_s` `[1]` (after the update).
#[derive(Debug)]
pub struct Joint {
    params: JointParams,
    coeffs: Option<JointCoeffs>,
    torque: String,
    perturbation: Option<String>,
    initial_angle_rad: f64,
    state: Option<JointState>,
    /// Streaming path: (I, B, K) host columns `[1|batch]`.
    host_k: [Vec<f64>; 3],
}

impl Joint {
    /// A joint at rest at `initial_angle_rad`, driven by `muscle_torque_nm`.
    pub fn new(params: JointParams, initial_angle_rad: f64) -> Result<Self> {
        params.validate()?;
        check::finite("joint.initial_angle_rad", initial_angle_rad)?;
        Ok(Self {
            params,
            coeffs: None,
            torque: "muscle_torque_nm".into(),
            perturbation: None,
            initial_angle_rad,
            state: None,
            host_k: Default::default(),
        })
    }
    /// Uses these (possibly gradient-tracking) coefficient tensors instead of the parameters'.
    pub fn with_coeffs(mut self, coeffs: JointCoeffs) -> Self {
        self.coeffs = Some(coeffs);
        self
    }
    /// Reads the muscle torque from buffer `name`.
    pub fn with_torque(mut self, name: impl Into<String>) -> Self {
        self.torque = name.into();
        self
    }
    /// Adds the external perturbation torque read from buffer `name` (N·m).
    pub fn with_perturbation(mut self, name: impl Into<String>) -> Self {
        self.perturbation = Some(name.into());
        self
    }
}

impl Stage for Joint {
    fn name(&self) -> &str {
        "joint"
    }
    fn declare(&self) -> StageDecl {
        let mut reads = vec![ReadSpec::now(self.torque.clone())];
        if let Some(p) = &self.perturbation {
            reads.push(ReadSpec::now(p.clone()));
        }
        StageDecl {
            reads,
            writes: vec![
                BufferSpec::new(buffers::ANGLE_RAD, &[1], "rad"),
                BufferSpec::new(buffers::VELOCITY_RAD_S, &[1], "rad/s"),
            ],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        self.params.check_dt(io.dt_s())?;
        let ctx = io.ctx().clone();
        if self.coeffs.is_none() {
            self.coeffs = Some(self.params.tensors(&ctx)?);
        }
        let st = JointState {
            angle_rad: ctx.full([io.batch(), 1], self.initial_angle_rad),
            velocity_rad_s: ctx.zeros([io.batch(), 1]),
        };
        io.write(buffers::ANGLE_RAD, st.angle_rad.clone())?;
        io.write(buffers::VELOCITY_RAD_S, st.velocity_rad_s.clone())?;
        self.state = Some(st);
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let st = self
            .state
            .take()
            .ok_or_else(|| Error::config("joint", "step called before init"))?;
        let mut tau = io.read(&self.torque)?;
        if let Some(p) = &self.perturbation {
            tau = tau + io.read(p)?;
        }
        let k = self
            .coeffs
            .as_ref()
            .ok_or_else(|| Error::config("joint", "step called before init"))?;
        let next = joint_step(k, &st, tau, io.dt_s());
        io.write(buffers::ANGLE_RAD, next.angle_rad.clone())?;
        io.write(buffers::VELOCITY_RAD_S, next.velocity_rad_s.clone())?;
        self.state = Some(next);
        Ok(())
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for Joint {
    fn host_init(&mut self, _cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let k = self
            .coeffs
            .as_ref()
            .ok_or_else(|| Error::config("joint", "host_init before init"))?;
        self.host_k = [&k.inertia, &k.damping, &k.stiffness].map(|t| to_vec_f64(t.clone()));
        Ok(())
    }
    /// [`joint_step`] per row; the outputs (θ, ω) are the state.
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        _t: usize,
    ) -> Result<()> {
        let [i, bd, k] = &self.host_k;
        for b in 0..cx.batch {
            let mut tau = ins[0][b];
            if self.perturbation.is_some() {
                tau += ins[1][b];
            }
            let (th, om) = (outs[0][b], outs[1][b]);
            let acc = (tau - row(k, b) * th - row(bd, b) * om) / row(i, b);
            let om = om + acc * cx.dt_s;
            outs[0][b] = th + om * cx.dt_s;
            outs[1][b] = om;
        }
        Ok(())
    }
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        Ok(())
    }
    /// Reverse of `ω' = ω + α·dt`, `θ' = θ + ω'·dt`, `α = (τ − Kθ − Bω)/I`.
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            g_outs,
            g_ins,
            g_outs_prev,
            ..
        } = io;
        let [i, bd, k] = &self.host_k;
        let dt = cx.dt_s;
        for b in 0..cx.batch {
            let g_th = g_outs[0][b];
            let g_om = g_outs[1][b] + g_th * dt;
            let g_acc = g_om * dt / row(i, b);
            g_outs_prev[0][b] += g_th - g_acc * row(k, b);
            g_outs_prev[1][b] += g_om - g_acc * row(bd, b);
            g_ins[0][b] += g_acc;
            if self.perturbation.is_some() {
                g_ins[1][b] += g_acc;
            }
        }
        Ok(())
    }
}
