//! Afferent fibre populations (MODEL.md §5 step 3): the Ia / II rate of the spindle or the Ib rate
//! of the GTO, taken from the **previous** tick (the loop's one-tick feedback delay), drives a
//! population of fibres, each with a recruitment threshold, a gamma/Poisson spike generator and an
//! axonal conduction delay.
//!
//! Per fibre i (n fibres) and step t, with `r = rate[t − 1]` (Hz):
//! 1. recruitment: `r_i = r if r ≥ RT_i else 0` (hard modes); in rate mode the smooth gate
//!    `r_i = r·σ((r − RT_i)/w)` with `w` = [`AfferentPoolConfig::gate_width_hz`] (the smooth
//!    stand-in, as the sigmoid spike is for the pool) — [`RecruitmentGate`];
//! 2. a hazard generator at rate `r_i` ([`InputPopulation`] with per-fibre rates: gamma thresholds
//!    of shape k, or Poisson) — spikes, or expected counts `r_i·dt` in rate mode;
//! 3. the conduction delay `d_i = L_axon / cv_i` rounded to whole steps, ≥ 1 ([`ConductionDelay`]).
//!
//! Defaults are MyoGen's (`jaxley/populations/afferents.py`, example 11): thresholds linearly
//! spaced over 0–40 Hz, conduction velocities linearly spaced over 61–75 m/s (Ia, Ib) or 30–50 m/s
//! (II), a 0.6 m axon (delays 8.0–9.8 ms for Ia/Ib, 12–20 ms for II), and population sizes 73 Ia,
//! 80 II, 58 Ib. MyoGen's example runs the generators as Poisson processes (shape 1); its NEURON
//! cells default to gamma shapes 145 (Ia, Ib) and 772 (II).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::delay::ConductionDelay;
use crate::drive::generator::{
    GeneratorMode, InputPopulation, InputPopulationConfig, SpikeProcess,
};
use crate::error::{Error, Result, check};
use crate::kernel::{BufferSpec, HostCx, HostStage, ReadSpec, Stage, StageDecl, StageIo, VjpIo};

/// Which receptor a population listens to (sets MyoGen's default sizes and velocities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfferentKind {
    /// Spindle primary (Ia), reads `ia_hz`.
    Ia,
    /// Spindle secondary (II), reads `ii_hz`.
    Ii,
    /// Golgi tendon organ (Ib), reads `ib_hz`.
    Ib,
}

impl AfferentKind {
    /// Short name used in stage and buffer names (`ia`, `ii`, `ib`).
    pub fn tag(self) -> &'static str {
        match self {
            AfferentKind::Ia => "ia",
            AfferentKind::Ii => "ii",
            AfferentKind::Ib => "ib",
        }
    }
    /// The receptor rate buffer (Hz) the population reads, one tick delayed.
    pub fn rate_buffer(self) -> &'static str {
        match self {
            AfferentKind::Ia => "ia_hz",
            AfferentKind::Ii => "ii_hz",
            AfferentKind::Ib => "ib_hz",
        }
    }
    /// The delayed fibre spikes `[n]` the population writes (`ia_spikes`, …).
    pub fn spike_buffer(self) -> String {
        format!("{}_spikes", self.tag())
    }
}

/// One afferent population (sizes in fibres, rates in Hz, velocities in m/s, lengths in m).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AfferentPoolConfig {
    /// Number of fibres (≥ 1).
    pub n: usize,
    /// Recruitment thresholds, linearly spaced from the first to the second value (Hz, ≥ 0).
    pub threshold_hz: [f64; 2],
    /// Conduction velocities, linearly spaced (m/s, > 0).
    pub velocity_m_s: [f64; 2],
    /// Axon length (m, ≥ 0); delay_i = length / velocity_i.
    pub axon_length_m: f64,
    /// Inter-spike statistics of the fibres.
    pub process: SpikeProcess,
    /// Width of the smooth recruitment gate in rate mode (Hz, > 0).
    pub gate_width_hz: f64,
    /// Upper bound of the fibre rates (Hz), sizes the pre-drawn thresholds.
    pub max_rate_hz: f64,
}

