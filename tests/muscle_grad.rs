//! Gradient checks of the TwitchForce stage (f64, tape path): autodiff vs central finite
//! differences of the mean force w.r.t. RP, T_L, RT, F0 and a continuous (rate-mode) spike input.
//! Tolerance: relative error <= 1e-4 per parameter (each parameter checked on its own).

use burn::tensor::Tensor;
use myodiff::gradcheck::{GradCheck, central_differences};
use myodiff::kernel::{BufferSpec, Ctx, Simulation, scalar_f64, to_vec_f64};
use myodiff::muscle::{GainMode, TwitchForce, fuglevand_twitches};

const N: usize = 4;
const N_T: usize = 300;
const DT: f64 = 1e-3;
const REL_TOL: f64 = 1e-4;

#[derive(Clone, Copy, Debug)]
struct Setup {
    gain: GainMode,
    delays: bool,
    saturation: bool,
}

/// A smooth rate-mode spike input in (0, 1): expected spikes per step, 20–60 Hz.
fn rate_input() -> Vec<f64> {
    let mut v = Vec::with_capacity(N_T * N);
    for t in 0..N_T {
        for u in 0..N {
            let ph = 2.0 * std::f64::consts::PI * t as f64 / (80.0 + 13.0 * u as f64);
            v.push(0.02 + 0.01 * u as f64 + 0.015 * (1.0 + ph.sin()));
        }
    }
    v
}

/// Mean force (N) over the rollout, as a differentiable scalar, for params `x = [RP, T_L, RT, F0]`.
fn mean_force(ctx: &Ctx, x: &[Tensor<2>; 4], spikes: Tensor<3>, s: Setup) -> Tensor<1> {
    let [rp, tl, rt, f0] = x;
    let tw = fuglevand_twitches(rp, tl, rt, N).unwrap();
    let mut stage = TwitchForce::new(tw, f0.clone()).unwrap().with_gain(s.gain);
    if s.delays {
        stage = stage.with_delay_steps(vec![0, 3, 5, 1]).unwrap();
    }
    if s.saturation {
        stage = stage
            .with_saturation(ctx.tensor(vec![0.3, 0.2, 0.1, 0.05], [1, N]))
            .unwrap();
    }
    let mut sim = Simulation::new(ctx.clone(), 1, DT, N_T).unwrap();
    sim.add_input(BufferSpec::new("spikes", &[N], "1"), spikes)
        .unwrap();
    sim.add_stage(stage);
    let roll = sim.run().unwrap();
    roll.trace("force_n").unwrap().mean().reshape([1])
}

fn params(ctx: &Ctx, x: &[f64]) -> [Tensor<2>; 4] {
    [0, 1, 2, 3].map(|i| ctx.tensor(vec![x[i]], [1, 1]))
}

fn value(x: &[f64], spikes: &[f64], s: Setup) -> f64 {
    let ctx = Ctx::cpu().f64();
    let sp = ctx.tensor(spikes.to_vec(), [N_T, 1, N]);
    scalar_f64(mean_force(&ctx, &params(&ctx, x), sp, s))
}

/// Autodiff gradient w.r.t. the four parameters and the spike input.
fn autodiff(x: &[f64], spikes: &[f64], s: Setup) -> (Vec<f64>, Vec<f64>) {
    let ctx = Ctx::cpu().f64().autodiff();
    let p = params(&ctx, x).map(|t| t.require_grad());
    let sp = ctx.tensor(spikes.to_vec(), [N_T, 1, N]).require_grad();
    let loss = mean_force(&ctx, &p, sp.clone(), s);
    let grads = loss.backward();
    let gp = p
        .iter()
        .map(|t| to_vec_f64(t.grad(&grads).expect("param grad"))[0])
        .collect();
    let gs = to_vec_f64(sp.grad(&grads).expect("spike grad"));
    (gp, gs)
}

const X0: [f64; 4] = [30.0, 0.09, 3.0, 2.0];
const NAMES: [&str; 4] = ["RP", "T_L", "RT", "F0"];

