//! The event-time fast network and its forward-mode (tangent) derivative. See the module docs of
//! [`crate::event`] for the equations; this file is the loop.

use std::collections::VecDeque;

use crate::drive::generator::{SpikeProcess, threshold_sequence};
use crate::drive::synapse::{ConnectivityMatrix, ConnectivityRule, SynapseKinetics};
use crate::error::{Error, Result, check};
use crate::muscle::force::GainMode;
use crate::muscle::twitch::{GAIN_RATE_KNEE, fuglevand_gain_f64, sf};
use crate::network::{MembraneModel, NetworkConfig};
use crate::neuron::lif::LifUnitValues;
use crate::neuron::nerlab_params::{NerlabConstants, NerlabParams};

use super::drive::{EventDrive, Param};
use super::paths::{
    CreationOpts, Insertion, InsertionOpts, LifStep, MERGE_TOL_V, Peak, Shadow, ShadowOf, Twitch,
};

/// What one run returns. Force samples are at `t = (k + 1)·dt`, `k = 0..n_steps`.
#[derive(Clone, Debug)]
pub struct EventRun {
    /// Time step (s).
    pub dt_s: f64,
    /// The parameters the tangents refer to, in order.
    pub params: Vec<Param>,
    /// Muscle force (N) at `t = (k + 1)·dt`.
    pub force_n: Vec<f64>,
    /// `∂force/∂p`, `[params.len() · n_steps]`, parameter-major.
    pub force_tan: Vec<f64>,
    /// Spike times per motor unit (s, at the interpolated threshold crossing).
    pub spikes_s: Vec<Vec<f64>>,
    /// `∂t_spike/∂p` per motor unit, `[k · params.len() + q]` for spike k, parameter q.
    pub spike_tan: Vec<Vec<f64>>,
    /// Sub-threshold maxima within the requested band below threshold (empty unless asked).
    pub peaks: Vec<Peak>,
    /// Inserted input spikes and their alternative paths (empty unless asked).
    pub insertions: Vec<Insertion>,
    /// Number of descending-drive inputs of each motor unit.
    pub n_inputs_per_unit: Vec<usize>,
    /// `∂r_k/∂p` of the drive rate, `[params.len() · n_steps]` (Hz per unit of p).
    pub rate_tan: Vec<f64>,
    /// Number of descending-drive input spikes.
    pub n_input_spikes: usize,
}

impl EventRun {
    /// Number of steps.
    pub fn n_steps(&self) -> usize {
        self.force_n.len()
    }

    /// Tangent row of parameter `q` of the force.
    pub fn force_tan_row(&self, q: usize) -> &[f64] {
        let n = self.n_steps();
        &self.force_tan[q * n..(q + 1) * n]
    }
}

/// Options of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunOptions {
    /// Parameters to differentiate (forward-mode tangents; cost grows with their number).
    pub params: Vec<Param>,
    /// Record sub-threshold maxima near threshold and their alternative paths; `None`: none.
    pub creation: Option<CreationOpts>,
    /// Insert extra input spikes and record the alternative paths; `None`: none.
    pub insertion: Option<InsertionOpts>,
}

/// The fast (LIF + AHP) network of [`NetworkConfig`] with spike times at the interpolated
/// threshold crossing (see [`crate::event`]). Everything random (connectivity, input thresholds,
/// drive noise) is drawn from `cfg.seed` exactly as the tensor network draws it.
#[derive(Clone, Debug)]
pub struct EventNetwork {
    cfg: NetworkConfig,
    n_steps: usize,
    targets: Vec<Vec<u32>>,
    lif: LifUnitValues,
    twitch_p: Vec<f64>,
    twitch_t_s: Vec<f64>,
    f0_n: f64,
    axon_delay_steps: Vec<f64>,
    xi: Vec<f64>,
}

