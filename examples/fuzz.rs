//! A mutation fuzzer that runs on stable Rust (no libFuzzer / cargo-fuzz, which need nightly) for
//! the MAT v5 reader, the recording layout and every TOML spec. It is NOT coverage-guided: an
//! input joins the working corpus when it produces an outcome class (Ok shape, or error variant
//! and field) not seen before. See RELIABILITY.md for the runs and what they found.
//!
//! ```text
//! cargo run --release --example fuzz -- <target|all> [--iters N] [--seed S] [--corpus DIR]
//!     [--crashes DIR] [--max-save K] [--no-save] [--list]
//! cargo run --release --example fuzz -- <target> --run FILE...   # replay inputs
//! ```
//!
//! Targets: mat, recording, noise_spec, watanabe_spec, recording_spec, joint_spec,
//! experiment_spec, calibrate_spec. Every input runs under `catch_unwind`; a panic, an
//! allocation over 256 MiB, an execution over 2 s, or an error that is not a typed error naming
//! its field is saved to `fuzz/crashes/<target>/` (and the run exits non-zero). The smallest input
//! of up to `--max-save` outcome classes is written to `fuzz/corpus/<target>/` (the regression
//! test `tests/fuzz_corpus.rs` replays both folders).

#[path = "../fuzz/targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use targets::Target;

// ------------------------------------------------------------------------------------------------
// Allocation guard: the largest single allocation of the current execution.

struct Guard;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
const ALLOC_LIMIT: usize = 256 << 20;
/// The input being executed and where to save it, for the oversized-allocation path (which
/// cannot unwind: the allocation fails and the process aborts after the input is saved).
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
static CRASH_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

fn oversized(size: usize) -> bool {
    LARGEST.fetch_max(size, Ordering::Relaxed);
    if size <= ALLOC_LIMIT {
        return false;
    }
    let (p, n) = (
        CURRENT.load(Ordering::Relaxed),
        CURRENT_LEN.load(Ordering::Relaxed),
    );
    if !p.is_null() {
        // SAFETY: CURRENT points at the live input buffer of the running execution.
        let input = unsafe { std::slice::from_raw_parts(p, n) }.to_vec();
        if let Ok(g) = CRASH_DIR.lock()
            && let Some(dir) = g.as_ref()
        {
            std::fs::create_dir_all(dir).ok();
            let path = dir.join(format!("alloc-{:016x}", fnv64(&input)));
            std::fs::write(&path, &input).ok();
            eprintln!(
                "FAILURE (alloc): a single allocation of {size} bytes; input saved to {}",
                path.display()
            );
        }
    }
    true
}

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if oversized(l.size()) {
            return std::ptr::null_mut(); // fails the allocation instead of paging in gigabytes
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if oversized(l.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if oversized(new) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Guard = Guard;

// ------------------------------------------------------------------------------------------------
// Panic capture: message and location of the last panic, without printing it.

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut g) = LAST_PANIC.lock() {
            *g = Some(format!("{loc}: {msg}"));
        }
    }));
}

// ------------------------------------------------------------------------------------------------
// Mutations

const INTERESTING_U32: [u32; 16] = [
    0,
    1,
    2,
    4,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0xffff_fff8,
    0x0001_0000,
    0x4000_0000,
];

const TOML_VALUES: &[&str] = &[
    "nan",
    "+nan",
    "-nan",
    "inf",
    "+inf",
    "-inf",
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "2",
    "3",
    "8",
    "1e-300",
    "5e-324",
    "1e300",
    "1.7976931348623157e308",
    "1e308",
    "-1e308",
    "-1e300",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "65535",
    "1000000000",
    "0.5",
    "-0.5",
    "1e-9",
    "2048.0",
    "true",
    "false",
    "\"\"",
    "\"x\"",
    "\"nan\"",
    "[]",
    "[0]",
    "[1, 2]",
    "[2, 1]",
    "[0, 0]",
    "[nan]",
    "[inf, 1]",
    "[1, 2, 3, 4]",
    "[-1, 5]",
    "[0.0, 1e300]",
    "[\"a\"]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "'lit'",
    "0x10",
    "1_000",
];

struct Dict {
    keys: Vec<String>,
    tables: Vec<String>,
    strings: Vec<String>,
}

