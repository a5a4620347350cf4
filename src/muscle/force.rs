//! `TwitchForce`: the Fuglevand twitch-force stage (MODEL.md §3), `spikes [n] → force_n [1]`.
//!
//! Per motor unit `i` and tick `t` (time step `dt`, all tensors `[batch, n]`):
//! 1. axonal delay: `s̃_i[t] = s_i[t − d_i]` (integer delays `d_i` in steps; a FIFO of past spikes);
//! 2. gain-weighted input `u_i[t] = g_i[t] · s̃_i[t]` (see [`GainMode`]);
//! 3. twitch IIR `f_i[t+1] = A_i f_i[t] − B_i f_i[t−1] + C_i u_i[t]` ([`super::twitch::iir_coeffs`]),
//!    whose impulse response is the unit-peak twitch `(t/T_i) e^{1−t/T_i}` sampled at `t = n·dt`;
//! 4. output `force_n[t] = F0 · Σ_i P_i · y_i[t]` with `y_i = f_i` (or `y_i = sig(c_i, f_i)` when a
//!    saturation is configured).
//!
//! **Scaling.** `F0` (N) is the force of one twitch of peak amplitude `P = 1` at gain 1: a single
//! spike of unit `i` gives a twitch of peak `F0 · P_i · g_i` newtons, `T_i` after the (delayed)
//! spike. Since `P_1 = RP^{1/N} ≈ 1`, `F0` is ≈ the peak twitch force of the smallest unit. With
//! `GainMode::MyogenCompat`, `force_n / F0` equals MyoGen 0.12's raw `ForceModel` output (up to
//! its resampling; see [`super::myogen_compat`]).
//!
//! The spike at tick `t` first shows in the force at tick `t + 1` (the twitch is 0 at `t = 0`).
//! Everything is burn tensor code: differentiable in `RP`, `T_L`, `RT` (through `P_i`, `T_i`),
//! `F0`, the saturation constants and the spike input (surrogate / rate spikes).

use burn::tensor::{Int, Tensor, TensorData};

use super::fused::{TwitchScanSpec, fused_supported, twitch_scan};
use super::twitch::{
    IirCoeffs, MYOGEN_FS_HZ, Twitches, fuglevand_gain, fuglevand_gain_f64,
    fuglevand_gain_slope_f64, iir_coeffs, iir_step, myogen_compat_gain, saturation,
};
use crate::error::{Error, Result};
use crate::kernel::fastexp::exp_vec;
use crate::kernel::host::row;
use crate::kernel::{
    BufferSpec, Ctx, DelayLine, HostCx, HostStage, ReadSpec, SaveAt, Stage, StageDecl, StageIo,
    Traces, VjpIo, names, to_vec_f64,
};

/// "No previous spike" value of the time-since-last-spike state (s): large enough that
/// `r = T_i/τ` is far below the gain knee, so the first spike of a unit has gain 1.
pub const NO_PREVIOUS_SPIKE_S: f64 = 1.0e3;

/// Which twitch gain multiplies each spike's twitch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GainMode {
    /// Fuglevand (1993) eq. 17 as published, made causal and differentiable: the gain of the
    /// spike at tick `t` is `g(r)` with `r = T_i / τ_i[t]`, where `τ_i` is the time since the
    /// unit's previous spike (its last inter-spike interval), tracked as a state:
    /// `τ_i[t+1] = τ_i[t] + dt − s̃_i[t]·τ_i[t]` (a reset to `dt` after a hard spike; a soft
    /// reset for rate/surrogate spikes, whose fixed point `dt/s` is the expected interval).
    /// Before a unit's first spike `τ = ` [`NO_PREVIOUS_SPIKE_S`] (gain 1). Low rates
    /// (`r <= 0.4`) have gain 1; above, `g = (Sf(r)/r)/(Sf(0.4)/0.4)` first rises (max ≈ 2.8 at
    /// `r ≈ 1.1`) and then falls like `1/r`, so that the mean force of a regular train,
    /// `∝ P·g(r)·r·e ∝ Sf(r)`, follows Fuglevand's sigmoidal force–frequency relation.
    #[default]
    Fuglevand,
    /// MyoGen 0.12's open-loop `ForceModel` behaviour (fixtures README §2): a constant gain per
    /// unit `g_i = (Sf(r)/r)/(Sf(0.4)/0.4)` with `r = T_i` in samples at 2048 Hz (≈ 3.33/r),
    /// whatever the firing rate. For side-by-side comparisons with MyoGen only.
    MyogenCompat,
    /// Gain 1 for every spike (linear superposition of twitches).
    None,
}

