//! Real HD-sEMG + force recordings in the OTBioLab+/openhdemg MAT layout (see the project's
//! DATA.md): `Data` (1×1 cell → single n_samples × n_columns), `Description` (n_columns × 1 cell of
//! char labels), `SamplingFrequency` (scalar), optional `Time` (1×1 cell → double n_samples × 1).
//!
//! Columns are classified by their labels: `"… Source for decomposition …"` → decomposition pulse
//! train, `"… Decomposition of …"` → binary discharge train, a label mentioning `MVC` → force
//! (%MVC), and the remaining columns with a voltage unit (`[uV]`, `[mV]`, `[V]`) → EMG channels,
//! converted to volts. The development block of the shipped test recording (and only it) is what
//! fitting, tuning and tests may use: see [`DevelopmentBlock`].

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::mat::{MatFile, MatValue};
use crate::error::{Error, Result};

/// File name of the openhdemg test recording.
pub const DATA_FILE_NAME: &str = "otb_testfile.mat";
/// Environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "MYODIFF_DATA_DIR";
/// What to do when the recording is missing.
pub const FETCH_HINT: &str = "run `calibration/fetch-data.sh` from the myodiff crate root (it downloads \
openhdemg 0.1.2 from PyPI, extracts otb_testfile.mat and verifies its sha256), or set MYODIFF_DATA_DIR \
to a directory that contains otb_testfile.mat";

/// The data directory: `$MYODIFF_DATA_DIR` if set and non-empty, else `<crate root>/calibration/data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("calibration")
            .join("data"),
    }
}

/// Path of the test recording: [`default_data_dir`]`/otb_testfile.mat`.
pub fn default_data_path() -> PathBuf {
    default_data_dir().join(DATA_FILE_NAME)
}

/// A rectangular electrode grid with some positions possibly empty. Rows and columns are 0-based;
/// position (row, col) lies at x = col · IED, y = row · IED (metres).
#[derive(Debug, Clone, PartialEq)]
pub struct ElectrodeGrid {
    /// Manufacturer code, e.g. `"GR08MM1305"`.
    pub code: String,
    pub rows: usize,
    pub cols: usize,
    /// Inter-electrode distance, metres.
    pub ied_m: f64,
    /// (row, col) of each 0-based channel.
    positions: Vec<(usize, usize)>,
}

impl ElectrodeGrid {
    /// OT Bioelettronica GR08MM1305: 13 rows × 5 columns, 8 mm IED, 64 electrodes, corner (0, 0)
    /// empty. Serpentine numbering (1-based channel c, openhdemg's default orientation 180°):
    /// c = 1–12 → column 0, row c; 13–25 → column 1, row 25 − c; 26–38 → column 2, row c − 26;
    /// 39–51 → column 3, row 51 − c; 52–64 → column 4, row c − 52.
    pub fn gr08mm1305() -> Self {
        let positions = (1..=64usize)
            .map(|c| match c {
                1..=12 => (c, 0),
                13..=25 => (25 - c, 1),
                26..=38 => (c - 26, 2),
                39..=51 => (51 - c, 3),
                _ => (c - 52, 4),
            })
            .collect();
        ElectrodeGrid {
            code: "GR08MM1305".into(),
            rows: 13,
            cols: 5,
            ied_m: 8e-3,
            positions,
        }
    }

    /// Number of electrodes (channels).
    pub fn n_channels(&self) -> usize {
        self.positions.len()
    }

    /// (row, col) of 0-based channel `channel`.
    pub fn channel_position(&self, channel: usize) -> Result<(usize, usize)> {
        self.positions.get(channel).copied().ok_or_else(|| {
            Error::invalid(
                "channel",
                channel,
                format!("0..{} ({})", self.n_channels(), self.code),
            )
        })
    }

    /// Electrode position of `channel` in metres: (x, y) = (col · IED, row · IED).
    pub fn channel_xy_m(&self, channel: usize) -> Result<(f64, f64)> {
        let (r, c) = self.channel_position(channel)?;
        Ok((c as f64 * self.ied_m, r as f64 * self.ied_m))
    }

