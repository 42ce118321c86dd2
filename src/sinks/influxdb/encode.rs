//! Samples → InfluxDB line protocol, one line per sample, with per-metric
//! measurement/field overrides from the metric registry. Pure functions, and
//! the sink's [`Encode`]: a batch is encoded once, gzipped per request, and a
//! request the server finds too large is split by lines without encoding again.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::model::Sample;
use crate::sinks::SinkBatch;
use crate::sinks::common::{Encode, Encoded};
use crate::sinks::line_protocol::encode_sample;

/// `backends.influxdb` of one registry entry: where a metric goes instead of
/// measurement = metric name, field = the sink's `field`. Plain data the
/// registry owns (the read side's InfluxDB driver reads it too).
pub use crate::registry::InfluxdbOverride;

/// Looks a metric name up in the registry; `None` when it has no override.
pub type OverrideLookup = crate::registry::OverrideLookup<InfluxdbOverride>;

/// A batch encoded once: the body and where each line ends, so a batch the
/// server finds too large can be split without encoding again.
#[derive(Debug, Clone, Default)]
pub struct EncodedLines {
    pub body: Vec<u8>,
    /// `line_ends[i]` is the end offset (after the newline) of line `i`.
    pub line_ends: Vec<usize>,
    /// Samples that line protocol cannot carry (NaN/±Inf, no name, time out of range).
    pub unrepresentable: usize,
}

impl EncodedLines {
    pub fn clear(&mut self) {
        self.body.clear();
        self.line_ends.clear();
        self.unrepresentable = 0;
    }

    pub fn lines(&self) -> usize {
        self.line_ends.len()
    }

    /// The bytes of lines `range`.
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        let start = if range.start == 0 { 0 } else { self.line_ends[range.start - 1] };
        &self.body[start..self.line_ends[range.end - 1]]
    }
}

/// Appends one line per representable sample to `out`.
pub fn encode_batch<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    default_field: &str,
    overrides: Option<&OverrideLookup>,
    out: &mut EncodedLines,
) {
    // Consecutive samples mostly share a metric: remember the last lookup.
    let mut last: Option<(&'a str, Option<Arc<InfluxdbOverride>>)> = None;
    for sample in samples {
        let name = sample.name();
        let found = match (overrides, &last) {
            (None, _) => None,
            (Some(_), Some((n, o))) if *n == name => o.clone(),
            (Some(lookup), _) => {
                let o = lookup(name);
                last = Some((name, o.clone()));
                o
            }
        };
        let measurement = found.as_ref().and_then(|o| o.measurement.as_deref()).unwrap_or(name);
        let field = found.as_ref().and_then(|o| o.field.as_deref()).unwrap_or(default_field);
        if encode_sample(sample, measurement, field, &mut out.body) {
            out.line_ends.push(out.body.len());
        } else {
            out.unrepresentable += 1;
        }
    }
}

/// gzip of `body` into `out` (cleared first). Level 1: line protocol
/// compresses ~10× even at the fastest level, and CPU is the budget.
pub fn gzip_into(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    let mut enc = GzEncoder::new(std::mem::take(out), Compression::fast());
    enc.write_all(body)?;
    *out = enc.finish()?;
    Ok(())
}

/// One write request: lines `range` of a batch's encoded lines, and the body
/// sent for them (gzipped when `gzipped`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct InfluxdbRequest {
    lines: Arc<EncodedLines>,
    range: Range<usize>,
    pub body: Bytes,
    pub gzipped: bool,
}

impl InfluxdbRequest {
    /// How many lines (samples) the request carries.
    pub fn lines(&self) -> usize {
        self.range.len()
    }
}

/// The sink's encoder, one per lane: keeps its line and gzip buffers from one batch to the next.
pub struct InfluxdbEncoder {
    field: String,
    overrides: Option<OverrideLookup>,
    gzip: bool,
    lines: Arc<EncodedLines>,
    gz: Vec<u8>,
}

impl InfluxdbEncoder {
    pub fn new(field: String, overrides: Option<OverrideLookup>, gzip: bool) -> Self {
        InfluxdbEncoder { field, overrides, gzip, lines: Arc::default(), gz: Vec::new() }
    }

    fn request(&mut self, range: Range<usize>) -> InfluxdbRequest {
        let raw = self.lines.slice(range.clone());
        let (body, gzipped) = if self.gzip && gzip_into(raw, &mut self.gz).is_ok() {
            (Bytes::copy_from_slice(&self.gz), true)
        } else {
            (Bytes::copy_from_slice(raw), false)
        };
        InfluxdbRequest { lines: self.lines.clone(), range, body, gzipped }
    }
}

