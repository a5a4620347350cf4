//! The Mileusnic spindle step on host scalars (the streaming path, [`crate::kernel::host`]): the
//! same equations, schemes and operation order as [`Spindle::step`] (see [`super::spindle`] for
//! the equations), one batch row at a time, in `f64`.

use super::spindle::{Spindle, SpindleScheme};
use crate::kernel::dual::{Dual, Scalar};

/// Number of state values of a row (activations 2, tensions 3, rates 3, stage slopes 9).
pub const SPINDLE_ROW_LEN: usize = 17;

/// One row's spindle state: activations (bag 1, bag 2), tensions `T`, their rates `dT/dt` and the
/// stored stage slopes of the staggered scheme (bag 1, bag 2, chain), in the units of
/// [`super::spindle::SpindleState`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpindleRow<S = f64> {
    /// Fusimotor activations of bag 1 and bag 2.
    pub a: [S; 2],
    /// Tensions T (FU).
    pub t: [S; 3],
    /// dT/dt (FU/s).
    pub dt: [S; 3],
    /// Stage slopes k1z, k2z, k3z of the previous call (FU/s²).
    pub kz: [[S; 3]; 3],
}

impl Default for SpindleRow<f64> {
    fn default() -> Self {
        Self::from_slice(&[0.0; SPINDLE_ROW_LEN])
    }
}

impl SpindleRow<f64> {
    /// The row from its [`SPINDLE_ROW_LEN`] values (order of [`SpindleRow::values`]).
    pub fn from_slice(v: &[f64]) -> Self {
        Self {
            a: [v[0], v[1]],
            t: [v[2], v[3], v[4]],
            dt: [v[5], v[6], v[7]],
            kz: [
                [v[8], v[9], v[10]],
                [v[11], v[12], v[13]],
                [v[14], v[15], v[16]],
            ],
        }
    }
}

impl<S: Copy> SpindleRow<S> {
    /// The state as [`SPINDLE_ROW_LEN`] values: a, T, dT/dt, k1z, k2z, k3z.
    pub fn values(&self) -> [S; SPINDLE_ROW_LEN] {
        let k = &self.kz;
        [
            self.a[0], self.a[1], self.t[0], self.t[1], self.t[2], self.dt[0], self.dt[1],
            self.dt[2], k[0][0], k[0][1], k[0][2], k[1][0], k[1][1], k[1][2], k[2][0], k[2][1],
            k[2][2],
        ]
    }
}

/// The inputs of one row: length (L0), velocity (L0/s), acceleration (L0/s²), dynamic and static
/// gamma drives (Hz).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpindleIn<S = f64> {
    /// L (L0).
    pub l: S,
    /// V (L0/s).
    pub v: S,
    /// A (L0/s²).
    pub acc: S,
    /// γ_dyn (Hz).
    pub gamma_dyn_hz: S,
    /// γ_stat (Hz).
    pub gamma_stat_hz: S,
}

fn add<S: Scalar>(a: [S; 3], b: [S; 3], h: f64) -> [S; 3] {
    [a[0] + b[0] * h, a[1] + b[1] * h, a[2] + b[2] * h]
}

impl Spindle {
    /// Ia and II (Hz) from tensions `t` (FU) and length `l` (L0), as [`Spindle::rates`].
    pub fn rates_host<S: Scalar>(&self, t: &[S; 3], l: S) -> (S, S) {
        let p = self.params();
        let g_ia = [p.g_bag1, p.g_bag2_a1, p.g_chain_a1];
        let g_ii = [0.0, p.g_bag2_a2, p.g_chain_a2];
        let src = p.x * p.l_sec / p.l0_sr;
        let prc = (1.0 - p.x) * p.l_sec / p.l0_pr;
        let mut ia3 = [S::cst(0.0); 3];
        let mut ii = S::cst(0.0);
        for k in 0..3 {
            let ts = t[k] / p.k_sr;
            let srs = ts - (p.ln_sr - p.l0_sr);
            ia3[k] = (srs * g_ia[k]).max_c(0.0);
            let sr = (srs * src).max_c(0.0);
            let prs = (l - ts) - p.l0_sr - p.ln_pr;
            let pr = (prs * prc).max_c(0.0);
            ii = ii + (sr + pr) * g_ii[k];
        }
        let b2c = ia3[1] + ia3[2];
        let ia = if b2c.val() >= ia3[0].val() {
            b2c + ia3[0] * p.s
        } else {
            ia3[0] + b2c * p.s
        };
        (ia, ii)
    }