impl EventNetwork {
    /// Builds the network of `cfg` (fast model only; MyoGen's Watanabe sizes by default).
    ///
    /// Errors: the faithful model (no event-time version), surrogate/rate spike or generator
    /// modes (this network's spikes are hard events), the MyoGen-compat gain, an unstable step
    /// (`dt ≥ τ_m` of a unit), or any invalid field of `cfg`.
    pub fn new(cfg: &NetworkConfig) -> Result<Self> {
        cfg.validate()?;
        if cfg.model != MembraneModel::Fast {
            return Err(Error::invalid(
                "model",
                format!("{:?}", cfg.model),
                "fast (the event-time network is the LIF + AHP pool)",
            ));
        }
        if cfg.gain == GainMode::MyogenCompat {
            return Err(Error::invalid(
                "gain",
                "myogen_compat",
                "fuglevand or none for the event-time network",
            ));
        }
        cfg.kinetics.validate()?;
        cfg.kinetics.check_dt(cfg.dt_s)?;
        let n_steps = cfg.n_steps();
        let conn = ConnectivityMatrix::generate(
            cfg.n_dd,
            cfg.n_mn,
            ConnectivityRule::Bernoulli { p: cfg.p_connect },
            cfg.seed.wrapping_add(2),
        )?;
        let targets = (0..cfg.n_dd)
            .map(|j| conn.targets(j).iter().map(|&i| i as u32).collect())
            .collect();
        let rt = cfg.thresholds()?;
        let lif = LifUnitValues::calibrated(&rt.rt)?;
        for (i, &tau) in lif.tau_m_s.iter().enumerate() {
            if cfg.dt_s >= tau {
                return Err(Error::UnstableTimeStep {
                    dt_s: cfg.dt_s,
                    model: "event-time LIF pool".into(),
                    reason: format!("dt_s must be < tau_m of unit {i} = {tau} s"),
                });
            }
        }
        let n = cfg.n_mn;
        let rp = rt.rt[n - 1] / rt.rt[0];
        let twitch_p: Vec<f64> = (1..=n)
            .map(|i| (rp.ln() / n as f64 * i as f64).exp())
            .collect();
        let expo = cfg.contraction_time_range.ln() / rp.ln();
        let twitch_t_s: Vec<f64> = twitch_p
            .iter()
            .map(|p| cfg.t_l_s * (-p.ln() * expo).exp())
            .collect();
        let t_min = twitch_t_s.iter().cloned().fold(f64::INFINITY, f64::min);
        if cfg.dt_s > t_min / 2.0 {
            return Err(Error::UnstableTimeStep {
                dt_s: cfg.dt_s,
                model: "Fuglevand twitch".into(),
                reason: format!("dt_s must be <= T_min/2 = {} s", t_min / 2.0),
            });
        }
        let sum_p: f64 = twitch_p.iter().sum();
        let limit_gain = std::f64::consts::E / (sf(GAIN_RATE_KNEE) / GAIN_RATE_KNEE);
        let f0_n = cfg.mvc_n / (sum_p * limit_gain);
        let axon_delay_steps = if cfg.axonal_delays {
            NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?
                .axon_delay_s
                .iter()
                .map(|d| (d / cfg.dt_s).round())
                .collect()
        } else {
            vec![0.0; n]
        };
        let xi = cfg.drive_noise_spec().draw(n_steps, 1);
        Ok(Self {
            cfg: cfg.clone(),
            n_steps,
            targets,
            lif,
            twitch_p,
            twitch_t_s,
            f0_n,
            axon_delay_steps,
            xi,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// Number of steps.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }

    /// Twitch of unit `i`: peak force at gain 1 `F0·P_i` (N), contraction time `T_i` (s) and
    /// axonal delay (s, whole steps).
    pub fn unit_twitch(&self, i: usize) -> (f64, f64, f64) {
        (
            self.f0_n * self.twitch_p[i],
            self.twitch_t_s[i],
            self.axon_delay_steps[i] * self.cfg.dt_s,
        )
    }

    /// Spike threshold of unit `i` (V).
    pub fn threshold_v(&self, i: usize) -> f64 {
        self.lif.v_thresh_v[i]
    }

    /// Runs the network for `drive` and synaptic weight `weight_s` (S, before the fast pool's
    /// synaptic gain), with tangents of the parameters in `opts`.
    ///
    /// Errors: invalid drive values, a parameter the drive does not have, a weight that is not
    /// finite and > 0, a non-finite state (named with its step), or an input neuron that runs out
    /// of pre-drawn thresholds.
    pub fn run(&self, drive: &EventDrive, weight_s: f64, opts: &RunOptions) -> Result<EventRun> {
        check::positive("weight_s", weight_s)?;
        if let Some(c) = opts.creation {
            check::positive("creation.band_v", c.band_v)?;
            check::positive("creation.horizon_s", c.horizon_s)?;
        }
        if let Some(ins) = opts.insertion {
            check::non_negative("insertion.rate_uniform_hz", ins.rate_uniform_hz)?;
            check::non_negative("insertion.rate_near_hz", ins.rate_near_hz)?;
            if ins.rate_uniform_hz + ins.rate_near_hz <= 0.0 {
                return Err(Error::invalid(
                    "insertion.rate_uniform_hz",
                    ins.rate_uniform_hz,
                    "> 0 (or rate_near_hz > 0)",
                ));
            }
            if ins.rate_near_hz * self.cfg.dt_s > 1.0 {
                return Err(Error::invalid(
                    "insertion.rate_near_hz",
                    ins.rate_near_hz,
                    format!("<= 1/dt = {} (1/s)", 1.0 / self.cfg.dt_s),
                ));
            }
            check::positive("insertion.near_band_v", ins.near_band_v)?;
            check::positive("insertion.horizon_s", ins.horizon_s)?;
        }
        let cfg = &self.cfg;
        let dt = cfg.dt_s;
        let nt = self.n_steps;
        let np = opts.params.len();
        let (rate, rate_tan) = drive.trace(&opts.params, &self.xi, nt, dt)?;
        let q_weight = opts.params.iter().position(|p| *p == Param::Weight);

        // --- input generators: hazard y, thresholds (exact time rescaling) ---
        let n_dd = cfg.n_dd;
        let max_rate = rate.iter().cloned().fold(0.0, f64::max);
        let lambda = max_rate * nt as f64 * dt;
        let len = ((lambda + 8.0 * lambda.sqrt()).ceil() as usize + 16).min(nt + 1);
        let process: SpikeProcess = cfg.process;
        let thresholds: Vec<Vec<f64>> = (0..n_dd)
            .map(|j| threshold_sequence(process, cfg.seed.wrapping_add(1), 0, j, len))
            .collect();
        let mut th_idx = vec![0usize; n_dd];
        let mut y = vec![0.0; n_dd];
        let mut y_t = vec![0.0; n_dd * np];

        // --- synapses: Exp2Syn (A rise, B decay; g = B − A) or single exponential (g = B) ---
        let (tau1, tau2, exp2) = match cfg.kinetics {
            SynapseKinetics::Exp2Syn {
                tau_rise_s,
                tau_decay_s,
            } => (tau_rise_s, tau_decay_s, true),
            SynapseKinetics::SingleExp { tau_s } => (tau_s, tau_s, false),
        };
        let (a1, a2) = ((-dt / tau1).exp(), (-dt / tau2).exp());
        let wf = weight_s * cfg.fast_synaptic_gain * cfg.kinetics.peak_factor();
        let syn_delay = (cfg.synaptic_delay_s / dt).round();
        let ring_len = syn_delay as usize + 2;
        // events (source, δ in steps, ∂δ/∂p in steps) by arrival step modulo ring_len
        let mut ring: Vec<Vec<(u32, f64, Vec<f64>)>> = vec![Vec::new(); ring_len];
        let n = cfg.n_mn;
        let mut sa = vec![0.0; n];
        let mut sb = vec![0.0; n];
        let mut sa_t = vec![0.0; n * np];
        let mut sb_t = vec![0.0; n * np];

        // --- LIF + AHP pool ---
        let l = &self.lif;
        let alpha: Vec<f64> = l.tau_m_s.iter().map(|t| dt / t).collect();
        let kahp: Vec<f64> = l.tau_ahp_s.iter().map(|t| (-dt / t).exp()).collect();
        let mut v = l.v_rest_v.clone();
        let mut a = vec![0.0; n];
        let mut v_t = vec![0.0; n * np];
        let mut a_t = vec![0.0; n * np];
        let mut prev_v = l.v_rest_v.clone();
        let mut spiked_prev = vec![false; n];
        let mut spikes_s: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut spike_tan: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut peaks: Vec<Peak> = Vec::new();
        let mut shadows: Vec<Vec<Shadow>> = (0..n).map(|_| Vec::new()).collect();
        let mut n_inputs_per_unit = vec![0usize; n];
        for t in &self.targets {
            for &i in t {
                n_inputs_per_unit[i as usize] += 1;
            }
        }
        // the sampling process of each unit: hazard accumulator and its next Exp(1) threshold
        let mut insertions: Vec<Insertion> = Vec::new();
        let mut samplers: Vec<(rand::rngs::StdRng, f64, f64)> = match opts.insertion {
            Some(ins) => (0..n)
                .map(|i| {
                    use rand::SeedableRng;
                    let mut rng = rand::rngs::StdRng::seed_from_u64(
                        ins.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    let e = rand_distr::Distribution::sample(&rand_distr::Exp1, &mut rng);
                    (rng, 0.0, e)
                })
                .collect(),
            None => Vec::new(),
        };
        let mut new_shadows: Vec<(f64, f64)> = Vec::new();
        let horizon_steps = opts
            .insertion
            .map_or(0, |ins| (ins.horizon_s / dt).round() as usize);

        // --- twitch force: S0 = Σ g e^{−(t−t_e)/T}, S1 = Σ g (t−t_e) e^{−(t−t_e)/T} ---
        let rho: Vec<f64> = self.twitch_t_s.iter().map(|t| (-dt / t).exp()).collect();
        let fcoef: Vec<f64> = (0..n)
            .map(|i| self.f0_n * self.twitch_p[i] * std::f64::consts::E / self.twitch_t_s[i])
            .collect();
        let mut s0 = vec![0.0; n];
        let mut s1 = vec![0.0; n];
        let mut s0_t = vec![0.0; n * np];
        let mut s1_t = vec![0.0; n * np];
        let mut fifo: Vec<VecDeque<Twitch>> = vec![VecDeque::new(); n];

        let mut force_n = vec![0.0; nt];
        let mut force_tan = vec![0.0; np * nt];
        let mut n_input_spikes = 0usize;
        let mut phi_t = vec![0.0; np];
        let mut g_t = vec![0.0; np];
        let mut c_t = vec![0.0; np];

        for k in 0..nt {
            // 1. generators over (t_k, t_{k+1}]: y(t) = y_k + r_k (t − t_k)
            let rdt = rate[k] * dt;
            if rdt > 0.0 {
                for j in 0..n_dd {
                    let y0 = y[j];
                    let mut y1 = y0 + rdt;
                    let mut cum = 0.0;
                    loop {
                        let th = thresholds[j][th_idx[j]];
                        if y1 < th {
                            break;
                        }
                        cum += th;
                        th_idx[j] += 1;
                        if th_idx[j] >= len {
                            return Err(Error::invalid(
                                "drive rate (max, Hz)",
                                max_rate,
                                "low enough for the pre-drawn input thresholds (an input neuron ran out)",
                            ));
                        }
                        y1 -= th;
                        n_input_spikes += 1;
                        // y0 + φ·rdt = cum  ⇒  φ' = −(y0' + φ·rdt')/rdt
                        let phi = ((cum - y0) / rdt).clamp(0.0, 1.0);
                        let mut dtan = vec![0.0; np];
                        for q in 0..np {
                            let rdt_t = rate_tan[q * nt + k] * dt;
                            let p_t = -(y_t[j * np + q] + phi * rdt_t) / rdt;
                            dtan[q] = -p_t; // δ = (m + 1 − u), u = k + φ + D
                        }
                        let u = k as f64 + phi + syn_delay;
                        let m = (u.ceil() as usize).saturating_sub(1).max(k);
                        let delta = m as f64 + 1.0 - u;
                        ring[m % ring_len].push((j as u32, delta, dtan));
                    }
                    y[j] = y1;
                    for q in 0..np {
                        y_t[j * np + q] += rate_tan[q * nt + k] * dt;
                    }
                }
            }

            // 2. LIF pool with g_k = B − A at t_k (explicit Euler, frozen slope over the step)
            let band = opts.creation;
            for i in 0..n {
                let g = if exp2 { sb[i] - sa[i] } else { sb[i] };
                for q in 0..np {
                    g_t[q] = if exp2 {
                        sb_t[i * np + q] - sa_t[i * np + q]
                    } else {
                        sb_t[i * np + q]
                    };
                }
                let (vi, ai) = (v[i], a[i]);
                // insertion samples in (t_k, t_{k+1}] (intensity from v_k: predictable)
                new_shadows.clear();
                if let Some(ins) = opts.insertion {
                    let gap = (l.v_thresh_v[i] - vi).max(0.0);
                    let lam =
                        ins.rate_uniform_hz + ins.rate_near_hz * (-gap / ins.near_band_v).exp();
                    // time rescaling: hazard h since the last sample, next sample at h = e
                    let (rng, h, e) = &mut samplers[i];
                    let mut h_start = *h;
                    *h += lam * dt;
                    while *h >= *e {
                        let frac = ((*e - h_start) / (lam * dt)).clamp(0.0, 1.0);
                        new_shadows.push(((k as f64 + frac) * dt, 1.0 / lam));
                        *h -= *e;
                        h_start -= *e;
                        *e = rand_distr::Distribution::sample(&rand_distr::Exp1, rng);
                    }
                }
                let (r, es, ib, vr) = (l.r_ohm[i], l.e_syn_v[i], l.i_bias_a[i], l.v_rest_v[i]);
                let c = r * (g * (es - vi) + ib - ai) - (vi - vr);
                let v1 = vi + alpha[i] * c;
                for q in 0..np {
                    let vt = v_t[i * np + q];
                    c_t[q] = r * (g_t[q] * (es - vi) - g * vt - a_t[i * np + q]) - vt;
                }
                let th = l.v_thresh_v[i];
                if v1 >= th && vi < th {
                    let phi = (th - vi) / (v1 - vi);
                    for q in 0..np {
                        let vt = v_t[i * np + q];
                        let v1t = vt + alpha[i] * c_t[q];
                        phi_t[q] = -(vt + phi * (v1t - vt)) / (v1 - vi);
                    }
                    let vreset = l.v_reset_v[i];
                    let jump = l.ahp_jump_a[i];
                    let cr = r * (g * (es - vreset) + ib - ai - jump) - (vreset - vr);
                    v[i] = vreset + (1.0 - phi) * alpha[i] * cr;
                    let kpow = kahp[i].powf(1.0 - phi);
                    a[i] = kahp[i] * ai + jump * kpow;
                    for q in 0..np {
                        let crt = r * (g_t[q] * (es - vreset) - a_t[i * np + q]);
                        v_t[i * np + q] = -phi_t[q] * alpha[i] * cr + (1.0 - phi) * alpha[i] * crt;
                        a_t[i * np + q] =
                            kahp[i] * a_t[i * np + q] - jump * kahp[i].ln() * kpow * phi_t[q];
                    }
                    // spike at t* = (k + φ)·dt; twitch gain from the interval to the last spike
                    let t_spk = (k as f64 + phi) * dt;
                    let tan: Vec<f64> = phi_t.iter().map(|p| p * dt).collect();
                    let (gain, gain_t) = match (cfg.gain, spikes_s[i].last()) {
                        (GainMode::Fuglevand, Some(&t_prev)) => {
                            let isi = t_spk - t_prev;
                            let base = (spikes_s[i].len() - 1) * np;
                            let rr = self.twitch_t_s[i] / isi;
                            let dg = fuglevand_gain_slope(rr);
                            let gt: Vec<f64> = (0..np)
                                .map(|q| {
                                    let isi_t = tan[q] - spike_tan[i][base + q];
                                    dg * (-rr / isi * isi_t)
                                })
                                .collect();
                            (fuglevand_gain_f64(rr), gt)
                        }
                        _ => (1.0, vec![0.0; np]),
                    };
                    let u = k as f64 + phi + self.axon_delay_steps[i];
                    let m = (u.ceil() as usize).saturating_sub(1).max(k);
                    let delta = m as f64 + 1.0 - u;
                    let dtan: Vec<f64> = phi_t.iter().map(|p| -p).collect();
                    fifo[i].push_back((m, delta, dtan, gain, gain_t));
                    spikes_s[i].push(t_spk);
                    spike_tan[i].extend_from_slice(&tan);
                    spiked_prev[i] = true;
                    prev_v[i] = vi;
                } else {
                    // sub-threshold maximum at t_k: v_{k−1} < v_k ≥ v_{k+1}, no spike around it
                    if let Some(b) = band
                        && !spiked_prev[i]
                        && k > 0
                        && vi > prev_v[i]
                        && v1 <= vi
                        && th - vi < b.band_v
                    {
                        let end_step = (k + (b.horizon_s / dt).round() as usize).min(nt);
                        shadows[i].push(Shadow {
                            of: ShadowOf::Peak(peaks.len()),
                            v: l.v_reset_v[i],
                            a: ai + l.ahp_jump_a[i],
                            end_step,
                            t_extra: None,
                            primal_count0: spikes_s[i].len(),
                            count: 1,
                        });
                        peaks.push(Peak {
                            unit: i,
                            step: k,
                            v: vi,
                            v_tan: v_t[i * np..(i + 1) * np].to_vec(),
                            alt_spikes_s: vec![k as f64 * dt],
                            end_s: end_step as f64 * dt,
                        });
                    }
                    spiked_prev[i] = false;
                    prev_v[i] = vi;
                    v[i] = v1;
                    a[i] = kahp[i] * ai;
                    for q in 0..np {
                        v_t[i * np + q] += alpha[i] * c_t[q];
                        a_t[i * np + q] *= kahp[i];
                    }
                }
                if !shadows[i].is_empty() {
                    let p = LifStep {
                        alpha: alpha[i],
                        r,
                        es,
                        ib,
                        vr,
                        th,
                        vreset: l.v_reset_v[i],
                        jump: l.ahp_jump_a[i],
                        kahp: kahp[i],
                    };
                    let t_k = k as f64 * dt;
                    for sh in shadows[i].iter_mut() {
                        let ge = match sh.t_extra {
                            Some(ta) if t_k >= ta => {
                                let x = t_k - ta;
                                let b = (-x / tau2).exp();
                                wf * if exp2 { b - (-x / tau1).exp() } else { b }
                            }
                            _ => 0.0,
                        };
                        let (nv, na, phi) = p.step(g + ge, sh.v, sh.a);
                        sh.v = nv;
                        sh.a = na;
                        if let Some(phi) = phi {
                            let t = (k as f64 + phi) * dt;
                            sh.count += 1;
                            match sh.of {
                                ShadowOf::Peak(x) => peaks[x].alt_spikes_s.push(t),
                                ShadowOf::Insertion(x) => insertions[x].alt_spikes_s.push(t),
                            }
                        }
                        let merged = sh.count == spikes_s[i].len() - sh.primal_count0
                            && (sh.v - v[i]).abs() < MERGE_TOL_V
                            && (sh.a - a[i]).abs() * r < MERGE_TOL_V;
                        if merged {
                            let end = (k + 1) as f64 * dt;
                            match sh.of {
                                ShadowOf::Peak(x) => peaks[x].end_s = end,
                                ShadowOf::Insertion(x) => insertions[x].end_s = end,
                            }
                            sh.end_step = k + 1;
                        }
                    }
                    shadows[i].retain(|sh| sh.end_step > k + 1);
                }
                for &(t_arr, inv_lam) in &new_shadows {
                    let t_gen = t_arr - syn_delay * dt;
                    if t_gen < 0.0 || k + 1 >= nt {
                        continue;
                    }
                    shadows[i].push(Shadow {
                        of: ShadowOf::Insertion(insertions.len()),
                        v: v[i],
                        a: a[i],
                        end_step: (k + 1 + horizon_steps).min(nt),
                        t_extra: Some(t_arr),
                        primal_count0: spikes_s[i].len(),
                        count: 0,
                    });
                    insertions.push(Insertion {
                        unit: i,
                        t_gen_s: t_gen,
                        t_arrival_s: t_arr,
                        inv_intensity_s: inv_lam,
                        alt_spikes_s: Vec::new(),
                        end_s: ((k + 1 + horizon_steps).min(nt)) as f64 * dt,
                    });
                }
                if !v[i].is_finite() {
                    return Err(Error::NonFinite {
                        buffer: "mn_v_v".into(),
                        step: k,
                        batch: 0,
                        unit: i,
                    });
                }
            }

            // 3. synapses: decay to t_{k+1}, then add the arrivals of (t_k, t_{k+1}]
            for i in 0..n {
                sa[i] *= a1;
                sb[i] *= a2;
            }
            for x in sa_t.iter_mut() {
                *x *= a1;
            }
            for x in sb_t.iter_mut() {
                *x *= a2;
            }
            let slot = std::mem::take(&mut ring[k % ring_len]);
            let mut ka_t = vec![0.0; np];
            let mut kb_t = vec![0.0; np];
            for (j, delta, dtan) in &slot {
                let ka = if exp2 {
                    wf * (-delta * dt / tau1).exp()
                } else {
                    0.0
                };
                let kb = wf * (-delta * dt / tau2).exp();
                for q in 0..np {
                    ka_t[q] = -ka * dtan[q] * dt / tau1;
                    kb_t[q] = -kb * dtan[q] * dt / tau2;
                    if Some(q) == q_weight {
                        ka_t[q] += ka / weight_s;
                        kb_t[q] += kb / weight_s;
                    }
                }
                for &t in &self.targets[*j as usize] {
                    let t = t as usize;
                    sa[t] += ka;
                    sb[t] += kb;
                    for q in 0..np {
                        sa_t[t * np + q] += ka_t[q];
                        sb_t[t * np + q] += kb_t[q];
                    }
                }
            }
            ring[k % ring_len] = {
                let mut s = slot;
                s.clear();
                s
            };

            // 4. twitches: propagate to t_{k+1}, add arrivals, read the force
            let mut f = 0.0;
            for i in 0..n {
                let (r0, tt) = (rho[i], self.twitch_t_s[i]);
                s1[i] = r0 * (s1[i] + dt * s0[i]);
                s0[i] *= r0;
                for q in 0..np {
                    let x = i * np + q;
                    s1_t[x] = r0 * (s1_t[x] + dt * s0_t[x]);
                    s0_t[x] *= r0;
                }
                while let Some((m, _, _, _, _)) = fifo[i].front() {
                    if *m != k {
                        break;
                    }
                    let (_, dl, dl_t, gain, gain_t) = fifo[i].pop_front().expect("front exists");
                    let d = dl * dt;
                    let e = (-d / tt).exp();
                    s0[i] += gain * e;
                    s1[i] += gain * d * e;
                    for q in 0..np {
                        let d_t = dl_t[q] * dt;
                        s0_t[i * np + q] += gain_t[q] * e - gain * e * d_t / tt;
                        s1_t[i * np + q] += gain_t[q] * d * e + gain * e * d_t * (1.0 - d / tt);
                    }
                }
                f += fcoef[i] * s1[i];
                for q in 0..np {
                    force_tan[q * nt + k] += fcoef[i] * s1_t[i * np + q];
                }
            }
            force_n[k] = f;
        }
        Ok(EventRun {
            dt_s: dt,
            params: opts.params.clone(),
            force_n,
            force_tan,
            spikes_s,
            spike_tan,
            peaks,
            insertions,
            n_inputs_per_unit,
            rate_tan,
            n_input_spikes,
        })
    }
}

/// `dg/dr` of Fuglevand's gain `g(r) = (Sf(r)/r)/(Sf(0.4)/0.4)` (0 at and below the knee).
pub fn fuglevand_gain_slope(r: f64) -> f64 {
    if r <= GAIN_RATE_KNEE {
        return 0.0;
    }
    let e = (-2.0 * r * r * r).exp();
    let sfr = 1.0 - e;
    let dsf = 6.0 * r * r * e;
    ((dsf * r - sfr) / (r * r)) / (sf(GAIN_RATE_KNEE) / GAIN_RATE_KNEE)
}
