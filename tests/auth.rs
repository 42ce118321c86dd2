//! API keys against the real binary and real clients: `tsrelay keys new|list`,
//! every way a client presents a key (curl with Bearer, Token, basic auth and
//! u/p; grpcio metadata), 401/403/429 and their gRPC codes, revocation and
//! rotation through the keys file while a sender keeps sending, the admin
//! port's scopes, and the metrics.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `tsrelay keys new --config CONFIG --name NAME ARGS...`: the key it printed.
fn new_key(config: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["keys", "new", "--config"])
        .arg(config)
        .args(["--name", name])
        .args(args)
        .output()
        .expect("run tsrelay keys new");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "keys new failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key alone on one line: {stdout:?}");
    assert!(lines[0].len() >= 4 + 32, "at least 128 bits: {stdout:?}");
    lines[0].to_string()
}

fn list_keys(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["keys", "list", "--config"])
        .arg(config)
        .output()
        .expect("run tsrelay keys list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// curl POSTing `body` to `url` with extra args: (HTTP status, headers and body).
fn curl(url: &str, body: &str, args: &[&str]) -> (u16, String) {
    let curl = require_binary("curl", "apt-get install curl");
    let out = Command::new(curl)
        .args(["-sS", "-i", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .args(["--data-binary", body])
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (code, text)
}

fn config(http: u16, grpc: u16) -> String {
    format!(
        r#"
[auth]
keys_file = "keys.yaml"

[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"

[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"

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

struct Setup {
    t: Tsrelay,
    dir: tempfile::TempDir,
    write_url: String,
    grpc: String,
    writer: String,
    reader: String,
    /// Keys made with `start_with`'s `extra`, in order.
    extra: Vec<String>,
}

/// Starts with two keys; `/metrics` is left open (as a setting) unless `closed_metrics`.
fn start_with(closed_metrics: bool, extra: &[(&str, &[&str])]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let admin = loopback(free_port());
    let open = if closed_metrics { "" } else { "open_paths = [\"/healthz\", \"/readyz\", \"/metrics\"]\n" };
    let cfg = format!("{}\n[admin]\nlisten = \"{admin}\"\n{open}", config(http, grpc));
    let path = dir.path().join("tsrelay.toml");
    std::fs::write(&path, cfg).unwrap();
    let writer = new_key(&path, "writer", &[]);
    let reader = new_key(&path, "reader", &["--scopes", "read"]);
    let extra = extra.iter().map(|(name, args)| new_key(&path, name, args)).collect();
    let t = Tsrelay::start_with_file(dir.path(), &path, admin);
    let (write_url, grpc) = (format!("http://127.0.0.1:{http}/write"), format!("127.0.0.1:{grpc}"));
    Setup { t, dir, write_url, grpc, writer, reader, extra }
}

fn start() -> Setup {
    start_with(false, &[])
}

const LINE: &str = "auth_test,host=a value=1";

#[test]
fn keys_new_and_list_keep_only_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tsrelay.toml");
    std::fs::write(&path, config(free_port(), free_port())).unwrap();
    let key = new_key(
        &path,
        "collector-a",
        &["--scopes", "write,read", "--samples-per-second", "500", "--pipelines", "main"],
    );
    let file = std::fs::read_to_string(dir.path().join("keys.yaml")).unwrap();
    assert!(!file.contains(&key), "the raw key must not be stored");
    assert!(file.contains("sha256:"), "{file}");
    let table = list_keys(&path);
    assert!(table.contains("collector-a"), "{table}");
    assert!(table.contains("write,read") && table.contains("500 (500)") && table.contains("main"), "{table}");
    assert!(!table.contains(&key));
    // A second key with the same name is refused, the file untouched.
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["keys", "new", "--config"])
        .arg(&path)
        .args(["--name", "collector-a"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    assert_eq!(std::fs::read_to_string(dir.path().join("keys.yaml")).unwrap(), file);
}

#[test]
fn http_keys_every_client_style_and_the_answers() {
    let s = start();
    let url = &s.write_url;
    // No key, a wrong key, a malformed header: 401 with a challenge.
    let (code, text) = curl(url, LINE, &[]);
    assert_eq!(code, 401, "{text}");
    assert!(text.to_ascii_lowercase().contains("www-authenticate: bearer"), "{text}");
    let (code, _) = curl(url, LINE, &["-H", "Authorization: Bearer tsr_wrong"]);
    assert_eq!(code, 401);
    let (code, _) = curl(url, LINE, &["-H", "Authorization: Digest x"]);
    assert_eq!(code, 401);
    // A key without the write scope: 403.
    let (code, text) = curl(url, LINE, &["-H", &format!("Authorization: Bearer {}", s.reader)]);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("lacks the write scope"), "{text}");
    // Every way a client sends the right key.
    let w = &s.writer;
    for args in [
        vec!["-H".to_string(), format!("Authorization: Bearer {w}")],
        vec!["-H".to_string(), format!("Authorization: Token {w}")],
        vec!["-u".to_string(), format!("influx:{w}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = curl(url, LINE, &args);
        assert_eq!(code, 204, "{args:?}: {text}");
    }
    let (code, text) = curl(&format!("{url}?db=x&u=influx&p={w}"), LINE, &[]);
    assert_eq!(code, 204, "{text}");
    // /ping needs no key (InfluxDB clients ping first).
    let (code, _) = curl(&url.replace("/write", "/ping"), "", &["-X", "GET"]);
    assert_eq!(code, 204);

    let m = s.t.metrics();
    let failures = |reason: &str| {
        sum_metric(&m, "tsrelay_auth_failures_total", &["listener=\"http\"", &format!("reason=\"{reason}\"")])
    };
    assert_eq!(failures("missing"), 1.0, "{m:?}");
    assert_eq!(failures("invalid"), 1.0);
    assert_eq!(failures("malformed"), 1.0);
    assert_eq!(failures("scope"), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"writer\""]), 4.0);
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]), 4.0);
    // The raw key never reaches /metrics or the log.
    let (_, text) = http_get(s.t.admin, "/metrics").unwrap_or_default();
    assert!(!text.contains(w.as_str()));
    let log = std::fs::read_to_string(&s.t.process.log).unwrap();
    assert!(!log.contains(w.as_str()) && !log.contains(s.reader.as_str()));
}

#[test]
fn pipelines_and_rate_limits_per_key() {
    let s = start_with(
        false,
        &[
            ("other-pipeline", &["--pipelines", "elsewhere"]),
            ("slow", &["--requests-per-second", "1"]),
            ("few", &["--samples-per-second", "1", "--samples-burst", "3"]),
        ],
    );
    let (other, slow, few) = (&s.extra[0], &s.extra[1], &s.extra[2]);
    let (code, text) = curl(&s.write_url, LINE, &["-H", &format!("Authorization: Bearer {other}")]);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("may not feed pipeline main"), "{text}");
    // One request a second: of two at once (one curl, one connection) the second gets 429.
    let bearer = format!("Authorization: Bearer {slow}");
    let url = s.write_url.as_str();
    let (_, text) = curl(url, LINE, &["-H", &bearer, "-o", "/dev/null", url]);
    assert!(text.trim_start().starts_with("204"), "{text}");
    assert!(text.contains("HTTP/1.1 429") && text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
    // Three samples at once, then three more: the bucket (burst 3, refilled
    // one a second) takes the first three, the next three must wait...
    let bearer = format!("Authorization: Bearer {few}");
    let three = "auth_test,host=a value=1\nauth_test,host=b value=2\nauth_test,host=c value=3\n";
    let (_, text) = curl(url, three, &["-H", &bearer, "-o", "/dev/null", url]);
    assert!(text.trim_start().starts_with("204"), "{text}");
    assert!(text.contains("HTTP/1.1 429") && text.to_ascii_lowercase().contains("retry-after: "), "{text}");
    // ...and more than the bucket holds can never pass: 413.
    let four = format!("{three}auth_test,host=d value=4\n");
    let (code, text) = curl(url, &four, &["-H", &bearer]);
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("samples_burst"), "{text}");
    let m = s.t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_rate_limited_requests_total", &["key=\"slow\""]), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_rate_limited_requests_total", &["key=\"few\""]), 2.0);
    // Nothing of a refused request entered the pipeline.
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]), 4.0);
}

