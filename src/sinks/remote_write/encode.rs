//! Batch → remote-write 1.0 request body (protobuf `prometheus.WriteRequest`,
//! snappy block format). Encoded by hand straight from the batch: no
//! intermediate message structs, and every buffer is reused from one request
//! to the next, because this runs once per sample at the daemon's full rate.
//!
//! What the specification asks of a request, and how it is met here:
//! - labels sorted by name, names unique: the pipeline sorts them; a series
//!   that is not sorted is sorted here, one with a repeated name cannot be
//!   sent (Prometheus answers 500 to it, forever) and counts as rejected;
//!   empty values mean "no such label" and are left out;
//! - samples grouped by series, in timestamp order inside the request;
//! - values bit for bit, so stale markers (NaN `0x7ff0000000000002`) survive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compact_str::CompactString;

use crate::model::{LabelRef, Labels, MetricKind, Sample, SeriesMap, copy_bytes, name_before};
use crate::sinks::common::{Encode, Encoded};
use crate::sinks::{SinkBatch, prefetch, prefetch_labels};

/// Help and unit of a metric family (and its type, when known better than
/// the samples say), e.g. from the metric registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricInfo {
    pub kind: MetricKind,
    pub help: String,
    pub unit: String,
}

/// Where metadata comes from besides the samples' own type: the hook for the
/// metric registry. Called at most once per metric name per metadata interval
/// and lane, never per sample.
pub trait MetadataProvider: Send + Sync + 'static {
    fn lookup(&self, metric_name: &str) -> Option<MetricInfo>;
}

/// The metric registry as the metadata source (type, unit, help). The impl
/// lives with the trait: the registry knows nothing of sinks.
impl MetadataProvider for crate::registry::MetricRegistry {
    fn lookup(&self, metric_name: &str) -> Option<MetricInfo> {
        let e = self.get(metric_name)?;
        Some(MetricInfo {
            kind: e.kind(),
            help: e.help.clone().unwrap_or_default(),
            unit: e.unit.clone().unwrap_or_default(),
        })
    }
}

/// When and with what the encoder sends metric metadata.
#[derive(Clone)]
pub struct MetadataSettings {
    pub enabled: bool,
    /// A family's metadata is sent again after this long (as Prometheus does).
    pub interval: Duration,
    pub provider: Option<Arc<dyn MetadataProvider>>,
}

impl Default for MetadataSettings {
    fn default() -> Self {
        MetadataSettings { enabled: true, interval: Duration::from_secs(60), provider: None }
    }
}

/// Remote-write `MetricMetadata.MetricType`.
fn metadata_type(kind: MetricKind) -> u64 {
    match kind {
        MetricKind::Unspecified => 0,
        MetricKind::Counter => 1,
        MetricKind::Gauge => 2,
        MetricKind::Histogram => 3,
        MetricKind::Summary => 5,
    }
}

type SeriesIndex = SeriesMap<u32>;

/// Past this many remembered families the memory is cleared (metadata is
/// then simply sent again), so the table stays bounded.
const MAX_REMEMBERED_FAMILIES: usize = 100_000;
/// A table this much larger than the last request is shrunk, so one huge
/// request does not pin its memory forever.
const SHRINK_FACTOR: usize = 4;

/// Encodes requests; one per lane, its buffers reused across requests.
pub struct RemoteWriteEncoder {
    metadata: MetadataSettings,
    metadata_sent: HashMap<CompactString, Instant>,
    due_metadata: Vec<(CompactString, MetricInfo)>,
    series: SeriesIndex,
    repeats: RepeatFilter,
    hashes: Vec<u64>,
    group_of: Vec<u32>,
    group_start: Vec<u32>,
    cursor: Vec<u32>,
    order: Vec<u32>,
    /// Samples in the previous request: the capacity guess for this one.
    last_len: usize,
    raw: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

/// What one encoding produced besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeSummary {
    pub series: usize,
    pub samples: usize,
    pub metadata: usize,
    /// Samples left out: their series has a repeated label name or no label at all.
    pub unrepresentable: usize,
}

