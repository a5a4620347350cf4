//! A plain Rust loop of the fast LIF+AHP forward (no burn, f32, hard spikes): the speed reference
//! of the benchmarks. Same equations and op order as [`crate::neuron::lif::lif_step`].

use super::host::{Coef, N_COEF};
use crate::neuron::lif::LifInput;

/// Plain forward scan, hard spikes, f32. `x`: `[T, B·N]` conductance (S) or current (A) per step;
/// `coef`: `[P=9, B·N]` coefficients in the order of [`Coef`]; writes spikes (0/1) into
/// `spikes` `[T, B·N]` and returns the spike count. Per element and step:
/// `i = (g(E−v) + I_b) − a`, `v1 = v + α(R i − (v − v_rest))`, `s = H(v1 − θ)`,
/// `v = v1 − s(v1 − v_reset)`, `a = k a + s ΔI`.
pub fn lif_forward_plain(
    x: &[f32],
    coef: &[f32],
    t_steps: usize,
    bn: usize,
    input: LifInput,
    spikes: &mut [f32],
) -> u64 {
    assert_eq!(coef.len(), N_COEF * bn, "coef must be [9, B·N]");
    assert!(
        x.len() >= t_steps * bn && spikes.len() >= t_steps * bn,
        "trace sizes"
    );
    let row = |c: Coef| &coef[c as usize * bn..(c as usize + 1) * bn];
    let (al, r, vr, th, vres, k, jump, e, ib) = (
        row(Coef::Alpha),
        row(Coef::R),
        row(Coef::VRest),
        row(Coef::VThresh),
        row(Coef::VReset),
        row(Coef::AhpDecay),
        row(Coef::AhpJump),
        row(Coef::ESyn),
        row(Coef::IBias),
    );
    let mut v = vr.to_vec();
    let mut a = vec![0.0f32; bn];
    let mut count = 0u64;
    for t in 0..t_steps {
        let xr = &x[t * bn..(t + 1) * bn];
        let sr = &mut spikes[t * bn..(t + 1) * bn];
        // the input kind is hoisted out of the inner loop (two branch-free loops)
        if input == LifInput::Conductance {
            for j in 0..bn {
                let i = xr[j] * (e[j] - v[j]) + ib[j] - a[j];
                let v1 = v[j] + al[j] * (r[j] * i - (v[j] - vr[j]));
                let s = if v1 > th[j] { 1.0f32 } else { 0.0 };
                v[j] = v1 - s * (v1 - vres[j]);
                a[j] = k[j] * a[j] + s * jump[j];
                sr[j] = s;
            }
        } else {
            for j in 0..bn {
                let i = xr[j] + ib[j] - a[j];
                let v1 = v[j] + al[j] * (r[j] * i - (v[j] - vr[j]));
                let s = if v1 > th[j] { 1.0f32 } else { 0.0 };
                v[j] = v1 - s * (v1 - vres[j]);
                a[j] = k[j] * a[j] + s * jump[j];
                sr[j] = s;
            }
        }
        count += sr.iter().filter(|&&s| s > 0.0).count() as u64;
    }
    count
}
