//! The seams stages plug into.
//!
//! A stage is a small type with one method over a batch; it removes the
//! samples it rejects and records why in a [`DropTally`]. Only the pipeline
//! knows the order of its stages.

use crate::model::Sample;
use crate::telemetry::{DropReason, Stage};

/// Runs before the shard split: no per-series state, many run in parallel.
pub trait StatelessStage: Send + Sync {
    fn process(&self, samples: &mut Vec<Sample>, drops: &mut DropTally);

    /// Like [`process`](Self::process); a stage that also works out each
    /// kept sample's series hash (of its final, sorted labels) puts them in
    /// `hashes`, aligned with `samples`, and returns true, so the shard split
    /// neither sorts nor hashes again.
    fn process_hashed(&self, samples: &mut Vec<Sample>, _hashes: &mut Vec<u64>, drops: &mut DropTally) -> bool {
        self.process(samples, drops);
        false
    }
}

/// Runs inside one shard, which owns every series hashed to it; `hashes[i]`
/// is the series hash of `samples[i]` and must be kept aligned when removing.
pub trait StatefulStage: Send {
    fn process(&mut self, samples: &mut Vec<Sample>, hashes: &mut Vec<u64>, drops: &mut DropTally);
}

/// Drops counted while processing one batch; flushed to `/metrics` once per batch.
#[derive(Debug, Default)]
pub struct DropTally {
    counts: Vec<(Stage, DropReason, u64)>,
}

impl DropTally {
    pub fn add(&mut self, stage: Stage, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        match self.counts.iter_mut().find(|(s, r, _)| *s == stage && *r == reason) {
            Some(entry) => entry.2 += n,
            None => self.counts.push((stage, reason, n)),
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.2).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = (Stage, DropReason, u64)> + '_ {
        self.counts.drain(..)
    }
}
