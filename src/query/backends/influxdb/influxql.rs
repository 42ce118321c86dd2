//! InfluxQL text: identifiers, strings, regexes and times written so that no
//! name, value or pattern can change the statement around it. Pure functions.
//!
//! The rules are InfluxQL 1.x's scanner's: a double-quoted identifier and a
//! single-quoted string know exactly four escapes (`\\`, `\"`, `\'`, `\n`) and
//! end at an unescaped quote; a raw newline (and a carriage return, which the
//! scanner reads as one) or a NUL (its end-of-input marker) cannot appear
//! inside either. A regex literal `/.../` knows one escape, `\/`; every other
//! backslash is handed to the regex engine as written, and a newline ends it.

use std::fmt::Write as _;

/// Text that InfluxQL cannot carry (a NUL or carriage return in a name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {text:?} contains a character InfluxQL cannot quote (NUL or carriage return)")]
pub struct Unquotable {
    pub what: &'static str,
    pub text: String,
}

fn quoted(text: &str, quote: char, what: &'static str, out: &mut String) -> Result<(), Unquotable> {
    if text.contains(['\0', '\r']) {
        return Err(Unquotable { what, text: text.to_string() });
    }
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    Ok(())
}

/// `"identifier"`: a measurement, field, tag key, retention policy or alias.
pub fn ident(name: &str, out: &mut String) -> Result<(), Unquotable> {
    quoted(name, '"', "name", out)
}

/// `'string'`: a tag value.
pub fn string(value: &str, out: &mut String) -> Result<(), Unquotable> {
    quoted(value, '\'', "value", out)
}

/// `/^(?:pattern)$/`: anchored at both ends like PromQL (InfluxQL's own
/// regexes are unanchored). Every `/` is escaped, so the literal ends only
/// where this function ends it; newlines, carriage returns and NULs become
/// regex escapes, which mean the same character to the regex engine.
pub fn regex(pattern: &str, out: &mut String) {
    out.push_str("/^(?:");
    for c in pattern.chars() {
        match c {
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\x00"),
            c => out.push(c),
        }
    }
    out.push_str(")$/");
}

/// A regex matching exactly `value` (for an equality on a value that a
/// string literal cannot carry).
pub fn literal_regex(value: &str, out: &mut String) {
    regex(&regex::escape(value), out);
}

/// An absolute time in ms since the epoch: `1764806400000ms`.
pub fn time_ms(ms: i64, out: &mut String) {
    // A negative time is written as a subtraction InfluxQL evaluates.
    if ms < 0 {
        let _ = write!(out, "0ms - {}ms", ms.unsigned_abs());
    } else {
        let _ = write!(out, "{ms}ms");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> String {
        let mut o = String::new();
        ident(s, &mut o).unwrap();
        o
    }

    fn st(s: &str) -> String {
        let mut o = String::new();
        string(s, &mut o).unwrap();
        o
    }

    fn re(s: &str) -> String {
        let mut o = String::new();
        regex(s, &mut o);
        o
    }

    #[test]
    fn identifiers_and_strings_escape_their_quote_and_backslash() {
        assert_eq!(id("cpu"), "\"cpu\"");
        assert_eq!(id("a\"b"), "\"a\\\"b\"");
        assert_eq!(id("a\\"), "\"a\\\\\"");
        assert_eq!(id("x\ny"), "\"x\\ny\"");
        // A single quote needs no escape inside double quotes.
        assert_eq!(id("it's"), "\"it's\"");
        assert_eq!(st("it's"), "'it\\'s'");
        assert_eq!(st("x' OR 1=1 --"), "'x\\' OR 1=1 --'");
        assert_eq!(st("end\\"), "'end\\\\'");
        assert!(ident("a\rb", &mut String::new()).is_err());
        assert!(string("a\0b", &mut String::new()).is_err());
    }

    #[test]
    fn regexes_are_anchored_and_closed_only_at_the_end() {
        assert_eq!(re("ge-.*"), "/^(?:ge-.*)$/");
        assert_eq!(re("a/b"), "/^(?:a\\/b)$/");
        // A pattern that escapes its own slash still cannot end the literal.
        assert_eq!(re("a\\/b"), "/^(?:a\\\\/b)$/");
        // A trailing backslash escapes the `)` we add, never the closing `/`.
        assert_eq!(re("x\\"), "/^(?:x\\)$/");
        assert_eq!(re("a\nb"), "/^(?:a\\nb)$/");
        let mut o = String::new();
        literal_regex("a.b\r", &mut o);
        assert_eq!(o, "/^(?:a\\.b\\r)$/");
    }

    #[test]
    fn times_are_ms_literals() {
        let mut o = String::new();
        time_ms(1_764_806_400_000, &mut o);
        assert_eq!(o, "1764806400000ms");
        o.clear();
        time_ms(-60_000, &mut o);
        assert_eq!(o, "0ms - 60000ms");
    }
}
