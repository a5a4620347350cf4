//! The assembled network: descending drive → Poisson/gamma inputs → synapses → motor-neuron pool
//! → twitch force, at MyoGen's Watanabe sizes by default (800 motor neurons, 400 inputs,
//! p = 0.3, w = 0.05 µS, dt = 0.1 ms). One builder serves both membrane models and both
//! execution paths; the batch axis carries candidate parameter sets.
//!
//! Units at this API: s, Hz, S (siemens), N.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::drive::generator::{
    GeneratorMode, InputPopulation, InputPopulationConfig, SpikeProcess,
};
use crate::drive::rate::{DriveNoise, DriveParams, DriveRate, NoiseKind, RateClip};
use crate::drive::synapse::{ConnectivityRule, Synapse, SynapseConfig, SynapseKinetics};
use crate::error::{Error, Result, check};
use crate::kernel::{Ctx, Simulation, Stage, to_vec_f64};
use crate::muscle::force::{GainMode, TwitchForce};
use crate::muscle::twitch::fuglevand_twitches;
use crate::neuron::lif::{LifConfig, LifParams, LifPool, LifUnitValues};
use crate::neuron::meanfield::{MF_GAINED_SPIKES, MeanFieldPool};
use crate::neuron::nerlab::NerlabPool;
use crate::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use crate::neuron::recruitment::{RecruitmentMode, RecruitmentThresholds};
use crate::neuron::spike::SpikeMode;

/// Which membrane model the pool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembraneModel {
    /// MyoGen's NERLab two-compartment conductance-based motoneuron (matches MyoGen unit by unit).
    Faithful,
    /// The reduced leaky integrate-and-fire pool with AHP, calibrated against the faithful model.
    #[default]
    Fast,
}

impl std::str::FromStr for MembraneModel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "faithful" | "nerlab" => Ok(Self::Faithful),
            "fast" | "lif" => Ok(Self::Fast),
            _ => Err(Error::invalid("model", s, "faithful or fast")),
        }
    }
}

/// Which smooth model stands in for the spiking fast pool when `spike_mode = rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmoothTwin {
    /// The LIF pool stepped with the per-step sigmoid spike `σ(β·m)` (dt-dependent; matched to
    /// the spiking pool only through [`NetworkConfig::smooth_synaptic_gain`]).
    #[default]
    Sigmoid,
    /// The mean-field rate model [`crate::neuron::meanfield::MeanFieldPool`]: each unit's
    /// stationary rate from the diffusion approximation of its membrane (no fitted gain;
    /// `smooth_synaptic_gain` is ignored). Fast model only.
    MeanField,
}

impl std::str::FromStr for SmoothTwin {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Self::Sigmoid),
            "meanfield" | "mean_field" | "mean-field" => Ok(Self::MeanField),
            _ => Err(Error::invalid("smooth_twin", s, "sigmoid or meanfield")),
        }
    }
}

