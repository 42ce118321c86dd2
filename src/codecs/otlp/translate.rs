//! OTLP metrics → samples, the way Prometheus' OTLP endpoint translates them:
//!
//! - gauges and non-monotonic sums → gauges; monotonic sums → counters
//!   (`_total`); names get their unit spelled out ([`super::names`]);
//! - histograms → `_bucket{le}` (cumulative, `+Inf` = count), `_sum`, `_count`;
//!   summaries → `{quantile}`, `_sum`, `_count`;
//! - resource attributes: `service.namespace`/`service.name` → `job`,
//!   `service.instance.id` → `instance`; promoted ones → labels; the rest on a
//!   `target_info` series (value 1);
//! - delta temporality → running totals per series, or refused (`delta`);
//! - exponential histograms are counted as `unsupported_histogram`, exemplars
//!   as `exemplar`; a point flagged "no recorded value" becomes Prometheus'
//!   staleness marker.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use super::config::{DeltaPolicy, OtlpConfig};
use super::names::{escape, metric_name};
use crate::codecs::remote_write::DecodeLimits;
use crate::model::{Labels, METRIC_NAME_LABEL, MetricKind, Sample};
use crate::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use crate::proto::opentelemetry::proto::metrics::v1::{Metric, metric, number_data_point};

/// Errors reported back to the sender; later ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// `AggregationTemporality`.
const DELTA: i32 = 1;
/// `DataPointFlags.NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;
/// Prometheus' staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// The most a timestamp may be in ms and still fit in ns everywhere.
const MAX_ABS_TIMESTAMP_MS: i64 = i64::MAX / 1_000_000;

/// What one request became.
#[derive(Debug, Default)]
pub struct Translated {
    pub samples: Vec<Sample>,
    /// Data points refused (bad names, limits, malformed points, delta refused,
    /// exponential histograms): OTLP's `rejected_data_points`.
    pub rejected_points: u64,
    pub invalid_name: u64,
    pub too_many_labels: u64,
    pub malformed: u64,
    pub delta_refused: u64,
    pub exponential_histograms: u64,
    pub exemplars: u64,
    pub errors: Vec<String>,
}

impl Translated {
    fn refuse(&mut self, metric: &str, message: impl std::fmt::Display) {
        self.rejected_points += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("metric {metric:?}: {message}"));
        }
    }
}

/// A request over the decode limits.
#[derive(Debug, thiserror::Error)]
#[error("request would produce {count} samples, over the limit of {max} per request")]
pub struct TooManySamples {
    pub count: usize,
    pub max: usize,
}

/// Translates requests; one per receiver (it holds the delta running totals).
pub struct Translator {
    config: OtlpConfig,
    limits: DecodeLimits,
    /// Series hash → running total, for delta temporality.
    totals: Mutex<HashMap<u64, f64>>,
}

/// Labels of a series being built: escaped name → value.
type LabelMap = BTreeMap<String, String>;

fn any_to_string(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| format!("{:?}", any_to_string(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|k| format!("{:?}:{:?}", k.key, k.value.as_ref().map(any_to_string).unwrap_or_default()))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

/// Adds attributes as labels; escaped names that collide join their values with `;`.
fn add_attributes(labels: &mut LabelMap, attrs: &[KeyValue]) {
    for kv in attrs {
        let value = kv.value.as_ref().map(any_to_string).unwrap_or_default();
        if value.is_empty() || kv.key.is_empty() {
            continue;
        }
        let name = escape(&kv.key, true);
        match labels.get_mut(&name) {
            Some(existing) => {
                existing.push(';');
                existing.push_str(&value);
            }
            None => {
                labels.insert(name, value);
            }
        }
    }
}

fn timestamp_ms(unix_nano: u64, now_ms: i64) -> i64 {
    if unix_nano == 0 { now_ms } else { (unix_nano / 1_000_000).min(MAX_ABS_TIMESTAMP_MS as u64) as i64 }
}

/// Prometheus' float formatting for `le` and `quantile` values.
fn format_bound(b: f64) -> String {
    if b == f64::INFINITY {
        "+Inf".into()
    } else if b == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        b.to_string()
    }
}

/// What the points of one metric share.
struct Family<'a> {
    name: String,
    kind: MetricKind,
    delta: bool,
    base: &'a LabelMap,
    metric: &'a str,
}

