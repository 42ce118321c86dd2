//! A pipeline: admission into the ingest queue → stateless stages and the
//! shard split by series hash (on the receiving task, see [`ingest`]) →
//! stateful stages (one task per shard, one owner per series) → fanout to
//! every sink queue.
//!
//! This is the only place that knows the order of stages (DESIGN §2).

mod config;
mod ingest;
mod stage;
pub mod stages;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;

pub use config::PipelineConfig;
pub use ingest::{INGEST_BATCH_MAX_SAMPLES, IngestError, PipelineInput, parts_of};
pub use stage::{DropTally, StatefulStage, StatelessStage};

use crate::model::{Ack, Batch, Sample};
use crate::queue::SinkQueue;
use crate::telemetry::pipeline_dropped;

/// The stages of one pipeline, in order. Stateful stages are built once per shard.
pub struct Stages {
    pub stateless: Vec<Box<dyn StatelessStage>>,
    pub stateful: Box<dyn Fn(usize) -> Vec<Box<dyn StatefulStage>> + Send + Sync>,
    /// The series the stateful stages track, for the discovery API.
    pub series: Option<std::sync::Arc<stages::CardinalityShared>>,
    /// The aggregate rules' shared state, whose flush task emits closed buckets.
    pub aggregator: Option<Arc<stages::AggregateShared>>,
    /// Per aggregate rule, the sink queues its outputs go to when the rule
    /// names `sinks` (`None`: the pipeline's sinks). Filled by the caller.
    pub aggregate_sinks: Vec<Option<Vec<Arc<SinkQueue>>>>,
}

impl Stages {
    /// No stages: samples only get their labels sorted and are fanned out.
    pub fn none() -> Self {
        Stages {
            stateless: Vec::new(),
            stateful: Box::new(|_| Vec::new()),
            series: None,
            aggregator: None,
            aggregate_sinks: Vec::new(),
        }
    }
}

/// What a shard receives: samples with their series hashes, aligned.
struct ShardBatch {
    samples: Vec<Sample>,
    hashes: Vec<u64>,
    ack: Option<Ack>,
    received_at: std::time::Instant,
    /// The ingest-queue slot of the batch this part came from, freed when
    /// the last of its parts is done.
    slot: Option<Arc<OwnedSemaphorePermit>>,
}

/// A running pipeline: its input, and its tasks (finish after the input closes).
pub struct RunningPipeline {
    pub name: Arc<str>,
    pub input: PipelineInput,
    pub tasks: JoinSet<()>,
}

/// Starts the pipeline's tasks on the current runtime.
pub fn spawn(name: &str, config: &PipelineConfig, stages: Stages, sinks: Vec<Arc<SinkQueue>>) -> RunningPipeline {
    let name: Arc<str> = name.into();
    let shard_count = config.shard_count();
    let mut tasks = JoinSet::new();

    let mut shard_txs = Vec::with_capacity(shard_count);
    let sinks: Arc<[Arc<SinkQueue>]> = sinks.into();
    // Each shard holds a sender; the flush task sees every shard gone when it closes.
    let (shards_alive, shards_done) = mpsc::channel::<()>(1);
    for shard in 0..shard_count {
        // Unbounded: the ingest queue's slots bound what the shards hold, so an
        // admitted batch never waits for a shard.
        let (stx, srx) = mpsc::unbounded_channel::<ShardBatch>();
        shard_txs.push(stx);
        let stateful = (stages.stateful)(shard);
        tasks.spawn(run_shard(name.clone(), srx, stateful, sinks.clone(), shards_alive.clone()));
    }
    drop(shards_alive);
    if let Some(aggregator) = stages.aggregator {
        let mut routes = stages.aggregate_sinks.into_iter();
        let routes: Vec<Arc<[Arc<SinkQueue>]>> = (0..aggregator.rule_count())
            .map(|_| match routes.next().flatten() {
                Some(own) => own.into(),
                None => sinks.clone(),
            })
            .collect();
        tasks.spawn(run_aggregate_flush(aggregator, shards_done, routes));
    }
    let front = ingest::Front { stateless: stages.stateless, shards: shard_txs };
    RunningPipeline { input: PipelineInput::new(name.clone(), config.ingest_slots(), front), name, tasks }
}

