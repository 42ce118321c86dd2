//! Any answer of InfluxDB's `/query`: the read-side parsers must not panic, and
//! what they accept must be usable (ascending times, no empty tags; `SHOW`
//! tables with rows exactly as wide as their columns).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::query::backends::influxdb::response::{parse, parse_tables};

fuzz_target!(|body: &[u8]| {
    let mut warnings = Vec::new();
    if let Ok(series) = parse(body, &mut warnings) {
        for s in series {
            assert!(s.points.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(s.tags.values().all(|v| !v.is_empty()));
        }
    }
    if let Ok(tables) = parse_tables(body, &mut warnings) {
        for t in tables {
            assert!(t.rows.iter().all(|r| r.len() == t.columns.len()));
            if let Some(first) = t.columns.first() {
                let _ = t.column(first).map(|c| c.count());
            }
        }
    }
});
