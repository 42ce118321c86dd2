//! Body → samples, for each supported format, with one result shape.

use crate::model::Sample;

use super::{line_protocol, ndjson};

/// Which decoder a route uses.
#[derive(Debug, Clone, Copy)]
pub enum BodyFormat {
    LineProtocol(line_protocol::Precision),
    Ndjson,
}

impl BodyFormat {
    /// Line protocol with the `precision` query parameter (default ns).
    pub fn line_protocol(precision: Option<&str>) -> Result<Self, String> {
        match precision {
            None | Some("") => Ok(BodyFormat::LineProtocol(line_protocol::Precision::Nanoseconds)),
            Some(p) => line_protocol::Precision::parse(p)
                .map(BodyFormat::LineProtocol)
                .ok_or_else(|| format!("unknown precision {p:?}; use one of n, ns, u, us, µs, ms, s, m, h")),
        }
    }
}

/// The decoded samples and what was refused.
#[derive(Debug, Default)]
pub struct DecodedBody {
    pub samples: Vec<Sample>,
    /// Lines refused as a whole.
    pub rejected_lines: u64,
    /// String fields: valid, but not samples.
    pub non_numeric: u64,
    /// `(line number, message)` of the first refused lines.
    pub errors: Vec<(usize, String)>,
}

pub fn decode_body(format: BodyFormat, body: &[u8], now_ms: i64) -> DecodedBody {
    let mut out = DecodedBody::default();
    match format {
        BodyFormat::LineProtocol(precision) => {
            let s = line_protocol::decode_into(body, precision, now_ms, &mut out.samples, &mut out.errors);
            out.rejected_lines = s.rejected_lines;
            out.non_numeric = s.non_numeric;
        }
        BodyFormat::Ndjson => {
            let s = ndjson::decode_into(body, now_ms, &mut out.samples, &mut out.errors);
            out.rejected_lines = s.rejected_lines;
        }
    }
    out
}
