//! [`SpindleInput`]: what the spindle sees in the closed loop (MODEL.md §5.1, last line): the
//! fascicle state of the Hill muscle plus an imposed stretch, and the fusimotor drive.
//!
//! With the Hill fascicle length `L` (L0) and velocity `V` (L0/s) of this tick, the stretch
//! profile `δ(t)` (fraction of L) and its rate `δ'(t)` (1/s):
//!
//! `L_sp = L·(1 + δ)`, `V_sp = V + L·δ'`, `A_sp = (V − V_prev)/dt` (L0/s², 0 at the first tick),
//!
//! and the dynamic / static gamma drives (Hz) are constant tensors `[1|batch, 1]`, so gradients can
//! be taken with respect to them. A [`Stretch`] is MyoGen example 11's triangular tendon tap (or a
//! ramp-and-hold stretch).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::stage::SPINDLE_INPUTS;
use crate::error::{Error, Result, check};
use crate::kernel::host::row;
use crate::kernel::{
    BufferSpec, HostCx, HostStage, ReadSpec, SaveAt, Stage, StageDecl, StageIo, VjpIo, to_vec_f64,
};
use crate::muscle::hill::buffers as hill;

/// An imposed stretch of the spindle, as a fraction of the fascicle length.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stretch {
    /// Tendon tap: a triangle rising linearly to `amplitude` (fraction of L) over `duration_s/2`
    /// and back (MyoGen example 11: 100 ms, 50–80 %).
    Tap {
        /// Onset (s).
        onset_s: f64,
        /// Peak stretch (fraction of L, ≥ 0).
        amplitude: f64,
        /// Total duration (s, > 0).
        duration_s: f64,
    },
    /// Ramp-and-hold: linear rise to `amplitude` over `ramp_s`, held for `hold_s`, then released.
    RampHold {
        /// Onset (s).
        onset_s: f64,
        /// Plateau stretch (fraction of L, ≥ 0).
        amplitude: f64,
        /// Ramp duration (s, > 0).
        ramp_s: f64,
        /// Hold duration (s, ≥ 0).
        hold_s: f64,
    },
}

impl Stretch {
    /// Checks the fields (errors name `stretch[k].<field>`).
    pub fn validate(&self, k: usize) -> Result<()> {
        let f = |n: &str| format!("stretch[{k}].{n}");
        match *self {
            Stretch::Tap {
                onset_s,
                amplitude,
                duration_s,
            } => {
                check::non_negative(&f("onset_s"), onset_s)?;
                check::in_range(&f("amplitude"), amplitude, 0.0, 1.0)?;
                check::positive(&f("duration_s"), duration_s)?;
            }
            Stretch::RampHold {
                onset_s,
                amplitude,
                ramp_s,
                hold_s,
            } => {
                check::non_negative(&f("onset_s"), onset_s)?;
                check::in_range(&f("amplitude"), amplitude, 0.0, 1.0)?;
                check::positive(&f("ramp_s"), ramp_s)?;
                check::non_negative(&f("hold_s"), hold_s)?;
            }
        }
        Ok(())
    }

    /// `(δ, δ')` at time `t_s` (fraction of L, 1/s).
    pub fn at(&self, t_s: f64) -> (f64, f64) {
        match *self {
            Stretch::Tap {
                onset_s,
                amplitude,
                duration_s,
            } => {
                let half = duration_s / 2.0;
                let u = t_s - onset_s;
                if !(0.0..duration_s).contains(&u) {
                    (0.0, 0.0)
                } else if u < half {
                    (amplitude * u / half, amplitude / half)
                } else {
                    (amplitude * (duration_s - u) / half, -amplitude / half)
                }
            }
            Stretch::RampHold {
                onset_s,
                amplitude,
                ramp_s,
                hold_s,
            } => {
                let u = t_s - onset_s;
                if u < 0.0 || u >= ramp_s + hold_s {
                    (0.0, 0.0)
                } else if u < ramp_s {
                    (amplitude * u / ramp_s, amplitude / ramp_s)
                } else {
                    (amplitude, 0.0)
                }
            }
        }
    }
}

/// Stage: reads the Hill stage's `fibre_length_l0` and `fibre_velocity_l0_s` (same tick), writes
/// the five [`SPINDLE_INPUTS`] `[1]`.
pub struct SpindleInput {
    stretches: Vec<Stretch>,
    gamma_dyn_hz: Tensor<2>,
    gamma_stat_hz: Tensor<2>,
    v_prev: Option<Tensor<2>>,
    /// Streaming path: gamma drives `[1|batch]` (Hz) and the previous velocity per row.
    host_gamma: (Vec<f64>, Vec<f64>),
    host_v_prev: Option<Vec<f64>>,
    /// Adjoint: pending `λ` of the previous tick's velocity (from `A_sp`), gamma gradients.
    host_lv: Vec<f64>,
    host_g: (Vec<f64>, Vec<f64>),
}

impl SpindleInput {
    /// A spindle input with the given stretches (summed where they overlap) and gamma drives
    /// `[1|batch, 1]` (Hz, ≥ 0). Errors: invalid stretch fields, negative or non-finite drives,
    /// wrong shapes.
    pub fn new(
        stretches: Vec<Stretch>,
        gamma_dyn_hz: Tensor<2>,
        gamma_stat_hz: Tensor<2>,
    ) -> Result<Self> {
        for (k, s) in stretches.iter().enumerate() {
            s.validate(k)?;
        }
        for (name, g) in [
            ("gamma_dyn_hz", &gamma_dyn_hz),
            ("gamma_stat_hz", &gamma_stat_hz),
        ] {
            if g.dims()[1] != 1 {
                return Err(Error::shape(
                    name,
                    "[batch|1, 1]",
                    format!("{:?}", g.dims()),
                ));
            }
            for (i, v) in crate::kernel::to_vec_f64(g.clone()).iter().enumerate() {
                check::non_negative(&format!("{name}[{i}]"), *v)?;
            }
        }
        Ok(Self {
            stretches,
            gamma_dyn_hz,
            gamma_stat_hz,
            v_prev: None,
            host_gamma: (Vec::new(), Vec::new()),
            host_v_prev: None,
            host_lv: Vec::new(),
            host_g: (Vec::new(), Vec::new()),
        })
    }

