//! The query API's failure paths and listings (DESIGN §7.2), against a scripted
//! server standing in for Prometheus where a real one can't fail on demand:
//! down (502), slow (504), garbage (502), an error answer (502 quoting it).

mod common;

use std::process::Command;
use std::time::Duration;

use common::fault_http::{FaultServer, Reply};
use common::{Tsrelay, free_port, http, loopback};

const REGISTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metrics.yaml");
const GRAPHS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/graphs");

fn relay(dir: &std::path::Path, query_url: &str, timeout: &str) -> (Tsrelay, std::net::SocketAddr) {
    let query = loopback(free_port());
    let receiver = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "1s"
[receivers.http]
type = "http"
listen = "{receiver}"
[pipelines.main]
receivers = ["http"]
sinks = ["out"]
[registry]
path = "{REGISTRY}"
[query]
listen = "{query}"
graphs_dir = "{GRAPHS}"
timeout = "{timeout}"
[sinks.prom]
type = "prometheus_remote_write"
url = "http://127.0.0.1:9/api/v1/write"
query_url = "{query_url}"
queue = {{ type = "memory", max_samples = 1000 }}
[sinks.out]
type = "file"
queue = {{ type = "memory", max_samples = 1000 }}
path = "{}/out.lp"
"#,
        dir.display()
    );
    let t = Tsrelay::start(dir, &config);
    common::wait_for(Duration::from_secs(20), "query listener", || std::net::TcpStream::connect(query).ok());
    (t, query)
}

fn post(query: std::net::SocketAddr, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = http().post(format!("http://{query}{path}")).json(&body).send().expect("query API answers");
    (r.status().as_u16(), r.json().unwrap_or(serde_json::Value::Null))
}

fn get(query: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let r = http().get(format!("http://{query}{path}")).send().expect("query API answers");
    (r.status().as_u16(), r.json().unwrap_or(serde_json::Value::Null))
}

fn render_body() -> serde_json::Value {
    serde_json::json!({"graph": "golden.load.raw", "backend": "prom", "start": "-1h", "step": "1m"})
}

#[test]
fn backend_failures_are_502_or_504_naming_the_backend() {
    let server = FaultServer::start(
        vec![
            Reply::with_body(200, "<html>not prometheus</html>"),
            Reply::with_body(
                422,
                r#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#,
            ),
            Reply::with_body(
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#,
            ),
        ],
        Reply::Hang,
    );
    let dir = tempfile::tempdir().unwrap();
    let (t, query) = relay(dir.path(), &server.url(""), "2s");

    let (status, answer) = post(query, "/api/v1/graph/render", render_body());
    assert_eq!(status, 502, "{answer}");
    assert_eq!((answer["errorType"].as_str(), answer["backend"].as_str()), (Some("backend"), Some("prom")));
    assert!(answer["error"].as_str().unwrap().contains("not the Prometheus API's JSON"), "{answer}");

    let (status, answer) = post(query, "/api/v1/graph/render", render_body());
    assert_eq!(status, 502, "{answer}");
    let e = answer["error"].as_str().unwrap();
    assert!(e.contains("\"prom\"") && e.contains("HTTP 422") && e.contains("query timed out"), "{answer}");

    let (status, answer) = post(query, "/api/v1/graph/render", render_body());
    assert_eq!(status, 502, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("value \"x\" at 1 is not a number"), "{answer}");

    // the server now hangs: the render's own timeout answers
    let (status, answer) = post(query, "/api/v1/graph/render", render_body());
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["errorType"], "timeout");
    assert!(answer["error"].as_str().unwrap().contains("no answer within 2s"), "{answer}");

    // the requests the driver sent: POSTed PromQL forms
    let sent = server.requests();
    assert!(sent.len() >= 4, "{}", sent.len());
    let body = String::from_utf8_lossy(&sent[0].body);
    assert!(body.contains("last_over_time") && body.contains("step=60"), "{body}");

    let m = t.metrics();
    assert_eq!(common::sum_metric(&m, "tsrelay_query_requests_total", &["endpoint=\"render\"", "code=\"502\""]), 3.0);
    assert_eq!(common::sum_metric(&m, "tsrelay_query_requests_total", &["endpoint=\"render\"", "code=\"504\""]), 1.0);
    assert!(common::sum_metric(&m, "tsrelay_query_backend_requests_total", &["backend=\"prom\""]) >= 4.0);
    assert!(m.keys().any(|k| k.starts_with("tsrelay_query_duration_seconds")), "no duration histogram");
}

