//! Resumable calibrations by deterministic replay of an evaluation journal.
//!
//! Every optimiser here (argmin's solvers, Adam, the particle swarm, the root-finders) is a
//! deterministic function of the losses and gradients it receives (and of its seed). So instead
//! of serialising each solver's internal state, every evaluation of a calibration method is
//! appended to a journal file (`x` in, values out, wall time) the moment it completes; an
//! interrupted run is resumed by running the same methods again from the start, serving the
//! journalled evaluations instead of simulating (bit-exact: values are stored as IEEE-754 bit
//! patterns) until the journal is exhausted, then continuing with real evaluations. The resumed
//! run therefore takes the same path, reaches the same final parameters and counts the same
//! evaluations as an uninterrupted one; its clock is restored from the journal so wall-time
//! budgets are honoured too.
//!
//! Files: `<dir>/run-<k>-<label>.jsonl`, one per method in the order the problem runs them; the
//! first line names the spec fingerprint and the method, each further line is one evaluation.
//! A journal from another spec or method is refused with the reason; a line cut short by a kill
//! is dropped (its evaluation is simply redone).
//!
//! A session belongs to the thread that began it ([`begin`]; the optimisers record evaluations
//! on that thread); calls without one journal nothing, so concurrent library use is unaffected.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether a session starts afresh or continues existing journals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// New journals (existing ones are replaced).
    Fresh,
    /// Replay existing journals, then continue.
    Resume,
}

struct Session {
    dir: PathBuf,
    fingerprint: String,
    mode: Mode,
    next: usize,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// A 64-bit FNV-1a fingerprint of `text` (e.g. the spec file), as 16 hex digits.
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Starts this thread's journal session in `dir` (created with the first journal) for a spec
/// with `fingerprint`.
pub fn begin(dir: &Path, fingerprint: &str, mode: Mode) {
    SESSION.with(|s| {
        *s.borrow_mut() = Some(Session {
            dir: dir.to_path_buf(),
            fingerprint: fingerprint.to_string(),
            mode,
            next: 0,
        })
    });
}

/// Ends this thread's session (later calibrations journal nothing).
pub fn end() {
    SESSION.with(|s| *s.borrow_mut() = None);
}

/// The journal of the next method run in this thread's session (`label` = the method's name),
/// or `None` when no session is active.
pub fn open_next(label: &str) -> Result<Option<Journal>> {
    let next = SESSION.with(|s| {
        s.borrow_mut().as_mut().map(|s| {
            let k = s.next;
            s.next += 1;
            (s.dir.clone(), s.fingerprint.clone(), s.mode, k)
        })
    });
    let Some((dir, fingerprint, mode, k)) = next else {
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let safe: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir.join(format!("run-{k:03}-{safe}.jsonl"));
    Journal::open(&path, &fingerprint, label, mode).map(Some)
}

#[derive(Serialize, Deserialize)]
struct Header {
    fingerprint: String,
    label: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// Kind of evaluation ("v" value, "g" value and gradient, "p" population member, ...).
    k: String,
    /// Input, f64 bit patterns.
    x: Vec<u64>,
    /// Outputs, f64 bit patterns.
    y: Vec<u64>,
    /// Wall time of the method when this evaluation completed (s).
    t: f64,
}

/// The evaluation journal of one method run.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    entries: Vec<Line>,
    pos: usize,
    file: File,
    /// Added to the local clock after the replay (s), so the method's clock continues.
    shift_s: f64,
    start: Instant,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

impl Journal {
    /// Opens `path` for the method `label` of the spec `fingerprint`: replaces it (fresh) or
    /// loads its evaluations for replay (resume; refused if it belongs to another spec/method).
    pub fn open(path: &Path, fingerprint: &str, label: &str, mode: Mode) -> Result<Self> {
        let mut entries = Vec::new();
        if mode == Mode::Resume && path.exists() {
            let f = File::open(path).map_err(|e| io_err(path, e))?;
            let mut lines = BufReader::new(f).lines();
            let head = lines.next().transpose().map_err(|e| io_err(path, e))?;
            let header: Option<Header> = head.and_then(|h| serde_json::from_str(&h).ok());
            match header {
                Some(h) if h.fingerprint == fingerprint && h.label == label => {}
                Some(h) => {
                    return Err(Error::invalid(
                        "resume",
                        path.display(),
                        format!(
                            "a checkpoint of this spec and method (it belongs to spec {} / method \
                             {}, this run is spec {fingerprint} / method {label}: the spec or the \
                             method list changed; rerun with --force to start over)",
                            h.fingerprint, h.label
                        ),
                    ));
                }
                None => {}
            }
            for l in lines {
                let l = l.map_err(|e| io_err(path, e))?;
                // A line cut short by a kill does not parse: that evaluation is redone.
                match serde_json::from_str::<Line>(&l) {
                    Ok(e) => entries.push(e),
                    Err(_) => break,
                }
            }
        }
        // Rewrite the file with the header and the entries kept (drops a cut line).
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            let head = serde_json::to_string(&Header {
                fingerprint: fingerprint.into(),
                label: label.into(),
            })
            .map_err(|e| Error::format("journal", e.to_string()))?;
            writeln!(f, "{head}").map_err(|e| io_err(&tmp, e))?;
            for e in &entries {
                let s = serde_json::to_string(e)
                    .map_err(|e| Error::format("journal", e.to_string()))?;
                writeln!(f, "{s}").map_err(|e| io_err(&tmp, e))?;
            }
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            pos: 0,
            file,
            shift_s: 0.0,
            start: Instant::now(),
        })
    }