impl Dict {
    fn from_seeds(seeds: &[Vec<u8>]) -> Self {
        let (mut keys, mut tables, mut strings) = (HashSet::new(), HashSet::new(), HashSet::new());
        for s in seeds {
            let text = String::from_utf8_lossy(s);
            for line in text.lines() {
                let l = line.trim();
                if l.starts_with('[') {
                    tables.insert(l.split('#').next().unwrap_or(l).trim().to_string());
                } else if let Some((k, v)) = l.split_once('=') {
                    keys.insert(k.trim().to_string());
                    let v = v.split('#').next().unwrap_or(v).trim();
                    if v.starts_with('"') {
                        strings.insert(v.to_string());
                    }
                }
            }
        }
        // Field names of the crate's structs (`pub name: T`): keys the seeds leave at their
        // defaults (a grammar dictionary, e.g. `emg.muap.x_half_width_m`).
        let mut stack = vec![crate_root().join("src")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && let Ok(src) = std::fs::read_to_string(&p)
                {
                    for l in src.lines() {
                        if let Some(rest) = l.trim_start().strip_prefix("pub ")
                            && let Some((name, _)) = rest.split_once(": ")
                            && !name.is_empty()
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        {
                            keys.insert(name.to_string());
                        }
                    }
                }
            }
        }
        let sorted = |s: HashSet<String>| {
            let mut v: Vec<String> = s.into_iter().filter(|x| !x.is_empty()).collect();
            v.sort();
            v
        };
        Dict {
            keys: sorted(keys),
            tables: sorted(tables),
            strings: sorted(strings),
        }
    }
}

fn pick<'a, T>(rng: &mut StdRng, v: &'a [T]) -> Option<&'a T> {
    (!v.is_empty()).then(|| &v[rng.random_range(0..v.len())])
}

fn mutate_bytes(rng: &mut StdRng, d: &mut Vec<u8>, other: &[u8]) {
    let n = d.len();
    if n == 0 {
        d.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>()));
        return;
    }
    match rng.random_range(0..10) {
        0 => {
            let p = rng.random_range(0..n);
            d[p] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let p = rng.random_range(0..n);
            d[p] = rng.random();
        }
        2 => {
            let p = rng.random_range(0..=n);
            let k = rng.random_range(1..=8);
            let ins: Vec<u8> = (0..k).map(|_| rng.random()).collect();
            d.splice(p..p, ins);
        }
        3 => {
            let p = rng.random_range(0..n);
            let k = rng.random_range(1..=(n - p).min(64));
            d.drain(p..p + k);
        }
        4 => {
            // duplicate a chunk elsewhere
            let p = rng.random_range(0..n);
            let k = rng.random_range(1..=(n - p).min(256));
            let chunk = d[p..p + k].to_vec();
            let q = rng.random_range(0..=n);
            d.splice(q..q, chunk);
        }
        5 if !other.is_empty() => {
            // splice: our prefix + their suffix
            let p = rng.random_range(0..=n);
            let q = rng.random_range(0..other.len());
            d.truncate(p);
            d.extend_from_slice(&other[q..]);
        }
        6 | 7 => {
            // an integer boundary value at a (often 4-aligned) offset, either byte order
            let mut p = rng.random_range(0..n);
            if rng.random_bool(0.7) {
                p -= p % 4;
            }
            let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
            let v = if rng.random_bool(0.2) {
                v.wrapping_neg()
            } else {
                v
            };
            let width = [1usize, 2, 4, 4, 8][rng.random_range(0..5)];
            let be = rng.random_bool(0.3);
            let bytes: Vec<u8> = match width {
                1 => vec![v as u8],
                2 => {
                    if be {
                        (v as u16).to_be_bytes().to_vec()
                    } else {
                        (v as u16).to_le_bytes().to_vec()
                    }
                }
                4 => {
                    if be {
                        v.to_be_bytes().to_vec()
                    } else {
                        v.to_le_bytes().to_vec()
                    }
                }
                _ => (v as u64 | ((v as u64) << 32)).to_le_bytes().to_vec(),
            };
            for (i, b) in bytes.into_iter().enumerate() {
                if p + i < n {
                    d[p + i] = b;
                }
            }
        }
        8 => {
            let p = rng.random_range(0..n);
            d.truncate(p);
        }
        _ => {
            // overwrite with a copy of another region (tags, lengths move around)
            let p = rng.random_range(0..n);
            let q = rng.random_range(0..n);
            let k = rng.random_range(1..=(n - p.max(q)).clamp(1, 16));
            let chunk = d[p..(p + k).min(n)].to_vec();
            for (i, b) in chunk.into_iter().enumerate() {
                if q + i < n {
                    d[q + i] = b;
                }
            }
        }
    }
}

