//! Runs an [`Experiment`]: builds the network of its spec (one batch row per parameter set) with
//! the assembled-network builder, adds the surface-EMG readout when `[emg]` is given, checks that
//! every recorded buffer is written by some stage, rolls out on the chosen backend and path, and
//! returns the [`SavedRun`] the writers take.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use burn::tensor::Tensor;
use ndarray::Array3;

use super::spec::{DriveSpec, Experiment, ExperimentSpec};
use crate::drive::rate::DriveParams;
use crate::drive::{KnotTimes, PiecewiseLinearDrive};
use crate::emg::electrodes::ElectrodeArray;
use crate::emg::muap::{MuapModel, MuapTemplates};
use crate::emg::surface::SurfaceEmg;
use crate::error::{Error, Result};
use crate::io::saved::{ElectrodeLayout, ExtraTrace, SavedRun, iso8601_utc};
use crate::kernel::{Ctx, Simulation, names, to_vec_f64};
use crate::network::{MuscleParams, build, build_with_drive};

/// A finished run: the saved data and the wall time of the rollout (s).
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// What the writers save.
    pub saved: SavedRun,
    /// Wall time of building + rolling out (s), MUAP templates included.
    pub wall_s: f64,
}

/// Builds the simulation of `spec` on `ctx` (network + drive + EMG readout); also returns the
/// electrode grid when EMG is configured.
pub fn build_simulation(
    spec: &ExperimentSpec,
    ctx: &Ctx,
) -> Result<(Simulation, Option<ElectrodeArray>)> {
    let cfg = &spec.network;
    let b = spec.n_sets();
    let col = |v: Vec<f64>| ctx.tensor(v.clone(), [v.len(), 1]);
    if let Some(cl) = &spec.closed_loop {
        return Ok((closed_loop_simulation(spec, cl, ctx)?, None));
    }
    let weight = col(spec.set_weights_s());
    let muscle = MuscleParams::from_config(cfg, ctx)?;
    let drives = spec.set_drives()?;
    let mut sim = match &spec.drive {
        DriveSpec::Sine { .. } => build(cfg, ctx, b, sine_drive(&drives, ctx)?, weight, &muscle)?,
        DriveSpec::Knots { times_s, .. } => {
            let k = times_s.len();
            let mut values = Vec::with_capacity(b * k);
            for d in &drives {
                if let DriveSpec::Knots { values_hz, .. } = d {
                    values.extend_from_slice(values_hz);
                }
            }
            let sd = drive_column(&drives, ctx, |d| match d {
                DriveSpec::Knots { noise_sd_hz, .. } => Some(*noise_sd_hz),
                DriveSpec::Sine { .. } => None,
            })?;
            let stage = PiecewiseLinearDrive::new(
                KnotTimes::new(times_s.clone())?,
                ctx.tensor(values, [b, k]),
                sd,
                cfg.drive_noise_spec(),
                cfg.rate_clip,
            );
            build_with_drive(cfg, ctx, b, Box::new(stage), weight, &muscle)?
        }
    };
    let grid = match &spec.emg {
        None => None,
        Some(emg) => {
            let grid = emg.array()?;
            let rp = to_vec_f64(muscle.rp.clone())[0];
            let units = emg.pool_geometry(rp)?.units(cfg.n_mn, emg.seed)?;
            let tp = MuapTemplates::compute(&grid, &units, &MuapModel::default(), cfg.dt_s, None)?;
            sim.add_readout(SurfaceEmg::new(&tp)?);
            Some(grid)
        }
    };
    Ok((sim, grid))
}

/// The closed loop of `spec` ([`crate::closed_loop::build`]): one batch row per set, each set's
/// sine drive and DD → MN weight, the loop parameters of `[loop_params]` shared by every row.
fn closed_loop_simulation(
    spec: &ExperimentSpec,
    cl: &crate::closed_loop::ClosedLoopConfig,
    ctx: &Ctx,
) -> Result<Simulation> {
    let w_dd = spec.set_weights_s();
    let lp = spec.loop_params.clone().unwrap_or_default();
    let params = crate::closed_loop::ClosedLoopParams {
        drive: sine_drive(&spec.set_drives()?, ctx)?,
        w_dd_s: ctx.tensor(w_dd.clone(), [w_dd.len(), 1]),
        w_ia_s: ctx.full([1, 1], lp.w_ia_s),
        gamma_dyn_hz: ctx.full([1, 1], lp.gamma_dyn_hz),
        gamma_stat_hz: ctx.full([1, 1], lp.gamma_stat_hz),
        gto_g1_hz: ctx.full([1, 1], lp.gto_g1_hz),
    };
    crate::closed_loop::build(cl, ctx, spec.n_sets(), &params)
}

/// One drive field per set as a column `[sets, 1]` (every set has the kind of `[drive]`; `f` is
/// `None` for a field of the other kind).
fn drive_column(
    drives: &[DriveSpec],
    ctx: &Ctx,
    f: impl Fn(&DriveSpec) -> Option<f64>,
) -> Result<Tensor<2>> {
    let v = drives
        .iter()
        .map(|d| f(d).ok_or_else(|| Error::config("sets", "a set changed the drive kind")))
        .collect::<Result<Vec<f64>>>()?;
    Ok(ctx.tensor(v.clone(), [v.len(), 1]))
}

