//! Line-protocol encoding shared by the sinks that write it (file, InfluxDB).

use std::io::Write;

use crate::model::{METRIC_NAME_LABEL, Sample};

/// Appends `sample` as one line: measurement = metric name, tags = the other
/// labels (already sorted by the pipeline), field `field` = value, time in ns.
///
/// Returns `false` (writing nothing) for what line protocol cannot carry so that every
/// parser reads it back as written: a NaN or ±Inf value, a timestamp outside the ns range,
/// an empty measurement or one starting with `#` (a comment), a control character (tab,
/// CR, LF, …) in a name or tag value (line protocol has no escape for them in those
/// places), and a backslash that ends a token or precedes a byte that needs escaping
/// (InfluxDB and tsrelay's own parser would read it differently). Everything it writes
/// parses back, with `codecs::line_protocol`, to exactly the sample's labels.
pub fn encode_sample(sample: &Sample, measurement: &str, field: &str, out: &mut Vec<u8>) -> bool {
    if !sample.value.is_finite() || measurement.is_empty() || measurement.starts_with('#') {
        return false;
    }
    let Some(ts_ns) = sample.timestamp_ms.checked_mul(1_000_000) else {
        return false;
    };
    let start = out.len();
    let mut ok = escape_into(measurement.as_bytes(), MEASUREMENT_SPECIAL, out);
    for l in sample.labels.iter() {
        if l.name == METRIC_NAME_LABEL || l.value.is_empty() || l.name.is_empty() {
            continue;
        }
        out.push(b',');
        ok &= escape_into(l.name.as_bytes(), KEY_SPECIAL, out);
        out.push(b'=');
        ok &= escape_into(l.value.as_bytes(), KEY_SPECIAL, out);
    }
    out.push(b' ');
    ok &= !field.is_empty() && escape_into(field.as_bytes(), KEY_SPECIAL, out);
    out.push(b'=');
    if !ok || write!(out, "{:?} {}", sample.value, ts_ns).is_err() {
        out.truncate(start);
        return false;
    }
    out.push(b'\n');
    true
}

/// Bytes a backslash escapes in a measurement name, and in tag keys, tag values and field keys.
const MEASUREMENT_SPECIAL: &[u8] = b", ";
const KEY_SPECIAL: &[u8] = b",= ";

/// Appends `s` with each `special` byte backslash-escaped. Returns `false` when `s` holds
/// what cannot be written: a control character, or a backslash that is last or comes
/// before a special byte (it would escape the separator or the byte after it). Any other
/// backslash stands for itself in every parser and is written as is (`C:\temp`).
fn escape_into(s: &[u8], special: &[u8], out: &mut Vec<u8>) -> bool {
    let control = |b: u8| b < 0x20 || b == 0x7f;
    if !s.iter().any(|&b| special.contains(&b) || b == b'\\' || control(b)) {
        out.extend_from_slice(s);
        return true;
    }
    for (i, &b) in s.iter().enumerate() {
        if control(b) {
            return false;
        }
        if b == b'\\' && s.get(i + 1).is_none_or(|n| special.contains(n)) {
            return false;
        }
        if special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::line_protocol::{Precision, parse_line};
    use crate::model::Labels;
    use proptest::prelude::*;

    #[test]
    fn escapes_and_formats() {
        let labels: Labels = [("__name__", "cpu load"), ("host", "a,b"), ("k=1", "v 2")].into_iter().collect();
        let s = Sample::new(labels, 1.0, 1_700_000_000_000);
        let mut out = Vec::new();
        assert!(encode_sample(&s, s.name(), "value", &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cpu\\ load,host=a\\,b,k\\=1=v\\ 2 value=1.0 1700000000000000000\n"
        );
    }

    #[test]
    fn backslashes_that_would_escape_something_are_refused() {
        let encode = |pairs: &[(&str, &str)]| {
            let labels: Labels = pairs.iter().copied().collect();
            let mut out = Vec::new();
            let ok = encode_sample(&Sample::new(labels, 2.5, 1), "m", "value", &mut out);
            (ok, String::from_utf8(out).unwrap())
        };
        assert_eq!(encode(&[("path", "C:\\temp")]), (true, "m,path=C:\\temp value=2.5 1000000\n".to_string()));
        for bad in ["a\\,b", "end\\", "a\\ b", "a\\=b", "tab\there", "cr\rhere", "nl\nhere", "del\x7f"] {
            assert_eq!(encode(&[("q", bad)]), (false, String::new()), "{bad:?}");
        }
        let labels: Labels = [("__name__", "m")].into_iter().collect();
        let mut out = Vec::new();
        assert!(!encode_sample(&Sample::new(labels.clone(), 1.0, 1), "#m", "value", &mut out));
        assert!(!encode_sample(&Sample::new(labels.clone(), 1.0, 1), "m\t", "value", &mut out));
        assert!(!encode_sample(&Sample::new(labels, 1.0, 1), "m", "", &mut out));
        assert!(out.is_empty());
    }

    /// Label text for the round trip: separators, backslashes, control characters,
    /// non-ASCII; whatever the encoder writes must parse back to exactly these labels.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!['a', 'Z', '0', '_', ' ', ',', '=', '\\', '"', '#', '\t', '\r', '\n', 'é', '𝄞']),
            0..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn what_the_encoder_writes_parses_back_to_the_same_sample(
            measurement in text(),
            tags in prop::collection::btree_map(text(), text(), 0..4),
            field in text(),
            value in any::<f64>(),
            timestamp_ms in any::<i64>(),
        ) {
            let mut labels: Labels = [("__name__", measurement.as_str())].into_iter().collect();
            for (k, v) in &tags {
                labels.push(k, v);
            }
            let sample = Sample::new(labels, value, timestamp_ms);
            let mut out = Vec::new();
            if !encode_sample(&sample, &measurement, &field, &mut out) {
                prop_assert!(out.is_empty());
                return Ok(());
            }
            let parsed = parse_line(&out, Precision::Nanosecond);
            let point = match parsed {
                Ok(Some(point)) => point,
                other => return Err(TestCaseError::fail(format!("{out:?} did not parse back: {other:?}"))),
            };
            prop_assert_eq!(&*point.measurement, measurement.as_str());
            let expected: Vec<(&str, &str)> =
                tags.iter().filter(|(k, v)| !k.is_empty() && !v.is_empty()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let got: Vec<(&str, &str)> = point.tags.iter().map(|t| (&*t.key, &*t.value)).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(point.fields.len(), 1);
            prop_assert_eq!(&*point.fields[0].key, field.as_str());
            prop_assert_eq!(point.fields[0].value.as_f64(), Some(value));
            prop_assert_eq!(point.timestamp_ns, Some(timestamp_ms * 1_000_000));
        }
    }

    #[test]
    fn measurement_escapes_comma_and_space_only() {
        let labels: Labels = [("__name__", "a=b")].into_iter().collect();
        let s = Sample::new(labels, -1.0, 0);
        let mut out = Vec::new();
        assert!(encode_sample(&s, "m,x y=z", "f=1", &mut out));
        assert_eq!(String::from_utf8(out).unwrap(), "m\\,x\\ y=z f\\=1=-1.0 0\n");
    }

    #[test]
    fn refuses_non_finite() {
        let labels: Labels = [("__name__", "x")].into_iter().collect();
        let mut out = Vec::new();
        assert!(!encode_sample(&Sample::new(labels, f64::NAN, 0), "x", "value", &mut out));
        assert!(out.is_empty());
    }
}
