//! The NERLab pool as a lockstep [`Stage`]: stepped on the tape, or as one fused whole-trace
//! scan ([`crate::neuron::nerlab_fused`]).

use burn::tensor::Tensor;

use crate::error::{Error, Result, check};
use crate::kernel::{BufferSpec, Ctx, ReadSpec, Stage, StageDecl, StageIo, Traces, to_vec_f64};
use crate::neuron::nerlab_fused;
use crate::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use crate::neuron::recruitment::RecruitmentThresholds;
use crate::neuron::spike::SpikeMode;

use super::model::{Nerlab, NerlabState, NerlabTensors};
use super::{E_SYN_EXC_MV, SPIKES, SYN_CONDUCTANCE_S, V_INIT_MV, V_SOMA_V};

/// The NERLab motor-neuron pool as a lockstep [`Stage`].
///
/// Reads `syn_conductance_s` `[n]` (siemens, converted to µS) as the synaptic conductance at
/// each unit's dendrite with reversal `e_syn_mv` (+70 mV); writes `spikes` `[n]` and, when
/// enabled, `v_soma_v` `[n]` (volts). An optional constant somatic bias current (nA) plays the
/// role of an IClamp. Every `check_every` steps (and at the last step) the state is checked for
/// non-finite values ([`Error::NonFinite`] naming the variable, step and unit) and the running
/// minimum of the conductance for negative values ([`Error::InvalidParameter`]).
pub struct NerlabPool {
    name: String,
    params: NerlabTensors,
    mode: SpikeMode,
    e_syn_mv: f64,
    v_init_mv: f64,
    record_voltage: bool,
    i_bias_na: Option<Tensor<2>>,
    check_every: usize,
    model: Option<Nerlab>,
    state: Option<NerlabState>,
    g_min: Option<Tensor<2>>,
    fused: FusedSettings,
    /// The stream path's per-tick pool (after `host_init`).
    host: Option<nerlab_fused::NerlabHost>,
}

/// Settings of the fused path of [`NerlabPool`] (see [`crate::neuron::nerlab_fused`]).
#[derive(Clone, Debug)]
struct FusedSettings {
    exact: bool,
    threads: Option<usize>,
    checkpoint_every: usize,
}

impl NerlabPool {
    /// A pool with the given per-unit parameters.
    pub fn new(params: NerlabTensors, mode: SpikeMode) -> Self {
        Self {
            name: "nerlab_pool".into(),
            params,
            mode,
            e_syn_mv: E_SYN_EXC_MV,
            v_init_mv: V_INIT_MV,
            record_voltage: false,
            i_bias_na: None,
            check_every: 1000,
            model: None,
            state: None,
            g_min: None,
            fused: FusedSettings {
                exact: false,
                threads: None,
                checkpoint_every: nerlab_fused::DEFAULT_CHECKPOINT_EVERY,
            },
            host: None,
        }
    }

    /// MyoGen's pool for recruitment thresholds `rt` (parameters linear in `rt`, default ranges and
    /// constants, γ = 0.2), tensors on `ctx`.
    pub fn from_recruitment(
        ctx: &Ctx,
        rt: &RecruitmentThresholds,
        mode: SpikeMode,
    ) -> Result<Self> {
        let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?;
        Ok(Self::new(NerlabTensors::new(ctx, &p)?, mode))
    }