/// The sine drives of the sets as [`DriveParams`] (one row per set; Hz, rad).
fn sine_drive(drives: &[DriveSpec], ctx: &Ctx) -> Result<DriveParams> {
    let field = |i: usize| drive_column(drives, ctx, |d| d.sine_params().map(|p| p[i]));
    Ok(DriveParams {
        dc_hz: field(0)?,
        amp_hz: field(1)?,
        freq_hz: field(2)?,
        phase_rad: field(3)?,
        noise_sd_hz: field(4)?,
    })
}

/// The electrode layout of `grid`'s output channels: each channel's position is the mean of the
/// electrodes its differentiation combines (module docs of [`ElectrodeLayout`]).
pub fn electrode_layout(grid: &ElectrodeArray, name: &str) -> ElectrodeLayout {
    let (rows, cols) = grid.output_shape();
    let positions_zx_m = grid
        .differentiation_terms()
        .iter()
        .map(|terms| {
            let n = terms.len() as f64;
            let (z, x) = terms.iter().fold((0.0, 0.0), |(z, x), &(e, _)| {
                let (ze, xe) = grid.electrode_zx_m(e / grid.cols, e % grid.cols);
                (z + ze, x + xe)
            });
            (z / n, x / n)
        })
        .collect();
    ElectrodeLayout {
        rows,
        cols,
        positions_zx_m,
        differentiation: serde_json::to_value(grid.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        ied_m: grid.ied_m,
        radius_m: grid.radius_m,
        grid: name.to_string(),
    }
}

/// Runs `exp` and collects what it records (module docs). Errors: any spec value the builders
/// reject (naming the key), `record[i]` naming a buffer no stage writes (with the list of those
/// that exist), and rollout failures.
pub fn run(exp: &Experiment) -> Result<RunOutcome> {
    let spec = &exp.spec;
    let session_start = iso8601_utc(SystemTime::now());
    let t0 = Instant::now();
    let ctx = Ctx::new(spec.backend)?;
    let (mut sim, grid) = build_simulation(spec, &ctx)?;
    let (_, decls) = sim.graph()?;
    let mut written: BTreeSet<String> = decls
        .iter()
        .flat_map(|d| d.writes.iter().map(|w| w.name.clone()))
        .collect();
    if grid.is_some() {
        written.insert(names::SURFACE_EMG_V.into());
    }
    let recorded = spec.recorded();
    for (i, r) in recorded.iter().enumerate() {
        if !written.contains(r) {
            return Err(Error::config(
                format!("record[{i}]"),
                format!(
                    "no stage writes `{r}`; this experiment writes: {}",
                    written.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let rec: Vec<&str> = recorded.iter().map(String::as_str).collect();
    sim.record(&rec);
    let rollout = sim.run_path(spec.exec_path())?;
    let want = |n: &str| recorded.iter().any(|r| r == n);
    // the closed loop's muscle force is the run's force
    let muscle_force = crate::muscle::hill::buffers::FORCE_N;
    let loop_force = spec.closed_loop.is_some() && want(muscle_force);
    let force_trace = if loop_force {
        Some(rollout.trace(muscle_force)?)
    } else {
        None
    };
    let mut sets = Vec::with_capacity(spec.n_sets());
    for b in 0..spec.n_sets() {
        let mut r = rollout.result(b)?;
        if let Some(tr) = &force_trace {
            let [n_t, _, w] = tr.dims();
            let v = to_vec_f64(tr.clone().slice([0..n_t, b..b + 1, 0..w]));
            r.force_n = Some(
                ndarray::Array2::from_shape_vec((n_t, w), v)
                    .map_err(|e| Error::format(muscle_force, e.to_string()))?,
            );
        }
        if !want(names::SPIKES) {
            r.spike_times_s.clear();
            r.n_units = 0;
        }
        if !want(names::FORCE_N) && !loop_force {
            r.force_n = None;
        }
        if !want(names::SURFACE_EMG_V) {
            r.surface_emg_v = None;
            r.grid_shape = None;
        }
        sets.push(r);
    }
    let mut extra = Vec::new();
    for name in &recorded {
        if [names::SPIKES, names::FORCE_N, names::SURFACE_EMG_V].contains(&name.as_str())
            || (loop_force && name == muscle_force)
        {
            continue;
        }
        let tr = rollout.trace(name)?;
        let [n_t, batch, w] = tr.dims();
        let v = to_vec_f64(tr.swap_dims(0, 1));
        extra.push(ExtraTrace {
            name: name.clone(),
            units: rollout
                .specs
                .get(name)
                .map(|s| s.units.clone())
                .unwrap_or_default(),
            data: Array3::from_shape_vec((batch, n_t, w), v).expect("dims of the trace"),
        });
    }
    let electrodes = match (&grid, &spec.emg) {
        (Some(g), Some(e)) if want(names::SURFACE_EMG_V) => {
            Some(electrode_layout(g, e.grid.name()))
        }
        _ => None,
    };
    let saved = SavedRun {
        name: spec.name.clone(),
        description: spec.description.clone(),
        spec_toml: exp.text.clone(),
        subject_age: spec.subject_age.clone(),
        session_start,
        n_steps: rollout.n_steps,
        sets,
        extra,
        electrodes,
    };
    Ok(RunOutcome {
        saved,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}
