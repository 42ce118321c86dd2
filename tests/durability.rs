//! Fault tests of issue 7, against the real binary (each bounded in time):
//!
//! - `a_…`: the backend (VictoriaMetrics behind the `influxdb` sink) is down
//!   for 60 s under steady load with a disk queue: everything arrives after
//!   it returns, counted exactly.
//! - `b_…`: 3× overload for a minute against a slow backend: RSS stays under
//!   `limits.memory_bytes`, senders get RESOURCE_EXHAUSTED, nothing accepted is lost.
//! - `c_…`: `kill -9` under load with a disk queue: after the restart every
//!   acknowledged sample is delivered (duplicates counted and reported; a record the
//!   kill tore, never acknowledged, is counted as `reason="corrupt"`).
//! - `d_…`: a torn tail in a queue segment: tsrelay starts, counts the loss
//!   exactly (`reason="corrupt"`), delivers the rest.
//! - `e_…`: a small `max_bytes` under a long outage: `drop_oldest` and
//!   `drop_newest` applied, every drop counted.
//! - `f_…`: above the RSS high-water mark receivers refuse data.
//!
//! The two one-minute tests sort first so that, with two test threads (CI),
//! they run side by side and the file takes about 90 s.
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::fifo::FifoBackend;
use common::influxdb::VictoriaMetrics;
use common::load::{HttpLoad, Load, sample_key};
use common::*;

/// A sink's books, from `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Books {
    received: f64,
    sent: f64,
    dropped: f64,
    queued: f64,
}

impl Books {
    fn of(t: &Tsrelay, sink: &str) -> Books {
        let m = t.metrics();
        let l = format!("sink=\"{sink}\"");
        Books {
            received: sum_metric(&m, "tsrelay_sink_received_samples_total", &[&l]),
            sent: sum_metric(&m, "tsrelay_sink_sent_samples_total", &[&l]),
            dropped: sum_metric(&m, "tsrelay_dropped_samples_total", &[&l]),
            queued: sum_metric(&m, "tsrelay_queue_samples", &[&l]),
        }
    }

    fn assert_balanced(&self) {
        assert_eq!(
            self.received,
            self.sent + self.dropped + self.queued,
            "received != sent + dropped + queued: {self:?}"
        );
    }
}

fn metric(t: &Tsrelay, name: &str, labels: &[&str]) -> f64 {
    t.metric_sum(name, labels)
}

/// Waits until the sink has nothing queued, then returns its books.
fn drained(t: &Tsrelay, sink: &str, timeout: Duration) -> Books {
    wait_for(timeout, &format!("sink {sink} to drain its queue"), || {
        let b = Books::of(t, sink);
        (b.queued == 0.0 && b.received > 0.0 && b.received == b.sent + b.dropped).then_some(b)
    })
}

fn delivered_keys(backend: &FifoBackend) -> BTreeSet<String> {
    backend.lines().keys().filter_map(|l| sample_key(l)).collect()
}

fn grpc_receiver(port: u16, ack: &str) -> String {
    format!("[receivers.grpc]\ntype = \"grpc\"\nlisten = \"127.0.0.1:{port}\"\nmax_wait_ms = 200\nack = \"{ack}\"\n")
}

/// A file sink into the backend's pipe, with `queue`.
fn fifo_sink(name: &str, backend: &FifoBackend, queue: &str) -> String {
    format!(
        "[sinks.{name}]\ntype = \"file\"\npath = \"{}\"\nqueue = {queue}\nbatch = {{ max_samples = 2000, max_age_ms = 20 }}\n",
        backend.path.display()
    )
}

/// One shard (a request is one record) and per-series tables sized for a test.
fn pipeline(sinks: &str) -> String {
    format!("[pipelines.main]\nreceivers = [\"grpc\"]\nsinks = [{sinks}]\nshards = 1\n{TABLES}")
}

const TABLES: &str = "[pipelines.main.cardinality]\nmax_series = 100000\nmax_label_pairs = 100000\n";

