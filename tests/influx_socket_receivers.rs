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
