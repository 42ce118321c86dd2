//! The shared sink worker: queue → lanes by series hash → batches by size,
//! bytes and age → `Sink::deliver` → accounting. Written once; every sink
//! plugs into it.
//!
//! A sink runs as one or more *lanes* (one [`Sink`] value each, on its own
//! task). Every sample goes to the lane its series hash picks, and a lane
//! delivers one batch at a time, so a series is never in two requests at once
//! and its order survives concurrency and retries. File-like sinks use one lane.
//!
//! Accounting: samples count as `queued` in the [`Ledger`] from the moment
//! they enter the queue until their lane reports them sent or dropped, so
//! `received = sent + dropped + queued` holds at every moment.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Sink;
use super::common::log_throttle::LogThrottle;
use crate::model::{Batch, Sample};
use crate::queue::{Ledger, QueueItem, SinkQueue};
use crate::telemetry::{DropReason, SinkHealth};

/// `batch = { max_samples = 10000, max_bytes = 4194304, max_age_ms = 20 }`:
/// a request goes out when any bound is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most samples in one request.
    #[serde(default = "defaults::max_samples")]
    pub max_samples: usize,
    /// Most bytes in one request before compression, estimated from each
    /// sample's labels as if it were alone in its series (so requests come
    /// out at or below it).
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: usize,
    /// Longest a sample waits for its batch to fill, in milliseconds.
    #[serde(default = "defaults::max_age_ms")]
    pub max_age_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_samples: defaults::max_samples(),
            max_bytes: defaults::max_bytes(),
            max_age_ms: defaults::max_age_ms(),
        }
    }
}

impl BatchConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_samples == 0 {
            return Err("batch.max_samples must be at least 1".into());
        }
        if self.max_bytes == 0 {
            return Err("batch.max_bytes must be at least 1".into());
        }
        Ok(())
    }
}

pub mod defaults {
    pub fn max_samples() -> usize {
        10_000
    }
    pub fn max_bytes() -> usize {
        4 * 1024 * 1024
    }
    /// Short enough for DESIGN §6's p99 of 50 ms at half load: a network sink
    /// splits its batches over up to 8 series lanes, each filling at 1/8 of the rate,
    /// so under moderate load batches leave on age, not size (BENCHMARKS.md).
    pub fn max_age_ms() -> u64 {
        20
    }
}

/// The size [`BatchConfig::max_bytes`] counts for one sample: its labels
/// plus a fixed allowance for value, timestamp and framing.
pub fn estimated_sample_bytes(s: &Sample) -> usize {
    // Packed labels carry their framing (6 bytes a label) already.
    24 + s.labels.packed_len()
}

pub use crate::model::prefetch;

/// Cache lines of a shared label part asked for ahead of use: its header and
/// labels of up to ~200 bytes (the rest is read in order and streams in).
const SHARED_LINES_PREFETCHED: usize = 4;

/// Asks for a sample's labels (separate allocations, usually out of cache
/// by the time a sink reads them) ahead of use. Only the sample itself is
/// read: waiting for the shared part's length first would be the very miss
/// the hint is meant to hide.
#[inline]
pub fn prefetch_labels(sample: &Sample) {
    let (own, shared) = sample.labels.storage();
    for offset in (0..own.len()).step_by(64) {
        prefetch(own.as_ptr().wrapping_add(offset));
    }
    if let Some(base) = shared {
        for line in 0..SHARED_LINES_PREFETCHED {
            prefetch(base.wrapping_add(64 * line));
        }
    }
}

/// Which samples of one pipeline batch a [`SinkBatch`] holds.
#[derive(Debug)]
enum Selection {
    /// Contiguous (one lane takes everything).
    Range(Range<usize>),
    /// Scattered (several lanes share the batch).
    Indices(Vec<usize>),
}

#[derive(Debug)]
struct Part {
    batch: Arc<Batch>,
    /// The queue item the samples came from, settled once they are counted.
    item: QueueItem,
    selection: Selection,
}

impl Part {
    fn count(&self) -> usize {
        match &self.selection {
            Selection::Range(r) => r.len(),
            Selection::Indices(v) => v.len(),
        }
    }

