//! The outcome of decoding one body, shared by every line-oriented decoder (line protocol,
//! NDJSON): what the receiver counts and what the partial-write answer says.

use super::limits::RefusedSamples;
use crate::telemetry::DropReason;

/// How many error messages a decode keeps for the answer; every rejected line is still counted.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// What one body decoded to, for the receiver's accounting and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeSummary {
    /// Lines that were valid (their samples, if any, were appended).
    pub accepted_lines: u64,
    /// Samples appended to the output.
    pub accepted_samples: u64,
    /// Lines rejected with an error (syntax or a limit).
    pub rejected_lines: u64,
    /// Of `rejected_lines`, those refused by a limit; their samples are in `refused`.
    pub refused_lines: u64,
    /// Samples of lines refused by a limit, per drop reason.
    pub refused: RefusedSamples,
    /// The body holds more samples than `max_samples_per_request`: decoding stopped there and
    /// the whole request is to be refused.
    pub over_sample_limit: bool,
    /// Values of accepted lines that are not numbers (line-protocol string fields); they are
    /// dropped with reason `non_numeric`.
    pub non_numeric: u64,
}

/// One error as reported to the sender: `{"line": L, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportedError {
    pub line: usize,
    pub message: String,
}

/// The rejected lines of one request: all are counted, the first [`MAX_REPORTED_ERRORS`]
/// keep their message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineErrors {
    rejected: u64,
    reported: Vec<ReportedError>,
}

impl LineErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a rejected line; the message is only built while there is room for it.
    pub fn record(&mut self, line: usize, message: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.reported.len() < MAX_REPORTED_ERRORS {
            self.reported.push(ReportedError { line, message: message() });
        }
    }

    /// Every rejected line, reported or not.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The first errors, in body order.
    pub fn reported(&self) -> &[ReportedError] {
        &self.reported
    }

    pub fn is_empty(&self) -> bool {
        self.rejected == 0
    }

    pub fn clear(&mut self) {
        self.rejected = 0;
        self.reported.clear();
    }
}

impl DecodeSummary {
    /// The drops to count for this decode, by reason: unparsable lines (one each), string
    /// fields, and the samples of lines refused by a limit. A decode that stopped at the
    /// sample limit counts the `decoded` samples it had as `parse_error` (the caller refuses
    /// them all).
    pub fn drops(&self, decoded: usize) -> Vec<(DropReason, u64)> {
        if self.over_sample_limit {
            return vec![(DropReason::ParseError, (decoded as u64).max(1))];
        }
        let mut out =
            vec![(DropReason::ParseError, self.unparsable_lines()), (DropReason::NonNumeric, self.non_numeric)];
        out.extend(self.refused.iter());
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// Lines rejected for their syntax (counted once each as `parse_error`).
    pub fn unparsable_lines(&self) -> u64 {
        self.rejected_lines - self.refused_lines
    }
}

/// How far the decoding of one body has got: a body decoded piece by piece
/// ([`crate::codecs::stream::LineStream`]) continues its line numbers, its sample
/// limit and its estimate of the samples still to come from here.
#[derive(Debug)]
pub struct Progress {
    pub summary: DecodeSummary,
    /// The 1-based number of the line the next piece starts on.
    pub line: usize,
    /// Bytes of the body before the next piece.
    pub offset: usize,
    /// The whole body's expected length (0: unknown), for one reservation of the output.
    pub body_len: usize,
    /// Whether that reservation was made.
    pub estimated: bool,
}

impl Progress {
    pub fn new(body_len: usize) -> Self {
        Progress { summary: DecodeSummary::default(), line: 1, offset: 0, body_len, estimated: false }
    }

    /// The body holds more samples than allowed: nothing more is decoded.
    pub fn stopped(&self) -> bool {
        self.summary.over_sample_limit
    }
}
