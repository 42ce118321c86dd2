//! Line protocol over UDP and TCP (`influx_udp`, `influx_tcp`).
//!
//! UDP with a real sender: collectd's `write_influxdb_udp` plugin (Debian
//! `collectd-core`), whose datagrams pass through a recording relay in the
//! test on their way to tsrelay; everything recorded must be in the real
//! Prometheus behind tsrelay, same series, same timestamps, same values.
//! TCP: newline-delimited points over plain connections, split anywhere;
//! a bad line is counted, the last line is taken at the end of the stream.
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fault_http::{FaultServer, Reply, stalled_pipeline_toml};
use common::prometheus::Prometheus;
use common::*;

fn start_relay(dir: &std::path::Path, url: &str, udp: SocketAddr, tcp: SocketAddr) -> Tsrelay {
    let config = format!(
        r#"
shutdown_timeout = "2s"

[receivers.udp]
type = "influx_udp"
listen = "{udp}"
precision = "ms"

[receivers.tcp]
type = "influx_tcp"
listen = "{tcp}"
precision = "s"

[pipelines.main]
receivers = ["udp", "tcp"]
sinks = ["prom"]

[sinks.prom]
type = "prometheus_remote_write"
url = "{url}"
batch = {{ max_samples = 10000, max_age_ms = 50 }}
"#
    );
    Tsrelay::start(dir, &config)
}

/// `(series, timestamp ms) → value` of every sample of `selector` in the last 10 minutes.
fn samples_in(p: &Prometheus, selector: &str) -> BTreeMap<(String, i64), f64> {
    let url = format!("http://127.0.0.1:{}/api/v1/query", p.port);
    let answer: serde_json::Value =
        http().get(url).query(&[("query", format!("{selector}[10m]"))]).send().and_then(|r| r.json()).expect("query");
    let mut out = BTreeMap::new();
    for s in answer["data"]["result"].as_array().cloned().unwrap_or_default() {
        let labels: BTreeMap<String, String> = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
        let key = format!("{labels:?}");
        for v in s["values"].as_array().cloned().unwrap_or_default() {
            let ts = (v[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            out.insert((key.clone(), ts), v[1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN));
        }
    }
    out
}

/// The samples recorded line-protocol datagrams stand for, keyed like [`samples_in`].
fn expected_from_lines(lines: &[String]) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split(' ');
        let (series, fields, ts) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("0"));
        let mut tags = series.split(',');
        let measurement = tags.next().unwrap_or("");
        let tags: Vec<(String, String)> =
            tags.filter_map(|t| t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
        for field in fields.split(',') {
            let Some((name, value)) = field.split_once('=') else { continue };
            let metric = if name == "value" { measurement.to_string() } else { format!("{measurement}_{name}") };
            let mut labels: BTreeMap<String, String> = tags.iter().cloned().collect();
            labels.insert("__name__".into(), metric);
            out.insert((format!("{labels:?}"), ts.parse().unwrap_or(0)), value.parse().unwrap_or(f64::NAN));
        }
    }
    out
}

#[test]
fn collectd_over_udp_lands_in_prometheus_with_nothing_lost() {
    let collectd = require_binary("collectd", "apt-get install -y collectd-core");
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let (udp, tcp) = (loopback(free_port()), loopback(free_port()));
    let relay = start_relay(dir.path(), &backend.write_url(), udp, tcp);

    // The recording relay collectd sends to.
    let tap = UdpSocket::bind("127.0.0.1:0").expect("bind tap");
    tap.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let tap_port = tap.local_addr().expect("tap addr").port();
    let recorded = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tap_thread = {
        let (recorded, stop) = (recorded.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = tap.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    recorded.lock().expect("lock").extend(text.lines().map(str::to_string));
                    tap.send_to(&buf[..n], udp).expect("forward to tsrelay");
                }
            }
        })
    };

    let cd_dir = dir.path().join("collectd");
    std::fs::create_dir_all(&cd_dir).expect("collectd dir");
    let conf = cd_dir.join("collectd.conf");
    std::fs::write(
        &conf,
        format!(
            r#"Hostname "tsrelay-test"
FQDNLookup false
BaseDir "{d}"
PIDFile "{d}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin load
LoadPlugin memory
LoadPlugin write_influxdb_udp
<Plugin write_influxdb_udp>
  Server "127.0.0.1" "{tap_port}"
</Plugin>
"#,
            d = cd_dir.display()
        ),
    )
    .expect("write collectd.conf");
    let mut cmd = Command::new(collectd);
    cmd.arg("-f").arg("-C").arg(&conf);
    let mut cd = ChildGuard::spawn("collectd", &mut cmd, &cd_dir);
    wait_for(Duration::from_secs(30), "four collectd intervals recorded", || {
        (recorded.lock().expect("lock").iter().filter(|l| l.starts_with("load,")).count() >= 4).then_some(())
    });
    assert!(cd.terminate(Duration::from_secs(10)), "collectd did not stop");
    std::thread::sleep(Duration::from_millis(500)); // the tap's last forwards
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tap_thread.join().expect("tap thread");

    let lines = recorded.lock().expect("lock").clone();
    let want = expected_from_lines(&lines);
    assert!(want.len() >= 4 * 9, "too few samples recorded: {lines:?}");
    let got = wait_for(Duration::from_secs(30), "every recorded sample in Prometheus", || {
        let got = samples_in(&backend, "{host=\"tsrelay-test\"}");
        (got.len() >= want.len()).then_some(got)
    });
    assert_eq!(got, want);
    assert_eq!(relay.metric_sum("tsrelay_dropped_samples_total", &["stage=\"receiver\""]), 0.0);
}