    /// The 0-based channel at (row, col), `None` for an empty position or outside the grid.
    pub fn channel_at(&self, row: usize, col: usize) -> Option<usize> {
        self.positions.iter().position(|&p| p == (row, col))
    }
}

/// A loaded recording. Signals are stored per channel/unit (`[channel][sample]`).
#[derive(Debug, Clone)]
pub struct Recording {
    /// Sampling rate, Hz.
    pub fs_hz: f64,
    pub n_samples: usize,
    /// All column labels of `Data`, in file order.
    pub labels: Vec<String>,
    /// Column of `Data` holding each EMG channel.
    pub emg_columns: Vec<usize>,
    /// Monopolar EMG, volts (file µV × 1e-6), `[channel][sample]`.
    pub emg_v: Vec<Vec<f32>>,
    /// Force, % of maximal voluntary contraction.
    pub force_pct_mvc: Vec<f64>,
    /// Binary discharge trains (0/1 per sample) of the decomposed units, `[unit][sample]`.
    pub discharge_trains: Vec<Vec<u8>>,
    /// Decomposition pulse trains (sources, arbitrary units), `[unit][sample]`.
    pub pulse_trains: Vec<Vec<f32>>,
    /// Electrode grid, when recognised from the labels (GR08MM1305 with 64 channels).
    pub grid: Option<ElectrodeGrid>,
    /// `Time[0]` in seconds if the file has a `Time` variable (informational; sample index 0 is the
    /// origin everywhere else).
    pub time_start_s: Option<f64>,
}

/// Volts per unit named in a label's trailing `[unit]`, for voltage units.
fn voltage_scale(label: &str) -> Option<f64> {
    let open = label.rfind('[')?;
    let unit = label[open + 1..].trim_end().strip_suffix(']')?.trim();
    match unit {
        "uV" | "µV" | "μV" => Some(1e-6),
        "mV" => Some(1e-3),
        "V" => Some(1.0),
        _ => None,
    }
}

fn rec_err(detail: impl Into<String>) -> Error {
    Error::format("OTB/openhdemg recording", detail)
}

fn check_window(field: &str, window: &Range<usize>, bound: &Range<usize>) -> Result<()> {
    let shown = format!("{}..{}", window.start, window.end);
    if window.start >= window.end {
        return Err(Error::invalid(
            field,
            shown,
            "a non-empty sample range start..end with start < end",
        ));
    }
    if window.start < bound.start || window.end > bound.end {
        return Err(Error::invalid(
            field,
            shown,
            format!("a sample range inside {}..{}", bound.start, bound.end),
        ));
    }
    Ok(())
}

