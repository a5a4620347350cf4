//! [`HillMuscle`]: the Hill model as a kernel [`Stage`] (tape path).

use super::host::{HillHost, HillRow};
use super::{HillModel, HillState};
use crate::error::{Error, Result, check};
use crate::kernel::{
    BufferSpec, HostCx, HostStage, ReadSpec, SaveAt, Stage, StageDecl, StageIo, VjpIo,
};

/// Kernel stage around [`HillModel::step`].
///
/// Reads `spikes` `[n]` (same tick) and, if configured with [`HillMuscle::with_angle`], the joint
/// angle `[1]` (rad) **delayed by one tick** (the muscle → joint → muscle feedback edge);
/// otherwise the angle is the constant given to [`HillMuscle::new`]. Writes `muscle_force_n`
/// (N), `muscle_torque_nm` (N·m), `fibre_length_l0` (L0) and `fibre_velocity_l0_s` (L0/s), all
/// `[1]`, from the state after the tick's update. `init` sets the length buffer to the initial
/// length and the force/torque buffers to their values there (what delayed readers see at tick 0).
#[derive(Debug)]
pub struct HillMuscle {
    name: String,
    model: HillModel,
    initial_length_l0: f64,
    fixed_angle_rad: f64,
    spikes: String,
    angle: Option<String>,
    state: Option<HillState>,
    /// Streaming path: host constants and one state per row.
    host: Option<(HillHost, Vec<HillRow>)>,
    /// Stream adjoint: the adjoint of each row's state.
    host_lam: Vec<HillRow>,
}

/// Output buffer names.
pub mod buffers {
    /// Tendon force (N).
    pub const FORCE_N: &str = "muscle_force_n";
    /// Joint torque (N·m).
    pub const TORQUE_NM: &str = "muscle_torque_nm";
    /// Fascicle length (L0).
    pub const LENGTH_L0: &str = "fibre_length_l0";
    /// Fascicle velocity (L0/s).
    pub const VELOCITY_L0_S: &str = "fibre_velocity_l0_s";
}

impl HillMuscle {
    /// A stage named `hill` reading `spikes`, at the fixed angle `angle_rad`, starting at
    /// `initial_length_l0` with `V = 0` (use [`super::HillParams::rest_length_l0`] for rest).
    pub fn new(model: HillModel, initial_length_l0: f64, angle_rad: f64) -> Result<Self> {
        check::in_range(
            "hill.initial_length_l0",
            initial_length_l0,
            model.params.min_length_l0(),
            3.0,
        )?;
        check::in_range(
            "hill.angle_rad",
            angle_rad,
            -std::f64::consts::PI,
            std::f64::consts::PI,
        )?;
        Ok(Self {
            name: "hill".into(),
            model,
            initial_length_l0,
            fixed_angle_rad: angle_rad,
            spikes: "spikes".into(),
            angle: None,
            state: None,
            host: None,
            host_lam: Vec::new(),
        })
    }

    /// Reads the angle (rad) from buffer `name`, one tick delayed.
    pub fn with_angle(mut self, name: impl Into<String>) -> Self {
        self.angle = Some(name.into());
        self
    }

    /// Reads spikes from buffer `name` instead of `spikes`.
    pub fn with_spikes(mut self, name: impl Into<String>) -> Self {
        self.spikes = name.into();
        self
    }
}

impl HillMuscle {
    /// The model's range, checked every step (host read of `[batch, 1]`): the angle read from the
    /// joint (a fixed angle was checked by [`HillMuscle::new`]) within ±π rad (the MTU-length and
    /// moment-arm polynomials are fitted over a physiological range) and the fascicle length in
    /// `(min_length, 3)` L0. Errors name the stage, field, step and value.
    fn check_range(
        &self,
        angle: Option<&burn::tensor::Tensor<2>>,
        l: &burn::tensor::Tensor<2>,
        t: usize,
    ) -> Result<()> {
        for a in angle
            .map(|a| crate::kernel::to_vec_f64(a.clone()))
            .unwrap_or_default()
        {
            self.check_angle(a, t)?;
        }
        for v in crate::kernel::to_vec_f64(l.clone()) {
            self.check_length(v, t)?;
        }
        Ok(())
    }

    /// The angle read from the joint (rad) within ±π.
    fn check_angle(&self, a: f64, t: usize) -> Result<()> {
        if !(a.is_finite() && a.abs() <= std::f64::consts::PI) {
            return Err(Error::invalid(
                format!("{}.angle_rad (step {t})", self.name),
                a,
                "within ±π rad: the MTU-length polynomial holds over a physiological range \
                 (give the joint stiffness or an opposing torque)",
            ));
        }
        Ok(())
    }

    /// The fascicle length (L0) in `(min_length, 3)`.
    fn check_length(&self, l: f64, t: usize) -> Result<()> {
        let lo = self.model.params.min_length_l0();
        if !(l.is_finite() && l > lo && l < 3.0) {
            return Err(Error::invalid(
                format!("{}.fibre_length_l0 (step {t})", self.name),
                l,
                format!("in ({lo:.3}, 3) L0"),
            ));
        }
        Ok(())
    }
}

impl Stage for HillMuscle {
    fn name(&self) -> &str {
        &self.name
    }

