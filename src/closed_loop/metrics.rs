//! Measures of a closed-loop rollout: the stretch-reflex response, force steadiness and discharge
//! variability (host-side, f64; times in s, forces in N, rates in Hz).

use crate::error::{Error, Result};

/// The force response to a stretch starting at `onset_s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReflexResponse {
    /// Mean force over the baseline window before the onset (N).
    pub baseline_n: f64,
    /// Standard deviation of the force over the baseline window (N).
    pub baseline_sd_n: f64,
    /// Peak force in the response window minus the baseline (N).
    pub amplitude_n: f64,
    /// Time from the onset to the peak (s).
    pub time_to_peak_s: f64,
    /// Time from the onset until the force first exceeds baseline + `k_sd`·SD (s); `None` if
    /// it never does in the window.
    pub latency_s: Option<f64>,
}

/// The reflex response of `force_n` (one sample per step of `dt_s`) to a stretch at `onset_s`:
/// baseline over `[onset − baseline_s, onset)`, response over `[onset, onset + window_s)`,
/// latency threshold `k_sd` baseline SDs above the baseline mean (and above 1 % of the peak, so a
/// noiseless baseline still gives a latency). Errors: windows outside the trace.
pub fn reflex_response(
    force_n: &[f64],
    dt_s: f64,
    onset_s: f64,
    baseline_s: f64,
    window_s: f64,
    k_sd: f64,
) -> Result<ReflexResponse> {
    let idx = |t: f64| (t / dt_s).round() as isize;
    let (b0, on, end) = (
        idx(onset_s - baseline_s),
        idx(onset_s),
        idx(onset_s + window_s),
    );
    if b0 < 0 || on <= b0 || end as usize > force_n.len() || end <= on {
        return Err(Error::invalid(
            "reflex window",
            format!("onset {onset_s} s, baseline {baseline_s} s, window {window_s} s"),
            format!("inside the trace of {} s", force_n.len() as f64 * dt_s),
        ));
    }
    let base = &force_n[b0 as usize..on as usize];
    let mean = base.iter().sum::<f64>() / base.len() as f64;
    let sd = (base.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / base.len() as f64).sqrt();
    let resp = &force_n[on as usize..end as usize];
    let (k_peak, peak) =
        resp.iter().enumerate().fold(
            (0, f64::NEG_INFINITY),
            |(k, m), (i, &f)| if f > m { (i, f) } else { (k, m) },
        );
    let amplitude = peak - mean;
    let thr = mean + (k_sd * sd).max(0.01 * amplitude.abs());
    let latency = resp.iter().position(|&f| f > thr).map(|k| k as f64 * dt_s);
    Ok(ReflexResponse {
        baseline_n: mean,
        baseline_sd_n: sd,
        amplitude_n: amplitude,
        time_to_peak_s: k_peak as f64 * dt_s,
        latency_s: latency,
    })
}

/// Coefficient of variation (SD / mean) of `x` over `[t0, t1)` s (one sample per `dt_s`).
pub fn coefficient_of_variation(x: &[f64], dt_s: f64, t0: f64, t1: f64) -> Result<f64> {
    let (a, b) = ((t0 / dt_s).round() as usize, (t1 / dt_s).round() as usize);
    if b > x.len() || b <= a + 1 {
        return Err(Error::invalid(
            "window",
            format!("[{t0}, {t1}) s"),
            format!("inside the trace of {} s", x.len() as f64 * dt_s),
        ));
    }
    let w = &x[a..b];
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    let sd = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    Ok(if mean == 0.0 { f64::NAN } else { sd / mean })
}

/// Per-unit discharge statistics from spikes `[n_steps, n_units]` (row-major, 0/1) over
/// `[t0, t1)` s: `(mean rate Hz, ISI CV)` for every unit with ≥ 3 spikes there.
pub fn discharge_stats(
    spikes: &[f64],
    n_units: usize,
    dt_s: f64,
    t0: f64,
    t1: f64,
) -> Vec<(usize, f64, f64)> {
    let n_steps = spikes.len() / n_units;
    let (a, b) = (
        (t0 / dt_s).round() as usize,
        ((t1 / dt_s).round() as usize).min(n_steps),
    );
    let mut out = Vec::new();
    for u in 0..n_units {
        let times: Vec<f64> = (a..b)
            .filter(|&t| spikes[t * n_units + u] > 0.5)
            .map(|t| t as f64 * dt_s)
            .collect();
        if times.len() < 3 {
            continue;
        }
        let isi: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let m = isi.iter().sum::<f64>() / isi.len() as f64;
        let sd = (isi.iter().map(|v| (v - m).powi(2)).sum::<f64>() / isi.len() as f64).sqrt();
        out.push((u, 1.0 / m, sd / m));
    }
    out
}
