//! Progress reporting for slow phases (rollouts, calibration methods, report metrics), on
//! stderr through indicatif, so results on stdout stay clean for scripts.
//!
//! Bars are drawn only when stderr is a terminal (indicatif hides them otherwise) and never when
//! [`set_quiet`] was called (`myodiff --quiet`). Library code asks for a bar with [`bar`] or
//! [`spinner`] and updates it; with progress off, the returned bar is hidden and costs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences every progress bar of this process (results are unaffected).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether progress is silenced.
pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn target() -> ProgressDrawTarget {
    if is_quiet() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A bar of `len` steps labelled `label` (position, length, elapsed time, ETA and a message).
pub fn bar(label: &str, len: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    let style = ProgressStyle::with_template(
        "{prefix:>16} [{bar:30}] {pos}/{len} {elapsed_precise} (ETA {eta}) {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(label.to_string());
    pb
}

/// A spinner labelled `label` (elapsed time and a message), ticking on its own.
pub fn spinner(label: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    let style = ProgressStyle::with_template("{prefix:>16} {spinner} {elapsed_precise} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_prefix(label.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// The progress of one optimisation: a bar over the evaluation budget when there is one, else
/// over the wall-time budget (in seconds), else a spinner; the message shows the evaluations,
/// the gradients and the best loss.
pub fn fit_bar(method: &str, max_evals: Option<usize>, time_s: Option<f64>) -> ProgressBar {
    match (max_evals, time_s) {
        (Some(n), _) => bar(method, n as u64),
        (None, Some(t)) => {
            let pb = bar(method, t.ceil().max(1.0) as u64);
            pb.set_message("(bar = wall-time budget, s)");
            pb
        }
        (None, None) => spinner(method),
    }
}
