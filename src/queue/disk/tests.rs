use std::time::Duration;

use super::*;
use crate::model::{Labels, Sample};
use crate::telemetry::SinkMetrics;

fn ledger() -> Ledger {
    Ledger::new(SinkMetrics::new("disk-test"))
}

/// `n` samples whose values are `first..first+n`, so order and loss are visible.
fn batch(first: usize, n: usize) -> Arc<Batch> {
    let samples = (first..first + n)
        .map(|i| {
            let labels: Labels = [("__name__", "m"), ("host", &*format!("h{}", i % 7))].into_iter().collect();
            Sample::new(labels, i as f64, 1_700_000_000_000 + i as i64)
        })
        .collect();
    Arc::new(Batch::new(samples))
}

fn options(max_bytes: u64, when_full: WhenFull) -> DiskQueueOptions {
    DiskQueueOptions::new(max_bytes, when_full, FsyncPolicy::Never)
}

fn open(dir: &Path, options: DiskQueueOptions) -> (DiskQueue, Ledger) {
    let l = ledger();
    (DiskQueue::open(dir, options, l.clone()).unwrap(), l)
}

/// Pops until `expected` samples came out (or nothing comes for a second);
/// settles and counts them as sent when `settle`.
async fn drain(q: &DiskQueue, ledger: &Ledger, expected: usize, settle: bool) -> Vec<f64> {
    let mut values = Vec::new();
    while values.len() < expected {
        let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(1), q.pop()).await else { break };
        values.extend(item.batch.samples.iter().map(|s| s.value));
        if settle {
            ledger.sent(item.len());
            item.settle(item.len());
        }
    }
    values
}

fn seq_values(range: std::ops::Range<usize>) -> Vec<f64> {
    range.map(|i| i as f64).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list(dir).unwrap().into_iter().map(|(_, p)| p).collect()
}

#[tokio::test]
async fn delivers_in_order_and_forgets_settled_records() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    for i in 0..50 {
        q.push(batch(i * 100, 100)).await;
    }
    let values = drain(&q, &l, 5000, true).await;
    assert_eq!(values, seq_values(0..5000));
    assert_eq!(q.len(), (0, 0));
    assert!(l.totals().balanced(), "{:?}", l.totals());
    assert_eq!(l.totals().sent, 5000);
    drop(q);
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    assert_eq!(q.len(), (0, 0));
    assert_eq!(l.totals().received, 0);
}

#[tokio::test]
async fn labels_values_and_hashes_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    let b = batch(0, 300);
    q.push(b.clone()).await;
    let item = tokio::time::timeout(Duration::from_secs(5), q.pop()).await.unwrap().unwrap();
    assert_eq!(item.batch.samples, b.samples);
    let expected_hashes: Vec<u64> = b.samples.iter().map(|s| s.labels.series_hash()).collect();
    assert_eq!(item.batch.hashes, expected_hashes);
    l.sent(300);
    item.settle(300);
}

#[tokio::test]
async fn unsettled_records_are_replayed_after_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    for i in 0..20 {
        q.push(batch(i * 10, 10)).await;
    }
    // Settle the first 5 records only; the next ones are handed out but not settled.
    let mut held = Vec::new();
    for _ in 0..8 {
        let item = q.pop().await.unwrap();
        held.push(item);
    }
    for item in &held[..5] {
        l.sent(item.len());
        item.settle(item.len());
    }
    // Let the sync thread persist the cursor, as it does every tick.
    tokio::time::sleep(TICK * 3).await;
    drop(held);
    drop(q);
    let (q, l2) = open(dir.path(), options(1 << 30, WhenFull::Block));
    assert_eq!(q.len().0, 15);
    let t = l2.totals();
    assert_eq!((t.received, t.queued), (150, 150));
    let values = drain(&q, &l2, 150, true).await;
    assert_eq!(values, seq_values(50..200));
    assert!(l2.totals().balanced());
    drop(l);
}

#[tokio::test]
async fn a_record_split_over_requests_is_kept_until_every_part_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    q.push(batch(0, 10)).await;
    let item = q.pop().await.unwrap();
    item.settle(6);
    tokio::time::sleep(TICK * 3).await;
    assert_eq!(q.len().0, 1);
    item.settle(4);
    assert_eq!(q.len().0, 0);
    l.sent(10);
}

#[tokio::test]
async fn out_of_order_settles_move_the_cursor_only_past_settled_records() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    for i in 0..3 {
        q.push(batch(i * 10, 10)).await;
    }
    let a = q.pop().await.unwrap();
    let b = q.pop().await.unwrap();
    let c = q.pop().await.unwrap();
    b.settle(10);
    c.settle(10);
    tokio::time::sleep(TICK * 3).await;
    drop((a, b, c));
    drop(q);
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    // Record 0 comes back, and so do 1 and 2 (duplicates: the cursor cannot skip a hole).
    assert_eq!(drain(&q, &l, 30, true).await, seq_values(0..30));
}

