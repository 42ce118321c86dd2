//! The daemon starts on a temp config, reports ready, and stops on SIGTERM.
mod common;

use std::time::Duration;

use common::*;

#[test]
fn starts_ready_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let grpc_port = free_port();
    let config = format!(
        r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http_port}"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc_port}"
[sinks.out]
type = "file"
path = "out.lp"
[pipelines.main]
receivers = ["http", "grpc"]
sinks = ["out"]
"#
    );
    let mut t = Tsrelay::start(dir.path(), &config);
    let (status, body) = http_get(t.admin, "/readyz").expect("readyz answers");
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["receivers"]["http"], "listening");
    assert_eq!(body["sinks"]["out"]["state"], "healthy");
    assert!(t.metrics().contains_key("tsrelay_queue_capacity_samples{sink=\"out\"}"));
    assert!(t.process.terminate(Duration::from_secs(10)), "tsrelay did not stop on SIGTERM:\n{}", t.process.log_tail());
}
