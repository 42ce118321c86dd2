//! Parser tests and properties over whole bodies.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn parse_all(body: &[u8]) -> Vec<(usize, Result<Point<'_>, LineError>)> {
    LineParser::new(body, Precision::Nanosecond).collect()
}

fn one(line: &str) -> Point<'_> {
    match parse_line(line.as_bytes(), Precision::Nanosecond) {
        Ok(Some(point)) => point,
        other => panic!("expected one point from {line:?}, got {other:?}"),
    }
}

fn problem(line: &str) -> Problem {
    match parse_line(line.as_bytes(), Precision::Nanosecond) {
        Err(error) => error.problem,
        other => panic!("expected {line:?} to be rejected, got {other:?}"),
    }
}

#[test]
fn a_plain_line_borrows_every_token() {
    let p = one("cpu,host=a,region=eu usage=1.5,count=3i,big=7u,ok=true,s=\"x y\" 1700000000000000000");
    assert!(matches!(p.measurement, Cow::Borrowed("cpu")));
    let tags: Vec<_> = p.tags.iter().map(|t| (t.key.as_ref(), t.value.as_ref())).collect();
    assert_eq!(tags, [("host", "a"), ("region", "eu")]);
    assert!(p.tags.iter().all(|t| matches!((&t.key, &t.value), (Cow::Borrowed(_), Cow::Borrowed(_)))));
    let fields: Vec<_> = p.fields.iter().map(|f| (f.key.as_ref(), f.value.clone())).collect();
    assert_eq!(
        fields,
        [
            ("usage", FieldValue::Float(1.5)),
            ("count", FieldValue::Int(3)),
            ("big", FieldValue::UInt(7)),
            ("ok", FieldValue::Bool(true)),
            ("s", FieldValue::String(Cow::Borrowed("x y"))),
        ]
    );
    assert_eq!(p.timestamp_ns, Some(1_700_000_000_000_000_000));
}

