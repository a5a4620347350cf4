//! Afferent feedback (MODEL.md §5): the muscle spindle (Ia, II) and the Golgi tendon organ (Ib),
//! as differentiable tensor stages.
//!
//! - [`spindle`]: Mileusnic et al. (2006) spindle, MyoGen 0.12 numerics (or MODEL.md RK4).
//! - [`gto`]: Lin & Crago (2002) GTO with MyoGen 0.12's second-order filter.
//! - [`stage`]: both as kernel stages (tape path) on named buffers.
//!
//! Afferent spike populations (recruitment thresholds, gamma/Poisson generators, conduction
//! delays) are not here yet; see the note in this module's source.

// Not done yet (issue 11, item 2): per-fibre afferent populations. The plan: reuse
// `drive::generator::InputPopulation` with the Ia/II/Ib rate of the previous tick as its rate input
// (rate_i = rate if rate >= RT_i else 0, MODEL.md §5 step 3), and a per-fibre integer FIFO of
// `delay_i >= 1` steps, written at slot delay_i − 1 after a left shift, read at slot 0.

pub mod gto;
pub mod spindle;
pub mod stage;

pub use gto::{Gto, GtoFilter, GtoParams, GtoState};
pub use spindle::{
    SPINDLE_MAX_DT_S, Spindle, SpindleParams, SpindleRates, SpindleScheme, SpindleState,
    check_spindle_dt,
};
pub use stage::{GtoStage, SPINDLE_INPUTS, SpindleStage};
