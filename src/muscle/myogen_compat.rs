//! Exact host-side (f64) emulation of MyoGen 0.12's open-loop `ForceModel` (MODEL.md §3.1,
//! fixtures README §2), for side-by-side comparisons with MyoGen. Not differentiable; the
//! differentiable model is [`super::force::TwitchForce`] (with `GainMode::MyogenCompat` it
//! reproduces the same twitches and gains on the simulation grid).
//!
//! What MyoGen does, step by step (reimplemented from its documented behaviour):
//! 1. `RP = rt[N−1]/rt[0]`; `P_i = exp(ln(RP)/N · i)`, `i = 1..N`; `T_i = T_L·fs/1000 ·
//!    (1/P_i)^{1/log_RT(RP)}` samples at the recording rate `fs`.
//! 2. Twitch of unit `i` sampled at `fs`: `tw_i[k] = P_i/T_i · k · e^{1 − k/T_i}`,
//!    `k = 0 .. min(⌈5·max T⌉, ⌈5 T_i⌉) − 1` (truncated at about 9 % of its peak).
//! 3. Each twitch is linearly interpolated (`np.interp`, clamped at the ends) onto the spike-train
//!    grid `x_j = j·dt`, `j = 0 .. ⌈((len−1)/fs + dt)/dt⌉ − 1`.
//! 4. Gain per spike: Fuglevand eq. 17 `g(T_i / ipi)` with MyoGen's ipi, built from the sawtooth
//!    of the spike train shifted by one bin — which makes `ipi = 1` bin at every spike (or 0,
//!    wrapped to 2³²−1 as `uint32`, when the next bin also spikes, giving gain 1). So the gain is
//!    `(Sf(T_i)/T_i)/(Sf(0.4)/0.4)` (≈ 3.33/T_i) whatever the rate: "the quirk".
//! 5. `force[t + j] += g · tw_rs[j]` on the spike grid (`L` bins), then linearly interpolated to
//!    `fs`: output times `m/fs`, `m = 0 .. ⌈L·dt·fs⌉ − 1`.
//!
//! Output is dimensionless (MyoGen's raw units; multiply by `F0` for newtons).

use burn::tensor::Tensor;

use super::twitch::fuglevand_gain_f64;
use crate::error::{Error, Result};
use crate::kernel::{BufferSpec, Ctx, Readout, Traces, names, to_vec_f64};

/// `np.arange(0, stop, step).len()` as numpy computes it: `⌈stop/step⌉` (at least 0).
fn arange_len(stop: f64, step: f64) -> usize {
    let n = (stop / step).ceil();
    if n > 0.0 { n as usize } else { 0 }
}

/// `np.interp(x, xp, fp)` for an increasing grid `xp[k] = xp_at(k)`, `k < n`: linear between
/// neighbours, `fp[0]` left of the grid, `fp[n−1]` right of it.
fn interp_uniform(x: f64, n: usize, xp_at: impl Fn(usize) -> f64, step: f64, fp: &[f64]) -> f64 {
    if n == 0 {
        return 0.0;
    }
    if x <= xp_at(0) {
        return fp[0];
    }
    if x >= xp_at(n - 1) {
        return fp[n - 1];
    }
    let mut j = ((x / step).floor() as usize).min(n - 2);
    while j + 1 < n - 1 && xp_at(j + 1) <= x {
        j += 1;
    }
    while j > 0 && xp_at(j) > x {
        j -= 1;
    }
    let (x0, x1) = (xp_at(j), xp_at(j + 1));
    let slope = (fp[j + 1] - fp[j]) / (x1 - x0);
    slope * (x - x0) + fp[j]
}

/// MyoGen's spike-bin index of a spike at `t_s` on a grid of `dt_s` starting at `t_start_s`:
/// `⌊(t − t_start)/dt⌋` (with a 1e−9 relative tolerance against round-off, as binning libraries do).
pub fn bin_index(t_s: f64, t_start_s: f64, dt_s: f64) -> usize {
    let x = (t_s - t_start_s) / dt_s;
    (x + 1e-9 * x.abs().max(1.0)).floor().max(0.0) as usize
}

