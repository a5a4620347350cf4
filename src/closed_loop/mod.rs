//! The closed neuromuscular loop (MODEL.md §5; MyoGen example 11's network), assembled from
//! kernel stages and run tick by tick on the tape path:
//!
//! ```text
//! drive → DD generators → DD synapses ─────────────────────────────┐
//! Ia fibres → Ia synapses (excitatory) ────────────────────────────┤
//! II fibres → II synapses → gII interneurons → inhibitory synapses ┤→ MN current → LIF pool
//! Ib fibres → Ib synapses → gIb interneurons → inhibitory synapses ┘        │
//!   ↑ (one tick delayed)                                           motor-axon delay
//! spindle (Ia, II) ← spindle input (+ stretch) ← Hill muscle ←─────────────┘
//! GTO (Ib) ← tendon force ←────────────────────┘   ↕ torque / angle (one tick delayed)
//!                                                 joint
//! ```
//!
//! Units at this API: s, Hz, S, V, N, N·m, rad. The motor-neuron current is
//! `I = (g_dd + g_ia)·(E_exc − v_prev) + (g_gii + g_gib)·(E_inh − v_prev)` (A); without feedback
//! pathways the loop's pool computes exactly what the open-loop network's pool computes.
//!
//! Defaults follow MyoGen's example 11 where it states a value: 400 DD fibres (p = 0.3), 73 Ia
//! (p = 0.8 onto the MNs), 80 II and 58 Ib fibres (p = 0.3 onto 120 gII and 145 gIb
//! interneurons, p = 0.3 from them onto the MNs), weights 0.05 µS (DD, Ia → MN, interneuron →
//! MN) and 0.025 µS (II → gII, Ib → gIb), the inhibitory reversal 15 mV below rest and a 10 ms
//! IPSP decay (its JAX version's choice), the joint I = 0.001 kg·m², B = 0.002 N·m·s/rad (plus a
//! spring, see [`DEFAULT_JOINT_STIFFNESS_NM_PER_RAD`]), the FDI
//! Hill muscle with 85 % type I units. Choices of this crate, not MyoGen's: the pools are the
//! fast LIF model (synaptic weights onto it scaled by [`FAST_SYNAPTIC_GAIN`] as in the open-loop
//! network), and the interneurons are LIF units with a 2 nA rheobase (MyoGen's are
//! Hodgkin–Huxley cells).

mod config;
pub mod metrics;

pub use config::{
    ClosedLoopConfig, DEFAULT_JOINT_STIFFNESS_NM_PER_RAD, Interneurons, MuscleKind, Pathway,
};

use burn::tensor::Tensor;

use crate::afferent::{
    AfferentKind, ConductionDelay, GtoParams, GtoStage, Spindle, SpindleInput, SpindleStage,
    SynapticCurrent,
};
use crate::drive::generator::{DD_SPIKES, GeneratorMode, InputPopulation, InputPopulationConfig};
use crate::drive::rate::{DriveNoise, DriveParams, DriveRate, NoiseKind, RateClip};
use crate::drive::synapse::{ConnectivityRule, Synapse, SynapseConfig, SynapseKinetics};
use crate::error::Result;
use crate::kernel::{Ctx, Simulation};
use crate::muscle::hill::{HillModel, HillMuscle, buffers as hill};
use crate::muscle::joint::{Joint, buffers as joint};
use crate::network::FAST_SYNAPTIC_GAIN;
use crate::neuron::lif::{LifConfig, LifInput, LifParams, LifPool, MN_V};
use crate::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use crate::neuron::spike::SpikeMode;

/// Motor-neuron current buffer (A).
pub const MN_CURRENT_A: &str = "mn_current_a";
/// Motor-neuron spikes after the motor-axon conduction delay (what the muscle receives).
pub const MUSCLE_SPIKES: &str = "muscle_spikes";