impl Default for AfferentPoolConfig {
    /// MyoGen's Ia population (73 fibres, 0–40 Hz, 61–75 m/s, 0.6 m, Poisson).
    fn default() -> Self {
        Self::myogen(AfferentKind::Ia)
    }
}

impl AfferentPoolConfig {
    /// MyoGen's example-11 population for `kind` (see the module docs).
    pub fn myogen(kind: AfferentKind) -> Self {
        let (n, v) = match kind {
            AfferentKind::Ia => (73, [61.0, 75.0]),
            AfferentKind::Ii => (80, [30.0, 50.0]),
            AfferentKind::Ib => (58, [61.0, 75.0]),
        };
        Self {
            n,
            threshold_hz: [0.0, 40.0],
            velocity_m_s: v,
            axon_length_m: 0.6,
            process: SpikeProcess::Poisson,
            gate_width_hz: 1.0,
            max_rate_hz: 500.0,
        }
    }

    /// Checks every field; `what` prefixes the field names in errors (e.g. `ia`).
    pub fn validate(&self, what: &str) -> Result<()> {
        check::count_at_least(&format!("{what}.n"), self.n, 1)?;
        for (k, t) in self.threshold_hz.iter().enumerate() {
            check::non_negative(&format!("{what}.threshold_hz[{k}]"), *t)?;
        }
        for (k, v) in self.velocity_m_s.iter().enumerate() {
            check::positive(&format!("{what}.velocity_m_s[{k}]"), *v)?;
        }
        check::non_negative(&format!("{what}.axon_length_m"), self.axon_length_m)?;
        if let SpikeProcess::Gamma { shape_k } = self.process {
            check::positive(&format!("{what}.process.shape_k"), shape_k)?;
        }
        check::positive(&format!("{what}.gate_width_hz"), self.gate_width_hz)?;
        check::positive(&format!("{what}.max_rate_hz"), self.max_rate_hz)?;
        Ok(())
    }

    fn spaced(&self, r: [f64; 2]) -> Vec<f64> {
        if self.n == 1 {
            return vec![r[0]];
        }
        (0..self.n)
            .map(|i| r[0] + (r[1] - r[0]) * i as f64 / (self.n - 1) as f64)
            .collect()
    }

    /// Recruitment thresholds per fibre (Hz).
    pub fn thresholds_hz(&self) -> Vec<f64> {
        self.spaced(self.threshold_hz)
    }

    /// Conduction delays per fibre (s): `axon_length / velocity`.
    pub fn delays_s(&self) -> Vec<f64> {
        self.spaced(self.velocity_m_s)
            .into_iter()
            .map(|v| self.axon_length_m / v)
            .collect()
    }

    /// The three stages of the population for `kind`: `<tag>_gate` (reads the receptor rate one
    /// tick delayed, writes `<tag>_fibre_rate_hz`), `<tag>_generators` (writes `<tag>_emitted`)
    /// and `<tag>_delay` (writes `<tag>_spikes`). `mode` is the generators' mode (Rate = smooth).
    pub fn stages(
        &self,
        kind: AfferentKind,
        mode: GeneratorMode,
        seed: u64,
    ) -> Result<Vec<Box<dyn Stage>>> {
        let tag = kind.tag();
        self.validate(tag)?;
        let rates = format!("{tag}_fibre_rate_hz");
        let emitted = format!("{tag}_emitted");
        let gate = RecruitmentGate {
            name: format!("{tag}_gate"),
            input: kind.rate_buffer().into(),
            output: rates.clone(),
            thresholds_hz: self.thresholds_hz(),
            smooth_width_hz: (mode == GeneratorMode::Rate).then_some(self.gate_width_hz),
            rt: None,
        };
        let generators = InputPopulation::new(InputPopulationConfig {
            n_dd: self.n,
            process: self.process,
            mode,
            seed,
            max_rate_hz: self.max_rate_hz,
            ..Default::default()
        })?
        .with_buffers(format!("{tag}_generators"), rates, emitted.clone())
        .with_rate_bound_field(format!("{tag}.max_rate_hz"));
        let delay = ConductionDelay::new(
            format!("{tag}_delay"),
            emitted,
            kind.spike_buffer(),
            "spike/step",
            self.delays_s(),
        )?;
        Ok(vec![Box::new(gate), Box::new(generators), Box::new(delay)])
    }
}

