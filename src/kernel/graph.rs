//! Ordering of stages from their declared reads and writes.
//!
//! An undelayed read of buffer `b` makes the stage run after `b`'s writer in every tick. A delayed
//! read (feedback edge) imposes no order: it sees the previous tick. A cycle of undelayed reads is
//! an error that names the stages; ties keep the order in which stages were added.

use std::collections::{BTreeMap, BTreeSet};

use super::stage::StageDecl;
use crate::error::{Error, Result};

/// Name of the pseudo-writer of externally supplied input traces.
pub const EXTERNAL: &str = "<external input>";

/// The ordered graph: `order[k]` is the index (into the list given) of the k-th stage to run.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Execution order (indices into the stage list).
    pub order: Vec<usize>,
    /// Buffer name → index of the stage writing it (`None` = external input).
    pub writers: BTreeMap<String, Option<usize>>,
    /// Buffers read with a one-tick delay by some stage.
    pub delayed: BTreeSet<String>,
}

impl Graph {
    /// Orders `decls` (one per stage, named by `names`); `external` are buffers supplied as whole
    /// input traces.
    pub fn build(names: &[String], decls: &[StageDecl], external: &[String]) -> Result<Self> {
        let mut writers: BTreeMap<String, Option<usize>> = BTreeMap::new();
        for e in external {
            writers.insert(e.clone(), None);
        }
        for (i, d) in decls.iter().enumerate() {
            for w in &d.writes {
                if let Some(prev) = writers.get(&w.name) {
                    return Err(Error::DuplicateBuffer {
                        buffer: w.name.clone(),
                        first: prev
                            .map(|j| names[j].clone())
                            .unwrap_or_else(|| EXTERNAL.into()),
                        second: names[i].clone(),
                    });
                }
                writers.insert(w.name.clone(), Some(i));
            }
        }
        let n = decls.len();
        let mut succ: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        let mut indeg = vec![0usize; n];
        let mut delayed = BTreeSet::new();
        for (i, d) in decls.iter().enumerate() {
            for r in &d.reads {
                let Some(writer) = writers.get(&r.name) else {
                    return Err(Error::MissingBuffer {
                        stage: names[i].clone(),
                        buffer: r.name.clone(),
                    });
                };
                if r.delayed {
                    delayed.insert(r.name.clone());
                    continue;
                }
                if let Some(j) = *writer
                    && j != i
                    && succ[j].insert(i)
                {
                    indeg[i] += 1;
                }
            }
        }
        // Kahn's algorithm, always taking the lowest ready index (stable w.r.t. insertion order).
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(&i) = ready.iter().next() {
            ready.remove(&i);
            order.push(i);
            for &k in &succ[i] {
                indeg[k] -= 1;
                if indeg[k] == 0 {
                    ready.insert(k);
                }
            }
        }
        if order.len() < n {
            let left: BTreeSet<usize> = (0..n).filter(|i| !order.contains(i)).collect();
            return Err(Error::Cycle {
                stages: find_cycle(&left, &succ)
                    .iter()
                    .map(|&i| names[i].clone())
                    .collect(),
            });
        }
        Ok(Self {
            order,
            writers,
            delayed,
        })
    }
}

/// A cycle among the nodes `left`: every node left unordered by Kahn's algorithm has an unordered
/// predecessor, so walking predecessors must revisit a node.
fn find_cycle(left: &BTreeSet<usize>, succ: &[BTreeSet<usize>]) -> Vec<usize> {
    let pred = |k: usize| left.iter().copied().find(|&j| succ[j].contains(&k));
    let mut path: Vec<usize> = Vec::new();
    let mut cur = *left.iter().next().expect("non-empty");
    loop {
        if let Some(pos) = path.iter().position(|&p| p == cur) {
            let mut cyc: Vec<usize> = path[pos..].to_vec();
            cyc.reverse();
            cyc.push(cyc[0]);
            return cyc;
        }
        path.push(cur);
        match pred(cur) {
            Some(j) => cur = j,
            None => return path,
        }
    }
}