#[test]
fn grpc_keys_in_metadata_and_status_codes() {
    let s = start();
    let stubs = grpcio::stubs(s.dir.path());
    let none = grpcio::run(&stubs, &s.grpc, "write", &[]);
    assert_eq!(none["code"], "UNAUTHENTICATED", "{none}");
    let wrong = grpcio::run(&stubs, &s.grpc, "write", &["--key", "tsr_wrong"]);
    assert_eq!(wrong["code"], "UNAUTHENTICATED", "{wrong}");
    let read_only = grpcio::run(&stubs, &s.grpc, "write", &["--key", &s.reader]);
    assert_eq!(read_only["code"], "PERMISSION_DENIED", "{read_only}");
    let failures = s.t.metric_sum("tsrelay_auth_failures_total", &["listener=\"grpc\""]);
    assert_eq!(failures, 3.0);
    let ok = grpcio::run(&stubs, &s.grpc, "write", &["--key", &s.writer, "--samples", "3"]);
    assert_eq!((ok["code"].as_str(), ok["accepted"].as_u64()), (Some("OK"), Some(3)), "{ok}");
    let few = new_key(&s.t.config_path, "few", &["--samples-per-second", "1", "--samples-burst", "2"]);
    wait_for(Duration::from_secs(5), "key loaded", || {
        let r = grpcio::run(&stubs, &s.grpc, "write", &["--key", &few, "--samples", "1"]);
        (r["code"] == "OK").then_some(())
    });
    // Two calls of two samples at once: the bucket holds at most two.
    let over = grpcio::run(&stubs, &s.grpc, "write", &["--key", &few, "--samples", "2", "--repeat", "2"]);
    assert_eq!(over["codes"][1], "RESOURCE_EXHAUSTED", "{over}");
    assert!(over["metadata"]["retry-after-ms"].as_str().is_some_and(|v| v.parse::<u64>().unwrap() > 0), "{over}");
}

