//! A body of lines (line protocol, NDJSON) decoded while it arrives, a piece of whole
//! lines at a time.
//!
//! Why: a body read whole before decoding holds all of its bytes and all of its
//! samples at once. A 200,000-line body is ~20 MB of text; three of them in flight
//! kept the daemon well above vmagent, which parses as it reads (BENCHMARKS.md,
//! sixteenth session). Here only the samples are kept for the whole request (it is
//! still accepted or refused whole: the sample limit, an API key's sample budget and
//! the partial-write answer need all of it) and at most [`PIECE_BYTES`] plus one
//! frame of its text. The samples come in parts of a fixed size (the pipeline's
//! batch), filled while they are in cache, so the request is not split again later.
//!
//! Where a piece may end: after a line feed. In line protocol only when no `"`
//! came before it in the piece: a string field value may hold a raw line feed,
//! and only a quote can open one, so a body with quotes in it is decoded from its
//! first quote to its end in one piece, exactly as before. (An NDJSON record is
//! one line whatever its strings hold.)

use crate::codecs::buffers;
use crate::codecs::limits::DecodeLimits;
use crate::codecs::line_protocol::{self, Precision};
use crate::codecs::ndjson;
use crate::codecs::report::{DecodeSummary, LineErrors, Progress};
use crate::model::Sample;

/// A format's decoder of whole lines, continuing a body's [`Progress`].
pub trait PieceDecoder {
    /// Whether a `"` may carry a line across a line feed.
    const QUOTES_SPAN_LINES: bool;

    /// Decodes `lines` (whole lines; the last needs no line feed only at the body's end).
    fn decode(&self, lines: &[u8], progress: &mut Progress, out: &mut Vec<Sample>, errors: &mut LineErrors);
}

/// Text decoded at once when a body arrives in pieces: large enough that a piece's
/// fixed costs do not show, small enough to stay in the second-level cache.
pub const PIECE_BYTES: usize = 256 * 1024;

/// Bytes of a short line (`m,host=a v=1 1700000000000000000` is 34): a body's length
/// divided by this is the most samples its first part is given room for up front.
const SHORTEST_LINE_GUESS: usize = 32;

/// Decodes one body from the bytes handed to [`LineStream::push`], in order.
pub struct LineStream<D> {
    decoder: D,
    progress: Progress,
    /// Text not decoded yet: a line's start, or everything since the first quote.
    pending: Vec<u8>,
    /// A quote came: the rest is decoded in one piece by [`LineStream::finish`].
    whole: bool,
    /// Full parts, each of `part_samples` samples.
    parts: Vec<Vec<Sample>>,
    /// The part being filled.
    current: Vec<Sample>,
    part_samples: usize,
    /// Text decoded at once ([`PIECE_BYTES`]).
    piece_bytes: usize,
    errors: LineErrors,
}

/// A body's samples, in parts of at most the size asked for, with what was refused.
#[derive(Debug)]
pub struct StreamedBody {
    pub parts: Vec<Vec<Sample>>,
    pub summary: DecodeSummary,
    pub errors: LineErrors,
}

impl<'l> LineStream<line_protocol::Pieces<'l>> {
    /// A line-protocol body; lines without a timestamp get `default_time_ns`.
    pub fn line_protocol(
        precision: Precision,
        default_time_ns: i64,
        limits: &'l DecodeLimits,
        part_samples: usize,
        body_len: usize,
    ) -> Self {
        LineStream::new(line_protocol::Pieces { precision, default_time_ns, limits }, part_samples, body_len)
    }
}

impl<'l> LineStream<ndjson::Pieces<'l>> {
    /// An NDJSON body; records without a timestamp get `default_time_ms`.
    pub fn ndjson(default_time_ms: i64, limits: &'l DecodeLimits, part_samples: usize, body_len: usize) -> Self {
        LineStream::new(ndjson::Pieces { default_time_ms, limits }, part_samples, body_len)
    }
}

impl<D: PieceDecoder> LineStream<D> {
    /// Samples come in parts of at most `part_samples`; `body_len` is the body's declared
    /// length (0 if unknown): a guess for the first part's room.
    pub fn new(decoder: D, part_samples: usize, body_len: usize) -> Self {
        let part_samples = part_samples.max(1);
        LineStream {
            decoder,
            // No reservation from the decoder: parts are sized here.
            progress: Progress::new(0),
            pending: Vec::new(),
            whole: false,
            parts: Vec::new(),
            current: Vec::with_capacity(part_samples.min(body_len / SHORTEST_LINE_GUESS)),
            part_samples,
            piece_bytes: PIECE_BYTES,
            errors: LineErrors::new(),
        }
    }

    /// Decodes pieces of `bytes` instead of [`PIECE_BYTES`]: for tests and fuzzing, whose
    /// bodies are small.
    #[doc(hidden)]
    pub fn with_piece_bytes(mut self, bytes: usize) -> Self {
        self.piece_bytes = bytes.max(1);
        self
    }

