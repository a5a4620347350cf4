//! Seed-averaged gradients: the reference (central differences of the spiking network with
//! common random numbers inside each seed) and the seed average of any per-seed estimator.
//!
//! For seeds `s = 1..S` (network, inputs and drive noise drawn from `seed = s`):
//! `g_s = (F_s(θ + h) − F_s(θ − h)) / 2h`; the reference is `mean(g_s) ± sd(g_s)/√S`, the gradient
//! of the expected observable `E_s[F_s(θ)]` up to `O(h²)` curvature (too small an `h` sees single
//! spikes appear: the variance grows like `1/h`).

use super::drive::{EventDrive, Param};
use super::observable::Observable;
use super::sim::{EventNetwork, RunOptions};
use crate::error::{Error, Result, check};
use crate::network::NetworkConfig;

/// Mean and standard error of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean `sd/√n` (0 for n = 1).
    pub se: f64,
    /// Sample size.
    pub n: usize,
}

impl Estimate {
    /// From samples (at least one).
    pub fn from_samples(x: &[f64]) -> Result<Self> {
        check::count_at_least("samples", x.len(), 1)?;
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let se = if x.len() > 1 {
            (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
        } else {
            0.0
        };
        Ok(Self {
            mean,
            se,
            n: x.len(),
        })
    }
}

/// Runs `f` on every item on up to `threads` threads (results in input order).
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = threads.max(1).min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Result<Vec<R>>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| Error::config("threads", "a worker panicked"))??,
            );
        }
        Ok(out)
    })
}

/// Number of worker threads: the machine's parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The problem a gradient is taken of: network (its `seed` is replaced per seed), drive,
/// synaptic weight (S) and observable.
#[derive(Clone, Debug)]
pub struct GradientProblem {
    /// Network configuration (fast model).
    pub cfg: NetworkConfig,
    /// Drive profile.
    pub drive: EventDrive,
    /// Synaptic weight DD → MN (S).
    pub weight_s: f64,
    /// Observable.
    pub observable: Observable,
}

impl GradientProblem {
    /// MyoGen's Watanabe observable: the mean force over the second half of `cfg`'s duration (N),
    /// for `drive` and MyoGen's weight 0.05 µS.
    pub fn mean_force_second_half(cfg: NetworkConfig, drive: EventDrive) -> Self {
        let observable = Observable::MeanForce {
            t0_s: cfg.duration_s / 2.0,
            t1_s: cfg.duration_s,
        };
        Self {
            cfg,
            drive,
            weight_s: crate::network::MYOGEN_WEIGHT_S,
            observable,
        }
    }

    /// `(drive, weight)` with parameter `p` moved by `delta` (its unit).
    pub fn perturbed(&self, p: Param, delta: f64) -> Result<(EventDrive, f64)> {
        match p {
            Param::Weight => {
                let w = self.weight_s + delta;
                check::positive("weight_s", w)?;
                Ok((self.drive.clone(), w))
            }
            _ => Ok((
                self.drive.with(p, self.drive.get(p)? + delta)?,
                self.weight_s,
            )),
        }
    }

    /// The network of seed `seed`.
    pub fn network(&self, seed: u64) -> Result<EventNetwork> {
        let cfg = NetworkConfig {
            seed,
            ..self.cfg.clone()
        };
        EventNetwork::new(&cfg)
    }

    /// Observable value of seed `seed` at `(drive, weight)`.
    pub fn value(&self, seed: u64, drive: &EventDrive, weight_s: f64) -> Result<f64> {
        let net = self.network(seed)?;
        let run = net.run(drive, weight_s, &RunOptions::default())?;
        Ok(self.observable.eval(&run)?.0)
    }

    /// Per-seed central differences `g_s` of parameter `p` with step `h` (its unit), common
    /// random numbers inside each seed.
    pub fn central_differences(&self, p: Param, h: f64, seeds: &[u64]) -> Result<Vec<f64>> {
        check::positive("h", h)?;
        check::count_at_least("seeds", seeds.len(), 1)?;
        let (dp, wp) = self.perturbed(p, h)?;
        let (dm, wm) = self.perturbed(p, -h)?;
        par_map(seeds, default_threads(), |&s| {
            let fp = self.value(s, &dp, wp)?;
            let fm = self.value(s, &dm, wm)?;
            let g = (fp - fm) / (2.0 * h);
            if !g.is_finite() {
                return Err(Error::invalid(
                    format!("central difference of {} (seed {s})", p.name()),
                    g,
                    "a finite number",
                ));
            }
            Ok(g)
        })
    }