impl std::str::FromStr for GainMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fuglevand" => Ok(GainMode::Fuglevand),
            "myogen_compat" | "myogen-compat" | "myogen" => Ok(GainMode::MyogenCompat),
            "none" | "linear" => Ok(GainMode::None),
            _ => Err(Error::invalid(
                "gain_mode",
                s,
                "one of fuglevand, myogen_compat, none",
            )),
        }
    }
}

/// Per-tick state of [`TwitchForce`].
#[derive(Debug)]
struct ForceState {
    k: IirCoeffs,
    f_cur: Tensor<2>,
    f_prev: Tensor<2>,
    /// Time since the previous (delayed) spike (s), Fuglevand mode only.
    tau_s: Option<Tensor<2>>,
    /// Constant per-unit gain (MyoGen-compat mode).
    const_gain: Option<Tensor<2>>,
    /// FIFO of the last `d_max + 1` spike inputs `[batch, d_max + 1, n]` (newest first) and the
    /// per-unit gather index `[batch, 1, n]`; `None` when every delay is 0.
    delay: Option<(Tensor<3>, Tensor<3, Int>)>,
}

/// The Fuglevand twitch-force stage (see the module docs for the equations and scaling).
#[derive(Debug)]
pub struct TwitchForce {
    name: String,
    input: String,
    output: String,
    tw: Twitches,
    f0_n: Tensor<2>,
    gain: GainMode,
    compat_fs_hz: f64,
    delay_steps: Option<Vec<usize>>,
    delay_s: Option<Vec<f64>>,
    sat_c: Option<Tensor<2>>,
    state: Option<ForceState>,
    host_state: HostForce,
}

/// Streaming-path constants and state, `[batch·n]` row-major (the stream path's
/// [`crate::kernel::host`]): IIR coefficients, `T_i`, constant gain, `P_i`, saturation `c_i`,
/// `F0` per row, delays; the twitch states, the time since the last spike, the delay line of
/// the inputs (with its pending adjoints); and, for the adjoint, the state adjoints.
#[derive(Default, Debug)]
struct HostForce {
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    t_s: Vec<f64>,
    gain: Vec<f64>,
    p: Vec<f64>,
    sat: Option<Vec<f64>>,
    f0: Vec<f64>,
    delays: Vec<usize>,
    f_cur: Vec<f64>,
    f_prev: Vec<f64>,
    tau: Vec<f64>,
    line: DelayLine,
    /// Scratch `[n]`: the gain-scaled delayed spikes and `P_i·y(f_i)` of one row.
    u: Vec<f64>,
    py: Vec<f64>,
    /// Scratch `[n]`: the delayed spikes of one row (when some unit has a delay).
    sd: Vec<f64>,
    l_cur: Vec<f64>,
    l_prev: Vec<f64>,
    l_tau: Vec<f64>,
    g_f0: Vec<f64>,
}

/// The host saturation `y = (1 − e^{−c·f})/(1 + e^{−c·f})` (dimensionless) and `dy/df`.
#[inline(always)]
fn sat_y(c: f64, f: f64) -> (f64, f64) {
    let e = exp_vec(-(c * f));
    ((1.0 - e) / (e + 1.0), 2.0 * c * e / ((1.0 + e) * (1.0 + e)))
}

/// `Σ x` in four interleaved partial sums (`(s0 + s1) + (s2 + s3)`), so the adds pipeline.
#[inline]
fn sum4(x: &[f64]) -> f64 {
    let mut s = [0.0; 4];
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        for j in 0..4 {
            s[j] += c[j];
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        s[j] += v;
    }
    (s[0] + s[1]) + (s[2] + s[3])
}