/// Recruitment of the fibres by the receptor rate (see the module docs, step 1): reads `input`
/// `[1]` (Hz) **one tick delayed**, writes `output` `[n]` (Hz).
pub struct RecruitmentGate {
    name: String,
    input: String,
    output: String,
    thresholds_hz: Vec<f64>,
    smooth_width_hz: Option<f64>,
    /// Thresholds `[batch, n]` (Hz), built at `init`.
    rt: Option<Tensor<2>>,
}

impl Stage for RecruitmentGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn declare(&self) -> StageDecl {
        StageDecl {
            reads: vec![ReadSpec::delayed(self.input.clone())],
            writes: vec![BufferSpec::new(
                self.output.clone(),
                &[self.thresholds_hz.len()],
                "Hz",
            )],
        }
    }
    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let n = self.thresholds_hz.len();
        let rt = io.ctx().tensor(self.thresholds_hz.clone(), [1, n]);
        self.rt = Some(rt.repeat_dim(0, io.batch()));
        Ok(())
    }
    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let r = io.read(&self.input)?;
        let rt = self
            .rt
            .clone()
            .ok_or_else(|| Error::config(&self.name, "step called before init"))?;
        let [b, w] = r.dims();
        if w != 1 {
            return Err(Error::shape(
                format!("{}.{}", self.name, self.input),
                format!("[{b}, 1]"),
                format!("{:?}", r.dims()),
            ));
        }
        let n = self.thresholds_hz.len();
        let r = r.repeat_dim(1, n);
        let gated = match self.smooth_width_hz {
            Some(w) => {
                let g = burn::tensor::activation::sigmoid((r.clone() - rt).div_scalar(w));
                r * g
            }
            None => {
                let below = r.clone().detach().lower(rt);
                r.mask_fill(below, 0.0)
            }
        };
        io.write(&self.output, gated)
    }
    fn host(&mut self) -> Option<&mut dyn HostStage> {
        Some(self)
    }
}

impl HostStage for RecruitmentGate {
    fn host_init(&mut self, _cx: &HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        Ok(())
    }
    /// `r_i = r·[r ≥ RT_i]` (hard) or `r·σ((r − RT_i)/w)` (smooth), `r` the previous tick's rate.
    fn host_step(
        &mut self,
        cx: &HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        _t: usize,
    ) -> Result<()> {
        let r = ins[0];
        let n = self.thresholds_hz.len();
        if r.len() != cx.batch {
            return Err(Error::shape(
                format!("{}.{}", self.name, self.input),
                format!("[{}, 1]", cx.batch),
                format!("[{}, {}]", cx.batch, r.len() / cx.batch.max(1)),
            ));
        }
        for (b, &rb) in r.iter().enumerate() {
            for (i, &rt) in self.thresholds_hz.iter().enumerate() {
                outs[0][b * n + i] = match self.smooth_width_hz {
                    Some(w) => rb * (1.0 / (1.0 + (-((rb - rt) / w)).exp())),
                    None if rb < rt => 0.0,
                    None => rb,
                };
            }
        }
        Ok(())
    }
    fn adjoint_init(&mut self, _cx: &HostCx, _segment: usize) -> Result<()> {
        Ok(())
    }
    /// `∂r_i/∂r = σ + r·σ(1 − σ)/w` (smooth) or `[r ≥ RT_i]` (hard).
    fn host_vjp(&mut self, cx: &HostCx, io: VjpIo<'_>, _t: usize) -> Result<()> {
        let VjpIo {
            ins, g_outs, g_ins, ..
        } = io;
        let n = self.thresholds_hz.len();
        for b in 0..cx.batch {
            let r = ins[0][b];
            let mut g = 0.0;
            for (i, &rt) in self.thresholds_hz.iter().enumerate() {
                let d = match self.smooth_width_hz {
                    Some(w) => {
                        let sg = 1.0 / (1.0 + (-((r - rt) / w)).exp());
                        sg + r * sg * (1.0 - sg) / w
                    }
                    None => f64::from(r >= rt),
                };
                g += g_outs[0][b * n + i] * d;
            }
            g_ins[0][b] += g;
        }
        Ok(())
    }
}