    /// Renames the stage.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Also writes the soma potential `v_soma_v` (volts).
    pub fn with_voltage_output(mut self) -> Self {
        self.record_voltage = true;
        self
    }
    /// Synaptic reversal potential, mV (default +70).
    pub fn with_e_syn_mv(mut self, e_syn_mv: f64) -> Result<Self> {
        self.e_syn_mv = check::finite("e_syn_mv", e_syn_mv)?;
        Ok(self)
    }
    /// Initial potential of soma and dendrite, mV (default −67).
    pub fn with_v_init_mv(mut self, v: f64) -> Result<Self> {
        self.v_init_mv = check::finite("v_init_mv", v)?;
        Ok(self)
    }
    /// Constant current injected into every soma, nA (`[1, n]`, `[batch, n]` or `[1, 1]`).
    pub fn with_bias_current_na(mut self, i: Tensor<2>) -> Self {
        self.i_bias_na = Some(i);
        self
    }
    /// How often (in steps) the state is read back and checked (default 1000; the last step is
    /// always checked).
    pub fn with_check_every(mut self, steps: usize) -> Result<Self> {
        self.check_every = check::count_at_least("check_every", steps, 1)?;
        Ok(self)
    }
    /// Fused path: use the standard-library `exp`/`powf` (bit-identical to the tape on flex)
    /// instead of the vectorised fast arithmetic (default `false`; see
    /// [`crate::neuron::nerlab_fused`]).
    pub fn with_fused_exact(mut self, exact: bool) -> Self {
        self.fused.exact = exact;
        self
    }
    /// Fused path: worker threads (default: all available cores).
    pub fn with_fused_threads(mut self, threads: usize) -> Result<Self> {
        self.fused.threads = Some(check::count_at_least("fused_threads", threads, 1)?);
        Ok(self)
    }
    /// Fused path: steps between the states the adjoint stores (default
    /// [`nerlab_fused::DEFAULT_CHECKPOINT_EVERY`]; memory `8·T/K` states per unit, plus one
    /// segment of `K` steps per thread during the backward pass).
    pub fn with_checkpoint_every(mut self, steps: usize) -> Result<Self> {
        self.fused.checkpoint_every = check::count_at_least("checkpoint_every", steps, 1)?;
        Ok(self)
    }
    /// Number of units.
    pub fn n_units(&self) -> usize {
        self.params.n_units()
    }
    /// The parameters.
    pub fn params(&self) -> &NerlabTensors {
        &self.params
    }
    /// The state after the last step (None before `init` and after a fused run, which keeps no
    /// per-step state).
    pub fn state(&self) -> Option<&NerlabState> {
        self.state.as_ref()
    }

    /// The scan's coefficient tensor `[N_COEF, batch, n]` and settings, shared by the fused scan
    /// and the stream path's host step.
    fn scan_setup(
        &mut self,
        batch: usize,
        dt_s: f64,
    ) -> Result<(Tensor<3>, nerlab_fused::NerlabScanSpec)> {
        let n = self.n_units();
        let model = match self.model.take() {
            Some(m) => m,
            None => Nerlab::new(&self.params, dt_s, self.mode)?,
        };
        let c = &model.coeffs;
        let bias = match &self.i_bias_na {
            Some(i) => i.clone(),
            None => c.c_soma_nf.zeros_like(),
        };
        let rows = [
            &c.c_soma_nf,
            &c.c_dend_nf,
            &c.g_na_us,
            &c.g_nap_us,
            &c.g_kf_us,
            &c.g_ks_us,
            &c.g_l_soma_us,
            &c.rinact_per_ms,
            &c.g_cal_us,
            &c.g_l_dend_us,
            &c.vtraub_cal_mv,
            &c.g_ax_us,
            model.l_factor(),
            &bias,
        ];
        let mut expanded = Vec::with_capacity(rows.len());
        for (k, r) in rows.into_iter().enumerate() {
            let [rb, rn] = r.dims();
            if !((rb == 1 || rb == batch) && (rn == 1 || rn == n)) {
                return Err(Error::shape(
                    format!("nerlab coefficient row {k}"),
                    format!("[1 or {batch}, 1 or {n}]"),
                    format!("[{rb}, {rn}]"),
                ));
            }
            expanded.push(r.clone().expand([batch, n]));
        }
        let coef = Tensor::stack::<3>(expanded, 0);
        let k = &c.constants;
        let mut spec = nerlab_fused::NerlabScanSpec::new(
            model.dt_ms,
            model.mode,
            model.beta,
            [
                k.ena_mv,
                k.ek_mv,
                k.el_soma_mv,
                k.ecal_mv,
                k.el_dend_mv,
                k.vtraub_napp_mv,
            ],
        );
        spec.e_syn_mv = self.e_syn_mv;
        spec.v_init_mv = self.v_init_mv;
        spec.record_voltage = self.record_voltage;
        spec.exact = self.fused.exact;
        spec.check_every = self.check_every;
        spec.checkpoint_every = self.fused.checkpoint_every;
        if let Some(th) = self.fused.threads {
            spec.threads = th;
        }
        self.model = Some(model);
        self.state = None;
        Ok((coef, spec))
    }