impl HostForce {
    /// `y = sig(c, f)` and `dy/df` of element `k`.
    #[inline]
    fn y(&self, k: usize, f: f64) -> (f64, f64) {
        match &self.sat {
            Some(c) => sat_y(c[k], f),
            None => (f, 1.0),
        }
    }
}

impl TwitchForce {
    /// A twitch-force stage over `tw` (per-unit `P_i`, `T_i` `[batch or 1, n]`) with force scale
    /// `f0_n` (N per unit of `P`, `[batch or 1, 1]`). Reads `spikes`, writes `force_n`
    /// `[1]`; default gain [`GainMode::Fuglevand`], no delays, no saturation.
    pub fn new(tw: Twitches, f0_n: Tensor<2>) -> Result<Self> {
        let [bp, n] = tw.p.dims();
        let [bt, nt] = tw.t_s.dims();
        if n == 0 {
            return Err(Error::invalid("n_units", 0, ">= 1"));
        }
        if nt != n {
            return Err(Error::shape(
                "t_s",
                format!("[batch, {n}]"),
                format!("{:?}", tw.t_s.dims()),
            ));
        }
        if bp != bt && bp != 1 && bt != 1 {
            return Err(Error::shape(
                "t_s",
                format!("[{bp} or 1, {n}]"),
                format!("{:?}", tw.t_s.dims()),
            ));
        }
        if f0_n.dims()[1] != 1 {
            return Err(Error::shape(
                "f0_n",
                "[batch, 1] or [1, 1]",
                format!("{:?}", f0_n.dims()),
            ));
        }
        let f0 = to_vec_f64(f0_n.clone());
        if let Some(i) = f0.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(Error::invalid("f0_n", f0[i], "finite and >= 0 (N)"));
        }
        Ok(Self {
            name: "twitch_force".into(),
            input: names::SPIKES.into(),
            output: names::FORCE_N.into(),
            tw,
            f0_n,
            gain: GainMode::default(),
            compat_fs_hz: MYOGEN_FS_HZ,
            delay_steps: None,
            delay_s: None,
            sat_c: None,
            state: None,
            host_state: HostForce::default(),
        })
    }

    /// Number of motor units.
    pub fn n_units(&self) -> usize {
        self.tw.n_units()
    }

    /// Selects the twitch gain (default [`GainMode::Fuglevand`]).
    pub fn with_gain(mut self, gain: GainMode) -> Self {
        self.gain = gain;
        self
    }

    /// Sampling rate (Hz) at which [`GainMode::MyogenCompat`] measures `T_i` in samples
    /// (default 2048 Hz, MyoGen's `recording_frequency__Hz`).
    pub fn with_compat_fs_hz(mut self, fs_hz: f64) -> Result<Self> {
        if !(fs_hz.is_finite() && fs_hz > 0.0) {
            return Err(Error::invalid("compat_fs_hz", fs_hz, "finite and > 0 (Hz)"));
        }
        self.compat_fs_hz = fs_hz;
        Ok(self)
    }

    /// Per-unit axonal delays in whole time steps (`d_i`: the spike emitted at tick `t` reaches
    /// the muscle at tick `t + d_i`).
    pub fn with_delay_steps(mut self, delays: Vec<usize>) -> Result<Self> {
        if delays.len() != self.n_units() {
            return Err(Error::shape("delay_steps", self.n_units(), delays.len()));
        }
        self.delay_steps = Some(delays);
        self.delay_s = None;
        Ok(self)
    }

    /// Per-unit axonal delays in seconds, rounded to whole steps at the start of the rollout:
    /// `d_i = round(delay_i / dt)`.
    pub fn with_delays_s(mut self, delays_s: Vec<f64>) -> Result<Self> {
        if delays_s.len() != self.n_units() {
            return Err(Error::shape("delays_s", self.n_units(), delays_s.len()));
        }
        if let Some(i) = delays_s.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(Error::invalid(
                format!("delays_s[{i}]"),
                delays_s[i],
                "finite and >= 0 (s)",
            ));
        }
        self.delay_s = Some(delays_s);
        self.delay_steps = None;
        Ok(self)
    }

    /// Adds the saturation `y_i = sig(c_i, f_i) = (1 − e^{−c_i f_i})/(1 + e^{−c_i f_i})` of each
    /// unit's twitch sum `f_i` (in units of the unit's twitch peak) before scaling by `F0·P_i`;
    /// `c` `[batch or 1, n]` or `[batch or 1, 1]`, > 0.
    pub fn with_saturation(mut self, c: Tensor<2>) -> Result<Self> {
        let w = c.dims()[1];
        if w != 1 && w != self.n_units() {
            return Err(Error::shape(
                "saturation_c",
                format!("[batch, {}] or [batch, 1]", self.n_units()),
                format!("{:?}", c.dims()),
            ));
        }
        let v = to_vec_f64(c.clone());
        if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(Error::invalid(
                format!("saturation_c[{i}]"),
                v[i],
                "finite and > 0",
            ));
        }
        self.sat_c = Some(c);
        Ok(self)
    }

    /// Renames the stage (default `twitch_force`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Renames the spike input (default `spikes`) and force output (default `force_n`) buffers.
    pub fn with_buffers(mut self, input: impl Into<String>, output: impl Into<String>) -> Self {
        self.input = input.into();
        self.output = output.into();
        self
    }

    /// Per-unit delays in steps for time step `dt_s`.
    fn delays_for(&self, dt_s: f64) -> Option<Vec<usize>> {
        match (&self.delay_steps, &self.delay_s) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(ds)) => Some(ds.iter().map(|d| (d / dt_s).round() as usize).collect()),
            _ => None,
        }
    }

    /// Force `F0 · Σ_i P_i · y_i` `[batch, 1]` from the per-unit twitch sums `f` `[batch, n]`.
    fn readout(&self, f: Tensor<2>) -> Tensor<2> {
        let y = match &self.sat_c {
            Some(c) => saturation(c.clone(), f),
            None => f,
        };
        (self.tw.p.clone() * y).sum_dim(1) * self.f0_n.clone()
    }
}

