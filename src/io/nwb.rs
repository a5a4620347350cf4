//! NWB 2.7 export of a [`SavedRun`] (HDF5 through `hdf5-metno` and the system libhdf5; why this
//! crate: BENCHMARKS.md §8).
//!
//! Layout (names of the NWB core schema; SI units in every `unit` attribute):
//! - `/units` (`Units`): one row per (parameter set, motor unit) with `spike_times` (s, ragged
//!   through `spike_times_index`; `resolution` = dt), `motor_unit` and `parameter_set` columns;
//! - `/acquisition/force` (`TimeSeries`, `newtons`, `[T, n_pools]`), `/acquisition/surface_emg`
//!   (`ElectricalSeries`, `volts`, `[T, rows·cols]`, chunked and deflated) and one `TimeSeries`
//!   per extra trace, each with `starting_time` (s) and `rate` (Hz); with several parameter sets
//!   every series is written once per set, suffixed `_set{b}`;
//! - `/general/extracellular_ephys/electrodes`: one row per EMG output channel with its grid row,
//!   column and position `(z, x)` (m) on the skin, in the electrode group `emg_grid` of the
//!   device `surface_electrode_grid`;
//! - `/general/source_script`: the experiment spec (TOML, `file_name` = `experiment.toml`);
//!   `session_description`, `identifier`, `session_start_time` at the root.

use std::path::Path;

use hdf5_metno::types::VarLenUnicode;
use hdf5_metno::{Dataset, File, Group, H5Type, Location, ObjectReference1};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::saved::SavedRun;
use crate::error::{Error, Result};

/// NWB schema version written.
pub const NWB_VERSION: &str = "2.7.0";

/// Datasets with at least this many elements are chunked and deflated.
const COMPRESS_MIN_ELEMENTS: usize = 4096;
/// Target chunk size (elements) of a chunked dataset.
const CHUNK_ELEMENTS: usize = 1 << 16;

/// Writer state: the file, its path (for errors) and the object-id generator.
struct Nwb {
    file: File,
    path: String,
    rng: StdRng,
}

type H5Result<T> = std::result::Result<T, hdf5_metno::Error>;

impl Nwb {
    fn err(&self, what: &str, e: hdf5_metno::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(format!("writing NWB {what}: {e}")),
        }
    }

    /// A random UUID4 (NWB `object_id`).
    fn uuid(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        let mut b = b;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Marks `loc` as an NWB / hdmf-common object of type `ty`.
    fn typed(&mut self, loc: &Location, ty: &str, namespace: &str) -> H5Result<()> {
        attr_str(loc, "neurodata_type", ty)?;
        attr_str(loc, "namespace", namespace)?;
        let id = self.uuid();
        attr_str(loc, "object_id", &id)
    }

    /// Numeric `VectorData` column `name` of `table` with `description`.
    fn column<T: H5Type>(
        &mut self,
        table: &Group,
        name: &str,
        desc: &str,
        v: &[T],
    ) -> H5Result<Dataset> {
        let d = ds_num(table, name, &[v.len()], v)?;
        attr_str(&d, "description", desc)?;
        self.typed(&d, "VectorData", "hdmf-common")?;
        Ok(d)
    }

    /// Text `VectorData` column `name` of `table` with `description`.
    fn column_str(
        &mut self,
        table: &Group,
        name: &str,
        desc: &str,
        v: &[String],
    ) -> H5Result<Dataset> {
        let vs: Vec<VarLenUnicode> = v.iter().map(|s| vlen(s)).collect();
        let d = table
            .new_dataset::<VarLenUnicode>()
            .shape(vs.len())
            .create(name)?;
        d.write_raw(&vs)?;
        attr_str(&d, "description", desc)?;
        self.typed(&d, "VectorData", "hdmf-common")?;
        Ok(d)
    }

    /// `id` (`ElementIdentifiers`) 0..n of a table.
    fn ids(&mut self, table: &Group, n: usize) -> H5Result<()> {
        let ids: Vec<i64> = (0..n as i64).collect();
        let d = ds_num(table, "id", &[n], &ids)?;
        self.typed(&d, "ElementIdentifiers", "hdmf-common")
    }

    /// A (`TimeSeries`-like) series group `name` under `parent`: `data` `[T, width]` with `unit`,
    /// `starting_time` (s) with `rate` (Hz).
    #[allow(clippy::too_many_arguments)]
    fn series(
        &mut self,
        parent: &Group,
        name: &str,
        ty: &str,
        desc: &str,
        unit: &str,
        shape: &[usize],
        data: &[f64],
        t0_s: f64,
        rate_hz: f64,
    ) -> H5Result<Group> {
        let g = parent.create_group(name)?;
        attr_str(&g, "description", desc)?;
        attr_str(&g, "comments", "simulated by myodiff")?;
        self.typed(&g, ty, "core")?;
        let d = ds_num(&g, "data", shape, data)?;
        attr_str(&d, "unit", unit)?;
        attr_scalar(&d, "conversion", 1.0f32)?;
        attr_scalar(&d, "offset", 0.0f32)?;
        attr_scalar(&d, "resolution", -1.0f32)?;
        attr_str(&d, "continuity", "continuous")?;
        let st = g.new_dataset::<f64>().create("starting_time")?;
        st.write_scalar(&t0_s)?;
        attr_scalar(&st, "rate", rate_hz as f32)?;
        attr_str(&st, "unit", "seconds")?;
        Ok(g)
    }
}

