//! The `myodiff` command-line tool.
//!
//! - `myodiff rollout`: one forward (and optionally gradient) evaluation of the Watanabe-size
//!   network, printed as a table; with `--grad` the spiking network's gradient next to its
//!   seed-averaged reference.
//! - `myodiff calibrate <problem.toml>`: runs a calibration problem (gradient method and
//!   derivative-free baselines on the same objective) and writes a report directory.
//! - `myodiff simulate <experiment.toml>`: runs a simulated experiment and writes a run directory
//!   (NPZ, NWB, figures; see `myodiff::experiment`).
//! - `myodiff export <run_dir> --format nwb|npz`: converts a saved run.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use myodiff::drive::rate::DriveParams;
use myodiff::kernel::{BackendKind, Ctx, ExecPath, to_vec_f64};
use myodiff::network::{MYOGEN_WEIGHT_S, MembraneModel, MuscleParams, NetworkConfig, build};
use myodiff::neuron::SpikeMode;

#[derive(Parser)]
#[command(
    name = "myodiff",
    version,
    about = "Differentiable neuromuscular simulator (SI units: s, Hz, N, V)"
)]
struct Cli {
    /// No progress bars (results are unaffected; progress goes to stderr).
    #[arg(long, global = true)]
    quiet: bool,
    /// Print the run summary as JSON on stdout (for scripts) instead of the table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Forward (and gradient) rollout of drive → inputs → motor-neuron pool → force.
    Rollout {
        /// Membrane model: fast (LIF+AHP) or faithful (NERLab two-compartment).
        #[arg(long, default_value = "fast", value_parser = ["fast", "faithful"])]
        model: String,
        /// Execution path: tape (tick-major tensor reference), fused (stage-major custom ops) or
        /// stream (tick-major host loop, both cores; not with --grad).
        #[arg(long, default_value = "fused", value_parser = ["tape", "fused", "stream"])]
        path: String,
        /// Backend: flex, ndarray or wgpu.
        #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray", "wgpu"])]
        backend: String,
        /// Batch size (candidate parameter sets evaluated at once; DC spread over 30–60 Hz).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Simulated duration (s).
        #[arg(long, default_value_t = 5.0)]
        duration_s: f64,
        /// Drive DC (Hz) for batch 1.
        #[arg(long, default_value_t = 40.0)]
        dc_hz: f64,
        /// Oscillation amplitude (Hz) at 20 Hz.
        #[arg(long, default_value_t = 20.0)]
        amp_hz: f64,
        /// Number of motor neurons.
        #[arg(long, default_value_t = 800)]
        n_mn: usize,
        /// Motor-neuron spike mode: hard, surrogate or rate (default: hard, or surrogate with --grad).
        #[arg(long, value_parser = ["hard", "surrogate", "rate"])]
        spike_mode: Option<String>,
        /// Sharpness of the motor neurons' surrogate/rate spike function (per mV).
        #[arg(long, default_value_t = 10.0)]
        spike_beta: f64,
        /// Input generator mode: hard, pathwise, rate or expected (default: hard, or expected with --grad).
        #[arg(long, value_parser = ["hard", "pathwise", "rate", "expected"])]
        generator_mode: Option<String>,
        /// Also compute d(mean force over the 2nd half)/d(DC) of the spiking network, printed next to
        /// the seed-averaged reference and their relative error (batch 1).
        #[arg(long)]
        grad: bool,
        /// Gradient estimator with --grad: difference (central difference with common random
        /// numbers, accurate: BENCHMARKS.md §7), pathwise (event-time, exact between events, blind to
        /// spike creation: biased low), insertion (event-time network, unbiased up to its horizon,
        /// high variance), surrogate (surrogate-gradient autodiff: biased, labelled as such).
        /// With --spike-mode rate the smooth model's exact autodiff gradient is used instead.
        #[arg(long, default_value = "difference", value_parser = ["difference", "pathwise", "insertion", "surrogate"])]
        estimator: String,
        /// Seeds of the reference (seed-averaged central difference) with --grad; 0 skips it.
        #[arg(long, default_value_t = 8)]
        ref_seeds: u64,
        /// Step of the central differences (Hz).
        #[arg(long, default_value_t = 1.0)]
        h_hz: f64,
    },
    /// Version, compiled-in backends and the CPU parallelism this build sees.
    Info,
    /// Runs a calibration problem from a TOML spec and writes a report directory.
    Calibrate {
        /// Problem spec (see calibration/*.toml).
        problem: PathBuf,
        /// Output directory (default: reports/<problem name>). Refused if it holds an earlier
        /// run, unless --resume or --force.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue an interrupted run in the output directory from its checkpoints (the
        /// journal of every evaluation): same result as an uninterrupted run.
        #[arg(long, conflicts_with = "force")]
        resume: bool,
        /// Replace an existing output directory.
        #[arg(long)]
        force: bool,
    },
    /// Checks the gradient a calibration problem's gradient methods use, per parameter, at the
    /// spec's starting point: autodiff (f64) against central differences, or, on the spiking
    /// network, the spec-seed estimate against its seed-averaged reference with its standard
    /// error. Exit code 1 when a component fails.
    Gradcheck {
        /// Problem spec (see calibration/*.toml).
        problem: PathBuf,
        /// Parameter to check (repeatable; default: every fitted parameter).
        #[arg(long = "param", value_name = "NAME")]
        params: Vec<String>,
        /// Check point override, NAME=VALUE in the parameter's unit (repeatable).
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_at)]
        at: Vec<(String, f64)>,
        /// Relative central-difference step (deterministic objectives).
        #[arg(long, default_value_t = 1e-5)]
        rel_h: f64,
        /// Per-component relative tolerance (deterministic objectives).
        #[arg(long, default_value_t = 1e-4)]
        tol: f64,
        /// Network seeds of the spiking model's reference.
        #[arg(long, default_value_t = 8)]
        seeds: usize,
    },
    /// Runs a simulated experiment from a TOML spec (see experiments/*.toml) and writes a run
    /// directory: result.npz, result.nwb, figures, summary.json.
    Simulate {
        /// Experiment spec.
        experiment: PathBuf,
        /// Output directory (default: runs/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing output directory.
        #[arg(long)]
        force: bool,
    },
    /// Converts the saved result of a run directory (its result.npz) to NWB or NPZ.
    Export {
        /// Run directory written by `myodiff simulate`.
        run_dir: PathBuf,
        /// Output format: nwb or npz.
        #[arg(long, value_parser = ["nwb", "npz"])]
        format: String,
        /// Output file (default: <run_dir>/result.<format>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
}

