//! The NERLab pool one tick at a time, for the stream path ([`crate::kernel::host`]): the scan's
//! own block step ([`super::forward`]) applied to every block of units at each tick, in f64 with
//! the scan's arithmetic (fast or exact), so a stream rollout equals the fused scan in f64.

use super::adjoint::simd_level;
use super::forward::{Arr, Block, Konst, STATE_NAMES, VS, block_step};
use super::{BLOCK, NerlabScanSpec, ScanFault};
use crate::neuron::spike::SpikeMode;

/// The per-tick NERLab pool: blocks of [`BLOCK`] units with their coefficients and state.
pub struct NerlabHost {
    blocks: Vec<Block<f64>>,
    k: Konst<f64>,
    spec: NerlabScanSpec,
    simd: u8,
}

impl NerlabHost {
    /// The pool at its steady state at `spec.v_init_mv`, from the coefficients `[N_COEF, bn]`
    /// (rows of [`super::row`], `bn` = batch × units) as the scan takes them.
    pub fn new(coef: &[f64], bn: usize, spec: NerlabScanSpec) -> Self {
        let k = Konst::new(&spec);
        let blocks = (0..bn)
            .step_by(BLOCK)
            .map(|j0| {
                let mut b = Block::from_coef(coef, bn, j0);
                if spec.exact {
                    b.init_at::<false>(spec.v_init_mv, &k);
                } else {
                    b.init_at::<true>(spec.v_init_mv, &k);
                }
                b
            })
            .collect();
        Self {
            blocks,
            k,
            simd: if spec.exact { 0 } else { simd_level() },
            spec,
        }
    }

    /// Tick `t`: the conductance `g` `[bn]` (the scan's input unit) in; the spikes (and, with
    /// `v_mv`, the soma potential in mV) out. The first invalid conductance, or (every
    /// `spec.check_every` ticks and at `last`) the first non-finite state, is returned.
    pub fn tick(
        &mut self,
        g: &[f64],
        spikes: &mut [f64],
        mut v_mv: Option<&mut [f64]>,
        t: usize,
        last: bool,
    ) -> Option<ScanFault> {
        if let Some(j) = g.iter().position(|&x| !(x >= 0.0 && x.is_finite())) {
            return Some(ScanFault::BadConductance {
                step: t,
                unit: j,
                value: g[j],
            });
        }
        let rate = self.spec.mode == SpikeMode::Rate;
        let check = (t + 1).is_multiple_of(self.spec.check_every.max(1)) || last;
        let mut gb: Arr<f64> = [0.0; BLOCK];
        let mut spk: Arr<f64> = [0.0; BLOCK];
        for b in &mut self.blocks {
            let (j0, len) = (b.j0, b.len);
            gb[..len].copy_from_slice(&g[j0..j0 + len]);
            gb[len..].fill(0.0);
            step_dispatch(self.simd, self.spec.exact, rate, b, &gb, &self.k, &mut spk);
            spikes[j0..j0 + len].copy_from_slice(&spk[..len]);
            if let Some(v) = v_mv.as_deref_mut() {
                v[j0..j0 + len].copy_from_slice(&b.state[VS][..len]);
            }
            if check && let Some((var, unit)) = b.non_finite() {
                return Some(ScanFault::NonFinite {
                    var: STATE_NAMES[var],
                    step: t,
                    unit,
                });
            }
        }
        None
    }
}

/// One block step with the arithmetic flavour and SIMD level chosen at construction (the result
/// does not depend on the SIMD level: no fused multiply-adds).
#[inline]
fn step_dispatch(
    simd: u8,
    exact: bool,
    rate: bool,
    b: &mut Block<f64>,
    g: &Arr<f64>,
    k: &Konst<f64>,
    spk: &mut Arr<f64>,
) {
    match (exact, rate) {
        (true, false) => block_step::<f64, false, false>(&mut b.state, &b.coef, g, k, spk),
        (true, true) => block_step::<f64, false, true>(&mut b.state, &b.coef, g, k, spk),
        (false, false) => fast_step::<false>(simd, b, g, k, spk),
        (false, true) => fast_step::<true>(simd, b, g, k, spk),
    }
}

#[inline]
fn fast_step<const RATE: bool>(
    simd: u8,
    b: &mut Block<f64>,
    g: &Arr<f64>,
    k: &Konst<f64>,
    spk: &mut Arr<f64>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd == 2 {
            // SAFETY: simd_level() found AVX-512 F/DQ/VL.
            return unsafe { fast_step_avx512::<RATE>(b, g, k, spk) };
        }
        if simd == 1 {
            // SAFETY: simd_level() found AVX2 and FMA.
            return unsafe { fast_step_avx2::<RATE>(b, g, k, spk) };
        }
    }
    let _ = simd;
    block_step::<f64, true, RATE>(&mut b.state, &b.coef, g, k, spk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn fast_step_avx512<const RATE: bool>(
    b: &mut Block<f64>,
    g: &Arr<f64>,
    k: &Konst<f64>,
    spk: &mut Arr<f64>,
) {
    block_step::<f64, true, RATE>(&mut b.state, &b.coef, g, k, spk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fast_step_avx2<const RATE: bool>(
    b: &mut Block<f64>,
    g: &Arr<f64>,
    k: &Konst<f64>,
    spk: &mut Arr<f64>,
) {
    block_step::<f64, true, RATE>(&mut b.state, &b.coef, g, k, spk)
}
