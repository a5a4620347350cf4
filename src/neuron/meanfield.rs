//! The mean-field twin of the fast (LIF + AHP) pool: each unit's stationary firing rate from the
//! diffusion approximation of its membrane under the Poisson synaptic input — a continuous-time
//! rate model with no fitted constant, differentiable by burn autodiff.
//!
//! Per unit (parameters of [`super::lif::LifUnitValues`], SI), for a mean synaptic conductance
//! `g` (S) made of events of weight `w` (S) and per-event charge `Q` (s, the kernel's integral):
//!
//! ```text
//! τ_e = τ_m/(1 + R g),  R_e = R/(1 + R g),  μ = (v_rest + R(g E + I_bias))/(1 + R g)   (s, Ω, V)
//! σ² = g·w·Q · R_e² (E − θ)² / τ_e        shot noise of the inputs, white-noise limit (V²)
//! ```
//!
//! The AHP current `a(t) = A0 e^{−t/τ_ahp}` after a reset to `v_reset` (with the residual of the
//! earlier spikes of a periodic train, `A0 = ΔI/(1 − e^{−t/τ_ahp})`) gives the deterministic
//! trajectory
//!
//! ```text
//! v(t) = μ + (v_reset − μ) e^{−t/τ_e} − R_e A0 τ_ahp/(τ_ahp − τ_e) (e^{−t/τ_ahp} − e^{−t/τ_e})
//! ```
//!
//! It is replaced by the AHP-free LIF trajectory with an *equivalent reset* `V_r'` that reaches
//! the level `L = min(θ, μ − σ/√2)` (threshold, or one free-membrane SD below the mean) at the
//! same time `t_L`: `V_r' = μ − (μ − L) e^{t_L/τ_e}`. The rate is then Siegert's formula
//! ([`super::siegert::siegert_rate_hz`]) with `(τ_e, μ, σ, θ, V_r')`: exact for the mean-driven
//! LIF + AHP (σ → 0, μ > θ), and Siegert's diffusion result where the unit is fluctuation-driven.
//!
//! The rate is a static function of the unit's mean conductance: it is tabulated on a uniform
//! grid of `x = R·g` (the same normalised drive recruits every unit at `x = (θ−v_rest)/(E−θ)`),
//! interpolated linearly per step, and the table carries its derivative in `w` (host central
//! difference) so autodiff sees `∂ν/∂g` (through the interpolation) and `∂ν/∂w`.
//! `Q` is the per-event charge on the simulation's step grid, `Σ_{n≥0} k(n·dt)·dt`
//! ([`crate::drive::synapse::SynapseKinetics::grid_charge_s`]): what the step-grid spiking pool
//! integrates, → `∫k dt` as dt → 0.

use burn::tensor::{Int, Tensor, TensorData};

use super::lif::LifUnitValues;
use super::siegert::{siegert_cv, siegert_rate_hz};
use crate::drive::synapse::{SYN_CONDUCTANCE_S, SynapseKinetics};
use crate::error::{Error, Result, check};
use crate::kernel::{
    BufferSpec, Ctx, ReadSpec, Stage, StageDecl, StageIo, Traces, input_trace, names, to_vec_f64,
};

/// Grid points of the rate table per unit.
pub const TABLE_POINTS: usize = 256;
/// Upper end of the table in `x = R·g` (dimensionless); the rate is held constant above it.
/// (`x = 1/6` recruits a unit deterministically; 1.2 is ≈ 7× that.)
pub const TABLE_X_MAX: f64 = 1.2;
/// Relative step of the host central difference in `w`.
const W_REL_STEP: f64 = 1e-5;

