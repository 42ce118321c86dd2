//! The query cache's merge: for any stored data, function, answer form and any
//! cut of a grid into spans, assembling the buckets split from every span's
//! answer equals the lines of the whole window's answer (what makes a cached
//! render byte-identical to an uncached one). Bytes drive everything:
//! `[function, form, step s, points, cuts count, cuts..., then (host, t offset, value) triples]`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tsrelay::query::cache::property::{MergeCase, check};
use tsrelay::query::{Function, RawForm, TimeGrid};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let function = Function::ALL[data[0] as usize % Function::ALL.len()];
    let (form, lists_all) = match data[1] % 4 {
        0 => (RawForm::Samples, false),
        1 => (RawForm::Samples, true),
        2 => (RawForm::PerSeries, false),
        _ => (RawForm::PerSeries, true),
    };
    let step = (data[2] % 10 + 1) as i64 * 1000;
    let points = (data[3] % 48 + 1) as i64;
    let start = 1_700_000_000_000 / step * step;
    let Ok(grid) = TimeGrid::new(start, start + points * step, step) else { return };
    let ncuts = (data[4] % 8) as usize;
    let rest = &data[5..];
    let cuts: Vec<usize> = rest.iter().take(ncuts).map(|&b| b as usize % grid.len()).collect();
    let mut series: BTreeMap<u8, Vec<(i64, f64)>> = BTreeMap::new();
    for chunk in rest.get(ncuts..).unwrap_or_default().chunks_exact(4) {
        let host = chunk[0] % 4;
        // Times from two steps before the grid to past its end, sub-step offsets included.
        let span = (points + 3) * step;
        let offset = i64::from(u16::from_le_bytes([chunk[1], chunk[2]])) * 97 % span;
        let mut t = grid.start_ms - 2 * step + offset;
        if matches!(form, RawForm::PerSeries) {
            t = t.div_euclid(step) * step;
        }
        let value = match chunk[3] {
            255 => f64::NAN,
            254 => f64::INFINITY,
            253 => f64::MAX,
            v => f64::from(v) * 0.75 - 40.0,
        };
        series.entry(host).or_default().push((t, value));
    }
    let series = series
        .into_iter()
        .map(|(h, mut pts)| {
            pts.sort_by_key(|p| p.0);
            ([("host".to_string(), format!("h{h}"))].into(), pts)
        })
        .collect();
    let case = MergeCase { function, form, lists_all, grid, series, cuts };
    if let Err(e) = check(&case) {
        panic!("{case:?}\n{e}");
    }
});
