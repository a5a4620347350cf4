//! The gradient checker itself: it passes on a correct gradient and FAILS on a wrong one
//! (negative control), so the gradient-check tests elsewhere can fail.

use myodiff::gradcheck::{GradCheck, central_differences, relative_steps};
use myodiff::kernel::{Ctx, scalar_f64, to_vec_f64};

/// f(x) = sum_i sin(x_i) * x_{i+1}^2 computed with burn ops on an autodiff f64 device.
fn f_and_grad(x: &[f64]) -> (f64, Vec<f64>) {
    let ctx = Ctx::cpu().f64().autodiff();
    let n = x.len();
    let t = ctx.tensor(x.to_vec(), [n]).require_grad();
    let a = t.clone().slice(0..n - 1).sin();
    let b = t.clone().slice(1..n).powf_scalar(2.0);
    let loss = (a * b).sum();
    let v = scalar_f64(loss.clone());
    let g = to_vec_f64(t.grad(&loss.backward()).unwrap());
    (v, g)
}

#[test]
fn checker_accepts_a_correct_autodiff_gradient() {
    let x = vec![0.3, -1.2, 0.7, 2.0];
    let (_, g) = f_and_grad(&x);
    let num =
        central_differences(&mut |p| Ok(f_and_grad(p).0), &x, &relative_steps(&x, 1e-5)).unwrap();
    let c = GradCheck::compare(g, num).unwrap();
    c.check(1e-7, 0.999_999).unwrap();
}

#[test]
fn checker_rejects_a_wrong_gradient() {
    let x = vec![0.3, -1.2, 0.7, 2.0];
    let (_, mut g) = f_and_grad(&x);
    let num =
        central_differences(&mut |p| Ok(f_and_grad(p).0), &x, &relative_steps(&x, 1e-5)).unwrap();
    // a 1 % error in one component must be caught at the per-stage tolerance
    g[2] *= 1.01;
    let c = GradCheck::compare(g.clone(), num.clone()).unwrap();
    assert!(c.check(1e-4, 0.99).is_err(), "{c:?}");
    // a sign flip must be caught by the cosine criterion too
    let flipped: Vec<f64> = g.iter().map(|v| -v).collect();
    let c = GradCheck::compare(flipped, num).unwrap();
    assert!(c.cosine < 0.0 && c.check(1.0, 0.99).is_err());
}

#[test]
fn checker_rejects_non_finite_gradients_and_mismatched_lengths() {
    let c = GradCheck::compare(vec![f64::NAN, 1.0], vec![1.0, 1.0]).unwrap();
    assert!(c.check(1e-4, 0.0).is_err());
    assert!(GradCheck::compare(vec![1.0], vec![1.0, 2.0]).is_err());
}

#[test]
fn spike_functions_keep_f64_and_hard_equals_surrogate_forward() {
    use myodiff::neuron::{SpikeMode, spike_fn};
    let ctx = Ctx::cpu().f64().autodiff();
    let m = ctx
        .tensor(vec![-0.3, -1e-12, 0.0, 1e-12, 0.2, 5.0], [6])
        .require_grad();
    let hard = to_vec_f64(spike_fn(m.clone(), SpikeMode::Hard, 10.0));
    let sur = spike_fn(m.clone(), SpikeMode::Surrogate, 10.0);
    assert_eq!(hard, to_vec_f64(sur.clone()));
    assert_eq!(hard, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    // surrogate slope beta / (1 + beta |m|)^2
    let g = to_vec_f64(m.grad(&sur.sum().backward()).unwrap());
    for (gi, mi) in g.iter().zip([-0.3f64, -1e-12, 0.0, 1e-12, 0.2, 5.0]) {
        let expect = myodiff::neuron::surrogate_slope(mi, 10.0);
        assert!((gi - expect).abs() < 1e-12, "{gi} vs {expect}");
    }
}

#[test]
fn per_component_errors_catch_a_wrong_small_component() {
    // A 1 % error in a component 1000× smaller than the largest: 1e-5 of the largest, so the
    // global (max-normalised) error would pass at 1e-4; the per-component error must not.
    let numeric = vec![1000.0, 1.0, -2.0];
    let analytic = vec![1000.0, 1.01, -2.0];
    let c = GradCheck::compare(analytic, numeric).unwrap();
    assert!(c.max_rel_err < 1e-4, "{c:?}");
    assert!((c.rel_errs[1] - 0.01).abs() < 1e-12, "{c:?}");
    assert_eq!(c.rel_errs[0], 0.0);
    assert!(c.check(1e-4, 0.99).is_err(), "{c:?}");
    // Below the floor (default 1e-3 of the largest) a component is measured against the floor.
    let c = GradCheck::compare(vec![1000.0, 1e-4 + 1e-6], vec![1000.0, 1e-4]).unwrap();
    assert!((c.floor - 1.0).abs() < 1e-12 && c.above_floor() == vec![0]);
    assert!((c.rel_errs[1] - 1e-6).abs() < 1e-12, "{c:?}");
    // An explicit floor.
    let c =
        GradCheck::compare_with_floor(vec![1000.0, 1e-4 + 1e-6], vec![1000.0, 1e-4], 0.0).unwrap();
    assert!((c.rel_errs[1] - 1e-2).abs() < 1e-9, "{c:?}");
    assert!(GradCheck::compare_with_floor(vec![1.0], vec![1.0], f64::NAN).is_err());
}

#[test]
fn perturbed_negative_control_fails_every_component_above_the_floor() {
    let x = vec![0.3, -1.2, 0.7, 2.0];
    let (_, g) = f_and_grad(&x);
    let num =
        central_differences(&mut |p| Ok(f_and_grad(p).0), &x, &relative_steps(&x, 1e-5)).unwrap();
    let c = GradCheck::compare(g, num).unwrap();
    c.check(1e-7, 0.999_999).unwrap();
    assert_eq!(c.above_floor().len(), x.len());
    for i in c.above_floor() {
        let bad = c.perturbed(i, 1.001).unwrap();
        assert!((bad.rel_errs[i] - 1e-3).abs() < 1e-6, "{bad:?}");
        assert!(bad.check(1e-5, 0.999).is_err(), "component {i}: {bad:?}");
    }
    assert!(c.perturbed(x.len(), 1.001).is_err());
}
