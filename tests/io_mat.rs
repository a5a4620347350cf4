//! MAT v5 reader and recording layout: known values of the real recording (DATA.md), the
//! development-block selectors, the electrode grid, and robustness of the parser against truncated
//! and mutated files (a tiny MAT v5 writer below builds the valid seed files).
//!
//! Tests that need the real recording read it from `default_data_path()`; when it is missing they
//! fail with a message to run `calibration/fetch-data.sh` (CI runs that script first).

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use myodiff::Error;
use myodiff::io::recording::{
    DEV_BAD_CHANNELS, DEV_SAMPLES, PLATEAU_WINDOW, RAMP_WINDOW, REST_WINDOW, Segment,
};
use myodiff::io::{
    ElectrodeGrid, MatFile, MatValue, NumericClass, Recording, default_data_path,
    development_channels,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ------------------------------------------------------------------------------------------------
// Real recording

fn real_path() -> PathBuf {
    let p = default_data_path();
    assert!(
        p.exists(),
        "the test recording {} is missing: run `calibration/fetch-data.sh` from the crate root \
         (downloads openhdemg 0.1.2 from PyPI and verifies the sha256)",
        p.display()
    );
    p
}

fn load_real() -> Recording {
    Recording::load(real_path()).expect("load the test recording")
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn sd(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64).sqrt()
}

fn corr(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn real_file_known_values() {
    let mat = MatFile::read(real_path()).unwrap();
    assert!(mat.header_text.starts_with("MATLAB 5.0 MAT-file"));
    let names: Vec<&str> = mat.variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Data",
            "Description",
            "OTBFile",
            "SamplingFrequency",
            "Time"
        ]
    );

    // double 1x1 stored as uint16
    match mat.require("SamplingFrequency").unwrap() {
        MatValue::Numeric {
            class, dims, real, ..
        } => {
            assert_eq!(*class, NumericClass::Double);
            assert_eq!(dims, &[1, 1]);
            assert_eq!(real, &[2048.0]);
        }
        other => panic!("SamplingFrequency is {other:?}"),
    }
    assert_eq!(mat.require("OTBFile").unwrap().as_str(), Some("unknown"));
    let labels = mat.require("Description").unwrap().cell_items().unwrap();
    assert_eq!(labels.len(), 75);
    assert_eq!(labels[74].as_str(), Some("acquired data[ %(MVC)]"));

    let data = mat.require("Data").unwrap().unwrap_cell();
    let MatValue::Single { dims, real, imag } = data else {
        panic!("Data is {}", data.class_name())
    };
    assert_eq!(dims, &[66560, 75]);
    assert!(imag.is_none());
    let at = |i: usize, j: usize| real[i + 66560 * j] as f64;
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-6 * want.abs().max(1.0);
    assert!(close(at(0, 0), 10.172526), "Data[0,0] = {}", at(0, 0));
    assert!(close(at(1, 0), 14.750163), "Data[1,0] = {}", at(1, 0));
    assert!(close(at(0, 74), 1.6405337), "Data[0,74] = {}", at(0, 74));
    assert!(
        close(at(66559, 74), 1.4818423),
        "Data[66559,74] = {}",
        at(66559, 74)
    );
    let col74: Vec<f64> = (0..66560).map(|i| at(i, 74)).collect();
    assert!(
        (mean(&col74) - 20.3489).abs() < 5e-4,
        "mean col 74 = {}",
        mean(&col74)
    );
    assert_eq!((0..66560).filter(|&i| at(i, 64) == 1.0).count(), 137);

    let time = mat
        .require("Time")
        .unwrap()
        .unwrap_cell()
        .to_f64_vec()
        .unwrap();
    assert_eq!(time.len(), 66560);
    for n in [0, 1, 2047, 66559] {
        assert!(
            (time[n] - (7.0 + n as f64 / 2048.0)).abs() < 1e-9,
            "Time[{n}]"
        );
    }
}

