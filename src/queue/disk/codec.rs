//! The bytes of one disk-queue record: a fixed header that can be trusted on
//! its own (it carries its own checksum), then the samples of one batch.
//!
//! Header (32 bytes, little endian):
//! `body_len u32 · samples u32 · seq u64 · appended_ms i64 · body_hash u32 · header_hash u32`.
//! Both hashes are the low 32 bits of xxh3-64. Because the header is checked
//! separately, a record whose body is torn or damaged still tells how many
//! samples were lost, so the loss is counted exactly.
//!
//! Body: the samples in order. Labels are usually shared with the previous
//! sample (the fields of one line-protocol line, the series of one scrape), so
//! each label is written as "same as the previous sample's label at this
//! position", "same name, new value" or "new name and value". Timestamps are
//! zigzag varint deltas; values are raw `f64` bits.

use xxhash_rust::xxh3::xxh3_64;

use crate::model::{Labels, MetricKind, Sample};

pub const HEADER_LEN: usize = 32;

/// Longest body accepted when reading: guards against a damaged length that
/// happens to pass the header check pointing far past the file.
pub const MAX_BODY_LEN: usize = 1 << 30;

const TAG_SAME: u64 = 0;
const TAG_NEW_VALUE: u64 = 1;
const TAG_NEW_LABEL: u64 = 2;

/// The checked header of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub body_len: u32,
    pub samples: u32,
    pub seq: u64,
    pub appended_ms: i64,
    pub body_hash: u32,
}

impl RecordHeader {
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }

    /// Parses and checks a header; `None` when the bytes are not a valid header.
    pub fn parse(bytes: &[u8]) -> Option<RecordHeader> {
        let b = bytes.get(..HEADER_LEN)?;
        let stored = u32::from_le_bytes(b[28..32].try_into().ok()?);
        if hash32(&b[..28]) != stored {
            return None;
        }
        let header = RecordHeader {
            body_len: u32::from_le_bytes(b[0..4].try_into().ok()?),
            samples: u32::from_le_bytes(b[4..8].try_into().ok()?),
            seq: u64::from_le_bytes(b[8..16].try_into().ok()?),
            appended_ms: i64::from_le_bytes(b[16..24].try_into().ok()?),
            body_hash: u32::from_le_bytes(b[24..28].try_into().ok()?),
        };
        (header.body_len as usize <= MAX_BODY_LEN).then_some(header)
    }

    pub fn body_matches(&self, body: &[u8]) -> bool {
        body.len() == self.body_len as usize && hash32(body) == self.body_hash
    }
}

fn hash32(bytes: &[u8]) -> u32 {
    xxh3_64(bytes) as u32
}

/// Encodes `samples` as a record body into `out` after a blank header;
/// [`seal`] fills the header in once the sequence number is known.
pub fn encode_body(samples: &[Sample], out: &mut Vec<u8>) {
    out.clear();
    out.resize(HEADER_LEN, 0);
    let empty = Labels::new();
    let mut prev = &empty;
    let mut prev_ts = 0i64;
    for s in samples {
        out.push(kind_code(s.kind));
        put_varint(out, s.labels.len() as u64);
        let mut prev_labels = prev.iter();
        for l in s.labels.iter() {
            match prev_labels.next() {
                Some(p) if p == l => put_varint(out, TAG_SAME),
                Some(p) if p.name == l.name => {
                    put_varint(out, TAG_NEW_VALUE);
                    put_str(out, l.value);
                }
                _ => {
                    put_varint(out, TAG_NEW_LABEL);
                    put_str(out, l.name);
                    put_str(out, l.value);
                }
            }
        }
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
        put_varint(out, zigzag(s.timestamp_ms.wrapping_sub(prev_ts)));
        prev_ts = s.timestamp_ms;
        prev = &s.labels;
    }
}

