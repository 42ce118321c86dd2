//! A line's fields share one label set and a series' samples share its labels (issue #12):
//! decoding a line with the most fields and tags the default limits allow, or a gRPC series
//! with many samples, copies the tags once, not once per sample. Measured with a counting
//! allocator (bytes and allocations made while decoding) and by pointer identity of the
//! shared part, before and after the normalize stage.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tsrelay::codecs::limits::DecodeLimits;
use tsrelay::codecs::line_protocol::{LineErrors, Precision, decode_body_limited};
use tsrelay::model::Sample;
use tsrelay::pipeline::stages::{Normalize, NormalizeConfig, ValidateConfig};
use tsrelay::pipeline::{DropTally, StatelessStage};
use tsrelay::proto::v1::{Label, Sample as WireSample, Series, WriteRequest};

struct Counting;
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set only on the thread inside `measure`: the test harness's own threads (output
    /// capture, the other test starting) allocate at the same time, more so on a slow
    /// 2-core machine, and must not be counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count(bytes: usize) {
    if COUNTING.with(Cell::get) {
        ALLOCATED.fetch_add(bytes, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Held by each test for its whole run: the counters are global, so the tests of this
/// binary measure one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Bytes and allocations `f` makes.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let (bytes, count) = (ALLOCATED.load(Ordering::Relaxed), ALLOCATIONS.load(Ordering::Relaxed));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATED.load(Ordering::Relaxed) - bytes, ALLOCATIONS.load(Ordering::Relaxed) - count)
}

fn limits() -> (usize, usize, usize) {
    let v = ValidateConfig::default();
    (v.max_fields_per_line, v.max_labels, v.max_label_value_length)
}

/// Every sample after the first holds the first one's shared labels, not a copy.
fn assert_all_share(samples: &[Sample], what: &str) {
    let first = &samples[0].labels;
    for (i, s) in samples.iter().enumerate().skip(1) {
        assert!(s.labels.shares_storage_with(first), "{what}: sample {i} holds its own copy of the labels");
    }
}

#[test]
fn the_fields_of_a_line_at_the_limits_share_its_tags() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (fields, tags, value_len) = limits();
    let now_ns = tsrelay::model::now_ms() * 1_000_000;
    let line = |tags: usize| {
        let mut line = String::from("m");
        for t in 0..tags {
            line.push_str(&format!(",tag_{t:02}={}", "v".repeat(value_len)));
        }
        for f in 0..fields {
            line.push_str(if f == 0 { " " } else { "," });
            line.push_str(&format!("field_{f:04}={f}"));
        }
        line.push_str(&format!(" {now_ns}\n"));
        line
    };
    let tag_bytes: usize = (0..tags).map(|_| "tag_00".len() + value_len + 6).sum();
    let decode_limits = DecodeLimits::for_pipeline_defaults();
    let decode = |line: &str| {
        let mut samples = Vec::with_capacity(fields);
        let mut errors = LineErrors::new();
        let (summary, bytes, allocations) = measure(|| {
            decode_body_limited(
                line.as_bytes(),
                Precision::Nanosecond,
                now_ns,
                &decode_limits,
                &mut samples,
                &mut errors,
            )
        });
        assert!(errors.is_empty(), "{:?}", errors.reported());
        assert_eq!((summary.accepted_samples, samples.len()), (fields as u64, fields));
        (samples, bytes, allocations)
    };
    // The line-protocol series-key table allocates its slots whole, once per part, at its
    // first entries (a fixed cost, budgeted on its own): other series fill every part first.
    let warm_up: String = (0..2_000).map(|i| format!("warm_up,k=v{i} value=1 {now_ns}\n")).collect();
    let mut warm_samples = Vec::new();
    decode_body_limited(
        warm_up.as_bytes(),
        Precision::Nanosecond,
        now_ns,
        &decode_limits,
        &mut warm_samples,
        &mut LineErrors::new(),
    );
    let (_, bare_bytes, bare_allocations) = decode(&line(0));
    let (mut samples, bytes, allocations) = decode(&line(tags));
    assert_eq!(samples[7].labels.len(), tags + 1);
    assert_eq!(samples[7].labels.name(), Some("m_field_0007"));
    assert_eq!(samples[7].labels.get("tag_09").map(str::len), Some(value_len));
    assert_all_share(&samples, "line protocol");
    // Against the same line without tags: the tags cost their bytes once and a few
    // allocations for the line, not a copy per field (`fields × tag_bytes`, 1.1 MB here).
    println!(
        "line of {fields} fields × {tags} tags: {bytes} bytes in {allocations} allocations \
         ({bare_bytes} bytes in {bare_allocations} without tags)"
    );
    assert!(allocations <= bare_allocations + 8, "{allocations} allocations, {bare_allocations} without tags");
    let extra = bytes - bare_bytes;
    assert!(extra < 8 * tag_bytes, "the tags cost {extra} bytes; a copy per field is {}", fields * tag_bytes);

    // The normalize stage (default config) and the pipeline's sort keep them shared.
    let mut tally = DropTally::default();
    Normalize::new(&NormalizeConfig::default()).process(&mut samples, &mut tally);
    samples.iter_mut().for_each(|s| s.labels.sort());
    assert_eq!(samples.len(), fields);
    assert_all_share(&samples, "line protocol after normalize");
}

