//! `queue.type = "disk"`: a segment log under `data_dir/<sink>/`.
//!
//! ```text
//! data_dir/<sink>/
//!   lock                      held (flock) while a process owns the queue
//!   cursor                    lowest sequence number not yet settled
//!   00000000000000000000.seg  segments: a file header, then checksummed records
//!   00000000000000001234.seg  (the newest one is appended to)
//! ```
//!
//! The fanout's [`push`](DiskQueue::push) encodes a batch into one record and
//! appends it (pushes from several shards serialize on one lock; encoding
//! happens outside it). The batch's acknowledgement is held until the record
//! is synced under the `fsync` policy, so "durably queued" completes the ack.
//! A reader thread reads records back in order, decodes them ahead of the
//! sink worker (bounded), and registers them as in flight; a record leaves
//! the queue only once the worker has settled all of its samples. A sync
//! thread syncs, completes held acks, persists the cursor, deletes segments
//! the cursor has passed and updates the queue gauges.
//!
//! After a crash, [`open`](DiskQueue::open) scans the segments, cuts off a torn
//! or damaged tail, skips damaged stretches, counts what was lost as
//! `reason="corrupt"` and replays every unsettled record in order. Records
//! between the persisted cursor and the crash may be delivered twice.

// `codec` and `segment` are public for the fuzz targets (`fuzz/`).
pub mod codec;
mod cursor;
pub mod segment;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::{Notify, mpsc};

use super::{FsyncPolicy, Ledger, QueueItem, WhenFull};
use crate::model::{Ack, Batch, now_ms};
use crate::telemetry::{DiskQueueMetrics, DropReason, SinkHealth};

/// Smallest accepted `max_bytes`.
pub const MIN_MAX_BYTES: u64 = 1 << 20;
const MIN_SEGMENT_BYTES: u64 = 64 << 10;
const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// Decoded samples waiting for the sink worker; bounds the reader's memory.
pub const READ_AHEAD_SAMPLES: usize = 20_000;
/// How often the sync thread persists the cursor and updates gauges.
const TICK: Duration = Duration::from_millis(100);
/// Encode buffers larger than this are not kept for reuse.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    #[error("disk queue {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("disk queue {dir} is in use by another process (it holds {dir}/lock)")]
    Locked { dir: PathBuf },
    #[error("disk queue file {path}: {source}; move it out of the queue directory")]
    Unrecognized { path: PathBuf, source: segment::UnrecognizedSegment },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DiskQueueError + '_ {
    move |source| DiskQueueError::Io { path: path.to_path_buf(), source }
}

/// How a disk queue is bounded and synced.
#[derive(Debug, Clone, Copy)]
pub struct DiskQueueOptions {
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: FsyncPolicy,
    /// Size at which the newest segment is closed and a new one started.
    pub segment_bytes: u64,
}

impl DiskQueueOptions {
    pub fn new(max_bytes: u64, when_full: WhenFull, fsync: FsyncPolicy) -> Self {
        let segment_bytes = (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
        DiskQueueOptions { max_bytes, when_full, fsync, segment_bytes }
    }
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    file: Arc<File>,
    /// End of the last complete record; nothing past it is read.
    len: u64,
    /// Unsettled records when the queue was opened plus every record appended since.
    live_records: u64,
    live_samples: u64,
    live_bytes: u64,
    first_appended_ms: Option<i64>,
    /// Damaged byte ranges found at start-up.
    skips: Vec<(u64, u64)>,
}

/// Where the reader is, and how much of its segment's live data it has read.
struct ReadPos {
    segment: u64,
    offset: u64,
    /// Sequence number the next record is expected to have (at least).
    seq: u64,
    records: u64,
    samples: u64,
    bytes: u64,
    last_appended_ms: Option<i64>,
}

struct InFlight {
    seq: u64,
    bytes: u64,
    appended_ms: i64,
    settled: bool,
}

struct State {
    segments: VecDeque<Segment>,
    next_seq: u64,
    read: ReadPos,
    /// Bumped whenever someone other than the reader moves `read`.
    read_gen: u64,
    unread_records: u64,
    read_ahead_samples: usize,
    /// Records handed to the worker and not yet settled, in sequence order.
    inflight: VecDeque<InFlight>,
    /// Unsettled records (unread and in flight) and their bytes.
    records: u64,
    bytes: u64,
    closed: bool,
    stopping: bool,
    /// Segments closed since the last sync (the newest one is synced anyway).
    unsynced: Vec<Arc<File>>,
    dirty: bool,
    dir_dirty: bool,
    /// Acks of appended records, completed once the records are synced.
    held_acks: VecDeque<(u64, Ack)>,
    /// Records below this were appended before a sync that failed. A later
    /// sync that succeeds proves nothing about them (Linux reports a
    /// writeback error once, then forgets the lost pages), so their acks are
    /// released only once the sink has settled the records.
    tainted_below: u64,
    persisted_cursor: u64,
}

impl State {
    fn segment_index(&self, first_seq: u64) -> Option<usize> {
        self.segments.binary_search_by_key(&first_seq, |s| s.first_seq).ok()
    }