fn vlen(s: &str) -> VarLenUnicode {
    // NUL cannot be stored in an HDF5 string; none of our strings contain it.
    s.replace('\0', "").parse().expect("no NUL after replace")
}

fn attr_str(loc: &Location, name: &str, value: &str) -> H5Result<()> {
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&vlen(value))
}

fn attr_strs(loc: &Location, name: &str, values: &[&str]) -> H5Result<()> {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| vlen(s)).collect();
    loc.new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)?
        .write_raw(&v)
}

fn attr_scalar<T: H5Type>(loc: &Location, name: &str, v: T) -> H5Result<()> {
    loc.new_attr::<T>().create(name)?.write_scalar(&v)
}

fn ds_str(g: &Group, name: &str, value: &str) -> H5Result<Dataset> {
    let d = g.new_dataset::<VarLenUnicode>().create(name)?;
    d.write_scalar(&vlen(value))?;
    Ok(d)
}

/// A numeric dataset of `shape` (C order); chunked along the first axis and deflated (level 4)
/// when it has at least [`COMPRESS_MIN_ELEMENTS`] elements.
fn ds_num<T: H5Type>(g: &Group, name: &str, shape: &[usize], v: &[T]) -> H5Result<Dataset> {
    let n: usize = shape.iter().product();
    let b = g.new_dataset::<T>();
    let d = if n >= COMPRESS_MIN_ELEMENTS {
        let row: usize = shape[1..].iter().product::<usize>().max(1);
        let mut chunk = shape.to_vec();
        chunk[0] = (CHUNK_ELEMENTS / row).clamp(1, shape[0]);
        let mut b = b.chunk(chunk);
        b = b.deflate(4);
        b.shape(shape).create(name)?
    } else {
        b.shape(shape).create(name)?
    };
    d.write_raw(v)?;
    Ok(d)
}

/// Name of a per-set series: `base` for a single set, `base_set{b}` otherwise.
fn set_name(base: &str, b: usize, n_sets: usize) -> String {
    if n_sets == 1 {
        base.to_string()
    } else {
        format!("{base}_set{b}")
    }
}

/// NWB unit string of a myodiff unit.
fn nwb_unit(units: &str) -> String {
    match units {
        "N" => "newtons".into(),
        "V" => "volts".into(),
        "S" => "siemens".into(),
        "s" => "seconds".into(),
        other => other.to_string(),
    }
}

/// Writes `run` to `path` as an NWB 2.7 file (module docs). Errors: [`Error::Io`] naming the
/// path (and the NWB object being written) for any HDF5 failure, [`Error::Format`] for an
/// inconsistent run.
pub fn write(path: &Path, run: &SavedRun) -> Result<()> {
    run.check_consistent("saved run")?;
    let p = path.display().to_string();
    let file = File::create(path).map_err(|e| Error::Io {
        path: p.clone(),
        source: std::io::Error::other(format!("creating HDF5 file: {e}")),
    })?;
    let mut w = Nwb {
        file,
        path: p,
        rng: StdRng::seed_from_u64(seed_of(run)),
    };
    write_root(&mut w, run).map_err(|e| w.err("file structure", e))?;
    write_units(&mut w, run).map_err(|e| w.err("/units", e))?;
    write_series(&mut w, run).map_err(|e| w.err("/acquisition", e))?;
    w.file.flush().map_err(|e| w.err("flush", e))?;
    Ok(())
}

/// Object ids are random per file but reproducible for the same run (seeded by its contents'
/// identity: name, start and spec).
fn seed_of(run: &SavedRun) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&run.name, &run.session_start, &run.spec_toml).hash(&mut h);
    h.finish()
}

