//! Reading the afferent / Hill fixtures (`tests/fixtures/afferents/*.csv`) shared by the tests
//! that compare with MyoGen 0.12.

/// Directory of the afferent fixtures.
pub const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/afferents/");

/// CSV `name` as (header, rows of f64).
pub fn csv(name: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(format!("{FIX}{name}")).expect("fixture");
    let mut lines = text.lines();
    let head = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
        .collect();
    (head, rows)
}

/// Index of column `name` (panics naming it when absent).
pub fn col(head: &[String], name: &str) -> usize {
    head.iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("column {name}"))
}
