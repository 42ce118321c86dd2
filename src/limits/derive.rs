//! Defaults that compose: bounds the config leaves unset are derived from
//! `limits.memory_bytes`, so any config that only names receivers, sinks and
//! pipelines fits its budget. Bounds the user sets are kept as they are (and a
//! config whose explicit bounds do not fit is still refused, naming them).
//!
//! Derived: every memory queue's `max_samples` without an explicit value, and
//! every pipeline's `cardinality.max_series` without one. What is left of the
//! budget after everything else (process, channels, explicit queues and
//! tables, request buffers), minus a tenth of headroom, is shared out: half to
//! the series tables, half to the queues, evenly; each is capped at its
//! historical default (250,000 samples, 1,000,000 series) and never set below
//! a floor that keeps the relay useful ([`MIN_DERIVED_QUEUE_SAMPLES`],
//! [`MIN_DERIVED_SERIES`]).

use std::collections::BTreeSet;

use figment::Figment;

use super::MemoryBudget;
use crate::config::Config;
use crate::queue::QueueKind;

/// Smallest derived memory queue.
pub const MIN_DERIVED_QUEUE_SAMPLES: usize = 10_000;
/// Smallest derived `cardinality.max_series`.
pub const MIN_DERIVED_SERIES: u64 = 10_000;

/// Which bounds the config (file, pipeline files, environment) sets itself.
#[derive(Debug, Default, Clone)]
pub struct Explicit {
    pub memory_bytes: bool,
    /// Sinks whose `queue.max_samples` is set.
    pub queues: BTreeSet<String>,
    /// Pipelines whose `cardinality.max_series` is set.
    pub tables: BTreeSet<String>,
}

impl Explicit {
    pub fn from_figment(figment: &Figment, config: &Config) -> Explicit {
        let set = |path: String| figment.find_value(&path).is_ok();
        Explicit {
            memory_bytes: set("limits.memory_bytes".into()),
            queues: config.sinks.keys().filter(|n| set(format!("sinks.{n}.queue.max_samples"))).cloned().collect(),
            tables: config
                .pipelines
                .keys()
                .filter(|n| set(format!("pipelines.{n}.cardinality.max_series")))
                .cloned()
                .collect(),
        }
    }

    /// Everything explicit (as if every bound were written out): nothing is derived.
    pub fn all(config: &Config) -> Explicit {
        Explicit {
            memory_bytes: true,
            queues: config.sinks.keys().cloned().collect(),
            tables: config.pipelines.keys().cloned().collect(),
        }
    }
}

/// Fills in the bounds `explicit` says are unset (see the module doc) and
/// records each in `config.derived`.
pub fn derive_defaults(config: &mut Config, explicit: &Explicit) {
    let queues: Vec<String> = config
        .sinks
        .iter()
        .filter(|(n, s)| !explicit.queues.contains(*n) && s.common().queue.kind == QueueKind::Memory)
        .map(|(n, _)| n.clone())
        .collect();
    let tables: Vec<String> = config.pipelines.keys().filter(|n| !explicit.tables.contains(*n)).cloned().collect();
    if queues.is_empty() && tables.is_empty() {
        return;
    }
    // The budget without what is to be derived.
    for n in &queues {
        set_queue(config, n, 0);
    }
    for n in &tables {
        if let Some(p) = config.pipelines.get_mut(n) {
            p.cardinality.max_series = 0;
        }
    }
    let fixed = MemoryBudget::estimate(config).total();
    let free = config.limits.memory_bytes.saturating_sub(fixed) / 10 * 9;
    let (for_tables, for_queues) = match (tables.is_empty(), queues.is_empty()) {
        (false, false) => (free / 2, free - free / 2),
        (false, true) => (free, 0),
        (true, _) => (0, free),
    };
    let mut derived = Vec::new();
    if !queues.is_empty() {
        let each = for_queues / queues.len() as u64 / config.limits.bytes_per_sample.max(1);
        let samples = (each as usize).clamp(MIN_DERIVED_QUEUE_SAMPLES, crate::queue::defaults::max_samples());
        for n in &queues {
            set_queue(config, n, samples);
            derived.push(format!("sinks.{n}.queue.max_samples = {samples}"));
        }
    }
    if !tables.is_empty() {
        let each = for_tables / tables.len() as u64;
        for n in &tables {
            let Some(p) = config.pipelines.get_mut(n) else { continue };
            // Aggregate rules with `increase` / `rate` keep a counter value per series too.
            let counters = p.aggregate.iter().filter(|r| r.needs_counters()).count() as u64;
            // The label verdicts are capped at far fewer series than a table holds;
            // counted per series, they are never under-counted.
            let per_series = (crate::pipeline::stages::worst_bytes_per_series(p.validate.max_labels)
                + crate::pipeline::stages::resolve::VERDICT_BYTES
                + counters * crate::pipeline::stages::aggregate::BYTES_PER_COUNTER_SERIES)
                .max(1);
            let series = (each / per_series)
                .clamp(MIN_DERIVED_SERIES, crate::pipeline::stages::cardinality::defaults::max_series());
            p.cardinality.max_series = series;
            derived.push(format!("pipelines.{n}.cardinality.max_series = {series}"));
        }
    }
    config.derived = derived;
}

fn set_queue(config: &mut Config, sink: &str, samples: usize) {
    if let Some(s) = config.sinks.get_mut(sink) {
        s.queue_mut().max_samples = samples;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, memory_bytes: u64) -> Config {
        use figment::providers::{Format, Toml};
        let figment = Figment::from(Toml::string(toml));
        let mut c: Config = figment.extract().unwrap();
        let explicit = Explicit::from_figment(&figment, &c);
        c.limits.memory_bytes = memory_bytes;
        derive_defaults(&mut c, &explicit);
        c
    }

    const TWO_INFLUX: &str = r#"
[receivers.http]
type = "http"
[sinks.a]
type = "influxdb"
url = "http://127.0.0.1:8086"
database = "a"
[sinks.b]
type = "influxdb"
url = "http://127.0.0.1:8087"
database = "b"
[pipelines.main]
receivers = ["http"]
sinks = ["a", "b"]
"#;

    #[test]
    fn defaults_fit_a_one_gib_machine() {
        let c = load(TWO_INFLUX, (1 << 30) / 100 * 60);
        let b = MemoryBudget::estimate(&c);
        assert!(b.fits(), "{}", b.report());
        assert_eq!(c.derived.len(), 3, "{:?}", c.derived);
    }

    #[test]
    fn explicit_bounds_are_kept_and_can_still_be_refused() {
        let toml = TWO_INFLUX.replace("database = \"a\"", "database = \"a\"\nqueue = { max_samples = 5000000 }");
        let c = load(&toml, (1 << 30) / 100 * 60);
        let a = c.sinks["a"].common().queue.max_samples;
        assert_eq!(a, 5_000_000);
        let err = MemoryBudget::estimate(&c).check().unwrap_err().to_string();
        assert!(err.contains("sinks.a"), "{err}");
    }

    #[test]
    fn a_small_budget_shrinks_derived_bounds_to_their_floor_at_most() {
        let c = load(TWO_INFLUX, 64 << 20);
        assert!(c.sinks["b"].common().queue.max_samples >= MIN_DERIVED_QUEUE_SAMPLES);
        assert!(c.pipelines["main"].cardinality.max_series >= MIN_DERIVED_SERIES);
    }
}