impl Recording {
    /// Loads a recording from a MAT v5 file. A missing file is [`Error::DataMissing`] whose hint
    /// says to run `calibration/fetch-data.sh`; a malformed one is [`Error::Format`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::DataMissing {
                path: path.display().to_string(),
                hint: FETCH_HINT.into(),
            });
        }
        Self::from_mat(&MatFile::read(path)?)
    }

    /// Loads the test recording from [`default_data_path`].
    pub fn load_default() -> Result<Self> {
        Self::load(default_data_path())
    }

    /// Builds a recording from a parsed MAT file in the OTBioLab+/openhdemg layout.
    pub fn from_mat(mat: &MatFile) -> Result<Self> {
        let fs_hz = mat
            .require("SamplingFrequency")?
            .unwrap_cell()
            .scalar()
            .ok_or_else(|| rec_err("`SamplingFrequency` is not a numeric scalar"))?;
        if !(fs_hz.is_finite() && fs_hz > 0.0) {
            return Err(Error::invalid(
                "SamplingFrequency",
                fs_hz,
                "finite and > 0 Hz",
            ));
        }

        let labels: Vec<String> = match mat.require("Description")?.unwrap_cell() {
            MatValue::Cell { items, .. } => items
                .iter()
                .map(|it| {
                    it.as_str()
                        .map(|s| s.trim().to_string())
                        .ok_or_else(|| rec_err("a `Description` item is not char"))
                })
                .collect::<Result<_>>()?,
            MatValue::Char { text, .. } => text.lines().map(|l| l.trim().to_string()).collect(),
            other => {
                return Err(rec_err(format!(
                    "`Description` is {}, expected a cell of char",
                    other.class_name()
                )));
            }
        };

        let data = mat.require("Data")?.unwrap_cell();
        let dims = data.dims();
        let (n_samples, n_cols) = match (data, dims) {
            (MatValue::Single { .. } | MatValue::Numeric { .. }, &[rows, cols]) => (rows, cols),
            (MatValue::Single { .. } | MatValue::Numeric { .. }, _) => {
                return Err(rec_err(format!("`Data` has dims {dims:?}, expected 2-D")));
            }
            (other, _) => {
                return Err(rec_err(format!(
                    "`Data` is {}, expected a numeric matrix",
                    other.class_name()
                )));
            }
        };
        if n_cols != labels.len() {
            return Err(Error::shape(
                "Data columns vs Description labels",
                labels.len(),
                n_cols,
            ));
        }
        if n_samples == 0 {
            return Err(rec_err("`Data` has no samples"));
        }
        // Column j of the column-major matrix as f64 (the parser guarantees
        // data.len() == n_samples * n_cols).
        let column = |j: usize| -> Vec<f64> {
            let cols = j * n_samples..(j + 1) * n_samples;
            match data {
                MatValue::Single { real, .. } => real[cols].iter().map(|&x| x as f64).collect(),
                MatValue::Numeric { real, .. } => real[cols].to_vec(),
                _ => Vec::new(),
            }
        };

        let (mut emg_columns, mut emg_v) = (Vec::new(), Vec::new());
        let (mut discharge_trains, mut pulse_trains) = (Vec::new(), Vec::new());
        let mut force_col = None;
        for (j, label) in labels.iter().enumerate() {
            let lower = label.to_lowercase();
            if lower.contains("source for decomposition") {
                pulse_trains.push(column(j).iter().map(|&x| x as f32).collect());
            } else if lower.contains("decomposition of") {
                let train = column(j)
                    .iter()
                    .enumerate()
                    .map(|(n, &x)| match x {
                        0.0 => Ok(0u8),
                        1.0 => Ok(1u8),
                        _ => Err(Error::invalid(
                            format!("discharge train column {j} sample {n}"),
                            x,
                            "0 or 1",
                        )),
                    })
                    .collect::<Result<Vec<u8>>>()?;
                discharge_trains.push(train);
            } else if label.contains("MVC") {
                if let Some(first) = force_col {
                    return Err(rec_err(format!(
                        "two force (%MVC) columns: {first} and {j}"
                    )));
                }
                force_col = Some(j);
            } else if let Some(scale) = voltage_scale(label) {
                emg_columns.push(j);
                emg_v.push(column(j).iter().map(|&x| (x * scale) as f32).collect());
            }
        }
        let force_col = force_col.ok_or_else(|| rec_err("no force column (label with `MVC`)"))?;
        let force_pct_mvc = column(force_col);
        if emg_v.is_empty() {
            return Err(rec_err("no EMG column (label with unit [uV], [mV] or [V])"));
        }
        if discharge_trains.len() != pulse_trains.len() {
            return Err(rec_err(format!(
                "{} discharge trains but {} pulse trains",
                discharge_trains.len(),
                pulse_trains.len()
            )));
        }

        let grid = (emg_v.len() == 64
            && emg_columns
                .iter()
                .all(|&j| labels[j].contains("GR08MM1305")))
        .then(ElectrodeGrid::gr08mm1305);

        let time_start_s = mat
            .get("Time")
            .map(MatValue::unwrap_cell)
            .and_then(|t| match t {
                MatValue::Numeric { real, .. } => real.first().copied(),
                MatValue::Single { real, .. } => real.first().map(|&x| x as f64),
                _ => None,
            });

        Ok(Recording {
            fs_hz,
            n_samples,
            labels,
            emg_columns,
            emg_v,
            force_pct_mvc,
            discharge_trains,
            pulse_trains,
            grid,
            time_start_s,
        })
    }

    /// Number of EMG channels.
    pub fn n_emg_channels(&self) -> usize {
        self.emg_v.len()
    }

    /// Number of decomposed motor units.
    pub fn n_units(&self) -> usize {
        self.discharge_trains.len()
    }

    /// Duration n_samples / fs_hz, seconds.
    pub fn duration_s(&self) -> f64 {
        self.n_samples as f64 / self.fs_hz
    }

    /// EMG of `channels` over sample `window`, volts, `[channel][sample]` as f64. Errors: empty
    /// channel list, unknown channel, empty window or one outside the recording, non-finite samples.
    pub fn emg_window_v(&self, channels: &[usize], window: Range<usize>) -> Result<Vec<Vec<f64>>> {
        if channels.is_empty() {
            return Err(Error::invalid("channels", "[]", "at least one EMG channel"));
        }
        check_window("window", &window, &(0..self.n_samples))?;
        channels
            .iter()
            .map(|&ch| {
                let sig = self.emg_v.get(ch).ok_or_else(|| {
                    Error::invalid("channel", ch, format!("0..{}", self.n_emg_channels()))
                })?;
                let out: Vec<f64> = sig[window.clone()].iter().map(|&x| x as f64).collect();
                if let Some(n) = out.iter().position(|x| !x.is_finite()) {
                    return Err(Error::invalid(
                        format!("EMG channel {ch} sample {}", window.start + n),
                        out[n],
                        "a finite sample",
                    ));
                }
                Ok(out)
            })
            .collect()
    }

    /// Force over `window`, %MVC.
    pub fn force_window_pct_mvc(&self, window: Range<usize>) -> Result<&[f64]> {
        check_window("window", &window, &(0..self.n_samples))?;
        Ok(&self.force_pct_mvc[window])
    }

    /// Sample indices (absolute) of the discharges of `unit` inside `window`.
    pub fn discharge_samples(&self, unit: usize, window: Range<usize>) -> Result<Vec<usize>> {
        check_window("window", &window, &(0..self.n_samples))?;
        let train = self
            .discharge_trains
            .get(unit)
            .ok_or_else(|| Error::invalid("unit", unit, format!("0..{}", self.n_units())))?;
        Ok(window.filter(|&n| train[n] == 1).collect())
    }

    /// The development block (the only part that fitting, tuning and tests may use).
    pub fn development(&self) -> Result<DevelopmentBlock<'_>> {
        DevelopmentBlock::new(self)
    }
}

