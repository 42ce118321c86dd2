//! `type = "parquet"`: a cold archive of raw samples in Parquet files.
//!
//! ```text
//! path/
//!   metric=<name>/date=YYYY-MM-DD/hour=HH/part-<n>.parquet   finished, visible files
//!   metric=<name>/date=YYYY-MM-DD/hour=HH/.part-<n>.parquet.tmp   files being written
//!   _tsrelay/commit.json                                      the last roll (commit.rs)
//! ```
//!
//! Samples go to the file of their partition (metric, UTC hour of their
//! timestamp); files are written by the Arrow writer (`writer.rs`) under a
//! temporary name. A *roll* finishes every open file at once and makes it
//! visible (`commit.rs`); it happens `roll_every` after the first sample of
//! the open files, when a file reaches `max_file_bytes`, when a sample needs
//! more than `max_open_files` files, when `max_pending_samples` samples
//! wait, and at shutdown.
//!
//! Acknowledgements: the sink [defers settlement](Sink::defers_settlement).
//! A batch's queue records and acknowledgements stay open, and its samples
//! count as queued, until the roll that makes the files holding them
//! durable. `max_pending_samples` bounds what is held (memory and the time
//! an `ack = "delivered"` sender waits), so with heavy input files roll
//! before `roll_every`. A roll that fails counts its samples dropped
//! (`reason="retry_exhausted"`) and removes its temporary files.
//!
//! All files of the sink are written by one lane (one task), in queue order,
//! which is what lets a commit name one queue position (see `commit.rs`).

mod commit;
mod config;
mod partition;
mod retention;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use config::ParquetSinkConfig;

use self::commit::{Commit, CommittedFile, Position};
use self::partition::PartitionKey;
use self::writer::{Format, OpenFile, Rows, WriteError};
use super::{Delivery, Sink, SinkBatch, SinkError};
use crate::telemetry::{ParquetMetrics, RollReason};

/// How often `retention` is applied besides at rolls.
const RETENTION_EVERY: Duration = Duration::from_secs(300);

/// Everything a failed write or roll can be.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Commit(#[from] commit::CommitError),
    #[error("the archive writer stopped: {0}")]
    Lost(String),
}

/// The bounds a roll is decided by.
struct Bounds {
    roll_every: Duration,
    max_file_bytes: u64,
    max_open_files: usize,
    max_pending: usize,
    retention: Option<Duration>,
}

/// Samples of one batch between two rolls: rows per partition, and the
/// queue position after the last of them.
struct Chunk {
    rows: Vec<(PartitionKey, Rows)>,
    end: Option<Position>,
    /// More partitions follow than `max_open_files` allows: roll after this chunk.
    roll_after: bool,
}

/// The files and their bookkeeping; moved to a blocking thread for I/O.
struct Archive {
    root: PathBuf,
    format: Arc<Format>,
    bounds: Bounds,
    open: HashMap<PartitionKey, OpenFile>,
    /// Next part number per partition directory (known since the last roll).
    numbers: HashMap<PathBuf, u64>,
    /// Samples in open files.
    pending_samples: usize,
    /// Queue position after the last sample the sink processed (disk queues).
    position: Option<Position>,
    /// When the first sample went into the open files.
    opened_at: Option<Instant>,
    metrics: ParquetMetrics,
    name: String,
}

impl Archive {
    fn file_for(&mut self, key: &PartitionKey) -> Result<&mut OpenFile, WriteError> {
        if !self.open.contains_key(key) {
            let dir = self.root.join(key.dir());
            let number = match self.numbers.get(&dir) {
                Some(n) => *n,
                None => {
                    partition::next_part_number(&dir).map_err(|source| WriteError::Io { path: dir.clone(), source })?
                }
            };
            let file = OpenFile::create(dir.clone(), number, &self.format)?;
            self.numbers.insert(dir, number + 1);
            self.open.insert(key.clone(), file);
            self.opened_at.get_or_insert_with(Instant::now);
        }
        Ok(self.open.get_mut(key).expect("inserted above"))
    }

    fn write_chunk(&mut self, chunk: Chunk) -> Result<(), ArchiveError> {
        for (key, rows) in chunk.rows {
            let n = rows.len();
            let format = self.format.clone();
            let batch =
                rows.finish(&format).map_err(|source| WriteError::Arrow { path: self.root.join(key.dir()), source })?;
            self.file_for(&key)?.write(&batch)?;
            self.pending_samples += n;
        }
        if chunk.end.is_some() {
            self.position = chunk.end;
        }
        Ok(())
    }