#[test]
fn escapes_are_undone_per_part() {
    let p = one(r#"my\ cpu\,x,ta\=g\ k=v\,a\=l\ ue f\ i\,e\=ld="q\"b\\s\n\t\r" 1"#);
    assert_eq!(p.measurement, "my cpu,x");
    assert_eq!((p.tags[0].key.as_ref(), p.tags[0].value.as_ref()), ("ta=g k", "v,a=l ue"));
    assert_eq!(p.fields[0].key, "f i,e=ld");
    assert_eq!(p.fields[0].value, FieldValue::String(Cow::Owned("q\"b\\s\n\t\r".into())));
    assert!(matches!(p.measurement, Cow::Owned(_)));
}

#[test]
fn a_backslash_before_an_ordinary_byte_stands_for_itself() {
    let p = one(r#"c\pu,t=a\b f="a\b" 1"#);
    assert_eq!(p.measurement, r"c\pu");
    assert_eq!(p.tags[0].value, r"a\b");
    assert_eq!(p.fields[0].value, FieldValue::String(r"a\b".into()));
    // '=' is not escapable in a measurement name, so the backslash stays.
    assert_eq!(one(r"a\=b f=1").measurement, r"a\=b");
}

#[test]
fn comments_blank_lines_and_crlf_are_skipped_with_correct_line_numbers() {
    let body = b"# header\r\n\r\n   \ncpu f=1 1\r\n  # indented comment\n\nmem f=2\r\n";
    let points = parse_all(body);
    let lines: Vec<usize> = points.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [4, 7]);
    assert!(points.iter().all(|(_, r)| r.is_ok()));
}

#[test]
fn a_comment_with_a_control_character_is_an_error_but_invalid_utf8_in_it_is_not() {
    assert!(matches!(problem("# tab\there"), Problem::CommentCharacter(Found(Some(b'\t')))));
    let body = b"# \xff\xfe not utf-8\ncpu f=1\n";
    let points = parse_all(body);
    assert_eq!(points.len(), 1);
    assert!(points[0].1.is_ok());
}

#[test]
fn invalid_utf8_in_a_token_rejects_the_line() {
    let body = b"cpu,host=\xff f=1\ncpu f=2\n";
    let points = parse_all(body);
    assert!(matches!(points[0].1, Err(LineError { problem: Problem::InvalidUtf8(Part::TagValue), .. })));
    assert!(points[1].1.is_ok());
}

#[test]
fn every_boolean_spelling() {
    for (text, value) in [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        assert_eq!(one(&format!("m b={text}")).fields[0].value, FieldValue::Bool(value), "{text}");
    }
    for bad in ["tru", "tRUE", "fals", "yes"] {
        assert!(parse_line(format!("m b={bad}").as_bytes(), Precision::Nanosecond).is_err(), "{bad}");
    }
}

#[test]
fn integer_and_unsigned_ranges() {
    assert_eq!(one("m v=9223372036854775807i").fields[0].value, FieldValue::Int(i64::MAX));
    assert_eq!(one("m v=-9223372036854775808i").fields[0].value, FieldValue::Int(i64::MIN));
    assert_eq!(one("m v=18446744073709551615u").fields[0].value, FieldValue::UInt(u64::MAX));
    assert_eq!(one("m v=007i").fields[0].value, FieldValue::Int(7));
    assert!(matches!(problem("m v=9223372036854775808i"), Problem::FieldValueOutOfRange { .. }));
    assert!(matches!(problem("m v=18446744073709551616u"), Problem::FieldValueOutOfRange { .. }));
    for bad in ["-1u", "1.5i", "-i", "--1i", "1e3i", "+1i"] {
        assert!(parse_line(format!("m v={bad}").as_bytes(), Precision::Nanosecond).is_err(), "{bad}");
    }
}

#[test]
fn float_forms() {
    for (text, value) in [
        ("1", 1.0),
        ("-1.5", -1.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("1.e2", 100.0),
        ("2.5e+2", 250.0),
        ("1.7976931348623157e308", f64::MAX),
        ("1e-400", 0.0),
        ("123456789012345678901234567890", 1.2345678901234568e29),
    ] {
        assert_eq!(one(&format!("m v={text}")).fields[0].value, FieldValue::Float(value), "{text}");
    }
    for bad in [".", "-", "1e", "1e+", "1.2.3", "1_000", "0x1p3", "-inf", "1e400", "1,", "1\t"] {
        assert!(parse_line(format!("m v={bad}").as_bytes(), Precision::Nanosecond).is_err(), "{bad}");
    }
    assert!(matches!(problem("m v=inf"), Problem::UnknownFieldType { .. }));
    assert!(matches!(problem("m v=1e400"), Problem::FieldValueOutOfRange { .. }));
}

#[test]
fn timestamps_and_trailing_text() {
    assert_eq!(one("m f=1").timestamp_ns, None);
    assert_eq!(one("m f=1   ").timestamp_ns, None);
    assert_eq!(one("m f=1 -5  ").timestamp_ns, Some(-5));
    assert_eq!(one("m f=1  12\r\n").timestamp_ns, Some(12));
    assert!(matches!(problem("m f=1 12x"), Problem::InvalidTimestamp(_)));
    assert!(matches!(problem("m f=1 1-2"), Problem::InvalidTimestamp(_)));
    assert!(matches!(problem("m f=1 -"), Problem::InvalidTimestamp(_)));
    assert!(matches!(problem("m f=1 12 13"), Problem::AfterTimestamp(_)));
    assert!(matches!(problem("m f=1 9223372036854775808"), Problem::TimestampOutOfRange { .. }));
}

#[test]
fn structural_errors() {
    assert!(matches!(problem("cpu"), Problem::ExpectedTagsOrFields { found: Found(None), .. }));
    assert!(matches!(problem(",t=1 f=1"), Problem::MeasurementStart(Found(Some(b',')))));
    assert!(matches!(problem("cpu, f=1"), Problem::ExpectedTagKey(Found(Some(b' ')))));
    assert!(matches!(problem("cpu,t f=1"), Problem::ExpectedTagEquals { .. }));
    assert!(matches!(problem("cpu,t= f=1"), Problem::EmptyTagValue { .. }));
    assert!(matches!(problem("cpu,t=1"), Problem::ExpectedTagsOrFields { found: Found(None), .. }));
    assert!(matches!(problem("cpu,t=1,t=2 f=1"), Problem::DuplicateTag(key) if key == "t"));
    assert!(matches!(problem("cpu "), Problem::ExpectedFieldKey(Found(None))));
    assert!(matches!(problem("cpu f"), Problem::ExpectedFieldEquals { .. }));
    assert!(matches!(problem("cpu f="), Problem::MissingFieldValue { .. }));
    assert!(matches!(problem("cpu f=1,"), Problem::ExpectedFieldKey(Found(None))));
    assert!(matches!(problem("cpu f=abc"), Problem::UnknownFieldType { .. }));
    assert!(matches!(problem("cpu f=\"abc"), Problem::UnterminatedString { .. }));
    assert!(matches!(problem("cpu f=\"a\"b"), Problem::AfterField { .. }));
    assert!(matches!(problem("cpu f=1\rx"), Problem::LoneCarriageReturn));
    assert!(matches!(problem("cpu f=1 12\rx"), Problem::LoneCarriageReturn));
    assert!(matches!(problem("cpu f= 1"), Problem::MissingFieldValue { found: Found(Some(b' ')), .. }));
    assert!(matches!(problem("\rcpu f=1"), Problem::LoneCarriageReturn));
    // Duplicate field keys are allowed, as in the reference decoder.
    assert_eq!(one("cpu f=1,f=2").fields.len(), 2);
}

#[test]
fn messages_name_line_column_and_input() {
    let body = "cpu f=1\n# comment\ncpu,az=eu,host value=1\n";
    let points = parse_all(body.as_bytes());
    let Err(error) = &points[1].1 else { panic!("line 3 should fail: {points:?}") };
    assert_eq!(error.to_string(), "line 3, column 15: expected '=' after tag key \"host\", found a space");
    let error = parse_line(b"m v=12.5.1", Precision::Nanosecond).unwrap_err();
    assert_eq!(error.to_string(), "line 1, column 5: invalid float value \"12.5.1\" for field \"v\"");
}

#[test]
fn parse_line_takes_exactly_one_entry() {
    assert_eq!(parse_line(b"", Precision::Nanosecond), Ok(None));
    assert_eq!(parse_line(b"  # just a comment\n", Precision::Nanosecond), Ok(None));
    assert!(parse_line(b"m f=1\n", Precision::Nanosecond).is_ok_and(|p| p.is_some()));
    assert!(matches!(
        parse_line(b"m f=1\nm f=2", Precision::Nanosecond),
        Err(LineError { problem: Problem::TrailingData, .. })
    ));
}

#[test]
fn strings_spanning_lines_keep_later_line_numbers_right() {
    let body = "m s=\"one\ntwo\nthree\" 1\nm f=1\nm f=x\n";
    let points = parse_all(body.as_bytes());
    assert_eq!(points.len(), 3);
    assert_eq!(
        points[0].1.as_ref().map(|p| p.fields[0].value.clone()),
        Ok(FieldValue::String("one\ntwo\nthree".into()))
    );
    assert_eq!(points[1].0, 4);
    let Err(error) = &points[2].1 else { panic!("line 5 should fail") };
    assert_eq!(error.position, Position { line: 5, column: Some(5) });
}

// ---- properties ----

/// Characters for names: the separators that need escapes, non-ASCII, no backslash
/// (a trailing backslash before a separator cannot be written unambiguously) and no
/// control characters (line protocol cannot carry them in names).
fn name_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'z', 'Q', '0', '9', '_', '-', '.', ' ', ',', '=', '"', '#', 'é', '✓', '𝄞']),
        1..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn string_value_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', ' ', ',', '=', '"', '\\', '\n', '\r', '\t', 'é', '#', '}']),
        0..10,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

