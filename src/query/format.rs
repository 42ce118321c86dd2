//! `tsrelay graph render`: one render without a daemon, printed as a table, JSON or CSV.

use std::fmt::Write;

use super::request::RenderRequest;
use super::result::RenderResult;
use super::service::{QueryService, now_ms};
use crate::config::LoadedConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One row per timestamp, one column per line (legend as header).
    Table,
    /// The API's `data` object.
    Json,
    /// `timestamp_ms,legend,value` rows; empty value for `null`.
    Csv,
}

/// Builds the query service from `loaded` and renders `request` on a small runtime of its own.
pub fn render_once(loaded: &LoadedConfig, request: &RenderRequest, format: Format) -> Result<String, String> {
    let config = loaded.config.query.clone().unwrap_or_default();
    let service = QueryService::from_config(loaded, &config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let result = runtime
        .block_on(service.render(request, now_ms()))
        .map_err(|e| format!("{} ({}): {e}", e.status(), e.error_type()))?;
    Ok(format_result(&result, format))
}

pub fn format_result(r: &RenderResult, format: Format) -> String {
    let value = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out = String::new();
    match format {
        Format::Json => {
            out = serde_json::to_string_pretty(r).unwrap_or_default();
            out.push('\n');
        }
        Format::Csv => {
            out.push_str("timestamp_ms,legend,value\n");
            for s in &r.series {
                for &(t, v) in &s.points {
                    let _ = writeln!(out, "{t},{},{}", csv_field(&s.legend), value(v));
                }
            }
        }
        Format::Table => {
            let mut headers = vec!["time".to_string()];
            headers.extend(r.series.iter().map(|s| s.legend.clone()));
            let mut rows: Vec<Vec<String>> = vec![headers];
            let n = r.series.first().map_or(0, |s| s.points.len());
            for k in 0..n {
                let t = r.series[0].points[k].0;
                let time = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.max(0) as u64),
                );
                let mut row = vec![time.to_string()];
                row.extend(
                    r.series.iter().map(|s| s.points[k].1.map_or_else(|| "-".to_string(), |v| format!("{v:.6}"))),
                );
                rows.push(row);
            }
            let widths: Vec<usize> =
                (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
            for row in &rows {
                let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
                let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            }
            for w in &r.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}
