//! The aggregate stage of one shard: folds matched samples into its buckets.

use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use super::state::{Acc, CounterState, Group, RuleShard, bucket_charge};
use super::{AggregateShared, CompiledRule, Grouping, SharedAggShard, bucket_end};
use crate::model::{Labels, Sample, now_ms};
use crate::pipeline::stages::SeriesMap;
use crate::pipeline::stages::retain_aligned;
use crate::pipeline::{DropTally, StatefulStage};
use crate::telemetry::{DropReason, Stage};

/// Runs after `monotonic` in each shard: per series, timestamps only increase here.
pub struct Aggregate {
    shared: Arc<AggregateShared>,
    shard: SharedAggShard,
    /// Per rule, per batch: samples folded, and skipped by reason.
    folded: Vec<u64>,
    skipped: Vec<[u64; 4]>,
}

/// Why a rule could not fold a sample in (index into `skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    TooLate = 0,
    Overflow = 1,
    Future = 2,
    NotANumber = 3,
}

impl Skip {
    fn reason(self) -> DropReason {
        match self {
            Skip::TooLate => DropReason::TooLate,
            Skip::Overflow => DropReason::AggregateOverflow,
            Skip::Future => DropReason::TimestampOutOfWindow,
            // Only removed when a rule consumes its input: then it is "aggregated" (a staleness marker).
            Skip::NotANumber => DropReason::Aggregated,
        }
    }
}

impl Aggregate {
    pub fn new(shared: Arc<AggregateShared>, shard: SharedAggShard) -> Self {
        let n = shared.rules.len();
        Aggregate { shared, shard, folded: vec![0; n], skipped: vec![[0; 4]; n] }
    }

    /// [`StatefulStage::process`] at wall-clock time `now` (ms), for tests.
    pub fn process_at(&mut self, now: i64, samples: &mut Vec<Sample>, hashes: &mut Vec<u64>, drops: &mut DropTally) {
        let shared = self.shared.clone();
        let now_secs = shared.now_secs();
        let mut state = self.shard.lock();
        let (folded, skipped) = (&mut self.folded, &mut self.skipped);
        let mut consumed: [u64; 4] = [0; 4];
        let mut aggregated = 0u64;
        retain_aligned(samples, hashes, |s, hash| {
            let mut keep = true;
            let named = shared.by_name.get(s.name()).map(Vec::as_slice).unwrap_or(&[]);
            for &i in named.iter().chain(&shared.any_name) {
                let rule = &shared.rules[i];
                if !rule.selector.matches_labels(&s.labels) {
                    continue;
                }
                let outcome = fold(rule, &mut state[i], s, *hash, now, now_secs);
                match outcome {
                    Ok(()) => folded[i] += 1,
                    Err(skip) if skip != Skip::NotANumber => skipped[i][skip as usize] += 1,
                    Err(_) => {}
                }
                if keep && !rule.config.keep_input {
                    keep = false;
                    match outcome {
                        Ok(()) => aggregated += 1,
                        Err(skip) => consumed[skip as usize] += 1,
                    }
                }
            }
            keep
        });
        drop(state);
        drops.add(Stage::Aggregate, DropReason::Aggregated, aggregated);
        for skip in [Skip::TooLate, Skip::Overflow, Skip::Future, Skip::NotANumber] {
            drops.add(Stage::Aggregate, skip.reason(), consumed[skip as usize]);
        }
        for (i, rule) in shared.rules.iter().enumerate() {
            if folded[i] > 0 {
                rule.limits.metrics.input_samples.increment(std::mem::take(&mut folded[i]));
            }
            for skip in [Skip::TooLate, Skip::Overflow, Skip::Future] {
                let n = std::mem::take(&mut skipped[i][skip as usize]);
                if n > 0 {
                    rule.limits.metrics.skipped(skip.reason()).increment(n);
                }
            }
        }
    }
}

impl StatefulStage for Aggregate {
    fn process(&mut self, samples: &mut Vec<Sample>, hashes: &mut Vec<u64>, drops: &mut DropTally) {
        self.process_at(now_ms(), samples, hashes, drops);
    }
}

