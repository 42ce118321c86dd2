//! The query cache (DESIGN §7.3), in front of every driver: whatever renders
//! through [`crate::query::QueryService`] (the graph API, `tsrelay graph render`,
//! the PromQL API) reads step-aligned buckets from here and asks the backend
//! only for the runs of buckets it lacks.
//!
//! - **Key:** one bucket is `(query, t)`, where the query is the backend, the
//!   step, the plan's function and filters, and the driver's compiled text for
//!   a window of one bucket at the epoch (so windows anywhere share it), plus
//!   the driver's [`crate::query::Driver::cache_scope`]. What a bucket holds is
//!   described in [`merge`].
//! - **Missing buckets:** every run of consecutive missing buckets is one
//!   backend request ([`crate::query::Driver::compile_span`]), run concurrently.
//! - **Fresh buckets:** a bucket whose point is less than `fresh_for` before
//!   the render's `now` is neither read from nor written to the cache (data may
//!   still arrive for it); an answer with warnings is not written either.
//! - **Single flight:** renders that need the same run of the same query at the
//!   same time share one backend request.
//! - **Bound:** `max_bytes` over every entry's weight ([`merge::Bucket::weight`]);
//!   moka evicts the least recently used beyond it.
//!
//! A cached render is byte-identical to an uncached one as long as stored
//! history does not change behind the cache (older than `fresh_for`).

pub mod config;
pub mod merge;
pub mod property;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, try_join_all};

pub use self::config::CacheConfig;
use self::merge::{Bucket, assemble, missing_spans, span_grid, split};
use super::backends::{BackendError, Compiled, Driver, RawForm};
use super::grid::TimeGrid;
use super::normalize::{RawLine, raw_lines};
use super::plan::SeriesPlan;

/// What one graph series' backend work produced, before `across` and formatting.
#[derive(Debug, Clone)]
pub struct SeriesAnswer {
    pub form: RawForm,
    /// Sorted by labels.
    pub lines: Vec<RawLine>,
    pub warnings: Vec<String>,
}

/// The identity of one compiled query at one step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueryKey {
    backend: String,
    step_ms: i64,
    query: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    query: Arc<QueryKey>,
    t: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    query: Arc<QueryKey>,
    start_ms: i64,
    end_ms: i64,
}

/// One span's answer, split into buckets.
#[derive(Debug)]
struct SpanAnswer {
    buckets: Vec<Arc<Bucket>>,
    warnings: Vec<String>,
}

type Flight = Shared<BoxFuture<'static, Result<Arc<SpanAnswer>, BackendError>>>;
type Flights = Arc<Mutex<HashMap<FlightKey, Flight>>>;

/// The cache of one query service.
pub struct QueryCache {
    config: CacheConfig,
    /// `None` when `enabled = false`.
    buckets: Option<moka::future::Cache<BucketKey, Arc<Bucket>>>,
    flights: Flights,
}