    /// The reference gradient of parameter `p`: seed-averaged central difference. Needs at least
    /// 2 seeds (a standard error of one seed is meaningless).
    pub fn reference(&self, p: Param, h: f64, seeds: &[u64]) -> Result<Estimate> {
        check::count_at_least("seeds (reference)", seeds.len(), 2)?;
        Estimate::from_samples(&self.central_differences(p, h, seeds)?)
    }

    /// The pathwise (event-time, exact between events) gradient of each seed, `[seed][param]`,
    /// and the values.
    pub fn pathwise(&self, params: &[Param], seeds: &[u64]) -> Result<Vec<(f64, Vec<f64>)>> {
        let opts = RunOptions {
            params: params.to_vec(),
            creation: None,
            insertion: None,
        };
        par_map(seeds, default_threads(), |&s| {
            let run = self.network(s)?.run(&self.drive, self.weight_s, &opts)?;
            self.observable.eval(&run)
        })
    }
}

/// One seed's estimate: value, pathwise gradient and the creation term (zeros when not asked).
#[derive(Clone, Debug)]
pub struct SeedEstimate {
    /// Observable value.
    pub value: f64,
    /// Pathwise (event-time) gradient.
    pub pathwise: Vec<f64>,
    /// Spike-creation term.
    pub creation: Vec<f64>,
}

impl GradientProblem {
    /// Pathwise gradient plus the spike-creation term ([`super::estimator`]) for each seed.
    pub fn with_creation(
        &self,
        params: &[Param],
        seeds: &[u64],
        creation: super::paths::CreationOpts,
        kernel: super::estimator::Kernel,
    ) -> Result<Vec<SeedEstimate>> {
        let opts = RunOptions {
            params: params.to_vec(),
            creation: Some(creation),
            insertion: None,
        };
        par_map(seeds, default_threads(), |&s| {
            let net = self.network(s)?;
            let run = net.run(&self.drive, self.weight_s, &opts)?;
            let (value, pathwise) = self.observable.eval(&run)?;
            let creation = super::estimator::creation_term(
                &net,
                &run,
                self.observable,
                creation.band_v,
                kernel,
            )?;
            Ok(SeedEstimate {
                value,
                pathwise,
                creation,
            })
        })
    }
}

impl GradientProblem {
    /// The insertion estimate ([`super::estimator::insertion_term`]) for each seed: drive
    /// parameters by insertion, the synaptic weight by the pathwise derivative. Returned in
    /// `SeedEstimate::creation` (with `pathwise` holding the pathwise derivative of every
    /// parameter, for comparison); [`SeedEstimate::insertion_gradient`] combines them.
    pub fn with_insertion(
        &self,
        params: &[Param],
        seeds: &[u64],
        insertion: super::paths::InsertionOpts,
    ) -> Result<Vec<SeedEstimate>> {
        let opts = RunOptions {
            params: params.to_vec(),
            creation: None,
            insertion: Some(insertion),
        };
        par_map(seeds, default_threads(), |&s| {
            let net = self.network(s)?;
            let run = net.run(&self.drive, self.weight_s, &opts)?;
            let (value, pathwise) = self.observable.eval(&run)?;
            let creation = super::estimator::insertion_term(&net, &run, self.observable)?;
            Ok(SeedEstimate {
                value,
                pathwise,
                creation,
            })
        })
    }
}

impl SeedEstimate {
    /// The insertion estimator's gradient: the insertion term for drive parameters, the pathwise
    /// derivative for the synaptic weight.
    pub fn insertion_gradient(&self, params: &[Param]) -> Vec<f64> {
        params
            .iter()
            .enumerate()
            .map(|(q, p)| {
                if *p == Param::Weight {
                    self.pathwise[q]
                } else {
                    self.creation[q]
                }
            })
            .collect()
    }
}