/// `NAME=VALUE` of `--at`.
fn parse_at(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    Ok((name.trim().to_string(), v))
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> myodiff::Result<()> {
    myodiff::progress::set_quiet(cli.quiet);
    let json = cli.json;
    match cli.cmd {
        Cmd::Info => {
            info(json);
            Ok(())
        }
        Cmd::Rollout {
            model,
            path,
            backend,
            batch,
            duration_s,
            dc_hz,
            amp_hz,
            n_mn,
            spike_mode,
            generator_mode,
            spike_beta,
            grad,
            estimator,
            ref_seeds,
            h_hz,
        } => rollout(
            &model,
            &path,
            &backend,
            batch,
            duration_s,
            dc_hz,
            amp_hz,
            n_mn,
            spike_mode.as_deref(),
            generator_mode.as_deref(),
            spike_beta,
            grad.then_some(GradOpts {
                estimator,
                ref_seeds,
                h_hz,
            }),
        ),
        Cmd::Gradcheck {
            problem,
            params,
            at,
            rel_h,
            tol,
            seeds,
        } => {
            let opts = myodiff::calibrate::gradcheck::GradcheckOptions {
                params,
                at,
                rel_h,
                tol,
                seeds,
            };
            let spinner = myodiff::progress::spinner("gradcheck");
            let r = myodiff::calibrate::gradcheck::gradcheck_problem(&problem, &opts);
            spinner.finish_and_clear();
            let r = r?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r)
                        .map_err(|e| myodiff::Error::format("gradcheck report", e.to_string()))?
                );
            } else {
                print!("{}", r.table());
            }
            if !r.passed {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Calibrate {
            problem,
            out,
            resume,
            force,
        } => {
            let mode = match (resume, force) {
                (true, _) => myodiff::calibrate::OutputMode::Resume,
                (_, true) => myodiff::calibrate::OutputMode::Force,
                _ => myodiff::calibrate::OutputMode::New,
            };
            let (s, dir) = myodiff::calibrate::run_problem_mode(&problem, out.as_deref(), mode)?;
            if json {
                let mut v = serde_json::to_value(&s)
                    .map_err(|e| myodiff::Error::format("run summary", e.to_string()))?;
                v["report_dir"] = serde_json::Value::String(dir.display().to_string());
                println!("{v}");
                return Ok(());
            }
            {
                println!("{}: {}", s.problem, s.description);
                println!(
                    "{:<24} {:>12} {:>12} {:>10} {:>10}",
                    "method", "best loss", "evaluations", "gradients", "wall (s)"
                );
                for f in &s.fits {
                    println!(
                        "{:<24} {:>12.4e} {:>12} {:>10} {:>10.2}",
                        f.method, f.loss_best, f.evaluations, f.gradients, f.wall_s
                    );
                }
                println!("report: {}", dir.join("report.md").display());
            }
            Ok(())
        }
        Cmd::Simulate {
            experiment,
            out,
            force,
        } => myodiff::experiment::simulate(&experiment, out.as_deref(), force).map(|(dir, s)| {
            println!(
                "{}: {} set(s), {} units, {} steps of {} s, {:.2} s wall",
                s.name, s.n_sets, s.n_units, s.n_steps, s.dt_s, s.wall_s
            );
            for (b, r) in s.sets.iter().enumerate() {
                println!(
                    "set {b}: {} spikes, mean rate {:.2} Hz, mean force {}, EMG RMS {}",
                    r.spikes,
                    r.mean_rate_hz,
                    r.mean_force_n.map_or("-".into(), |f| format!("{f:.3} N")),
                    r.emg_rms_v
                        .map_or("-".into(), |v| format!("{:.1} µV", v * 1e6)),
                );
            }
            println!("run directory: {} ({})", dir.display(), s.files.join(", "));
        }),
        Cmd::Export {
            run_dir,
            format,
            out,
            force,
        } => format.parse().and_then(|f| {
            myodiff::experiment::export(&run_dir, f, out.as_deref(), force)
                .map(|p| println!("wrote {}", p.display()))
        }),
    }
}

