//! Problem assembly (data, target, initial point, parameters, objective), per-method scores and
//! the estimator study.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::emg::noise::{
    NoiseConfig, NoiseParams, NoisePsdModel, PARAM_NAMES, PsdDistance, PsdModelOptions,
    generate_channels, idx,
};
use crate::error::Result;
use crate::fit::optimize::{FitReport, Method, minimize_within};
use crate::fit::params::{ParamSet, ParamSpec};

use super::data::{RestData, RestTarget, median};
use super::initial::initial_estimate_with;
use super::objective::NoiseObjective;
use super::spec::{EstimatorStudySpec, NoiseCalibrationSpec, param_index};

/// A prepared problem: data, target, initial estimate, parameters and objective.
pub struct NoiseProblem {
    /// The spec.
    pub spec: NoiseCalibrationSpec,
    /// The rest data.
    pub data: RestData,
    /// The target spectra.
    pub target: RestTarget,
    /// The moment-based initial estimate (before fixed overrides).
    pub moment_estimate: NoiseParams,
    /// The model's fixed settings.
    pub config: NoiseConfig,
    /// The fitted parameters (bounds, transforms, initial values).
    pub params: ParamSet,
    /// Column of each fitted parameter.
    pub free: Vec<usize>,
    /// The objective.
    pub objective: NoiseObjective,
}

impl NoiseProblem {
    /// Builds the problem from a validated spec and rest data; the non-fitted parameters and the
    /// default initial values come from the moment-based estimate
    /// ([`initial_estimate`](super::initial_estimate)).
    pub fn new(spec: &NoiseCalibrationSpec, data: RestData) -> Result<Self> {
        Self::with_base(spec, data, None)
    }

    /// As [`NoiseProblem::new`], with the non-fitted parameters and default initial values taken
    /// from `base` instead of the moment-based estimate (spec `init` and `model.fixed` still apply).
    pub fn with_base(
        spec: &NoiseCalibrationSpec,
        data: RestData,
        base: Option<&NoiseParams>,
    ) -> Result<Self> {
        spec.validate()?;
        let target = RestTarget::estimate(&data, &spec.estimator)?;
        let mut config = NoiseConfig::new(data.fs_hz, data.n_samples());
        config.powerline_hz = spec.model.powerline_hz;
        if let Some([lo, hi]) = spec.model.drift_band_hz {
            config.baseline_drift_low_hz = Some(lo);
            config.baseline_drift_high_hz = hi;
        }
        config.validate()?;
        let opts = PsdModelOptions {
            nperseg: spec.estimator.nperseg,
            leakage_half_width_bins: spec.model.leakage_half_width_bins,
        };
        let model = NoisePsdModel::new(&config, opts)?;
        let moment = match base {
            Some(b) => b.clone(),
            None => initial_estimate_with(&data, spec.model.powerline_hz, Some(&model))?,
        };
        let mut base = moment.to_vec();
        for (k, v) in &spec.model.fixed {
            base[param_index(k)?] = *v;
        }
        let mut specs = Vec::new();
        let mut free = Vec::new();
        for p in &spec.params {
            let i = param_index(&p.name)?;
            let init = p.init.unwrap_or(base[i]).clamp(p.lower, p.upper);
            base[i] = init;
            free.push(i);
            specs.push(ParamSpec {
                name: p.name.clone(),
                lower: p.lower,
                upper: p.upper,
                init,
                transform: p.transform,
            });
        }
        let params = ParamSet::new(specs)?;
        let base_p = NoiseParams::from_slice(&base)?;
        base_p.validate(data.fs_hz)?;
        if base_p.baseline_drift_rms_v > 0.0 || free.contains(&idx::BASELINE_DRIFT_RMS) {
            config.validate_drift_band()?;
        }
        let objective = NoiseObjective::from_model(
            model,
            &target,
            spec.objective.band_hz,
            spec.objective.loss,
            spec.objective.common_mode_weight,
            &base_p,
            free.clone(),
        )?;
        Ok(Self {
            spec: spec.clone(),
            data,
            target,
            moment_estimate: moment,
            config,
            params,
            free,
            objective,
        })
    }

    /// Full [`NoiseParams`] for free values `x`.
    pub fn noise_params(&self, x: &[f64]) -> Result<NoiseParams> {
        NoiseParams::from_slice(&self.objective.full_params(x))
    }

    /// MyoGen's closed-form-style L1 distance (decades) of the analytic model PSD at `x` to this
    /// problem's target over the objective band (a noise-free companion of MyoGen's metric).
    pub fn analytic_l1(&self, x: &[f64]) -> Result<f64> {
        let m = self.objective.model_psd(x)?;
        PsdDistance::new(
            self.spec.objective.band_hz[0],
            self.spec.objective.band_hz[1],
        )?
        .host(&m, &self.target.psd, &self.target.freqs_hz)
    }

