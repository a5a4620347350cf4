//! [`ClosedLoopConfig`]: everything fixed about a closed-loop run (sizes, seeds, modes,
//! protocol), checked with typed errors naming the field.

use serde::{Deserialize, Serialize};

use crate::afferent::{AfferentKind, AfferentPoolConfig, Stretch};
use crate::error::{Error, Result, check};
use crate::muscle::hill::{HillParams, MotorPoolParams};
use crate::muscle::joint::JointParams;
use crate::neuron::lif::LifUnitValues;
use crate::neuron::recruitment::{RecruitmentMode, RecruitmentThresholds};
use crate::neuron::spike::SpikeMode;

/// Which Hill muscle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MuscleKind {
    /// First dorsal interosseous (MyoGen's default).
    #[default]
    Fdi,
    /// Soleus.
    Soleus,
}

impl MuscleKind {
    /// The muscle's parameters.
    pub fn params(self) -> HillParams {
        match self {
            MuscleKind::Fdi => HillParams::fdi(),
            MuscleKind::Soleus => HillParams::soleus(),
        }
    }
}

/// An afferent population and its synapses onto its targets (MNs for Ia, interneurons for II
/// and Ib). Weight in S.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pathway {
    /// The fibres.
    pub pool: AfferentPoolConfig,
    /// Connection probability onto the targets.
    pub p_connect: f64,
    /// Synaptic weight onto interneurons (S; the Ia → MN weight is a differentiable parameter,
    /// [`super::ClosedLoopParams::w_ia_s`]).
    pub weight_s: f64,
}

impl Pathway {
    /// MyoGen's example-11 pathway for `kind` (Ia: p = 0.8; II, Ib: p = 0.3, 0.025 µS).
    pub fn myogen(kind: AfferentKind) -> Self {
        Self {
            pool: AfferentPoolConfig::myogen(kind),
            p_connect: if kind == AfferentKind::Ia { 0.8 } else { 0.3 },
            weight_s: 0.025e-6,
        }
    }
    fn validate(&self, what: &str) -> Result<()> {
        self.pool.validate(what)?;
        check::in_range(&format!("{what}.p_connect"), self.p_connect, 0.0, 1.0)?;
        check::non_negative(&format!("{what}.weight_s"), self.weight_s)?;
        Ok(())
    }
}

impl Default for Pathway {
    fn default() -> Self {
        Self::myogen(AfferentKind::Ia)
    }
}

/// An inhibitory interneuron pool onto the motor neurons (LIF units; SI units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Interneurons {
    /// Number of interneurons (≥ 1).
    pub n: usize,
    /// Rheobase of every interneuron (A, > 0).
    pub rheobase_a: f64,
    /// Connection probability onto the MNs.
    pub p_connect: f64,
    /// Weight onto the MNs (S).
    pub weight_s: f64,
    /// IPSP decay (s, single exponential).
    pub tau_s: f64,
    /// Reversal potential of the inhibitory synapse (V; the pool's rest is 0 V).
    pub reversal_v: f64,
}

impl Interneurons {
    /// MyoGen's example-11 pool of `n` (120 gII, 145 gIb) and the synapse values of the module docs.
    pub fn myogen(n: usize) -> Self {
        Self {
            n,
            rheobase_a: 2e-9,
            p_connect: 0.3,
            weight_s: 0.05e-6,
            tau_s: 10e-3,
            reversal_v: -0.015,
        }
    }
    fn validate(&self, what: &str) -> Result<()> {
        check::count_at_least(&format!("{what}.n"), self.n, 1)?;
        check::positive(&format!("{what}.rheobase_a"), self.rheobase_a)?;
        check::in_range(&format!("{what}.p_connect"), self.p_connect, 0.0, 1.0)?;
        check::non_negative(&format!("{what}.weight_s"), self.weight_s)?;
        check::positive(&format!("{what}.tau_s"), self.tau_s)?;
        check::in_range(&format!("{what}.reversal_v"), self.reversal_v, -0.2, 0.2)?;
        Ok(())
    }