/// Writes the header of a record built by [`encode_body`].
pub fn seal(record: &mut [u8], samples: u32, seq: u64, appended_ms: i64) {
    let body_len = (record.len() - HEADER_LEN) as u32;
    let body_hash = hash32(&record[HEADER_LEN..]);
    let h = &mut record[..HEADER_LEN];
    h[0..4].copy_from_slice(&body_len.to_le_bytes());
    h[4..8].copy_from_slice(&samples.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&appended_ms.to_le_bytes());
    h[24..28].copy_from_slice(&body_hash.to_le_bytes());
    let header_hash = hash32(&h[..28]);
    h[28..32].copy_from_slice(&header_hash.to_le_bytes());
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("record body is malformed at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

/// Decodes a checked body back into `expected` samples.
pub fn decode_body(body: &[u8], expected: usize) -> Result<Vec<Sample>, DecodeError> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut out: Vec<Sample> = Vec::with_capacity(expected);
    let mut prev_ts = 0i64;
    for _ in 0..expected {
        let kind = kind_from_code(r.byte()?).ok_or(r.error("unknown metric kind"))?;
        let n = r.varint()? as usize;
        if n > r.remaining() {
            return Err(r.error("label count larger than the record"));
        }
        let mut labels = Labels::new();
        {
            let mut prev_labels = out.last().map(|p: &Sample| p.labels.iter());
            for _ in 0..n {
                let prev = prev_labels.as_mut().and_then(Iterator::next);
                match (r.varint()?, prev) {
                    (TAG_SAME, Some(p)) => labels.push(p.name, p.value),
                    (TAG_NEW_VALUE, Some(p)) => labels.push(p.name, r.str()?),
                    (TAG_NEW_LABEL, _) => {
                        let name = r.str()?;
                        labels.push(name, r.str()?)
                    }
                    _ => return Err(r.error("label refers to a previous sample that has none")),
                };
            }
        }
        let value = f64::from_bits(u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| r.error("short value"))?));
        let ts = prev_ts.wrapping_add(unzigzag(r.varint()?));
        prev_ts = ts;
        out.push(Sample { labels, value, timestamp_ms: ts, kind });
    }
    if r.remaining() != 0 {
        return Err(r.error("bytes left after the last sample"));
    }
    Ok(out)
}

fn kind_code(kind: MetricKind) -> u8 {
    match kind {
        MetricKind::Unspecified => 0,
        MetricKind::Counter => 1,
        MetricKind::Gauge => 2,
        MetricKind::Histogram => 3,
        MetricKind::Summary => 4,
    }
}

fn kind_from_code(code: u8) -> Option<MetricKind> {
    Some(match code {
        0 => MetricKind::Unspecified,
        1 => MetricKind::Counter,
        2 => MetricKind::Gauge,
        3 => MetricKind::Histogram,
        4 => MetricKind::Summary,
        _ => return None,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(self.error("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.varint()? as usize;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| self.error("label is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(labels: &[(&str, &str)], value: f64, ts: i64, kind: MetricKind) -> Sample {
        let mut s = Sample::new(labels.iter().copied().collect(), value, ts);
        s.kind = kind;
        s
    }

    #[test]
    fn round_trip_with_shared_labels() {
        let samples = vec![
            sample(
                &[("__name__", "cpu_user"), ("host", "a"), ("region", "eu")],
                1.5,
                1_700_000_000_000,
                MetricKind::Gauge,
            ),
            sample(
                &[("__name__", "cpu_idle"), ("host", "a"), ("region", "eu")],
                98.0,
                1_700_000_000_000,
                MetricKind::Gauge,
            ),
            sample(&[("__name__", "up")], f64::NAN, -5, MetricKind::Counter),
            sample(&[], 0.0, i64::MAX, MetricKind::Unspecified),
            sample(&[("__name__", "x"), ("long", &"v".repeat(300))], -0.0, i64::MIN, MetricKind::Summary),
        ];
        let mut rec = Vec::new();
        encode_body(&samples, &mut rec);
        seal(&mut rec, samples.len() as u32, 42, 7);
        let h = RecordHeader::parse(&rec).unwrap();
        assert_eq!((h.seq, h.samples, h.appended_ms), (42, 5, 7));
        assert!(h.body_matches(&rec[HEADER_LEN..]));
        let back = decode_body(&rec[HEADER_LEN..], 5).unwrap();
        assert_eq!(back.len(), 5);
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!((a.timestamp_ms, a.kind), (b.timestamp_ms, b.kind));
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let samples = vec![sample(&[("__name__", "m"), ("host", "h")], 1.0, 1000, MetricKind::Gauge)];
        let mut rec = Vec::new();
        encode_body(&samples, &mut rec);
        seal(&mut rec, 1, 1, 1);
        for i in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let ok = RecordHeader::parse(&bad).is_some_and(|h| h.body_matches(&bad[HEADER_LEN..]));
            assert!(!ok, "flipping bit {i} went unnoticed");
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..20) {
            let _ = decode_body(&body, n);
        }

        #[test]
        fn round_trips(rows in proptest::collection::vec(
            (proptest::collection::vec(("[a-z_]{1,8}", "[ -~]{0,30}"), 0..6), any::<f64>(), any::<i64>()), 0..40)) {
            let samples: Vec<Sample> = rows.iter().map(|(labels, v, ts)| {
                Sample::new(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(), *v, *ts)
            }).collect();
            let mut rec = Vec::new();
            encode_body(&samples, &mut rec);
            let back = decode_body(&rec[HEADER_LEN..], samples.len()).unwrap();
            for (a, b) in samples.iter().zip(&back) {
                prop_assert_eq!(&a.labels, &b.labels);
                prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
                prop_assert_eq!(a.timestamp_ms, b.timestamp_ms);
            }
        }
    }
}
