//! Every listener's bounds against the real binary and real clients: slow
//! clients (slowloris) are cut within their timeout while others are served,
//! `max_connections`, `max_concurrent_requests` (HTTP with curl, gRPC with
//! grpcio), the memory-pressure check before a body is read, idle and aged
//! connections, and accept errors (EMFILE) that back off instead of spinning.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LINE: &str = "listener_test,host=a value=1\n";

fn config(http: u16, grpc: u16, http_extra: &str, extra: &str) -> String {
    format!(
        r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
max_wait_ms = 300
{http_extra}

[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
max_wait_ms = 300

[sinks.out]
type = "file"
path = "out.lp"
batch = {{ max_age_ms = 10 }}
queue = {{ max_samples = 100000 }}

[pipelines.main]
receivers = ["http", "grpc"]
sinks = ["out"]
shards = 1
{extra}
"#
    )
}

/// `curl` POSTing one line to `/write`: (exit code, HTTP status, headers).
fn curl_write(port: u16, max_time: &str) -> (i32, u16, String) {
    let curl = require_binary("curl", "apt-get install curl");
    let out = Command::new(curl)
        .args(["-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", "--max-time", max_time])
        .args(["--data-binary", LINE])
        .arg(format!("http://127.0.0.1:{port}/write"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (out.status.code().unwrap_or(-1), code, text)
}

/// Reads until EOF, a reset, or `limit`; returns what was read and when it ended.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into(), Some(start.elapsed())),
        }
    }
    (String::from_utf8_lossy(&got).into(), None)
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2)).expect("connect")
}

/// Sends `bytes` one a second from a thread until the peer closes or `stop` bytes are sent.
fn trickle(mut s: TcpStream, bytes: &'static [u8]) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        for b in bytes {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        sent
    })
}

#[test]
fn slowloris_headers_and_bodies_are_cut_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let t =
        Tsrelay::start(dir.path(), &config(http, grpc, "timeouts = { header_read = \"2s\", body_read = \"2s\" }", ""));

    // Headers one byte a second: closed once header_read has passed.
    let s = connect(http);
    let mut reader = s.try_clone().unwrap();
    let headers = trickle(
        s,
        b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
    );
    // Meanwhile another client is served at once.
    let (rc, code, _) = curl_write(http, "5");
    assert_eq!((rc, code), (0, 204), "a normal client beside the slow one");
    let (_, closed) = read_until_closed(&mut reader, Duration::from_secs(8));
    let closed = closed.expect("slow headers cut");
    assert!(closed < Duration::from_secs(5), "cut after {closed:?}, header_read is 2s");
    assert!(headers.join().unwrap() < 8, "the slow client could not send its whole header");

    // Complete headers, then a body one byte a second: 408, then closed.
    let mut s = connect(http);
    s.write_all(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nlis").unwrap();
    let mut reader = s.try_clone().unwrap();
    let body = trickle(s, b"tener_test,host=b value=2 1700000000000000000\n");
    let (answer, closed) = read_until_closed(&mut reader, Duration::from_secs(8));
    assert!(closed.expect("slow body cut") < Duration::from_secs(5), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("timeouts.body_read"), "{answer}");
    assert!(body.join().unwrap() < 10);

    let m = t.metrics();
    let timeouts = |kind: &str| {
        sum_metric(&m, "tsrelay_listener_timeouts_total", &["listener=\"http\"", &format!("kind=\"{kind}\"")])
    };
    assert_eq!(timeouts("header_read"), 1.0, "{m:?}");
    assert_eq!(timeouts("body_read"), 1.0, "{m:?}");
    // Nothing of the slow body reached the pipeline; the normal line did.
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]), 1.0);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let t = Tsrelay::start(dir.path(), &config(http, grpc, "timeouts = { idle = \"1s\", header_read = \"30s\" }", ""));
    let mut s = connect(http);
    write!(s, "POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{LINE}", LINE.len()).unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(6));
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let closed = closed.expect("idle keep-alive connection closed");
    assert!(closed >= Duration::from_millis(900) && closed < Duration::from_secs(4), "closed after {closed:?}");
    let idle = t.metric_sum("tsrelay_listener_timeouts_total", &["listener=\"http\"", "kind=\"idle\""]);
    assert_eq!(idle, 1.0);
}

