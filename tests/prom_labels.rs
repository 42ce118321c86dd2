//! Label discovery through `/prom/<backend>/api/v1/{series,labels,label/<n>/values}`
//! and `GET /api/v1/catalog` (issue 15, DESIGN §7.2): the golden data set written
//! THROUGH tsrelay into a real Prometheus, InfluxDB 1.6 and rrdcached, then read
//! back with Debian's `promtool` from each backend through tsrelay — the same
//! series, label names and values as the real Prometheus gives. (What a backend
//! cannot store would differ — rrdcached keeps path-sanitized values, InfluxDB no
//! empty tag values — none of which the golden data has.) Error cases with curl.

mod common;
#[allow(dead_code)]
#[path = "golden/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;

use common::influxdb::Influxd;
use common::prometheus::Prometheus;
use common::rrdcached::Rrdcached;
use common::{free_port, loopback, require_binary};
use harness::{Dataset, start_relay, write_through};
use tsrelay::query::service::now_ms;

const BACKENDS: [&str; 3] = ["prom", "influx", "rrd"];

/// `promtool query <args> -o json`, parsed.
fn promtool(args: &[&str]) -> serde_json::Value {
    let bin = require_binary("promtool", "apt-get install -y prometheus");
    let out = Command::new(bin).arg("query").args(args).args(["-o", "json"]).output().expect("run promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "promtool query {args:?}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("promtool query {args:?}: not JSON ({e}): {stdout}"))
}

type SeriesSet = BTreeSet<BTreeMap<String, String>>;

fn series(server: &str, matches: &[&str]) -> SeriesSet {
    let mut args = vec!["series".to_string()];
    args.extend(matches.iter().map(|m| format!("--match={m}")));
    args.push(server.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_value(promtool(&args)).expect("series are label sets")
}

fn label_values(server: &str, name: &str, matches: &[&str]) -> Vec<String> {
    let mut args = vec!["labels".to_string()];
    args.extend(matches.iter().map(|m| format!("--match={m}")));
    args.push(server.to_string());
    args.push(name.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = promtool(&args);
    if v.is_null() { Vec::new() } else { serde_json::from_value(v).expect("label values are strings") }
}

/// `curl -s` with extra arguments: (HTTP status, JSON body).
fn curl(url: &str, extra: &[&str]) -> (u16, serde_json::Value) {
    let bin = require_binary("curl", "apt-get install -y curl");
    let out =
        Command::new(bin).args(["-s", "-g", "-w", "\n%{http_code}"]).args(extra).arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let status = code.trim().parse().unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string())))
}

