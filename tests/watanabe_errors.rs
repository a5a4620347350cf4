//! Bad Watanabe specs → typed errors naming the field (never a panic).

use myodiff::Error;
use myodiff::fit::watanabe::{WatanabeSpec, run_watanabe_spec};

const METHODS: &str = "[[methods]]\nmethod = \"brent\"\nbudget = 3\n";

fn field_of(e: &Error) -> String {
    match e {
        Error::InvalidParameter { field, .. } | Error::Config { field, .. } => field.clone(),
        Error::Format { what, .. } => what.clone(),
        other => format!("{other:?}"),
    }
}

fn parse_err(toml: &str) -> Error {
    WatanabeSpec::from_toml_str(&format!("{toml}\n{METHODS}")).expect_err("must be rejected")
}

#[test]
fn zero_target_force_is_rejected() {
    let e = parse_err("[reference]\nforce_n = 0.0");
    assert_eq!(field_of(&e), "reference.force_n", "{e}");
}

#[test]
fn bad_bounds_are_rejected() {
    let e = parse_err("[dc]\nlower = 50.0\nupper = 10.0\ninit = 20.0");
    assert!(field_of(&e).starts_with("dc_hz."), "{e}");
    let e = parse_err("[dc]\nlower = 1.0\nupper = 100.0\ninit = 150.0");
    assert_eq!(field_of(&e), "dc_hz.init", "{e}");
}

#[test]
fn wrong_kind_unknown_keys_and_bad_methods_are_rejected() {
    let e = parse_err("kind = \"noise\"");
    assert_eq!(field_of(&e), "kind", "{e}");
    let e = parse_err("colour = 3");
    assert!(matches!(e, Error::Format { .. }), "{e}");
    let e = WatanabeSpec::from_toml_str(
        "[[methods]]\nmethod = \"secant\"\nbudget = 10\nh_hz = 0.0\ntol = 0.01\n",
    )
    .unwrap_err();
    assert_eq!(field_of(&e), "methods.secant.h_hz", "{e}");
    let e = WatanabeSpec::from_toml_str("name = \"x\"").unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "missing methods: {e}");
    let e = parse_err("[network]\nduration_s = -1.0");
    assert_eq!(field_of(&e), "duration_s", "{e}");
}

#[test]
fn pool_too_small_to_produce_force_is_rejected() {
    // 2 motor neurons, 1 input at a tiny weight: no spike, zero reference force.
    let spec = WatanabeSpec::from_toml_str(&format!(
        "weight_s = 1e-12\n[network]\nn_mn = 2\nn_dd = 1\nduration_s = 0.2\n{METHODS}"
    ))
    .unwrap();
    let out = std::env::temp_dir().join(format!("myodiff_watanabe_err_{}", std::process::id()));
    let e = run_watanabe_spec(&spec, &out).expect_err("no force");
    assert_eq!(field_of(&e), "network.n_mn", "{e}");
    assert!(!out.join("summary.json").exists());
}
