//! The pipeline stages of DESIGN §2 and [`build`], which assembles them for
//! one pipeline. The order lives in [`build`] and in the pipeline's tasks
//! (stateless before the shard split, stateful inside the shards), nowhere else.

pub mod aggregate;
pub mod cardinality;
mod md5;
pub mod monotonic;
pub mod normalize;
pub mod relabel;
pub mod resolve;
pub mod series;
mod series_table;
pub mod validate;

use std::sync::Arc;

pub use aggregate::{Aggregate, AggregateRule, AggregateShared};
pub use cardinality::{Cardinality, CardinalityAction, CardinalityConfig, CardinalityShared};
pub use monotonic::{CounterReset, Monotonic, MonotonicConfig};
pub use normalize::{InvalidNames, Normalize, NormalizeConfig};
pub use relabel::{RelabelAction, RelabelRule};
pub use resolve::Resolve;
pub use validate::{NonFinite, UnknownMetrics, Validate, ValidateConfig};

use super::{PipelineConfig, Stages, StatefulStage, StatelessStage};
use crate::model::Sample;
use crate::registry::MetricRegistry;

/// The stages of pipeline `pipeline_name`, configured by its sections:
/// normalize → validate, then per shard cardinality → monotonic → aggregate
/// (when the pipeline has `aggregate` rules; their flush task is started by
/// [`crate::pipeline::spawn`]).
pub fn build(pipeline_name: &str, config: &PipelineConfig, registry: Arc<MetricRegistry>) -> Stages {
    // Normalize then validate, as one stage that keeps their label-only verdicts per series.
    let stateless: Vec<Box<dyn StatelessStage>> = vec![Box::new(Resolve::new(
        Normalize::new(&config.normalize),
        Validate::new(pipeline_name, &config.validate, registry),
        config.cardinality.max_series,
    ))];
    let shared = CardinalityShared::new(pipeline_name, &config.cardinality, config.shard_count());
    let series = shared.clone();
    let pipeline: Arc<str> = pipeline_name.into();
    let monotonic = config.monotonic.clone();
    let aggregate = (!config.aggregate.is_empty())
        .then(|| AggregateShared::new(pipeline_name, &config.aggregate, config.cardinality.forget_after));
    let aggregator = aggregate.clone();
    // Both stateful stages of a shard share its series table.
    let stateful = move |_shard: usize| -> Vec<Box<dyn StatefulStage>> {
        let table = shared.new_shard();
        let mut stages: Vec<Box<dyn StatefulStage>> = vec![
            Box::new(Cardinality::new(shared.clone(), table.clone())),
            Box::new(Monotonic::new(&pipeline, &monotonic, table)),
        ];
        if let Some(a) = &aggregate {
            stages.push(Box::new(Aggregate::new(a.clone(), a.new_shard())));
        }
        stages
    };
    Stages { stateless, stateful: Box::new(stateful), series: Some(series), aggregator, aggregate_sinks: Vec::new() }
}

/// Worst-case bytes of the per-series tables of one pipeline: series state
/// at `max_series`, interned label pairs at `max_label_pairs`, per-metric
/// counts at `max_metrics`, the validate type table, the label verdicts
/// (see [`resolve`]). For the start-up memory check.
pub fn table_bytes(config: &PipelineConfig) -> u64 {
    let c = &config.cardinality;
    let series = c.max_series * worst_bytes_per_series(config.validate.max_labels);
    // A pair: two inline strings and a count (56 bytes) in a vector that may
    // have doubled, plus its key in a just-grown table (16 bytes a bucket).
    let pairs = c.max_label_pairs as u64 * (2 * 56 + (17 * 16u64).div_ceil(7));
    // A shared count: an inline name and a u32 in a just-grown table.
    let metrics = c.max_metrics as u64 * (33 * 16u64).div_ceil(7);
    let verdicts = c.max_series.min(resolve::VERDICT_CACHE_MAX_SERIES) * resolve::VERDICT_BYTES;
    series + pairs + metrics + config.validate.table_bytes() + verdicts
}