#[test]
fn max_connections_holds_new_clients_until_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let t = Tsrelay::start(
        dir.path(),
        &config(http, grpc, "max_connections = 2\ntimeouts = { header_read = \"30s\", idle = \"30s\" }", ""),
    );
    let a = connect(http);
    let b = connect(http);
    wait_for(Duration::from_secs(5), "2 open connections", || {
        (t.metric_sum("tsrelay_listener_connections", &["listener=\"http\""]) == 2.0).then_some(())
    });
    assert_eq!(t.metric_sum("tsrelay_listener_max_connections", &["listener=\"http\""]), 2.0);
    // A third client is not served while two connections are open...
    let (rc, code, _) = curl_write(http, "1.5");
    assert_eq!((rc, code), (28, 0), "curl should time out (exit 28) while both slots are taken");
    // ...and is as soon as one closes.
    drop(a);
    let (rc, code, _) = curl_write(http, "5");
    assert_eq!((rc, code), (0, 204));
    drop(b);
}

#[test]
fn too_many_concurrent_requests_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let t = Tsrelay::start(
        dir.path(),
        &config(http, grpc, "max_concurrent_requests = 1\ntimeouts = { body_read = \"20s\" }", ""),
    );
    // One request holds the only turn: headers sent, body still coming.
    let mut holder = connect(http);
    holder.write_all(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n\r\nlistener_test").unwrap();
    wait_for(Duration::from_secs(5), "one request in flight", || {
        (t.metric_sum("tsrelay_receiver_requests_in_flight", &["receiver=\"http\""]) == 1.0).then_some(())
    });
    let (rc, code, headers) = curl_write(http, "5");
    assert_eq!((rc, code), (0, 503), "{headers}");
    assert!(headers.to_ascii_lowercase().contains("retry-after: 1"), "{headers}");
    assert_eq!(t.metric_sum("tsrelay_receiver_busy_rejections_total", &["receiver=\"http\""]), 1.0);
    // The holder finishes; the turn is free again.
    holder.write_all(b",host=c value=3\n").unwrap();
    let (answer, _) = read_until_closed(&mut holder, Duration::from_secs(1));
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let (rc, code, _) = curl_write(http, "5");
    assert_eq!((rc, code), (0, 204));
}

#[test]
fn memory_pressure_is_answered_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    // A mark of 1 % of 1 GiB (~10 MiB) is below any daemon's resident set.
    let t = Tsrelay::start(
        dir.path(),
        &config(http, grpc, "", "[limits]\nmemory_bytes = 1073741824\nrss_high_water_percent = 1\n"),
    );
    wait_for(Duration::from_secs(5), "memory pressure", || {
        (t.metric_sum("tsrelay_memory_pressure", &[]) == 1.0).then_some(())
    });
    // Headers announce a large body that is never sent: the answer comes anyway.
    let mut s = connect(http);
    s.write_all(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n").unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after"), "{answer}");
    assert!(answer.contains("high-water"), "{answer}");
}

#[test]
fn grpc_streams_hold_a_turn_and_unary_calls_get_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = grpcio::stubs(dir.path());
    let (http, grpc) = (free_port(), free_port());
    let cfg =
        config(http, grpc, "", "").replace("[receivers.grpc]\n", "[receivers.grpc]\nmax_concurrent_requests = 1\n");
    let t = Tsrelay::start(dir.path(), &cfg);
    let target = format!("127.0.0.1:{grpc}");
    let ok = grpcio::run(&stubs, &target, "write", &["--samples", "5"]);
    assert_eq!(ok["code"], "OK", "{ok}");
    assert_eq!(ok["accepted"], 5, "{ok}");
    let busy = grpcio::run(&stubs, &target, "busy", &[]);
    assert_eq!(busy["stream_first_accepted"], 1, "{busy}");
    assert_eq!(busy["code"], "RESOURCE_EXHAUSTED", "{busy}");
    assert!(busy["details"].as_str().unwrap_or("").contains("max_concurrent_requests"), "{busy}");
    assert_eq!(busy["metadata"]["retry-after-ms"], "300", "{busy}");
    assert_eq!(t.metric_sum("tsrelay_receiver_busy_rejections_total", &["receiver=\"grpc\""]), 1.0);
}