/// `myodiff info`: version, backends compiled in, CPU threads.
fn info(json: bool) {
    let mut backends = vec!["flex (CPU)", "ndarray (CPU)"];
    if cfg!(feature = "wgpu") {
        backends.push("wgpu (GPU; adapters are probed when a rollout uses it)");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "backends": backends,
                "cpu_threads": threads,
                "units": "SI: s, Hz, N, V, S",
            })
        );
    } else {
        println!("myodiff {}", env!("CARGO_PKG_VERSION"));
        println!("backends: {}", backends.join(", "));
        if !cfg!(feature = "wgpu") {
            println!("(GPU: not compiled in; build with --features wgpu)");
        }
        println!("CPU threads: {threads}");
        println!("units: SI (s, Hz, N, V, S)");
    }
}

/// Settings of `rollout --grad`.
struct GradOpts {
    estimator: String,
    ref_seeds: u64,
    h_hz: f64,
}

/// d(mean force over the 2nd half)/d(DC) of the tensor network `cfg` by one batch-2 rollout at
/// DC ± h (common random numbers: the same seed for both rows).
fn tensor_difference(
    cfg: &NetworkConfig,
    ctx: &Ctx,
    path: ExecPath,
    dc_hz: f64,
    amp_hz: f64,
    h: f64,
) -> myodiff::Result<f64> {
    let mut drive = DriveParams::watanabe_oscillating(ctx, dc_hz);
    drive.dc_hz = ctx.tensor(vec![dc_hz - h, dc_hz + h], [2, 1]);
    drive.amp_hz = ctx.full([1, 1], amp_hz);
    let muscle = MuscleParams::from_config(cfg, ctx)?;
    let w = ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
    let mut sim = build(cfg, ctx, 2, drive, w, &muscle)?;
    let f = sim.run_path(path)?.trace("force_n")?;
    let [n_t, _, _] = f.dims();
    let m = to_vec_f64(f.slice(n_t / 2..n_t).mean_dim(0).reshape([2]));
    Ok((m[1] - m[0]) / (2.0 * h))
}

