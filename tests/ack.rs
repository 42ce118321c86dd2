//! `ack = "delivered"` end to end over gRPC: the answer comes after delivery,
//! a timeout is DEADLINE_EXCEEDED while the data still arrives, and with a
//! disk queue "durably queued" counts as delivered (it survives `kill -9`).
//! (The HTTP side, 204/504, is in tests/http_receiver.rs.)
mod common;

use std::time::{Duration, Instant};

use common::fifo::FifoBackend;
use common::load::{keys_of, now_ms, request, sample_key};
use common::*;
use tonic::Code;
use tsrelay::proto::v1::ingest_client::IngestClient;

const PER_REQUEST: usize = 50;

fn config(grpc: u16, ack_timeout: &str, sinks: &str, names: &str) -> String {
    format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
ack = "delivered"
ack_timeout = "{ack_timeout}"
{sinks}
[pipelines.main]
receivers = ["grpc"]
sinks = [{names}]
shards = 1
"#
    )
}

fn keys_in_file(path: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(sample_key).collect()
}

async fn client(port: u16) -> IngestClient<tonic::transport::Channel> {
    IngestClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect to tsrelay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_comes_after_the_samples_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let sinks = "[sinks.out]\ntype = \"file\"\npath = \"out.lp\"\nbatch = { max_samples = 1000, max_age_ms = 300 }\n";
    let _t = Tsrelay::start(dir.path(), &config(grpc, "10s", sinks, "\"out\""));
    let mut c = client(grpc).await;
    let base = now_ms();
    for id in 0..5 {
        let started = Instant::now();
        c.write(request("0", id, PER_REQUEST, base)).await.expect("delivered");
        // With max_age_ms = 300 the batch waits for more; the answer waits for the write.
        assert!(started.elapsed() >= Duration::from_millis(250), "answered before the batch went out");
        let written = keys_in_file(&dir.path().join("out.lp"));
        assert!(keys_of(0..=id, PER_REQUEST, base).is_subset(&written), "request {id} answered before it was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_deadline_exceeded_and_the_data_still_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FifoBackend::start(dir.path(), "stuck", true);
    let grpc = free_port();
    let sinks = format!(
        "[sinks.out]\ntype = \"file\"\npath = \"{}\"\nbatch = {{ max_samples = 1000, max_age_ms = 10 }}\n",
        backend.path.display()
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, "500ms", &sinks, "\"out\""));
    let mut c = client(grpc).await;
    let base = now_ms();
    // More than the pipe buffer holds (~100 KiB of lines), so the sink really
    // is stuck; its own ack times out too. Then ask for another ack.
    let filler = 3000;
    let status = c.write(request("0", 0, filler, base)).await.expect_err("stuck sink, yet acked");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let started = Instant::now();
    let status = c.write(request("0", 1000, PER_REQUEST, base)).await.expect_err("stuck sink, yet acked");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    backend.resume();
    let mut expected = keys_of([0], filler, base);
    expected.extend(keys_of([1000], PER_REQUEST, base));
    wait_for(Duration::from_secs(30), "the timed-out request to be delivered anyway", || {
        let got: std::collections::BTreeSet<String> = backend.lines().keys().filter_map(|l| sample_key(l)).collect();
        expected.is_subset(&got).then_some(())
    });
    assert_eq!(t.metric_sum("tsrelay_dropped_samples_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durably_queued_counts_as_delivered_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FifoBackend::start(dir.path(), "stuck", true);
    let grpc = free_port();
    let sinks = format!(
        r#"[sinks.out]
type = "file"
path = "{}"
queue = {{ type = "disk", max_bytes = 104857600, fsync = "always" }}
batch = {{ max_samples = 1000, max_age_ms = 10 }}
[sinks.fast]
type = "blackhole"
batch = {{ max_samples = 1000, max_age_ms = 5 }}
"#,
        backend.path.display()
    );
    let mut t = Tsrelay::start(dir.path(), &config(grpc, "5s", &sinks, "\"out\", \"fast\""));
    let mut c = client(grpc).await;
    let base = now_ms();
    // The backend never reads: every answer below is "durably queued".
    let ids: Vec<u64> = (0..100).collect();
    let started = Instant::now();
    for &id in &ids {
        c.write(request("0", id, PER_REQUEST, base)).await.expect("acked once on disk");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "acks waited for the stuck backend");
    assert_eq!(backend.distinct() as u64, 0);
    t.process.kill9();
    drop(c);
    let mut t = Tsrelay::start_with_file(dir.path(), &t.config_path.clone(), t.admin);
    backend.resume();
    let expected = keys_of(ids.iter().copied(), PER_REQUEST, base);
    wait_for(Duration::from_secs(60), "every acknowledged sample after the restart", || {
        let got: std::collections::BTreeSet<String> = backend.lines().keys().filter_map(|l| sample_key(l)).collect();
        expected.is_subset(&got).then_some(())
    });
    let m = t.metrics();
    let sink = "sink=\"out\"";
    let received = sum_metric(&m, "tsrelay_sink_received_samples_total", &[sink]);
    let sent = sum_metric(&m, "tsrelay_sink_sent_samples_total", &[sink]);
    let dropped = sum_metric(&m, "tsrelay_dropped_samples_total", &[sink]);
    let queued = sum_metric(&m, "tsrelay_queue_samples", &[sink]);
    assert_eq!(received, sent + dropped + queued, "{m:?}");
    assert_eq!(dropped, 0.0);
    assert!(t.process.terminate(Duration::from_secs(20)), "{}", t.process.log_tail());
}
