use proptest::prelude::*;

use super::*;
use crate::query::model::Matcher;
use crate::registry::{MetricEntry, MetricType};

fn entry(t: MetricType) -> MetricEntry {
    serde_norway::from_str(&format!("key: a.b\nname: a_b\ntype: {}\n", t.as_str())).unwrap()
}

fn plan(function: Function, group_by: Option<&[&str]>, across: Across) -> SeriesPlan {
    SeriesPlan {
        graph: "g".into(),
        index: 0,
        entry: entry(MetricType::Counter),
        function,
        group_by: group_by.map(|g| g.iter().map(|s| s.to_string()).collect()),
        across,
        matchers: Vec::<Matcher>::new(),
        scale: 1.0,
        legend: None,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const MIN: i64 = 60_000;

#[test]
fn gauge_functions_per_bucket() {
    let grid = TimeGrid::new(0, 3 * MIN, MIN).unwrap();
    // bucket (0,60s]: 30s=1, 60s=3; bucket (60,120]: none; bucket (120,180]: 150s=5
    let s = [(0, 100.0), (30_000, 1.0), (MIN, 3.0), (150_000, 5.0), (181_000, 9.0)];
    let f = |func| bucket_function(&s, func, &grid);
    assert_eq!(f(Function::Avg), vec![Some(2.0), None, Some(5.0)]);
    assert_eq!(f(Function::Min), vec![Some(1.0), None, Some(5.0)]);
    assert_eq!(f(Function::Max), vec![Some(3.0), None, Some(5.0)]);
    assert_eq!(f(Function::Last), vec![Some(3.0), None, Some(5.0)]);
    assert_eq!(f(Function::Raw), vec![Some(3.0), None, Some(5.0)]);
    assert_eq!(f(Function::Sum), vec![Some(4.0), None, Some(5.0)]);
    assert_eq!(f(Function::Count), vec![Some(2.0), None, Some(1.0)]);
}

#[test]
fn increase_reads_the_closed_window_and_never_goes_negative() {
    let grid = TimeGrid::new(0, 4 * MIN, MIN).unwrap();
    // counter 10 at 0, 70 at 60s, reset to 5 at 120s, 65 at 180s, nothing at 240s
    let s = [(0, 10.0), (MIN, 70.0), (2 * MIN, 5.0), (3 * MIN, 65.0)];
    assert_eq!(bucket_function(&s, Function::Increase, &grid), vec![Some(60.0), Some(5.0), Some(60.0), None]);
    assert_eq!(bucket_function(&s, Function::Rate, &grid), vec![Some(1.0), Some(5.0 / 60.0), Some(1.0), None]);
    // step 2 min: [0,120] = 10→70→5: 60 + 5
    let grid2 = TimeGrid::new(0, 4 * MIN, 2 * MIN).unwrap();
    assert_eq!(bucket_function(&s, Function::Increase, &grid2), vec![Some(65.0), Some(60.0)]);
    // NaN samples are not samples
    let s = [(0, 1.0), (30_000, f64::NAN), (MIN, 2.0)];
    assert_eq!(bucket_function(&s, Function::Increase, &TimeGrid::new(0, MIN, MIN).unwrap()), vec![Some(1.0)]);
}

#[test]
fn across_groups_sorts_and_scales() {
    let grid = TimeGrid::new(0, 2 * MIN, MIN).unwrap();
    let raw = RawResult {
        form: RawForm::PerSeries,
        series: vec![
            RawSeries { labels: labels(&[("device", "b"), ("port", "1")]), points: vec![(MIN, 1.0), (2 * MIN, 2.0)] },
            RawSeries { labels: labels(&[("device", "a"), ("port", "1")]), points: vec![(MIN, 10.0)] },
            RawSeries { labels: labels(&[("device", "a"), ("port", "2")]), points: vec![(MIN, 30.0)] },
        ],
        warnings: vec![],
    };
    let mut p = plan(Function::Rate, Some(&["device"]), Across::Avg);
    p.scale = 8.0;
    p.legend = Some("{device} in".into());
    let out = normalize(&p, &grid, &raw, Some("bits/s")).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].labels, labels(&[("device", "a")]));
    assert_eq!(out[0].points, vec![(MIN, Some(160.0)), (2 * MIN, None)]);
    assert_eq!(out[0].legend, "a in");
    assert_eq!(out[1].points, vec![(MIN, Some(8.0)), (2 * MIN, Some(16.0))]);
    assert_eq!(out[1].unit.as_deref(), Some("bits/s"));

    let count = normalize(&plan(Function::Rate, Some(&[]), Across::Count), &grid, &raw, None).unwrap();
    assert_eq!(count.len(), 1);
    assert_eq!(count[0].points, vec![(MIN, Some(3.0)), (2 * MIN, Some(1.0))]);
    assert_eq!(count[0].legend, "a.b");
}

