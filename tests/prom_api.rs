//! The Prometheus HTTP API over every backend (issue 15, docs/prometheus-api.md):
//! the golden data set written once through tsrelay into a real Prometheus, a
//! real InfluxDB and a real rrdcached, then read back with `promtool query`
//! through `/prom/<backend>`: the Prometheus backend passes through unchanged,
//! InfluxDB and rrdcached answer the mapped PromQL subset with what the real
//! Prometheus answers for the same data. Error cases with curl.

mod common;
#[allow(dead_code)] // the golden harness serves several test files
#[path = "golden/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use common::influxdb::Influxd;
use common::prometheus::Prometheus;
use common::rrdcached::Rrdcached;
use common::{free_port, require_binary};
use harness::{Dataset, HOUR, MIN, TOLERANCE, start_relay, write_through};
use tsrelay::query::service::now_ms;

/// An error case: backend, form, status, `errorType`, a part of `error`.
type ErrorCase = (&'static str, Vec<(&'static str, String)>, u16, &'static str, &'static str);

/// One answer series: labels → `(t_ms, value)`.
type Series = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn promtool(args: &[&str]) -> (bool, String, String) {
    let bin = require_binary("promtool", common::prometheus::INSTALL_HINT);
    let out = Command::new(bin).args(args).output().expect("run promtool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn server(query: SocketAddr, backend: &str) -> String {
    format!("http://{query}/prom/{backend}")
}

fn secs(ms: i64) -> String {
    (ms / 1000).to_string()
}

/// `promtool query range -o json`, parsed.
fn promtool_range(query: SocketAddr, backend: &str, expr: &str, start: i64, end: i64, step: &str) -> Series {
    let url = server(query, backend);
    let (start, end) = (secs(start), secs(end));
    let args = ["query", "range", "-o", "json", "--start", &start, "--end", &end, "--step", step, &url, expr];
    let (ok, out, err) = promtool(&args);
    assert!(ok, "promtool {args:?} failed: {err}{out}");
    parse_series(&serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}")), "values")
}

fn parse_series(result: &serde_json::Value, key: &str) -> Series {
    let mut out = Series::new();
    for s in result.as_array().unwrap_or_else(|| panic!("not a result list: {result}")) {
        let labels = s["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()));
        let points = match key {
            "values" => s["values"].as_array().unwrap().clone(),
            _ => vec![s["value"].clone()],
        };
        let points = points
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                (t, v)
            })
            .collect();
        out.insert(labels.collect(), points);
    }
    out
}

fn assert_same(what: &str, got: &Series, want: &Series) {
    assert!(!want.is_empty(), "{what}: the reference is empty");
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: series differ");
    for (labels, w) in want {
        let g = &got[labels];
        let gt: Vec<i64> = g.iter().map(|p| p.0).collect();
        let wt: Vec<i64> = w.iter().map(|p| p.0).collect();
        assert_eq!(gt, wt, "{what} {labels:?}: timestamps differ");
        for ((t, a), (_, b)) in g.iter().zip(w) {
            let close = (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0);
            assert!(close, "{what} {labels:?} at {t}: {a} != Prometheus' {b}");
        }
    }
}

