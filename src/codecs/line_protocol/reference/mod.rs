//! The line-protocol parser as it was before it was rewritten for speed (issue #17 item 4),
//! kept only as a differential oracle: tests and the `line_protocol` fuzz target run every
//! input through both and require the same outcome per entry (point, or error message and
//! position). Not part of the daemon's build.

mod classes;
mod number;
mod parser;

use super::{error, point, precision};

pub use parser::{LineParser, parse_line};

use std::borrow::Cow;

use super::{FieldValue, LineError, Point, Precision};

/// Runs `body` through the parser in use and through this reference, entry by entry, and
/// describes the first difference: the line an entry starts on, the point (every string
/// equal and borrowed or owned alike, floats bit for bit), or the error (position, problem
/// and message), and the offset reached after each entry. [`parse_line`] is compared too.
pub fn first_difference(body: &[u8], precision: Precision) -> Option<String> {
    let mut new = super::LineParser::new(body, precision);
    let mut old = LineParser::new(body, precision);
    let mut new_point = Point::default();
    let mut old_point = Point::default();
    for entry in 1usize.. {
        let new_entry = new.next_into(&mut new_point);
        let old_entry = old.next_into(&mut old_point);
        let why = match (new_entry, old_entry) {
            (None, None) => break,
            (Some((new_line, new_result)), Some((old_line, old_result))) => {
                if new_line != old_line {
                    Some(format!("starts on line {new_line}, reference {old_line}"))
                } else {
                    match (new_result, old_result) {
                        (Ok(()), Ok(())) => point_difference(&new_point, &old_point),
                        (Err(new_error), Err(old_error)) => error_difference(&new_error, &old_error),
                        (new_result, old_result) => {
                            Some(format!("{new_result:?} {new_point:?}, reference {old_result:?} {old_point:?}"))
                        }
                    }
                }
            }
            (new_entry, old_entry) => Some(format!("{new_entry:?}, reference {old_entry:?}")),
        };
        if let Some(why) = why {
            return Some(format!("entry {entry}: {why}"));
        }
        if new.offset() != old.offset() {
            return Some(format!("entry {entry}: offset {} after it, reference {}", new.offset(), old.offset()));
        }
    }
    match (super::parse_line(body, precision), parse_line(body, precision)) {
        (Ok(Some(new_point)), Ok(Some(old_point))) => point_difference(&new_point, &old_point),
        (Ok(None), Ok(None)) => None,
        (Err(new_error), Err(old_error)) => error_difference(&new_error, &old_error),
        (new_result, old_result) => Some(format!("parse_line: {new_result:?}, reference {old_result:?}")),
    }
    .map(|why| format!("parse_line: {why}"))
}

fn error_difference(new: &LineError, old: &LineError) -> Option<String> {
    (new != old || new.to_string() != old.to_string())
        .then(|| format!("error {new} ({new:?}), reference {old} ({old:?})"))
}

fn point_difference(new: &Point<'_>, old: &Point<'_>) -> Option<String> {
    let same_str =
        |a: &Cow<'_, str>, b: &Cow<'_, str>| a == b && matches!(a, Cow::Borrowed(_)) == matches!(b, Cow::Borrowed(_));
    let same_value = |a: &FieldValue<'_>, b: &FieldValue<'_>| match (a, b) {
        (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::String(x), FieldValue::String(y)) => same_str(x, y),
        (x, y) => x == y,
    };
    let same = same_str(&new.measurement, &old.measurement)
        && new.timestamp_ns == old.timestamp_ns
        && new.tags.len() == old.tags.len()
        && new.tags.iter().zip(&old.tags).all(|(a, b)| same_str(&a.key, &b.key) && same_str(&a.value, &b.value))
        && new.fields.len() == old.fields.len()
        && new.fields.iter().zip(&old.fields).all(|(a, b)| same_str(&a.key, &b.key) && same_value(&a.value, &b.value));
    (!same).then(|| format!("point {new:?}, reference {old:?}"))
}

#[cfg(test)]
mod tests;
