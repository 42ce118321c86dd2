//! Malformed messages go, unchanged, to the dead-letter topic with headers
//! saying what was wrong and where they came from.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::runtime::Handle;

use crate::model::Ack;
use crate::telemetry::KafkaTopicMetrics;

/// Header naming what was wrong with a dead-lettered message.
pub const ERROR_HEADER: &str = "tsrelay-error";
/// Headers naming where it was consumed.
pub const SOURCE_TOPIC_HEADER: &str = "tsrelay-source-topic";
pub const SOURCE_PARTITION_HEADER: &str = "tsrelay-source-partition";
pub const SOURCE_OFFSET_HEADER: &str = "tsrelay-source-offset";

/// How long a full local produce queue may hold the consumer before the
/// message counts as not dead-lettered.
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(30);

pub struct DeadLetter {
    producer: FutureProducer,
    topic: String,
    receiver: String,
}

impl DeadLetter {
    pub fn new(receiver: &str, topic: &str, mut config: ClientConfig) -> Result<Self, KafkaError> {
        // The dead-letter copy is part of the message's acknowledgement: as durable as the sink's.
        config.set("acks", "all").set("enable.idempotence", "true");
        Ok(DeadLetter { producer: config.create()?, topic: topic.to_string(), receiver: receiver.to_string() })
    }

    /// Produces `msg` unchanged with error headers. `ack` (a clone of the
    /// acknowledgement of the batch the message belongs to) is held until the
    /// broker has confirmed the copy, so the source offset is committed only then.
    pub fn send(&self, msg: &BorrowedMessage<'_>, error: &str, ack: Ack, metrics: KafkaTopicMetrics, runtime: &Handle) {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = msg
            .headers()
            .map(|h| h.detach())
            .unwrap_or_default()
            .insert(Header { key: ERROR_HEADER, value: Some(error) })
            .insert(Header { key: SOURCE_TOPIC_HEADER, value: Some(msg.topic()) })
            .insert(Header { key: SOURCE_PARTITION_HEADER, value: Some(&partition) })
            .insert(Header { key: SOURCE_OFFSET_HEADER, value: Some(&offset) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(p) = msg.payload() {
            record = record.payload(p);
        }
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        let started = Instant::now();
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(d) => break Ok(d),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if started.elapsed() < QUEUE_FULL_PATIENCE =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => break Err(e),
            }
        };
        let (receiver, topic, source) =
            (self.receiver.clone(), self.topic.clone(), format!("{}/{partition}@{offset}", msg.topic()));
        match delivery {
            Ok(future) => {
                runtime.spawn(async move {
                    match future.await {
                        Ok(Ok(_)) => metrics.dead_lettered_messages.increment(1),
                        Ok(Err((e, _))) => failed(&receiver, &topic, &source, &e.to_string(), &ack, &metrics),
                        Err(_) => failed(&receiver, &topic, &source, "producer closed", &ack, &metrics),
                    }
                    // Produced, or counted as a failure: settled either way.
                    ack.settle();
                });
            }
            Err(e) => {
                failed(&receiver, &topic, &source, &e.to_string(), &ack, &metrics);
                ack.settle();
            }
        }
    }

    /// Waits (bounded) for queued dead-letter copies to reach the broker.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(receiver = %self.receiver, topic = %self.topic, error = %e, "dead-letter copies still unsent at shutdown");
        }
    }
}

fn failed(receiver: &str, topic: &str, source: &str, error: &str, ack: &Ack, metrics: &KafkaTopicMetrics) {
    metrics.dead_letter_failures.increment(1);
    // The original was counted as a parse error already; the copy is lost, and says so.
    ack.mark_dropped();
    tracing::error!(receiver, dead_letter_topic = topic, source, error, "could not dead-letter a malformed message");
}
