//! The Kafka receiver and sink against a real Kafka-protocol broker (tansu).
//!
//! Every test starts its own broker. Consumer groups use a 6 s session
//! timeout: tansu makes a joining member wait half of it (≈3 s instead of
//! ≈23 s with librdkafka's default), and `drain_timeout` must stay below it.
//!
//! Pipelines run one shard (so one stateless worker): with several,
//! consecutive batches can overtake each other between the stateless workers
//! and the shards, and the monotonic stage then drops the later-arriving
//! older samples of a series as `out_of_order` — a pipeline matter, not a
//! Kafka one.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::fault_http::{FaultServer, Reply};
use common::kafka::{Tansu, header, payload, send_all};
use common::*;
use prost::Message as _;
use rdkafka::Message as _;
use tsrelay::model::Labels;
use tsrelay::proto::v1::{Label, MetricType, Sample as PbSample, Series, WriteRequest};

/// The start-up memory check adds up worst cases (default queues and
/// per-series tables); these tests use a fraction of that.
const LIMITS: &str = "[limits]\nmemory_bytes = 4294967296\n";
const GROUP_OPTIONS: &str = r#"librdkafka_options = { "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 500 }"#;
/// An hour ago, fixed for the test process: inside the pipeline's
/// timestamp window, and the same in every message built from it.
fn base_ts_ms() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| tsrelay::model::now_ms() - 3_600_000)
}

fn label(name: &str, value: &str) -> Label {
    Label { name: name.into(), value: value.into() }
}

/// Message `m` (for partition `m % 3`) holds `per_message` samples, one of
/// each series `kt{partition, s}` at time `base + m` ms: value `m * per_message + s`
/// is unique, so samples can be checked one by one, while the series stay few
/// (under the pipeline's cardinality limit) and each series' timestamps grow
/// within its partition (as the monotonic stage wants).
fn message(m: usize, per_message: usize) -> Vec<u8> {
    let partition = (m % 3).to_string();
    let series = (0..per_message)
        .map(|s| Series {
            labels: vec![label("__name__", "kt"), label("partition", &partition), label("s", &s.to_string())],
            samples: vec![PbSample { value: (m * per_message + s) as f64, timestamp: base_ts_ms() + m as i64 }],
            r#type: MetricType::Gauge as i32,
            unit: String::new(),
        })
        .collect();
    WriteRequest { series, id: m as u64 }.encode_to_vec()
}

/// Values in a file-sink output, with how often each appears.
fn value_counts(path: &Path) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for (_, value, _) in read_lp_file(path) {
        *counts.entry(value as i64).or_insert(0) += 1;
    }
    counts
}

fn kafka_receiver(brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        r#"
{LIMITS}
[receivers.kafka]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "tsrelay-test"
format = "protobuf"
drain_timeout = "2s"
{GROUP_OPTIONS}
{extra}
"#
    )
}