    fn indices(&self) -> PartIndices<'_> {
        match &self.selection {
            Selection::Range(r) => PartIndices::Range(r.clone()),
            Selection::Indices(v) => PartIndices::List(v.iter()),
        }
    }
}

enum PartIndices<'a> {
    Range(Range<usize>),
    List(std::slice::Iter<'a, usize>),
}

impl Iterator for PartIndices<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            PartIndices::Range(r) => r.next(),
            PartIndices::List(it) => it.next().copied(),
        }
    }
}

/// The samples of one outgoing request: selections of shared pipeline
/// batches (never copied). Dropping it releases the batches and so their acks.
#[derive(Debug, Default)]
pub struct SinkBatch {
    parts: Vec<Part>,
    len: usize,
    bytes: usize,
}

impl SinkBatch {
    /// All samples of one batch (for tests, benchmarks and tools).
    pub fn from_batch(batch: Arc<Batch>) -> Self {
        let len = batch.len();
        let bytes = batch.samples.iter().map(estimated_sample_bytes).sum();
        let item = QueueItem::memory(batch.clone());
        SinkBatch { parts: vec![Part { batch, item, selection: Selection::Range(0..len) }], len, bytes }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The estimate [`BatchConfig::max_bytes`] bounds.
    pub fn estimated_bytes(&self) -> usize {
        self.bytes
    }

    fn push_index(&mut self, item: &QueueItem, index: usize, bytes: usize) {
        let batch = &item.batch;
        self.len += 1;
        self.bytes += bytes;
        if let Some(last) = self.parts.last_mut()
            && Arc::ptr_eq(&last.batch, batch)
        {
            match &mut last.selection {
                Selection::Range(r) if r.end == index => r.end += 1,
                Selection::Range(r) => {
                    let mut v: Vec<usize> = r.clone().collect();
                    v.push(index);
                    last.selection = Selection::Indices(v);
                }
                Selection::Indices(v) => v.push(index),
            }
            return;
        }
        self.parts.push(Part {
            batch: batch.clone(),
            item: item.clone(),
            selection: Selection::Range(index..index + 1),
        });
    }

    fn positions(&self) -> impl Iterator<Item = (&Batch, usize)> + '_ {
        self.parts.iter().flat_map(|p| p.indices().map(move |i| (&*p.batch, i)))
    }

    /// The samples, in queue order (per series: arrival order).
    pub fn samples(&self) -> impl Iterator<Item = &Sample> + '_ {
        self.positions().map(|(b, i)| &b.samples[i])
    }

    /// Samples with where they came from: the disk-queue record's sequence
    /// number (none for memory queues) and the sample's index in its batch.
    pub fn samples_with_position(&self) -> impl Iterator<Item = (&Sample, Option<u64>, usize)> + '_ {
        self.parts.iter().flat_map(|p| {
            let seq = p.item.record_seq();
            p.indices().map(move |i| (&p.batch.samples[i], seq, i))
        })
    }

    /// Samples with their series hashes (computed by the shard split).
    pub fn samples_with_hash(&self) -> impl Iterator<Item = (&Sample, u64)> + '_ {
        self.positions().map(|(b, i)| (&b.samples[i], hash_at(b, i)))
    }

    /// The earliest time any of these samples was received.
    pub fn oldest_received(&self) -> Option<std::time::Instant> {
        self.parts.iter().map(|p| p.batch.received_at).min()
    }

    pub fn mark_dropped(&self) {
        for p in &self.parts {
            p.batch.mark_dropped();
        }
    }

    /// Tells the queue these samples are done (delivered or counted as
    /// dropped); a disk queue forgets a record once all of its samples are.
    pub fn settle(&self) {
        for p in &self.parts {
            p.item.settle(p.count());
        }
    }
}

fn hash_at(batch: &Batch, i: usize) -> u64 {
    batch.hashes.get(i).copied().unwrap_or_else(|| batch.samples[i].labels.series_hash())
}

/// Lane of a series: the low half of its hash (the pipeline's shard split
/// uses the high half, so both spread independently).
fn lane_of(hash: u64, lanes: usize) -> usize {
    (((hash & 0xffff_ffff) * lanes as u64) >> 32) as usize
}

