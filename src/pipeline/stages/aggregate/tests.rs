use super::*;
use crate::model::{Labels, MetricKind, Sample};
use crate::pipeline::DropTally;
use crate::telemetry::{DropReason, Stage};

fn rules(toml_text: &str) -> Vec<AggregateRule> {
    #[derive(serde::Deserialize)]
    struct Wrap {
        aggregate: Vec<AggregateRule>,
    }
    let w: Wrap = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    check_rules(&w.aggregate).unwrap();
    w.aggregate
}

fn sample(name: &str, labels: &[(&str, &str)], v: f64, ts: i64, kind: MetricKind) -> Sample {
    let mut l: Labels = [("__name__", name)].into_iter().chain(labels.iter().copied()).collect();
    l.sort();
    Sample { labels: l, value: v, timestamp_ms: ts, kind }
}

/// Runs `samples` through one shard at wall-clock `now`; returns what passed and the drops.
fn run(stage: &mut Aggregate, now: i64, samples: Vec<Sample>) -> (Vec<Sample>, Vec<(DropReason, u64)>) {
    let mut samples = samples;
    let mut hashes: Vec<u64> = samples.iter().map(|s| s.labels.series_hash()).collect();
    let mut drops = DropTally::default();
    stage.process_at(now, &mut samples, &mut hashes, &mut drops);
    assert_eq!(samples.len(), hashes.len());
    let mut d: Vec<_> = drops
        .drain()
        .map(|(s, r, n)| {
            assert_eq!(s, Stage::Aggregate);
            (r, n)
        })
        .collect();
    d.sort();
    (samples, d)
}

/// `name{labels} value @ts` lines, sorted, for comparing outputs.
fn lines(samples: &[Sample]) -> Vec<String> {
    let mut v: Vec<String> = samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| format!("{}=\"{}\"", l.name, l.value))
                .collect();
            format!("{}{{{}}} {} @{}", s.name(), labels.join(","), s.value, s.timestamp_ms)
        })
        .collect();
    v.sort();
    v
}

const MIN: i64 = 60_000;

#[test]
fn outputs_are_exact_and_named() {
    let shared = AggregateShared::new(
        "p",
        &rules(
            r#"
[[aggregate]]
match = "cpu"
interval = "1m"
by = ["host"]
lag = "0s"
outputs = ["count", "sum", "min", "max", "avg", "last", "quantiles(0, 0.5, 1)"]
"#,
        ),
        std::time::Duration::from_secs(3600),
    );
    let mut stage = Aggregate::new(shared.clone(), shared.new_shard());
    let t0 = 100 * MIN;
    let g = MetricKind::Gauge;
    let input = vec![
        sample("cpu", &[("host", "a"), ("core", "0")], 1.0, t0 + 1, g),
        sample("cpu", &[("host", "a"), ("core", "1")], 4.0, t0 + 2, g),
        sample("cpu", &[("host", "a"), ("core", "0")], 2.0, t0 + MIN, g), // the bucket's end is inside
        sample("cpu", &[("host", "b"), ("core", "0")], 7.0, t0 + 5, g),
        sample("mem", &[("host", "a")], 9.0, t0 + 5, g), // not matched
    ];
    let (passed, drops) = run(&mut stage, t0 + 10, input);
    assert_eq!(passed.len(), 5, "keep_input defaults to true");
    assert!(drops.is_empty());
    assert!(shared.flush(t0 + MIN - 1, FlushKind::Tick).is_empty(), "still open");
    let out = shared.flush(t0 + MIN, FlushKind::Tick);
    let end = t0 + MIN;
    let expected: Vec<String> = [
        format!("cpu:1m_avg{{host=\"a\"}} {} @{end}", 7.0 / 3.0),
        format!("cpu:1m_avg{{host=\"b\"}} 7 @{end}"),
        format!("cpu:1m_count{{host=\"a\"}} 3 @{end}"),
        format!("cpu:1m_count{{host=\"b\"}} 1 @{end}"),
        format!("cpu:1m_last{{host=\"a\"}} 2 @{end}"),
        format!("cpu:1m_last{{host=\"b\"}} 7 @{end}"),
        format!("cpu:1m_max{{host=\"a\"}} 4 @{end}"),
        format!("cpu:1m_max{{host=\"b\"}} 7 @{end}"),
        format!("cpu:1m_min{{host=\"a\"}} 1 @{end}"),
        format!("cpu:1m_min{{host=\"b\"}} 7 @{end}"),
        format!("cpu:1m_quantiles{{host=\"a\",quantile=\"0\"}} 1 @{end}"),
        format!("cpu:1m_quantiles{{host=\"a\",quantile=\"0.5\"}} 2 @{end}"),
        format!("cpu:1m_quantiles{{host=\"a\",quantile=\"1\"}} 4 @{end}"),
        format!("cpu:1m_quantiles{{host=\"b\",quantile=\"0\"}} 7 @{end}"),
        format!("cpu:1m_quantiles{{host=\"b\",quantile=\"0.5\"}} 7 @{end}"),
        format!("cpu:1m_quantiles{{host=\"b\",quantile=\"1\"}} 7 @{end}"),
        format!("cpu:1m_sum{{host=\"a\"}} 7 @{end}"),
        format!("cpu:1m_sum{{host=\"b\"}} 7 @{end}"),
    ]
    .into_iter()
    .collect();
    assert_eq!(lines(&out), expected);
    assert!(shared.flush(t0 + 2 * MIN, FlushKind::Tick).is_empty(), "emitted once");
}

