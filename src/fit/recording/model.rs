//! The recording problem's model: piecewise drive → smooth network → binned force and matched
//! units' smoothed rates → loss (batched values, exact gradient), and the unit matching.

use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

use super::targets::{Targets, first_at_least, hann_matrix, smooth_bins, smooth_counts};
use crate::drive::{KnotTimes, PiecewiseLinearDrive};
use crate::error::{Error, Result, check};
use crate::fit::objective::Objective;
use crate::fit::smooth::{check_finite_values, gradients, run_network, smooth_config};
use crate::kernel::{Ctx, Precision, to_vec_f64};
use crate::network::NetworkConfig;

/// The recording problem: smooth network, knots, targets, frozen unit matching.
#[derive(Clone, Debug)]
pub struct RecordingModel {
    /// Smooth network (duration = `n_bins · bin_s`).
    pub cfg: NetworkConfig,
    /// Knot times.
    pub knots: KnotTimes,
    /// Targets.
    pub targets: Targets,
    /// Matched simulated units, one per target unit.
    pub matched: Vec<usize>,
    /// Fit σ (else fixed at `noise_sd_hz`).
    pub fit_noise: bool,
    /// σ when fixed (Hz).
    pub noise_sd_hz: f64,
    /// Synaptic weight (S).
    pub weight_s: f64,
    /// Rate weight λ.
    pub rate_weight: f64,
    /// Largest batch per rollout.
    pub max_batch: usize,
    /// Float precision of every rollout (f32 by default; f64 for gradient checks).
    pub precision: Precision,
    pub(super) steps_per_bin: usize,
    pub(super) hann: Vec<f64>,
    pub(super) masks: Vec<Vec<f64>>,
    pub(super) r_ref: f64,
}

/// Summary numbers of a fit (see [`RecordingModel::quality`]).
#[derive(Clone, Debug, Serialize)]
pub struct Quality {
    /// Force RMSE over the window (%MVC).
    pub force_rmse_pct: f64,
    /// Per matched unit: (simulated, recorded) mean rate over the last half of the window (Hz).
    pub late_rates_hz: Vec<(f64, f64)>,
}

/// Simulated force (%MVC) and matched smoothed rates (Hz) of one parameter set, per bin.
#[derive(Clone, Debug)]
pub struct Simulated {
    /// `s·F̄_b` (%MVC).
    pub force_pct: Vec<f64>,
    /// One vector per matched unit (Hz).
    pub rates_hz: Vec<Vec<f64>>,
}

