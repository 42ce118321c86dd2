//! Any detail lines of an rrdcached reply: the `LIST`, `INFO` and `FETCH`
//! parsers must not panic, and a parsed `FETCH` has rows in time order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::query::backends::rrdcached::reply::{parse_fetch, parse_info, parse_list};

fuzz_target!(|body: &[u8]| {
    let text = String::from_utf8_lossy(body);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Ok(f) = parse_fetch(&lines) {
        assert!(f.step > 0);
        assert!(f.rows.windows(2).all(|w| w[0].0 < w[1].0));
    }
    let _ = parse_info(&lines);
    if let Ok(paths) = parse_list("d", &lines) {
        assert!(paths.iter().all(|p| p.starts_with("d/") && !p.split('/').any(|c| c == "..")));
    }
});