fn wait_for_values(t: &mut Tsrelay, out: &Path, expected: usize, timeout: Duration) -> BTreeMap<i64, usize> {
    let mut last = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !t.process.is_running() {
            panic!("tsrelay exited:\n{}", t.process.log_tail());
        }
        last = value_counts(out);
        if last.len() >= expected {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let drops: Vec<String> = t
        .metrics()
        .into_iter()
        .filter(|(k, v)| k.starts_with("tsrelay_dropped_samples_total") && *v > 0.0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    panic!(
        "timed out after {timeout:?}: {} of {expected} distinct samples arrived; drops: {drops:?}\n{}",
        last.len(),
        t.process.log_tail()
    );
}

#[test]
fn consumes_every_sample_of_a_three_partition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("metrics", 3);
    let (messages, per_message) = (300, 10);
    let records: Vec<(i32, Vec<u8>)> = (0..messages).map(|m| ((m % 3) as i32, message(m, per_message))).collect();
    broker.produce("metrics", &records);

    let out = dir.path().join("out.lp");
    let config = format!(
        "{}\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n[pipelines.main]\nreceivers = [\"kafka\"]\nsinks = [\"out\"]\nshards = 1\n",
        kafka_receiver(&broker.brokers(), "metrics", ""),
        out.display()
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    let counts = wait_for_values(&mut t, &out, messages * per_message, Duration::from_secs(60));
    let expected: BTreeSet<i64> = (0..(messages * per_message) as i64).collect();
    assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), expected);
    assert!(counts.values().all(|n| *n == 1), "no restart, so no duplicates");

    // Every message acknowledged → every offset committed.
    wait_for(Duration::from_secs(20), "offsets 100/100/100 committed", || {
        (broker.committed("tsrelay-test", "metrics", 3) == vec![100, 100, 100]).then_some(())
    });
    let m = t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_kafka_consumed_messages_total", &["topic=\"metrics\""]), messages as f64);
    assert!(sum_metric(&m, "tsrelay_kafka_consumed_bytes_total", &[]) > 0.0);
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"kafka\""]), 3000.0);
    // Lag comes with librdkafka's statistics, every 5 s.
    wait_for(Duration::from_secs(15), "a lag gauge for every partition", || {
        let m = t.metrics();
        (0..3)
            .all(|p| {
                let partition = format!("partition=\"{p}\"");
                m.keys().any(|k| k.starts_with("tsrelay_kafka_consumer_lag{") && k.contains(&partition))
            })
            .then_some(())
    });
    let ready = http().get(format!("http://{}/readyz", t.admin)).send().unwrap();
    assert_eq!(ready.status(), 200);
    assert!(t.process.terminate(Duration::from_secs(20)), "tsrelay did not stop:\n{}", t.process.log_tail());
}

