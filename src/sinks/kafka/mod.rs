//! `type = "kafka"`: produces each batch as one record per series, keyed by
//! the series hash, so every series stays on one partition and a consuming
//! tsrelay keeps per-series state correct (the scale-out path, docs/kafka.md).
//!
//! `acks=all` and idempotence are always on; librdkafka retries (in order,
//! without duplicates) for up to `max_retry_duration`, and a batch counts as
//! delivered only when every one of its records is acknowledged.

mod config;
mod encode;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};

pub use config::{Compression, KafkaSinkConfig, KafkaSinkFormat};
pub use encode::{encode_value, group_by_series, key};

use super::{Delivery, Sink, SinkBatch, SinkBuildError, SinkError};
use crate::telemetry::{SinkHealth, SinkMetrics, kafka_produced_messages};

/// Client callbacks: logs, the health entry, and retries from librdkafka's statistics.
pub struct ProducerContext {
    sink: Arc<str>,
    health: SinkHealth,
    metrics: SinkMetrics,
    /// Retries already added to `tsrelay_sink_retries_total`.
    retries_seen: AtomicU64,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(sink = %self.sink, facility = fac, "librdkafka: {message}")
            }
            L::Warning => tracing::warn!(sink = %self.sink, facility = fac, "librdkafka: {message}"),
            L::Notice | L::Info => tracing::info!(sink = %self.sink, facility = fac, "librdkafka: {message}"),
            L::Debug => tracing::debug!(sink = %self.sink, facility = fac, "librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let total: u64 = statistics.brokers.values().map(|b| b.txretries).sum();
        let before = self.retries_seen.swap(total, Ordering::Relaxed);
        if total > before {
            self.metrics.retries.increment(total - before);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker trouble shows in /readyz while librdkafka retries; the next
        // delivered batch marks the sink healthy again.
        self.health.failed(&format!("{error}: {reason}"));
        tracing::warn!(sink = %self.sink, %error, reason, "Kafka producer error");
    }
}

pub struct KafkaSink {
    name: Arc<str>,
    producer: FutureProducer<ProducerContext>,
    topic: String,
    format: KafkaSinkFormat,
    metrics: SinkMetrics,
    produced: metrics::Counter,
    value: Vec<u8>,
}

impl KafkaSink {
    /// With `retry_forever` (a disk queue keeps the data) librdkafka never
    /// gives a record up; otherwise it stops after `max_retry_duration`.
    pub fn new(
        name: &str,
        config: &KafkaSinkConfig,
        retry_forever: bool,
        metrics: SinkMetrics,
        health: SinkHealth,
    ) -> Result<Self, SinkBuildError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.brokers)
            .set("client.id", format!("tsrelay-{name}"))
            .set("statistics.interval.ms", "5000");
        for (k, v) in &config.librdkafka_options {
            c.set(k, v.to_string());
        }
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", config.compression.as_librdkafka())
            // 0 = no limit.
            .set(
                "message.timeout.ms",
                if retry_forever { "0".to_string() } else { config.max_retry_duration.as_millis().max(1).to_string() },
            );
        let context =
            ProducerContext { sink: name.into(), health, metrics: metrics.clone(), retries_seen: AtomicU64::new(0) };
        let producer = c.create_with_context(context).map_err(|e| SinkBuildError {
            sink: name.to_string(),
            message: format!("cannot create a Kafka producer for brokers {:?}: {e}", config.brokers),
        })?;
        Ok(KafkaSink {
            name: name.into(),
            producer,
            topic: config.topic.clone(),
            format: config.format,
            produced: kafka_produced_messages(name),
            metrics,
            value: Vec::with_capacity(4096),
        })
    }

    /// `config.concurrency` lanes sharing one producer (one connection set,
    /// one librdkafka queue).
    pub fn lanes(
        name: &str,
        config: &KafkaSinkConfig,
        retry_forever: bool,
        metrics: SinkMetrics,
        health: SinkHealth,
    ) -> Result<Vec<Self>, SinkBuildError> {
        let first = KafkaSink::new(name, config, retry_forever, metrics, health)?;
        let mut lanes: Vec<KafkaSink> = (1..config.concurrency.max(1))
            .map(|_| KafkaSink {
                name: first.name.clone(),
                producer: first.producer.clone(),
                topic: first.topic.clone(),
                format: first.format,
                metrics: first.metrics.clone(),
                produced: first.produced.clone(),
                value: Vec::with_capacity(4096),
            })
            .collect();
        lanes.insert(0, first);
        Ok(lanes)
    }

    fn error(&self, e: &KafkaError) -> SinkError {
        let message = format!("topic {}: {e}", self.topic);
        let sink = self.name.to_string();
        match e.rdkafka_error_code() {
            // librdkafka already retried these for max_retry_duration.
            Some(
                RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::PurgeQueue
                | RDKafkaErrorCode::PurgeInflight,
            )
            | None => SinkError::RetryExhausted { sink, message },
            Some(_) => SinkError::Rejected { sink, message },
        }
    }
}

