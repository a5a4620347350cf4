//! `myodiff simulate` / `myodiff export`: a small experiment through the library and through the
//! CLI binary; the NPZ read back in Rust; the NWB read back with pynwb and checked with
//! nwbinspector (`tests/python/check_run.py`) when a Python with pynwb is available
//! (`MYODIFF_PYTHON`, set by `.ci/run`, or `python3`); bad input → typed errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use myodiff::Error;
use myodiff::experiment::{self, Experiment, Format, output};
use myodiff::io::npz;

/// A small experiment: 12 motor units, 0.2 s at dt 0.1 ms, two parameter sets, a 3 × 2 custom
/// EMG grid, and the drive rate as an extra trace.
const SMALL: &str = r#"
name = "small"
description = "test experiment"
record = ["spikes", "force_n", "surface_emg_v", "drive_rate_hz"]

[network]
n_mn = 12
n_dd = 200
p_connect = 0.6
dt_s = 1e-4
duration_s = 0.2
seed = 5

[drive]
kind = "sine"
dc_hz = 60.0
amp_hz = 10.0
freq_hz = 20.0

[[sets]]
[[sets]]
dc_hz = 80.0

[emg]
grid = "custom"
rows = 3
cols = 2
ied_m = 5e-3
"#;

/// A fresh, empty scratch directory for test `name`.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myodiff-simtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Python to check NWB files with: `MYODIFF_PYTHON` (must work when set), else `python3` if
/// it imports pynwb, nwbinspector and numpy. `None` (with a printed reason) only when neither is
/// available outside CI; under CI (`CI=true`) a missing Python fails the test.
fn python() -> Option<PathBuf> {
    let probe = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pynwb, nwbinspector, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = std::env::var_os("MYODIFF_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            probe(&p),
            "MYODIFF_PYTHON={} cannot import pynwb, nwbinspector and numpy",
            p.display()
        );
        return Some(p);
    }
    let p = PathBuf::from("python3");
    if probe(&p) {
        return Some(p);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI must provide MYODIFF_PYTHON (a venv with pynwb, nwbinspector, numpy; see .ci/run)"
    );
    println!(
        "pynwb check not run: no Python with pynwb + nwbinspector + numpy (set MYODIFF_PYTHON to a venv's python)"
    );
    None
}

