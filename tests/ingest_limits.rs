//! Limits applied while decoding, against the real binary with real clients (the curl
//! binary, Python grpcio): a line over a limit is answered by name and reason and the rest
//! is accepted; large bodies from several senders are accepted with bounded memory; the
//! README's quick start works exactly as written.
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn curl() -> std::path::PathBuf {
    require_binary("curl", "apt-get install curl")
}

/// POSTs `body_file` with the curl binary; returns (status, response body).
fn curl_post(url: &str, body_file: &Path, extra: &[&str]) -> (u16, String) {
    let out = Command::new(curl())
        .args(["-sS", "--max-time", "120", "-o", "-", "-w", "\n%{http_code}", "-XPOST", url, "--data-binary"])
        .arg(format!("@{}", body_file.display()))
        .args(extra)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl -w output");
    (code.trim().parse().expect("status code"), body.to_string())
}

/// Peak and current resident set of a process, from /proc (bytes).
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

fn now_ns() -> i64 {
    tsrelay::model::now_ms() * 1_000_000
}

fn start(dir: &Path, port: u16, sink: &str, validate: &str) -> Tsrelay {
    start_with(dir, port, "", sink, validate)
}

fn start_with(dir: &Path, port: u16, receiver_extra: &str, sink: &str, validate: &str) -> Tsrelay {
    let config = format!(
        r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{port}"
{receiver_extra}
{sink}
[pipelines.main]
receivers = ["http"]
sinks = ["out"]
[pipelines.main.validate]
{validate}
"#
    );
    Tsrelay::start(dir, &config)
}

const FILE_SINK: &str = "[sinks.out]\ntype = \"file\"\npath = \"out.lp\"\nbatch = { max_age_ms = 10 }";
const BLACKHOLE_SINK: &str = "[sinks.out]\ntype = \"blackhole\"";

#[test]
fn a_line_over_each_limit_is_answered_by_line_and_reason_and_the_rest_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = start(
        dir.path(),
        port,
        FILE_SINK,
        "max_labels = 2\nmax_label_value_length = 4\nmax_name_length = 16\nmax_fields_per_line = 3\nmax_past = \"1h\"",
    );
    let now = now_ns();
    let body = format!(
        "good,a=1,b=2 f=1,g=2 {now}\n\
         labels,a=1,b=2,c=3 f=1 {now}\n\
         value,a=12345 f=1 {now}\n\
         name f_much_too_long_for_it=1 {now}\n\
         fields f=1,g=2,h=3,i=4 {now}\n\
         old f=1 1700000000000000000\n\
         min f=1 -9223372036854775808\n\
         syntax f=\n\
         good2 value=7 {now}\n"
    );
    let file = dir.path().join("body.lp");
    std::fs::write(&file, body).unwrap();
    let (code, answer) = curl_post(&format!("http://127.0.0.1:{port}/write"), &file, &[]);
    assert_eq!(code, 400, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON partial-write answer");
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"], 7, "{answer}");
    let errors: Vec<(u64, String)> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["message"].as_str().unwrap().to_string()))
        .collect();
    let expected = [
        (2, "(too_many_labels)"),
        (3, "(label_value_too_long)"),
        (4, "(invalid_name)"),
        (5, "(parse_error)"),
        (6, "(timestamp_out_of_window)"),
        (7, "(timestamp_out_of_window)"),
    ];
    for ((line, message), (want, reason)) in errors.iter().zip(expected) {
        assert_eq!(*line, want, "{errors:?}");
        assert!(message.starts_with(&format!("line {want}: ")) && message.ends_with(reason), "{message}");
    }
    assert_eq!(errors[6].0, 8, "the syntax error is reported too: {errors:?}");

    let path = dir.path().join("out.lp");
    let lines = wait_for(Duration::from_secs(10), "3 lines in out.lp", || {
        let l = read_lp_file(&path);
        (l.len() >= 3).then_some(l)
    });
    let mut names: Vec<&str> = lines.iter().map(|(s, _, _)| s.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["good2", "good_f,a=1,b=2", "good_g,a=1,b=2"]);

    let m = t.metrics();
    let dropped = |reason: &str| {
        sum_metric(&m, "tsrelay_dropped_samples_total", &["receiver=\"http\"", &format!("reason=\"{reason}\"")])
    };
    assert_eq!(dropped("too_many_labels"), 1.0);
    assert_eq!(dropped("label_value_too_long"), 1.0);
    assert_eq!(dropped("invalid_name"), 1.0);
    assert_eq!(dropped("timestamp_out_of_window"), 2.0);
    // The four fields of the line over max_fields_per_line, and the unparsable line.
    assert_eq!(dropped("parse_error"), 5.0);
    assert!(t.process.child.id() > 0);
}