    fn largest_file(&self) -> u64 {
        self.open.values().map(OpenFile::estimated_bytes).max().unwrap_or(0)
    }

    /// Finishes every open file and makes it visible (see `commit.rs`).
    fn roll(&mut self, reason: RollReason) -> Result<(), ArchiveError> {
        let files: Vec<OpenFile> = self.open.drain().map(|(_, f)| f).collect();
        self.opened_at = None;
        self.pending_samples = 0;
        self.numbers.clear();
        if files.is_empty() {
            return Ok(());
        }
        let temps: Vec<PathBuf> = files.iter().map(|f| f.temp.clone()).collect();
        let result = self.commit_files(files);
        match &result {
            Ok(bytes) => {
                self.metrics.rolled(reason);
                self.metrics.files_written.increment(temps.len() as u64);
                self.metrics.bytes_written.increment(*bytes);
                tracing::debug!(sink = %self.name, files = temps.len(), bytes, reason = reason.as_str(), "parquet files rolled");
            }
            Err(_) => {
                self.metrics.roll_failures.increment(1);
                for t in &temps {
                    let _ = std::fs::remove_file(t);
                }
            }
        }
        result.map(|_| ())
    }

    fn commit_files(&mut self, files: Vec<OpenFile>) -> Result<u64, ArchiveError> {
        let mut committed = Vec::with_capacity(files.len());
        let mut bytes = 0;
        for f in files {
            let dir = f.dir.clone();
            let number = f.number;
            bytes += f.finish()?;
            let rel = dir.strip_prefix(&self.root).map(PathBuf::from).unwrap_or(dir);
            committed.push(CommittedFile { dir: rel, number });
        }
        let commit = Commit { watermark: self.position, files: committed };
        commit::write(&self.root, &commit)?;
        let mut dirs = HashSet::new();
        for f in &commit.files {
            commit::publish(&self.root, f)?;
            dirs.insert(self.root.join(&f.dir));
        }
        for d in dirs {
            writer::sync_dir(&d).map_err(|source| WriteError::Io { path: d.clone(), source })?;
        }
        Ok(bytes)
    }

    /// Drops every open file without making it visible.
    fn abandon(&mut self) {
        for (_, f) in self.open.drain() {
            let temp = f.temp.clone();
            drop(f);
            let _ = std::fs::remove_file(&temp);
        }
        self.opened_at = None;
        self.pending_samples = 0;
        self.numbers.clear();
    }

    fn apply_retention(&mut self) {
        let Some(keep_for) = self.bounds.retention else { return };
        let cutoff = crate::model::now_ms() - keep_for.as_millis() as i64;
        let open: HashSet<PathBuf> = self.open.values().map(|f| f.dir.clone()).collect();
        match retention::sweep(&self.root, cutoff, &open) {
            Ok(0) => {}
            Ok(n) => {
                self.metrics.partitions_deleted.increment(n as u64);
                tracing::info!(sink = %self.name, partitions = n, "parquet partitions past retention deleted");
            }
            Err(e) => tracing::warn!(sink = %self.name, error = %e, "parquet retention sweep failed"),
        }
    }
}

/// The sink: one lane.
pub struct ParquetSink {
    name: String,
    archive: Option<Archive>,
    /// Records below this were replayed from an earlier run (disk queues).
    replay_end: Option<u64>,
    /// Replayed samples before this are already in a committed file.
    watermark: Option<Position>,
    /// Batches delivered since the last roll, not yet settled.
    pending_batches: usize,
    outcomes: Vec<(usize, Result<(), SinkError>)>,
    next_retention: Option<Instant>,
    metrics: ParquetMetrics,
}

