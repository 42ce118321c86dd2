//! Per-sink queues between fanout and the sink worker (DESIGN §2).
//!
//! Bounded in samples; what happens when full is the sink's explicit choice
//! (`when_full`), and every sample refused or evicted is counted.

mod ledger;
mod memory;

use serde::Deserialize;

pub use ledger::Ledger;
pub use memory::MemoryQueue;

/// `queue = { type = "memory", max_samples = 1000000, when_full = "block" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `memory` (lost on restart) or `disk` (survives restart and `kill -9`).
    #[serde(rename = "type", default)]
    pub kind: QueueKind,
    /// Capacity in samples (memory queues).
    #[serde(default = "defaults::max_samples")]
    pub max_samples: usize,
    /// What a full queue does with a new batch.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { kind: QueueKind::default(), max_samples: defaults::max_samples(), when_full: WhenFull::default() }
    }
}

impl QueueConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_samples == 0 {
            return Err("queue.max_samples must be at least 1".into());
        }
        match self.kind {
            QueueKind::Memory => Ok(()),
            QueueKind::Disk => Err("queue.type = \"disk\" is not available in this build yet; use \"memory\"".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    #[default]
    Memory,
    Disk,
}

/// The explicit drop policy of a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: a slow sink slows the pipeline (backpressure to senders).
    #[default]
    Block,
    /// Refuse the incoming batch (counted `queue_full`).
    DropNewest,
    /// Evict the oldest queued batches to make room (counted `queue_full`).
    DropOldest,
}

pub mod defaults {
    pub fn max_samples() -> usize {
        1_000_000
    }
}