#[test]
fn a_line_with_a_hundred_thousand_tags_and_fields_is_refused_without_expanding() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut t = start(dir.path(), port, FILE_SINK, "");
    let mut line = String::from("wide");
    for i in 0..100_000 {
        line.push_str(&format!(",tag{i}=v{i}"));
    }
    for i in 0..100_000 {
        line.push_str(if i == 0 { " " } else { "," });
        line.push_str(&format!("f{i}=1"));
    }
    line.push_str("\nnarrow v=1\n");
    // ~2.6 MB of text, sent gzipped as a sender would.
    let file = dir.path().join("wide.lp.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(line.as_bytes()).unwrap();
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let url = format!("http://127.0.0.1:{port}/write");
    let (code, answer) = curl_post(&url, &file, &["-H", "Content-Encoding: gzip"]);
    assert_eq!(code, 400, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(1), Some(1)), "{answer}");
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("line 1: 100000 fields, more than max_fields_per_line = 1000"), "{message}");
    let (peak, _) = rss(t.process.child.id());
    assert!(peak < 256 << 20, "peak RSS {} MiB for one 2.6 MB line", peak >> 20);
    assert!(t.process.is_running());
}

#[test]
fn large_bodies_from_several_senders_are_all_accepted_with_bounded_memory() {
    const LINES: usize = 200_000;
    const SENDERS: usize = 3;
    const BODIES_PER_SENDER: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // As many requests at once as there are senders: the limit is not what is measured.
    let receiver = format!("max_concurrent_requests = {SENDERS}");
    let mut t = start_with(dir.path(), port, &receiver, BLACKHOLE_SINK, "");
    let now = now_ns();
    let mut body = String::with_capacity(LINES * 40);
    for i in 0..LINES {
        body.push_str(&format!("cpu,host=h{},core=c{} usage={}.5 {now}\n", i % 2000, i % 64, i % 100));
    }
    assert!(body.len() > 5_000_000, "{} bytes", body.len());
    let file = dir.path().join("big.lp");
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://127.0.0.1:{port}/write");
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (url, file) = (url.clone(), file.clone());
            std::thread::spawn(move || (0..BODIES_PER_SENDER).map(|_| curl_post(&url, &file, &[])).collect::<Vec<_>>())
        })
        .collect();
    let mut answers = Vec::new();
    for s in senders {
        answers.extend(s.join().unwrap());
    }
    for (code, answer) in &answers {
        assert_eq!(*code, 204, "every large body is accepted: {answer}");
    }
    let total = (LINES * SENDERS * BODIES_PER_SENDER) as f64;
    assert_eq!(t.metric_sum("tsrelay_received_samples_total", &[]), total);
    // The bodies repeat series and timestamps, so the monotonic stage drops the repeats as
    // `duplicate`: every sample is delivered or counted, none refused at the door.
    wait_for(Duration::from_secs(180), "every sample delivered or counted", || {
        let m = t.metrics();
        let settled = sum_metric(&m, "tsrelay_sink_sent_samples_total", &["sink=\"out\""])
            + sum_metric(&m, "tsrelay_dropped_samples_total", &[]);
        (settled >= total).then_some(())
    });
    assert_eq!(t.metric_sum("tsrelay_dropped_samples_total", &["receiver=\"http\""]), 0.0);
    let (peak, _) = rss(t.process.child.id());
    // The default limits.memory_bytes (512 MiB) is the budget.
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
    assert!(t.process.is_running());
}