#[test]
fn backend_down_is_502_saying_what_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    let closed = loopback(free_port());
    let (_t, query) = relay(dir.path(), &format!("http://{closed}"), "5s");
    let (status, answer) = post(query, "/api/v1/graph/render", render_body());
    assert_eq!(status, 502, "{answer}");
    let e = answer["error"].as_str().unwrap();
    assert!(e.contains("cannot reach") && e.contains(&closed.to_string()), "{answer}");
}

#[test]
fn listings_compile_and_bad_requests() {
    let server = FaultServer::start(vec![], Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let (_t, query) = relay(dir.path(), &server.url(""), "5s");

    let (status, answer) = get(query, "/api/v1/backends");
    assert_eq!(status, 200);
    let backends = answer["data"].as_array().unwrap();
    assert_eq!(backends[0]["name"], "out");
    assert_eq!(backends[0]["readable"], false);
    assert_eq!(backends[1]["name"], "prom");
    assert_eq!(backends[1]["capabilities"]["driver"], "prometheus");
    assert!(backends[1]["capabilities"]["functions"].as_array().unwrap().len() == 9);

    let (status, answer) = get(query, "/api/v1/graphs");
    assert_eq!(status, 200);
    assert!(answer["data"].as_array().unwrap().len() >= 8);
    let (status, answer) = get(query, "/api/v1/graphs/golden.load.avg");
    assert_eq!((status, answer["data"]["id"].as_str()), (200, Some("golden.load.avg")));
    let (status, answer) = get(query, "/api/v1/graphs/nope");
    assert_eq!((status, answer["errorType"].as_str()), (404, Some("not_found")));

    let (status, answer) = post(
        query,
        "/api/v1/graph/compile",
        serde_json::json!({"graph": "golden.rate.ports", "backend": "prom", "start": 0, "end": 3_600_000, "step": "5m"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["data"]["queries"][0],
        r#"query query={__name__="golden_octets_total",device!="sw3",port=~"ge-.*"}[3900000ms] time=3600"#
    );
    assert!(server.requests().is_empty(), "compile must not touch the backend");

    // malformed bodies: 400 naming what is wrong
    let r = http().post(format!("http://{query}/api/v1/graph/render")).body("{").send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (status, answer) = post(
        query,
        "/api/v1/graph/render",
        serde_json::json!({"graph": "g", "backend": "prom", "start": 0, "step": "1m", "colour": 1}),
    );
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("colour"), "{answer}");
    let (status, answer) = post(
        query,
        "/api/v1/graph/render",
        serde_json::json!({"graph": 5, "backend": "prom", "start": 0, "step": "1m"}),
    );
    assert_eq!((status, answer["field"].as_str()), (400, Some("graph")));
    assert!(server.requests().is_empty(), "bad requests must not touch the backend");
}

#[test]
fn validate_checks_graph_files() {
    let dir = tempfile::tempdir().unwrap();
    let graphs = dir.path().join("graphs");
    std::fs::create_dir(&graphs).unwrap();
    std::fs::write(
        graphs.join("bad.yaml"),
        "graphs:\n- id: g\n  series:\n  - metric: golden.load\n  - metric: golden.load\n    group_by: [port]\n",
    )
    .unwrap();
    let config = dir.path().join("tsrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[registry]\npath = \"{REGISTRY}\"\n[query]\n[receivers.http]\ntype = \"http\"\n\
             [sinks.out]\ntype = \"file\"\npath = \"out.lp\"\n[pipelines.main]\nreceivers = [\"http\"]\nsinks = [\"out\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay")).args(["validate", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml") && stderr.contains("graph \"g\" series[1]: group_by[0]"), "{stderr}");

    std::fs::write(graphs.join("bad.yaml"), "graphs:\n- id: g\n  series:\n  - metric: golden.load\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay")).args(["validate", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 graphs"));
}
