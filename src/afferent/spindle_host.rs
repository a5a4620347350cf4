//! The Mileusnic spindle step on host scalars (the streaming path, [`crate::kernel::host`]): the
//! same equations, schemes and operation order as [`Spindle::step`] (see [`super::spindle`] for
//! the equations), one batch row at a time, in `f64`.

use super::spindle::{Spindle, SpindleScheme};

/// One row's spindle state: activations (bag 1, bag 2), tensions `T`, their rates `dT/dt` and the
/// stored stage slopes of the staggered scheme (bag 1, bag 2, chain), in the units of
/// [`super::spindle::SpindleState`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpindleRow {
    /// Fusimotor activations of bag 1 and bag 2.
    pub a: [f64; 2],
    /// Tensions T (FU).
    pub t: [f64; 3],
    /// dT/dt (FU/s).
    pub dt: [f64; 3],
    /// Stage slopes k1z, k2z, k3z of the previous call (FU/s²).
    pub kz: [[f64; 3]; 3],
}

/// The inputs of one row: length (L0), velocity (L0/s), acceleration (L0/s²), dynamic and static
/// gamma drives (Hz).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpindleIn {
    /// L (L0).
    pub l: f64,
    /// V (L0/s).
    pub v: f64,
    /// A (L0/s²).
    pub acc: f64,
    /// γ_dyn (Hz).
    pub gamma_dyn_hz: f64,
    /// γ_stat (Hz).
    pub gamma_stat_hz: f64,
}

fn add(a: [f64; 3], b: [f64; 3], h: f64) -> [f64; 3] {
    [a[0] + b[0] * h, a[1] + b[1] * h, a[2] + b[2] * h]
}

impl Spindle {
    /// Ia and II (Hz) from tensions `t` (FU) and length `l` (L0), as [`Spindle::rates`].
    pub fn rates_host(&self, t: &[f64; 3], l: f64) -> (f64, f64) {
        let p = self.params();
        let g_ia = [p.g_bag1, p.g_bag2_a1, p.g_chain_a1];
        let g_ii = [0.0, p.g_bag2_a2, p.g_chain_a2];
        let src = p.x * p.l_sec / p.l0_sr;
        let prc = (1.0 - p.x) * p.l_sec / p.l0_pr;
        let mut ia3 = [0.0; 3];
        let mut ii = 0.0;
        for k in 0..3 {
            let ts = t[k] / p.k_sr;
            let srs = ts - (p.ln_sr - p.l0_sr);
            ia3[k] = (g_ia[k] * srs).max(0.0);
            let sr = (srs * src).max(0.0);
            let prs = (l - ts) - p.l0_sr - p.ln_pr;
            let pr = (prs * prc).max(0.0);
            ii += g_ii[k] * (sr + pr);
        }
        let b2c = ia3[1] + ia3[2];
        let ia = if b2c >= ia3[0] {
            b2c + ia3[0] * p.s
        } else {
            ia3[0] + b2c * p.s
        };
        (ia, ii)
    }

    /// One step of one row (`dt_s` checked by the caller with
    /// [`super::spindle::check_spindle_dt`]); returns `(Ia, II)` in Hz.
    pub fn step_host(&self, st: &mut SpindleRow, x: SpindleIn, dt: f64) -> (f64, f64) {
        let p = self.params();
        let g = [x.gamma_dyn_hz, x.gamma_stat_hz];
        let f0p = [p.f_bag1.powf(p.p), p.f_bag2.powf(p.p)];
        let tau = [p.tau1, p.tau2];
        let mut target = [0.0; 2];
        for k in 0..2 {
            let gp = g[k].powf(p.p);
            target[k] = gp / (gp + f0p[k]);
        }
        let gsp = x.gamma_stat_hz.powf(p.p);
        let a_chain = gsp / (gsp + p.f_chain.powf(p.p));
        let a0 = st.a;
        let mut a_new = [0.0; 2];
        for k in 0..2 {
            let fa = |a: f64| (target[k] - a) / tau[k];
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
        let mut cb_pos = [0.0; 3];
        let mut cb_neg = [0.0; 3];
        let mut drive = [0.0; 3];
        for k in 0..3 {
            let beta = b0[k] + bfus[k] * act3[k];
            cb_pos[k] = beta * p.c_l;
            cb_neg[k] = -(beta * p.c_s);
            drive[k] = x.acc * p.m + gg[k] * act3[k];
        }
        let lm = x.l - p.l0_sr;
        let k_m = p.k_sr / p.m;
        let dd = |t: [f64; 3], z: [f64; 3]| -> [f64; 3] {
            let mut out = [0.0; 3];
            for k in 0..3 {
                let xv = x.v - z[k] / p.k_sr;
                let fv = if xv >= 0.0 { cb_pos[k] } else { cb_neg[k] };
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
        let comb = |k1: [f64; 3], k2: [f64; 3], k3: [f64; 3], k4: [f64; 3]| -> [f64; 3] {
            let mut s = [0.0; 3];
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
        let rates = match self.scheme() {
            SpindleScheme::MyoGen012 => self.rates_host(&y0, x.l),
            SpindleScheme::Rk4 => self.rates_host(&y, x.l),
        };
        *st = SpindleRow {
            a: a_new,
            t: y,
            dt: z,
            kz,
        };
        rates
    }
}