impl RemoteWriteEncoder {
    pub fn new(metadata: MetadataSettings) -> Self {
        RemoteWriteEncoder {
            metadata,
            metadata_sent: HashMap::new(),
            due_metadata: Vec::new(),
            series: SeriesIndex::default(),
            repeats: RepeatFilter::default(),
            hashes: Vec::new(),
            group_of: Vec::new(),
            group_start: Vec::new(),
            cursor: Vec::new(),
            order: Vec::new(),
            last_len: 0,
            raw: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// The uncompressed `WriteRequest` of `samples` (with their series
    /// hashes), as of `now` for the metadata schedule. The bytes stay valid
    /// until the next call.
    pub fn encode_protobuf<'a>(
        &mut self,
        samples: impl Iterator<Item = (&'a Sample, u64)>,
        now: Instant,
    ) -> (&[u8], EncodeSummary) {
        let samples = self.group(samples);
        let mut summary = EncodeSummary::default();
        self.raw.clear();
        self.due_metadata.clear();
        let mut previous_name: Option<&str> = None;
        let groups = self.group_start.len() - 1;
        for g in 0..groups {
            self.prefetch_ahead(g, groups, &samples);
            let (start, end) = (self.group_start[g] as usize, self.group_start[g + 1] as usize);
            let first = samples[self.order[start] as usize];
            // The slow path only: labels to be sorted or cleaned first.
            let prepared = if labels_ready(&first.labels) { None } else { Some(prepare_labels(&first.labels)) };
            let labels = match &prepared {
                None => first.labels.packed_parts(),
                Some(Some(prepared)) => prepared.packed_parts(),
                Some(None) => {
                    summary.unrepresentable += end - start;
                    continue;
                }
            };
            let members = &mut self.order[start..end];
            if !members.is_sorted_by_key(|&i| samples[i as usize].timestamp_ms) {
                members.sort_by_key(|&i| samples[i as usize].timestamp_ms);
            }
            let samples_len: usize = members.iter().map(|&i| 2 + sample_len(samples[i as usize])).sum();
            let series_len = labels[0].len() + labels[1].len() + samples_len;
            // The entry's size is known: grow once, then write every field
            // in place (small fixed-size copies instead of a memcpy call per
            // string, which cost more than the copying itself).
            let entry_at = self.raw.len();
            self.raw.resize(entry_at + 1 + varint_len(series_len as u64) + series_len, 0);
            let mut out = Cursor { out: &mut self.raw[entry_at..], at: 0 };
            out.byte(tag::WRITE_REQUEST_TIMESERIES);
            out.varint(series_len as u64);
            // Packed labels are already `repeated Label labels = 1`.
            out.bytes(labels[0]);
            if !labels[1].is_empty() {
                out.bytes(labels[1]);
            }
            members.iter().for_each(|&i| out.sample(samples[i as usize]));
            debug_assert_eq!(out.at, out.out.len(), "series entry length computed wrong");
            summary.series += 1;
            summary.samples += end - start;
            // Without a kind or a registry nothing is known to send: skip the name lookup.
            if self.metadata.enabled && (first.kind != MetricKind::Unspecified || self.metadata.provider.is_some()) {
                let name = first.name();
                if previous_name != Some(name) && !name.is_empty() {
                    self.consider_metadata(name, first.kind, now);
                }
                previous_name = Some(name);
            }
        }
        for (name, info) in &self.due_metadata {
            write_metadata(&mut self.raw, name, info);
        }
        summary.metadata = self.due_metadata.len();
        (&self.raw, summary)
    }

    /// Fills `group_start`/`order` so `order[group_start[g]..group_start[g + 1]]`
    /// are the positions of series `g`'s samples, in arrival order; series in
    /// order of first appearance. Returns the samples by position.
    fn group<'a>(&mut self, samples: impl Iterator<Item = (&'a Sample, u64)>) -> Vec<&'a Sample> {
        let mut by_position = Vec::with_capacity(self.last_len);
        self.hashes.clear();
        for (sample, hash) in samples {
            by_position.push(sample);
            self.hashes.push(hash);
        }
        // Most series have one sample in a request: only those the filter
        // says may repeat go through the series index (a cache miss each).
        self.repeats.fill(&self.hashes);
        self.series.clear();
        self.group_of.clear();
        self.group_start.clear();
        for &hash in &self.hashes {
            let next = self.group_start.len() as u32;
            let g = if self.repeats.may_repeat(hash) { *self.series.entry(hash).or_insert(next) } else { next };
            if g == next {
                self.group_start.push(0);
            }
            self.group_start[g as usize] += 1;
            self.group_of.push(g);
        }
        self.last_len = by_position.len();
        if self.series.capacity() > SHRINK_FACTOR * self.last_len.max(1024) {
            self.series.shrink_to(self.last_len);
        }
        // Counts → start offsets (exclusive prefix sums), plus the end sentinel.
        let mut offset = 0u32;
        for slot in self.group_start.iter_mut() {
            let count = *slot;
            *slot = offset;
            offset += count;
        }
        self.group_start.push(offset);
        self.order.clear();
        self.order.resize(by_position.len(), 0);
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.group_start);
        for (position, &g) in self.group_of.iter().enumerate() {
            let at = &mut self.cursor[g as usize];
            self.order[*at as usize] = position as u32;
            *at += 1;
        }
        by_position
    }

    /// Samples sat in the queue long enough to leave the cache, and each
    /// one's labels are a separate allocation: without a hint, every series
    /// costs two dependent cache misses (sample, then its labels). Ask for the
    /// sample a few series ahead, and for the labels of one whose sample
    /// should have arrived by now.
    #[inline]
    fn prefetch_ahead(&self, g: usize, groups: usize, samples: &[&Sample]) {
        const SAMPLE_DISTANCE: usize = 16;
        const LABELS_DISTANCE: usize = 8;
        if g + SAMPLE_DISTANCE < groups {
            let ahead = samples[self.order[self.group_start[g + SAMPLE_DISTANCE] as usize] as usize];
            prefetch(std::ptr::from_ref(ahead).cast());
        }
        if g + LABELS_DISTANCE < groups {
            prefetch_labels(samples[self.order[self.group_start[g + LABELS_DISTANCE] as usize] as usize]);
        }
    }

    fn consider_metadata(&mut self, name: &str, kind: MetricKind, now: Instant) {
        if kind == MetricKind::Unspecified && self.metadata.provider.is_none() {
            // Nothing is known about the family: no metadata to send.
            return;
        }
        if self.metadata_sent.get(name).is_some_and(|t| now.duration_since(*t) < self.metadata.interval) {
            return;
        }
        let mut info = self.metadata.provider.as_ref().and_then(|p| p.lookup(name)).unwrap_or_default();
        if info.kind == MetricKind::Unspecified {
            info.kind = kind;
        }
        if info.kind == MetricKind::Unspecified && info.help.is_empty() && info.unit.is_empty() {
            return;
        }
        if self.metadata_sent.len() >= MAX_REMEMBERED_FAMILIES {
            self.metadata_sent.clear();
        }
        self.metadata_sent.insert(name.into(), now);
        self.due_metadata.push((name.into(), info));
    }

    /// The request body: snappy-compressed `WriteRequest`.
    pub fn encode_body<'a>(
        &mut self,
        samples: impl Iterator<Item = (&'a Sample, u64)>,
        now: Instant,
    ) -> Result<(Bytes, EncodeSummary), snap::Error> {
        let summary = self.encode_protobuf(samples, now).1;
        let needed = snap::raw::max_compress_len(self.raw.len());
        if self.compressed.len() < needed {
            self.compressed.resize(needed, 0);
        }
        let n = self.snappy.compress(&self.raw, &mut self.compressed)?;
        Ok((Bytes::copy_from_slice(&self.compressed[..n]), summary))
    }
}

