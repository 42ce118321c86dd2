//! The consumer thread: poll → decode → batch → pipeline, and acknowledgements
//! → contiguous offsets → commits. librdkafka calls the rebalance callbacks
//! from `poll` on this same thread, so the drain on revoke may block here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::config::{KafkaReceiverConfig, MessageFormat};
use super::dead_letter::DeadLetter;
use super::decode::decode_message;
use super::offsets::{BatchOffsets, OffsetTracker, TopicPartition};
use crate::model::{Ack, Batch, Sample, now_ms};
use crate::receivers::submit::{OfferError, Submitter};
use crate::telemetry::{Health, KafkaReceiverMetrics, KafkaTopicMetrics};

/// How long an idle poll waits; bounds how late acknowledgements are noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Repeated consumer errors are logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the consumer thread and librdkafka's callbacks (run on that thread) share.
pub struct ReceiverContext {
    receiver: Arc<str>,
    state: Mutex<State>,
    /// Batch numbers whose acknowledgement completed.
    completions: Mutex<mpsc::Receiver<u64>>,
    drain_timeout: Duration,
    metrics: KafkaReceiverMetrics,
    health: Health,
}

#[derive(Default)]
struct State {
    tracker: OffsetTracker,
    /// Bumped by every rebalance: batches built before it are abandoned.
    generation: u64,
    assignment: Vec<TopicPartition>,
    /// The first assignment arrived (readiness).
    ready: bool,
}

impl ReceiverContext {
    pub fn new(
        receiver: &str,
        completions: mpsc::Receiver<u64>,
        drain_timeout: Duration,
        metrics: KafkaReceiverMetrics,
        health: Health,
    ) -> Self {
        ReceiverContext {
            receiver: receiver.into(),
            state: Mutex::new(State::default()),
            completions: Mutex::new(completions),
            drain_timeout,
            metrics,
            health,
        }
    }

    fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Applies every acknowledgement that has arrived; `wait` bounds how long
    /// to wait for the first one. Returns how many batches remain in flight.
    fn apply_completions(&self, wait: Option<Duration>) -> usize {
        let completions = self.completions.lock();
        let mut state = self.state.lock();
        if let Some(wait) = wait
            && state.tracker.in_flight() > 0
        {
            drop(state);
            let first = completions.recv_timeout(wait).ok();
            state = self.state.lock();
            if let Some(batch) = first {
                state.tracker.complete(batch);
            }
        }
        while let Ok(batch) = completions.try_recv() {
            state.tracker.complete(batch);
        }
        state.tracker.in_flight()
    }

    /// Commits every partition whose acknowledged offset moved.
    fn commit(&self, consumer: &BaseConsumer<ReceiverContext>, mode: CommitMode) {
        let mut state = self.state.lock();
        let list = state.tracker.to_commit();
        if list.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(list.len());
        for (tp, offset) in &list {
            if let Err(e) = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset)) {
                tracing::warn!(receiver = %self.receiver, topic = %tp.topic, partition = tp.partition, error = %e, "cannot list an offset to commit");
            }
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                for (tp, offset) in list {
                    state.tracker.committed(&tp, offset);
                    self.metrics.committed_offset(&tp.topic, tp.partition).set(offset as f64);
                }
            }
            Err(e) => {
                tracing::warn!(receiver = %self.receiver, error = %e, "offset commit failed; retrying at the next interval")
            }
        }
    }

    /// On revoke (rebalance or shutdown): wait up to `drain_timeout` for the
    /// batches in flight, commit what is acknowledged, forget the rest.
    fn drain_and_release(&self, consumer: &BaseConsumer<ReceiverContext>) {
        let deadline = Instant::now() + self.drain_timeout;
        let mut in_flight = self.apply_completions(None);
        while in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            in_flight = self.apply_completions(Some(left.min(Duration::from_millis(50))));
        }
        self.commit(consumer, CommitMode::Sync);
        let mut state = self.state.lock();
        if in_flight > 0 {
            tracing::warn!(
                receiver = %self.receiver,
                batches = in_flight,
                drain_timeout = ?self.drain_timeout,
                "batches still in flight when the partitions were given up; their messages will be consumed again"
            );
        }
        for tp in &state.assignment {
            self.metrics.lag(&tp.topic, tp.partition).set(0.0);
        }
        state.tracker.clear();
        state.assignment.clear();
        state.generation += 1;
    }
}