fn list(v: &serde_json::Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn prom_api(query: SocketAddr, backend: &str) -> String {
    format!("http://{query}/prom/{backend}")
}

#[test]
fn promtool_discovers_the_same_labels_from_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prometheus"));
    let influxd = Influxd::start(dir.path(), 0);
    influxd.create_database("golden");
    let rrd = Rrdcached::start(dir.path());
    let batch = "batch = { max_samples = 10000, max_age_ms = 50 }";
    let sinks = format!(
        "[sinks.prom]\ntype = \"prometheus_remote_write\"\nurl = \"{}\"\n{batch}\n\n\
         [sinks.influx]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"golden\"\n{batch}\n\n\
         [sinks.rrd]\ntype = \"rrdcached\"\naddress = \"{}\"\nstep = \"60s\"\n{batch}\n",
        prom.write_url(),
        influxd.url(),
        rrd.unix_address()
    );
    let relay = start_relay(dir.path(), &BACKENDS, &sinks);
    let data = Dataset::generate(now_ms());
    write_through(&relay, &data, &BACKENDS);
    let direct = format!("http://127.0.0.1:{}", prom.port);

    // Series: the real Prometheus' answer, through tsrelay from each backend.
    let selectors: [&[&str]; 5] = [
        &["golden_octets_total"],
        &[r#"{__name__=~"golden_.*",device!="sw3"}"#],
        &[r#"golden_octets_total{port=~"ge-.*",device!~"sw1"}"#],
        &[r#"{host="h2"}"#, r#"golden_octets_total{port="xe-0"}"#],
        &[r#"golden_load{host="nope"}"#],
    ];
    for matches in selectors {
        let want = series(&direct, matches);
        assert_eq!(want.is_empty(), matches[0].contains("nope"), "{matches:?}: {want:?}");
        for b in BACKENDS {
            assert_eq!(series(&prom_api(relay.query, b), matches), want, "{b}: series {matches:?}");
        }
    }
    assert_eq!(series(&direct, &["golden_octets_total"]).len(), 9);

    // Label values (`promtool query labels`), with and without match[].
    let cases: [(&str, &[&str]); 6] = [
        ("device", &[]),
        ("host", &[]),
        ("__name__", &[]),
        ("port", &[r#"golden_octets_total{device="sw2"}"#]),
        ("__name__", &[r#"{host=~"h[12]"}"#]),
        ("device", &["golden_load"]),
    ];
    for (name, matches) in cases {
        let want = label_values(&direct, name, matches);
        for b in BACKENDS {
            assert_eq!(
                label_values(&prom_api(relay.query, b), name, matches),
                want,
                "{b}: values of {name} {matches:?}"
            );
        }
    }
    assert_eq!(label_values(&direct, "__name__", &[]), ["golden_load", "golden_octets_total"]);

    // Label names (`/api/v1/labels`; promtool has no command for it): GET and form POST.
    for matches in [vec![], vec!["golden_load"], vec![r#"{device="sw1"}"#, "golden_load"]] {
        let query: String = matches.iter().map(|m| format!("match[]={}&", urlencode(m))).collect();
        let (status, want) = curl(&format!("{direct}/api/v1/labels?{query}"), &[]);
        assert_eq!(status, 200, "{want}");
        assert!(!list(&want["data"]).is_empty());
        for b in BACKENDS {
            let (status, got) = curl(&format!("{}/api/v1/labels?{query}", prom_api(relay.query, b)), &[]);
            assert_eq!((status, list(&got["data"])), (200, list(&want["data"])), "{b}: labels {matches:?}: {got}");
            let mut form: Vec<String> = Vec::new();
            for m in &matches {
                form.push("--data-urlencode".into());
                form.push(format!("match[]={m}"));
            }
            if form.is_empty() {
                form.extend(["-X".to_string(), "POST".to_string()]);
            }
            let form: Vec<&str> = form.iter().map(String::as_str).collect();
            let (status, got) = curl(&format!("{}/api/v1/labels", prom_api(relay.query, b)), &form);
            assert_eq!((status, list(&got["data"])), (200, list(&want["data"])), "{b}: POST labels {matches:?}: {got}");
        }
    }

    // A client's `limit` cuts the list with a warning (Prometheus ≥ 2.49's rule).
    for b in ["influx", "rrd"] {
        let (status, got) =
            curl(&format!("{}/api/v1/series?match[]=golden_octets_total&limit=4", prom_api(relay.query, b)), &[]);
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["data"].as_array().map(Vec::len), Some(4), "{got}");
        assert!(got["warnings"][0].as_str().unwrap_or("").contains("truncated"), "{got}");
    }

    // The catalog: each metric, which backends hold it, with the labels each has.
    let (status, catalog) = curl(&format!("http://{}/api/v1/catalog", relay.query), &[]);
    assert_eq!(status, 200, "{catalog}");
    let metrics = catalog["data"]["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 2, "{catalog}");
    for (m, labels) in metrics.iter().zip([["__name__", "device", "port"].as_slice(), &["__name__", "host"]]) {
        let name = m["name"].as_str().unwrap();
        let held: Vec<(String, Vec<String>)> = m["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["backend"].as_str().unwrap().to_string(), list(&h["label_names"])))
            .collect();
        let want: Vec<(String, Vec<String>)> = ["influx", "prom", "rrd"]
            .iter()
            .map(|b| (b.to_string(), labels.iter().map(|l| l.to_string()).collect()))
            .collect();
        assert_eq!(held, want, "{name}: {m}");
        assert!(!m["graphs"].as_array().unwrap().is_empty(), "{name}: no graphs: {m}");
        assert!(m["type"].is_string() && m.get("help").is_some(), "{m}");
    }
    assert_eq!(metrics[1]["unit"], serde_json::Value::Null);
    assert_eq!(metrics[0]["unit"], "bytes");
    assert!(list(&metrics[1]["graphs"]).contains(&"golden.load.avg".to_string()), "{catalog}");
    for b in catalog["data"]["backends"].as_array().unwrap() {
        assert!(b.get("error").is_none() && b["readable"] == true, "{b}");
    }
    let log = std::fs::read_to_string(&relay.tsrelay.process.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// Percent-encodes a query-string value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn errors_are_documented_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let closed = loopback(free_port());
    let sinks = format!(
        "[sinks.prom]\ntype = \"prometheus_remote_write\"\nurl = \"http://{closed}/api/v1/write\"\n\
         queue = {{ type = \"memory\", max_samples = 1000 }}\n\n\
         [sinks.influx]\ntype = \"influxdb\"\nurl = \"http://{closed}\"\ndatabase = \"d\"\n\
         queue = {{ type = \"memory\", max_samples = 1000 }}\n\n\
         [sinks.rrd]\ntype = \"rrdcached\"\naddress = \"tcp:{closed}\"\nstep = \"60s\"\ntimeout = \"2s\"\n\
         queue = {{ type = \"memory\", max_samples = 1000 }}\n\n\
         [sinks.out]\ntype = \"file\"\npath = \"{}/out.lp\"\n",
        dir.path().display()
    );
    let relay = start_relay(dir.path(), &["prom", "influx", "rrd", "out"], &sinks);
    let q = relay.query;
    let calls = || relay.tsrelay.metric_sum("tsrelay_query_backend_requests_total", &[]);
    let before = calls();

    // Refused before any backend I/O: 400 naming the parameter, 404, 422.
    let sel = |s: &str| format!("match[]={}", urlencode(s));
    let refused = [
        (format!("/prom/influx/api/v1/series?{}", sel("up[5m]")), 400, "bad_data", "match[]"),
        (format!("/prom/rrd/api/v1/series?{}", sel("rate(up[5m])")), 400, "bad_data", "match[]"),
        (format!("/prom/influx/api/v1/labels?{}", sel(r#"{job=~".*"}"#)), 400, "bad_data", "match[]"),
        // A regex over the compile bound (src/model/regex.rs) costs a 400, not seconds of CPU.
        (format!("/prom/influx/api/v1/series?{}", sel(r#"up{job=~"(\\w{100}){100}"}"#)), 400, "bad_data", "match[]"),
        ("/prom/rrd/api/v1/series".to_string(), 400, "bad_data", "match[]"),
        ("/prom/influx/api/v1/labels?start=yesterday".to_string(), 400, "bad_data", "start"),
        ("/prom/influx/api/v1/series?match[]=up&limit=x".to_string(), 400, "bad_data", "limit"),
        ("/prom/rrd/api/v1/label/1bad/values".to_string(), 400, "bad_data", "name"),
        ("/prom/nope/api/v1/series?match[]=up".to_string(), 404, "not_found", ""),
        ("/prom/out/api/v1/labels".to_string(), 422, "unsupported", "read"),
    ];
    for (path, status, error_type, detail) in refused {
        let (got, body) = curl(&format!("http://{q}{path}"), &[]);
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!((body["status"].as_str(), body["errorType"].as_str()), (Some("error"), Some(error_type)), "{path}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {body}");
        match status {
            400 => assert_eq!(body["field"], detail, "{path}: {body}"),
            422 => assert_eq!(body["feature"], detail, "{path}: {body}"),
            _ => {}
        }
    }
    let (_, body) =
        curl(&format!("http://{q}/prom/influx/api/v1/series?{}", sel(r#"up{job=~"(\\w{100}){100}"}"#)), &[]);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("regex")), "{body}");
    let (got, body) = curl(&format!("http://{q}/prom/influx/api/v1/series"), &["--data-urlencode", "match[]=up{"]);
    assert_eq!((got, body["field"].as_str()), (400, Some("match[]")), "{body}");
    assert_eq!(calls(), before, "a refused request reached a backend");

    // Backends down: 502 naming the backend and what was tried.
    for (b, path) in [
        ("prom", "/api/v1/series?match[]=up"),
        ("prom", "/api/v1/label/job/values"),
        ("influx", "/api/v1/series?match[]=up"),
        ("influx", "/api/v1/labels"),
        ("rrd", "/api/v1/label/host/values"),
    ] {
        let (got, body) = curl(&format!("http://{q}/prom/{b}{path}"), &[]);
        assert_eq!(got, 502, "{b}{path}: {body}");
        assert_eq!((body["errorType"].as_str(), body["backend"].as_str()), (Some("backend"), Some(b)), "{body}");
        assert!(body["error"].as_str().unwrap().contains(&closed.port().to_string()), "{b}{path}: {body}");
    }

    // The catalog still answers: each failing backend reported on its own.
    let (got, catalog) = curl(&format!("http://{q}/api/v1/catalog"), &[]);
    assert_eq!(got, 200, "{catalog}");
    let backends = catalog["data"]["backends"].as_array().unwrap();
    let names: Vec<&str> = backends.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["influx", "out", "prom", "rrd"]);
    for b in backends {
        if b["name"] == "out" {
            assert_eq!((b["readable"].as_bool(), b.get("error")), (Some(false), None), "{b}");
        } else {
            assert_eq!(b["errorType"], "backend", "{b}");
            assert!(b["error"].as_str().unwrap().contains("cannot reach"), "{b}");
        }
    }
    for m in catalog["data"]["metrics"].as_array().unwrap() {
        assert_eq!(m["backends"], serde_json::json!([]), "{m}");
    }
    assert!(relay.tsrelay.metric_sum("tsrelay_query_requests_total", &["endpoint=\"catalog\"", "code=\"200\""]) >= 1.0);
    let log = std::fs::read_to_string(&relay.tsrelay.process.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
