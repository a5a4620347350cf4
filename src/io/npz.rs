//! NPZ export and import of a [`SavedRun`] (`numpy.load`-readable).
//!
//! An NPZ file is a zip archive of NPY arrays (format 1.0: magic `\x93NUMPY`, a Python-dict
//! header `{'descr': '<f8', 'fortran_order': False, 'shape': (…), }` padded to 64 bytes, then the
//! little-endian C-order data). Arrays are deflated (as `numpy.savez_compressed`). The zip
//! container is the `zip` crate; the NPY header is written and parsed here (≈60 lines) because
//! `ndarray-npy` pulls a Python-literal parser whose `num-integer/i128` feature would rebuild
//! ndarray and burn for every developer (BENCHMARKS.md §8).
//!
//! Keys (SI units in the names; `S` = number of parameter sets, `T` = steps):
//! - `dt_s`, `t_start_s` (f8 scalars), `n_units`, `n_sets`, `n_steps` (i8 scalars);
//! - `spike_times_s`, `spike_unit`, `spike_set` (flat, one entry per spike, sorted by set, unit,
//!   time): `spike_times_s[(spike_set == b) & (spike_unit == u)]` is unit `u`'s train in set `b`;
//! - `force_n` `[S, T, n_pools]` (N), if recorded;
//! - `surface_emg_v` `[S, T, rows, cols]` (V), `grid_shape` `[2]`, `electrode_zx_m`
//!   `[rows·cols, 2]` (m), if recorded;
//! - every extra trace under its buffer name, `[S, T, width]`;
//! - `spec_toml` (the experiment spec) and `meta_json` (name, description, session start, units
//!   of every trace, electrode grid) as unicode scalars (`str(npz["spec_toml"])`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use ndarray::{Array2, Array3};
use serde::{Deserialize, Serialize};

use super::saved::{ElectrodeLayout, ExtraTrace, SavedRun};
use crate::error::{Error, Result};
use crate::kernel::SimResult;

/// Element data of one NPY array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `<f8`.
    F64(Vec<f64>),
    /// `<i8`.
    I64(Vec<i64>),
    /// `<U{n}` scalar (UTF-32LE).
    Str(String),
}

/// One NPY array: shape and data (C order).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Shape (empty = scalar).
    pub shape: Vec<usize>,
    /// Values.
    pub data: NpyData,
}

impl NpyArray {
    fn f64(shape: Vec<usize>, v: Vec<f64>) -> Self {
        Self {
            shape,
            data: NpyData::F64(v),
        }
    }
    fn i64(shape: Vec<usize>, v: Vec<i64>) -> Self {
        Self {
            shape,
            data: NpyData::I64(v),
        }
    }
    fn str(s: &str) -> Self {
        Self {
            shape: vec![],
            data: NpyData::Str(s.to_string()),
        }
    }

