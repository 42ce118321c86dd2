//! TLS and mutual TLS on every listener against the real binary, with
//! certificates made by `openssl` and real clients: curl (`--cacert`,
//! `--cert`), grpcio (SSL channel and call credentials), the InfluxDB 1.x CLI
//! (`influx -ssl -import -username -password`) and the InfluxDB 2.x Python
//! client (token auth). Plain text to a TLS port, TLS 1.1, a missing, expired
//! or foreign client certificate are refused; certificates are re-read when
//! their files change.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = certs::ca(dir, "ca");
        certs::leaf(dir, "ca", "server", "127.0.0.1", true, false);
        certs::leaf(dir, "ca", "client", "collector-b", false, false);
        certs::leaf(dir, "ca", "expired", "collector-b", false, true);
        certs::ca(dir, "other-ca");
        certs::leaf(dir, "other-ca", "foreign", "collector-b", false, false);
        Pki { dir: dir.to_path_buf(), ca }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn tls(mutual: bool) -> String {
    let ca = if mutual { ", client_ca_file = \"ca.pem\"" } else { "" };
    format!("tls = {{ cert_file = \"server.pem\", key_file = \"server.key\"{ca} }}")
}

fn config(http: u16, grpc: u16, admin: std::net::SocketAddr, mutual: bool, auth: &str) -> String {
    let tls = tls(mutual);
    format!(
        r#"
{auth}
[admin]
listen = "{admin}"
{tls}
open_paths = ["/healthz", "/readyz", "/metrics"]

[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
{tls}

[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
{tls}

[sinks.out]
type = "file"
path = "out.lp"
batch = {{ max_age_ms = 10 }}
queue = {{ max_samples = 100000 }}

[pipelines.main]
receivers = ["http", "grpc"]
sinks = ["out"]
shards = 1
"#
    )
}

/// `curl ARGS URL` with a body: (exit code, HTTP status).
fn curl(args: &[&str], url: &str, body: Option<&str>) -> (i32, u16) {
    let curl = require_binary("curl", "apt-get install curl");
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]).args(args);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (out.status.code().unwrap_or(-1), code)
}

/// Starts tsrelay with its config in `dir` (where the certificates are) and
/// waits for the admin endpoint over TLS.
fn start(dir: &Path, cfg: &str, admin: std::net::SocketAddr, pki: &Pki, admin_cert: &[&str]) -> ChildGuard {
    let path = dir.join("tsrelay.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsrelay"));
    cmd.args(["run", "--config"]).arg(&path).current_dir(dir).env("RUST_LOG", "info,tsrelay=debug");
    let mut process = ChildGuard::spawn("tsrelay", &mut cmd, dir);
    let ca = pki.ca.display().to_string();
    let mut args = vec!["--cacert", ca.as_str()];
    args.extend_from_slice(admin_cert);
    wait_for(Duration::from_secs(20), "tsrelay admin over TLS", || {
        assert!(process.is_running(), "tsrelay exited:\n{}", process.log_tail());
        (curl(&args, &format!("https://{admin}/healthz"), None).1 == 200).then_some(())
    });
    process
}

fn metrics(admin: std::net::SocketAddr, args: &[&str]) -> std::collections::BTreeMap<String, f64> {
    let curl = require_binary("curl", "apt-get install curl");
    let out = Command::new(curl)
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .arg(format!("https://{admin}/metrics"))
        .output()
        .unwrap();
    parse_metrics(&String::from_utf8_lossy(&out.stdout))
}

fn now_line(name: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name},host=a value=1 {now}")
}

