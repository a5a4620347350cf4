//! Rollout benchmark at MyoGen's Watanabe size: 800 motor neurons, 400 Poisson inputs, p = 0.3,
//! dt = 0.1 ms, 5 s (50,000 steps), oscillating drive (DC 40 Hz + 20 Hz × sin(2π·20 t) + noise).
//! Forward time, forward+backward time (d mean force / d DC) and peak memory (VmHWM) for both
//! membrane models, both paths and batch 1 / 16. Each case runs in its own process so that
//! VmHWM belongs to that case.
//!
//! `cargo bench --bench rollout` runs the default table; `cargo bench --bench rollout -- <case>…`
//! runs chosen cases, e.g. `fast-fused-grad-16-50000`. A case is
//! `<fast|faithful|closed>-<tape|fused|stream>-<fwd|grad>-<batch>-<steps>`; `closed` is the
//! closed loop (issue 11) at the same size and drive: the fast pool, MyoGen's example-11 afferent
//! populations (73 Ia, 80 II, 58 Ib fibres; 120 gII and 145 gIb interneurons), the FDI Hill
//! muscle and the joint; its "mean force" is the Hill tendon force.
//!
//! `fast-plain-fwd-1-<steps>` times the plain-Rust reference loop ([`plain`]): the same
//! arithmetic written by hand as one loop, without the simulator.
//!
//! The `gradient` column says whether each timed gradient is finite; a non-finite or missing
//! gradient (or a crashed case) is marked **FAILED** in the table and the benchmark exits 1.

#[path = "rollout/plain.rs"]
mod plain;

use std::process::Command;
use std::time::Instant;

use myodiff::closed_loop::{self, ClosedLoopConfig, ClosedLoopParams};
use myodiff::drive::generator::GeneratorMode;
use myodiff::drive::rate::DriveParams;
use myodiff::kernel::{Ctx, ExecPath, to_vec_f64};
use myodiff::network::{MYOGEN_WEIGHT_S, MembraneModel, MuscleParams, NetworkConfig, build};
use myodiff::neuron::SpikeMode;

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

struct Case {
    /// `None` = the closed loop.
    model: Option<MembraneModel>,
    /// The plain-Rust reference loop (`fast-plain-fwd-1-<steps>`) instead of the simulator.
    plain: bool,
    path: ExecPath,
    grad: bool,
    batch: usize,
    steps: usize,
}

impl Case {
    fn model_name(&self) -> String {
        if self.plain {
            return "plain Rust loop (fast)".into();
        }
        self.model
            .map_or("closed loop (fast)".into(), |m| format!("{m:?}"))
    }
}

fn parse(s: &str) -> Option<Case> {
    let p: Vec<&str> = s.split('-').collect();
    if p.len() != 5 {
        return None;
    }
    Some(Case {
        model: match p[0] {
            "closed" => None,
            m => Some(m.parse().ok()?),
        },
        plain: p[1] == "plain",
        path: match p[1] {
            "plain" => ExecPath::Stream,
            "tape" => ExecPath::Tape,
            "fused" => ExecPath::Fused,
            "stream" => ExecPath::Stream,
            _ => return None,
        },
        grad: p[2] == "grad",
        batch: p[3].parse().ok()?,
        steps: p[4].parse().ok()?,
    })
}

/// The stream adjoint's checkpoint interval: ⌈√T⌉ ticks (memory O(√T)).
fn checkpoint_every(steps: usize) -> usize {
    ((steps as f64).sqrt().ceil() as usize).clamp(1, steps)
}

/// `d(mean of a [T, B, 1] trace over the second half)/d(trace)`, host, step-major.
fn second_half_mean_grad(r: &myodiff::kernel::Rollout) -> Vec<f64> {
    let (t, b) = (r.n_steps, r.batch);
    let w = 1.0 / ((t - t / 2) * b) as f64;
    (0..t * b)
        .map(|i| if i / b >= t / 2 { w } else { 0.0 })
        .collect()
}

