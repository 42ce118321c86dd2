//! The HTTP receiver against the real binary: line protocol and NDJSON in,
//! the file sink out, and every answer of DESIGN §3–4.
mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

struct Setup {
    t: Tsrelay,
    base: String,
    dir: tempfile::TempDir,
}

fn start(receiver_extra: &str, sink: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{port}"
max_body_bytes = 65536
max_wait_ms = 200
{receiver_extra}
{sink}
[pipelines.main]
receivers = ["http"]
sinks = ["out"]
shards = 1
ingest_queue_batches = 1
shard_queue_batches = 1
# Fixed 2023 timestamps: widen the window the validate stage enforces.
[pipelines.main.validate]
max_past = "36500d"
"#
    );
    let t = Tsrelay::start(dir.path(), &config);
    Setup { t, base: format!("http://127.0.0.1:{port}"), dir }
}

const FILE_SINK: &str = "[sinks.out]\ntype = \"file\"\npath = \"out.lp\"\nbatch = { max_age_ms = 10 }";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

fn wait_lines(s: &Setup, n: usize) -> Vec<(String, f64, i64)> {
    let path = s.dir.path().join("out.lp");
    wait_for(Duration::from_secs(10), &format!("{n} lines in out.lp"), || {
        let l = read_lp_file(&path);
        (l.len() >= n).then_some(l)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_fields_become_series() {
    let s = start("", FILE_SINK);
    let body = "# a comment\n\
                cpu,host=a,region=eu usage_idle=92.5,usage_user=3i,up=true,state=\"ok\" 1700000000\n\
                \n\
                mem,host=a value=1024u 1700000001\n\
                disk\\ io,path=/var\\,log value=-0.5e1 1700000002\n";
    let r = client().post(format!("{}/write?precision=s", s.base)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let mut lines = wait_lines(&s, 5);
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let ts = |s: i64| s * 1_000_000_000;
    assert_eq!(
        lines,
        vec![
            ("cpu_up,host=a,region=eu".into(), 1.0, ts(1_700_000_000)),
            ("cpu_usage_idle,host=a,region=eu".into(), 92.5, ts(1_700_000_000)),
            ("cpu_usage_user,host=a,region=eu".into(), 3.0, ts(1_700_000_000)),
            ("disk_io,path=/var\\,log".into(), -5.0, ts(1_700_000_002)), // normalized name
            ("mem,host=a".into(), 1024.0, ts(1_700_000_001)),
        ]
    );
    let m = s.t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]), 5.0);
    assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &["reason=\"non_numeric\""]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_write_is_400_naming_lines_and_keeps_good_lines() {
    let s = start("", FILE_SINK);
    let body = "good value=1 1700000000000000000\nbad line here\ngood2 value=2 1700000000000000000\nx,=y value=1\n";
    let r = client().post(format!("{}/api/v2/write", s.base)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["accepted"], 2);
    assert_eq!(json["rejected"], 2);
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[1]["line"], 4);
    assert!(!errors[0]["message"].as_str().unwrap().is_empty());
    assert_eq!(wait_lines(&s, 2).len(), 2);
    assert_eq!(s.t.metric_sum("tsrelay_dropped_samples_total", &["reason=\"parse_error\""]), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_and_size_limits() {
    let s = start("", FILE_SINK);
    let gz = |text: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    let r = client()
        .post(format!("{}/write", s.base))
        .header("Content-Encoding", "gzip")
        .body(gz(b"zipped value=7 1700000000000000000\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(wait_lines(&s, 1)[0], ("zipped".into(), 7.0, 1_700_000_000_000_000_000));

    // Over max_body_bytes as sent, and only after gunzip: both 413.
    let big = "m value=1\n".repeat(10_000).into_bytes();
    let r = client().post(format!("{}/write", s.base)).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let compressed = gz(&big);
    assert!(compressed.len() < 65536);
    let r = client()
        .post(format!("{}/write", s.base))
        .header("Content-Encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let r = client().post(format!("{}/write?precision=fortnight", s.base)).body("m value=1").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = client().post(format!("{}/write", s.base)).header("Content-Encoding", "br").body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_ingest() {
    let s = start("", FILE_SINK);
    let body = concat!(
        r#"{"name": "temp", "labels": {"room": "a"}, "value": 21.5, "timestamp": 1700000000000, "type": "gauge"}"#,
        "\n",
        r#"{"name": "temp", "labels": {"room": "b"}, "value": 19, "timestamp": "2023-11-14T22:13:20Z"}"#,
        "\n",
        r#"{"labels": {"room": "c"}, "value": 1}"#,
        "\n",
        "not json\n"
    );
    let r = client().post(format!("{}/api/v1/ingest", s.base)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!((json["accepted"].as_u64(), json["rejected"].as_u64()), (Some(2), Some(2)));
    assert_eq!(json["errors"][0]["line"], 3);
    let mut lines = wait_lines(&s, 2);
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(lines[0], ("temp,room=a".into(), 21.5, 1_700_000_000_000_000_000));
    assert_eq!(lines[1], ("temp,room=b".into(), 19.0, 1_700_000_000_000_000_000));
}

/// A sink that never completes (a FIFO nobody reads) fills every bounded
/// stage; the receiver then answers 503 with Retry-After within max_wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pipeline_is_503_with_retry_after() {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("stuck.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let sink = format!(
        "[sinks.out]\ntype = \"file\"\npath = \"{}\"\nqueue = {{ max_samples = 10 }}\nbatch = {{ max_samples = 10 }}",
        fifo.display()
    );
    let s = start("", &sink);
    let mut answer = None;
    for request in 0..50i64 {
        // Newer timestamps each line, or the monotonic stage would drop them as duplicates.
        let body: String = (0..10i64)
            .map(|i| format!("m,h=a value=1 {}\n", (1_700_000_000_000 + request * 10 + i) * 1_000_000))
            .collect();
        let r = client().post(format!("{}/write", s.base)).body(body).send().await.unwrap();
        if r.status() != 204 {
            answer = Some(r);
            break;
        }
    }
    let r = answer.expect("the pipeline never pushed back");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(s.t.metric_sum("tsrelay_receiver_backpressure_rejections_total", &[]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_delivered_answers_after_delivery_or_504() {
    let s = start("ack = \"delivered\"\nack_timeout = \"5s\"", FILE_SINK);
    let r = client().post(format!("{}/write", s.base)).body("acked value=1 1700000000000000000").send().await.unwrap();
    assert_eq!(r.status(), 204);
    // Answered only after delivery: the line is already in the file.
    assert_eq!(read_lp_file(&s.dir.path().join("out.lp")).len(), 1);

    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("stuck.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let stuck = start(
        "ack = \"delivered\"\nack_timeout = \"300ms\"",
        &format!("[sinks.out]\ntype = \"file\"\npath = \"{}\"", fifo.display()),
    );
    let r = client().post(format!("{}/write", stuck.base)).body("m value=1").send().await.unwrap();
    assert_eq!(r.status(), 504);
}