#[test]
fn kill_9_mid_stream_then_restart_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("metrics", 3);
    let per_message = 5usize;

    let out = dir.path().join("out.lp");
    // Small sink batches: a write cut short by the kill stays below one pipe/page write.
    let config = format!(
        "{}\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\nbatch = {{ max_samples = 200, max_age_ms = 20 }}\n[pipelines.main]\nreceivers = [\"kafka\"]\nsinks = [\"out\"]\nshards = 1\n",
        kafka_receiver(&broker.brokers(), "metrics", "max_batch_samples = 500\ncommit_interval = \"500ms\""),
        out.display()
    );
    let mut first = Tsrelay::start(dir.path(), &config);

    // A steady stream, 50 messages every 40 ms, that goes on until after the
    // kill (bounded at 1000 rounds, 40 s), so the kill always lands mid-stream.
    let producer = broker.producer();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0usize;
            for round in 0..1000 {
                let records: Vec<(i32, Vec<u8>)> =
                    (round * 50..(round + 1) * 50).map(|m| ((m % 3) as i32, message(m, per_message))).collect();
                send_all(&producer, "metrics", &records);
                sent += records.len();
                // A few more rounds after the kill, for the second instance.
                if stop.load(std::sync::atomic::Ordering::Relaxed) && round % 25 == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).expect("stream acknowledged");
            sent
        })
    };

    // Kill while the stream is still being consumed, after a first commit.
    wait_for(Duration::from_secs(60), "a first commit", || {
        (first.metric_sum("tsrelay_kafka_committed_offset", &[]) > 0.0).then_some(())
    });
    // The gauge moves when the commit is sent (asynchronously): give it time
    // to reach the broker, or the kill may land before any commit did.
    std::thread::sleep(Duration::from_secs(1));
    first.process.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let before_kill = value_counts(&out);
    let delivered_before: usize = before_kill.values().sum();

    let mut second = Tsrelay::start_with_file(dir.path(), &first.config_path, first.admin);
    let total = stream.join().expect("producer thread") * per_message;
    assert!(delivered_before < total, "the stream was fully consumed before the kill; nothing was tested");
    let counts = wait_for_values(&mut second, &out, total, Duration::from_secs(90));
    let missing: Vec<i64> = (0..total as i64).filter(|v| !counts.contains_key(v)).collect();
    assert!(missing.is_empty(), "skipped samples: {:?}", &missing[..missing.len().min(20)]);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    // Only what the first instance delivered after its last commit can come again.
    assert!(
        duplicates < delivered_before,
        "{duplicates} duplicates, but only {delivered_before} samples were delivered before the kill, some committed"
    );
    eprintln!("kill -9 at {delivered_before}/{total} samples delivered; {duplicates} duplicates after restart");
    assert!(second.process.terminate(Duration::from_secs(20)), "tsrelay did not stop:\n{}", second.process.log_tail());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn blocked_sink_pauses_consumption_then_everything_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("metrics", 3);
    let (messages, per_message) = (20_000usize, 10usize);
    let total = messages * per_message;
    let records: Vec<(i32, Vec<u8>)> = (0..messages).map(|m| ((m % 3) as i32, message(m, per_message))).collect();
    let topic_bytes: usize = records.iter().map(|(_, p)| p.len()).sum();
    broker.produce("metrics", &records);

    // The file sink writes into a FIFO nobody reads yet: its worker blocks
    // on open/write, as behind a backend that stopped answering.
    let fifo = dir.path().join("out.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let config = format!(
        r#"{}
[sinks.out]
type = "file"
path = "{}"
queue = {{ max_samples = 5000, when_full = "block" }}
batch = {{ max_samples = 1000, max_age_ms = 20 }}
[pipelines.main]
receivers = ["kafka"]
sinks = ["out"]
shards = 1
ingest_queue_batches = 2
shard_queue_batches = 1
[pipelines.main.validate]
max_past = "36500d"
"#,
        kafka_receiver(&broker.brokers(), "metrics", "max_batch_samples = 1000"),
        fifo.display()
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    let pid = t.process.child.id();
    wait_for(Duration::from_secs(60), "the Kafka receiver to pause", || {
        (t.metric_sum("tsrelay_kafka_paused", &[]) == 1.0).then_some(())
    });
    let consumed = |t: &Tsrelay| t.metric_sum("tsrelay_kafka_consumed_messages_total", &[]) as usize;
    std::thread::sleep(Duration::from_secs(2));
    let c1 = consumed(&t);
    std::thread::sleep(Duration::from_secs(2));
    let c2 = consumed(&t);
    let rss_paused_mib = rss_kib(pid) / 1024;
    assert_eq!(c1, c2, "consumption went on while paused");
    assert!(c2 * 4 < messages, "{c2} of {messages} messages consumed while the sink was blocked: not bounded");
    // What the pipeline can hold, in 1000-sample batches: the sink queue
    // (5000), the three batches its stuck worker holds (in flight, waiting in
    // its lane, being assembled), the batch the shard is pushing, the shard
    // channel (1), the batch the stateless worker is handing over, and the
    // ingest queue (2).
    let capacity = 5000 + 3 * 1000 + 1000 + 1000 + 1000 + 2 * 1000;
    let received = t.metric_sum("tsrelay_received_samples_total", &[]) as usize;
    assert!(received <= capacity, "{received} samples taken in while blocked (pipeline holds {capacity})");
    assert!(rss_paused_mib < 100, "RSS {rss_paused_mib} MiB while paused (topic holds {} MiB)", topic_bytes >> 20);
    eprintln!(
        "paused after {c2}/{messages} messages ({received} samples), RSS {rss_paused_mib} MiB; topic {} KiB",
        topic_bytes >> 10
    );

    // Unblock: read the FIFO; every sample must come through.
    let lines = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let (lines_r, seen_r, fifo_r) = (lines.clone(), seen.clone(), fifo.clone());
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(std::fs::File::open(&fifo_r).expect("open fifo"));
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.rsplit(' ').nth(1).and_then(|f| f.strip_prefix("value=")) {
                seen_r.lock().insert(v.parse::<f64>().unwrap_or(-1.0) as i64);
            }
            lines_r.fetch_add(1, Ordering::Relaxed);
        }
    });
    wait_for(Duration::from_secs(120), "every sample through the unblocked sink", || {
        if !t.process.is_running() {
            panic!("tsrelay exited:\n{}", t.process.log_tail());
        }
        (seen.lock().len() >= total).then_some(())
    });
    assert_eq!(seen.lock().len(), total);
    assert_eq!(lines.load(Ordering::Relaxed), total, "no restart, so no duplicates");
    wait_for(Duration::from_secs(10), "the receiver to resume", || {
        (t.metric_sum("tsrelay_kafka_paused", &[]) == 0.0).then_some(())
    });
    assert!(t.metric_sum("tsrelay_kafka_pauses_total", &[]) >= 1.0);
    assert_eq!(consumed(&t), messages);
    assert!(t.process.terminate(Duration::from_secs(20)), "tsrelay did not stop:\n{}", t.process.log_tail());
}

