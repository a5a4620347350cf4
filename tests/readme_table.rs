//! The README's side-by-side table with MyoGen stays true: every number in a row that cites a
//! BENCHMARKS.md section ("BENCHMARKS §N") must appear in that section of BENCHMARKS.md.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Numbers in `s` (`12`, `1.38`, `6.9e-4`), as written.
fn numbers(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let starts = c[i].is_ascii_digit() && (i == 0 || !c[i - 1].is_ascii_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < c.len() && c[j].is_ascii_digit() {
            j += 1;
        }
        if j + 1 < c.len() && c[j] == '.' && c[j + 1].is_ascii_digit() {
            j += 1;
            while j < c.len() && c[j].is_ascii_digit() {
                j += 1;
            }
        }
        if j + 1 < c.len() && c[j] == 'e' && (c[j + 1] == '-' || c[j + 1].is_ascii_digit()) {
            let mut k = j + 1 + usize::from(c[j + 1] == '-');
            let d0 = k;
            while k < c.len() && c[k].is_ascii_digit() {
                k += 1;
            }
            if k > d0 {
                j = k;
            }
        }
        out.push(c[i..j].iter().collect());
        i = j;
    }
    out
}

/// The text of section `n` of BENCHMARKS.md (from `## n.` to the next `## `).
fn section(bench: &str, n: &str) -> String {
    let head = format!("## {n}.");
    let start = bench
        .find(&head)
        .unwrap_or_else(|| panic!("BENCHMARKS.md has no section {head}"));
    let rest = &bench[start + head.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_string()
}

#[test]
fn readme_speed_rows_match_benchmarks() {
    let readme = read("README.md");
    let bench = read("BENCHMARKS.md");
    let table = readme
        .split("<!-- myogen-table -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /myogen-table -->").next())
        .expect("README.md has the MyoGen table between its markers");
    let mut checked = 0;
    for row in table.lines().filter(|l| l.contains("BENCHMARKS §")) {
        let at = row.find("BENCHMARKS §").unwrap();
        let n: String = row[at + "BENCHMARKS §".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let sec = section(&bench, &n);
        let cited = row.replace(&format!("BENCHMARKS §{n}"), "");
        for num in numbers(&cited) {
            assert!(
                sec.contains(&num),
                "README row `{row}` quotes {num}, which BENCHMARKS.md §{n} does not contain"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} numbers checked: {table}");
}

#[test]
fn number_scanner_reads_decimals_and_exponents() {
    assert_eq!(
        numbers("9.46 s, error 6.9e-4 (x2, 25 trials), 1e5"),
        ["9.46", "6.9e-4", "25", "1e5"]
    );
}