/// The worker's end of one lane.
struct Lane {
    tx: mpsc::Sender<SinkBatch>,
    /// The lane task holds a batch (sending or retrying it).
    busy: bool,
    /// Samples in that batch.
    in_flight: usize,
    /// The next batch, filling while the lane is busy.
    pending: SinkBatch,
    /// When `pending` must go out even if not full.
    due: Option<Instant>,
}

/// What the worker waits for.
enum Next {
    Batch(QueueItem),
    /// A lane finished its batch.
    Idle(usize),
    /// An idle lane's batch reached its age before anything arrived.
    Due,
    Closed,
}

/// The worker's only contact with its queue: the next batch, waiting at most
/// until `due` (when some lane must flush). Must be cancel-safe: the worker
/// also listens to its lanes while it waits.
async fn next_batch(queue: &SinkQueue, due: Option<Instant>) -> Next {
    let popped = match due {
        None => queue.pop().await,
        Some(at) => match tokio::time::timeout_at(at, queue.pop()).await {
            Ok(popped) => popped,
            Err(_) => return Next::Due,
        },
    };
    popped.map_or(Next::Closed, Next::Batch)
}

/// Holds per lane at most one batch in flight and one filling, so the
/// worker's share of memory is bounded (`2 × lanes × batch.max_samples`)
/// while the next request is ready the moment the current one ends. With a
/// `limit` (memory queues: half of `queue.max_samples`) it takes nothing more
/// from the queue while it holds that many samples: the queue's bound covers
/// the worker's samples too, and the rest of it stays with samples still
/// waiting, which `drop_oldest` can give up.
struct Worker {
    lanes: Vec<Lane>,
    limit: Option<usize>,
    /// Lane numbers, each sent once a lane has accounted for its batch.
    idle: mpsc::UnboundedReceiver<usize>,
    config: BatchConfig,
    max_age: Duration,
    ledger: Ledger,
}

impl Worker {
    /// Samples taken from the queue and not yet accounted for by a lane.
    fn held(&self) -> usize {
        self.lanes.iter().map(|l| l.pending.len() + l.in_flight).sum()
    }

    async fn next(&mut self, queue: &SinkQueue) -> Next {
        let due = self.lanes.iter().filter(|l| !l.busy).filter_map(|l| l.due).min();
        if self.limit.is_some_and(|limit| self.held() >= limit) {
            let timer = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            return tokio::select! {
                biased;
                Some(lane) = self.idle.recv() => Next::Idle(lane),
                () = timer => Next::Due,
            };
        }
        tokio::select! {
            biased;
            Some(lane) = self.idle.recv() => Next::Idle(lane),
            next = next_batch(queue, due) => next,
        }
    }

    async fn distribute(&mut self, item: QueueItem) {
        const PREFETCH_DISTANCE: usize = 8;
        let batch = item.batch.clone();
        let n = self.lanes.len();
        for i in 0..batch.len() {
            if let Some(ahead) = batch.samples.get(i + PREFETCH_DISTANCE) {
                prefetch_labels(ahead);
            }
            let lane = if n == 1 { 0 } else { lane_of(hash_at(&batch, i), n) };
            let bytes = estimated_sample_bytes(&batch.samples[i]);
            let pending = &self.lanes[lane].pending;
            if !pending.is_empty() && pending.bytes + bytes > self.config.max_bytes {
                self.flush(lane).await;
            }
            let l = &mut self.lanes[lane];
            if l.pending.is_empty() {
                l.due = Some(Instant::now() + self.max_age);
            }
            l.pending.push_index(&item, i, bytes);
            if l.pending.len() >= self.config.max_samples {
                self.flush(lane).await;
            }
        }
    }

    fn ready_to_go(&self, lane: usize, now: Instant) -> bool {
        let l = &self.lanes[lane];
        l.pending.len() >= self.config.max_samples || l.due.is_some_and(|d| d <= now)
    }

    /// Hands over every idle lane's batch that is due.
    async fn flush_due(&mut self, now: Instant) {
        for lane in 0..self.lanes.len() {
            if !self.lanes[lane].busy && self.ready_to_go(lane, now) {
                self.hand_over(lane).await;
            }
        }
    }

    /// A lane finished; its next batch goes at once if it is already due.
    async fn lane_idle(&mut self, lane: usize) {
        self.lanes[lane].busy = false;
        self.lanes[lane].in_flight = 0;
        if self.ready_to_go(lane, Instant::now()) {
            self.hand_over(lane).await;
        }
    }