/// Runs one case in this process; prints `RESULT <forward s> <backward s> <peak MB> <mean force>`.
fn run_one(c: &Case) -> myodiff::Result<()> {
    if c.plain {
        let t0 = Instant::now();
        let (force, spikes) = plain::run(c.steps);
        let fwd = t0.elapsed().as_secs_f64();
        eprintln!("SPIKES {spikes}");
        println!("RESULT {fwd:.4} 0 {:.1} {force:.4} 1", vm_hwm_mb());
        return Ok(());
    }
    let ctx = if c.grad {
        Ctx::cpu().autodiff()
    } else {
        Ctx::cpu()
    };
    let Some(model) = c.model else {
        return run_closed(c, &ctx);
    };
    let cfg = NetworkConfig {
        model,
        duration_s: c.steps as f64 * 1e-4,
        spike_mode: if c.grad {
            SpikeMode::Surrogate
        } else {
            SpikeMode::Hard
        },
        generator_mode: if c.grad {
            GeneratorMode::Expected
        } else {
            GeneratorMode::Hard
        },
        ..Default::default()
    };
    let stream = c.path == ExecPath::Stream;
    let ctx = if stream { ctx.inner() } else { ctx };
    let dcs: Vec<f64> = (0..c.batch).map(|b| 40.0 + b as f64).collect();
    let dc = ctx.tensor(dcs, [c.batch, 1]);
    let dc = if c.grad && !stream {
        dc.require_grad()
    } else {
        dc
    };
    let mut drive = DriveParams::watanabe_oscillating(&ctx, 40.0);
    drive.dc_hz = dc.clone();
    let muscle = MuscleParams::from_config(&cfg, &ctx)?;
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let t0 = Instant::now();
    let mut sim = build(&cfg, &ctx, c.batch, drive.clone(), w.clone(), &muscle)?;
    sim.check_finite(false);
    // MYODIFF_THREADS=1 times the stream path on one core (default: the machine's cores)
    if let Some(n) = std::env::var("MYODIFF_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        sim.threads(n)?;
    }
    let r = sim.run_path(c.path)?;
    if std::env::var_os("MYODIFF_STAGE_TIMES").is_some() {
        for (name, w) in &r.stage_wall_s {
            eprintln!("stage {name}: {w:.3} s");
        }
    }
    if let Some(e) = r.events.get("spikes") {
        eprintln!("SPIKES {}", e.len());
    }
    let f = r.trace("force_n")?;
    let [n_t, _, _] = f.dims();
    let mean = f.slice(n_t / 2..n_t).mean();
    let mean_v = to_vec_f64(mean.clone())[0];
    let fwd = t0.elapsed().as_secs_f64();
    let mut bwd = 0.0;
    // Gradient status: 1 = every component finite, 0 = some non-finite, 2 = no gradient reached
    // the DC (forward-only cases print 1).
    let mut status = 1u8;
    if c.grad && stream {
        let t1 = Instant::now();
        let mut sim = build(&cfg, &ctx, c.batch, drive, w, &muscle)?;
        sim.check_finite(false);
        let g = sim.stream_gradient(checkpoint_every(c.steps), |r| {
            Ok([("force_n".to_string(), second_half_mean_grad(r))]
                .into_iter()
                .collect())
        })?;
        bwd = t1.elapsed().as_secs_f64() - fwd;
        status = match g.grads.get("drive_rate.dc_hz") {
            None => 2,
            Some(v) => u8::from(v.iter().all(|x| x.is_finite())),
        };
    } else if c.grad {
        let t1 = Instant::now();
        let g = mean.backward();
        let gd = dc.grad(&g).map(to_vec_f64);
        bwd = t1.elapsed().as_secs_f64();
        status = match gd {
            None => 2,
            Some(v) if v.is_empty() => 2,
            Some(v) => u8::from(v.iter().all(|x| x.is_finite())),
        };
    }
    println!(
        "RESULT {fwd:.4} {bwd:.4} {:.1} {mean_v:.4} {status}",
        vm_hwm_mb()
    );
    Ok(())
}