/// Worst-case bytes of each aggregate rule's state (see [`AggregateRule::state_bytes`]), by rule name.
pub fn aggregate_bytes(config: &PipelineConfig) -> Vec<(String, u64)> {
    config.aggregate.iter().map(|r| (r.name(), r.state_bytes(config.cardinality.max_series))).collect()
}

/// Bytes one tracked series costs at most, with up to `max_labels` labels
/// besides `__name__`: its bucket in a just-grown series table (8 of 15
/// buckets in use) and its label set (4 bytes a label plus a length) in an
/// array that grows by a quarter and keeps under a quarter of garbage.
pub fn worst_bytes_per_series(max_labels: usize) -> u64 {
    let bucket = series_table::worst_bytes_per_entry(series::SLOT_SIZE);
    let set = (4 * (max_labels as u64 + 2) * 5).div_ceil(3);
    bucket + set
}

pub use crate::model::{SeriesHasher, SeriesMap};

/// Gives back memory after many series were forgotten, so a burst of
/// series does not pin its peak for ever.
fn shrink_if_sparse<V>(map: &mut SeriesMap<V>) {
    if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// Keeps the samples for which `keep` returns true, with `hashes` aligned:
/// `keep` sees each sample and its hash, and may rewrite both.
fn retain_aligned(
    samples: &mut Vec<Sample>,
    hashes: &mut Vec<u64>,
    mut keep: impl FnMut(&mut Sample, &mut u64) -> bool,
) {
    retain_aligned_ahead(samples, hashes, |s, h, _| keep(s, h));
}

/// How many samples ahead [`retain_aligned_ahead`] hands on a hash: about the
/// misses a core keeps in flight, so a lookup asked for then is in by its turn.
const HASHES_AHEAD: usize = 12;

/// [`retain_aligned`], also handing `keep` the hash [`HASHES_AHEAD`] samples
/// further on (if any), for the caller to ask for its table entry ahead.
fn retain_aligned_ahead(
    samples: &mut Vec<Sample>,
    hashes: &mut Vec<u64>,
    mut keep: impl FnMut(&mut Sample, &mut u64, Option<u64>) -> bool,
) {
    let n = samples.len().min(hashes.len());
    let mut kept = 0;
    for i in 0..n {
        let ahead = hashes.get(i + HASHES_AHEAD).copied().filter(|_| i + HASHES_AHEAD < n);
        if keep(&mut samples[i], &mut hashes[i], ahead) {
            if kept != i {
                samples.swap(kept, i);
                hashes[kept] = hashes[i];
            }
            kept += 1;
        }
    }
    samples.truncate(kept);
    hashes.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use std::hash::Hasher;

    #[test]
    fn retain_aligned_keeps_pairs_together() {
        let mut samples: Vec<Sample> = (0..10).map(|i| Sample::new(Labels::new(), i as f64, i)).collect();
        let mut hashes: Vec<u64> = (0..10).collect();
        retain_aligned(&mut samples, &mut hashes, |s, h| {
            *h += 100;
            s.timestamp_ms % 3 != 0
        });
        assert_eq!(hashes, vec![101, 102, 104, 105, 107, 108]);
        assert!(samples.iter().zip(&hashes).all(|(s, h)| s.timestamp_ms as u64 + 100 == *h));
    }

    #[test]
    fn worst_case_per_series_is_within_budget() {
        // DESIGN §6: at most 200 bytes per active series for both stages,
        // here with the default limit of 10 labels.
        let worst = worst_bytes_per_series(10);
        assert!(worst <= 200, "{worst} bytes");
    }

    #[test]
    fn series_hasher_spreads_high_bits() {
        let mut h = SeriesHasher::default();
        h.write_u64(1);
        let a = h.finish();
        h.write_u64(2);
        assert_ne!(a >> 57, h.finish() >> 57);
    }
}