    /// Sends the lane's pending batch, first waiting until the lane is idle.
    /// Waiting here is what stops the worker popping more than it can hold.
    async fn flush(&mut self, lane: usize) {
        while self.lanes[lane].busy {
            match self.idle.recv().await {
                Some(other) if other != lane => self.lane_idle(other).await,
                Some(_) => {
                    self.lanes[lane].busy = false;
                    self.lanes[lane].in_flight = 0;
                }
                // Every lane task is gone; `hand_over` counts the loss.
                None => break,
            }
        }
        self.hand_over(lane).await;
    }

    /// Gives the lane its pending batch (the lane is idle, so this never waits).
    async fn hand_over(&mut self, lane: usize) {
        let l = &mut self.lanes[lane];
        l.due = None;
        let batch = std::mem::take(&mut l.pending);
        if batch.is_empty() {
            return;
        }
        l.busy = true;
        l.in_flight = batch.len();
        if let Err(mpsc::error::SendError(lost)) = l.tx.send(batch).await {
            // Only if the lane's task died (a panic in the sink): count, don't
            // lose silently, and leave it unsettled so its acknowledgements fail
            // (a disk record stays for the next start).
            l.busy = false;
            l.in_flight = 0;
            tracing::error!(sink = self.ledger.name(), lane, samples = lost.len(), "sink lane stopped; dropping");
            lost.mark_dropped();
            self.ledger.failed(DropReason::Shutdown, lost.len());
        }
    }
}

/// Pulls from `queue` until it is closed and drained, delivering through
/// `lanes` (one [`Sink`] per lane; at least one).
pub async fn run_worker<S: Sink>(lanes: Vec<S>, queue: Arc<SinkQueue>, config: BatchConfig, health: SinkHealth) {
    let ledger = queue.ledger().clone();
    if lanes.is_empty() {
        tracing::error!(sink = ledger.name(), "sink has no lanes; nothing will be delivered");
        return;
    }
    let logs = Arc::new(DropLogs::default());
    let (idle_tx, idle) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let mut worker_lanes = Vec::with_capacity(lanes.len());
    for (number, sink) in lanes.into_iter().enumerate() {
        // The worker only sends to an idle lane, so one slot is all it takes.
        let (tx, rx) = mpsc::channel(1);
        let lane = LaneTask {
            number,
            idle: idle_tx.clone(),
            ledger: ledger.clone(),
            health: health.clone(),
            logs: logs.clone(),
        };
        tasks.spawn(lane.run(sink, rx));
        worker_lanes.push(Lane { tx, busy: false, in_flight: 0, pending: SinkBatch::default(), due: None });
    }
    drop(idle_tx);
    let max_age = Duration::from_millis(config.max_age_ms);
    let limit = queue.worker_limit();
    let mut worker = Worker { lanes: worker_lanes, limit, idle, config, max_age, ledger };
    loop {
        // Checked on every turn, not only when the queue is idle: a busy queue
        // must not starve a lane whose batch fills slowly.
        worker.flush_due(Instant::now()).await;
        match worker.next(&queue).await {
            Next::Batch(batch) => worker.distribute(batch).await,
            Next::Idle(lane) => worker.lane_idle(lane).await,
            Next::Due => {}
            Next::Closed => break,
        }
    }
    for lane in 0..worker.lanes.len() {
        worker.flush(lane).await;
    }
    // Closing the channels lets each lane finish its last batch and close its sink.
    drop(worker);
    while tasks.join_next().await.is_some() {}
}

/// One log throttle per kind of drop, shared by a sink's lanes.
#[derive(Default)]
struct DropLogs {
    rejected: LogThrottle,
    exhausted: LogThrottle,
    other: LogThrottle,
}

impl DropLogs {
    fn for_reason(&self, reason: DropReason) -> &LogThrottle {
        match reason {
            DropReason::Rejected => &self.rejected,
            DropReason::RetryExhausted => &self.exhausted,
            _ => &self.other,
        }
    }
}

