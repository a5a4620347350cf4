//! Fuzz targets shared by the mutation fuzzer (`examples/fuzz.rs`) and the corpus regression test
//! (`tests/fuzz_corpus.rs`). Each target takes raw bytes and runs the same parse + validate path
//! the CLI runs on a file, without simulating or calibrating anything.
//!
//! Included with `#[path = "../fuzz/targets.rs"] mod targets;` so the library stays free of fuzz
//! code. See RELIABILITY.md.

#![allow(dead_code)]

use std::io::Write;

use myodiff::Error;
use myodiff::experiment::Experiment;
use myodiff::fit::joint::JointSpec;
use myodiff::fit::noise::NoiseCalibrationSpec;
use myodiff::fit::recording::RecordingFitSpec;
use myodiff::fit::reflex::ReflexSpec;
use myodiff::fit::watanabe::WatanabeSpec;
use myodiff::io::{MatFile, Recording};

/// One fuzz target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `MatFile::parse` (the MAT v5 reader).
    Mat,
    /// `MatFile::parse` + `Recording::from_mat` + the recording's accessors (the OTB layout).
    Recording,
    /// `NoiseCalibrationSpec::from_toml_str` (`kind = "noise"`).
    Noise,
    /// `WatanabeSpec::from_toml_str` (`kind = "watanabe"`).
    Watanabe,
    /// `RecordingFitSpec::from_toml_str` (`kind = "recording"`).
    RecordingSpec,
    /// `JointSpec::from_toml_str` (`kind = "joint"`).
    Joint,
    /// `ReflexSpec::from_toml_str` (`kind = "reflex"`, the closed-loop stretch-reflex fit).
    Reflex,
    /// `Experiment::from_toml` (`myodiff simulate`).
    Experiment,
    /// The `myodiff calibrate` front door: the spec header's `kind`, then that kind's parser.
    Calibrate,
}

pub const ALL: [Target; 9] = [
    Target::Mat,
    Target::Recording,
    Target::Noise,
    Target::Watanabe,
    Target::RecordingSpec,
    Target::Joint,
    Target::Reflex,
    Target::Experiment,
    Target::Calibrate,
];

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Mat => "mat",
            Target::Recording => "recording",
            Target::Noise => "noise_spec",
            Target::Watanabe => "watanabe_spec",
            Target::RecordingSpec => "recording_spec",
            Target::Joint => "joint_spec",
            Target::Reflex => "reflex_spec",
            Target::Experiment => "experiment_spec",
            Target::Calibrate => "calibrate_spec",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        ALL.into_iter().find(|t| t.name() == s)
    }

    /// Binary (MAT) input rather than TOML text.
    pub fn is_binary(self) -> bool {
        matches!(self, Target::Mat | Target::Recording)
    }

    /// The calibration `kind` whose specs seed this target (`None`: all / not a calibration).
    pub fn calibration_kind(self) -> Option<&'static str> {
        match self {
            Target::Noise => Some("noise"),
            Target::Watanabe => Some("watanabe"),
            Target::RecordingSpec => Some("recording"),
            Target::Joint => Some("joint"),
            Target::Reflex => Some("reflex"),
            _ => None,
        }
    }

    /// Runs the target on `bytes`. `Ok` carries a short description of what was accepted (its
    /// "shape", used to tell outcomes apart); `Err` is the typed error the CLI would print.
    pub fn run(self, bytes: &[u8]) -> Result<String, Error> {
        match self {
            Target::Mat => {
                let m = MatFile::parse(bytes)?;
                let classes: Vec<&str> = m.variables.iter().map(|v| v.value.class_name()).collect();
                Ok(format!("ok {}", classes.join(",")))
            }
            Target::Recording => recording(bytes),
            _ => {
                // The CLI reads the file with `read_to_string` (invalid UTF-8 is an i/o error);
                // the lossy conversion lets byte mutations still reach the TOML parser.
                let text = String::from_utf8_lossy(bytes);
                toml_target(self, &text)
            }
        }
    }

    /// Whether `e` is an error this target may return: a typed error that names a field, file
    /// or value (never an empty name).
    pub fn check_error(self, e: &Error) -> Result<(), String> {
        let named = |s: &str, what: &str| {
            if s.trim().is_empty() {
                Err(format!("{what} is empty in {e:?}"))
            } else {
                Ok(())
            }
        };
        match e {
            Error::Format { what, detail } => {
                named(what, "Format.what")?;
                named(detail, "Format.detail")
            }
            _ if self == Target::Mat => {
                Err(format!("MAT reader returned a non-Format error {e:?}"))
            }
            Error::InvalidParameter { field, value, .. } => {
                named(field, "InvalidParameter.field")?;
                named(value, "InvalidParameter.value")
            }
            Error::ShapeMismatch { field, .. } => named(field, "ShapeMismatch.field"),
            Error::Config { field, reason } => {
                named(field, "Config.field")?;
                named(reason, "Config.reason")
            }
            Error::UnstableTimeStep { model, reason, .. } if !self.is_binary() => {
                named(model, "UnstableTimeStep.model")?;
                named(reason, "UnstableTimeStep.reason")
            }
            other => Err(format!("unexpected error variant {other:?}")),
        }
    }
}

