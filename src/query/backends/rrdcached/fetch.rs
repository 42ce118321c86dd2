//! The exchanges of one render with rrdcached: `LIST RECURSIVE`, then `INFO`
//! for every matching file and `FETCH` for those holding the data source,
//! pipelined over a few connections.
use std::collections::BTreeMap;
use std::time::Duration;

use super::compile::FetchPlan;
use super::consolidate::consolidate;
use super::reply::{self, Fetched, FileInfo};
use super::template::{Inversion, sanitize_value};
use crate::query::backends::{BackendError, RawResult, RawSeries, Unsupported};
use crate::query::grid::TimeGrid;
use crate::query::model::MatchOp;
use crate::sinks::rrdcached::client::{Address, ClientError, Connection, Reply};

/// Connections one render opens at most.
pub const MAX_CONNECTIONS: usize = 4;
/// Files whose `INFO`s (then `FETCH`es) go out in one write.
const FILES_PER_PIPELINE: usize = 64;

pub(super) fn client_error(backend: &str, e: ClientError) -> BackendError {
    match e {
        ClientError::Timeout { timeout, .. } => BackendError::Timeout { backend: backend.to_string(), after: timeout },
        ClientError::Connect { address, source } => {
            BackendError::Unreachable { backend: backend.to_string(), target: address, message: source.to_string() }
        }
        other @ (ClientError::Io { .. } | ClientError::Protocol { .. }) => {
            BackendError::BadResponse { backend: backend.to_string(), message: other.to_string() }
        }
    }
}

fn bad(backend: &str, message: String) -> BackendError {
    BackendError::BadResponse { backend: backend.to_string(), message }
}

/// One file of the render and the labels its path gave.
struct File {
    path: String,
    labels: BTreeMap<String, String>,
}

/// Whether the labels read from a path pass the plan's filters. Equality
/// compares with the value as the sink would have written it into a path.
fn passes(plan: &FetchPlan, labels: &BTreeMap<String, String>) -> bool {
    plan.matchers.iter().all(|m| {
        let value = labels.get(&m.label).map_or("", String::as_str);
        match m.op {
            MatchOp::Equal => value == sanitize_value(&m.value),
            MatchOp::NotEqual => value != sanitize_value(&m.value),
            MatchOp::Regex | MatchOp::NotRegex => m.matches(value),
        }
    })
}

/// The files of the plan among `paths`; ambiguous paths are left out with a warning.
fn select(plan: &FetchPlan, paths: Vec<String>, warnings: &mut Vec<String>) -> Vec<File> {
    let mut out = Vec::new();
    for path in paths {
        let found = match plan.pattern.invert(&path) {
            Inversion::NoMatch => continue,
            Inversion::Labels(l) => l,
            Inversion::Ambiguous(a, b) => {
                warnings.push(format!(
                    "file {path} matches path template {:?} in more than one way ({a:?} or {b:?}); left out",
                    plan.pattern.source()
                ));
                continue;
            }
        };
        let mut labels = BTreeMap::new();
        let mut name_ok = true;
        for (n, v) in found {
            if n == crate::model::METRIC_NAME_LABEL {
                name_ok = v == plan.metric_value;
            } else {
                labels.insert(n, v);
            }
        }
        if name_ok && passes(plan, &labels) {
            out.push(File { path, labels });
        }
    }
    out
}

/// Whether a file holds the plan's data source, from its `INFO` reply. A file
/// gone since it was listed, or one holding another metric's data source (a
/// shared path template), is not fetched: rrdcached 1.7.2 answers a `FETCH` of
/// a data source a file lacks with an error that quotes freed memory where the
/// path belongs, and when those bytes hold a newline the reply splits in two
/// and every later reply of the pipeline is misread.
fn holds_source(backend: &str, plan: &FetchPlan, file: &File, info: &Reply) -> Result<bool, BackendError> {
    if info.code < 0 {
        // Listed a moment ago, gone now: nothing to read.
        if info.message.contains("No such file") {
            return Ok(false);
        }
        return Err(bad(backend, format!("INFO {}: {}", file.path, info.message)));
    }
    let info: FileInfo = reply::parse_info(&info.lines).map_err(|e| bad(backend, format!("{}: {e}", file.path)))?;
    let Some(ds_type) = info.source_type(&plan.ds) else {
        // Another metric's file under the same template (a shared path, another data source).
        return Ok(false);
    };
    if (ds_type != "GAUGE") != plan.stores_rate {
        return Err(bad(
            backend,
            format!(
                "{}: data source {:?} is {ds_type}, but the registry and sink say it {}",
                file.path,
                plan.ds,
                if plan.stores_rate { "stores a rate (DERIVE)" } else { "stores values (GAUGE)" }
            ),
        ));
    }
    Ok(true)
}