/// Top-level element boundaries of a MAT v5 file (after the 128-byte header): (start, end, type).
fn mat_elements(d: &[u8]) -> (bool, Vec<(usize, usize, u32)>) {
    let be = d.get(126..128) == Some(b"MI");
    let rd = |p: usize| -> Option<u32> {
        let b: [u8; 4] = d.get(p..p + 4)?.try_into().ok()?;
        Some(if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let mut out = Vec::new();
    let mut p = 128;
    while let (Some(t), Some(n)) = (rd(p), rd(p + 4)) {
        let end = p + 8 + n as usize;
        if end > d.len() {
            break;
        }
        let next = if t == 15 { end } else { end.div_ceil(8) * 8 };
        out.push((p, next.min(d.len()), t));
        p = next;
    }
    (be, out)
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).ok();
    e.finish().unwrap_or_default()
}

/// MAT-aware mutations: mutate the inflated content of a compressed variable and re-compress it
/// (random bytes in a zlib stream mostly just fail its checksum), or store it uncompressed.
fn mutate_mat(rng: &mut StdRng, d: &mut Vec<u8>, other: &[u8]) -> bool {
    let (be, els) = mat_elements(d);
    let compressed: Vec<_> = els.iter().filter(|e| e.2 == 15).copied().collect();
    let Some(&(s, e, _)) = pick(rng, &compressed) else {
        return false;
    };
    let mut inflated = Vec::new();
    if flate2::read::ZlibDecoder::new(&d[s + 8..e])
        .take(1 << 20)
        .read_to_end(&mut inflated)
        .is_err()
    {
        return false;
    }
    let replacement = if rng.random_bool(0.15) {
        inflated // stored uncompressed: later byte mutations reach it directly
    } else {
        for _ in 0..rng.random_range(1..=3) {
            mutate_bytes(rng, &mut inflated, other);
        }
        let z = zlib(&inflated);
        let mut v = Vec::with_capacity(z.len() + 8);
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        v.extend(w(15));
        v.extend(w(z.len() as u32));
        v.extend(z);
        v
    };
    d.splice(s..e, replacement);
    true
}

fn mutate_text(rng: &mut StdRng, d: &mut Vec<u8>, other: &[u8], dict: &Dict) {
    let text = String::from_utf8_lossy(d).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    let li = rng.random_range(0..n);
    let value = |rng: &mut StdRng| -> String {
        if rng.random_bool(0.25)
            && let Some(s) = pick(rng, &dict.strings)
        {
            return s.clone();
        }
        TOML_VALUES[rng.random_range(0..TOML_VALUES.len())].to_string()
    };
    let kv_lines: Vec<usize> = (0..n)
        .filter(|&i| {
            let l = lines[i].trim_start();
            !l.starts_with('#') && !l.starts_with('[') && l.contains('=')
        })
        .collect();
    match rng.random_range(0..12) {
        0..=2 => {
            // replace the value of a key
            if let Some(&i) = pick(rng, &kv_lines)
                && let Some((k, _)) = lines[i].split_once('=')
            {
                lines[i] = format!("{k}= {}", value(rng));
            }
        }
        3 => {
            // replace one number inside a value (arrays, inline tables)
            if let Some(&i) = pick(rng, &kv_lines) {
                let l = lines[i].clone();
                let eq = l.find('=').unwrap_or(0);
                let nums: Vec<(usize, usize)> = {
                    let b = l.as_bytes();
                    let mut v = Vec::new();
                    let mut j = eq;
                    while j < b.len() {
                        if b[j].is_ascii_digit() {
                            let st = j;
                            while j < b.len()
                                && (b[j].is_ascii_alphanumeric() || b"._+-".contains(&b[j]))
                            {
                                j += 1;
                            }
                            v.push((st, j));
                        } else {
                            j += 1;
                        }
                    }
                    v
                };
                if let Some(&(a, b)) = pick(rng, &nums) {
                    let num = TOML_VALUES[rng.random_range(0..30)];
                    lines[i] = format!("{}{num}{}", &l[..a], &l[b..]);
                }
            }
        }
        4 => {
            lines.remove(li);
        }
        5 => {
            let l = lines[li].clone();
            let to = rng.random_range(0..=n);
            lines.insert(to, l);
        }
        6 | 7 => {
            // a known key (maybe in the wrong table) with a random value
            if let Some(k) = pick(rng, &dict.keys) {
                let v = value(rng);
                lines.insert(rng.random_range(0..=n), format!("{k} = {v}"));
            }
        }
        8 => {
            let l = if rng.random_bool(0.5) {
                "fuzz_unknown_key = 1".to_string()
            } else {
                "[fuzz_unknown_table]".to_string()
            };
            lines.insert(rng.random_range(0..=n), l);
        }
        9 => {
            if let Some(t) = pick(rng, &dict.tables) {
                lines.insert(rng.random_range(0..=n), t.clone());
            }
        }
        10 if !other.is_empty() => {
            // splice a run of lines from another input
            let o = String::from_utf8_lossy(other);
            let ol: Vec<&str> = o.lines().collect();
            if !ol.is_empty() {
                let a = rng.random_range(0..ol.len());
                let b = rng.random_range(a..ol.len().min(a + 8)) + 1;
                let at = rng.random_range(0..=n);
                for (k, l) in ol[a..b].iter().enumerate() {
                    lines.insert(at + k, l.to_string());
                }
            }
        }
        _ => {
            let mut b = lines.join("\n").into_bytes();
            mutate_bytes(rng, &mut b, other);
            *d = b;
            return;
        }
    }
    *d = lines.join("\n").into_bytes();
    d.push(b'\n');
}

// ------------------------------------------------------------------------------------------------
// Seeds

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::read(e.path()).ok().map(|b| (name, b))
        })
        .collect();
    v.sort();
    v
}