/// Sorts each sample's labels, hashes its series and groups by shard,
/// keeping the order of samples within a series. Hashes a stage already
/// worked out (aligned with the samples) are taken as they are.
fn split_by_series(batch: Batch, shard_count: usize) -> Vec<Option<ShardBatch>> {
    let Batch { mut samples, ack, received_at, hashes } = batch;
    let hashes: Vec<u64> = if hashes.len() == samples.len() {
        hashes
    } else {
        samples
            .iter_mut()
            .map(|s| {
                s.labels.sort();
                s.labels.series_hash()
            })
            .collect()
    };
    if shard_count == 1 {
        return vec![Some(ShardBatch { samples, hashes, ack, received_at, slot: None })];
    }
    // Each part carries its own clone; the batch's own copy is handed on in them.
    let ack = ack.map(Ack::into_passive);
    // Each part is allocated at its exact size: these buffers are what the ingest
    // slots and the sink queues hold, and a part grown by doubling held up to
    // twice its samples.
    let mut sizes = vec![0usize; shard_count];
    for &h in &hashes {
        sizes[shard_of(h, shard_count)] += 1;
    }
    let mut parts: Vec<Option<ShardBatch>> = sizes
        .iter()
        .map(|&n| {
            (n > 0).then(|| ShardBatch {
                samples: Vec::with_capacity(n),
                hashes: Vec::with_capacity(n),
                ack: ack.clone(),
                received_at,
                slot: None,
            })
        })
        .collect();
    for (s, h) in samples.into_iter().zip(hashes) {
        // Always a part: every shard a hash picks was counted above.
        if let Some(part) = &mut parts[shard_of(h, shard_count)] {
            part.samples.push(s);
            part.hashes.push(h);
        }
    }
    parts
}

/// Jump-free modulo on the high bits: the low bits also pick Kafka
/// partitions and request shards, so keep the choices independent.
fn shard_of(hash: u64, shard_count: usize) -> usize {
    (((hash >> 32) * shard_count as u64) >> 32) as usize
}

async fn run_shard(
    pipeline: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<ShardBatch>,
    mut stages: Vec<Box<dyn StatefulStage>>,
    sinks: Arc<[Arc<SinkQueue>]>,
    _alive: mpsc::Sender<()>,
) {
    let mut drops = DropTally::default();
    while let Some(mut b) = rx.recv().await {
        for stage in stages.iter_mut() {
            if b.samples.is_empty() {
                break;
            }
            stage.process(&mut b.samples, &mut b.hashes, &mut drops);
        }
        flush_drops(&pipeline, &mut drops, b.ack.as_ref());
        #[cfg(debug_assertions)]
        test_hooks::maybe_panic(&b.samples);
        if b.samples.is_empty() {
            if let Some(a) = b.ack.take() {
                a.settle();
            }
            continue;
        }
        // Every sink queue takes its own obligation (a clone of the ack) and
        // settles it once its copy is delivered, durably queued or counted as
        // dropped; the shared batch only keeps the acknowledgement open.
        let ack = b.ack.take().map(Ack::into_passive);
        let batch = Arc::new(Batch { samples: b.samples, hashes: b.hashes, ack, received_at: b.received_at });
        for sink in sinks.iter() {
            sink.push(batch.clone()).await;
        }
    }
}

/// Emits the aggregate rules' closed buckets on a timer (so buckets of idle
/// series close too), and every open bucket once all shards have stopped
/// (`flush_on_shutdown`). Results go to every sink like any batch.
async fn run_aggregate_flush(
    aggregator: Arc<stages::AggregateShared>,
    mut shards_done: mpsc::Receiver<()>,
    routes: Vec<Arc<[Arc<SinkQueue>]>>,
) {
    use stages::aggregate::FlushKind;
    let mut tick = tokio::time::interval(aggregator.tick_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let kind = tokio::select! {
            _ = tick.tick() => FlushKind::Tick,
            _ = shards_done.recv() => FlushKind::Shutdown,
        };
        let per_rule = aggregator.flush_rules(crate::model::now_ms(), kind);
        if per_rule.iter().any(|s| !s.is_empty()) {
            // Saved before the results leave: a crash in between loses them
            // rather than emitting them again after the restart. A failed
            // save is logged and counted inside; the results still leave.
            let a = aggregator.clone();
            let _ = tokio::task::spawn_blocking(move || a.save_watermarks()).await;
        }
        for (samples, sinks) in per_rule.into_iter().zip(&routes) {
            if samples.is_empty() {
                continue;
            }
            tracing::debug!(
                pipeline = aggregator.pipeline(),
                samples = samples.len(),
                ?kind,
                "aggregate buckets closed"
            );
            let mut rest = samples;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(INGEST_BATCH_MAX_SAMPLES));
                let chunk = std::mem::replace(&mut rest, tail);
                let hashes = chunk.iter().map(|s| s.labels.series_hash()).collect();
                let batch =
                    Arc::new(Batch { samples: chunk, hashes, ack: None, received_at: std::time::Instant::now() });
                for sink in sinks.iter() {
                    sink.push(batch.clone()).await;
                }
            }
        }
        if kind == FlushKind::Shutdown {
            break;
        }
    }
}