#[test]
fn malformed_messages_are_counted_and_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("metrics", 1);
    broker.create_topic("dead", 1);
    let garbage = vec![0xffu8; 16];
    let nameless = WriteRequest {
        series: vec![Series {
            labels: vec![label("host", "a")],
            samples: vec![PbSample { value: 1.0, timestamp: base_ts_ms() }],
            ..Default::default()
        }],
        id: 9,
    }
    .encode_to_vec();
    broker.produce("metrics", &[(0, message(0, 3)), (0, garbage.clone()), (0, nameless.clone()), (0, message(1, 3))]);

    let out = dir.path().join("out.lp");
    let config = format!(
        "{}\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n[pipelines.main]\nreceivers = [\"kafka\"]\nsinks = [\"out\"]\nshards = 1\n",
        kafka_receiver(&broker.brokers(), "metrics", "dead_letter_topic = \"dead\""),
        out.display()
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    let counts = wait_for_values(&mut t, &out, 6, Duration::from_secs(60));
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);

    let dead = broker.read("dead", 1, 2, Duration::from_secs(30));
    assert_eq!(dead.len(), 2, "both malformed messages dead-lettered");
    assert_eq!(payload(&dead[0]), &garbage[..], "dead-lettered unchanged");
    assert_eq!(payload(&dead[1]), &nameless[..]);
    let why = header(&dead[0], "tsrelay-error").expect("error header");
    assert!(why.contains("WriteRequest"), "{why}");
    assert!(header(&dead[1], "tsrelay-error").expect("error header").contains("__name__"));
    assert_eq!(header(&dead[0], "tsrelay-source-offset").as_deref(), Some("1"));
    assert_eq!(header(&dead[0], "tsrelay-source-topic").as_deref(), Some("metrics"));

    // Counted, and the bad messages do not hold back the commit.
    wait_for(Duration::from_secs(20), "offset 4 committed", || {
        (broker.committed("tsrelay-test", "metrics", 1) == vec![4]).then_some(())
    });
    let m = t.metrics();
    let parse_errors =
        sum_metric(&m, "tsrelay_dropped_samples_total", &["receiver=\"kafka\"", "reason=\"parse_error\""]);
    assert_eq!(parse_errors, 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &["reason=\"invalid_name\""]), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_kafka_malformed_messages_total", &[]), 2.0);
    assert_eq!(sum_metric(&m, "tsrelay_kafka_dead_lettered_messages_total", &[]), 2.0);
    assert!(t.process.terminate(Duration::from_secs(20)), "tsrelay did not stop:\n{}", t.process.log_tail());
}

#[test]
fn kafka_sink_feeds_a_second_tsrelay_the_same_samples() {
    relay_through_kafka("protobuf");
}

#[test]
fn kafka_sink_and_receiver_speak_line_protocol_too() {
    relay_through_kafka("line_protocol");
}