    /// The NPY 1.0 bytes of this array.
    pub fn to_npy(&self) -> Vec<u8> {
        let (descr, body): (String, Vec<u8>) = match &self.data {
            NpyData::F64(v) => (
                "<f8".into(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            NpyData::I64(v) => (
                "<i8".into(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            NpyData::Str(s) => {
                let n = s.chars().count().max(1);
                let mut b: Vec<u8> = s.chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
                b.resize(4 * n, 0);
                (format!("<U{n}"), b)
            }
        };
        let shape = match self.shape.len() {
            0 => "()".to_string(),
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + body.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses NPY 1.0/2.0 bytes with descr `<f8`, `<i8` or `<U{n}` (C order). `what` names the
    /// array in [`Error::Format`].
    pub fn from_npy(bytes: &[u8], what: &str) -> Result<Self> {
        let bad = |d: &str| Error::format(format!("NPY array {what}"), d.to_string());
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(bad("no NPY magic"));
        }
        let (hlen, off) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            _ => return Err(bad("unsupported NPY version")),
        };
        let header = bytes
            .get(off..off + hlen)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| bad("truncated header"))?;
        let field = |key: &str| -> Option<&str> {
            let i = header.find(&format!("'{key}':"))? + key.len() + 3;
            Some(header[i..].trim_start())
        };
        let descr = field("descr")
            .and_then(|s| s.strip_prefix('\''))
            .and_then(|s| s.split('\'').next())
            .ok_or_else(|| bad("no descr"))?;
        if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
            return Err(bad("Fortran order is not supported"));
        }
        let shape_s = field("shape")
            .and_then(|s| s.strip_prefix('('))
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| bad("no shape"))?;
        let shape = shape_s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
            .collect::<Result<Vec<_>>>()?;
        let n: usize = shape.iter().product();
        let body = &bytes[off + hlen..];
        let take = |size: usize| -> Result<&[u8]> {
            body.get(..n * size).ok_or_else(|| bad("truncated data"))
        };
        let data = match descr {
            "<f8" => NpyData::F64(
                take(8)?
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            "<i8" => NpyData::I64(
                take(8)?
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            d if d.starts_with("<U") && n == 1 => {
                let len: usize = d[2..].parse().map_err(|_| bad("bad <U length"))?;
                let s: String = take(4 * len)?
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .take_while(|&c| c != 0)
                    .map(|c| char::from_u32(c).ok_or_else(|| bad("invalid UTF-32")))
                    .collect::<Result<_>>()?;
                NpyData::Str(s)
            }
            other => return Err(bad(&format!("unsupported dtype {other}"))),
        };
        Ok(Self { shape, data })
    }
}

/// Metadata stored as `meta_json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    name: String,
    description: String,
    session_start: String,
    subject_age: String,
    /// Unit of every extra trace, by name.
    units: BTreeMap<String, String>,
    /// Extra traces in saved order.
    extra: Vec<String>,
    electrodes: Option<ElectrodeMeta>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ElectrodeMeta {
    differentiation: String,
    ied_m: f64,
    radius_m: f64,
    grid: String,
}

/// The arrays of `run` by key (module docs).
pub fn arrays(run: &SavedRun) -> Result<Vec<(String, NpyArray)>> {
    run.check_consistent("saved run")?;
    let s = run.sets.len();
    let t = run.n_steps;
    let mut out = vec![
        ("dt_s".to_string(), NpyArray::f64(vec![], vec![run.dt_s()])),
        (
            "t_start_s".into(),
            NpyArray::f64(vec![], vec![run.t_start_s()]),
        ),
        (
            "n_units".into(),
            NpyArray::i64(vec![], vec![run.n_units() as i64]),
        ),
        ("n_sets".into(), NpyArray::i64(vec![], vec![s as i64])),
        ("n_steps".into(), NpyArray::i64(vec![], vec![t as i64])),
    ];
    let (mut times, mut unit, mut set) = (Vec::new(), Vec::new(), Vec::new());
    for (b, r) in run.sets.iter().enumerate() {
        for (u, train) in r.spike_times_s.iter().enumerate() {
            times.extend_from_slice(train);
            unit.extend(std::iter::repeat_n(u as i64, train.len()));
            set.extend(std::iter::repeat_n(b as i64, train.len()));
        }
    }
    let n_sp = times.len();
    out.push(("spike_times_s".into(), NpyArray::f64(vec![n_sp], times)));
    out.push(("spike_unit".into(), NpyArray::i64(vec![n_sp], unit)));
    out.push(("spike_set".into(), NpyArray::i64(vec![n_sp], set)));
    if let Some(f0) = &run.sets[0].force_n {
        let p = f0.ncols();
        let v: Vec<f64> = run
            .sets
            .iter()
            .flat_map(|r| r.force_n.as_ref().expect("consistent").iter().copied())
            .collect();
        out.push(("force_n".into(), NpyArray::f64(vec![s, t, p], v)));
    }
    if let (Some(e0), Some((rows, cols))) = (&run.sets[0].surface_emg_v, run.sets[0].grid_shape) {
        let _ = e0;
        let v: Vec<f64> = run
            .sets
            .iter()
            .flat_map(|r| {
                r.surface_emg_v
                    .as_ref()
                    .expect("consistent")
                    .iter()
                    .copied()
            })
            .collect();
        out.push((
            "surface_emg_v".into(),
            NpyArray::f64(vec![s, t, rows, cols], v),
        ));
        out.push((
            "grid_shape".into(),
            NpyArray::i64(vec![2], vec![rows as i64, cols as i64]),
        ));
        if let Some(l) = &run.electrodes {
            let zx: Vec<f64> = l.positions_zx_m.iter().flat_map(|&(z, x)| [z, x]).collect();
            out.push((
                "electrode_zx_m".into(),
                NpyArray::f64(vec![l.positions_zx_m.len(), 2], zx),
            ));
        }
    }
    for e in &run.extra {
        let sh = e.data.shape().to_vec();
        out.push((
            e.name.clone(),
            NpyArray::f64(sh, e.data.iter().copied().collect()),
        ));
    }
    let meta = Meta {
        name: run.name.clone(),
        description: run.description.clone(),
        session_start: run.session_start.clone(),
        subject_age: run.subject_age.clone(),
        units: run
            .extra
            .iter()
            .map(|e| (e.name.clone(), e.units.clone()))
            .collect(),
        extra: run.extra.iter().map(|e| e.name.clone()).collect(),
        electrodes: run.electrodes.as_ref().map(|l| ElectrodeMeta {
            differentiation: l.differentiation.clone(),
            ied_m: l.ied_m,
            radius_m: l.radius_m,
            grid: l.grid.clone(),
        }),
    };
    let meta =
        serde_json::to_string(&meta).map_err(|e| Error::format("meta_json", e.to_string()))?;
    out.push(("spec_toml".into(), NpyArray::str(&run.spec_toml)));
    out.push(("meta_json".into(), NpyArray::str(&meta)));
    Ok(out)
}

/// Writes `run` to `path` as a deflated NPZ ([`Error::Io`] naming the path).
pub fn write(path: &Path, run: &SavedRun) -> Result<()> {
    let io_err = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let arrays = arrays(run)?;
    let file = std::fs::File::create(path).map_err(io_err)?;
    write_to(std::io::BufWriter::new(file), &arrays).map_err(io_err)
}

fn write_to<W: Write + Seek>(w: W, arrays: &[(String, NpyArray)]) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new(w);
    for (name, a) in arrays {
        let bytes = a.to_npy();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(bytes.len() as u64 >= u32::MAX as u64);
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(std::io::Error::other)?;
        zip.write_all(&bytes)?;
    }
    zip.finish().map_err(std::io::Error::other)?.flush()
}

/// Reads every array of an NPZ file by key ([`Error::Io`] / [`Error::Format`] naming the path).
pub fn read_arrays(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    let what = format!("NPZ file {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    read_from(std::io::BufReader::new(file), &what)
}

fn read_from<R: Read + Seek>(r: R, what: &str) -> Result<BTreeMap<String, NpyArray>> {
    let fmt = |e: &dyn std::fmt::Display| Error::format(what, e.to_string());
    let mut zip = zip::ZipArchive::new(r).map_err(|e| fmt(&e))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| fmt(&e))?;
        let name = f.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| fmt(&e))?;
        out.insert(name.clone(), NpyArray::from_npy(&bytes, &name)?);
    }
    Ok(out)
}