/// EMG channels of the development block: 0..32 …
pub const DEV_EMG_CHANNELS: Range<usize> = 0..32;
/// … without these (0-based) channels, noisy at rest.
pub const DEV_BAD_CHANNELS: [usize; 2] = [17, 30];
/// Samples of the development block, [0, 33280) = the first 16.25 s at 2048 Hz.
pub const DEV_SAMPLES: Range<usize> = 0..33_280;
/// Rest-noise window (EMG at its noise floor), first 0.75 s.
pub const REST_WINDOW: Range<usize> = 0..1_536;
/// Force ramp-up.
pub const RAMP_WINDOW: Range<usize> = 1_792..13_824;
/// Force plateau (≈26 %MVC).
pub const PLATEAU_WINDOW: Range<usize> = 13_824..33_280;
/// Sampling rate the development windows assume, Hz.
pub const DEV_FS_HZ: f64 = 2048.0;

/// Named segments of the development block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Rest,
    RampUp,
    Plateau,
    /// The whole development block.
    All,
}

impl Segment {
    /// The segment's sample range.
    pub fn samples(self) -> Range<usize> {
        match self {
            Segment::Rest => REST_WINDOW,
            Segment::RampUp => RAMP_WINDOW,
            Segment::Plateau => PLATEAU_WINDOW,
            Segment::All => DEV_SAMPLES,
        }
    }
}

/// The development block of the test recording: EMG channels 0–31 except 17 and 30, samples
/// [0, 33280); force and discharge trains on the same samples. Every accessor rejects channels
/// and windows outside the block with a typed error, so evaluation data cannot leak in.
#[derive(Debug, Clone)]
pub struct DevelopmentBlock<'a> {
    rec: &'a Recording,
    channels: Vec<usize>,
}

