//! The Parquet archive sink (issue 18) against the real binary, read back by
//! DuckDB and pyarrow (pip `duckdb pyarrow`):
//!
//! - `a_…`: line protocol sent with curl (`ack = "delivered"`): the 204 comes
//!   only once the files are visible; both readers see every sample once,
//!   with its labels, its `columns` and its exact value, under the Hive layout.
//! - `b_…`: `max_file_bytes` splits a partition over several files, `retention`
//!   deletes old hour partitions whole; metrics count files and deletions.
//! - `c_…`: `kill -9` while files roll under load with a disk queue: no torn
//!   or temporary file is visible after the restart, and every acknowledged
//!   sample is in exactly one file.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::load::{HttpLoad, now_ms};
use common::*;

const INSTALL: &str = "python3 -m pip install duckdb pyarrow";
const COLUMNS: [&str; 1] = ["host"];

/// One archived sample as a reader sees it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Row {
    metric: String,
    date: String,
    hour: String,
    ts: i64,
    value: f64,
    labels: BTreeMap<String, String>,
    columns: BTreeMap<String, Option<String>>,
    file: String,
}

fn read_archive(reader: &str, root: &Path) -> Vec<Row> {
    let check = Command::new("python3").args(["-c", "import duckdb, pyarrow"]).status();
    assert!(check.is_ok_and(|s| s.success()), "duckdb/pyarrow missing: {INSTALL}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/read_parquet.py");
    let out = Command::new("python3").arg(script).arg(reader).arg(root).args(COLUMNS).output().expect("run python3");
    assert!(out.status.success(), "{reader} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("row json")).collect()
}

/// `(metric, ts, sorted labels)` → how often present.
fn counts(rows: &[Row]) -> BTreeMap<(String, i64, String), usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        let labels = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        *m.entry((r.metric.clone(), r.ts, labels)).or_insert(0) += 1;
    }
    m
}

/// Every file name under the archive's partitions.
fn file_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("_tsrelay") {
                    stack.push(p);
                }
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn curl_write(port: u16, body: &str) -> (u16, Duration) {
    let curl = require_binary("curl", "apt-get install -y curl");
    let started = std::time::Instant::now();
    let mut child = Command::new(curl)
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "--data-binary", "@-"])
        .arg(format!("http://127.0.0.1:{port}/write?precision=ms"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run curl");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write body to curl");
    }
    let out = child.wait_with_output().expect("curl output");
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (code, started.elapsed())
}

fn hour_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(3_600_000)
}