#[test]
fn recording_layout_and_units() {
    let rec = load_real();
    assert_eq!(rec.fs_hz, 2048.0);
    assert_eq!(rec.n_samples, 66560);
    assert_eq!(rec.labels.len(), 75);
    assert_eq!(rec.n_emg_channels(), 64);
    assert_eq!(rec.emg_columns, (0..64).collect::<Vec<_>>());
    assert_eq!(rec.n_units(), 5);
    assert_eq!(rec.pulse_trains.len(), 5);
    assert_eq!(rec.force_pct_mvc.len(), 66560);
    assert_eq!(rec.time_start_s, Some(7.0));
    assert!((rec.duration_s() - 32.5).abs() < 1e-12);
    // µV -> V
    assert!((rec.emg_v[0][0] as f64 - 10.172526e-6).abs() < 1e-12);
    assert!((rec.emg_v[0][1] as f64 - 14.750163e-6).abs() < 1e-12);
    assert!((rec.force_pct_mvc[0] - 1.6405337).abs() < 1e-6);
    let ones: usize = rec.discharge_trains[0].iter().map(|&b| b as usize).sum();
    assert_eq!(ones, 137);
    assert_eq!(
        rec.discharge_samples(0, 0..rec.n_samples).unwrap().len(),
        137
    );
    assert_eq!(
        rec.grid.as_ref().map(|g| g.code.as_str()),
        Some("GR08MM1305")
    );
}

#[test]
fn development_block_force_and_rates() {
    let rec = load_real();
    let dev = rec.development().unwrap();
    assert_eq!(dev.channels().len(), 30);
    assert!(!dev.channels().iter().any(|c| DEV_BAD_CHANNELS.contains(c)));

    // DATA.md: plateau force 26.00 ± 0.38 %MVC.
    let f = dev.force_pct_mvc(PLATEAU_WINDOW).unwrap();
    assert_eq!(f.len(), PLATEAU_WINDOW.len());
    assert!((mean(f) - 26.00).abs() < 0.01, "plateau mean {}", mean(f));
    assert!((sd(f) - 0.38).abs() < 0.01, "plateau SD {}", sd(f));
    // Baseline ≈1.7 %MVC at rest, well below the plateau; ramp rises.
    let rest = dev.force_pct_mvc(REST_WINDOW).unwrap();
    assert!((mean(rest) - 1.7).abs() < 0.3, "rest force {}", mean(rest));
    let ramp = dev.force_pct_mvc(RAMP_WINDOW).unwrap();
    assert!(ramp[ramp.len() - 1] - ramp[0] > 15.0);

    // DATA.md plateau mean rates (units 65–68; unit 64 is unreliable).
    for (unit, want) in [(1, 7.0), (2, 8.5), (3, 11.4), (4, 11.0)] {
        let r = dev.mean_rate_hz(unit, PLATEAU_WINDOW).unwrap();
        assert!((r - want).abs() < 0.15, "unit {unit}: {r} Hz vs {want}");
    }

    // Rest EMG near its noise floor (≈12–13 µV RMS); the bad channels are the two loudest.
    let all_first32: Vec<usize> = (0..32).collect();
    let emg = rec.emg_window_v(&all_first32, REST_WINDOW).unwrap();
    let rms: Vec<f64> = emg.iter().map(|x| sd(x) * 1e6).collect();
    let mut order: Vec<usize> = (0..32).collect();
    order.sort_by(|&a, &b| rms[b].total_cmp(&rms[a]));
    let mut loudest = order[..2].to_vec();
    loudest.sort();
    assert_eq!(loudest, DEV_BAD_CHANNELS.to_vec(), "rest RMS µV {rms:?}");
    let dev_rest = dev.segment_emg_v(Segment::Rest).unwrap();
    let mut dev_rms: Vec<f64> = dev_rest.iter().map(|x| sd(x) * 1e6).collect();
    dev_rms.sort_by(f64::total_cmp);
    let median = dev_rms[dev_rms.len() / 2];
    assert!(
        (11.0..15.0).contains(&median),
        "median rest RMS {median} µV"
    );
}

