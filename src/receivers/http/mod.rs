pub mod line_protocol;
pub mod ndjson;
