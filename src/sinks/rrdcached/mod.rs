//! `type = "rrdcached"`: one RRD file per series, written through rrdcached.
//!
//! [`encode`] routes samples to files (path template, registry overrides,
//! sanitizing), coalesces each file's samples to one per second and writes the
//! commands; [`client`] holds the persistent connection. This file runs the
//! exchange: updates go in one `BATCH`; each failed command is mapped back to
//! its samples: a missing file is created (`CREATE`) and the samples resent,
//! samples not newer than the file's last update are dropped as
//! `out_of_order`, anything else is `rejected`. Connection failures reconnect
//! and retry under the shared retry policy ([`crate::sinks::common::retry`]:
//! backoff with full jitter, `max_retry_duration`, no limit with a disk queue).

pub mod client;
pub mod config;
pub mod encode;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use config::RrdcachedSinkConfig;
pub use encode::{DsType, OverrideLookup, RrdcachedOverride};

use self::client::{Address, Connection};
use self::encode::{ErrorKind, FilePoints, PathTemplate, Router, classify_error, create_command, write_updates};
use super::common::log_throttle::LogThrottle;
use super::common::{RetryPolicy, SendError, SinkContext, run_with_retries};
use super::{Delivery, Sink, SinkBatch, SinkBuildError};
use crate::telemetry::DropReason;

/// Rounds of create-and-resend per batch; more would mean the server keeps
/// contradicting itself (e.g. a file deleted again right after its creation).
const MAX_ROUNDS: usize = 4;

pub struct RrdcachedSink {
    name: String,
    config: RrdcachedSinkConfig,
    address: Address,
    router: Router,
    rras: Vec<String>,
    conn: tokio::sync::Mutex<Option<Connection>>,
    /// The last second written per file: older samples are dropped before sending.
    last_written: HashMap<Box<str>, i64>,
    context: SinkContext,
    /// The shared retry policy (backoff with full jitter, time budget).
    retry: RetryPolicy,
    retry_log: LogThrottle,
}

/// The points of one file still to be written in this batch.
struct Work {
    file: FilePoints,
    create: bool,
}

/// How a batch's samples ended.
#[derive(Debug, Default)]
struct Tally {
    delivered: usize,
    duplicate: usize,
    out_of_order: usize,
    rejected: usize,
    exhausted: usize,
    rejection: Option<String>,
    failure: Option<String>,
}

impl Tally {
    fn reject(&mut self, n: usize, why: impl FnOnce() -> String) {
        if n > 0 {
            self.rejected += n;
            if self.rejection.is_none() {
                self.rejection = Some(why());
            }
        }
    }
}

impl RrdcachedSink {
    pub fn new(
        name: &str,
        config: RrdcachedSinkConfig,
        overrides: Option<OverrideLookup>,
        context: SinkContext,
        retry_forever: bool,
    ) -> Result<Self, SinkBuildError> {
        let build = |message: String| SinkBuildError { sink: name.to_string(), message };
        let address = Address::parse(&config.address).map_err(build)?;
        let template = PathTemplate::parse(&config.path_template).map_err(|e| build(format!("path_template: {e}")))?;
        let router =
            Router::new(template, config.missing_label, config.placeholder.clone(), config.ds.clone(), overrides);
        Ok(RrdcachedSink {
            name: name.to_string(),
            rras: config.rras(),
            address,
            router,
            conn: tokio::sync::Mutex::new(None),
            last_written: HashMap::new(),
            retry: RetryPolicy::new(&config.retry, retry_forever),
            config,
            context,
            retry_log: LogThrottle::default(),
        })
    }

    /// Sends `commands` as one `BATCH`, reconnecting and retrying on failure.
    /// `maybe_applied` is set when a failed attempt got as far as sending the
    /// commands, so some may have been applied before the connection broke.
    async fn exchange(&self, commands: &[u8], maybe_applied: &AtomicBool) -> Result<Vec<(usize, String)>, String> {
        let (conn, address, timeout, metrics) = (&self.conn, &self.address, self.config.timeout, &self.context.metrics);
        // The connection keeps its own timeouts: cutting an exchange short from
        // outside would leave half an answer on a connection that is reused.
        let result = run_with_retries(&self.retry, &self.context, &self.retry_log, || async move {
            let mut guard = conn.lock().await;
            let c = match guard.as_mut() {
                Some(c) => c,
                None => match Connection::connect(address, timeout).await {
                    Ok(c) => guard.insert(c),
                    Err(e) => return Err(SendError::retryable(e.to_string())),
                },
            };
            let started = Instant::now();
            metrics.in_flight_requests.increment(1.0);
            let result = c.batch(commands, timeout).await;
            metrics.in_flight_requests.decrement(1.0);
            metrics.request_duration.record(started.elapsed().as_secs_f64());
            match result {
                Ok(errors) => Ok(errors),
                Err(e) => {
                    if c.commands_sent() {
                        maybe_applied.store(true, Ordering::Relaxed);
                    }
                    *guard = None;
                    Err(SendError::retryable(e.to_string()))
                }
            }
        })
        .await;
        result.map_err(|e| e.to_string())
    }

