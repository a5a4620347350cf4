//! Real recordings: a pure-Rust MAT v5 reader ([`mat`]) and the OTBioLab+/openhdemg recording
//! layout with its electrode grid and development-block selectors ([`recording`]). Simulation
//! results: the saved-run form ([`saved`]) and its NPZ ([`npz`]) and NWB ([`nwb`]) files.

pub mod mat;
pub mod npz;
pub mod nwb;
pub mod recording;
pub mod saved;

pub use mat::{MatFile, MatValue, MatVariable, NumericClass};
pub use recording::{
    DevelopmentBlock, ElectrodeGrid, Recording, Segment, default_data_dir, default_data_path,
    development_channels,
};