/// gRPC → edge tsrelay → Kafka sink (`format`) → topic → central tsrelay's
/// Kafka receiver (`format`) → file: the same samples come out.
fn relay_through_kafka(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("relay", 3);

    let edge_dir = dir.path().join("edge");
    let central_dir = dir.path().join("central");
    std::fs::create_dir_all(&edge_dir).unwrap();
    std::fs::create_dir_all(&central_dir).unwrap();
    let grpc_port = free_port();
    let edge_config = format!(
        r#"
{LIMITS}
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc_port}"
[sinks.kafka]
type = "kafka"
brokers = "{brokers}"
topic = "relay"
format = "{format}"
compression = "lz4"
[pipelines.main]
receivers = ["grpc"]
sinks = ["kafka"]
shards = 1
"#,
        brokers = broker.brokers()
    );
    let edge = Tsrelay::start(&edge_dir, &edge_config);
    let out = central_dir.join("out.lp");
    let central_config = format!(
        "{}\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n[pipelines.main]\nreceivers = [\"kafka\"]\nsinks = [\"out\"]\nshards = 1\n",
        kafka_receiver(&broker.brokers(), "relay", "")
            .replace("format = \"protobuf\"", &format!("format = \"{format}\"")),
        out.display()
    );
    let mut central = Tsrelay::start(&central_dir, &central_config);

    // 50 series × 20 timestamps, in 4 requests.
    let mut expected = BTreeSet::new();
    let mut requests = Vec::new();
    for r in 0..4 {
        let mut series = Vec::new();
        for s in 0..50 {
            let samples: Vec<PbSample> = (0..5)
                .map(|i| {
                    let ts = base_ts_ms() + (r * 5 + i) * 1000;
                    let value = (s * 1000 + r * 5 + i) as f64 + 0.25;
                    expected.insert((format!("relay_test,host=h{s},zone=z{}", s % 3), value.to_bits(), ts * 1_000_000));
                    PbSample { value, timestamp: ts }
                })
                .collect();
            series.push(Series {
                labels: vec![
                    label("zone", &format!("z{}", s % 3)),
                    label("__name__", "relay_test"),
                    label("host", &format!("h{s}")),
                ],
                samples,
                r#type: MetricType::Counter as i32,
                unit: String::new(),
            });
        }
        requests.push(WriteRequest { series, id: r as u64 });
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client =
            tsrelay::proto::v1::ingest_client::IngestClient::connect(format!("http://127.0.0.1:{grpc_port}"))
                .await
                .expect("connect to the edge tsrelay");
        for req in requests {
            let answer = client.write(req).await.expect("edge accepts the write").into_inner();
            assert_eq!((answer.accepted, answer.rejected), (250, 0));
        }
    });

    let n = expected.len();
    wait_for(Duration::from_secs(60), "every relayed sample at the central tsrelay", || {
        if !central.process.is_running() {
            panic!("central tsrelay exited:\n{}", central.process.log_tail());
        }
        (read_lp_file(&out).len() >= n).then_some(())
    });
    let got: BTreeSet<(String, u64, i64)> =
        read_lp_file(&out).into_iter().map(|(series, v, ts)| (series, v.to_bits(), ts)).collect();
    assert_eq!(got, expected);
    assert_eq!(read_lp_file(&out).len(), n, "no duplicates");
    assert_eq!(edge.metric_sum("tsrelay_sink_sent_samples_total", &["sink=\"kafka\""]), n as f64);

    // Records are keyed by series hash, and a series lives on one partition.
    let relayed = broker.read("relay", 3, 200, Duration::from_secs(30));
    assert!(relayed.len() >= 50, "{} records read back", relayed.len());
    let mut partition_of: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for m in &relayed {
        let key = m.key().expect("keyed record").to_vec();
        if format == "protobuf" {
            let req = WriteRequest::decode(payload(m)).expect("protobuf record");
            assert_eq!(req.series.len(), 1, "one series per record");
            let mut labels: Labels = req.series[0].labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
            labels.sort();
            assert_eq!(key, labels.series_hash().to_be_bytes().to_vec(), "key = series hash");
        } else {
            let text = String::from_utf8_lossy(payload(m)).into_owned();
            let series: BTreeSet<&str> = text.lines().filter_map(|l| l.split(' ').next()).collect();
            assert_eq!(series.len(), 1, "one series per record: {text}");
        }
        assert_eq!(*partition_of.entry(key).or_insert(m.partition()), m.partition(), "a series on two partitions");
    }
    assert_eq!(partition_of.len(), 50);
    assert!(partition_of.values().collect::<BTreeSet<_>>().len() > 1, "all series on one partition");
    assert!(
        central.process.terminate(Duration::from_secs(20)),
        "central did not stop:\n{}",
        central.process.log_tail()
    );
}