#[test]
fn grpc_connections_age_out_and_idle_out_without_failing_calls() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = grpcio::stubs(dir.path());
    let (http, grpc) = (free_port(), free_port());
    let cfg = config(http, grpc, "", "").replace(
        "[receivers.grpc]\n",
        "[receivers.grpc]\ntimeouts = { max_connection_age = \"1s\", close_grace = \"1s\", idle = \"1s\" }\n",
    );
    let t = Tsrelay::start(dir.path(), &cfg);
    let target = format!("127.0.0.1:{grpc}");
    // Calls every 100 ms for 3.5 s: the connection is replaced at least twice.
    let steady = grpcio::run(&stubs, &target, "steady", &["--seconds", "3.5", "--every", "0.1"]);
    assert_eq!(steady["failed"], serde_json::json!([]), "{steady}");
    assert!(steady["ok"].as_u64().unwrap() >= 10, "{steady}");
    let aged = t.metric_sum(
        "tsrelay_listener_closed_connections_total",
        &["listener=\"grpc\"", "reason=\"max_connection_age\""],
    );
    assert!(aged >= 2.0, "connections closed by age: {aged}");
    drop(t);

    // An idle channel is closed by the server; the next call reconnects.
    let grpc = free_port();
    let target = format!("127.0.0.1:{grpc}");
    let cfg = config(free_port(), grpc, "", "")
        .replace("[receivers.grpc]\n", "[receivers.grpc]\ntimeouts = { idle = \"1s\" }\n");
    let t = Tsrelay::start(dir.path(), &cfg);
    let idle = grpcio::run(&stubs, &target, "idle", &["--seconds", "2.5"]);
    assert_eq!((idle["first"].as_str(), idle["second"].as_str()), (Some("OK"), Some("OK")), "{idle}");
    let idled = t.metric_sum("tsrelay_listener_timeouts_total", &["listener=\"grpc\"", "kind=\"idle\""]);
    assert!(idled >= 1.0, "idle closes: {idled}");
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let admin = loopback(free_port());
    let cfg = format!("{}\n[admin]\nlisten = \"{admin}\"\n", config(http, grpc, "", ""));
    let path = dir.path().join("tsrelay.toml");
    std::fs::write(&path, cfg).unwrap();
    // Few file descriptors: the daemon runs out of them while accepting.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 64 && exec \"$0\" run --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_tsrelay"))
        .arg(&path)
        .current_dir(dir.path());
    let mut process = ChildGuard::spawn("tsrelay", &mut cmd, dir.path());
    wait_for(Duration::from_secs(20), "tsrelay ready", || {
        assert!(process.is_running(), "tsrelay exited:\n{}", process.log_tail());
        http_get(admin, "/readyz").map(|_| ())
    });
    let mut held = Vec::new();
    for _ in 0..80 {
        match TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], http)), Duration::from_secs(1)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    wait_for(Duration::from_secs(5), "an accept error", || {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        log.contains("accept failed; backing off").then_some(())
    });
    // Out of descriptors with 80 clients waiting: a spinning accept loop
    // would burn a whole core; backing off costs next to nothing.
    let pid = process.child.id();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    assert!(used < 0.5, "{used} CPU seconds in 2 s while out of file descriptors");
    drop(held);
    // Descriptors free again: served as before.
    let (rc, code, _) = curl_write(http, "10");
    assert_eq!((rc, code), (0, 204), "{}", process.log_tail());
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    let errors = sum_metric(&parse_metrics(&metrics), "tsrelay_listener_accept_errors_total", &["listener=\"http\""]);
    assert!(errors >= 1.0, "accept errors counted: {errors}");
}