    /// The error of a fault the scan (or the host step) found.
    fn fault_error(&self, f: nerlab_fused::ScanFault) -> Error {
        let n = self.n_units();
        match f {
            nerlab_fused::ScanFault::BadConductance { step, unit, value } => Error::invalid(
                format!(
                    "{SYN_CONDUCTANCE_S}[batch {}, unit {}] (step {step})",
                    unit / n,
                    unit % n
                ),
                value,
                "finite and >= 0 siemens",
            ),
            nerlab_fused::ScanFault::NonFinite { var, step, unit } => Error::NonFinite {
                buffer: format!("nerlab.{var}"),
                step,
                batch: unit / n,
                unit: unit % n,
            },
        }
    }

    /// The fused whole-trace run ([`Stage::scan`]): one [`nerlab_fused::nerlab_scan`] op over the
    /// conductance trace `[T, batch, n]` (siemens); returns `spikes` (and `v_soma_v`) traces.
    fn fused_scan(&mut self, inputs: &Traces, batch: usize, dt_s: f64) -> Result<Traces> {
        let n = self.n_units();
        let g = inputs
            .get(SYN_CONDUCTANCE_S)
            .cloned()
            .ok_or_else(|| Error::MissingBuffer {
                stage: self.name.clone(),
                buffer: SYN_CONDUCTANCE_S.into(),
            })?;
        let [t_steps, b, w] = g.dims();
        if b != batch || w != n {
            return Err(Error::shape(
                SYN_CONDUCTANCE_S,
                format!("[{t_steps}, {batch}, {n}]"),
                format!("[{t_steps}, {b}, {w}]"),
            ));
        }
        let (coef, spec) = self.scan_setup(batch, dt_s)?;
        let out = nerlab_fused::nerlab_scan(g, coef, &spec)?;
        if let Some(f) = spec.take_fault() {
            return Err(self.fault_error(f));
        }
        let mut traces = Traces::new();
        if self.record_voltage {
            let spikes = out.clone().slice([0..t_steps, 0..batch, 0..n]);
            let v = out.slice([0..t_steps, 0..batch, n..2 * n]) * 1e-3;
            traces.insert(SPIKES.to_string(), spikes);
            traces.insert(V_SOMA_V.to_string(), v);
        } else {
            traces.insert(SPIKES.to_string(), out);
        }
        Ok(traces)
    }
}