fn write_root(w: &mut Nwb, run: &SavedRun) -> H5Result<()> {
    let root = w.file.as_group()?;
    attr_str(&root, "nwb_version", NWB_VERSION)?;
    w.typed(&root, "NWBFile", "core")?;
    let start = &run.session_start;
    let d = root
        .new_dataset::<VarLenUnicode>()
        .shape(1)
        .create("file_create_date")?;
    d.write_raw(&[vlen(start)])?;
    ds_str(
        &root,
        "identifier",
        &format!("myodiff-{}-{start}", run.name),
    )?;
    let desc = if run.description.is_empty() {
        format!("myodiff simulation `{}`", run.name)
    } else {
        run.description.clone()
    };
    ds_str(&root, "session_description", &desc)?;
    ds_str(&root, "session_start_time", start)?;
    ds_str(&root, "timestamps_reference_time", start)?;
    for g in ["acquisition", "analysis", "processing", "stimulus"] {
        root.create_group(g)?;
    }
    let stim = root.group("stimulus")?;
    stim.create_group("presentation")?;
    stim.create_group("templates")?;
    let general = root.create_group("general")?;
    ds_str(&general, "experiment_description", &desc)?;
    let src = ds_str(&general, "source_script", &run.spec_toml)?;
    attr_str(&src, "file_name", "experiment.toml")?;
    ds_str(
        &general,
        "data_collection",
        "Simulated with myodiff (differentiable neuromuscular simulator); the experiment spec is general/source_script.",
    )?;
    // The subject is the simulated model, not an animal (nwbinspector requires a subject).
    let subject = general.create_group("subject")?;
    w.typed(&subject, "Subject", "core")?;
    ds_str(&subject, "subject_id", &format!("myodiff-{}", run.name))?;
    ds_str(
        &subject,
        "description",
        "in-silico subject: a simulated human motor-neuron pool and muscle (no animal was used)",
    )?;
    ds_str(&subject, "species", "Homo sapiens")?;
    ds_str(&subject, "sex", "U")?;
    ds_str(&subject, "age", &run.subject_age)?;
    if let Some(l) = &run.electrodes {
        let devices = general.create_group("devices")?;
        let dev = devices.create_group("surface_electrode_grid")?;
        attr_str(
            &dev,
            "description",
            &format!(
                "simulated surface electrode grid `{}`: inter-electrode distance {} m, electrode radius {} m, {} differentiation",
                l.grid, l.ied_m, l.radius_m, l.differentiation
            ),
        )?;
        attr_str(&dev, "manufacturer", "simulated (myodiff)")?;
        w.typed(&dev, "Device", "core")?;
        let ecephys = general.create_group("extracellular_ephys")?;
        let grp = ecephys.create_group("emg_grid")?;
        attr_str(
            &grp,
            "description",
            "surface EMG electrode grid over the simulated muscle",
        )?;
        attr_str(&grp, "location", "skin surface over the muscle")?;
        w.typed(&grp, "ElectrodeGroup", "core")?;
        grp.link_soft("/general/devices/surface_electrode_grid", "device")?;
        let n = l.positions_zx_m.len();
        let tab = ecephys.create_group("electrodes")?;
        attr_str(
            &tab,
            "description",
            "EMG output channels (after spatial differentiation), row-major over the grid",
        )?;
        attr_strs(
            &tab,
            "colnames",
            &[
                "location",
                "group",
                "group_name",
                "grid_row",
                "grid_col",
                "z_m",
                "x_m",
            ],
        )?;
        w.typed(&tab, "DynamicTable", "hdmf-common")?;
        w.ids(&tab, n)?;
        w.column_str(
            &tab,
            "location",
            "location of the channel",
            &vec!["skin surface".into(); n],
        )?;
        let r: ObjectReference1 = w.file.reference("/general/extracellular_ephys/emg_grid")?;
        let gcol = tab
            .new_dataset::<ObjectReference1>()
            .shape(n)
            .create("group")?;
        gcol.write_raw(&vec![r; n])?;
        attr_str(&gcol, "description", "electrode group of the channel")?;
        w.typed(&gcol, "VectorData", "hdmf-common")?;
        w.column_str(
            &tab,
            "group_name",
            "name of the electrode group",
            &vec!["emg_grid".into(); n],
        )?;
        let rows: Vec<i64> = (0..n).map(|i| (i / l.cols) as i64).collect();
        let cols: Vec<i64> = (0..n).map(|i| (i % l.cols) as i64).collect();
        w.column(
            &tab,
            "grid_row",
            "output-grid row (along the fibres)",
            &rows,
        )?;
        w.column(
            &tab,
            "grid_col",
            "output-grid column (across the fibres)",
            &cols,
        )?;
        let z: Vec<f64> = l.positions_zx_m.iter().map(|p| p.0).collect();
        let x: Vec<f64> = l.positions_zx_m.iter().map(|p| p.1).collect();
        w.column(&tab, "z_m", "position along the fibres on the skin (m)", &z)?;
        w.column(
            &tab,
            "x_m",
            "position across the fibres on the skin (m)",
            &x,
        )?;
    }
    Ok(())
}