#[test]
fn tcp_lines_split_anywhere_and_bad_lines_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let (udp, tcp) = (loopback(free_port()), loopback(free_port()));
    let relay = start_relay(dir.path(), &backend.write_url(), udp, tcp);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let mut body = String::new();
    for i in 0..300u64 {
        body.push_str(&format!("tcp_m,conn=a,i={} value={i} {}\n", i % 3, now_s - 300 + i));
    }
    body.push_str("this is not line protocol\n");
    body.push_str(&format!("tcp_last,conn=a value=42 {now_s}")); // no final newline: taken at EOF
    // Two connections; the first writes in odd-sized pieces, splitting lines.
    let mut conn = std::net::TcpStream::connect(tcp).expect("connect");
    for piece in body.as_bytes().chunks(7) {
        conn.write_all(piece).expect("write");
    }
    drop(conn);
    let mut conn2 = std::net::TcpStream::connect(tcp).expect("connect");
    conn2.write_all(format!("tcp_other value=1.5 {now_s}\n").as_bytes()).expect("write");
    drop(conn2);
    wait_for(Duration::from_secs(30), "the TCP samples in Prometheus", || {
        let ok = backend.query_number("sum(count_over_time(tcp_m[10m]))", None) == 300.0;
        (ok && backend.query_number("tcp_last", None) == 42.0 && backend.query_number("tcp_other", None) == 1.5)
            .then_some(())
    });
    assert_eq!(backend.query_number("sum(count_over_time(tcp_m[10m]))", None), 300.0);
    assert_eq!(relay.metric_sum("tsrelay_dropped_samples_total", &["reason=\"parse_error\""]), 1.0);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(format!("udp_ok value=2 {}000\n", now_s).as_bytes(), udp).expect("send");
    wait_for(Duration::from_secs(30), "udp_ok", || (backend.query_number("udp_ok", None) == 2.0).then_some(()));
}

/// A stalled sink fills the queues; the TCP receiver then stops reading, so
/// the sender's writes block (TCP flow control) instead of anything being
/// dropped; once the backend answers again everything is delivered.
#[test]
fn tcp_pushes_back_by_not_reading_when_the_pipeline_is_full() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = FaultServer::start(Vec::new(), Reply::Hang);
    let tcp = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "2s"

[receivers.tcp]
type = "influx_tcp"
listen = "{tcp}"
precision = "s"