#[test]
fn counters_increase_and_rate_across_resets_and_buckets() {
    let shared = AggregateShared::new(
        "p",
        &rules(
            r#"
[[aggregate]]
match = "req_total"
interval = "1m"
without = ["instance"]
lag = "0s"
outputs = ["increase", "rate"]
"#,
        ),
        std::time::Duration::from_secs(3600),
    );
    let mut stage = Aggregate::new(shared.clone(), shared.new_shard());
    let c = MetricKind::Counter;
    let t0 = 10 * MIN;
    let s = |inst: &str, v: f64, ts: i64| sample("req_total", &[("instance", inst), ("job", "api")], v, ts, c);
    // i1: 10 (baseline) → 15 → 3 (reset: +3) → 8; i2: 100 → 130.
    run(&mut stage, t0, vec![s("i1", 10.0, t0 + 1_000), s("i2", 100.0, t0 + 1_000), s("i1", 15.0, t0 + 20_000)]);
    run(&mut stage, t0, vec![s("i1", 3.0, t0 + 40_000), s("i2", 130.0, t0 + 50_000)]);
    let out = shared.flush(t0 + MIN, FlushKind::Tick);
    let end = t0 + MIN;
    assert_eq!(
        lines(&out),
        vec![
            format!("req_total:1m_increase{{job=\"api\"}} 38 @{end}"),
            format!("req_total:1m_rate{{job=\"api\"}} {} @{end}", 38.0 / 60.0)
        ]
    );
    // The next bucket continues from each series' last value.
    run(&mut stage, t0 + MIN, vec![s("i1", 8.0, t0 + MIN + 1_000)]);
    let out = shared.flush(t0 + 2 * MIN, FlushKind::Tick);
    assert_eq!(lines(&out)[0], format!("req_total:1m_increase{{job=\"api\"}} 5 @{}", t0 + 2 * MIN));
}

#[test]
fn late_samples_within_lag_count_later_ones_are_too_late() {
    let shared = AggregateShared::new(
        "p",
        &rules(
            r#"
[[aggregate]]
match = "g"
interval = "1m"
lag = "30s"
keep_input = false
outputs = ["count"]
"#,
        ),
        std::time::Duration::from_secs(3600),
    );
    let mut stage = Aggregate::new(shared.clone(), shared.new_shard());
    let g = MetricKind::Gauge;
    let t0 = 50 * MIN;
    let (passed, drops) = run(&mut stage, t0 + 10, vec![sample("g", &[], 1.0, t0 + 5, g)]);
    assert!(passed.is_empty(), "keep_input = false consumes");
    assert_eq!(drops, vec![(DropReason::Aggregated, 1)]);
    // 20 s after the bucket's end, within lag: still counted.
    run(&mut stage, t0 + MIN + 20_000, vec![sample("g", &[("x", "1")], 1.0, t0 + MIN, g)]);
    assert!(shared.flush(t0 + MIN + 29_999, FlushKind::Tick).is_empty());
    let out = shared.flush(t0 + MIN + 30_000, FlushKind::Tick);
    assert_eq!(
        lines(&out),
        vec![format!("g:1m_count{{x=\"1\"}} 1 @{}", t0 + MIN), format!("g:1m_count{{}} 1 @{}", t0 + MIN)]
    );
    // Now closed: a sample for it is too late, whatever the clock says.
    let (_, drops) = run(&mut stage, t0 + MIN + 1, vec![sample("g", &[("x", "2")], 1.0, t0 + 30_000, g)]);
    assert_eq!(drops, vec![(DropReason::TooLate, 1)]);
    // And past `end + lag` by the clock even before a flush ran.
    let (_, drops) = run(&mut stage, t0 + 2 * MIN + 30_000, vec![sample("g", &[("x", "3")], 1.0, t0 + 2 * MIN, g)]);
    assert_eq!(drops, vec![(DropReason::TooLate, 1)]);
    // Far in the future: refused, not held.
    let (_, drops) = run(&mut stage, t0 + 2 * MIN, vec![sample("g", &[("x", "4")], 1.0, t0 + 10 * MIN, g)]);
    assert_eq!(drops, vec![(DropReason::TimestampOutOfWindow, 1)]);
}

