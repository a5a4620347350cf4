//! The fast pool's host step and adjoint (the stream path, [`crate::kernel::host`]): the
//! element step of the fused scan ([`super::fused::host::tick`]) and its reverse.

use super::{LifInput, LifPool};
use crate::error::Result;
use crate::kernel::{HostCx, HostStage, SaveAt, VjpIo, to_vec_f64};
use crate::neuron::fused;
use crate::neuron::spike::SpikeMode;

/// Streaming-path state: stacked coefficients `[P, B·N]`, `v`, `a` `[B·N]`.
#[derive(Default)]
pub(super) struct HostLif {
    coef: Vec<f64>,
    v: Vec<f64>,
    a: Vec<f64>,
    /// Adjoints of `v`, `a` (stream adjoint).
    lv: Vec<f64>,
    la: Vec<f64>,
}

impl HostStage for LifPool {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let c = self.params.coefficients(cx.dt_s, cx.batch)?;
        let coef = to_vec_f64(c.stacked());
        let v = to_vec_f64(c.v_rest.clone());
        let a = vec![0.0; v.len()];
        self.host_state = HostLif {
            coef,
            v,
            a,
            ..Default::default()
        };
        Ok(())
    }
    /// [`super::lif_step`] on every element (input checked as on the tape); `outs` = spikes (and `v`).
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let st = &mut self.host_state;
        let cond = self.cfg.input == LifInput::Conductance;
        let rate = self.cfg.mode == SpikeMode::Rate;
        // the input is checked inside the tick (as the fused scan does); a bad value ends the
        // rollout with an error naming it
        let ok = fused::host::tick(
            ins[0],
            &mut st.v,
            &mut st.a,
            &mut outs[0],
            &st.coef,
            cond,
            rate,
            1.0 / self.cfg.spike_scale_v,
            self.cfg.beta,
        );
        if !ok {
            let (n, bn) = (self.n_units(), self.host_state.v.len());
            let coef = &self.host_state.coef;
            let row = |c: usize| &coef[c * bn..(c + 1) * bn];
            self.check_input(ins[0], row(0), row(1), n, t, cx.dt_s)?;
        }
        if self.cfg.record_v {
            outs[1].copy_from_slice(&self.host_state.v);
        }
        Ok(())
    }
    fn host_save(&self, _at: SaveAt, into: &mut Vec<f64>) {
        into.extend_from_slice(&self.host_state.v);
        into.extend_from_slice(&self.host_state.a);
    }
    fn host_load(&mut self, _at: SaveAt, from: &[f64]) {
        let n = self.host_state.v.len();
        self.host_state.v.copy_from_slice(&from[..n]);
        self.host_state.a.copy_from_slice(&from[n..2 * n]);
    }
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        let n = self.host_state.v.len();
        self.host_state.lv = vec![0.0; n];
        self.host_state.la = vec![0.0; n];
        Ok(())
    }
    /// Reverse of [`super::lif_step`] per element: spike slope `β·σ(1 − σ)` (rate), the surrogate
    /// slope (surrogate) or 0 (hard); the reset and AHP terms pass the spike's gradient unless
    /// `detach_spike_state`. No parameter gradients (the pool's constants are fixed here).
    fn host_vjp(&mut self, _cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        let st = &mut self.host_state;
        let bn = st.v.len();
        let coef = &st.coef;
        let c = |k: usize, j: usize| coef[k * bn + j];
        let cond = self.cfg.input == LifInput::Conductance;
        let (inv, beta) = (1.0 / self.cfg.spike_scale_v, self.cfg.beta);
        let (mode, record_v, detach) = (
            self.cfg.mode,
            self.cfg.record_v,
            self.cfg.detach_spike_state,
        );
        let (lv_all, la_all) = (&mut st.lv, &mut st.la);
        let (x_all, v_all) = (ins[0], &st.v);
        let g_x = &mut g_ins[0];
        fused::host::tick_intermediates(
            x_all,
            v_all,
            &st.a,
            coef,
            cond,
            mode == SpikeMode::Rate,
            inv,
            beta,
            |j, _i, v1, m, s| {
                let (al, r, vres, k, jump, e) =
                    (c(0, j), c(1, j), c(4, j), c(5, j), c(6, j), c(7, j));
                let slope = match mode {
                    SpikeMode::Rate => beta * s * (1.0 - s),
                    SpikeMode::Surrogate => crate::neuron::spike::surrogate_slope(m, beta),
                    SpikeMode::Hard => 0.0,
                };
                let mut lv = lv_all[j];
                if record_v {
                    lv += g_outs[1][j];
                }
                let la = la_all[j];
                let mut gs = g_outs[0][j];
                if !detach {
                    gs += -lv * (v1 - vres) + la * jump;
                }
                let gv1 = lv * (1.0 - s) + gs * slope * inv;
                let gi = gv1 * al * r;
                let mut gv = gv1 * (1.0 - al);
                let (x, v) = (x_all[j], v_all[j]);
                let gx = if cond {
                    gv -= gi * x;
                    gi * (e - v)
                } else {
                    gi
                };
                lv_all[j] = gv;
                la_all[j] = la * k - gi;
                g_x[j] += gx;
            },
        );
        Ok(())
    }
}