#[test]
fn tls_on_every_listener_with_curl_and_grpcio_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (http, grpc, admin) = (free_port(), free_port(), loopback(free_port()));
    let _t = start(dir.path(), &config(http, grpc, admin, false, ""), admin, &pki, &[]);
    let ca = pki.path("ca.pem");
    let url = format!("https://127.0.0.1:{http}/write");

    assert_eq!(curl(&["--cacert", &ca], &url, Some(&now_line("tls_curl"))), (0, 204));
    assert_eq!(curl(&["--cacert", &ca, "--tlsv1.2", "--tls-max", "1.2"], &url, Some(&now_line("tls12"))), (0, 204));
    assert_eq!(curl(&["--cacert", &ca, "--tlsv1.3"], &url, Some(&now_line("tls13"))), (0, 204));
    // TLS 1.1 and older are refused.
    let (rc, _) = curl(&["--cacert", &ca, "--tlsv1.0", "--tls-max", "1.1"], &url, Some("x value=1"));
    assert_ne!(rc, 0, "TLS 1.1 must fail");
    // Plain text to a TLS port: no HTTP answer.
    let (rc, code) = curl(&[], &format!("http://127.0.0.1:{http}/write"), Some("x value=1"));
    assert!(rc != 0 || code == 0 || code == 400, "plain text answered {code}");
    // Without the CA the client does not trust the server.
    assert_eq!(curl(&[], &url, Some("x value=1")).0, 60);

    // gRPC over TLS with grpcio's SSL channel credentials.
    let stubs = grpcio::stubs(dir.path());
    let target = format!("127.0.0.1:{grpc}");
    let r = grpcio::run(&stubs, &target, "write", &["--tls-ca", &ca, "--samples", "2"]);
    assert_eq!((r["code"].as_str(), r["accepted"].as_u64()), (Some("OK"), Some(2)), "{r}");

    let m = metrics(admin, &["--cacert", &ca]);
    let failures = sum_metric(&m, "tsrelay_listener_tls_handshake_failures_total", &["listener=\"http\""]);
    assert!(failures >= 3.0, "handshake failures counted: {failures}");

    // Rotation: new certificate files from another CA are picked up.
    certs::ca(dir.path(), "ca2");
    let (new_cert, new_key) = certs::leaf(dir.path(), "ca2", "server2", "127.0.0.1", true, false);
    std::fs::copy(&new_key, dir.path().join("server.key")).unwrap();
    std::fs::copy(&new_cert, dir.path().join("server.pem")).unwrap();
    let ca2 = pki.path("ca2.pem");
    wait_for(Duration::from_secs(10), "the new certificate served", || {
        (curl(&["--cacert", &ca2], &url, Some(&now_line("rotated"))) == (0, 204)).then_some(())
    });
    assert_eq!(curl(&["--cacert", &ca], &url, Some("x value=1")).0, 60, "the old CA no longer verifies");
    let r = grpcio::run(&stubs, &target, "write", &["--tls-ca", &ca2]);
    assert_eq!(r["code"], "OK", "{r}");
}

fn keys_file(dir: &Path, keys: &[(&str, &str, &str)]) {
    let mut text = String::from("keys:\n");
    for (name, key, scopes) in keys {
        let hash = tsrelay::auth::keys::to_hex(&tsrelay::auth::keys::hash_key(key.as_bytes()));
        text.push_str(&format!("  - name: {name}\n    sha256: {hash}\n    scopes: [{scopes}]\n"));
    }
    std::fs::write(dir.join("keys.yaml"), text).unwrap();
}