#[test]
fn shards_partials_merge_into_one_output_series() {
    let shared = AggregateShared::new(
        "p",
        &rules(
            "[[aggregate]]\nmatch = '{job=\"x\"}'\ninterval = '1m'\nby = ['job']\nlag = '0s'\noutputs = ['sum', 'last', 'count']\n",
        ),
        std::time::Duration::from_secs(3600),
    );
    let mut a = Aggregate::new(shared.clone(), shared.new_shard());
    let mut b = Aggregate::new(shared.clone(), shared.new_shard());
    let g = MetricKind::Gauge;
    run(&mut a, 0, vec![sample("m", &[("job", "x"), ("i", "1")], 1.0, 10, g)]);
    run(
        &mut b,
        0,
        vec![sample("m", &[("job", "x"), ("i", "2")], 2.0, 20, g), sample("n", &[("job", "x")], 5.0, 30, g)],
    );
    let out = shared.flush(MIN, FlushKind::Tick);
    assert_eq!(
        lines(&out),
        vec![
            format!("m:1m_count{{job=\"x\"}} 2 @{MIN}"),
            format!("m:1m_last{{job=\"x\"}} 2 @{MIN}"),
            format!("m:1m_sum{{job=\"x\"}} 3 @{MIN}"),
            format!("n:1m_count{{job=\"x\"}} 1 @{MIN}"),
            format!("n:1m_last{{job=\"x\"}} 5 @{MIN}"),
            format!("n:1m_sum{{job=\"x\"}} 5 @{MIN}"),
        ]
    );
}

#[test]
fn state_is_bounded_and_shutdown_flushes_or_discards() {
    for flush_on_shutdown in [true, false] {
        let shared = AggregateShared::new(
            "p",
            &rules(&format!(
                "[[aggregate]]\nmatch = 'g'\ninterval = '1h'\nmax_series = 3\nflush_on_shutdown = {flush_on_shutdown}\noutputs = ['count']\n"
            )),
            std::time::Duration::from_secs(3600),
        );
        let mut stage = Aggregate::new(shared.clone(), shared.new_shard());
        let batch = (0..10).map(|i| sample("g", &[("i", &i.to_string())], 1.0, 1_000, MetricKind::Gauge)).collect();
        let (passed, drops) = run(&mut stage, 2_000, batch);
        assert_eq!(passed.len(), 10, "keep_input: the samples pass, only the rollup misses them");
        assert!(drops.is_empty());
        let state = &shared.rules[0].limits;
        // Bounded in bytes: max_series × BYTES_PER_SERIES, each bucket charged its fixed part and labels.
        assert!(state.bytes.load(std::sync::atomic::Ordering::Relaxed) <= 3 * BYTES_PER_SERIES);
        let kept = state.buckets.load(std::sync::atomic::Ordering::Relaxed);
        assert!((1..10).contains(&kept), "{kept} buckets");
        assert!(shared.flush(3_000, FlushKind::Tick).is_empty());
        let out = shared.flush(3_000, FlushKind::Shutdown);
        assert_eq!(out.len() as u64, if flush_on_shutdown { kept } else { 0 });
        assert!(out.iter().all(|s| s.timestamp_ms == 3_600_000), "stamped at the bucket's end");
        assert_eq!(state.bytes.load(std::sync::atomic::Ordering::Relaxed), 0, "state released");
    }
}

