//! Any answer of InfluxDB's `/query`: the read-side parser must not panic, and
//! what it accepts must be usable (ascending times, finite values, no empty tags).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::query::backends::influxdb::response::parse;

fuzz_target!(|body: &[u8]| {
    let mut warnings = Vec::new();
    if let Ok(series) = parse(body, &mut warnings) {
        for s in series {
            assert!(s.points.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(s.tags.values().all(|v| !v.is_empty()));
        }
    }
});