    /// The lowest unsettled sequence number: everything below may be forgotten.
    fn cursor(&self) -> u64 {
        self.inflight.front().map_or(self.read.seq, |f| f.seq)
    }

    /// Moves the read position past the end of finished segments and over damaged stretches.
    fn normalize_read(&mut self) {
        loop {
            let Some(i) = self.segment_index(self.read.segment) else { return };
            let seg = &self.segments[i];
            if let Some(&(_, to)) = seg.skips.iter().find(|(from, _)| *from == self.read.offset) {
                self.read.offset = to;
                continue;
            }
            if self.read.offset < seg.len || i + 1 == self.segments.len() {
                return;
            }
            let next = &self.segments[i + 1];
            self.read = ReadPos::at_start(next, next.first_seq);
        }
    }

    /// Drops the unread rest of the reader's segment (`drop_oldest`, or a
    /// record that fails its checksum at run time); returns `(records, samples)`.
    fn drop_rest_of_read_segment(&mut self) -> (u64, u64) {
        self.normalize_read();
        let Some(i) = self.segment_index(self.read.segment) else { return (0, 0) };
        let last = i + 1 == self.segments.len();
        let seg = &self.segments[i];
        let records = seg.live_records - self.read.records;
        let samples = seg.live_samples - self.read.samples;
        let bytes = seg.live_bytes - self.read.bytes;
        if records == 0 {
            return (0, 0);
        }
        self.read = if last {
            ReadPos {
                segment: seg.first_seq,
                offset: seg.len,
                seq: self.next_seq,
                records: seg.live_records,
                samples: seg.live_samples,
                bytes: seg.live_bytes,
                last_appended_ms: None,
            }
        } else {
            let next = &self.segments[i + 1];
            ReadPos::at_start(next, next.first_seq)
        };
        self.read_gen += 1;
        self.unread_records -= records;
        self.records -= records;
        self.bytes -= bytes;
        (records, samples)
    }

    /// Age of the oldest unsettled record, if any.
    fn oldest_appended_ms(&self) -> Option<i64> {
        if let Some(f) = self.inflight.front() {
            return Some(f.appended_ms);
        }
        if self.unread_records == 0 {
            return None;
        }
        if self.read.records == 0 {
            let seg = self.segment_index(self.read.segment).map(|i| &self.segments[i]);
            return seg.and_then(|s| s.first_appended_ms);
        }
        self.read.last_appended_ms
    }
}

impl ReadPos {
    fn at_start(seg: &Segment, seq: u64) -> ReadPos {
        ReadPos {
            segment: seg.first_seq,
            offset: segment::FILE_HEADER_LEN,
            seq,
            records: 0,
            samples: 0,
            bytes: 0,
            last_appended_ms: None,
        }
    }
}

struct Shared {
    dir: PathBuf,
    options: DiskQueueOptions,
    state: Mutex<State>,
    /// Wakes the reader: something to read, room to read ahead, closing.
    reader_wake: Condvar,
    /// Wakes the sync thread: something appended (with `fsync = "always"`), stopping.
    sync_wake: Condvar,
    not_full: Notify,
    ledger: Ledger,
    metrics: DiskQueueMetrics,
    /// Told when syncing fails (the sink is unhealthy) and when it works again.
    health: std::sync::OnceLock<SinkHealth>,
    /// Holds the directory's lock for the life of the queue.
    _lock: File,
}

/// One record handed to the sink worker; see [`QueueItem::settle`].
pub struct RecordToken {
    seq: u64,
    samples: usize,
    settled: AtomicUsize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecordToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordToken").field("seq", &self.seq).field("samples", &self.samples).finish()
    }
}

