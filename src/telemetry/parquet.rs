//! Typed handles for the Parquet archive sink.

use metrics::{Counter, Gauge, counter, gauge};

use super::names::*;

/// Why every open file of a Parquet sink was finished at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollReason {
    /// `roll_every` passed since the first sample of the open files.
    Age,
    /// A file reached `max_file_bytes`.
    Size,
    /// A sample needed one more file than `max_open_files`.
    OpenFiles,
    /// `max_pending_samples` were waiting to become durable.
    Pending,
    /// The sink stopped.
    Shutdown,
}

impl RollReason {
    pub const ALL: [RollReason; 5] =
        [RollReason::Age, RollReason::Size, RollReason::OpenFiles, RollReason::Pending, RollReason::Shutdown];

    pub fn as_str(self) -> &'static str {
        match self {
            RollReason::Age => "age",
            RollReason::Size => "size",
            RollReason::OpenFiles => "open_files",
            RollReason::Pending => "pending",
            RollReason::Shutdown => "shutdown",
        }
    }
}

/// Handles one Parquet sink updates.
#[derive(Clone)]
pub struct ParquetMetrics {
    /// Files made visible (renamed to `part-<n>.parquet` and synced).
    pub files_written: Counter,
    /// Bytes of those files.
    pub bytes_written: Counter,
    rolls: [Counter; 5],
    /// Rolls that failed (the samples in them are counted dropped).
    pub roll_failures: Counter,
    pub open_files: Gauge,
    /// Samples in open files, not yet durable (their acks are held).
    pub pending_samples: Gauge,
    /// Hour partitions deleted by `retention`.
    pub partitions_deleted: Counter,
    /// Replayed disk-queue samples skipped because a visible file already holds them.
    pub replay_skipped_samples: Counter,
    /// Unfinished files of an earlier run removed at start-up.
    pub temp_files_removed: Counter,
}

impl ParquetMetrics {
    pub fn new(sink: &str) -> Self {
        let s = || sink.to_string();
        ParquetMetrics {
            files_written: counter!(PARQUET_FILES_WRITTEN_TOTAL, "sink" => s()),
            bytes_written: counter!(PARQUET_BYTES_WRITTEN_TOTAL, "sink" => s()),
            rolls: RollReason::ALL.map(|r| counter!(PARQUET_ROLLS_TOTAL, "sink" => s(), "reason" => r.as_str())),
            roll_failures: counter!(PARQUET_ROLL_FAILURES_TOTAL, "sink" => s()),
            open_files: gauge!(PARQUET_OPEN_FILES, "sink" => s()),
            pending_samples: gauge!(PARQUET_PENDING_SAMPLES, "sink" => s()),
            partitions_deleted: counter!(PARQUET_PARTITIONS_DELETED_TOTAL, "sink" => s()),
            replay_skipped_samples: counter!(PARQUET_REPLAYED_SKIPPED_SAMPLES_TOTAL, "sink" => s()),
            temp_files_removed: counter!(PARQUET_TEMP_FILES_REMOVED_TOTAL, "sink" => s()),
        }
    }

    pub fn rolled(&self, reason: RollReason) {
        self.rolls[reason as usize].increment(1);
    }
}
