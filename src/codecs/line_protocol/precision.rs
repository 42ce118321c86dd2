//! The unit of a body's timestamps (the `precision` query parameter).

use std::str::FromStr;

/// The unit of the timestamps in a body (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
}

/// A `precision` value that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}: expected one of n, ns, u, us, µs, ms, s, m, h")]
pub struct UnknownPrecision(pub String);

impl Precision {
    /// Nanoseconds in one unit of this precision.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
        }
    }

    /// A timestamp in this precision as nanoseconds, or `None` if that overflows an `i64`.
    pub fn to_nanos(self, timestamp: i64) -> Option<i64> {
        timestamp.checked_mul(self.nanos_per_unit())
    }

    /// Rounds `nanos` down to a whole number of units. A line without a timestamp gets the
    /// default time truncated this way, as the reference decoder does.
    /// Near `i64::MIN`, where rounding down would overflow, it rounds up instead.
    pub fn truncate(self, nanos: i64) -> i64 {
        let unit = self.nanos_per_unit();
        let rem = nanos.rem_euclid(unit);
        nanos.checked_sub(rem).unwrap_or_else(|| nanos + (unit - rem) % unit)
    }
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "n" | "ns" => Precision::Nanosecond,
            "u" | "us" | "µs" => Precision::Microsecond,
            "ms" => Precision::Millisecond,
            "s" => Precision::Second,
            "m" => Precision::Minute,
            "h" => Precision::Hour,
            other => return Err(UnknownPrecision(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::line_protocol::{LineError, Problem, parse_line};

    #[test]
    fn precision_spellings_scaling_and_truncation() {
        for (text, precision) in [
            ("n", Precision::Nanosecond),
            ("ns", Precision::Nanosecond),
            ("u", Precision::Microsecond),
            ("us", Precision::Microsecond),
            ("µs", Precision::Microsecond),
            ("ms", Precision::Millisecond),
            ("s", Precision::Second),
            ("m", Precision::Minute),
            ("h", Precision::Hour),
        ] {
            assert_eq!(text.parse::<Precision>(), Ok(precision));
        }
        let error = "minutes".parse::<Precision>().unwrap_err();
        assert_eq!(error.to_string(), "unknown precision \"minutes\": expected one of n, ns, u, us, µs, ms, s, m, h");

        let at = |precision| parse_line(b"m f=1 3", precision).map(|p| p.map(|p| p.timestamp_ns));
        assert_eq!(at(Precision::Nanosecond), Ok(Some(Some(3))));
        assert_eq!(at(Precision::Microsecond), Ok(Some(Some(3_000))));
        assert_eq!(at(Precision::Millisecond), Ok(Some(Some(3_000_000))));
        assert_eq!(at(Precision::Second), Ok(Some(Some(3_000_000_000))));
        assert_eq!(at(Precision::Minute), Ok(Some(Some(180_000_000_000))));
        assert_eq!(at(Precision::Hour), Ok(Some(Some(10_800_000_000_000))));
        let overflow = parse_line(b"m f=1 9223372036854775807", Precision::Hour);
        assert!(matches!(overflow, Err(LineError { problem: Problem::TimestampOutOfRange { .. }, .. })));

        assert_eq!(Precision::Second.truncate(1_999_999_999), 1_000_000_000);
        assert_eq!(Precision::Second.truncate(-1), -1_000_000_000);
        assert_eq!(Precision::Nanosecond.truncate(-7), -7);
        for precision in [Precision::Second, Precision::Hour, Precision::Nanosecond] {
            let low = precision.truncate(i64::MIN);
            assert_eq!(low.rem_euclid(precision.nanos_per_unit()), 0);
            assert!(low - i64::MIN < precision.nanos_per_unit());
            assert!(precision.truncate(i64::MAX) <= i64::MAX);
        }
    }
}
