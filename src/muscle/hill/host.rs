//! The Hill model's step on host scalars (the streaming path, [`crate::kernel::host`]): the
//! equations of [`super`] (twitch IIR, saturation, RK4 on `(L, V)`, post-update outputs) for one
//! batch row, in `f64`. Units as in [`super`]: L0, L0/s, F0, N, N·m, rad.

use super::{ForceLength, ForceVelocity, HillModel, HillParams};
use crate::error::Result;
use crate::kernel::dual::{Dual, Scalar};
use crate::kernel::to_vec_f64;

/// `fL(L) = exp(−|(L^b − 1)/o|^r)`.
fn force_length<S: Scalar>(fl: &ForceLength, l: S) -> S {
    (-((l.powf(fl.b) - 1.0) / fl.o).abs().powf(fl.r)).exp()
}

/// `fV(L, V) = f₊(max(V,0)) + f₋(min(V,0)) − 1` (see [`super::curves::force_velocity`]).
fn force_velocity<S: Scalar>(fv: &ForceVelocity, l: S, v: S) -> S {
    let vp = v.max_c(0.0);
    let vn = v.min_c(0.0);
    let a = (l * fv.av2 + fv.av1) * l + fv.av0;
    let pos = (-(vp * a) + fv.bv) / (vp + fv.bv);
    let cfac = l * fv.cv1 + fv.cv0;
    let neg = (-vn + fv.vmax) / (vn * cfac + fv.vmax);
    pos + (neg - 1.0)
}

/// `cos φ = sqrt(1 − (sin α0/L)²)`, in the tensor path's operation order.
fn cos_pennation<S: Scalar>(p: &HillParams, l: S) -> S {
    let s = (S::cst(1.0) / l) * p.alfa0_rad.sin();
    (-(s * s) + 1.0).sqrt()
}

/// `F_PE = e^{Kpe(L−1)/Em0}/e^{Kpe} + b·V` (F0), in the tensor path's operation order.
fn passive_force<S: Scalar>(p: &HillParams, l: S, v: S) -> S {
    ((l - 1.0) * (p.kpe / p.em0)).exp() / p.kpe.exp() + v * p.b_visc
}

/// `F_SE = Kse·cT·softplus((LT − LT_r)/cT)`, `LT = (MTU − L·cos φ·L0)/LT0` (F0), in the tensor
/// path's operation order.
fn tendon_force<S: Scalar>(p: &HillParams, mtu_m: S, l: S, cos_phi: S) -> S {
    let lt = (mtu_m - (l * cos_phi) * p.l0_m) / p.lt0_m;
    let x = (lt - p.lt_r) / p.ct;
    (x.max_c(0.0) + (-x.abs()).exp().ln_1p()) * (p.kse * p.ct)
}