/// Reads a run written by [`write`](fn@write) back ([`Error::Format`] naming the path and the missing or
/// malformed key).
pub fn read(path: &Path) -> Result<SavedRun> {
    let what = format!("NPZ file {}", path.display());
    let a = read_arrays(path)?;
    let bad = |d: String| Error::format(what.clone(), d);
    let get = |k: &str| a.get(k).ok_or_else(|| bad(format!("missing key `{k}`")));
    let f64s = |k: &str| match &get(k)?.data {
        NpyData::F64(v) => Ok(v.clone()),
        _ => Err(bad(format!("`{k}` is not float64"))),
    };
    let i64s = |k: &str| match &get(k)?.data {
        NpyData::I64(v) => Ok(v.clone()),
        _ => Err(bad(format!("`{k}` is not int64"))),
    };
    let string = |k: &str| match &get(k)?.data {
        NpyData::Str(s) => Ok(s.clone()),
        _ => Err(bad(format!("`{k}` is not a string"))),
    };
    let scalar_i = |k: &str| -> Result<usize> {
        i64s(k)?
            .first()
            .and_then(|&v| usize::try_from(v).ok())
            .ok_or_else(|| bad(format!("`{k}` is not a non-negative scalar")))
    };
    let dt_s = *f64s("dt_s")?
        .first()
        .ok_or_else(|| bad("empty `dt_s`".into()))?;
    let t_start_s = *f64s("t_start_s")?
        .first()
        .ok_or_else(|| bad("empty `t_start_s`".into()))?;
    let (n_units, n_sets, n_steps) = (
        scalar_i("n_units")?,
        scalar_i("n_sets")?,
        scalar_i("n_steps")?,
    );
    let meta: Meta = serde_json::from_str(&string("meta_json")?)
        .map_err(|e| bad(format!("`meta_json`: {e}")))?;
    let mut sets: Vec<SimResult> = (0..n_sets)
        .map(|_| SimResult {
            spike_times_s: vec![Vec::new(); n_units],
            force_n: None,
            surface_emg_v: None,
            dt_s,
            t_start_s,
            n_units,
            grid_shape: None,
        })
        .collect();
    let (times, unit, set) = (
        f64s("spike_times_s")?,
        i64s("spike_unit")?,
        i64s("spike_set")?,
    );
    if unit.len() != times.len() || set.len() != times.len() {
        return Err(bad(
            "spike_times_s / spike_unit / spike_set lengths differ".into()
        ));
    }
    for ((t, u), b) in times.iter().zip(&unit).zip(&set) {
        let slot = usize::try_from(*b)
            .ok()
            .zip(usize::try_from(*u).ok())
            .and_then(|(b, u)| sets.get_mut(b)?.spike_times_s.get_mut(u));
        slot.ok_or_else(|| bad(format!("spike of unit {u} in set {b} out of range")))?
            .push(*t);
    }
    let shaped = |k: &str, rank: usize| -> Result<(Vec<usize>, Vec<f64>)> {
        let arr = get(k)?;
        if arr.shape.len() != rank || arr.shape[0] != n_sets || arr.shape[1] != n_steps {
            return Err(bad(format!(
                "`{k}` has shape {:?}, expected [{n_sets}, {n_steps}, …] of rank {rank}",
                arr.shape
            )));
        }
        Ok((arr.shape.clone(), f64s(k)?))
    };
    if a.contains_key("force_n") {
        let (sh, v) = shaped("force_n", 3)?;
        for (b, chunk) in v.chunks(sh[1] * sh[2]).enumerate() {
            sets[b].force_n = Some(
                Array2::from_shape_vec((sh[1], sh[2]), chunk.to_vec()).expect("shape checked"),
            );
        }
    }
    let mut electrodes = None;
    if a.contains_key("surface_emg_v") {
        let (sh, v) = shaped("surface_emg_v", 4)?;
        for (b, chunk) in v.chunks(sh[1] * sh[2] * sh[3]).enumerate() {
            sets[b].surface_emg_v = Some(
                ndarray::Array3::from_shape_vec((sh[1], sh[2], sh[3]), chunk.to_vec())
                    .expect("shape checked"),
            );
            sets[b].grid_shape = Some((sh[2], sh[3]));
        }
        if let (Some(m), Ok(zx)) = (&meta.electrodes, f64s("electrode_zx_m")) {
            electrodes = Some(ElectrodeLayout {
                rows: sh[2],
                cols: sh[3],
                positions_zx_m: zx.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
                differentiation: m.differentiation.clone(),
                ied_m: m.ied_m,
                radius_m: m.radius_m,
                grid: m.grid.clone(),
            });
        }
    }
    let mut extra = Vec::new();
    for name in &meta.extra {
        let (sh, v) = shaped(name, 3)?;
        extra.push(ExtraTrace {
            name: name.clone(),
            units: meta.units.get(name).cloned().unwrap_or_default(),
            data: Array3::from_shape_vec((sh[0], sh[1], sh[2]), v).expect("shape checked"),
        });
    }
    let run = SavedRun {
        name: meta.name,
        description: meta.description,
        spec_toml: string("spec_toml")?,
        session_start: meta.session_start,
        subject_age: meta.subject_age,
        n_steps,
        sets,
        extra,
        electrodes,
    };
    run.check_consistent(&what)?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip_and_header_alignment() {
        for a in [
            NpyArray::f64(
                vec![2, 3],
                vec![1.0, -2.5, 3.0, 4.0, 5.0, f64::MIN_POSITIVE],
            ),
            NpyArray::i64(vec![3], vec![-1, 0, i64::MAX]),
            NpyArray::f64(vec![], vec![0.125]),
            NpyArray::str("spec: µ = 1 → ok"),
        ] {
            let b = a.to_npy();
            let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0, "header not 64-byte aligned");
            assert_eq!(NpyArray::from_npy(&b, "x").unwrap(), a);
        }
        assert!(NpyArray::from_npy(b"not npy", "x").is_err());
    }
}
