//! Bad noise-calibration specs and data → typed errors naming the field (never a panic).

use myodiff::Error;
use myodiff::fit::noise::{NoiseCalibrationSpec, NoiseProblem, RestData};
use myodiff::io::recording::Recording;
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

const GOOD: &str = r#"
[data]
fs_hz = 2048.0
window = [0, 1024]
development_block = false
[estimator]
nperseg = 256
[objective]
band_hz = [10.0, 1000.0]
loss = { kind = "huber_log10", delta = 0.05 }
[[params]]
name = "noise_rms_v"
lower = 1e-7
upper = 1e-3
transform = "log"
[[params]]
name = "spectral_slope"
lower = -3.0
upper = 1.0
init = -0.5
[[methods]]
method = "lbfgs"
iters = 5
memory = 5
"#;

fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| 1e-5 * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
        .collect()
}

fn recording(fs: f64, n: usize, ch: usize) -> Recording {
    Recording {
        fs_hz: fs,
        n_samples: n,
        labels: (0..ch).map(|c| format!("ch{c} [uV]")).collect(),
        emg_columns: (0..ch).collect(),
        emg_v: (0..ch)
            .map(|c| noise(n, c as u64).into_iter().map(|v| v as f32).collect())
            .collect(),
        force_pct_mvc: vec![0.0; n],
        discharge_trains: vec![],
        pulse_trains: vec![],
        grid: None,
        time_start_s: None,
    }
}

fn field_of(e: Error) -> String {
    match e {
        Error::InvalidParameter { field, .. } => field,
        Error::Config { field, .. } => field,
        other => panic!("expected a typed field error, got {other:?}"),
    }
}

fn spec_err(text: &str) -> String {
    field_of(NoiseCalibrationSpec::from_toml_str(text).expect_err("must be rejected"))
}

#[test]
fn good_spec_parses_and_runs_on_synthetic_data() {
    let spec = NoiseCalibrationSpec::from_toml_str(GOOD).unwrap();
    let rec = recording(2048.0, 2048, 4);
    let data = RestData::from_recording(&spec, &rec).unwrap();
    let mut p = NoiseProblem::new(&spec, data).unwrap();
    let fit = p.fit(&spec.methods[0]).unwrap();
    assert!(fit.loss_best.is_finite());
}

#[test]
fn the_shipped_spec_is_valid() {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/noise_rest.toml");
    NoiseCalibrationSpec::load(&path).unwrap();
}

#[test]
fn signal_independent_errors_name_the_field() {
    // nperseg > window
    assert_eq!(
        spec_err(&GOOD.replace("nperseg = 256", "nperseg = 4096")),
        "estimator.nperseg"
    );
    // empty / reversed window
    assert_eq!(
        spec_err(&GOOD.replace("window = [0, 1024]", "window = [100, 100]")),
        "data.window"
    );
    // bounds reversed
    assert_eq!(
        spec_err(&GOOD.replace("lower = -3.0\nupper = 1.0", "lower = 1.0\nupper = -3.0")),
        "params.spectral_slope.lower/upper"
    );
    // init outside the bounds
    assert_eq!(
        spec_err(&GOOD.replace("init = -0.5", "init = 2.0")),
        "params.spectral_slope.init"
    );
    // bounds outside what the model allows (negative RMS under a non-log transform)
    assert_eq!(
        spec_err(&GOOD.replace(
            "lower = 1e-7\nupper = 1e-3\ntransform = \"log\"",
            "lower = -1.0\nupper = 1e-3"
        )),
        "params.noise_rms_v bounds"
    );
    // log transform with a non-positive lower bound
    assert_eq!(
        spec_err(&GOOD.replace("lower = 1e-7", "lower = 0.0")),
        "params.noise_rms_v.lower"
    );
    // unknown parameter name
    assert_eq!(
        spec_err(&GOOD.replace("name = \"spectral_slope\"", "name = \"slope\"")),
        "params.name"
    );
    // band beyond Nyquist
    assert_eq!(
        spec_err(&GOOD.replace("band_hz = [10.0, 1000.0]", "band_hz = [10.0, 2000.0]")),
        "objective.band_hz"
    );
    // non-positive Huber delta
    assert_eq!(
        spec_err(&GOOD.replace("delta = 0.05", "delta = 0.0")),
        "objective.loss.delta"
    );
    // no methods
    let no_methods = GOOD.split("[[methods]]").next().unwrap();
    assert!(NoiseCalibrationSpec::from_toml_str(no_methods).is_err());
    // syntax errors and unknown fields are format errors
    for bad in [
        GOOD.replace("nperseg = 256", "nperseg = \"x\""),
        GOOD.replace("nperseg = 256", "nperseg = 256\nbogus = 1"),
        "not toml [".to_string(),
    ] {
        assert!(matches!(
            NoiseCalibrationSpec::from_toml_str(&bad),
            Err(Error::Format { .. })
        ));
    }
}

#[test]
fn data_errors_name_the_field() {
    let spec = NoiseCalibrationSpec::from_toml_str(GOOD).unwrap();
    // wrong sampling rate
    let e = RestData::from_recording(&spec, &recording(1000.0, 2048, 4)).unwrap_err();
    assert_eq!(field_of(e), "data.fs_hz");
    // window outside the recording
    let e = RestData::from_recording(&spec, &recording(2048.0, 512, 4)).unwrap_err();
    assert_eq!(field_of(e), "data.window");
    // development block: window past the block, reserved channel
    let dev = GOOD.replace("development_block = false", "development_block = true");
    let s = NoiseCalibrationSpec::from_toml_str(
        &dev.replace("window = [0, 1024]", "window = [33000, 34000]"),
    )
    .unwrap();
    let rec = recording(2048.0, 40_000, 64);
    assert_eq!(
        field_of(RestData::from_recording(&s, &rec).unwrap_err()),
        "data.window"
    );
    let s = NoiseCalibrationSpec::from_toml_str(&dev.replace(
        "development_block = true",
        "development_block = true\nchannels = [40]",
    ))
    .unwrap();
    assert_eq!(
        field_of(RestData::from_recording(&s, &rec).unwrap_err()),
        "channels"
    );
    // empty channel list
    let e = NoiseCalibrationSpec::from_toml_str(&GOOD.replace(
        "development_block = false",
        "development_block = false\nchannels = []",
    ))
    .unwrap_err();
    assert_eq!(field_of(e), "data.channels");
    // unknown channel
    let s = NoiseCalibrationSpec::from_toml_str(&GOOD.replace(
        "development_block = false",
        "development_block = false\nchannels = [0, 9]",
    ))
    .unwrap();
    assert_eq!(
        field_of(RestData::from_recording(&s, &recording(2048.0, 2048, 4)).unwrap_err()),
        "data.channels"
    );
    // all-NaN channel
    let mut rec = recording(2048.0, 2048, 4);
    rec.emg_v[2] = vec![f32::NAN; 2048];
    assert_eq!(
        field_of(RestData::from_recording(&spec, &rec).unwrap_err()),
        "channel 2"
    );
    // flat (empty of signal) channel
    let mut rec = recording(2048.0, 2048, 4);
    rec.emg_v[1] = vec![0.0; 2048];
    assert_eq!(
        field_of(RestData::from_recording(&spec, &rec).unwrap_err()),
        "channel 1"
    );
    // no channels at all
    assert!(RestData::new(2048.0, vec![], vec![]).is_err());
}