    /// LIF values: the calibrated shape of the smallest motor unit with the rheobase scaled to
    /// [`Self::rheobase_a`].
    pub fn unit_values(&self) -> Result<LifUnitValues> {
        let mut v = LifUnitValues::calibrated(&vec![1e-3; self.n])?;
        let scale = self.rheobase_a / v.rheobase_a()[0];
        for j in 0..self.n {
            v.r_ohm[j] /= scale;
            v.ahp_jump_a[j] *= scale;
        }
        Ok(v)
    }
}

impl Default for Interneurons {
    fn default() -> Self {
        Self::myogen(120)
    }
}

/// Joint stiffness of the default loop (N·m/rad). MyoGen's example-11 joint has none: a flexor
/// torque with no antagonist then turns the joint without bound (measured: 126 rad after 5 s at
/// 60 Hz drive with 800 MNs, far outside the range of the muscle's MTU-length polynomial). With
/// 1 N·m/rad the FDI's largest torque (≈ 0.23 N·m) turns it by ≈ 0.23 rad.
pub const DEFAULT_JOINT_STIFFNESS_NM_PER_RAD: f64 = 1.0;

/// `false` → no pathway; a table → [`Pathway::myogen`]`(kind)` with the table's fields
/// overriding (recursively; unknown fields are errors).
fn pathway_or_off<'de, D: serde::Deserializer<'de>>(
    d: D,
    kind: AfferentKind,
) -> std::result::Result<Option<Pathway>, D::Error> {
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        Switch(bool),
        Table(serde_json::Value),
    }
    fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
        match (base, over) {
            (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
                for (k, v) in o {
                    match b.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            b.insert(k, v);
                        }
                    }
                }
            }
            (b, o) => *b = o,
        }
    }
    match P::deserialize(d)? {
        P::Switch(false) => Ok(None),
        P::Switch(true) => Ok(Some(Pathway::myogen(kind))),
        P::Table(t) => {
            let mut base = serde_json::to_value(Pathway::myogen(kind)).map_err(D::Error::custom)?;
            merge(&mut base, t);
            serde_json::from_value(base)
                .map(Some)
                .map_err(D::Error::custom)
        }
    }
}

fn ia_or_off<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Pathway>, D::Error> {
    pathway_or_off(d, AfferentKind::Ia)
}
fn ii_or_off<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Pathway>, D::Error> {
    pathway_or_off(d, AfferentKind::Ii)
}
fn ib_or_off<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Pathway>, D::Error> {
    pathway_or_off(d, AfferentKind::Ib)
}

/// Everything fixed about a closed-loop run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClosedLoopConfig {
    /// Number of motor neurons (= motor units of the Hill muscle, ≥ 2).
    pub n_mn: usize,
    /// Number of descending-drive fibres.
    pub n_dd: usize,
    /// DD → MN connection probability.
    pub p_connect: f64,
    /// Recruitment range of the MN thresholds.
    pub recruitment_range: f64,
    /// Time step (s; ≤ 0.1 ms for the spindle).
    pub dt_s: f64,
    /// Duration (s).
    pub duration_s: f64,
    /// Spike mode of the pools (`rate` = the smooth model, generators in rate mode too).
    pub spike_mode: SpikeMode,
    /// The muscle.
    pub muscle: MuscleKind,
    /// Initial joint angle (rad).
    pub initial_angle_rad: f64,
    /// The joint (default: MyoGen's example 11, I = 0.001 kg·m², B = 0.002 N·m·s/rad, plus the
    /// stiffness [`DEFAULT_JOINT_STIFFNESS_NM_PER_RAD`]).
    pub joint: JointParams,
    /// Imposed stretches of the spindle (tendon taps, ramp-and-hold).
    pub stretch: Vec<Stretch>,
    /// Ia pathway (monosynaptic, excitatory); `None` = no Ia feedback. In TOML: `ia = false`, or
    /// a table whose fields override MyoGen's Ia defaults.
    #[serde(deserialize_with = "ia_or_off")]
    pub ia: Option<Pathway>,
    /// II pathway through the gII interneurons; `None` = off (TOML: `ii = false` or a table over
    /// the II defaults).
    #[serde(deserialize_with = "ii_or_off")]
    pub ii: Option<Pathway>,
    /// Ib pathway through the gIb interneurons; `None` = off (TOML: `ib = false` or a table over
    /// the Ib defaults).
    #[serde(deserialize_with = "ib_or_off")]
    pub ib: Option<Pathway>,
    /// gII interneurons.
    pub gii: Interneurons,
    /// gIb interneurons.
    pub gib: Interneurons,
    /// Seed of connectivity and generators (common random numbers across evaluations).
    pub seed: u64,
}