/// Issue 7 (a): the backend down 60 s under steady load, disk queue.
#[test]
fn a_backend_down_for_60s_under_load_loses_nothing_with_a_disk_queue() {
    let dir = tempfile::tempdir().unwrap();
    let vm_port = free_port();
    let vm = VictoriaMetrics::start_on(dir.path(), vm_port);
    let grpc = free_port();
    let config = format!(
        r#"{receiver}
[sinks.vm]
type = "influxdb"
api = "v2"
url = "http://127.0.0.1:{vm_port}"
org = "o"
bucket = "b"
queue = {{ type = "disk", max_bytes = 268435456, fsync = {{ interval_ms = 200 }} }}
batch = {{ max_samples = 2000, max_age_ms = 50 }}
request = {{ retry = {{ initial = "100ms", max = "2s" }} }}
{pipeline}"#,
        receiver = grpc_receiver(grpc, "accepted"),
        pipeline = pipeline("\"vm\"")
    );
    let t = Tsrelay::start(dir.path(), &config);
    // 1000 samples/s: 20 requests of 50.
    let load = Load::start(grpc, 1, 50, 20.0, 0);
    std::thread::sleep(Duration::from_secs(3));
    let mut vm = vm;
    assert!(vm.process.terminate(Duration::from_secs(20)), "VictoriaMetrics did not stop");
    let outage = Instant::now();
    let sent_at_outage = Books::of(&t, "vm").sent;

    std::thread::sleep(Duration::from_secs(50));
    // (Under load a scrape is not atomic across counters: balance is checked once quiet.)
    let during = Books::of(&t, "vm");
    assert!(during.sent - sent_at_outage <= 2000.0, "sent while the backend was down: {during:?}");
    assert!(during.queued >= 40_000.0, "the disk queue should hold the outage's samples: {during:?}");
    assert!(metric(&t, "tsrelay_queue_records", &["sink=\"vm\""]) > 0.0);
    assert!(metric(&t, "tsrelay_queue_bytes", &["sink=\"vm\""]) > 0.0);
    let age = metric(&t, "tsrelay_queue_oldest_record_age_seconds", &["sink=\"vm\""]);
    assert!(age >= 40.0, "oldest record age {age}");
    assert!(metric(&t, "tsrelay_sink_retries_total", &["sink=\"vm\""]) > 0.0);

    std::thread::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed()));
    let vm = VictoriaMetrics::start_on(dir.path(), vm_port);
    std::thread::sleep(Duration::from_secs(3));
    let report = load.stop();
    assert_eq!((report.refused, report.failed), (0, 0), "{report:?}");
    let expected = report.acked_keys();

    let books = drained(&t, "vm", Duration::from_secs(90));
    books.assert_balanced();
    assert_eq!(books.dropped, 0.0, "{books:?}");
    assert_eq!(books.received, expected.len() as f64, "{books:?}");
    let exported = wait_for(Duration::from_secs(30), "VictoriaMetrics to hold every sample", || {
        let series = vm.export("load_value");
        let keys: BTreeSet<String> = series
            .iter()
            .flat_map(|(m, points)| {
                let k = m["k"].as_str().unwrap_or("").to_string();
                points.iter().map(move |(ts, _)| format!("{k}@{ts}"))
            })
            .collect();
        expected.is_subset(&keys).then_some(series)
    });
    let points: usize = exported.iter().map(|s| s.1.len()).sum();
    println!(
        "outage test: {} samples sent, {} delivered, {} points in VictoriaMetrics (duplicates {})",
        expected.len(),
        books.sent,
        points,
        points - expected.len()
    );
}