#[test]
fn mutual_tls_client_certificates_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    keys_file(
        dir.path(),
        &[("collector-b", "tsr_collector_b_key", "write,read"), ("grpc-key", "tsr_grpc_key", "write")],
    );
    let auth = "[auth]\nkeys_file = \"keys.yaml\"\nclient_certs = { \"collector-b\" = \"collector-b\" }\n";
    let (http, grpc, admin) = (free_port(), free_port(), loopback(free_port()));
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
    let with_cert = ["--cacert", ca.as_str(), "--cert", cert.as_str(), "--key", key.as_str()];
    let _t = start(dir.path(), &config(http, grpc, admin, true, auth), admin, &pki, &with_cert);
    let url = format!("https://127.0.0.1:{http}/write");

    // The certificate stands for the key collector-b: no Authorization needed.
    assert_eq!(curl(&with_cert, &url, Some(&now_line("mtls"))), (0, 204));
    // No client certificate, an expired one, one from another CA: refused in the handshake.
    assert_ne!(curl(&["--cacert", &ca], &url, Some("x value=1")).0, 0);
    let (exp_cert, exp_key) = (pki.path("expired.pem"), pki.path("expired.key"));
    assert_ne!(curl(&["--cacert", &ca, "--cert", &exp_cert, "--key", &exp_key], &url, Some("x value=1")).0, 0);
    let (f_cert, f_key) = (pki.path("foreign.pem"), pki.path("foreign.key"));
    assert_ne!(curl(&["--cacert", &ca, "--cert", &f_cert, "--key", &f_key], &url, Some("x value=1")).0, 0);

    // grpcio: client certificate plus a key as call credentials.
    let stubs = grpcio::stubs(dir.path());
    let target = format!("127.0.0.1:{grpc}");
    let tls_args = ["--tls-ca", ca.as_str(), "--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let mut args = tls_args.to_vec();
    args.extend(["--key", "tsr_grpc_key", "--samples", "3"]);
    let r = grpcio::run(&stubs, &target, "write", &args);
    assert_eq!((r["code"].as_str(), r["accepted"].as_u64()), (Some("OK"), Some(3)), "{r}");
    let mut args = tls_args.to_vec();
    args.extend(["--key", "tsr_wrong"]);
    let r = grpcio::run(&stubs, &target, "write", &args);
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    // Without a client certificate the channel never comes up.
    let r = grpcio::run(&stubs, &target, "write", &["--tls-ca", &ca, "--key", "tsr_grpc_key"]);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");

    let m = metrics(admin, &with_cert);
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"collector-b\""]), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"grpc-key\""]), 3.0);
    assert!(sum_metric(&m, "tsrelay_listener_tls_handshake_failures_total", &["listener=\"http\""]) >= 3.0);
}

#[test]
fn influx_cli_and_python_client_over_tls_with_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    keys_file(dir.path(), &[("influx-cli", "tsr_influx_cli", "write"), ("python", "tsr_python", "write")]);
    let auth = "[auth]\nkeys_file = \"keys.yaml\"\n";
    let (http, grpc, admin) = (free_port(), free_port(), loopback(free_port()));
    let ca = pki.path("ca.pem");
    let _t = start(dir.path(), &config(http, grpc, admin, false, auth), admin, &pki, &[]);

    // The InfluxDB 1.x CLI: -ssl -import with -username/-password (the password is the key).
    let influx = require_binary("influx", "apt-get install influxdb-client");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let import = dir.path().join("import.txt");
    std::fs::write(
        &import,
        format!(
            "# DML\n# CONTEXT-DATABASE: metrics\ncli_import,host=a value=1 {now}\ncli_import,host=b value=2 {now}\n"
        ),
    )
    .unwrap();
    let run_cli = |password: &str| {
        Command::new(&influx)
            .args(["-ssl", "-unsafeSsl", "-host", "127.0.0.1", "-port", &http.to_string()])
            .args(["-username", "influx", "-password", password, "-import", "-precision", "s"])
            .arg(format!("-path={}", import.display()))
            .output()
            .expect("run influx")
    };
    let out = run_cli("tsr_influx_cli");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("Processed 2 inserts") && text.contains("Failed 0 inserts"),
        "{text}"
    );
    let out = run_cli("tsr_wrong");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("2 points were not inserted") && text.contains("unknown or revoked API key"), "{text}");

    // The InfluxDB 2.x Python client: Authorization: Token.
    let script = r#"
import sys
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
url, token, ca = sys.argv[1:4]
with InfluxDBClient(url=url, token=token, org="o", ssl_ca_cert=ca) as c:
    try:
        c.write_api(write_options=SYNCHRONOUS).write("b", record="py_client,host=a value=1")
        print("ok")
    except ApiException as e:
        print("status", e.status)
