//! Surface electrode grids (MODEL.md §4.1, MyoGen `SurfaceElectrodeArray`): a flat `rows × cols`
//! array of circular electrodes on the skin, and its spatial differentiation mode.
//!
//! Coordinates (metres): `z` runs along the muscle fibres, `x` across them, both on the skin
//! surface; depth is measured into the tissue from the skin. Grid **rows run along the fibres**:
//! electrode `(r, c)` sits at
//!
//! ```text
//! z = z_c + (r − (rows − 1)/2)·d,   x = x_c + (c − (cols − 1)/2)·d
//! ```
//!
//! with `(z_c, x_c)` the grid centre and `d` the inter-electrode distance. (MyoGen places the grid
//! on a curved skin cylinder; this flat grid is its limit for a large bending radius.)
//!
//! Differentiation (outputs in volts; the differential modes have a reduced grid):
//! - monopolar: `φ(r, c)`, shape `[rows, cols]`;
//! - bipolar longitudinal (along the fibres): `φ(r+1, c) − φ(r, c)`, shape `[rows − 1, cols]`;
//! - bipolar transversal: `φ(r, c+1) − φ(r, c)`, shape `[rows, cols − 1]`;
//! - Laplacian (normal double differential): `φ(r−1,c) + φ(r+1,c) + φ(r,c−1) + φ(r,c+1) − 4φ(r,c)`
//!   at the interior electrodes, shape `[rows − 2, cols − 2]`.

use std::str::FromStr;

use crate::error::{Error, Result, check};
use crate::io::recording;

/// Spatial filter applied to the monopolar electrode potentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Differentiation {
    /// Each electrode against a distant reference.
    #[default]
    Monopolar,
    /// Consecutive electrodes along the fibre direction (rows).
    BipolarLongitudinal,
    /// Consecutive electrodes across the fibres (columns).
    BipolarTransversal,
    /// Five-point discrete Laplacian at the interior electrodes.
    Laplacian,
}

impl FromStr for Differentiation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "monopolar" => Ok(Self::Monopolar),
            "bipolar_longitudinal" => Ok(Self::BipolarLongitudinal),
            "bipolar_transversal" => Ok(Self::BipolarTransversal),
            "laplacian" => Ok(Self::Laplacian),
            _ => Err(Error::invalid(
                "differentiation_mode",
                s,
                "one of monopolar, bipolar_longitudinal, bipolar_transversal, laplacian",
            )),
        }
    }
}

/// A flat grid of circular surface electrodes (SI units).
#[derive(Clone, Debug, PartialEq)]
pub struct ElectrodeArray {
    /// Electrodes along the fibre direction.
    pub rows: usize,
    /// Electrodes across the fibres.
    pub cols: usize,
    /// Inter-electrode distance `d` (m).
    pub ied_m: f64,
    /// Electrode radius (m); 0 = point electrodes.
    pub radius_m: f64,
    /// Grid centre along the fibres, `z_c` (m).
    pub centre_z_m: f64,
    /// Grid centre across the fibres, `x_c` (m).
    pub centre_x_m: f64,
    /// Spatial differentiation.
    pub mode: Differentiation,
    /// Manufacturer layout (channel numbering of a real recording), if any.
    pub layout: Option<recording::ElectrodeGrid>,
}

impl ElectrodeArray {
    /// A grid of `rows × cols` electrodes of radius `radius_m` (m), spaced `ied_m` (m), centred at
    /// `(centre_z_m, centre_x_m)` (m). Errors: zero rows/cols, non-positive or non-finite distance,
    /// negative or non-finite radius, non-finite centre, or a grid too small for `mode`.
    pub fn new(
        rows: usize,
        cols: usize,
        ied_m: f64,
        radius_m: f64,
        centre_z_m: f64,
        centre_x_m: f64,
        mode: Differentiation,
    ) -> Result<Self> {
        check::count_at_least("rows", rows, 1)?;
        check::count_at_least("cols", cols, 1)?;
        check::positive("inter_electrode_distance_m", ied_m)?;
        check::non_negative("electrode_radius_m", radius_m)?;
        check::finite("centre_z_m", centre_z_m)?;
        check::finite("centre_x_m", centre_x_m)?;
        let g = Self {
            rows,
            cols,
            ied_m,
            radius_m,
            centre_z_m,
            centre_x_m,
            mode: Differentiation::Monopolar,
            layout: None,
        };
        g.with_mode(mode)
    }

    /// OT Bioelettronica GR08MM1305 (geometry from [`recording::ElectrodeGrid::gr08mm1305`]:
    /// 13 rows along the fibres × 5 columns, 8 mm), 1.5 mm electrode radius (3 mm diameter),
    /// centred at the origin. Position (0, 0) has no electrode on the real array (64 channels);
    /// the simulated grid still computes it — see [`ElectrodeArray::recording_channel`].
    pub fn gr08mm1305(mode: Differentiation) -> Result<Self> {
        let layout = recording::ElectrodeGrid::gr08mm1305();
        let mut g = Self::new(
            layout.rows,
            layout.cols,
            layout.ied_m,
            1.5e-3,
            0.0,
            0.0,
            mode,
        )?;
        g.layout = Some(layout);
        Ok(g)
    }