/// A lane's task: delivers one batch at a time and does its accounting.
struct LaneTask {
    number: usize,
    idle: mpsc::UnboundedSender<usize>,
    ledger: Ledger,
    health: SinkHealth,
    logs: Arc<DropLogs>,
}

impl LaneTask {
    async fn run<S: Sink>(self, mut sink: S, mut rx: mpsc::Receiver<SinkBatch>) {
        let deferred = sink.defers_settlement();
        // Deferring sinks: delivered batches not yet durable, oldest first.
        let mut held: std::collections::VecDeque<(SinkBatch, super::Delivery)> = std::collections::VecDeque::new();
        loop {
            let deadline = sink.deadline();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let batch = tokio::select! {
                biased;
                batch = rx.recv() => batch,
                () = timer => {
                    sink.tick().await;
                    self.settle_ready(&mut sink, &mut held);
                    continue;
                }
            };
            let Some(batch) = batch else { break };
            if let Some(t) = batch.oldest_received() {
                self.ledger.metrics.pipeline_latency.record(t.elapsed().as_secs_f64());
            }
            let delivery = sink.deliver(&batch).await;
            debug_assert_eq!(delivery.total(), batch.len());
            if deferred {
                held.push_back((batch, delivery));
                self.settle_ready(&mut sink, &mut held);
            } else {
                self.account(&batch, delivery);
                batch.settle();
                // Release the batch (and its acks) before asking for the next one.
                drop(batch);
            }
            let _ = self.idle.send(self.number);
        }
        sink.close().await;
        self.settle_ready(&mut sink, &mut held);
        if !held.is_empty() {
            // The sink could not say what became of them: leave them unsettled
            // (a disk record stays for the next start; acknowledgements fail).
            let n: usize = held.iter().map(|(b, _)| b.len()).sum();
            tracing::error!(sink = self.ledger.name(), samples = n, "sink closed with samples not yet durable");
            for (batch, _) in held.drain(..) {
                batch.mark_dropped();
                self.ledger.failed(DropReason::Shutdown, batch.len());
            }
        }
    }

    /// Settles the held batches a deferring sink reports finished.
    fn settle_ready<S: Sink>(&self, sink: &mut S, held: &mut std::collections::VecDeque<(SinkBatch, super::Delivery)>) {
        for (count, outcome) in sink.take_settled() {
            for _ in 0..count {
                let Some((batch, mut delivery)) = held.pop_front() else {
                    tracing::error!(sink = self.ledger.name(), "sink settled more batches than it holds");
                    return;
                };
                if let Err(e) = &outcome
                    && delivery.delivered > 0
                {
                    let failed = delivery.failed.take().map_or(0, |f| f.0);
                    let source = std::io::Error::other(e.to_string());
                    delivery.failed = Some((
                        failed + delivery.delivered,
                        super::SinkError::Io { sink: self.ledger.name().to_string(), source },
                    ));
                    delivery.delivered = 0;
                }
                self.account(&batch, delivery);
                batch.settle();
            }
        }
    }

