//! The start-up estimate: every queue and table at its configured bound.

use std::fmt::Write as _;

use crate::config::Config;
use crate::pipeline::{INGEST_BATCH_MAX_SAMPLES, PipelineConfig};
use crate::queue::{DiskQueueOptions, QueueKind};

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
        for (name, sink) in &config.sinks {
            let common = sink.common();
            let q = common.queue;
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
            let batch = common.batch.max_samples as u64 * sink_batches_in_hand(sink);
            items.push(BudgetItem {
                what: format!("sinks.{name} worker ({batch} samples in hand)"),
                // The samples, and their encoded request.
                bytes: samples(batch) * 3 / 2,
            });
        }
        for (name, p) in &config.pipelines {
            items.extend(pipeline_items(name, p, per_sample));
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

/// Batches of `batch.max_samples` a sink worker may hold at once: the one it
/// assembles and the one it is sending. A sink with concurrent requests holds
/// one per request in flight; sinks report that here once they have it.
fn sink_batches_in_hand(_sink: &crate::sinks::SinkConfig) -> u64 {
    2
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
    items
}

/// Worst case of a pipeline's per-series tables (cardinality and monotonic
/// state at their configured maximum of series). The stateful stages report
/// it from their own config; until they are part of the pipeline config this
/// build has no such tables, so nothing is counted.
fn pipeline_table_bytes(_p: &PipelineConfig) -> u64 {
    0
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
        assert!(err.contains("largest: sinks.big queue (1000000 samples) 343.3 MiB"), "{err}");
        assert!(err.contains("limits.memory_bytes = 95.4 MiB (100000000)"), "{err}");
    }

    #[test]
    fn every_queue_is_counted() {
        let b = MemoryBudget::estimate(&config(BASE));
        let names: Vec<&str> = b.items.iter().map(|i| i.what.as_str()).collect();
        for expected in ["sinks.big queue", "sinks.small queue", "sinks.big worker", "pipelines.main ingest queue"] {
            assert!(names.iter().any(|n| n.starts_with(expected)), "{expected} missing from {names:?}");
        }
        let queue = b.items.iter().find(|i| i.what.starts_with("sinks.big queue")).unwrap();
        assert_eq!(queue.bytes, 1_000_000 * crate::config::defaults::bytes_per_sample());
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
