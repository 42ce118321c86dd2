//! `type = "influxdb"`: line protocol to InfluxDB 1.x (`/write`) or the 2.x
//! write API (`/api/v2/write`).
//!
//! [`encode`] turns a batch into lines once; [`service`] sends one request and
//! classifies the answer; this file decides what each answer means for the
//! batch: 413 splits it in halves, a missing v1 database is created when
//! allowed, refusals are dropped as `rejected` and never retried, transient
//! failures are retried (shared retry policy) until `max_retry_duration`.

pub mod config;
pub mod encode;
pub mod service;

use std::ops::Range;

use bytes::Bytes;

pub use config::InfluxdbSinkConfig;
pub use encode::{InfluxdbOverride, OverrideLookup};

use self::encode::{EncodedLines, encode_batch, gzip_into};
use self::service::{Answer, InfluxdbService};
use super::retry::with_retries;
use super::{Delivery, Sink, SinkBatch, SinkError};
use crate::telemetry::{SinkHealth, SinkMetrics};

pub struct InfluxdbSink {
    name: String,
    config: InfluxdbSinkConfig,
    service: InfluxdbService,
    overrides: Option<OverrideLookup>,
    metrics: SinkMetrics,
    health: SinkHealth,
    lines: EncodedLines,
    gz: Vec<u8>,
}

/// How the lines of one batch ended.
#[derive(Debug, Default)]
struct Tally {
    written: usize,
    rejected: usize,
    exhausted: usize,
    last_rejection: Option<String>,
    last_failure: Option<String>,
}

impl InfluxdbSink {
    pub fn new(
        name: &str,
        config: InfluxdbSinkConfig,
        service: InfluxdbService,
        overrides: Option<OverrideLookup>,
        metrics: SinkMetrics,
        health: SinkHealth,
    ) -> Self {
        InfluxdbSink {
            name: name.to_string(),
            config,
            service,
            overrides,
            metrics,
            health,
            lines: EncodedLines::default(),
            gz: Vec::new(),
        }
    }

    fn body(&mut self, range: Range<usize>) -> Bytes {
        let raw = self.lines.slice(range);
        if self.config.gzip && gzip_into(raw, &mut self.gz).is_ok() {
            return Bytes::copy_from_slice(&self.gz);
        }
        Bytes::copy_from_slice(raw)
    }

    /// Sends lines `range`, retrying transient failures; final answer or `Err` when retrying ran out.
    async fn send(&mut self, range: Range<usize>) -> Result<Answer, String> {
        let body = self.body(range);
        let service = &self.service;
        let metrics = &self.metrics;
        with_retries(&self.config.retry, metrics, &self.health, || service.write(body.clone(), metrics)).await
    }

    async fn create_database(&self) -> Result<(), String> {
        let service = &self.service;
        with_retries(&self.config.retry, &self.metrics, &self.health, || service.create_database()).await?
    }

    async fn send_all(&mut self) -> Tally {
        let mut tally = Tally::default();
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..self.lines.lines());
        let mut tried_create = false;
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            let n = range.len();
            match self.send(range.clone()).await {
                Ok(Answer::Written) => tally.written += n,
                Ok(Answer::PartlyWritten { dropped, message }) => {
                    let dropped = dropped.min(n);
                    tally.written += n - dropped;
                    tally.rejected += dropped;
                    tally.last_rejection = Some(message);
                }
                Ok(Answer::Rejected(message)) => {
                    tally.rejected += n;
                    tally.last_rejection = Some(message);
                }
                Ok(Answer::TooLarge) if n > 1 => {
                    let mid = range.start + n / 2;
                    tracing::debug!(sink = %self.name, lines = n, "413 from the server: sending the batch in halves");
                    // Popped from the end: the first half goes first.
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Ok(Answer::TooLarge) => {
                    tally.rejected += n;
                    tally.last_rejection = Some("413: a single line is over the server's request size limit".into());
                }
                Ok(Answer::DatabaseNotFound(message)) if self.config.create_database && !tried_create => {
                    tried_create = true;
                    match self.create_database().await {
                        Ok(()) => {
                            tracing::info!(sink = %self.name, database = ?self.config.database, "created the missing database");
                            pending.push(range);
                        }
                        Err(e) => {
                            tally.rejected += n;
                            tally.last_rejection = Some(format!("{message}; creating it failed: {e}"));
                        }
                    }
                }
                Ok(Answer::DatabaseNotFound(message)) => {
                    tally.rejected += n;
                    tally.last_rejection = Some(message);
                }
                Err(message) => {
                    tally.exhausted += n;
                    tally.last_failure = Some(message);
                }
            }
        }
        tally
    }
}

impl Sink for InfluxdbSink {
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        self.lines.clear();
        encode_batch(batch.samples(), &self.config.field, self.overrides.as_ref(), &mut self.lines);
        let unrepresentable = self.lines.unrepresentable;
        let tally = self.send_all().await;
        let mut delivery = Delivery::all(tally.written);
        if let Some(message) = &tally.last_rejection {
            // The server's own words, once per batch: it says which line and why.
            tracing::warn!(sink = %self.name, samples = tally.rejected, error = %message, "InfluxDB refused samples");
        }
        let mut failures = Vec::new();
        if tally.exhausted > 0 {
            let message = tally.last_failure.unwrap_or_default();
            failures.push((tally.exhausted, SinkError::RetryExhausted { sink: self.name.clone(), message }));
        }
        if tally.rejected > 0 {
            let message = tally.last_rejection.unwrap_or_default();
            failures.push((tally.rejected, SinkError::Rejected { sink: self.name.clone(), message }));
        }
        if unrepresentable > 0 {
            failures.push((
                unrepresentable,
                SinkError::Unrepresentable {
                    sink: self.name.clone(),
                    count: unrepresentable,
                    message: "NaN/Inf value, empty name or timestamp out of range".into(),
                },
            ));
        }
        let mut failures = failures.into_iter();
        delivery.failed = failures.next();
        delivery.dropped = failures.map(|(n, e)| (n, e.reason())).collect();
        delivery
    }
}