/// The spiking network's d(mean force over the 2nd half)/d(DC) by `opts.estimator`, and the
/// seed-averaged reference (same network model). Returns the estimate (N/Hz) and the lines that
/// report it, the reference, their relative error and the estimator's cost.
fn spiking_gradient(
    cfg: &NetworkConfig,
    ctx: &Ctx,
    path: ExecPath,
    dc_hz: f64,
    amp_hz: f64,
    fwd_s: f64,
    opts: &GradOpts,
) -> myodiff::Result<(f64, Vec<String>)> {
    use myodiff::event::{
        Estimate, EventDrive, GradientProblem, InsertionOpts, Param, estimator::insertion_term,
    };
    myodiff::error::check::positive("h_hz", opts.h_hz)?;
    if opts.ref_seeds == 1 {
        return Err(myodiff::Error::invalid(
            "ref_seeds",
            1,
            "0 (no reference) or >= 2 (a standard error needs two seeds)",
        ));
    }
    let h = opts.h_hz;
    let seeds: Vec<u64> = (1..=opts.ref_seeds).collect();
    let t = Instant::now();
    let (label, est, reference) = match opts.estimator.as_str() {
        "difference" => {
            let g = tensor_difference(cfg, ctx, path, dc_hz, amp_hz, h)?;
            let cost = t.elapsed().as_secs_f64() / fwd_s;
            let mut d = Vec::new();
            for &s in &seeds {
                let c = NetworkConfig {
                    seed: s,
                    ..cfg.clone()
                };
                d.push(tensor_difference(&c, ctx, path, dc_hz, amp_hz, h)?);
            }
            (
                format!(
                    "central difference ±{h} Hz, common random numbers, seed {}; {cost:.1} forward-equivalents",
                    cfg.seed
                ),
                g,
                if d.is_empty() {
                    None
                } else {
                    Some(Estimate::from_samples(&d)?)
                },
            )
        }
        est @ ("pathwise" | "insertion") => {
            let prob = GradientProblem::mean_force_second_half(
                cfg.clone(),
                EventDrive::Sine {
                    dc_hz,
                    amp_hz,
                    freq_hz: 20.0,
                    phase_rad: 0.0,
                    noise_sd_hz: 1.0,
                },
            );
            let net = prob.network(cfg.seed)?;
            let t0 = Instant::now();
            net.run(&prob.drive, prob.weight_s, &Default::default())?;
            let fwd_event = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let g = if est == "pathwise" {
                let run = net.run(
                    &prob.drive,
                    prob.weight_s,
                    &myodiff::event::RunOptions {
                        params: vec![Param::Dc],
                        ..Default::default()
                    },
                )?;
                prob.observable.eval(&run)?.1[0]
            } else {
                let run = net.run(
                    &prob.drive,
                    prob.weight_s,
                    &myodiff::event::RunOptions {
                        params: vec![Param::Dc],
                        creation: None,
                        insertion: Some(InsertionOpts::default()),
                    },
                )?;
                insertion_term(&net, &run, prob.observable)?[0]
            };
            let cost = t1.elapsed().as_secs_f64() / fwd_event;
            let reference = if seeds.is_empty() {
                None
            } else {
                Some(prob.reference(Param::Dc, h, &seeds)?)
            };
            (
                format!(
                    "{est}, event-time network, seed {}; {cost:.1} forward-equivalents",
                    cfg.seed
                ),
                g,
                reference,
            )
        }
        other => {
            return Err(myodiff::Error::invalid(
                "estimator",
                other,
                "difference, pathwise, insertion or surrogate",
            ));
        }
    };
    if !est.is_finite() {
        return Err(myodiff::Error::NonFinite {
            buffer: "gradient".into(),
            step: 0,
            batch: 0,
            unit: 0,
        });
    }
    let mut lines = vec![format!("gradient: {est:.5} N/Hz ({label})")];
    match reference {
        Some(r) => {
            lines.push(format!(
                "reference: {:.5} ± {:.5} N/Hz (mean ± SE of central differences ±{h} Hz over seeds 1..{}, common random numbers in each seed, same network model)",
                r.mean, r.se, opts.ref_seeds
            ));
            lines.push(format!(
                "relative error: {:.1} % ({:.1} standard errors)",
                100.0 * (est - r.mean).abs() / r.mean.abs().max(1e-300),
                (est - r.mean).abs() / r.se.max(1e-300)
            ));
        }
        None => lines.push("reference: skipped (--ref-seeds 0)".into()),
    }
    Ok((est, lines))
}

