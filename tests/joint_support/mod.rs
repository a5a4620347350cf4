//! The tiny joint problems of the tests share one truth, one set of bounds and (mostly) one start
//! point; these macros expand to those TOML tables as string literals, for `concat!`.

/// `[truth]`, `[lower]` and `[upper]` of the tiny joint problems (dc, amplitude, σ in Hz; weight
/// in µS).
macro_rules! joint_truth_and_bounds {
    () => {
        "[truth]
dc_hz = 45.0
amp_hz = 20.0
weight_us = 0.05
noise_sd_hz = 3.0
[lower]
dc_hz = 10.0
amp_hz = 0.0
weight_us = 0.01
noise_sd_hz = 0.0
[upper]
dc_hz = 100.0
amp_hz = 40.0
weight_us = 0.2
noise_sd_hz = 10.0
"
    };
}

/// The usual `[start]` of the tiny joint problems (not every test crate uses it).
#[allow(unused_macros)]
macro_rules! joint_start {
    () => {
        "[start]
dc_hz = 65.0
amp_hz = 8.0
weight_us = 0.05
noise_sd_hz = 3.0
"
    };
}
