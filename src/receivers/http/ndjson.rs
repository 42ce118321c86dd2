//! NDJSON decoder (placeholder while line protocol is built).