impl Stage for NerlabPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn declare(&self) -> StageDecl {
        let n = self.n_units();
        let mut writes = vec![BufferSpec::new(SPIKES, &[n], "spike/step")];
        if self.record_voltage {
            writes.push(BufferSpec::new(V_SOMA_V, &[n], "V"));
        }
        StageDecl {
            reads: vec![ReadSpec::now(SYN_CONDUCTANCE_S)],
            writes,
        }
    }

    fn init(&mut self, io: &mut StageIo<'_>) -> Result<()> {
        let model = Nerlab::new(&self.params, io.dt_s(), self.mode)?;
        let state = model.initial_state(io.ctx(), io.batch(), self.v_init_mv);
        if self.record_voltage {
            io.write(V_SOMA_V, state.v_soma_mv.clone() * 1e-3)?;
        }
        self.model = Some(model);
        self.state = Some(state);
        self.g_min = None;
        Ok(())
    }

    fn step(&mut self, io: &mut StageIo<'_>, t: usize) -> Result<()> {
        let (model, state) = match (&self.model, &self.state) {
            (Some(m), Some(s)) => (m, s),
            _ => return Err(Error::config(&self.name, "step called before init")),
        };
        let n = self.params.n_units();
        let g_s = io.read(SYN_CONDUCTANCE_S)?;
        let [b, w] = g_s.dims();
        if w != n || b != io.batch() {
            return Err(Error::shape(
                SYN_CONDUCTANCE_S,
                format!("[{}, {n}]", io.batch()),
                format!("[{b}, {w}]"),
            ));
        }
        let g_us = g_s * 1e6;
        self.g_min = Some(match self.g_min.take() {
            None => g_us.clone(),
            Some(m) => m.min_pair(g_us.clone()),
        });
        let i_inj = match &self.i_bias_na {
            Some(i) => i.clone(),
            None => io.ctx().zeros([1, 1]),
        };
        let next = model.step(state, i_inj, g_us, self.e_syn_mv);
        io.write(SPIKES, next.spikes.clone())?;
        if self.record_voltage {
            io.write(V_SOMA_V, next.v_soma_mv.clone() * 1e-3)?;
        }
        if (t + 1).is_multiple_of(self.check_every) || t + 1 == io.n_steps() {
            if let Some(gm) = &self.g_min {
                let v = to_vec_f64(gm.clone());
                if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
                    return Err(Error::invalid(
                        format!(
                            "{SYN_CONDUCTANCE_S}[batch {}, unit {}] (before step {t})",
                            i / n,
                            i % n
                        ),
                        v[i] * 1e-6,
                        "finite and >= 0 siemens",
                    ));
                }
            }
            next.check_finite(t)?;
            self.g_min = None;
        }
        self.state = Some(next);
        Ok(())
    }

    fn scan(
        &mut self,
        inputs: &Traces,
        ctx: &Ctx,
        batch: usize,
        dt_s: f64,
    ) -> Option<Result<Traces>> {
        if !nerlab_fused::fused_supported(&ctx.device) {
            return None;
        }
        Some(self.fused_scan(inputs, batch, dt_s))
    }

    fn host(&mut self) -> Option<&mut dyn crate::kernel::HostStage> {
        Some(self)
    }
}

impl crate::kernel::HostStage for NerlabPool {
    fn host_init(&mut self, cx: &crate::kernel::HostCx, _outs: &mut [Vec<f64>]) -> Result<()> {
        let (coef, spec) = self.scan_setup(cx.batch, cx.dt_s)?;
        let bn = cx.batch * self.n_units();
        self.host = Some(nerlab_fused::NerlabHost::new(
            &to_vec_f64(coef),
            bn,
            spec,
            cx.threads,
        ));
        Ok(())
    }
    /// [`nerlab_fused::NerlabHost::tick`]: the fused scan's block step on every unit (the
    /// conductance checked as the scan checks it); `outs` = spikes (and the soma potential, V).
    fn host_step(
        &mut self,
        cx: &crate::kernel::HostCx,
        ins: &[&[f64]],
        outs: &mut [Vec<f64>],
        t: usize,
    ) -> Result<()> {
        let host = self
            .host
            .as_mut()
            .ok_or_else(|| Error::config(&self.name, "host_step called before host_init"))?;
        let (spikes, rest) = outs.split_first_mut().expect("spikes declared");
        let fault = host.tick(
            ins[0],
            spikes,
            rest.first_mut().map(|v| &mut v[..]),
            t,
            t + 1 == cx.n_steps,
        );
        if let Some(f) = fault {
            return Err(self.fault_error(f));
        }
        if let Some(v) = rest.first_mut() {
            v.iter_mut().for_each(|x| *x *= 1e-3); // mV → V
        }
        if t + 1 == cx.n_steps {
            self.host = None; // the rollout is over: free the state, end the helper thread
        }
        Ok(())
    }
}