    fn remember(&mut self, path: &str, second: i64) {
        if let Some(last) = self.last_written.get_mut(path) {
            *last = (*last).max(second);
            return;
        }
        if self.last_written.len() >= self.config.max_tracked_files {
            // Over the memory bound: forget everything; rrdcached's own
            // "not newer" answers cover the files forgotten.
            tracing::debug!(sink = %self.name, files = self.last_written.len(), "forgetting last-written times");
            self.last_written.clear();
        }
        self.last_written.insert(path.into(), second);
    }

    /// Creates the files of `work` marked `create`; drops (as rejected) those that cannot be.
    async fn create_files(&mut self, work: &mut Vec<Work>, tally: &mut Tally) -> Result<(), String> {
        let idx: Vec<usize> = (0..work.len()).filter(|&i| work[i].create).collect();
        if idx.is_empty() {
            return Ok(());
        }
        let (step, heartbeat) = (self.config.step_secs(), self.config.heartbeat_secs());
        let mut commands = Vec::new();
        for &i in &idx {
            let f = &work[i].file;
            let first = f.points.first().map_or(0, |p| p.0);
            commands
                .extend_from_slice(create_command(&f.path, first, step, heartbeat, &f.target, &self.rras).as_bytes());
        }
        let errors = self.exchange(&commands, &AtomicBool::new(false)).await?;
        let mut failed = vec![false; work.len()];
        for (n, message) in errors {
            let Some(&i) = n.checked_sub(1).and_then(|k| idx.get(k)) else { continue };
            if classify_error(&message) != ErrorKind::FileExists {
                let path = &work[i].file.path;
                tally.reject(work[i].file.points.len(), || format!("CREATE {path}: {message}"));
                failed[i] = true;
            }
        }
        for (i, w) in work.iter_mut().enumerate() {
            if w.create && !failed[i] {
                tracing::debug!(sink = %self.name, path = %w.file.path, "created RRD file");
            }
            w.create = false;
        }
        let mut i = 0;
        work.retain(|_| {
            i += 1;
            !failed[i - 1]
        });
        Ok(())
    }

    /// One round: every file's points in one `BATCH`; returns what must be resent.
    async fn update_round(&mut self, work: Vec<Work>, tally: &mut Tally) -> Result<Vec<Work>, (Vec<Work>, String)> {
        let mut commands = Vec::new();
        // Per command line: (work index, first point, point count).
        let mut lines: Vec<(usize, usize, usize)> = Vec::new();
        let mut per_line = Vec::new();
        for (w, item) in work.iter().enumerate() {
            per_line.clear();
            write_updates(&item.file.path, &item.file.points, &mut commands, &mut per_line);
            let mut start = 0;
            for &n in &per_line {
                lines.push((w, start, n));
                start += n;
            }
        }
        let maybe_applied = AtomicBool::new(false);
        let errors = match self.exchange(&commands, &maybe_applied).await {
            Ok(e) => e,
            Err(message) => return Err((work, message)),
        };
        let uncertain = maybe_applied.load(Ordering::Relaxed);
        let mut line_error: Vec<Option<String>> = vec![None; lines.len()];
        for (n, message) in errors {
            if let Some(slot) = n.checked_sub(1).and_then(|k| line_error.get_mut(k)) {
                *slot = Some(message);
            }
        }
        let mut again: Vec<Option<Work>> = work.iter().map(|_| None).collect();
        for ((w, start, n), error) in lines.into_iter().zip(line_error) {
            let item = &work[w];
            let points = &item.file.points[start..start + n];
            let mut resend = |pts: &[(i64, f64)], create: bool| {
                let entry = again[w].get_or_insert_with(|| Work {
                    file: FilePoints {
                        path: item.file.path.clone(),
                        target: item.file.target.clone(),
                        points: Vec::new(),
                    },
                    create: false,
                });
                entry.file.points.extend_from_slice(pts);
                entry.create |= create;
            };
            match error {
                None => {
                    tally.delivered += n;
                    if let Some(&(last, _)) = points.last() {
                        let path = item.file.path.clone();
                        self.remember(&path, last);
                    }
                }
                Some(message) => match classify_error(&message) {
                    ErrorKind::NoSuchFile => resend(points, true),
                    ErrorKind::NotNewer { last } => {
                        let last = last.unwrap_or(i64::MAX);
                        let old = points.partition_point(|p| p.0 <= last);
                        // After a broken attempt, "not newer" may mean "already written by us".
                        if uncertain {
                            tally.delivered += old;
                        } else {
                            tally.out_of_order += old;
                        }
                        resend(&points[old..], false);
                    }
                    ErrorKind::FileExists | ErrorKind::Other => {
                        let path = &item.file.path;
                        tally.reject(n, || format!("UPDATE {path}: {message}"));
                    }
                },
            }
        }
        Ok(again.into_iter().flatten().filter(|w| !w.file.points.is_empty()).collect())
    }