impl RecordingModel {
    /// Builds the model. `cfg` is made smooth and its duration set to `n_bins · bin_s`; the
    /// time step must tile a bin. `matched` must hold one simulated unit per target unit.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &NetworkConfig,
        knots: KnotTimes,
        targets: Targets,
        matched: Vec<usize>,
        fit_noise: bool,
        noise_sd_hz: f64,
        weight_s: f64,
        rate_weight: f64,
        smooth_s: f64,
        max_batch: usize,
    ) -> Result<Self> {
        let spb_f = targets.bin_s / cfg.dt_s;
        let steps_per_bin = spb_f.round() as usize;
        if steps_per_bin == 0 || (spb_f - steps_per_bin as f64).abs() > 1e-6 * spb_f {
            return Err(Error::invalid(
                "network.dt_s",
                cfg.dt_s,
                format!(
                    "a divisor of the bin width {} s (data.bin_samples / fs)",
                    targets.bin_s
                ),
            ));
        }
        let mut cfg = smooth_config(cfg);
        cfg.duration_s = steps_per_bin as f64 * targets.n_bins as f64 * cfg.dt_s;
        cfg.validate()?;
        if cfg.n_mn < 2 * targets.units.len().max(1) {
            return Err(Error::invalid(
                "network.n_mn",
                cfg.n_mn,
                format!(
                    ">= {} (twice the number of matched units); a pool this small cannot \
                     produce the recorded force and rates",
                    2 * targets.units.len().max(1)
                ),
            ));
        }
        if matched.len() != targets.units.len() {
            return Err(Error::shape(
                "data.matching",
                targets.units.len(),
                matched.len(),
            ));
        }
        if let Some(&bad) = matched.iter().find(|&&i| i >= cfg.n_mn) {
            return Err(Error::invalid(
                "data.matching",
                bad,
                format!("< network.n_mn = {}", cfg.n_mn),
            ));
        }
        check::non_negative("drive.noise_sd_hz", noise_sd_hz)?;
        let hb = smooth_bins(smooth_s, targets.bin_s);
        let hann = hann_matrix(targets.n_bins, hb);
        let masks: Vec<Vec<f64>> = (0..targets.units.len())
            .map(|j| targets.mask(j, hb / 2))
            .collect();
        let (mut sum, mut cnt) = (0.0, 0.0);
        for (r, m) in targets.rates_hz.iter().zip(&masks) {
            for (v, w) in r.iter().zip(m) {
                sum += v * w;
                cnt += w;
            }
        }
        if !targets.units.is_empty() && cnt == 0.0 {
            return Err(Error::invalid(
                "data.window",
                format!("bins {:?}", targets.loss_bins),
                "a window in which the matched units fire after their recruitment",
            ));
        }
        let r_ref = if cnt > 0.0 { sum / cnt } else { 1.0 };
        Ok(Self {
            cfg,
            knots,
            targets,
            matched,
            fit_noise,
            noise_sd_hz,
            weight_s,
            rate_weight,
            max_batch: max_batch.max(1),
            precision: Precision::F32,
            steps_per_bin,
            hann,
            masks,
            r_ref,
        })
    }

    /// The same model in another float precision (f64 for gradient checks).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The CPU context of this model's precision (no autodiff).
    pub fn ctx(&self) -> Ctx {
        Ctx::cpu().with_precision(self.precision)
    }

    /// Number of fitted parameters (K knots, σ if fitted, s).
    pub fn n_params(&self) -> usize {
        self.knots.len() + usize::from(self.fit_noise) + 1
    }

    /// Splits the fitted vectors of a batch into knot values `[B·K]`, σ `[B]`, s `[B]`.
    fn split(&self, xs: &[Vec<f64>]) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let k = self.knots.len();
        let (mut v, mut sd, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for x in xs {
            if x.len() != self.n_params() {
                return Err(Error::shape("x", self.n_params(), x.len()));
            }
            check::all_finite("x", x)?;
            v.extend_from_slice(&x[..k]);
            sd.push(if self.fit_noise {
                x[k]
            } else {
                self.noise_sd_hz
            });
            s.push(x[self.n_params() - 1]);
        }
        Ok((v, sd, s))
    }

    /// Force `[T, B, 1]` (N) and spikes `[T, B, n_mn]` of network `cfg` driven by the knot
    /// values `[B, K]` (Hz) and σ `[B, 1]` (Hz).
    fn rollout(
        &self,
        cfg: &NetworkConfig,
        ctx: &Ctx,
        values: Tensor<2>,
        sd: Tensor<2>,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let b = values.dims()[0];
        let drive = PiecewiseLinearDrive::new(
            self.knots.clone(),
            values,
            sd,
            cfg.drive_noise_spec(),
            cfg.rate_clip,
        );
        let weight = ctx.tensor(vec![self.weight_s], [1, 1]);
        run_network(cfg, ctx, b, Box::new(drive), weight)
    }

    /// Per-row losses `[B]` and the simulated bins of network `cfg`, on `ctx` (autodiff or not),
    /// for tensors `values [B, K]` (Hz), `sd [B, 1]` (Hz), `scale [B, 1]` (%MVC/N).
    fn forward(
        &self,
        cfg: &NetworkConfig,
        ctx: &Ctx,
        values: Tensor<2>,
        sd: Tensor<2>,
        scale: Tensor<2>,
    ) -> Result<(Tensor<1>, Tensor<2>, Tensor<2>)> {
        let b = values.dims()[0];
        let (force, spikes) = self.rollout(cfg, ctx, values, sd)?;
        let (nb, spb) = (self.targets.n_bins, self.steps_per_bin);
        // Force: bin means × s → [nb, B] (%MVC).
        let f_bins = force.reshape([nb, spb, b]).mean_dim(1).reshape([nb, b])
            * scale.clone().reshape([1, b]);
        let lb = self.targets.loss_bins.clone();
        let nl = lb.len();
        let f_tgt = ctx.tensor(self.targets.force_pct[lb.clone()].to_vec(), [nl, 1]);
        let inv_f = 1.0 / self.targets.f_ref();
        let f_err = (f_bins.clone().slice([lb.clone(), 0..b]) - f_tgt) * inv_f;
        let f_loss = f_err.powi_scalar(2).mean_dim(0).reshape([b]);
        // Rates of the matched units: counts per bin → Hann → Hz, [nb, B·M].
        let m = self.matched.len();
        if m == 0 {
            // Force-only fit: no rate term; the third output (rates `[nb, 0]`) is never read
            // when no unit is matched, so the force bins stand in (no zero-size tensor).
            return Ok((f_loss, f_bins.clone(), f_bins));
        }
        let n_mn = cfg.n_mn;
        let idx = Tensor::<1, Int>::from_ints(
            TensorData::new(
                self.matched.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [m],
            ),
            &ctx.device,
        );
        let sel = spikes.reshape([nb * spb, b, n_mn]).select(2, idx);
        let counts = sel
            .reshape([nb, spb, b * m])
            .sum_dim(1)
            .reshape([nb, b * m]);
        let h: Tensor<2> = ctx.tensor(self.hann.clone(), [nb, nb]);
        let rates = h.matmul(counts) * (1.0 / self.targets.bin_s);
        let tile = |v: &[Vec<f64>]| -> Tensor<2> {
            let mut out = vec![0.0; nb * b * m];
            for t in 0..nb {
                for r in 0..b {
                    for (j, vj) in v.iter().enumerate() {
                        out[t * b * m + r * m + j] = vj[t];
                    }
                }
            }
            ctx.tensor(out, [nb, b * m])
        };
        let r_tgt = tile(&self.targets.rates_hz);
        let mask = tile(&self.masks);
        let n_mask: f64 = self.masks.iter().flatten().sum();
        let r_err = (rates.clone() - r_tgt) * mask * (1.0 / self.r_ref);
        let r_loss = r_err
            .powi_scalar(2)
            .sum_dim(0)
            .reshape([b, m])
            .sum_dim(1)
            .reshape([b])
            * (self.rate_weight / n_mask);
        Ok((f_loss + r_loss, f_bins, rates))
    }

    fn tensors(&self, ctx: &Ctx, xs: &[Vec<f64>]) -> Result<(Tensor<2>, Tensor<2>, Tensor<2>)> {
        let (v, sd, s) = self.split(xs)?;
        let b = xs.len();
        Ok((
            ctx.tensor(v, [b, self.knots.len()]),
            ctx.tensor(sd, [b, 1]),
            ctx.tensor(s, [b, 1]),
        ))
    }

    /// Losses of a population (batched rollouts of at most `max_batch` rows; the model's
    /// precision, no tape).
    pub fn losses(&self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        let ctx = self.ctx();
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(self.max_batch) {
            let (v, sd, s) = self.tensors(&ctx, chunk)?;
            let (l, _, _) = self.forward(&self.cfg, &ctx, v, sd, s)?;
            out.extend(to_vec_f64(l));
        }
        check_finite_values("recording loss", &out)?;
        Ok(out)
    }

    /// Loss and exact gradient `∂L/∂x` (one forward + one backward pass through the fused ops).
    pub fn loss_and_grad(&self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let ctx = self.ctx().autodiff();
        let (v, sd, s) = self.tensors(&ctx, &[x.to_vec()])?;
        let (v, sd, s) = (v.require_grad(), sd.require_grad(), s.require_grad());
        let (l, _, _) = self.forward(&self.cfg, &ctx, v.clone(), sd.clone(), s.clone())?;
        let value = to_vec_f64(l.clone())[0];
        let g = gradients(l.sum(), &[&v, &sd, &s]);
        let mut grad = g[0].clone();
        if self.fit_noise {
            grad.push(g[1][0]);
        }
        grad.push(g[2][0]);
        check_finite_values("recording loss", &[value])?;
        check_finite_values("recording gradient", &grad)?;
        Ok((value, grad))
    }

    /// Simulated force and matched rates per bin at `x` (for plots and initialisation).
    pub fn simulate(&self, x: &[f64]) -> Result<Simulated> {
        self.simulate_on(&self.cfg, x)
    }

    /// The same rollout on the hard spiking network (Heaviside spikes, Poisson inputs; no
    /// gradient): how well a drive fitted on the smooth model transfers to the spiking one.
    pub fn simulate_hard(&self, x: &[f64]) -> Result<Simulated> {
        let hard = NetworkConfig {
            spike_mode: crate::neuron::spike::SpikeMode::Hard,
            generator_mode: crate::drive::GeneratorMode::Hard,
            ..self.cfg.clone()
        };
        self.simulate_on(&hard, x)
    }

    fn simulate_on(&self, cfg: &NetworkConfig, x: &[f64]) -> Result<Simulated> {
        let ctx = self.ctx();
        let (v, sd, s) = self.tensors(&ctx, &[x.to_vec()])?;
        let (_, f, r) = self.forward(cfg, &ctx, v, sd, s)?;
        let m = self.matched.len();
        let r = to_vec_f64(r);
        Ok(Simulated {
            force_pct: to_vec_f64(f),
            rates_hz: (0..m)
                .map(|j| (0..self.targets.n_bins).map(|t| r[t * m + j]).collect())
                .collect(),
        })
    }

    /// Fit quality of simulated bins against the targets: force RMSE over the window (%MVC) and,
    /// per matched unit, the mean rate over the last half of the window (simulated, recorded; Hz).
    pub fn quality(&self, sim: &Simulated) -> Quality {
        let lb = self.targets.loss_bins.clone();
        let n = lb.len() as f64;
        let force_rmse_pct = (lb
            .clone()
            .map(|b| (sim.force_pct[b] - self.targets.force_pct[b]).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let late = lb.start + lb.len() / 2..lb.end;
        let mean = |v: &[f64]| v[late.clone()].iter().sum::<f64>() / late.len() as f64;
        Quality {
            force_rmse_pct,
            late_rates_hz: sim
                .rates_hz
                .iter()
                .zip(&self.targets.rates_hz)
                .map(|(s, r)| (mean(s), mean(r)))
                .collect(),
        }
    }

    /// Smoothed rates of every simulated unit (Hz, `[n_mn][n_bins]`) and the force per bin (N)
    /// at knot values `v` (Hz) and σ (Hz): used to match units and initialise the scale.
    pub fn all_rates(&self, v: &[f64], sd: f64) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
        let ctx = self.ctx();
        let values = ctx.tensor(v.to_vec(), [1, self.knots.len()]);
        let (force, spikes) =
            self.rollout(&self.cfg, &ctx, values, ctx.tensor(vec![sd], [1, 1]))?;
        let (nb, spb, n) = (self.targets.n_bins, self.steps_per_bin, self.cfg.n_mn);
        let f = to_vec_f64(force.reshape([nb, spb]).mean_dim(1).reshape([nb]));
        let c = to_vec_f64(spikes.reshape([nb, spb, n]).sum_dim(1).reshape([nb, n]));
        let rates = (0..n)
            .map(|i| {
                let counts: Vec<f64> = (0..nb).map(|t| c[t * n + i]).collect();
                smooth_counts(&self.hann, &counts, self.targets.bin_s)
            })
            .collect();
        Ok((rates, f))
    }
}