/// Time (s) for the deterministic LIF + AHP trajectory (module docs) to rise from `v_reset` to
/// the level `l` (V); `f64::INFINITY` if it never does (`μ ≤ l`), 0 if `l ≤ v_reset`.
#[allow(clippy::too_many_arguments)]
pub fn time_to_level_s(
    mu: f64,
    l: f64,
    v_reset: f64,
    r_e: f64,
    ahp_jump_a: f64,
    tau_e: f64,
    tau_ahp: f64,
) -> f64 {
    if l <= v_reset {
        return 0.0;
    }
    if mu <= l {
        return f64::INFINITY;
    }
    let v = |t: f64| -> f64 {
        let a0 = ahp_jump_a / (1.0 - (-t / tau_ahp).exp());
        let ee = (-t / tau_e).exp();
        let ahp = if (tau_ahp - tau_e).abs() < 1e-9 * tau_ahp {
            -r_e * a0 * (t / tau_e) * ee
        } else {
            -r_e * a0 * tau_ahp / (tau_ahp - tau_e) * ((-t / tau_ahp).exp() - ee)
        };
        mu + (v_reset - mu) * ee + ahp
    };
    // Bracket the first crossing on a geometric grid, then bisect.
    let (mut t0, mut t1) = (0.0, 1e-3 * tau_e);
    let t_max = 1e4 * tau_ahp.max(tau_e);
    while v(t1) < l {
        t0 = t1;
        t1 *= 1.25;
        if t1 > t_max {
            return f64::INFINITY;
        }
    }
    for _ in 0..50 {
        let m = 0.5 * (t0 + t1);
        if v(m) >= l {
            t1 = m;
        } else {
            t0 = m;
        }
    }
    0.5 * (t0 + t1)
}

/// Expected Fuglevand gain `E[g(T/I)]` of the spikes of a renewal train with mean interval
/// `1/rate_hz` (s) and interval CV `cv`, for contraction time `t_s` (s): the interval `I` is
/// taken log-normal with that mean and CV (41-point quadrature over ±5 SD); `g` from
/// [`crate::muscle::twitch::fuglevand_gain_f64`]. Equals `g(T·ν)` as cv → 0.
pub fn expected_gain(t_s: f64, rate_hz: f64, cv: f64) -> f64 {
    use crate::muscle::twitch::fuglevand_gain_f64;
    if rate_hz <= 0.0 {
        return 1.0;
    }
    let s2 = (1.0 + cv * cv).ln();
    let s = s2.sqrt();
    if s < 1e-6 {
        return fuglevand_gain_f64(t_s * rate_hz);
    }
    let (mut num, mut den) = (0.0, 0.0);
    for k in 0..41 {
        let z = -5.0 + 0.25 * k as f64;
        let w = (-0.5 * z * z).exp();
        let interval = (s * z - 0.5 * s2).exp() / rate_hz;
        num += w * fuglevand_gain_f64(t_s / interval);
        den += w;
    }
    num / den
}

/// Stationary rate (Hz) and interval CV of unit `j` of `u` at mean synaptic conductance `g_s` (S), event weight
/// `w_s` (S) and per-event charge `q_s` (s): the equivalent-reset Siegert rate of the module
/// docs, and the CV from [`super::siegert::siegert_cv`] with the same equivalent reset.
pub fn unit_rate_cv(u: &LifUnitValues, j: usize, g_s: f64, w_s: f64, q_s: f64) -> (f64, f64) {
    let (r, e, th) = (u.r_ohm[j], u.e_syn_v[j], u.v_thresh_v[j]);
    let k = 1.0 + r * g_s;
    let tau_e = u.tau_m_s[j] / k;
    let r_e = r / k;
    let mu = (u.v_rest_v[j] + r * (g_s * e + u.i_bias_a[j])) / k;
    let var_b = (g_s * w_s * q_s).max(0.0) * r_e * r_e * (e - th) * (e - th) / tau_e;
    let sigma = var_b.sqrt().max(1e-9);
    let level = th.min(mu - sigma / std::f64::consts::SQRT_2);
    let t_l = time_to_level_s(
        mu,
        level,
        u.v_reset_v[j],
        r_e,
        u.ahp_jump_a[j],
        tau_e,
        u.tau_ahp_s[j],
    );
    if !t_l.is_finite() {
        return (0.0, 1.0);
    }
    let reset_eq = mu - (mu - level) * (t_l / tau_e).exp();
    let nu = siegert_rate_hz(tau_e, mu, sigma, th, reset_eq);
    (nu, siegert_cv(tau_e, mu, sigma, th, reset_eq, nu))
}

/// Rate (Hz) and gain-weighted rate `ν·E[g]` (Hz; [`expected_gain`] with contraction time
/// `t_s`, or `ν` when `t_s` is `None`) of unit `j`, see [`unit_rate_cv`].
fn unit_entry(u: &LifUnitValues, j: usize, g: f64, w: f64, q: f64, t_s: Option<f64>) -> (f64, f64) {
    let (nu, cv) = unit_rate_cv(u, j, g, w, q);
    match t_s {
        Some(t) => (nu, nu * expected_gain(t, nu, cv)),
        None => (nu, nu),
    }
}