    /// The next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.progress.stopped() {
            // Over the sample limit: the request is refused whole; the rest is not decoded.
            return;
        }
        if self.pending.is_empty() && !self.whole && bytes.len() >= self.piece_bytes {
            // A large frame is decoded where it is; only its last partial line is copied.
            let taken = self.decode_whole_lines(bytes);
            self.keep(&bytes[taken..]);
            return;
        }
        self.keep(bytes);
        if !self.whole && self.pending.len() >= self.piece_bytes {
            let mut pending = std::mem::take(&mut self.pending);
            let taken = self.decode_whole_lines(&pending);
            pending.drain(..taken);
            self.pending = pending;
        }
    }

    /// The body ended: decodes what is left and returns the samples with the summary
    /// and errors of the whole body.
    pub fn finish(mut self) -> StreamedBody {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() && !self.progress.stopped() {
            self.decode(&pending);
        }
        buffers::give_back(pending);
        if !self.current.is_empty() {
            self.parts.push(self.current);
        }
        StreamedBody { parts: self.parts, summary: self.progress.summary, errors: self.errors }
    }

    /// Decodes whole lines and moves every full part out of the one being filled.
    fn decode(&mut self, lines: &[u8]) {
        self.decoder.decode(lines, &mut self.progress, &mut self.current, &mut self.errors);
        while self.current.len() >= self.part_samples {
            let part: Vec<Sample> = self.current.drain(..self.part_samples).collect();
            self.parts.push(part);
        }
    }

    /// Decodes `bytes` up to and including its last line feed, unless a quote comes
    /// first; returns how many bytes were decoded.
    fn decode_whole_lines(&mut self, bytes: &[u8]) -> usize {
        let Some(last_feed) = memchr::memrchr(b'\n', bytes) else { return 0 };
        let piece = &bytes[..=last_feed];
        if D::QUOTES_SPAN_LINES && memchr::memchr(b'"', piece).is_some() {
            self.whole = true;
            return 0;
        }
        self.decode(piece);
        piece.len()
    }

    fn keep(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.pending.capacity() == 0 {
            self.pending = buffers::take_empty(self.piece_bytes.max(bytes.len()));
        }
        self.pending.extend_from_slice(bytes);
    }
}

