//! Typed handles for the Kafka receiver and sink.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{Counter, Gauge, counter, gauge};
use parking_lot::Mutex;

use super::names::*;

/// Per-topic counters of one Kafka receiver.
#[derive(Clone)]
pub struct KafkaTopicMetrics {
    pub consumed_messages: Counter,
    pub consumed_bytes: Counter,
    pub malformed_messages: Counter,
    pub dead_lettered_messages: Counter,
    pub dead_letter_failures: Counter,
}

/// Handles a Kafka receiver updates; topic and partition handles are made on first use.
#[derive(Clone)]
pub struct KafkaReceiverMetrics {
    receiver: Arc<str>,
    topics: Arc<Mutex<HashMap<Arc<str>, KafkaTopicMetrics>>>,
    pub paused: Gauge,
    pub pauses: Counter,
    pub rebalances: Counter,
}

impl KafkaReceiverMetrics {
    pub fn new(receiver: &str) -> Self {
        let r = || receiver.to_string();
        KafkaReceiverMetrics {
            receiver: receiver.into(),
            topics: Default::default(),
            paused: gauge!(KAFKA_PAUSED, "receiver" => r()),
            pauses: counter!(KAFKA_PAUSES_TOTAL, "receiver" => r()),
            rebalances: counter!(KAFKA_REBALANCES_TOTAL, "receiver" => r()),
        }
    }

    pub fn topic(&self, topic: &str) -> KafkaTopicMetrics {
        let mut topics = self.topics.lock();
        if let Some(m) = topics.get(topic) {
            return m.clone();
        }
        let labels = [("receiver", self.receiver.to_string()), ("topic", topic.to_string())];
        let m = KafkaTopicMetrics {
            consumed_messages: counter!(KAFKA_CONSUMED_MESSAGES_TOTAL, &labels),
            consumed_bytes: counter!(KAFKA_CONSUMED_BYTES_TOTAL, &labels),
            malformed_messages: counter!(KAFKA_MALFORMED_MESSAGES_TOTAL, &labels),
            dead_lettered_messages: counter!(KAFKA_DEAD_LETTERED_MESSAGES_TOTAL, &labels),
            dead_letter_failures: counter!(KAFKA_DEAD_LETTER_FAILURES_TOTAL, &labels),
        };
        topics.insert(topic.into(), m.clone());
        m
    }

    /// `tsrelay_kafka_consumer_lag{receiver,topic,partition}`: messages between
    /// the partition's end and the group's committed offset.
    pub fn lag(&self, topic: &str, partition: i32) -> Gauge {
        gauge!(KAFKA_CONSUMER_LAG, "receiver" => self.receiver.to_string(), "topic" => topic.to_string(), "partition" => partition.to_string())
    }

    /// The last offset this receiver committed for a partition.
    pub fn committed_offset(&self, topic: &str, partition: i32) -> Gauge {
        gauge!(KAFKA_COMMITTED_OFFSET, "receiver" => self.receiver.to_string(), "topic" => topic.to_string(), "partition" => partition.to_string())
    }
}

/// `tsrelay_kafka_produced_messages_total{sink}`: records the Kafka sink had acknowledged.
pub fn kafka_produced_messages(sink: &str) -> Counter {
    counter!(KAFKA_PRODUCED_MESSAGES_TOTAL, "sink" => sink.to_string())
}