impl ClientContext for ReceiverContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(receiver = %self.receiver, facility = fac, "librdkafka: {message}")
            }
            L::Warning => tracing::warn!(receiver = %self.receiver, facility = fac, "librdkafka: {message}"),
            L::Notice | L::Info => tracing::info!(receiver = %self.receiver, facility = fac, "librdkafka: {message}"),
            L::Debug => tracing::debug!(receiver = %self.receiver, facility = fac, "librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let state = self.state.lock();
        for tp in &state.assignment {
            let lag = statistics.topics.get(&*tp.topic).and_then(|t| t.partitions.get(&tp.partition)).and_then(|p| {
                // librdkafka leaves consumer_lag at -1 until it knows both ends;
                // brokers whose end offset runs behind the commit count as no lag.
                if p.consumer_lag >= 0 {
                    Some(p.consumer_lag)
                } else if p.hi_offset < 0 {
                    None
                } else if p.committed_offset >= 0 {
                    Some((p.hi_offset - p.committed_offset).max(0))
                } else {
                    Some((p.hi_offset - p.lo_offset.max(0)).max(0))
                }
            });
            if let Some(lag) = lag {
                self.metrics.lag(&tp.topic, tp.partition).set(lag as f64);
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(receiver = %self.receiver, %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for ReceiverContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<ReceiverContext>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(receiver = %self.receiver, partitions = tpl.count(), "partitions revoked; draining in-flight messages");
                self.metrics.rebalances.increment(1);
                self.drain_and_release(consumer);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(receiver = %self.receiver, error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<ReceiverContext>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut state = self.state.lock();
            state.generation += 1;
            state.assignment = tpl
                .elements()
                .iter()
                .map(|e| TopicPartition { topic: e.topic().into(), partition: e.partition() })
                .collect();
            tracing::info!(receiver = %self.receiver, partitions = ?state.assignment.iter().map(|t| format!("{}/{}", t.topic, t.partition)).collect::<Vec<_>>(), "partitions assigned");
            if !state.ready {
                state.ready = true;
                self.health.receiver_listening(&self.receiver);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(receiver = %self.receiver, error = %e, partitions = offsets.count(), "asynchronous offset commit failed; committing again");
            self.state.lock().tracker.forget_committed();
        }
    }
}

/// Messages being gathered into one pipeline batch.
struct Building {
    number: u64,
    samples: Vec<Sample>,
    offsets: BatchOffsets,
    ack: Ack,
}

/// Everything the consumer thread owns.
pub struct ConsumerLoop {
    pub consumer: BaseConsumer<ReceiverContext>,
    pub config: KafkaReceiverConfig,
    pub format: MessageFormat,
    pub submitter: Submitter,
    pub dead_letter: Option<DeadLetter>,
    pub completions: mpsc::Sender<u64>,
    pub runtime: Handle,
    pub stop: CancellationToken,
}

struct Progress {
    next_batch: u64,
    /// The pipeline no longer takes batches (daemon shutdown).
    pipeline_closed: bool,
    generation: u64,
    paused: bool,
    last_commit: Instant,
    last_error_log: Option<Instant>,
    /// Interned topic names and their metric handles.
    topics: HashMap<String, (Arc<str>, KafkaTopicMetrics)>,
}

impl ConsumerLoop {
    /// Runs until `stop`, then gives the partitions up (draining in-flight
    /// batches within `drain_timeout` and committing) and leaves the group.
    pub fn run(self) {
        let context = self.consumer.context().clone();
        let mut p = Progress {
            next_batch: 0,
            pipeline_closed: false,
            generation: context.generation(),
            paused: false,
            last_commit: Instant::now(),
            last_error_log: None,
            topics: HashMap::new(),
        };
        let pause_after = Duration::from_millis(self.config.pause_after_ms);
        let mut building: Option<Building> = None;
        // A batch the full pipeline gave back; while it is held, partitions are paused.
        let mut held: Option<Building> = None;
        while !self.stop.is_cancelled() && !p.pipeline_closed {
            // Acknowledgements first, so offsets move before more is read.
            context.apply_completions(None);
            if p.last_commit.elapsed() >= self.config.commit_interval {
                context.commit(&self.consumer, CommitMode::Async);
                p.last_commit = Instant::now();
            }

            if let Some(b) = held.take() {
                held = self.offer(b, pause_after, &mut p);
                // Keep serving the group (heartbeats, rebalances); paused partitions deliver nothing new.
                let polled = self.consumer.poll(Duration::ZERO);
                if context.generation() != p.generation {
                    self.new_generation(&mut p, [&mut building, &mut held]);
                    continue;
                }
                if let Some(Ok(msg)) = polled {
                    match held.as_mut() {
                        Some(h) => self.take(&msg, h, &mut p),
                        None => {
                            let b = building.get_or_insert_with(|| self.start_batch(&mut p));
                            self.take(&msg, b, &mut p);
                        }
                    }
                }
                continue;
            }

            let timeout = if building.is_some() { Duration::ZERO } else { IDLE_POLL };
            let polled = self.consumer.poll(timeout);
            if context.generation() != p.generation {
                self.new_generation(&mut p, [&mut building, &mut held]);
            }
            match polled {
                Some(Ok(msg)) => {
                    let b = building.get_or_insert_with(|| self.start_batch(&mut p));
                    self.take(&msg, b, &mut p);
                    if b.samples.len() >= self.config.max_batch_samples
                        && let Some(full) = building.take()
                    {
                        held = self.offer(full, pause_after, &mut p);
                    }
                }
                Some(Err(e)) => {
                    if p.last_error_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
                        tracing::warn!(receiver = %context.receiver, error = %e, "consuming failed; retrying");
                        p.last_error_log = Some(Instant::now());
                    }
                    if let Some(b) = building.take() {
                        held = self.offer(b, pause_after, &mut p);
                    }
                }
                // Nothing more is waiting: hand over what was gathered.
                None => {
                    if let Some(b) = building.take() {
                        held = self.offer(b, pause_after, &mut p);
                    }
                }
            }
        }
        // Batches not handed over are simply not acknowledged: their offsets
        // stay uncommitted and the messages are read again after a restart.
        drop(building);
        drop(held);
        if p.paused {
            context.metrics.paused.set(0.0);
        }
        tracing::info!(receiver = %context.receiver, "leaving the consumer group");
        if let Some(dlq) = &self.dead_letter {
            dlq.flush(context.drain_timeout);
        }
        // Closing revokes the assignment: the rebalance callback drains and commits.
        drop(self.consumer);
        tracing::info!(receiver = %context.receiver, "Kafka receiver stopped");
    }

    fn start_batch(&self, p: &mut Progress) -> Building {
        let number = p.next_batch;
        p.next_batch += 1;
        let ack = self.ack_for(number);
        Building {
            number,
            samples: Vec::with_capacity(self.config.max_batch_samples.min(65_536)),
            offsets: BatchOffsets::default(),
            ack,
        }
    }

    /// An acknowledgement that reports batch `number` as complete once every
    /// copy of the batch is delivered or counted as dropped. An acknowledgement
    /// that fails (a copy abandoned unsettled: shutdown timeout, panic, lost
    /// batch) is never reported, so its offsets are never committed and the
    /// messages are read again after a restart or rebalance.
    fn ack_for(&self, number: u64) -> Ack {
        let (ack, done) = Ack::new();
        let completions = self.completions.clone();
        let receiver = self.submitter.metrics.name.clone();
        self.runtime.spawn(async move {
            match done.await {
                Ok(outcome) if outcome.settled() => {
                    let _ = completions.send(number);
                }
                _ => tracing::warn!(%receiver, batch = number, "batch not settled by every sink; its offsets stay uncommitted"),
            }
        });
        ack
    }

    fn take(&self, msg: &BorrowedMessage<'_>, b: &mut Building, p: &mut Progress) {
        let context = self.consumer.context();
        let (topic, metrics) = match p.topics.get(msg.topic()) {
            Some(known) => known.clone(),
            None => {
                let known: (Arc<str>, KafkaTopicMetrics) = (msg.topic().into(), context.metrics.topic(msg.topic()));
                p.topics.insert(msg.topic().to_string(), known.clone());
                known
            }
        };
        let payload = msg.payload().unwrap_or_default();
        metrics.consumed_messages.increment(1);
        metrics.consumed_bytes.increment(payload.len() as u64);
        let decoded = decode_message(self.format, payload, now_ms(), &self.submitter.limits, &mut b.samples);
        for (reason, n) in &decoded.dropped {
            self.submitter.metrics.dropped(*reason, *n);
        }
        b.offsets.add(&TopicPartition { topic, partition: msg.partition() }, msg.offset());
        if let Some(error) = decoded.error {
            metrics.malformed_messages.increment(1);
            tracing::warn!(
                receiver = %context.receiver,
                topic = msg.topic(),
                partition = msg.partition(),
                offset = msg.offset(),
                samples_accepted = decoded.samples,
                dead_letter = ?self.config.dead_letter_topic,
                "malformed message: {error}"
            );
            if let Some(dlq) = &self.dead_letter {
                dlq.send(msg, &error, b.ack.clone(), metrics, &self.runtime);
            }
        }
    }

    /// Hands a batch to the pipeline; a full pipeline gives it back (returned),
    /// and the partitions are paused until it is taken.
    fn offer(&self, b: Building, wait: Duration, p: &mut Progress) -> Option<Building> {
        let context = self.consumer.context();
        let Building { number, samples, offsets, ack } = b;
        if samples.is_empty() {
            // Nothing for the pipeline (all malformed or empty): acknowledged
            // once any dead-letter copies are confirmed.
            context.state.lock().tracker.register(number, offsets);
            ack.settle();
            self.resume(p);
            return None;
        }
        let batch = Batch::with_ack(samples, Some(ack));
        match self.runtime.block_on(self.submitter.offer(batch, wait)) {
            Ok(()) => {
                context.state.lock().tracker.register(number, offsets);
                self.resume(p);
                None
            }
            Err(OfferError::Full(batch)) => {
                self.pause(p);
                let Batch { samples, ack, .. } = batch;
                let ack = ack.unwrap_or_else(|| self.ack_for(number));
                Some(Building { number, samples, offsets, ack })
            }
            Err(OfferError::ShuttingDown(_)) => {
                // Only during the daemon's shutdown; the batch stays unacknowledged.
                p.pipeline_closed = true;
                None
            }
        }
    }

    fn pause(&self, p: &mut Progress) {
        if p.paused {
            return;
        }
        let context = self.consumer.context();
        match self.consumer.assignment().and_then(|a| self.consumer.pause(&a)) {
            Ok(()) => {
                p.paused = true;
                context.metrics.paused.set(1.0);
                context.metrics.pauses.increment(1);
                tracing::info!(receiver = %context.receiver, "pipeline full: partitions paused");
            }
            Err(e) => tracing::warn!(receiver = %context.receiver, error = %e, "cannot pause partitions"),
        }
    }

    fn resume(&self, p: &mut Progress) {
        if !p.paused {
            return;
        }
        let context = self.consumer.context();
        match self.consumer.assignment().and_then(|a| self.consumer.resume(&a)) {
            Ok(()) => {
                p.paused = false;
                context.metrics.paused.set(0.0);
                tracing::info!(receiver = %context.receiver, "pipeline drained: partitions resumed");
            }
            Err(e) => tracing::warn!(receiver = %context.receiver, error = %e, "cannot resume partitions"),
        }
    }

    /// A rebalance happened during the last poll: batches not yet handed over
    /// belong to partitions given up (they are read again from the committed
    /// offsets), and the fresh assignment starts unpaused.
    fn new_generation(&self, p: &mut Progress, unsent: [&mut Option<Building>; 2]) {
        let context = self.consumer.context();
        for b in unsent {
            if let Some(b) = b.take() {
                tracing::debug!(receiver = %context.receiver, messages = b.offsets.messages(), "rebalance: unsent batch abandoned");
            }
        }
        p.generation = context.generation();
        if p.paused {
            p.paused = false;
            context.metrics.paused.set(0.0);
        }
    }
}