#[test]
fn admin_needs_read_but_probes_stay_open() {
    let s = start_with(true, &[]);
    let admin = s.t.admin;
    assert_eq!(http_get(admin, "/healthz").map(|r| r.0), Some(200));
    assert!(matches!(http_get(admin, "/readyz").map(|r| r.0), Some(200 | 503)));
    let url = format!("http://{admin}");
    let get = |path: &str, args: &[&str]| {
        let curl = require_binary("curl", "apt-get install curl");
        let out = Command::new(curl)
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
            .args(args)
            .arg(format!("{url}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse::<u16>().unwrap_or(0)
    };
    assert_eq!(get("/metrics", &[]), 401);
    assert_eq!(get("/api/v1/labels", &[]), 401);
    assert_eq!(get("/metrics", &["-H", &format!("Authorization: Bearer {}", s.writer)]), 403);
    assert_eq!(get("/metrics", &["-H", &format!("Authorization: Bearer {}", s.reader)]), 200);
    assert_eq!(get("/api/v1/labels", &["-H", &format!("Authorization: Bearer {}", s.reader)]), 200);
}

#[test]
fn revoked_and_rotated_keys_while_a_sender_keeps_sending() {
    let s = start();
    let cfg = s.t.config_path.clone();
    let keys_file = s.dir.path().join("keys.yaml");
    let current = std::sync::Arc::new(std::sync::Mutex::new(s.writer.clone()));
    let sender = {
        let current = current.clone();
        let url = s.write_url.clone();
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            for i in 0..40 {
                let key = current.lock().unwrap().clone();
                let line = format!("rotation,seq={i} value={i}");
                let (code, _) = curl(&url, &line, &["-H", &format!("Authorization: Bearer {key}")]);
                codes.push(code);
                std::thread::sleep(Duration::from_millis(100));
            }
            codes
        })
    };
    std::thread::sleep(Duration::from_millis(1000));
    // Rotation: a new key, the sender switches, then the old one is revoked.
    let next = new_key(&cfg, "writer-2", &[]);
    wait_for(Duration::from_secs(5), "the new key works", || {
        (curl(&s.write_url, LINE, &["-H", &format!("Authorization: Bearer {next}")]).0 == 204).then_some(())
    });
    *current.lock().unwrap() = next.clone();
    let text = std::fs::read_to_string(&keys_file).unwrap();
    let kept: String = {
        // Drop the entry named "writer" (the YAML list item and its fields).
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.starts_with("- ") {
                skipping = line.contains("name: writer") && !line.contains("writer-2");
            }
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    };
    assert!(!kept.contains("name: writer\n"), "{kept}");
    std::fs::write(&keys_file, kept).unwrap();
    wait_for(Duration::from_secs(5), "the old key revoked", || {
        (curl(&s.write_url, LINE, &["-H", &format!("Authorization: Bearer {}", s.writer)]).0 == 401).then_some(())
    });
    let codes = sender.join().unwrap();
    assert!(codes.iter().all(|&c| c == 204), "every request of the rotating sender accepted: {codes:?}");
    let out = s.dir.path().join("out.lp");
    wait_for(Duration::from_secs(10), "all 40 rotation samples delivered", || {
        let n = read_lp_file(&out).iter().filter(|(series, _, _)| series.starts_with("rotation,")).count();
        (n == 40).then_some(())
    });
    assert!(s.t.metric_sum("tsrelay_auth_reloads_total", &["result=\"ok\""]) >= 2.0);
}