/// Everything fixed about a network (sizes, seeds, modes); the differentiable parameters are
/// passed separately as tensors ([`DriveParams`], [`MuscleParams`], the synaptic weight).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Number of motor neurons.
    pub n_mn: usize,
    /// Number of descending-drive input neurons.
    pub n_dd: usize,
    /// Connection probability DD → MN.
    pub p_connect: f64,
    /// Recruitment range RR (ratio of largest to smallest threshold).
    pub recruitment_range: f64,
    /// De Luca slope of the recruitment thresholds.
    pub deluca_slope: f64,
    /// Recruitment-threshold law.
    pub recruitment_mode: RecruitmentMode,
    /// Time step (s).
    pub dt_s: f64,
    /// Duration (s).
    pub duration_s: f64,
    /// Membrane model.
    pub model: MembraneModel,
    /// Spike mode of the motor neurons.
    pub spike_mode: SpikeMode,
    /// Sharpness β of the motor neurons' surrogate / rate spike function (per mV above
    /// threshold; fast model).
    pub spike_beta: f64,
    /// Scale of the synaptic conductance seen by the FAST model (dimensionless). The LIF was fitted
    /// to somatic-current f–I curves; the faithful model receives its synapses on the dendrite
    /// (attenuated by the soma–dendrite coupling). This factor matches the fast pool's response to
    /// descending drive to the faithful pool's (see `FAST_SYNAPTIC_GAIN`).
    pub fast_synaptic_gain: f64,
    /// Scale of the synaptic weight in the smooth model (`spike_mode = rate`; dimensionless,
    /// default 1). The smooth pool fires at roughly half the hard pool's rate under the same
    /// drive; this factor makes it a surrogate of the hard one (1.45 matches force and mean rate
    /// within ≈10 % at 200 MNs, dt 0.25 ms, drive 50–90 Hz: `examples/smooth_gain.rs`). It is
    /// dt- and size-dependent: calibrate it for the network in use
    /// (`fit::smooth::calibrate_smooth_gain`).
    pub smooth_synaptic_gain: f64,
    /// The smooth model used when `spike_mode = rate` (default: the sigmoid-spike LIF).
    pub smooth_twin: SmoothTwin,
    /// Mode of the input generators.
    pub generator_mode: GeneratorMode,
    /// Poisson or gamma inputs.
    pub process: SpikeProcess,
    /// Distribution of the per-step drive noise.
    pub drive_noise: NoiseKind,
    /// How negative drive rates are clipped.
    pub rate_clip: RateClip,
    /// Synaptic kinetics.
    pub kinetics: SynapseKinetics,
    /// Transmission delay DD → MN (s).
    pub synaptic_delay_s: f64,
    /// Twitch gain law.
    pub gain: GainMode,
    /// Longest contraction time T_L (s).
    pub t_l_s: f64,
    /// Contraction-time range RT (> 1).
    pub contraction_time_range: f64,
    /// Maximal voluntary force of the muscle (N): the force of the whole pool firing at a high
    /// rate with Fuglevand's gain; sets the twitch scale `F0 = mvc_n / (Σ_i P_i · e/(Sf(0.4)/0.4))`.
    /// Default 100 N (MyoGen's Watanabe example normalises to 100 N).
    pub mvc_n: f64,
    /// Apply the axonal conduction delays (0.6 m / cv, 9–12 ms) to the force.
    pub axonal_delays: bool,
    /// Seed of the network (connectivity), inputs and noise: fixed across evaluations (common
    /// random numbers).
    pub seed: u64,
}

impl Default for NetworkConfig {
    /// MyoGen's Watanabe setup (fast model, hard spikes, Fuglevand gain, 5 s).
    fn default() -> Self {
        Self {
            n_mn: 800,
            n_dd: 400,
            p_connect: 0.3,
            recruitment_range: 100.0,
            deluca_slope: 5.0,
            recruitment_mode: RecruitmentMode::Combined,
            dt_s: 1e-4,
            duration_s: 5.0,
            model: MembraneModel::Fast,
            spike_mode: SpikeMode::Hard,
            spike_beta: crate::neuron::spike::SURROGATE_BETA,
            fast_synaptic_gain: FAST_SYNAPTIC_GAIN,
            smooth_synaptic_gain: 1.0,
            smooth_twin: SmoothTwin::Sigmoid,
            generator_mode: GeneratorMode::Hard,
            process: SpikeProcess::Poisson,
            drive_noise: NoiseKind::Gaussian,
            rate_clip: RateClip::default(),
            kinetics: SynapseKinetics::default(),
            synaptic_delay_s: 1e-3,
            gain: GainMode::Fuglevand,
            t_l_s: 0.09,
            contraction_time_range: 3.0,
            mvc_n: 100.0,
            axonal_delays: true,
            seed: 42,
        }
    }
}

/// Default [`NetworkConfig::fast_synaptic_gain`], fitted so that the fast pool's mean firing rate
/// under MyoGen's constant Poisson drive (Watanabe sizes, 2 s) matches the faithful pool's:
/// DC 30/40/50/60 Hz → 2.54/6.26/10.01/13.68 Hz (faithful 2.73/6.55/10.11/12.65 Hz; MyoGen
/// 2.52/6.17/9.85/12.62 Hz). Known residual: the fast pool recruits more units at high drive
/// (553 vs 469 active at 50 Hz, 618 vs 538 at 60 Hz), so its force is ≈1.5–1.7× the faithful
/// pool's there. Gains 0.5 / 0.6 give 4.5 / 7.8 Hz at 40 Hz (see `examples/pool_stats.rs`).
pub const FAST_SYNAPTIC_GAIN: f64 = 0.55;

/// MyoGen's synaptic weight DD → MN, 0.05 µS.
pub const MYOGEN_WEIGHT_S: f64 = 5e-8;

impl NetworkConfig {
    /// Number of steps `round(duration / dt)`.
    pub fn n_steps(&self) -> usize {
        (self.duration_s / self.dt_s).round() as usize
    }

