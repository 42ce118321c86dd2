//! Stage 4, stateful: time only moves forward per series, and counter resets
//! are handled by policy.
//!
//! Per series it keeps the last timestamp, the last raw counter value and
//! the offset `adjust` adds, in the shard's series table (see
//! [`super::series`]): state exists only for series the cardinality stage
//! admitted and goes when that stage forgets them, so it is bounded by
//! `cardinality.max_series` and expires with `cardinality.forget_after`.

use serde::Deserialize;

use super::retain_aligned;
use super::series::SharedShard;
use crate::model::{MetricKind, Sample};
use crate::pipeline::{DropTally, StatefulStage};
use crate::telemetry::{DropReason, MonotonicMetrics, Stage};

/// `[pipelines.<name>.monotonic]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonotonicConfig {
    /// What a decrease of a counter means.
    #[serde(default)]
    pub counter_reset: CounterReset,
}

/// Policy for a counter value lower than the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterReset {
    /// Pass it on: the counter restarted (Prometheus semantics; `rate()` copes).
    #[default]
    Pass,
    /// Drop it (`counter_reset`) until the counter exceeds its last value again.
    Drop,
    /// Rebase: add the value before the reset to this and later samples, so
    /// the output never decreases (for backends without reset handling).
    Adjust,
}

/// The monotonic stage of one shard.
pub struct Monotonic {
    policy: CounterReset,
    shard: SharedShard,
    metrics: MonotonicMetrics,
}

impl Monotonic {
    /// The stage of one shard; `shard` is the series table its cardinality
    /// stage admits into (a series it did not admit passes unchecked).
    pub fn new(pipeline: &str, config: &MonotonicConfig, shard: SharedShard) -> Self {
        Monotonic { policy: config.counter_reset, shard, metrics: MonotonicMetrics::new(pipeline) }
    }
}