/// MyoGen 0.12's open-loop Fuglevand `ForceModel` (see the module docs).
#[derive(Clone, Debug)]
pub struct MyogenForceModel {
    /// Recording (output) frequency `fs` (Hz).
    pub fs_hz: f64,
    /// Peak twitch amplitudes `P_i` (dimensionless).
    pub p: Vec<f64>,
    /// Contraction times `T_i` in samples at `fs`.
    pub t_samples: Vec<f64>,
    /// Twitches sampled at `fs`, truncated per unit.
    pub twitches: Vec<Vec<f64>>,
}

impl MyogenForceModel {
    /// Builds the model from recruitment thresholds `rt` (sorted, > 0; only `rt[0]`, `rt[N−1]`
    /// and `N` matter), recording frequency `fs_hz` (Hz), longest contraction time `t_l_ms` (ms;
    /// MyoGen default 90) and contraction-time range `ct_range` (> 1; default 3):
    /// `P_i = exp(ln(RP)/N·i)`, `T_i = T_L·fs/1000·(1/P_i)^{1/log_RT(RP)}` samples, `RP = rt[N−1]/rt[0]`.
    pub fn new(rt: &[f64], fs_hz: f64, t_l_ms: f64, ct_range: f64) -> Result<Self> {
        if rt.is_empty() {
            return Err(Error::invalid(
                "recruitment_thresholds",
                "[]",
                "at least one threshold",
            ));
        }
        if let Some(i) = rt.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(Error::invalid(
                format!("recruitment_thresholds[{i}]"),
                rt[i],
                "finite and > 0",
            ));
        }
        if !(fs_hz.is_finite() && fs_hz > 0.0) {
            return Err(Error::invalid("fs_hz", fs_hz, "finite and > 0 (Hz)"));
        }
        if !(t_l_ms.is_finite() && t_l_ms > 0.0) {
            return Err(Error::invalid("t_l_ms", t_l_ms, "finite and > 0 (ms)"));
        }
        if !(ct_range.is_finite() && ct_range > 1.0) {
            return Err(Error::invalid("ct_range", ct_range, "finite and > 1"));
        }
        let n = rt.len();
        let rp = rt[n - 1] / rt[0];
        if rp.is_nan() || rp <= 1.0 {
            return Err(Error::invalid(
                "recruitment_thresholds",
                format!("rt[last]/rt[0] = {rp}"),
                "a range ratio > 1 (it sets the peak-twitch range RP)",
            ));
        }
        let t_l_samples = t_l_ms / 1000.0 * fs_hz;
        let p: Vec<f64> = (1..=n)
            .map(|i| ((rp.ln() / n as f64) * i as f64).exp())
            .collect();
        let log_rt_rp = rp.ln() / ct_range.ln();
        let t_samples: Vec<f64> = p
            .iter()
            .map(|pi| t_l_samples * (1.0 / pi).powf(1.0 / log_rt_rp))
            .collect();
        let t_max = t_samples.iter().cloned().fold(0.0, f64::max);
        let max_len = (5.0 * t_max).ceil() as usize;
        let twitches = p
            .iter()
            .zip(&t_samples)
            .map(|(&pi, &ti)| {
                let len = max_len.min((5.0 * ti).ceil() as usize);
                (0..len)
                    .map(|k| pi / ti * k as f64 * (1.0 - k as f64 / ti).exp())
                    .collect()
            })
            .collect();
        Ok(Self {
            fs_hz,
            p,
            t_samples,
            twitches,
        })
    }

    /// Number of motor units.
    pub fn n_units(&self) -> usize {
        self.p.len()
    }

    /// MyoGen's `ipi` (in bins) at each spike bin of one unit, as `sawtooth2ipi(spikes2sawtooth(
    /// shift(spikes)), spikes)` computes it (`uint32` arithmetic: a 0 becomes 2³²−1).
    /// `spike_bins` must be sorted; duplicates count once (binning to booleans).
    #[allow(clippy::needless_range_loop)] // mirrors MyoGen's index arithmetic
    pub fn myogen_ipi_at_spikes(spike_bins: &[usize], n_bins: usize) -> Vec<u64> {
        let l = n_bins;
        let mut s = vec![false; l];
        for &b in spike_bins {
            if b < l {
                s[b] = true;
            }
        }
        // forward sawtooth of the spikes shifted one bin earlier (last bin padded with 0)
        let shifted = |j: usize| j + 1 < l && s[j + 1];
        let mut fwd = vec![0u64; l];
        if l > 0 {
            fwd[0] = if shifted(0) { 0 } else { 1 };
        }
        let mut reset = 0usize; // running max of j·shifted[j] over j <= current − 1
        for j in 1..l {
            if shifted(j - 1) {
                reset = reset.max(j - 1);
            }
            fwd[j] = if shifted(j) { 0 } else { (j - reset) as u64 };
        }
        // backward sawtooth: of the reversed (unshifted) spikes, initial value fwd[0]
        let mut bwd_rev = vec![0u64; l];
        if l > 0 {
            bwd_rev[0] = if s[l - 1] { 0 } else { fwd[0] };
        }
        let rev = |j: usize| s[l - 1 - j];
        let mut reset = 0usize;
        for j in 1..l {
            if rev(j - 1) {
                reset = reset.max(j - 1);
            }
            bwd_rev[j] = if rev(j) { 0 } else { (j - reset) as u64 };
        }
        let mut out = Vec::new();
        let mut last = None;
        for &b in spike_bins {
            if b >= l || last == Some(b) {
                continue;
            }
            last = Some(b);
            let ipi = fwd[b] + bwd_rev[l - 1 - b];
            out.push(if ipi == 0 { u32::MAX as u64 } else { ipi });
        }
        out
    }

    /// The gain MyoGen multiplies each twitch of unit `unit` by, at each (distinct, in-range)
    /// spike bin: `g(T_i/ipi)` (Fuglevand eq. 17 with MyoGen's ipi, see
    /// [`Self::myogen_ipi_at_spikes`]).
    pub fn gains_at_spikes(&self, unit: usize, spike_bins: &[usize], n_bins: usize) -> Vec<f64> {
        let t = self.t_samples[unit];
        Self::myogen_ipi_at_spikes(spike_bins, n_bins)
            .into_iter()
            .map(|ipi| fuglevand_gain_f64(t / ipi as f64))
            .collect()
    }

    /// Unit `unit`'s twitch linearly resampled onto a spike grid of `spike_dt_s` (step 3 of the
    /// module docs).
    pub fn resampled_twitch(&self, unit: usize, spike_dt_s: f64) -> Vec<f64> {
        let tw = &self.twitches[unit];
        let len = tw.len();
        let fdt = 1.0 / self.fs_hz;
        // MyoGen passes the spike-train period through milliseconds
        let sdt = (spike_dt_s * 1000.0) / 1000.0;
        let duration = (len as f64 - 1.0) * fdt;
        let n_new = arange_len(duration + sdt, sdt);
        (0..n_new)
            .map(|j| interp_uniform(j as f64 * sdt, len, |k| k as f64 * fdt, fdt, tw))
            .collect()
    }

    fn check_spikes(&self, spikes: &[Vec<usize>], spike_dt_s: f64) -> Result<()> {
        if spikes.len() != self.n_units() {
            return Err(Error::shape("spike_trains", self.n_units(), spikes.len()));
        }
        if !(spike_dt_s.is_finite() && spike_dt_s > 0.0) {
            return Err(Error::invalid(
                "spike_dt_s",
                spike_dt_s,
                "finite and > 0 (s)",
            ));
        }
        for (u, bins) in spikes.iter().enumerate() {
            if bins.windows(2).any(|w| w[1] < w[0]) {
                return Err(Error::invalid(
                    format!("spike_trains[{u}]"),
                    "unsorted bins",
                    "sorted bin indices",
                ));
            }
        }
        Ok(())
    }

    /// Force on the spike grid (`n_bins` bins of `spike_dt_s`), before MyoGen's final
    /// resampling: `F[t] = Σ_i Σ_{spikes k} g_ik · tw_rs_i[t − k]` (dimensionless).
    /// `spikes[i]` = sorted spike-bin indices of unit `i`.
    pub fn force_on_spike_grid(
        &self,
        spikes: &[Vec<usize>],
        n_bins: usize,
        spike_dt_s: f64,
    ) -> Result<Vec<f64>> {
        self.check_spikes(spikes, spike_dt_s)?;
        let mut force = vec![0.0; n_bins];
        for (u, bins) in spikes.iter().enumerate() {
            if bins.is_empty() {
                continue;
            }
            let gains = self.gains_at_spikes(u, bins, n_bins);
            let tw = self.resampled_twitch(u, spike_dt_s);
            let mut distinct = bins
                .iter()
                .copied()
                .filter(|&b| b < n_bins)
                .collect::<Vec<_>>();
            distinct.dedup();
            for (&t, &g) in distinct.iter().zip(&gains) {
                let take = tw.len().min(n_bins - t);
                for j in 0..take {
                    force[t + j] += g * tw[j];
                }
            }
        }
        Ok(force)
    }

    /// MyoGen's `generate_force` for one pool: the spike-grid force of
    /// [`Self::force_on_spike_grid`] linearly interpolated to `fs` (output sample `m` at
    /// `m/fs` s, `m = 0 .. ⌈n_bins·dt·fs⌉ − 1`). Dimensionless.
    pub fn generate_force(
        &self,
        spikes: &[Vec<usize>],
        n_bins: usize,
        spike_dt_s: f64,
    ) -> Result<Vec<f64>> {
        let f = self.force_on_spike_grid(spikes, n_bins, spike_dt_s)?;
        let sdt = (spike_dt_s * 1000.0) / 1000.0;
        let fdt = 1.0 / self.fs_hz;
        let n_out = arange_len(n_bins as f64 * sdt, fdt);
        Ok((0..n_out)
            .map(|m| interp_uniform(m as f64 * fdt, n_bins, |j| j as f64 * sdt, sdt, &f))
            .collect())
    }
}