    /// Checks every field (typed errors naming it).
    pub fn validate(&self) -> Result<()> {
        check::count_at_least("n_mn", self.n_mn, 2)?;
        check::count_at_least("n_dd", self.n_dd, 1)?;
        check::in_range("p_connect", self.p_connect, 0.0, 1.0)?;
        check::positive("dt_s", self.dt_s)?;
        check::positive("duration_s", self.duration_s)?;
        if self.n_steps() == 0 {
            return Err(Error::invalid(
                "duration_s",
                self.duration_s,
                format!(">= dt_s = {}", self.dt_s),
            ));
        }
        check::positive("t_l_s", self.t_l_s)?;
        if self.contraction_time_range.is_nan() || self.contraction_time_range <= 1.0 {
            return Err(Error::invalid(
                "contraction_time_range",
                self.contraction_time_range,
                "> 1",
            ));
        }
        check::positive("mvc_n", self.mvc_n)?;
        check::positive("spike_beta", self.spike_beta)?;
        check::positive("fast_synaptic_gain", self.fast_synaptic_gain)?;
        check::positive("smooth_synaptic_gain", self.smooth_synaptic_gain)?;
        check::non_negative("synaptic_delay_s", self.synaptic_delay_s)?;
        Ok(())
    }

    /// The drive-noise settings every drive stage of this network uses: seed `seed`, distribution
    /// `drive_noise`, one sequence shared by the batch (common random numbers).
    pub fn drive_noise_spec(&self) -> DriveNoise {
        DriveNoise {
            seed: self.seed,
            kind: self.drive_noise,
            shared_across_batch: true,
        }
    }

    /// Recruitment thresholds of the pool.
    pub fn thresholds(&self) -> Result<RecruitmentThresholds> {
        RecruitmentThresholds::new(
            self.n_mn,
            self.recruitment_range,
            self.deluca_slope,
            1.0,
            self.recruitment_mode,
        )
    }
}

/// Differentiable muscle parameters, each `[batch or 1, 1]`.
#[derive(Clone, Debug)]
pub struct MuscleParams {
    /// Peak-twitch range RP (> 1).
    pub rp: Tensor<2>,
    /// Longest contraction time T_L (s).
    pub t_l_s: Tensor<2>,
    /// Contraction-time range RT (> 1).
    pub rt: Tensor<2>,
    /// Force per unit of peak twitch amplitude (N).
    pub f0_n: Tensor<2>,
}

impl MuscleParams {
    /// MyoGen's values: RP = rt_N / rt_1 of the pool, T_L and RT from the config, and
    /// `F0 = mvc_n / (Σ_i P_i · e/(Sf(0.4)/0.4))` — the high-rate limit of the pool's mean force
    /// with Fuglevand's gain (see `muscle::twitch::mean_force_at_rate_n`) equals `mvc_n`.
    pub fn from_config(cfg: &NetworkConfig, ctx: &Ctx) -> Result<Self> {
        let rt = cfg.thresholds()?;
        let rp = rt.rt[rt.rt.len() - 1] / rt.rt[0];
        let n = cfg.n_mn as f64;
        let sum_p: f64 = (1..=cfg.n_mn).map(|i| (rp.ln() / n * i as f64).exp()).sum();
        let limit_gain = std::f64::consts::E / (crate::muscle::twitch::sf(0.4) / 0.4);
        let f0 = cfg.mvc_n / (sum_p * limit_gain);
        Ok(Self {
            rp: ctx.tensor(vec![rp], [1, 1]),
            t_l_s: ctx.tensor(vec![cfg.t_l_s], [1, 1]),
            rt: ctx.tensor(vec![cfg.contraction_time_range], [1, 1]),
            f0_n: ctx.tensor(vec![f0], [1, 1]),
        })
    }
}

/// Builds the lockstep simulation: `drive_rate` → `inputs` → `synapse` → pool → `twitch_force`.
///
/// `weight_s` is the synaptic weight (S), `[batch or 1, 1]` (differentiable).
pub fn build(
    cfg: &NetworkConfig,
    ctx: &Ctx,
    batch: usize,
    drive: DriveParams,
    weight_s: Tensor<2>,
    muscle: &MuscleParams,
) -> Result<Simulation> {
    drive.validate(batch)?;
    let stage = DriveRate::new(drive, cfg.drive_noise_spec(), cfg.rate_clip);
    build_with_drive(cfg, ctx, batch, Box::new(stage), weight_s, muscle)
}

