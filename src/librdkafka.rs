//! `librdkafka_options`: properties the Kafka receiver and sink pass to
//! librdkafka as they are (SASL, TLS, timeouts, buffer sizes...).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The table as written in the config file.
pub type LibrdkafkaOptions = BTreeMap<String, OptionValue>;

/// A property value; TOML numbers and booleans are accepted as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Refuses properties the component sets itself; `why` says what to use instead.
pub fn refuse_reserved(options: &LibrdkafkaOptions, reserved: &[&str], why: &str) -> Result<(), String> {
    match options.keys().find(|k| reserved.contains(&k.as_str())) {
        Some(key) => Err(format!("librdkafka_options.\"{key}\" is managed by tsrelay ({why})")),
        None => Ok(()),
    }
}