/// The differentiable parameters of the loop, each `[1|batch, 1]`.
#[derive(Clone, Debug)]
pub struct ClosedLoopParams {
    /// Descending drive (Hz).
    pub drive: DriveParams,
    /// DD → MN weight (S).
    pub w_dd_s: Tensor<2>,
    /// Ia → MN weight (S).
    pub w_ia_s: Tensor<2>,
    /// Dynamic fusimotor drive (Hz).
    pub gamma_dyn_hz: Tensor<2>,
    /// Static fusimotor drive (Hz).
    pub gamma_stat_hz: Tensor<2>,
    /// GTO gain G1 (Hz).
    pub gto_g1_hz: Tensor<2>,
}

impl ClosedLoopParams {
    /// MyoGen's values at a constant drive `dc_hz`: DD and Ia weights 0.05 µS, gamma drives
    /// `gamma_hz` (dynamic and static), G1 = 40 Hz.
    pub fn myogen(ctx: &Ctx, dc_hz: f64, gamma_hz: f64) -> Self {
        Self {
            drive: DriveParams::constant(ctx, dc_hz),
            w_dd_s: ctx.full([1, 1], 5e-8),
            w_ia_s: ctx.full([1, 1], 5e-8),
            gamma_dyn_hz: ctx.full([1, 1], gamma_hz),
            gamma_stat_hz: ctx.full([1, 1], gamma_hz),
            gto_g1_hz: ctx.full([1, 1], GtoParams::default().g1_hz),
        }
    }
}

/// One synaptic projection: `n_src` spikes read from `io.0` → conductance `[n_tgt]` (S) written
/// to `io.1`, Bernoulli(p) connectivity, no transmission delay beyond the fibres' own.
struct Projection<'a> {
    name: String,
    sizes: (usize, usize),
    p: f64,
    seed: u64,
    kinetics: SynapseKinetics,
    delay_s: f64,
    io: (String, &'a str),
}

impl Projection<'_> {
    fn build(self, weight_s: Tensor<2>) -> Result<Synapse> {
        Ok(Synapse::new(
            SynapseConfig {
                n_dd: self.sizes.0,
                n_mn: self.sizes.1,
                rule: ConnectivityRule::Bernoulli { p: self.p },
                seed: self.seed,
                kinetics: self.kinetics,
                delay_s: self.delay_s,
            },
            weight_s,
        )?
        .with_buffers(self.name, self.io.0, self.io.1))
    }
}

/// A LIF pool with current input read from `buffers[0]`, writing spikes to `buffers[1]` and its
/// membrane potential to `buffers[2]` (the next tick's current reads it).
fn current_pool(
    name: &str,
    params: LifParams,
    mode: SpikeMode,
    buffers: [&str; 3],
) -> Result<LifPool> {
    Ok(LifPool::new(
        name,
        params,
        LifConfig {
            mode,
            detach_spike_state: mode != SpikeMode::Rate,
            input: LifInput::Current,
            record_v: true,
            ..Default::default()
        },
    )?
    .with_buffers(buffers[0], buffers[1], buffers[2]))
}

/// The gradients of [`ClosedLoopParams`] from the stage gradients of
/// [`crate::kernel::Simulation::stream_gradient`] on a loop made by [`build`], in the order DC
/// (`drive_rate.dc_hz`), `w_dd_s`, `w_ia_s`, `gamma_dyn_hz`, `gamma_stat_hz`, `gto_g1_hz`, each in
/// its tensor's `[1|batch]` layout (the synaptic weights enter the synapses multiplied by
/// [`FAST_SYNAPTIC_GAIN`], so their gradients are the synapses' times that gain). A parameter whose
/// stage is absent (no Ia pathway) has the gradient `[0]`. The other drive parameters are in the
/// map as `drive_rate.<name>`.
pub fn param_grads(
    stage_grads: &std::collections::BTreeMap<String, Vec<f64>>,
) -> Result<Vec<(&'static str, Vec<f64>)>> {
    let get = |k: &str, scale: f64| -> Vec<f64> {
        stage_grads
            .get(k)
            .map(|v| v.iter().map(|g| g * scale).collect())
            .unwrap_or_else(|| vec![0.0])
    };
    if !stage_grads.contains_key("drive_rate.dc_hz") {
        return Err(crate::Error::config(
            "stage_grads",
            "no drive_rate gradients: not the stream gradient of a closed loop made by build",
        ));
    }
    Ok(vec![
        ("dc_hz", get("drive_rate.dc_hz", 1.0)),
        ("w_dd_s", get("dd_synapse.weight_s", FAST_SYNAPTIC_GAIN)),
        ("w_ia_s", get("ia_synapse.weight_s", FAST_SYNAPTIC_GAIN)),
        ("gamma_dyn_hz", get("spindle_input.gamma_dyn_hz", 1.0)),
        ("gamma_stat_hz", get("spindle_input.gamma_stat_hz", 1.0)),
        ("gto_g1_hz", get("gto.g1_hz", 1.0)),
    ])
}

