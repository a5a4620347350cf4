//! The synapse's host step and adjoint (the stream path, [`crate::kernel::host`]): the
//! event-driven arrivals `x = s_{t−D} @ C`, the conductance filter, and their reverse.

use super::{ConnectivityMatrix, Synapse};
use crate::drive::fused::IirKind;
use crate::error::Result;
use crate::kernel::{AdjointUse, DelayLine, HostCx, HostStage, SaveAt, VjpIo, to_vec_f64};

/// Streaming-path state: the delay line of `delay` ticks (with its pending adjoints), the filter
/// states, the per-event increments `w·f` `[1|batch, 1|n_tgt]` and the arrival buffer.
#[derive(Default)]
pub(super) struct HostSyn {
    line: DelayLine,
    delay: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    wf: Vec<f64>,
    wf_dims: [usize; 2],
    x: Vec<f64>,
    /// The input adjoints of one tick (scratch).
    ls: Vec<f64>,
    /// How the input's writer uses the input's adjoint, and the in-degree of each target.
    input_use: Option<AdjointUse>,
    indeg: Vec<f64>,
    /// Adjoint: of the filter states, and the gradient of `w·f` (in `wf`'s layout).
    la: Vec<f64>,
    lb: Vec<f64>,
    gwf: Vec<f64>,
}

/// `x = s @ C` per batch row (`s` `[nb·n_src]`, `x` `[nb·n_tgt]`), skipping zero inputs.
fn arrivals(conn: &ConnectivityMatrix, s: &[f64], x: &mut [f64], nb: usize, n_src: usize) {
    let n_tgt = x.len() / nb;
    x.fill(0.0);
    for bb in 0..nb {
        let src = &s[bb * n_src..(bb + 1) * n_src];
        let x = &mut x[bb * n_tgt..(bb + 1) * n_tgt];
        for (i, &v) in src.iter().enumerate() {
            if v != 0.0 {
                for &j in conn.targets(i) {
                    x[j] += v;
                }
            }
        }
    }
}

impl HostSyn {
    /// Index of `w·f` for (row, target).
    #[inline]
    fn wf_index(&self, bb: usize, j: usize) -> usize {
        let [wr, wc] = self.wf_dims;
        (if wr == 1 { 0 } else { bb * wc }) + (if wc == 1 { 0 } else { j })
    }
}