/// Host tables of a pool, each `[rows, n, P]` flattened as `(b·n + j)·P + k`: entry k of unit j
/// is at `x_k = k·Δx` (`Δx = TABLE_X_MAX/(P−1)`, `g = x/R_j`) for weight row b.
#[derive(Clone, Debug)]
pub struct RateTable {
    /// Weight rows.
    pub rows: usize,
    /// Units n.
    pub n_units: usize,
    /// Rates ν (Hz).
    pub rate: Vec<f64>,
    /// ∂ν/∂w (Hz/S).
    pub drate_dw: Vec<f64>,
    /// Gain-weighted rates `ν·E[g]` (Hz), see [`expected_gain`].
    pub gained: Vec<f64>,
    /// `∂(ν·E[g])/∂w` (Hz/S).
    pub dgained_dw: Vec<f64>,
}

impl RateTable {
    /// Tables for each weight `w_s[b]` (S), per-event charge `q_s` (s) and, for the gain-weighted
    /// table, contraction times `t_s` (s, one per unit; `None`: gain 1).
    pub fn build(u: &LifUnitValues, w_s: &[f64], q_s: f64, t_s: Option<&[f64]>) -> Result<Self> {
        check::positive("synaptic_charge_s", q_s)?;
        let n = u.r_ohm.len();
        for (b, &w) in w_s.iter().enumerate() {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::invalid(
                    format!("weight_s[{b}]"),
                    w,
                    "finite and > 0 (S)",
                ));
            }
        }
        if let Some(t) = t_s {
            if t.len() != n {
                return Err(Error::shape("contraction_times_s", n, t.len()));
            }
            check::all_finite("contraction_times_s", t)?;
        }
        let p = TABLE_POINTS;
        let dx = TABLE_X_MAX / (p - 1) as f64;
        let len = w_s.len() * n * p;
        let mut out = [
            vec![0.0; len],
            vec![0.0; len],
            vec![0.0; len],
            vec![0.0; len],
        ];
        // One unit's four rows (rate, d rate, gained, d gained) at weight w.
        let fill = |j: usize, w: f64, rows: [&mut [f64]; 4]| {
            let [r, dr, gr, dgr] = rows;
            let t = t_s.map(|t| t[j]);
            let h = w * W_REL_STEP;
            for k in 0..p {
                let g = k as f64 * dx / u.r_ohm[j];
                let (nu, nug) = unit_entry(u, j, g, w, q_s, t);
                let (nu_p, nug_p) = unit_entry(u, j, g, w + h, q_s, t);
                let (nu_m, nug_m) = unit_entry(u, j, g, w - h, q_s, t);
                r[k] = nu;
                gr[k] = nug;
                dr[k] = (nu_p - nu_m) / (2.0 * h);
                dgr[k] = (nug_p - nug_m) / (2.0 * h);
            }
        };
        for (b, &w) in w_s.iter().enumerate() {
            let [o0, o1, o2, o3] = &mut out;
            let range = b * n * p..(b + 1) * n * p;
            let mut units: Vec<[&mut [f64]; 4]> = o0[range.clone()]
                .chunks_mut(p)
                .zip(o1[range.clone()].chunks_mut(p))
                .zip(o2[range.clone()].chunks_mut(p))
                .zip(o3[range].chunks_mut(p))
                .map(|(((a, b), c), d)| [a, b, c, d])
                .collect();
            // Two halves on two threads (results do not depend on the split).
            let (first, second) = units.split_at_mut(n / 2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    for (j, rows) in first.iter_mut().enumerate() {
                        let [a, b, c, d] = rows;
                        fill(j, w, [&mut **a, &mut **b, &mut **c, &mut **d]);
                    }
                });
                for (jj, rows) in second.iter_mut().enumerate() {
                    let [a, b, c, d] = rows;
                    fill(n / 2 + jj, w, [&mut **a, &mut **b, &mut **c, &mut **d]);
                }
            });
        }
        for v in &out {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    buffer: "meanfield rate table".into(),
                    step: i % p,
                    batch: i / (n * p),
                    unit: (i / p) % n,
                });
            }
        }
        let [rate, drate_dw, gained, dgained_dw] = out;
        Ok(Self {
            rows: w_s.len(),
            n_units: n,
            rate,
            drate_dw,
            gained,
            dgained_dw,
        })
    }
}