/// Turns one file's `FETCH` reply into a series.
fn series(
    backend: &str,
    plan: &FetchPlan,
    grid: &TimeGrid,
    file: File,
    fetched: &Reply,
) -> Result<RawSeries, BackendError> {
    if fetched.code < 0 {
        return Err(bad(backend, format!("FETCH {}: {}", file.path, fetched.message)));
    }
    let f: Fetched = reply::parse_fetch(&fetched.lines).map_err(|e| bad(backend, format!("{}: {e}", file.path)))?;
    let resolution = i64::try_from(f.step).unwrap_or(i64::MAX);
    if plan.step_s % resolution != 0 {
        return Err(BackendError::Unsupported(Unsupported {
            backend: backend.to_string(),
            feature: "step".into(),
            message: format!(
                "{}: the finest {} archive reaching back to the start has {resolution}s rows, which do not divide the step {}s",
                file.path, plan.cf, plan.step_s
            ),
        }));
    }
    let end_s = grid.end_ms / 1000;
    let points = match plan.how {
        Some(how) => {
            let rows: Vec<(i64, Option<f64>)> =
                f.rows.into_iter().filter(|&(t, _)| t <= end_s && t * 1000 >= plan.keep_from_ms).collect();
            consolidate(&rows, resolution, grid, how)
        }
        None => f
            .rows
            .into_iter()
            .filter(|&(t, _)| t <= end_s && t.saturating_mul(1000) >= plan.keep_from_ms)
            .filter_map(|(t, v)| Some((t * 1000, v?)))
            .collect(),
    };
    Ok(RawSeries { labels: file.labels, points })
}

/// Sends `commands` in one write and reads one reply for each.
async fn exchange(
    backend: &str,
    conn: &mut Connection,
    commands: &[String],
    timeout: Duration,
    requests: &metrics::Counter,
) -> Result<Vec<Reply>, BackendError> {
    requests.increment(commands.len() as u64);
    let replies = conn.pipeline(commands, timeout).await.map_err(|e| client_error(backend, e))?;
    if replies.len() != commands.len() {
        return Err(bad(backend, format!("{} replies to {} commands", replies.len(), commands.len())));
    }
    Ok(replies)
}

/// Runs the plan: list, select, then `INFO` per file and `FETCH` per file
/// that holds the data source.
/// `requests` counts every command sent (`tsrelay_query_backend_requests_total`).
pub async fn run(
    backend: &str,
    address: &Address,
    timeout: Duration,
    requests: &metrics::Counter,
    plan: &FetchPlan,
    grid: &TimeGrid,
) -> Result<RawResult, BackendError> {
    let mut warnings = Vec::new();
    let mut conn = Connection::connect(address, timeout).await.map_err(|e| client_error(backend, e))?;
    let list = format!("LIST RECURSIVE /{}", plan.directory);
    requests.increment(1);
    let mut replies = conn.pipeline(&[list.as_str()], timeout).await.map_err(|e| client_error(backend, e))?;
    let listed = replies.pop().unwrap_or_default();
    let paths = if listed.code < 0 {
        // The directory of a metric nothing was written for yet.
        if listed.message.contains("No such file or directory") {
            Vec::new()
        } else {
            return Err(bad(backend, format!("{list}: {}", listed.message)));
        }
    } else {
        reply::parse_list(&plan.directory, &listed.lines).map_err(|e| bad(backend, e.to_string()))?
    };
    let files = select(plan, paths, &mut warnings);
    if files.is_empty() {
        return Ok(RawResult { form: plan.form, series: Vec::new(), warnings });
    }

    // Chunks of files, shared by up to MAX_CONNECTIONS connections (the first is reused).
    let chunks: Vec<Vec<File>> = {
        let mut chunks = Vec::new();
        let mut it = files.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(FILES_PER_PIPELINE).collect::<Vec<File>>());
        }
        chunks
    };
    let lanes = chunks.len().min(MAX_CONNECTIONS);
    let mut per_lane: Vec<Vec<Vec<File>>> = (0..lanes).map(|_| Vec::new()).collect();
    for (i, chunk) in chunks.into_iter().enumerate() {
        per_lane[i % lanes].push(chunk);
    }
    let mut first = Some(conn);
    let mut tasks = Vec::with_capacity(lanes);
    for lane in per_lane {
        let reuse = first.take();
        tasks.push(async move {
            let mut conn = match reuse {
                Some(c) => c,
                None => Connection::connect(address, timeout).await.map_err(|e| client_error(backend, e))?,
            };
            let mut out = Vec::new();
            for chunk in lane {
                // INFO first, then FETCH only the files that hold the data source (see holds_source).
                let commands: Vec<String> = chunk.iter().map(|f| format!("INFO {}", f.path)).collect();
                let infos = exchange(backend, &mut conn, &commands, timeout, requests).await?;
                let mut wanted = Vec::with_capacity(chunk.len());
                for (file, info) in chunk.into_iter().zip(&infos) {
                    if holds_source(backend, plan, &file, info)? {
                        wanted.push(file);
                    }
                }
                if wanted.is_empty() {
                    continue;
                }
                let commands: Vec<String> = wanted
                    .iter()
                    .map(|f| {
                        format!("FETCH {} {} {} {} {}", f.path, plan.cf, plan.fetch_start_s, plan.fetch_end_s, plan.ds)
                    })
                    .collect();
                let fetched = exchange(backend, &mut conn, &commands, timeout, requests).await?;
                for (file, reply) in wanted.into_iter().zip(&fetched) {
                    out.push(series(backend, plan, grid, file, reply)?);
                }
            }
            Ok::<_, BackendError>(out)
        });
    }
    let mut series = Vec::new();
    for lane in futures::future::join_all(tasks).await {
        series.extend(lane?);
    }
    Ok(RawResult { form: plan.form, series, warnings })
}