/// The closed-loop case. `fwd`: hard spikes, any path. `grad` (stream path only): the smooth
/// (rate-mode) loop, its own forward timed first, then [`myodiff::kernel::Simulation::stream_gradient`]
/// of the mean Hill force over the second half with respect to the loop's parameters (checkpoint
/// every ⌈√T⌉ ticks); "backward" = that call's time minus the forward's.
fn run_closed(c: &Case, ctx: &Ctx) -> myodiff::Result<()> {
    let cfg = ClosedLoopConfig {
        n_mn: 800,
        duration_s: c.steps as f64 * 1e-4,
        spike_mode: if c.grad {
            SpikeMode::Rate
        } else {
            SpikeMode::Hard
        },
        ..Default::default()
    };
    let dcs: Vec<f64> = (0..c.batch).map(|b| 40.0 + b as f64).collect();
    let ctx = &ctx.clone().inner();
    let mut params = ClosedLoopParams::myogen(ctx, 40.0, 50.0);
    params.drive = DriveParams::watanabe_oscillating(ctx, 40.0);
    params.drive.dc_hz = ctx.tensor(dcs, [c.batch, 1]);
    let force = myodiff::muscle::hill::buffers::FORCE_N;
    let t0 = Instant::now();
    let mut sim = closed_loop::build(&cfg, ctx, c.batch, &params)?;
    sim.check_finite(false);
    let r = sim.run_path(c.path)?;
    let f = r.trace(force)?;
    let [n_t, _, _] = f.dims();
    let mean_v = to_vec_f64(f.slice(n_t / 2..n_t).mean())[0];
    let fwd = t0.elapsed().as_secs_f64();
    if std::env::var_os("MYODIFF_STAGE_TIMES").is_some() {
        for (name, w) in &r.stage_wall_s {
            eprintln!("stage {name}: {w:.3} s");
        }
    }
    let (mut bwd, mut status) = (0.0, 1u8);
    if c.grad {
        if c.path != ExecPath::Stream {
            return Err(myodiff::Error::config(
                "path",
                "the closed-loop gradient case runs on the stream path",
            ));
        }
        let t1 = Instant::now();
        let mut sim = closed_loop::build(&cfg, ctx, c.batch, &params)?;
        sim.check_finite(false);
        let g = sim.stream_gradient(checkpoint_every(c.steps), |r| {
            Ok([(force.to_string(), second_half_mean_grad(r))]
                .into_iter()
                .collect())
        })?;
        bwd = t1.elapsed().as_secs_f64() - fwd;
        let grads = closed_loop::param_grads(&g.grads)?;
        if std::env::var_os("MYODIFF_STAGE_TIMES").is_some() {
            eprintln!("gradients: {grads:?}");
        }
        status = u8::from(grads.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    }
    println!(
        "RESULT {fwd:.4} {bwd:.4} {:.1} {mean_v:.4} {status}",
        vm_hwm_mb()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--one") {
        let c = parse(&args[1]).expect("case");
        if let Err(e) = run_one(&c) {
            println!("ERROR {e}");
        }
        return;
    }
    let cases: Vec<String> = if args.is_empty() {
        [
            "fast-fused-fwd-1-50000",
            "fast-fused-grad-1-50000",
            "fast-fused-fwd-16-50000",
            "fast-fused-grad-16-50000",
            "fast-tape-fwd-1-50000",
            "fast-tape-grad-1-5000",
            "faithful-fused-fwd-1-50000",
            "faithful-tape-fwd-1-50000",
            "faithful-tape-grad-1-2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        args
    };
    let exe = std::env::current_exe().expect("own path");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| case | model | path | batch | steps | forward (s) | backward (s) | fwd+bwd (s) | peak RSS (MB) | mean force (N) | gradient |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = 0usize;
    for name in cases {
        let Some(c) = parse(&name) else {
            println!("| {name} | (unparsable case) | | | | | | | | | **FAILED** |");
            failed += 1;
            continue;
        };
        let out = Command::new(&exe)
            .args(["--one", &name])
            .output()
            .expect("spawn");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find(|l| l.starts_with("RESULT")) {
            Some(l) => {
                let v: Vec<f64> = l
                    .split_whitespace()
                    .skip(1)
                    .map(|x| x.parse().unwrap_or(f64::NAN))
                    .collect();
                let bwd = if c.grad {
                    format!("{:.3}", v[1])
                } else {
                    "-".into()
                };
                let tot = if c.grad {
                    format!("{:.3}", v[0] + v[1])
                } else {
                    "-".into()
                };
                let grad = if !c.grad {
                    "-".to_string()
                } else {
                    match v.get(4).copied() {
                        Some(1.0) => "finite".into(),
                        Some(0.0) => "**FAILED: non-finite**".into(),
                        Some(2.0) => "**FAILED: no gradient**".into(),
                        _ => "**FAILED: unreadable**".into(),
                    }
                };
                if grad.contains("FAILED") || !v[3].is_finite() {
                    failed += 1;
                }
                println!(
                    "| {name} | {} | {:?} | {} | {} | {:.3} | {bwd} | {tot} | {:.0} | {:.3} | {grad} |",
                    c.model_name(),
                    c.path,
                    c.batch,
                    c.steps,
                    v[0],
                    v[2],
                    v[3]
                );
            }
            None => {
                let err = text
                    .lines()
                    .find(|l| l.starts_with("ERROR"))
                    .unwrap_or("crashed");
                failed += 1;
                println!(
                    "| {name} | {} | {:?} | {} | {} | {err} | | | | | **FAILED** |",
                    c.model_name(),
                    c.path,
                    c.batch,
                    c.steps
                );
            }
        }
    }
    if failed > 0 {
        println!("{failed} case(s) FAILED (see the table)");
        std::process::exit(1);
    }
}