fn is_invalid(r: Result<impl std::fmt::Debug, Error>, field: &str) {
    match r {
        Err(Error::InvalidParameter { field: f, .. }) if f.contains(field) => {}
        other => panic!("expected InvalidParameter naming `{field}`, got {other:?}"),
    }
}

#[test]
fn development_block_rejects_reserved_and_bad_selections() {
    let rec = load_real();
    let dev = rec.development().unwrap();
    // windows reaching into the evaluation samples, empty and reversed windows
    is_invalid(dev.emg_v(33_000..33_281), "window");
    is_invalid(dev.emg_v(40_000..40_100), "window");
    is_invalid(dev.force_pct_mvc(0..DEV_SAMPLES.end + 1), "window");
    is_invalid(dev.discharge_samples(1, 50_000..50_010), "window");
    is_invalid(dev.emg_v(10..10), "window");
    #[allow(clippy::reversed_empty_ranges)]
    is_invalid(dev.emg_v(20..10), "window");
    // channels: empty, bad, reserved for evaluation
    is_invalid(dev.clone().with_channels(&[]), "channels");
    for ch in [17, 30, 32, 63, 64] {
        is_invalid(dev.clone().with_channels(&[0, ch]), "channels");
    }
    let sub = dev.clone().with_channels(&[0, 5]).unwrap();
    let x = sub.emg_v(REST_WINDOW).unwrap();
    assert_eq!((x.len(), x[0].len()), (2, REST_WINDOW.len()));
    assert_eq!(x[1][3], rec.emg_v[5][3] as f64);
    is_invalid(dev.discharge_samples(5, REST_WINDOW), "unit");
    // whole-recording selectors
    is_invalid(rec.emg_window_v(&[], 0..10), "channels");
    is_invalid(rec.emg_window_v(&[64], 0..10), "channel");
    is_invalid(rec.emg_window_v(&[0], 0..rec.n_samples + 1), "window");
    is_invalid(rec.force_window_pct_mvc(5..5), "window");
    // a recording at another rate or too short cannot provide the development block
    let mut other = rec.clone();
    other.fs_hz = 1000.0;
    is_invalid(other.development(), "fs_hz");
    let mut short = rec.clone();
    short.n_samples = 30_000;
    is_invalid(short.development(), "n_samples");
}

#[test]
fn grid_gr08mm1305_geometry() {
    let g = ElectrodeGrid::gr08mm1305();
    assert_eq!((g.rows, g.cols, g.n_channels()), (13, 5, 64));
    assert_eq!(g.ied_m, 0.008);
    // serpentine, 1-based channel c = index + 1
    let expect = [
        (0, (1, 0)),
        (11, (12, 0)),
        (12, (12, 1)),
        (24, (0, 1)),
        (25, (0, 2)),
        (37, (12, 2)),
        (38, (12, 3)),
        (50, (0, 3)),
        (51, (0, 4)),
        (63, (12, 4)),
    ];
    for (ch, pos) in expect {
        assert_eq!(g.channel_position(ch).unwrap(), pos, "channel index {ch}");
    }
    let mut seen = std::collections::HashSet::new();
    for ch in 0..64 {
        let (r, c) = g.channel_position(ch).unwrap();
        assert!(r < 13 && c < 5);
        assert!(seen.insert((r, c)), "two channels at ({r}, {c})");
        assert_eq!(g.channel_at(r, c), Some(ch));
    }
    assert_eq!(g.channel_at(0, 0), None, "the empty corner");
    assert_eq!(g.channel_at(13, 0), None);
    is_invalid(g.channel_position(64), "channel");
    let (x, y) = g.channel_xy_m(63).unwrap();
    assert!((x - 0.032).abs() < 1e-12 && (y - 0.096).abs() < 1e-12);
}

