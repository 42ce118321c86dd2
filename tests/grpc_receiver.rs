//! The gRPC receiver against the real binary: round trip to the file sink,
//! refusals, stream ordering and backpressure.
mod common;

use std::time::Duration;

use common::*;
use tsrelay::proto::v1::ingest_client::IngestClient;
use tsrelay::proto::v1::{Label, MetricType, Sample, Series, WriteRequest};

fn series(name: &str, host: &str, samples: &[(f64, i64)]) -> Series {
    Series {
        labels: vec![
            Label { name: "__name__".into(), value: name.into() },
            Label { name: "host".into(), value: host.into() },
        ],
        samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
        r#type: MetricType::Gauge as i32,
        unit: String::new(),
    }
}

fn config(grpc_port: u16, sink: &str, pipeline_extra: &str) -> String {
    format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc_port}"
max_wait_ms = 200
{sink}
[pipelines.main]
receivers = ["grpc"]
sinks = ["out"]
{pipeline_extra}
# Fixed 2023 timestamps: widen the window the validate stage enforces.
[pipelines.main.validate]
max_past = "36500d"
"#
    )
}

async fn client(port: u16) -> IngestClient<tonic::transport::Channel> {
    IngestClient::connect(format!("http://127.0.0.1:{port}")).await.expect("connect to tsrelay gRPC")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_reaches_file_sink_and_bad_series_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = Tsrelay::start(
        dir.path(),
        &config(port, "[sinks.out]\ntype = \"file\"\npath = \"out.lp\"\nbatch = { max_age_ms = 20 }", ""),
    );
    let mut c = client(port).await;
    let req = WriteRequest {
        id: 42,
        series: vec![
            series("cpu_load", "a", &[(1.5, 1_700_000_000_000), (2.5, 1_700_000_001_000)]),
            series("mem_free", "b", &[(10.0, 1_700_000_000_000)]),
            Series {
                labels: vec![Label { name: "host".into(), value: "nameless".into() }],
                ..series("x", "y", &[(1.0, 1)])
            },
        ],
    };
    let resp = c.write(req).await.expect("write").into_inner();
    assert_eq!((resp.id, resp.accepted, resp.rejected), (42, 3, 1), "{resp:?}");
    assert!(resp.errors[0].contains("__name__"), "{:?}", resp.errors);

    let out = dir.path().join("out.lp");
    let lines = wait_for(Duration::from_secs(10), "3 lines in out.lp", || {
        let l = read_lp_file(&out);
        (l.len() == 3).then_some(l)
    });
    assert!(lines.contains(&("cpu_load,host=a".into(), 1.5, 1_700_000_000_000_000_000)), "{lines:?}");
    assert!(lines.contains(&("mem_free,host=b".into(), 10.0, 1_700_000_000_000_000_000)), "{lines:?}");

    let m = t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"grpc\""]), 3.0);
    assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &["reason=\"invalid_name\""]), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_sink_sent_samples_total", &["sink=\"out\""]), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_usable_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _t = Tsrelay::start(dir.path(), &config(port, "[sinks.out]\ntype = \"blackhole\"", ""));
    let mut c = client(port).await;
    let bad =
        Series { labels: vec![Label { name: String::new(), value: "v".into() }], ..series("x", "y", &[(1.0, 1)]) };
    let err = c.write(WriteRequest { id: 1, series: vec![bad] }).await.expect_err("must be refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("empty name"), "{}", err.message());
}

/// grpcio sends hand-made bytes (its raw-bytes call): a label name that is not
/// UTF-8 and a label running past its series are INVALID_ARGUMENT naming the
/// request and the fault, and the connection still takes a good request.
#[test]
fn malformed_bytes_are_invalid_argument_naming_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = Tsrelay::start(dir.path(), &config(port, "[sinks.out]\ntype = \"blackhole\"", ""));
    let stubs = grpcio::stubs(dir.path());
    let out = grpcio::run(&stubs, &format!("127.0.0.1:{port}"), "malformed", &[]);
    let answers = out["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 3, "{out}");
    for (answer, (id, fault)) in answers.iter().zip([(1, "UTF-8"), (2, "buffer underflow")]) {
        assert_eq!(answer["code"], "INVALID_ARGUMENT", "{out}");
        let details = answer["details"].as_str().unwrap_or("");
        assert!(details.contains(&format!("request {id}")) && details.contains(fault), "{details}");
    }
    assert_eq!((answers[2]["code"].as_str(), answers[2]["accepted"].as_u64()), (Some("OK"), Some(1)), "{out}");
    wait_for(Duration::from_secs(10), "the good sample to be received", || {
        (t.metric_sum("tsrelay_received_samples_total", &["receiver=\"grpc\""]) == 1.0).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_answers_every_request_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = Tsrelay::start(dir.path(), &config(port, "[sinks.out]\ntype = \"blackhole\"", ""));
    let mut c = client(port).await;
    let reqs: Vec<WriteRequest> = (0..200u64)
        .map(|id| WriteRequest { id, series: vec![series("m", &format!("h{id}"), &[(id as f64, 0)])] })
        .collect();
    let mut answers = c.write_stream(futures::stream::iter(reqs)).await.expect("stream").into_inner();
    let mut ids = Vec::new();
    while let Some(r) =
        tokio::time::timeout(Duration::from_secs(10), answers.message()).await.expect("answer in time").expect("ok")
    {
        assert_eq!(r.accepted, 1);
        ids.push(r.id);
    }
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    wait_for(Duration::from_secs(10), "200 samples delivered", || {
        (t.metric_sum("tsrelay_sink_sent_samples_total", &[]) == 200.0).then_some(())
    });
}

/// A sink that never finishes (a FIFO nobody reads) fills the queue, the
/// shard channel and the ingest queue; then unary calls get RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pipeline_answers_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let port = free_port();
    let sink = format!(
        "[sinks.out]\ntype = \"file\"\npath = \"{}\"\nqueue = {{ max_samples = 10, when_full = \"block\" }}\nbatch = {{ max_samples = 10 }}",
        fifo.display()
    );
    let t = Tsrelay::start(
        dir.path(),
        &config(port, &sink, "shards = 1\ningest_queue_batches = 1\nshard_queue_batches = 1"),
    );
    let mut c = client(port).await;
    let mut exhausted = None;
    for id in 0..50u64 {
        let req = WriteRequest { id, series: vec![series("m", "h", &[(1.0, 1_700_000_000_000 + id as i64)]); 10] };
        match tokio::time::timeout(Duration::from_secs(5), c.write(req)).await.expect("answer within max_wait") {
            Ok(_) => continue,
            Err(status) => {
                exhausted = Some(status);
                break;
            }
        }
    }
    let status = exhausted
        .unwrap_or_else(|| panic!("the pipeline never pushed back: {:?}\n{}", t.metrics(), t.process.log_tail()));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("retry-after-ms").is_some());
    let m = t.metrics();
    assert!(sum_metric(&m, "tsrelay_receiver_backpressure_rejections_total", &[]) >= 1.0);
    assert!(sum_metric(&m, "tsrelay_fanout_blocked_seconds_total", &["sink=\"out\""]) >= 0.0);
}
