//! The `myodiff` binary under test (through `CARGO_BIN_EXE_myodiff`): help, argument errors, a
//! tiny rollout with its gradient check, `calibrate` on a tiny spec of every kind (each writes
//! `summary.json` into its own temporary directory), the dispatcher's errors and default report
//! path, and every TOML spec shipped in the repository parsed and validated by the library.

#[macro_use]
mod joint_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use myodiff::fit::joint::JointSpec;
use myodiff::fit::noise::NoiseCalibrationSpec;
use myodiff::fit::recording::RecordingFitSpec;
use myodiff::fit::watanabe::WatanabeSpec;
use myodiff::io::recording::{FETCH_HINT, default_data_path};

fn myodiff(args: &[&str]) -> Output {
    myodiff_in(None, args)
}

fn myodiff_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_myodiff"));
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().expect("the myodiff binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fresh temporary directory for one test (test name + process id).
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myodiff_cli_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn require_data() -> PathBuf {
    let p = default_data_path();
    assert!(
        p.exists(),
        "the test recording {} is missing: {FETCH_HINT}",
        p.display()
    );
    p
}

#[test]
fn help_of_the_tool_and_every_subcommand_exits_zero() {
    for args in [
        vec!["--help"],
        vec!["help"],
        vec!["rollout", "--help"],
        vec!["calibrate", "--help"],
        vec!["gradcheck", "--help"],
        vec!["--version"],
        vec!["info"],
    ] {
        let o = myodiff(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {:?}\n{err}", o.status);
        assert!(!out.is_empty(), "{args:?} printed nothing");
    }
    let (out, _) = text(&myodiff(&["--help"]));
    assert!(
        out.contains("rollout") && out.contains("calibrate"),
        "{out}"
    );
    let (out, _) = text(&myodiff(&["rollout", "--help"]));
    for flag in [
        "--model",
        "--path",
        "--backend",
        "--grad",
        "--generator-mode",
    ] {
        assert!(out.contains(flag), "rollout --help lacks {flag}: {out}");
    }
}

#[test]
fn bad_flags_and_values_exit_nonzero_with_the_message() {
    let cases: [(&[&str], &str); 7] = [
        (&["rollout", "--bogus"], "--bogus"),
        (&["rollout", "--batch", "many"], "many"),
        (&["frobnicate"], "frobnicate"),
        (&["calibrate"], "PROBLEM"),
        (
            &[
                "rollout",
                "--path",
                "sideways",
                "--n-mn",
                "4",
                "--duration-s",
                "0.01",
            ],
            "sideways",
        ),
        (
            &[
                "rollout",
                "--model",
                "lumped",
                "--n-mn",
                "4",
                "--duration-s",
                "0.01",
            ],
            "lumped",
        ),
        (
            &[
                "rollout",
                "--spike-mode",
                "soft",
                "--n-mn",
                "4",
                "--duration-s",
                "0.01",
            ],
            "soft",
        ),
    ];
    for (args, needle) in cases {
        let o = myodiff(args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {err}"
        );
    }
    // A closed choice is a usage error (exit 2) listing the choices, also in --help.
    let o = myodiff(&[
        "rollout",
        "--path",
        "sideways",
        "--n-mn",
        "4",
        "--duration-s",
        "0.01",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("tape") && err.contains("fused"), "{err}");
    let (out, _) = text(&myodiff(&["rollout", "--help"]));
    for choice in ["faithful", "ndarray", "expected", "insertion"] {
        assert!(out.contains(choice), "rollout --help lacks {choice}: {out}");
    }
    // Library errors (not clap's) exit 1 with "error: " and name the field.
    let o = myodiff(&["rollout", "--n-mn", "4", "--duration-s=-1"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("duration"),
        "{err}"
    );
}

/// The numbers of the `gradient check:` line: (autodiff, batched central difference) in N/Hz.
fn gradient_line(out: &str) -> (f64, f64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("gradient check:"))
        .unwrap_or_else(|| panic!("no gradient check line: {out}"));
    let nums: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse::<f64>().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{line}");
    (nums[0], nums[1])
}

/// The first number after `prefix` on the line that starts with it.
fn number_after(out: &str, prefix: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {out}"));
    line[prefix.len()..]
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no number in {line}"))
}

/// A small `rollout --grad`: forward table, the spiking network's gradient (default estimator:
/// central difference with common random numbers), the seed-averaged reference and their
/// relative error, all finite and consistent with the table; `--estimator surrogate` prints
/// the labelled surrogate gradient next to the batched central difference; `--estimator
/// pathwise` runs on the event-time network; in rate mode the autodiff gradient is the smooth
/// forward model's, so it matches the difference.
#[test]
fn small_rollout_with_gradient_prints_finite_numbers() {
    let base = [
        "rollout",
        "--n-mn",
        "400",
        "--duration-s",
        "0.2",
        "--dc-hz",
        "100",
        "--grad",
        "--ref-seeds",
        "3",
    ];
    let o = myodiff(&base);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let est = number_after(&out, "gradient:");
    let reference = number_after(&out, "reference:");
    let rel = number_after(&out, "relative error:");
    assert!(
        est.is_finite() && reference.is_finite() && rel.is_finite(),
        "{out}"
    );
    let expect = 100.0 * (est - reference).abs() / reference.abs();
    assert!(
        (rel - expect).abs() <= 0.1 + 1e-3 * expect,
        "{rel} vs {expect}: {out}"
    );
    // The table's batch row: DC, mean force, gradient, spikes.
    let row = out
        .lines()
        .find(|l| l.starts_with("| 0 |"))
        .unwrap_or_else(|| panic!("no batch row: {out}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[2].parse::<f64>().unwrap(), 100.0, "{row}");
    let force: f64 = cells[3].parse().unwrap();
    assert!(force > 0.0 && force.is_finite(), "an active pool: {row}");
    assert_eq!(cells[4].parse::<f64>().unwrap(), est, "{row}");
    assert!(cells[5].parse::<usize>().unwrap() > 0, "{row}");
    // surrogate: labelled, with the batched central difference next to it
    let mut args = base.to_vec();
    args.extend(["--estimator", "surrogate"]);
    let o = myodiff(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let (ad, fd) = gradient_line(&out);
    assert!(ad.is_finite() && fd.is_finite(), "{out}");
    assert!(
        out.contains("biased"),
        "the surrogate must be labelled: {out}"
    );
    // pathwise on the event-time network
    let mut args = base.to_vec();
    args.extend(["--estimator", "pathwise"]);
    let o = myodiff(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    assert!(out.contains("event-time network"), "{out}");
    assert!(number_after(&out, "gradient:").is_finite(), "{out}");
    // a reference from one seed is refused
    let mut args = base.to_vec();
    args[9] = "1";
    let o = myodiff(&args);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("ref_seeds"), "{err}");
    let o = myodiff(&[
        "rollout",
        "--n-mn",
        "800",
        "--duration-s",
        "0.2",
        "--dc-hz",
        "60",
        "--grad",
        "--spike-mode",
        "rate",
        "--generator-mode",
        "rate",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let (ad, fd) = gradient_line(&out);
    // ±0.5 Hz central difference of a smooth function: O(h²) truncation, printed to 5 decimals.
    assert!(
        fd > 0.0 && (ad - fd).abs() <= 1e-3 * fd.abs() + 1e-5,
        "rate mode: autodiff {ad} vs central difference {fd}"
    );
}

fn calibrate(spec_text: &str, name: &str) -> (PathBuf, serde_json::Value) {
    let dir = tmp(name);
    let spec = dir.join("spec.toml");
    std::fs::write(&spec, spec_text).unwrap();
    let out = dir.join("report");
    let o = myodiff(&[
        "calibrate",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{name}: {err}\n{stdout}");
    assert!(stdout.contains("report:"), "{stdout}");
    let summary = out.join("summary.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(out.join("report.md").exists(), "{name}: report.md");
    let fits = json["fits"].as_array().expect("fits");
    assert!(!fits.is_empty(), "{name}: {json}");
    for f in fits {
        let l = f["loss_best"].as_f64().expect("loss_best");
        assert!(l.is_finite(), "{name}: {f}");
        assert!(f["evaluations"].as_u64().unwrap() >= 1, "{name}: {f}");
    }
    (dir, json)
}

const WATANABE_TINY: &str = r#"
kind = "watanabe"
name = "watanabe_tiny"
max_batch = 4
[network]
n_mn = 40
n_dd = 400
duration_s = 0.4
[reference]
protocol = "oscillating"
dc_hz = 50.0
[dc]
lower = 1.0
upper = 100.0
init = 60.0
[[methods]]
method = "secant"
budget = 4
h_hz = 1.0
tol = 0.005
[[methods]]
method = "newton_autodiff"
budget = 3
tol = 0.005
[[methods]]
method = "brent"
budget = 4
[[methods]]
method = "smooth_lbfgs"
iters = 2
memory = 2
"#;

#[test]
fn calibrate_writes_the_report_for_a_tiny_watanabe_spec() {
    let (dir, json) = calibrate(WATANABE_TINY, "watanabe");
    let fits = json["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 4, "{json}");
    for f in fits.iter().filter(|f| f["method"] != "smooth_lbfgs") {
        assert!(f["evaluations"].as_u64().unwrap() <= 4, "{f}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// A tiny joint problem (smooth network, d = 1, 2; L-BFGS and Nelder–Mead).
const JOINT_TINY: &str = concat!(
    r#"
kind = "joint"
name = "joint_tiny"
max_evals = 6
max_batch = 4
dims = [1, 2]
[network]
n_mn = 20
n_dd = 200
duration_s = 0.3
dt_s = 2e-4
seed = 3
"#,
    joint_truth_and_bounds!(),
    r#"[start]
dc_hz = 60.0
amp_hz = 10.0
weight_us = 0.05
noise_sd_hz = 3.0
[[methods]]
method = "lbfgs"
iters = 50
memory = 4
[[methods]]
method = "nelder_mead"
budget = 1000
step = 0.5
"#
);

#[test]
fn calibrate_writes_the_report_for_a_tiny_joint_spec() {
    let spec = JOINT_TINY;
    let (dir, json) = calibrate(spec, "joint");
    let fits = json["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 4, "2 methods × 2 dimensions: {json}");
    for f in fits {
        // The shared evaluation budget caps every method (L-BFGS may finish one line-search
        // step past it at most: the budget is checked before each evaluation).
        assert!(f["evaluations"].as_u64().unwrap() <= 6, "{f}");
    }
    assert_eq!(json["extra"]["scaling"].as_array().unwrap().len(), 4);
    assert!(dir.join("report/scaling.png").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn calibrate_writes_the_report_for_a_tiny_noise_spec() {
    let data = require_data();
    let mut spec = NoiseCalibrationSpec::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/noise_rest.toml"),
    )
    .unwrap();
    spec.name = "noise_tiny".into();
    spec.estimator_study = None;
    spec.set_budget(myodiff::fit::Budget {
        max_evals: Some(8),
        time_s: None,
    });
    spec.methods = vec![
        myodiff::fit::Method::Lbfgs {
            iters: 3,
            memory: 3,
        },
        myodiff::fit::Method::RandomSearch {
            budget: 8,
            batch: 4,
            seed: 0,
        },
    ];
    spec.myogen_metric.realisations = 2;
    spec.myogen_metric.seeds = vec![0];
    spec.data.path = Some(data);
    let (dir, json) = calibrate(&toml::to_string(&spec).unwrap(), "noise");
    assert_eq!(json["fits"].as_array().unwrap().len(), 2, "{json}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn calibrate_writes_the_report_for_a_tiny_recording_spec() {
    let data = require_data();
    let spec = format!(
        r#"
kind = "recording"
name = "recording_tiny"
max_evals = 4
max_batch = 4
[network]
n_mn = 40
n_dd = 400
dt_s = 2.5e-4
seed = 42
[data]
path = {data:?}
window = [1792, 12288]
units = [1, 2]
[drive]
knots = 4
fit_noise = false
[[methods]]
method = "lbfgs"
iters = 2
memory = 2
[[methods]]
method = "random_search"
budget = 4
batch = 4
seed = 0
"#,
        data = data.display().to_string()
    );
    let (dir, json) = calibrate(&spec, "recording");
    assert_eq!(json["fits"].as_array().unwrap().len(), 2, "{json}");
    for f in ["force_fit.png", "rates_fit.png", "drive_fit.png"] {
        assert!(dir.join("report").join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn calibrate_dispatch_errors_and_default_report_path() {
    let dir = tmp("dispatch");
    // Unknown kind.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "kind = \"reflex\"\n").unwrap();
    let o = myodiff(&["calibrate", bad.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("kind") && err.contains("reflex"), "{err}");
    // Missing file.
    let o = myodiff(&["calibrate", dir.join("absent.toml").to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("absent.toml"), "{err}");
    // Not TOML.
    let junk = dir.join("junk.toml");
    std::fs::write(&junk, "kind = [").unwrap();
    let o = myodiff(&["calibrate", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // A spec error names the field.
    let invalid = dir.join("invalid.toml");
    std::fs::write(
        &invalid,
        WATANABE_TINY.replace("init = 60.0", "init = 160.0"),
    )
    .unwrap();
    let o = myodiff(&["calibrate", invalid.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("init") && err.contains("160"), "{err}");
    // No --out: reports/<name> under the working directory.
    let spec = dir.join("w.toml");
    std::fs::write(
        &spec,
        WATANABE_TINY.replace(
            "\nmethod = \"smooth_lbfgs\"\niters = 2\nmemory = 2\n",
            "\nmethod = \"brent\"\nbudget = 2\n",
        ),
    )
    .unwrap();
    let o = myodiff_in(Some(&dir), &["calibrate", "w.toml"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    assert!(
        dir.join("reports/watanabe_tiny/summary.json").exists(),
        "default report path: {out}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Every TOML spec shipped under `calibration/` and `experiments/` parses and validates with the
/// library loader of its kind.
#[test]
fn every_shipped_spec_parses_and_validates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for sub in ["calibration", "experiments"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let r = match kind {
                _ if sub == "experiments" => {
                    myodiff::experiment::Experiment::from_path(&p).map(|_| ())
                }
                "noise" => NoiseCalibrationSpec::load(&p).map(|_| ()),
                "watanabe" => WatanabeSpec::load(&p).map(|_| ()),
                "joint" => JointSpec::load(&p).map(|_| ()),
                "recording" => RecordingFitSpec::load(&p).map(|_| ()),
                "reflex" => myodiff::fit::reflex::ReflexSpec::load(&p).map(|_| ()),
                other => panic!("{p:?}: no loader for kind {other:?}"),
            };
            r.unwrap_or_else(|e| panic!("{p:?}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 5, "found {n} shipped specs");
}

/// `myodiff gradcheck`: autodiff vs central differences passes on the smooth joint problem, the
/// same check with an impossible tolerance fails with exit code 1 (negative control), bad options
/// are named; on the spiking network the reference is a seed average with a standard error.
#[test]
fn gradcheck_checks_a_tiny_joint_spec_and_can_fail() {
    let dir = tmp("gradcheck");
    let spec = dir.join("joint_tiny.toml");
    std::fs::write(&spec, JOINT_TINY).unwrap();
    let sp = spec.to_str().unwrap();
    let o = myodiff(&["--json", "gradcheck", sp]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "dims = [1, 2]: dc_hz and amp_hz: {r}");
    for row in rows {
        assert!(row["pass"].as_bool().unwrap(), "{row}");
        assert!(row["error"].as_f64().unwrap() <= 1e-4, "{row}");
        assert!(row["analytic"].as_f64().unwrap() != 0.0, "{row}");
    }
    // negative control: agreement to 1e-15 is beyond f64 central differences
    let o = myodiff(&["gradcheck", sp, "--tol", "1e-15", "--param", "dc_hz"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL") && out.contains("dc_hz"), "{out}");
    assert!(!out.contains("amp_hz"), "--param selects: {out}");
    // bad options
    let o = myodiff(&["gradcheck", sp, "--param", "bogus_hz"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--param bogus_hz"), "{}", text(&o).1);
    let o = myodiff(&["gradcheck", sp, "--at", "dc_hz=fast"]);
    assert_eq!(o.status.code(), Some(2), "usage error");
    let o = myodiff(&["gradcheck", sp, "--at", "dc_hz=500"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--at dc_hz"), "{}", text(&o).1);
    let o = myodiff(&["gradcheck", sp, "--seeds", "1"]);
    assert!(text(&o).1.contains("--seeds"), "{}", text(&o).1);
    // the spiking network: seed-averaged reference with its standard error
    let spiking = dir.join("joint_spiking_tiny.toml");
    // (1 s at a truth of 80 Hz: the tiny pool's event-time network is active)
    let text_spiking = JOINT_TINY
        .replace("duration_s = 0.3", "duration_s = 1.0")
        .replacen("dc_hz = 45.0", "dc_hz = 80.0", 1);
    std::fs::write(
        &spiking,
        format!("{text_spiking}\n[gradient]\nmodel = \"spiking\"\n"),
    )
    .unwrap();
    let o = myodiff(&[
        "--json",
        "gradcheck",
        spiking.to_str().unwrap(),
        "--seeds",
        "3",
        "--at",
        "dc_hz=70",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        r["reference"]
            .as_str()
            .unwrap()
            .contains("3 other network seeds"),
        "{r}"
    );
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows[0]["x"].as_f64(), Some(70.0), "--at applies: {r}");
    for row in rows {
        let se = row["reference_se"].as_f64().unwrap();
        assert!(se.is_finite() && se > 0.0, "{row}");
        assert!(row["reference"].as_f64().unwrap().is_finite(), "{row}");
    }
    std::fs::remove_dir_all(dir).ok();
}