#[test]
fn grid_serpentine_matches_the_data() {
    // Electrodes in the same row of adjacent columns A/B see nearly the same signal; with the
    // column direction flipped (non-serpentine) the partners would be far apart. Development
    // channels only (columns A and B = channels 0–24 without 17).
    let rec = load_real();
    let g = rec.grid.clone().unwrap();
    let chans: Vec<usize> = (0..25).filter(|c| !DEV_BAD_CHANNELS.contains(c)).collect();
    let emg = rec.emg_window_v(&chans, PLATEAU_WINDOW).unwrap();
    let sig = |ch: usize| &emg[chans.iter().position(|&c| c == ch).unwrap()];
    let (mut same, mut mirrored) = (Vec::new(), Vec::new());
    for a in 0..12 {
        let (row, _) = g.channel_position(a).unwrap();
        let partner = g.channel_at(row, 1).unwrap();
        let mirror = g.channel_at(12 - row, 1).unwrap();
        if row == 6 || DEV_BAD_CHANNELS.contains(&partner) || DEV_BAD_CHANNELS.contains(&mirror) {
            continue;
        }
        same.push(corr(sig(a), sig(partner)));
        mirrored.push(corr(sig(a), sig(mirror)));
    }
    assert!(same.len() >= 8);
    assert!(
        mean(&same) > mean(&mirrored) + 0.1,
        "same-row corr {} vs mirrored {}",
        mean(&same),
        mean(&mirrored)
    );
}

#[test]
fn missing_file_says_how_to_fetch() {
    let err = Recording::load("/nonexistent/dir/otb_testfile.mat").unwrap_err();
    match &err {
        Error::DataMissing { path, hint } => {
            assert!(path.contains("otb_testfile.mat"));
            assert!(hint.contains("calibration/fetch-data.sh"), "{hint}");
        }
        other => panic!("expected DataMissing, got {other:?}"),
    }
    assert!(err.to_string().contains("calibration/fetch-data.sh"));
    assert!(default_data_path().ends_with("otb_testfile.mat"));
    assert_eq!(development_channels().len(), 30);
}

// ------------------------------------------------------------------------------------------------
// A tiny MAT v5 writer (both byte orders, optional compression)

struct W {
    be: bool,
}