#[test]
fn the_samples_of_a_grpc_series_share_its_labels() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_, tags, value_len) = limits();
    let n = 1000;
    let now_ms = tsrelay::model::now_ms();
    let req = WriteRequest {
        id: 1,
        series: vec![Series {
            labels: std::iter::once(Label { name: "__name__".into(), value: "node_metric".into() })
                .chain((0..tags).map(|t| Label { name: format!("label_{t:02}"), value: "v".repeat(value_len) }))
                .collect(),
            samples: (0..n).map(|i| WireSample { value: i as f64, timestamp: now_ms - n as i64 + i as i64 }).collect(),
            ..Default::default()
        }],
    };
    let limits = DecodeLimits::for_pipeline_defaults();
    let label_bytes = tags * ("label_00".len() + value_len + 6);
    // The series-key table (gRPC uses it too) allocates its slots whole, once per part, at
    // its first entries (a fixed cost, budgeted on its own): other series fill every part first.
    let warm_up = WriteRequest {
        id: 0,
        series: (0..2_000)
            .map(|i| Series {
                labels: vec![
                    Label { name: "__name__".into(), value: "warm_up".into() },
                    Label { name: "k".into(), value: format!("v{i}") },
                ],
                samples: vec![WireSample { value: 1.0, timestamp: now_ms }],
                ..Default::default()
            })
            .collect(),
    };
    let warm = tsrelay::codecs::protobuf::decode_bytes(&prost::Message::encode_to_vec(&warm_up), now_ms, &limits);
    assert_eq!(warm.expect("a valid request").samples.len(), 2_000);
    // What the gRPC and Kafka receivers run: the request's bytes walked in place.
    let body = prost::Message::encode_to_vec(&req);
    let (decoded, bytes, allocations) =
        measure(|| tsrelay::codecs::protobuf::decode_bytes(&body, now_ms, &limits).expect("a valid request"));
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    assert_eq!(decoded.samples.len(), n);
    assert_all_share(&decoded.samples, "gRPC");
    // The samples' vector and the labels once, plus the walk's own lists while
    // it runs (a 16-byte value and timestamp per sample, a pair of slices per label).
    println!("series of {n} samples × {tags} labels: {bytes} bytes in {allocations} allocations");
    assert!(allocations <= 24, "{allocations} allocations for one series of {n} samples");
    let walk = n * 16 * 2;
    assert!(
        bytes < n * std::mem::size_of::<Sample>() + walk + 4 * label_bytes,
        "{bytes} bytes allocated; a copy per sample is {}",
        n * label_bytes
    );
}
