//! Per-sink queues between fanout and the sink worker (DESIGN §2).
//!
//! Bounded in samples (memory) or bytes (disk); what happens when full is the
//! sink's explicit choice (`when_full`), and every sample refused or evicted
//! is counted. A disk queue keeps its records until the worker reports them
//! settled (delivered or counted as dropped), so they survive a restart.

/// Public for the fuzz targets (`fuzz/`): its record codec and segment scan read bytes from disk.
pub mod disk;
mod ledger;
mod memory;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

pub use disk::{DiskQueue, DiskQueueError, DiskQueueOptions, READ_AHEAD_SAMPLES, RecordToken};
pub use ledger::{Ledger, LedgerTotals};
pub use memory::{MemoryQueue, MemoryToken};

use crate::model::Batch;

/// `queue = { type = "memory", max_samples = 250000, when_full = "block" }` or
/// `queue = { type = "disk", max_bytes = 1073741824, when_full = "block", fsync = "always" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `memory` (lost on restart) or `disk` (survives restart and `kill -9`).
    #[serde(rename = "type", default)]
    pub kind: QueueKind,
    /// Capacity in samples (memory queues).
    #[serde(default = "defaults::max_samples")]
    pub max_samples: usize,
    /// Capacity in bytes of queued records (disk queues). The files may exceed
    /// it by up to two segments (each `max_bytes / 8`, 64 KiB to 64 MiB),
    /// because a segment is removed only once all of its records are settled.
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: u64,
    /// What a full queue does with a new batch.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Disk queues: when appended records are forced to stable storage. An
    /// `ack = "delivered"` sender is answered once its records are synced
    /// under this policy (at once with `never`).
    #[serde(default)]
    pub fsync: FsyncPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            kind: QueueKind::default(),
            max_samples: defaults::max_samples(),
            max_bytes: defaults::max_bytes(),
            when_full: WhenFull::default(),
            fsync: FsyncPolicy::default(),
        }
    }
}

impl QueueConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.kind {
            QueueKind::Memory if self.max_samples == 0 => Err("queue.max_samples must be at least 1".into()),
            QueueKind::Disk if self.max_bytes < disk::MIN_MAX_BYTES => {
                Err(format!("queue.max_bytes must be at least {} for a disk queue", disk::MIN_MAX_BYTES))
            }
            QueueKind::Disk if matches!(self.fsync, FsyncPolicy::Interval { interval_ms: 0 }) => {
                Err("queue.fsync.interval_ms must be at least 1 (or use fsync = \"always\")".into())
            }
            _ => Ok(()),
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
    /// Evict the oldest queued batches (disk: records) to make room (counted `queue_full`).
    DropOldest,
}

/// `fsync = "always" | { interval_ms = N } | "never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Sync as soon as something was appended (one sync covers every record
    /// appended meanwhile); nothing acknowledged is lost on power failure.
    #[default]
    Always,
    /// Sync every `interval_ms`; a power failure loses at most that much.
    Interval { interval_ms: u64 },
    /// Leave it to the kernel; survives `kill -9`, not a power failure.
    Never,
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FsyncVisitor;
        impl<'de> Visitor<'de> for FsyncVisitor {
            type Value = FsyncPolicy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"always\", \"never\" or { interval_ms = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FsyncPolicy, E> {
                match v {
                    "always" => Ok(FsyncPolicy::Always),
                    "never" => Ok(FsyncPolicy::Never),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FsyncPolicy, A::Error> {
                let mut interval_ms = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "interval_ms" => interval_ms = Some(map.next_value::<u64>()?),
                        other => return Err(de::Error::unknown_field(other, &["interval_ms"])),
                    }
                }
                let interval_ms = interval_ms.ok_or_else(|| de::Error::missing_field("interval_ms"))?;
                Ok(FsyncPolicy::Interval { interval_ms })
            }
        }
        d.deserialize_any(FsyncVisitor)
    }
}

pub mod defaults {
    // About 86 MiB at a name and five labels a sample: with the default
    // per-series tables and channels the default config's worst case fits
    // the default `limits.memory_bytes` (512 MiB). Outages longer than a
    // memory queue can bridge are what disk queues are for.
    pub fn max_samples() -> usize {
        250_000
    }
    pub fn max_bytes() -> u64 {
        1 << 30
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Disk(#[from] DiskQueueError),
}

/// A sink's queue, whichever kind its config asks for. The fanout pushes
/// shared batches; the sink worker pops [`QueueItem`]s and settles them.
// One per sink, built once and shared behind an `Arc`: the size gap between
// the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum SinkQueue {
    Memory(MemoryQueue),
    Disk(DiskQueue),
}

/// One popped batch. A disk record stays in the queue until every one of its
/// samples has been [settled](QueueItem::settle) — delivered or counted as
/// dropped — so a crash in between replays it rather than losing it.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub batch: Arc<Batch>,
    token: Token,
}

