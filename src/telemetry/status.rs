//! Readable copies of the metrics the status report (`GET /api/v1/status`)
//! shows, and a once-a-second history of them to compute rates from.
//!
//! The Prometheus recorder only renders text, so the process recorder is a
//! [`TeeRecorder`]: every handle is the Prometheus one, and the handles of the
//! [`WATCHED`] names also update an atomic kept here. The status report reads
//! those atomics; it never parses `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use parking_lot::Mutex;

use super::names::*;

/// The metric names the status report reads.
pub const WATCHED: &[&str] = &[
    RECEIVED_SAMPLES_TOTAL,
    RECEIVER_BACKPRESSURE_TOTAL,
    RECEIVER_MEMORY_PRESSURE_REJECTIONS_TOTAL,
    DROPPED_SAMPLES_TOTAL,
    SINK_RECEIVED_SAMPLES_TOTAL,
    SINK_SENT_SAMPLES_TOTAL,
    SINK_RETRIES_TOTAL,
    SINK_IN_FLIGHT_REQUESTS,
    SINK_CONCURRENCY_LIMIT,
    QUEUE_SAMPLES,
    QUEUE_CAPACITY_SAMPLES,
    FANOUT_BLOCKED_SECONDS_TOTAL,
    CARDINALITY_SERIES,
    CARDINALITY_LIMIT_SERIES,
    CARDINALITY_METRICS_OVER_WARN,
    MEMORY_RSS_BYTES,
    MEMORY_LIMIT_BYTES,
    MEMORY_WORST_CASE_BYTES,
    MEMORY_PRESSURE,
];

/// How often the history takes a sample.
pub const STATUS_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Samples kept: rates are computed over at most this many intervals.
pub const STATUS_RATE_WINDOW_SAMPLES: usize = 5;

/// The process recorder: Prometheus for every metric, plus a readable copy of the watched ones.
pub struct TeeRecorder<R> {
    inner: R,
    store: Arc<StatusStore>,
}

impl<R: Recorder> TeeRecorder<R> {
    pub fn new(inner: R, store: Arc<StatusStore>) -> Self {
        TeeRecorder { inner, store }
    }
}

impl<R: Recorder> Recorder for TeeRecorder<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description)
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description)
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let inner = self.inner.register_counter(key, metadata);
        if !WATCHED.contains(&key.name()) {
            return inner;
        }
        let mine = self.store.registry.get_or_create_counter(key, |c| Counter::from_arc(c.clone()));
        Counter::from_arc(Arc::new(TeeCounter(inner, mine)))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let inner = self.inner.register_gauge(key, metadata);
        if !WATCHED.contains(&key.name()) {
            return inner;
        }
        let mine = self.store.registry.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()));
        Gauge::from_arc(Arc::new(TeeGauge(inner, mine)))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

/// A counter updating the Prometheus handle and the readable copy.
struct TeeCounter(Counter, Counter);

impl CounterFn for TeeCounter {
    fn increment(&self, value: u64) {
        self.0.increment(value);
        self.1.increment(value);
    }

    fn absolute(&self, value: u64) {
        self.0.absolute(value);
        self.1.absolute(value);
    }
}

/// A gauge updating the Prometheus handle and the readable copy.
struct TeeGauge(Gauge, Gauge);

impl GaugeFn for TeeGauge {
    fn increment(&self, value: f64) {
        self.0.increment(value);
        self.1.increment(value);
    }

    fn decrement(&self, value: f64) {
        self.0.decrement(value);
        self.1.decrement(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
        self.1.set(value);
    }
}

/// One reading of every watched metric.
#[derive(Debug, Clone)]
pub struct Reading {
    pub at: Instant,
    pub counters: HashMap<Key, u64>,
    pub gauges: HashMap<Key, f64>,
}

impl Reading {
    /// The value of a counter or gauge, as f64 (0 when absent).
    pub fn value(&self, key: &Key) -> Option<f64> {
        self.counters.get(key).map(|&v| v as f64).or_else(|| self.gauges.get(key).copied())
    }
}

/// The readable metric values and their recent history.
pub struct StatusStore {
    registry: Registry<Key, AtomicStorage>,
    history: Mutex<VecDeque<Reading>>,
}

impl Default for StatusStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusStore {
    /// An empty store without a sampler (tests; the process uses [`store`]).
    pub fn new() -> Self {
        StatusStore { registry: Registry::atomic(), history: Mutex::new(VecDeque::new()) }
    }

    /// The watched metrics right now.
    pub fn read(&self) -> Reading {
        let mut counters = HashMap::new();
        let mut gauges = HashMap::new();
        self.registry.visit_counters(|k, c: &Arc<AtomicU64>| {
            counters.insert(k.clone(), c.load(Ordering::Relaxed));
        });
        self.registry.visit_gauges(|k, g: &Arc<AtomicU64>| {
            gauges.insert(k.clone(), f64::from_bits(g.load(Ordering::Relaxed)));
        });
        Reading { at: Instant::now(), counters, gauges }
    }

    /// Adds a reading to the history, keeping the last [`STATUS_RATE_WINDOW_SAMPLES`].
    pub fn sample(&self) {
        let reading = self.read();
        let mut history = self.history.lock();
        history.push_back(reading);
        while history.len() > STATUS_RATE_WINDOW_SAMPLES {
            history.pop_front();
        }
    }

    /// The oldest reading kept: rates are computed from it to now.
    pub fn oldest(&self) -> Option<Reading> {
        self.history.lock().front().cloned()
    }
}

static STORE: OnceLock<Arc<StatusStore>> = OnceLock::new();

/// The process-wide store (filled once [`super::install_recorder`] ran), sampled
/// every [`STATUS_SAMPLE_INTERVAL`] by a thread started with it.
pub fn store() -> Arc<StatusStore> {
    STORE
        .get_or_init(|| {
            let store = Arc::new(StatusStore::new());
            let sampled = store.clone();
            let spawned = std::thread::Builder::new().name("tsrelay-status".into()).spawn(move || {
                loop {
                    sampled.sample();
                    std::thread::sleep(STATUS_SAMPLE_INTERVAL);
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the status sampler; /api/v1/status shows totals without rates");
            }
            store
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_keeps_watched_metrics_readable() {
        let store = Arc::new(StatusStore::new());
        let recorder = TeeRecorder::new(metrics::NoopRecorder, store.clone());
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(SINK_SENT_SAMPLES_TOTAL, "sink" => "a").increment(7);
            metrics::gauge!(QUEUE_SAMPLES, "sink" => "a").set(3.0);
            metrics::counter!("not_watched_total").increment(1);
        });
        store.sample();
        let r = store.read();
        let sent = Key::from_parts(SINK_SENT_SAMPLES_TOTAL, vec![metrics::Label::new("sink", "a")]);
        let queued = Key::from_parts(QUEUE_SAMPLES, vec![metrics::Label::new("sink", "a")]);
        assert_eq!(r.value(&sent), Some(7.0));
        assert_eq!(r.value(&queued), Some(3.0));
        assert_eq!(r.counters.len() + r.gauges.len(), 2);
        assert!(store.oldest().is_some());
    }
}