/// Buffer of the gain-weighted expected spikes `ν·E[g]·dt` `[n]` that the twitch stage reads
/// (with gain 1) when the mean-field pool is given contraction times.
pub const MF_GAINED_SPIKES: &str = "meanfield_gained_spikes";

/// Differentiable tables and interpolation constants of a prepared [`MeanFieldPool`].
struct Prepared {
    /// Rate table `[rows·n·P]` (Hz).
    rate: Tensor<1>,
    /// Gain-weighted rate table `[rows·n·P]` (Hz), when contraction times are set.
    gained: Option<Tensor<1>>,
    /// `R_j/Δx` `[1, n]` (1/S).
    scale: Tensor<2>,
    /// Flat offsets `(row(b)·n + j)·P` `[B·n]`.
    offsets: Vec<i64>,
}

/// The mean-field pool as a kernel [`Stage`]: reads the mean synaptic conductance
/// `syn_conductance_s` `[n]` (S; the rate-mode synapse's expected conductance), writes `spikes`
/// `[n]` = `ν·dt` (expected spikes per step, ν in Hz from the rate table) and, when given
/// contraction times, [`MF_GAINED_SPIKES`] `[n]` = `ν·E[g]·dt` (the expected Fuglevand-gain-
/// weighted spikes: the twitch stage reads them with gain 1, so the mean force is that of a
/// renewal train with the unit's interval CV rather than of a regular one).
pub struct MeanFieldPool {
    name: String,
    units: LifUnitValues,
    weight_s: Tensor<2>,
    kinetics: SynapseKinetics,
    contraction_times_s: Option<Vec<f64>>,
    state: Option<Prepared>,
}

impl MeanFieldPool {
    /// A pool of the units `units` whose synapses have weight `weight_s` `[1 or batch, 1]` (S,
    /// differentiable) and conductance kinetics `kinetics` (whose step-grid charge per event
    /// [`SynapseKinetics::grid_charge_s`] sets the input noise).
    pub fn new(
        units: LifUnitValues,
        weight_s: Tensor<2>,
        kinetics: SynapseKinetics,
    ) -> Result<Self> {
        kinetics.validate()?;
        check::count_at_least("n_units", units.r_ohm.len(), 1)?;
        if weight_s.dims()[1] != 1 {
            return Err(Error::shape(
                "weight_s",
                "[batch or 1, 1]",
                format!("{:?}", weight_s.dims()),
            ));
        }
        Ok(Self {
            name: "meanfield_pool".into(),
            units,
            weight_s,
            kinetics,
            contraction_times_s: None,
            state: None,
        })
    }

    /// Also writes [`MF_GAINED_SPIKES`] for twitches of contraction times `t_s` (s, one per
    /// unit). The expected gain is a host table: not differentiated in `t_s`.
    pub fn with_contraction_times_s(mut self, t_s: Vec<f64>) -> Result<Self> {
        if t_s.len() != self.n_units() {
            return Err(Error::shape(
                "contraction_times_s",
                self.n_units(),
                t_s.len(),
            ));
        }
        if let Some(i) = t_s.iter().position(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(Error::invalid(
                format!("contraction_times_s[{i}]"),
                t_s[i],
                "finite and > 0 (s)",
            ));
        }
        self.contraction_times_s = Some(t_s);
        Ok(self)
    }

    fn n_units(&self) -> usize {
        self.units.r_ohm.len()
    }

