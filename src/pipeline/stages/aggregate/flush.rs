//! Closing buckets: take them out of every shard, merge the partials, and
//! turn each into output samples stamped at the bucket's end.

use std::collections::HashMap;

use super::state::Closed;
use super::{AggregateShared, CompiledRule, Output};
use crate::model::{Labels, METRIC_NAME_LABEL, MetricKind, Sample};
use crate::telemetry::DropReason;

/// When a flush happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    /// A tick: buckets whose `end + lag` has passed close.
    Tick,
    /// The pipeline is stopping: every open bucket closes (emitted with
    /// `flush_on_shutdown`, else discarded and counted).
    Shutdown,
}

impl AggregateShared {
    /// Closes what is due at wall-clock `now` (ms) and returns the output
    /// samples, sorted by rule, bucket end and series.
    pub fn flush(&self, now: i64, kind: FlushKind) -> Vec<Sample> {
        self.flush_rules(now, kind).into_iter().flatten().collect()
    }

    /// [`Self::flush`], one vector per rule (in config order).
    pub fn flush_rules(&self, now: i64, kind: FlushKind) -> Vec<Vec<Sample>> {
        let shards = self.shards.lock().clone();
        let mut all = Vec::with_capacity(self.rules.len());
        let mut closed = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            all.push(Vec::new());
            let out = &mut all[i];
            let upto = match kind {
                FlushKind::Tick => {
                    // The last end with `end + lag <= now`.
                    let t = now.saturating_sub(rule.lag_ms);
                    t - t.rem_euclid(rule.interval_ms)
                }
                FlushKind::Shutdown => i64::MAX,
            };
            closed.clear();
            for shard in &shards {
                shard.lock()[i].take_closed(upto, &rule.limits, &mut closed);
            }
            if closed.is_empty() {
                continue;
            }
            let merged = merge(std::mem::take(&mut closed));
            if kind == FlushKind::Shutdown && !rule.config.flush_on_shutdown {
                let samples: u64 = merged.iter().map(|c| c.acc.count).sum();
                rule.limits.metrics.skipped(DropReason::Shutdown).increment(samples);
                continue;
            }
            let before = out.len();
            for c in &merged {
                emit(rule, c, out);
            }
            if let Some(newest) = merged.iter().map(|c| c.end).max() {
                self.advance(rule, newest);
            }
            rule.limits.metrics.flushes.increment(merged.len() as u64);
            rule.limits.metrics.output_samples.increment((out.len() - before) as u64);
        }
        self.sweep_counters();
        for rule in &self.rules {
            rule.limits.publish();
        }
        all
    }

    /// Forgets counter values of series idle for `forget_after` (at most once a minute).
    fn sweep_counters(&self) {
        if !self.rules.iter().any(|r| r.counters) {
            return;
        }
        let now = self.now_secs();
        {
            let mut last = self.last_sweep.lock();
            if now.saturating_sub(*last) < 60 {
                return;
            }
            *last = now;
        }
        for shard in self.shards.lock().iter() {
            let mut state = shard.lock();
            for (i, rule) in self.rules.iter().enumerate().filter(|(_, r)| r.counters) {
                let gone = state[i].forget_counters(now, self.forget_after_secs);
                rule.limits.counters.fetch_sub(gone, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Merges the partials of one bucket from different shards; sorted by end, then series.
fn merge(closed: Vec<Closed>) -> Vec<Closed> {
    let mut by_key: HashMap<(i64, u64), Closed> = HashMap::with_capacity(closed.len());
    for c in closed {
        match by_key.entry((c.end, c.group)) {
            std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().acc.merge(c.acc),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(c);
            }
        }
    }
    let mut merged: Vec<Closed> = by_key.into_values().collect();
    merged.sort_unstable_by(|a, b| {
        let packed = |l: &Labels| l.packed_parts().into_iter().flatten().copied().collect::<Vec<u8>>();
        a.end.cmp(&b.end).then_with(|| packed(&a.labels).cmp(&packed(&b.labels)))
    });
    merged
}

/// The output samples of one closed bucket.
fn emit(rule: &CompiledRule, c: &Closed, out: &mut Vec<Sample>) {
    let name = c.labels.name().unwrap_or("");
    let interval_s = rule.interval_ms as f64 / 1000.0;
    let acc = &c.acc;
    for o in &rule.config.outputs {
        let value = match o {
            Output::Count => acc.count as f64,
            Output::Sum => acc.sum,
            Output::Min => acc.min,
            Output::Max => acc.max,
            Output::Avg => acc.sum / acc.count as f64,
            Output::Last => acc.last,
            Output::Increase => acc.increase,
            Output::Rate => acc.increase / interval_s,
            Output::Quantiles(phis) => {
                let mut values = acc.values.clone();
                values.sort_unstable_by(f64::total_cmp);
                for &phi in phis {
                    let mut labels = renamed(&c.labels, name, &rule.infix, o.suffix());
                    labels.push("quantile", format_phi(phi));
                    labels.sort();
                    out.push(gauge(labels, quantile(&values, phi), c.end));
                }
                continue;
            }
        };
        out.push(gauge(renamed(&c.labels, name, &rule.infix, o.suffix()), value, c.end));
    }
}

fn gauge(labels: Labels, value: f64, ts: i64) -> Sample {
    Sample { labels, value, timestamp_ms: ts, kind: MetricKind::Gauge }
}

/// The group's labels with `__name__` = `<name><infix><suffix>`.
fn renamed(labels: &Labels, name: &str, infix: &str, suffix: &str) -> Labels {
    let mut out = Labels::with_capacity(labels.len(), labels.packed_len() + infix.len() + suffix.len());
    for l in labels.iter() {
        if l.name == METRIC_NAME_LABEL {
            out.push_with(METRIC_NAME_LABEL, &[name, infix, suffix]);
        } else {
            out.push(l.name, l.value);
        }
    }
    out
}

/// The `quantile` label's value: `0.5`, `0.99`, `1`.
pub fn format_phi(phi: f64) -> String {
    format!("{phi}")
}

/// The φ-quantile of sorted `values`, interpolating linearly between the two
/// closest ranks (rank `φ·(n−1)`), as Prometheus' `quantile_over_time`. NaN when empty.
pub fn quantile(sorted: &[f64], phi: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = phi * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let w = rank - lo as f64;
    if lo == hi { sorted[lo] } else { sorted[lo] * (1.0 - w) + sorted[hi] * w }
}