#[derive(Debug, Clone)]
enum OwnedValue {
    Float(f64, bool),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String, bool),
}

fn value_strategy() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        (any::<f64>().prop_filter("finite", |v| v.is_finite()), any::<bool>())
            .prop_map(|(v, exp)| OwnedValue::Float(v, exp)),
        any::<i64>().prop_map(OwnedValue::Int),
        any::<u64>().prop_map(OwnedValue::UInt),
        any::<bool>().prop_map(OwnedValue::Bool),
        (string_value_strategy(), any::<bool>()).prop_map(|(s, raw)| OwnedValue::Str(s, raw)),
    ]
}

#[derive(Debug, Clone)]
struct OwnedPoint {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, OwnedValue)>,
    timestamp: Option<i64>,
}

fn point_strategy() -> impl Strategy<Value = OwnedPoint> {
    (
        name_strategy().prop_filter("a leading '#' makes a comment", |m| !m.starts_with('#')),
        prop::collection::btree_map(name_strategy(), name_strategy(), 0..4),
        prop::collection::vec((name_strategy(), value_strategy()), 1..4),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| OwnedPoint {
            measurement,
            tags: tags.into_iter().collect(),
            fields,
            timestamp,
        })
}

fn escape(text: &str, escaped: &[char], out: &mut String) {
    for c in text.chars() {
        if escaped.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn encode(point: &OwnedPoint, out: &mut String) {
    escape(&point.measurement, &[' ', ','], out);
    for (key, value) in &point.tags {
        out.push(',');
        escape(key, &[' ', ',', '='], out);
        out.push('=');
        escape(value, &[' ', ',', '='], out);
    }
    for (i, (key, value)) in point.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape(key, &[' ', ',', '='], out);
        out.push('=');
        match value {
            OwnedValue::Float(v, true) => out.push_str(&format!("{v:e}")),
            OwnedValue::Float(v, false) => out.push_str(&format!("{v}")),
            OwnedValue::Int(v) => out.push_str(&format!("{v}i")),
            OwnedValue::UInt(v) => out.push_str(&format!("{v}u")),
            OwnedValue::Bool(v) => out.push_str(if *v { "true" } else { "F" }),
            OwnedValue::Str(s, raw_newlines) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' if !raw_newlines => out.push_str("\\n"),
                        '\t' if !raw_newlines => out.push_str("\\t"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
        }
    }
    if let Some(ts) = point.timestamp {
        out.push_str(&format!(" {ts}"));
    }
}

fn same(parsed: &Point<'_>, expected: &OwnedPoint) -> bool {
    parsed.measurement == expected.measurement
        && parsed.tags.len() == expected.tags.len()
        && parsed.tags.iter().zip(&expected.tags).all(|(t, (k, v))| t.key == *k && t.value == *v)
        && parsed.fields.len() == expected.fields.len()
        && parsed.fields.iter().zip(&expected.fields).all(|(f, (k, v))| {
            f.key == *k
                && match (&f.value, v) {
                    (FieldValue::Float(a), OwnedValue::Float(b, _)) => a == b,
                    (FieldValue::Int(a), OwnedValue::Int(b)) => a == b,
                    (FieldValue::UInt(a), OwnedValue::UInt(b)) => a == b,
                    (FieldValue::Bool(a), OwnedValue::Bool(b)) => a == b,
                    (FieldValue::String(a), OwnedValue::Str(b, _)) => a == b,
                    _ => false,
                }
        })
        && parsed.timestamp_ns == expected.timestamp
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..600)) {
        for _ in LineParser::new(&body, Precision::Second) {}
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        let summary = decode_body(&body, Precision::Nanosecond, 0, &mut out, &mut errors);
        prop_assert_eq!(summary.rejected_lines, errors.rejected());
        prop_assert_eq!(summary.accepted_samples as usize, out.len());
    }

    #[test]
    fn line_protocol_shaped_bytes_never_panic(
        body in prop::collection::vec(
            prop::sample::select(b"ab,= \"\\\n\r#tTfFiu0123456789.-eE\t\xff\xc3\xa9".to_vec()),
            0..400,
        )
    ) {
        let mut lines = 0usize;
        for (line, result) in LineParser::new(&body, Precision::Hour) {
            prop_assert!(line >= 1);
            if let Err(error) = result {
                prop_assert!(error.line() >= line);
                prop_assert!(!error.to_string().is_empty());
            }
            lines += 1;
            prop_assert!(lines <= body.len() + 1);
        }
    }

    #[test]
    fn encoded_points_parse_back_to_themselves(
        points in prop::collection::vec(point_strategy(), 1..5),
        crlf in any::<bool>(),
    ) {
        let mut body = String::new();
        for point in &points {
            encode(point, &mut body);
            body.push_str(if crlf { "\r\n" } else { "\n" });
        }
        let parsed = parse_all(body.as_bytes());
        prop_assert_eq!(parsed.len(), points.len(), "body: {:?}", body);
        for ((_, result), expected) in parsed.iter().zip(&points) {
            match result {
                Ok(point) => prop_assert!(same(point, expected), "parsed {:?}\nexpected {:?}\nbody {:?}", point, expected, body),
                Err(error) => prop_assert!(false, "{} in {:?}", error, body),
            }
        }
    }
}