    /// Builds the differentiable tables for `batch` rows at `dt_s`.
    fn prepare(&mut self, ctx: &Ctx, batch: usize, dt_s: f64) -> Result<()> {
        let n = self.n_units();
        let rows = self.weight_s.dims()[0];
        if rows != 1 && rows != batch {
            return Err(Error::shape("weight_s", format!("[{batch} or 1, 1]"), rows));
        }
        let w = to_vec_f64(self.weight_s.clone());
        let q = self.kinetics.grid_charge_s(dt_s)?;
        let tab = RateTable::build(&self.units, &w, q, self.contraction_times_s.as_deref())?;
        let p = TABLE_POINTS;
        let dw = self.weight_s.clone() - self.weight_s.clone().detach();
        // value + (∂value/∂w)·(w − detach(w)): the host values, with ∂/∂w for autodiff.
        let table = |v: Vec<f64>, dv: Vec<f64>| {
            (ctx.tensor(v, [rows, n * p]) + ctx.tensor(dv, [rows, n * p]) * dw.clone())
                .reshape([rows * n * p])
        };
        let gained = self
            .contraction_times_s
            .is_some()
            .then(|| table(tab.gained, tab.dgained_dw));
        let rate = table(tab.rate, tab.drate_dw);
        let dx = TABLE_X_MAX / (p - 1) as f64;
        let scale = ctx.tensor(self.units.r_ohm.iter().map(|r| r / dx).collect(), [1, n]);
        let offsets = (0..batch)
            .flat_map(|b| {
                let row = if rows == 1 { 0 } else { b };
                (0..n).map(move |j| ((row * n + j) * p) as i64)
            })
            .collect();
        self.state = Some(Prepared {
            rate,
            gained,
            scale,
            offsets,
        });
        Ok(())
    }

    /// Rates (Hz) `[T, B, n]` for conductances `g` `[T, B, n]` (S), and the gain-weighted rates
    /// when configured: linear interpolation of the tables at `x = R·g`, clamped to their range.
    fn rates(&self, g: Tensor<3>, ctx: &Ctx) -> Result<(Tensor<3>, Option<Tensor<3>>)> {
        let st = self
            .state
            .as_ref()
            .ok_or_else(|| Error::config(&self.name, "used before init"))?;
        let [t, b, n] = g.dims();
        let p = TABLE_POINTS;
        let pos = (g * st.scale.clone().unsqueeze_dim::<3>(0)).clamp(0.0, (p - 1) as f64 - 1e-6);
        let i0 = pos.clone().detach().floor();
        let frac = (pos - i0.clone()).reshape([t * b * n]);
        let base: Vec<i64> = (0..t).flat_map(|_| st.offsets.iter().copied()).collect();
        let base = Tensor::<1, Int>::from_data(TensorData::new(base, [t * b * n]), &ctx.device);
        let idx = i0.reshape([t * b * n]).int() + base;
        let lerp = |tab: &Tensor<1>| {
            let lo = tab.clone().select(0, idx.clone());
            let hi = tab.clone().select(0, idx.clone() + 1);
            (lo.clone() + (hi - lo) * frac.clone()).reshape([t, b, n])
        };
        Ok((lerp(&st.rate), st.gained.as_ref().map(lerp)))
    }
}

impl Stage for MeanFieldPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn declare(&self) -> StageDecl {
        let n = self.n_units();
        let mut writes = vec![BufferSpec::new(names::SPIKES, &[n], "spike/step")];
        if self.contraction_times_s.is_some() {
            writes.push(BufferSpec::new(MF_GAINED_SPIKES, &[n], "spike/step"));
        }
        StageDecl {
            reads: vec![ReadSpec::now(SYN_CONDUCTANCE_S)],
            writes,
        }
    }

    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let ctx = io.ctx().clone();
        self.prepare(&ctx, io.batch(), io.dt_s())
    }

    fn step(&mut self, io: &mut StageIo<'_>, _t: usize) -> Result<()> {
        let g = io.read(SYN_CONDUCTANCE_S)?;
        let [b, n] = g.dims();
        let ctx = io.ctx().clone();
        let dt = io.dt_s();
        let (nu, gained) = self.rates(g.reshape([1, b, n]), &ctx)?;
        io.write(names::SPIKES, nu.reshape([b, n]) * dt)?;
        if let Some(gn) = gained {
            io.write(MF_GAINED_SPIKES, gn.reshape([b, n]) * dt)?;
        }
        Ok(())
    }

    fn scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        Some((|| {
            let g = input_trace(inputs, &self.name, SYN_CONDUCTANCE_S)?;
            self.prepare(ctx, batch, dt_s)?;
            let (nu, gained) = self.rates(g, ctx)?;
            let mut traces = Traces::new();
            traces.insert(names::SPIKES.into(), nu * dt_s);
            if let Some(gn) = gained {
                traces.insert(MF_GAINED_SPIKES.into(), gn * dt_s);
            }
            Ok(traces)
        })())
    }
}
