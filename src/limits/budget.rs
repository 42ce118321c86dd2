//! The start-up estimate: every queue and table at its configured bound.

use std::fmt::Write as _;

use crate::config::Config;
use crate::pipeline::{INGEST_BATCH_MAX_SAMPLES, PipelineConfig};
use crate::queue::{DiskQueueOptions, QueueKind, WhenFull};
use crate::receivers::kafka::{DEFAULT_PREFETCH_KBYTES, PREFETCH_OPTION};

/// Runtime, allocator, buffers and code of an idle daemon (an idle release
/// build measures about 12 MiB resident; a debug build about 20 MiB).
pub const BASELINE_BYTES: u64 = 32 << 20;

/// One consumer of the budget, named as in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetItem {
    /// What it is, e.g. `sinks.prom queue (1000000 samples)`.
    pub what: String,
    pub bytes: u64,
}

/// The worst case of every queue and table, against `limits.memory_bytes`.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    pub items: Vec<BudgetItem>,
    pub limit: u64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "worst-case memory {} exceeds limits.memory_bytes = {} ({}); largest: {}. Lower these bounds or raise limits.memory_bytes",
    mib(*total),
    mib(*limit),
    limit,
    largest
)]
pub struct BudgetError {
    pub total: u64,
    pub limit: u64,
    pub largest: String,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl MemoryBudget {
    /// Adds up the worst case the config allows.
    pub fn estimate(config: &Config) -> MemoryBudget {
        let per_sample = config.limits.bytes_per_sample;
        let samples = |n: u64| n.saturating_mul(per_sample);
        let mut items = vec![BudgetItem { what: "process baseline".into(), bytes: BASELINE_BYTES }];
        let shared = shared_queue_groups(config);
        for (pipeline, group) in &shared {
            let (largest, cap) =
                group.iter().map(|(n, c)| (n, *c)).max_by_key(|(_, c)| *c).expect("groups are not empty");
            let shards = config.pipelines[*pipeline].shard_count() as u64;
            // Queues of one stream hold suffixes of it: their union is the
            // largest, plus the batches shards are pushing meanwhile.
            let skew = shards * INGEST_BATCH_MAX_SAMPLES as u64;
            let names = group.iter().map(|(n, _)| format!("sinks.{n}")).collect::<Vec<_>>().join(", ");
            let what = if group.len() == 1 {
                format!("sinks.{largest} queue ({cap} samples)")
            } else {
                format!("queues of {names} (one stream of pipelines.{pipeline}: the largest, {cap} samples, counts)")
            };
            items.push(BudgetItem { what, bytes: samples(cap + skew * (group.len() as u64 - 1)) });
        }
        let grouped: std::collections::BTreeSet<&str> = shared.values().flatten().map(|(n, _)| n.as_str()).collect();
        for (name, sink) in &config.sinks {
            let common = sink.common();
            let q = common.queue;
            if grouped.contains(name.as_str()) {
                // Counted with its group above.
            } else {
                items.push(match q.kind {
                    QueueKind::Memory => BudgetItem {
                        what: format!("sinks.{name} queue ({} samples)", q.max_samples),
                        bytes: samples(q.max_samples as u64),
                    },
                    QueueKind::Disk => {
                        let segment = DiskQueueOptions::new(q.max_bytes, q.when_full, q.fsync).segment_bytes;
                        let read_ahead = crate::queue::READ_AHEAD_SAMPLES as u64;
                        BudgetItem {
                            what: format!("sinks.{name} disk queue read-ahead ({read_ahead} samples) and buffers"),
                            // Decoded read-ahead, one record being read, encode buffers.
                            bytes: samples(read_ahead) + 3 * segment.min(4 << 20),
                        }
                    }
                });
            }
            let lanes = sink_lanes(sink);
            match q.kind {
                // The queue's bound covers the worker's samples; its encoded
                // requests (about half a sample's memory each) come on top.
                QueueKind::Memory => {
                    let in_flight = (common.batch.max_samples as u64).min(q.max_samples as u64) * lanes;
                    items.push(BudgetItem {
                        what: format!(
                            "sinks.{name} requests in flight ({lanes} × {} samples encoded)",
                            in_flight / lanes
                        ),
                        bytes: samples(in_flight) / 2,
                    });
                }
                QueueKind::Disk => {
                    let batch = common.batch.max_samples as u64 * 2 * lanes;
                    items.push(BudgetItem {
                        what: format!("sinks.{name} worker ({batch} samples in hand)"),
                        // The samples, and their encoded request.
                        bytes: samples(batch) * 3 / 2,
                    });
                }
            }
        }
        for (name, sink) in &config.sinks {
            if let crate::sinks::SinkConfig::Parquet(c) = sink {
                let held = c.effective_max_pending() as u64;
                // Samples held until their file is durable (a memory queue
                // already counts them) and the open files' row groups in
                // progress, about a quarter of a sample's memory a row.
                let samples_held = if c.queue.kind == QueueKind::Disk { held } else { 0 };
                items.push(BudgetItem {
                    what: format!("sinks.{name} parquet files in progress ({held} samples not yet durable)"),
                    bytes: samples(samples_held) + samples(held) / 4,
                });
            }
        }
        for (name, receiver) in &config.receivers {
            if let Some((what, bytes)) = receiver.requests_in_progress_bytes() {
                items.push(BudgetItem { what: format!("receivers.{name} {what}"), bytes });
            }
            let otlp = match receiver {
                crate::receivers::ReceiverConfig::Http(c) => Some(&c.otlp),
                crate::receivers::ReceiverConfig::Grpc(c) => Some(&c.otlp),
                _ => None,
            };
            if let Some(o) = otlp.filter(|o| o.delta == crate::codecs::otlp::DeltaPolicy::Convert) {
                items.push(BudgetItem {
                    what: format!("receivers.{name} OTLP delta totals ({} series)", o.max_delta_series),
                    bytes: o.table_bytes(),
                });
            }
            if let crate::receivers::ReceiverConfig::Kafka(k) = receiver {
                let kbytes = k
                    .librdkafka_options
                    .get(PREFETCH_OPTION)
                    .and_then(|v| v.to_string().parse::<u64>().ok())
                    .unwrap_or(DEFAULT_PREFETCH_KBYTES);
                items.push(BudgetItem {
                    what: format!("receivers.{name} Kafka prefetch ({PREFETCH_OPTION} = {kbytes})"),
                    bytes: kbytes * 1024,
                });
            }
        }
        if config.receivers.values().any(|r| matches!(r, crate::receivers::ReceiverConfig::Http(_))) {
            items.push(BudgetItem {
                what: "HTTP body buffers kept between requests (whole process)".into(),
                bytes: crate::codecs::buffers::KEPT_BUFFER_BYTES as u64,
            });
        }
        if config.receivers.values().any(|r| {
            matches!(
                r,
                crate::receivers::ReceiverConfig::Http(_)
                    | crate::receivers::ReceiverConfig::Grpc(_)
                    | crate::receivers::ReceiverConfig::Kafka(_)
            )
        }) {
            items.push(BudgetItem {
                what: "protobuf request walk vectors kept between requests (whole process)".into(),
                bytes: crate::codecs::walk_vecs::BYTES as u64,
            });
        }
        // Line protocol (HTTP, TCP, UDP, Kafka), remote-write 1.0 (HTTP) and tsrelay's
        // protobuf (gRPC, Kafka) keep series keys; NDJSON does not.
        let keeps_series_keys = config.receivers.values().any(|r| match r {
            crate::receivers::ReceiverConfig::Http(_)
            | crate::receivers::ReceiverConfig::InfluxTcp(_)
            | crate::receivers::ReceiverConfig::InfluxUdp(_)
            | crate::receivers::ReceiverConfig::Grpc(_) => true,
            crate::receivers::ReceiverConfig::Kafka(k) => k.format != crate::receivers::kafka::KafkaFormat::Json,
        });
        if keeps_series_keys {
            let (series, bytes) = crate::codecs::intern::intern_bounds(config.limits.memory_bytes);
            items.push(BudgetItem {
                what: format!("series keys, labels decoded once (at most {series} series, whole process)"),
                bytes,
            });
        }
        for (name, p) in &config.pipelines {
            items.extend(pipeline_items(name, p, per_sample));
        }
        if let Some(q) = config.query.as_ref().filter(|q| q.cache.enabled) {
            items.push(BudgetItem { what: "query.cache (max_bytes)".into(), bytes: q.cache.max_bytes });
        }
        MemoryBudget { items, limit: config.limits.memory_bytes }
    }

    pub fn total(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    pub fn fits(&self) -> bool {
        self.total() <= self.limit
    }

    /// The consumers, largest first.
    pub fn largest(&self) -> Vec<&BudgetItem> {
        let mut v: Vec<&BudgetItem> = self.items.iter().collect();
        v.sort_by_key(|i| std::cmp::Reverse(i.bytes));
        v
    }

    /// Refuses a config whose worst case does not fit, naming the largest consumers.
    pub fn check(&self) -> Result<(), BudgetError> {
        if self.fits() {
            return Ok(());
        }
        let largest = self
            .largest()
            .iter()
            .take(3)
            .map(|i| format!("{} {}", i.what, mib(i.bytes)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(BudgetError { total: self.total(), limit: self.limit, largest })
    }

    /// A table for `tsrelay validate`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "memory budget: worst case {} of limits.memory_bytes {}", mib(self.total()), mib(self.limit));
        for i in self.largest() {
            let _ = writeln!(out, "  {:>12}  {}", mib(i.bytes), i.what);
        }
        out
    }
}

/// Memory queues that can only hold suffixes of one pipeline's stream,
/// grouped by that pipeline: fed by it alone, and full means wait (`block`)
/// or evict the oldest (`drop_oldest`). The fanout shares each batch among
/// them, so a batch queued for several sinks is in memory once. A
/// `drop_newest` queue keeps old batches the others have released, so it
/// counts on its own, as does a sink fed by several pipelines.
fn shared_queue_groups(config: &Config) -> std::collections::BTreeMap<&str, Vec<(&String, u64)>> {
    let mut groups: std::collections::BTreeMap<&str, Vec<(&String, u64)>> = Default::default();
    for (name, sink) in &config.sinks {
        let q = sink.common().queue;
        if q.kind != QueueKind::Memory || q.when_full == WhenFull::DropNewest {
            continue;
        }
        let mut feeders = config.pipelines.iter().filter(|(_, p)| p.sinks.contains(name));
        let (Some((pipeline, _)), None) = (feeders.next(), feeders.next()) else { continue };
        groups.entry(pipeline.as_str()).or_default().push((name, q.max_samples as u64));
    }
    groups
}

/// Lanes of a sink: requests it may have in flight at once. A worker holds
/// per lane the batch it assembles and the one in flight (it hands a lane
/// its next batch only when the lane is idle).
fn sink_lanes(sink: &crate::sinks::SinkConfig) -> u64 {
    use crate::sinks::SinkConfig;
    let lanes = match sink {
        SinkConfig::PrometheusRemoteWrite(c) => c.request.max_in_flight(),
        SinkConfig::Influxdb(c) => c.request.max_in_flight(),
        SinkConfig::Kafka(c) => c.concurrency.max(1),
        SinkConfig::File(_) | SinkConfig::Blackhole(_) | SinkConfig::Rrdcached(_) | SinkConfig::Parquet(_) => 1,
    };
    lanes as u64
}

fn pipeline_items(name: &str, p: &PipelineConfig, per_sample: u64) -> Vec<BudgetItem> {
    let shards = p.shard_count() as u64;
    let batch = INGEST_BATCH_MAX_SAMPLES as u64;
    let samples = |n: u64| n.saturating_mul(batch).saturating_mul(per_sample);
    let mut items = vec![
        BudgetItem {
            what: format!("pipelines.{name} ingest queue ({} batches of {batch} samples)", p.ingest_queue_batches),
            bytes: samples(p.ingest_queue_batches as u64),
        },
        BudgetItem {
            what: format!(
                "pipelines.{name} shard queues ({shards} shards × {} batches of {batch} samples)",
                p.shard_queue_batches
            ),
            bytes: samples(shards * p.shard_queue_batches as u64),
        },
        BudgetItem {
            what: format!("pipelines.{name} batches in stages ({} workers)", 2 * shards),
            bytes: samples(2 * shards),
        },
    ];
    let tables = pipeline_table_bytes(p);
    if tables > 0 {
        items.push(BudgetItem { what: format!("pipelines.{name} per-series tables"), bytes: tables });
    }
    for (i, (rule, bytes)) in crate::pipeline::stages::aggregate_bytes(p).into_iter().enumerate() {
        let max_series = p.aggregate[i].max_series;
        items.push(BudgetItem {
            what: format!("pipelines.{name}.aggregate[{i}] ({rule}: max_series {max_series})"),
            bytes,
        });
    }
    items
}

/// Worst case of a pipeline's per-series tables (cardinality and monotonic
/// state at their configured maximum of series), as the stateful stages
/// report it from their own config.
fn pipeline_table_bytes(p: &PipelineConfig) -> u64 {
    crate::pipeline::stages::table_bytes(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(toml)).extract().unwrap()
    }

    const BASE: &str = r#"
[receivers.http]
type = "http"
[sinks.big]
type = "blackhole"
queue = { max_samples = 1000000 }
[sinks.small]
type = "blackhole"
queue = { max_samples = 1000 }
[pipelines.main]
receivers = ["http"]
sinks = ["big", "small"]
shards = 2
"#;

    #[test]
    fn embedded_default_fits_its_own_limit() {
        let c = config(crate::config::EMBEDDED_DEFAULT);
        let b = MemoryBudget::estimate(&c);
        assert!(b.fits(), "{}", b.report());
    }

    #[test]
    fn refusal_names_the_largest_consumers() {
        let c = config(&format!("[limits]\nmemory_bytes = 100000000\n{BASE}"));
        let err = MemoryBudget::estimate(&c).check().unwrap_err().to_string();
        assert!(err.starts_with("worst-case memory"), "{err}");
        assert!(err.contains("largest: queues of sinks.big, sinks.small (one stream of pipelines.main"), "{err}");
        assert!(err.contains("limits.memory_bytes = 95.4 MiB (100000000)"), "{err}");
    }

    #[test]
    fn every_queue_is_counted() {
        let c = config(&BASE.replace("max_samples = 1000 }", "max_samples = 1000, when_full = \"drop_newest\" }"));
        let b = MemoryBudget::estimate(&c);
        let names: Vec<&str> = b.items.iter().map(|i| i.what.as_str()).collect();
        for expected in ["sinks.big queue", "sinks.small queue", "sinks.big requests", "pipelines.main ingest queue"] {
            assert!(names.iter().any(|n| n.starts_with(expected)), "{expected} missing from {names:?}");
        }
        let queue = b.items.iter().find(|i| i.what.starts_with("sinks.big queue")).unwrap();
        assert_eq!(queue.bytes, 1_000_000 * crate::config::defaults::bytes_per_sample());
    }

    #[test]
    fn network_sinks_count_their_requests_in_flight_and_kafka_prefetch_counts() {
        let c = config(
            r#"
[receivers.k]
type = "kafka"
brokers = "127.0.0.1:9092"
topics = ["in"]
group_id = "g"
librdkafka_options = { "queued.max.messages.kbytes" = 2048 }
[sinks.prom]
type = "prometheus_remote_write"
url = "http://127.0.0.1:9090/api/v1/write"
batch = { max_samples = 1000 }
request = { concurrency = 4 }
[pipelines.main]
receivers = ["k"]
sinks = ["prom"]
"#,
        );
        let b = MemoryBudget::estimate(&c);
        let find = |prefix: &str| b.items.iter().find(|i| i.what.starts_with(prefix)).cloned();
        let worker = find("sinks.prom requests in flight").expect("requests item");
        assert_eq!(worker.what, "sinks.prom requests in flight (4 × 1000 samples encoded)");
        let prefetch = find("receivers.k Kafka prefetch").expect("prefetch item");
        assert_eq!(prefetch.bytes, 2048 * 1024);
    }

    #[test]
    fn queues_of_one_stream_count_once() {
        let per = crate::config::defaults::bytes_per_sample();
        let b = MemoryBudget::estimate(&config(BASE));
        let q: Vec<&BudgetItem> =
            b.items.iter().filter(|i| i.what.contains("queue") && i.what.contains("sinks.")).collect();
        assert_eq!(q.len(), 1, "{q:?}");
        assert!(q[0].what.contains("sinks.big, sinks.small"), "{q:?}");
        // The largest queue, plus one shard push of skew per further queue.
        assert_eq!(q[0].bytes, (1_000_000 + 2 * INGEST_BATCH_MAX_SAMPLES as u64) * per);
    }

    #[test]
    fn a_sink_fed_by_two_pipelines_counts_on_its_own() {
        let c = config(&format!(
            "{BASE}\n[receivers.grpc]\ntype = \"grpc\"\n[pipelines.other]\nreceivers = [\"grpc\"]\nsinks = [\"big\"]\n"
        ));
        let b = MemoryBudget::estimate(&c);
        assert!(b.items.iter().any(|i| i.what == "sinks.big queue (1000000 samples)"), "{:?}", b.items);
        assert!(b.items.iter().any(|i| i.what == "sinks.small queue (1000 samples)"), "{:?}", b.items);
    }

    #[test]
    fn a_disk_queue_costs_its_read_ahead_not_its_size() {
        let c = config(
            &BASE.replace("queue = { max_samples = 1000000 }", "queue = { type = \"disk\", max_bytes = 10000000000 }"),
        );
        let b = MemoryBudget::estimate(&c);
        let q = b.items.iter().find(|i| i.what.starts_with("sinks.big disk queue")).unwrap();
        assert!(q.bytes < 32 << 20, "{q:?}");
    }
}