/// The loop's buffers [`build`] records besides `spikes`: muscle force (N), joint angle (rad),
/// fibre length (L0), and the Ia, II and Ib afferent rates (Hz).
pub const RECORDED: [&str; 6] = [
    hill::FORCE_N,
    joint::ANGLE_RAD,
    hill::LENGTH_L0,
    "ia_hz",
    "ii_hz",
    "ib_hz",
];

/// Builds the closed-loop simulation for `batch` parameter rows. Recorded by default: `spikes`
/// and [`RECORDED`].
pub fn build(
    cfg: &ClosedLoopConfig,
    ctx: &Ctx,
    batch: usize,
    params: &ClosedLoopParams,
) -> Result<Simulation> {
    cfg.validate()?;
    params.drive.validate(batch)?;
    // hard → hard, rate → rate (validate rejects surrogate)
    let gen_mode = GeneratorMode::from(cfg.spike_mode);
    let n = cfg.n_mn;
    let mut sim = Simulation::new(ctx.clone(), batch, cfg.dt_s, cfg.n_steps())?;
    let noise = DriveNoise {
        seed: cfg.seed,
        kind: NoiseKind::Gaussian,
        shared_across_batch: true,
    };
    sim.add_stage(DriveRate::new(
        params.drive.clone(),
        noise,
        RateClip::default(),
    ));
    sim.add_stage(InputPopulation::new(InputPopulationConfig {
        n_dd: cfg.n_dd,
        mode: gen_mode,
        seed: cfg.seed.wrapping_add(1),
        ..Default::default()
    })?);
    let gain = FAST_SYNAPTIC_GAIN;
    sim.add_stage(
        Projection {
            name: "dd_synapse".into(),
            sizes: (cfg.n_dd, n),
            p: cfg.p_connect,
            seed: cfg.seed.wrapping_add(2),
            kinetics: SynapseKinetics::default(),
            delay_s: 1e-3,
            io: (DD_SPIKES.into(), "g_dd_s"),
        }
        .build(params.w_dd_s.clone() * gain)?,
    );
    let e_exc = crate::neuron::lif::calib::E_SYN_V;
    let mut conductances = vec![("g_dd_s".to_string(), e_exc)];
    if let Some(ia) = &cfg.ia {
        for s in ia
            .pool
            .stages(AfferentKind::Ia, gen_mode, cfg.seed.wrapping_add(10))?
        {
            sim.add_boxed_stage(s);
        }
        sim.add_stage(
            Projection {
                name: "ia_synapse".into(),
                sizes: (ia.pool.n, n),
                p: ia.p_connect,
                seed: cfg.seed.wrapping_add(11),
                kinetics: SynapseKinetics::default(),
                delay_s: 0.0,
                io: (AfferentKind::Ia.spike_buffer(), "g_ia_s"),
            }
            .build(params.w_ia_s.clone() * gain)?,
        );
        conductances.push(("g_ia_s".into(), e_exc));
    }
    for (kind, path, ins) in [
        (AfferentKind::Ii, &cfg.ii, &cfg.gii),
        (AfferentKind::Ib, &cfg.ib, &cfg.gib),
    ] {
        let Some(path) = path else { continue };
        let tag = kind.tag();
        let seed = cfg
            .seed
            .wrapping_add(20 + 10 * (kind == AfferentKind::Ib) as u64);
        for s in path.pool.stages(kind, gen_mode, seed)? {
            sim.add_boxed_stage(s);
        }
        let gin = format!("g{tag}");
        let [g_in, current, spikes, v, g_mn] =
            ["_in_s", "_current_a", "_spikes", "_v_v", "_mn_s"].map(|x| format!("{gin}{x}"));
        // afferent → interneurons (excitatory)
        sim.add_stage(
            Projection {
                name: format!("{tag}_synapse"),
                sizes: (path.pool.n, ins.n),
                p: path.p_connect,
                seed: seed.wrapping_add(1),
                kinetics: SynapseKinetics::default(),
                delay_s: 0.0,
                io: (kind.spike_buffer(), &g_in),
            }
            .build(ctx.full([1, 1], path.weight_s))?,
        );
        sim.add_stage(SynapticCurrent::new(
            format!("{gin}_current"),
            ins.n,
            vec![(g_in.clone(), e_exc)],
            v.clone(),
            current.clone(),
        )?);
        sim.add_stage(current_pool(
            &format!("{gin}_pool"),
            LifParams::from_values(ctx, &ins.unit_values()?)?,
            cfg.spike_mode,
            [&current, &spikes, &v],
        )?);
        // interneurons → MNs (inhibitory)
        sim.add_stage(
            Projection {
                name: format!("{gin}_synapse"),
                sizes: (ins.n, n),
                p: ins.p_connect,
                seed: seed.wrapping_add(2),
                kinetics: SynapseKinetics::SingleExp { tau_s: ins.tau_s },
                delay_s: 0.0,
                io: (spikes.clone(), &g_mn),
            }
            .build(ctx.full([1, 1], ins.weight_s * gain))?,
        );
        conductances.push((g_mn.clone(), ins.reversal_v));
    }
    sim.add_stage(SynapticCurrent::new(
        "mn_current",
        n,
        conductances,
        MN_V,
        MN_CURRENT_A,
    )?);
    let rt = cfg.thresholds()?;
    sim.add_stage(current_pool(
        "lif_pool",
        LifParams::calibrated(ctx, &rt.rt)?,
        cfg.spike_mode,
        [MN_CURRENT_A, crate::kernel::names::SPIKES, MN_V],
    )?);
    // motor axons: NERLab's conduction delays plus MyoGen's 1 ms
    let axon = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?;
    let delays: Vec<f64> = axon.axon_delay_s.iter().map(|d| d + 1e-3).collect();
    sim.add_stage(ConductionDelay::new(
        "motor_axons",
        crate::kernel::names::SPIKES,
        MUSCLE_SPIKES,
        "spike/step",
        delays,
    )?);
    let hp = cfg.muscle.params();
    let units = cfg.motor_pool().units()?;
    let model = HillModel::new(ctx, hp.clone(), &units, cfg.dt_s)?;
    let l_rest = hp.rest_length_l0(cfg.initial_angle_rad)?;
    sim.add_stage(
        HillMuscle::new(model, l_rest, cfg.initial_angle_rad)?
            .with_spikes(MUSCLE_SPIKES)
            .with_angle(joint::ANGLE_RAD),
    );
    sim.add_stage(Joint::new(cfg.joint, cfg.initial_angle_rad)?.with_torque(hill::TORQUE_NM));
    sim.add_stage(SpindleInput::new(
        cfg.stretch.clone(),
        params.gamma_dyn_hz.clone(),
        params.gamma_stat_hz.clone(),
    )?);
    sim.add_stage(SpindleStage::new(Spindle::myogen()));
    sim.add_stage(
        GtoStage::new(GtoParams::default())
            .with_force(hill::FORCE_N)
            .with_gain(params.gto_g1_hz.clone()),
    );
    sim.record(&RECORDED);
    Ok(sim)
}