impl Translator {
    pub fn new(config: OtlpConfig, limits: DecodeLimits) -> Self {
        Translator { config, limits, totals: Mutex::new(HashMap::new()) }
    }

    /// Samples a request would produce at most (to refuse it before building any).
    fn sample_bound(req: &ExportMetricsServiceRequest) -> usize {
        let mut n = 0usize;
        for rm in &req.resource_metrics {
            n = n.saturating_add(1);
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    n = n.saturating_add(match &m.data {
                        Some(metric::Data::Gauge(g)) => g.data_points.len(),
                        Some(metric::Data::Sum(s)) => s.data_points.len(),
                        Some(metric::Data::Histogram(h)) => {
                            h.data_points.iter().map(|p| p.explicit_bounds.len().saturating_add(3)).sum()
                        }
                        Some(metric::Data::Summary(s)) => {
                            s.data_points.iter().map(|p| p.quantile_values.len().saturating_add(2)).sum()
                        }
                        Some(metric::Data::ExponentialHistogram(_)) | None => 0,
                    });
                }
            }
        }
        n
    }

    pub fn translate(&self, req: &ExportMetricsServiceRequest, now_ms: i64) -> Result<Translated, TooManySamples> {
        let bound = Self::sample_bound(req);
        if bound > self.limits.max_samples {
            return Err(TooManySamples { count: bound, max: self.limits.max_samples });
        }
        let mut out = Translated { samples: Vec::with_capacity(bound), ..Default::default() };
        for rm in &req.resource_metrics {
            let attrs: &[KeyValue] = rm.resource.as_ref().map(|r| &r.attributes[..]).unwrap_or(&[]);
            let mut base = LabelMap::new();
            let service = attr(attrs, "service.name").map(any_to_string).unwrap_or_default();
            let job = match attr(attrs, "service.namespace").map(any_to_string) {
                Some(ns) if !ns.is_empty() && !service.is_empty() => format!("{ns}/{service}"),
                _ => service,
            };
            let instance = attr(attrs, "service.instance.id").map(any_to_string).unwrap_or_default();
            for key in &self.config.promote_resource_attributes {
                if let Some(kv) = attrs.iter().find(|kv| &kv.key == key) {
                    add_attributes(&mut base, std::slice::from_ref(kv));
                }
            }
            if !job.is_empty() {
                base.insert("job".into(), job.clone());
            }
            if !instance.is_empty() {
                base.insert("instance".into(), instance.clone());
            }
            let first = out.samples.len();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    self.metric(m, &base, now_ms, &mut out);
                }
            }
            let newest = out.samples[first..].iter().map(|s| s.timestamp_ms).max();
            let info: Vec<KeyValue> = attrs
                .iter()
                .filter(|kv| !matches!(kv.key.as_str(), "service.name" | "service.namespace" | "service.instance.id"))
                .cloned()
                .collect();
            if let (true, Some(ts), false) = (self.config.target_info, newest, info.is_empty()) {
                let mut labels = LabelMap::new();
                add_attributes(&mut labels, &info);
                if !job.is_empty() {
                    labels.insert("job".into(), job);
                }
                if !instance.is_empty() {
                    labels.insert("instance".into(), instance);
                }
                let fam = Family {
                    name: "target_info".into(),
                    kind: MetricKind::Gauge,
                    delta: false,
                    base: &LabelMap::new(),
                    metric: "target_info",
                };
                self.push(&mut out, &fam, &labels, None, 1.0, ts);
            }
        }
        Ok(out)
    }

    fn metric(&self, m: &Metric, base: &LabelMap, now_ms: i64, out: &mut Translated) {
        let c = &self.config;
        let name_for = |counter: bool, gauge: bool| {
            metric_name(&m.name, &m.unit, counter, gauge, c.add_unit_suffix, c.add_type_suffix)
        };
        if m.name.is_empty() {
            let points = match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Histogram(h)) => h.data_points.len(),
                Some(metric::Data::Summary(s)) => s.data_points.len(),
                Some(metric::Data::ExponentialHistogram(e)) => e.data_points.len(),
                None => 0,
            };
            for _ in 0..points {
                out.invalid_name += 1;
                out.refuse("", "metric without a name");
            }
            return;
        }
        match &m.data {
            None => {}
            Some(metric::Data::Gauge(g)) => {
                let fam = Family {
                    name: name_for(false, true),
                    kind: MetricKind::Gauge,
                    delta: false,
                    base,
                    metric: &m.name,
                };
                for p in &g.data_points {
                    self.number_point(&fam, p, now_ms, out);
                }
            }
            Some(metric::Data::Sum(s)) => {
                let delta = s.aggregation_temporality == DELTA;
                let (kind, counter) =
                    if s.is_monotonic { (MetricKind::Counter, true) } else { (MetricKind::Gauge, false) };
                let fam = Family { name: name_for(counter, !counter), kind, delta, base, metric: &m.name };
                for p in &s.data_points {
                    if delta && c.delta == DeltaPolicy::Reject {
                        out.delta_refused += 1;
                        out.refuse(&m.name, "delta temporality is refused here (otlp.delta = \"reject\")");
                        continue;
                    }
                    self.number_point(&fam, p, now_ms, out);
                }
            }
            Some(metric::Data::Histogram(h)) => {
                let delta = h.aggregation_temporality == DELTA;
                let fam =
                    Family { name: name_for(false, false), kind: MetricKind::Histogram, delta, base, metric: &m.name };
                for p in &h.data_points {
                    out.exemplars += p.exemplars.len() as u64;
                    if delta && c.delta == DeltaPolicy::Reject {
                        out.delta_refused += 1;
                        out.refuse(&m.name, "delta temporality is refused here (otlp.delta = \"reject\")");
                        continue;
                    }
                    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                        out.malformed += 1;
                        out.refuse(
                            &m.name,
                            format!(
                                "histogram point has {} bucket counts for {} bounds (needs bounds + 1)",
                                p.bucket_counts.len(),
                                p.explicit_bounds.len()
                            ),
                        );
                        continue;
                    }
                    let Some(labels) = self.point_labels(&fam, &p.attributes, out) else { continue };
                    let ts = timestamp_ms(p.time_unix_nano, now_ms);
                    let stale = p.flags & NO_RECORDED_VALUE != 0;
                    let v = |x: f64| if stale { f64::from_bits(STALE_NAN) } else { x };
                    let mut cumulative = 0u64;
                    for (i, count) in p.bucket_counts.iter().enumerate() {
                        cumulative = cumulative.saturating_add(*count);
                        let le = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                        if le == f64::INFINITY {
                            break;
                        }
                        self.push_suffixed(
                            out,
                            &fam,
                            &labels,
                            "_bucket",
                            Some(("le", format_bound(le))),
                            v(cumulative as f64),
                            ts,
                        );
                    }
                    self.push_suffixed(
                        out,
                        &fam,
                        &labels,
                        "_bucket",
                        Some(("le", "+Inf".into())),
                        v(p.count as f64),
                        ts,
                    );
                    if let Some(sum) = p.sum {
                        self.push_suffixed(out, &fam, &labels, "_sum", None, v(sum), ts);
                    }
                    self.push_suffixed(out, &fam, &labels, "_count", None, v(p.count as f64), ts);
                }
            }
            Some(metric::Data::Summary(s)) => {
                let fam = Family {
                    name: name_for(false, false),
                    kind: MetricKind::Summary,
                    delta: false,
                    base,
                    metric: &m.name,
                };
                for p in &s.data_points {
                    let Some(labels) = self.point_labels(&fam, &p.attributes, out) else { continue };
                    let ts = timestamp_ms(p.time_unix_nano, now_ms);
                    let stale = p.flags & NO_RECORDED_VALUE != 0;
                    let v = |x: f64| if stale { f64::from_bits(STALE_NAN) } else { x };
                    for q in &p.quantile_values {
                        self.push_suffixed(
                            out,
                            &fam,
                            &labels,
                            "",
                            Some(("quantile", format_bound(q.quantile))),
                            v(q.value),
                            ts,
                        );
                    }
                    self.push_suffixed(out, &fam, &labels, "_sum", None, v(p.sum), ts);
                    self.push_suffixed(out, &fam, &labels, "_count", None, v(p.count as f64), ts);
                }
            }
            Some(metric::Data::ExponentialHistogram(e)) => {
                for p in &e.data_points {
                    out.exemplars += p.exemplars.len() as u64;
                    out.exponential_histograms += 1;
                    out.refuse(&m.name, "exponential histograms are not supported (counted as unsupported_histogram)");
                }
            }
        }
    }

    fn number_point(
        &self,
        fam: &Family<'_>,
        p: &crate::proto::opentelemetry::proto::metrics::v1::NumberDataPoint,
        now_ms: i64,
        out: &mut Translated,
    ) {
        out.exemplars += p.exemplars.len() as u64;
        let value = match p.value {
            _ if p.flags & NO_RECORDED_VALUE != 0 => f64::from_bits(STALE_NAN),
            Some(number_data_point::Value::AsDouble(d)) => d,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => {
                out.malformed += 1;
                out.refuse(fam.metric, "data point without a value");
                return;
            }
        };
        let Some(labels) = self.point_labels(fam, &p.attributes, out) else { return };
        self.push(out, fam, &labels, None, value, timestamp_ms(p.time_unix_nano, now_ms));
    }

    /// The resource's labels plus the point's attributes, checked against the limits.
    fn point_labels(&self, fam: &Family<'_>, attrs: &[KeyValue], out: &mut Translated) -> Option<LabelMap> {
        let mut labels = fam.base.clone();
        add_attributes(&mut labels, attrs);
        if labels.len() + 2 > self.limits.max_labels {
            out.too_many_labels += 1;
            out.refuse(
                fam.metric,
                format!("{} attributes, over the decode limit of {} labels", labels.len(), self.limits.max_labels),
            );
            return None;
        }
        if let Some((k, _)) =
            labels.iter().find(|(k, v)| k.len() > self.limits.max_label_bytes || v.len() > self.limits.max_label_bytes)
        {
            out.too_many_labels += 1;
            out.refuse(fam.metric, format!("attribute {k:?} is longer than {} bytes", self.limits.max_label_bytes));
            return None;
        }
        Some(labels)
    }

    #[allow(clippy::too_many_arguments)]
    fn push_suffixed(
        &self,
        out: &mut Translated,
        fam: &Family<'_>,
        labels: &LabelMap,
        suffix: &str,
        extra: Option<(&str, String)>,
        value: f64,
        ts: i64,
    ) {
        let name = format!("{}{suffix}", fam.name);
        let fam = Family { name, kind: fam.kind, delta: fam.delta, base: fam.base, metric: fam.metric };
        self.push(out, &fam, labels, extra, value, ts);
    }

    fn push(
        &self,
        out: &mut Translated,
        fam: &Family<'_>,
        labels: &LabelMap,
        extra: Option<(&str, String)>,
        value: f64,
        ts: i64,
    ) {
        let mut packed = Labels::with_capacity(labels.len() + 2, 64);
        packed.push(METRIC_NAME_LABEL, &fam.name);
        for (k, v) in labels {
            if k != METRIC_NAME_LABEL && extra.as_ref().is_none_or(|(ek, _)| ek != k) {
                packed.push(k, v);
            }
        }
        if let Some((k, v)) = &extra {
            packed.push(k, v);
        }
        let value = if fam.delta && value.to_bits() != STALE_NAN { self.accumulate(&packed, value) } else { value };
        out.samples.push(Sample { labels: packed, value, timestamp_ms: ts, kind: fam.kind });
    }

    /// Adds a delta to its series' running total.
    fn accumulate(&self, labels: &Labels, delta: f64) -> f64 {
        let key = labels.series_hash();
        let mut totals = self.totals.lock();
        if totals.len() >= self.config.max_delta_series && !totals.contains_key(&key) {
            tracing::warn!(
                max = self.config.max_delta_series,
                "OTLP delta table full: starting over (a counter reset for its series)"
            );
            totals.clear();
        }
        let total = totals.entry(key).or_insert(0.0);
        *total += delta;
        *total
    }
}

impl Translated {
    /// Counts what was not kept on the receiver's `tsrelay_dropped_samples_total`
    /// (OTLP refusals count data points; exemplars count one each).
    pub fn count_drops(&self, m: &crate::telemetry::ReceiverMetrics) {
        use crate::telemetry::DropReason;
        m.dropped(DropReason::InvalidName, self.invalid_name);
        m.dropped(DropReason::TooManyLabels, self.too_many_labels);
        m.dropped(DropReason::ParseError, self.malformed);
        m.dropped(DropReason::Delta, self.delta_refused);
        m.dropped(DropReason::UnsupportedHistogram, self.exponential_histograms);
        m.dropped(DropReason::Exemplar, self.exemplars);
    }

    /// OTLP's partial-success message: the first problems.
    pub fn error_message(&self) -> String {
        self.errors.join("; ")
    }
}