impl QueryCache {
    pub fn new(config: &CacheConfig) -> QueryCache {
        let buckets = config.enabled.then(|| {
            let evictions = crate::telemetry::query_cache_evictions();
            moka::future::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(|_: &BucketKey, b: &Arc<Bucket>| u32::try_from(b.weight()).unwrap_or(u32::MAX))
                .eviction_listener(move |_, _, cause| {
                    if cause.was_evicted() {
                        evictions.increment(1);
                    }
                })
                .build()
        });
        QueryCache { config: config.clone(), buckets, flights: Arc::default() }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Bytes held (after moka's pending bookkeeping), for tests and the gauge.
    pub async fn bytes(&self) -> u64 {
        match &self.buckets {
            Some(c) => {
                c.run_pending_tasks().await;
                c.weighted_size()
            }
            None => 0,
        }
    }

    /// The lines of one graph series over `grid`: from the cache and the backend.
    /// `now_ms` decides which buckets are fresh.
    pub async fn run(
        &self,
        driver: &Arc<dyn Driver>,
        plan: &SeriesPlan,
        compiled: &Compiled,
        grid: &TimeGrid,
        now_ms: i64,
    ) -> Result<SeriesAnswer, BackendError> {
        let (Some(cache), Some(key)) = (&self.buckets, query_key(driver.as_ref(), plan, compiled, grid)) else {
            let raw = driver.execute(compiled, plan, grid).await?;
            let lines = raw_lines(plan, grid, &raw).map_err(|e| bad_answer(driver.backend(), plan, e))?;
            return Ok(SeriesAnswer { form: raw.form, lines, warnings: raw.warnings });
        };
        let backend = driver.backend();
        let cutoff = now_ms.saturating_sub(i64::try_from(self.config.fresh_for.as_millis()).unwrap_or(i64::MAX));
        let key = Arc::new(key);
        let mut slots: Vec<Option<Arc<Bucket>>> = Vec::with_capacity(grid.len());
        for t in grid.points() {
            slots.push(if t <= cutoff { cache.get(&BucketKey { query: key.clone(), t }).await } else { None });
        }
        let spans = missing_spans(&slots.iter().map(Option::is_some).collect::<Vec<_>>());
        let missing: usize = spans.iter().map(|(a, b)| b - a + 1).sum();
        crate::telemetry::query_cache_hits(backend).increment((slots.len() - missing) as u64);
        crate::telemetry::query_cache_misses(backend).increment(missing as u64);
        let fetches =
            spans.iter().map(|&(a, b)| self.fetch(cache, driver, plan, grid, span_grid(grid, a, b), &key, cutoff));
        let answers = try_join_all(fetches).await?;
        let mut warnings = Vec::new();
        for (&(first, _), answer) in spans.iter().zip(&answers) {
            for (i, bucket) in answer.buckets.iter().enumerate() {
                slots[first + i] = Some(bucket.clone());
            }
            for w in &answer.warnings {
                if !warnings.contains(w) {
                    warnings.push(w.clone());
                }
            }
        }
        let buckets: Vec<Arc<Bucket>> = slots.into_iter().map(Option::unwrap_or_default).collect();
        crate::telemetry::query_cache_bytes().set(cache.weighted_size() as f64);
        Ok(SeriesAnswer { form: compiled.form, lines: assemble(&buckets), warnings })
    }

    /// One run of missing buckets, shared with every render asking for the same at the same time.
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &self,
        cache: &moka::future::Cache<BucketKey, Arc<Bucket>>,
        driver: &Arc<dyn Driver>,
        plan: &SeriesPlan,
        grid: &TimeGrid,
        span: TimeGrid,
        key: &Arc<QueryKey>,
        cutoff: i64,
    ) -> BoxFuture<'static, Result<Arc<SpanAnswer>, BackendError>> {
        let flight_key = FlightKey { query: key.clone(), start_ms: span.start_ms, end_ms: span.end_ms };
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = flights.get(&flight_key) {
            return f.clone().boxed();
        }
        let compiled = match driver.compile_span(plan, grid, &span) {
            Ok(c) => c,
            Err(u) => return futures::future::ready(Err(BackendError::Unsupported(u))).boxed(),
        };
        let (driver, plan, cache, registry, fk) =
            (driver.clone(), plan.clone(), cache.clone(), self.flights.clone(), flight_key.clone());
        let flight = async move {
            let result = async {
                let raw = driver.execute(&compiled, &plan, &span).await?;
                let buckets = split(&plan, &span, &raw, driver.lists_series_without_points())
                    .map_err(|e| bad_answer(driver.backend(), &plan, e))?;
                let buckets: Vec<Arc<Bucket>> = buckets.into_iter().map(Arc::new).collect();
                if raw.warnings.is_empty() {
                    for (t, b) in span.points().zip(&buckets) {
                        if t <= cutoff {
                            cache.insert(BucketKey { query: fk.query.clone(), t }, b.clone()).await;
                        }
                    }
                }
                Ok(Arc::new(SpanAnswer { buckets, warnings: raw.warnings }))
            }
            .await;
            registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&fk);
            result
        }
        .boxed()
        .shared();
        flights.insert(flight_key, flight.clone());
        flight.boxed()
    }
}

/// The cache key of a plan's query, or `None` when the driver cannot compile
/// the one-bucket window at the epoch (then nothing is cached for it).
fn query_key(driver: &dyn Driver, plan: &SeriesPlan, compiled: &Compiled, grid: &TimeGrid) -> Option<QueryKey> {
    let step = grid.step_ms;
    let canonical = driver.compile(plan, &TimeGrid { start_ms: 0, end_ms: step, step_ms: step }).ok()?;
    let mut query = format!("{}|{:?}|", plan.function, compiled.form);
    for m in &plan.matchers {
        let _ = write!(query, "{}{}{:?},", m.label, m.op.promql(), m.value);
    }
    query.push('|');
    if let Some(scope) = driver.cache_scope(grid) {
        query.push_str(&scope);
    }
    for q in &canonical.queries {
        query.push('\n');
        query.push_str(q);
    }
    Some(QueryKey { backend: driver.backend().to_string(), step_ms: step, query })
}

fn bad_answer(backend: &str, plan: &SeriesPlan, e: super::normalize::NormalizeError) -> BackendError {
    BackendError::BadResponse { backend: backend.to_string(), message: format!("{}: {e}", plan.location()) }
}

#[cfg(test)]
mod tests;