impl RecordToken {
    /// The record's sequence number in its queue.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn settle(&self, n: usize) {
        let before = self.settled.fetch_add(n, Ordering::AcqRel);
        if before < self.samples && before + n >= self.samples {
            self.shared.commit(self.seq);
        }
    }
}

/// A durable, bounded queue of batches for one sink.
pub struct DiskQueue {
    shared: Arc<Shared>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<QueueItem>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Records below this sequence number were on disk when the queue was
    /// opened (replays); those at or above it were pushed by this process.
    replay_end: u64,
}

thread_local! {
    static ENCODE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl DiskQueue {
    /// Opens (or creates) the queue in `dir`, recovering and replaying what is there.
    pub fn open(dir: &Path, options: DiskQueueOptions, ledger: Ledger) -> Result<DiskQueue, DiskQueueError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DiskQueueError::Locked { dir: dir.to_path_buf() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(DiskQueueError::Io { path: lock_path, source: e }),
        }
        let sink = ledger.name().to_string();
        let stored_cursor = cursor::read(dir).map_err(io_error(dir))?;
        if stored_cursor.is_none() && dir.join(cursor::FILE).exists() {
            tracing::warn!(sink, dir = %dir.display(), "queue cursor is damaged; replaying every record on disk (duplicates possible)");
        }
        let cursor = stored_cursor.unwrap_or(0);

        let mut segments = VecDeque::new();
        let (mut lost_records, mut lost_samples, mut lost_bytes) = (0u64, 0u64, 0u64);
        let mut max_seq: Option<u64> = None;
        let mut read: Option<ReadPos> = None;
        for (first_seq, path) in segment::list(dir).map_err(io_error(dir))? {
            let data = std::fs::read(&path).map_err(io_error(&path))?;
            let scan = segment::scan(&data, first_seq, cursor)
                .map_err(|source| DiskQueueError::Unrecognized { path: path.clone(), source })?;
            drop(data);
            lost_records += scan.lost_records;
            lost_samples += scan.lost_samples;
            lost_bytes += scan.lost_bytes;
            if scan.lost_bytes > 0 {
                tracing::warn!(
                    sink, file = %path.display(), records = scan.lost_records, samples = scan.lost_samples,
                    bytes = scan.lost_bytes, cut_at = scan.good_end, "queue segment damaged; keeping the good records"
                );
            }
            max_seq = max_seq.max(scan.last_seq);
            if scan.live_records == 0 {
                std::fs::remove_file(&path).map_err(io_error(&path))?;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_error(&path))?;
            if scan.truncated {
                file.set_len(scan.good_end).map_err(io_error(&path))?;
                file.sync_all().map_err(io_error(&path))?;
            }
            let seg = Segment {
                first_seq,
                path,
                file: Arc::new(file),
                len: scan.good_end,
                live_records: scan.live_records,
                live_samples: scan.live_samples,
                live_bytes: scan.live_bytes,
                first_appended_ms: scan.first_live_appended_ms,
                skips: scan.skips,
            };
            if read.is_none() {
                let (offset, seq) = scan.first_live.unwrap_or((segment::FILE_HEADER_LEN, first_seq));
                read = Some(ReadPos { offset, ..ReadPos::at_start(&seg, seq) });
            }
            segments.push_back(seg);
        }
        let next_seq = max_seq.map_or(0, |m| m + 1).max(cursor);
        let (records, samples, bytes) = segments
            .iter()
            .fold((0, 0, 0), |(r, s, b), seg| (r + seg.live_records, s + seg.live_samples, b + seg.live_bytes));

        let active = new_segment(dir, next_seq)?;
        segments.push_back(active);
        let read = read.unwrap_or_else(|| ReadPos::at_start(segments.back().expect("just pushed"), next_seq));
        cursor::sync_dir(dir).map_err(io_error(dir))?;

        let metrics = ledger.metrics.disk_queue();
        metrics.capacity_bytes.set(options.max_bytes as f64);
        ledger.offered((samples + lost_samples) as usize);
        ledger.refused(DropReason::Corrupt, lost_samples as usize);
        ledger.enqueued(samples as usize);
        metrics.replayed_samples.increment(samples);
        if records > 0 || lost_bytes > 0 {
            tracing::info!(
                sink, dir = %dir.display(), records, samples, bytes, lost_records, lost_samples,
                "disk queue opened with records from an earlier run; replaying them in order"
            );
        }

        let state = State {
            segments,
            next_seq,
            read,
            read_gen: 0,
            unread_records: records,
            read_ahead_samples: 0,
            inflight: VecDeque::new(),
            records,
            bytes,
            closed: false,
            stopping: false,
            unsynced: Vec::new(),
            dirty: false,
            dir_dirty: false,
            held_acks: VecDeque::new(),
            tainted_below: 0,
            persisted_cursor: cursor,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(state),
            reader_wake: Condvar::new(),
            sync_wake: Condvar::new(),
            not_full: Notify::new(),
            ledger,
            metrics,
            health: std::sync::OnceLock::new(),
            _lock: lock,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let spawn = |role: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(format!("tsrelay-queue-{role}")).spawn(f).map_err(io_error(dir))
        };
        let reader = {
            let shared = shared.clone();
            spawn("read", Box::new(move || read_loop(&shared, &tx)))?
        };
        let syncer = {
            let shared = shared.clone();
            spawn("sync", Box::new(move || sync_loop(&shared)))?
        };
        Ok(DiskQueue {
            shared,
            rx: tokio::sync::Mutex::new(rx),
            threads: Mutex::new(vec![reader, syncer]),
            replay_end: next_seq,
        })
    }

    /// Sequence numbers below this belong to records replayed from an earlier run.
    pub fn replay_end(&self) -> u64 {
        self.replay_end
    }

    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    /// Reports sync failures on `health` (the sink turns unhealthy at once:
    /// acknowledgements wait while records cannot be made durable).
    pub fn set_health(&self, health: SinkHealth) {
        let _ = self.shared.health.set(health);
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends a batch as one record; applies `when_full` to bytes. With
    /// `block` this waits for room (added to `tsrelay_fanout_blocked_seconds_total`).
    /// The batch's ack completes once the record is synced under the fsync policy.
    pub async fn push(&self, batch: Arc<Batch>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        let shared = &self.shared;
        shared.ledger.offered(n);
        let mut record = ENCODE_BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
        codec::encode_body(&batch.samples, &mut record);
        let need = record.len() as u64;
        let mut blocked_since: Option<Instant> = None;
        loop {
            let notified = shared.not_full.notified();
            tokio::pin!(notified);
            {
                let mut st = shared.state.lock();
                if st.closed {
                    drop(st);
                    batch.mark_dropped();
                    shared.ledger.refused(DropReason::Shutdown, n);
                    // Counted, but not queued: this sink's share of the ack fails.
                    drop(batch.ack.clone());
                    break;
                }
                let fits = |st: &State| st.bytes + need <= shared.options.max_bytes || st.records == 0;
                let admit = fits(&st)
                    || match shared.options.when_full {
                        WhenFull::Block => {
                            notified.as_mut().enable();
                            false
                        }
                        WhenFull::DropNewest => {
                            drop(st);
                            batch.mark_dropped();
                            shared.ledger.refused(DropReason::QueueFull, n);
                            break;
                        }
                        WhenFull::DropOldest => {
                            // Only unread records can go; what the worker holds stays
                            // (a bounded overshoot, like an oversized batch in an empty queue).
                            let mut evicted = 0;
                            while !fits(&st) {
                                let (records, samples) = st.drop_rest_of_read_segment();
                                if records == 0 {
                                    break;
                                }
                                evicted += samples;
                            }
                            shared.ledger.evicted(DropReason::QueueFull, evicted as usize);
                            true
                        }
                    };
                if admit {
                    let appended = shared.append(&mut st, &mut record, &batch);
                    drop(st);
                    match appended {
                        Ok(()) => {
                            shared.ledger.enqueued(n);
                            shared.reader_wake.notify_one();
                            if shared.options.fsync == FsyncPolicy::Always {
                                shared.sync_wake.notify_one();
                            }
                        }
                        Err(e) => {
                            batch.mark_dropped();
                            shared.ledger.refused(DropReason::QueueFull, n);
                            tracing::error!(sink = shared.ledger.name(), dir = %shared.dir.display(), error = %e, samples = n,
                                "cannot append to the disk queue; samples dropped");
                        }
                    }
                    break;
                }
            }
            blocked_since.get_or_insert_with(Instant::now);
            notified.await;
        }
        if let Some(t) = blocked_since {
            shared.ledger.metrics.fanout_blocked_seconds.increment(t.elapsed().as_secs_f64());
        }
        if record.capacity() <= KEEP_BUFFER_BYTES {
            ENCODE_BUFFER.with(|b| *b.borrow_mut() = record);
        }
    }

    /// Takes the next decoded record without waiting.
    pub fn try_pop(&self) -> Option<QueueItem> {
        let item = self.rx.try_lock().ok()?.try_recv().ok()?;
        self.shared.handed_out(item.len());
        Some(item)
    }

    /// Waits for the next record; `None` once closed and everything read. Cancel-safe.
    pub async fn pop(&self) -> Option<QueueItem> {
        let item = self.rx.lock().await.recv().await?;
        self.shared.handed_out(item.len());
        Some(item)
    }

    /// No more pushes; the reader hands out what is left, then `pop` sees `None`.
    pub fn close(&self) {
        self.shared.state.lock().closed = true;
        self.shared.reader_wake.notify_all();
        self.shared.not_full.notify_waiters();
    }

    /// Stops the threads after a last sync and a durable cursor. What was not
    /// settled stays on disk for the next start. Idempotent.
    pub fn shutdown(&self) {
        {
            let mut st = self.shared.state.lock();
            st.closed = true;
            st.stopping = true;
        }
        self.shared.reader_wake.notify_all();
        self.shared.sync_wake.notify_all();
        self.shared.not_full.notify_waiters();
        if let Ok(mut rx) = self.rx.try_lock() {
            rx.close();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        let st = self.shared.state.lock();
        if st.records > 0 {
            tracing::info!(
                sink = self.shared.ledger.name(),
                records = st.records,
                bytes = st.bytes,
                "records kept in the disk queue for the next start"
            );
        }
    }

    /// Unsettled records and their bytes.
    pub fn len(&self) -> (u64, u64) {
        let st = self.shared.state.lock();
        (st.records, st.bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.shared.state.lock().records == 0
    }
}

impl Drop for DiskQueue {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn new_segment(dir: &Path, first_seq: u64) -> Result<Segment, DiskQueueError> {
    let path = dir.join(segment::file_name(first_seq));
    let file =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).map_err(io_error(&path))?;
    file.write_all_at(&segment::file_header(), 0).map_err(io_error(&path))?;
    Ok(Segment {
        first_seq,
        path,
        file: Arc::new(file),
        len: segment::FILE_HEADER_LEN,
        live_records: 0,
        live_samples: 0,
        live_bytes: 0,
        first_appended_ms: None,
        skips: Vec::new(),
    })
}

impl Shared {
    /// Appends one encoded record (under the state lock, so records land in sequence order).
    fn append(&self, st: &mut State, record: &mut [u8], batch: &Batch) -> Result<(), DiskQueueError> {
        let seq = st.next_seq;
        let appended_ms = now_ms();
        codec::seal(record, batch.len() as u32, seq, appended_ms);
        let len = record.len() as u64;
        let active = st.segments.back().expect("a disk queue always has an active segment");
        if active.len > segment::FILE_HEADER_LEN && active.len + len > self.options.segment_bytes {
            let next = new_segment(&self.dir, seq)?;
            let old = st.segments.back().map(|s| s.file.clone());
            st.unsynced.extend(old);
            st.segments.push_back(next);
            st.dir_dirty = true;
        }
        let active = st.segments.back_mut().expect("a disk queue always has an active segment");
        active.file.write_all_at(record, active.len).map_err(io_error(&active.path))?;
        active.len += len;
        active.live_records += 1;
        active.live_samples += batch.len() as u64;
        active.live_bytes += len;
        active.first_appended_ms.get_or_insert(appended_ms);
        st.next_seq += 1;
        st.records += 1;
        st.unread_records += 1;
        st.bytes += len;
        st.dirty = true;
        if self.options.fsync != FsyncPolicy::Never
            && let Some(ack) = &batch.ack
        {
            st.held_acks.push_back((seq, ack.clone()));
        }
        Ok(())
    }

    fn handed_out(&self, samples: usize) {
        let mut st = self.state.lock();
        st.read_ahead_samples = st.read_ahead_samples.saturating_sub(samples);
        drop(st);
        self.reader_wake.notify_one();
    }

    /// Every sample of record `seq` is settled: it leaves the queue.
    fn commit(&self, seq: u64) {
        let mut st = self.state.lock();
        let Ok(i) = st.inflight.binary_search_by_key(&seq, |f| f.seq) else { return };
        if std::mem::replace(&mut st.inflight[i].settled, true) {
            return;
        }
        let bytes = st.inflight[i].bytes;
        st.records -= 1;
        st.bytes -= bytes;
        while st.inflight.front().is_some_and(|f| f.settled) {
            st.inflight.pop_front();
        }
        drop(st);
        self.not_full.notify_waiters();
    }
}

/// One record read back from disk.
struct ReadRecord {
    seq: u64,
    bytes: u64,
    samples: usize,
    appended_ms: i64,
    batch: Batch,
}

/// The reader thread: reads records in order, decodes them ahead of the
/// worker (up to [`READ_AHEAD_SAMPLES`]) and registers them as in flight.
fn read_loop(shared: &Arc<Shared>, tx: &mpsc::UnboundedSender<QueueItem>) {
    let mut body = Vec::new();
    loop {
        let (file, path, mut offset, end, generation, budget) = {
            let mut st = shared.state.lock();
            loop {
                if st.stopping || (st.closed && st.unread_records == 0) {
                    return;
                }
                if st.unread_records > 0 && st.read_ahead_samples < READ_AHEAD_SAMPLES {
                    break;
                }
                shared.reader_wake.wait(&mut st);
            }
            st.normalize_read();
            let Some(i) = st.segment_index(st.read.segment) else { return };
            let seg = &st.segments[i];
            let next_skip = seg.skips.iter().map(|s| s.0).filter(|&from| from > st.read.offset).min();
            let end = next_skip.unwrap_or(seg.len).min(seg.len);
            (
                seg.file.clone(),
                seg.path.clone(),
                st.read.offset,
                end,
                st.read_gen,
                READ_AHEAD_SAMPLES - st.read_ahead_samples,
            )
        };
        if offset >= end {
            // Appended data not yet visible in this segment: wait for the next append.
            let mut st = shared.state.lock();
            if st.read_gen == generation && !st.stopping {
                shared.reader_wake.wait_for(&mut st, TICK);
            }
            continue;
        }
        let mut records = Vec::new();
        let mut samples = 0usize;
        let mut damaged = false;
        while offset < end && (records.is_empty() || samples < budget) {
            match read_record(&file, offset, end, &mut body) {
                Ok(r) => {
                    offset += r.bytes;
                    samples += r.samples;
                    records.push(r);
                }
                Err(e) => {
                    tracing::error!(sink = shared.ledger.name(), file = %path.display(), offset, error = %e,
                        "queue record unreadable; dropping the rest of its segment");
                    damaged = true;
                    break;
                }
            }
        }
        let mut st = shared.state.lock();
        if st.read_gen != generation {
            // Evicted while we were reading: the evictor counted these records.
            continue;
        }
        let mut items = Vec::with_capacity(records.len());
        for r in records {
            st.read.offset += r.bytes;
            st.read.seq = r.seq + 1;
            st.read.records += 1;
            st.read.samples += r.samples as u64;
            st.read.bytes += r.bytes;
            st.read.last_appended_ms = Some(r.appended_ms);
            st.unread_records -= 1;
            st.read_ahead_samples += r.samples;
            st.inflight.push_back(InFlight { seq: r.seq, bytes: r.bytes, appended_ms: r.appended_ms, settled: false });
            let token =
                RecordToken { seq: r.seq, samples: r.samples, settled: AtomicUsize::new(0), shared: shared.clone() };
            items.push(QueueItem::disk(Arc::new(r.batch), Arc::new(token)));
        }
        if damaged {
            let (_, lost) = st.drop_rest_of_read_segment();
            drop(st);
            shared.ledger.evicted(DropReason::Corrupt, lost as usize);
        } else {
            drop(st);
        }
        for item in items {
            if tx.send(item).is_err() {
                return;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("header checksum mismatch or impossible length")]
    Header,
    #[error("record runs past the end of the segment")]
    Truncated,
    #[error("body checksum mismatch")]
    Body,
    #[error(transparent)]
    Decode(#[from] codec::DecodeError),
}

fn read_record(file: &File, offset: u64, end: u64, body: &mut Vec<u8>) -> Result<ReadRecord, ReadError> {
    let mut header = [0u8; codec::HEADER_LEN];
    file.read_exact_at(&mut header, offset)?;
    let h = codec::RecordHeader::parse(&header).ok_or(ReadError::Header)?;
    if offset + h.record_len() > end {
        return Err(ReadError::Truncated);
    }
    body.resize(h.body_len as usize, 0);
    file.read_exact_at(body, offset + codec::HEADER_LEN as u64)?;
    if !h.body_matches(body) {
        return Err(ReadError::Body);
    }
    let samples = codec::decode_body(body, h.samples as usize)?;
    let mut batch = Batch::new(samples);
    batch.hashes = batch.samples.iter().map(|s| s.labels.series_hash()).collect();
    let age = Duration::from_millis(now_ms().saturating_sub(h.appended_ms).max(0) as u64);
    batch.received_at = Instant::now().checked_sub(age).unwrap_or(batch.received_at);
    if body.capacity() > KEEP_BUFFER_BYTES {
        *body = Vec::new();
    }
    Ok(ReadRecord { seq: h.seq, bytes: h.record_len(), samples: h.samples as usize, appended_ms: h.appended_ms, batch })
}

/// The sync thread: fsync policy, held acks, cursor, segment deletion, gauges.
fn sync_loop(shared: &Arc<Shared>) {
    let sink = shared.ledger.name().to_string();
    let policy = shared.options.fsync;
    let mut last_sync = Instant::now();
    let mut last_housekeeping = Instant::now();
    let mut last_error_log: Option<Instant> = None;
    loop {
        let (files, upto, dir_dirty, stopping) = {
            let mut st = shared.state.lock();
            let until_housekeeping = TICK.saturating_sub(last_housekeeping.elapsed());
            let wait = match policy {
                FsyncPolicy::Always if st.dirty => Duration::ZERO,
                FsyncPolicy::Interval { interval_ms } if st.dirty => {
                    until_housekeeping.min(Duration::from_millis(interval_ms).saturating_sub(last_sync.elapsed()))
                }
                _ => until_housekeeping,
            };
            if !wait.is_zero() && !st.stopping {
                shared.sync_wake.wait_for(&mut st, wait);
            }
            let due = match policy {
                FsyncPolicy::Always => st.dirty,
                FsyncPolicy::Interval { interval_ms } => {
                    st.dirty && last_sync.elapsed() >= Duration::from_millis(interval_ms)
                }
                FsyncPolicy::Never => false,
            } || (st.stopping && st.dirty);
            if due || policy == FsyncPolicy::Never {
                let mut files = std::mem::take(&mut st.unsynced);
                if due {
                    files.extend(st.segments.back().map(|s| s.file.clone()));
                } else {
                    files.clear();
                }
                st.dirty = st.dirty && !due;
                (files, st.next_seq, std::mem::take(&mut st.dir_dirty) && due, st.stopping)
            } else {
                (Vec::new(), 0, false, st.stopping)
            }
        };
        let mut sync_error: Option<String> = None;
        if !files.is_empty() {
            for f in &files {
                if let Err(e) = f.sync_data() {
                    sync_error
                        .get_or_insert_with(|| format!("cannot sync the disk queue in {}: {e}", shared.dir.display()));
                }
            }
            last_sync = Instant::now();
        }
        if dir_dirty && let Err(e) = cursor::sync_dir(&shared.dir) {
            sync_error
                .get_or_insert_with(|| format!("cannot sync the disk queue directory {}: {e}", shared.dir.display()));
        }
        if let Some(error) = &sync_error {
            // Nothing appended since the last good sync is durable: its acks
            // stay held, and the files are synced again on the next turn.
            if last_error_log.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                tracing::error!(sink, error = %error, "disk queue sync failed; acknowledgements held, sink unhealthy");
                last_error_log = Some(Instant::now());
            }
            let mut st = shared.state.lock();
            st.tainted_below = st.tainted_below.max(st.next_seq);
            st.dirty = true;
            st.dir_dirty |= dir_dirty;
            st.unsynced.extend(files.iter().cloned());
            drop(st);
            if let Some(h) = shared.health.get() {
                h.storage_failed(error);
            }
            if !stopping {
                // Not a busy loop against a failing device.
                std::thread::sleep(TICK);
            }
        } else if let Some(h) = shared.health.get() {
            // Healthy again once a sync works and no record that a failed
            // sync may have lost is still waiting for the sink.
            let (tainted, settled) = {
                let st = shared.state.lock();
                (st.tainted_below, st.cursor())
            };
            if tainted <= settled {
                h.storage_recovered();
            }
        }
        let synced_upto = if sync_error.is_none() && (upto > 0 || policy == FsyncPolicy::Never) { upto } else { 0 };
        {
            let mut st = shared.state.lock();
            // Synced, unless tainted by an earlier failed sync; tainted ones
            // once the sink has settled them (below the cursor).
            let (tainted, settled) = (st.tainted_below, st.cursor());
            let releasable = |seq: u64| (seq < synced_upto && seq >= tainted) || (seq < tainted && seq < settled);
            let mut released = Vec::new();
            let mut kept = VecDeque::with_capacity(st.held_acks.len());
            for (seq, ack) in st.held_acks.drain(..) {
                if releasable(seq) { released.push((seq, ack)) } else { kept.push_back((seq, ack)) }
            }
            st.held_acks = kept;
            drop(st);
            for (_, ack) in released {
                ack.settle();
            }
        }
        if stopping || last_housekeeping.elapsed() >= TICK {
            housekeeping(shared, &sink, stopping);
            last_housekeeping = Instant::now();
        }
        if stopping {
            // Acks still held here were not made durable (a sync failed):
            // dropped unsettled, they fail, and the senders send again.
            let held: Vec<_> = shared.state.lock().held_acks.drain(..).collect();
            drop(held);
            return;
        }
    }
}

/// Persists the cursor, deletes segments it has passed, updates gauges.
fn housekeeping(shared: &Shared, sink: &str, stopping: bool) {
    let (cursor, persisted) = {
        let st = shared.state.lock();
        (st.cursor(), st.persisted_cursor)
    };
    if cursor != persisted || stopping {
        match cursor::write(&shared.dir, cursor, stopping) {
            Ok(()) => shared.state.lock().persisted_cursor = cursor,
            Err(e) => tracing::error!(sink, dir = %shared.dir.display(), error = %e, "cannot persist the queue cursor"),
        }
    }
    let mut doomed = Vec::new();
    {
        let mut st = shared.state.lock();
        while st.segments.len() > 1 && st.segments[1].first_seq <= st.persisted_cursor {
            let seg = st.segments.pop_front().expect("checked len");
            if st.read.segment == seg.first_seq {
                // The cursor passed it, so the reader has finished it.
                let seq = st.read.seq.max(st.segments[0].first_seq);
                st.read = ReadPos::at_start(&st.segments[0], seq);
            }
            doomed.push(seg.path);
        }
        let m = &shared.metrics;
        m.bytes.set(st.bytes as f64);
        m.records.set(st.records as f64);
        let age_ms = st.oldest_appended_ms().map_or(0, |t| now_ms().saturating_sub(t).max(0));
        m.oldest_record_age_seconds.set(age_ms as f64 / 1000.0);
    }
    for path in doomed {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(sink, file = %path.display(), error = %e, "cannot delete a finished queue segment");
        }
    }
}

#[cfg(test)]
mod tests;
