//! The sink driven by the shared worker, files read back with the parquet crate.
//! (DuckDB and pyarrow read them in tests/parquet_sink.rs.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, Float64Array, MapArray, StringArray, TimestampMillisecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::model::{Batch, Labels, Sample};
use crate::queue::{DiskQueue, DiskQueueOptions, FsyncPolicy, Ledger, MemoryQueue, SinkQueue, WhenFull};
use crate::sinks::{BatchConfig, run_worker};
use crate::telemetry::{Health, SinkMetrics};

const T0: i64 = 1_796_389_200_000; // 2026-12-04T13:00:00Z

fn config(extra: &str) -> ParquetSinkConfig {
    let c: ParquetSinkConfig = toml::from_str(&format!("path = \"unused\"\ncolumns = [\"host\"]\n{extra}")).unwrap();
    c.check().unwrap();
    c
}

fn batch(metric: &str, hosts: std::ops::Range<usize>, ts: i64) -> Arc<Batch> {
    let samples = hosts
        .map(|h| {
            let labels: Labels =
                [("__name__", metric.to_string()), ("dc", "eu".to_string()), ("host", format!("h{h}"))]
                    .into_iter()
                    .collect();
            Sample::new(labels, h as f64 + 0.25, ts)
        })
        .collect();
    Arc::new(Batch::new(samples))
}

/// `(partition dir, host column, labels map as "k=v,...", timestamp, value)` of every visible row.
type Row = (String, Option<String>, String, i64, f64);

fn read_archive(root: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for dir in commit::partition_dirs(root).unwrap() {
        let rel = dir.strip_prefix(root).unwrap().to_string_lossy().to_string();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(!partition::is_temp(&name), "temporary file visible after close: {}", path.display());
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap().build().unwrap();
            for b in reader {
                let b = b.unwrap();
                let ts = b.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
                let vs = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
                let ls = b.column(2).as_any().downcast_ref::<MapArray>().unwrap();
                let host = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
                for i in 0..b.num_rows() {
                    let entries = ls.value(i);
                    let keys = entries.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    let vals = entries.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                    let labels: Vec<String> =
                        (0..keys.len()).map(|j| format!("{}={}", keys.value(j), vals.value(j))).collect();
                    let h = (!host.is_null(i)).then(|| host.value(i).to_string());
                    rows.push((rel.clone(), h, labels.join(","), ts.value(i), vs.value(i)));
                }
            }
        }
    }
    rows.sort_by(|a, b| (a.0.as_str(), a.3, &a.2).cmp(&(b.0.as_str(), b.3, &b.2)));
    rows
}

fn visible_files(root: &Path) -> usize {
    commit::partition_dirs(root)
        .unwrap()
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn memory_queue(name: &str, cap: usize) -> (Arc<SinkQueue>, Ledger) {
    let ledger = Ledger::new(SinkMetrics::new(name));
    (Arc::new(SinkQueue::Memory(MemoryQueue::new(cap, WhenFull::Block, ledger.clone()))), ledger)
}

fn worker(name: &str, sink: ParquetSink, queue: Arc<SinkQueue>) -> tokio::task::JoinHandle<()> {
    let health = Health::default().register_sink(name, Duration::from_secs(60));
    let batch = BatchConfig { max_samples: 1000, max_bytes: usize::MAX, max_age_ms: 5 };
    tokio::spawn(run_worker(vec![sink], queue, batch, health))
}

#[tokio::test]
async fn partitions_columns_and_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let sink = ParquetSink::open("pq-layout", &config(""), root.clone(), None).unwrap();
    let (queue, ledger) = memory_queue("pq-layout", 100_000);
    let handle = worker("pq-layout", sink, queue.clone());
    queue.push(batch("cpu", 0..3, T0 + 1_000)).await;
    queue.push(batch("mem", 0..2, T0 + 3_600_000)).await; // next hour
    let mut odd = batch("cpu", 0..1, T0 + 2_000);
    Arc::get_mut(&mut odd).unwrap().samples[0].labels.remove("host");
    queue.push(odd).await;
    queue.close();
    handle.await.unwrap();
    assert_eq!(ledger.queued(), 0);
    let rows = read_archive(&root);
    let cpu = "metric=cpu/date=2026-12-04/hour=13";
    let mem = "metric=mem/date=2026-12-04/hour=14";
    let expected: Vec<Row> = vec![
        (cpu.into(), Some("h0".into()), "dc=eu,host=h0".into(), T0 + 1_000, 0.25),
        (cpu.into(), Some("h1".into()), "dc=eu,host=h1".into(), T0 + 1_000, 1.25),
        (cpu.into(), Some("h2".into()), "dc=eu,host=h2".into(), T0 + 1_000, 2.25),
        (cpu.into(), None, "dc=eu".into(), T0 + 2_000, 0.25),
        (mem.into(), Some("h0".into()), "dc=eu,host=h0".into(), T0 + 3_600_000, 0.25),
        (mem.into(), Some("h1".into()), "dc=eu,host=h1".into(), T0 + 3_600_000, 1.25),
    ];
    assert_eq!(rows, expected);
    assert!(root.join(cpu).join("part-0.parquet").exists());
}

