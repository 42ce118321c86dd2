//! InfluxDB line protocol, as accepted by `POST /write` and `POST /api/v2/write`.
//!
//! Two layers:
//! 1. [`LineParser`] / [`parse_line`]: a typed parser that borrows from the body wherever a
//!    token has no escapes. It decides validity exactly as the InfluxData reference decoder
//!    does (the conformance corpus in `shared/conformance/` is the judge).
//! 2. [`decode_body`]: turns the points of a body into [`Sample`]s (one per numeric field),
//!    collecting per-line errors for the partial-write answer.
//!
//! The result types shared with the NDJSON decoder ([`DecodeSummary`], [`LineErrors`],
//! [`ReportedError`]) live in `codecs::report` and are re-exported here.

mod classes;
mod error;
mod known;
mod number;
mod parser;
mod point;
mod precision;
/// Today's parser before issue #17 item 4, as a differential oracle (tests and fuzzing only).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod reference;
mod samples;
mod stops;
#[cfg(test)]
mod tests;

pub use error::{Found, LineError, Part, Position, Problem, ValueType};
pub use parser::{LineParser, Parsed, parse_line};
pub use point::{Field, FieldValue, Point, Tag};
pub use precision::{Precision, UnknownPrecision};
pub use samples::{Pieces, decode_body, decode_body_limited, metric_name};

pub use crate::codecs::report::{DecodeSummary, LineErrors, MAX_REPORTED_ERRORS, ReportedError};
