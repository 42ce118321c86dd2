//! The query cache (DESIGN §7.3) against every real backend: renders through a
//! tsrelay with the cache are byte for byte the renders of a tsrelay without it
//! (`[query.cache] enabled = false`) reading the same backend; a window shifted
//! by one step asks the backend only for the new bucket; identical concurrent
//! renders share one backend request; buckets younger than `fresh_for` are read
//! again. Data: the golden data set (tests/golden/harness.rs), written through
//! the cached tsrelay.

mod common;
#[allow(dead_code)] // the golden tests use the rest of the harness
#[path = "golden/harness.rs"]
mod harness;

use std::net::SocketAddr;

use common::influxdb::Influxd;
use common::prometheus::Prometheus;
use common::rrdcached::Rrdcached;
use harness::{Dataset, MIN, Relay, graphs, start_relay, write_through};
use tsrelay::query::service::now_ms;

/// `POST /api/v1/graph/render`: (status, the body's bytes).
fn render_bytes(query: SocketAddr, body: &serde_json::Value) -> (u16, String) {
    let r = common::http()
        .post(format!("http://{query}/api/v1/graph/render"))
        .json(body)
        .send()
        .expect("POST /api/v1/graph/render");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn body(graph: &str, backend: &str, start: i64, end: i64, step: &str) -> serde_json::Value {
    serde_json::json!({"graph": graph, "backend": backend, "start": start, "end": end, "step": step})
}

struct Pair {
    cached: Relay,
    plain: Relay,
}

impl Pair {
    /// Two tsrelays on one backend: `cached` (default cache) and `plain` (no cache).
    fn start(dir: &std::path::Path, sink: &str, sink_toml: &str) -> Pair {
        let (a, b) = (dir.join("cached"), dir.join("plain"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let cached = start_relay(&a, &[sink], &format!("[query.cache]\nfresh_for = \"1m\"\n\n{sink_toml}"));
        let plain = start_relay(&b, &[sink], &format!("[query.cache]\nenabled = false\n\n{sink_toml}"));
        Pair { cached, plain }
    }

    fn metric(relay: &Relay, name: &str) -> f64 {
        relay.tsrelay.metric_sum(name, &[])
    }

    /// Renders on both, twice on the cached one; all three bodies must be the same bytes.
    fn same(&self, body: &serde_json::Value) -> String {
        let (s0, plain) = render_bytes(self.plain.query, body);
        let (s1, first) = render_bytes(self.cached.query, body);
        let (s2, second) = render_bytes(self.cached.query, body);
        assert_eq!((s0, s1, s2), (200, 200, 200), "{body}: {plain}\n{first}\n{second}");
        assert_eq!(first, plain, "{body}: first cached render differs from the uncached one");
        assert_eq!(second, plain, "{body}: render from the cache differs from the uncached one");
        plain
    }
}

/// What every backend must show; `skip` lists graphs the backend refuses (422).
fn check_cache(pair: &Pair, backend: &str, data: &Dataset, skip: &[&str]) {
    let store = graphs();
    // 1. Every golden graph on every golden grid: cached == uncached, byte for byte.
    let mut compared = 0;
    for graph in store.iter().filter(|g| !skip.contains(&g.def.id.as_str())) {
        for grid in data.grids() {
            let step = format!("{}s", grid.step_ms / 1000);
            let answer = pair.same(&body(&graph.def.id, backend, grid.start_ms, grid.end_ms, &step));
            assert!(answer.contains("\"points\":[["), "{answer}");
            compared += 1;
        }
    }
    assert!(compared >= 12, "{compared} renders compared");

    // 2. A 4-hour window at 10 min (a step the renders above did not use), then
    //    the same window shifted by one step at a time: only the new bucket is
    //    asked for (one per graph series).
    let graph = "golden.load.avg"; // two graph series
    let (start, end) = (data.t0 + 60 * MIN, data.t_end - 60 * MIN);
    pair.same(&body(graph, backend, start, end, "10m"));
    let calls_full = {
        let before = Pair::metric(&pair.plain, "tsrelay_query_backend_requests_total");
        render_bytes(pair.plain.query, &body(graph, backend, start, end, "10m"));
        Pair::metric(&pair.plain, "tsrelay_query_backend_requests_total") - before
    };
    for shift in 1..=6 {
        let (s, e) = (start + shift * 10 * MIN, end + shift * 10 * MIN);
        let hits = Pair::metric(&pair.cached, "tsrelay_query_cache_hits_total");
        let misses = Pair::metric(&pair.cached, "tsrelay_query_cache_misses_total");
        let calls = Pair::metric(&pair.cached, "tsrelay_query_backend_requests_total");
        let (status, cached) = render_bytes(pair.cached.query, &body(graph, backend, s, e, "10m"));
        let (_, plain) = render_bytes(pair.plain.query, &body(graph, backend, s, e, "10m"));
        assert_eq!(status, 200, "{cached}");
        assert_eq!(cached, plain, "shift {shift}: cached render differs");
        let points = (e - s) / (10 * MIN);
        assert_eq!(Pair::metric(&pair.cached, "tsrelay_query_cache_misses_total") - misses, 2.0, "shift {shift}");
        assert_eq!(
            Pair::metric(&pair.cached, "tsrelay_query_cache_hits_total") - hits,
            2.0 * (points - 1) as f64,
            "shift {shift}"
        );
        let calls = Pair::metric(&pair.cached, "tsrelay_query_backend_requests_total") - calls;
        assert!(
            calls >= 1.0 && calls <= calls_full,
            "shift {shift}: {calls} backend requests, a full render {calls_full}"
        );
    }

    // 3. Eight identical renders at once of a window nothing cached yet (a step
    //    not used above): the backend sees the requests of one render.
    let (s, e) = (data.t0, data.t_end);
    let calls = Pair::metric(&pair.cached, "tsrelay_query_backend_requests_total");
    let query = pair.cached.query;
    let renders: Vec<_> = (0..8)
        .map(|_| {
            let b = body("golden.load.min_max", backend, s, e, "3m");
            std::thread::spawn(move || render_bytes(query, &b))
        })
        .collect();
    let answers: Vec<(u16, String)> = renders.into_iter().map(|h| h.join().unwrap()).collect();
    let (_, plain) = render_bytes(pair.plain.query, &body("golden.load.min_max", backend, s, e, "3m"));
    assert!(answers.iter().all(|(status, a)| *status == 200 && *a == plain), "concurrent renders differ");
    let one = {
        let before = Pair::metric(&pair.plain, "tsrelay_query_backend_requests_total");
        render_bytes(pair.plain.query, &body("golden.load.min_max", backend, s, e, "3m"));
        Pair::metric(&pair.plain, "tsrelay_query_backend_requests_total") - before
    };
    assert_eq!(Pair::metric(&pair.cached, "tsrelay_query_backend_requests_total") - calls, one);

    // 4. A window ending now: its last buckets are fresh and asked for on every render.
    let now = now_ms();
    let b = body("golden.load.raw", backend, now - 30 * MIN, now, "1m");
    render_bytes(pair.cached.query, &b);
    let misses = Pair::metric(&pair.cached, "tsrelay_query_cache_misses_total");
    let hits = Pair::metric(&pair.cached, "tsrelay_query_cache_hits_total");
    let (status, answer) = render_bytes(pair.cached.query, &b);
    assert_eq!(status, 200, "{answer}");
    let fresh = Pair::metric(&pair.cached, "tsrelay_query_cache_misses_total") - misses;
    assert!((1.0..=3.0).contains(&fresh), "{fresh} fresh buckets asked again (fresh_for 1m, step 1m)");
    assert!(Pair::metric(&pair.cached, "tsrelay_query_cache_hits_total") - hits >= 27.0);
    assert!(Pair::metric(&pair.cached, "tsrelay_query_cache_bytes") > 0.0);
}

#[test]
fn prometheus_cached_renders_are_the_uncached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prometheus"));
    let data = Dataset::generate(now_ms());
    let sink = format!(
        "[sinks.prom]\ntype = \"prometheus_remote_write\"\nurl = \"{}\"\nbatch = {{ max_samples = 10000, max_age_ms = 50 }}\n",
        prom.write_url()
    );
    let pair = Pair::start(dir.path(), "prom", &sink);
    write_through(&pair.cached, &data, &["prom"]);
    check_cache(&pair, "prom", &data, &[]);
}

#[test]
fn influxdb_cached_renders_are_the_uncached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(dir.path(), 0);
    influxd.create_database("golden");
    let data = Dataset::generate(now_ms());
    let sink = format!(
        "[sinks.influx]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"golden\"\nbatch = {{ max_samples = 10000, max_age_ms = 50 }}\n",
        influxd.url()
    );
    let pair = Pair::start(dir.path(), "influx", &sink);
    write_through(&pair.cached, &data, &["influx"]);
    check_cache(&pair, "influx", &data, &[]);
}

#[test]
fn rrdcached_cached_renders_are_the_uncached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrdcached::start(dir.path());
    let data = Dataset::generate(now_ms());
    let sink = format!(
        "[sinks.rrd]\ntype = \"rrdcached\"\naddress = \"{}\"\nstep = \"60s\"\nbatch = {{ max_samples = 10000, max_age_ms = 50 }}\n",
        rrd.unix_address()
    );
    let pair = Pair::start(dir.path(), "rrd", &sink);
    write_through(&pair.cached, &data, &["rrd"]);
    // Every update written before the renders: rrdcached 1.7.2's flush (which `FETCH` does
    // first) does not wait for a write already under way, so two renders reading a file whose
    // backlog another render's `FETCH` is writing at that moment would see part of it.
    rrd.flush_all();
    check_cache(&pair, "rrd", &data, &["golden.load.count_sum"]);
}