#[test]
fn contract_violations_are_errors() {
    let grid = TimeGrid::new(0, 2 * MIN, MIN).unwrap();
    let off = RawResult {
        form: RawForm::PerSeries,
        series: vec![RawSeries { labels: labels(&[("d", "a")]), points: vec![(MIN + 1, 1.0)] }],
        warnings: vec![],
    };
    let e = normalize(&plan(Function::Avg, None, Across::Sum), &grid, &off, None).unwrap_err();
    assert!(matches!(e, NormalizeError::OffGrid { t: 60_001, .. }), "{e}");
    let dup = RawResult {
        form: RawForm::Grouped,
        series: vec![
            RawSeries { labels: labels(&[("d", "a"), ("x", "1")]), points: vec![] },
            RawSeries { labels: labels(&[("d", "a"), ("x", "2")]), points: vec![] },
        ],
        warnings: vec![],
    };
    let e = normalize(&plan(Function::Avg, Some(&["d"]), Across::Sum), &grid, &dup, None).unwrap_err();
    assert!(matches!(e, NormalizeError::Duplicate { .. }), "{e}");
}

fn samples_strategy() -> impl Strategy<Value = Vec<(i64, f64)>> {
    proptest::collection::vec((0i64..40 * MIN, 0.0f64..1e6), 0..80).prop_map(|mut v| {
        v.sort_by_key(|s| s.0);
        v.dedup_by_key(|s| s.0);
        v
    })
}

fn function_strategy() -> impl Strategy<Value = Function> {
    proptest::sample::select(Function::ALL.to_vec())
}

proptest! {
    /// Every function gives exactly one value per grid point, never NaN.
    #[test]
    fn dense_grid_never_nan(s in samples_strategy(), f in function_strategy(), steps in 1i64..12, start in 0i64..20) {
        let grid = TimeGrid::new(start * MIN, start * MIN + 30 * MIN, steps * 10_000).unwrap();
        let out = bucket_function(&s, f, &grid);
        prop_assert_eq!(out.len(), grid.len());
        prop_assert!(out.iter().flatten().all(|v| v.is_finite()));
    }

    /// A counter's increase and rate are never negative, whatever resets it has.
    #[test]
    fn counter_growth_never_negative(s in samples_strategy(), steps in 1i64..12) {
        let grid = TimeGrid::new(0, 40 * MIN, steps * 10_000).unwrap();
        for f in [Function::Increase, Function::Rate] {
            prop_assert!(bucket_function(&s, f, &grid).iter().flatten().all(|&v| v >= 0.0));
        }
    }

    /// Increase over a step equals the sum of increases over its halves' windows
    /// when a sample sits on every bucket edge (the windows chain).
    #[test]
    fn increase_is_additive_on_edges(values in proptest::collection::vec(0.0f64..1e3, 9)) {
        let s: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as i64 * MIN, v)).collect();
        let fine = bucket_function(&s, Function::Increase, &TimeGrid::new(0, 8 * MIN, MIN).unwrap());
        let coarse = bucket_function(&s, Function::Increase, &TimeGrid::new(0, 8 * MIN, 2 * MIN).unwrap());
        for (k, c) in coarse.iter().enumerate() {
            let sum = fine[2 * k].unwrap() + fine[2 * k + 1].unwrap();
            prop_assert!((c.unwrap() - sum).abs() <= 1e-9 * sum.abs().max(1.0));
        }
    }

    /// Sum across equals the sum of the series; count counts the present ones;
    /// output series are sorted and unique.
    #[test]
    fn across_matches_its_definition(
        inputs in proptest::collection::vec((0u8..4, proptest::collection::vec(proptest::option::of(-1e3f64..1e3), 6)), 1..8)
    ) {
        let grid = TimeGrid::new(0, 6 * MIN, MIN).unwrap();
        let raw = RawResult {
            form: RawForm::PerSeries,
            series: inputs.iter().enumerate().map(|(i, (g, vals))| RawSeries {
                labels: labels(&[("g", &g.to_string()), ("i", &i.to_string())]),
                points: grid.points().zip(vals).filter_map(|(t, v)| v.map(|v| (t, v))).collect(),
            }).collect(),
            warnings: vec![],
        };
        let sums = normalize(&plan(Function::Avg, Some(&["g"]), Across::Sum), &grid, &raw, None).unwrap();
        let counts = normalize(&plan(Function::Avg, Some(&["g"]), Across::Count), &grid, &raw, None).unwrap();
        prop_assert!(sums.windows(2).all(|w| w[0].labels < w[1].labels));
        for (line, count) in sums.iter().zip(&counts) {
            let g: u8 = line.labels["g"].parse().unwrap();
            for k in 0..grid.len() {
                let members: Vec<f64> = inputs.iter().filter(|(gi, _)| *gi == g).filter_map(|(_, v)| v[k]).collect();
                let want = (!members.is_empty()).then(|| members.iter().sum::<f64>());
                prop_assert_eq!(line.points[k].1, want);
                prop_assert_eq!(count.points[k].1, (!members.is_empty()).then_some(members.len() as f64));
            }
        }
    }
}