#[test]
fn config_errors_name_the_rule_and_field() {
    #[derive(serde::Deserialize)]
    struct Wrap {
        #[allow(dead_code)]
        aggregate: Vec<AggregateRule>,
    }
    for (text, why) in [
        ("match = 'a{'\ninterval = '1m'\noutputs = ['sum']", "match: invalid selector"),
        ("match = 'a'\ninterval = '1m'\nby = ['x']\nwithout = ['y']\noutputs = ['sum']", "not both"),
        ("match = 'a'\ninterval = '100ms'\noutputs = ['sum']", "shorter than 1s"),
        ("match = 'a'\ninterval = '1m'\noutputs = []", "outputs is empty"),
        ("match = 'a'\ninterval = '1m'\nby = ['__name__']\noutputs = ['sum']", "always kept"),
    ] {
        let w: Wrap = toml::from_str(&format!("[[aggregate]]\n{text}")).unwrap();
        let e = check_rules(&w.aggregate).unwrap_err();
        assert!(e.contains(why) && e.contains("aggregate[0]"), "{text}: {e}");
    }
    for (text, why) in [
        ("outputs = ['median']", "unknown output"),
        ("outputs = ['quantiles(1.5)']", "not in [0, 1]"),
        ("outputs = ['sum']\nbogus = 1", "unknown field"),
    ] {
        let e = toml::from_str::<Wrap>(&format!("[[aggregate]]\nmatch = 'a'\ninterval = '1m'\n{text}")).err().unwrap();
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
    let w: Wrap = toml::from_str("[[aggregate]]\nmatch='a'\ninterval='1m'\noutputs=['sum']\n[[aggregate]]\nmatch='a'\ninterval='1m'\noutputs=['max']").unwrap();
    assert!(check_rules(&w.aggregate).unwrap_err().contains("two rules are named \"a:1m\""));
}

#[test]
fn names_and_quantiles() {
    assert_eq!(interval_text(std::time::Duration::from_secs(3600)), "1h");
    assert_eq!(interval_text(std::time::Duration::from_secs(90)), "90s");
    assert_eq!(interval_text(std::time::Duration::from_secs(300)), "5m");
    assert_eq!(interval_text(std::time::Duration::from_secs(86400)), "1d");
    assert_eq!(bucket_end(0, 60), 0);
    assert_eq!(bucket_end(1, 60), 60);
    assert_eq!(bucket_end(60, 60), 60);
    assert_eq!(bucket_end(-1, 60), 0);
    assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    // rank 0.99 × 3 = 2.97: between 3 and 4.
    assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.99) - 3.97).abs() < 1e-12);
    assert!(quantile(&[], 0.5).is_nan());
    assert_eq!(format_phi(0.99), "0.99");
}

#[test]
fn a_restart_keeps_emitted_buckets_closed() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[[aggregate]]
name = "r"
match = "temp"
interval = "1m"
lag = "30s"
outputs = ["sum"]

[[aggregate]]
name = "idle"
match = "other"
interval = "1m"
outputs = ["sum"]
"#;
    let g = MetricKind::Gauge;
    let t0 = 100 * MIN;
    let now = t0 + 10_000;
    // First run: a bucket still open when the daemon stops is emitted on shutdown.
    let first = AggregateShared::new("p", &rules(text), std::time::Duration::from_secs(3600));
    first.restore(dir.path()).unwrap();
    let mut stage = Aggregate::new(first.clone(), first.new_shard());
    run(&mut stage, now, vec![sample("temp", &[("k", "a")], 2.0, t0 + 1, g)]);
    let out = first.flush(now, FlushKind::Shutdown);
    assert_eq!(lines(&out), vec![format!("temp:1m_sum{{k=\"a\"}} 2 @{}", t0 + MIN)]);
    first.save_watermarks().unwrap();
    let saved = watermark::WatermarkFile::new(dir.path(), "p").load().unwrap();
    assert_eq!(saved, BTreeMap::from([("r".to_string(), t0 + MIN)]), "only rules that emitted");

    // Second run, same wall clock (well within `lag`): the bucket stays closed.
    let second = AggregateShared::new("p", &rules(text), std::time::Duration::from_secs(3600));
    second.restore(dir.path()).unwrap();
    let mut stage = Aggregate::new(second.clone(), second.new_shard());
    let replay = vec![
        sample("temp", &[("k", "a")], 5.0, t0 + 2, g),
        sample("temp", &[("k", "b")], 7.0, t0 + MIN, g), // a group never emitted: the bucket is still closed
        sample("temp", &[("k", "a")], 3.0, t0 + MIN + 1, g), // the next bucket is open
    ];
    let (passed, drops) = run(&mut stage, now, replay);
    assert_eq!(passed.len(), 3, "keep_input: the raw samples still leave");
    assert!(drops.is_empty());
    let out = second.flush(t0 + 3 * MIN, FlushKind::Tick);
    assert_eq!(lines(&out), vec![format!("temp:1m_sum{{k=\"a\"}} 3 @{}", t0 + 2 * MIN)]);
    second.save_watermarks().unwrap();
    let saved = watermark::WatermarkFile::new(dir.path(), "p").load().unwrap();
    assert_eq!(saved["r"], t0 + 2 * MIN);

    // A damaged file stops the start, naming it.
    std::fs::write(dir.path().join("aggregate/p.json"), b"not json").unwrap();
    let third = AggregateShared::new("p", &rules(text), std::time::Duration::from_secs(3600));
    let e = third.restore(dir.path()).unwrap_err().to_string();
    assert!(e.contains("p.json is damaged"), "{e}");
}