/// What settling an item releases.
#[derive(Clone, Debug)]
enum Token {
    /// Nothing (a batch built outside a queue: tests, benchmarks, tools).
    None,
    /// Room in a memory queue and this sink's acknowledgement obligation.
    Memory(Arc<MemoryToken>),
    /// A disk record.
    Disk(Arc<RecordToken>),
}

impl QueueItem {
    /// A batch that belongs to no queue.
    pub fn memory(batch: Arc<Batch>) -> Self {
        QueueItem { batch, token: Token::None }
    }

    pub(crate) fn from_memory(batch: Arc<Batch>, token: Arc<MemoryToken>) -> Self {
        QueueItem { batch, token: Token::Memory(token) }
    }

    pub(crate) fn disk(batch: Arc<Batch>, record: Arc<RecordToken>) -> Self {
        QueueItem { batch, token: Token::Disk(record) }
    }

    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The disk record this batch was read from (its sequence number), if any.
    pub fn record_seq(&self) -> Option<u64> {
        match &self.token {
            Token::Disk(r) => Some(r.seq()),
            Token::None | Token::Memory(_) => None,
        }
    }

    /// `n` of this batch's samples are done (delivered or counted as dropped).
    /// Once all of them are, a disk record is removed and a memory queue gets
    /// the room back and settles this sink's share of the acknowledgement.
    pub fn settle(&self, n: usize) {
        match &self.token {
            Token::None => {}
            Token::Memory(t) => t.settle(n),
            Token::Disk(r) => r.settle(n),
        }
    }
}

impl SinkQueue {
    /// Builds the queue `config` describes for sink `sink`; disk queues live
    /// in `data_dir/<sink>/` and replay what an earlier run left there.
    pub fn open(sink: &str, config: &QueueConfig, data_dir: &Path, ledger: Ledger) -> Result<SinkQueue, QueueError> {
        Ok(match config.kind {
            QueueKind::Memory => SinkQueue::Memory(MemoryQueue::new(config.max_samples, config.when_full, ledger)),
            QueueKind::Disk => {
                let options = DiskQueueOptions::new(config.max_bytes, config.when_full, config.fsync);
                SinkQueue::Disk(DiskQueue::open(&data_dir.join(sink), options, ledger)?)
            }
        })
    }

    pub fn ledger(&self) -> &Ledger {
        match self {
            SinkQueue::Memory(q) => q.ledger(),
            SinkQueue::Disk(q) => q.ledger(),
        }
    }

    /// Offers a batch; applies `when_full` (see [`MemoryQueue::push`], [`DiskQueue::push`]).
    pub async fn push(&self, batch: Arc<Batch>) {
        match self {
            SinkQueue::Memory(q) => q.push(batch).await,
            SinkQueue::Disk(q) => q.push(batch).await,
        }
    }

    /// Takes the next batch without waiting.
    pub fn try_pop(&self) -> Option<QueueItem> {
        match self {
            SinkQueue::Memory(q) => q.try_pop().map(|(b, t)| QueueItem::from_memory(b, t)),
            SinkQueue::Disk(q) => q.try_pop(),
        }
    }

    /// Waits for the next batch; `None` once closed and drained. Cancel-safe.
    pub async fn pop(&self) -> Option<QueueItem> {
        match self {
            SinkQueue::Memory(q) => q.pop().await.map(|(b, t)| QueueItem::from_memory(b, t)),
            SinkQueue::Disk(q) => q.pop().await,
        }
    }

    /// No more pushes; the consumer drains what is left and then sees `None`.
    pub fn close(&self) {
        match self {
            SinkQueue::Memory(q) => q.close(),
            SinkQueue::Disk(q) => q.close(),
        }
    }

    /// Disk queues: sequence numbers below this are records replayed from an
    /// earlier run (see [`QueueItem::record_seq`]).
    pub fn replay_end(&self) -> Option<u64> {
        match self {
            SinkQueue::Memory(_) => None,
            SinkQueue::Disk(q) => Some(q.replay_end()),
        }
    }

    /// Whether queued data outlives the process.
    pub fn is_durable(&self) -> bool {
        matches!(self, SinkQueue::Disk(_))
    }

    /// How many samples the sink worker may take out of the queue at once
    /// (`None`: only its own structure bounds it). A memory queue keeps half
    /// of its bound for samples still waiting, so `drop_oldest` always finds
    /// old samples to give up while the worker holds the rest.
    pub fn worker_limit(&self) -> Option<usize> {
        match self {
            SinkQueue::Memory(q) => Some((q.capacity() / 2).max(1)),
            SinkQueue::Disk(_) => None,
        }
    }

    /// After the worker stopped: a memory queue counts what is left —
    /// waiting, or abandoned in the worker's hands — as dropped
    /// (`reason="shutdown"`, their acknowledgements fail) and returns that
    /// count; a disk queue syncs and keeps it for the next start, and returns 0.
    pub fn finish(&self) -> u64 {
        match self {
            SinkQueue::Memory(q) => {
                q.drain_waiting();
                q.ledger().abandon_queued(crate::telemetry::DropReason::Shutdown)
            }
            SinkQueue::Disk(q) => {
                q.shutdown();
                0
            }
        }
    }
}