fn corrupt_at(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Byte offsets of each record in a segment written by the tests above.
fn record_offsets(path: &Path) -> Vec<(u64, u64)> {
    let data = std::fs::read(path).unwrap();
    let mut pos = segment::FILE_HEADER_LEN as usize;
    let mut out = Vec::new();
    while pos < data.len() {
        let h = codec::RecordHeader::parse(&data[pos..]).unwrap();
        out.push((pos as u64, h.record_len()));
        pos += h.record_len() as usize;
    }
    out
}

async fn fill_and_close(dir: &Path, records: usize, per: usize) {
    let (q, _l) = open(dir, options(1 << 30, WhenFull::Block));
    for i in 0..records {
        q.push(batch(i * per, per)).await;
    }
    q.shutdown();
}

#[tokio::test]
async fn torn_tail_is_cut_off_and_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 10, 50).await;
    let seg = segment_files(dir.path()).remove(0);
    let offsets = record_offsets(&seg);
    let (last, len) = offsets[9];
    // A crash in the middle of the last record's body.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(last + len / 2).unwrap();
    drop(f);
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    let t = l.totals();
    assert_eq!((t.received, t.dropped, t.queued), (500, 50, 450));
    assert_eq!(drain(&q, &l, 450, true).await, seq_values(0..450));
    assert!(l.totals().balanced());
    assert_eq!(std::fs::metadata(&seg).map(|m| m.len()).unwrap_or(last), last, "tail not cut");
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 4, 10).await;
    let seg = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xab; 21]);
    std::fs::write(&seg, bytes).unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    assert_eq!(l.totals().queued, 40);
    assert_eq!(drain(&q, &l, 40, true).await, seq_values(0..40));
}

#[tokio::test]
async fn damaged_body_in_the_middle_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 10, 20).await;
    let seg = segment_files(dir.path()).remove(0);
    let (off, len) = record_offsets(&seg)[4];
    corrupt_at(&seg, off + len - 3);
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    let t = l.totals();
    assert_eq!((t.received, t.dropped, t.queued), (200, 20, 180));
    let mut expected = seq_values(0..80);
    expected.extend(seq_values(100..200));
    assert_eq!(drain(&q, &l, 180, true).await, expected);
    assert!(l.totals().balanced());
}

#[tokio::test]
async fn damaged_header_in_the_middle_is_skipped_to_the_next_good_record() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 10, 20).await;
    let seg = segment_files(dir.path()).remove(0);
    let (off, _) = record_offsets(&seg)[3];
    corrupt_at(&seg, off + 5);
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    // The record's own count is gone with its header: it is not counted in
    // samples, and the accounting still balances.
    let mut expected = seq_values(0..60);
    expected.extend(seq_values(80..200));
    assert_eq!(drain(&q, &l, 180, true).await, expected);
    assert!(l.totals().balanced());
}

#[tokio::test]
async fn damage_found_while_reading_drops_the_rest_of_the_segment_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    // Twice the read-ahead, so the reader stops halfway and the damage is found at run time.
    let per = 1000;
    let records = 2 * READ_AHEAD_SAMPLES / per;
    for i in 0..records {
        q.push(batch(i * per, per)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seg = segment_files(dir.path()).remove(0);
    let offsets = record_offsets(&seg);
    let bad = records - 5;
    corrupt_at(&seg, offsets[bad].0 + offsets[bad].1 - 2);
    let values = drain(&q, &l, records * per, true).await;
    assert_eq!(values, seq_values(0..bad * per));
    let t = l.totals();
    assert_eq!((t.dropped, t.queued), (5 * per as u64, 0));
    assert!(t.balanced());
}

#[tokio::test]
async fn drop_newest_refuses_when_full_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(MIN_MAX_BYTES, WhenFull::DropNewest));
    let mut pushed = 0;
    while l.totals().dropped == 0 {
        q.push(batch(pushed, 500)).await;
        pushed += 500;
        assert!(pushed < 1_000_000, "never full");
    }
    let (_, bytes) = q.len();
    assert!(bytes <= MIN_MAX_BYTES);
    let t = l.totals();
    assert_eq!(t.dropped, 500);
    assert_eq!(drain(&q, &l, t.queued as usize, true).await, seq_values(0..pushed - 500));
    assert!(l.totals().balanced());
}