/// Outcomes of one batch's records.
#[derive(Default)]
struct Tally {
    delivered: usize,
    failed: usize,
    first_error: Option<SinkError>,
}

impl Tally {
    fn fail(&mut self, n: usize, error: SinkError) {
        self.failed += n;
        self.first_error.get_or_insert(error);
    }
}

impl KafkaSink {
    async fn settle(&self, delivery: DeliveryFuture, n: usize, tally: &mut Tally) {
        match delivery.await {
            Ok(Ok(_)) => {
                tally.delivered += n;
                self.produced.increment(1);
            }
            Ok(Err((e, _))) => tally.fail(n, self.error(&e)),
            Err(_) => tally
                .fail(n, SinkError::RetryExhausted { sink: self.name.to_string(), message: "producer closed".into() }),
        }
    }
}

impl Sink for KafkaSink {
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        let started = Instant::now();
        let groups = group_by_series(batch.samples_with_hash());
        let mut tally = Tally::default();
        let mut pending: VecDeque<(DeliveryFuture, usize)> = VecDeque::with_capacity(groups.len());
        let mut value = std::mem::take(&mut self.value);
        self.metrics.in_flight_requests.increment(1.0);
        for (hash, samples) in &groups {
            let unrepresentable = encode_value(self.format, samples, &mut value);
            if unrepresentable > 0 {
                tally.fail(
                    unrepresentable,
                    SinkError::Unrepresentable {
                        sink: self.name.to_string(),
                        count: unrepresentable,
                        message: "NaN/Inf value or timestamp out of range for line protocol".into(),
                    },
                );
            }
            let n = samples.len() - unrepresentable;
            if n == 0 {
                continue;
            }
            let key = key(*hash);
            loop {
                let record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.topic).key(&key[..]).payload(&value[..]);
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push_back((delivery, n));
                        break;
                    }
                    // The local queue is full: wait for the oldest record, then try again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => match pending.pop_front() {
                        Some((delivery, m)) => self.settle(delivery, m, &mut tally).await,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    },
                    Err((e, _)) => {
                        tally.fail(n, self.error(&e));
                        break;
                    }
                }
            }
        }
        self.value = value;
        while let Some((delivery, n)) = pending.pop_front() {
            self.settle(delivery, n, &mut tally).await;
        }
        self.metrics.in_flight_requests.decrement(1.0);
        self.metrics.request_duration.record(started.elapsed().as_secs_f64());
        Delivery {
            delivered: tally.delivered,
            failed: tally.first_error.map(|e| (tally.failed, e)),
            dropped: Vec::new(),
        }
    }

    async fn close(&mut self) {
        use rdkafka::producer::Producer;
        // Every record was awaited in `deliver`; this only flushes librdkafka's own bookkeeping.
        let producer = self.producer.clone();
        let name = self.name.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = producer.flush(Duration::from_secs(5)) {
                tracing::warn!(sink = %name, error = %e, "Kafka producer flush at shutdown failed");
            }
        })
        .await;
    }
}
