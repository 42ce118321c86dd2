//! Anchored label regexes, compiled under a size bound.
//!
//! Selectors arrive from clients (`match[]`, PromQL, graph filters). Under the
//! regex crate's default bound (10 MiB of program per regex) one short pattern
//! such as `(\w{100}){100}` builds up to 10 MiB before it is refused, and the
//! time spent compiling grows with it. The bound below is a tenth of that and
//! still far above what label matching needs (`\w+` compiles to a few KB).

use regex::{Regex, RegexBuilder};

/// The most heap one compiled matcher regex may take (the `regex` crate's
/// `size_limit`). Over it, the selector is refused as "compiled regex exceeds
/// size limit".
pub const MAX_REGEX_PROGRAM_BYTES: usize = 1 << 20;

/// The deepest nesting of groups and repetitions a matcher regex may have.
pub const MAX_REGEX_NESTING: u32 = 64;

/// Compiles `^(?:source)$`, as PromQL and relabeling anchor label regexes.
pub fn anchored(source: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(MAX_REGEX_PROGRAM_BYTES)
        .dfa_size_limit(MAX_REGEX_PROGRAM_BYTES)
        .nest_limit(MAX_REGEX_NESTING)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_both_ends() {
        let re = anchored("ge-.*|lo").unwrap();
        assert!(re.is_match("ge-0/0") && re.is_match("lo"));
        assert!(!re.is_match("xlo") && !re.is_match("lo0"));
    }

    #[test]
    fn refuses_a_pattern_that_compiles_too_big() {
        let err = anchored(r"(\w{100}){100}").unwrap_err();
        assert!(matches!(err, regex::Error::CompiledTooBig(_)), "{err}");
        assert!(anchored(r"\w+").is_ok());
        assert!(anchored(&"(".repeat(100)).is_err(), "nesting over the bound is refused");
    }
}
