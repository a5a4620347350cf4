//! Benchmark of the fast LIF pool: plain Rust loop vs fused op (forward, forward+backward) vs tape.
//! Usage: `cargo run --release --example bench_lif -- <case> <batch> <steps>` with case one of
//! plain, fused_fwd, fused_grad, tape_fwd, tape_grad. Prints wall time and peak RSS (VmHWM).
//! Run one case per process so that VmHWM belongs to that case.

use std::time::Instant;

use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation, to_vec_f64};
use myodiff::neuron::SpikeMode;
use myodiff::neuron::fused::reference::lif_forward_plain;
use myodiff::neuron::lif::{LifConfig, LifInput, LifParams, LifPool, LifUnitValues};

const N: usize = 800;
const DT: f64 = 1e-4;

fn vm_hwm_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Cheap deterministic conductance pattern (S), [t, b, n] row-major: rates of a few to ~40 Hz.
fn input(t: usize, b: usize) -> Vec<f32> {
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut out = Vec::with_capacity(t * b * N);
    for _ in 0..t * b {
        for j in 0..N {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32; // [0,1)
            let base = 1.0e-7 + 3.0e-7 * j as f32 / N as f32;
            out.push(base * (0.4 + 1.2 * u));
        }
    }
    out
}

fn rt() -> Vec<f64> {
    (0..N)
        .map(|i| 0.01 * (100.0f64).powf(i as f64 / (N - 1) as f64))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("plain");
    let b: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let t: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let x = input(t, b);
    let base_mb = vm_hwm_mb();
    let t0 = Instant::now();
    let spikes: f64;
    match case {
        "plain" => {
            let v = LifUnitValues::calibrated(&rt()).unwrap();
            let ctx = Ctx::cpu();
            let c = LifParams::from_values(&ctx, &v)
                .unwrap()
                .coefficients(DT, b)
                .unwrap()
                .stacked();
            let coef: Vec<f32> = to_vec_f64(c).into_iter().map(|x| x as f32).collect();
            let mut s = vec![0.0f32; t * b * N];
            if std::env::var("PRETOUCH").is_ok() {
                s.iter_mut().for_each(|v| *v = 1.0);
            }
            let t1 = Instant::now();
            spikes = lif_forward_plain(&x, &coef, t, b * N, LifInput::Conductance, &mut s) as f64;
            println!("plain loop core: {:.3} s", t1.elapsed().as_secs_f64());
        }
        "fused_fwd" | "tape_fwd" => {
            let ctx = Ctx::cpu();
            let params = LifParams::calibrated(&ctx, &rt()).unwrap();
            let xt = ctx.tensor_f32(x, [t, b, N]);
            let mut sim = Simulation::new(ctx.clone(), b, DT, t).unwrap();
            sim.add_stage(LifPool::new("mn", params, LifConfig::default()).unwrap());
            sim.add_input(BufferSpec::new("syn_conductance_s", &[N], "S"), xt)
                .unwrap();
            sim.check_finite(false);
            let path = if case == "fused_fwd" {
                ExecPath::Fused
            } else {
                ExecPath::Tape
            };
            let t1 = Instant::now();
            let r = sim.run_path(path).unwrap();
            println!("run_path core: {:.3} s", t1.elapsed().as_secs_f64());
            spikes = to_vec_f64(r.trace("spikes").unwrap().sum())[0];
        }
        "fused_grad" | "tape_grad" => {
            let ctx = Ctx::cpu().autodiff();
            let mut params = LifParams::calibrated(&ctx, &rt()).unwrap();
            params.tau_m_s = params.tau_m_s.require_grad();
            params.v_thresh_v = params.v_thresh_v.require_grad();
            params.r_ohm = params.r_ohm.require_grad();
            let (tm, th) = (params.tau_m_s.clone(), params.v_thresh_v.clone());
            let xt = ctx.tensor_f32(x, [t, b, N]);
            let mut sim = Simulation::new(ctx.clone(), b, DT, t).unwrap();
            let cfg = LifConfig {
                mode: SpikeMode::Surrogate,
                ..Default::default()
            };
            sim.add_stage(LifPool::new("mn", params, cfg).unwrap());
            sim.add_input(BufferSpec::new("syn_conductance_s", &[N], "S"), xt)
                .unwrap();
            sim.check_finite(false);
            let path = if case == "fused_grad" {
                ExecPath::Fused
            } else {
                ExecPath::Tape
            };
            let t1 = Instant::now();
            let r = sim.run_path(path).unwrap();
            let loss = r.trace("spikes").unwrap().sum();
            drop(r);
            let tf = t1.elapsed().as_secs_f64();
            spikes = to_vec_f64(loss.clone())[0];
            let t2 = Instant::now();
            let g = loss.backward();
            println!(
                "core: forward (run_path + sum) {tf:.3} s, backward {:.3} s, total {:.3} s",
                t2.elapsed().as_secs_f64(),
                tf + t2.elapsed().as_secs_f64()
            );
            let gt = to_vec_f64(tm.grad(&g).unwrap());
            let gth = to_vec_f64(th.grad(&g).unwrap());
            println!(
                "forward part {tf:.3} s; |dL/dtau_m| sum {:.3e}, |dL/dθ| sum {:.3e}",
                gt.iter().map(|v| v.abs()).sum::<f64>(),
                gth.iter().map(|v| v.abs()).sum::<f64>()
            );
        }
        other => panic!("unknown case {other}"),
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "case {case} batch {b} steps {t} n {N}: {el:.3} s ({:.3} µs/step), spikes {spikes}, mean rate {:.2} Hz, VmHWM {:.0} MB (input built: {base_mb:.0} MB)",
        el / t as f64 * 1e6,
        spikes / (b * N) as f64 / (t as f64 * DT),
        vm_hwm_mb()
    );
}