impl TwitchForce {
    /// The whole-trace force `[T, batch, 1]` from a spike trace `[T, batch, n]` through the fused
    /// op [`super::fused::twitch_scan`] (same model as `T` calls of `step`).
    pub fn fused_force(&self, spikes: Tensor<3>, ctx: &Ctx, dt_s: f64) -> Result<Tensor<3>> {
        let [_, batch, w] = spikes.dims();
        let n = self.n_units();
        if w != n {
            return Err(Error::shape(
                &self.input,
                format!("[T, batch, {n}]"),
                format!("{:?}", spikes.dims()),
            ));
        }
        let k = iir_coeffs(&self.tw.t_s, dt_s)?;
        let full = |t: Tensor<2>| t + ctx.zeros([batch, n]);
        let gc = match self.gain {
            GainMode::MyogenCompat => myogen_compat_gain(&self.tw.t_s, self.compat_fs_hz),
            _ => ctx.full([1, n], 1.0),
        };
        let cs = self.sat_c.clone().unwrap_or_else(|| ctx.full([1, n], 1.0));
        let w_n = self.tw.p.clone() * self.f0_n.clone();
        let coef: Tensor<3> = Tensor::stack(
            vec![
                full(k.a),
                full(k.b),
                full(k.c),
                full(self.tw.t_s.clone()),
                full(gc),
                full(w_n),
                full(cs),
            ],
            0,
        );
        let spec = TwitchScanSpec {
            fuglevand: self.gain == GainMode::Fuglevand,
            saturation: self.sat_c.is_some(),
            delays: self.delays_for(dt_s).unwrap_or_default(),
            dt_s,
            tau0_s: NO_PREVIOUS_SPIKE_S,
        };
        twitch_scan(spikes, coef, &spec)
    }
}

impl TwitchForce {
    /// `[1|batch, w]` host values expanded to `[batch·n]` (w = 1 or n).
    fn expand_host(t: &Tensor<2>, batch: usize, n: usize) -> Vec<f64> {
        let v = to_vec_f64(t.clone());
        let [r, w] = t.dims();
        (0..batch * n)
            .map(|k| {
                let (b, i) = (k / n, k % n);
                v[(if r == 1 { 0 } else { b }) * w + if w == 1 { 0 } else { i }]
            })
            .collect()
    }
}

