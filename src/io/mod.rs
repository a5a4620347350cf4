//! Real recordings: a pure-Rust MAT v5 reader ([`mat`]) and the OTBioLab+/openhdemg recording
//! layout with its electrode grid and development-block selectors ([`recording`]).

pub mod mat;
pub mod recording;

pub use mat::{MatFile, MatValue, MatVariable, NumericClass};
pub use recording::{
    DevelopmentBlock, ElectrodeGrid, Recording, Segment, default_data_dir, default_data_path,
    development_channels,
};
