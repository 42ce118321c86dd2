//! `tsrelay.v1.WriteRequest` → samples, refusing what the model cannot hold.

use crate::model::{Labels, METRIC_NAME_LABEL, MetricKind, Sample};
use crate::proto::v1::{MetricType, WriteRequest};

/// Errors reported back to the sender; later ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// The most a timestamp may be in ms and still fit in ns everywhere (year 2262).
const MAX_ABS_TIMESTAMP_MS: i64 = i64::MAX / 1_000_000;

#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    pub rejected_invalid_name: u64,
    pub rejected_timestamp: u64,
    pub errors: Vec<String>,
}

impl Decoded {
    fn reject(&mut self, series: usize, message: String) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("series {series}: {message}"));
        }
    }
}

/// Decodes one request; `now_ms` stands in for timestamp 0.
pub fn decode_request(req: WriteRequest, now_ms: i64) -> Decoded {
    let mut out =
        Decoded { samples: Vec::with_capacity(req.series.iter().map(|s| s.samples.len()).sum()), ..Default::default() };
    for (i, series) in req.series.into_iter().enumerate() {
        let n = series.samples.len();
        if let Some(problem) = label_problem(&series.labels) {
            out.rejected_invalid_name += n as u64;
            out.reject(i, problem);
            continue;
        }
        let kind = match MetricType::try_from(series.r#type).unwrap_or(MetricType::Unspecified) {
            MetricType::Unspecified => MetricKind::Unspecified,
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram => MetricKind::Histogram,
            MetricType::Summary => MetricKind::Summary,
        };
        let text: usize = series.labels.iter().map(|l| l.name.len() + l.value.len()).sum();
        let mut labels = Labels::with_capacity(series.labels.len(), text);
        for l in &series.labels {
            labels.push(&l.name, &l.value);
        }
        let mut bad_ts = 0;
        for s in series.samples {
            let ts = if s.timestamp == 0 { now_ms } else { s.timestamp };
            // `unsigned_abs`: `i64::MIN.abs()` overflows (found by fuzzing).
            if ts.unsigned_abs() > MAX_ABS_TIMESTAMP_MS as u64 {
                bad_ts += 1;
                continue;
            }
            out.samples.push(Sample { labels: labels.clone(), value: s.value, timestamp_ms: ts, kind });
        }
        if bad_ts > 0 {
            out.rejected_timestamp += bad_ts as u64;
            out.reject(i, format!("{bad_ts} samples with a timestamp beyond ±{MAX_ABS_TIMESTAMP_MS} ms"));
        }
    }
    out
}

fn label_problem(labels: &[crate::proto::v1::Label]) -> Option<String> {
    if labels.iter().any(|l| l.name.is_empty()) {
        return Some("a label has an empty name".into());
    }
    match labels.iter().find(|l| l.name == METRIC_NAME_LABEL) {
        None => Some(format!("no {METRIC_NAME_LABEL} label")),
        Some(l) if l.value.is_empty() => Some(format!("empty {METRIC_NAME_LABEL}")),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Label, Sample as PbSample, Series};

    fn label(n: &str, v: &str) -> Label {
        Label { name: n.into(), value: v.into() }
    }

    #[test]
    fn rejects_bad_series_keeps_good_ones() {
        let req = WriteRequest {
            id: 7,
            series: vec![
                Series {
                    labels: vec![label("__name__", "up"), label("job", "a")],
                    samples: vec![PbSample { value: 1.0, timestamp: 0 }, PbSample { value: 2.0, timestamp: 5 }],
                    r#type: MetricType::Counter as i32,
                    unit: String::new(),
                },
                Series {
                    labels: vec![label("job", "a")],
                    samples: vec![PbSample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                },
                Series {
                    labels: vec![label("__name__", "x"), label("", "v")],
                    samples: vec![PbSample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                },
                Series {
                    labels: vec![label("__name__", "x")],
                    samples: vec![PbSample { value: 1.0, timestamp: i64::MAX }],
                    ..Default::default()
                },
            ],
        };
        let d = decode_request(req, 1000);
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[0].timestamp_ms, 1000);
        assert_eq!(d.samples[0].kind, MetricKind::Counter);
        assert_eq!(d.rejected_invalid_name, 2);
        assert_eq!(d.rejected_timestamp, 1);
        assert_eq!(d.errors.len(), 3);
        assert!(d.errors[0].contains("series 1") && d.errors[0].contains("__name__"), "{:?}", d.errors);
    }

    /// Regression (fuzz/regressions/grpc_write_request/): `i64::MIN` overflowed `abs()`,
    /// a panic with overflow checks and an accepted sample without them.
    #[test]
    fn the_most_negative_timestamp_is_rejected() {
        let req = WriteRequest {
            id: 1,
            series: vec![Series {
                labels: vec![label("__name__", "x")],
                samples: vec![PbSample { value: 1.0, timestamp: i64::MIN }, PbSample { value: 2.0, timestamp: -5 }],
                ..Default::default()
            }],
        };
        let d = decode_request(req, 1000);
        assert_eq!(d.rejected_timestamp, 1);
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.samples[0].timestamp_ms, -5);
    }

    proptest::proptest! {
        /// Whatever arrives, every sample is either accepted or counted as rejected.
        #[test]
        fn every_sample_is_accounted_for(
            series in proptest::collection::vec(
                (
                    proptest::collection::vec(("(__name__|[a-z]{0,3})", ".{0,4}"), 0..4),
                    proptest::collection::vec((proptest::num::f64::ANY, proptest::num::i64::ANY), 0..4),
                ),
                0..6,
            )
        ) {
            let total: usize = series.iter().map(|s| s.1.len()).sum();
            let req = WriteRequest {
                id: 1,
                series: series
                    .into_iter()
                    .map(|(labels, samples)| Series {
                        labels: labels.into_iter().map(|(n, v)| label(&n, &v)).collect(),
                        samples: samples.into_iter().map(|(value, timestamp)| PbSample { value, timestamp }).collect(),
                        ..Default::default()
                    })
                    .collect(),
            };
            let d = decode_request(req, 1);
            proptest::prop_assert_eq!(d.samples.len() as u64 + d.rejected_invalid_name + d.rejected_timestamp, total as u64);
            proptest::prop_assert!(d.errors.len() <= MAX_REPORTED_ERRORS);
        }
    }
}