"#;
    let py = |token: &str| {
        let out = Command::new("python3")
            .args(["-c", script, &format!("https://127.0.0.1:{http}"), token, &ca])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "influxdb-client failed (pip install influxdb-client): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(py("tsr_python"), "ok");
    assert_eq!(py("tsr_wrong"), "status 401");

    let out = dir.path().join("out.lp");
    let lines = wait_for(Duration::from_secs(10), "3 samples in out.lp", || {
        let l = read_lp_file(&out);
        (l.len() >= 3).then_some(l)
    });
    let names: Vec<&str> = lines.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(names.contains(&"cli_import,host=a") && names.contains(&"py_client,host=a"), "{names:?}");
    let m = metrics(admin, &["--cacert", &ca]);
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"influx-cli\""]), 2.0);
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"python\""]), 1.0);
}

#[test]
fn query_listener_speaks_tls_and_wants_the_read_scope() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    keys_file(dir.path(), &[("reader", "tsr_reader", "read"), ("writer", "tsr_writer", "write")]);
    let (http, grpc, admin, query) = (free_port(), free_port(), loopback(free_port()), free_port());
    let auth = format!("[auth]\nkeys_file = \"keys.yaml\"\n[query]\nlisten = \"127.0.0.1:{query}\"\n{}\n", tls(false));
    let _t = start(dir.path(), &config(http, grpc, admin, false, &auth), admin, &pki, &[]);
    let ca = pki.path("ca.pem");
    let url = format!("https://127.0.0.1:{query}/api/v1/backends");
    let get = |args: &[&str]| {
        let mut all = vec!["--cacert", ca.as_str()];
        all.extend_from_slice(args);
        curl(&all, &url, None)
    };
    assert_eq!(get(&[]), (0, 401));
    assert_eq!(get(&["-H", "Authorization: Bearer tsr_writer"]), (0, 403));
    assert_eq!(get(&["-H", "Authorization: Bearer tsr_reader"]), (0, 200));
    // Plain text to the query port gets no HTTP answer.
    let (rc, code) = curl(&[], &format!("http://127.0.0.1:{query}/api/v1/backends"), None);
    assert!(rc != 0 || code == 0 || code == 400, "plain text answered {code}");
}

/// curl multiplexes eight 2 MB writes over one HTTP/2 connection to a receiver
/// that admits one request at a time. The seven waiting streams are not read
/// while they wait; if their bodies could fill the connection's flow-control
/// window, the admitted stream could not receive the rest of its own body, and
/// every waiter would end in 503 after `max_wait_ms`. All eight must succeed.
#[test]
fn http2_writes_waiting_for_a_turn_do_not_starve_the_admitted_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (http, admin) = (free_port(), loopback(free_port()));
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"
{tls}
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
max_concurrent_requests = 1
max_wait_ms = 5000
{tls}
[sinks.null]
type = "blackhole"
[pipelines.main]
receivers = ["http"]
sinks = ["null"]
"#,
        tls = tls(false)
    );
    let _t = start(dir.path(), &cfg, admin, &pki, &[]);

    let (requests, lines) = (8, 40_000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let body: String = (0..lines).map(|i| format!("h2_turns,n={i} value=1 {now}\n")).collect();
    assert!(body.len() > 1_500_000, "each body must be larger than any flow-control window");
    let body_path = dir.path().join("body.lp");
    std::fs::write(&body_path, &body).unwrap();

    let curl = require_binary("curl", "apt-get install curl");
    let url = format!("https://127.0.0.1:{http}/write");
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--http2", "--parallel", "--parallel-max", "8", "--max-time", "60"])
        .args(["--cacert", &pki.path("ca.pem")])
        .args(["--data-binary", &format!("@{}", body_path.display())])
        .args(["-w", "%{http_code} %{http_version}\n"]);
    for _ in 0..requests {
        cmd.args(["-o", "/dev/null", &url]);
    }
    let out = cmd.output().expect("run curl");
    let answers = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        answers.lines().filter(|a| *a == "204 2").count(),
        requests,
        "answers (status, HTTP version):\n{answers}"
    );

    let ca = pki.path("ca.pem");
    let m = metrics(admin, &["--cacert", &ca]);
    assert_eq!(sum_metric(&m, "tsrelay_receiver_busy_rejections_total", &[]), 0.0);
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &[]), (requests * lines) as f64);
}