/// `curl` a URL (GET, or form POST with `form`): (HTTP status, JSON body).
fn curl(url: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let bin = require_binary("curl", "apt-get install -y curl");
    let mut cmd = Command::new(bin);
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", url]);
    for (k, v) in form {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl {url}: {text}"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn promtool_reads_every_backend_as_prometheus_answers() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prometheus"));
    let influxd = Influxd::start(dir.path(), 0);
    influxd.create_database("golden");
    let rrd = Rrdcached::start(dir.path());
    let data = Dataset::generate(now_ms());
    let closed = free_port();
    let sinks = format!(
        r#"
[sinks.prom]
type = "prometheus_remote_write"
url = "{prom}"
batch = {{ max_samples = 10000, max_age_ms = 50 }}
[sinks.influx]
type = "influxdb"
url = "{influx}"
database = "golden"
batch = {{ max_samples = 10000, max_age_ms = 50 }}
[sinks.rrd]
type = "rrdcached"
address = "{rrd}"
step = "60s"
batch = {{ max_samples = 10000, max_age_ms = 50 }}
# not in the pipeline: read-only backends that are down
[sinks.influx_down]
type = "influxdb"
url = "http://127.0.0.1:{closed}"
database = "golden"
[sinks.prom_down]
type = "prometheus_remote_write"
url = "http://127.0.0.1:{closed}/api/v1/write"
"#,
        prom = prom.write_url(),
        influx = influxd.url(),
        rrd = rrd.unix_address(),
    );
    let relay = start_relay(dir.path(), &["prom", "influx", "rrd"], &sinks);
    write_through(&relay, &data, &["prom", "influx", "rrd"]);
    let q = relay.query;

    // Passthrough: the Prometheus backend's answer is Prometheus' own, byte for byte.
    let params = format!(
        "query=sum%20by%20(device)%20(rate(golden_octets_total%5B5m%5D))&start={}&end={}&step=300",
        secs(data.t0),
        secs(data.t_end)
    );
    let direct = common::http()
        .get(format!("http://127.0.0.1:{}/api/v1/query_range?{params}", prom.port))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let through = common::http().get(format!("http://{q}/prom/prom/api/v1/query_range?{params}")).send().unwrap();
    assert_eq!(through.status().as_u16(), 200);
    assert_eq!(through.bytes().unwrap(), direct, "passthrough changed the answer");

    // The same PromQL through every backend equals the real Prometheus' answer.
    // Window: after the hole, before the counter reset (rrdcached declares
    // quirks at both, see tests/golden.rs); InfluxDB also over the whole range.
    let (from, to) = (data.hole + 30 * MIN, data.reset - 7 * MIN);
    let mut compared = 0;
    for (step, step_ms) in [("1m", MIN), ("5m", 5 * MIN)] {
        for expr in [
            format!("rate(golden_octets_total[{step}])"),
            format!("sum by (device) (rate(golden_octets_total[{step}])) * 8"),
            format!(r#"increase(golden_octets_total{{device="sw1", port=~"ge-.*"}}[{step}])"#),
            format!(r#"avg without (port) (rate(golden_octets_total{{port!="xe-0"}}[{step}])) / 1000"#),
            "golden_load".to_string(),
            r#"max(golden_load{host!~"h3"})"#.to_string(),
            "count(golden_load)".to_string(),
        ] {
            let want = promtool_range(q, "prom", &expr, from, to, step);
            for backend in ["influx", "rrd"] {
                let got = promtool_range(q, backend, &expr, from, to, step);
                assert_same(&format!("{backend} {expr} step {step}"), &got, &want);
                compared += got.values().map(Vec::len).sum::<usize>();
            }
        }
        // InfluxDB over the whole six hours, the hole and the reset included.
        let expr = format!("sum by (device) (rate(golden_octets_total[{step}]))");
        let want = promtool_range(q, "prom", &expr, data.t0 + step_ms, data.t_end, step);
        let got = promtool_range(q, "influx", &expr, data.t0 + step_ms, data.t_end, step);
        assert_same(&format!("influx {expr} over 6h"), &got, &want);
        compared += got.values().map(Vec::len).sum::<usize>();
    }
    eprintln!("{compared} points equal to the real Prometheus' answer");

    // Instant queries: one bucket ending at `time` (aligned down to the range).
    let time = secs(from + HOUR / 2);
    for backend in ["prom", "influx", "rrd"] {
        let url = server(q, backend);
        let (ok, out, err) = promtool(&[
            "query",
            "instant",
            "-o",
            "json",
            "--time",
            &time,
            &url,
            "sum by (device) (rate(golden_octets_total[5m]))",
        ]);
        assert!(ok, "{backend}: {err}");
        let got = parse_series(&serde_json::from_str(&out).unwrap(), "value");
        assert_eq!(got.len(), 3, "{backend}: {out}");
        for (labels, points) in &got {
            let d = ["sw1", "sw2", "sw3"].iter().position(|d| labels["device"] == *d).unwrap();
            let slopes: f64 = data.series[d * 3..d * 3 + 3].iter().map(|s| s.slope.unwrap()).sum();
            assert_eq!(points.len(), 1, "{backend} {labels:?}");
            let (t, v) = points[0];
            assert!(
                t == from + HOUR / 2 && (v - slopes).abs() <= TOLERANCE * slopes,
                "{backend} {labels:?}: {v} at {t}"
            );
        }
        // the default text output too
        let (ok, out, err) = promtool(&["query", "instant", "--time", &time, &url, r#"golden_load{host="h2"}"#]);
        assert!(ok && out.starts_with(r#"golden_load{host="h2"} => "#), "{backend}: {err}{out}");
    }

    // Errors: Prometheus' envelope and status codes; nothing reaches a backend for a 4xx.
    let base = |backend: &str, api: &str| format!("http://{q}/prom/{backend}/api/v1/{api}");
    let range = |query: &str, step: &str| {
        vec![("query", query.to_string()), ("start", secs(from)), ("end", secs(to)), ("step", step.to_string())]
    };
    let calls = || relay.tsrelay.metric_sum("tsrelay_query_backend_requests_total", &[]);
    let before = calls();
    let cases: Vec<ErrorCase> = vec![
        ("influx", range("rate(golden_octets_total[1m]", "60"), 400, "bad_data", "invalid PromQL"),
        ("rrd", range("no_such_function(golden_load)", "60"), 400, "bad_data", "invalid PromQL"),
        (
            "influx",
            range("histogram_quantile(0.9, rate(golden_octets_total[1m]))", "60"),
            400,
            "bad_data",
            "histogram_quantile",
        ),
        ("rrd", range("golden_load offset 5m", "60"), 400, "bad_data", "offset"),
        ("influx", range("rate(golden_octets_total[5m])", "60"), 400, "bad_data", "must equal the step"),
        (
            "influx",
            vec![
                ("query", "golden_load".into()),
                ("start", secs(data.t0 - 24 * HOUR)),
                ("end", secs(data.t_end)),
                ("step", "1".into()),
            ],
            400,
            "bad_data",
            "max_points",
        ),
        ("influx", range("golden_load", "0.5"), 400, "bad_data", "step"),
        ("influx", vec![("query", "golden_load".into())], 400, "bad_data", "start: missing"),
        ("nope", range("golden_load", "60"), 404, "not_found", "unknown backend"),
        ("rrd", range("count_over_time(golden_load[1m])", "60"), 422, "execution", "count"),
    ];
    for (backend, form, status, error_type, detail) in &cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, body) = curl(&base(backend, "query_range"), &form);
        assert_eq!((got, body["status"].as_str()), (*status, Some("error")), "{backend} {form:?}: {body}");
        assert_eq!(body["errorType"], *error_type, "{body}");
        assert!(body["error"].as_str().unwrap().contains(detail), "{backend} {form:?}: {body}");
    }
    assert_eq!(calls(), before, "a refused request reached a backend");
    for backend in ["influx_down", "prom_down"] {
        let (got, body) = curl(&base(backend, "query"), &[("query", "golden_load"), ("time", &time)]);
        assert_eq!((got, body["errorType"].as_str()), (502, Some("unavailable")), "{backend}: {body}");
        assert!(body["error"].as_str().unwrap().contains(backend), "{body}");
    }

    // A number is a scalar; an unknown metric an empty vector with a warning; GET works like POST.
    let (got, body) = curl(&format!("{}?query=1%2B2*3&time={time}", base("rrd", "query")), &[]);
    assert_eq!(
        (got, &body["data"]["resultType"], &body["data"]["result"][1]),
        (200, &"scalar".into(), &"7".into()),
        "{body}"
    );
    let (got, body) = curl(&base("influx", "query"), &[("query", "nope_total"), ("time", &time)]);
    assert_eq!((got, body["data"]["result"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    assert!(body["warnings"][0].as_str().unwrap().contains("nope_total"), "{body}");

    // never a crash
    let log = relay.tsrelay.process.log_tail();
    assert!(!log.contains("panicked"), "{log}");
    let (got, _) = curl(&base("influx", "query"), &[("query", "1")]);
    assert_eq!(got, 200);
}