/// A body larger than the decoder's piece (256 KiB) is decoded while it arrives: the
/// answer is the same whether it comes with a length, chunked or gzipped — line numbers
/// of refused lines counted over the whole body, a string value with line feeds kept whole.
#[test]
fn a_large_body_decoded_as_it_arrives_answers_as_a_whole_one() {
    const LINES: usize = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = start(dir.path(), port, BLACKHOLE_SINK, "");
    let now = now_ns();
    let mut body = String::new();
    let mut bad_lines = Vec::new();
    for i in 1..=LINES {
        match i {
            // Every 20,000th line is not line protocol.
            _ if i % 20_000 == 7 => {
                body.push_str("not line protocol\n");
                bad_lines.push(i);
            }
            // A string value with two line feeds, two thirds into the body: lines 40,001–40,003.
            40_001 => body.push_str(&format!("note,host=a text=\"one\ntwo\nthree\",v=1 {now}\n")),
            40_002 | 40_003 => {}
            _ => body.push_str(&format!("cpu,host=h{},core=c{} usage={}.5 {now}\n", i % 500, i % 16, i % 100)),
        }
    }
    assert!(body.len() > 8 * 256 * 1024, "{} bytes", body.len());
    let plain = dir.path().join("big.lp");
    std::fs::write(&plain, &body).unwrap();
    let zipped = dir.path().join("big.lp.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let zipped_bytes = gz.finish().unwrap();
    std::fs::write(&zipped, &zipped_bytes).unwrap();
    let url = format!("http://127.0.0.1:{port}/write");
    let accepted = (LINES - 2 - bad_lines.len()) as u64;
    let ways: [(&str, &Path, &[&str]); 3] = [
        ("with a length", &plain, &[]),
        ("chunked", &plain, &["-H", "Transfer-Encoding: chunked"]),
        ("gzipped", &zipped, &["-H", "Content-Encoding: gzip"]),
    ];
    for (way, file, extra) in ways {
        let (code, answer) = curl_post(&url, file, extra);
        assert_eq!(code, 400, "{way}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["accepted"].as_u64(), Some(accepted), "{way}: {answer}");
        assert_eq!(answer["rejected"].as_u64(), Some(bad_lines.len() as u64), "{way}: {answer}");
        let lines: Vec<usize> =
            answer["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap() as usize).collect();
        assert_eq!(lines, bad_lines, "{way}: {answer}");
    }
    assert_eq!(t.metric_sum("tsrelay_received_samples_total", &[]), 3.0 * accepted as f64);
    // NDJSON the same way (chunked): a record is one line, whatever its strings hold.
    let now_ms = now / 1_000_000;
    let mut records = String::new();
    for i in 1..=30_000 {
        if i == 25_001 {
            records.push_str("{\"name\": \"cut\n");
        } else {
            let labels = format!("{{\"host\": \"h{}\", \"note\": \"a \\\"quoted\\\" word\"}}", i % 500);
            records.push_str(&format!(
                "{{\"name\": \"temp\", \"labels\": {labels}, \"value\": {i}, \"timestamp\": {now_ms}}}\n"
            ));
        }
    }
    let ndjson = dir.path().join("big.ndjson");
    std::fs::write(&ndjson, &records).unwrap();
    let ingest = format!("http://127.0.0.1:{port}/api/v1/ingest");
    let (code, answer) = curl_post(&ingest, &ndjson, &["-H", "Transfer-Encoding: chunked"]);
    assert_eq!(code, 400, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(29_999), Some(1)), "{answer}");
    assert_eq!(answer["errors"][0]["line"].as_u64(), Some(25_001), "{answer}");
    assert_eq!(t.metric_sum("tsrelay_received_samples_total", &[]), 3.0 * accepted as f64 + 29_999.0);
    // A gzip stream cut short is refused whole, by name.
    let cut = dir.path().join("cut.lp.gz");
    std::fs::write(&cut, &zipped_bytes[..zipped_bytes.len() / 2]).unwrap();
    let (code, answer) = curl_post(&url, &cut, &["-H", "Content-Encoding: gzip"]);
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("invalid gzip body"), "{answer}");
    assert_eq!(t.metric_sum("tsrelay_received_samples_total", &[]), 3.0 * accepted as f64 + 29_999.0);
}

/// The InfluxDB 1.x CLI (`influx -import`) writes a file through `/write` as it does to
/// InfluxDB: it pings first, then posts batches of 5,000 lines, decoded as they arrive.
#[test]
fn the_influx_cli_imports_line_protocol() {
    let influx = require_binary("influx", "apt-get install -y influxdb-client");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = start(dir.path(), port, BLACKHOLE_SINK, "");
    let now = now_ns();
    let mut file = String::from("# DML\n# CONTEXT-DATABASE: db\n");
    for i in 0..12_000i64 {
        file.push_str(&format!("imported,host=h{} usage={i} {}\n", i % 50, now + i));
    }
    let path = dir.path().join("import.txt");
    std::fs::write(&path, file).unwrap();
    let out = Command::new(influx)
        .args(["-host", "127.0.0.1", "-port", &port.to_string(), "-precision", "ns", "-import", "-path"])
        .arg(&path)
        .output()
        .expect("run influx");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Processed 12000 inserts") && text.contains("Failed 0 inserts"), "{text}");
    assert_eq!(t.metric_sum("tsrelay_received_samples_total", &[]), 12_000.0);
}

#[test]
fn a_body_over_the_sample_limit_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = start(dir.path(), port, FILE_SINK, "max_samples_per_request = 100");
    let body: String = (0..101).map(|i| format!("m v={i}\n")).collect();
    let file = dir.path().join("body.lp");
    std::fs::write(&file, body).unwrap();
    let (code, answer) = curl_post(&format!("http://127.0.0.1:{port}/write"), &file, &[]);
    assert_eq!(code, 413, "{answer}");
    assert!(answer.contains("max_samples_per_request"), "{answer}");
    assert_eq!(t.metric_sum("tsrelay_received_samples_total", &[]), 0.0);
}

