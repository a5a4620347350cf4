//! Surface-EMG readout: the spikes ⋆ MUAP convolution (FFT op and burn conv1d reference),
//! alignment, superposition, gradient check, kernel integration and bad inputs.

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::emg::muap::MuapTemplates;
use myodiff::emg::surface::{Alignment, ConvMethod, SurfaceEmg};
use myodiff::gradcheck::{GradCheck, central_differences};
use myodiff::kernel::{BufferSpec, Ctx, Simulation, names, to_vec_f64};
use rand::{Rng, SeedableRng, rngs::StdRng};

const DT: f64 = 1e-4;

fn random_templates(u: usize, rows: usize, cols: usize, k: usize, seed: u64) -> MuapTemplates {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..u * rows * cols * k)
        .map(|_| rng.random_range(-1e-4..1e-4))
        .collect();
    MuapTemplates::from_values(data, u, rows, cols, k, DT).unwrap()
}

fn random_rates(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0.0..1.0)).collect()
}

fn conv(emg: &SurfaceEmg, ctx: &Ctx, s: Vec<f64>, dims: [usize; 3]) -> Vec<f64> {
    to_vec_f64(emg.convolve(ctx.tensor(s, dims), ctx).unwrap())
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// Expected EMG of one spike of unit `u` at step `t0`, batch `b0`, by the definition.
fn one_spike_expected(
    tp: &MuapTemplates,
    t_len: usize,
    batch: usize,
    u: usize,
    t0: usize,
    b0: usize,
    align: Alignment,
) -> Vec<f64> {
    let c = tp.n_channels();
    let k = tp.n_taps;
    let mut y = vec![0.0; t_len * batch * c];
    for t in 0..t_len {
        for ch in 0..c {
            let h = tp.channel(u, ch);
            let v = match align {
                // y[t] = h[t − t0]
                Alignment::Causal => (t >= t0 && t - t0 < k).then(|| h[t - t0]),
                // numpy correlate 'same': y[t] = Σ_m s[t + m − ⌊K/2⌋] h[m] → h[t0 − t + ⌊K/2⌋]
                Alignment::MyogenSame => {
                    let m = t0 as isize - t as isize + (k / 2) as isize;
                    (m >= 0 && (m as usize) < k).then(|| h[m as usize])
                }
            };
            y[(t * batch + b0) * c + ch] = v.unwrap_or(0.0);
        }
    }
    y
}

#[test]
fn single_spike_produces_exactly_its_muap_at_the_right_delay() {
    let (u, rows, cols, k) = (3, 2, 3, 37);
    let tp = random_templates(u, rows, cols, k, 1);
    let (t_len, batch) = (700, 2); // several FFT blocks
    for align in [Alignment::Causal, Alignment::MyogenSame] {
        for method in [ConvMethod::Fft, ConvMethod::Direct] {
            let emg = SurfaceEmg::with_alignment(&tp, align)
                .unwrap()
                .method(method);
            for (unit, t0, b0) in [(1, 300, 1), (0, 0, 0), (2, 690, 0), (2, 255, 1)] {
                let mut s = vec![0.0; t_len * batch * u];
                s[(t0 * batch + b0) * u + unit] = 1.0;
                let ctx = Ctx::cpu().f64();
                let y = conv(&emg, &ctx, s.clone(), [t_len, batch, u]);
                let want = one_spike_expected(&tp, t_len, batch, unit, t0, b0, align);
                let err = max_diff(&y, &want);
                assert!(
                    err <= 1e-12 * max_abs(&want),
                    "{align:?} {method:?} unit {unit} t0 {t0}: max error {err:e}"
                );
                // f32 path (FFT rounding in single precision)
                let y32 = conv(&emg, &Ctx::cpu(), s, [t_len, batch, u]);
                let err32 = max_diff(&y32, &want);
                assert!(
                    err32 <= 2e-6 * max_abs(&want),
                    "f32 {align:?} {method:?}: max error {err32:e}"
                );
            }
        }
    }
}

#[test]
fn superposition_and_fft_equals_conv1d_reference() {
    let (u, rows, cols, k) = (5, 2, 3, 61);
    let tp = random_templates(u, rows, cols, k, 2);
    let ctx = Ctx::cpu().f64();
    for (t_len, batch) in [(1000, 2), (40, 1), (263, 3)] {
        let dims = [t_len, batch, u];
        let n = t_len * batch * u;
        let s1 = random_rates(n, 3);
        let s2 = random_rates(n, 4);
        for align in [Alignment::Causal, Alignment::MyogenSame] {
            let fft = SurfaceEmg::with_alignment(&tp, align)
                .unwrap()
                .method(ConvMethod::Fft);
            let direct = fft.clone().method(ConvMethod::Direct);
            let y1 = conv(&fft, &ctx, s1.clone(), dims);
            let y2 = conv(&fft, &ctx, s2.clone(), dims);
            let (a, b) = (0.7, -1.9);
            let s12: Vec<f64> = s1.iter().zip(&s2).map(|(x, y)| a * x + b * y).collect();
            let y12 = conv(&fft, &ctx, s12.clone(), dims);
            let lin: Vec<f64> = y1.iter().zip(&y2).map(|(x, y)| a * x + b * y).collect();
            let scale = max_abs(&lin);
            assert!(max_diff(&y12, &lin) <= 1e-12 * scale, "superposition");
            let yd = conv(&direct, &ctx, s12, dims);
            assert!(
                max_diff(&y12, &yd) <= 1e-12 * scale,
                "FFT vs conv1d ({t_len}, {batch}, {align:?}): {:e}",
                max_diff(&y12, &yd) / scale
            );
        }
    }
}

/// EMG energy `E = Σ emg²` as a function of a rate-mode spike input.
fn energy(emg: &SurfaceEmg, ctx: &Ctx, s: Tensor<3>) -> Tensor<1> {
    let y = emg.convolve(s, ctx).unwrap();
    (y.clone() * y).sum()
}

#[test]
fn gradient_of_emg_energy_wrt_rate_spikes_matches_finite_differences() {
    let (u, rows, cols, k) = (3, 2, 2, 9);
    let tp = random_templates(u, rows, cols, k, 5);
    let (t_len, batch) = (30, 2);
    let dims = [t_len, batch, u];
    let s0 = random_rates(t_len * batch * u, 6);
    for align in [Alignment::Causal, Alignment::MyogenSame] {
        for method in [ConvMethod::Fft, ConvMethod::Direct] {
            let emg = SurfaceEmg::with_alignment(&tp, align)
                .unwrap()
                .method(method);
            let ad = Ctx::cpu().f64().autodiff();
            let s = ad.tensor(s0.clone(), dims).require_grad();
            let grads = energy(&emg, &ad, s.clone()).backward();
            let g = to_vec_f64(s.grad(&grads).unwrap());
            let plain = Ctx::cpu().f64();
            let mut f = |x: &[f64]| -> myodiff::Result<f64> {
                Ok(to_vec_f64(energy(&emg, &plain, plain.tensor(x.to_vec(), dims)))[0])
            };
            let h = vec![1e-3; s0.len()];
            let num = central_differences(&mut f, &s0, &h).unwrap();
            let gc = GradCheck::compare(g, num).unwrap();
            eprintln!(
                "{align:?} {method:?}: rel err {:.2e}, cosine {:.12}",
                gc.max_rel_err, gc.cosine
            );
            gc.check(1e-4, 0.9999)
                .unwrap_or_else(|e| panic!("{align:?} {method:?}: {e}"));
            // the check can fail: a wrong gradient (scaled by 1.001) is rejected
            let wrong: Vec<f64> = gc.analytic.iter().map(|v| v * 1.001).collect();
            let bad = GradCheck::compare(wrong, gc.numeric.clone()).unwrap();
            assert!(bad.check(1e-4, 0.9999).is_err());
        }
    }
}

#[test]
fn readout_runs_in_a_simulation_and_sets_grid_shape() {
    let (u, rows, cols, k) = (4, 3, 2, 25);
    let tp = random_templates(u, rows, cols, k, 7);
    let (t_len, batch) = (200, 2);
    let ctx = Ctx::cpu().f64();
    let mut rng = StdRng::seed_from_u64(8);
    let s: Vec<f64> = (0..t_len * batch * u)
        .map(|_| if rng.random_bool(0.02) { 1.0 } else { 0.0 })
        .collect();
    let mut sim = Simulation::new(ctx.clone(), batch, DT, t_len).unwrap();
    sim.add_input(
        BufferSpec::new(names::SPIKES, &[u], "spike/step"),
        ctx.tensor(s.clone(), [t_len, batch, u]),
    )
    .unwrap();
    let emg = SurfaceEmg::new(&tp).unwrap();
    sim.add_readout(emg.clone());
    let roll = sim.run().unwrap();
    let direct = conv(
        &emg.clone().method(ConvMethod::Direct),
        &ctx,
        s,
        [t_len, batch, u],
    );
    for b in 0..batch {
        let res = roll.result(b).unwrap();
        assert_eq!(res.grid_shape, Some((rows, cols)));
        let e = res.surface_emg_v.unwrap();
        assert_eq!(e.shape(), &[t_len, rows, cols]);
        for t in 0..t_len {
            for r in 0..rows {
                for c in 0..cols {
                    let want = direct[(t * batch + b) * rows * cols + r * cols + c];
                    assert!((e[[t, r, c]] - want).abs() <= 1e-15 + 1e-12 * want.abs());
                }
            }
        }
    }
    // wrong dt for the templates → typed error
    let mut sim = Simulation::new(ctx.clone(), 1, 2.0 * DT, 10).unwrap();
    sim.add_input(
        BufferSpec::new(names::SPIKES, &[u], "spike/step"),
        ctx.zeros([10, 1, u]),
    )
    .unwrap();
    sim.add_readout(emg);
    assert!(matches!(
        sim.run(),
        Err(Error::InvalidParameter { ref field, .. }) if field == "dt_s"
    ));
}

#[test]
fn bad_inputs_give_typed_errors() {
    let tp = random_templates(3, 2, 2, 10, 9);
    let emg = SurfaceEmg::new(&tp).unwrap();
    let ctx = Ctx::cpu();
    // unit-count mismatch
    match emg.convolve(ctx.zeros([20, 1, 4]), &ctx) {
        Err(Error::ShapeMismatch { field, .. }) => assert!(field.contains("spikes")),
        other => panic!("expected shape error, got {other:?}"),
    }
    // NaN in the spike trains
    let mut s = vec![0.0; 20 * 3];
    s[13] = f64::NAN;
    match emg.convolve(ctx.tensor(s, [20, 1, 3]), &ctx) {
        Err(Error::NonFinite {
            buffer, step, unit, ..
        }) => {
            assert_eq!((buffer.as_str(), step, unit), ("spikes", 4, 1))
        }
        other => panic!("expected non-finite error, got {other:?}"),
    }
    // templates: wrong length, NaN, zero sizes
    assert!(matches!(
        MuapTemplates::from_values(vec![0.0; 11], 1, 1, 1, 10, DT),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut bad = vec![0.0; 10];
    bad[3] = f64::NAN;
    assert!(matches!(
        MuapTemplates::from_values(bad, 1, 1, 1, 10, DT),
        Err(Error::InvalidParameter { ref field, .. }) if field.starts_with("muap templates")
    ));
    assert!(matches!(
        MuapTemplates::from_values(vec![], 1, 0, 1, 10, DT),
        Err(Error::InvalidParameter { ref field, .. }) if field == "rows"
    ));
    assert!(matches!(
        MuapTemplates::from_values(vec![0.0; 10], 1, 1, 1, 10, -DT),
        Err(Error::InvalidParameter { ref field, .. }) if field == "dt_s"
    ));
    // missing spikes buffer in a readout
    let traces = Default::default();
    assert!(matches!(
        myodiff::kernel::Readout::run(&emg, &traces, &ctx, DT),
        Err(Error::MissingBuffer { .. })
    ));
}

/// A toy pool: `spikes_u = spike_fn(g·drive − θ_u)` per step (rate or surrogate mode), with a
/// differentiable gain `g` `[1, 1]`.
struct ToyPool {
    gain: Tensor<2>,
    thresholds: Vec<f64>,
    mode: myodiff::neuron::SpikeMode,
}

impl myodiff::kernel::Stage for ToyPool {
    fn name(&self) -> &str {
        "toy_pool"
    }
    fn declare(&self) -> myodiff::kernel::StageDecl {
        myodiff::kernel::StageDecl {
            reads: vec![myodiff::kernel::ReadSpec::now("drive_rate_hz")],
            writes: vec![BufferSpec::new(
                names::SPIKES,
                &[self.thresholds.len()],
                "spike/step",
            )],
        }
    }
    fn step(&mut self, io: &mut myodiff::kernel::StageIo<'_>, _t: usize) -> myodiff::Result<()> {
        let d = io.read("drive_rate_hz")?; // [B, 1]
        let n = self.thresholds.len();
        let th = io.ctx().tensor(self.thresholds.clone(), [1, n]);
        let m = (d * self.gain.clone()).repeat_dim(1, n) - th;
        io.write(
            names::SPIKES,
            myodiff::neuron::spike_fn(m, self.mode, myodiff::neuron::SURROGATE_BETA),
        )
    }
}

/// Σ emg² of a rollout drive → toy pool → spikes → SurfaceEmg, as a function of the gain.
fn rollout_energy(
    ctx: &Ctx,
    gain: Tensor<2>,
    mode: myodiff::neuron::SpikeMode,
    tp: &MuapTemplates,
) -> Tensor<1> {
    let t_len = 120;
    let drive: Vec<f64> = (0..t_len)
        .map(|t| 0.5 + 0.4 * (t as f64 * 0.21).sin())
        .collect();
    let mut sim = Simulation::new(ctx.clone(), 1, DT, t_len).unwrap();
    sim.add_input(
        BufferSpec::new("drive_rate_hz", &[1], "Hz"),
        ctx.tensor(drive, [t_len, 1, 1]),
    )
    .unwrap();
    sim.add_stage(ToyPool {
        gain,
        thresholds: (0..tp.n_units).map(|u| 0.3 + 0.1 * u as f64).collect(),
        mode,
    });
    sim.add_readout(SurfaceEmg::new(tp).unwrap());
    let roll = sim.run().unwrap();
    let y = roll.trace(names::SURFACE_EMG_V).unwrap();
    (y.clone() * y).sum()
}

#[test]
fn gradient_flows_from_emg_back_to_the_drive_in_a_rollout() {
    use myodiff::neuron::SpikeMode;
    let tp = random_templates(4, 2, 2, 15, 11);
    let ad = Ctx::cpu().f64().autodiff();
    let g0 = 1.3;
    let gain = ad.tensor(vec![g0], [1, 1]).require_grad();
    let grads = rollout_energy(&ad, gain.clone(), SpikeMode::Rate, &tp).backward();
    let g = to_vec_f64(gain.grad(&grads).unwrap());
    let plain = Ctx::cpu().f64();
    let mut f = |x: &[f64]| -> myodiff::Result<f64> {
        Ok(to_vec_f64(rollout_energy(
            &plain,
            plain.tensor(x.to_vec(), [1, 1]),
            SpikeMode::Rate,
            &tp,
        ))[0])
    };
    let num = central_differences(&mut f, &[g0], &[1e-5]).unwrap();
    let gc = GradCheck::compare(g, num).unwrap();
    eprintln!("rollout d E/d gain: rel err {:.2e}", gc.max_rel_err);
    gc.check(1e-4, 0.9999).unwrap();
    assert!(gc.analytic[0].abs() > 0.0);
    // surrogate mode: hard forward, finite non-zero surrogate gradient
    let gain = ad.tensor(vec![g0], [1, 1]).require_grad();
    let grads = rollout_energy(&ad, gain.clone(), SpikeMode::Surrogate, &tp).backward();
    let gs = to_vec_f64(gain.grad(&grads).unwrap())[0];
    assert!(gs.is_finite() && gs != 0.0, "surrogate gradient {gs}");
}

#[test]
fn ndarray_backend_gives_the_same_emg_and_gradient() {
    use myodiff::kernel::BackendKind;
    let (u, k) = (3, 30);
    let tp = random_templates(u, 2, 2, k, 12);
    let emg = SurfaceEmg::new(&tp).unwrap();
    let dims = [400, 2, u];
    let s0 = random_rates(400 * 2 * u, 13);
    let flex = Ctx::cpu().f64();
    let nd = Ctx::new(BackendKind::Ndarray).unwrap().f64();
    let a = conv(&emg, &flex, s0.clone(), dims);
    let b = conv(&emg, &nd, s0.clone(), dims);
    assert!(max_diff(&a, &b) <= 1e-13 * max_abs(&a));
    let grad = |ctx: Ctx| {
        let s = ctx.tensor(s0.clone(), dims).require_grad();
        let grads = energy(&emg, &ctx, s.clone()).backward();
        to_vec_f64(s.grad(&grads).unwrap())
    };
    let ga = grad(flex.autodiff());
    let gb = grad(nd.autodiff());
    assert!(max_diff(&ga, &gb) <= 1e-12 * max_abs(&ga));
}
