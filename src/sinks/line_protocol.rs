//! Line-protocol encoding shared by the sinks that write it (file, InfluxDB).

use std::io::Write;

use crate::model::{METRIC_NAME_LABEL, Sample};

/// Appends `sample` as one line: measurement = metric name, tags = the other
/// labels (already sorted by the pipeline), field `field` = value, time in ns.
/// Returns `false` (writing nothing) for a value line protocol cannot carry
/// (NaN, ±Inf) or a timestamp outside the ns range.
pub fn encode_sample(sample: &Sample, measurement: &str, field: &str, out: &mut Vec<u8>) -> bool {
    if !sample.value.is_finite() || measurement.is_empty() {
        return false;
    }
    let Some(ts_ns) = sample.timestamp_ms.checked_mul(1_000_000) else {
        return false;
    };
    let start = out.len();
    escape_into(measurement.as_bytes(), b", ", out);
    for l in sample.labels.iter() {
        if l.name == METRIC_NAME_LABEL || l.value.is_empty() || l.name.is_empty() {
            continue;
        }
        out.push(b',');
        escape_into(l.name.as_bytes(), b",= ", out);
        out.push(b'=');
        escape_into(l.value.as_bytes(), b",= ", out);
    }
    out.push(b' ');
    escape_into(field.as_bytes(), b",= ", out);
    out.push(b'=');
    if write!(out, "{:?} {}", sample.value, ts_ns).is_err() {
        out.truncate(start);
        return false;
    }
    out.push(b'\n');
    true
}

/// Backslash-escapes `special` bytes; newlines, which line protocol cannot
/// carry inside a key or tag, become the two characters `\n`. A backslash is
/// doubled only where it would otherwise escape what follows it (a special
/// byte or the separator after the token): InfluxDB 1.x keeps other
/// backslashes literally, so `C:\temp` stays as it is.
fn escape_into(s: &[u8], special: &[u8], out: &mut Vec<u8>) {
    if !s.iter().any(|b| special.contains(b) || *b == b'\n' || *b == b'\\') {
        out.extend_from_slice(s);
        return;
    }
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\\' => {
                out.push(b'\\');
                let next = s.get(i + 1);
                if next.is_none_or(|n| special.contains(n) || *n == b'\n' || *n == b'\\') {
                    out.push(b'\\');
                }
            }
            b if special.contains(&b) => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

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
    fn backslashes_never_swallow_a_separator() {
        let labels: Labels =
            [("__name__", "m"), ("path", "C:\\temp"), ("q", "a\\,b"), ("t", "end\\")].into_iter().collect();
        let s = Sample::new(labels, 2.5, 1);
        let mut out = Vec::new();
        assert!(encode_sample(&s, "m", "value", &mut out));
        assert_eq!(String::from_utf8(out).unwrap(), "m,path=C:\\temp,q=a\\\\\\,b,t=end\\\\ value=2.5 1000000\n");
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
