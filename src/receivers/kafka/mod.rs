//! The Kafka receiver: a consumer-group member that decodes messages
//! (line protocol, `tsrelay.v1.WriteRequest`, NDJSON) into pipeline batches
//! and commits, per partition, only offsets whose messages every sink has
//! delivered or counted as dropped (DESIGN §2: at least once).
//!
//! librdkafka is driven from one dedicated thread: polls, rebalance callbacks
//! and commits all happen there, so a revoke can wait for in-flight batches
//! without racing the loop. When the pipeline is full the partitions are
//! paused, never buffered (DESIGN §3).

mod config;
mod consumer;
mod dead_letter;
mod decode;
mod offsets;

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{KafkaFormat, KafkaReceiverConfig, MessageFormat, OptionValue};
pub use dead_letter::{ERROR_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER};
pub use decode::{Decoded, decode_message};
pub use offsets::{BatchOffsets, OffsetTracker, TopicPartition};

use consumer::{ConsumerLoop, ReceiverContext};
use dead_letter::DeadLetter;

use super::submit::Submitter;
use crate::telemetry::{Health, KafkaReceiverMetrics};

#[derive(Debug, thiserror::Error)]
pub enum KafkaReceiverError {
    #[error("receivers.{receiver}: {message}")]
    Config { receiver: String, message: String },
    #[error("receivers.{receiver}: cannot create a Kafka consumer for brokers {brokers:?}: {source}")]
    Consumer { receiver: String, brokers: String, source: Box<rdkafka::error::KafkaError> },
    #[error("receivers.{receiver}: cannot subscribe to topics {topics:?}: {source}")]
    Subscribe { receiver: String, topics: Vec<String>, source: Box<rdkafka::error::KafkaError> },
    #[error("receivers.{receiver}: cannot create the producer for dead_letter_topic {topic:?}: {source}")]
    DeadLetter { receiver: String, topic: String, source: Box<rdkafka::error::KafkaError> },
}

/// librdkafka's bound on messages fetched ahead of the consumer, in KiB.
pub const PREFETCH_OPTION: &str = "queued.max.messages.kbytes";
/// tsrelay's default for [`PREFETCH_OPTION`]: 16 MiB, counted in the memory budget.
pub const DEFAULT_PREFETCH_KBYTES: u64 = 16 * 1024;

/// Librdkafka settings shared by the consumer and the dead-letter producer:
/// tsrelay's defaults, then the user's options on top.
fn client_config(name: &str, config: &KafkaReceiverConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("tsrelay-{name}"))
        // Lag comes from the client's statistics.
        .set("statistics.interval.ms", "5000");
    for (k, v) in &config.librdkafka_options {
        c.set(k, v.to_string());
    }
    c
}

/// Joins the group and starts consuming on a dedicated thread; the task
/// ends after `stop` once the partitions are released.
pub fn spawn(
    name: &str,
    config: &KafkaReceiverConfig,
    submitter: Submitter,
    health: Health,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, KafkaReceiverError> {
    let format = config
        .message_format()
        .map_err(|message| KafkaReceiverError::Config { receiver: name.to_string(), message })?;
    let (completions_tx, completions_rx) = std::sync::mpsc::channel();
    let context =
        ReceiverContext::new(name, completions_rx, config.drain_timeout, KafkaReceiverMetrics::new(name), health);
    let mut consumer_config = client_config(name, config);
    consumer_config
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    if !config.librdkafka_options.contains_key(PREFETCH_OPTION) {
        // librdkafka's own default (64 MiB) would dwarf the rest of a small budget.
        consumer_config.set(PREFETCH_OPTION, DEFAULT_PREFETCH_KBYTES.to_string());
    }
    if !config.librdkafka_options.contains_key("auto.offset.reset") {
        // A new group starts at the beginning: nothing already in the topic is skipped.
        consumer_config.set("auto.offset.reset", "earliest");
    }
    let consumer: BaseConsumer<ReceiverContext> =
        consumer_config.create_with_context(context).map_err(|source| KafkaReceiverError::Consumer {
            receiver: name.to_string(),
            brokers: config.brokers.clone(),
            source: Box::new(source),
        })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|source| KafkaReceiverError::Subscribe {
        receiver: name.to_string(),
        topics: config.topics.clone(),
        source: Box::new(source),
    })?;
    let dead_letter = match &config.dead_letter_topic {
        Some(topic) => Some(DeadLetter::new(name, topic, client_config(name, config)).map_err(|source| {
            KafkaReceiverError::DeadLetter {
                receiver: name.to_string(),
                topic: topic.clone(),
                source: Box::new(source),
            }
        })?),
        None => None,
    };
    let run = ConsumerLoop {
        consumer,
        config: config.clone(),
        format,
        submitter,
        dead_letter,
        completions: completions_tx,
        runtime: tokio::runtime::Handle::current(),
        stop,
    };
    tracing::info!(receiver = %name, brokers = %config.brokers, topics = ?config.topics, group = %config.group_id, format = ?config.format, "Kafka receiver joining its group");
    let name: Arc<str> = name.into();
    Ok(tokio::task::spawn_blocking(move || {
        let _span = tracing::info_span!("kafka_receiver", receiver = %name).entered();
        run.run();
    }))
}