impl W {
    fn u32(&self, x: u32) -> [u8; 4] {
        if self.be {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }
    /// Data element; 1–4 byte payloads use the packed small-element form.
    fn el(&self, typ: u32, data: &[u8]) -> Vec<u8> {
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
    fn matrix(&self, class: u8, flags: u32, dims: &[u32], name: &str, body: &[u8]) -> Vec<u8> {
        let mut p = self.el(6, &[self.u32(class as u32 | flags), [0; 4]].concat());
        let d: Vec<u8> = dims.iter().flat_map(|&x| self.u32(x)).collect();
        p.extend(self.el(5, &d));
        p.extend(self.el(1, name.as_bytes()));
        p.extend(body);
        self.el(14, &p)
    }
    fn f64s(&self, xs: &[f64]) -> Vec<u8> {
        let b: Vec<u8> = xs
            .iter()
            .flat_map(|x| {
                if self.be {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                }
            })
            .collect();
        self.el(9, &b)
    }
    fn f32s(&self, xs: &[f32]) -> Vec<u8> {
        let b: Vec<u8> = xs
            .iter()
            .flat_map(|x| {
                if self.be {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                }
            })
            .collect();
        self.el(7, &b)
    }
    fn u16s(&self, typ: u32, xs: &[u16]) -> Vec<u8> {
        let b: Vec<u8> = xs
            .iter()
            .flat_map(|x| {
                if self.be {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                }
            })
            .collect();
        self.el(typ, &b)
    }
    fn compressed(&self, element: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(element).unwrap();
        let z = enc.finish().unwrap();
        let mut v = self.u32(15).to_vec();
        v.extend(self.u32(z.len() as u32));
        v.extend(z); // no padding after miCOMPRESSED
        v
    }
    fn file(&self, elements: &[Vec<u8>], compress: bool) -> Vec<u8> {
        let mut v = format!(
            "MATLAB 5.0 MAT-file, written by myodiff tests, be={}",
            self.be
        )
        .into_bytes();
        v.resize(116, b' ');
        v.extend([0u8; 8]);
        v.extend(if self.be { [1, 0] } else { [0, 1] });
        v.extend(if self.be { *b"MI" } else { *b"IM" });
        for e in elements {
            if compress {
                v.extend(self.compressed(e));
            } else {
                v.extend(e);
            }
        }
        v
    }
    fn char_utf8(&self, name: &str, s: &str) -> Vec<u8> {
        let n = s.chars().count() as u32;
        self.matrix(4, 0, &[1, n], name, &self.el(16, s.as_bytes()))
    }
    fn char_utf16(&self, name: &str, dims: &[u32], s: &str) -> Vec<u8> {
        let units: Vec<u16> = s.encode_utf16().collect();
        self.matrix(4, 0, dims, name, &self.u16s(4, &units))
    }
}

/// The seed variables: every feature the reader supports.
fn sample_elements(w: &W) -> Vec<Vec<u8>> {
    let fs = w.matrix(6, 0, &[1, 1], "fs", &w.u16s(4, &[2048])); // double stored as uint16
    let x = w.matrix(
        7,
        0,
        &[3, 2],
        "x",
        &w.f32s(&[1.5, -2.0, 3.25, 4.0, 5.0, -6.5]),
    );
    let int16_as_int8 = w.matrix(10, 0, &[2, 2], "", &w.el(1, &[1, 255, 3, 4]));
    let empty = w.el(14, &[]);
    let cell_body = [
        w.char_utf8("", "héllo"),
        w.char_utf16("", &[1, 3], "µV²"),
        int16_as_int8,
        empty,
    ]
    .concat();
    let cell = w.matrix(1, 0, &[1, 4], "c", &cell_body);
    let z = w.matrix(
        6,
        0x0800,
        &[1, 2],
        "z",
        &[w.f64s(&[1.0, 2.0]), w.f64s(&[3.0, -4.0])].concat(),
    );
    let mut names = b"a\0\0\0\0\0\0\0bb\0\0\0\0\0\0".to_vec();
    names.truncate(16);
    let s_body = [
        w.el(5, &w.u32(8)),
        w.el(1, &names),
        w.matrix(6, 0, &[1, 1], "", &w.f64s(&[3.5])),
        w.matrix(4, 0, &[1, 2], "", &w.el(2, b"ok")),
    ]
    .concat();
    let s = w.matrix(2, 0, &[1, 1], "s", &s_body);
    let m = w.char_utf16("m", &[2, 3], "adbecf"); // column-major ["abc"; "def"]
    let b = w.matrix(9, 0x0200, &[1, 3], "b", &w.el(2, &[1, 0, 1]));
    let sparse = w.matrix(5, 0, &[4, 4], "sp", &w.el(5, &w.u32(0)));
    vec![fs, x, cell, z, s, m, b, sparse]
}

fn check_sample(mat: &MatFile) {
    let names: Vec<&str> = mat.variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["fs", "x", "c", "z", "s", "m", "b", "sp"]);
    assert_eq!(
        mat.get("fs"),
        Some(&MatValue::Numeric {
            class: NumericClass::Double,
            dims: vec![1, 1],
            real: vec![2048.0],
            imag: None,
            logical: false,
        })
    );
    assert_eq!(
        mat.get("x"),
        Some(&MatValue::Single {
            dims: vec![3, 2],
            real: vec![1.5, -2.0, 3.25, 4.0, 5.0, -6.5],
            imag: None,
        })
    );
    let items = mat.get("c").unwrap().cell_items().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].as_str(), Some("héllo"));
    assert_eq!(items[1].as_str(), Some("µV²"));
    assert_eq!(
        items[2],
        MatValue::Numeric {
            class: NumericClass::Int16,
            dims: vec![2, 2],
            real: vec![1.0, -1.0, 3.0, 4.0],
            imag: None,
            logical: false,
        }
    );
    assert_eq!(items[3].dims(), &[0, 0]);
    match mat.get("z").unwrap() {
        MatValue::Numeric { real, imag, .. } => {
            assert_eq!(real, &[1.0, 2.0]);
            assert_eq!(imag.as_deref(), Some(&[3.0, -4.0][..]));
        }
        other => panic!("{other:?}"),
    }
    let s = mat.get("s").unwrap();
    assert_eq!(s.struct_field(0, "a").and_then(MatValue::scalar), Some(3.5));
    assert_eq!(
        s.struct_field(0, "bb").and_then(MatValue::as_str),
        Some("ok")
    );
    assert_eq!(mat.get("m").unwrap().as_str(), Some("abc\ndef"));
    assert_eq!(mat.get("b").unwrap().class_name(), "logical");
    assert!(matches!(
        mat.get("sp"),
        Some(MatValue::Unsupported { class: 5, .. })
    ));
}