/// Runs `tests/python/check_run.py` on a run's NPZ and NWB; panics with its output on failure.
fn check_with_python(
    npz_path: &Path,
    nwb_path: &Path,
    sets: usize,
    units: usize,
    steps: usize,
    dt: f64,
    emg: bool,
) {
    let Some(py) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_run.py");
    let out = Command::new(py)
        .arg(script)
        .arg(npz_path)
        .arg(nwb_path)
        .args([
            sets.to_string(),
            units.to_string(),
            steps.to_string(),
            dt.to_string(),
        ])
        .arg(if emg { "1" } else { "0" })
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "python check failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

#[test]
fn library_run_writes_npz_nwb_and_figures_that_read_back() {
    let exp = Experiment::from_toml(SMALL, "SMALL").unwrap();
    let outcome = experiment::run(&exp).unwrap();
    let saved = &outcome.saved;
    assert_eq!(saved.sets.len(), 2);
    assert_eq!(saved.n_units(), 12);
    assert_eq!(saved.n_steps, 2000);
    let spikes: Vec<usize> = saved
        .sets
        .iter()
        .map(|s| s.spike_times_s.iter().map(Vec::len).sum())
        .collect();
    assert!(spikes[0] > 0, "the pool fires at DC 60 Hz");
    assert!(spikes[1] > spikes[0], "more drive, more spikes: {spikes:?}");
    let emg = saved.sets[0].surface_emg_v.as_ref().unwrap();
    assert_eq!(emg.dim(), (2000, 3, 2));
    assert!(emg.iter().any(|v| v.abs() > 0.0), "EMG is not all zero");
    assert_eq!(saved.extra.len(), 1);
    assert_eq!(saved.extra[0].name, "drive_rate_hz");
    assert_eq!(saved.extra[0].data.dim(), (2, 2000, 1));

    let dir = scratch("lib").join("run");
    let summary = output::write_run_dir(&dir, saved, outcome.wall_s, false).unwrap();
    for f in [
        "experiment.toml",
        "result.npz",
        "result.nwb",
        "raster.png",
        "force.png",
        "emg_channel.png",
        "emg_rms_map.png",
        "summary.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
        assert!(summary.files.iter().any(|g| g == f), "{f} not in summary");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("experiment.toml")).unwrap(),
        SMALL
    );
    // NPZ read back in Rust: bit-identical.
    let back = npz::read(&dir.join("result.npz")).unwrap();
    assert_eq!(&back, saved);
    check_with_python(
        &dir.join("result.npz"),
        &dir.join("result.nwb"),
        2,
        12,
        2000,
        1e-4,
        true,
    );

    // Export: NPZ → NWB and NPZ → NPZ, into new files; the NPZ copy reads back identical.
    let nwb2 =
        experiment::export(&dir, Format::Nwb, Some(&dir.join("converted.nwb")), false).unwrap();
    assert!(nwb2.is_file());
    let npz2 =
        experiment::export(&dir, Format::Npz, Some(&dir.join("converted.npz")), false).unwrap();
    assert_eq!(&npz::read(&npz2).unwrap(), saved);
    check_with_python(&npz2, &nwb2, 2, 12, 2000, 1e-4, true);
    // Exporting over an existing file is refused without force, allowed with it.
    let e = experiment::export(&dir, Format::Nwb, None, false).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, source } if path.ends_with("result.nwb") && source.kind() == std::io::ErrorKind::AlreadyExists),
        "{e}"
    );
    experiment::export(&dir, Format::Nwb, None, true).unwrap();
}