#[test]
fn a_every_sample_once_with_labels_and_exact_value() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let t = Tsrelay::start(
        dir.path(),
        &format!(
            r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
ack = "delivered"

[sinks.archive]
type = "parquet"
path = "archive"
columns = ["host"]
roll_every = "2s"

[pipelines.main]
receivers = ["http"]
sinks = ["archive"]
"#
        ),
    );
    let now = hour_start(now_ms()) + 1_234;
    let before = now - 3_600_000 - 17;
    // Values a float formatter or a lossy codec would change.
    let body = format!(
        "cpu,host=a,dc=eu value=123456789.12345679 {before}\n\
         cpu,host=a,dc=eu value=0.1 {now}\n\
         cpu,host=b,dc=eu value=-2.5e-300 {now}\n\
         mem,host=a used=42i,free=18446744073709551615u {now}\n\
         disk,dev=sd\\ a value=1e300 {now}\n"
    );
    let (code, took) = curl_write(http, &body);
    assert_eq!(code, 204, "{}", t.process.log_tail());
    let root = dir.path().join("archive");
    // Delivered means durable: the files are there the moment the 204 is.
    let expected: BTreeMap<(String, i64, String), usize> = [
        ("cpu", now, "dc=eu,host=a"),
        ("cpu", now, "dc=eu,host=b"),
        ("cpu", before, "dc=eu,host=a"),
        ("mem_used", now, "host=a"),
        ("mem_free", now, "host=a"),
        ("disk", now, "dev=sd a"),
    ]
    .into_iter()
    .map(|(m, ts, l)| ((m.to_string(), ts, l.to_string()), 1))
    .collect();
    for reader in ["duckdb", "pyarrow"] {
        let rows = read_archive(reader, &root);
        assert_eq!(counts(&rows), expected, "{reader} (answered after {took:?})");
        let value = |m: &str, ts: i64, host: Option<&str>| {
            rows.iter()
                .find(|r| r.metric == m && r.ts == ts && r.labels.get("host").map(String::as_str) == host)
                .map(|r| r.value.to_bits())
        };
        assert_eq!(value("cpu", now, Some("a")), Some(0.1f64.to_bits()), "{reader}");
        assert_eq!(value("cpu", now, Some("b")), Some((-2.5e-300f64).to_bits()), "{reader}");
        assert_eq!(value("cpu", before, Some("a")), Some(123456789.12345679f64.to_bits()), "{reader}");
        assert_eq!(value("mem_used", now, Some("a")), Some(42f64.to_bits()), "{reader}");
        assert_eq!(value("mem_free", now, Some("a")), Some(f64::to_bits(18446744073709551615u64 as f64)), "{reader}");
        assert_eq!(value("disk", now, None), Some(1e300f64.to_bits()), "{reader}");
        for r in &rows {
            assert_eq!(r.columns.get("host").cloned().flatten(), r.labels.get("host").cloned(), "{reader}: {r:?}");
            let hour: i64 = r.hour.parse().unwrap();
            assert_eq!(hour, (r.ts.rem_euclid(86_400_000)) / 3_600_000, "{reader}: hour partition of {r:?}");
            assert!(r.file.contains(&format!("metric={}/date={}/hour={}/part-", r.metric, r.date, r.hour)), "{r:?}");
        }
    }
    let names = file_names(&root);
    assert!(names.iter().all(|n| n.ends_with(".parquet") && n.contains("/part-")), "{names:?}");
    assert_eq!(t.metric_sum("tsrelay_parquet_files_written_total", &["sink=\"archive\""]), names.len() as f64);
    let m = t.metrics();
    let l = "sink=\"archive\"";
    assert_eq!(sum_metric(&m, "tsrelay_sink_sent_samples_total", &[l]), 6.0);
    assert_eq!(sum_metric(&m, "tsrelay_queue_samples", &[l]), 0.0);
}

