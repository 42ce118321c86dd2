//! The cache through the render service, with a driver that computes its
//! answers and records every span it is asked for (the real backends are in
//! tests/query_cache.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use super::*;
use crate::query::backends::{Capabilities, RawResult, RawSeries, StepSupport, Unsupported};
use crate::query::config::QueryConfig;
use crate::query::graphs::GraphStore;
use crate::query::model::{Across, Function};
use crate::query::request::RenderRequest;
use crate::query::service::QueryService;
use crate::registry::MetricRegistry;

/// Serves samples of a counter (Samples form for rate) or per-point values,
/// for three hosts; records every `(start, end)` asked for.
struct Recording {
    caps: Capabilities,
    asked: StdMutex<Vec<(i64, i64)>>,
    delay: Duration,
}

impl Driver for Recording {
    fn backend(&self) -> &str {
        "rec"
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn compile(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Compiled, Unsupported> {
        let form = if plan.function == Function::Rate { RawForm::Samples } else { RawForm::PerSeries };
        Ok(Compiled {
            queries: vec![format!("{} {} {} {}", plan.metric_name(), grid.start_ms, grid.end_ms, grid.step_ms)],
            form,
            payload: None,
        })
    }
    fn execute<'a>(
        &'a self,
        compiled: &'a Compiled,
        _: &'a SeriesPlan,
        grid: &'a TimeGrid,
    ) -> BoxFuture<'a, Result<RawResult, BackendError>> {
        Box::pin(async move {
            self.asked.lock().unwrap().push((grid.start_ms, grid.end_ms));
            tokio::time::sleep(self.delay).await;
            let series = (0..3)
                .map(|h| {
                    let points: Vec<(i64, f64)> = match compiled.form {
                        // A sample every 10 s from start − step; host 2 stops at 1000 s.
                        RawForm::Samples => (0..)
                            .map(|i| grid.start_ms - grid.step_ms + i * 10_000)
                            .take_while(|&t| t <= grid.end_ms)
                            .filter(|&t| h != 2 || t <= 1_000_000)
                            .map(|t| (t, (t / 1000) as f64 * (h + 1) as f64 * 0.37))
                            .collect(),
                        _ => grid
                            .points()
                            .filter(|&t| h != 2 || t <= 1_000_000)
                            .map(|t| (t, ((t / 1000) % 97) as f64 / 7.0 + h as f64))
                            .collect(),
                    };
                    RawSeries { labels: [("host".to_string(), format!("h{h}"))].into(), points }
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            Ok(RawResult { form: compiled.form, series, warnings: vec![] })
        })
    }
}

fn service(cache: CacheConfig, delay: Duration) -> (QueryService, Arc<Recording>) {
    let registry = Arc::new(
        MetricRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.yaml")).unwrap(),
    );
    let driver = Arc::new(Recording {
        caps: Capabilities {
            driver: "rec",
            functions: Function::ALL.to_vec(),
            across_on_server: vec![Across::Sum],
            group_by_on_server: false,
            regex_filters: true,
            negative_filters: true,
            steps: StepSupport::Any { min_ms: 1000 },
            raw_counter_values: true,
            label_discovery: false,
            notes: vec![],
        },
        asked: StdMutex::new(Vec::new()),
        delay,
    });
    let drivers: BTreeMap<String, Arc<dyn Driver>> = [("rec".to_string(), driver.clone() as Arc<dyn Driver>)].into();
    let config = QueryConfig { cache, ..QueryConfig::default() };
    (QueryService::new(registry, GraphStore::default(), drivers, BTreeMap::new(), config), driver)
}

fn request(start: i64, end: i64) -> RenderRequest {
    serde_json::from_value(serde_json::json!({
        "graph": {"id": "t", "series": [
            {"metric": "golden.port.octets", "function": "rate", "group_by": [], "across": "sum"},
            {"metric": "golden.port.octets", "function": "rate", "filter": {"device": "!=none"}},
            {"metric": "golden.load", "function": "avg", "scale": 3},
        ]},
        "backend": "rec", "start": start, "end": end, "step": "60s",
    }))
    .unwrap()
}

fn off() -> CacheConfig {
    CacheConfig { enabled: false, ..CacheConfig::default() }
}

async fn json(s: &QueryService, start: i64, end: i64, now: i64) -> String {
    serde_json::to_string(&s.render(&request(start, end), now).await.unwrap()).unwrap()
}

#[tokio::test]
async fn shifted_windows_ask_only_for_new_buckets_and_answer_like_no_cache() {
    let (cached, d) = service(CacheConfig::default(), Duration::ZERO);
    let (plain, _) = service(off(), Duration::ZERO);
    let hour = 3_600_000;
    // now is far after the window: nothing is fresh.
    let now = 100 * hour;
    assert_eq!(json(&cached, 0, hour, now).await, json(&plain, 0, hour, now).await);
    assert_eq!(d.asked.lock().unwrap().len(), 3, "one request per graph series");
    d.asked.lock().unwrap().clear();
    for shift in 1..=5 {
        let (s, e) = (shift * 60_000, hour + shift * 60_000);
        assert_eq!(json(&cached, s, e, now).await, json(&plain, s, e, now).await, "shift {shift}");
        let asked = std::mem::take(&mut *d.asked.lock().unwrap());
        // Only the new last bucket: the span (e − step, e].
        assert_eq!(asked, vec![(e - 60_000, e); 3], "shift {shift}");
    }
    // A window inside what is cached asks nothing; a wider one asks both ends.
    assert_eq!(json(&cached, 600_000, 1_200_000, now).await, json(&plain, 600_000, 1_200_000, now).await);
    assert!(d.asked.lock().unwrap().is_empty());
    let (s, e) = (-600_000, hour + 600_000);
    assert_eq!(json(&cached, s, e, now).await, json(&plain, s, e, now).await);
    let mut asked = std::mem::take(&mut *d.asked.lock().unwrap());
    asked.sort_unstable();
    asked.dedup();
    assert_eq!(asked, vec![(-600_000, 0), (hour + 300_000, hour + 600_000)]);
    assert!(cached.cache().bytes().await > 0);
}

#[tokio::test]
async fn fresh_buckets_are_read_again() {
    let (cached, d) =
        service(CacheConfig { fresh_for: Duration::from_secs(300), ..CacheConfig::default() }, Duration::ZERO);
    let hour = 3_600_000;
    // The last 5 minutes before now are fresh: points hour−240 s ..= hour.
    json(&cached, 0, hour, hour).await;
    d.asked.lock().unwrap().clear();
    json(&cached, 0, hour, hour).await;
    let asked = std::mem::take(&mut *d.asked.lock().unwrap());
    assert_eq!(asked, vec![(hour - 300_000, hour); 3]);
    // Later they are old enough: once more, then never.
    json(&cached, 0, hour, hour + 3_600_000).await;
    assert_eq!(std::mem::take(&mut *d.asked.lock().unwrap()), vec![(hour - 300_000, hour); 3]);
    json(&cached, 0, hour, hour + 3_600_000).await;
    assert!(d.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_identical_renders_share_one_backend_request() {
    let (cached, d) = service(CacheConfig::default(), Duration::from_millis(200));
    let s = Arc::new(cached);
    let renders = (0..8).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { json(&s, 0, 3_600_000, 10 * 3_600_000).await })
    });
    let answers = futures::future::join_all(renders).await;
    let first = answers[0].as_ref().unwrap().clone();
    assert!(answers.iter().all(|a| a.as_ref().unwrap() == &first));
    assert_eq!(d.asked.lock().unwrap().len(), 3, "three graph series, one request each for 8 renders");
}