impl Encode for RemoteWriteEncoder {
    type Request = Bytes;

    fn encode(&mut self, batch: &SinkBatch) -> Encoded<Bytes> {
        match self.encode_body(batch.samples_with_hash(), Instant::now()) {
            Ok((body, summary)) => Encoded {
                request: (summary.samples > 0).then_some(body),
                unrepresentable: summary.unrepresentable,
                problem: (summary.unrepresentable > 0)
                    .then(|| "series with a repeated label name or without labels".to_string()),
            },
            Err(e) => Encoded {
                request: None,
                unrepresentable: batch.len(),
                problem: Some(format!("cannot compress a {}-sample request: {e}", batch.len())),
            },
        }
    }
}

/// Which series of a request may have more than one sample in it, in one
/// pass over the series hashes and without a table lookup per sample: two
/// bitmaps indexed by a hash's bits, "seen" and "seen again". A series whose
/// bit was set once only is certainly alone in the request; one whose bit was
/// set twice may share it with another series (a false positive costs only
/// the index lookup every sample used to cost). About 16 bits per sample keep
/// false positives near 1 in 16, and the bitmaps in the first-level cache.
#[derive(Default)]
struct RepeatFilter {
    seen: Vec<u64>,
    repeated: Vec<u64>,
    /// log2 of the bits in each bitmap.
    bits: u32,
}

