//! The spindle and the GTO as kernel [`Stage`]s (tape path): they read and write named `[batch, 1]`
//! buffers and keep their ODE / filter state inside the stage.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::kernel::{BufferSpec, ReadSpec, Stage, StageDecl, StageIo};

use super::gto::{Gto, GtoParams, GtoState};
use super::spindle::{Spindle, SpindleState};

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
}

impl SpindleStage {
    /// A stage around `spindle` (zero initial state, as MyoGen).
    pub fn new(spindle: Spindle) -> Self {
        Self {
            spindle,
            state: None,
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
}

/// GTO stage: reads the tendon force (N, same tick; buffer `tendon_force_n` unless set with
/// [`GtoStage::with_force`]), writes `ib_hz`.
pub struct GtoStage {
    params: GtoParams,
    force: String,
    g1_hz: Option<Tensor<2>>,
    gto: Option<Gto>,
    state: Option<GtoState>,
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
}
