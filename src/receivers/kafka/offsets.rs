//! Which offsets may be committed: per partition, only up to the first
//! message that is not yet acknowledged (DESIGN §2, at-least-once).
//!
//! Messages enter as *batches* (one pipeline batch, one ack). A batch covers,
//! per partition, a run of consecutively consumed offsets, so a partition's
//! in-flight state is a queue of runs in consumption order, and committing
//! means popping finished runs from its front.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

/// The run of one batch in one partition: offsets up to (excluding) `end`.
#[derive(Debug, Clone, Copy)]
struct Run {
    batch: u64,
    end: i64,
    done: bool,
}

#[derive(Debug, Default)]
struct PartitionState {
    runs: VecDeque<Run>,
    /// Next offset to consume as far as acknowledgements go: everything below is done.
    acked: Option<i64>,
    /// What was last committed.
    committed: Option<i64>,
}

/// The runs a batch under construction covers, in the order they were consumed.
#[derive(Debug, Default, Clone)]
pub struct BatchOffsets {
    runs: Vec<(TopicPartition, i64)>,
    messages: usize,
}

impl BatchOffsets {
    /// Records a consumed message; offsets of one partition arrive in increasing order.
    pub fn add(&mut self, tp: &TopicPartition, offset: i64) {
        self.messages += 1;
        match self.runs.iter_mut().find(|(t, _)| t == tp) {
            Some((_, end)) => *end = (*end).max(offset + 1),
            None => self.runs.push((tp.clone(), offset + 1)),
        }
    }

    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// The receiver's offset ledger for its current assignment.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, PartitionState>,
    /// Batches handed to the pipeline and not yet acknowledged → the partitions they touch.
    in_flight: HashMap<u64, Vec<TopicPartition>>,
}

impl OffsetTracker {
    /// A batch was handed to the pipeline; it must be registered in the order
    /// batches were built, so runs stay in consumption order.
    pub fn register(&mut self, batch: u64, offsets: BatchOffsets) {
        let mut touched = Vec::with_capacity(offsets.runs.len());
        for (tp, end) in offsets.runs {
            self.partitions.entry(tp.clone()).or_default().runs.push_back(Run { batch, end, done: false });
            touched.push(tp);
        }
        self.in_flight.insert(batch, touched);
    }

    /// The batch's acknowledgement completed. Unknown batches (from before a
    /// rebalance) are ignored: their partitions were given up meanwhile.
    pub fn complete(&mut self, batch: u64) {
        let Some(touched) = self.in_flight.remove(&batch) else { return };
        for tp in touched {
            let Some(p) = self.partitions.get_mut(&tp) else { continue };
            // Runs are ordered by batch number, so the run is found by bisection.
            if let Ok(i) = p.runs.binary_search_by_key(&batch, |r| r.batch) {
                p.runs[i].done = true;
            }
            while let Some(front) = p.runs.front().filter(|r| r.done) {
                p.acked = Some(front.end);
                p.runs.pop_front();
            }
        }
    }

    /// Batches still waiting for their acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// `(partition, offset)` pairs whose acknowledged offset moved past the last commit.
    pub fn to_commit(&self) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(tp, p)| match (p.acked, p.committed) {
                (Some(a), Some(c)) if a <= c => None,
                (Some(a), _) => Some((tp.clone(), a)),
                (None, _) => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Records a successful commit.
    pub fn committed(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(p) = self.partitions.get_mut(tp) {
            p.committed = Some(p.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// A commit was lost: commit every acknowledged offset again next time.
    pub fn forget_committed(&mut self) {
        for p in self.partitions.values_mut() {
            p.committed = None;
        }
    }

    /// Forgets everything: the assignment was revoked (eager rebalancing gives
    /// up every partition), and late acknowledgements no longer matter.
    pub fn clear(&mut self) {
        self.partitions.clear();
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition { topic: "t".into(), partition: p }
    }

    fn batch(msgs: &[(i32, i64)]) -> BatchOffsets {
        let mut b = BatchOffsets::default();
        for &(p, o) in msgs {
            b.add(&tp(p), o);
        }
        b
    }

    #[test]
    fn commits_only_the_contiguous_acknowledged_prefix() {
        let mut t = OffsetTracker::default();
        t.register(1, batch(&[(0, 0), (0, 1), (1, 0)]));
        t.register(2, batch(&[(0, 2), (1, 1)]));
        t.register(3, batch(&[(0, 3)]));
        // Batch 2 finishes first: nothing may be committed past batch 1.
        t.complete(2);
        assert!(t.to_commit().is_empty());
        t.complete(1);
        assert_eq!(t.to_commit(), vec![(tp(0), 3), (tp(1), 2)]);
        t.committed(&tp(0), 3);
        t.committed(&tp(1), 2);
        assert!(t.to_commit().is_empty());
        assert_eq!(t.in_flight(), 1);
        t.complete(3);
        assert_eq!(t.to_commit(), vec![(tp(0), 4)]);
    }

    #[test]
    fn late_acknowledgements_after_revoke_are_ignored() {
        let mut t = OffsetTracker::default();
        t.register(1, batch(&[(0, 10)]));
        t.clear();
        t.complete(1);
        assert!(t.to_commit().is_empty());
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn offset_gaps_commit_past_the_last_consumed() {
        // Compacted topics and transaction markers leave gaps; the commit is
        // the offset after the last consumed message.
        let mut t = OffsetTracker::default();
        t.register(1, batch(&[(0, 5), (0, 9)]));
        t.complete(1);
        assert_eq!(t.to_commit(), vec![(tp(0), 10)]);
    }
}