    async fn write(&mut self, files: Vec<FilePoints>, tally: &mut Tally) {
        let mut work: Vec<Work> = Vec::with_capacity(files.len());
        for mut file in files {
            if let Some(&last) = self.last_written.get(file.path.as_str()) {
                // Points are coalesced per second: at most one equals `last`.
                let older = file.points.partition_point(|p| p.0 < last);
                let old = file.points.partition_point(|p| p.0 <= last);
                tally.out_of_order += older;
                tally.duplicate += old - older;
                file.points.drain(..old);
            }
            if !file.points.is_empty() {
                work.push(Work { file, create: false });
            }
        }
        for _ in 0..MAX_ROUNDS {
            if work.is_empty() {
                return;
            }
            if let Err(message) = self.create_files(&mut work, tally).await {
                tally.exhausted += work.iter().map(|w| w.file.points.len()).sum::<usize>();
                tally.failure = Some(message);
                return;
            }
            match self.update_round(std::mem::take(&mut work), tally).await {
                Ok(again) => work = again,
                Err((left, message)) => {
                    tally.exhausted += left.iter().map(|w| w.file.points.len()).sum::<usize>();
                    tally.failure = Some(message);
                    return;
                }
            }
        }
        for w in work {
            let path = w.file.path;
            tally.reject(w.file.points.len(), || format!("{path}: still failing after {MAX_ROUNDS} rounds"));
        }
    }
}

impl Sink for RrdcachedSink {
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        let plan = self.router.plan(batch.samples());
        let mut tally = Tally { duplicate: plan.coalesced, ..Default::default() };
        if let Some(example) = &plan.missing_example {
            tally.reject(plan.missing_label, || format!("path_template: {example}"));
        }
        tally.reject(plan.unrepresentable, || "±Inf cannot be stored in an RRD".into());
        self.write(plan.files, &mut tally).await;

        if let Some(message) = &tally.rejection {
            tracing::warn!(sink = %self.name, samples = tally.rejected, error = %message, "rrdcached refused samples");
        }
        if tally.out_of_order > 0 {
            tracing::debug!(sink = %self.name, samples = tally.out_of_order, "samples not newer than their file's last update");
        }
        let mut delivery = Delivery::all(tally.delivered);
        if tally.exhausted > 0 {
            let message = tally.failure.unwrap_or_default();
            delivery.failed =
                Some((tally.exhausted, super::SinkError::RetryExhausted { sink: self.name.clone(), message }));
        }
        for (n, reason) in [
            (tally.rejected, DropReason::Rejected),
            (tally.out_of_order, DropReason::OutOfOrder),
            (tally.duplicate, DropReason::Duplicate),
        ] {
            if n > 0 {
                delivery.dropped.push((n, reason));
            }
        }
        delivery
    }

    async fn close(&mut self) {
        if !self.config.flush_on_shutdown || self.last_written.is_empty() {
            return;
        }
        let timeout = self.config.timeout;
        let mut guard = self.conn.lock().await;
        let mut flushed = 0;
        for path in self.last_written.keys() {
            if guard.is_none() {
                match Connection::connect(&self.address, timeout).await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        tracing::warn!(sink = %self.name, error = %e, "cannot FLUSH on shutdown");
                        return;
                    }
                }
            }
            let Some(c) = guard.as_mut() else { return };
            match c.command(&format!("FLUSH {path}"), timeout).await {
                Ok((code, _)) if code >= 0 => flushed += 1,
                Ok((_, message)) => tracing::debug!(sink = %self.name, %path, %message, "FLUSH refused"),
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "FLUSH on shutdown failed");
                    *guard = None;
                }
            }
        }
        tracing::info!(sink = %self.name, files = flushed, "flushed RRD files on shutdown");
    }
}