    /// One step of one row (`dt_s` checked by the caller with
    /// [`super::spindle::check_spindle_dt`]); returns `(Ia, II)` in Hz.
    pub fn step_host(&self, st: &mut SpindleRow, x: SpindleIn, dt: f64) -> (f64, f64) {
        let (next, ia, ii) = self.step_generic(st, x, dt);
        *st = next;
        (ia, ii)
    }

    /// The reverse of [`Spindle::step_host`] for a row whose state `st` is the state *before* the
    /// step: `lam` = adjoints of the state after it (replaced by those of the state before),
    /// `g_ia`, `g_ii` of the rates; returns the adjoints of the five inputs. The step's Jacobian
    /// comes from dual numbers over the 17 state values and the 5 inputs.
    pub fn vjp_host(
        &self,
        st: &SpindleRow,
        lam: &mut [f64; SPINDLE_ROW_LEN],
        g_ia: f64,
        g_ii: f64,
        x: SpindleIn,
        dt: f64,
    ) -> [f64; 5] {
        const N: usize = SPINDLE_ROW_LEN + 5;
        let v = st.values();
        let d = |k: usize| Dual::<N>::var(if k < SPINDLE_ROW_LEN { v[k] } else { 0.0 }, k);
        let row = SpindleRow {
            a: [d(0), d(1)],
            t: [d(2), d(3), d(4)],
            dt: [d(5), d(6), d(7)],
            kz: [
                [d(8), d(9), d(10)],
                [d(11), d(12), d(13)],
                [d(14), d(15), d(16)],
            ],
        };
        let k0 = SPINDLE_ROW_LEN;
        let xin = SpindleIn {
            l: Dual::var(x.l, k0),
            v: Dual::var(x.v, k0 + 1),
            acc: Dual::var(x.acc, k0 + 2),
            gamma_dyn_hz: Dual::var(x.gamma_dyn_hz, k0 + 3),
            gamma_stat_hz: Dual::var(x.gamma_stat_hz, k0 + 4),
        };
        let (next, ia, ii) = self.step_generic(&row, xin, dt);
        let out = next.values();
        let mut g = [0.0; N];
        for (k, gk) in g.iter_mut().enumerate() {
            let mut acc = g_ia * ia.d[k] + g_ii * ii.d[k];
            for (o, l) in out.iter().zip(lam.iter()) {
                acc += l * o.d[k];
            }
            *gk = acc;
        }
        lam.copy_from_slice(&g[..SPINDLE_ROW_LEN]);
        [g[k0], g[k0 + 1], g[k0 + 2], g[k0 + 3], g[k0 + 4]]
    }

