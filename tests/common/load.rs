//! A steady gRPC load against a running tsrelay, from its own thread:
//! numbered requests at a fixed rate, each sample identifiable, every answer
//! recorded (so a test knows exactly which samples were acknowledged).
//!
//! Sample `k` of request `id` is series `load{w="<sender>", k="<k>"}` at
//! `base_ms + id`: few series (the cardinality stage stays quiet), time
//! increasing per series (the monotonic stage keeps everything), and every
//! sample identified by `(k, timestamp)` — its key, `"<k>@<ms>"`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Code;
use tsrelay::proto::v1::ingest_client::IngestClient;
use tsrelay::proto::v1::{Label, Sample, Series, WriteRequest};

/// The metric every load sample belongs to.
pub const METRIC: &str = "load";

/// Now, in ms: the base of a test's timestamps (inside the validate stage's window).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Request `id` of `per_request` samples from `sender` (see the module doc).
pub fn request(sender: &str, id: u64, per_request: usize, base_ms: i64) -> WriteRequest {
    WriteRequest {
        id,
        series: (0..per_request)
            .map(|k| Series {
                labels: vec![
                    Label { name: "__name__".into(), value: METRIC.into() },
                    Label { name: "k".into(), value: k.to_string() },
                    Label { name: "w".into(), value: sender.to_string() },
                ],
                samples: vec![Sample { value: k as f64, timestamp: base_ms + id as i64 }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The key of a line the file sink wrote (`load,k=3,w=0 value=3 <ts ns>`).
pub fn sample_key(line: &str) -> Option<String> {
    let mut parts = line.split(' ');
    let series = parts.next()?;
    let ts_ns: i64 = parts.nth(1)?.parse().ok()?;
    let k = series.strip_prefix(METRIC)?.strip_prefix(",k=")?.split(',').next()?;
    Some(format!("{k}@{}", ts_ns / 1_000_000))
}

/// Every sample key of the given request ids.
pub fn keys_of(ids: impl IntoIterator<Item = u64>, per_request: usize, base_ms: i64) -> BTreeSet<String> {
    ids.into_iter().flat_map(|id| (0..per_request).map(move |k| format!("{k}@{}", base_ms + id as i64))).collect()
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Timestamp of request 0; request `id`'s samples are at `base_ms + id`.
    pub base_ms: i64,
    pub per_request: usize,
    /// Requests answered OK.
    pub acked: Vec<u64>,
    /// Requests refused with RESOURCE_EXHAUSTED (backpressure or memory).
    pub refused: u64,
    /// Messages of refusals, first few.
    pub refusal_messages: Vec<String>,
    /// Requests that failed otherwise (daemon down, deadline...).
    pub failed: u64,
    pub failure_codes: BTreeSet<String>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    report: Arc<Mutex<LoadReport>>,
    threads: Vec<JoinHandle<()>>,
}

impl LoadReport {
    /// Keys of every acknowledged sample.
    pub fn acked_keys(&self) -> BTreeSet<String> {
        keys_of(self.acked.iter().copied(), self.per_request, self.base_ms)
    }

    pub fn keys_of(&self, ids: impl IntoIterator<Item = u64>) -> BTreeSet<String> {
        keys_of(ids, self.per_request, self.base_ms)
    }
}

impl Load {
    /// `senders` threads, each sending `per_request`-sample requests at
    /// `requests_per_second` (0 = back to back) to 127.0.0.1:`port`, ids from `first_id`.
    pub fn start(port: u16, senders: usize, per_request: usize, requests_per_second: f64, first_id: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(first_id));
        let base_ms = now_ms();
        let report = Arc::new(Mutex::new(LoadReport { base_ms, per_request, ..Default::default() }));
        let threads = (0..senders)
            .map(|sender| {
                let (stop, next_id, report) = (stop.clone(), next_id.clone(), report.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let sender = sender.to_string();
                    let send =
                        send_loop(port, &sender, per_request, requests_per_second, base_ms, &stop, &next_id, &report);
                    rt.block_on(send);
                })
            })
            .collect();
        Load { stop, next_id, report, threads }
    }

    pub fn report(&self) -> LoadReport {
        self.report.lock().clone()
    }

    /// Ids handed out so far (sent or being sent).
    pub fn issued(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst)
    }

    /// Stops and waits for requests in flight to be answered.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.report()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    port: u16,
    sender: &str,
    per_request: usize,
    rps: f64,
    base_ms: i64,
    stop: &AtomicBool,
    next_id: &AtomicU64,
    report: &Mutex<LoadReport>,
) {
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut client: Option<IngestClient<tonic::transport::Channel>> = None;
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if rps > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / rps);
            tokio::time::sleep_until(due.into()).await;
        }
        sent += 1;
        if client.is_none() {
            match IngestClient::connect(endpoint.clone()).await {
                Ok(c) => client = Some(c),
                Err(_) => {
                    // Down (killed, restarting): try again shortly; nothing was sent.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        let req = request(sender, id, per_request, base_ms);
        let c = client.as_mut().expect("connected above");
        let answer = tokio::time::timeout(Duration::from_secs(30), c.write(req)).await;
        let mut r = report.lock();
        match answer {
            Ok(Ok(_)) => r.acked.push(id),
            Ok(Err(status)) if status.code() == Code::ResourceExhausted => {
                r.refused += 1;
                if r.refusal_messages.len() < 5 {
                    r.refusal_messages.push(status.message().to_string());
                }
            }
            Ok(Err(status)) => {
                r.failed += 1;
                r.failure_codes.insert(format!("{:?}", status.code()));
                if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Internal) {
                    client = None;
                }
            }
            Err(_) => {
                r.failed += 1;
                r.failure_codes.insert("client timeout".into());
                client = None;
            }
        }
    }
}

/// The same load as line protocol over HTTP (`POST /write`): sender `h`,
/// timestamps a day before the gRPC load's so the keys never collide.
pub struct HttpLoad {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<HttpLoadReport>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default, Clone)]
pub struct HttpLoadReport {
    pub base_ms: i64,
    pub per_request: usize,
    /// Requests answered 204.
    pub acked: Vec<u64>,
    /// 503 or 429 answers, and how many of them carried `Retry-After`.
    pub refused: u64,
    pub refused_with_retry_after: u64,
    /// Other answers or transport errors.
    pub failed: u64,
    pub failure_statuses: BTreeSet<String>,
}

