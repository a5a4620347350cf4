//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and the saved failure inputs
//! (`fuzz/crashes/<target>/`, kept after their fix) through the fuzz targets: no input may panic,
//! and every error must be a typed error that names its field, file or value. A crash input with
//! a `<file>.expect` companion must fail with a message containing that text. See RELIABILITY.md
//! (the fuzzer is `examples/fuzz.rs`).
//!
//! Plus one regression test per bug the fuzzing found.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use myodiff::Error;
use targets::Target;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "expect"))
        .collect();
    v.sort();
    v
}

fn replay(t: Target, path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r = catch_unwind(AssertUnwindSafe(|| t.run(&bytes)))
        .unwrap_or_else(|_| panic!("{} panicked on {}", t.name(), path.display()));
    if let Err(e) = &r
        && let Err(why) = t.check_error(e)
    {
        panic!("{} on {}: {why}", t.name(), path.display());
    }
    r
}

#[test]
fn corpus_and_fixed_crashes_replay_without_panics() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for t in targets::ALL {
        let corpus = files(&root.join("corpus").join(t.name()));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{} is empty: run `cargo run --release --example fuzz -- {}`",
            t.name(),
            t.name()
        );
        let (mut ok, mut err) = (0, 0);
        for p in &corpus {
            match replay(t, p) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        // The corpus keeps accepted inputs as well as rejected ones.
        assert!(ok > 0, "{}: no corpus input is accepted", t.name());
        assert!(err > 0, "{}: no corpus input is rejected", t.name());
        total += corpus.len();

        for p in files(&root.join("crashes").join(t.name())) {
            let r = replay(t, &p);
            let expect = p.with_file_name(format!(
                "{}.expect",
                p.file_name().unwrap_or_default().to_string_lossy()
            ));
            if let Ok(want) = std::fs::read_to_string(&expect) {
                let want = want.trim();
                match r {
                    Err(e) => assert!(
                        e.to_string().contains(want),
                        "{}: error `{e}` does not contain `{want}`",
                        p.display()
                    ),
                    Ok(s) => panic!(
                        "{}: accepted ({s}), expected an error naming `{want}`",
                        p.display()
                    ),
                }
            }
            total += 1;
        }
    }
    assert!(total > 50, "only {total} fuzz inputs");
}

// ------------------------------------------------------------------------------------------------
// One regression test per bug the fuzzing found (RELIABILITY.md §Findings).

/// `[emg.muap] x_half_width_m = 1e308` (or `iz_spread_m`) passed validation and then panicked in
/// rand (`random_range(-w..w)` with an infinite width); now a typed error naming the key.
#[test]
fn huge_muap_half_width_is_a_typed_error_not_a_panic() {
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/hdsemg_26mvc.toml"),
    )
    .unwrap();
    for key in ["x_half_width_m", "iz_spread_m"] {
        let text = base.replace("[emg.muap]", &format!("[emg.muap]\n{key} = 1e308"));
        let r = catch_unwind(|| myodiff::experiment::Experiment::from_toml(&text, "t.toml"))
            .unwrap_or_else(|_| panic!("{key} = 1e308 panicked"));
        match r {
            Err(Error::InvalidParameter { field, .. }) => {
                assert_eq!(field, format!("emg.muap.{key}"))
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let g = myodiff::emg::muap::PoolGeometry {
        x_half_width_m: 1e308,
        ..Default::default()
    };
    assert!(matches!(g.units(3, 0), Err(Error::InvalidParameter { .. })));
}

/// Parameter bounds `[-1e308, 1e308]` are finite but their width is not: random search and
/// particle swarm panicked when drawing from them. Now rejected when the spec is validated.
#[test]
fn parameter_bounds_with_an_infinite_width_are_rejected() {
    let p = myodiff::fit::ParamSpec::new("dc_hz", -1e308, 1e308, 0.0);
    match p.validate() {
        Err(Error::InvalidParameter { field, .. }) => assert_eq!(field, "dc_hz.lower/upper"),
        other => panic!("{other:?}"),
    }
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/watanabe.toml"),
    )
    .unwrap();
    let text = base.replace(
        "[dc]\nlower = 1.0\nupper = 100.0",
        "[dc]\nlower = -1e308\nupper = 1e308",
    );
    assert_ne!(text, base);
    let e = myodiff::fit::watanabe::WatanabeSpec::from_toml_str(&text).unwrap_err();
    assert!(e.to_string().contains("dc_hz.lower/upper"), "{e}");
}

/// An empty string value (`kind = ""`, a parameter `name = ""`) gave a message with nothing
/// after the field ("invalid value for `kind`:  (allowed: …)"); it now shows `""`.
#[test]
fn an_empty_value_is_shown_quoted() {
    let e = Error::invalid("kind", "", "one of: noise, watanabe, recording, joint");
    assert_eq!(
        e.to_string(),
        "invalid value for `kind`: \"\" (allowed: one of: noise, watanabe, recording, joint)"
    );
    let e = Error::invalid("x", 0, "y");
    assert!(e.to_string().contains("`x`: 0 "), "{e}");
}

/// A char array with dims `[2^30, 0]` and no data made the reader build 2^30 empty lines (a
/// 25 GB allocation, found by the fuzzer: fuzz/crashes/mat/alloc-ce5acd3bf00f7533). An m×0 char
/// array is now empty text.
#[test]
fn empty_char_matrix_with_huge_row_count_is_empty_text() {
    for be in [false, true] {
        let w = targets::MatWriter { be };
        let c = w.matrix(4, 0, &[0x4000_0000, 0], "c", &w.el(16, &[]));
        let m = myodiff::io::MatFile::parse(&w.file(&[c], false)).unwrap();
        assert_eq!(m.get("c").and_then(|v| v.as_str()), Some(""));
    }
}
