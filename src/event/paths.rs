//! Alternative paths of the event-time network: the records of spike creation at sub-threshold
//! maxima and of inserted input spikes, the settings that ask for them, and the value-only LIF
//! step that runs a unit's alternative path on the primal path's synaptic input (the motor
//! neurons do not interact, so an alternative path is one unit alone).

/// A sub-threshold local maximum of a unit's membrane potential (a place where a spike would be
/// created if the potential rose by `θ − v`): step `k` (the maximum is `v(t_k)`), its value (V)
/// and tangent `∂v/∂p` per requested parameter (V per unit of p).
#[derive(Clone, Debug, PartialEq)]
pub struct Peak {
    /// Motor unit index.
    pub unit: usize,
    /// Step index k of the maximum (time `k·dt`).
    pub step: usize,
    /// Membrane potential at the maximum (V).
    pub v: f64,
    /// `∂v/∂p` for each requested parameter.
    pub v_tan: Vec<f64>,
    /// Spikes of the alternative path (the unit fires at `t_k`, then runs on the same synaptic
    /// input) up to `end_s`; the first is `t_k` itself (s).
    pub alt_spikes_s: Vec<f64>,
    /// End of the alternative path's horizon (s); after it the two paths are taken as equal.
    pub end_s: f64,
}

/// Settings of the spike-creation record: sub-threshold maxima within `band_v` below threshold,
/// each followed by an alternative path of `horizon_s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CreationOpts {
    /// Band below threshold (V).
    pub band_v: f64,
    /// Horizon of the alternative path (s).
    pub horizon_s: f64,
}

/// Settings of the input-insertion record. Per motor unit, extra descending-drive input spikes
/// are inserted at the points of a Poisson sampling process whose intensity is predictable
/// (chosen from the state at the start of each step):
/// `λ = rate_uniform_hz + rate_near_hz · exp(−max(θ − v_k, 0)/near_band_v)`, dense near threshold
/// (where an extra input can create a spike) and smooth in `v` (so that the weights `1/λ` of
/// nearby samples do not differ by orders of magnitude). Each inserted spike is followed by the unit's alternative path
/// until it merges with the primal path or `horizon_s` ends; its record carries `1/λ`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InsertionOpts {
    /// Base sampling intensity (1/s).
    pub rate_uniform_hz: f64,
    /// Extra sampling intensity near threshold (1/s), at most `1/dt`.
    pub rate_near_hz: f64,
    /// Voltage scale of the extra intensity below threshold (V).
    pub near_band_v: f64,
    /// Longest alternative path (s).
    pub horizon_s: f64,
    /// Seed of the sampling process.
    pub seed: u64,
}

impl Default for InsertionOpts {
    /// 8 samples/s, no extra near threshold (measured: concentrating samples near threshold
    /// did not reduce the variance at the Watanabe size, BENCHMARKS.md §7), horizon 1 s.
    fn default() -> Self {
        Self {
            rate_uniform_hz: 8.0,
            rate_near_hz: 0.0,
            near_band_v: 0.3e-3,
            horizon_s: 1.0,
            seed: 7,
        }
    }
}

/// One inserted input spike and the alternative path it caused.
#[derive(Clone, Debug, PartialEq)]
pub struct Insertion {
    /// Motor unit index.
    pub unit: usize,
    /// Generator time of the inserted input spike (s).
    pub t_gen_s: f64,
    /// Its arrival time at the motor neuron (s).
    pub t_arrival_s: f64,
    /// `1/λ` of the sampling process at the insertion (s).
    pub inv_intensity_s: f64,
    /// Spikes of the alternative path from `t_arrival_s` to `end_s` (s).
    pub alt_spikes_s: Vec<f64>,
    /// End of the horizon (s).
    pub end_s: f64,
}

/// A pending twitch of one unit: arrival step, δ (steps to the next grid point), ∂δ/∂p, gain,
/// ∂gain/∂p.
pub(super) type Twitch = (usize, f64, Vec<f64>, f64, Vec<f64>);

/// Which record a running alternative path writes to.
#[derive(Clone, Copy)]
pub(super) enum ShadowOf {
    Peak(usize),
    Insertion(usize),
}

/// A running alternative path of one unit.
pub(super) struct Shadow {
    pub(super) of: ShadowOf,
    pub(super) v: f64,
    pub(super) a: f64,
    pub(super) end_step: usize,
    /// Arrival time of the extra input (insertion paths).
    pub(super) t_extra: Option<f64>,
    /// Primal spike count of the unit when the path started.
    pub(super) primal_count0: usize,
    /// Spikes of the alternative path so far.
    pub(super) count: usize,
}

/// Two paths whose spike counts agree and whose states differ by less than this (V; the AHP
/// current as `R·Δa`) have merged: the alternative path ends there (its remaining difference
/// is far below one input's EPSP, ≈ 30 µV at the Watanabe sizes).
pub const MERGE_TOL_V: f64 = 1e-7;

/// One unit's LIF constants for the value-only step of an alternative path.
pub(super) struct LifStep {
    pub(super) alpha: f64,
    pub(super) r: f64,
    pub(super) es: f64,
    pub(super) ib: f64,
    pub(super) vr: f64,
    pub(super) th: f64,
    pub(super) vreset: f64,
    pub(super) jump: f64,
    pub(super) kahp: f64,
}

impl LifStep {
    /// The primal step without tangents: `(v', a', Some(φ) if it fired)`.
    pub(super) fn step(&self, g: f64, v: f64, a: f64) -> (f64, f64, Option<f64>) {
        let c = self.r * (g * (self.es - v) + self.ib - a) - (v - self.vr);
        let v1 = v + self.alpha * c;
        if v1 >= self.th && v < self.th {
            let phi = (self.th - v) / (v1 - v);
            let cr = self.r * (g * (self.es - self.vreset) + self.ib - a - self.jump)
                - (self.vreset - self.vr);
            (
                self.vreset + (1.0 - phi) * self.alpha * cr,
                self.kahp * a + self.jump * self.kahp.powf(1.0 - phi),
                Some(phi),
            )
        } else {
            (v1, self.kahp * a, None)
        }
    }
}