impl HostStage for TwitchForce {
    fn host_init(&mut self, cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let (batch, n) = (cx.batch, self.n_units());
        let k = iir_coeffs(&self.tw.t_s, cx.dt_s)?;
        let ex = |t: &Tensor<2>| Self::expand_host(t, batch, n);
        let gain = match self.gain {
            GainMode::MyogenCompat => ex(&myogen_compat_gain(&self.tw.t_s, self.compat_fs_hz)),
            _ => vec![1.0; batch * n],
        };
        let delays = self.delays_for(cx.dt_s).unwrap_or_else(|| vec![0; n]);
        let f0 = to_vec_f64(self.f0_n.clone());
        let mut h = HostForce {
            n,
            a: ex(&k.a),
            b: ex(&k.b),
            c: ex(&k.c),
            t_s: ex(&self.tw.t_s),
            gain,
            p: ex(&self.tw.p),
            sat: self.sat_c.as_ref().map(ex),
            f0: (0..batch).map(|b| row(&f0, b)).collect(),
            delays,
            f_cur: vec![0.0; batch * n],
            f_prev: vec![0.0; batch * n],
            tau: vec![NO_PREVIOUS_SPIKE_S; batch * n],
            u: vec![0.0; n],
            py: vec![0.0; n],
            sd: vec![0.0; n],
            ..Default::default()
        };
        h.line = DelayLine::new(batch * n, h.delays.iter().copied().max().unwrap_or(0));
        self.host_state = h;
        Ok(())
    }
    /// Delay, gain (`τ' = τ + dt − s̃·τ` in Fuglevand mode), output `F0·Σ P_i·y(f_i)` from the
    /// current state, then the IIR advance — as `step`.
    #[allow(clippy::needless_range_loop)] // several arrays share the index
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let h = &mut self.host_state;
        let n = h.n;
        let width = cx.batch * n;
        let s = ins[0];
        if s.len() != width {
            return Err(Error::shape(
                &self.input,
                format!("[{}, {n}]", cx.batch),
                format!("{} values", s.len()),
            ));
        }
        h.line.push(t, s);
        let base = h.line.base(t);
        let fug = self.gain == GainMode::Fuglevand;
        let undelayed = h.line.depth() == 0;
        for b in 0..cx.batch {
            let rows = b * n..(b + 1) * n;
            // (1) the delayed spikes s̃ (the input row itself when no unit has a delay)
            let sd: &[f64] = if undelayed {
                &s[rows.clone()]
            } else {
                h.line.gather(t, base, &h.delays, b * n, &mut h.sd);
                &h.sd
            };
            // … scaled by the gain: Fuglevand's from the time since the unit's last spike
            // (only where a spike arrives), then τ' = τ + dt − s̃·τ
            let u = &mut h.u;
            if fug {
                let (ts, tau) = (&h.t_s[rows.clone()], &mut h.tau[rows.clone()]);
                u.fill(0.0);
                for (i, &x) in sd.iter().enumerate() {
                    if x != 0.0 {
                        u[i] = x * fuglevand_gain_f64(ts[i] / tau[i]);
                    }
                }
                for (tau, &x) in tau.iter_mut().zip(sd) {
                    *tau = *tau + cx.dt_s - x * *tau;
                }
            } else {
                for ((u, &x), &g) in u.iter_mut().zip(sd).zip(&h.gain[rows.clone()]) {
                    *u = x * g;
                }
            }
            // (2) the output from the current state, then the IIR advance (vectorised)
            let (fc, fp) = (&mut h.f_cur[rows.clone()], &mut h.f_prev[rows.clone()]);
            let p = &h.p[rows.clone()];
            match &h.sat {
                Some(sc) => {
                    for ((py, &p), (&c, &f)) in
                        h.py.iter_mut()
                            .zip(p)
                            .zip(sc[rows.clone()].iter().zip(fc.iter()))
                    {
                        *py = p * sat_y(c, f).0;
                    }
                }
                None => {
                    for ((py, &p), &f) in h.py.iter_mut().zip(p).zip(fc.iter()) {
                        *py = p * f;
                    }
                }
            }
            let coef = h.a[rows.clone()]
                .iter()
                .zip(&h.b[rows.clone()])
                .zip(&h.c[rows.clone()]);
            for (((fc, fp), ((&a, &bb), &c)), &u) in
                fc.iter_mut().zip(fp.iter_mut()).zip(coef).zip(u.iter())
            {
                let f_next = a * *fc - bb * *fp + c * u;
                *fp = *fc;
                *fc = f_next;
            }
            outs[0][b] = sum4(&h.py) * h.f0[b];
        }
        Ok(())
    }
    fn host_save(&self, at: SaveAt, into: &mut Vec<f64>) {
        let h = &self.host_state;
        for v in [&h.f_cur, &h.f_prev, &h.tau] {
            into.extend_from_slice(v);
        }
        h.line.save(at, into);
    }
    fn host_load(&mut self, at: SaveAt, from: &[f64]) {
        let h = &mut self.host_state;
        let mut k = 0;
        for v in [&mut h.f_cur, &mut h.f_prev, &mut h.tau] {
            let m = v.len();
            v.copy_from_slice(&from[k..k + m]);
            k += m;
        }
        h.line.load(at, &from[k..]);
    }
    fn adjoint_init(&mut self, _cx: &HostCx, segment: usize) -> Result<()> {
        let h = &mut self.host_state;
        let width = h.f_cur.len();
        h.l_cur = vec![0.0; width];
        h.l_prev = vec![0.0; width];
        h.l_tau = vec![0.0; width];
        h.g_f0 = vec![0.0; h.f0.len()];
        h.line.lengthen(segment);
        Ok(())
    }
    /// Reverse of the step: the IIR (`λ_f ← a·λ_f' + λ_fprev' + F0·P·y'(f)·ḡ`,
    /// `λ_fprev ← −b·λ_f'`), the gain (`∂u/∂s̃ = g − λ_τ'·τ/…`, `∂g/∂τ = −g'(r)·T/τ²`) and the
    /// delay (adjoints delivered to the input tick `t − d_i`); `∂L/∂F0` per row.
    #[allow(clippy::needless_range_loop)] // several arrays share the index
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, t: usize) -> Result<()> {
        let VjpIo { g_outs, g_ins, .. } = io;
        let h = &mut self.host_state;
        let n = h.n;
        let base = h.line.base(t);
        let fug = self.gain == GainMode::Fuglevand;
        for b in 0..cx.batch {
            let go = g_outs[0][b];
            let mut sum_py = 0.0;
            for i in 0..n {
                let k = b * n + i;
                let d = h.delays[i];
                // the segment's recomputation left tick t's input in the line
                let sd = h.line.get_from(t, base, d, k);
                let (y, dy) = h.y(k, h.f_cur[k]);
                sum_py += h.p[k] * y;
                let lf_next = h.l_cur[k];
                let gu = lf_next * h.c[k];
                let l_cur = lf_next * h.a[k] + h.l_prev[k] + go * h.f0[b] * h.p[k] * dy;
                let l_prev = -(lf_next * h.b[k]);
                let gsd = if fug {
                    let tau = h.tau[k];
                    let r = h.t_s[k] / tau;
                    let g = fuglevand_gain_f64(r);
                    let dg = fuglevand_gain_slope_f64(r);
                    let lt = h.l_tau[k];
                    h.l_tau[k] = gu * sd * dg * (-h.t_s[k] / (tau * tau)) + lt * (1.0 - sd);
                    gu * g - lt * tau
                } else {
                    gu * h.gain[k]
                };
                h.l_cur[k] = l_cur;
                h.l_prev[k] = l_prev;
                h.line.add_adjoint(t, d, k, gsd);
            }
            let row_i = if h.g_f0.len() == 1 { 0 } else { b };
            h.g_f0[row_i] += go * sum_py;
        }
        h.line.take_adjoint(t, &mut g_ins[0]);
        Ok(())
    }
    fn param_grads(&self) -> Vec<(String, Vec<f64>)> {
        vec![("f0_n".into(), self.host_state.g_f0.clone())]
    }
}

