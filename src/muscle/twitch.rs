//! Fuglevand (1993) twitch parameters and the twitch as a critically damped second-order IIR
//! filter, as differentiable tensor functions (MODEL.md §3.1–3.2).
//!
//! Shapes: model parameters are `[batch, 1]` (or `[1, 1]`, broadcast over the batch); per-unit
//! quantities are `[batch, n]` (or `[1, n]`). Units: times in seconds at the API, peak twitch
//! amplitudes `P_i` dimensionless (the smallest unit has `P_1 = RP^{1/N} ≈ 1`), force in newtons
//! through the scale `F0` (newtons per unit of `P`).
//!
//! Every function here is plain burn tensor code, so gradients flow to `RP`, `T_L`, `RT`, `F0`
//! whenever those tensors require them.

use burn::tensor::{DType, Tensor, TensorCreationOptions, TensorData};

use crate::error::{Error, Result};
use crate::kernel::to_vec_f64;

/// Fuglevand's normalised-rate threshold of the gain nonlinearity (eq. 17): below `r = 0.4`
/// the twitch gain is 1.
pub const GAIN_RATE_KNEE: f64 = 0.4;

/// MyoGen's recording frequency for its open-loop `ForceModel` (Hz); the compatibility gain
/// measures `T_i` in samples at this rate.
pub const MYOGEN_FS_HZ: f64 = 2048.0;

/// A tensor of `values` with the device and float dtype of `like`.
pub(crate) fn tensor_like<const D: usize>(
    like: &Tensor<D>,
    values: Vec<f64>,
    shape: [usize; D],
) -> Tensor<D> {
    let dtype = like.dtype();
    let data = match dtype {
        DType::F64 => TensorData::new(values, shape),
        _ => TensorData::new(
            values.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
            shape,
        ),
    };
    Tensor::from_data(
        data,
        TensorCreationOptions::new(like.device()).with_dtype(dtype),
    )
}

/// Checks that `t` is `[b, w]` with `w ∈ {1, n}` … (helper) and every value satisfies `ok`.
fn check_values(
    field: &str,
    t: &Tensor<2>,
    ok: impl Fn(f64) -> bool,
    allowed: &str,
) -> Result<Vec<f64>> {
    let v = to_vec_f64(t.clone());
    if let Some(i) = v.iter().position(|x| !(x.is_finite() && ok(*x))) {
        let name = if v.len() == 1 {
            field.to_string()
        } else {
            format!("{field}[{i}]")
        };
        return Err(Error::invalid(name, v[i], allowed));
    }
    Ok(v)
}

fn check_param_shape(field: &str, t: &Tensor<2>) -> Result<()> {
    let [_, w] = t.dims();
    if w != 1 {
        return Err(Error::shape(
            field,
            "[batch, 1] or [1, 1]",
            format!("{:?}", t.dims()),
        ));
    }
    Ok(())
}

/// Per-unit twitch parameters: peak amplitudes `p` (dimensionless) and contraction (rise) times
/// `t_s` (s), both `[batch, n]` or `[1, n]`.
#[derive(Clone, Debug)]
pub struct Twitches {
    /// Peak twitch amplitude `P_i` (dimensionless; force = `F0 · P_i` at the twitch peak with gain 1).
    pub p: Tensor<2>,
    /// Contraction time `T_i` (s): time from the spike to the twitch peak.
    pub t_s: Tensor<2>,
}

impl Twitches {
    /// Number of motor units.
    pub fn n_units(&self) -> usize {
        self.p.dims()[1]
    }
}

/// Fuglevand eq. 13: `P_i = exp(ln(RP)/N · i)`, `i = 1..N` (dimensionless).
///
/// `rp` is the peak-twitch range `[batch, 1]` (must be > 1); returns `[batch, N]`.
pub fn peak_twitch(rp: &Tensor<2>, n: usize) -> Result<Tensor<2>> {
    if n == 0 {
        return Err(Error::invalid("n_units", 0, ">= 1"));
    }
    check_param_shape("rp", rp)?;
    check_values("rp", rp, |x| x > 1.0, "finite and > 1")?;
    let idx = tensor_like(rp, (1..=n).map(|i| i as f64).collect(), [1, n]);
    // (`* (1/n)`, not `/ n`: burn 0.22.1's div-by-scalar backward rounds the scalar to f32)
    Ok((rp.clone().log() * (1.0 / n as f64) * idx).exp())
}