/// Folds one sample into `rule`'s bucket for it.
#[inline]
fn fold(
    rule: &CompiledRule,
    state: &mut RuleShard,
    s: &Sample,
    series: u64,
    now: i64,
    now_secs: u32,
) -> Result<(), Skip> {
    if s.value.is_nan() {
        return Err(Skip::NotANumber);
    }
    let end = bucket_end(s.timestamp_ms, rule.interval_ms);
    if end <= state.closed_until || end.saturating_add(rule.lag_ms) <= now {
        return Err(Skip::TooLate);
    }
    // At most one bucket ahead of the one the wall clock is in.
    if end > bucket_end(now, rule.interval_ms).saturating_add(rule.interval_ms) {
        return Err(Skip::Future);
    }
    let group = group_hash(&rule.grouping, &s.labels, series);
    let limits = &rule.limits;
    let keep_value = rule.values;
    if keep_value && !limits.reserve_value() {
        return Err(Skip::Overflow);
    }
    let increase = match state.counters.get(&series) {
        Some(c) if rule.counters => {
            if s.value >= c.last {
                s.value - c.last
            } else {
                s.value
            }
        }
        _ => 0.0,
    };
    let Some(acc) = bucket(&mut state.groups, &mut state.open, limits, &rule.grouping, group, end, &s.labels) else {
        if keep_value {
            limits.release(0, 0, 1);
        }
        return Err(Skip::Overflow);
    };
    acc.add(s.value, s.timestamp_ms, series, increase, keep_value);
    if rule.counters {
        let fresh = CounterState { last: s.value, seen: now_secs };
        if state.counters.insert(series, fresh).is_none() {
            limits.counters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The accumulator of `group`'s bucket ending at `end`, made if it fits the rule's bound.
#[allow(clippy::too_many_arguments)]
fn bucket<'a>(
    groups: &'a mut SeriesMap<Group>,
    open: &mut std::collections::BTreeMap<i64, u32>,
    limits: &super::state::RuleLimits,
    grouping: &Grouping,
    group: u64,
    end: i64,
    labels: &Labels,
) -> Option<&'a mut Acc> {
    let g = match groups.entry(group) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let labels = group_labels(grouping, labels);
            if !limits.reserve_bucket(bucket_charge(&labels)) {
                return None;
            }
            *open.entry(end).or_default() += 1;
            let g = v.insert(Group { labels, buckets: Vec::with_capacity(1) });
            g.buckets.push((end, Acc::default()));
            return g.buckets.last_mut().map(|(_, a)| a);
        }
    };
    match g.buckets.iter().position(|(e, _)| *e == end) {
        Some(i) => Some(&mut g.buckets[i].1),
        None => {
            if !limits.reserve_bucket(bucket_charge(&g.labels)) {
                return None;
            }
            *open.entry(end).or_default() += 1;
            g.buckets.push((end, Acc::default()));
            g.buckets.last_mut().map(|(_, a)| a)
        }
    }
}

/// The output series' identity within a rule: the hash of the labels it keeps.
#[inline]
fn group_hash(grouping: &Grouping, labels: &Labels, series: u64) -> u64 {
    let keep: &dyn Fn(&str) -> bool = match grouping {
        Grouping::All => return series,
        Grouping::By(by) => &|n: &str| n == crate::model::METRIC_NAME_LABEL || by.iter().any(|b| b == n),
        Grouping::Without(without) => &|n: &str| !without.iter().any(|w| w == n),
    };
    let mut h = Xxh3::new();
    for l in labels.iter().filter(|l| keep(l.name)) {
        h.update(&(l.name.len() as u32).to_le_bytes());
        h.update(l.name.as_bytes());
        h.update(&(l.value.len() as u32).to_le_bytes());
        h.update(l.value.as_bytes());
    }
    h.digest()
}

/// The labels an output series keeps (input order: sorted).
pub(super) fn group_labels(grouping: &Grouping, labels: &Labels) -> Labels {
    match grouping {
        Grouping::All => labels.clone(),
        Grouping::By(by) => Labels::from_refs(
            labels.iter().filter(|l| l.name == crate::model::METRIC_NAME_LABEL || by.iter().any(|b| b == l.name)),
        ),
        Grouping::Without(without) => Labels::from_refs(labels.iter().filter(|l| !without.iter().any(|w| w == l.name))),
    }
}
