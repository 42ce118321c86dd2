//! Differential test of the data path (issue #17 item 5): the pipeline's
//! behaviour recorded once and compared exactly on every later run.
//!
//! One real daemon (`target/debug/tsrelay`) runs one pipeline per case under
//! `tests/differential/<case>/` (`config.toml`: its sinks and pipeline, and
//! its receivers when they differ from the generated ones, see
//! [`daemon_config`]; `corpus.txt`: the requests sent to it and the intent
//! checks, see [`Corpus::parse`]). Every request is sent alone and answered
//! only once its samples are delivered (`ack = "delivered"`; only the `sinks`
//! case answers on acceptance, and the test waits for its pipeline), so
//! series state (types pinned, cardinality admissions, monotonic clocks) is
//! deterministic. After the corpus, the test waits until every pipeline and
//! sink has accounted for every sample, reads /metrics, stops the daemon (the
//! aggregate rules flush their open buckets into the sinks) and reads the
//! sink files. What each case produced is compared with
//! `tests/differential/<case>/expected.json`:
//!
//! - `responses`: the answer to every request: HTTP status and body, gRPC
//!   accepted / rejected / error messages, with absolute times masked;
//! - `output`: per sink, per series (the line-protocol series key) the samples
//!   in file order, as `[ms after the base time, value as written]`. Order
//!   across series (shards) is not compared; order within a series is;
//! - `counters`: every `tsrelay_*` series of /metrics that names one of the
//!   case's pipeline, receivers (listeners) or sinks, except the timing- and
//!   size-dependent ones in [`EXCLUDED`]. A series owned by no case must be
//!   excluded too (the admin listener's, the process' memory).
//!
//! Besides the exact comparison, each case's `=== expect` lines state its
//! intent (a drop reason really counted, a relabel rule really applied), so a
//! bad recording cannot pass unnoticed; and the test checks that every
//! [`DropReason`] is triggered by some case except those in [`NOT_COVERED`],
//! and that the relabel case uses every relabel action.
//!
//! Timestamps in the corpus are written relative to a base time chosen when
//! the test starts (`{t+1500}`, `{t-2d}`; ms unless suffixed; `{t+1500|ns}`
//! in ns), because the validate stage's window is relative to now. The base
//! is the next whole hour, so a one-hour aggregate bucket holds every `{t+x}`
//! sample and closes only when the daemon stops.
//!
//! Recording: `TSRELAY_DIFFERENTIAL_RECORD=1 cargo test --test differential`
//! rewrites every `expected.json` from the binary under test. Only do that on
//! purpose, for a behaviour change that is meant, and review the diff by hand:
//! the committed recordings were made from main at 8e88ec0 (today's pipeline,
//! before the data-path redesign of issue #17), and are the reference the
//! redesign must reproduce.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use prost::Message;
use serde_json::{Value, json};
use tsrelay::proto::prometheus as rw1;
use tsrelay::proto::v1::ingest_client::IngestClient;
use tsrelay::proto::v1::{Label, MetricType, Sample, Series, WriteRequest};
use tsrelay::proto::write_v2 as rw2;
use tsrelay::telemetry::DropReason;

/// The cases, one pipeline each; a case's pipeline is named like it, its
/// receivers `<case>_http` and `<case>_grpc`, and its sinks `<case>_<...>`.
const CASES: &[&str] = &[
    "sanitize",
    "reject",
    "relabel",
    "validate",
    "strict",
    "card_drop",
    "card_label",
    "mono_pass",
    "mono_drop",
    "mono_adjust",
    "aggregate",
    "otlp",
    "sinks",
    "auth",
];

/// Metrics left out of the comparison, by name prefix, and why (each must
/// match something on /metrics, so the list cannot go stale unnoticed).
const EXCLUDED: &[(&str, &str)] = &[
    ("tsrelay_pipeline_latency_seconds", "a duration histogram"),
    ("tsrelay_sink_request_duration_seconds", "a duration histogram"),
    ("tsrelay_queue_", "queue depth gauges (timing) and capacities (derived from the memory budget)"),
    ("tsrelay_aggregate_emitted_until_timestamp_seconds", "a wall-clock time (the base hour)"),
    ("tsrelay_aggregate_state_bytes", "a size in bytes"),
    (
        "tsrelay_aggregate_series{",
        "published by the flush tick (every second): what is read depends on whether a tick ran since the last request",
    ),
    ("tsrelay_aggregate_quantile_samples{", "published by the flush tick, as tsrelay_aggregate_series"),
    ("tsrelay_aggregate_counter_series{", "published by the flush tick, as tsrelay_aggregate_series"),
    ("tsrelay_aggregate_limit_bytes", "a size in bytes"),
    ("tsrelay_cardinality_limit_series", "derived from the memory budget of the machine"),
    ("tsrelay_fanout_blocked_seconds_total", "a duration"),
    ("tsrelay_memory_", "process memory (RSS, budget, pressure): sizes of this machine and run"),
    // The admin listener's own series (listener="admin") are skipped too: the
    // test polls /metrics until the books balance, as often as timing wants.
    ("tsrelay_listener_connections{", "open connections: when a client's close is seen is timing"),
];