impl ParquetSink {
    /// Opens the archive at `root`: recovers from a crash (finishes the last
    /// commit, removes unfinished files) and applies retention.
    pub fn open(
        name: &str,
        config: &ParquetSinkConfig,
        root: PathBuf,
        replay_end: Option<u64>,
    ) -> Result<ParquetSink, ArchiveError> {
        let metrics = ParquetMetrics::new(name);
        writer::create_dir_durably(&root).map_err(|source| WriteError::Io { path: root.clone(), source })?;
        let recovered = commit::recover(&root)?;
        if recovered.finished + recovered.removed > 0 {
            tracing::info!(
                sink = name, path = %root.display(), finished = recovered.finished, removed = recovered.removed,
                "parquet archive recovered: committed files made visible, unfinished files removed"
            );
        }
        metrics.temp_files_removed.increment(recovered.removed as u64);
        let format = Format::new(&config.columns, config.row_group_rows, config.zstd_level)
            .map_err(|source| WriteError::Parquet { path: root.clone(), source })?;
        let bounds = Bounds {
            roll_every: config.roll_every,
            max_file_bytes: config.max_file_bytes,
            max_open_files: config.max_open_files,
            max_pending: config.effective_max_pending(),
            retention: config.retention,
        };
        let mut archive = Archive {
            root,
            format: Arc::new(format),
            bounds,
            open: HashMap::new(),
            numbers: HashMap::new(),
            pending_samples: 0,
            position: recovered.watermark,
            opened_at: None,
            metrics: metrics.clone(),
            name: name.to_string(),
        };
        archive.apply_retention();
        let next_retention = config.retention.map(|_| Instant::now() + RETENTION_EVERY);
        Ok(ParquetSink {
            name: name.to_string(),
            archive: Some(archive),
            replay_end,
            watermark: recovered.watermark,
            pending_batches: 0,
            outcomes: Vec::new(),
            next_retention,
            metrics,
        })
    }

    fn error(&self, e: &ArchiveError) -> SinkError {
        SinkError::Io { sink: self.name.clone(), source: std::io::Error::other(e.to_string()) }
    }

    /// Whether a replayed sample is already in a committed file.
    fn already_archived(&self, seq: Option<u64>, index: usize) -> bool {
        match (seq, self.replay_end, self.watermark) {
            (Some(seq), Some(end), Some(w)) => seq < end && Position { seq, index: index as u64 } < w,
            _ => false,
        }
    }

    /// Splits a batch into chunks between the rolls `max_open_files` forces.
    fn plan(&self, batch: &SinkBatch, archive: &Archive) -> (Vec<Chunk>, usize, usize) {
        let format = &archive.format;
        let max_open = archive.bounds.max_open_files;
        let mut chunks = Vec::new();
        let mut open: HashSet<PartitionKey> = archive.open.keys().cloned().collect();
        let mut rows: Vec<(PartitionKey, Rows)> = Vec::new();
        // Metric → (hour, slot in `rows`): found without allocating per sample.
        let mut index: HashMap<String, Vec<(i64, usize)>> = HashMap::new();
        let mut end = None;
        let (mut skipped, mut unplaceable) = (0, 0);
        for (sample, seq, i) in batch.samples_with_position() {
            let here = seq.map(|seq| Position { seq, index: i as u64 + 1 });
            if self.already_archived(seq, i) {
                skipped += 1;
                end = here.or(end);
                continue;
            }
            let name = sample.name();
            let Some(hour) = PartitionKey::hour_of(name, sample.timestamp_ms) else {
                unplaceable += 1;
                end = here.or(end);
                continue;
            };
            let known = index.get(name).and_then(|v| v.iter().find(|(h, _)| *h == hour)).map(|(_, slot)| *slot);
            let slot = match known {
                Some(slot) => slot,
                None => {
                    let key = PartitionKey { metric: name.to_string(), hour };
                    if !open.contains(&key) && open.len() >= max_open {
                        chunks.push(Chunk { rows: std::mem::take(&mut rows), end, roll_after: true });
                        index.clear();
                        open.clear();
                    }
                    open.insert(key.clone());
                    index.entry(name.to_string()).or_default().push((hour, rows.len()));
                    rows.push((key, Rows::new(format)));
                    rows.len() - 1
                }
            };
            rows[slot].1.push(format, sample);
            end = here.or(end);
        }
        chunks.push(Chunk { rows, end, roll_after: false });
        (chunks, skipped, unplaceable)
    }

