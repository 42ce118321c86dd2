//! Body → samples, for each supported format, with one result shape.

use crate::model::Sample;

use crate::codecs::{line_protocol, ndjson};

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
            None | Some("") => Ok(BodyFormat::LineProtocol(line_protocol::Precision::Nanosecond)),
            Some(p) => {
                p.parse().map(BodyFormat::LineProtocol).map_err(|e: line_protocol::UnknownPrecision| e.to_string())
            }
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
    let mut errors = line_protocol::LineErrors::new();
    let summary = match format {
        BodyFormat::LineProtocol(precision) => {
            line_protocol::decode_body(body, precision, now_ms.saturating_mul(1_000_000), &mut out.samples, &mut errors)
        }
        BodyFormat::Ndjson => ndjson::decode_body(body, now_ms, &mut out.samples, &mut errors),
    };
    out.rejected_lines = summary.rejected_lines;
    out.non_numeric = summary.non_numeric;
    out.errors = errors.reported().iter().map(|e| (e.line, e.message.clone())).collect();
    out
}
