//! Any answer a status endpoint may send `tsrelay top`: parsing must not panic,
//! and a report that parses must sort and format (every order) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::top::client::parse_report;
use tsrelay::top::view::{SortBy, plain, tables};

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = parse_report(data) {
        for sort in [SortBy::Rate, SortBy::Drops, SortBy::Name] {
            let t = tables(&status, sort);
            assert_eq!(t.tables.len(), 4);
            let text = plain(&t);
            assert!(text.contains("Receivers"));
        }
    }
});