#[test]
fn b_max_file_bytes_splits_and_retention_deletes_whole_hours() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    // An earlier run's partitions: one long past retention, one within it.
    let old = root.join("metric=cpu/date=2020-01-01/hour=00");
    let recent_ms = hour_start(now_ms()) - 3_600_000;
    let recent_hour = (recent_ms.rem_euclid(86_400_000)) / 3_600_000;
    let days = recent_ms.div_euclid(86_400_000);
    let recent_date = Command::new("date").args(["-u", "-d", &format!("@{}", days * 86_400), "+%F"]).output().unwrap();
    let recent_date = String::from_utf8_lossy(&recent_date.stdout).trim().to_string();
    let recent = root.join(format!("metric=cpu/date={recent_date}/hour={recent_hour:02}"));
    for d in [&old, &recent] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("marker"), b"kept or deleted whole").unwrap();
    }
    let http = free_port();
    let t = Tsrelay::start(
        dir.path(),
        &format!(
            r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"

[sinks.archive]
type = "parquet"
path = "archive"
columns = ["host"]
max_file_bytes = 16384
retention = "3h"

[pipelines.main]
receivers = ["http"]
sinks = ["archive"]
"#
        ),
    );
    assert!(!old.exists(), "the partition past retention is deleted at start");
    assert!(!root.join("metric=cpu/date=2020-01-01").exists(), "and its empty date directory");
    assert!(recent.join("marker").exists());
    // 20,000 samples of one series-rich metric in one hour, values that do not compress.
    let base = hour_start(now_ms());
    let mut sent = 0;
    for chunk in 0..4 {
        let body: String = (0..5000)
            .map(|i| {
                let n = chunk * 5000 + i;
                let v = ((n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / 7.0;
                format!("net,host=h{},port=p{} value={v:?} {}\n", n % 97, n % 13, base + n as i64)
            })
            .collect();
        let (code, _) = curl_write(http, &body);
        assert_eq!(code, 204);
        sent += 5000;
    }
    let l = "sink=\"archive\"";
    wait_for(Duration::from_secs(20), "files rolled by size", || {
        (t.metric_sum("tsrelay_parquet_files_written_total", &[l]) >= 2.0).then_some(())
    });
    let mut process = t.process;
    assert!(process.terminate(Duration::from_secs(20)), "graceful stop");
    let rows = read_archive("duckdb", &root);
    assert_eq!(rows.len(), sent, "every sample once");
    assert!(counts(&rows).values().all(|&c| c == 1));
    let net_files: BTreeSet<&str> = rows.iter().map(|r| r.file.as_str()).collect();
    assert!(net_files.len() >= 2, "max_file_bytes split the hour: {net_files:?}");
    for f in &net_files {
        let size = std::fs::metadata(f).unwrap().len();
        // Checked after each batch: a file ends at most one batch above the bound.
        assert!(size < 16384 * 8, "{f}: {size} bytes");
    }
    assert!(recent.join("marker").exists(), "a partition within retention stays");
}

#[test]
fn c_kill_9_during_rolls_under_load_leaves_no_torn_file_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = format!(
        r#"
data_dir = "data"

[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
ack = "delivered"
max_wait_ms = 200

[sinks.archive]
type = "parquet"
path = "archive"
columns = ["host"]
roll_every = "1s"
max_pending_samples = 3000
queue = {{ type = "disk", max_bytes = 67108864, when_full = "block", fsync = "always" }}

[pipelines.main]
receivers = ["http"]
sinks = ["archive"]
"#
    );
    let t = Tsrelay::start(dir.path(), &config);
    let root = dir.path().join("archive");
    let l = "sink=\"archive\"";
    let load = HttpLoad::start(http, 50, 400.0);
    // Load until several rolls have happened, then kill in the middle of the stream.
    wait_for(Duration::from_secs(20), "several rolls under load", || {
        (t.metric_sum("tsrelay_parquet_rolls_total", &[l]) >= 4.0).then_some(())
    });
    let (admin, config_path) = (t.admin, t.config_path.clone());
    let mut process = t.process;
    process.kill9();
    let report = load.stop();
    assert!(!report.acked.is_empty(), "no request acknowledged before the kill: {report:?}");
    // Whatever is visible now reads back whole: no torn file under a visible name.
    for name in file_names(&root).iter().filter(|n| n.ends_with(".parquet")) {
        assert!(name.contains("/part-"), "{name}");
    }
    let before_restart = read_archive("pyarrow", &root);
    assert!(!before_restart.is_empty());

    let t = Tsrelay::start_with_file(dir.path(), &config_path, admin);
    wait_for(Duration::from_secs(30), "the replayed queue archived", || {
        let m = t.metrics();
        let received = sum_metric(&m, "tsrelay_sink_received_samples_total", &[l]);
        let queued = sum_metric(&m, "tsrelay_queue_samples", &[l]);
        (queued == 0.0 && received > 0.0).then_some(())
    });
    let mut process = t.process;
    assert!(process.terminate(Duration::from_secs(20)), "graceful stop");
    let names = file_names(&root);
    assert!(names.iter().all(|n| n.ends_with(".parquet") && n.contains("/part-")), "temporary file left: {names:?}");
    let rows = read_archive("duckdb", &root);
    let mut seen: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for r in &rows {
        *seen.entry((r.labels["k"].clone(), r.ts)).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(duplicates.is_empty(), "samples archived twice after the crash: {duplicates:?} ({} rows)", rows.len());
    let mut missing = Vec::new();
    for id in &report.acked {
        for k in 0..report.per_request {
            if !seen.contains_key(&(k.to_string(), report.base_ms + *id as i64)) {
                missing.push((*id, k));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged samples missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Every archived value is the one sent (k = value).
    assert!(rows.iter().all(|r| r.value.to_string() == r.labels["k"]), "a value changed");
    let visible_before: BTreeSet<String> = before_restart.iter().map(|r| r.file.clone()).collect();
    let visible_after: BTreeSet<String> = rows.iter().map(|r| r.file.clone()).collect();
    assert!(visible_before.is_subset(&visible_after), "a visible file disappeared");
}

#[test]
fn archive_example_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["validate", "--config"])
        .arg(root.join("config/examples/archive.toml"))
        .output()
        .expect("run tsrelay validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "config/examples/archive.toml does not validate: {text}");
    assert!(text.contains("sinks.archive parquet files in progress"), "the budget counts the archive: {text}");
}