fn variants() -> Vec<(&'static str, Vec<u8>)> {
    let le = W { be: false };
    let be = W { be: true };
    vec![
        ("le", le.file(&sample_elements(&le), false)),
        ("le+zlib", le.file(&sample_elements(&le), true)),
        ("be", be.file(&sample_elements(&be), false)),
        ("be+zlib", be.file(&sample_elements(&be), true)),
    ]
}

#[test]
fn synthetic_files_roundtrip() {
    for (label, bytes) in variants() {
        let mat = MatFile::parse(&bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        check_sample(&mat);
    }
}

/// Parses without panicking; an error must be `Error::Format`. Returns whether it parsed.
fn parse_no_panic(bytes: &[u8], what: &str) -> bool {
    match catch_unwind(AssertUnwindSafe(|| MatFile::parse(bytes))) {
        Err(_) => panic!("MatFile::parse panicked on {what}"),
        Ok(Ok(_)) => true,
        Ok(Err(Error::Format { .. })) => false,
        Ok(Err(e)) => panic!("{what}: expected Error::Format, got {e:?}"),
    }
}

#[test]
fn truncation_at_every_length_is_an_error_or_a_prefix() {
    for (label, bytes) in variants() {
        let full = MatFile::parse(&bytes).unwrap();
        let mut ok = 0;
        for len in 0..bytes.len() {
            if parse_no_panic(&bytes[..len], &format!("{label} truncated to {len}")) {
                // Only a cut exactly between variables may parse, and then to fewer variables.
                let part = MatFile::parse(&bytes[..len]).unwrap();
                assert!(part.variables.len() < full.variables.len());
                assert_eq!(part.variables[..], full.variables[..part.variables.len()]);
                ok += 1;
            }
        }
        assert!(
            ok <= full.variables.len(),
            "{label}: {ok} truncations parsed"
        );
    }
}

#[test]
fn random_byte_mutations_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x6d61_7435);
    for (label, bytes) in variants() {
        let (mut ok, mut err) = (0, 0);
        for it in 0..3000 {
            let mut m = bytes.clone();
            let n = m.len();
            let pos = |rng: &mut StdRng| rng.random_range(0..n);
            match it % 3 {
                // 1–4 random bytes
                0 | 1 => {
                    for _ in 0..rng.random_range(1..=4) {
                        let p = pos(&mut rng);
                        m[p] = rng.random();
                    }
                }
                // an aligned 32-bit word (tags, lengths, dims) set to an extreme value
                _ => {
                    let p = (pos(&mut rng) / 4) * 4;
                    let v: u32 = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0xffff_fff8]
                        [rng.random_range(0..6)];
                    if p + 4 <= m.len() {
                        m[p..p + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            if parse_no_panic(&m, &format!("{label} mutation {it}")) {
                ok += 1;
            } else {
                err += 1;
            }
        }
        // Both outcomes occur: the mutations reach deep into the parser.
        assert!(ok > 0 && err > 0, "{label}: ok {ok}, err {err}");
    }
}

#[test]
fn mutations_behind_zlib_never_panic() {
    // Random bytes in a zlib stream mostly fail its checksum; mutate the inflated variable and
    // re-compress, so the parser sees the corruption.
    let w = W { be: false };
    let elements = sample_elements(&w);
    let mut rng = StdRng::seed_from_u64(42);
    for it in 0..3000 {
        let mut els = elements.clone();
        let k = rng.random_range(0..els.len());
        let e = &mut els[k];
        for _ in 0..rng.random_range(1..=3) {
            let p = rng.random_range(0..e.len());
            e[p] = rng.random();
        }
        if it % 5 == 0 {
            let cut = rng.random_range(0..e.len());
            e.truncate(cut);
        }
        parse_no_panic(&w.file(&els, true), &format!("re-compressed mutation {it}"));
    }
}

#[test]
fn corrupt_lengths_are_rejected_without_allocating() {
    let w = W { be: false };
    // an element claiming ~4 GiB
    let mut bytes = w.file(&[], false);
    bytes.extend(w.u32(14));
    bytes.extend(w.u32(0xffff_fff0));
    bytes.extend([0u8; 64]);
    assert!(!parse_no_panic(&bytes, "huge element length"));
    // a cell claiming 2^31 × 2^31 items, and a double matrix claiming 65535 × 65535 elements
    let cell = w.matrix(1, 0, &[0x7fff_ffff, 0x7fff_ffff], "c", &[]);
    assert!(!parse_no_panic(&w.file(&[cell], true), "huge cell"));
    let big = w.matrix(6, 0, &[65535, 65535], "d", &w.f64s(&[1.0]));
    assert!(!parse_no_panic(&w.file(&[big], false), "huge double"));
    // deep nesting
    let mut e = w.matrix(6, 0, &[1, 1], "", &w.f64s(&[1.0]));
    for _ in 0..200 {
        e = w.matrix(1, 0, &[1, 1], "", &e);
    }
    assert!(!parse_no_panic(&w.file(&[e], false), "200 nested cells"));
    // not MAT v5 at all
    assert!(!parse_no_panic(b"hello", "5 bytes"));
    let mut v73 = w.file(&[], false);
    v73[..10].copy_from_slice(b"MATLAB 7.3");
    assert!(!parse_no_panic(&v73, "v7.3 header"));
    let mut noendian = w.file(&[], false);
    noendian[126..128].copy_from_slice(b"XX");
    assert!(!parse_no_panic(&noendian, "no endian indicator"));
}

// ------------------------------------------------------------------------------------------------
// Recording layout on synthetic files

/// A 6-sample OTB-like file: 2 EMG channels (µV), 1 discharge train, 1 pulse train, force.
fn otb_like(w: &W, discharge: [f32; 6], labels: &[&str], fs: &[u8]) -> Vec<u8> {
    otb_like_z(w, discharge, labels, fs, true)
}

fn otb_like_z(w: &W, discharge: [f32; 6], labels: &[&str], fs: &[u8], z: bool) -> Vec<u8> {
    let n = 6;
    let mut cols: Vec<f32> = Vec::new();
    cols.extend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]); // EMG 1
    cols.extend([-1.0; 6]); // EMG 2
    cols.extend(discharge);
    cols.extend([0.1; 6]); // pulse train
    cols.extend([20.0, 21.0, 22.0, 23.0, 24.0, 25.0]); // force
    let data = w.matrix(7, 0, &[n, 5], "", &w.f32s(&cols));
    let desc_items: Vec<u8> = labels.iter().flat_map(|l| w.char_utf8("", l)).collect();
    vec![
        w.matrix(1, 0, &[1, 1], "Data", &data),
        w.matrix(1, 0, &[labels.len() as u32, 1], "Description", &desc_items),
        w.matrix(6, 0, &[1, 1], "SamplingFrequency", &w.el(4, fs)),
    ]
    .into_iter()
    .fold(w.file(&[], false), |mut f, e| {
        f.extend(if z { w.compressed(&e) } else { e });
        f
    })
}

