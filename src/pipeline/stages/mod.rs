//! The pipeline stages of DESIGN §2 and [`build`], which assembles them for
//! one pipeline. The order lives in [`build`] and in the pipeline's tasks
//! (stateless before the shard split, stateful inside the shards), nowhere else.

pub mod cardinality;
mod md5;
pub mod monotonic;
pub mod normalize;
pub mod relabel;
pub mod validate;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

pub use cardinality::{Cardinality, CardinalityAction, CardinalityConfig, CardinalityShared};
pub use monotonic::{CounterReset, Monotonic, MonotonicConfig};
pub use normalize::{InvalidNames, Normalize, NormalizeConfig};
pub use relabel::{RelabelAction, RelabelRule};
pub use validate::{NonFinite, UnknownMetrics, Validate, ValidateConfig};

use super::{PipelineConfig, Stages, StatefulStage, StatelessStage};
use crate::model::Sample;
use crate::registry::MetricRegistry;

/// The stages of pipeline `pipeline_name`, configured by its sections:
/// normalize → validate, then per shard cardinality → monotonic.
pub fn build(pipeline_name: &str, config: &PipelineConfig, registry: Arc<MetricRegistry>) -> Stages {
    let stateless: Vec<Box<dyn StatelessStage>> = vec![
        Box::new(Normalize::new(&config.normalize)),
        Box::new(Validate::new(pipeline_name, &config.validate, registry)),
    ];
    let shared = CardinalityShared::new(pipeline_name, &config.cardinality);
    let pipeline: Arc<str> = pipeline_name.into();
    let monotonic = config.monotonic.clone();
    let forget_after = config.cardinality.forget_after;
    let stateful = move |_shard: usize| -> Vec<Box<dyn StatefulStage>> {
        vec![Box::new(Cardinality::new(shared.clone())), Box::new(Monotonic::new(&pipeline, &monotonic, forget_after))]
    };
    Stages { stateless, stateful: Box::new(stateful) }
}

/// Worst-case bytes of the per-series tables of one pipeline (cardinality
/// and monotonic state at `max_series`, per-metric tables at `max_metrics`,
/// the validate type table), for the start-up memory check.
pub fn table_bytes(config: &PipelineConfig) -> u64 {
    let c = &config.cardinality;
    let shards = config.shard_count() as u64;
    let series = c.max_series * worst_bytes_per_series();
    // The shared count (name + u32 in a grown table: ~80 bytes) and, in
    // every shard, the id map entry and the name slot (~140 bytes); names
    // longer than 24 bytes add their length on the heap.
    let per_metric = 80 + shards * 140;
    series + c.max_metrics as u64 * per_metric + config.validate.table_bytes()
}

/// Bytes one tracked series costs in the cardinality and monotonic tables
/// in the worst case: both tables just grown, so 7 of 16 buckets are in use.
pub fn worst_bytes_per_series() -> u64 {
    let slots = cardinality_slot_bytes() + monotonic_slot_bytes();
    (slots * 16).div_ceil(7)
}

/// A hash-table bucket of the cardinality table: key, value and control byte.
fn cardinality_slot_bytes() -> u64 {
    (cardinality::SLOT_SIZE + 1) as u64
}

fn monotonic_slot_bytes() -> u64 {
    (monotonic::SLOT_SIZE + 1) as u64
}

/// Per-series tables are keyed by the series hash, which is already an
/// xxh3 digest: the hasher only spreads it, it does not hash again.
#[derive(Default, Clone, Copy)]
pub struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are ever hashed; stay correct for anything else.
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        // The shard split used the high bits, so within a shard they are
        // nearly constant; an odd multiply mixes every bit into the high ones
        // the table uses for its tag bytes, and keeps it a bijection.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A table keyed by series hash.
pub type SeriesMap<V> = HashMap<u64, V, BuildHasherDefault<SeriesHasher>>;

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
    let n = samples.len().min(hashes.len());
    let mut kept = 0;
    for i in 0..n {
        if keep(&mut samples[i], &mut hashes[i]) {
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
        // DESIGN §6: at most 200 bytes per active series for both tables.
        assert!(worst_bytes_per_series() <= 200, "{} bytes", worst_bytes_per_series());
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
