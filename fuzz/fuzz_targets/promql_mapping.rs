//! Any text as the `query` of `/prom/<backend>/api/v1/query_range` (and as its
//! form body): parsing and mapping onto the graph model must not panic; a
//! refusal names a construct or the parser's reason; a mapped vector is a graph
//! series the registry validation accepts or refuses with a message, with a
//! finite, non-zero scale.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tsrelay::query::model::GraphDef;
use tsrelay::query::prom::params::Params;
use tsrelay::query::prom::promql::{MapError, Mapped, map_query};
use tsrelay::query::validate::validate_graph;
use tsrelay::registry::MetricRegistry;

fn registry() -> &'static MetricRegistry {
    static REGISTRY: OnceLock<MetricRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        MetricRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/metrics.yaml"))
            .expect("tests/golden/metrics.yaml")
    })
}

/// libFuzzer's panic hook aborts on every panic, even one tsrelay catches on
/// purpose (`telemetry::contain_panic` around promql-parser); only those pass.
fn respect_contained_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !tsrelay::telemetry::panic_is_contained() {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    respect_contained_panics();
    let params = Params::parse(None, Some(data));
    for name in ["time", "start", "end"] {
        let _ = params.time(name, Some(0));
    }
    let _ = params.duration("step");
    let _ = params.timeout();

    let Ok(text) = std::str::from_utf8(data) else { return };
    match map_query(text, registry()) {
        Ok(Mapped::Vector(v)) => {
            if let Some(scale) = v.series.scale {
                assert!(scale.is_finite() && scale != 0.0, "{text:?}: scale {scale}");
            }
            assert!(v.range_ms.is_none_or(|r| r >= 0), "{text:?}");
            let def = GraphDef { id: "promql".into(), title: None, unit: None, series: vec![v.series] };
            if let Err(e) = validate_graph(&def, registry()) {
                assert!(!e.to_string().is_empty());
            }
        }
        Ok(Mapped::Scalar(_)) | Ok(Mapped::Unknown { .. }) => {}
        Err(MapError::Parse(m)) => assert!(!m.is_empty(), "{text:?}"),
        Err(MapError::Outside { construct, message }) => {
            assert!(!construct.is_empty() && !message.is_empty(), "{text:?}")
        }
    }
});
