//! Which decoder a route uses, and what it decoded in the answer's shape.

use crate::model::Sample;

use crate::codecs::limits::RefusedSamples;
use crate::codecs::line_protocol;
use crate::codecs::report::{DecodeSummary, LineErrors};

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
    /// The samples: one vector, or parts of at most the pipeline's batch size from a
    /// decoder that fills them as it goes (see [`crate::receivers::submit::Submitter::submit_parts`]).
    pub parts: Vec<Vec<Sample>>,
    /// Lines refused as a whole (syntax or a limit).
    pub rejected_lines: u64,
    /// Of those, lines refused for their syntax (counted once each as `parse_error`).
    pub unparsable_lines: u64,
    /// Samples of lines refused by a limit, per drop reason.
    pub refused: RefusedSamples,
    /// String fields: valid, but not samples.
    pub non_numeric: u64,
    /// The body holds more than the pipeline's `max_samples_per_request`.
    pub over_sample_limit: bool,
    /// `(line number, message)` of the first refused lines.
    pub errors: Vec<(usize, String)>,
}

impl DecodedBody {
    /// What [`crate::codecs::stream::LineStream`] decoded, in the answer's shape.
    pub fn new(parts: Vec<Vec<Sample>>, summary: DecodeSummary, errors: &LineErrors) -> Self {
        DecodedBody {
            parts,
            rejected_lines: summary.rejected_lines,
            unparsable_lines: summary.unparsable_lines(),
            refused: summary.refused,
            non_numeric: summary.non_numeric,
            over_sample_limit: summary.over_sample_limit,
            errors: errors.reported().iter().map(|e| (e.line, e.message.clone())).collect(),
        }
    }
}