/// Name of the seed made of the real recording's small variables (see `fuzz`).
const REAL_SEED: &str = "real-small-vars";

fn seeds(t: Target) -> Vec<(String, Vec<u8>)> {
    let root = crate_root();
    let mut out = Vec::new();
    if t.is_binary() {
        out.extend(targets::generated_mat_seeds(t));
        let real = myodiff::io::default_data_path();
        if let Ok(b) = std::fs::read(&real)
            && let Some(small) = targets::small_variables_of(&b)
        {
            out.push((REAL_SEED.into(), small));
        }
        return out;
    }
    let dirs: &[&str] = match t {
        Target::Experiment => &["experiments"],
        _ => &["calibration"],
    };
    for d in dirs {
        for (name, b) in read_dir_files(&root.join(d)) {
            if !name.ends_with(".toml") {
                continue;
            }
            if let Some(kind) = t.calibration_kind() {
                let text = String::from_utf8_lossy(&b);
                let want = format!("kind = \"{kind}\"");
                if !text.lines().any(|l| l.trim() == want) {
                    continue;
                }
            }
            out.push((format!("{d}/{name}"), b));
        }
    }
    out
}

// ------------------------------------------------------------------------------------------------

fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Args {
    targets: Vec<Target>,
    iters: u64,
    seed: u64,
    corpus: Option<PathBuf>,
    crashes: Option<PathBuf>,
    max_save: usize,
    save: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let mut args = Args {
        targets: Vec::new(),
        iters: 100_000,
        seed: 1,
        corpus: None,
        crashes: None,
        max_save: 24,
        save: true,
    };
    while let Some(x) = a.next() {
        let mut val = |name: &str| a.next().ok_or(format!("{name} needs a value"));
        match x.as_str() {
            "--iters" => {
                args.iters = val("--iters")?
                    .parse()
                    .map_err(|e| format!("--iters: {e}"))?
            }
            "--seed" => args.seed = val("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--corpus" => args.corpus = Some(val("--corpus")?.into()),
            "--crashes" => args.crashes = Some(val("--crashes")?.into()),
            "--max-save" => {
                args.max_save = val("--max-save")?
                    .parse()
                    .map_err(|e| format!("--max-save: {e}"))?
            }
            "--no-save" => args.save = false,
            "--run" => {
                // reproduce: run the named target on each file and print the outcome
                let t = *args.targets.first().ok_or("--run after the target name")?;
                install_panic_hook();
                for f in a.by_ref() {
                    let b = std::fs::read(&f).map_err(|e| format!("{f}: {e}"))?;
                    let r = catch_unwind(AssertUnwindSafe(|| t.run(&b)));
                    match r {
                        Ok(r) => println!("{f}: {r:?}"),
                        Err(_) => println!(
                            "{f}: PANIC {:?}",
                            LAST_PANIC.lock().ok().and_then(|mut g| g.take())
                        ),
                    }
                }
                std::process::exit(0);
            }
            "--list" => {
                for t in targets::ALL {
                    println!("{}", t.name());
                }
                std::process::exit(0);
            }
            "all" => args.targets.extend(targets::ALL),
            name => args.targets.push(Target::from_name(name).ok_or(format!(
                "unknown target `{name}` (one of: all, {})",
                targets::ALL.map(Target::name).join(", ")
            ))?),
        }
    }
    if args.targets.is_empty() {
        return Err("name a target (or `all`); --list lists them".into());
    }
    if args.targets.len() > 1 && (args.corpus.is_some() || args.crashes.is_some()) {
        return Err("--corpus/--crashes need a single target".into());
    }
    Ok(args)
}

struct Stats {
    execs: u64,
    secs: f64,
    failures: usize,
    classes: usize,
    ok: u64,
    pool: usize,
}

fn fuzz(t: Target, args: &Args) -> Stats {
    let root = crate_root();
    let corpus_dir = args
        .corpus
        .clone()
        .unwrap_or_else(|| root.join("fuzz/corpus").join(t.name()));
    let crash_dir = args
        .crashes
        .clone()
        .unwrap_or_else(|| root.join("fuzz/crashes").join(t.name()));
    let max_len = if t.is_binary() { 64 << 10 } else { 16 << 10 };
    let mut rng = StdRng::seed_from_u64(args.seed ^ fnv64(t.name().as_bytes()));
    if args.save
        && let Ok(mut g) = CRASH_DIR.lock()
    {
        *g = Some(crash_dir.clone());
    }

    let mut initial = seeds(t);
    initial.extend(read_dir_files(&corpus_dir));
    // (input, derived from the real recording): the recording is GPL-3.0 test data of openhdemg,
    // so inputs made from it are fuzzed but never written to the (committed) corpus.
    let real = |name: &str| name == REAL_SEED;
    let mut pool: Vec<(Vec<u8>, bool)> =
        initial.iter().map(|(n, b)| (b.clone(), real(n))).collect();
    if pool.is_empty() {
        pool.push((Vec::new(), false));
    }
    let dict = Dict::from_seeds(&pool.iter().map(|p| p.0.clone()).collect::<Vec<_>>());
    // smallest input per outcome class
    let mut best: BTreeMap<String, (Vec<u8>, bool)> = BTreeMap::new();
    let mut seen_fail: HashSet<String> = HashSet::new();
    let mut failures = 0usize;
    let mut ok = 0u64;
    let t0 = Instant::now();
    let mut last_report = Instant::now();

    let total = args.iters + initial.len() as u64;
    for it in 0..total {
        let (input, tainted): (Vec<u8>, bool) = if (it as usize) < initial.len() {
            let (n, b) = &initial[it as usize];
            (b.clone(), real(n))
        } else {
            let (mut d, ta) = pick(&mut rng, &pool).cloned().unwrap_or_default();
            let (other, tb) = pick(&mut rng, &pool).cloned().unwrap_or_default();
            for _ in 0..rng.random_range(1..=4) {
                if t.is_binary() {
                    if rng.random_bool(0.3) && mutate_mat(&mut rng, &mut d, &other) {
                        continue;
                    }
                    mutate_bytes(&mut rng, &mut d, &other);
                } else {
                    mutate_text(&mut rng, &mut d, &other, &dict);
                }
            }
            d.truncate(max_len);
            (d, ta || tb)
        };

        LARGEST.store(0, Ordering::Relaxed);
        CURRENT.store(input.as_ptr() as *mut u8, Ordering::Relaxed);
        CURRENT_LEN.store(input.len(), Ordering::Relaxed);
        let start = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| t.run(&input)));
        let took = start.elapsed();
        let largest = LARGEST.load(Ordering::Relaxed);
        CURRENT.store(std::ptr::null_mut(), Ordering::Relaxed);

        let failure = match &r {
            Err(_) => {
                let msg = LAST_PANIC.lock().ok().and_then(|mut g| g.take());
                Some(("panic", msg.unwrap_or_default()))
            }
            Ok(Err(e)) => t.check_error(e).err().map(|m| ("untyped", m)),
            Ok(Ok(_)) => None,
        }
        .or_else(|| {
            (largest > ALLOC_LIMIT)
                .then(|| ("alloc", format!("single allocation of {largest} bytes")))
        })
        .or_else(|| (took > Duration::from_secs(2)).then(|| ("slow", format!("{took:?}"))));

        if let Some((kind, msg)) = failure {
            failures += 1;
            // the panic location (or failure kind) dedups the reports
            let key = format!("{kind} {}", msg.split(": ").next().unwrap_or(&msg));
            if seen_fail.insert(key.clone()) {
                eprintln!(
                    "[{}] FAILURE #{failures} ({kind}) at exec {it}: {msg}",
                    t.name()
                );
            }
            if args.save && seen_fail.len() <= 64 {
                std::fs::create_dir_all(&crash_dir).ok();
                let real = if tainted { "-real" } else { "" };
                let p = crash_dir.join(format!("{kind}{real}-{:016x}", fnv64(&input)));
                std::fs::write(&p, &input).ok();
            }
            continue;
        }
        let r = r.unwrap_or_else(|_| unreachable!());
        if r.is_ok() {
            ok += 1;
        }
        let class = targets::outcome_class(&r);
        match best.get(&class) {
            None => {
                best.insert(class, (input.clone(), tainted));
                if pool.len() < 4096 {
                    pool.push((input, tainted));
                } else {
                    let k = rng.random_range(0..pool.len());
                    pool[k] = (input, tainted);
                }
            }
            Some(b) if input.len() < b.0.len() && (b.1 || !tainted) => {
                best.insert(class, (input, tainted));
            }
            _ => {}
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let s = t0.elapsed().as_secs_f64();
            eprintln!(
                "[{}] {it} execs, {:.0}/s, {} classes, {failures} failures",
                t.name(),
                it as f64 / s,
                best.len()
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();

    if args.save {
        // Keep the committed corpus small: the smallest input of up to max_save classes, Ok
        // shapes and typed value errors first (they reach deepest), then parse errors.
        let mut ranked: Vec<(&String, &Vec<u8>)> = best
            .iter()
            .filter(|(_, (b, tainted))| !tainted && b.len() <= 8 << 10)
            .map(|(c, (b, _))| (c, b))
            .collect();
        ranked.sort_by_key(|(c, b)| {
            let rank = if c.starts_with("ok") || !c.starts_with("format") {
                0
            } else {
                1
            };
            (rank, b.len())
        });
        std::fs::create_dir_all(&corpus_dir).ok();
        let existing: HashSet<u64> = read_dir_files(&corpus_dir)
            .iter()
            .map(|(_, b)| fnv64(b))
            .collect();
        let mut added = 0;
        for (_, b) in ranked.into_iter().take(args.max_save) {
            if existing.contains(&fnv64(b)) {
                continue;
            }
            if existing.len() + added >= args.max_save {
                break;
            }
            let p = corpus_dir.join(format!("{:016x}", fnv64(b)));
            std::fs::write(p, b).ok();
            added += 1;
        }
    }
    Stats {
        execs: total,
        secs,
        failures,
        classes: best.len(),
        ok,
        pool: pool.len(),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fuzz: {e}");
            std::process::exit(2);
        }
    };
    install_panic_hook();
    println!(
        "| target | executions | wall (s) | exec/s | failures | outcome classes | Ok | pool |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut any = false;
    for &t in &args.targets {
        let s = fuzz(t, &args);
        any |= s.failures > 0;
        println!(
            "| {} | {} | {:.1} | {:.0} | {} | {} | {} | {} |",
            t.name(),
            s.execs,
            s.secs,
            s.execs as f64 / s.secs,
            s.failures,
            s.classes,
            s.ok,
            s.pool
        );
    }
    if any {
        std::process::exit(1);
    }
}
