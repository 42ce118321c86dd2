//! Acknowledgements fail closed, against the real binary with real clients
//! (curl, Python grpcio): a request whose data was abandoned unsettled — the
//! shutdown timeout cut its sink off, a task panicked — is answered 503 /
//! UNAVAILABLE, never 204; a panic makes /readyz fail and the exit status
//! non-zero; a split request cancelled by its client's deadline during
//! admission is admitted whole or not at all, and counted either way.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fault_http::{FaultServer, Reply};
use common::*;

/// POSTs `body` to `url` with curl; returns (status code, response headers and body).
fn curl_post(url: &str, body: &str) -> (u16, String) {
    let curl = require_binary("curl", "apt-get install -y curl");
    let mut child = Command::new(curl)
        .args(["-s", "-i", "-m", "60", "--data-binary", "@-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Starts `tsrelay run` with extra environment (the test-only panic hook).
fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> (ChildGuard, std::net::SocketAddr) {
    let admin = loopback(free_port());
    let path = dir.join("tsrelay.toml");
    std::fs::write(&path, format!("{config}\n[admin]\nlisten = \"{admin}\"\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsrelay"));
    cmd.args(["run", "--config"]).arg(&path).current_dir(dir).env("RUST_LOG", "info");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TSRELAY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut process = ChildGuard::spawn("tsrelay", &mut cmd, dir);
    wait_for(Duration::from_secs(20), "tsrelay ready", || {
        assert!(process.is_running(), "tsrelay exited during start-up:\n{}", process.log_tail());
        http_get(admin, "/readyz").filter(|(code, _)| *code == 200).map(|_| ())
    });
    (process, admin)
}

fn wait_exit(p: &mut ChildGuard, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "tsrelay still running after {within:?}:\n{}", p.log_tail());
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_panicking_stage_fails_its_acks_readyz_and_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    // A second pipeline whose sink never succeeds keeps the drain busy until
    // the shutdown timeout, so /readyz can be read while the daemon drains.
    let down = FaultServer::start(Vec::new(), Reply::status(503));
    let (ha, hb) = (free_port(), free_port());
    let config = format!(
        r#"
shutdown_timeout = "4s"
[receivers.ha]
type = "http"
listen = "127.0.0.1:{ha}"
ack = "delivered"
[receivers.hb]
type = "http"
listen = "127.0.0.1:{hb}"
[sinks.out]
type = "file"
path = "out.lp"
batch = {{ max_age_ms = 5 }}
[sinks.down]
type = "influxdb"
url = "{url}"
database = "x"
[pipelines.a]
receivers = ["ha"]
sinks = ["out"]
[pipelines.b]
receivers = ["hb"]
sinks = ["down"]
"#,
        url = down.url("")
    );
    let (mut p, admin) = start_with_env(dir.path(), &config, &[("TSRELAY_TEST_PANIC_LABEL", "fault=boom")]);
    let ts = now_ns();
    let (code, text) = curl_post(&format!("http://127.0.0.1:{ha}/write"), &format!("good,host=a value=1 {ts}\n"));
    assert_eq!(code, 204, "{text}");
    let (code, text) = curl_post(&format!("http://127.0.0.1:{hb}/write"), &format!("held,host=a value=1 {ts}\n"));
    assert_eq!(code, 204, "{text}");

    let (code, text) = curl_post(&format!("http://127.0.0.1:{ha}/write"), &format!("bad,fault=boom value=1 {ts}\n"));
    assert_eq!(code, 503, "a request whose data a panic destroyed must not be acknowledged: {text}");
    assert!(text.contains("not delivered"), "{text}");

    let (code, body) = http_get(admin, "/readyz").expect("admin endpoint answers while draining");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("panic") && body.contains("test-only fault"), "{body}");

    let status = wait_exit(&mut p, Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "exit status after a panic:\n{}", p.log_tail());
    let out = std::fs::read_to_string(dir.path().join("out.lp")).unwrap_or_default();
    assert!(out.contains("good,host=a"), "the good sample was delivered: {out:?}");
    assert!(!out.contains("fault=boom"), "{out:?}");
}

#[test]
fn the_shutdown_timeout_fails_delivered_acks_instead_of_confirming_them() {
    let dir = tempfile::tempdir().unwrap();
    let down = FaultServer::start(Vec::new(), Reply::status(503));
    let http = free_port();
    let config = format!(
        r#"
shutdown_timeout = "2s"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
ack = "delivered"
ack_timeout = "60s"
[sinks.down]
type = "influxdb"
url = "{url}"
database = "x"
[pipelines.main]
receivers = ["http"]
sinks = ["down"]
"#,
        url = down.url("")
    );
    let (mut p, admin) = start_with_env(dir.path(), &config, &[]);
    let url = format!("http://127.0.0.1:{http}/write");
    let body = format!("waiting,host=a value=1 {}\n", now_ns());
    let sender = std::thread::spawn(move || curl_post(&url, &body));
    wait_for(Duration::from_secs(10), "the sample to reach the failing sink", || {
        let m = parse_metrics(&http_get(admin, "/metrics")?.1);
        (sum_metric(&m, "tsrelay_sink_received_samples_total", &["sink=\"down\""]) == 1.0).then_some(())
    });
    assert!(!down.requests().is_empty() || !sender.is_finished(), "still waiting for delivery");
    let stopped = Instant::now();
    assert!(p.terminate(Duration::from_secs(15)), "tsrelay stops within its shutdown timeout:\n{}", p.log_tail());
    let (code, text) = sender.join().unwrap();
    assert_eq!(code, 503, "an ack cut off by the shutdown timeout is a failure: {text}");
    assert!(stopped.elapsed() >= Duration::from_secs(2), "answered before the shutdown timeout");
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
    let log = strip_ansi(&std::fs::read_to_string(&p.log).unwrap());
    assert!(log.contains("dropped at shutdown sink=down samples=1"), "counted as shutdown drop:\n{log}");
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Python grpcio stubs for proto/tsrelay/v1/ingest.proto, generated into `dir`.
fn grpcio_stubs(dir: &Path) {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(proto.join("tsrelay/v1/ingest.proto"))
        .status()
        .expect("python3");
    assert!(
        status.success(),
        "grpc_tools.protoc failed: install with `pip install grpcio grpcio-tools` (scripts/install-test-deps)"
    );
}

const CANCELLING_CLIENT: &str = r#"
import sys, time, grpc
sys.path.insert(0, sys.argv[1])
from tsrelay.v1 import ingest_pb2 as pb, ingest_pb2_grpc as rpc
port, n, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stub = rpc.IngestStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
now = int(time.time() * 1000)
outcomes = {}
# 100 metric names, so no metric reaches cardinality.max_series_per_metric.
req = pb.WriteRequest(series=[
    pb.Series(labels=[pb.Label(name="__name__", value=f"cancel{i % 100}"), pb.Label(name="i", value=str(i))],
              samples=[pb.Sample(value=1.0, timestamp=now)])
    for i in range(n)])
for r in range(rounds):
    req.id = r
    for s in req.series:
        s.samples[0].timestamp = now + r
    # Deadlines from 10 ms up: many expire while the request's parts are admitted.
    try:
        stub.Write(req, timeout=0.01 * (1 + r % 30))
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    outcomes[code] = outcomes.get(code, 0) + 1
print(" ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
"#;

#[test]
fn a_deadline_during_admission_leaves_no_half_admitted_request() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    grpcio_stubs(&stubs);
    let grpc = free_port();
    // A one-batch ingest queue and one shard: a request of 40,000 samples
    // (10 parts) takes a while to get in, long enough for deadlines to hit.
    let config = format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
max_wait_ms = 5000
[sinks.sink]
type = "blackhole"
[pipelines.main]
receivers = ["grpc"]
sinks = ["sink"]
shards = 1
ingest_queue_batches = 1
shard_queue_batches = 1
"#
    );
    let (p, admin) = start_with_env(dir.path(), &config, &[]);
    const N: u64 = 40_000;
    let script = dir.path().join("client.py");
    std::fs::write(&script, CANCELLING_CLIENT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&stubs)
        .arg(grpc.to_string())
        .args([N.to_string(), "60".to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let outcomes = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(outcomes.contains("DEADLINE_EXCEEDED"), "no deadline hit during admission: {outcomes}");
    // Every admission that began runs to its end; then the books must show
    // whole requests only, the same at the receiver and at the sink.
    let mut last = (-1.0, -1.0);
    let (received, at_sink) = wait_for(Duration::from_secs(20), "admissions to settle", || {
        let m = parse_metrics(&http_get(admin, "/metrics")?.1);
        let received = sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"grpc\""]);
        // Requests overlap (a cancelled admission goes on while the next
        // request starts), so the monotonic stage may drop some samples as
        // out of order: those are counted at the pipeline.
        let at_sink = sum_metric(&m, "tsrelay_sink_received_samples_total", &["sink=\"sink\""])
            + sum_metric(&m, "tsrelay_dropped_samples_total", &["pipeline=\"main\""]);
        let stable = (received, at_sink) == last && received == at_sink;
        last = (received, at_sink);
        if !stable {
            std::thread::sleep(Duration::from_millis(300));
        }
        stable.then_some((received, at_sink))
    });
    assert_eq!(received % N as f64, 0.0, "a request was half counted: {received} samples ({outcomes})");
    assert_eq!(received, at_sink, "admitted but counted nowhere ({outcomes})");
    assert!(received > 0.0, "nothing admitted at all: {outcomes}");
    drop(p);
}
