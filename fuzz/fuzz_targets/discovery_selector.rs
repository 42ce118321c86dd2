//! Any `match[]` selector and any discovery query string: parsing must not panic, an
//! error must point inside the selector (at a character boundary), and a selector that
//! parses never matches every series (as Prometheus: it selects nothing when every
//! label is missing). Percent-decoding undoes percent-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::query::discovery::{Params, Selector, SelectorError, percent_decode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    match Selector::parse(text) {
        Ok(selector) => {
            assert!(!selector.matches(&[]), "{text:?} matches a series with no labels");
            // Labels taken from the selector's own words: matching must not panic.
            let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric() && c != '_').collect();
            let mut labels: Vec<(&str, &str)> = words.windows(2).map(|w| (w[0], w[1])).collect();
            labels.insert(0, ("__name__", words.first().copied().unwrap_or("")));
            let _ = selector.matches(&labels);
        }
        Err(SelectorError { selector, at, message }) => {
            assert_eq!(selector, text);
            assert!(at <= text.len() && text.is_char_boundary(at), "{text:?}: at {at}: {message}");
            assert!(!message.is_empty());
        }
    }

    if let Ok(params) = Params::parse(Some(text)) {
        let key = |pair: &str| percent_decode(pair.split_once('=').map_or(pair, |(key, _)| key));
        let match_params = text.split('&').filter(|pair| key(pair) == "match[]").count();
        assert!(params.selectors.len() <= match_params);
        assert!(params.limit > 0);
    }

    // Whatever text a client encodes, the daemon reads back.
    let encoded: String = text
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(percent_decode(&encoded), text);
});
