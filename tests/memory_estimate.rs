//! Measures what a queued sample costs in memory (heap included), the
//! figure behind `limits.bytes_per_sample`, with a counting allocator.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use tsrelay::model::Batch;
use tsrelay::proto::v1::{Label, Sample, Series, WriteRequest};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `series` series of one sample, each with a name and `labels` labels (values ≤ 24 bytes).
fn request(series: usize, labels: usize) -> WriteRequest {
    WriteRequest {
        id: 1,
        series: (0..series)
            .map(|i| Series {
                labels: std::iter::once(Label { name: "__name__".into(), value: format!("node_metric_{}", i % 100) })
                    .chain(
                        (0..labels).map(|l| Label { name: format!("label_{l}"), value: format!("value-{i:06}-{l}") }),
                    )
                    .collect(),
                samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Heap and inline bytes per sample of a decoded, hashed batch.
fn measured_bytes_per_sample(labels: usize) -> f64 {
    let n = 10_000;
    let req = request(n, labels);
    // The decoder keeps the vectors of its walk for the next request (`codecs::walk_vecs`,
    // a fixed cost in the start-up memory budget, not per sample): fill those pools first.
    drop(tsrelay::codecs::protobuf::decode_request(req.clone(), 0));
    let before = LIVE.load(Ordering::Relaxed);
    // The clone is allocated and freed in between: only what the batch keeps counts.
    let decoded = tsrelay::codecs::protobuf::decode_request(req.clone(), 0);
    let mut batch = Batch::new(decoded.samples);
    batch.hashes = batch
        .samples
        .iter_mut()
        .map(|s| {
            s.labels.sort();
            s.labels.series_hash()
        })
        .collect();
    let batch = Arc::new(batch);
    let after = LIVE.load(Ordering::Relaxed);
    drop(batch);
    (after - before) as f64 / n as f64
}

/// The same for line protocol: `node_metric_<i>` with five tags, one field `value`.
fn measured_lp_bytes_per_sample(tags: usize) -> f64 {
    use tsrelay::codecs::line_protocol::{LineErrors, Precision, decode_body};
    let n = 10_000;
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&format!("node_metric_{}", i % 100));
        for t in 0..tags {
            body.push_str(&format!(",label_{t}=value-{i:06}-{t}"));
        }
        body.push_str(" value=1 1700000000000000000\n");
    }
    // The line-protocol series-key table allocates its slots whole, once per part, at its
    // first entries: a fixed cost, counted in the start-up memory budget on its own ("series
    // keys, labels decoded once"), not per sample. Other series fill it first.
    let warm_up: String = (0..2_000).map(|i| format!("warm_up,k=v{i} value=1\n")).collect();
    decode_body(warm_up.as_bytes(), Precision::Nanosecond, 0, &mut Vec::new(), &mut LineErrors::new());
    let before = LIVE.load(Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut errors = LineErrors::new();
    decode_body(body.as_bytes(), Precision::Nanosecond, 0, &mut samples, &mut errors);
    samples.shrink_to_fit();
    let mut batch = Batch::new(samples);
    batch.hashes = batch
        .samples
        .iter_mut()
        .map(|s| {
            s.labels.sort();
            s.labels.series_hash()
        })
        .collect();
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(batch.len(), n);
    drop(batch);
    (after - before) as f64 / n as f64
}

#[test]
fn default_bytes_per_sample_covers_a_name_and_five_labels() {
    let five = measured_bytes_per_sample(5);
    let assumed = tsrelay::config::defaults::bytes_per_sample() as f64;
    assert!(five <= assumed, "a name and five labels take {five} bytes, limits.bytes_per_sample assumes {assumed}");
    // Each further label costs its name and value plus 6 bytes of framing
    // (labels are packed): the documented rule. Here `label_N` and `value-NNNNNN-N`.
    let eight = measured_bytes_per_sample(8);
    let per_label = ("label_5".len() + "value-000000-5".len() + 6) as f64;
    assert!((eight - five - 3.0 * per_label).abs() < 1.0, "five labels {five}, eight {eight}");
    let lp = measured_lp_bytes_per_sample(5);
    assert!(
        lp <= assumed,
        "a line-protocol sample with five tags takes {lp} bytes, limits.bytes_per_sample assumes {assumed}"
    );
    println!("bytes per queued sample, name + 5 labels: gRPC {five}, line protocol {lp}; + 3 labels: {eight}");
}