/// A test-only fault: with `TSRELAY_TEST_PANIC_LABEL=name=value` set, a
/// debug build's shard panics on a sample carrying that label, so the tests
/// can check that a panicking task fails its acknowledgements, `/readyz` and
/// the exit status. Compiled out of release builds.
#[cfg(debug_assertions)]
mod test_hooks {
    use std::sync::OnceLock;

    use crate::model::Sample;

    pub const ENV: &str = "TSRELAY_TEST_PANIC_LABEL";

    pub fn maybe_panic(samples: &[Sample]) {
        static LABEL: OnceLock<Option<(String, String)>> = OnceLock::new();
        let label = LABEL.get_or_init(|| {
            let v = std::env::var(ENV).ok()?;
            let (n, v) = v.split_once('=')?;
            Some((n.to_string(), v.to_string()))
        });
        let Some((name, value)) = label else { return };
        if samples.iter().any(|s| s.labels.get(name) == Some(value.as_str())) {
            panic!("{ENV}: sample with {name}=\"{value}\" (test-only fault)");
        }
    }
}

fn flush_drops(pipeline: &str, drops: &mut DropTally, ack: Option<&Ack>) {
    if drops.is_empty() {
        return;
    }
    if let Some(a) = ack {
        a.mark_dropped();
    }
    for (stage, reason, n) in drops.drain() {
        pipeline_dropped(pipeline, stage, reason).increment(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn sample(name: &str, host: &str, ts: i64) -> Sample {
        Sample::new([("__name__", name), ("host", host)].into_iter().collect::<Labels>(), 1.0, ts)
    }

    #[test]
    fn split_keeps_series_together_and_in_order() {
        let mut samples = Vec::new();
        for ts in 0..50 {
            for h in 0..20 {
                samples.push(sample("m", &format!("h{h}"), ts));
            }
        }
        let parts = split_by_series(Batch::new(samples), 4);
        let mut seen = std::collections::HashMap::new();
        let mut total = 0;
        for (i, p) in parts.into_iter().enumerate() {
            let Some(p) = p else { continue };
            assert_eq!(p.samples.len(), p.hashes.len());
            assert_eq!(p.samples.capacity(), p.samples.len(), "a part is allocated at its size");
            for (s, h) in p.samples.iter().zip(&p.hashes) {
                total += 1;
                let host = s.labels.get("host").unwrap().to_string();
                assert_eq!(*seen.entry(host.clone()).or_insert(i), i, "series {host} split across shards");
                assert_eq!(*h, s.labels.series_hash());
            }
            for w in p.samples.windows(2) {
                if w[0].labels == w[1].labels {
                    assert!(w[0].timestamp_ms < w[1].timestamp_ms);
                }
            }
        }
        assert_eq!(total, 1000);
        assert!(seen.values().collect::<std::collections::HashSet<_>>().len() > 1, "all series on one shard");
    }

    /// Holds each batch for a time that depends on its content, so batches
    /// would finish out of arrival order if anything ran them in parallel.
    struct UnevenDelay;

    impl StatelessStage for UnevenDelay {
        fn process(&self, samples: &mut Vec<Sample>, _: &mut DropTally) {
            let ts = samples.first().map_or(0, |s| s.timestamp_ms);
            std::thread::sleep(std::time::Duration::from_micros(((ts * 7919) % 5) as u64 * 300));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn batches_reach_the_shards_in_arrival_order() {
        use crate::queue::{Ledger, MemoryQueue, SinkQueue, WhenFull};
        let queue = Arc::new(SinkQueue::Memory(MemoryQueue::new(
            1_000_000,
            WhenFull::Block,
            Ledger::new(crate::telemetry::SinkMetrics::new("order")),
        )));
        let config: PipelineConfig = toml::from_str("receivers = [\"r\"]\nsinks = [\"s\"]\nshards = 4").unwrap();
        let stages = Stages { stateless: vec![Box::new(UnevenDelay)], ..Stages::none() };
        let running = spawn("order", &config, stages, vec![queue.clone()]);
        const BATCHES: i64 = 200;
        for ts in 0..BATCHES {
            let batch = (0..8).map(|h| sample("m", &format!("h{h}"), ts)).collect();
            running.input.send(Batch::new(batch)).await.unwrap();
        }
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        let mut seen = 0;
        while seen < BATCHES * 8 {
            let item = tokio::time::timeout(std::time::Duration::from_secs(10), queue.pop()).await.unwrap().unwrap();
            for s in &item.batch.samples {
                let host = s.labels.get("host").unwrap().to_string();
                let prev = last.insert(host.clone(), s.timestamp_ms).unwrap_or(-1);
                assert!(s.timestamp_ms > prev, "series {host}: {} arrived after {prev}", s.timestamp_ms);
                seen += 1;
            }
        }
    }
}