const LABELS: [&str; 5] = [
    "Muscle - GR08MM1305 (1)[uV]",
    "Muscle - GR08MM1305 (2)[mV]",
    "Decomposition of Muscle (1)[a.u]",
    "Source for decomposition of Muscle (1)[a.u]",
    "acquired data[ %(MVC)]",
];

fn from_bytes(bytes: &[u8]) -> myodiff::Result<Recording> {
    Recording::from_mat(&MatFile::parse(bytes)?)
}

#[test]
fn synthetic_recording_layout_and_wrong_types() {
    let w = W { be: false };
    let fs = 1000u16.to_le_bytes();
    let rec = from_bytes(&otb_like(&w, [0., 1., 0., 0., 1., 0.], &LABELS, &fs)).unwrap();
    assert_eq!(rec.fs_hz, 1000.0);
    assert_eq!(rec.n_samples, 6);
    assert_eq!(rec.n_emg_channels(), 2);
    assert!((rec.emg_v[0][2] as f64 - 3e-6).abs() < 1e-12); // µV
    assert!((rec.emg_v[1][0] as f64 + 1e-3).abs() < 1e-9); // mV
    assert_eq!(rec.discharge_trains, vec![vec![0, 1, 0, 0, 1, 0]]);
    assert_eq!(rec.discharge_samples(0, 0..6).unwrap(), vec![1, 4]);
    assert_eq!(rec.force_pct_mvc[5], 25.0);
    assert!(rec.grid.is_none(), "2 channels are not a GR08MM1305 grid");
    is_invalid(rec.development(), "fs_hz");

    // non-binary discharge train
    is_invalid(
        from_bytes(&otb_like(&w, [0., 0.5, 0., 0., 1., 0.], &LABELS, &fs)),
        "discharge",
    );
    // zero sampling rate
    is_invalid(
        from_bytes(&otb_like(&w, [0.; 6], &LABELS, &0u16.to_le_bytes())),
        "SamplingFrequency",
    );
    // label count differs from the columns
    assert!(matches!(
        from_bytes(&otb_like(&w, [0.; 6], &LABELS[..4], &fs)),
        Err(Error::ShapeMismatch { .. })
    ));
    // no force column
    let mut no_force = LABELS;
    no_force[4] = "something else[a.u]";
    assert!(matches!(
        from_bytes(&otb_like(&w, [0.; 6], &no_force, &fs)),
        Err(Error::Format { .. })
    ));
    // a variable of the wrong class, and a missing variable
    let wrong = w.file(
        &[
            w.char_utf8("Data", "not a matrix"),
            w.matrix(1, 0, &[0, 1], "Description", &[]),
            w.matrix(6, 0, &[1, 1], "SamplingFrequency", &w.f64s(&[2048.0])),
        ],
        false,
    );
    assert!(matches!(from_bytes(&wrong), Err(Error::Format { .. })));
    let missing = w.file(&[w.char_utf8("OTBFile", "x")], true);
    match from_bytes(&missing) {
        Err(Error::Format { detail, .. }) => assert!(detail.contains("SamplingFrequency")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mutated_recordings_never_panic() {
    let w = W { be: false };
    let fs = 1000u16.to_le_bytes();
    let bytes = otb_like_z(&w, [0., 1., 0., 0., 1., 0.], &LABELS, &fs, false);
    assert!(from_bytes(&bytes).is_ok());
    let mut rng = StdRng::seed_from_u64(7);
    let mut errors = 0;
    for it in 0..2000 {
        let mut m = bytes.clone();
        for _ in 0..rng.random_range(1..=3) {
            let p = rng.random_range(0..m.len());
            m[p] = rng.random();
        }
        let len = if it % 4 == 0 {
            rng.random_range(0..m.len())
        } else {
            m.len()
        };
        match catch_unwind(AssertUnwindSafe(|| from_bytes(&m[..len]))) {
            Err(_) => panic!("Recording::from_mat panicked on mutation {it}"),
            Ok(Err(_)) => errors += 1,
            Ok(Ok(_)) => {}
        }
    }
    assert!(errors > 0);
}