fn write_units(w: &mut Nwb, run: &SavedRun) -> H5Result<()> {
    let root = w.file.as_group()?;
    let units = root.create_group("units")?;
    attr_str(
        &units,
        "description",
        "simulated motor units: one row per (parameter set, motor unit)",
    )?;
    attr_strs(
        &units,
        "colnames",
        &["spike_times", "motor_unit", "parameter_set"],
    )?;
    w.typed(&units, "Units", "core")?;
    let (mut times, mut index, mut mu, mut set) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (b, r) in run.sets.iter().enumerate() {
        for (u, train) in r.spike_times_s.iter().enumerate() {
            times.extend_from_slice(train);
            index.push(times.len() as u64);
            mu.push(u as i64);
            set.push(b as i64);
        }
    }
    w.ids(&units, index.len())?;
    let st = w.column(&units, "spike_times", "spike times (s)", &times)?;
    attr_scalar(&st, "resolution", run.dt_s())?;
    let idx = ds_num(&units, "spike_times_index", &[index.len()], &index)?;
    attr_str(&idx, "description", "index into spike_times")?;
    let r: ObjectReference1 = w.file.reference("/units/spike_times")?;
    idx.new_attr::<ObjectReference1>()
        .create("target")?
        .write_scalar(&r)?;
    w.typed(&idx, "VectorIndex", "hdmf-common")?;
    w.column(
        &units,
        "motor_unit",
        "index of the motor unit in the pool (recruitment order)",
        &mu,
    )?;
    w.column(
        &units,
        "parameter_set",
        "index of the parameter set (batch row) of the experiment",
        &set,
    )?;
    Ok(())
}

fn write_series(w: &mut Nwb, run: &SavedRun) -> H5Result<()> {
    let acq = w.file.group("acquisition")?;
    let (t0, rate) = (run.t_start_s(), 1.0 / run.dt_s());
    let n_sets = run.sets.len();
    for (b, r) in run.sets.iter().enumerate() {
        if let Some(f) = &r.force_n {
            let data: Vec<f64> = f.iter().copied().collect();
            w.series(
                &acq,
                &set_name("force", b, n_sets),
                "TimeSeries",
                &format!("muscle force, parameter set {b}, one column per pool"),
                "newtons",
                &[f.nrows(), f.ncols()],
                &data,
                t0,
                rate,
            )?;
        }
        if let Some(e) = &r.surface_emg_v {
            let (n_t, rows, cols) = e.dim();
            let data: Vec<f64> = e.iter().copied().collect();
            let g = w.series(
                &acq,
                &set_name("surface_emg", b, n_sets),
                "ElectricalSeries",
                &format!(
                    "surface EMG, parameter set {b}, {rows}×{cols} output grid, channels row-major"
                ),
                "volts",
                &[n_t, rows * cols],
                &data,
                t0,
                rate,
            )?;
            let reg: Vec<i32> = (0..(rows * cols) as i32).collect();
            let d = ds_num(&g, "electrodes", &[reg.len()], &reg)?;
            attr_str(&d, "description", "the EMG channels of this series")?;
            let tref: ObjectReference1 = w
                .file
                .reference("/general/extracellular_ephys/electrodes")?;
            d.new_attr::<ObjectReference1>()
                .create("table")?
                .write_scalar(&tref)?;
            w.typed(&d, "DynamicTableRegion", "hdmf-common")?;
        }
    }
    for e in &run.extra {
        let (_, n_t, width) = e.data.dim();
        for b in 0..n_sets {
            let data: Vec<f64> = e
                .data
                .index_axis(ndarray::Axis(0), b)
                .iter()
                .copied()
                .collect();
            w.series(
                &acq,
                &set_name(&e.name, b, n_sets),
                "TimeSeries",
                &format!("recorded buffer `{}`, parameter set {b}", e.name),
                &nwb_unit(&e.units),
                &[n_t, width],
                &data,
                t0,
                rate,
            )?;
        }
    }
    Ok(())
}