    fn profile(&self, t_s: f64) -> (f64, f64) {
        self.stretches.iter().fold((0.0, 0.0), |(d, r), s| {
            let (a, b) = s.at(t_s);
            (d + a, r + b)
        })
    }
}

impl Stage for SpindleInput {
    fn name(&self) -> &str {
        "spindle_input"
    }
    fn declare(&self) -> StageDecl {
        let units = ["L0", "L0/s", "L0/s^2", "Hz", "Hz"];
        StageDecl {
            reads: vec![
                ReadSpec::now(hill::LENGTH_L0),
                ReadSpec::now(hill::VELOCITY_L0_S),
            ],
            writes: SPINDLE_INPUTS
                .iter()
                .zip(units)
                .map(|(n, u)| BufferSpec::new(*n, &[1], u))
                .collect(),
        }
    }
    fn init(&mut self, _io: &mut StageIo<'_>) -> Result<()> {
        self.v_prev = None;
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let l = io.read(hill::LENGTH_L0)?;
        let v = io.read(hill::VELOCITY_L0_S)?;
        let dt = io.dt_s();
        let (d, rate) = self.profile(t as f64 * dt);
        let a = match self.v_prev.take() {
            Some(p) => (v.clone() - p).div_scalar(dt),
            None => v.zeros_like(),
        };
        self.v_prev = Some(v.clone());
        let b = io.batch();
        let widen = |g: &Tensor<2>| {
            if g.dims()[0] == b {
                g.clone()
            } else {
                g.clone().repeat_dim(0, b)
            }
        };
        let [ln, vn, an, gd, gs] = SPINDLE_INPUTS;
        io.write(ln, l.clone().mul_scalar(1.0 + d))?;
        io.write(vn, v + l.mul_scalar(rate))?;
        io.write(an, a)?;
        io.write(gd, widen(&self.gamma_dyn_hz))?;
        io.write(gs, widen(&self.gamma_stat_hz))
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for SpindleInput {
    fn host_init(&mut self, _cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        self.host_gamma = (
            to_vec_f64(self.gamma_dyn_hz.clone()),
            to_vec_f64(self.gamma_stat_hz.clone()),
        );
        self.host_v_prev = None;
        Ok(())
    }
    /// `L_sp = L·(1 + δ)`, `V_sp = V + L·δ'`, `A_sp = (V − V_prev)/dt` per row, as `step`.
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let dt = cx.dt_s;
        let (d, rate) = self.profile(t as f64 * dt);
        let (l, v) = (ins[0], ins[1]);
        for b in 0..cx.batch {
            outs[0][b] = l[b] * (1.0 + d);
            outs[1][b] = v[b] + l[b] * rate;
            outs[2][b] = match &self.host_v_prev {
                Some(p) => (v[b] - p[b]) / dt,
                None => 0.0,
            };
            outs[3][b] = row(&self.host_gamma.0, b);
            outs[4][b] = row(&self.host_gamma.1, b);
        }
        self.host_v_prev = Some(v.to_vec());
        Ok(())
    }
    fn host_save(&self, _at: SaveAt, into: &mut Vec<f64>) {
        match &self.host_v_prev {
            Some(v) => {
                into.push(1.0);
                into.extend_from_slice(v);
            }
            None => into.push(0.0),
        }
    }
    fn host_load(&mut self, _at: SaveAt, from: &[f64]) {
        self.host_v_prev = (from[0] == 1.0).then(|| from[1..].to_vec());
    }
    fn adjoint_init(&mut self, cx: &HostCx, _segment: usize) -> Result<()> {
        self.host_lv = vec![0.0; cx.batch];
        self.host_g = (
            vec![0.0; self.host_gamma.0.len()],
            vec![0.0; self.host_gamma.1.len()],
        );
        Ok(())
    }
    /// Reverse of `L_sp = L(1 + δ)`, `V_sp = V + Lδ'`, `A_sp = (V − V_prev)/dt`, γ outputs.
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, t: usize) -> Result<()> {
        let VjpIo { g_outs, g_ins, .. } = io;
        let dt = cx.dt_s;
        let (d, rate) = self.profile(t as f64 * dt);
        let has_prev = self.host_v_prev.is_some();
        for b in 0..cx.batch {
            let ga = if has_prev { g_outs[2][b] / dt } else { 0.0 };
            g_ins[0][b] += g_outs[0][b] * (1.0 + d) + g_outs[1][b] * rate;
            g_ins[1][b] += g_outs[1][b] + ga + self.host_lv[b];
            self.host_lv[b] = -ga;
            let (gd, gs) = (&mut self.host_g.0, &mut self.host_g.1);
            let i = if gd.len() == 1 { 0 } else { b };
            gd[i] += g_outs[3][b];
            let i = if gs.len() == 1 { 0 } else { b };
            gs[i] += g_outs[4][b];
        }
        Ok(())
    }
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            ("gamma_dyn_hz".into(), self.host_g.0.clone()),
            ("gamma_stat_hz".into(), self.host_g.1.clone()),
        ]
    }
}
