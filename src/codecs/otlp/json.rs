//! Field helpers for OTLP/JSON (build.rs attaches them to the generated types).
//!
//! OTLP/JSON is the protobuf JSON mapping with OTLP's own rules: 64-bit
//! integers arrive as strings or numbers, doubles may be `"NaN"`,
//! `"Infinity"` or `"-Infinity"`, trace and span ids are hex (not base64),
//! other bytes are base64, and `null` means "not set".

use base64::Engine;
use serde::Deserialize;
use serde::de::{Deserializer, Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Num<'a> {
    U(u64),
    I(i64),
    F(f64),
    #[serde(borrow)]
    S(std::borrow::Cow<'a, str>),
}

fn int<E: Error, T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr>(n: Num<'_>) -> Result<T, E> {
    let out = match n {
        Num::U(u) => T::try_from(u).ok(),
        Num::I(i) => T::try_from(i).ok(),
        Num::F(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => T::try_from(f as i64).ok(),
        Num::F(_) => None,
        Num::S(s) => s.trim().parse().ok(),
    };
    out.ok_or_else(|| E::custom("expected an integer (a JSON number or a decimal string) in range"))
}

fn float<E: Error>(n: Num<'_>) -> Result<f64, E> {
    match n {
        Num::U(u) => Ok(u as f64),
        Num::I(i) => Ok(i as f64),
        Num::F(f) => Ok(f),
        Num::S(s) => match &*s {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.trim().parse().map_err(|_| E::custom(format!("expected a number, got {other:?}"))),
        },
    }
}

pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Option::<Num<'de>>::deserialize(d)? {
        Some(n) => int(n),
        None => Ok(0),
    }
}

pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Option::<Num<'de>>::deserialize(d)? {
        Some(n) => int(n),
        None => Ok(0),
    }
}

pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Option::<Num<'de>>::deserialize(d)? {
        Some(n) => float(n),
        None => Ok(0.0),
    }
}

pub fn f64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<Num<'de>>::deserialize(d)?.map(float).transpose()
}

pub fn u64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Option::<Vec<Num<'de>>>::deserialize(d)?.unwrap_or_default().into_iter().map(int).collect()
}

pub fn f64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Option::<Vec<Num<'de>>>::deserialize(d)?.unwrap_or_default().into_iter().map(float).collect()
}

pub fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?.unwrap_or_default();
    if s.len() % 2 != 0 {
        return Err(D::Error::custom("expected an even number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("x"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| D::Error::custom(format!("expected hex digits, got {s:?}")))
}

pub fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?.unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s.as_bytes()))
        .map_err(|e| D::Error::custom(format!("expected base64: {e}")))
}
