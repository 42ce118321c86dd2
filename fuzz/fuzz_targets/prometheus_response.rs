//! Any body from a Prometheus-API backend: the answer parser must not panic,
//! what it accepts must keep its promises (timestamps strictly ascending), and
//! normalizing it onto a grid must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::query::backends::prometheus::parse::parse_answer;
use tsrelay::query::backends::{RawForm, RawResult};
use tsrelay::query::grid::TimeGrid;
use tsrelay::query::normalize::{bucket_function, place_on_grid};
use tsrelay::query::model::Function;

fuzz_target!(|body: &[u8]| {
    let Ok(answer) = parse_answer(body) else { return };
    let grid = TimeGrid::new(0, 600_000, 60_000).expect("valid grid");
    for s in &answer.series {
        assert!(s.points.windows(2).all(|w| w[0].0 < w[1].0));
        let _ = place_on_grid(s, &grid);
        for f in Function::ALL {
            let values = bucket_function(&s.points, f, &grid);
            assert_eq!(values.len(), grid.len());
            assert!(values.iter().flatten().all(|v| v.is_finite()));
        }
    }
    let _ = RawResult { form: RawForm::Samples, series: answer.series, warnings: answer.warnings };
});
