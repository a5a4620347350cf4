//! Afferent feedback (MODEL.md §5): the muscle spindle (Ia, II) and the Golgi tendon organ (Ib),
//! as differentiable tensor stages.
//!
//! - [`spindle`]: Mileusnic et al. (2006) spindle, MyoGen 0.12 numerics (or MODEL.md RK4).
//! - [`gto`]: Lin & Crago (2002) GTO with MyoGen 0.12's second-order filter.
//! - [`stage`]: both as kernel stages (tape and stream paths) on named buffers;
//!   [`spindle_host`]: the spindle step on host scalars (stream path).
//! - [`spindle_input`]: the spindle's inputs in the loop (Hill fascicle state + imposed stretch,
//!   fusimotor drive).
//! - [`population`]: afferent fibre populations (recruitment, generators, conduction delays).
//! - [`delay`]: the per-unit conduction delay line (also the motor axons' delay in the loop).
//! - [`current`]: the synaptic current from several conductances at the previous tick's voltage.

pub mod current;
pub mod delay;
pub mod gto;
pub mod population;
pub mod spindle;
pub mod spindle_host;
pub mod spindle_input;
pub mod stage;

pub use current::SynapticCurrent;
pub use delay::ConductionDelay;
pub use population::{AfferentKind, AfferentPoolConfig, RecruitmentGate};
pub use spindle_input::{SpindleInput, Stretch};

pub use gto::{Gto, GtoFilter, GtoForm, GtoParams, GtoState};
pub use spindle::{
    SPINDLE_MAX_DT_S, Spindle, SpindleParams, SpindleRates, SpindleScheme, SpindleState,
    check_spindle_dt,
};
pub use stage::{GtoStage, SPINDLE_INPUTS, SpindleStage};