/// Fuglevand eq. 14: `T_i = T_L · (1/P_i)^{1/log_RT(RP)} = T_L · exp(−ln P_i · ln RT / ln RP)` (s).
///
/// `p` `[batch, n]` from [`peak_twitch`], `rp`, `rt` (contraction-time range, > 1) and `t_l_s`
/// (longest contraction time, s, > 0) `[batch, 1]`. With `P_i` from eq. 13 this is
/// `T_L · RT^{−i/N}`: the largest unit contracts in `T_L / RT`.
pub fn contraction_times_s(
    p: &Tensor<2>,
    rp: &Tensor<2>,
    rt: &Tensor<2>,
    t_l_s: &Tensor<2>,
) -> Result<Tensor<2>> {
    for (f, t) in [("rp", rp), ("rt", rt), ("t_l_s", t_l_s)] {
        check_param_shape(f, t)?;
    }
    check_values("rp", rp, |x| x > 1.0, "finite and > 1")?;
    check_values("rt", rt, |x| x > 1.0, "finite and > 1")?;
    check_values("t_l_s", t_l_s, |x| x > 0.0, "finite and > 0 (s)")?;
    check_values("p", p, |x| x > 0.0, "finite and > 0")?;
    let expo = rt.clone().log() / rp.clone().log();
    Ok(t_l_s.clone() * (p.clone().log().neg() * expo).exp())
}

/// Both Fuglevand laws at once: `P_i` (eq. 13) and `T_i` (eq. 14) for `n` units from `RP`,
/// `T_L` (s) and `RT` (all `[batch, 1]`, differentiable).
pub fn fuglevand_twitches(
    rp: &Tensor<2>,
    t_l_s: &Tensor<2>,
    rt: &Tensor<2>,
    n: usize,
) -> Result<Twitches> {
    let p = peak_twitch(rp, n)?;
    let t_s = contraction_times_s(&p, rp, rt, t_l_s)?;
    Ok(Twitches { p, t_s })
}

/// Coefficients of the twitch IIR for a time step `dt` (all `[batch, n]`, dimensionless):
/// `A = 2e^{−dt/T}`, `B = e^{−2dt/T}`, `C = (dt/T)e^{1−dt/T}`.
#[derive(Clone, Debug)]
pub struct IirCoeffs {
    /// `A = 2 e^{−dt/T}`.
    pub a: Tensor<2>,
    /// `B = e^{−2dt/T}`.
    pub b: Tensor<2>,
    /// `C = (dt/T) e^{1−dt/T}`.
    pub c: Tensor<2>,
}

/// IIR coefficients of the critically damped twitch filter (MODEL.md §3.2) for contraction times
/// `t_s` (s) and time step `dt_s` (s). Its impulse response is `f[n] = (n·dt/T) e^{1 − n·dt/T}`,
/// i.e. the Fuglevand twitch sampled at `t = n·dt` (peak 1 at `t = T`).
///
/// Errors: `dt_s <= 0`, or `dt_s > T_min/2` (the twitch would be sampled too coarsely to rise).
pub fn iir_coeffs(t_s: &Tensor<2>, dt_s: f64) -> Result<IirCoeffs> {
    if !(dt_s.is_finite() && dt_s > 0.0) {
        return Err(Error::invalid("dt_s", dt_s, "finite and > 0 (s)"));
    }
    let tv = check_values("t_s", t_s, |x| x > 0.0, "finite and > 0 (s)")?;
    let t_min = tv.iter().cloned().fold(f64::INFINITY, f64::min);
    if dt_s > t_min / 2.0 {
        return Err(Error::UnstableTimeStep {
            dt_s,
            model: "Fuglevand twitch IIR".into(),
            reason: format!(
                "dt_s must be <= T_min/2 = {} s (shortest contraction time {} s)",
                t_min / 2.0,
                t_min
            ),
        });
    }
    let x = t_s.clone().recip() * dt_s; // dt/T
    let e1 = x.clone().neg().exp(); // e^{-dt/T}
    Ok(IirCoeffs {
        a: e1.clone() * 2.0,
        b: e1.clone() * e1.clone(),
        c: x * e1 * std::f64::consts::E,
    })
}

/// One step of the twitch recursion `f[n+1] = A f[n] − B f[n−1] + C s[n]` (all `[batch, n]`;
/// `f` in units of the twitch peak, `s` the (gain-weighted) spike input of step `n`).
pub fn iir_step(k: &IirCoeffs, f_cur: Tensor<2>, f_prev: Tensor<2>, s: Tensor<2>) -> Tensor<2> {
    k.a.clone() * f_cur - k.b.clone() * f_prev + k.c.clone() * s
}

/// The sampled twitch shape `h(t) = (t/T) e^{1 − t/T}` (peak 1 at `t = T`; `t`, `T` in s).
pub fn twitch_shape(t_s: f64, tc_s: f64) -> f64 {
    if t_s <= 0.0 {
        0.0
    } else {
        t_s / tc_s * (1.0 - t_s / tc_s).exp()
    }
}

/// Saturation nonlinearity of MyoGen's Hill path (§3.2): `sig(c, f) = (1 − e^{−c f})/(1 + e^{−c f})`
/// (= `tanh(c f / 2)`; dimensionless, `c` in 1/(units of `f`)).
pub fn saturation<const D: usize>(c: Tensor<D>, f: Tensor<D>) -> Tensor<D> {
    let e = (c * f).neg().exp();
    (e.clone().neg() + 1.0) / (e + 1.0)
}