impl Stage for TwitchForce {
    fn name(&self) -> &str {
        &self.name
    }

    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::now(self.input.clone())],
            writes: vec![BufferSpec::new(self.output.clone(), &[1], "N")],
        }
    }

    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let batch = io.batch();
        let dt_s = io.dt_s();
        let n = self.n_units();
        for (field, b) in [
            ("p", self.tw.p.dims()[0]),
            ("t_s", self.tw.t_s.dims()[0]),
            ("f0_n", self.f0_n.dims()[0]),
        ] {
            if b != 1 && b != batch {
                return Err(Error::shape(field, format!("batch {batch} or 1"), b));
            }
        }
        if let Some(c) = &self.sat_c
            && c.dims()[0] != 1
            && c.dims()[0] != batch
        {
            return Err(Error::shape(
                "saturation_c",
                format!("batch {batch} or 1"),
                c.dims()[0],
            ));
        }
        let k = iir_coeffs(&self.tw.t_s, dt_s)?;
        let ctx = io.ctx().clone();
        let zeros = ctx.zeros([batch, n]);
        let tau_s =
            (self.gain == GainMode::Fuglevand).then(|| ctx.full([batch, n], NO_PREVIOUS_SPIKE_S));
        let const_gain = (self.gain == GainMode::MyogenCompat)
            .then(|| myogen_compat_gain(&self.tw.t_s, self.compat_fs_hz));
        let delay = match self.delays_for(dt_s) {
            Some(d) if d.iter().any(|&x| x > 0) => {
                let d_max = *d.iter().max().expect("n >= 1");
                let idx: Vec<i64> = (0..batch)
                    .flat_map(|_| d.iter().map(|&x| x as i64))
                    .collect();
                let idx =
                    Tensor::<3, Int>::from_data(TensorData::new(idx, [batch, 1, n]), &ctx.device);
                Some((ctx.zeros([batch, d_max + 1, n]), idx))
            }
            _ => None,
        };
        self.state = Some(ForceState {
            k,
            f_cur: zeros.clone(),
            f_prev: zeros,
            tau_s,
            const_gain,
            delay,
        });
        Ok(())
    }

    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let s = io.read(&self.input)?;
        let [batch, w] = s.dims();
        let n = self.n_units();
        if w != n {
            return Err(Error::shape(
                &self.input,
                format!("[batch, {n}]"),
                format!("{:?}", s.dims()),
            ));
        }
        let dt_s = io.dt_s();
        let mut st = self
            .state
            .take()
            .ok_or_else(|| Error::config(&self.name, "step called before init"))?;
        // 1. axonal delay (FIFO, newest first; unit i reads the entry d_i steps back)
        let s_d = match st.delay.take() {
            Some((line, idx)) => {
                let [_, len, _] = line.dims();
                let line = Tensor::cat(
                    vec![
                        s.reshape([batch, 1, n]),
                        line.slice([0..batch, 0..len - 1, 0..n]),
                    ],
                    1,
                );
                let s_d = line.clone().gather(1, idx.clone()).reshape([batch, n]);
                st.delay = Some((line, idx));
                s_d
            }
            None => s,
        };
        // 2. gain
        let u = match self.gain {
            GainMode::None => s_d,
            GainMode::MyogenCompat => s_d * st.const_gain.clone().expect("set in init"),
            GainMode::Fuglevand => {
                let tau = st.tau_s.take().expect("set in init");
                let g = fuglevand_gain(self.tw.t_s.clone() / tau.clone());
                st.tau_s = Some(tau.clone() + dt_s - s_d.clone() * tau);
                s_d * g
            }
        };
        // 3. output from the current twitch state, then advance the IIR
        let out = self.readout(st.f_cur.clone());
        let f_next = iir_step(&st.k, st.f_cur.clone(), st.f_prev, u);
        st.f_prev = st.f_cur;
        st.f_cur = f_next;
        self.state = Some(st);
        io.write(&self.output, out)
    }

    fn scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        _batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        if !fused_supported(&ctx.device) {
            return None;
        }
        let spikes = match inputs.get(&self.input) {
            Some(s) => s.clone(),
            None => {
                return Some(Err(Error::MissingBuffer {
                    stage: self.name.clone(),
                    buffer: self.input.clone(),
                }));
            }
        };
        Some(
            self.fused_force(spikes, ctx, dt_s)
                .map(|f| [(self.output.clone(), f)].into_iter().collect()),
        )
    }

    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}