    /// Runs `work` on the archive on a blocking thread.
    async fn with_archive<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Archive) -> T + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let Some(mut archive) = self.archive.take() else {
            return Err(ArchiveError::Lost("an earlier write panicked".into()));
        };
        match tokio::task::spawn_blocking(move || {
            let out = work(&mut archive);
            (archive, out)
        })
        .await
        {
            Ok((archive, out)) => {
                self.metrics.open_files.set(archive.open.len() as f64);
                self.metrics.pending_samples.set(archive.pending_samples as f64);
                self.archive = Some(archive);
                Ok(out)
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "parquet writer thread failed; the sink stops writing");
                Err(ArchiveError::Lost(e.to_string()))
            }
        }
    }

    /// Records how the batches delivered so far ended.
    fn settle_pending(&mut self, outcome: &Result<(), ArchiveError>) {
        if self.pending_batches == 0 {
            return;
        }
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error(e)),
        };
        self.outcomes.push((std::mem::take(&mut self.pending_batches), result));
    }

    async fn roll(&mut self, reason: RollReason) {
        let outcome = self
            .with_archive(move |a| {
                let r = a.roll(reason);
                a.apply_retention();
                r
            })
            .await
            .and_then(|r| r);
        if let Err(e) = &outcome {
            tracing::error!(sink = %self.name, error = %e, "parquet roll failed; its samples are dropped");
        }
        self.settle_pending(&outcome);
    }
}

impl Sink for ParquetSink {
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        let n = batch.len();
        let Some(archive) = self.archive.as_ref() else {
            return Delivery::none(n, self.error(&ArchiveError::Lost("an earlier write panicked".into())));
        };
        let (chunks, skipped, unplaceable) = self.plan(batch, archive);
        self.metrics.replay_skipped_samples.increment(skipped as u64);
        // Each chunk but the last ends in a roll that settles the batches
        // before this one and makes the chunk's samples durable.
        let mut durable = skipped;
        let mut failure = None;
        for chunk in chunks {
            let roll_after = chunk.roll_after;
            let rows: usize = chunk.rows.iter().map(|(_, r)| r.len()).sum();
            let r = self
                .with_archive(move |a| {
                    a.write_chunk(chunk)?;
                    if roll_after {
                        a.roll(RollReason::OpenFiles)?;
                    }
                    Ok::<_, ArchiveError>(())
                })
                .await
                .and_then(|r| r);
            match r {
                Ok(()) if roll_after => {
                    durable += rows;
                    self.settle_pending(&Ok(()));
                }
                Ok(()) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // The open files are lost: nothing in them becomes visible.
            tracing::error!(sink = %self.name, error = %e, "parquet write failed; open files abandoned");
            let _ = self.with_archive(|a| a.abandon()).await;
            let error = self.error(&e);
            self.settle_pending(&Err(e));
            // This batch's outcome is decided now; it settles with the next roll.
            self.pending_batches += 1;
            let mut d = Delivery::partial(durable, n - durable - unplaceable, error);
            if unplaceable > 0 {
                d.dropped.push((unplaceable, crate::telemetry::DropReason::Rejected));
            }
            return d;
        }
        self.pending_batches += 1;
        let (empty, due) = {
            let a = self.archive.as_ref().expect("restored after each write");
            let due = if a.pending_samples >= a.bounds.max_pending {
                Some(RollReason::Pending)
            } else if a.largest_file() >= a.bounds.max_file_bytes {
                Some(RollReason::Size)
            } else {
                None
            };
            (a.open.is_empty(), due)
        };
        if let Some(reason) = due {
            self.roll(reason).await;
        } else if empty {
            // Nothing of it waits in a file (all skipped or unplaceable).
            self.settle_pending(&Ok(()));
        }
        let mut d = Delivery::all(n - unplaceable);
        if unplaceable > 0 {
            d.failed = Some((
                unplaceable,
                SinkError::Unrepresentable {
                    sink: self.name.clone(),
                    count: unplaceable,
                    message: "no metric name, or a timestamp outside the calendar".into(),
                },
            ));
        }
        d
    }

    fn defers_settlement(&self) -> bool {
        true
    }

    fn deadline(&self) -> Option<Instant> {
        let roll = self.archive.as_ref().and_then(|a| a.opened_at.map(|t| t + a.bounds.roll_every));
        match (roll, self.next_retention) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let roll_due =
            self.archive.as_ref().and_then(|a| a.opened_at.map(|t| t + a.bounds.roll_every)).is_some_and(|t| t <= now);
        if roll_due {
            self.roll(RollReason::Age).await;
        }
        if self.next_retention.is_some_and(|t| t <= now) {
            self.next_retention = Some(now + RETENTION_EVERY);
            let _ = self.with_archive(|a| a.apply_retention()).await;
        }
    }

    fn take_settled(&mut self) -> Vec<(usize, Result<(), SinkError>)> {
        std::mem::take(&mut self.outcomes)
    }

    async fn close(&mut self) {
        self.roll(RollReason::Shutdown).await;
        // Batches with nothing in files are settled too.
        self.settle_pending(&Ok(()));
    }
}

#[cfg(test)]
mod tests;