/// Issue 7 (e): 3× overload for a minute: bounded memory, refusals, nothing accepted lost.
#[test]
fn b_three_times_overload_for_a_minute_stays_under_budget_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FifoBackend::start(dir.path(), "slow", false);
    // The backend takes 5000 samples/s; the senders offer 15000 (two over
    // gRPC, one over HTTP line protocol).
    backend.set_rate(5000);
    let (grpc, http_port) = (free_port(), free_port());
    let memory_bytes: u64 = 256 << 20;
    // Bodies here are 500 lines: a 4 MiB body limit keeps the budget's
    // requests-in-progress term (max_concurrent_requests × max_body_bytes) small.
    let config = format!(
        "[limits]\nmemory_bytes = {memory_bytes}\n{}[receivers.http]\ntype = \"http\"\nlisten = \"127.0.0.1:{http_port}\"\nmax_wait_ms = 200\nmax_body_bytes = 4194304\n{}[pipelines.main]\nreceivers = [\"grpc\", \"http\"]\nsinks = [\"slow\"]\nshards = 1\n{TABLES}",
        grpc_receiver(grpc, "accepted"),
        fifo_sink("slow", &backend, "{ max_samples = 100000, when_full = \"block\" }"),
    );
    let t = Tsrelay::start(dir.path(), &config);
    let pid = t.process.child.id();
    let load = Load::start(grpc, 2, 500, 10.0, 0);
    let http_load = HttpLoad::start(http_port, 500, 10.0);
    let started = Instant::now();
    let mut peak_rss = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        peak_rss = peak_rss.max(rss_of(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = load.stop();
    let http_report = http_load.stop();
    peak_rss = peak_rss.max(rss_of(pid));
    assert!(peak_rss < memory_bytes, "peak RSS {peak_rss} over limits.memory_bytes {memory_bytes}");
    assert!(report.refused > 0, "no gRPC sender was refused under 3x overload: {report:?}");
    assert!(http_report.refused > 0, "no HTTP sender got 503/429 under 3x overload: {http_report:?}");
    assert_eq!(http_report.refused_with_retry_after, http_report.refused, "503 without Retry-After");
    assert_eq!((report.failed, http_report.failed), (0, 0), "{report:?} {http_report:?}");
    let mut accepted = report.acked_keys();
    accepted.extend(http_report.acked_keys());
    // Overloaded, not starved: the backend ran at its pace the whole minute.
    assert!(accepted.len() >= 200_000, "only {} samples accepted", accepted.len());
    backend.set_rate(0);
    let books = drained(&t, "slow", Duration::from_secs(60));
    assert_eq!(books.dropped, 0.0, "{books:?}");
    assert_eq!(books.received, accepted.len() as f64);
    wait_for(Duration::from_secs(30), "every accepted sample at the backend", || {
        (delivered_keys(&backend) == accepted).then_some(())
    });
    println!(
        "overload test: peak RSS {:.1} MiB of {} MiB; gRPC {} accepted, {} refused ({:?}); HTTP {} accepted, {} refused",
        peak_rss as f64 / (1 << 20) as f64,
        memory_bytes >> 20,
        report.acked.len(),
        report.refused,
        report.refusal_messages.first(),
        http_report.acked.len(),
        http_report.refused,
    );
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Issue 7 (b): kill -9 under load, disk queue, acks on durable queueing.
#[test]
fn c_kill_9_under_load_delivers_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FifoBackend::start(dir.path(), "out", false);
    // Slower than the load, so the disk queue holds a backlog when the daemon dies.
    backend.set_rate(3000);
    let grpc = free_port();
    let config = format!(
        "{}{}{}",
        grpc_receiver(grpc, "delivered"),
        fifo_sink("out", &backend, "{ type = \"disk\", max_bytes = 268435456, fsync = \"always\" }"),
        pipeline("\"out\"")
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    let load = Load::start(grpc, 4, 100, 15.0, 0);
    std::thread::sleep(Duration::from_secs(6));
    let before = Books::of(&t, "out");
    assert!(before.queued > 0.0, "no backlog to lose: {before:?}");
    t.process.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let t = Tsrelay::start_with_file(dir.path(), &t.config_path.clone(), t.admin);
    let replayed = metric(&t, "tsrelay_queue_replayed_samples_total", &["sink=\"out\""]);
    assert!(replayed > 0.0, "nothing replayed");
    std::thread::sleep(Duration::from_secs(3));
    let report = load.stop();
    backend.set_rate(0);
    let acked = report.acked_keys();
    let books = drained(&t, "out", Duration::from_secs(60));
    // The kill can land inside the write of a record: the kernel stops a write between pages
    // once a fatal signal is pending, so the queue file may end in a torn record. That record
    // was never acknowledged (acks wait for its fsync), and the restart counts its samples as
    // dropped with reason="corrupt". Records are written one at a time, so at most one is torn;
    // nothing else may be dropped.
    let corrupt = metric(&t, "tsrelay_dropped_samples_total", &["sink=\"out\"", "reason=\"corrupt\""]);
    assert_eq!(books.dropped, corrupt, "only a torn record may be dropped: {books:?}");
    assert!(corrupt <= 100.0, "more than one request's record torn ({corrupt} samples): {books:?}");
    let delivered = wait_for(Duration::from_secs(30), "every acknowledged sample", || {
        let d = delivered_keys(&backend);
        acked.is_subset(&d).then_some(d)
    });
    let lines = backend.lines();
    let duplicates: u64 = lines.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
    println!(
        "kill -9 test: {} samples acknowledged, {} delivered, {} duplicates, {} replayed, {} lost to a torn record, {} torn lines, backlog at kill {}",
        acked.len(),
        delivered.len(),
        duplicates,
        replayed,
        corrupt,
        backend.torn(),
        before.queued
    );
}

/// Issue 7 (c): a torn tail in the queue file.
#[test]
fn d_torn_tail_in_a_queue_segment_is_counted_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FifoBackend::start(dir.path(), "down", true);
    let grpc = free_port();
    let config = format!(
        "{}{}{}",
        grpc_receiver(grpc, "delivered"),
        fifo_sink("out", &backend, "{ type = \"disk\", max_bytes = 268435456, fsync = \"always\" }"),
        pipeline("\"out\"")
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    // One request = one batch = one record (shards = 1, 100 samples): the
    // last record on disk is the last request.
    let load = Load::start(grpc, 1, 100, 0.0, 0);
    wait_for(Duration::from_secs(30), "60 acknowledged requests", || (load.report().acked.len() >= 60).then_some(()));
    let report = load.stop();
    t.process.kill9();
    let last = *report.acked.last().expect("acked");
    assert_eq!(report.acked, (0..=last).collect::<Vec<_>>(), "requests acknowledged out of order");

    let queue_dir = dir.path().join("data").join("out");
    let mut segments: Vec<_> = std::fs::read_dir(&queue_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let newest = segments.pop().expect("a segment");
    let len = std::fs::metadata(&newest).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&newest).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);

    let t = Tsrelay::start_with_file(dir.path(), &t.config_path.clone(), t.admin);
    let corrupt = metric(&t, "tsrelay_dropped_samples_total", &["sink=\"out\"", "reason=\"corrupt\""]);
    assert_eq!(corrupt, 100.0, "the torn record held the last request's 100 samples");
    backend.resume();
    let books = drained(&t, "out", Duration::from_secs(60));
    assert_eq!(books.dropped, 100.0, "{books:?}");
    let expected = report.keys_of(0..last);
    let delivered = wait_for(Duration::from_secs(30), "the intact records", || {
        let d = delivered_keys(&backend);
        expected.is_subset(&d).then_some(d)
    });
    let lost = report.keys_of([last]);
    assert!(delivered.is_disjoint(&lost), "samples of the torn record were delivered");
}

/// Issue 7 (d): a small `max_bytes` under a long outage, both drop policies.
#[test]
fn e_small_max_bytes_under_a_long_outage_applies_the_policy_and_counts_every_drop() {
    for policy in ["drop_oldest", "drop_newest"] {
        let dir = tempfile::tempdir().unwrap();
        let backend = FifoBackend::start(dir.path(), "down", true);
        let grpc = free_port();
        let max_bytes = 1 << 20;
        let config = format!(
            "{}{}{}",
            grpc_receiver(grpc, "accepted"),
            fifo_sink(
                "out",
                &backend,
                &format!("{{ type = \"disk\", max_bytes = {max_bytes}, when_full = \"{policy}\" }}")
            ),
            pipeline("\"out\"")
        );
        let t = Tsrelay::start(dir.path(), &config);
        // About 4 MiB of records into a 1 MiB queue.
        let load = Load::start(grpc, 2, 500, 0.0, 0);
        let mut checks = 0;
        while load.issued() < 400 {
            std::thread::sleep(Duration::from_millis(250));
            let bytes = metric(&t, "tsrelay_queue_bytes", &["sink=\"out\""]);
            assert!(bytes <= max_bytes as f64 + 512.0 * 1024.0, "{policy}: {bytes} bytes queued");
            checks += 1;
            assert!(checks < 240, "{policy}: load too slow");
        }
        let report = load.stop();
        assert_eq!((report.refused, report.failed), (0, 0), "{policy}: {report:?}");
        let sent = report.acked_keys();
        // Quiet now: the backend is down and the load stopped.
        std::thread::sleep(Duration::from_millis(300));
        let during = Books::of(&t, "out");
        during.assert_balanced();
        let full = metric(&t, "tsrelay_dropped_samples_total", &["sink=\"out\"", "reason=\"queue_full\""]);
        assert!(full > 0.0, "{policy}: nothing dropped");
        assert_eq!(full, during.dropped, "{policy}: drops other than queue_full");

        backend.resume();
        let books = drained(&t, "out", Duration::from_secs(60));
        assert_eq!(books.received, sent.len() as f64);
        let delivered = wait_for(Duration::from_secs(30), "the backend to get what was kept", || {
            let d = delivered_keys(&backend);
            (d.len() as f64 == books.sent).then_some(d)
        });
        assert!(delivered.is_subset(&sent));
        assert_eq!(delivered.len() as f64 + books.dropped, sent.len() as f64, "{policy}: {books:?}");
        let newest = report.keys_of([*report.acked.iter().max().unwrap()]);
        let oldest = report.keys_of([*report.acked.iter().min().unwrap()]);
        match policy {
            "drop_oldest" => assert!(newest.is_subset(&delivered), "drop_oldest lost the newest request"),
            _ => assert!(oldest.is_subset(&delivered), "drop_newest lost the oldest request"),
        }
        println!("{policy}: {} sent, {} delivered, {} dropped", sent.len(), delivered.len(), books.dropped);
    }
}

/// Above the RSS high-water mark receivers refuse data, and say why.
#[test]
fn f_receivers_refuse_data_above_the_rss_high_water_mark() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    // 1 % of 256 MiB is below any real resident set: the mark is always exceeded.
    let config = format!(
        "[limits]\nmemory_bytes = 268435456\nrss_high_water_percent = 1\n{}[sinks.out]\ntype = \"blackhole\"\nqueue = {{ max_samples = 10000 }}\n{}",
        grpc_receiver(grpc, "accepted"),
        pipeline("\"out\"")
    );
    let t = Tsrelay::start(dir.path(), &config);
    wait_for(Duration::from_secs(10), "memory pressure", || {
        (metric(&t, "tsrelay_memory_pressure", &[]) == 1.0).then_some(())
    });
    let load = Load::start(grpc, 1, 10, 0.0, 0);
    wait_for(Duration::from_secs(10), "refusals", || (load.report().refused >= 5).then_some(()));
    let report = load.stop();
    assert!(report.acked.is_empty(), "{report:?}");
    assert!(report.refusal_messages[0].contains("memory"), "{report:?}");
    assert!(metric(&t, "tsrelay_receiver_memory_pressure_rejections_total", &[]) >= 5.0);
    assert_eq!(metric(&t, "tsrelay_sink_received_samples_total", &[]), 0.0);
}
