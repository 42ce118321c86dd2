//! Histograms do not grow when `/metrics` is never scraped: the exporter
//! buffers every recorded value until it is folded into the buckets, and
//! tsrelay's upkeep thread does that on a timer (telemetry::spawn_upkeep).
//! One test in its own process, so the resident set it measures is its own.

use std::time::Duration;

use metrics::{Key, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;

fn record(recorder: &impl Recorder, values: usize) {
    static META: Metadata<'static> = Metadata::new("test", metrics::Level::INFO, None);
    let h = recorder.register_histogram(&Key::from_name("tsrelay_test_seconds"), &META);
    for i in 0..values {
        h.record((i % 1000) as f64 / 1000.0);
    }
}

#[test]
fn histograms_stay_bounded_without_scrapes() {
    let recorder = PrometheusBuilder::new().set_buckets(&[0.1, 0.5, 1.0]).unwrap().build_recorder();
    tsrelay::telemetry::spawn_upkeep(recorder.handle(), Duration::from_millis(20));
    record(&recorder, 10_000);
    let before = tsrelay::limits::read_rss_bytes().expect("Linux /proc");
    // 16 M values: 128 MB if they were kept until a scrape.
    for _ in 0..160 {
        record(&recorder, 100_000);
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = tsrelay::limits::read_rss_bytes().unwrap();
    let grown = after.saturating_sub(before);
    assert!(grown < 32 << 20, "resident set grew by {} MiB without a scrape", grown >> 20);
    // Nothing was lost either: every value reaches the buckets. The upkeep
    // thread may be between draining a block and merging it when we render
    // (CI once saw 16009999), so wait for the count rather than read it once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = recorder.handle().render();
        if text.contains("tsrelay_test_seconds_count 16010000") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "values lost: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