impl StatefulStage for Monotonic {
    fn process(&mut self, samples: &mut Vec<Sample>, hashes: &mut Vec<u64>, drops: &mut DropTally) {
        let mut series = self.shard.lock();
        let policy = self.policy;
        let (mut out_of_order, mut duplicate, mut reset_dropped, mut resets) = (0u64, 0u64, 0u64, 0u64);
        retain_aligned(samples, hashes, |s, hash| {
            let Some(mut clock) = series.clock(*hash) else { return true };
            if s.timestamp_ms <= clock.state.last_ts {
                if s.timestamp_ms == clock.state.last_ts {
                    duplicate += 1;
                } else {
                    out_of_order += 1;
                }
                return false;
            }
            // NaN (staleness markers included) neither resets nor moves the baseline.
            if s.kind == MetricKind::Counter && !s.value.is_nan() {
                let raw = s.value;
                if raw < clock.state.last_raw {
                    resets += 1;
                    match policy {
                        CounterReset::Pass => {}
                        CounterReset::Drop => {
                            reset_dropped += 1;
                            return false;
                        }
                        CounterReset::Adjust => {
                            let before = clock.state.last_raw;
                            clock.add_offset(before);
                        }
                    }
                }
                clock.state.last_raw = raw;
                if policy == CounterReset::Adjust {
                    s.value = raw + clock.offset();
                }
            }
            clock.state.last_ts = s.timestamp_ms;
            true
        });
        drop(series);
        drops.add(Stage::Monotonic, DropReason::OutOfOrder, out_of_order);
        drops.add(Stage::Monotonic, DropReason::Duplicate, duplicate);
        drops.add(Stage::Monotonic, DropReason::CounterReset, reset_dropped);
        if resets > 0 {
            self.metrics.counter_resets.increment(resets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::pipeline::stages::{Cardinality, CardinalityConfig, CardinalityShared};
    use figment::providers::Format;
    use std::time::Duration;

    /// A cardinality stage and a monotonic stage sharing one shard, like `build` makes them.
    struct Shard {
        cardinality: Cardinality,
        monotonic: Monotonic,
    }

    fn stage(policy: &str) -> Shard {
        let c: MonotonicConfig =
            figment::Figment::from(figment::providers::Toml::string(&format!("counter_reset = \"{policy}\"")))
                .extract()
                .unwrap();
        let cardinality = CardinalityConfig { forget_after: Duration::from_secs(60), ..CardinalityConfig::default() };
        let shared = CardinalityShared::new("test", &cardinality, 1);
        let shard = shared.new_shard();
        Shard { cardinality: Cardinality::new(shared, shard.clone()), monotonic: Monotonic::new("test", &c, shard) }
    }

    fn series(name: &str, kind: MetricKind, points: &[(i64, f64)]) -> Vec<Sample> {
        let labels: Labels = [("__name__", name)].into_iter().collect();
        points.iter().map(|&(ts, v)| Sample { labels: labels.clone(), value: v, timestamp_ms: ts, kind }).collect()
    }

    type Kept = Vec<(i64, f64)>;
    type Dropped = Vec<(DropReason, u64)>;

    /// Runs at `now`; returns the kept (ts, value) pairs and the monotonic drops by reason.
    fn run(m: &mut Shard, now: u32, samples: Vec<Sample>) -> (Kept, Dropped) {
        let mut samples = samples;
        let mut hashes: Vec<u64> = samples.iter().map(|s| s.labels.series_hash()).collect();
        let mut drops = DropTally::default();
        m.cardinality.process_at(now, &mut samples, &mut hashes, &mut drops);
        assert!(drops.is_empty());
        m.monotonic.process(&mut samples, &mut hashes, &mut drops);
        assert_eq!(samples.len(), hashes.len());
        let mut d: Vec<_> = drops
            .drain()
            .map(|(stage, r, n)| {
                assert_eq!(stage, Stage::Monotonic);
                (r, n)
            })
            .collect();
        d.sort();
        (samples.iter().map(|s| (s.timestamp_ms, s.value)).collect(), d)
    }

    #[test]
    fn out_of_order_and_duplicates_are_dropped() {
        let mut m = stage("pass");
        let (kept, drops) =
            run(&mut m, 0, series("g", MetricKind::Gauge, &[(10, 1.0), (20, 5.0), (20, 6.0), (15, 2.0), (30, 0.5)]));
        assert_eq!(kept, vec![(10, 1.0), (20, 5.0), (30, 0.5)]);
        assert_eq!(drops, vec![(DropReason::OutOfOrder, 1), (DropReason::Duplicate, 1)]);
        // State carries over between batches.
        let (kept, drops) = run(&mut m, 1, series("g", MetricKind::Gauge, &[(30, 1.0), (31, 1.0)]));
        assert_eq!(kept, vec![(31, 1.0)]);
        assert_eq!(drops, vec![(DropReason::Duplicate, 1)]);
    }

    #[test]
    fn series_are_independent() {
        let mut m = stage("pass");
        let mut samples = series("a", MetricKind::Gauge, &[(10, 1.0)]);
        samples.extend(series("b", MetricKind::Gauge, &[(5, 1.0)]));
        let (kept, drops) = run(&mut m, 0, samples);
        assert_eq!(kept.len(), 2);
        assert!(drops.is_empty());
    }

    #[test]
    fn counter_reset_pass() {
        let mut m = stage("pass");
        let (kept, drops) =
            run(&mut m, 0, series("c", MetricKind::Counter, &[(1, 10.0), (2, 12.0), (3, 1.0), (4, 3.0)]));
        assert_eq!(kept, vec![(1, 10.0), (2, 12.0), (3, 1.0), (4, 3.0)]);
        assert!(drops.is_empty());
    }

    #[test]
    fn counter_reset_drop() {
        let mut m = stage("drop");
        let (kept, drops) =
            run(&mut m, 0, series("c", MetricKind::Counter, &[(1, 10.0), (2, 12.0), (3, 1.0), (4, 3.0), (5, 13.0)]));
        assert_eq!(kept, vec![(1, 10.0), (2, 12.0), (5, 13.0)]);
        assert_eq!(drops, vec![(DropReason::CounterReset, 2)]);
        // Gauges may go down.
        let (kept, _) = run(&mut m, 0, series("g", MetricKind::Gauge, &[(1, 10.0), (2, 1.0)]));
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn counter_reset_adjust_stays_monotonic_across_resets() {
        let mut m = stage("adjust");
        let (kept, drops) = run(
            &mut m,
            0,
            series("c", MetricKind::Counter, &[(1, 10.0), (2, 12.0), (3, 1.0), (4, 3.0), (5, 2.0), (6, 4.0)]),
        );
        assert!(drops.is_empty());
        // 12 before the first reset, 3 before the second.
        assert_eq!(kept, vec![(1, 10.0), (2, 12.0), (3, 13.0), (4, 15.0), (5, 17.0), (6, 19.0)]);
        let (kept, _) = run(&mut m, 1, series("c", MetricKind::Counter, &[(7, 5.0)]));
        assert_eq!(kept, vec![(7, 20.0)]);
    }

    #[test]
    fn staleness_markers_pass_untouched() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut m = stage("adjust");
        let mut samples = series("c", MetricKind::Counter, &[(1, 10.0), (2, 1.0), (3, 0.0), (4, 2.0)]);
        samples[2].value = stale;
        let mut hashes: Vec<u64> = samples.iter().map(|s| s.labels.series_hash()).collect();
        m.cardinality.process_at(0, &mut samples, &mut hashes, &mut DropTally::default());
        m.monotonic.process(&mut samples, &mut hashes, &mut DropTally::default());
        assert_eq!(samples[2].value.to_bits(), stale.to_bits());
        assert_eq!(samples[3].value, 12.0);
    }

    #[test]
    fn idle_series_are_forgotten() {
        let mut m = stage("pass");
        run(&mut m, 0, series("a", MetricKind::Gauge, &[(100, 1.0)]));
        run(&mut m, 0, series("b", MetricKind::Gauge, &[(100, 1.0)]));
        run(&mut m, 50, series("b", MetricKind::Gauge, &[(200, 1.0)]));
        assert_eq!(m.cardinality.len(), 2);
        run(&mut m, 61, Vec::new());
        assert_eq!(m.cardinality.len(), 1, "a idle for 61 s is gone, b is not");
        // A forgotten series starts afresh: an old timestamp is accepted again.
        let (kept, _) = run(&mut m, 62, series("a", MetricKind::Gauge, &[(50, 1.0)]));
        assert_eq!(kept.len(), 1);
    }
}