#[test]
fn sighup_reloads_a_change_the_file_watch_cannot_see() {
    let s = start();
    let keys_file = s.dir.path().join("keys.yaml");
    let before = std::fs::metadata(&keys_file).unwrap().modified().unwrap();
    // Swap the writer's hash for another key's, same length, same mtime: the
    // file watch (mtime and size) sees nothing; SIGHUP re-reads anyway.
    let fresh = "tsr_sighup_0000000000000000000000000000000000000000000000000000000000";
    let old_hash = tsrelay::auth::keys::to_hex(&tsrelay::auth::keys::hash_key(s.writer.as_bytes()));
    let new_hash = tsrelay::auth::keys::to_hex(&tsrelay::auth::keys::hash_key(fresh.as_bytes()));
    let text = std::fs::read_to_string(&keys_file).unwrap().replace(&old_hash, &new_hash);
    std::fs::write(&keys_file, text).unwrap();
    std::fs::File::options().write(true).open(&keys_file).unwrap().set_modified(before).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _) = curl(&s.write_url, LINE, &["-H", &format!("Authorization: Bearer {fresh}")]);
    assert_eq!(code, 401, "not reloaded before SIGHUP");
    let pid = s.t.process.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(Duration::from_secs(5), "the key reloaded on SIGHUP", || {
        (curl(&s.write_url, LINE, &["-H", &format!("Authorization: Bearer {fresh}")]).0 == 204).then_some(())
    });
    assert_eq!(curl(&s.write_url, LINE, &["-H", &format!("Authorization: Bearer {}", s.writer)]).0, 401);
}