/// Like [`build`], with any stage writing `drive_rate_hz` `[1]` (Hz) as the descending drive,
/// e.g. a [`crate::drive::PiecewiseLinearDrive`] (use [`NetworkConfig::drive_noise_spec`] for its
/// noise so it shares the network's seed).
pub fn build_with_drive(
    cfg: &NetworkConfig,
    ctx: &Ctx,
    batch: usize,
    drive: Box<dyn Stage>,
    weight_s: Tensor<2>,
    muscle: &MuscleParams,
) -> Result<Simulation> {
    cfg.validate()?;
    let n_steps = cfg.n_steps();
    let mut sim = Simulation::new(ctx.clone(), batch, cfg.dt_s, n_steps)?;
    sim.add_boxed_stage(drive);
    let meanfield = cfg.spike_mode == SpikeMode::Rate && cfg.smooth_twin == SmoothTwin::MeanField;
    if meanfield && cfg.model != MembraneModel::Fast {
        return Err(Error::invalid(
            "smooth_twin",
            "meanfield",
            "model = fast (the mean-field twin is that of the LIF pool)",
        ));
    }
    if meanfield && cfg.process != SpikeProcess::Poisson {
        return Err(Error::invalid(
            "smooth_twin",
            "meanfield",
            "process = poisson (its input noise is Poisson shot noise)",
        ));
    }
    sim.add_stage(InputPopulation::new(InputPopulationConfig {
        n_dd: cfg.n_dd,
        process: cfg.process,
        // the mean-field twin takes the hard generators' step-grid rate (1 − e^{−r·dt})/dt
        mode: if meanfield && cfg.generator_mode == GeneratorMode::Rate {
            GeneratorMode::GridRate
        } else {
            cfg.generator_mode
        },
        seed: cfg.seed.wrapping_add(1),
        ..Default::default()
    })?);
    let weight_s = match cfg.model {
        MembraneModel::Fast => weight_s * cfg.fast_synaptic_gain,
        MembraneModel::Faithful => weight_s,
    };
    let weight_s = if meanfield {
        weight_s
    } else if cfg.spike_mode == SpikeMode::Rate && cfg.smooth_synaptic_gain != 1.0 {
        weight_s * cfg.smooth_synaptic_gain
    } else {
        weight_s
    };
    sim.add_stage(Synapse::new(
        SynapseConfig {
            n_dd: cfg.n_dd,
            n_mn: cfg.n_mn,
            rule: ConnectivityRule::Bernoulli { p: cfg.p_connect },
            seed: cfg.seed.wrapping_add(2),
            kinetics: cfg.kinetics,
            delay_s: cfg.synaptic_delay_s,
        },
        weight_s.clone(),
    )?);
    let rt = cfg.thresholds()?;
    let tw = fuglevand_twitches(&muscle.rp, &muscle.t_l_s, &muscle.rt, cfg.n_mn)?;
    let params = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?;
    let delays = params.axon_delay_s.clone();
    match cfg.model {
        MembraneModel::Faithful => {
            sim.add_stage(NerlabPool::from_recruitment(ctx, &rt, cfg.spike_mode)?);
        }
        MembraneModel::Fast if meanfield => {
            let mut pool =
                MeanFieldPool::new(LifUnitValues::calibrated(&rt.rt)?, weight_s, cfg.kinetics)?;
            if cfg.gain == GainMode::Fuglevand {
                pool = pool.with_contraction_times_s(to_vec_f64(tw.t_s.clone()))?;
            }
            sim.add_stage(pool);
        }
        MembraneModel::Fast => {
            // The smooth (Rate) forward gets its exact derivative; hard/surrogate spikes cut the
            // gradient through the reset (see `LifConfig::detach_spike_state`).
            let lif_cfg = LifConfig {
                mode: cfg.spike_mode,
                detach_spike_state: cfg.spike_mode != SpikeMode::Rate,
                beta: cfg.spike_beta,
                ..Default::default()
            };
            sim.add_stage(LifPool::new(
                "lif_pool",
                LifParams::calibrated(ctx, &rt.rt)?,
                lif_cfg,
            )?);
        }
    }
    let mut force = TwitchForce::new(tw, muscle.f0_n.clone())?.with_gain(cfg.gain);
    if meanfield && cfg.gain == GainMode::Fuglevand {
        // the pool's gain-weighted expected spikes already carry E[g]
        force = force
            .with_gain(GainMode::None)
            .with_buffers(MF_GAINED_SPIKES, crate::kernel::names::FORCE_N);
    }
    if cfg.axonal_delays {
        force = force.with_delays_s(delays)?;
    }
    sim.add_stage(force);
    Ok(sim)
}