fn check_params(s: Setup) {
    let spikes = rate_input();
    let (g, _) = autodiff(&X0, &spikes, s);
    for i in 0..4 {
        let h = 1e-6 * X0[i];
        let mut f = |xi: &[f64]| {
            let mut x = X0;
            x[i] = xi[0];
            Ok(value(&x, &spikes, s))
        };
        let num = central_differences(&mut f, &[X0[i]], &[h]).unwrap();
        let c = GradCheck::compare(vec![g[i]], num).unwrap();
        eprintln!(
            "{s:?} d mean F / d {}: autodiff {:.9e}, FD {:.9e}, rel err {:.2e}",
            NAMES[i], g[i], c.numeric[0], c.max_rel_err
        );
        assert!(
            g[i].abs() > 1e-8 || NAMES[i] == "RP",
            "{} gradient vanishes",
            NAMES[i]
        );
        c.check(REL_TOL, 0.999_999)
            .unwrap_or_else(|e| panic!("{s:?} {}: {e}", NAMES[i]));
    }
}

#[test]
fn grad_params_fuglevand_gain() {
    check_params(Setup {
        gain: GainMode::Fuglevand,
        delays: false,
        saturation: false,
    });
}

#[test]
fn grad_params_fuglevand_delays_saturation() {
    check_params(Setup {
        gain: GainMode::Fuglevand,
        delays: true,
        saturation: true,
    });
}

#[test]
fn grad_params_compat_and_none() {
    for gain in [GainMode::MyogenCompat, GainMode::None] {
        check_params(Setup {
            gain,
            delays: true,
            saturation: false,
        });
    }
}

