use super::*;
use crate::query::backends::RawSeries;
use crate::query::cache::property::{MergeCase, check};
use crate::query::model::Function;

fn labels(host: &str) -> Labels {
    [("host".to_string(), host.to_string())].into()
}

#[test]
fn missing_runs_are_contiguous_spans() {
    assert_eq!(missing_spans(&[]), vec![]);
    assert_eq!(missing_spans(&[true, true]), vec![]);
    assert_eq!(missing_spans(&[false, false, false]), vec![(0, 2)]);
    assert_eq!(missing_spans(&[false, true, true, false, false, true, false]), vec![(0, 0), (3, 4), (6, 6)]);
    let g = TimeGrid::new(0, 600_000, 60_000).unwrap();
    let s = span_grid(&g, 3, 4);
    assert_eq!((s.start_ms, s.end_ms, s.len()), (180_000, 300_000, 2));
    assert_eq!((s.point(0), s.point(1)), (g.point(3), g.point(4)));
}

/// A counter sampled every 20 s with a reset, a gauge with a hole, a series
/// whose only sample lies just before the window.
fn stored() -> Vec<(Labels, Vec<(i64, f64)>)> {
    let counter: Vec<(i64, f64)> =
        (0..=60).map(|i| (i * 20_000, if i < 30 { i as f64 * 10.0 } else { (i - 30) as f64 })).collect();
    let gauge: Vec<(i64, f64)> =
        (0..=60).filter(|i| !(20..35).contains(i)).map(|i| (i * 20_000 + 7, (i % 7) as f64 * 0.1)).collect();
    vec![
        (labels("a"), counter),
        (labels("b"), gauge),
        (labels("c"), vec![(60_000, 1.0), (60_000 + 1, f64::NAN)]),
        (labels("d"), vec![(1_140_000, f64::INFINITY)]),
    ]
}

#[test]
fn every_cut_of_every_form_assembles_to_the_whole_answer() {
    let grid = TimeGrid::new(120_000, 1_200_000, 60_000).unwrap();
    let per_bucket: Vec<(Labels, Vec<(i64, f64)>)> = stored()
        .into_iter()
        .map(|(l, pts)| (l, pts.into_iter().map(|(t, v)| (t.div_euclid(60_000) * 60_000, v)).collect()))
        .collect();
    for function in Function::ALL {
        for (form, series) in [(RawForm::Samples, stored()), (RawForm::PerSeries, per_bucket.clone())] {
            for lists_all in [false, true] {
                for cuts in [vec![], vec![1], vec![5, 6, 7], vec![2, 9, 17], (1..18).collect::<Vec<_>>()] {
                    let case =
                        MergeCase { function, form, lists_all, grid, series: series.clone(), cuts: cuts.clone() };
                    if let Err(e) = check(&case) {
                        panic!("{function} {form:?} lists_all={lists_all} cuts={cuts:?}: {e}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_series_before_the_window_is_present_exactly_when_the_whole_answer_has_it() {
    // Rate over samples: the whole answer for a window starting at 120 s asks
    // for [60 s, ...]: series "c" (samples at 60 s) is there, all null.
    let grid = TimeGrid::new(120_000, 600_000, 60_000).unwrap();
    let case = MergeCase {
        function: Function::Rate,
        form: RawForm::Samples,
        lists_all: false,
        grid,
        series: stored(),
        cuts: vec![2, 4],
    };
    check(&case).unwrap();
    let plan_answer = crate::query::cache::property::answer(&case, &grid);
    assert!(plan_answer.series.iter().any(|s| s.labels == labels("c")));
    // One step later it is not.
    let later = TimeGrid::new(180_000, 600_000, 60_000).unwrap();
    let case = MergeCase { grid: later, ..case };
    assert!(!crate::query::cache::property::answer(&case, &later).series.iter().any(|s| s.labels == labels("c")));
    check(&case).unwrap();
}

#[test]
fn split_keeps_presence_and_values_per_bucket() {
    let span = TimeGrid::new(0, 180_000, 60_000).unwrap();
    let raw = RawResult {
        form: RawForm::PerSeries,
        series: vec![
            RawSeries { labels: labels("z"), points: vec![(60_000, 1.0), (180_000, f64::NAN)] },
            RawSeries { labels: labels("a"), points: vec![] },
        ],
        warnings: vec![],
    };
    let plan = crate::query::cache::property::tests_plan(Function::Avg);
    let b = split(&plan, &span, &raw, false).unwrap();
    assert_eq!(b[0].series, vec![(Arc::new(labels("z")), Some(1.0))]);
    assert!(b[1].series.is_empty());
    assert_eq!(b[2].series, vec![(Arc::new(labels("z")), None)]);
    let listed = split(&plan, &span, &raw, true).unwrap();
    assert_eq!(listed[1].series, vec![(Arc::new(labels("a")), None), (Arc::new(labels("z")), None)]);
    let lines = assemble(&listed.into_iter().map(Arc::new).collect::<Vec<_>>());
    assert_eq!(lines, vec![(labels("a"), vec![None; 3]), (labels("z"), vec![Some(1.0), None, None])]);
    assert!(b[0].weight() > ENTRY_OVERHEAD_BYTES);

    let dup = RawResult { series: vec![raw.series[0].clone(), raw.series[0].clone()], ..raw };
    assert!(matches!(split(&plan, &span, &dup, false), Err(NormalizeError::Duplicate { .. })));
}