#[tokio::test]
async fn acks_wait_for_the_roll_and_pending_bound_forces_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let c = config("max_pending_samples = 100");
    let sink = ParquetSink::open("pq-pending", &c, root.clone(), None).unwrap();
    let (queue, ledger) = memory_queue("pq-pending", 100_000);
    let handle = worker("pq-pending", sink, queue.clone());
    queue.push(batch("cpu", 0..60, T0)).await;
    // Written into an open file: still queued, nothing visible.
    let partition = root.join("metric=cpu/date=2026-12-04/hour=13");
    wait_for("the first batch in a temporary file", || partition.join(partition::temp_name(0)).exists()).await;
    assert_eq!(ledger.queued(), 60, "samples count as queued until their file is durable");
    assert_eq!(visible_files(&root), 0);
    queue.push(batch("cpu", 60..120, T0)).await;
    wait_for("the pending bound to roll", || ledger.queued() == 0).await;
    assert_eq!(visible_files(&root), 1);
    assert_eq!(read_archive(&root).len(), 120);
    queue.close();
    handle.await.unwrap();
}

#[tokio::test]
async fn roll_every_and_max_file_bytes_and_max_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let c = config("roll_every = \"1s\"\nmax_open_files = 2\nmax_file_bytes = 4096");
    let sink = ParquetSink::open("pq-roll", &c, root.clone(), None).unwrap();
    let (queue, ledger) = memory_queue("pq-roll", 100_000);
    let handle = worker("pq-roll", sink, queue.clone());
    queue.push(batch("a", 0..5, T0)).await;
    // The file becomes visible a moment before its samples are settled.
    wait_for("roll_every to make the file visible and settle its samples", || {
        visible_files(&root) == 1 && ledger.queued() == 0
    })
    .await;
    // Three metrics in one batch with at most two open files: one roll inside the batch.
    let mut three = batch("b", 0..2, T0).samples.clone();
    three.extend(batch("c", 0..2, T0).samples.clone());
    three.extend(batch("d", 0..2, T0).samples.clone());
    queue.push(Arc::new(Batch::new(three))).await;
    wait_for("the open-files roll", || visible_files(&root) >= 3).await;
    // Big values that do not compress: a file over 4 KiB rolls.
    let mut big = Vec::new();
    for i in 0..2000u64 {
        let labels: Labels =
            [("__name__", "e".to_string()), ("host", format!("{:x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))]
                .into_iter()
                .collect();
        big.push(Sample::new(labels, f64::from_bits(i.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 2), T0 + i as i64));
    }
    queue.push(Arc::new(Batch::new(big))).await;
    queue.close();
    handle.await.unwrap();
    assert_eq!(ledger.queued(), 0);
    let rows = read_archive(&root);
    assert_eq!(rows.len(), 5 + 6 + 2000);
    let e_files = std::fs::read_dir(root.join("metric=e/date=2026-12-04/hour=13")).unwrap().count();
    assert!(e_files >= 2, "max_file_bytes split metric e over {e_files} files");
}

#[tokio::test]
async fn replayed_samples_already_committed_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let qdir = dir.path().join("queue");
    let options = DiskQueueOptions::new(1 << 20, WhenFull::Block, FsyncPolicy::Always);
    // An earlier run queued three records of 4 samples...
    {
        let ledger = Ledger::new(SinkMetrics::new("pq-replay-0"));
        let q = DiskQueue::open(&qdir, options, ledger).unwrap();
        for r in 0..3 {
            q.push(batch("cpu", 0..4, T0 + r * 1000)).await;
        }
        q.shutdown();
    }
    // ...and committed record 0 and the first two samples of record 1 before it crashed.
    commit::write(&root, &Commit { watermark: Some(Position { seq: 1, index: 2 }), files: vec![] }).unwrap();
    let ledger = Ledger::new(SinkMetrics::new("pq-replay"));
    let q = DiskQueue::open(&qdir, options, ledger.clone()).unwrap();
    assert_eq!(q.replay_end(), 3);
    let queue = Arc::new(SinkQueue::Disk(q));
    let sink = ParquetSink::open("pq-replay", &config(""), root.clone(), queue.replay_end()).unwrap();
    let handle = worker("pq-replay", sink, queue.clone());
    // New records (this run) are never skipped, whatever their sequence numbers.
    queue.push(batch("cpu", 0..1, T0 + 9000)).await;
    queue.close();
    handle.await.unwrap();
    assert_eq!(ledger.queued(), 0);
    let got: Vec<(i64, String)> = read_archive(&root).into_iter().map(|r| (r.3, r.2)).collect();
    let expected: Vec<(i64, String)> = vec![
        (T0 + 1000, "dc=eu,host=h2".into()),
        (T0 + 1000, "dc=eu,host=h3".into()),
        (T0 + 2000, "dc=eu,host=h0".into()),
        (T0 + 2000, "dc=eu,host=h1".into()),
        (T0 + 2000, "dc=eu,host=h2".into()),
        (T0 + 2000, "dc=eu,host=h3".into()),
        (T0 + 9000, "dc=eu,host=h0".into()),
    ];
    assert_eq!(got, expected);
    queue.finish();
}

#[tokio::test]
async fn unplaceable_samples_are_counted_and_the_rest_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let sink = ParquetSink::open("pq-bad", &config(""), root.clone(), None).unwrap();
    let (queue, ledger) = memory_queue("pq-bad", 100_000);
    let handle = worker("pq-bad", sink, queue.clone());
    let mut samples = batch("cpu", 0..2, T0).samples.clone();
    samples.push(Sample::new([("host", "x".to_string())].into_iter().collect(), 1.0, T0));
    queue.push(Arc::new(Batch::new(samples))).await;
    queue.close();
    handle.await.unwrap();
    assert_eq!(ledger.queued(), 0);
    assert_eq!(read_archive(&root).len(), 2);
    let totals = ledger.totals();
    assert_eq!(totals.sent, 2, "{totals:?}");
}