/// A [`Readout`] that runs [`MyogenForceModel::force_on_spike_grid`] on the recorded `spikes`
/// trace (a value > 0.5 is a spike) of every batch element and writes `F0 ×` that force on the
/// simulation grid as `force_myogen_n` `[1]` (N). Not differentiable (host-side f64).
pub struct MyogenForceReadout {
    model: MyogenForceModel,
    f0_n: f64,
    input: String,
    output: String,
}

impl MyogenForceReadout {
    /// Readout of `model` scaled by `f0_n` newtons per raw MyoGen unit.
    pub fn new(model: MyogenForceModel, f0_n: f64) -> Result<Self> {
        if !(f0_n.is_finite() && f0_n >= 0.0) {
            return Err(Error::invalid("f0_n", f0_n, "finite and >= 0 (N)"));
        }
        Ok(Self {
            model,
            f0_n,
            input: names::SPIKES.into(),
            output: "force_myogen_n".into(),
        })
    }

    /// Renames the input (default `spikes`) and output (default `force_myogen_n`) traces.
    pub fn with_buffers(mut self, input: impl Into<String>, output: impl Into<String>) -> Self {
        self.input = input.into();
        self.output = output.into();
        self
    }
}

impl Readout for MyogenForceReadout {
    fn name(&self) -> &str {
        "myogen_force"
    }
    fn reads(&self) -> Vec<String> {
        vec![self.input.clone()]
    }
    fn writes(&self) -> Vec<BufferSpec> {
        vec![BufferSpec::new(self.output.clone(), &[1], "N")]
    }
    fn run(&self, traces: &Traces, ctx: &Ctx, dt_s: f64) -> Result<Traces> {
        let tr = traces
            .get(&self.input)
            .ok_or_else(|| Error::MissingBuffer {
                stage: self.name().into(),
                buffer: self.input.clone(),
            })?;
        let [n_t, batch, w] = tr.dims();
        if w != self.model.n_units() {
            return Err(Error::shape(
                &self.input,
                format!("[n_t, batch, {}]", self.model.n_units()),
                format!("{:?}", tr.dims()),
            ));
        }
        let v = to_vec_f64(tr.clone());
        let mut out = vec![0.0; n_t * batch];
        for b in 0..batch {
            let spikes: Vec<Vec<usize>> = (0..w)
                .map(|u| {
                    (0..n_t)
                        .filter(|&t| v[(t * batch + b) * w + u] > 0.5)
                        .collect()
                })
                .collect();
            let f = self.model.force_on_spike_grid(&spikes, n_t, dt_s)?;
            for t in 0..n_t {
                out[t * batch + b] = self.f0_n * f[t];
            }
        }
        let t: Tensor<3> = ctx.tensor(out, [n_t, batch, 1]);
        Ok([(self.output.clone(), t)].into_iter().collect())
    }
}
