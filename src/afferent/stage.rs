//! The spindle and the GTO as kernel [`Stage`]s (tape path): they read and write named `[batch, 1]`
//! buffers and keep their ODE / filter state inside the stage.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::kernel::host::row;
use crate::kernel::{
    BufferSpec, HostCx, HostStage, ReadSpec, SaveAt, Stage, StageDecl, StageIo, VjpIo,
};

use super::gto::{Gto, GtoForm, GtoParams, GtoState};
use super::spindle::{Spindle, SpindleState};
use super::spindle_host::{SPINDLE_ROW_LEN, SpindleIn, SpindleRow};

/// Buffer names read by [`SpindleStage`]: length (L0), velocity (L0/s), acceleration (L0/s²),
/// dynamic and static gamma drive (Hz).
pub const SPINDLE_INPUTS: [&str; 5] = [
    "spindle_l_l0",
    "spindle_v_l0_s",
    "spindle_a_l0_s2",
    "gamma_dyn_hz",
    "gamma_stat_hz",
];

/// Mileusnic spindle stage: reads [`SPINDLE_INPUTS`] (same tick), writes `ia_hz` and `ii_hz`.
pub struct SpindleStage {
    spindle: Spindle,
    state: Option<SpindleState>,
    host_rows: Vec<SpindleRow>,
    host_lam: Vec<[f64; SPINDLE_ROW_LEN]>,
}

impl SpindleStage {
    /// A stage around `spindle` (zero initial state, as MyoGen).
    pub fn new(spindle: Spindle) -> Self {
        Self {
            spindle,
            state: None,
            host_rows: Vec::new(),
            host_lam: Vec::new(),
        }
    }
}

impl Stage for SpindleStage {
    fn name(&self) -> &str {
        "spindle"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: SPINDLE_INPUTS.iter().map(|n| ReadSpec::now(*n)).collect(),
            writes: vec![
                BufferSpec::new("ia_hz", &[1], "Hz"),
                BufferSpec::new("ii_hz", &[1], "Hz"),
            ],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        super::spindle::check_spindle_dt(io.dt_s())?;
        let like = io.ctx().zeros([1, 1]);
        self.state = Some(SpindleState::zeros(&like, io.batch()));
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let [l, v, a, gd, gs] = SPINDLE_INPUTS.map(|n| io.read(n));
        let state = match self.state.take() {
            Some(s) => s,
            None => SpindleState::zeros(&io.ctx().zeros([1, 1]), io.batch()),
        };
        let (state, r) = self.spindle.step(state, l?, v?, a?, gd?, gs?, io.dt_s())?;
        self.state = Some(state);
        io.write("ia_hz", r.ia_hz)?;
        io.write("ii_hz", r.ii_hz)
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for SpindleStage {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        super::spindle::check_spindle_dt(cx.dt_s)?;
        self.host_rows = vec![SpindleRow::default(); cx.batch];
        Ok(())
    }
    /// [`Spindle::step_host`] per row; `ins` = [`SPINDLE_INPUTS`], `outs` = Ia, II (Hz).
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        _t: usize,
    ) -> Result<()> {
        for (b, st) in self.host_rows.iter_mut().enumerate() {
            let x = SpindleIn {
                l: row(ins[0], b),
                v: row(ins[1], b),
                acc: row(ins[2], b),
                gamma_dyn_hz: row(ins[3], b),
                gamma_stat_hz: row(ins[4], b),
            };
            let (ia, ii) = self.spindle.step_host(st, x, cx.dt_s);
            outs[0][b] = ia;
            outs[1][b] = ii;
        }
        Ok(())
    }
    fn host_save(&self, _at: SaveAt, into: &mut Vec<f64>) {
        for r in &self.host_rows {
            into.extend_from_slice(&r.values());
        }
    }
    fn host_load(&mut self, _at: SaveAt, from: &[f64]) {
        for (r, v) in self
            .host_rows
            .iter_mut()
            .zip(from.chunks_exact(SPINDLE_ROW_LEN))
        {
            *r = SpindleRow::from_slice(v);
        }
    }
    fn adjoint_init(&mut self, cx: &HostCx, _segment: usize) -> Result<()> {
        self.host_lam = vec![[0.0; SPINDLE_ROW_LEN]; cx.batch];
        Ok(())
    }
    /// [`Spindle::vjp_host`] per row.
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        for (b, (st, lam)) in self
            .host_rows
            .iter()
            .zip(self.host_lam.iter_mut())
            .enumerate()
        {
            let x = SpindleIn {
                l: row(ins[0], b),
                v: row(ins[1], b),
                acc: row(ins[2], b),
                gamma_dyn_hz: row(ins[3], b),
                gamma_stat_hz: row(ins[4], b),
            };
            let gx = self
                .spindle
                .vjp_host(st, lam, g_outs[0][b], g_outs[1][b], x, cx.dt_s);
            for (k, g) in gx.into_iter().enumerate() {
                let i = if ins[k].len() == 1 { 0 } else { b };
                g_ins[k][i] += g;
            }
        }
        Ok(())
    }
}

