//! The Hill model's step on host scalars (the streaming path, [`crate::kernel::host`]): the
//! equations of [`super`] (twitch IIR, saturation, RK4 on `(L, V)`, post-update outputs) for one
//! batch row, in `f64`. Units as in [`super`]: L0, L0/s, F0, N, N·m, rad.

use super::{ForceLength, ForceVelocity, HillModel, HillParams};
use crate::error::Result;
use crate::kernel::to_vec_f64;

/// `fL(L) = exp(−|(L^b − 1)/o|^r)`.
fn force_length(fl: &ForceLength, l: f64) -> f64 {
    (-((l.powf(fl.b) - 1.0) / fl.o).abs().powf(fl.r)).exp()
}

/// `fV(L, V) = f₊(max(V,0)) + f₋(min(V,0)) − 1` (see [`super::curves::force_velocity`]).
fn force_velocity(fv: &ForceVelocity, l: f64, v: f64) -> f64 {
    let vp = v.max(0.0);
    let vn = v.min(0.0);
    let a = (l * fv.av2 + fv.av1) * l + fv.av0;
    let pos = (-(vp * a) + fv.bv) / (vp + fv.bv);
    let cfac = l * fv.cv1 + fv.cv0;
    let neg = (-vn + fv.vmax) / (vn * cfac + fv.vmax);
    pos + (neg - 1.0)
}

/// `cos φ = sqrt(1 − (sin α0/L)²)`, in the tensor path's operation order.
fn cos_pennation(p: &HillParams, l: f64) -> f64 {
    let s = (1.0 / l) * p.alfa0_rad.sin();
    (-(s * s) + 1.0).sqrt()
}

/// `F_PE = e^{Kpe(L−1)/Em0}/e^{Kpe} + b·V` (F0), in the tensor path's operation order.
fn passive_force(p: &HillParams, l: f64, v: f64) -> f64 {
    ((l - 1.0) * (p.kpe / p.em0)).exp() / p.kpe.exp() + v * p.b_visc
}

/// `F_SE = Kse·cT·softplus((LT − LT_r)/cT)`, `LT = (MTU − L·cos φ·L0)/LT0` (F0), in the tensor
/// path's operation order.
fn tendon_force(p: &HillParams, mtu_m: f64, l: f64, cos_phi: f64) -> f64 {
    let lt = (mtu_m - (l * cos_phi) * p.l0_m) / p.lt0_m;
    let x = (lt - p.lt_r) / p.ct;
    (x.max(0.0) + (-x.abs()).exp().ln_1p()) * (p.kse * p.ct)
}

/// One row's outputs after a step (see [`super::HillOutput`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HillRowOut {
    /// Tendon force (N).
    pub force_n: f64,
    /// Joint torque (N·m).
    pub torque_nm: f64,
}

/// The model's per-unit constants on the host (`[n]` each).
#[derive(Clone, Debug)]
pub struct HillHost {
    params: HillParams,
    dt_s: f64,
    n_type1: usize,
    a1: Vec<f64>,
    a2: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    twi_amp: Vec<f64>,
}

/// One row's state: length (L0), velocity (L0/s), twitch filters `f`, `f_prev` `[n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HillRow {
    /// L (L0).
    pub l: f64,
    /// V (L0/s).
    pub v: f64,
    /// Twitch filter `f[k]`.
    pub f: Vec<f64>,
    /// Twitch filter `f[k−1]`.
    pub f_prev: Vec<f64>,
}

impl HillModel {
    /// The host copy of the constants (the tensors read once).
    pub fn host(&self) -> HillHost {
        HillHost {
            params: self.params.clone(),
            dt_s: self.dt_s,
            n_type1: self.n_type1,
            a1: to_vec_f64(self.a1.clone()),
            a2: to_vec_f64(self.a2.clone()),
            b: to_vec_f64(self.b.clone()),
            c: to_vec_f64(self.c.clone()),
            twi_amp: to_vec_f64(self.twi_amp.clone()),
        }
    }
}

impl HillHost {
    /// A row at rest at length `l_l0` (L0).
    pub fn row(&self, l_l0: f64) -> HillRow {
        let n = self.c.len();
        HillRow {
            l: l_l0,
            v: 0.0,
            f: vec![0.0; n],
            f_prev: vec![0.0; n],
        }
    }

    /// `F_CE = F1·fL1·fV1 + F2·fL2·fV2` (F0).
    fn ce_force(&self, l: f64, v: f64, f1: f64, f2: f64) -> f64 {
        let p = &self.params;
        let c1 = force_length(&p.fl[0], l) * force_velocity(&p.fv[0], l, v);
        let c2 = force_length(&p.fl[1], l) * force_velocity(&p.fv[1], l, v);
        f1 * c1 + f2 * c2
    }

    /// `dV/dt = (F0/m)·(F_SE·cos φ − (F_CE + F_PE)·cos² φ)` (L0/s²).
    fn accel(&self, l: f64, v: f64, f1: f64, f2: f64, mtu_m: f64) -> f64 {
        let p = &self.params;
        let cphi = cos_pennation(p, l);
        let fce = self.ce_force(l, v, f1, f2);
        let fpe = passive_force(p, l, v);
        let fse = tendon_force(p, mtu_m, l, cphi);
        (fse * cphi - (fce + fpe) * (cphi * cphi)) * (p.f0_n / p.mass_kg)
    }

    /// One step of one row with the spikes `s` `[n]` entering the twitch filters and the joint
    /// angle (rad); the state is updated in place (see [`HillModel::step`]).
    pub fn step(&self, st: &mut HillRow, s: &[f64], angle_rad: f64) -> Result<HillRowOut> {
        let n = self.c.len();
        if s.len() != n {
            return Err(crate::Error::shape("hill.spikes", n, s.len()));
        }
        let (mut f1, mut f2) = (0.0, 0.0);
        for j in 0..n {
            let f_new = self.a1[j] * st.f[j] - self.a2[j] * st.f_prev[j] + self.b[j] * s[j];
            st.f_prev[j] = st.f[j];
            st.f[j] = f_new;
            let e = (-(f_new * self.c[j])).exp();
            let fs = self.twi_amp[j] * ((1.0 - e) / (e + 1.0));
            if j < self.n_type1 {
                f1 += fs;
            } else {
                f2 += fs;
            }
        }
        let h = self.dt_s;
        let (l, v) = (st.l, st.v);
        let mtu = HillParams::poly(&self.params.ak, angle_rad);
        let acc = |l: f64, v: f64| self.accel(l, v, f1, f2, mtu);
        let k1l = v;
        let k1v = acc(l, v);
        let k2l = v + k1v * (h / 2.0);
        let k2v = acc(l + k1l * (h / 2.0), k2l);
        let k3l = v + k2v * (h / 2.0);
        let k3v = acc(l + k2l * (h / 2.0), k3l);
        let k4l = v + k3v * h;
        let k4v = acc(l + k3l * h, k4l);
        st.l = l + (k1l + k2l * 2.0 + k3l * 2.0 + k4l) * (h / 6.0);
        st.v = v + (k1v + k2v * 2.0 + k3v * 2.0 + k4v) * (h / 6.0);
        let p = &self.params;
        let fse = tendon_force(p, mtu, st.l, cos_pennation(p, st.l));
        let arm = HillParams::poly(&p.bk, angle_rad);
        Ok(HillRowOut {
            force_n: fse * p.f0_n,
            torque_nm: (fse * arm) * p.f0_n,
        })
    }
}