/// A spec-built remote-write 1.0 request of `n` samples of `name`, snappy-compressed.
fn remote_write_body(name: &str, n: usize) -> Vec<u8> {
    use prost::Message;
    use tsrelay::proto::prometheus as rw1;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let label = |n: &str, v: &str| rw1::Label { name: n.into(), value: v.into() };
    let req = rw1::WriteRequest {
        timeseries: (0..n)
            .map(|i| rw1::TimeSeries {
                labels: vec![label("__name__", name), label("i", &i.to_string())],
                samples: vec![rw1::Sample { value: i as f64, timestamp: now }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

/// POST to `url` with an optional Bearer key: (status, Retry-After, WWW-Authenticate, body).
fn post_keyed(url: &str, content_type: &str, key: Option<&str>, body: Vec<u8>) -> (u16, String, String, String) {
    let mut req = http().post(url).header("Content-Type", content_type).body(body);
    if url.ends_with("/api/v1/write") {
        req = req.header("Content-Encoding", "snappy");
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().expect("POST");
    let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (retry, challenge) = (h("retry-after"), h("www-authenticate"));
    (resp.status().as_u16(), retry, challenge, resp.text().unwrap_or_default())
}

/// The key checks of the line-protocol routes hold on `POST /api/v1/write`:
/// vmagent with `-remoteWrite.bearerToken` delivers; no key, a wrong one, a
/// read-only key, a key for another pipeline and a key over its sample rate
/// are refused (401/403/429 with Retry-After, 413 above its burst) and
/// nothing of a refused request enters the pipeline.
#[test]
fn remote_write_checks_keys_scopes_pipelines_and_rates() {
    let s = start_with(
        false,
        &[
            ("other-pipeline", &["--pipelines", "elsewhere"]),
            ("few", &["--samples-per-second", "1", "--samples-burst", "5"]),
        ],
    );
    let (other, few) = (&s.extra[0], &s.extra[1]);
    let url = s.write_url.replace("/write", "/api/v1/write");
    const V1: &str = "application/x-protobuf";
    let (code, _, challenge, text) = post_keyed(&url, V1, None, remote_write_body("rw_auth", 1));
    assert_eq!(code, 401, "{text}");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(post_keyed(&url, V1, Some("tsr_wrong"), remote_write_body("rw_auth", 1)).0, 401);
    let (code, _, _, text) = post_keyed(&url, V1, Some(&s.reader), remote_write_body("rw_auth", 1));
    assert_eq!(code, 403, "{text}");
    let (code, _, _, text) = post_keyed(&url, V1, Some(other), remote_write_body("rw_auth", 1));
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("may not feed pipeline main"), "{text}");
    // The sample bucket (burst 5, one a second): 4 pass, 4 more must wait, 6 never fit.
    assert_eq!(post_keyed(&url, V1, Some(few), remote_write_body("rw_few", 4)).0, 204);
    let (code, retry, _, text) = post_keyed(&url, V1, Some(few), remote_write_body("rw_few", 4));
    assert_eq!(code, 429, "{text}");
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After {retry:?}");
    let (code, _, _, text) = post_keyed(&url, V1, Some(few), remote_write_body("rw_few", 6));
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("samples_burst"), "{text}");
    let m = s.t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_rate_limited_requests_total", &["key=\"few\""]), 2.0);
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"few\""]), 4.0);
    assert_eq!(
        sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]),
        4.0,
        "refused requests entered"
    );
    let failures =
        |r: &str| sum_metric(&m, "tsrelay_auth_failures_total", &["listener=\"http\"", &format!("reason=\"{r}\"")]);
    assert_eq!(
        (failures("missing"), failures("invalid"), failures("scope"), failures("pipeline")),
        (1.0, 1.0, 1.0, 1.0)
    );

    // A real sender: vmagent scraping tsrelay's /metrics with -remoteWrite.bearerToken.
    let vm_dir = s.dir.path().join("vmagent");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let scrape = vm_dir.join("scrape.yml");
    let target = s.t.admin;
    std::fs::write(
        &scrape,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: vm\n    static_configs: [{{targets: [\"{target}\"]}}]\n"),
    )
    .unwrap();
    let bin = require_binary("vmagent", "apt-get install -y victoria-metrics");
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-remoteWrite.url={url}"))
        .arg(format!("-remoteWrite.bearerToken={}", s.writer))
        .arg(format!("-promscrape.config={}", scrape.display()))
        .arg(format!("-remoteWrite.tmpDataPath={}", vm_dir.join("tmp").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
        .arg("-remoteWrite.flushInterval=200ms");
    let _vmagent = ChildGuard::spawn("vmagent", &mut cmd, &vm_dir);
    let out = s.dir.path().join("out.lp");
    wait_for(Duration::from_secs(60), "vmagent's scrape of tsrelay delivered through the key", || {
        let up = read_lp_file(&out)
            .iter()
            .any(|(series, v, _)| series.starts_with("up,") && series.contains("job=vm") && *v == 1.0);
        (up && s.t.metric_sum("tsrelay_key_received_samples_total", &["key=\"writer\""]) > 0.0).then_some(())
    });
    assert!(!std::fs::read_to_string(&s.t.process.log).unwrap().contains(s.writer.as_str()), "raw key in the log");
}

fn otel_sdk(protocol: &str, endpoint: &str, key: Option<&str>) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/otel_send.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args([protocol, endpoint, "auth-test"]);
    // The SDK's exporters read their headers from the environment (URL-encoded values).
    match key {
        Some(k) => cmd.env("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{k}")),
        None => cmd.env_remove("OTEL_EXPORTER_OTLP_HEADERS"),
    };
    let out = cmd.output().expect("run python3 (pip install opentelemetry-sdk opentelemetry-exporter-otlp)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The HTTP exporter's flush reports success even when the export failed: read its log too.
    (out.status.success() && text.contains("sent") && !text.contains("Failed to export"), text)
}

/// OTLP over gRPC (`MetricsService/Export`) and HTTP (`POST /v1/metrics`)
/// checks keys as the other routes: the OpenTelemetry SDK's exporters with
/// the key in their headers deliver, without it fail; grpcio gets
/// UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED (with
/// retry-after-ms); HTTP gets 401/403/429; refused requests enter nothing.
#[test]
fn otlp_checks_keys_scopes_and_rates_over_grpc_and_http() {
    let s = start_with(
        false,
        &[
            ("few-grpc", &["--samples-per-second", "1", "--samples-burst", "5"]),
            ("few-http", &["--samples-per-second", "1", "--samples-burst", "5"]),
        ],
    );
    let (few_grpc, few_http) = (&s.extra[0], &s.extra[1]);
    let g = &s.grpc;
    let none = grpcio::otlp_export(g, &[]);
    assert_eq!(none["codes"][0], "UNAUTHENTICATED", "{none}");
    let wrong = grpcio::otlp_export(g, &["--key", "tsr_wrong"]);
    assert_eq!(wrong["codes"][0], "UNAUTHENTICATED", "{wrong}");
    let read_only = grpcio::otlp_export(g, &["--key", &s.reader]);
    assert_eq!(read_only["codes"][0], "PERMISSION_DENIED", "{read_only}");
    // Three points a call (plus target_info, if any): the first fits the burst of 5, the second not.
    let over = grpcio::otlp_export(g, &["--key", few_grpc, "--points", "3", "--repeat", "2"]);
    assert_eq!(over["codes"], serde_json::json!(["OK", "RESOURCE_EXHAUSTED"]), "{over}");
    assert!(over["metadata"]["retry-after-ms"].as_str().is_some_and(|v| v.parse::<u64>().unwrap() > 0), "{over}");
    let too_big = grpcio::otlp_export(g, &["--key", few_grpc, "--points", "10"]);
    assert_eq!(too_big["codes"][0], "RESOURCE_EXHAUSTED", "{too_big}");
    assert!(too_big["details"][0].as_str().unwrap_or("").contains("samples_burst"), "{too_big}");
    let m = s.t.metrics();
    let key_grpc = sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"few-grpc\""]);
    assert!(key_grpc >= 3.0, "{key_grpc}");
    assert_eq!(
        sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"grpc\""]),
        key_grpc,
        "refused calls entered"
    );
    assert_eq!(sum_metric(&m, "tsrelay_rate_limited_requests_total", &["key=\"few-grpc\""]), 2.0);
    assert_eq!(sum_metric(&m, "tsrelay_auth_failures_total", &["listener=\"grpc\""]), 3.0);

    // OTLP/HTTP (JSON) with the same checks.
    let url = s.write_url.replace("/write", "/v1/metrics");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let json = |n: usize| {
        let points: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({"asDouble": i as f64, "timeUnixNano": now.to_string(),
                "attributes": [{"key": "i", "value": {"stringValue": i.to_string()}}]})
            })
            .collect();
        serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "otlp_http_auth", "gauge": {"dataPoints": points}}]}]}]})
        .to_string()
        .into_bytes()
    };
    const JSON: &str = "application/json";
    let (code, _, challenge, text) = post_keyed(&url, JSON, None, json(1));
    assert_eq!(code, 401, "{text}");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(post_keyed(&url, JSON, Some(&s.reader), json(1)).0, 403);
    assert_eq!(post_keyed(&url, JSON, Some(few_http), json(4)).0, 200);
    let (code, retry, _, text) = post_keyed(&url, JSON, Some(few_http), json(4));
    assert_eq!(code, 429, "{text}");
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After {retry:?}");
    assert_eq!(post_keyed(&url, JSON, Some(few_http), json(6)).0, 413);
    let m = s.t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_key_received_samples_total", &["key=\"few-http\""]), 4.0);
    assert_eq!(
        sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]),
        4.0,
        "refused requests entered"
    );

    // The OpenTelemetry SDK's exporters: with the key in their headers they deliver, without it they fail.
    let grpc_endpoint = format!("http://{}", s.grpc);
    let (ok, text) = otel_sdk("grpc", &grpc_endpoint, Some(&s.writer));
    assert!(ok, "{text}");
    let (ok, text) = otel_sdk("http", &url, Some(&s.writer));
    assert!(ok, "{text}");
    let delivered = s.t.metric_sum("tsrelay_key_received_samples_total", &["key=\"writer\""]);
    assert!(delivered > 0.0, "{delivered}");
    let (ok, text) = otel_sdk("http", &url, None);
    assert!(!ok && text.contains("401"), "the SDK without a key got through: {text}");
    let (ok, text) = otel_sdk("grpc", &grpc_endpoint, Some("tsr_wrong"));
    assert!(!ok && text.contains("UNAUTHENTICATED"), "the SDK with a wrong key got through: {text}");
    assert_eq!(s.t.metric_sum("tsrelay_key_received_samples_total", &["key=\"writer\""]), delivered);
    let out = s.dir.path().join("out.lp");
    wait_for(Duration::from_secs(20), "the SDK's counters in the file", || {
        read_lp_file(&out).iter().any(|(series, _, _)| series.starts_with("app_requests_total,")).then_some(())
    });
}