#[test]
fn cli_simulate_and_export() {
    let root = scratch("cli");
    let spec = root.join("exp.toml");
    std::fs::write(
        &spec,
        SMALL
            .replace("[[sets]]\n[[sets]]\ndc_hz = 80.0\n", "")
            .replace("duration_s = 0.2", "duration_s = 0.1"),
    )
    .unwrap();
    let out = root.join("run");
    let bin = env!("CARGO_BIN_EXE_myodiff");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let o = run(&[
        "simulate",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("run directory:"), "{text}");
    assert!(out.join("result.nwb").is_file() && out.join("result.npz").is_file());
    check_with_python(
        &out.join("result.npz"),
        &out.join("result.nwb"),
        1,
        12,
        1000,
        1e-4,
        true,
    );

    // An existing output directory is refused (exit 1, message naming it), kept intact.
    let o = run(&[
        "simulate",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already exists") && err.contains(out.to_str().unwrap()),
        "{err}"
    );
    assert!(out.join("result.nwb").is_file());
    // --force replaces it.
    let o = run(&[
        "simulate",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // export
    let conv = root.join("conv.nwb");
    let o = run(&[
        "export",
        out.to_str().unwrap(),
        "--format",
        "nwb",
        "--out",
        conv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(conv.is_file());
    check_with_python(&out.join("result.npz"), &conv, 1, 12, 1000, 1e-4, true);
    let o = run(&["export", root.to_str().unwrap(), "--format", "nwb"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("result.npz"), "{err}");
    // No temporary left anywhere.
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

fn parse_err(text: &str) -> String {
    Experiment::from_toml(text, "T").unwrap_err().to_string()
}

#[test]
fn bad_specs_give_errors_naming_the_key() {
    let base = "name = \"x\"\n[network]\nn_mn = 4\nn_dd = 2\nduration_s = 0.01\n[drive]\nkind = \"sine\"\ndc_hz = 50.0\n";
    Experiment::from_toml(base, "T").unwrap();
    // unknown keys, at the top level and inside tables
    let e = parse_err(&format!("colour = 1\n{base}"));
    assert!(e.contains("colour"), "{e}");
    let e = parse_err(&base.replace("n_dd = 2", "n_dd = 2\nn_mns = 3"));
    assert!(e.contains("n_mns"), "{e}");
    let e = parse_err(&format!("{base}amp = 3.0\n"));
    assert!(e.contains("amp"), "{e}");
    // wrong types
    let e = parse_err(&base.replace("n_mn = 4", "n_mn = \"four\""));
    assert!(e.contains("n_mn") || e.contains("four"), "{e}");
    let e = parse_err(&base.replace("dc_hz = 50.0", "dc_hz = [50.0]"));
    assert!(
        e.contains("dc_hz") || e.contains("sequence") || e.contains("array"),
        "{e}"
    );
    // missing drive, unknown drive kind
    assert!(parse_err("name = \"x\"\n").contains("drive"));
    let e = parse_err(&base.replace("kind = \"sine\"", "kind = \"square\""));
    assert!(e.contains("square"), "{e}");
    // values out of range name their key
    let e = parse_err(&base.replace("duration_s = 0.01", "duration_s = -1.0"));
    assert!(e.contains("network.duration_s") && e.contains("-1"), "{e}");
    let e = parse_err(&format!("{base}noise_sd_hz = -2.0\n"));
    assert!(e.contains("drive.noise_sd_hz"), "{e}");
    let e = parse_err(&base.replace("name = \"x\"", "name = \"../up\""));
    assert!(e.contains("name"), "{e}");
    // knots: lengths and order
    let knots = base.replace(
        "kind = \"sine\"\ndc_hz = 50.0",
        "kind = \"knots\"\ntimes_s = [0.0, 1.0]\nvalues_hz = [10.0]",
    );
    let e = parse_err(&knots);
    assert!(e.contains("drive.values_hz"), "{e}");
    let e = parse_err(
        &knots
            .replace("[0.0, 1.0]", "[1.0, 0.5]")
            .replace("[10.0]", "[1.0, 2.0]"),
    );
    assert!(e.contains("knots.times_s[1]"), "{e}");
    // a set key that does not apply to the drive kind
    let e = parse_err(&format!("{base}[[sets]]\nvalues_hz = [1.0]\n"));
    assert!(e.contains("sets[0].values_hz"), "{e}");
    // MUAP layout: unknown key, wrong type, invalid value
    let emg = format!("{base}[emg]\n[emg.muap]\n");
    let e = parse_err(&format!("{emg}depth_mx_m = 0.01\n"));
    assert!(e.contains("emg.muap.depth_mx_m"), "{e}");
    let e = parse_err(&format!("{emg}depth_max_m = \"deep\"\n"));
    assert!(e.contains("emg.muap") && e.contains("depth_max_m"), "{e}");
    let e = parse_err(&format!("{emg}cv_min_m_s = -3.0\n"));
    assert!(e.contains("emg.muap.cv_min_m_s"), "{e}");
    let e = parse_err(&format!("{base}[emg]\nrows = 4\n"));
    assert!(e.contains("emg.rows"), "{e}");
    // a recorded buffer the spec cannot produce
    let e = parse_err(&format!("record = [\"surface_emg_v\"]\n{base}"));
    assert!(e.contains("record[0]") && e.contains("[emg]"), "{e}");
    // a recorded buffer no stage writes: found when the network is built
    let exp = Experiment::from_toml(
        &format!("record = [\"spikes\", \"muscle_length_m\"]\n{base}"),
        "T",
    )
    .unwrap();
    let e = experiment::run(&exp).unwrap_err().to_string();
    assert!(
        e.contains("record[1]") && e.contains("muscle_length_m") && e.contains("force_n"),
        "{e}"
    );
    // a missing spec file names its path
    let e = Experiment::from_path(Path::new("/nonexistent/exp.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/exp.toml"), "{e}");
}

#[test]
fn outputs_are_atomic_and_refuse_existing_or_unwritable_paths() {
    let root = scratch("atomic");
    // A failing writer leaves neither the target nor a temporary.
    let target = root.join("run");
    let e = output::write_atomically(&target, false, true, |tmp| {
        std::fs::write(tmp.join("result.npz"), b"partial").unwrap();
        Err(Error::config("test", "fails half-way"))
    })
    .unwrap_err();
    assert!(e.to_string().contains("fails half-way"));
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "temporary left behind"
    );
    // An existing target is refused and kept; with force it is replaced.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"old").unwrap();
    let e = output::write_atomically(&target, false, true, |_| Ok(())).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path == target.to_str().unwrap()),
        "{e}"
    );
    assert!(target.join("keep").is_file());
    output::write_atomically(&target, true, true, |tmp| {
        std::fs::write(tmp.join("new"), b"new").map_err(|e| Error::Io {
            path: "new".into(),
            source: e,
        })
    })
    .unwrap();
    assert!(target.join("new").is_file() && !target.join("keep").exists());
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "only the run directory"
    );
    // An unwritable location (below a regular file) is an i/o error naming the path.
    let file = root.join("plain_file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("sub").join("run");
    let base = "name = \"x\"\n[network]\nn_mn = 4\nn_dd = 2\nduration_s = 0.01\n[drive]\nkind = \"sine\"\ndc_hz = 50.0\n";
    let spec = root.join("x.toml");
    std::fs::write(&spec, base).unwrap();
    let e = experiment::simulate(&spec, Some(&bad), false).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.contains("plain_file")),
        "{e}"
    );
    // simulate refuses an existing directory before simulating
    let e = experiment::simulate(&spec, Some(&target), false).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

/// A small closed-loop experiment: 10 motor neurons, 0.2 s at dt 0.1 ms, a tendon tap.
const LOOP: &str = r#"
name = "loop"
[drive]
kind = "sine"
dc_hz = 80.0
[closed_loop]
n_mn = 10
n_dd = 400
duration_s = 0.2
seed = 3
[[closed_loop.stretch]]
kind = "tap"
onset_s = 0.1
amplitude = 0.05
duration_s = 0.05
[loop_params]
w_ia_s = 5e-8
"#;

/// `[closed_loop]` experiments: the loop runs (stream path by default; `path = "tape"` is
/// accepted, `"fused"` refused), the Hill muscle's force is saved as
/// the run's force, the loop's buffers as extra traces; the NPZ reads back identical and the NWB
/// passes the Python check; two sets give two batch rows with different drives. Bad
/// combinations are typed errors naming the key.
#[test]
fn closed_loop_experiment_runs_and_saves() {
    let exp = Experiment::from_toml(LOOP, "LOOP").unwrap();
    assert_eq!(exp.spec.exec_path(), myodiff::kernel::ExecPath::Stream);
    let tape = Experiment::from_toml(&format!("path = \"tape\"\n{LOOP}"), "LOOP").unwrap();
    assert_eq!(tape.spec.exec_path(), myodiff::kernel::ExecPath::Tape);
    let outcome = experiment::run(&exp).unwrap();
    let saved = &outcome.saved;
    assert_eq!(saved.sets.len(), 1);
    assert_eq!(saved.n_units(), 10);
    assert_eq!(saved.n_steps, 2000);
    let spikes: usize = saved.sets[0].spike_times_s.iter().map(Vec::len).sum();
    assert!(spikes > 0, "the pool fires at DC 80 Hz");
    let force = saved.sets[0].force_n.as_ref().expect("muscle force saved");
    assert_eq!(force.dim(), (2000, 1));
    // active force: above the force before the first spike (the passive baseline)
    let first = saved.sets[0]
        .spike_times_s
        .iter()
        .filter_map(|s| s.first())
        .fold(f64::INFINITY, |a, &b| a.min(b));
    let base = force[[(first / 1e-4) as usize, 0]];
    let peak = force.iter().cloned().fold(f64::MIN, f64::max);
    assert!(peak > base + 1e-3, "the muscle contracts: {base} → {peak}");
    let names: Vec<&str> = saved.extra.iter().map(|e| e.name.as_str()).collect();
    for n in [
        "joint_angle_rad",
        "fibre_length_l0",
        "ia_hz",
        "ii_hz",
        "ib_hz",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"muscle_force_n"), "saved twice: {names:?}");
    let ia = &saved.extra[names.iter().position(|n| *n == "ia_hz").unwrap()].data;
    assert!(ia.iter().any(|&r| r > 0.0), "the spindle fires");
    let dir = scratch("loop").join("run");
    output::write_run_dir(&dir, saved, outcome.wall_s, false).unwrap();
    assert_eq!(&npz::read(&dir.join("result.npz")).unwrap(), saved);
    check_with_python(
        &dir.join("result.npz"),
        &dir.join("result.nwb"),
        1,
        10,
        2000,
        1e-4,
        false,
    );
    // two sets: two rows, the stronger drive makes more force
    let two = LOOP.replace(
        "[loop_params]",
        "[[sets]]\ndc_hz = 40.0\n[[sets]]\n[loop_params]",
    );
    let out2 = experiment::run(&Experiment::from_toml(&two, "two").unwrap()).unwrap();
    let mean = |s: usize| {
        let f = out2.saved.sets[s].force_n.as_ref().unwrap();
        f.iter().sum::<f64>() / f.len() as f64
    };
    let n_sp = |s: usize| -> usize { out2.saved.sets[s].spike_times_s.iter().map(Vec::len).sum() };
    eprintln!(
        "closed loop: {spikes} spikes, force {base:.4} → {peak:.4} N; two sets: mean force {:.4} / {:.4} N, spikes {} / {}",
        mean(0),
        mean(1),
        n_sp(0),
        n_sp(1)
    );
    assert!(
        mean(1) > mean(0),
        "{} vs {} (spikes {} vs {})",
        mean(0),
        mean(1),
        n_sp(0),
        n_sp(1)
    );

    let e = parse_err(&format!("{LOOP}[network]\nn_mn = 5\n"));
    assert!(e.contains("network"), "{e}");
    let e = parse_err(&format!("{LOOP}[emg]\ngrid = \"gr08mm1305\"\n"));
    assert!(e.contains("emg"), "{e}");
    let e = parse_err(&format!("path = \"fused\"\n{LOOP}"));
    assert!(e.contains("path") && e.contains("stream"), "{e}");
    let e = parse_err(&LOOP.replace(
        "kind = \"sine\"\ndc_hz = 80.0",
        "kind = \"knots\"\ntimes_s = [0.0, 0.1]\nvalues_hz = [50.0, 60.0]",
    ));
    assert!(e.contains("drive.kind"), "{e}");
    let e = parse_err(&LOOP.replace("n_mn = 10", "n_mn = 1"));
    assert!(e.contains("closed_loop.n_mn"), "{e}");
    let e = parse_err(&LOOP.replace("w_ia_s = 5e-8", "w_ia_s = -1.0"));
    assert!(e.contains("loop_params.w_ia_s"), "{e}");
    let e = parse_err(&LOOP.replace("w_ia_s = 5e-8", "w_ia = 1.0"));
    assert!(e.contains("w_ia"), "{e}");
    let open = "name = \"x\"\n[network]\nn_mn = 4\nn_dd = 2\nduration_s = 0.01\n[drive]\nkind = \"sine\"\ndc_hz = 50.0\n[loop_params]\nw_ia_s = 5e-8\n";
    let e = parse_err(open);
    assert!(
        e.contains("loop_params") && e.contains("closed_loop"),
        "{e}"
    );
}