#[test]
fn grad_spike_input_rate_mode() {
    for s in [
        Setup {
            gain: GainMode::Fuglevand,
            delays: true,
            saturation: true,
        },
        Setup {
            gain: GainMode::MyogenCompat,
            delays: false,
            saturation: false,
        },
    ] {
        let spikes = rate_input();
        let (_, gs) = autodiff(&X0, &spikes, s);
        assert_eq!(gs.len(), N_T * N);
        // directional derivative along a fixed pseudo-random direction
        let mut state = 12345u64;
        let v: Vec<f64> = (0..N_T * N)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect();
        let analytic: f64 = gs.iter().zip(&v).map(|(a, b)| a * b).sum();
        let mut f = |e: &[f64]| {
            let sp: Vec<f64> = spikes.iter().zip(&v).map(|(s, d)| s + e[0] * d).collect();
            Ok(value(&X0, &sp, s))
        };
        let num = central_differences(&mut f, &[0.0], &[1e-5]).unwrap();
        let c = GradCheck::compare(vec![analytic], num).unwrap();
        eprintln!(
            "{s:?} directional d mean F / d s: autodiff {analytic:.9e}, FD {:.9e}, rel err {:.2e}",
            c.numeric[0], c.max_rel_err
        );
        c.check(REL_TOL, 0.999_999).unwrap();
        // and single entries (early spikes matter more; the last steps cannot reach the output)
        for &(t, u) in &[(10usize, 0usize), (120, 2), (250, 3), (N_T - 1, 1)] {
            let k = t * N + u;
            let mut f = |e: &[f64]| {
                let mut sp = spikes.clone();
                sp[k] += e[0];
                Ok(value(&X0, &sp, s))
            };
            let num = central_differences(&mut f, &[0.0], &[1e-5]).unwrap();
            if t == N_T - 1 {
                assert_eq!(gs[k], 0.0, "the last step's spike cannot change the force");
                assert!(num[0].abs() < 1e-12);
                continue;
            }
            let c = GradCheck::compare(vec![gs[k]], num).unwrap();
            c.check(REL_TOL, 0.999_999)
                .unwrap_or_else(|e| panic!("{s:?} entry ({t},{u}): {e}"));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Fused path (one custom op with a hand-written adjoint) == tape path, forward and gradients.
// ------------------------------------------------------------------------------------------

/// Mean force and its gradients (params + spike input) on the given path, batch 2 (the second
/// batch element has its own F0 and a scaled input).
fn path_run(
    s: Setup,
    path: myodiff::kernel::ExecPath,
    direct: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ctx = Ctx::cpu().f64().autodiff();
    let p = params(&ctx, &X0).map(|t| t.require_grad());
    let f0b = ctx.tensor(vec![X0[3], 0.7 * X0[3]], [2, 1]);
    let mut sv = rate_input();
    sv = sv
        .chunks(N)
        .flat_map(|row| {
            row.iter()
                .copied()
                .chain(row.iter().map(|x| 1.3 * x))
                .collect::<Vec<_>>()
        })
        .collect();
    let sp = ctx.tensor(sv, [N_T, 2, N]).require_grad();
    let [rp, tl, rt, f0] = &p;
    let tw = fuglevand_twitches(rp, tl, rt, N).unwrap();
    let mut stage = TwitchForce::new(tw, f0.clone() * f0b.clone() / X0[3])
        .unwrap()
        .with_gain(s.gain);
    if s.delays {
        stage = stage.with_delay_steps(vec![0, 3, 5, 1]).unwrap();
    }
    if s.saturation {
        stage = stage
            .with_saturation(ctx.tensor(vec![0.3, 0.2, 0.1, 0.05], [1, N]))
            .unwrap();
    }
    let force = if direct {
        stage.fused_force(sp.clone(), &ctx, DT).unwrap()
    } else {
        let mut sim = Simulation::new(ctx.clone(), 2, DT, N_T).unwrap();
        sim.add_input(BufferSpec::new("spikes", &[N], "1"), sp.clone())
            .unwrap();
        sim.add_stage(stage);
        sim.run_path(path).unwrap().trace("force_n").unwrap()
    };
    let fv = to_vec_f64(force.clone());
    // a loss that weights time and batch differently
    let wts: Vec<f64> = (0..N_T * 2)
        .map(|k| 1.0 + 0.5 * ((k as f64) * 0.37).sin())
        .collect();
    let loss = (force * ctx.tensor(wts, [N_T, 2, 1])).mean();
    let grads = loss.backward();
    let gp = p
        .iter()
        .map(|t| to_vec_f64(t.grad(&grads).expect("param grad"))[0])
        .collect();
    let gs = to_vec_f64(sp.grad(&grads).expect("spike grad"));
    (fv, gp, gs)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn fused_equals_tape_forward_and_gradients() {
    use myodiff::kernel::ExecPath;
    for s in [
        Setup {
            gain: GainMode::Fuglevand,
            delays: false,
            saturation: false,
        },
        Setup {
            gain: GainMode::Fuglevand,
            delays: true,
            saturation: true,
        },
        Setup {
            gain: GainMode::MyogenCompat,
            delays: true,
            saturation: false,
        },
        Setup {
            gain: GainMode::None,
            delays: false,
            saturation: true,
        },
    ] {
        let (ft, gpt, gst) = path_run(s, ExecPath::Tape, false);
        for direct in [false, true] {
            let (ff, gpf, gsf) = path_run(s, ExecPath::Fused, direct);
            let ef = max_rel(&ff, &ft);
            let es = max_rel(&gsf, &gst);
            eprintln!("{s:?} direct={direct}: force rel {ef:.2e}, spike-grad rel {es:.2e}");
            assert!(ef < 1e-12, "{s:?}: fused force differs from tape by {ef:e}");
            assert!(es < 1e-10, "{s:?}: fused spike gradient differs by {es:e}");
            for i in 0..4 {
                let e = (gpf[i] - gpt[i]).abs() / gpt[i].abs().max(1e-300);
                assert!(
                    e < 1e-10,
                    "{s:?} d/d{}: fused {} vs tape {} ({e:e})",
                    NAMES[i],
                    gpf[i],
                    gpt[i]
                );
            }
        }
    }
}