/// Fuglevand's sigmoid `Sf(r) = 1 − exp(−2 r³)` (eq. 17, `r` dimensionless).
pub fn sf(r: f64) -> f64 {
    1.0 - (-2.0 * r * r * r).exp()
}

/// Fuglevand's twitch gain (eq. 17) as a function of the normalised instantaneous rate
/// `r = T_i / ISI` (dimensionless): `g(r) = 1` for `r <= 0.4`, else
/// `g(r) = (Sf(r)/r) / (Sf(0.4)/0.4)` with `Sf(x) = 1 − e^{−2x³}`.
///
/// Implemented as `g(max(r, 0.4))` (exactly equal: `g(0.4) = 1`), so it is continuous, finite for
/// `r → 0` and has zero gradient below the knee.
pub fn fuglevand_gain<const D: usize>(r: Tensor<D>) -> Tensor<D> {
    let rc = r.clamp_min(GAIN_RATE_KNEE);
    let sf_r = (rc.clone().powi_scalar(3) * -2.0).exp().neg() + 1.0;
    // multiply by the reciprocal: burn 0.22.1's div-by-scalar backward rounds the scalar to f32
    sf_r / rc * (GAIN_RATE_KNEE / sf(GAIN_RATE_KNEE))
}

/// Host version of [`fuglevand_gain`]: `g(r) = 1` for `r <= 0.4`, else `(Sf(r)/r)/(Sf(0.4)/0.4)`.
pub fn fuglevand_gain_f64(r: f64) -> f64 {
    if r > GAIN_RATE_KNEE {
        (sf(r) / r) / (sf(GAIN_RATE_KNEE) / GAIN_RATE_KNEE)
    } else {
        1.0
    }
}

/// `dg/dr` of [`fuglevand_gain_f64`]: 0 for `r <= 0.4`, else
/// `(Sf'(r)/r − Sf(r)/r²)/(Sf(0.4)/0.4)` with `Sf'(r) = 6r²·e^{−2r³}`.
pub fn fuglevand_gain_slope_f64(r: f64) -> f64 {
    if r > GAIN_RATE_KNEE {
        let e = (-2.0 * r * r * r).exp();
        ((6.0 * r * r * e) / r - (1.0 - e) / (r * r)) / (sf(GAIN_RATE_KNEE) / GAIN_RATE_KNEE)
    } else {
        0.0
    }
}

/// MyoGen 0.12's effective per-unit constant gain (fixtures README §2): MyoGen's inter-spike
/// interval is one sample at every spike, so its eq.-17 gain is `g(r)` with `r = T_i · fs / 1`
/// (`T_i` in s, `fs` in Hz, so `r` = contraction time in samples at `fs`) — ≈ `3.33 / r`.
/// Differentiable in `T_i`.
pub fn myogen_compat_gain(t_s: &Tensor<2>, fs_hz: f64) -> Tensor<2> {
    fuglevand_gain(t_s.clone() * fs_hz)
}

/// `%MVC = 100 · F / F_MVC` (F and F_MVC in N). Errors if `mvc_n` is not finite and > 0.
pub fn percent_mvc<const D: usize>(force_n: Tensor<D>, mvc_n: f64) -> Result<Tensor<D>> {
    if !(mvc_n.is_finite() && mvc_n > 0.0) {
        return Err(Error::invalid("mvc_n", mvc_n, "finite and > 0 (N)"));
    }
    Ok(force_n * (100.0 / mvc_n))
}

/// Closed-form mean force (N) of the pool when every unit fires regularly at `rate_hz` with
/// Fuglevand's rate-dependent gain (the mean of a periodic twitch train is the twitch integral
/// `P_i·e·T_i` times the rate):
/// `F̄ = F0 · Σ_i P_i · g(T_i·f) · e · T_i · f`, with `g` from [`fuglevand_gain`]
/// (`p`, `t_s` `[batch, n]`, `f0_n` `[batch, 1]`; returns `[batch, 1]`).
///
/// As `f → ∞` this tends to `F0 · Σ P_i · e / (Sf(0.4)/0.4) ≈ 9.05 · F0 · Σ P_i`; evaluated at a
/// high rate (e.g. 50–100 Hz) it is the model's maximal voluntary force, the denominator of
/// [`percent_mvc`]. Valid for `f` well above `1/(5 T_i)` (overlapping twitches).
pub fn mean_force_at_rate_n(tw: &Twitches, f0_n: &Tensor<2>, rate_hz: f64) -> Result<Tensor<2>> {
    if !(rate_hz.is_finite() && rate_hz > 0.0) {
        return Err(Error::invalid("rate_hz", rate_hz, "finite and > 0 (Hz)"));
    }
    let r = tw.t_s.clone() * rate_hz;
    let per_unit = tw.p.clone() * fuglevand_gain(r.clone()) * r * std::f64::consts::E;
    Ok(per_unit.sum_dim(1) * f0_n.clone())
}