#[test]
fn a_second_member_joining_mid_stream_takes_over_partitions_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("metrics", 3);
    let (messages, per_message) = (4000usize, 5usize);
    let total = messages * per_message;
    let dirs: Vec<_> = ["a", "b"].iter().map(|n| dir.path().join(n)).collect();
    let configs: Vec<String> = dirs
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).unwrap();
            format!(
                "{}\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n[pipelines.main]\nreceivers = [\"kafka\"]\nsinks = [\"out\"]\nshards = 1\n",
                kafka_receiver(&broker.brokers(), "metrics", "max_batch_samples = 500"),
                d.join("out.lp").display()
            )
        })
        .collect();
    let mut a = Tsrelay::start(&dirs[0], &configs[0]);

    let producer = broker.producer();
    let stream = std::thread::spawn(move || {
        // 20 messages every 50 ms, ≈10 s: long enough to span the second join.
        for round in 0..messages / 20 {
            let records: Vec<(i32, Vec<u8>)> =
                (round * 20..(round + 1) * 20).map(|m| ((m % 3) as i32, message(m, per_message))).collect();
            send_all(&producer, "metrics", &records);
            std::thread::sleep(Duration::from_millis(50));
        }
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).expect("stream acknowledged");
    });
    wait_for(Duration::from_secs(60), "the first member to consume", || {
        (!value_counts(&dirs[0].join("out.lp")).is_empty()).then_some(())
    });
    // The join revokes every partition from the first member: it drains and
    // commits, then the group splits the partitions between the two.
    let mut b = Tsrelay::start(&dirs[1], &configs[1]);
    stream.join().expect("producer thread");

    let deadline = Instant::now() + Duration::from_secs(90);
    let merged = loop {
        for t in [&mut a, &mut b] {
            if !t.process.is_running() {
                panic!("a member exited:\n{}", t.process.log_tail());
            }
        }
        let mut merged = value_counts(&dirs[0].join("out.lp"));
        for (v, n) in value_counts(&dirs[1].join("out.lp")) {
            *merged.entry(v).or_insert(0) += n;
        }
        if merged.len() >= total || Instant::now() > deadline {
            break merged;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let missing = (0..total as i64).filter(|v| !merged.contains_key(v)).count();
    assert_eq!(missing, 0, "{missing} samples lost over the rebalance");
    let duplicates: usize = merged.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "in-flight messages were drained and committed before the partitions moved");
    let from_b = value_counts(&dirs[1].join("out.lp")).len();
    assert!(from_b > 0, "the second member got no partition");
    assert!(a.metric_sum("tsrelay_kafka_rebalances_total", &[]) >= 1.0);
    eprintln!("after the rebalance the second member delivered {from_b} of {total} samples");
    assert!(a.process.terminate(Duration::from_secs(20)), "first member did not stop:\n{}", a.process.log_tail());
    assert!(b.process.terminate(Duration::from_secs(20)), "second member did not stop:\n{}", b.process.log_tail());
}

#[test]
fn kafka_sink_counts_records_it_cannot_deliver_once_retrying_is_over() {
    let dir = tempfile::tempdir().unwrap();
    // A broker address nobody listens on: librdkafka retries, then gives up.
    let dead_broker = format!("127.0.0.1:{}", free_port());
    let grpc_port = free_port();
    let config = format!(
        r#"
{LIMITS}
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc_port}"
[sinks.kafka]
type = "kafka"
brokers = "{dead_broker}"
topic = "relay"
max_retry_duration = "2s"
unhealthy_after = "1s"
[pipelines.main]
receivers = ["grpc"]
sinks = ["kafka"]
[pipelines.main.validate]
max_past = "36500d"
"#
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client =
            tsrelay::proto::v1::ingest_client::IngestClient::connect(format!("http://127.0.0.1:{grpc_port}"))
                .await
                .expect("connect to tsrelay");
        let req = WriteRequest::decode(&message(0, 100)[..]).unwrap();
        let answer = client.write(req).await.expect("accepted into the queue").into_inner();
        assert_eq!(answer.accepted, 100);
    });
    // Closes the client's connection, which a graceful shutdown would wait for.
    drop(runtime);
    let drop_labels = ["sink=\"kafka\"", "reason=\"retry_exhausted\""];
    wait_for(Duration::from_secs(30), "100 samples counted as retry_exhausted", || {
        if !t.process.is_running() {
            panic!("tsrelay exited:\n{}", t.process.log_tail());
        }
        (t.metric_sum("tsrelay_dropped_samples_total", &drop_labels) == 100.0).then_some(())
    });
    let m = t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_sink_sent_samples_total", &["sink=\"kafka\""]), 0.0);
    assert_eq!(sum_metric(&m, "tsrelay_sink_received_samples_total", &["sink=\"kafka\""]), 100.0);
    assert_eq!(sum_metric(&m, "tsrelay_queue_samples", &["sink=\"kafka\""]), 0.0);
    let ready = http().get(format!("http://{}/readyz", t.admin)).send().unwrap();
    assert_eq!(ready.status(), 503, "a sink failing past unhealthy_after makes tsrelay unready");
    let body: serde_json::Value = ready.json().unwrap();
    assert_eq!(body["sinks"]["kafka"]["state"], "failing", "{body}");
    assert!(t.process.terminate(Duration::from_secs(20)), "tsrelay did not stop:\n{}", t.process.log_tail());
}