    /// Evaluations still to replay.
    pub fn pending(&self) -> usize {
        self.entries.len() - self.pos
    }

    /// Evaluations replayed so far.
    pub fn replayed(&self) -> usize {
        self.pos.min(self.entries.len())
    }

    /// The method's wall time (s): the journalled time during the replay, then the journalled
    /// time of the last replayed evaluation plus the time since.
    pub fn now_s(&self) -> f64 {
        if self.pending() > 0 {
            if self.pos == 0 {
                0.0
            } else {
                self.entries[self.pos - 1].t
            }
        } else {
            self.start.elapsed().as_secs_f64() + self.shift_s
        }
    }

    /// The outputs of evaluation `kind` at `x`: replayed from the journal while it lasts (the
    /// inputs must match bit for bit, else the run is not the journalled one: error), else
    /// computed by `f` and appended.
    pub fn eval(
        &mut self,
        kind: &str,
        x: &[f64],
        f: impl FnOnce() -> Result<Vec<f64>>,
    ) -> Result<Vec<f64>> {
        let xb: Vec<u64> = x.iter().map(|v| v.to_bits()).collect();
        if let Some(e) = self.entries.get(self.pos) {
            if e.k != kind || e.x != xb {
                return Err(Error::invalid(
                    "resume",
                    self.path.display(),
                    format!(
                        "a journal this run reproduces (evaluation {} differs: journal {} at \
                         {:?}, run {kind} at {x:?}; rerun with --force)",
                        self.pos + 1,
                        e.k,
                        e.x.iter().map(|b| f64::from_bits(*b)).collect::<Vec<_>>()
                    ),
                ));
            }
            let y = e.y.iter().map(|b| f64::from_bits(*b)).collect();
            self.pos += 1;
            if self.pending() == 0 {
                self.shift_s = self.entries[self.pos - 1].t - self.start.elapsed().as_secs_f64();
            }
            return Ok(y);
        }
        let y = f()?;
        let line = Line {
            k: kind.into(),
            x: xb,
            y: y.iter().map(|v| v.to_bits()).collect(),
            t: self.now_s(),
        };
        let s =
            serde_json::to_string(&line).map_err(|e| Error::format("journal", e.to_string()))?;
        writeln!(self.file, "{s}").map_err(|e| io_err(&self.path, e))?;
        self.file.flush().map_err(|e| io_err(&self.path, e))?;
        self.entries.push(line);
        self.pos = self.entries.len();
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_serves_journalled_values_and_refuses_another_spec() {
        let dir = std::env::temp_dir().join(format!("myodiff_journal_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("run-000-m.jsonl");
        let mut calls = 0;
        {
            let mut j = Journal::open(&p, "abc", "m", Mode::Fresh).expect("open");
            for i in 0..3 {
                let x = [i as f64 * 0.1];
                let y = j
                    .eval("v", &x, || {
                        calls += 1;
                        Ok(vec![x[0].sin()])
                    })
                    .expect("eval");
                assert_eq!(y[0], x[0].sin());
            }
        }
        // Simulate a kill mid-write: a cut line at the end.
        let mut f = OpenOptions::new().append(true).open(&p).expect("append");
        write!(f, "{{\"k\":\"v\",\"x\":[12").expect("write");
        drop(f);
        let mut j = Journal::open(&p, "abc", "m", Mode::Resume).expect("resume");
        assert_eq!(j.pending(), 3);
        for i in 0..4 {
            let x = [i as f64 * 0.1];
            let y = j
                .eval("v", &x, || {
                    calls += 1;
                    Ok(vec![x[0].sin()])
                })
                .expect("eval");
            assert_eq!(y[0].to_bits(), x[0].sin().to_bits());
        }
        assert_eq!(calls, 4, "three replayed, one computed");
        let e = j.eval("v", &[9.0], || Ok(vec![0.0]));
        assert!(e.is_ok(), "past the journal: computed");
        let mut j2 = Journal::open(&p, "abc", "m", Mode::Resume).expect("resume");
        let e = j2
            .eval("v", &[0.5], || Ok(vec![0.0]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("evaluation 1 differs"), "{e}");
        let e = Journal::open(&p, "other", "m", Mode::Resume)
            .expect_err("another spec")
            .to_string();
        assert!(
            e.contains("another") || e.contains("belongs to spec"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