    /// Counts one batch's delivery.
    fn account(&self, batch: &SinkBatch, delivery: super::Delivery) {
        let LaneTask { ledger, health, logs, .. } = self;
        ledger.sent(delivery.delivered);
        let dropped_elsewhere: usize = delivery.dropped.iter().map(|d| d.0).sum();
        for &(count, reason) in &delivery.dropped {
            ledger.failed(reason, count);
        }
        if dropped_elsewhere > 0 && delivery.failed.is_none() {
            batch.mark_dropped();
        }
        match delivery.failed {
            None => health.succeeded(),
            Some((count, error)) => {
                batch.mark_dropped();
                let reason = error.reason();
                ledger.failed(reason, count);
                if reason == DropReason::RetryExhausted {
                    health.failed(&error.to_string());
                }
                if let Some(suppressed) = logs.for_reason(reason).check() {
                    tracing::warn!(
                        sink = ledger.name(), samples = count, reason = reason.as_str(),
                        similar_messages_suppressed = suppressed, %error, "samples dropped at sink"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use parking_lot::Mutex;

    use super::*;
    use crate::model::Labels;
    use crate::queue::WhenFull;
    use crate::sinks::{Delivery, SinkError};
    use crate::telemetry::{Health, SinkMetrics};

    /// Records what each lane delivered; optionally slow, optionally failing.
    struct Recorder {
        lane: usize,
        log: Arc<Mutex<Vec<(usize, String, i64)>>>,
        batches: Arc<Mutex<Vec<(usize, usize)>>>,
        in_flight: Arc<Mutex<HashMap<String, usize>>>,
        delay: Duration,
        reject_every: Option<usize>,
        calls: usize,
    }

    impl Sink for Recorder {
        async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
            self.calls += 1;
            let series: Vec<String> = batch.samples().map(|s| s.labels.to_string()).collect();
            {
                let mut busy = self.in_flight.lock();
                for s in &series {
                    if let Some(other) = busy.insert(s.clone(), self.lane)
                        && other != self.lane
                    {
                        panic!("series {s} in flight on lanes {other} and {}", self.lane);
                    }
                }
            }
            tokio::time::sleep(self.delay).await;
            {
                let mut busy = self.in_flight.lock();
                for s in &series {
                    busy.remove(s);
                }
            }
            self.batches.lock().push((self.lane, batch.len()));
            if self.reject_every.is_some_and(|k| self.calls.is_multiple_of(k)) {
                return Delivery::none(batch.len(), SinkError::Rejected { sink: "t".into(), message: "no".into() });
            }
            let mut log = self.log.lock();
            for s in batch.samples() {
                log.push((self.lane, s.labels.to_string(), s.timestamp_ms));
            }
            Delivery::all(batch.len())
        }
    }

    struct Setup {
        queue: Arc<SinkQueue>,
        ledger: Ledger,
        log: Arc<Mutex<Vec<(usize, String, i64)>>>,
        batches: Arc<Mutex<Vec<(usize, usize)>>>,
    }

    fn setup(
        name: &str,
        lanes: usize,
        config: BatchConfig,
        delay: Duration,
        reject_every: Option<usize>,
    ) -> (Setup, tokio::task::JoinHandle<()>) {
        let ledger = Ledger::new(SinkMetrics::new(name));
        let queue =
            Arc::new(SinkQueue::Memory(crate::queue::MemoryQueue::new(1_000_000, WhenFull::Block, ledger.clone())));
        let log = Arc::new(Mutex::new(Vec::new()));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(Mutex::new(HashMap::new()));
        let sinks = (0..lanes)
            .map(|lane| Recorder {
                lane,
                log: log.clone(),
                batches: batches.clone(),
                in_flight: in_flight.clone(),
                delay,
                reject_every,
                calls: 0,
            })
            .collect();
        let health = Health::default().register_sink(name, Duration::from_secs(60));
        let handle = tokio::spawn(run_worker(sinks, queue.clone(), config, health));
        (Setup { queue, ledger, log, batches }, handle)
    }

    fn batch(series: usize, ts: i64) -> Arc<Batch> {
        let samples: Vec<Sample> = (0..series)
            .map(|i| {
                let labels: Labels = [("__name__", "m".to_string()), ("id", format!("{i:04}"))].into_iter().collect();
                Sample::new(labels, 1.0, ts)
            })
            .collect();
        let hashes = samples.iter().map(|s| s.labels.series_hash()).collect();
        Arc::new(Batch { hashes, ..Batch::new(samples) })
    }

    #[tokio::test]
    async fn lanes_keep_each_series_on_one_lane_in_order() {
        let config = BatchConfig { max_samples: 37, ..BatchConfig::default() };
        let (s, handle) = setup("worker-lanes", 4, config, Duration::from_millis(2), None);
        for ts in 0..30 {
            s.queue.push(batch(50, ts)).await;
        }
        s.queue.close();
        handle.await.unwrap();
        let log = s.log.lock();
        assert_eq!(log.len(), 1500);
        let mut last: HashMap<&str, (usize, i64)> = HashMap::new();
        for (lane, series, ts) in log.iter() {
            if let Some((l, t)) = last.insert(series, (*lane, *ts)) {
                assert_eq!(l, *lane, "{series} moved lanes");
                assert!(t < *ts, "{series}: {ts} delivered after {t}");
            }
        }
        let used: std::collections::HashSet<usize> = log.iter().map(|(l, _, _)| *l).collect();
        assert!(used.len() > 1, "all series on one lane");
        assert!(s.batches.lock().iter().all(|(_, n)| *n <= 37));
        assert_eq!(s.ledger.queued(), 0);
    }

    #[tokio::test]
    async fn one_lane_batches_by_samples_and_bytes() {
        let one = estimated_sample_bytes(&batch(1, 0).samples[0]);
        let config = BatchConfig { max_samples: 100, max_bytes: one * 10, max_age_ms: 10_000 };
        let (s, handle) = setup("worker-bytes", 1, config, Duration::ZERO, None);
        s.queue.push(batch(35, 1)).await;
        s.queue.close();
        handle.await.unwrap();
        let sizes: Vec<usize> = s.batches.lock().iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes, vec![10, 10, 10, 5]);
    }

    #[tokio::test]
    async fn a_partial_batch_goes_out_at_its_age() {
        let config = BatchConfig { max_samples: 1000, max_bytes: usize::MAX, max_age_ms: 300 };
        let (s, handle) = setup("worker-age", 2, config, Duration::ZERO, None);
        let pushed = std::time::Instant::now();
        s.queue.push(batch(10, 1)).await;
        let mut waited = 0;
        while s.batches.lock().iter().map(|(_, n)| n).sum::<usize>() < 10 {
            waited += 1;
            assert!(waited < 500, "partial batch not sent within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pushed.elapsed() >= Duration::from_millis(300), "sent before max_age");
        s.queue.close();
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn accounting_is_exact_with_drops() {
        let config = BatchConfig { max_samples: 10, ..BatchConfig::default() };
        let (s, handle) = setup("worker-accounting", 3, config, Duration::ZERO, Some(2));
        for ts in 0..20 {
            s.queue.push(batch(25, ts)).await;
        }
        s.queue.close();
        handle.await.unwrap();
        assert_eq!(s.ledger.queued(), 0, "every sample ended sent or dropped");
        let delivered = s.log.lock().len();
        let total: usize = s.batches.lock().iter().map(|(_, n)| n).sum();
        assert_eq!(total, 500);
        assert!(delivered < 500 && delivered > 0);
    }

    /// A sink that holds every batch until the test lets it go.
    struct Gate(Arc<tokio::sync::Semaphore>);

    impl Sink for Gate {
        async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
            if let Ok(permit) = self.0.acquire().await {
                permit.forget();
            }
            Delivery::all(batch.len())
        }
    }

    fn in_queue(queue: &SinkQueue) -> usize {
        match queue {
            SinkQueue::Memory(q) => q.len_samples(),
            SinkQueue::Disk(_) => unreachable!("memory queues only in these tests"),
        }
    }

    #[tokio::test]
    async fn a_stuck_lane_holds_at_most_two_batches_out_of_the_queue() {
        let ledger = Ledger::new(SinkMetrics::new("worker-stuck"));
        let queue = Arc::new(SinkQueue::Memory(crate::queue::MemoryQueue::new(1_000, WhenFull::Block, ledger.clone())));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let health = Health::default().register_sink("worker-stuck", Duration::from_secs(60));
        let config = BatchConfig { max_samples: 20, max_age_ms: 5, ..BatchConfig::default() };
        let handle = tokio::spawn(run_worker(vec![Gate(gate.clone())], queue.clone(), config, health));
        for ts in 0..30 {
            queue.push(batch(10, ts)).await;
            if in_queue(&queue) >= 100 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = ledger.queued() as usize - in_queue(&queue);
        assert!(held <= 40, "the worker holds {held} samples for a stuck lane of 20-sample batches");
        gate.add_permits(1_000);
        queue.close();
        handle.await.unwrap();
        assert_eq!(ledger.queued(), 0);
    }

    #[test]
    fn sink_batch_selections_iterate_in_order() {
        let b = QueueItem::memory(batch(6, 0));
        let mut sb = SinkBatch::default();
        for i in [0, 1, 2, 4, 5] {
            sb.push_index(&b, i, 1);
        }
        let ids: Vec<String> = sb.samples().map(|s| s.labels.get("id").unwrap().to_string()).collect();
        assert_eq!(ids, ["0000", "0001", "0002", "0004", "0005"]);
        assert_eq!(sb.len(), 5);
        assert!(sb.samples_with_hash().all(|(s, h)| h == s.labels.series_hash()));
    }
}