const RECORD_ENV: &str = "TSRELAY_DIFFERENTIAL_RECORD";

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential").join(case)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

const HOUR_MS: i64 = 3_600_000;

/// `{t}`, `{t+1500}`, `{t-2d}` (units ms, s, m, h, d; ms without one) → absolute ms;
/// `{t+1500|ns}` → absolute ns (OTLP).
fn expand_times(text: &str, base: i64) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{t") {
        out.push_str(&rest[..at]);
        let close = rest[at..].find('}').map(|c| at + c).unwrap_or_else(|| panic!("unclosed {{t in {text:?}"));
        let spec = &rest[at + 1..close];
        match spec.strip_suffix("|ns") {
            Some(spec) => out.push_str(&(time_of(spec, base) * 1_000_000).to_string()),
            None => out.push_str(&time_of(spec, base).to_string()),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `t`, `t+1500`, `t-2d` → absolute ms.
fn time_of(spec: &str, base: i64) -> i64 {
    let offset = spec.strip_prefix('t').unwrap_or_else(|| panic!("time {spec:?} does not start with t"));
    if offset.is_empty() {
        return base;
    }
    let (sign, n) = match offset.split_at(1) {
        ("+", n) => (1, n),
        ("-", n) => (-1, n),
        _ => panic!("time {spec:?}: expected t+N or t-N"),
    };
    let digits = n.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &n[digits.len()..] {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => HOUR_MS,
        "d" => 24 * HOUR_MS,
        u => panic!("time {spec:?}: unknown unit {u:?}"),
    };
    base + sign * digits.parse::<i64>().unwrap_or_else(|_| panic!("time {spec:?}: bad number")) * unit
}

/// One request of a corpus.
enum Request {
    /// Line protocol, `POST /write?precision=ms`.
    Lp(String),
    /// NDJSON, `POST /api/v1/ingest`.
    Ndjson(String),
    /// Remote-write 1.0, `POST /api/v1/write` (snappy).
    Rw(rw1::WriteRequest),
    /// Remote-write 2.0, `POST /api/v1/write` (snappy).
    Rw2(rw2::Request),
    /// `tsrelay.v1.Ingest/Write`.
    Grpc(WriteRequest),
    /// `tsrelay.v1.Ingest/WriteStream`: the requests on one stream.
    GrpcStream(Vec<WriteRequest>),
    /// OTLP/HTTP JSON, `POST /v1/metrics` (the body on one or more lines).
    Otlp(String),
}

/// A check of the case's intent, besides the exact comparison.
enum Intent {
    /// `counter <name> <k=v,...> <op> <n>`: the sum of the matching series.
    Counter { name: String, labels: Vec<String>, op: String, n: f64 },
    /// `series <sink> <series key> <n>`: samples of that series in that sink.
    Series { sink: String, series: String, n: usize },
}

struct Corpus {
    /// Each request, with the API key it is sent with (`=== lp key=...`).
    requests: Vec<(Request, Option<String>)>,
    intents: Vec<Intent>,
}

/// One series of a `rw` or `grpc` request, one JSON object a line:
/// `{"labels": [["__name__","x"],["a","b"]], "type": "counter",
///   "samples": [[1.5, "t+1000"], ["NaN", "t+2000"]], "histograms": 1, "exemplars": 1}`.
/// Values may be numbers or `"NaN"`, `"+Inf"`, `"-Inf"`, `"stale"` (the
/// Prometheus staleness marker); `type` is read by gRPC and remote-write 2.0.
struct SeriesSpec {
    labels: Vec<(String, String)>,
    kind: MetricType,
    samples: Vec<(f64, i64)>,
    histograms: usize,
    exemplars: usize,
}

/// Prometheus' staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn series_spec(line: &str, base: i64) -> SeriesSpec {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("series line {line:?}: {e}"));
    let labels = v["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("{line:?}: labels must be an array of pairs"))
        .iter()
        .map(|p| (p[0].as_str().expect("label name").to_string(), p[1].as_str().expect("label value").to_string()))
        .collect();
    let kind = match v["type"].as_str().unwrap_or("") {
        "" => MetricType::Unspecified,
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        t => panic!("{line:?}: unknown type {t:?}"),
    };
    let value = |x: &Value| match x {
        Value::Number(n) => n.as_f64().expect("a number"),
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "stale" => f64::from_bits(STALE_NAN),
            s => panic!("{line:?}: value {s:?}"),
        },
        x => panic!("{line:?}: value {x}"),
    };
    let samples = v["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("{line:?}: samples must be an array"))
        .iter()
        .map(|p| (value(&p[0]), time_of(p[1].as_str().expect("time as \"t+N\""), base)))
        .collect();
    let count = |k: &str| v[k].as_u64().unwrap_or(0) as usize;
    SeriesSpec { labels, kind, samples, histograms: count("histograms"), exemplars: count("exemplars") }
}

fn rw_request(specs: &[SeriesSpec]) -> rw1::WriteRequest {
    rw1::WriteRequest {
        timeseries: specs
            .iter()
            .map(|s| rw1::TimeSeries {
                labels: s.labels.iter().map(|(n, v)| rw1::Label { name: n.clone(), value: v.clone() }).collect(),
                samples: s.samples.iter().map(|&(value, timestamp)| rw1::Sample { value, timestamp }).collect(),
                exemplars: (0..s.exemplars)
                    .map(|_| rw1::Exemplar {
                        labels: vec![rw1::Label { name: "trace_id".into(), value: "abc".into() }],
                        value: 1.0,
                        timestamp: s.samples.first().map_or(0, |p| p.1),
                    })
                    .collect(),
                histograms: (0..s.histograms)
                    .map(|_| rw1::Histogram {
                        sum: 1.0,
                        timestamp: s.samples.first().map_or(0, |p| p.1),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A 2.0 request: one symbol table ("" first), labels as pairs of references.
fn rw2_request(specs: &[SeriesSpec]) -> rw2::Request {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut symbol = |s: &str| -> u32 {
        let at = symbols.iter().position(|x| x == s).unwrap_or_else(|| {
            symbols.push(s.to_string());
            symbols.len() - 1
        });
        at as u32
    };
    let timeseries = specs
        .iter()
        .map(|s| {
            let first_ts = s.samples.first().map_or(0, |p| p.1);
            rw2::TimeSeries {
                labels_refs: s.labels.iter().flat_map(|(n, v)| [symbol(n), symbol(v)]).collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|&(value, timestamp)| rw2::Sample { value, timestamp, ..Default::default() })
                    .collect(),
                // The 2.0 metric types: 1 counter, 2 gauge.
                metadata: Some(rw2::Metadata { r#type: s.kind as i32, help_ref: 0, unit_ref: 0 }),
                exemplars: (0..s.exemplars)
                    .map(|_| rw2::Exemplar {
                        labels_refs: vec![symbol("trace_id"), symbol("abc")],
                        value: 1.0,
                        timestamp: first_ts,
                    })
                    .collect(),
                histograms: (0..s.histograms)
                    .map(|_| rw2::Histogram { sum: 1.0, timestamp: first_ts, ..Default::default() })
                    .collect(),
            }
        })
        .collect();
    rw2::Request { symbols, timeseries }
}

fn grpc_request(specs: &[SeriesSpec], id: u64) -> WriteRequest {
    WriteRequest {
        id,
        series: specs
            .iter()
            .map(|s| Series {
                labels: s.labels.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect(),
                samples: s.samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
                r#type: s.kind as i32,
                unit: String::new(),
            })
            .collect(),
    }
}

impl Corpus {
    /// `corpus.txt`: sections opened by `=== lp`, `=== ndjson`, `=== otlp`,
    /// `=== rw`, `=== rw2`, `=== grpc` (each one request: its lines the body,
    /// or for `rw`, `rw2` and `grpc` one series a line, see [`SeriesSpec`]),
    /// `=== grpc_stream` (one stream, a request per series line)
    /// and `=== expect` (intent checks, one a line). Lines starting with `#`
    /// outside `lp` bodies are comments; `{t...}` is expanded everywhere.
    fn parse(text: &str, base: i64) -> Corpus {
        let mut requests = Vec::new();
        let mut intents = Vec::new();
        let mut sections: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines() {
            if let Some(kind) = line.strip_prefix("=== ") {
                sections.push((kind.trim().to_string(), Vec::new()));
                continue;
            }
            let Some((kind, lines)) = sections.last_mut() else {
                assert!(line.trim().is_empty() || line.starts_with('#'), "text before the first section: {line:?}");
                continue;
            };
            // A `#` line in a line-protocol body is a comment the parser skips: keep it there.
            if kind != "lp" && (line.starts_with('#') || line.trim().is_empty()) {
                continue;
            }
            lines.push(expand_times(line, base));
        }
        for (id, (header, lines)) in sections.into_iter().enumerate() {
            let mut words = header.split_whitespace();
            let kind = words.next().unwrap_or("").to_string();
            let key = words.find_map(|w| w.strip_prefix("key=")).map(str::to_string);
            let at = requests.len();
            let body = || lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            let specs = || lines.iter().map(|l| series_spec(l, base)).collect::<Vec<_>>();
            match kind.as_str() {
                "lp" => requests.push((Request::Lp(body()), None)),
                "ndjson" => requests.push((Request::Ndjson(body()), None)),
                "rw" => requests.push((Request::Rw(rw_request(&specs())), None)),
                "rw2" => requests.push((Request::Rw2(rw2_request(&specs())), None)),
                "grpc_stream" => requests.push((
                    Request::GrpcStream(
                        specs().chunks(1).enumerate().map(|(i, s)| grpc_request(s, (id * 100 + i) as u64)).collect(),
                    ),
                    None,
                )),
                "grpc" => requests.push((Request::Grpc(grpc_request(&specs(), id as u64)), None)),
                "otlp" => requests.push((Request::Otlp(lines.concat()), None)),
                "expect" => intents.extend(lines.iter().map(|l| Intent::parse(l))),
                k => panic!("unknown section {k:?}"),
            }
            if let Some(k) = key {
                assert!(requests.len() > at, "key= on a section that is no request");
                requests[at].1 = Some(k);
            }
        }
        Corpus { requests, intents }
    }
}

impl Intent {
    fn parse(line: &str) -> Intent {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["counter", name, labels, op, n] => Intent::Counter {
                name: name.to_string(),
                labels: labels.split(',').filter(|l| *l != "-").map(|kv| kv.replacen('=', "=\"", 1) + "\"").collect(),
                op: op.to_string(),
                n: n.parse().unwrap_or_else(|_| panic!("intent {line:?}: bad number")),
            },
            ["series", sink, series, n] => Intent::Series {
                sink: sink.to_string(),
                series: series.to_string(),
                n: n.parse().unwrap_or_else(|_| panic!("intent {line:?}: bad count")),
            },
            _ => panic!("intent {line:?}: expected `counter NAME k=v,.. OP N` or `series SINK KEY N`"),
        }
    }

    /// `None` when it holds, else what failed.
    fn failure(&self, counters: &BTreeMap<String, f64>, output: &Value) -> Option<String> {
        match self {
            Intent::Counter { name, labels, op, n } => {
                let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                let got = sum_metric(counters, name, &refs);
                let ok = match op.as_str() {
                    "==" => got == *n,
                    ">=" => got >= *n,
                    ">" => got > *n,
                    "<=" => got <= *n,
                    o => panic!("intent operator {o:?}"),
                };
                (!ok).then(|| format!("{name}{{{}}} = {got}, expected {op} {n}", labels.join(",")))
            }
            Intent::Series { sink, series, n } => {
                let got = output[sink][series].as_array().map_or(0, Vec::len);
                (got != *n).then(|| format!("sink {sink}: series {series} has {got} samples, expected {n}"))
            }
        }
    }
}

/// Ports of one case's receivers.
struct Ports {
    http: u16,
    grpc: u16,
}

/// The daemon's config: every case's receivers (generated, all alike, unless
/// the case declares its own `[receivers.<case>_http]`; `{http}` and `{grpc}`
/// in a case's config are its ports), sinks and pipeline. The start-up memory
/// check adds up the worst case of every table and queue of all the cases'
/// pipelines at their default bounds; 8 GiB keeps it out of the way (a bound
/// checked, not memory taken).
fn daemon_config(ports: &BTreeMap<&str, Ports>) -> String {
    let mut config = String::from(
        "shutdown_timeout = \"20s\"\n\n[registry]\npath = \"registry.yaml\"\n\n[limits]\nmemory_bytes = 8589934592\n\n\
         [auth]\nkeys_file = \"keys.yaml\"\n\n[admin]\nlisten = \"{admin}\"\nauth = \"none\"\n",
    );
    for case in CASES {
        let p = &ports[case];
        let own = std::fs::read_to_string(case_dir(case).join("config.toml")).expect("case config.toml");
        let own = own.replace("{http}", &p.http.to_string()).replace("{grpc}", &p.grpc.to_string());
        if !own.contains(&format!("[receivers.{case}_http]")) {
            config.push_str(&format!(
                r#"
[receivers.{case}_http]
type = "http"
listen = "127.0.0.1:{http}"
max_body_bytes = 1048576
ack = "delivered"
ack_timeout = "20s"
auth = "none"

[receivers.{case}_grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
ack = "delivered"
ack_timeout = "20s"
auth = "none"
"#,
                http = p.http,
                grpc = p.grpc
            ));
        }
        config.push_str(&format!("\n# ---- case {case}\n{own}\n"));
    }
    config
}

/// The `<name>.fifo` paths of the cases' file sinks: the test makes each a
/// named pipe nobody reads, so the sink is stuck (its queue fills) until the
/// corpus is sent; then [`drain_fifo`] copies what it gets into `<name>.lp`.
fn fifo_sinks() -> Vec<String> {
    CASES
        .iter()
        .flat_map(|case| {
            let own = std::fs::read_to_string(case_dir(case).join("config.toml")).expect("case config.toml");
            own.lines()
                .filter_map(|l| l.trim().strip_prefix("path = \"")?.strip_suffix(".fifo\"").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Reads the named pipe `dir/<name>.fifo` to its end (the daemon closing it), line by line into `dir/<name>.lp`.
fn drain_fifo(dir: &Path, name: &str) -> std::thread::JoinHandle<()> {
    let (fifo, out) = (dir.join(format!("{name}.fifo")), dir.join(format!("{name}.lp")));
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let reader = std::io::BufReader::new(std::fs::File::open(&fifo).expect("open the sink's fifo"));
        let mut copy = std::fs::File::create(&out).expect("create the fifo's copy");
        for line in reader.lines() {
            writeln!(copy, "{}", line.expect("read the sink's fifo")).expect("write the fifo's copy");
        }
    })
}

/// A gRPC request with `authorization: Bearer <key>` when there is a key.
fn with_key<T>(message: T, bearer: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(b) = bearer {
        r.metadata_mut().insert("authorization", b.parse().expect("a key fit for a header"));
    }
    r
}

/// What one request was answered.
fn send(request: &Request, key: Option<&str>, p: &Ports, runtime: &tokio::runtime::Runtime) -> String {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let http = |path: &str, body: Vec<u8>, headers: &[(&str, &str)]| {
        let mut r = common::http().post(format!("http://127.0.0.1:{}{path}", p.http)).body(body);
        if let Some(b) = &bearer {
            r = r.header("Authorization", b);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        format!("{status} {}", mask_times(text.trim()))
    };
    match request {
        Request::Lp(body) => format!("lp {}", http("/write?precision=ms", body.clone().into_bytes(), &[])),
        Request::Ndjson(body) => format!("ndjson {}", http("/api/v1/ingest", body.clone().into_bytes(), &[])),
        Request::Rw(w) => {
            let body = snap::raw::Encoder::new().compress_vec(&w.encode_to_vec()).expect("snappy");
            let headers = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
            format!("rw {}", http("/api/v1/write", body, &headers))
        }
        Request::Rw2(w) => {
            let body = snap::raw::Encoder::new().compress_vec(&w.encode_to_vec()).expect("snappy");
            let headers = [
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            ];
            format!("rw2 {}", http("/api/v1/write", body, &headers))
        }
        Request::GrpcStream(ws) => runtime.block_on(async {
            let mut client = IngestClient::connect(format!("http://127.0.0.1:{}", p.grpc)).await.expect("connect gRPC");
            let answers =
                match client.write_stream(with_key(futures::stream::iter(ws.clone()), bearer.as_deref())).await {
                    Ok(a) => a,
                    Err(status) => return format!("grpc_stream {:?} {}", status.code(), mask_times(status.message())),
                };
            let mut answers = answers.into_inner();
            let mut out = Vec::new();
            loop {
                match answers.message().await {
                    Ok(Some(r)) => out.push(format!(
                        "id={} accepted={} rejected={} errors: {}",
                        r.id,
                        r.accepted,
                        r.rejected,
                        mask_times(&r.errors.join(" | "))
                    )),
                    Ok(None) => break,
                    Err(status) => {
                        out.push(format!("{:?} {}", status.code(), mask_times(status.message())));
                        break;
                    }
                }
            }
            format!("grpc_stream [{}]", out.join("; "))
        }),
        Request::Otlp(body) => {
            format!("otlp {}", http("/v1/metrics", body.clone().into_bytes(), &[("Content-Type", "application/json")]))
        }
        Request::Grpc(w) => runtime.block_on(async {
            let mut client = IngestClient::connect(format!("http://127.0.0.1:{}", p.grpc)).await.expect("connect gRPC");
            match client.write(with_key(w.clone(), bearer.as_deref())).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let errors = mask_times(&r.errors.join(" | "));
                    format!("grpc accepted={} rejected={} errors: {errors}", r.accepted, r.rejected)
                }
                Err(status) => format!("grpc {:?} {}", status.code(), mask_times(status.message())),
            }
        }),
    }
}

/// An answer with what moves from run to run masked: absolute times (runs of
/// 12 or more digits: ms or ns since the epoch, which move with the base
/// time) become `<time>`, and the wait a rate limit asks for (`retry in
/// 9.99s`, the bucket's refill since the last request) `retry in <wait>`.
fn mask_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        out.push_str(if digits.len() >= 12 { "<time>" } else { &digits });
        digits.clear();
        out.push(c);
    }
    out.pop();
    const RETRY: &str = "retry in ";
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find(RETRY) {
        let after = &rest[at + RETRY.len()..];
        let wait =
            after.find(|c: char| !(c.is_ascii_digit() || c == '.' || c.is_ascii_alphabetic())).unwrap_or(after.len());
        masked.push_str(&rest[..at + RETRY.len()]);
        masked.push_str("<wait>");
        rest = &after[wait..];
    }
    masked.push_str(rest);
    masked
}

/// Whether a /metrics series belongs to `case`: one of its label values is
/// the case's pipeline or one of its receivers or sinks.
fn owned_by(series: &str, case: &str) -> bool {
    if let Some((_, owner)) = DAEMON_WIDE.iter().find(|(prefix, _)| series.starts_with(prefix)) {
        return *owner == case;
    }
    let Some((_, labels)) = series.split_once('{') else { return false };
    let prefix = format!("{case}_");
    labels.trim_end_matches('}').split("\",").any(|kv| {
        let Some((k, v)) = kv.split_once("=\"") else { return false };
        let v = v.trim_end_matches('"');
        OWNER_LABELS.contains(&k) && (v == case || v.starts_with(&prefix))
    })
}

/// Daemon-wide series (no pipeline, receiver or sink label), by name prefix,
/// and the case whose recording holds them.
const DAEMON_WIDE: &[(&str, &str)] = &[("tsrelay_auth_keys", "auth"), ("tsrelay_auth_reloads_total", "auth")];

/// The labels that name a pipeline, receiver (listener), sink or API key.
const OWNER_LABELS: &[&str] = &["pipeline", "receiver", "listener", "sink", "key"];

fn excluded(series: &str) -> Option<&'static str> {
    EXCLUDED.iter().find(|(prefix, _)| series.starts_with(prefix)).map(|(_, why)| *why)
}

/// A file sink's lines: series key → `[ms after base, value as written]` in file order.
fn read_output(path: &Path, base: i64) -> BTreeMap<String, Vec<Value>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.rsplitn(3, ' ');
        let (Some(ts), Some(field), Some(series)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("{}: unreadable line {line:?}", path.display());
        };
        let ns: i64 = ts.parse().unwrap_or_else(|_| panic!("{}: timestamp of {line:?}", path.display()));
        assert_eq!(ns % 1_000_000, 0, "{}: sub-ms timestamp in {line:?}", path.display());
        let value = field.strip_prefix("value=").unwrap_or_else(|| panic!("{}: field of {line:?}", path.display()));
        out.entry(series.to_string()).or_default().push(json!([ns / 1_000_000 - base, value]));
    }
    out
}

/// Every case's pipeline has fanned each sample it received out to its sinks,
/// or dropped it: received = dropped by its stages + taken in by each sink
/// (the largest: a rule's own sink gets nothing before the stop).
fn handed_on(m: &BTreeMap<String, f64>) -> bool {
    CASES.iter().all(|case| {
        let owned: BTreeMap<String, f64> =
            m.iter().filter(|(k, _)| owned_by(k, case)).map(|(k, v)| (k.clone(), *v)).collect();
        let received = sum_metric(&owned, "tsrelay_received_samples_total", &[]);
        let dropped = sum_metric(&owned, "tsrelay_dropped_samples_total", &[&format!("pipeline=\"{case}\"")]);
        let fanned_out = owned
            .iter()
            .filter(|(k, _)| k.starts_with("tsrelay_sink_received_samples_total{"))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max);
        received == dropped + fanned_out
    })
}

/// Every sink has sent or dropped everything it took in.
fn balanced(m: &BTreeMap<String, f64>) -> bool {
    let sinks: BTreeSet<&str> = m
        .keys()
        .filter(|k| k.starts_with("tsrelay_sink_received_samples_total{"))
        .filter_map(|k| k.split("sink=\"").nth(1)?.split('"').next())
        .collect();
    sinks.iter().all(|s| {
        let l = format!("sink=\"{s}\"");
        let received = sum_metric(m, "tsrelay_sink_received_samples_total", &[&l]);
        let sent = sum_metric(m, "tsrelay_sink_sent_samples_total", &[&l]);
        let dropped = sum_metric(m, "tsrelay_dropped_samples_total", &[&l]);
        received == sent + dropped
    })
}

/// Readable differences between two recordings of one case.
fn differences(case: &str, want: &Value, got: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let w = want["responses"].as_array().cloned().unwrap_or_default();
    let g = got["responses"].as_array().cloned().unwrap_or_default();
    for i in 0..w.len().max(g.len()) {
        if w.get(i) != g.get(i) {
            diffs.push(format!("{case}: request #{i}: expected answer {:?}, got {:?}", w.get(i), g.get(i)));
        }
    }
    for section in ["output", "counters"] {
        let empty = serde_json::Map::new();
        let (w, g) = (want[section].as_object().unwrap_or(&empty), got[section].as_object().unwrap_or(&empty));
        let keys: BTreeSet<&String> = w.keys().chain(g.keys()).collect();
        for k in keys {
            match (w.get(k), g.get(k)) {
                (a, b) if a == b => {}
                (Some(Value::Object(a)), Some(Value::Object(b))) => {
                    let series: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                    for s in series {
                        if a.get(s) != b.get(s) {
                            diffs.push(format!(
                                "{case}: {section} {k}: series {s}: expected {}, got {}",
                                a.get(s).map_or("nothing".into(), Value::to_string),
                                b.get(s).map_or("nothing".into(), Value::to_string)
                            ));
                        }
                    }
                }
                (a, b) => diffs.push(format!(
                    "{case}: {section} {k}: expected {}, got {}",
                    a.map_or("nothing".into(), Value::to_string),
                    b.map_or("nothing".into(), Value::to_string)
                )),
            }
        }
    }
    diffs
}

/// Drop reasons no case triggers, and why.
const NOT_COVERED: &[(DropReason, &str)] = &[
    (
        DropReason::Shutdown,
        "counted only while the daemon stops (fanout or a queue closed, flush_on_shutdown = false), when /metrics is gone",
    ),
    (DropReason::Corrupt, "a damaged disk queue segment, found on restart (tests/durability.rs covers it)"),
];

/// Every relabel action (src/pipeline/stages/relabel.rs, `RelabelAction`).
const RELABEL_ACTIONS: &[&str] = &[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

#[test]
fn todays_pipeline_behaves_as_recorded() {
    let record = std::env::var_os(RECORD_ENV).is_some_and(|v| v == "1");
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["registry.yaml", "keys.yaml"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential").join(file),
            dir.path().join(file),
        )
        .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    let base = (now_ms() / HOUR_MS + 1) * HOUR_MS;
    let ports: BTreeMap<&str, Ports> =
        CASES.iter().map(|c| (*c, Ports { http: free_port(), grpc: free_port() })).collect();
    let fifos = fifo_sinks();
    for name in &fifos {
        let path = dir.path().join(format!("{name}.fifo"));
        let made = std::process::Command::new("mkfifo").arg(&path).status().is_ok_and(|s| s.success());
        assert!(made, "mkfifo {} failed", path.display());
    }
    let config = daemon_config(&ports);
    let mut daemon = Tsrelay::start(dir.path(), &config);
    for p in ports.values() {
        // A case with its own receivers may not listen on both.
        let grpc = format!("listen = \"127.0.0.1:{}\"", p.grpc);
        let listening = if config.contains(&grpc) { vec![p.http, p.grpc] } else { vec![p.http] };
        for port in listening {
            wait_for(Duration::from_secs(20), "receivers listening", || {
                std::net::TcpStream::connect(loopback(port)).ok().map(|_| ())
            });
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    let corpora: BTreeMap<&str, Corpus> = CASES
        .iter()
        .map(|c| {
            let text = std::fs::read_to_string(case_dir(c).join("corpus.txt")).expect("case corpus.txt");
            (*c, Corpus::parse(&text, base))
        })
        .collect();
    let mut responses: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let started = std::time::Instant::now();
    for case in CASES {
        for (request, key) in &corpora[case].requests {
            let answer = send(request, key.as_deref(), &ports[case], &runtime);
            responses.entry(case).or_default().push(answer);
        }
    }
    let sent_in = started.elapsed();
    // Every sample is settled once answered with ack = "delivered"; the
    // `sinks` case answers on acceptance, so wait until every pipeline has
    // handed each sample on or dropped it (the stuck sink's queue has decided
    // on every batch) before its pipe is read, then until every sink's books balance.
    wait_for(Duration::from_secs(20), "every pipeline's received = dropped + fanned out", || {
        handed_on(&daemon.metrics()).then_some(())
    });
    let drains: Vec<_> = fifos.iter().map(|name| drain_fifo(dir.path(), name)).collect();
    let metrics = wait_for(Duration::from_secs(20), "every sink's received = sent + dropped", || {
        let m = daemon.metrics();
        (handed_on(&m) && balanced(&m)).then_some(m)
    });
    // Closes the gRPC connections (their tasks live in this runtime), so the
    // daemon's graceful stop does not wait for them.
    drop(runtime);
    let stopping = std::time::Instant::now();
    assert!(daemon.process.terminate(Duration::from_secs(30)), "tsrelay did not stop:\n{}", daemon.process.log_tail());
    eprintln!("corpus sent in {:?}, daemon stopped in {:?}", sent_in, stopping.elapsed());
    for d in drains {
        d.join().expect("fifo reader");
    }

    let mut failures = Vec::new();
    // The exclusions stay honest: each leaves out something /metrics has.
    for (prefix, _) in EXCLUDED {
        if !metrics.keys().any(|k| k.starts_with(prefix)) {
            failures.push(format!("EXCLUDED names {prefix}, which /metrics does not have"));
        }
    }
    // Nothing on /metrics escapes the comparison unnoticed: what no case owns is excluded on purpose.
    for k in metrics.keys().filter(|k| !CASES.iter().any(|c| owned_by(k, c))) {
        if excluded(k).is_none() && !k.contains("listener=\"admin\"") {
            failures.push(format!("{k} belongs to no case and is not in EXCLUDED"));
        }
    }
    let mut triggered: BTreeSet<String> = BTreeSet::new();
    for case in CASES {
        let sink_files: BTreeMap<String, PathBuf> = std::fs::read_dir(dir.path())
            .expect("temp dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_string();
                (p.extension()? == "lp" && (stem == *case || stem.starts_with(&format!("{case}_"))))
                    .then_some((stem, p))
            })
            .collect();
        let output: BTreeMap<String, BTreeMap<String, Vec<Value>>> =
            sink_files.iter().map(|(sink, path)| (sink.clone(), read_output(path, base))).collect();
        let counters: BTreeMap<String, f64> = metrics
            .iter()
            .filter(|(k, _)| k.starts_with("tsrelay_") && owned_by(k, case) && excluded(k).is_none())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (k, v) in &counters {
            if k.starts_with("tsrelay_dropped_samples_total{") && *v > 0.0 {
                triggered.extend(k.split("reason=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string));
            }
        }
        let got = json!({ "responses": responses[case], "output": output, "counters": counters });
        for intent in &corpora[case].intents {
            if let Some(f) = intent.failure(&counters, &got["output"]) {
                failures.push(format!("{case}: intent not met: {f}"));
            }
        }
        let expected_path = case_dir(case).join("expected.json");
        if record {
            let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
            std::fs::write(&expected_path, text).expect("write expected.json");
            continue;
        }
        let want: Value = match std::fs::read_to_string(&expected_path) {
            Ok(text) => serde_json::from_str(&text).expect("expected.json is JSON"),
            Err(e) => panic!("{}: {e} (record with {RECORD_ENV}=1, see the file header)", expected_path.display()),
        };
        failures.extend(differences(case, &want, &got));
    }

    // Every drop reason is triggered by some case, except the documented ones.
    for reason in DropReason::ALL {
        let documented = NOT_COVERED.iter().any(|(r, _)| *r == reason);
        let seen = triggered.contains(reason.as_str());
        if seen == documented {
            failures.push(format!(
                "drop reason {}: {}",
                reason.as_str(),
                if seen { "triggered, yet listed in NOT_COVERED" } else { "no case triggers it" }
            ));
        }
    }
    let relabel = std::fs::read_to_string(case_dir("relabel").join("config.toml")).expect("relabel config");
    for action in RELABEL_ACTIONS {
        if !relabel.contains(&format!("action = \"{action}\"")) {
            failures.push(format!("relabel action {action} is in no rule of the relabel case"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s):\n{}\n\nthe daemon's log ends with:\n{}",
        failures.len(),
        failures.join("\n"),
        daemon.process.log_tail()
    );
}
