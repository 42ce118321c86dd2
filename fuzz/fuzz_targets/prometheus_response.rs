//! Any body from a Prometheus-API backend: the answer parser must not panic,
//! what it accepts must keep its promises (timestamps strictly ascending), and
//! normalizing it onto a grid must not panic either. The discovery answers'
//! parser (`/api/v1/series`, `/labels`, `/label/<n>/values`) gets the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

use tsrelay::query::backends::prometheus::parse::{parse_answer, parse_list};
use tsrelay::query::backends::{RawForm, RawResult};
use tsrelay::query::grid::TimeGrid;
use tsrelay::query::model::Function;
use tsrelay::query::normalize::{bucket_function, place_on_grid};

fuzz_target!(|body: &[u8]| {
    let _ = parse_list::<String>(body);
    let _ = parse_list::<BTreeMap<String, String>>(body);
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