    /// One step, generic over the scalar (see [`Spindle::step`]): the new state and `(Ia, II)`.
    #[allow(clippy::type_complexity)]
    fn step_generic<S: Scalar>(
        &self,
        st: &SpindleRow<S>,
        x: SpindleIn<S>,
        dt: f64,
    ) -> (SpindleRow<S>, S, S) {
        let p = self.params();
        let g = [x.gamma_dyn_hz, x.gamma_stat_hz];
        let f0p = [p.f_bag1.powf(p.p), p.f_bag2.powf(p.p)];
        let tau = [p.tau1, p.tau2];
        let mut target = [S::cst(0.0); 2];
        for k in 0..2 {
            let gp = g[k].powf(p.p);
            target[k] = gp / (gp + f0p[k]);
        }
        let gsp = x.gamma_stat_hz.powf(p.p);
        let a_chain = gsp / (gsp + p.f_chain.powf(p.p));
        let a0 = st.a;
        let mut a_new = [S::cst(0.0); 2];
        for k in 0..2 {
            let fa = |a: S| (target[k] - a) / tau[k];
            let k1 = fa(a0[k]);
            let k2 = fa(a0[k] + k1 * dt * 0.5);
            let k3 = fa(a0[k] + k2 * dt * 0.5);
            let k4 = fa(a0[k] + k3 * dt);
            a_new[k] = a0[k] + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0);
        }
        let a_used = match self.scheme() {
            SpindleScheme::MyoGen012 => a0,
            SpindleScheme::Rk4 => a_new,
        };
        let act3 = [a_used[0], a_used[1], a_chain];
        let b0 = [p.b0_bag1, p.b0_bag2, p.b0_chain];
        let bfus = [p.b1_bag1, p.b2_bag2, p.b2_chain];
        let gg = [p.g1, p.g2, p.g2_chain];
        let mut cb_pos = [S::cst(0.0); 3];
        let mut cb_neg = [S::cst(0.0); 3];
        let mut drive = [S::cst(0.0); 3];
        for k in 0..3 {
            let beta = act3[k] * bfus[k] + b0[k];
            cb_pos[k] = beta * p.c_l;
            cb_neg[k] = -(beta * p.c_s);
            drive[k] = x.acc * p.m + act3[k] * gg[k];
        }
        let lm = x.l - p.l0_sr;
        let k_m = p.k_sr / p.m;
        let dd = |t: [S; 3], z: [S; 3]| -> [S; 3] {
            let mut out = [S::cst(0.0); 3];
            for k in 0..3 {
                let xv = x.v - z[k] / p.k_sr;
                let fv = if xv.val() >= 0.0 {
                    cb_pos[k]
                } else {
                    cb_neg[k]
                };
                let vp = xv.abs().powf(p.a);
                let q = lm - t[k] / p.k_sr;
                let len = q - p.r;
                let polar = (q - p.l0_pr) * p.k_pr;
                let inertial = (drive[k] - t[k]) + polar;
                out[k] = (fv * vp * len + inertial) * k_m;
            }
            out
        };
        let (y0, z0) = (st.t, st.dt);
        let half = dt * 0.5;
        let comb = |k1: [S; 3], k2: [S; 3], k3: [S; 3], k4: [S; 3]| -> [S; 3] {
            let mut s = [S::cst(0.0); 3];
            for k in 0..3 {
                s[k] = k1[k] + k2[k] * 2.0 + k3[k] * 2.0 + k4[k];
            }
            s
        };
        let (y, z, kz) = match self.scheme() {
            SpindleScheme::MyoGen012 => {
                let k1y = z0;
                let k2y = add(z0, st.kz[0], half);
                let k3y = add(z0, st.kz[1], half);
                let k4y = add(z0, st.kz[2], dt);
                let sy = comb(k1y, k2y, k3y, k4y);
                let y = [0, 1, 2].map(|k| y0[k] + (sy[k] * dt) / 6.0);
                let k1z = dd(y, z0);
                let k2z = dd(add(y, k1y, half), add(z0, k1z, half));
                let k3z = dd(add(y, k2y, half), add(z0, k2z, half));
                let k4z = dd(add(y, k3y, dt), add(z0, k3z, dt));
                let sz = comb(k1z, k2z, k3z, k4z);
                let z = [0, 1, 2].map(|k| z0[k] + (sz[k] * dt) / 6.0);
                (y, z, [k1z, k2z, k3z])
            }
            SpindleScheme::Rk4 => {
                let k1y = z0;
                let k1z = dd(y0, z0);
                let k2y = add(z0, k1z, half);
                let k2z = dd(add(y0, k1y, half), k2y);
                let k3y = add(z0, k2z, half);
                let k3z = dd(add(y0, k2y, half), k3y);
                let k4y = add(z0, k3z, dt);
                let k4z = dd(add(y0, k3y, dt), k4y);
                let sy = comb(k1y, k2y, k3y, k4y);
                let sz = comb(k1z, k2z, k3z, k4z);
                let y = [0, 1, 2].map(|k| y0[k] + sy[k] * (dt / 6.0));
                let z = [0, 1, 2].map(|k| z0[k] + sz[k] * (dt / 6.0));
                (y, z, [k1z, k2z, k3z])
            }
        };
        let (ia, ii) = match self.scheme() {
            SpindleScheme::MyoGen012 => self.rates_host(&y0, x.l),
            SpindleScheme::Rk4 => self.rates_host(&y, x.l),
        };
        let next = SpindleRow {
            a: a_new,
            t: y,
            dt: z,
            kz,
        };
        (next, ia, ii)
    }
}
