//! The web console (`/` on the query listener): plain HTML, CSS and JS compiled
//! into the binary. The page only talks to the listener that served it
//! (`/api/v1/status`, `/api/v1/graphs`, `/api/v1/backends`, `/api/v1/graph/*`,
//! `/api/v1/catalog`); no CDN, no other network access.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// A file of the console: its path, media type and bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", media_type: "text/html; charset=utf-8", body: include_str!("assets/index.html") },
    Asset {
        path: "/console/app.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset { path: "/console/style.css", media_type: "text/css; charset=utf-8", body: include_str!("assets/style.css") },
    Asset {
        path: "/console/vendor/uPlot.iife.min.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/console/vendor/uPlot.min.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("assets/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "/console/vendor/uPlot.LICENSE",
        media_type: "text/plain; charset=utf-8",
        body: include_str!("assets/vendor/uplot/LICENSE"),
    },
];

/// The console's paths: served without a key even when the listener requires
/// one (they hold no data; the page asks for a `read` key and sends it with
/// every API call).
pub fn open_paths() -> Vec<String> {
    ASSETS.iter().map(|a| a.path.to_string()).collect()
}

/// What the page may load: itself only (no inline script, no other origin).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

pub fn router() -> Router {
    let mut router = Router::new();
    for a in ASSETS {
        let (media_type, body) = (a.media_type, a.body);
        router = router.route(
            a.path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, media_type),
                        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_references_only_served_assets() {
        let index = super::ASSETS[0].body;
        for needle in ["/console/app.js", "/console/style.css", "/console/vendor/uPlot.iife.min.js"] {
            assert!(index.contains(needle), "index.html misses {needle}");
        }
        assert!(!index.contains("http://") && !index.contains("https://"), "no other origin");
    }
}
