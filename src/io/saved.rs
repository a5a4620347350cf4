//! [`SavedRun`]: everything a simulated experiment saves — the per-set [`SimResult`]s, extra
//! recorded traces, the electrode grid and the session metadata — in the form the NPZ and NWB
//! writers ([`super::npz`], [`super::nwb`]) take and the NPZ reader gives back.
//!
//! Units: s, N, V, Hz, m (each trace carries its unit string).

use std::time::{SystemTime, UNIX_EPOCH};

use ndarray::Array3;

use crate::error::{Error, Result};
use crate::kernel::SimResult;

/// One recorded trace other than spikes / force / EMG, over all parameter sets.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraTrace {
    /// Buffer name (carries its unit suffix, e.g. `drive_rate_hz`).
    pub name: String,
    /// Unit of the values (e.g. "Hz", "S", "spike/step").
    pub units: String,
    /// Values `[n_sets, n_steps, width]`.
    pub data: Array3<f64>,
}

/// The output grid of the surface EMG (after spatial differentiation).
#[derive(Clone, Debug, PartialEq)]
pub struct ElectrodeLayout {
    /// Output rows (along the fibres).
    pub rows: usize,
    /// Output columns (across the fibres).
    pub cols: usize,
    /// Position `(z, x)` (m) of each output channel, row-major: the electrode for monopolar,
    /// the midpoint of the pair for bipolar, the centre electrode for the Laplacian.
    pub positions_zx_m: Vec<(f64, f64)>,
    /// Spatial differentiation (`monopolar`, `bipolar_longitudinal`, …).
    pub differentiation: String,
    /// Inter-electrode distance (m).
    pub ied_m: f64,
    /// Electrode radius (m).
    pub radius_m: f64,
    /// Grid name (e.g. `gr08mm1305`, `custom`).
    pub grid: String,
}

/// A saved run (module docs). All sets share `dt_s`, `t_start_s`, the step count and the units.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedRun {
    /// Experiment name.
    pub name: String,
    /// Description (NWB `session_description`).
    pub description: String,
    /// The experiment spec (TOML text) that produced the run.
    pub spec_toml: String,
    /// Age of the modelled subject (ISO 8601 duration, e.g. `P30Y`).
    pub subject_age: String,
    /// Start of the run, ISO 8601 UTC (`2026-01-01T00:00:00+00:00`).
    pub session_start: String,
    /// Number of time steps of the rollout.
    pub n_steps: usize,
    /// One result per parameter set (batch row).
    pub sets: Vec<SimResult>,
    /// Extra recorded traces.
    pub extra: Vec<ExtraTrace>,
    /// The EMG grid, when EMG was recorded.
    pub electrodes: Option<ElectrodeLayout>,
}

impl SavedRun {
    /// Time step (s).
    pub fn dt_s(&self) -> f64 {
        self.sets.first().map_or(0.0, |s| s.dt_s)
    }
    /// Time of step 0 (s).
    pub fn t_start_s(&self) -> f64 {
        self.sets.first().map_or(0.0, |s| s.t_start_s)
    }
    /// Number of motor units (0 when spikes were not recorded).
    pub fn n_units(&self) -> usize {
        self.sets.first().map_or(0, |s| s.n_units)
    }
    /// Checks that every set agrees on dt, t_start, units and shapes, and that the extra traces
    /// have one row per set ([`Error::Format`] naming `what` and the first disagreement).
    pub fn check_consistent(&self, what: &str) -> Result<()> {
        let bad = |d: String| Err(Error::format(what, d));
        let Some(first) = self.sets.first() else {
            return bad("no parameter set".into());
        };
        for (b, s) in self.sets.iter().enumerate() {
            let n = s.n_steps();
            if n != 0 && n != self.n_steps {
                return bad(format!(
                    "set {b}: {n} steps, expected n_steps = {}",
                    self.n_steps
                ));
            }
            if s.dt_s != first.dt_s || s.t_start_s != first.t_start_s {
                return bad(format!("set {b}: dt_s / t_start_s differ from set 0"));
            }
            if s.n_units != first.n_units || s.spike_times_s.len() != s.n_units {
                return bad(format!(
                    "set {b}: {} spike trains for n_units = {}",
                    s.spike_times_s.len(),
                    s.n_units
                ));
            }
            if s.force_n.as_ref().map(|f| f.dim()) != first.force_n.as_ref().map(|f| f.dim()) {
                return bad(format!("set {b}: force_n shape differs from set 0"));
            }
            if s.surface_emg_v.as_ref().map(|e| e.dim())
                != first.surface_emg_v.as_ref().map(|e| e.dim())
            {
                return bad(format!("set {b}: surface_emg_v shape differs from set 0"));
            }
        }
        for e in &self.extra {
            if e.data.shape()[0] != self.sets.len() || e.data.shape()[1] != self.n_steps {
                return bad(format!(
                    "trace {}: shape {:?}, expected [{}, {}, width]",
                    e.name,
                    e.data.shape(),
                    self.sets.len(),
                    self.n_steps
                ));
            }
        }
        if let (Some(l), Some((r, c))) = (&self.electrodes, first.grid_shape)
            && ((l.rows, l.cols) != (r, c) || l.positions_zx_m.len() != r * c)
        {
            return bad(format!(
                "electrode layout {}×{} ({} positions) vs EMG grid {r}×{c}",
                l.rows,
                l.cols,
                l.positions_zx_m.len()
            ));
        }
        Ok(())
    }
}

/// `t` as ISO 8601 UTC with second resolution (`YYYY-MM-DDThh:mm:ss+00:00`), by the proleptic
/// Gregorian calendar (days-from-civil inverse, H. Hinnant).
pub fn iso8601_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601_utc(UNIX_EPOCH), "1970-01-01T00:00:00+00:00");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(iso8601_utc(t), "2000-02-29T01:01:01+00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // 2025-12-31 23:59:59
        assert_eq!(iso8601_utc(t), "2025-12-31T23:59:59+00:00");
    }
}
