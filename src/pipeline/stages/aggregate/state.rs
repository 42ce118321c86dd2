//! What a rule holds per shard: open buckets by output series, and the last
//! value of each counter series (`increase`, `rate`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::SeriesMap;
use crate::model::Labels;
use crate::telemetry::AggregateMetrics;

/// The running totals of one bucket of one output series.
#[derive(Debug, Clone, PartialEq)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The newest value; ties between series go to the larger series hash.
    pub last: f64,
    pub last_ts: i64,
    pub last_tie: u64,
    /// Counter increase (reset-aware), summed over the group's series.
    pub increase: f64,
    /// Every value, for exact quantiles (only when a `quantiles` output asks).
    pub values: Vec<f64>,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: f64::NAN,
            last_ts: i64::MIN,
            last_tie: 0,
            increase: 0.0,
            values: Vec::new(),
        }
    }
}

impl Acc {
    /// Folds one value in (`increase` is the sample's counter delta, 0 for none).
    #[inline]
    pub fn add(&mut self, value: f64, ts: i64, tie: u64, increase: f64, keep_value: bool) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if (ts, tie) >= (self.last_ts, self.last_tie) {
            (self.last, self.last_ts, self.last_tie) = (value, ts, tie);
        }
        self.increase += increase;
        if keep_value {
            self.values.push(value);
        }
    }

    /// Adds another shard's partial of the same bucket.
    pub fn merge(&mut self, other: Acc) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if (other.last_ts, other.last_tie) >= (self.last_ts, self.last_tie) {
            (self.last, self.last_ts, self.last_tie) = (other.last, other.last_ts, other.last_tie);
        }
        self.increase += other.increase;
        self.values.extend(other.values);
    }
}

/// One output series in one shard: its labels and its open buckets.
#[derive(Debug)]
pub struct Group {
    pub labels: Labels,
    /// `(end, totals)`, few (one, two while `lag` runs).
    pub buckets: Vec<(i64, Acc)>,
}

/// The last value of one counter series, and when (pipeline seconds) it came.
#[derive(Debug, Clone, Copy)]
pub struct CounterState {
    pub last: f64,
    pub seen: u32,
}

/// A bucket taken out of a shard when it closed.
#[derive(Debug)]
pub struct Closed {
    pub group: u64,
    pub end: i64,
    pub labels: Labels,
    pub acc: Acc,
}

/// One rule's state in one shard.
#[derive(Debug, Default)]
pub struct RuleShard {
    pub groups: SeriesMap<Group>,
    pub counters: SeriesMap<CounterState>,
    /// Buckets ending at or before this were emitted: later samples for them are too late.
    pub closed_until: i64,
    /// Open buckets by end, so a tick knows without a scan whether any closes.
    pub open: BTreeMap<i64, u32>,
}

impl RuleShard {
    /// Empty; buckets ending at or before `closed_until` count as emitted.
    pub fn new(closed_until: i64) -> Self {
        RuleShard { closed_until, ..Default::default() }
    }

    /// Takes every bucket ending at or before `upto` into `out`, releasing
    /// what they were charged, and closes them for good.
    pub fn take_closed(&mut self, upto: i64, limits: &RuleLimits, out: &mut Vec<Closed>) {
        self.closed_until = self.closed_until.max(upto);
        match self.open.first_key_value() {
            Some((&end, _)) if end <= upto => {}
            _ => return,
        }
        let mut released = 0u64;
        let mut buckets = 0u64;
        let mut values = 0u64;
        self.groups.retain(|&group, g| {
            let charge = bucket_charge(&g.labels);
            let mut i = 0;
            while i < g.buckets.len() {
                if g.buckets[i].0 <= upto {
                    let (end, acc) = g.buckets.swap_remove(i);
                    released += charge;
                    buckets += 1;
                    values += acc.values.len() as u64;
                    let labels = if g.buckets.is_empty() { std::mem::take(&mut g.labels) } else { g.labels.clone() };
                    out.push(Closed { group, end, labels, acc });
                } else {
                    i += 1;
                }
            }
            !g.buckets.is_empty()
        });
        let still_open = self.open.split_off(&(upto.saturating_add(1)));
        self.open = still_open;
        limits.release(released, buckets, values);
        super::super::shrink_if_sparse(&mut self.groups);
    }

    /// Forgets counters without a sample for `idle` seconds.
    pub fn forget_counters(&mut self, now: u32, idle: u32) -> u64 {
        let before = self.counters.len();
        self.counters.retain(|_, c| now.saturating_sub(c.seen) < idle);
        super::super::shrink_if_sparse(&mut self.counters);
        (before - self.counters.len()) as u64
    }
}

/// Bytes an open bucket is charged: the fixed part and its output labels.
pub fn bucket_charge(labels: &Labels) -> u64 {
    super::config::FIXED_BYTES_PER_BUCKET + labels.packed_len() as u64
}

/// A rule's bounds, shared by its shards.
pub struct RuleLimits {
    pub limit_bytes: u64,
    pub bytes: AtomicU64,
    pub buckets: AtomicU64,
    pub max_values: u64,
    pub values: AtomicU64,
    pub counters: AtomicU64,
    pub metrics: AggregateMetrics,
}

impl RuleLimits {
    pub fn new(limit_bytes: u64, max_values: u64, metrics: AggregateMetrics) -> Self {
        metrics.limit_bytes.set(limit_bytes as f64);
        RuleLimits {
            limit_bytes,
            bytes: AtomicU64::new(0),
            buckets: AtomicU64::new(0),
            max_values,
            values: AtomicU64::new(0),
            counters: AtomicU64::new(0),
            metrics,
        }
    }

    /// Takes `bytes` for a new bucket if they fit.
    pub fn reserve_bucket(&self, bytes: u64) -> bool {
        let ok = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                b.checked_add(bytes).filter(|&after| after <= self.limit_bytes)
            })
            .is_ok();
        if ok {
            self.buckets.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Takes room for one quantile value if it fits.
    pub fn reserve_value(&self) -> bool {
        self.values
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| (v < self.max_values).then_some(v + 1))
            .is_ok()
    }

    pub fn release(&self, bytes: u64, buckets: u64, values: u64) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.buckets.fetch_sub(buckets, Ordering::Relaxed);
        self.values.fetch_sub(values, Ordering::AcqRel);
    }

    /// Publishes the state's size to `/metrics`.
    pub fn publish(&self) {
        self.metrics.series.set(self.buckets.load(Ordering::Relaxed) as f64);
        self.metrics.state_bytes.set(self.bytes.load(Ordering::Relaxed) as f64);
        self.metrics.quantile_samples.set(self.values.load(Ordering::Relaxed) as f64);
        self.metrics.counter_series.set(self.counters.load(Ordering::Relaxed) as f64);
    }
}