impl Default for ClosedLoopConfig {
    /// MyoGen's example 11 sizes at dt = 0.1 ms for 1 s, hard spikes, all three pathways on, no
    /// stretch.
    fn default() -> Self {
        Self {
            n_mn: 120,
            n_dd: 400,
            p_connect: 0.3,
            recruitment_range: 100.0,
            dt_s: 1e-4,
            duration_s: 1.0,
            spike_mode: SpikeMode::Hard,
            muscle: MuscleKind::Fdi,
            initial_angle_rad: 0.0,
            joint: JointParams {
                stiffness_nm_per_rad: DEFAULT_JOINT_STIFFNESS_NM_PER_RAD,
                ..JointParams::myogen_example11()
            },
            stretch: Vec::new(),
            ia: Some(Pathway::myogen(AfferentKind::Ia)),
            ii: Some(Pathway::myogen(AfferentKind::Ii)),
            ib: Some(Pathway::myogen(AfferentKind::Ib)),
            gii: Interneurons::myogen(120),
            gib: Interneurons::myogen(145),
            seed: 42,
        }
    }
}

impl ClosedLoopConfig {
    /// Number of steps `round(duration / dt)`.
    pub fn n_steps(&self) -> usize {
        (self.duration_s / self.dt_s).round() as usize
    }

    /// Checks every field (typed errors naming it).
    pub fn validate(&self) -> Result<()> {
        check::count_at_least("n_mn", self.n_mn, 2)?;
        check::count_at_least("n_dd", self.n_dd, 1)?;
        check::in_range("p_connect", self.p_connect, 0.0, 1.0)?;
        if !(self.recruitment_range.is_finite() && self.recruitment_range > 1.0) {
            return Err(Error::invalid(
                "recruitment_range",
                self.recruitment_range,
                "finite and > 1",
            ));
        }
        crate::afferent::check_spindle_dt(self.dt_s)?;
        check::positive("duration_s", self.duration_s)?;
        check::count_at_least("n_steps", self.n_steps(), 1)?;
        if self.spike_mode == SpikeMode::Surrogate {
            return Err(Error::invalid(
                "spike_mode",
                "surrogate",
                "hard or rate (the closed loop has no surrogate path)",
            ));
        }
        check::in_range(
            "initial_angle_rad",
            self.initial_angle_rad,
            -std::f64::consts::PI,
            std::f64::consts::PI,
        )?;
        self.joint.check_dt(self.dt_s)?;
        for (k, s) in self.stretch.iter().enumerate() {
            s.validate(k)?;
        }
        if let Some(p) = &self.ia {
            p.validate("ia")?;
        }
        if let Some(p) = &self.ii {
            p.validate("ii")?;
            self.gii.validate("gii")?;
        }
        if let Some(p) = &self.ib {
            p.validate("ib")?;
            self.gib.validate("gib")?;
        }
        Ok(())
    }

    /// Recruitment thresholds of the pool (MyoGen's combined law, De Luca slope 5).
    pub fn thresholds(&self) -> Result<RecruitmentThresholds> {
        RecruitmentThresholds::new(
            self.n_mn,
            self.recruitment_range,
            5.0,
            1.0,
            RecruitmentMode::Combined,
        )
    }

    /// The Hill muscle's motor-unit pool: MyoGen's defaults with `round(0.85·n)` type I units.
    pub fn motor_pool(&self) -> MotorPoolParams {
        let n1 = ((self.n_mn as f64) * 102.0 / 120.0).round() as usize;
        MotorPoolParams {
            n_type1: n1,
            n_type2: self.n_mn - n1,
            ..MotorPoolParams::myogen_default()
        }
    }
}