impl Encode for InfluxdbEncoder {
    type Request = InfluxdbRequest;

    fn encode(&mut self, batch: &SinkBatch) -> Encoded<InfluxdbRequest> {
        // The last batch's requests are gone by now, so this reuses the buffers.
        let lines = Arc::make_mut(&mut self.lines);
        lines.clear();
        encode_batch(batch.samples(), &self.field, self.overrides.as_ref(), lines);
        let (count, unrepresentable) = (lines.lines(), lines.unrepresentable);
        let problem = (unrepresentable > 0).then(|| "NaN/Inf value, empty name or timestamp out of range".to_string());
        let request = (count > 0).then(|| self.request(0..count));
        Encoded { request, unrepresentable, problem }
    }

    fn split(&mut self, request: &InfluxdbRequest) -> Option<[(InfluxdbRequest, usize); 2]> {
        let range = request.range.clone();
        if range.len() < 2 {
            return None;
        }
        let mid = range.start + range.len() / 2;
        // Split lines of the request's own batch, even if this lane has encoded nothing since.
        let previous = std::mem::replace(&mut self.lines, request.lines.clone());
        let halves =
            [(self.request(range.start..mid), mid - range.start), (self.request(mid..range.end), range.end - mid)];
        self.lines = previous;
        Some(halves)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::model::Labels;

    fn sample(name: &str, host: &str, v: f64) -> Sample {
        let labels: Labels = [("__name__", name), ("host", host)].into_iter().collect();
        Sample::new(labels, v, 1_700_000_000_123)
    }

    #[test]
    fn default_measurement_is_the_metric_name_and_field_value() {
        let samples = [sample("cpu", "a", 0.5), sample("mem", "b b", 3.0)];
        let mut out = EncodedLines::default();
        encode_batch(samples.iter(), "value", None, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out.body),
            "cpu,host=a value=0.5 1700000000123000000\nmem,host=b\\ b value=3.0 1700000000123000000\n"
        );
        assert_eq!(out.lines(), 2);
        assert_eq!(out.slice(1..2), b"mem,host=b\\ b value=3.0 1700000000123000000\n");
        assert_eq!(out.slice(0..2), &out.body[..]);
    }

    #[test]
    fn registry_overrides_measurement_and_field() {
        let lookup: OverrideLookup = Arc::new(|name: &str| {
            (name == "port_in_octets_total").then(|| {
                Arc::new(InfluxdbOverride { measurement: Some("port".into()), field: Some("in_octets".into()) })
            })
        });
        let samples = [sample("port_in_octets_total", "sw1", 7.0), sample("other", "h", 1.0)];
        let mut out = EncodedLines::default();
        encode_batch(samples.iter(), "value", Some(&lookup), &mut out);
        let text = String::from_utf8(out.body).unwrap();
        assert_eq!(
            text,
            "port,host=sw1 in_octets=7.0 1700000000123000000\nother,host=h value=1.0 1700000000123000000\n"
        );
    }

    #[test]
    fn unrepresentable_samples_are_counted_not_written() {
        let samples = [sample("a", "h", f64::INFINITY), sample("a", "h", 1.0)];
        let mut out = EncodedLines::default();
        encode_batch(samples.iter(), "value", None, &mut out);
        assert_eq!((out.lines(), out.unrepresentable), (1, 1));
    }

    #[test]
    fn gzip_round_trips() {
        let mut gz = vec![1, 2, 3];
        gzip_into(b"cpu value=1 1\n", &mut gz).unwrap();
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, "cpu value=1 1\n");
    }

    #[test]
    fn requests_split_by_lines_without_encoding_again() {
        let samples: Vec<Sample> = (0..5).map(|i| sample("cpu", "a", i as f64)).collect();
        let batch = SinkBatch::from_batch(Arc::new(crate::model::Batch::new(samples)));
        let mut enc = InfluxdbEncoder::new("value".into(), None, false);
        let whole = enc.encode(&batch).request.expect("a request");
        assert_eq!(whole.lines(), 5);
        let [(first, n1), (second, n2)] = enc.split(&whole).expect("five lines split");
        assert_eq!((n1, n2), (2, 3));
        assert_eq!([&first.body[..], &second.body[..]].concat(), whole.body.to_vec());
        assert!(String::from_utf8_lossy(&second.body).starts_with("cpu,host=a value=2.0 "));
        let [(one, _), _] = enc.split(&first).unwrap();
        assert!(enc.split(&one).is_none(), "a single line cannot be split");

        let mut gz = InfluxdbEncoder::new("value".into(), None, true);
        let zipped = gz.encode(&batch).request.unwrap();
        assert!(zipped.gzipped);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&zipped.body[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, whole.body.to_vec());
    }
}