    /// The same grid with another differentiation mode. Error if the grid is too small for it
    /// (bipolar longitudinal needs ≥ 2 rows, transversal ≥ 2 columns, Laplacian ≥ 3 × 3).
    pub fn with_mode(mut self, mode: Differentiation) -> Result<Self> {
        let (min_r, min_c) = match mode {
            Differentiation::Monopolar => (1, 1),
            Differentiation::BipolarLongitudinal => (2, 1),
            Differentiation::BipolarTransversal => (1, 2),
            Differentiation::Laplacian => (3, 3),
        };
        if self.rows < min_r || self.cols < min_c {
            return Err(Error::invalid(
                "electrode grid",
                format!("{}×{} with {mode:?}", self.rows, self.cols),
                format!("at least {min_r}×{min_c} electrodes for this differentiation mode"),
            ));
        }
        self.mode = mode;
        Ok(self)
    }

    /// Number of (monopolar) electrodes, `rows·cols`.
    pub fn n_electrodes(&self) -> usize {
        self.rows * self.cols
    }

    /// Position `(z, x)` (m) of electrode `(r, c)`:
    /// `z = z_c + (r − (rows−1)/2)·d`, `x = x_c + (c − (cols−1)/2)·d`.
    pub fn electrode_zx_m(&self, r: usize, c: usize) -> (f64, f64) {
        (
            self.centre_z_m + (r as f64 - (self.rows as f64 - 1.0) / 2.0) * self.ied_m,
            self.centre_x_m + (c as f64 - (self.cols as f64 - 1.0) / 2.0) * self.ied_m,
        )
    }

    /// Output grid shape `(rows', cols')` after differentiation (module docs).
    pub fn output_shape(&self) -> (usize, usize) {
        match self.mode {
            Differentiation::Monopolar => (self.rows, self.cols),
            Differentiation::BipolarLongitudinal => (self.rows - 1, self.cols),
            Differentiation::BipolarTransversal => (self.rows, self.cols - 1),
            Differentiation::Laplacian => (self.rows - 2, self.cols - 2),
        }
    }

    /// Number of output channels `rows'·cols'`.
    pub fn n_outputs(&self) -> usize {
        let (r, c) = self.output_shape();
        r * c
    }

    /// The differentiation as a sparse linear map: for each output channel (row-major over the
    /// output grid) the list of `(monopolar electrode index r·cols + c, weight)`; output = Σ weight·φ.
    pub fn differentiation_terms(&self) -> Vec<Vec<(usize, f64)>> {
        let cols = self.cols;
        let idx = |r: usize, c: usize| r * cols + c;
        let (ro, co) = self.output_shape();
        let mut out = Vec::with_capacity(ro * co);
        for r in 0..ro {
            for c in 0..co {
                out.push(match self.mode {
                    Differentiation::Monopolar => vec![(idx(r, c), 1.0)],
                    Differentiation::BipolarLongitudinal => {
                        vec![(idx(r + 1, c), 1.0), (idx(r, c), -1.0)]
                    }
                    Differentiation::BipolarTransversal => {
                        vec![(idx(r, c + 1), 1.0), (idx(r, c), -1.0)]
                    }
                    Differentiation::Laplacian => {
                        let (r, c) = (r + 1, c + 1);
                        vec![
                            (idx(r - 1, c), 1.0),
                            (idx(r + 1, c), 1.0),
                            (idx(r, c - 1), 1.0),
                            (idx(r, c + 1), 1.0),
                            (idx(r, c), -4.0),
                        ]
                    }
                });
            }
        }
        out
    }

    /// Applies the differentiation to monopolar values `[rows·cols, n]` (row-major, `n` values per
    /// electrode, e.g. time samples) → `[rows'·cols', n]`. Error if the length does not match.
    pub fn differentiate(&self, mono: &[f64], n: usize) -> Result<Vec<f64>> {
        let expected = self.n_electrodes() * n;
        if mono.len() != expected {
            return Err(Error::shape(
                "monopolar values",
                format!("{expected} (= {}·{n})", self.n_electrodes()),
                mono.len(),
            ));
        }
        let terms = self.differentiation_terms();
        let mut out = vec![0.0; terms.len() * n];
        for (o, t) in terms.iter().enumerate() {
            let dst = &mut out[o * n..(o + 1) * n];
            for &(e, w) in t {
                for (d, s) in dst.iter_mut().zip(&mono[e * n..(e + 1) * n]) {
                    *d += w * s;
                }
            }
        }
        Ok(out)
    }

    /// For a monopolar grid with a manufacturer layout: the 0-based channel of the real recording
    /// at electrode `(r, c)` (`None` for an empty position, e.g. (0, 0) of GR08MM1305).
    pub fn recording_channel(&self, r: usize, c: usize) -> Option<usize> {
        self.layout.as_ref().and_then(|l| l.channel_at(r, c))
    }
}