impl RepeatFilter {
    const MIN_BITS: u32 = 10;
    const MAX_BITS: u32 = 17;

    /// Clears the bitmaps, sized for `hashes`, and notes every hash.
    fn fill(&mut self, hashes: &[u64]) {
        let wanted = (hashes.len().max(1) * 16).next_power_of_two().trailing_zeros();
        self.bits = wanted.clamp(Self::MIN_BITS, Self::MAX_BITS);
        let words = (1usize << self.bits) / 64;
        for map in [&mut self.seen, &mut self.repeated] {
            map.clear();
            map.resize(words, 0);
        }
        for &hash in hashes {
            let (word, bit) = self.position(hash);
            let already = self.seen[word] & bit;
            self.seen[word] |= bit;
            self.repeated[word] |= already;
        }
    }

    #[inline(always)]
    fn may_repeat(&self, hash: u64) -> bool {
        let (word, bit) = self.position(hash);
        self.repeated[word] & bit != 0
    }

    /// The hash's bit: a multiply spreads it, since a lane's series share
    /// the bits that chose the lane.
    #[inline(always)]
    fn position(&self, hash: u64) -> (usize, u64) {
        let index = (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize;
        (index / 64, 1u64 << (index % 64))
    }
}

/// The labels are sendable as they are — sorted by name, names unique, no
/// empty value, at least one: the usual case.
#[inline]
fn labels_ready(labels: &Labels) -> bool {
    let mut previous: Option<&[u8]> = None;
    for l in labels.iter() {
        let name = l.name.as_bytes();
        if l.value.is_empty() || previous.is_some_and(|p| !name_before(p, name)) {
            return false;
        }
        previous = Some(name);
    }
    previous.is_some()
}

/// The slow path: the non-empty labels sorted by name; `None` if a name
/// repeats or nothing is left.
fn prepare_labels(labels: &Labels) -> Option<Labels> {
    let mut kept: Vec<LabelRef<'_>> = labels.iter().filter(|l| !l.value.is_empty()).collect();
    kept.sort_by(|a, b| a.name.cmp(b.name));
    let unique = !kept.is_empty() && kept.windows(2).all(|w| w[0].name != w[1].name);
    unique.then(|| Labels::from_refs(kept))
}

#[inline]
fn varint_len(v: u64) -> usize {
    if v < 0x80 { 1 } else { (64 - v.leading_zeros() as usize).div_ceil(7) }
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Field tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
mod tag {
    pub const WRITE_REQUEST_TIMESERIES: u8 = (1 << 3) | 2;
    pub const WRITE_REQUEST_METADATA: u8 = (3 << 3) | 2;
    pub const TIMESERIES_SAMPLES: u8 = (2 << 3) | 2;
    pub const SAMPLE_VALUE: u8 = (1 << 3) | 1;
    pub const SAMPLE_TIMESTAMP: u8 = 2 << 3;
    pub const METADATA_TYPE: u8 = 1 << 3;
    pub const METADATA_FAMILY_NAME: u8 = (2 << 3) | 2;
    pub const METADATA_HELP: u8 = (4 << 3) | 2;
    pub const METADATA_UNIT: u8 = (5 << 3) | 2;
}

#[inline]
fn string_field_len(s: &str) -> usize {
    1 + varint_len(s.len() as u64) + s.len()
}

#[inline]
fn put_string_field(buf: &mut Vec<u8>, tag: u8, s: &str) {
    buf.push(tag);
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Proto3 leaves out fields at their default; so does this encoder (zero
/// values are common in counters). Only +0.0 is a default: -0.0 keeps its sign.
#[inline]
fn sample_len(s: &Sample) -> usize {
    let value = if s.value.to_bits() == 0 { 0 } else { 1 + 8 };
    let timestamp = if s.timestamp_ms == 0 { 0 } else { 1 + varint_len(s.timestamp_ms as u64) };
    value + timestamp
}

/// Writes into a slice sized beforehand for exactly what is written.
struct Cursor<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.out[self.at] = b;
        self.at += 1;
    }

    #[inline(always)]
    fn bytes(&mut self, src: &[u8]) {
        copy_bytes(&mut self.out[self.at..self.at + src.len()], src);
        self.at += src.len();
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline]
    fn sample(&mut self, s: &Sample) {
        self.byte(tag::TIMESERIES_SAMPLES);
        self.varint((sample_len(s)) as u64);
        let bits = s.value.to_bits();
        if bits != 0 {
            self.byte(tag::SAMPLE_VALUE);
            self.out[self.at..self.at + 8].copy_from_slice(&bits.to_le_bytes());
            self.at += 8;
        }
        if s.timestamp_ms != 0 {
            self.byte(tag::SAMPLE_TIMESTAMP);
            self.varint(s.timestamp_ms as u64);
        }
    }
}

/// One `MetricMetadata` entry of the `WriteRequest`.
fn write_metadata(buf: &mut Vec<u8>, name: &str, info: &MetricInfo) {
    let kind = metadata_type(info.kind);
    let optional = |s: &str| if s.is_empty() { 0 } else { string_field_len(s) };
    let len = (if kind == 0 { 0 } else { 1 + varint_len(kind) })
        + string_field_len(name)
        + optional(&info.help)
        + optional(&info.unit);
    buf.push(tag::WRITE_REQUEST_METADATA);
    put_varint(buf, len as u64);
    if kind != 0 {
        buf.push(tag::METADATA_TYPE);
        put_varint(buf, kind);
    }
    put_string_field(buf, tag::METADATA_FAMILY_NAME, name);
    if !info.help.is_empty() {
        put_string_field(buf, tag::METADATA_HELP, &info.help);
    }
    if !info.unit.is_empty() {
        put_string_field(buf, tag::METADATA_UNIT, &info.unit);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::{Batch, Labels};
    use crate::proto::prometheus as pb;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn sample(labels: &[(&str, &str)], value: f64, ts: i64) -> Sample {
        Sample::new(labels.iter().copied().collect::<Labels>(), value, ts)
    }

    fn decode(encoder: &mut RemoteWriteEncoder, samples: &[Sample], now: Instant) -> (pb::WriteRequest, EncodeSummary) {
        let (bytes, summary) = encoder.encode_protobuf(samples.iter().map(|s| (s, s.labels.series_hash())), now);
        (pb::WriteRequest::decode(bytes).expect("valid protobuf"), summary)
    }

    fn labels_of(ts: &pb::TimeSeries) -> Vec<(String, String)> {
        ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
    }

    #[test]
    fn groups_by_series_in_first_appearance_order_with_sorted_timestamps() {
        let a = [("__name__", "up"), ("job", "a")];
        let b = [("__name__", "up"), ("job", "b")];
        let samples = vec![
            sample(&a, 1.0, 1000),
            sample(&b, 2.0, 1000),
            sample(&a, 3.0, 3000),
            sample(&a, 4.0, 2000),
            sample(&b, 5.0, 2000),
        ];
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        let (req, summary) = decode(&mut enc, &samples, Instant::now());
        assert_eq!(summary, EncodeSummary { series: 2, samples: 5, metadata: 0, unrepresentable: 0 });
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(labels_of(&req.timeseries[0]), vec![("__name__".into(), "up".into()), ("job".into(), "a".into())]);
        let a_samples: Vec<(f64, i64)> = req.timeseries[0].samples.iter().map(|s| (s.value, s.timestamp)).collect();
        assert_eq!(a_samples, vec![(1.0, 1000), (4.0, 2000), (3.0, 3000)]);
        let b_samples: Vec<(f64, i64)> = req.timeseries[1].samples.iter().map(|s| (s.value, s.timestamp)).collect();
        assert_eq!(b_samples, vec![(2.0, 1000), (5.0, 2000)]);
    }

    /// The repeat filter only decides which samples skip the series index:
    /// grouping must come out as a plain map groups, for small and large
    /// requests, series seen once or many times. The largest request has more
    /// samples than the filter has room for, so many series alone in it are
    /// taken for repeated ones (checked): those go through the index too.
    #[test]
    fn grouping_matches_a_plain_map_whatever_the_filter_says() {
        let mut rng = crate::test_rng::Rng(0x5eed_0f9e);
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        for (samples_n, series_n) in [(1, 1), (7, 3), (3000, 500), (5000, 4000), (40_000, 39_000)] {
            let samples: Vec<Sample> =
                (0..samples_n).map(|i| sample(&[("__name__", "m")], i as f64, i as i64)).collect();
            let hashes: Vec<u64> =
                (0..samples_n).map(|_| (rng.below(series_n) as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)).collect();
            let by_position = enc.group(samples.iter().zip(hashes.iter().copied()));
            assert_eq!(by_position.len(), samples_n);
            let mut want: Vec<Vec<u32>> = Vec::new();
            let mut index: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
            for (position, hash) in hashes.iter().enumerate() {
                let g = *index.entry(*hash).or_insert_with(|| {
                    want.push(Vec::new());
                    want.len() - 1
                });
                want[g].push(position as u32);
            }
            let got: Vec<Vec<u32>> = (0..enc.group_start.len() - 1)
                .map(|g| enc.order[enc.group_start[g] as usize..enc.group_start[g + 1] as usize].to_vec())
                .collect();
            assert_eq!(got, want, "{samples_n} samples over {series_n} series");
            if samples_n == 40_000 {
                let alone_but_flagged =
                    want.iter().filter(|g| g.len() == 1 && enc.repeats.may_repeat(hashes[g[0] as usize])).count();
                assert!(
                    alone_but_flagged > 1000,
                    "the filter was never wrong ({alone_but_flagged}): the test proves little"
                );
            }
        }
    }

    #[test]
    fn stale_markers_and_special_values_pass_bit_for_bit() {
        let l = [("__name__", "m")];
        let values = [f64::from_bits(STALE_NAN), f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, 1e-300];
        let samples: Vec<Sample> = values.iter().enumerate().map(|(i, v)| sample(&l, *v, i as i64 + 1)).collect();
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        let (req, _) = decode(&mut enc, &samples, Instant::now());
        let got: Vec<u64> = req.timeseries[0].samples.iter().map(|s| s.value.to_bits()).collect();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn negative_and_large_timestamps_round_trip() {
        let l = [("__name__", "m")];
        let samples = vec![sample(&l, 1.0, -5), sample(&l, 1.0, 0), sample(&l, 1.0, i64::MAX / 1_000_000)];
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        let (req, _) = decode(&mut enc, &samples, Instant::now());
        let ts: Vec<i64> = req.timeseries[0].samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(ts, vec![-5, 0, i64::MAX / 1_000_000]);
    }

    #[test]
    fn unsorted_labels_are_sorted_empty_values_dropped_repeated_names_refused() {
        let unsorted = sample(&[("zone", "z"), ("__name__", "m"), ("empty", ""), ("a", "1")], 1.0, 1);
        let mut repeated = sample(&[("__name__", "m"), ("a", "1")], 2.0, 1);
        repeated.labels.push("a", "2");
        let nothing = sample(&[("empty", "")], 3.0, 1);
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        let (req, summary) = decode(&mut enc, &[unsorted, repeated, nothing], Instant::now());
        assert_eq!(summary.unrepresentable, 2);
        assert_eq!(req.timeseries.len(), 1);
        let names: Vec<String> = req.timeseries[0].labels.iter().map(|l| l.name.clone()).collect();
        assert_eq!(names, vec!["__name__", "a", "zone"]);
    }

    #[test]
    fn metadata_from_sample_kind_and_provider_once_per_interval() {
        struct Registry;
        impl MetadataProvider for Registry {
            fn lookup(&self, name: &str) -> Option<MetricInfo> {
                (name == "port_in_octets_total").then(|| MetricInfo {
                    kind: MetricKind::Counter,
                    help: "Octets received on a switch port.".into(),
                    unit: "bytes".into(),
                })
            }
        }
        let settings =
            MetadataSettings { enabled: true, interval: Duration::from_secs(60), provider: Some(Arc::new(Registry)) };
        let mut gauge = sample(&[("__name__", "temperature")], 20.0, 1);
        gauge.kind = MetricKind::Gauge;
        let octets = sample(&[("__name__", "port_in_octets_total"), ("port", "1")], 5.0, 1);
        let untyped = sample(&[("__name__", "mystery")], 1.0, 1);
        let batch = [gauge, octets, untyped];
        let mut enc = RemoteWriteEncoder::new(settings);
        let t0 = Instant::now();
        let (req, _) = decode(&mut enc, &batch, t0);
        let mut meta: Vec<(i32, String, String, String)> = req
            .metadata
            .iter()
            .map(|m| (m.r#type, m.metric_family_name.clone(), m.help.clone(), m.unit.clone()))
            .collect();
        meta.sort();
        assert_eq!(
            meta,
            vec![
                (1, "port_in_octets_total".into(), "Octets received on a switch port.".into(), "bytes".into()),
                (2, "temperature".into(), String::new(), String::new()),
            ]
        );
        let (again, _) = decode(&mut enc, &batch, t0 + Duration::from_secs(10));
        assert!(again.metadata.is_empty(), "metadata resent within the interval");
        let (later, _) = decode(&mut enc, &batch, t0 + Duration::from_secs(61));
        assert_eq!(later.metadata.len(), 2);
    }

    #[test]
    fn body_is_snappy_block_format_and_matches_prost_encoding() {
        let samples: Vec<Sample> = (0..500)
            .map(|i| sample(&[("__name__", "m"), ("id", &(i % 37).to_string())], i as f64 * 0.5, 1_700_000_000_000 + i))
            .collect();
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        let batch = Arc::new(Batch::new(samples));
        let encoded = enc.encode(&SinkBatch::from_batch(batch.clone()));
        let body = encoded.request.expect("a request");
        let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy block format");
        let req = pb::WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 37);
        assert_eq!(req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>(), 500);
        // Hand encoding and prost agree byte for byte on the same message.
        assert_eq!(req.encode_to_vec(), raw);
    }

    #[test]
    fn buffers_are_reused_without_leaking_previous_requests() {
        let mut enc = RemoteWriteEncoder::new(MetadataSettings::default());
        let big: Vec<Sample> = (0..100).map(|i| sample(&[("__name__", "m"), ("i", &i.to_string())], 1.0, 1)).collect();
        decode(&mut enc, &big, Instant::now());
        let small = vec![sample(&[("__name__", "n")], 2.0, 2)];
        let (req, summary) = decode(&mut enc, &small, Instant::now());
        assert_eq!(summary.samples, 1);
        assert_eq!(req.timeseries.len(), 1);
        assert_eq!(labels_of(&req.timeseries[0]), vec![("__name__".to_string(), "n".to_string())]);
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
        }
    }
}