    fn declare(&self) -> StageDecl {
        let mut reads = vec![ReadSpec::now(self.spikes.clone())];
        if let Some(a) = &self.angle {
            reads.push(ReadSpec::delayed(a.clone()));
        }
        StageDecl {
            reads,
            writes: vec![
                BufferSpec::new(buffers::FORCE_N, &[1], "N"),
                BufferSpec::new(buffers::TORQUE_NM, &[1], "N m"),
                BufferSpec::new(buffers::LENGTH_L0, &[1], "L0"),
                BufferSpec::new(buffers::VELOCITY_L0_S, &[1], "L0/s"),
            ],
        }
    }

    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let ctx = io.ctx().clone();
        let batch = io.batch();
        if (io.dt_s() - self.model.dt_s).abs() > 1e-12 * self.model.dt_s {
            return Err(Error::config(
                "hill.dt_s",
                format!(
                    "model built for dt_s = {}, simulation runs at {}",
                    self.model.dt_s,
                    io.dt_s()
                ),
            ));
        }
        let st = self.model.state(&ctx, batch, self.initial_length_l0)?;
        let p = &self.model.params;
        let f = p.tendon_force_f0(self.fixed_angle_rad, self.initial_length_l0);
        let arm = super::HillParams::poly(&p.bk, self.fixed_angle_rad);
        io.write(buffers::FORCE_N, ctx.full([batch, 1], p.f0_n * f))?;
        io.write(buffers::TORQUE_NM, ctx.full([batch, 1], p.f0_n * f * arm))?;
        io.write(buffers::LENGTH_L0, st.l_l0.clone())?;
        io.write(buffers::VELOCITY_L0_S, st.v_l0_s.clone())?;
        self.state = Some(st);
        Ok(())
    }

    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let st = self
            .state
            .take()
            .ok_or_else(|| Error::config(&self.name, "step called before init"))?;
        let spikes = io.read(&self.spikes)?;
        let angle = match &self.angle {
            Some(a) => io.read(a)?,
            None => io.ctx().full([1, 1], self.fixed_angle_rad),
        };
        let (next, out) = self.model.step(&st, spikes, angle.clone())?;
        self.check_range(self.angle.is_some().then_some(&angle), &next.l_l0, t)?;
        io.write(buffers::FORCE_N, out.force_n)?;
        io.write(buffers::TORQUE_NM, out.torque_nm)?;
        io.write(buffers::LENGTH_L0, next.l_l0.clone())?;
        io.write(buffers::VELOCITY_L0_S, next.v_l0_s.clone())?;
        self.state = Some(next);
        Ok(())
    }

    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for HillMuscle {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let h = self.model.host();
        let rows = vec![h.row(self.initial_length_l0); cx.batch];
        self.host = Some((h, rows));
        Ok(())
    }
    /// [`HillHost::step`] per row; `ins` = spikes `[n]` (and the angle, delayed), `outs` = force
    /// (N), torque (N·m), length (L0), velocity (L0/s).
    fn host_step(
        &mut self,
        _cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let n = self.model.n_units();
        let (h, rows) = self
            .host
            .take()
            .ok_or_else(|| Error::config(&self.name, "host_step before host_init"))?;
        let mut rows = rows;
        let res = (|| {
            for (b, st) in rows.iter_mut().enumerate() {
                let angle = self.angle.as_ref().map(|_| ins[1][b]);
                let out = h.step(
                    st,
                    &ins[0][b * n..(b + 1) * n],
                    angle.unwrap_or(self.fixed_angle_rad),
                )?;
                if let Some(a) = angle {
                    self.check_angle(a, t)?;
                }
                self.check_length(st.l, t)?;
                outs[0][b] = out.force_n;
                outs[1][b] = out.torque_nm;
                outs[2][b] = st.l;
                outs[3][b] = st.v;
            }
            Ok(())
        })();
        self.host = Some((h, rows));
        res
    }
    fn host_save(&self, _at: SaveAt, into: &mut Vec<f64>) {
        if let Some((_, rows)) = &self.host {
            for r in rows {
                into.push(r.l);
                into.push(r.v);
                into.extend_from_slice(&r.f);
                into.extend_from_slice(&r.f_prev);
            }
        }
    }
    fn host_load(&mut self, _at: SaveAt, from: &[f64]) {
        if let Some((_, rows)) = &mut self.host {
            let mut k = 0;
            for r in rows {
                let n = r.f.len();
                r.l = from[k];
                r.v = from[k + 1];
                r.f.copy_from_slice(&from[k + 2..k + 2 + n]);
                r.f_prev.copy_from_slice(&from[k + 2 + n..k + 2 + 2 * n]);
                k += 2 + 2 * n;
            }
        }
    }
    fn adjoint_init(&mut self, cx: &HostCx, _segment: usize) -> Result<()> {
        let (h, _) = self
            .host
            .as_ref()
            .ok_or_else(|| Error::config(&self.name, "adjoint_init before host_init"))?;
        // the adjoint of a row's state starts at zero (a row "at length 0" is all zeros)
        self.host_lam = vec![h.row(0.0); cx.batch];
        Ok(())
    }
    /// [`HillHost::vjp`] per row; the angle's adjoint goes to the previous tick (delayed read).
    fn host_vjp(&mut self, _cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        let n = self.model.n_units();
        let (h, rows) = self
            .host
            .as_ref()
            .ok_or_else(|| Error::config(&self.name, "host_vjp before host_init"))?;
        for (b, (st, lam)) in rows.iter().zip(self.host_lam.iter_mut()).enumerate() {
            let angle = match &self.angle {
                Some(_) => ins[1][b],
                None => self.fixed_angle_rad,
            };
            let g = [0, 1, 2, 3].map(|k| g_outs[k][b]);
            let ga = h.vjp(
                st,
                lam,
                g,
                &ins[0][b * n..(b + 1) * n],
                angle,
                &mut g_ins[0][b * n..(b + 1) * n],
            );
            if self.angle.is_some() {
                g_ins[1][b] += ga;
            }
        }
        Ok(())
    }
}