impl HostStage for Synapse {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        self.cfg.kinetics.check_dt(cx.dt_s)?;
        self.check_batch(cx.batch)?;
        let (b, n_src, n_tgt) = (cx.batch, self.cfg.n_dd, self.cfg.n_mn);
        let delay = self.cfg.delay_steps(cx.dt_s);
        self.host_state = HostSyn {
            line: DelayLine::new(b * n_src, delay),
            delay,
            a: vec![0.0; b * n_tgt],
            b: vec![0.0; b * n_tgt],
            wf: to_vec_f64(self.wf()),
            wf_dims: self.weight_s.dims(),
            x: vec![0.0; b * n_tgt],
            ..Default::default()
        };
        Ok(())
    }
    /// `x = s_{t−D} @ C` (event-driven), then the filter of `step`: `g ← a·g + w·f·x` (single
    /// exponential) or `A ← a1·A + w·f·x`, `B ← a2·B + w·f·x`, `g = B − A` (Exp2Syn), in S.
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let (nb, n_src, n_tgt) = (cx.batch, self.cfg.n_dd, self.cfg.n_mn);
        let st = &mut self.host_state;
        st.line.push(t, ins[0]);
        // the input of tick t − D (zeros before tick D)
        let mut x = std::mem::take(&mut st.x);
        match st.line.row(t, st.delay) {
            Some(sd) => arrivals(&self.conn, sd, &mut x, nb, n_src),
            None => x.fill(0.0),
        }
        st.x = x;
        let out = &mut outs[0];
        let kind = self.cfg.kinetics.iir(cx.dt_s);
        for bb in 0..nb {
            for j in 0..n_tgt {
                let k = bb * n_tgt + j;
                let wf = st.wf[st.wf_index(bb, j)];
                let term = wf * st.x[k];
                out[k] = match kind {
                    IirKind::Single { a } => {
                        st.b[k] = st.b[k] * a + term;
                        st.b[k]
                    }
                    IirKind::Exp2 { a1, a2 } => {
                        st.a[k] = st.a[k] * a1 + term;
                        st.b[k] = st.b[k] * a2 + term;
                        st.b[k] - st.a[k]
                    }
                };
            }
        }
        Ok(())
    }
    fn host_save(&self, at: SaveAt, into: &mut Vec<f64>) {
        let st = &self.host_state;
        into.extend_from_slice(&st.a);
        into.extend_from_slice(&st.b);
        st.line.save(at, into);
    }
    fn host_load(&mut self, at: SaveAt, from: &[f64]) {
        let st = &mut self.host_state;
        let n = st.a.len();
        st.a.copy_from_slice(&from[..n]);
        st.b.copy_from_slice(&from[n..2 * n]);
        st.line.load(at, &from[2 * n..]);
    }
    fn adjoint_init(&mut self, cx: &HostCx, segment: usize) -> Result<()> {
        let st = &mut self.host_state;
        st.la = vec![0.0; st.a.len()];
        st.lb = vec![0.0; st.b.len()];
        st.ls = vec![0.0; cx.batch * self.cfg.n_dd];
        st.gwf = vec![0.0; st.wf.len()];
        st.line.lengthen(segment);
        Ok(())
    }
    /// Reverse of the filter (`λ_A ← a1·λ_A'`, `λ_B ← a2·λ_B'`, `λ_term = λ_A' + λ_B'`) and of
    /// the arrivals: `G_i = Σ_{j ∈ C(i)} λ_term_j`, `λ_s_i = w·f·G_i` delivered to the input tick
    /// `t − D`, `∂L/∂(w·f) += Σ_i s_i·G_i` (per-target weights: `Σ_j λ_term_j·x_j`).
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, t: usize) -> Result<()> {
        let VjpIo { g_outs, g_ins, .. } = io;
        let (nb, n_src, n_tgt) = (cx.batch, self.cfg.n_dd, self.cfg.n_mn);
        let kind = self.cfg.kinetics.iir(cx.dt_s);
        let st = &mut self.host_state;
        // λ_term per (row, target), into the scratch `x`
        let mut lterm = std::mem::take(&mut st.x);
        for k in 0..nb * n_tgt {
            let g = g_outs[0][k];
            lterm[k] = match kind {
                IirKind::Single { a } => {
                    let lb = st.lb[k] + g;
                    st.lb[k] = a * lb;
                    lb
                }
                IirKind::Exp2 { a1, a2 } => {
                    let lb = st.lb[k] + g;
                    let la = st.la[k] - g;
                    st.lb[k] = a2 * lb;
                    st.la[k] = a1 * la;
                    la + lb
                }
            };
        }
        let per_target = st.wf_dims[1] != 1;
        let use_ = st.input_use.unwrap_or(AdjointUse::Full);
        let mut ls = std::mem::take(&mut st.ls);
        ls.fill(0.0);
        let has_input = if let Some(sd) = st.line.row(t, st.delay) {
            let wrow = |bb: usize| if st.wf_dims[0] == 1 { 0 } else { bb };
            let wbase = |bb: usize| if st.wf_dims[0] == 1 { 0 } else { bb * n_tgt };
            for bb in 0..nb {
                let lt = &lterm[bb * n_tgt..(bb + 1) * n_tgt];
                let src = &sd[bb * n_src..(bb + 1) * n_src];
                // the weight gradient: Σ_j λ_term_j·x_j = Σ_i s_i·G_i over active sources
                if per_target {
                    let base = wbase(bb);
                    for (i, &v) in src.iter().enumerate() {
                        if v != 0.0 {
                            for &j in self.conn.targets(i) {
                                st.gwf[base + j] += lt[j] * v;
                            }
                        }
                    }
                } else {
                    let mut gw = 0.0;
                    for (i, &v) in src.iter().enumerate() {
                        if v != 0.0 {
                            gw += v * self.conn.targets(i).iter().map(|&j| lt[j]).sum::<f64>();
                        }
                    }
                    st.gwf[wrow(bb)] += gw;
                }
                // the input's adjoint λ_s_i = Σ_{j ∈ C(i)} w·f_j·λ_term_j, as the writer uses it
                let wf_j = |j: usize| {
                    if per_target {
                        st.wf[wbase(bb) + j]
                    } else {
                        st.wf[wrow(bb)]
                    }
                };
                match use_ {
                    AdjointUse::Unused => {}
                    AdjointUse::SumOnly => {
                        let total: f64 = (0..n_tgt).map(|j| st.indeg[j] * lt[j] * wf_j(j)).sum();
                        ls[bb * n_src] += total;
                    }
                    AdjointUse::Full => {
                        for i in 0..n_src {
                            let g: f64 = if per_target {
                                self.conn.targets(i).iter().map(|&j| lt[j] * wf_j(j)).sum()
                            } else {
                                self.conn.targets(i).iter().map(|&j| lt[j]).sum::<f64>()
                                    * st.wf[wrow(bb)]
                            };
                            ls[bb * n_src + i] += g;
                        }
                    }
                }
            }
            true
        } else {
            false
        };
        st.x = lterm;
        if has_input && use_ != AdjointUse::Unused {
            let row = st.line.adjoint_row(t, st.delay).expect("t ≥ D");
            for (r, l) in row.iter_mut().zip(&ls) {
                *r += l;
            }
        }
        st.ls = ls;
        st.line.take_adjoint(t, &mut g_ins[0]);
        Ok(())
    }
    fn set_input_adjoint_use(&mut self, _input: usize, use_: AdjointUse) {
        self.host_state.input_use = Some(use_);
        let mut indeg = vec![0.0; self.cfg.n_mn];
        for i in 0..self.cfg.n_dd {
            for &j in self.conn.targets(i) {
                indeg[j] += 1.0;
            }
        }
        self.host_state.indeg = indeg;
    }
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        let f = self.cfg.kinetics.peak_factor();
        vec![(
            "weight_s".into(),
            self.host_state.gwf.iter().map(|g| g * f).collect(),
        )]
    }
}
