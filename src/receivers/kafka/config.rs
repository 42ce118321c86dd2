use std::time::Duration;

use serde::Deserialize;

use crate::codecs::line_protocol::{Precision, UnknownPrecision};
pub use crate::librdkafka::OptionValue;
use crate::librdkafka::{LibrdkafkaOptions, refuse_reserved};

/// `type = "kafka"`: a consumer-group member reading samples from topics, at least once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to subscribe to (names, or `^regex` patterns as librdkafka accepts them).
    pub topics: Vec<String>,
    /// Consumer group; tsrelay instances sharing it split the partitions.
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// How a message body is encoded.
    #[serde(default)]
    pub format: KafkaFormat,
    /// Unit of line-protocol timestamps: `ns` (default), `us`, `ms`, `s`, `m`, `h`.
    #[serde(default = "defaults::precision")]
    pub precision: String,
    /// Where messages that cannot be decoded are produced unchanged (with a
    /// `tsrelay-error` header); without it they are only counted and logged.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// On a rebalance or shutdown, how long to wait for in-flight messages to
    /// be delivered before giving the partitions up (their uncommitted
    /// messages are then consumed again by the next owner). Must stay below
    /// the group's `session.timeout.ms`.
    #[serde(default = "defaults::drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often acknowledged offsets are committed.
    #[serde(default = "defaults::commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Most samples handed to the pipeline in one batch (messages are grouped
    /// until this many samples or until no more are waiting).
    #[serde(default = "defaults::max_batch_samples")]
    pub max_batch_samples: usize,
    /// How long a full pipeline may hold a batch before the partitions are paused.
    #[serde(default = "defaults::pause_after_ms")]
    pub pause_after_ms: u64,
    /// Passed to librdkafka as they are (SASL, TLS, fetch sizes, timeouts...).
    /// Offsets and group membership are tsrelay's to manage, so
    /// `group.id`, `bootstrap.servers`, `enable.auto.commit`,
    /// `enable.auto.offset.store` and `enable.partition.eof` are refused here.
    #[serde(default)]
    pub librdkafka_options: LibrdkafkaOptions,
}

/// Message encodings the receiver decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// InfluxDB line protocol, nanosecond timestamps; one message holds one or more lines.
    #[default]
    LineProtocol,
    /// `tsrelay.v1.WriteRequest` (proto/tsrelay/v1/ingest.proto).
    Protobuf,
    /// NDJSON as `POST /api/v1/ingest` takes it.
    Json,
}

/// [`KafkaFormat`] with what its decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    LineProtocol(Precision),
    Protobuf,
    Json,
}

/// Properties tsrelay sets itself: overriding them would break at-least-once.
const RESERVED_OPTIONS: [&str; 6] = [
    "group.id",
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

impl KafkaReceiverConfig {
    /// librdkafka's `session.timeout.ms`, as configured or its default.
    pub fn session_timeout(&self) -> Result<Duration, String> {
        match self.librdkafka_options.get("session.timeout.ms") {
            None => Ok(Duration::from_millis(defaults::SESSION_TIMEOUT_MS)),
            Some(v) => v
                .to_string()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("librdkafka_options.\"session.timeout.ms\" = {v:?} is not a whole number")),
        }
    }

    /// The decoder of this receiver's messages.
    pub fn message_format(&self) -> Result<MessageFormat, String> {
        Ok(match self.format {
            KafkaFormat::LineProtocol => MessageFormat::LineProtocol(
                self.precision.parse().map_err(|e: UnknownPrecision| format!("precision: {e}"))?,
            ),
            KafkaFormat::Protobuf => MessageFormat::Protobuf,
            KafkaFormat::Json => MessageFormat::Json,
        })
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.message_format()?;
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty; give at least one host:port".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics must name at least one topic, and no empty names".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id is empty".into());
        }
        if let Some(dlq) = &self.dead_letter_topic
            && (dlq.trim().is_empty() || self.topics.contains(dlq))
        {
            return Err(format!("dead_letter_topic {dlq:?} must be a non-empty topic that is not consumed"));
        }
        if self.max_batch_samples == 0 {
            return Err("max_batch_samples must be at least 1".into());
        }
        if self.commit_interval.is_zero() {
            return Err("commit_interval must be above 0".into());
        }
        refuse_reserved(
            &self.librdkafka_options,
            &RESERVED_OPTIONS,
            "use brokers and group_id; offsets are committed only once delivered",
        )?;
        if let Some(strategy) = self.librdkafka_options.get("partition.assignment.strategy")
            && strategy.to_string().contains("cooperative")
        {
            return Err(
                "librdkafka_options.\"partition.assignment.strategy\": cooperative rebalancing is not supported; use range or roundrobin"
                    .into(),
            );
        }
        let session = self.session_timeout()?;
        if self.drain_timeout >= session {
            return Err(format!(
                "drain_timeout ({:?}) must be below the consumer group's session.timeout.ms ({:?}), or the group would evict this member while it drains",
                self.drain_timeout, session
            ));
        }
        Ok(())
    }
}

pub mod defaults {
    use std::time::Duration;

    /// librdkafka's own default for `session.timeout.ms`.
    pub const SESSION_TIMEOUT_MS: u64 = 45_000;

    pub fn precision() -> String {
        "ns".into()
    }
    pub fn group_id() -> String {
        "tsrelay".into()
    }
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn commit_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_batch_samples() -> usize {
        10_000
    }
    pub fn pause_after_ms() -> u64 {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> KafkaReceiverConfig {
        use figment::providers::Format;
        let figment = figment::Figment::from(figment::providers::Toml::string(toml_text));
        figment.extract().unwrap()
    }

    #[test]
    fn defaults_and_option_values() {
        let c = parse(
            r#"
            brokers = "127.0.0.1:9092"
            topics = ["metrics"]
            librdkafka_options = { "session.timeout.ms" = 6000, "security.protocol" = "sasl_plaintext" }
            "#,
        );
        assert_eq!(c.format, KafkaFormat::LineProtocol);
        assert_eq!(c.message_format().unwrap(), MessageFormat::LineProtocol(Precision::Nanosecond));
        assert_eq!(c.group_id, "tsrelay");
        assert_eq!(c.session_timeout().unwrap(), Duration::from_secs(6));
        assert_eq!(c.librdkafka_options["security.protocol"].to_string(), "sasl_plaintext");
        // The default drain_timeout (10 s) is above a 6 s session timeout.
        let err = c.check().unwrap_err();
        assert!(err.contains("drain_timeout") && err.contains("session.timeout.ms"), "{err}");
    }

    #[test]
    fn refuses_managed_options_and_cooperative_rebalancing() {
        let mut c = parse("brokers = \"b:9092\"\ntopics = [\"t\"]");
        assert!(c.check().is_ok());
        c.librdkafka_options.insert("enable.auto.commit".into(), OptionValue::Bool(true));
        assert!(c.check().unwrap_err().contains("enable.auto.commit"));
        c.librdkafka_options.clear();
        c.librdkafka_options
            .insert("partition.assignment.strategy".into(), OptionValue::Text("cooperative-sticky".into()));
        assert!(c.check().unwrap_err().contains("cooperative"));
        c.librdkafka_options.clear();
        c.dead_letter_topic = Some("t".into());
        assert!(c.check().unwrap_err().contains("dead_letter_topic"));
        c.dead_letter_topic = None;
        c.precision = "fortnight".into();
        assert!(c.check().unwrap_err().contains("precision"));
    }
}