{stalled}"#,
        stalled = stalled_pipeline_toml(&["tcp"], &backend.url("/api/v1/write"), 2000, 500, "1s")
    );
    let relay = Tsrelay::start(dir.path(), &config);
    const LINES: usize = 400_000;
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 1000;
    let mut body = Vec::with_capacity(LINES * 40);
    for i in 0..LINES {
        body.extend_from_slice(format!("push_m,s={} value={i} {}\n", i % 1000, base + (i / 1000) as u64).as_bytes());
    }
    let total = body.len();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(tcp).expect("connect");
            for piece in body.chunks(16 * 1024) {
                conn.write_all(piece).expect("write");
                written.fetch_add(piece.len(), std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // The writes stall well before the end: nothing moves for a second.
    let stalled_at = wait_for(Duration::from_secs(30), "the sender to be blocked", || {
        let a = written.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        let b = written.load(std::sync::atomic::Ordering::Relaxed);
        (a == b && b > 0).then_some(b)
    });
    assert!(stalled_at < total, "the sender was never blocked ({stalled_at} of {total} bytes written)");
    assert_eq!(relay.metric_sum("tsrelay_dropped_samples_total", &[]), 0.0);
    // The backend recovers: everything arrives, nothing is dropped.
    backend.set_default(Reply::status(204));
    writer.join().expect("writer");
    wait_for(Duration::from_secs(120), "every line delivered", || {
        (relay.metric_sum("tsrelay_sink_sent_samples_total", &[]) == LINES as f64).then_some(())
    });
    assert_eq!(relay.metric_sum("tsrelay_dropped_samples_total", &[]), 0.0);
}

/// `tests/scripts/tls_lines.py`: Python's ssl module sends `lines` to `addr`
/// over TLS, verifying the server with `ca`; `client` = (cert, key) for mutual TLS.
fn send_over_tls(addr: SocketAddr, ca: &std::path::Path, client: Option<(&str, &str)>, lines: &str) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/tls_lines.py");
    let mut cmd = Command::new(require_binary("python3", "apt-get install python3"));
    cmd.arg(script).args(["127.0.0.1", &addr.port().to_string()]).arg(ca);
    if let Some((cert, key)) = client {
        cmd.args([cert, key]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write to python");
    let out = child.wait_with_output().expect("python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `influx_tcp` with `tls` and with mutual TLS, under `[auth]` (opted in with
/// `auth = "none"`): Python's ssl client delivers; plain text to the TLS port,
/// and a client without a certificate on the mutual-TLS port, deliver
/// nothing and count as handshake failures. Without `auth = "none"` the
/// config is refused, naming the receiver.
#[test]
fn influx_tcp_over_tls_and_mutual_tls_and_the_auth_opt_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ca = certs::ca(d, "ca");
    certs::leaf(d, "ca", "server", "127.0.0.1", true, false);
    let (client_cert, client_key) = certs::leaf(d, "ca", "client", "collector-b", false, false);
    std::fs::write(d.join("keys.yaml"), "keys: []\n").expect("keys file");
    let (tls_addr, mtls_addr, udp) = (loopback(free_port()), loopback(free_port()), loopback(free_port()));
    let receivers = |auth: &str| {
        format!(
            r#"
shutdown_timeout = "2s"

[auth]
keys_file = "keys.yaml"

[admin]
listen = "{{admin}}"
auth = "none"

[receivers.tls]
type = "influx_tcp"
listen = "{tls_addr}"
precision = "s"
tls = {{ cert_file = "server.pem", key_file = "server.key" }}
auth = "none"

[receivers.mtls]
type = "influx_tcp"
listen = "{mtls_addr}"
precision = "s"
tls = {{ cert_file = "server.pem", key_file = "server.key", client_ca_file = "ca.pem" }}
auth = "none"

[receivers.udp]
type = "influx_udp"
listen = "{udp}"
{auth}

[pipelines.main]
receivers = ["tls", "mtls", "udp"]
sinks = ["out"]

[sinks.out]
type = "file"
path = "out.lp"
batch = {{ max_age_ms = 10 }}
"#
        )
    };
    // influx_udp left without auth under [auth]: refused at start, naming it.
    std::fs::write(d.join("refused.toml"), receivers("").replace("{admin}", "127.0.0.1:0")).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["validate", "--config"])
        .arg(d.join("refused.toml"))
        .output()
        .expect("run tsrelay validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a config with an unauthenticated influx_udp under [auth] must be refused");
    assert!(err.contains("receivers.udp") && err.contains("auth = \"none\""), "{err}");
    std::fs::write(d.join("required.toml"), receivers("auth = \"required\"").replace("{admin}", "127.0.0.1:0"))
        .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["validate", "--config"])
        .arg(d.join("required.toml"))
        .output()
        .expect("run tsrelay validate");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("carries no API key"));

    let relay = Tsrelay::start(d, &receivers("auth = \"none\""));
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let (ok, text) = send_over_tls(tls_addr, &ca, None, &format!("tls_m,via=tls value=1 {now_s}\n"));
    assert!(ok && text.contains("sent TLSv1.3"), "{text}");
    let cert = (client_cert.to_str().expect("path"), client_key.to_str().expect("path"));
    let (ok, text) = send_over_tls(mtls_addr, &ca, Some(cert), &format!("tls_m,via=mtls value=2 {now_s}\n"));
    assert!(ok, "{text}");
    // No client certificate on the mutual-TLS port: refused.
    let (ok, text) = send_over_tls(mtls_addr, &ca, None, &format!("tls_m,via=nocert value=3 {now_s}\n"));
    assert!(!ok, "a client without a certificate got through: {text}");
    // Plain text to the TLS port.
    let mut plain = std::net::TcpStream::connect(tls_addr).expect("connect");
    plain.write_all(format!("tls_m,via=plain value=4 {now_s}\n").as_bytes()).expect("write");
    drop(plain);
    let out = d.join("out.lp");
    wait_for(Duration::from_secs(20), "both TLS samples in the file", || {
        let n = read_lp_file(&out).iter().filter(|(s, _, _)| s.starts_with("tls_m,")).count();
        (n == 2).then_some(())
    });
    wait_for(Duration::from_secs(10), "two refused handshakes counted", || {
        (relay.metric_sum("tsrelay_listener_tls_handshake_failures_total", &[]) == 2.0).then_some(())
    });
    assert_eq!(relay.metric_sum("tsrelay_listener_tls_handshake_failures_total", &["listener=\"tls\""]), 1.0);
    assert_eq!(relay.metric_sum("tsrelay_listener_tls_handshake_failures_total", &["listener=\"mtls\""]), 1.0);
    let mut got: Vec<String> = read_lp_file(&out).into_iter().map(|(s, _, _)| s).collect();
    got.sort();
    assert_eq!(got, ["tls_m,via=mtls", "tls_m,via=tls"]);
}