impl HttpLoadReport {
    pub fn acked_keys(&self) -> BTreeSet<String> {
        keys_of(self.acked.iter().copied(), self.per_request, self.base_ms)
    }
}

impl HttpLoad {
    pub fn start(port: u16, per_request: usize, requests_per_second: f64) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let base_ms = now_ms() - 86_400_000;
        let report = Arc::new(Mutex::new(HttpLoadReport { base_ms, per_request, ..Default::default() }));
        let (s, r) = (stop.clone(), report.clone());
        let thread = std::thread::spawn(move || {
            let client = super::http();
            let url = format!("http://127.0.0.1:{port}/write");
            let start = Instant::now();
            let mut id = 0u64;
            while !s.load(Ordering::SeqCst) {
                let due = start + Duration::from_secs_f64(id as f64 / requests_per_second);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let ts_ns = (base_ms + id as i64) * 1_000_000;
                let body: String =
                    (0..per_request).map(|k| format!("{METRIC},k={k},w=h value={k} {ts_ns}\n")).collect();
                let answer = client.post(&url).body(body).send();
                let mut rep = r.lock();
                match answer {
                    Ok(resp) if resp.status().as_u16() == 204 => rep.acked.push(id),
                    Ok(resp) if matches!(resp.status().as_u16(), 503 | 429) => {
                        rep.refused += 1;
                        if resp.headers().contains_key("retry-after") {
                            rep.refused_with_retry_after += 1;
                        }
                    }
                    Ok(resp) => {
                        rep.failed += 1;
                        rep.failure_statuses.insert(resp.status().to_string());
                    }
                    Err(e) => {
                        rep.failed += 1;
                        rep.failure_statuses.insert(e.to_string());
                    }
                }
                id += 1;
            }
        });
        HttpLoad { stop, report, thread: Some(thread) }
    }

    pub fn stop(mut self) -> HttpLoadReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.report.lock().clone()
    }
}

impl Drop for HttpLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
