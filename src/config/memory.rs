//! The start-up memory check (DESIGN invariant 4): the worst case of every
//! queue and per-series table, added up and compared with `limits.memory_bytes`.

use std::collections::BTreeMap;

use super::Config;
use crate::pipeline::stages;
use crate::queue::WhenFull;

/// What one queued sample costs: the sample (48 bytes), its series hash (8)
/// and about four labels of up to 24 bytes each stored inline (48 each).
/// Longer or more labels cost more; this is an estimate, not a bound.
pub const QUEUED_SAMPLE_BYTES: u64 = 256;

/// One entry of the estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConsumer {
    /// Which part of the config it comes from (`sinks.prom queue`, `pipelines.main tables`).
    pub what: String,
    pub bytes: u64,
}

/// The worst-case consumers, largest first.
///
/// Fanout shares batches between the sinks of a pipeline. A queue that
/// blocks or drops its oldest batches holds the newest part of what the
/// pipeline produced, so such queues of one pipeline overlap and the
/// largest bounds them all; a `drop_newest` queue can keep older batches
/// the others have delivered, so it counts on its own.
pub fn worst_case(config: &Config) -> Vec<MemoryConsumer> {
    let mut out = Vec::new();
    let mut counted: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, p) in &config.pipelines {
        let mut largest: Option<(&str, u64)> = None;
        for sink in &p.sinks {
            let Some(s) = config.sinks.get(sink) else { continue };
            let queue = s.common().queue;
            let samples = queue.max_samples as u64;
            if queue.when_full == WhenFull::DropNewest {
                *counted.entry(sink.as_str()).or_default() += samples;
            } else if largest.is_none_or(|(_, n)| samples > n) {
                largest = Some((sink.as_str(), samples));
            }
        }
        if let Some((sink, samples)) = largest {
            *counted.entry(sink).or_default() += samples;
        }
        out.push(MemoryConsumer {
            what: format!(
                "pipelines.{name} per-series tables ({} series, {} metrics)",
                p.cardinality.max_series, p.cardinality.max_metrics
            ),
            bytes: stages::table_bytes(p),
        });
    }
    for (sink, samples) in counted {
        out.push(MemoryConsumer {
            what: format!("sinks.{sink} queue ({samples} samples)"),
            bytes: samples * QUEUED_SAMPLE_BYTES,
        });
    }
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.what.cmp(&b.what)));
    out
}

/// `Err` names the largest consumers when they exceed `limit`.
pub fn check(config: &Config, limit: u64) -> Result<(), String> {
    let consumers = worst_case(config);
    let total: u64 = consumers.iter().map(|c| c.bytes).sum();
    if total <= limit {
        return Ok(());
    }
    let largest: Vec<String> = consumers.iter().take(3).map(|c| format!("{} {}", c.what, mib(c.bytes))).collect();
    Err(format!(
        "worst-case memory {} exceeds limits.memory_bytes {}; largest: {}. Lower those limits or raise limits.memory_bytes",
        mib(total),
        mib(limit),
        largest.join(", ")
    ))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