/// The development EMG channels (0-based): 0..32 without [`DEV_BAD_CHANNELS`].
pub fn development_channels() -> Vec<usize> {
    DEV_EMG_CHANNELS
        .filter(|c| !DEV_BAD_CHANNELS.contains(c))
        .collect()
}

impl<'a> DevelopmentBlock<'a> {
    /// Checks that `rec` covers the block (sampling rate 2048 Hz, ≥ 32 EMG channels, ≥ 33280
    /// samples).
    pub fn new(rec: &'a Recording) -> Result<Self> {
        if rec.fs_hz != DEV_FS_HZ {
            return Err(Error::invalid(
                "fs_hz",
                rec.fs_hz,
                "2048 Hz (the development windows are in samples at 2048 Hz)",
            ));
        }
        if rec.n_emg_channels() < DEV_EMG_CHANNELS.end {
            return Err(Error::invalid(
                "n_emg_channels",
                rec.n_emg_channels(),
                format!(">= {}", DEV_EMG_CHANNELS.end),
            ));
        }
        if rec.n_samples < DEV_SAMPLES.end {
            return Err(Error::invalid(
                "n_samples",
                rec.n_samples,
                format!(">= {}", DEV_SAMPLES.end),
            ));
        }
        Ok(DevelopmentBlock {
            rec,
            channels: development_channels(),
        })
    }

    /// Restricts the block to a subset of the development channels. Errors: an empty list, or a
    /// channel that is bad or reserved for evaluation.
    pub fn with_channels(mut self, channels: &[usize]) -> Result<Self> {
        if channels.is_empty() {
            return Err(Error::invalid(
                "channels",
                "[]",
                "at least one development channel",
            ));
        }
        let allowed = development_channels();
        if let Some(&bad) = channels.iter().find(|c| !allowed.contains(c)) {
            return Err(Error::invalid(
                "channels",
                bad,
                "a development channel: 0..32 without 17 and 30",
            ));
        }
        self.channels = channels.to_vec();
        Ok(self)
    }

    /// The selected channels (0-based).
    pub fn channels(&self) -> &[usize] {
        &self.channels
    }

    /// Sampling rate, Hz.
    pub fn fs_hz(&self) -> f64 {
        self.rec.fs_hz
    }

    /// Number of decomposed units.
    pub fn n_units(&self) -> usize {
        self.rec.n_units()
    }

    /// EMG of the selected channels over `window` (inside [0, 33280)), volts, `[channel][sample]`.
    pub fn emg_v(&self, window: Range<usize>) -> Result<Vec<Vec<f64>>> {
        check_window("window", &window, &DEV_SAMPLES)?;
        self.rec.emg_window_v(&self.channels, window)
    }

    /// EMG of the selected channels over a named segment, volts.
    pub fn segment_emg_v(&self, segment: Segment) -> Result<Vec<Vec<f64>>> {
        self.emg_v(segment.samples())
    }

    /// Force over `window` (inside [0, 33280)), %MVC.
    pub fn force_pct_mvc(&self, window: Range<usize>) -> Result<&'a [f64]> {
        check_window("window", &window, &DEV_SAMPLES)?;
        self.rec.force_window_pct_mvc(window)
    }

    /// Discharge sample indices (absolute) of `unit` inside `window` (inside [0, 33280)).
    pub fn discharge_samples(&self, unit: usize, window: Range<usize>) -> Result<Vec<usize>> {
        check_window("window", &window, &DEV_SAMPLES)?;
        self.rec.discharge_samples(unit, window)
    }

    /// Mean discharge rate of `unit` over `window`: (k − 1) / (t_k − t_1) for its k ≥ 2
    /// discharges, Hz; 0 when it fires fewer than twice.
    pub fn mean_rate_hz(&self, unit: usize, window: Range<usize>) -> Result<f64> {
        let s = self.discharge_samples(unit, window)?;
        Ok(match (s.first(), s.last()) {
            (Some(&a), Some(&b)) if s.len() >= 2 && b > a => {
                (s.len() - 1) as f64 * self.rec.fs_hz / (b - a) as f64
            }
            _ => 0.0,
        })
    }
}
