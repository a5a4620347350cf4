//! PNG figures of a [`SavedRun`] (parameter set 0 unless stated): spike raster, force of every
//! set, the EMG channel of largest RMS, and the EMG RMS map over the output grid.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::fit::plot::{Scale, Series, line_plot, register_font};
use crate::io::saved::SavedRun;

fn plot_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Longest EMG stretch plotted by [`emg_channel`] (s).
pub const EMG_WINDOW_S: f64 = 0.25;

/// Spike raster of set 0: one dot per spike at (time (s), motor unit index).
pub fn raster(path: &Path, run: &SavedRun) -> Result<()> {
    register_font();
    let err = plot_err(path);
    let set = &run.sets[0];
    let n_units = set.n_units.max(1);
    let t1 = run.t_start_s() + run.n_steps as f64 * run.dt_s();
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: spike raster (set 0)", run.name),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(run.t_start_s()..t1, 0.0..n_units as f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("motor unit (recruitment order)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    // One pixel wide (the plot area is ≈800 px), 0.8 unit tall.
    let w = (t1 - run.t_start_s()) / 800.0;
    let dots = set.spike_times_s.iter().enumerate().flat_map(|(u, train)| {
        train
            .iter()
            .map(move |&t| Rectangle::new([(t, u as f64), (t + w, u as f64 + 0.8)], BLACK.filled()))
    });
    chart.draw_series(dots).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Force (N, first pool) of every set against time (s).
pub fn force(path: &Path, run: &SavedRun) -> Result<()> {
    let dt = run.dt_s();
    let series: Vec<Series> = run
        .sets
        .iter()
        .enumerate()
        .filter_map(|(b, s)| {
            let f = s.force_n.as_ref()?;
            Some(Series::new(
                format!("set {b}"),
                (0..f.nrows())
                    .map(|t| (run.t_start_s() + t as f64 * dt, f[[t, 0]]))
                    .collect(),
            ))
        })
        .collect();
    line_plot(
        path,
        &format!("{}: muscle force", run.name),
        "time (s)",
        "force (N)",
        &series,
        Scale::Linear,
        Scale::Linear,
    )
}

/// RMS (V) of every EMG output channel of set 0, `[rows, cols]` row-major.
pub fn emg_rms_v(run: &SavedRun) -> Option<(usize, usize, Vec<f64>)> {
    let e = run.sets[0].surface_emg_v.as_ref()?;
    let (n_t, rows, cols) = e.dim();
    let rms = (0..rows * cols)
        .map(|ch| {
            let (r, c) = (ch / cols, ch % cols);
            ((0..n_t).map(|t| e[[t, r, c]].powi(2)).sum::<f64>() / n_t.max(1) as f64).sqrt()
        })
        .collect();
    Some((rows, cols, rms))
}

/// The EMG channel of largest RMS in set 0 (µV against s), over a window of at most
/// [`EMG_WINDOW_S`] starting at mid-run (whole samples stay visible).
pub fn emg_channel(path: &Path, run: &SavedRun) -> Result<()> {
    let (_, cols, rms) = emg_rms_v(run).ok_or_else(|| Error::config("plot", "no EMG recorded"))?;
    let ch = (0..rms.len())
        .max_by(|&a, &b| rms[a].total_cmp(&rms[b]))
        .unwrap_or(0);
    let e = run.sets[0]
        .surface_emg_v
        .as_ref()
        .expect("checked by emg_rms_v");
    let (r, c) = (ch / cols, ch % cols);
    let n_t = e.dim().0;
    let len = ((EMG_WINDOW_S / run.dt_s()).round() as usize).clamp(1, n_t);
    let first = (n_t / 2).min(n_t - len);
    let pts = (first..first + len)
        .map(|t| (run.t_start_s() + t as f64 * run.dt_s(), e[[t, r, c]] * 1e6))
        .collect();
    line_plot(
        path,
        &format!(
            "{}: surface EMG, channel (row {r}, col {c}) (set 0)",
            run.name
        ),
        "time (s)",
        "EMG (µV)",
        &[Series::new(format!("channel {ch}"), pts)],
        Scale::Linear,
        Scale::Linear,
    )
}

/// Colour of `f` ∈ [0, 1] on a dark-blue → yellow scale (linear in RGB through teal).
fn heat(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64, t: f64| (a + (b - a) * t).round() as u8;
    let (a, b, t) = if f < 0.5 {
        ((68.0, 1.0, 84.0), (33.0, 145.0, 140.0), f / 0.5)
    } else {
        ((33.0, 145.0, 140.0), (253.0, 231.0, 37.0), (f - 0.5) / 0.5)
    };
    RGBColor(lerp(a.0, b.0, t), lerp(a.1, b.1, t), lerp(a.2, b.2, t))
}

/// Heat map of the EMG RMS (µV) over the output grid of set 0 (rows along the fibres).
pub fn emg_rms_map(path: &Path, run: &SavedRun) -> Result<()> {
    register_font();
    let err = plot_err(path);
    let (rows, cols, rms) =
        emg_rms_v(run).ok_or_else(|| Error::config("plot", "no EMG recorded"))?;
    let max = rms.iter().cloned().fold(0.0, f64::max).max(1e-300);
    let root = BitMapBackend::new(path, (500, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("EMG RMS (µV), max {:.1} µV", max * 1e6),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..cols as f64, 0.0..rows as f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("column (across fibres)")
        .y_desc("row (along fibres)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let cells = rms.iter().enumerate().map(|(ch, &v)| {
        let (r, c) = ((ch / cols) as f64, (ch % cols) as f64);
        let colour = heat(v / max);
        Rectangle::new([(c, r), (c + 1.0, r + 1.0)], colour.filled())
    });
    chart.draw_series(cells).map_err(|e| err(&e))?;
    let labels = rms.iter().enumerate().map(|(ch, &v)| {
        let (r, c) = ((ch / cols) as f64, (ch % cols) as f64);
        Text::new(
            format!("{:.0}", v * 1e6),
            (c + 0.25, r + 0.6),
            ("sans-serif", 12).into_font().color(&WHITE),
        )
    });
    chart.draw_series(labels).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes every figure that applies to `run` into `dir`; returns the files written.
pub fn write_all(dir: &Path, run: &SavedRun) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut emit = |name: &str, f: &dyn Fn(&Path, &SavedRun) -> Result<()>| -> Result<()> {
        let p = dir.join(name);
        f(&p, run)?;
        out.push(p);
        Ok(())
    };
    if run.n_units() > 0 {
        emit("raster.png", &raster)?;
    }
    if run.sets[0].force_n.is_some() {
        emit("force.png", &force)?;
    }
    if run.sets[0].surface_emg_v.is_some() {
        emit("emg_channel.png", &emg_channel)?;
        emit("emg_rms_map.png", &emg_rms_map)?;
    }
    Ok(out)
}