/// `Σ k_i θ^i` (Horner, from the top coefficient as the tensor path).
fn poly<S: Scalar>(k: &[f64; 5], angle_rad: S) -> S {
    let mut acc = S::cst(k[4]);
    for c in k[..4].iter().rev() {
        acc = acc * angle_rad + *c;
    }
    acc
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
    fn ce_force<S: Scalar>(&self, l: S, v: S, f1: S, f2: S) -> S {
        let p = &self.params;
        let c1 = force_length(&p.fl[0], l) * force_velocity(&p.fv[0], l, v);
        let c2 = force_length(&p.fl[1], l) * force_velocity(&p.fv[1], l, v);
        f1 * c1 + f2 * c2
    }

    /// `dV/dt = (F0/m)·(F_SE·cos φ − (F_CE + F_PE)·cos² φ)` (L0/s²).
    fn accel<S: Scalar>(&self, l: S, v: S, f1: S, f2: S, mtu_m: S) -> S {
        let p = &self.params;
        let cphi = cos_pennation(p, l);
        let fce = self.ce_force(l, v, f1, f2);
        let fpe = passive_force(p, l, v);
        let fse = tendon_force(p, mtu_m, l, cphi);
        (fse * cphi - (fce + fpe) * (cphi * cphi)) * (p.f0_n / p.mass_kg)
    }

    /// RK4 on `(L, V)` with `F1, F2` and the angle held over the step, and the outputs at the
    /// new state: `((L', V'), (F_SE·F0, F_SE·r(θ)·F0))` (L0, L0/s, N, N·m).
    #[allow(clippy::type_complexity)]
    fn mechanics<S: Scalar>(&self, l: S, v: S, f1: S, f2: S, angle_rad: S) -> ((S, S), (S, S)) {
        let p = &self.params;
        let h = self.dt_s;
        let mtu = poly(&p.ak, angle_rad);
        let acc = |l: S, v: S| self.accel(l, v, f1, f2, mtu);
        let k1l = v;
        let k1v = acc(l, v);
        let k2l = v + k1v * (h / 2.0);
        let k2v = acc(l + k1l * (h / 2.0), k2l);
        let k3l = v + k2v * (h / 2.0);
        let k3v = acc(l + k2l * (h / 2.0), k3l);
        let k4l = v + k3v * h;
        let k4v = acc(l + k3l * h, k4l);
        let l_new = l + (k1l + k2l * 2.0 + k3l * 2.0 + k4l) * (h / 6.0);
        let v_new = v + (k1v + k2v * 2.0 + k3v * 2.0 + k4v) * (h / 6.0);
        let fse = tendon_force(p, mtu, l_new, cos_pennation(p, l_new));
        let arm = poly(&p.bk, angle_rad);
        ((l_new, v_new), (fse * p.f0_n, (fse * arm) * p.f0_n))
    }

    /// The reverse of [`HillHost::step`] for one row whose state `st` is the state *before* the
    /// step: `lam` = adjoints of the state after it (`L`, `V`, `f`, `f_prev`; replaced by those
    /// of the state before), `g` = adjoints of (force N, torque N·m, L, V) after the step.
    /// Adds `∂L/∂s_j` to `g_s` and returns `∂L/∂θ`. The mechanics' Jacobian comes from dual
    /// numbers ([`crate::kernel::dual`]); the twitch part is hand-written:
    /// `∂fs/∂f = amp·2c·e/(1 + e)²`, `e = e^{−c·f}`.
    pub fn vjp(
        &self,
        st: &HillRow,
        lam: &mut HillRow,
        g: [f64; 4],
        s: &[f64],
        angle_rad: f64,
        g_s: &mut [f64],
    ) -> f64 {
        let n = self.c.len();
        let mut f_new = vec![0.0; n];
        let (mut f1, mut f2) = (0.0, 0.0);
        for j in 0..n {
            f_new[j] = self.a1[j] * st.f[j] - self.a2[j] * st.f_prev[j] + self.b[j] * s[j];
            let e = (-(f_new[j] * self.c[j])).exp();
            let fs = self.twi_amp[j] * ((1.0 - e) / (e + 1.0));
            if j < self.n_type1 {
                f1 += fs;
            } else {
                f2 += fs;
            }
        }
        let d = |k: usize, v: f64| Dual::<5>::var(v, k);
        let ((l1, v1), (force, torque)) =
            self.mechanics(d(0, st.l), d(1, st.v), d(2, f1), d(3, f2), d(4, angle_rad));
        let gl = lam.l + g[2];
        let gv = lam.v + g[3];
        let mut gx = [0.0; 5];
        for (k, x) in gx.iter_mut().enumerate() {
            *x = gl * l1.d[k] + gv * v1.d[k] + g[0] * force.d[k] + g[1] * torque.d[k];
        }
        lam.l = gx[0];
        lam.v = gx[1];
        for j in 0..n {
            let e = (-(f_new[j] * self.c[j])).exp();
            let dfs = self.twi_amp[j] * 2.0 * self.c[j] * e / ((1.0 + e) * (1.0 + e));
            let gf = if j < self.n_type1 { gx[2] } else { gx[3] };
            let g_fnew = lam.f[j] + gf * dfs;
            g_s[j] += g_fnew * self.b[j];
            lam.f[j] = g_fnew * self.a1[j] + lam.f_prev[j];
            lam.f_prev[j] = -(g_fnew * self.a2[j]);
        }
        gx[4]
    }

    /// One step of one row with the spikes `s` `[n]` entering the twitch filters and the joint
    /// angle (rad); the state is updated in place (see [`HillModel::step`]).
    #[allow(clippy::needless_range_loop)] // several arrays share the index
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
        let ((l, v), out) = self.mechanics(st.l, st.v, f1, f2, angle_rad);
        st.l = l;
        st.v = v;
        Ok(HillRowOut {
            force_n: out.0,
            torque_nm: out.1,
        })
    }
}
