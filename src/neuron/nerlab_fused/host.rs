//! The NERLab pool one tick at a time, for the stream path ([`crate::kernel::host`]): the scan's
//! own block step ([`super::forward`]) applied to every block of units at each tick, in f64 with
//! the scan's arithmetic (fast or exact), so a stream rollout equals the fused scan in f64.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::adjoint::simd_level;
use super::forward::{Arr, Block, Konst, STATE_NAMES, VS, block_step};
use super::{BLOCK, NerlabScanSpec, ScanFault};
use crate::neuron::spike::SpikeMode;

/// The per-tick NERLab pool: blocks of [`BLOCK`] units with their coefficients and state. With
/// three or more threads, the second half of the blocks runs on a helper thread within each tick
/// (every block's arithmetic is unchanged, so the result does not depend on the split). The
/// handoff spins each tick, so it needs a core of its own beside the stream pipeline's two:
/// on a busy or 2-core machine it would slow the rollout down (measured: 12 s instead of 1.3 s
/// for a Watanabe-size rollout while the machine ran other work), hence three.
pub struct NerlabHost {
    own: Blocks,
    helper: Option<Helper>,
    check_every: usize,
}

/// The thread count from which a helper thread splits the blocks (see [`NerlabHost`]).
pub const HELPER_MIN_THREADS: usize = 3;

/// A run of consecutive blocks and the settings of their step.
struct Blocks {
    blocks: Vec<Block<f64>>,
    k: Konst<f64>,
    exact: bool,
    rate: bool,
    simd: u8,
}

impl Blocks {
    /// Steps every block; `g`, `spikes`, `v_mv` start at flat unit `base`. Returns the first
    /// non-finite state when `check`.
    fn tick(
        &mut self,
        g: &[f64],
        spikes: &mut [f64],
        mut v_mv: Option<&mut [f64]>,
        base: usize,
        t: usize,
        check: bool,
    ) -> Option<ScanFault> {
        let mut gb: Arr<f64> = [0.0; BLOCK];
        let mut spk: Arr<f64> = [0.0; BLOCK];
        for b in &mut self.blocks {
            let (j0, len) = (b.j0 - base, b.len);
            gb[..len].copy_from_slice(&g[j0..j0 + len]);
            gb[len..].fill(0.0);
            step_dispatch(self.simd, self.exact, self.rate, b, &gb, &self.k, &mut spk);
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

/// What the calling thread and the helper exchange each tick (the helper's units only).
#[derive(Default)]
struct Exchange {
    g: Vec<f64>,
    spikes: Vec<f64>,
    v: Vec<f64>,
    t: usize,
    check: bool,
    want_v: bool,
    fault: Option<ScanFault>,
}

/// The helper thread's handshake: `requested` / `done` count ticks.
#[derive(Default)]
struct Shared {
    ex: Mutex<Exchange>,
    requested: AtomicUsize,
    done: AtomicUsize,
    stop: AtomicBool,
}

/// A helper thread stepping the blocks of units `u0..` each tick.
struct Helper {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    u0: usize,
    seq: usize,
}

/// Spins briefly, then yields, until `ready()`; with `park`, parks after a while of yielding
/// (the helper between rollouts: no CPU while idle; the caller unparks it each tick).
fn wait_until(ready: impl Fn() -> bool, park: bool) {
    let mut spins = 0u32;
    while !ready() {
        if spins < 2_000 {
            std::hint::spin_loop();
        } else if !park || spins < 12_000 {
            std::thread::yield_now();
        } else {
            std::thread::park();
        }
        spins = spins.saturating_add(1);
    }
}

impl Helper {
    fn spawn(mut blocks: Blocks, u0: usize, bn: usize) -> Self {
        let shared = Arc::new(Shared::default());
        {
            let mut ex = shared.ex.lock().expect("fresh lock");
            ex.g = vec![0.0; bn - u0];
            ex.spikes = vec![0.0; bn - u0];
            ex.v = vec![0.0; bn - u0];
        }
        let sh = Arc::clone(&shared);
        let handle = std::thread::spawn(move || {
            let mut seen = 0;
            loop {
                wait_until(
                    || {
                        sh.stop.load(Ordering::Acquire)
                            || sh.requested.load(Ordering::Acquire) > seen
                    },
                    true,
                );
                if sh.stop.load(Ordering::Acquire) {
                    break;
                }
                seen = sh.requested.load(Ordering::Acquire);
                let Ok(mut guard) = sh.ex.lock() else {
                    break;
                };
                let ex = &mut *guard;
                let v = if ex.want_v { Some(&mut ex.v[..]) } else { None };
                ex.fault = blocks.tick(&ex.g, &mut ex.spikes, v, u0, ex.t, ex.check);
                drop(guard);
                sh.done.store(seen, Ordering::Release);
            }
        });
        Self {
            shared,
            handle: Some(handle),
            u0,
            seq: 0,
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl NerlabHost {
    /// The pool at its steady state at `spec.v_init_mv`, from the coefficients `[N_COEF, bn]`
    /// (rows of [`super::row`], `bn` = batch × units) as the scan takes them; `threads` ≥
    /// [`HELPER_MIN_THREADS`] splits the blocks in two halves, the second on a helper thread.
    pub fn new(coef: &[f64], bn: usize, spec: NerlabScanSpec, threads: usize) -> Self {
        let k = Konst::new(&spec);
        let mut blocks: Vec<Block<f64>> = (0..bn)
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
        let settings = |blocks| Blocks {
            blocks,
            k,
            exact: spec.exact,
            rate: spec.mode == SpikeMode::Rate,
            simd: if spec.exact { 0 } else { simd_level() },
        };
        let helper = (threads >= HELPER_MIN_THREADS && blocks.len() >= 2).then(|| {
            let second = blocks.split_off(blocks.len() / 2);
            let u0 = second[0].j0;
            Helper::spawn(settings(second), u0, bn)
        });
        Self {
            own: settings(blocks),
            helper,
            check_every: spec.check_every.max(1),
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
        let check = (t + 1).is_multiple_of(self.check_every) || last;
        let u0 = self.helper.as_ref().map_or(g.len(), |h| h.u0);
        if let Some(h) = &mut self.helper {
            let mut ex = h.shared.ex.lock().expect("helper alive");
            ex.g.copy_from_slice(&g[u0..]);
            ex.t = t;
            ex.check = check;
            ex.want_v = v_mv.is_some();
            drop(ex);
            h.seq += 1;
            h.shared.requested.store(h.seq, Ordering::Release);
            if let Some(th) = &h.handle {
                th.thread().unpark();
            }
        }
        let fault = self.own.tick(
            &g[..u0],
            &mut spikes[..u0],
            v_mv.as_deref_mut().map(|v| &mut v[..u0]),
            0,
            t,
            check,
        );
        if let Some(h) = &mut self.helper {
            let (shared, seq) = (&h.shared, h.seq);
            wait_until(|| shared.done.load(Ordering::Acquire) >= seq, false);
            let mut ex = shared.ex.lock().expect("helper alive");
            spikes[u0..].copy_from_slice(&ex.spikes);
            if let Some(v) = v_mv {
                v[u0..].copy_from_slice(&ex.v);
            }
            // the lower units' fault first, as one thread would find it
            let helper_fault = ex.fault.take();
            return fault.or(helper_fault);
        }
        fault
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