#[allow(clippy::too_many_arguments)]
fn rollout(
    model: &str,
    path: &str,
    backend: &str,
    batch: usize,
    duration_s: f64,
    dc_hz: f64,
    amp_hz: f64,
    n_mn: usize,
    spike_mode: Option<&str>,
    generator_mode: Option<&str>,
    spike_beta: f64,
    grad_opts: Option<GradOpts>,
) -> myodiff::Result<()> {
    // Autodiff through the network only for the surrogate estimator and the smooth (rate) model;
    // the spiking network's gradient is estimated by `spiking_gradient` after the forward.
    let smooth = spike_mode
        .map(|m| m.eq_ignore_ascii_case("rate"))
        .unwrap_or(false);
    let grad = grad_opts
        .as_ref()
        .is_some_and(|o| o.estimator == "surrogate" || smooth);
    if grad_opts.is_some() && !grad && batch != 1 {
        return Err(myodiff::Error::invalid(
            "batch",
            batch,
            "1 with --grad (or --estimator surrogate / --spike-mode rate for per-row autodiff)",
        ));
    }
    let model: MembraneModel = model.parse()?;
    let path = match path {
        "tape" => ExecPath::Tape,
        "fused" => ExecPath::Fused,
        "stream" => ExecPath::Stream,
        other => {
            return Err(myodiff::Error::invalid(
                "path",
                other,
                "tape, fused or stream",
            ));
        }
    };
    if grad && path == ExecPath::Stream {
        return Err(myodiff::Error::invalid(
            "path",
            "stream",
            "tape or fused with --grad (burn's autodiff cannot run through the stream path's \
             host loop; its own adjoint is Simulation::stream_gradient)",
        ));
    }
    let backend: BackendKind = backend.parse()?;
    let mut ctx = Ctx::new(backend)?;
    if grad {
        ctx = ctx.autodiff();
    }
    let mut cfg = NetworkConfig {
        model,
        duration_s,
        n_mn,
        n_dd: (n_mn / 2).max(1),
        spike_beta,
        ..Default::default()
    };
    if grad {
        cfg.spike_mode = SpikeMode::Surrogate;
        cfg.generator_mode = myodiff::drive::generator::GeneratorMode::Expected;
    }
    if let Some(m) = spike_mode {
        cfg.spike_mode = m.parse()?;
    }
    if let Some(m) = generator_mode {
        cfg.generator_mode = m.parse()?;
    }
    cfg.validate()?;
    let dcs: Vec<f64> = if batch == 1 {
        vec![dc_hz]
    } else {
        (0..batch)
            .map(|b| 30.0 + 30.0 * b as f64 / (batch - 1) as f64)
            .collect()
    };
    let dc = ctx.tensor(dcs.clone(), [batch, 1]);
    let dc = if grad { dc.require_grad() } else { dc };
    let mut drive = DriveParams::watanabe_oscillating(&ctx, dc_hz);
    drive.dc_hz = dc.clone();
    drive.amp_hz = ctx.full([1, 1], amp_hz);
    let muscle = MuscleParams::from_config(&cfg, &ctx)?;
    let spin = myodiff::progress::spinner("rollout");
    spin.set_message(format!("forward, {} steps × batch {batch}", cfg.n_steps()));
    let t0 = Instant::now();
    let mut sim = build(
        &cfg,
        &ctx,
        batch,
        drive,
        ctx.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]),
        &muscle,
    )?;
    let r = sim.run_path(path)?;
    let force = r.trace("force_n")?;
    let [n_t, _, _] = force.dims();
    let half = n_t / 2;
    let mean_force = force.slice(half..n_t).mean_dim(0).reshape([batch]);
    let fwd_s = t0.elapsed().as_secs_f64();
    let (mut g, mut bwd_s) = if grad {
        spin.set_message("backward (autodiff)");
        let t1 = Instant::now();
        let grads = mean_force.clone().sum().backward();
        let g = dc.grad(&grads).map(to_vec_f64).unwrap_or_default();
        (Some(g), t1.elapsed().as_secs_f64())
    } else {
        (None, 0.0)
    };
    let (estimate, report) = match &grad_opts {
        Some(o) if !grad => {
            spin.set_message(format!(
                "gradient ({}) and its reference over {} seeds",
                o.estimator, o.ref_seeds
            ));
            let t1 = Instant::now();
            let (e, lines) = spiking_gradient(&cfg, &ctx, path, dc_hz, amp_hz, fwd_s, o)?;
            bwd_s = t1.elapsed().as_secs_f64();
            g = Some(vec![e]);
            (true, lines)
        }
        _ => (false, Vec::new()),
    };
    spin.finish_and_clear();
    let means = to_vec_f64(mean_force);
    if !r.stage_wall_s.is_empty() {
        let parts: Vec<String> = r
            .stage_wall_s
            .iter()
            .map(|(n, t)| format!("{n} {t:.3} s"))
            .collect();
        println!(
            "stage wall times ({path:?} path, forward): {}",
            parts.join(", ")
        );
        println!();
    }
    println!(
        "| model | path | backend | batch | steps | forward (s) | {} (s) |",
        if estimate {
            "gradient + reference"
        } else {
            "backward"
        }
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {model:?} | {path:?} | {backend:?} | {batch} | {} | {fwd_s:.3} | {bwd_s:.3} |",
        cfg.n_steps()
    );
    println!();
    println!(
        "| batch row | DC (Hz) | mean force 2nd half (N) | d mean force / d DC (N/Hz) | spikes |"
    );
    println!("|---|---|---|---|---|");
    for b in 0..batch {
        let res = r.result(b)?;
        let spikes: usize = res.spike_times_s.iter().map(|s| s.len()).sum();
        let gs = g
            .as_ref()
            .map(|g| format!("{:.5}", g[b]))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {b} | {:.2} | {:.4} | {gs} | {spikes} |",
            dcs[b], means[b]
        );
    }
    if !report.is_empty() {
        println!();
        for l in &report {
            println!("{l}");
        }
    }
    if grad && batch == 1 && grad_opts.is_some() {
        // The same derivative by a batched central difference of the forward model (one batch-2
        // rollout at DC ± 0.5 Hz, common random numbers), to show how far the autodiff gradient of
        // this spike mode is from the forward model's actual slope.
        let h = 0.5;
        let ctx_fd = ctx.clone().inner();
        let mut cfg_fd = cfg.clone();
        if cfg_fd.spike_mode == SpikeMode::Surrogate {
            cfg_fd.spike_mode = SpikeMode::Hard;
        }
        let mut drive = DriveParams::watanabe_oscillating(&ctx_fd, dc_hz);
        drive.dc_hz = ctx_fd.tensor(vec![dc_hz - h, dc_hz + h], [2, 1]);
        drive.amp_hz = ctx_fd.full([1, 1], amp_hz);
        let muscle = MuscleParams::from_config(&cfg_fd, &ctx_fd)?;
        let w = ctx_fd.tensor(vec![MYOGEN_WEIGHT_S], [1, 1]);
        let mut sim = build(&cfg_fd, &ctx_fd, 2, drive, w, &muscle)?;
        let f = sim.run_path(path)?.trace("force_n")?;
        let [n_t, _, _] = f.dims();
        let m = to_vec_f64(f.slice(n_t / 2..n_t).mean_dim(0).reshape([2]));
        println!();
        println!(
            "gradient check: autodiff ({:?} spikes, {:?} inputs) {:.5} N/Hz vs batched central difference (±{h} Hz) {:.5} N/Hz",
            cfg.spike_mode,
            cfg.generator_mode,
            g.as_ref().map(|g| g[0]).unwrap_or(f64::NAN),
            (m[1] - m[0]) / (2.0 * h)
        );
        if cfg.spike_mode != SpikeMode::Rate {
            println!(
                "(surrogate gradients through hard spikes are biased; `--spike-mode rate --generator-mode rate` gives the smooth model's exact gradient — see BENCHMARKS.md)"
            );
        }
    }
    Ok(())
}
