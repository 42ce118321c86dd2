//! Per-sink queue policies, against the real binary: every refused or evicted
//! sample is counted and `received = sent + dropped + queued` holds.
mod common;

use std::time::Duration;

use common::*;
use tsrelay::proto::v1::ingest_client::IngestClient;
use tsrelay::proto::v1::{Label, Sample, Series, WriteRequest};

fn request(id: u64, n: usize) -> WriteRequest {
    WriteRequest {
        id,
        series: (0..n)
            .map(|i| Series {
                labels: vec![
                    Label { name: "__name__".into(), value: "q".into() },
                    Label { name: "i".into(), value: format!("{id}-{i}") },
                ],
                samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Stuck sink (FIFO), queue of 100 samples, 20 requests of 50: the queue's
/// policy decides what is lost, and the books balance.
async fn overflow(when_full: &str) -> std::collections::BTreeMap<String, f64> {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let port = free_port();
    let config = format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{port}"
[sinks.stuck]
type = "file"
path = "{fifo}"
queue = {{ max_samples = 100, when_full = "{when_full}" }}
batch = {{ max_samples = 50, max_age_ms = 10 }}
[sinks.ok]
type = "blackhole"
[pipelines.main]
receivers = ["grpc"]
sinks = ["stuck", "ok"]
# Fixed 2023 timestamps: widen the window the validate stage enforces.
[pipelines.main.validate]
max_past = "36500d"
"#,
        fifo = fifo.display()
    );
    let t = Tsrelay::start(dir.path(), &config);
    let mut c = IngestClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    for id in 0..20 {
        c.write(request(id, 50)).await.expect("accepted: a drop policy never blocks");
    }
    wait_for(Duration::from_secs(10), "the healthy sink to get all 1000", || {
        (t.metric_sum("tsrelay_sink_sent_samples_total", &["sink=\"ok\""]) == 1000.0).then_some(())
    });
    let m = t.metrics();
    let stuck = "sink=\"stuck\"";
    let received = sum_metric(&m, "tsrelay_sink_received_samples_total", &[stuck]);
    let sent = sum_metric(&m, "tsrelay_sink_sent_samples_total", &[stuck]);
    let dropped = sum_metric(&m, "tsrelay_dropped_samples_total", &[stuck]);
    let queued = sum_metric(&m, "tsrelay_queue_samples", &[stuck]);
    assert_eq!(received, 1000.0);
    assert_eq!(received, sent + dropped + queued, "books must balance: {m:?}");
    // 100 in the queue plus, in the stuck worker's hands, up to two batches
    // per lane (one being written, one filling behind it); a batch closes on
    // the item that reaches max_samples, so each may overshoot by one item.
    assert!((100.0..=300.0).contains(&queued), "queued {queued}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_counts_refused_batches() {
    let m = overflow("drop_newest").await;
    let full = sum_metric(
        &m,
        "tsrelay_dropped_samples_total",
        &["sink=\"stuck\"", "reason=\"queue_full\"", "stage=\"queue\""],
    );
    assert!(full >= 600.0, "queue_full drops {full}"); // 1000 - 100 queued - up to 300 in the worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_counts_evicted_batches() {
    let m = overflow("drop_oldest").await;
    let full = sum_metric(&m, "tsrelay_dropped_samples_total", &["sink=\"stuck\"", "reason=\"queue_full\""]);
    assert!(full >= 600.0, "queue_full drops {full}"); // 1000 - 100 queued - up to 300 in the worker
}
