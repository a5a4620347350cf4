//! Calibration run reports: a directory with `summary.json` (every method's loss curve,
//! evaluations, wall time and fitted parameters), `report.md` (a comparison table) and PNG plots
//! (loss vs evaluations and vs wall time; problem-specific plots are added by the caller).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::optimize::FitReport;
use super::plot::{Scale, Series, line_plot};
use crate::error::{Error, Result};

/// Everything a report needs.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Problem name.
    pub problem: String,
    /// Free-form description (objective, data, settings).
    pub description: String,
    /// One entry per method.
    pub fits: Vec<FitReport>,
    /// Extra named numbers (e.g. reference values, MyoGen's numbers for comparison).
    pub extra: serde_json::Value,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// A number with 6 significant digits, in scientific notation when small or large.
fn fmt_value(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.5e}")
    } else {
        format!("{v:.6}")
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so a reader (or a killed
/// run) never sees a half-written file under the final name.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// Writes `loss_vs_evaluations.png`, `loss_vs_time.png`, `report.md` and, last, `summary.json`
/// into `dir` (created if missing); the text files through a temporary name and a rename, so a
/// `summary.json` present marks a complete report. Returns the paths written.
pub fn write_report(dir: &Path, summary: &RunSummary) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut written = Vec::new();
    let json = dir.join("summary.json");
    let text = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::format("summary", e.to_string()))?;

    let by_eval: Vec<Series> = summary
        .fits
        .iter()
        .map(|f| {
            Series::new(
                &f.method,
                f.history
                    .iter()
                    .map(|h| (h.evaluations as f64, h.best_loss))
                    .collect(),
            )
        })
        .collect();
    let p = dir.join("loss_vs_evaluations.png");
    line_plot(
        &p,
        &format!("{}: best loss vs evaluations", summary.problem),
        "evaluations",
        "best loss",
        &by_eval,
        Scale::Linear,
        Scale::Log,
    )?;
    written.push(p);
    let by_time: Vec<Series> = summary
        .fits
        .iter()
        .map(|f| {
            Series::new(
                &f.method,
                f.history.iter().map(|h| (h.wall_s, h.best_loss)).collect(),
            )
        })
        .collect();
    let p = dir.join("loss_vs_time.png");
    line_plot(
        &p,
        &format!("{}: best loss vs wall time", summary.problem),
        "wall time (s)",
        "best loss",
        &by_time,
        Scale::Linear,
        Scale::Log,
    )?;
    written.push(p);

    let mut md = format!(
        "# Calibration report: {}\n\n{}\n\n",
        summary.problem, summary.description
    );
    md.push_str("| method | best loss | evaluations | gradients | wall time (s) | stop | fitted parameters |\n|---|---|---|---|---|---|---|\n");
    for f in &summary.fits {
        let params: Vec<String> = f
            .names
            .iter()
            .zip(&f.x_best)
            .map(|(n, v)| format!("{n} = {}", fmt_value(*v)))
            .collect();
        md.push_str(&format!(
            "| {} | {:.6e} | {} | {} | {:.3} | {} | {} |\n",
            f.method,
            f.loss_best,
            f.evaluations,
            f.gradients,
            f.wall_s,
            f.stop_reason,
            params.join(", ")
        ));
    }
    md.push_str(
        "\n![loss vs evaluations](loss_vs_evaluations.png)\n![loss vs time](loss_vs_time.png)\n",
    );
    if !summary.extra.is_null() {
        md.push_str(&format!(
            "\n## Details\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(&summary.extra).unwrap_or_default()
        ));
    }
    let p = dir.join("report.md");
    write_atomic(&p, md.as_bytes())?;
    written.push(p);
    write_atomic(&json, text.as_bytes())?;
    written.push(json);
    Ok(written)
}