/// The README's "Try it" block, run as written against `tsrelay run` in a copy of the
/// repository's config (only the ports changed, as the well-known ones may be taken).
#[test]
fn the_readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme.split("Try it").nth(1).and_then(|rest| rest.split("```sh\n").nth(1)).unwrap();
    let block = block.split("```").next().unwrap();
    let commands: Vec<&str> = block.lines().filter(|l| !l.trim_start().starts_with('#') && !l.is_empty()).collect();
    assert!(commands.iter().any(|c| c.contains("cat config/data/out.lp")), "{commands:?}");

    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let (http, grpc, admin) = (free_port(), free_port(), free_port());
    let repo_config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tsrelay.toml")).unwrap();
    let ports = |text: &str| {
        text.replace("127.0.0.1:8186", &format!("127.0.0.1:{http}"))
            .replace("127.0.0.1:4317", &format!("127.0.0.1:{grpc}"))
            .replace("127.0.0.1:9188", &format!("127.0.0.1:{admin}"))
    };
    std::fs::write(config_dir.join("tsrelay.toml"), ports(&repo_config)).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/config/metrics.yaml"), config_dir.join("metrics.yaml"))
        .unwrap();
    // `tsrelay run` without --config, from the directory holding config/, as in the README.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsrelay"));
    cmd.arg("run").current_dir(dir.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TSRELAY_") {
            cmd.env_remove(k);
        }
    }
    let mut daemon = ChildGuard::spawn("tsrelay", &mut cmd, dir.path());
    wait_for(Duration::from_secs(20), "tsrelay ready", || {
        assert!(daemon.is_running(), "tsrelay exited:\n{}", daemon.log_tail());
        http_get(loopback(admin), "/readyz").filter(|(code, _)| *code == 200).map(|_| ())
    });
    let mut outputs = Vec::new();
    for command in &commands {
        let out = Command::new("bash")
            .args(["-c", &ports(command)])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run a README command");
        assert!(out.status.success(), "`{command}` failed: {}", String::from_utf8_lossy(&out.stderr));
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert!(outputs[0].starts_with("HTTP/1.1 204"), "the write is accepted: {}", outputs[0]);
    assert!(outputs[1].contains("tsrelay_received_samples_total"), "{}", outputs[1]);
    let mut lines: Vec<&str> = outputs.last().unwrap().lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "the two samples are in config/data/out.lp: {lines:?}\n{}", daemon.log_tail());
    assert!(
        lines[0].starts_with("cpu_usage_idle,host=a value=92.5 ")
            && lines[1].starts_with("cpu_usage_user,host=a value=3.0 ")
    );
}