/// The greedy matching both rules share: recorded units in recruitment order (`recorded_recruit_bin`,
/// stable for ties), each gets the unused simulated unit of least `cost(j, i)` (ties: the lower
/// index; `None`: not a candidate). When no candidate is left the error names `network.n_mn`
/// with `needs` as the allowed value.
fn greedy_match(
    n_sim: usize,
    recorded_recruit_bin: &[usize],
    cost: impl Fn(usize, usize) -> Option<f64>,
    needs: &str,
) -> Result<Vec<usize>> {
    let mut order: Vec<usize> = (0..recorded_recruit_bin.len()).collect();
    order.sort_by_key(|&j| recorded_recruit_bin[j]);
    let mut used = vec![false; n_sim];
    let mut out = vec![0; recorded_recruit_bin.len()];
    for j in order {
        let best = (0..n_sim)
            .filter(|&i| !used[i])
            .filter_map(|i| cost(j, i).map(|c| (i, c)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(i, _)| i)
            .ok_or_else(|| Error::invalid("network.n_mn", n_sim, needs))?;
        used[best] = true;
        out[j] = best;
    }
    Ok(out)
}

/// Recruitment matching (module docs): for recorded units in recruitment order, the unused
/// simulated unit whose recruitment bin (first bin ≥ `recruit_hz`) is nearest; never-recruited
/// simulated units are not candidates. Error if there are fewer recruited simulated units than
/// recorded ones.
pub fn match_by_recruitment(
    sim_rates: &[Vec<f64>],
    recorded_recruit_bin: &[usize],
    recruit_hz: f64,
) -> Result<Vec<usize>> {
    let sim_rb: Vec<Option<usize>> = sim_rates
        .iter()
        .map(|r| first_at_least(r, recruit_hz, 0))
        .collect();
    greedy_match(
        sim_rates.len(),
        recorded_recruit_bin,
        |j, i| sim_rb[i].map(|rb| rb.abs_diff(recorded_recruit_bin[j]) as f64),
        "a pool with at least as many recruited units as matched recorded units \
         at the initial drive (raise n_mn or drive.init_peak_hz)",
    )
}

/// Matching by rate error: recorded unit j (taken in recruitment order, `recorded_recruit_bin`)
/// gets the unused simulated unit `argmin_i Σ_b m_jb (r_ib − R_jb)²` (Hz²) — `sim_rates[i]` and
/// `recorded_rates[j]` smoothed rates per bin (Hz), `masks[j]` the loss's weights of unit j.
/// Ties go to the lower index. Errors when the pool has fewer units than recorded units.
pub fn match_by_rates(
    sim_rates: &[Vec<f64>],
    recorded_rates: &[Vec<f64>],
    masks: &[Vec<f64>],
    recorded_recruit_bin: &[usize],
) -> Result<Vec<usize>> {
    let n_rec = recorded_rates.len();
    if masks.len() != n_rec {
        return Err(Error::shape("masks", n_rec, masks.len()));
    }
    if recorded_recruit_bin.len() != n_rec {
        return Err(Error::shape(
            "recruit_bin",
            n_rec,
            recorded_recruit_bin.len(),
        ));
    }
    greedy_match(
        sim_rates.len(),
        recorded_recruit_bin,
        |j, i| {
            Some(
                sim_rates[i]
                    .iter()
                    .zip(&recorded_rates[j])
                    .zip(&masks[j])
                    .map(|((s, t), m)| m * (s - t).powi(2))
                    .sum(),
            )
        },
        "at least as many simulated units as matched recorded units",
    )
}

/// The objective wrapper for the optimisers.
pub struct RecordingObjective<'m> {
    /// The model.
    pub model: &'m RecordingModel,
}

impl Objective for RecordingObjective<'_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        Ok(self.model.losses(&[x.to_vec()])?[0])
    }
    fn value_and_grad(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.model.loss_and_grad(x)
    }
    fn values(&mut self, xs: &[Vec<f64>]) -> Result<Vec<f64>> {
        self.model.losses(xs)
    }
}