#[tokio::test]
async fn drop_oldest_evicts_unread_records_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(MIN_MAX_BYTES, WhenFull::DropOldest));
    let per = 500;
    let batches = 400;
    for i in 0..batches {
        q.push(batch(i * per, per)).await;
    }
    let (_, bytes) = q.len();
    let t = l.totals();
    assert!(t.dropped > 0, "nothing evicted");
    assert!(t.balanced(), "{t:?}");
    // What is left: the newest samples, in order, possibly after the read-ahead's older ones.
    let values = drain(&q, &l, t.queued as usize, true).await;
    assert_eq!(values.len() as i64, t.queued);
    assert_eq!(*values.last().unwrap(), (batches * per - 1) as f64);
    assert!(values.windows(2).all(|w| w[0] < w[1]), "out of order");
    let segment_bound = 2 * q.shared.options.segment_bytes;
    assert!(bytes <= MIN_MAX_BYTES + segment_bound, "{bytes} bytes queued");
    let t = l.totals();
    assert!(t.balanced());
    assert_eq!(t.sent + t.dropped, (batches * per) as u64);
}

#[tokio::test]
async fn block_waits_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(MIN_MAX_BYTES, WhenFull::Block));
    let q = Arc::new(q);
    let mut pushed = 0;
    // Fill up: a push that does not finish within 200 ms is blocked.
    loop {
        let push = q.push(batch(pushed, 500));
        if tokio::time::timeout(Duration::from_millis(200), push).await.is_err() {
            break;
        }
        pushed += 500;
        assert!(pushed < 1_000_000, "never blocked");
    }
    // The timed-out push was cancelled before it appended; push it again while draining.
    let pusher = {
        let q = q.clone();
        tokio::spawn(async move { q.push(batch(pushed, 500)).await })
    };
    let values = drain(&q, &l, pushed + 500, true).await;
    pusher.await.unwrap();
    assert_eq!(values, seq_values(0..pushed + 500));
    let t = l.totals();
    assert_eq!(t.dropped, 0);
    // The cancelled push counted its samples as received: they were never queued or sent.
    assert_eq!(t.received - t.sent, 500);
}

#[tokio::test]
async fn ack_completes_once_the_record_is_synced() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Interval { interval_ms: 50 }, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let (q, _l) = open(dir.path(), DiskQueueOptions::new(1 << 30, WhenFull::Block, fsync));
        let (ack, done) = crate::model::Ack::new();
        let b = batch(0, 10);
        let b = Arc::new(Batch {
            samples: b.samples.clone(),
            hashes: Vec::new(),
            ack: Some(ack),
            received_at: Instant::now(),
        });
        q.push(b).await;
        let outcome = tokio::time::timeout(Duration::from_secs(5), done).await;
        assert!(matches!(outcome, Ok(Ok(o)) if !o.dropped_any), "{fsync:?}: ack not completed");
    }
}

#[tokio::test]
async fn segments_roll_and_are_deleted_once_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(MIN_MAX_BYTES * 4, WhenFull::Block));
    for i in 0..100 {
        q.push(batch(i * 2000, 2000)).await;
    }
    assert!(segment_files(dir.path()).len() > 3, "no rolling");
    drain(&q, &l, 200_000, true).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while segment_files(dir.path()).len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(q);
    let (q, _) = open(dir.path(), options(MIN_MAX_BYTES * 4, WhenFull::Block));
    assert_eq!(q.len(), (0, 0));
}

#[tokio::test]
async fn replay_spans_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _l) = open(dir.path(), options(MIN_MAX_BYTES * 4, WhenFull::Block));
        for i in 0..100 {
            q.push(batch(i * 2000, 2000)).await;
        }
    }
    assert!(segment_files(dir.path()).len() > 3, "no rolling");
    let (q, l) = open(dir.path(), options(MIN_MAX_BYTES * 4, WhenFull::Block));
    assert_eq!(drain(&q, &l, 200_000, true).await, seq_values(0..200_000));
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (_q, _l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    match DiskQueue::open(dir.path(), options(1 << 30, WhenFull::Block), ledger()) {
        Err(DiskQueueError::Locked { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened twice"),
    }
}

#[tokio::test]
async fn a_foreign_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(segment::file_name(0)), b"not a queue segment at all").unwrap();
    match DiskQueue::open(dir.path(), options(1 << 30, WhenFull::Block), ledger()) {
        Err(e @ DiskQueueError::Unrecognized { .. }) => assert!(e.to_string().contains("00000000000000000000.seg")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted a foreign file"),
    }
}

#[tokio::test]
async fn close_lets_the_reader_drain_then_pop_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (q, l) = open(dir.path(), options(1 << 30, WhenFull::Block));
    for i in 0..5 {
        q.push(batch(i * 10, 10)).await;
    }
    q.close();
    q.push(batch(50, 10)).await;
    assert_eq!(drain(&q, &l, 50, true).await.len(), 50);
    assert!(tokio::time::timeout(Duration::from_secs(2), q.pop()).await.unwrap().is_none());
    let t = l.totals();
    assert_eq!((t.sent, t.dropped), (50, 10));
}
