//! Resumable calibrations (issue 10 item 3): a `myodiff calibrate` process killed mid-run
//! (SIGKILL, a real process kill) and continued with `--resume` ends with the same final
//! parameters, losses and evaluation counts, bit for bit, as an uninterrupted run; an existing
//! report directory is refused without `--resume`/`--force`; a checkpoint of another spec is
//! refused with the reason.

#[macro_use]
mod joint_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A joint fit on the spiking network (plain f64 host arithmetic: deterministic), four methods
/// of every kind (quasi-Newton, Adam, simplex, seeded swarm), evaluation budgets only.
const SPEC: &str = concat!(
    r#"
kind = "joint"
name = "resume_test"
max_evals = 40
dims = [2]
[gradient]
model = "spiking"
[network]
n_mn = 40
n_dd = 400
duration_s = 1.0
dt_s = 2e-4
seed = 3
"#,
    joint_truth_and_bounds!(),
    joint_start!(),
    r#"[[methods]]
method = "lbfgs"
iters = 100
memory = 6
[[methods]]
method = "adam"
lr = 0.1
iters = 1000
[[methods]]
method = "nelder_mead"
budget = 1000
step = 0.5
[[methods]]
method = "particle_swarm"
budget = 1000
particles = 6
seed = 1
"#
);

fn myodiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myodiff"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myodiff_resume_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn calibrate(spec: &Path, out: &Path, extra: &[&str]) -> Output {
    myodiff()
        .arg("calibrate")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .args(extra)
        .output()
        .expect("myodiff runs")
}

/// Evaluations journalled so far under `out/checkpoints` (lines after each file's header).
fn journalled(out: &Path) -> usize {
    let Ok(d) = std::fs::read_dir(out.join("checkpoints")) else {
        return 0;
    };
    d.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.lines().count().saturating_sub(1))
        .sum()
}

/// (method, x_best bits, loss_best bits, evaluations, gradients) of every fit.
fn fits(out: &Path) -> Vec<(String, Vec<u64>, u64, u64, u64)> {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    j["fits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["method"].as_str().unwrap().to_string(),
                f["x_best"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap().to_bits())
                    .collect(),
                f["loss_best"].as_f64().unwrap().to_bits(),
                f["evaluations"].as_u64().unwrap(),
                f["gradients"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn killed_calibration_resumes_to_the_same_result() {
    let dir = tmp("kill");
    let spec = dir.join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();

    // Uninterrupted run.
    let full = dir.join("full");
    let o = calibrate(&spec, &full, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = fits(&full);
    let total = journalled(&full);
    assert_eq!(expected.len(), 4);
    eprintln!("uninterrupted: {total} journalled evaluations, fits {expected:?}");

    // The same run, killed once about half of the evaluations are journalled.
    let cut = dir.join("cut");
    let mut child = myodiff()
        .arg("calibrate")
        .arg(&spec)
        .arg("--out")
        .arg(&cut)
        .arg("--quiet")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while journalled(&cut) < total / 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no progress in the journal"
        );
        if child.try_wait().unwrap().is_some() {
            panic!("the run finished before it could be killed ({total} evaluations in all)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill");
    child.wait().unwrap();
    let at_kill = journalled(&cut);
    eprintln!("killed after {at_kill} of {total} evaluations");
    assert!(at_kill < total, "killed mid-way");
    assert!(
        !cut.join("summary.json").exists(),
        "no summary of a killed run"
    );

    // Without --resume the directory is refused.
    let o = calibrate(&spec, &cut, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--resume") && err.contains("--force"), "{err}");

    // Resumed: identical fits.
    let o = calibrate(&spec, &cut, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fits(&cut), expected);
    assert_eq!(journalled(&cut), total);

    // A checkpoint of another spec is refused with the reason.
    let other = dir.join("other.toml");
    std::fs::write(&other, SPEC.replace("lr = 0.1", "lr = 0.2")).unwrap();
    let o = calibrate(&other, &cut, &["--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to spec"), "{err}");

    // --resume with nothing to resume, --force replaces.
    let fresh = dir.join("fresh");
    let o = calibrate(&spec, &fresh, &["--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("checkpoints"), "{err}");
    let o = calibrate(&other, &full, &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(fits(&full), expected, "a different spec, a fresh run");

    // Usage errors exit 2.
    let o = myodiff()
        .args(["calibrate", "x.toml", "--resume", "--force"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}

/// `--json` prints the run summary as one JSON document on stdout.
#[test]
fn json_summary_on_stdout() {
    let dir = tmp("json");
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        SPEC.replace("max_evals = 40", "max_evals = 4")
            .replace("dims = [2]", "dims = [1]"),
    )
    .unwrap();
    let out = dir.join("r");
    let o = calibrate(&spec, &out, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["problem"], "resume_test");
    assert_eq!(v["fits"].as_array().unwrap().len(), 4);
    assert!(v["report_dir"].as_str().unwrap().ends_with('r'));
    std::fs::remove_dir_all(dir).ok();
}