#[test]
fn scale_out_examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in ["config/examples/edge.toml", "config/examples/central.toml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsrelay"))
            .args(["validate", "--config"])
            .arg(root.join(example))
            .output()
            .expect("run tsrelay validate");
        assert!(
            out.status.success(),
            "{example} does not validate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An acknowledgement dropped unsettled is a failure: samples the pipeline
/// still held when the shutdown timeout ran out were not delivered, so their
/// offsets must not be committed, and a restarted consumer reads them again.
#[test]
fn offsets_of_samples_abandoned_at_the_shutdown_timeout_are_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path());
    broker.create_topic("metrics", 1);
    // The backend refuses everything at first: the sink retries and nothing settles.
    let backend = FaultServer::start(Vec::new(), Reply::status(503));
    let (messages, per_message) = (20usize, 5usize);
    let records: Vec<(i32, Vec<u8>)> = (0..messages).map(|m| (0, message(m, per_message))).collect();
    broker.produce("metrics", &records);

    let config = format!(
        "shutdown_timeout = \"2s\"\n{}\n[sinks.db]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"x\"\ngzip = false\nbatch = {{ max_age_ms = 20 }}\n[pipelines.main]\nreceivers = [\"kafka\"]\nsinks = [\"db\"]\nshards = 1\n",
        kafka_receiver(&broker.brokers(), "metrics", "commit_interval = \"200ms\""),
        backend.url("")
    );
    let mut first = Tsrelay::start(dir.path(), &config);
    wait_for(Duration::from_secs(60), "every message consumed and the backend asked", || {
        let consumed = first.metric_sum("tsrelay_kafka_consumed_messages_total", &["topic=\"metrics\""]);
        (consumed == messages as f64 && !backend.requests().is_empty()).then_some(())
    });
    // Several commit intervals pass with nothing delivered: nothing may be committed.
    let asked = backend.requests().len();
    wait_for(Duration::from_secs(30), "the sink retrying", || (backend.requests().len() >= asked + 2).then_some(()));
    assert_eq!(broker.committed("tsrelay-test", "metrics", 1), vec![-1], "committed before delivery");

    assert!(first.process.terminate(Duration::from_secs(30)), "tsrelay did not stop:\n{}", first.process.log_tail());
    assert_eq!(
        broker.committed("tsrelay-test", "metrics", 1),
        vec![-1],
        "offsets of samples abandoned at the shutdown timeout were committed:\n{}",
        first.process.log_tail()
    );

    // The backend recovers; a restarted consumer reads the same messages again and delivers them.
    backend.set_default(Reply::status(204));
    let second = Tsrelay::start_with_file(dir.path(), &first.config_path, first.admin);
    let delivered = || -> BTreeSet<i64> {
        backend
            .requests()
            .iter()
            .filter(|r| r.reply.contains("code: 204"))
            .flat_map(|r| {
                String::from_utf8_lossy(&r.body)
                    .lines()
                    .filter_map(|line| {
                        let value = line.split(' ').nth(1)?.split_once('=')?.1;
                        value.parse::<f64>().ok().map(|v| v as i64)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_for(Duration::from_secs(60), "every sample delivered after the restart", || {
        (delivered().len() == messages * per_message).then_some(())
    });
    assert_eq!(delivered(), (0..(messages * per_message) as i64).collect::<BTreeSet<_>>());
    wait_for(Duration::from_secs(20), "offset 20 committed once delivered", || {
        (broker.committed("tsrelay-test", "metrics", 1) == vec![messages as i64]).then_some(())
    });
    let mut second = second;
    assert!(second.process.terminate(Duration::from_secs(20)), "tsrelay did not stop:\n{}", second.process.log_tail());
}