/// GTO stage: reads the tendon force (N, same tick; buffer `tendon_force_n` unless set with
/// [`GtoStage::with_force`]), writes `ib_hz`.
pub struct GtoStage {
    params: GtoParams,
    force: String,
    g1_hz: Option<Tensor<2>>,
    gto: Option<Gto>,
    state: Option<GtoState>,
    host_hist: Vec<[f64; 4]>,
    host_gains: (Vec<f64>, Vec<f64>),
    /// Adjoint: of the history per row, and the gradient of G1.
    host_lh: Vec<[f64; 4]>,
    host_g1: Vec<f64>,
}

impl GtoStage {
    /// A stage with host parameters (validated at `init`, when dt is known).
    pub fn new(params: GtoParams) -> Self {
        Self {
            params,
            force: "tendon_force_n".into(),
            g1_hz: None,
            gto: None,
            state: None,
            host_hist: Vec::new(),
            host_gains: (Vec::new(), Vec::new()),
            host_lh: Vec::new(),
            host_g1: Vec::new(),
        }
    }

    /// Reads the tendon force from buffer `name` (N).
    pub fn with_force(mut self, name: impl Into<String>) -> Self {
        self.force = name.into();
        self
    }

    /// Uses the gain `G1` (Hz) given as a tensor `[1|batch, 1]` (differentiable) instead of
    /// `params.g1_hz`.
    pub fn with_gain(mut self, g1_hz: Tensor<2>) -> Self {
        self.g1_hz = Some(g1_hz);
        self
    }

    fn build(&self, like: &Tensor<2>, dt_s: f64) -> Result<Gto> {
        match &self.g1_hz {
            Some(g1) => {
                self.params.validate()?;
                let g2 = like.zeros_like().add_scalar(self.params.g2_n);
                Gto::new(g1.clone(), g2, dt_s)
            }
            None => Gto::from_params(self.params, like, dt_s),
        }
    }
}

impl Stage for GtoStage {
    fn name(&self) -> &str {
        "gto"
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::now(self.force.clone())],
            writes: vec![BufferSpec::new("ib_hz", &[1], "Hz")],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let like = io.ctx().zeros([1, 1]);
        self.gto = Some(self.build(&like, io.dt_s())?);
        self.state = Some(GtoState::zeros(&like, io.batch(), 1));
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let f = io.read(&self.force)?;
        let like = io.ctx().zeros([1, 1]);
        if self.gto.is_none() {
            self.gto = Some(self.build(&like, io.dt_s())?);
        }
        let state = self
            .state
            .take()
            .unwrap_or_else(|| GtoState::zeros(&like, io.batch(), 1));
        let (state, ib) = self.gto.as_ref().expect("set above").step(state, f);
        self.state = Some(state);
        io.write("ib_hz", ib)
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for GtoStage {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        // the tensor `init` (run first by the kernel) built the filter for this dt
        let gto = self
            .gto
            .as_ref()
            .ok_or_else(|| crate::Error::config("gto", "host_init before init"))?;
        self.host_gains = gto.gains_host();
        self.host_hist = vec![[0.0; 4]; cx.batch];
        Ok(())
    }
    /// [`Gto::step_host`] per row: tendon force (N) → Ib (Hz).
    fn host_step(
        &mut self,
        _cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        _t: usize,
    ) -> Result<()> {
        let gto = self.gto.as_ref().expect("host_init ran");
        let (g1, g2) = &self.host_gains;
        for (b, h) in self.host_hist.iter_mut().enumerate() {
            outs[0][b] = gto.step_host(h, row(ins[0], b), row(g1, b), row(g2, b));
        }
        Ok(())
    }
    fn host_save(&self, _at: SaveAt, into: &mut Vec<f64>) {
        for h in &self.host_hist {
            into.extend_from_slice(h);
        }
    }
    fn host_load(&mut self, _at: SaveAt, from: &[f64]) {
        for (h, v) in self.host_hist.iter_mut().zip(from.chunks_exact(4)) {
            h.copy_from_slice(v);
        }
    }
    fn adjoint_init(&mut self, cx: &HostCx, _segment: usize) -> Result<()> {
        if self
            .gto
            .as_ref()
            .is_some_and(|g| g.form() != GtoForm::Parallel)
        {
            return Err(crate::Error::config(
                "path",
                "the GTO's direct-form filter has no adjoint on the stream path (the default \
                 parallel form has)",
            ));
        }
        self.host_lh = vec![[0.0; 4]; cx.batch];
        self.host_g1 = vec![0.0; self.host_gains.0.len()];
        Ok(())
    }
    /// [`super::gto::Gto::vjp_host`] per row.
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        let gto = self.gto.as_ref().expect("host_init ran");
        let (g1, g2) = &self.host_gains;
        for b in 0..cx.batch {
            let (gf, gg1) = gto
                .vjp_host(
                    &self.host_hist[b],
                    &mut self.host_lh[b],
                    g_outs[0][b],
                    row(ins[0], b),
                    row(g1, b),
                    row(g2, b),
                )
                .expect("checked at adjoint_init");
            g_ins[0][if ins[0].len() == 1 { 0 } else { b }] += gf;
            let i = if self.host_g1.len() == 1 { 0 } else { b };
            self.host_g1[i] += gg1;
        }
        Ok(())
    }
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        vec![("g1_hz".into(), self.host_g1.clone())]
    }
}
