//! Memory per tracked series of the cardinality and monotonic state together
//! (DESIGN §6: at most 200 bytes; Prometheus spends about 2 KB).
//!
//! A counting global allocator measures the heap the two stages hold after
//! tracking N series, with nothing else alive that grew meanwhile. The label
//! sets look like a node-exporter fleet: 100 metric names on 10,000 hosts,
//! so distinct label pairs are few and shared (the discovery index keeps them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tsrelay::model::{Labels, MetricKind, Sample};
use tsrelay::pipeline::stages::{
    Cardinality, CardinalityConfig, CardinalityShared, Monotonic, MonotonicConfig, worst_bytes_per_series,
};
use tsrelay::pipeline::{DropTally, StatefulStage};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Feeds `n` new series through both stages; returns the bytes each stage
/// holds afterwards, per series.
fn measure(n: u64) -> (f64, f64) {
    let config = CardinalityConfig { max_series: n, max_series_per_metric: n as u32, ..CardinalityConfig::default() };
    let before_all = live();
    let shared = CardinalityShared::new("memory", &config, 1);
    let shard = shared.new_shard();
    let mut cardinality = Cardinality::new(shared.clone(), shard.clone());
    let mut monotonic = Monotonic::new("memory", &MonotonicConfig::default(), shard);
    let mut cardinality_bytes = live() - before_all;
    let mut monotonic_bytes = 0isize;
    let mut next = 0u64;
    while next < n {
        let count = (n - next).min(10_000);
        let mut samples: Vec<Sample> = (next..next + count)
            .map(|i| {
                let mut labels = Labels::with_capacity(3, 64);
                labels.push("__name__", format!("node_metric_{}", i % 100));
                labels.push("instance", format!("host-{}:9100", i / 100));
                labels.push("job", "node");
                labels.sort();
                Sample { labels, value: 1.0, timestamp_ms: 1, kind: MetricKind::Counter }
            })
            .collect();
        let mut hashes: Vec<u64> = (next..next + count).map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())).collect();
        let mut drops = DropTally::default();
        let before = live();
        cardinality.process(&mut samples, &mut hashes, &mut drops);
        let between = live();
        monotonic.process(&mut samples, &mut hashes, &mut drops);
        cardinality_bytes += between - before;
        monotonic_bytes += live() - between;
        assert!(drops.is_empty());
        next += count;
    }
    assert_eq!(cardinality.len() as u64, n);
    (cardinality_bytes as f64 / n as f64, monotonic_bytes as f64 / n as f64)
}

#[test]
fn tracked_series_cost_at_most_200_bytes() {
    for n in [100_000, 1_000_000] {
        let (cardinality, monotonic) = measure(n);
        let total = cardinality + monotonic;
        println!(
            "{n} series: {total:.1} B per series (admitting: {cardinality:.1} B, monotonic on top: {monotonic:.1} B) \
             (bound for 3 labels {} B, for 10 labels {} B)",
            worst_bytes_per_series(2),
            worst_bytes_per_series(10)
        );
        assert!(total <= 200.0, "{n} series: {total:.1} bytes per series");
        // The start-up memory check relies on the bound (pairs aside, which are few here).
        assert!(total <= worst_bytes_per_series(2) as f64 + 2.0, "{total:.1} above the computed bound");
    }
}