    /// Runs one method from the initial point.
    pub fn fit(&mut self, method: &Method) -> Result<FitReport> {
        let params = self.params.clone();
        minimize_within(
            &mut self.objective,
            &params,
            method,
            None,
            self.spec.budget(),
        )
    }
}

/// Per-method numbers beyond [`FitReport`].
#[derive(Clone, Debug, Serialize)]
pub struct MethodScore {
    /// Method name.
    pub method: String,
    /// Objective value (decades, the spec's loss).
    pub objective: f64,
    /// L1 log10 distance of the analytic PSD to the pooled target over the band (decades).
    pub analytic_l1_log10: f64,
    /// MyoGen's metric: mean over seeds (decades).
    pub myogen_l1_log10_mean: f64,
    /// MyoGen's metric: SD over seeds (decades).
    pub myogen_l1_log10_sd: f64,
    /// Loss evaluations.
    pub evaluations: usize,
    /// Wall time (s).
    pub wall_s: f64,
    /// Fitted parameters (full set, flat names).
    pub params: BTreeMap<String, f64>,
}

pub(super) fn named(p: &NoiseParams) -> BTreeMap<String, f64> {
    PARAM_NAMES
        .iter()
        .zip(p.to_vec())
        .map(|(n, v)| (n.to_string(), v))
        .collect()
}

/// One row of the estimator study.
#[derive(Clone, Debug, Serialize)]
pub struct EstimatorStudyRow {
    /// Segment length.
    pub nperseg: usize,
    /// Frequency resolution (Hz).
    pub resolution_hz: f64,
    /// Segments per channel.
    pub segments: usize,
    /// Mean |log10 target − log10 expected| over the band (decades), mean over the synthetic
    /// replicates: the estimator's noise.
    pub target_noise_decades: f64,
    /// Per fitted parameter: RMS over replicates of the relative error after an L-BFGS fit.
    pub param_rel_error: BTreeMap<String, f64>,
    /// Median of `param_rel_error` over the fitted parameters.
    pub median_param_rel_error: f64,
    /// L-BFGS wall time, mean over replicates (s).
    pub fit_wall_s: f64,
}

/// Compares candidate segment lengths on synthetic data drawn from the initial point of the
/// problem (same window length, channel count and common-mode fraction as the recording): the
/// noise of each estimator's target around the analytic expectation, and the parameter error
/// of the gradient fit started at the truth (the spread the estimator's noise induces).
pub fn estimator_study(
    problem: &NoiseProblem,
    study: &EstimatorStudySpec,
) -> Result<Vec<EstimatorStudyRow>> {
    let truth_x = problem.params.init();
    let truth = problem.noise_params(&truth_x)?;
    let n = problem.data.n_samples();
    let nch = problem.data.n_channels();
    let names = problem.params.names();
    let mut rows = Vec::new();
    for &l in &study.nperseg {
        let mut spec = problem.spec.clone();
        spec.estimator.nperseg = l;
        spec.estimator.noverlap = None;
        spec.estimator_study = None;
        let mut noise = Vec::new();
        let mut sq = vec![0.0; names.len()];
        let mut wall = 0.0;
        for r in 0..study.replicates {
            let sig = generate_channels(&problem.config, &truth, nch, study.seed + r as u64)?;
            let data = RestData::new(problem.data.fs_hz, problem.data.channels.clone(), sig)?;
            // start at the truth: the error is what the estimator's noise does to the optimum
            let mut sub = NoiseProblem::with_base(&spec, data, Some(&truth))?;
            sub.params = problem.params.clone();
            let expected = sub.objective.model_psd(&truth_x)?;
            let band = sub.objective.band();
            noise.push(
                band.clone()
                    .map(|k| (sub.target.psd[k].log10() - expected[k].log10()).abs())
                    .sum::<f64>()
                    / band.len() as f64,
            );
            let fit = sub.fit(&Method::Lbfgs {
                iters: 100,
                memory: 10,
            })?;
            wall += fit.wall_s;
            for (i, (a, b)) in fit.x_best.iter().zip(&truth_x).enumerate() {
                sq[i] += ((a - b) / b).powi(2);
            }
        }
        let errs: BTreeMap<String, f64> = names
            .iter()
            .zip(&sq)
            .map(|(n, s)| (n.clone(), (s / study.replicates as f64).sqrt()))
            .collect();
        let cfg = spec.estimator.welch(problem.data.fs_hz);
        rows.push(EstimatorStudyRow {
            nperseg: l,
            resolution_hz: problem.data.fs_hz / l as f64,
            segments: cfg.n_segments(n),
            target_noise_decades: noise.iter().sum::<f64>() / noise.len() as f64,
            median_param_rel_error: median(&errs.values().copied().collect::<Vec<_>>()),
            param_rel_error: errs,
            fit_wall_s: wall / study.replicates as f64,
        });
    }
    Ok(rows)
}