/// UDP cannot push back: with the ingest queue full (a tiny queue in front of
/// a backend that never answers) blasted datagrams are dropped and counted as
/// `queue_full`; a datagram above `max_datagram_bytes` is dropped whole and
/// counted as `parse_error`.
#[test]
fn udp_counts_queue_full_and_oversized_datagrams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = FaultServer::start(Vec::new(), Reply::Hang);
    let udp = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "1s"

[receivers.udp]
type = "influx_udp"
listen = "{udp}"
precision = "s"
max_datagram_bytes = 1000
max_batch_datagrams = 1
max_wait_ms = 5

{stalled}"#,
        stalled = stalled_pipeline_toml(&["udp"], &backend.url("/api/v1/write"), 10, 5, "30s")
    );
    let relay = Tsrelay::start(dir.path(), &config);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    // 1,200 bytes of valid lines: too big as one datagram.
    let mut big = String::new();
    for i in 0..40 {
        big.push_str(&format!("udp_big,i={i:03} value={i} {now_s}\n"));
    }
    assert!(big.len() > 1000);
    sock.send_to(big.as_bytes(), udp).expect("send");
    wait_for(Duration::from_secs(10), "the oversized datagram counted", || {
        let n = relay.metric_sum("tsrelay_dropped_samples_total", &["receiver=\"udp\"", "reason=\"parse_error\""]);
        (n == 1.0).then_some(())
    });
    // Blast small datagrams (bounded in count and time) until drops show.
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    let dropped = loop {
        for _ in 0..50 {
            sock.send_to(format!("udp_blast,n={sent} value=1 {now_s}\n").as_bytes(), udp).expect("send");
            sent += 1;
        }
        let d = relay.metric_sum("tsrelay_dropped_samples_total", &["receiver=\"udp\"", "reason=\"queue_full\""]);
        if d > 0.0 || sent >= 20_000 || start.elapsed() > Duration::from_secs(20) {
            break d;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(dropped > 0.0, "no queue_full drop after {sent} datagrams");
    // Nothing was taken beyond what the stalled pipeline holds: every other sample was either
    // received or counted as dropped (the kernel may also drop datagrams; never more arrive).
    let received = relay.metric_sum("tsrelay_received_samples_total", &["receiver=\"udp\""]);
    assert!(received + dropped <= sent as f64, "received {received} + dropped {dropped} > sent {sent}");
    assert!(received < 100.0, "a stalled pipeline took {received} samples");
}
