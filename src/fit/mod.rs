//! Calibration: bounded parameters with an unconstrained representation, one objective shared by
//! every optimiser, gradient and derivative-free methods, and run reports.

pub mod difference;
pub mod joint;
pub mod journal;
pub mod lm;
pub mod noise;
pub mod objective;
pub mod optimize;
pub mod params;
pub mod recording;
pub mod reflex;
pub mod smooth;
pub mod spec;
pub mod watanabe;

pub use objective::{Evaluation, Objective, Tracked};
pub use optimize::{Budget, FitReport, Method, minimize, minimize_within};
pub use params::{ParamSet, ParamSpec, Transform};
pub mod plot;
pub mod report;

pub use report::{RunSummary, write_report};