/// A body delivered in frames of `frame` bytes to `stream`, checked against the same body
/// decoded whole (`summary`, `errors`, `samples`): the same outcome, in parts that are all
/// full but the last (tests and fuzzing).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn assert_streams_as_whole<D: PieceDecoder>(
    mut stream: LineStream<D>,
    body: &[u8],
    frame: usize,
    whole: (&DecodeSummary, &LineErrors, &[Sample]),
) {
    let (summary, errors, samples) = whole;
    let part = stream.part_samples;
    for bytes in body.chunks(frame.max(1)) {
        stream.push(bytes);
    }
    let streamed = stream.finish();
    let context = format!("frames of {frame} bytes, parts of {part} samples");
    assert_eq!(&streamed.summary, summary, "summary differs in pieces ({context})");
    assert_eq!(streamed.errors.reported(), errors.reported(), "errors differ in pieces ({context})");
    assert!(streamed.parts.iter().all(|p| !p.is_empty() && p.len() <= part), "{context}");
    assert!(streamed.parts.iter().rev().skip(1).all(|p| p.len() == part), "only the last part is short ({context})");
    let streamed: Vec<Sample> = streamed.parts.into_iter().flatten().collect();
    assert_eq!(streamed.len(), samples.len(), "{context}");
    for (a, b) in streamed.iter().zip(samples) {
        assert!(a.identical(b), "{context}: {a:?} against {b:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::line_protocol::decode_body_limited;

    const PART: usize = 4096;

    /// The whole body decoded at once, and the same body pushed in pieces of `step`
    /// bytes: the same samples, summary and errors.
    fn same_both_ways(body: &[u8], step: usize, limits: &DecodeLimits) {
        same_both_ways_in_pieces(body, step, PIECE_BYTES, limits);
        same_both_ways_in_pieces(body, step, 100, limits);
    }

    fn same_both_ways_in_pieces(body: &[u8], step: usize, piece_bytes: usize, limits: &DecodeLimits) {
        let mut whole = Vec::new();
        let mut whole_errors = LineErrors::new();
        let summary =
            decode_body_limited(body, Precision::Nanosecond, 7_000_000, limits, &mut whole, &mut whole_errors);
        let stream = LineStream::line_protocol(Precision::Nanosecond, 7_000_000, limits, PART, body.len())
            .with_piece_bytes(piece_bytes);
        assert_streams_as_whole(stream, body, step, (&summary, &whole_errors, &whole));
    }

    fn body_of(lines: usize, extra: impl Fn(usize) -> String) -> Vec<u8> {
        let mut body = String::new();
        for i in 0..lines {
            body.push_str(&format!(
                "cpu,host=h{},region=r{} usage={i},idle={}i {}\n",
                i % 977,
                i % 7,
                i * 2,
                1_000 + i
            ));
            body.push_str(&extra(i));
        }
        body.into_bytes()
    }

    #[test]
    fn pieces_decode_as_the_whole_body() {
        let body = body_of(20_000, |_| String::new());
        assert!(body.len() > 3 * PIECE_BYTES);
        for step in [1 << 20, PIECE_BYTES, PIECE_BYTES + 1, 100_003, 4096, 61] {
            same_both_ways(&body, step, &DecodeLimits::unlimited());
        }
        same_both_ways(&body, body.len(), &DecodeLimits::unlimited());
    }

    #[test]
    fn errors_keep_their_line_numbers_across_pieces() {
        let body = body_of(12_000, |i| if i % 1_000 == 999 { "bad line here\n".into() } else { String::new() });
        let unlimited = DecodeLimits::unlimited();
        let mut stream = LineStream::line_protocol(Precision::Nanosecond, 0, &unlimited, PART, 0);
        for piece in body.chunks(70_001) {
            stream.push(piece);
        }
        let StreamedBody { summary, errors, .. } = stream.finish();
        assert_eq!(summary.rejected_lines, 12);
        // Bad line k (from 0) follows 1,000 × (k + 1) good ones and k bad ones.
        let lines: Vec<usize> = errors.reported().iter().map(|e| e.line).collect();
        assert_eq!(lines[..3], [1_001, 2_002, 3_003]);
        for step in [PIECE_BYTES, 9_999] {
            same_both_ways(&body, step, &DecodeLimits::unlimited());
        }
    }

    #[test]
    fn a_string_field_across_a_piece_boundary_is_not_split() {
        // A string value holding line feeds, placed where pieces would otherwise end.
        let body = body_of(15_000, |i| {
            if i == 3_000 { "note,host=a text=\"two\nlines\nhere\",v=1 5\n".into() } else { String::new() }
        });
        for step in [PIECE_BYTES, 4096, 50_000] {
            same_both_ways(&body, step, &DecodeLimits::unlimited());
        }
        let unlimited = DecodeLimits::unlimited();
        let mut stream = LineStream::line_protocol(Precision::Nanosecond, 0, &unlimited, PART, 0);
        stream.push(&body);
        let StreamedBody { parts, summary, .. } = stream.finish();
        assert_eq!(summary.rejected_lines, 0);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 2 * 15_000 + 1);
    }

    #[test]
    fn the_sample_limit_counts_the_whole_body() {
        let body = body_of(10_000, |_| String::new());
        let mut limits = DecodeLimits::unlimited();
        limits.max_samples = 15_000;
        let mut stream = LineStream::line_protocol(Precision::Nanosecond, 0, &limits, PART, body.len());
        for piece in body.chunks(8192) {
            stream.push(piece);
        }
        assert!(stream.finish().summary.over_sample_limit);
        limits.max_samples = 20_000;
        same_both_ways(&body, 8192, &limits);
    }

    #[test]
    fn ndjson_pieces_decode_as_the_whole_body() {
        let mut body = String::new();
        for i in 0..20_000 {
            match i % 5_000 {
                17 => body.push_str("{\"name\": \"broken\"\n"),
                18 => body.push('\n'),
                _ => body.push_str(&format!(
                    "{{\"name\": \"temp\", \"labels\": {{\"room\": \"r{}\"}}, \"value\": {i}, \"timestamp\": {}}}\n",
                    i % 300,
                    1_700_000_000_000i64 + i
                )),
            }
        }
        let body = body.into_bytes();
        assert!(body.len() > 4 * PIECE_BYTES);
        let unlimited = DecodeLimits::unlimited();
        let mut whole = Vec::new();
        let mut whole_errors = LineErrors::new();
        let summary = ndjson::decode_body_limited(&body, 5, &unlimited, &mut whole, &mut whole_errors);
        assert_eq!(summary.rejected_lines, 4);
        for (step, piece_bytes) in [(PIECE_BYTES, PIECE_BYTES), (7_001, PIECE_BYTES), (333, 1_000), (body.len(), 50)] {
            let stream = LineStream::ndjson(5, &unlimited, PART, body.len()).with_piece_bytes(piece_bytes);
            assert_streams_as_whole(stream, &body, step, (&summary, &whole_errors, &whole));
        }
    }

    #[test]
    fn the_last_line_needs_no_line_feed() {
        same_both_ways(b"m v=1\nm v=2", 3, &DecodeLimits::unlimited());
        same_both_ways(b"m v=1\r\nm v=2\r", 1, &DecodeLimits::unlimited());
        same_both_ways(b"", 1, &DecodeLimits::unlimited());
    }
}