fn recording(bytes: &[u8]) -> Result<String, Error> {
    let rec = Recording::from_mat(&MatFile::parse(bytes)?)?;
    // Exercise the accessors over the whole recording (the fitting code's entry points).
    let n = rec.n_samples;
    let chans: Vec<usize> = (0..rec.n_emg_channels()).collect();
    rec.emg_window_v(&chans, 0..n).ok();
    rec.force_window_pct_mvc(0..n)?;
    for u in 0..rec.n_units() {
        rec.discharge_samples(u, 0..n)?;
    }
    let dev = rec.development().is_ok();
    Ok(format!(
        "ok emg={} units={} grid={} time={} dev={dev}",
        rec.n_emg_channels().min(3),
        rec.n_units().min(3),
        rec.grid.is_some(),
        rec.time_start_s.is_some()
    ))
}

/// The header `myodiff calibrate` reads first (`calibrate::Header`: `kind`, optional `name`).
#[derive(serde::Deserialize)]
struct Header {
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

fn toml_target(t: Target, text: &str) -> Result<String, Error> {
    match t {
        Target::Noise => NoiseCalibrationSpec::from_toml_str(text).map(|_| "ok".into()),
        Target::Watanabe => WatanabeSpec::from_toml_str(text).map(|_| "ok".into()),
        Target::RecordingSpec => RecordingFitSpec::from_toml_str(text).map(|_| "ok".into()),
        Target::Joint => JointSpec::from_toml_str(text).map(|_| "ok".into()),
        Target::Reflex => ReflexSpec::from_toml_str(text).map(|_| "ok".into()),
        Target::Experiment => Experiment::from_toml(text, "fuzz.toml").map(|_| "ok".into()),
        Target::Calibrate => {
            // calibrate::run_problem_mode: the header, then the kind's own parse + validate
            // (calibrate::dispatch → run_*_calibration → *Spec::load → from_toml_str).
            let header: Header = myodiff::fit::spec::parse_toml(text, "problem spec fuzz.toml")?;
            match header.kind.as_str() {
                "noise" => toml_target(Target::Noise, text),
                "watanabe" => toml_target(Target::Watanabe, text),
                "recording" => toml_target(Target::RecordingSpec, text),
                "joint" => toml_target(Target::Joint, text),
                "reflex" => toml_target(Target::Reflex, text),
                other => Err(Error::invalid(
                    "kind",
                    other,
                    "one of: noise, watanabe, recording, joint, reflex",
                )),
            }
            .map(|s| format!("{} {s}", header.kind))
        }
        Target::Mat | Target::Recording => unreachable!("binary target"),
    }
}

/// A short class of an outcome, for "new outcome" detection: the Ok shape, or the error variant
/// and its field (digits removed from free text so positions do not count as new).
pub fn outcome_class(r: &Result<String, Error>) -> String {
    let squash = |s: &str| -> String {
        let s: String = s
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        let mut out = String::new();
        for c in s.chars() {
            if !(c == '#' && out.ends_with('#')) {
                out.push(c);
            }
        }
        out.chars().take(90).collect()
    };
    match r {
        Ok(s) => s.clone(),
        Err(Error::InvalidParameter { field, .. }) => format!("invalid {}", squash(field)),
        Err(Error::ShapeMismatch { field, .. }) => format!("shape {}", squash(field)),
        Err(Error::Config { field, .. }) => format!("config {}", squash(field)),
        Err(Error::Format { detail, .. }) => {
            // TOML errors: first line after the location header; MAT errors: the detail.
            let line = detail
                .lines()
                .find(|l| {
                    let l = l.trim();
                    !l.is_empty() && !l.starts_with("TOML parse error") && !l.contains('|')
                })
                .unwrap_or(detail);
            format!("format {}", squash(line))
        }
        Err(e) => format!("other {}", squash(&e.to_string())),
    }
}

// ------------------------------------------------------------------------------------------------
// Small MAT v5 writer: valid seed files (both byte orders, optional zlib)

pub struct MatWriter {
    pub be: bool,
}

impl MatWriter {
    fn u32(&self, x: u32) -> [u8; 4] {
        if self.be {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }
    /// Data element; 1–4 byte payloads use the packed small-element form.
    pub fn el(&self, typ: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        if !data.is_empty() && data.len() <= 4 {
            v.extend(self.u32(((data.len() as u32) << 16) | typ));
            v.extend(data);
            v.resize(8, 0);
        } else {
            v.extend(self.u32(typ));
            v.extend(self.u32(data.len() as u32));
            v.extend(data);
            while !v.len().is_multiple_of(8) {
                v.push(0);
            }
        }
        v
    }
    pub fn matrix(&self, class: u8, flags: u32, dims: &[u32], name: &str, body: &[u8]) -> Vec<u8> {
        let mut p = self.el(6, &[self.u32(class as u32 | flags), [0; 4]].concat());
        let d: Vec<u8> = dims.iter().flat_map(|&x| self.u32(x)).collect();
        p.extend(self.el(5, &d));
        p.extend(self.el(1, name.as_bytes()));
        p.extend(body);
        self.el(14, &p)
    }
    fn bytes_of<const N: usize>(&self, xs: impl Iterator<Item = ([u8; N], [u8; N])>) -> Vec<u8> {
        xs.flat_map(|(le, be)| if self.be { be } else { le })
            .collect()
    }
    pub fn f64s(&self, xs: &[f64]) -> Vec<u8> {
        let b = self.bytes_of(xs.iter().map(|x| (x.to_le_bytes(), x.to_be_bytes())));
        self.el(9, &b)
    }
    pub fn f32s(&self, xs: &[f32]) -> Vec<u8> {
        let b = self.bytes_of(xs.iter().map(|x| (x.to_le_bytes(), x.to_be_bytes())));
        self.el(7, &b)
    }
    pub fn u16s(&self, typ: u32, xs: &[u16]) -> Vec<u8> {
        let b = self.bytes_of(xs.iter().map(|x| (x.to_le_bytes(), x.to_be_bytes())));
        self.el(typ, &b)
    }
    pub fn compressed(&self, element: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(element).expect("zlib into a Vec");
        let z = enc.finish().expect("zlib into a Vec");
        let mut v = self.u32(15).to_vec();
        v.extend(self.u32(z.len() as u32));
        v.extend(z); // no padding after miCOMPRESSED
        v
    }
    pub fn header(&self) -> Vec<u8> {
        let mut v = format!(
            "MATLAB 5.0 MAT-file, written by myodiff fuzz, be={}",
            self.be
        )
        .into_bytes();
        v.resize(116, b' ');
        v.extend([0u8; 8]);
        v.extend(if self.be { [1, 0] } else { [0, 1] });
        v.extend(if self.be { *b"MI" } else { *b"IM" });
        v
    }
    pub fn file(&self, elements: &[Vec<u8>], compress: bool) -> Vec<u8> {
        let mut v = self.header();
        for e in elements {
            if compress {
                v.extend(self.compressed(e));
            } else {
                v.extend(e);
            }
        }
        v
    }
    pub fn char_utf8(&self, name: &str, s: &str) -> Vec<u8> {
        let n = s.chars().count() as u32;
        self.matrix(4, 0, &[1, n], name, &self.el(16, s.as_bytes()))
    }
    pub fn char_utf16(&self, name: &str, dims: &[u32], s: &str) -> Vec<u8> {
        let units: Vec<u16> = s.encode_utf16().collect();
        self.matrix(4, 0, dims, name, &self.u16s(4, &units))
    }

    /// Every feature the reader supports: stored-as types, cells, structs, complex, char
    /// matrices, logical, sparse (unsupported), empty.
    pub fn feature_elements(&self) -> Vec<Vec<u8>> {
        let fs = self.matrix(6, 0, &[1, 1], "fs", &self.u16s(4, &[2048]));
        let x = self.matrix(
            7,
            0,
            &[3, 2],
            "x",
            &self.f32s(&[1.5, -2.0, 3.25, 4.0, 5.0, -6.5]),
        );
        let i16_as_i8 = self.matrix(10, 0, &[2, 2], "", &self.el(1, &[1, 255, 3, 4]));
        let cell_body = [
            self.char_utf8("", "héllo"),
            self.char_utf16("", &[1, 3], "µV²"),
            i16_as_i8,
            self.el(14, &[]),
        ]
        .concat();
        let cell = self.matrix(1, 0, &[1, 4], "c", &cell_body);
        let z = self.matrix(
            6,
            0x0800,
            &[1, 2],
            "z",
            &[self.f64s(&[1.0, 2.0]), self.f64s(&[3.0, -4.0])].concat(),
        );
        let names = b"a\0\0\0\0\0\0\0bb\0\0\0\0\0\0".to_vec();
        let s_body = [
            self.el(5, &self.u32(8)),
            self.el(1, &names),
            self.matrix(6, 0, &[1, 1], "", &self.f64s(&[3.5])),
            self.matrix(4, 0, &[1, 2], "", &self.el(2, b"ok")),
        ]
        .concat();
        let s = self.matrix(2, 0, &[1, 1], "s", &s_body);
        let m = self.char_utf16("m", &[2, 3], "adbecf");
        let b = self.matrix(9, 0x0200, &[1, 3], "b", &self.el(2, &[1, 0, 1]));
        let sparse = self.matrix(5, 0, &[4, 4], "sp", &self.el(5, &self.u32(0)));
        let u32s = self.matrix(13, 0, &[1, 1], "u", &self.el(18, &self.u32(0x1F600)));
        let i64s = self.matrix(14, 0, &[1, 1], "i", &self.el(12, &[0xff; 8]));
        vec![fs, x, cell, z, s, m, b, sparse, u32s, i64s]
    }

    /// An OTBioLab+/openhdemg-layout recording of `n` samples: 2 EMG channels (µV, mV), one
    /// discharge train and its pulse train, force (%MVC), optional `Time`.
    pub fn otb_like(&self, n: u32, fs_hz: u16, with_time: bool) -> Vec<Vec<u8>> {
        let labels = [
            "Muscle - GR08MM1305 (1)[uV]",
            "Muscle - GR08MM1305 (2)[mV]",
            "Decomposition of Muscle (1)[a.u]",
            "Source for decomposition of Muscle (1)[a.u]",
            "acquired data[ %(MVC)]",
        ];
        let mut cols: Vec<f32> = Vec::new();
        cols.extend((0..n).map(|i| i as f32 * 0.5 - 1.0));
        cols.extend((0..n).map(|i| -(i as f32)));
        cols.extend((0..n).map(|i| (i % 3 == 1) as u8 as f32));
        cols.extend((0..n).map(|i| 0.1 * i as f32));
        cols.extend((0..n).map(|i| 20.0 + i as f32));
        let data = self.matrix(7, 0, &[n, 5], "", &self.f32s(&cols));
        let desc: Vec<u8> = labels.iter().flat_map(|l| self.char_utf8("", l)).collect();
        let mut v = vec![
            self.matrix(1, 0, &[1, 1], "Data", &data),
            self.matrix(1, 0, &[labels.len() as u32, 1], "Description", &desc),
            self.matrix(6, 0, &[1, 1], "SamplingFrequency", &self.u16s(4, &[fs_hz])),
        ];
        if with_time {
            let t: Vec<f64> = (0..n).map(|i| 7.0 + i as f64 / fs_hz as f64).collect();
            let time = self.matrix(6, 0, &[n, 1], "", &self.f64s(&t));
            v.push(self.matrix(1, 0, &[1, 1], "Time", &time));
        }
        v
    }
}

/// Seed inputs of the binary targets, generated (no file needed).
pub fn generated_mat_seeds(t: Target) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for be in [false, true] {
        let w = MatWriter { be };
        for z in [false, true] {
            let tag = format!(
                "{}{}",
                if be { "be" } else { "le" },
                if z { "z" } else { "" }
            );
            match t {
                Target::Mat => {
                    out.push((format!("features-{tag}"), w.file(&w.feature_elements(), z)))
                }
                _ => {
                    out.push((
                        format!("otb6-{tag}"),
                        w.file(&w.otb_like(6, 1000, false), z),
                    ));
                    out.push((
                        format!("otb9t-{tag}"),
                        w.file(&w.otb_like(9, 2048, true), z),
                    ));
                }
            }
        }
    }
    out
}

/// The small top-level variables (< 64 KiB) of a real MAT file behind its header: real MATLAB/OTB
/// encodings (e.g. the recording's `Description` and `SamplingFrequency`).
pub fn small_variables_of(real: &[u8]) -> Option<Vec<u8>> {
    if real.len() < 128 || &real[126..128] != b"IM" {
        return None;
    }
    let mut out = real[..128].to_vec();
    let mut pos = 128;
    while pos + 8 <= real.len() {
        let typ = u32::from_le_bytes(real[pos..pos + 4].try_into().ok()?);
        let n = u32::from_le_bytes(real[pos + 4..pos + 8].try_into().ok()?) as usize;
        let end = pos + 8 + n;
        let next = if typ == 15 { end } else { end.div_ceil(8) * 8 };
        if end > real.len() {
            break;
        }
        if n < 64 * 1024 {
            out.extend(&real[pos..next.min(real.len())]);
        }
        pos = next;
    }
    Some(out)
}