/// The gRPC receiver with Python's grpcio, stubs generated from the project's proto.
#[test]
fn grpcio_client_gets_limits_by_series_and_extreme_timestamps_refused() {
    let python = require_binary("python3", "apt-get install python3");
    let check = Command::new(&python).args(["-c", "import grpc, grpc_tools"]).output().unwrap();
    assert!(
        check.status.success(),
        "test needs Python grpcio and grpcio-tools. Install them with: python3 -m pip install grpcio grpcio-tools \
         (or run scripts/install-test-deps)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{port}"
[sinks.out]
type = "blackhole"
[pipelines.main]
receivers = ["grpc"]
sinks = ["out"]
[pipelines.main.validate]
max_labels = 2
max_samples_per_request = 300000
"#
    );
    let t = Tsrelay::start(dir.path(), &config);
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let generated = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out", ".", "--grpc_python_out", "."])
        .arg(format!("{proto_dir}/tsrelay/v1/ingest.proto"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(generated.status.success(), "protoc: {}", String::from_utf8_lossy(&generated.stderr));
    let script = format!(
        r#"
import json, time, grpc
from tsrelay.v1 import ingest_pb2 as pb, ingest_pb2_grpc as rpc
ch = grpc.insecure_channel("127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
stub = rpc.IngestStub(ch)
now = int(time.time() * 1000)
def series(name, labels, timestamps):
    return pb.Series(labels=[pb.Label(name="__name__", value=name)] + [pb.Label(name=k, value=v) for k, v in labels],
                     samples=[pb.Sample(value=1.0, timestamp=t) for t in timestamps])
out = {{}}
r = stub.Write(pb.WriteRequest(id=1, series=[
    series("ok", [("a", "1")], [now, now + 1]),
    series("wide", [("a", "1"), ("b", "2"), ("c", "3")], [now]),
    series("min", [], [-(2 ** 63), now]),
]), timeout=30)
out["small"] = {{"id": r.id, "accepted": r.accepted, "rejected": r.rejected, "errors": list(r.errors)}}
big = pb.WriteRequest(id=2, series=[series("big", [("host", "h%d" % i)], [now - j for j in range(20)]) for i in range(10000)])
r = stub.Write(big, timeout=60)
out["big"] = {{"accepted": r.accepted, "rejected": r.rejected}}
too_big = pb.WriteRequest(id=3, series=[series("big", [("host", "h%d" % i)], [now - j for j in range(40)]) for i in range(10000)])
try:
    stub.Write(too_big, timeout=60)
    out["too_big"] = "accepted"
except grpc.RpcError as e:
    out["too_big"] = [e.code().name, e.details()]
print(json.dumps(out))
"#
    );
    let run = Command::new(&python).args(["-c", &script]).current_dir(dir.path()).output().unwrap();
    assert!(run.status.success(), "grpcio client: {}", String::from_utf8_lossy(&run.stderr));
    let out: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let small = &out["small"];
    assert_eq!(
        (small["id"].as_u64(), small["accepted"].as_u64(), small["rejected"].as_u64()),
        (Some(1), Some(3), Some(2))
    );
    let errors: Vec<&str> = small["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(errors[0].starts_with("series 1: 3 labels") && errors[0].ends_with("(too_many_labels)"), "{errors:?}");
    assert!(errors[1].starts_with("series 2: 1 samples refused (timestamp_out_of_window)"), "{errors:?}");
    assert_eq!(out["big"]["accepted"].as_u64(), Some(200_000), "{out}");
    assert_eq!(out["too_big"][0].as_str(), Some("INVALID_ARGUMENT"), "{out}");
    assert!(out["too_big"][1].as_str().unwrap().contains("max_samples_per_request"), "{out}");
    let m = t.metrics();
    let dropped = |reason: &str| {
        sum_metric(&m, "tsrelay_dropped_samples_total", &["receiver=\"grpc\"", &format!("reason=\"{reason}\"")])
    };
    assert_eq!(dropped("too_many_labels"), 1.0);
    assert_eq!(dropped("timestamp_out_of_window"), 1.0);
}
