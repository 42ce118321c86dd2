//! OTLP metric and attribute names → Prometheus names, as Prometheus' OTLP
//! endpoint does by default (underscore escaping with suffixes): invalid
//! characters become `_`, the unit is spelled out and appended
//! (`s` → `_seconds`, `By/s` → `_bytes_per_second`, `1` on a gauge → `_ratio`),
//! counters end in `_total`.

/// Prometheus' spelling of common UCUM units.
fn unit_word(unit: &str) -> Option<&str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Splits on anything that is not a letter or digit (`:` kept), dropping empty pieces.
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':')).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Unit tokens to append: `{annotations}` dropped, `a/b` → `a_per_b`.
fn unit_tokens(raw: &str, is_gauge: bool) -> Vec<String> {
    let mut plain = String::with_capacity(raw.len());
    let mut depth = 0usize;
    for c in raw.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let unit = plain.trim();
    if unit.is_empty() {
        return Vec::new();
    }
    if unit == "1" {
        return if is_gauge { vec!["ratio".into()] } else { Vec::new() };
    }
    let (main, per) = match unit.split_once('/') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (unit, None),
    };
    let mut out = Vec::new();
    if !main.is_empty() {
        out.extend(tokens(unit_word(main).unwrap_or(main)));
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        out.push("per".into());
        out.extend(tokens(per_unit_word(per).unwrap_or(per)));
    }
    out
}

/// The Prometheus name of an OTLP metric.
pub fn metric_name(
    name: &str,
    unit: &str,
    is_counter: bool,
    is_gauge: bool,
    add_unit: bool,
    add_total: bool,
) -> String {
    if !add_unit && !add_total {
        return escape(name, false);
    }
    let mut parts = tokens(name);
    if add_total && is_counter {
        parts.retain(|t| t != "total");
    }
    if add_unit {
        let units = unit_tokens(unit, is_gauge);
        // Not twice: `request_duration_seconds` with unit `s` stays as it is.
        let already =
            !units.is_empty() && parts.len() >= units.len() && parts[parts.len() - units.len()..] == units[..];
        if !already {
            parts.extend(units);
        }
    }
    if add_total && is_counter {
        parts.push("total".into());
    }
    let mut out = parts.join("_");
    if out.is_empty() {
        return escape(name, false);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A name with every invalid character replaced by `_`; for labels, a
/// leading digit gets `key_` in front and a single leading `_` gets `key`.
pub fn escape(name: &str, label: bool) -> String {
    let mut out: String = name.chars().map(|c| if is_name_char(c) && !(label && c == ':') { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, if label { "key_" } else { "_" });
    } else if label && out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_prometheus_spells_them() {
        assert_eq!(metric_name("http.server.duration", "s", false, false, true, true), "http_server_duration_seconds");
        assert_eq!(
            metric_name("http.server.requests", "{request}", true, false, true, true),
            "http_server_requests_total"
        );
        assert_eq!(metric_name("system.memory.usage", "By", false, true, true, true), "system_memory_usage_bytes");
        assert_eq!(metric_name("cpu.utilization", "1", false, true, true, true), "cpu_utilization_ratio");
        assert_eq!(metric_name("net.io", "By/s", false, true, true, true), "net_io_bytes_per_second");
        assert_eq!(metric_name("requests_total", "", true, false, true, true), "requests_total");
        assert_eq!(metric_name("latency_seconds", "s", false, false, true, true), "latency_seconds");
        assert_eq!(metric_name("2xx.count", "", true, false, true, true), "_2xx_count_total");
        assert_eq!(metric_name("http.server.requests", "1", true, false, false, false), "http_server_requests");
        assert_eq!(escape("service.name", true), "service_name");
        assert_eq!(escape("_private", true), "key_private");
        assert_eq!(escape("9lives", true), "key_9lives");
        assert_eq!(escape("__reserved", true), "__reserved");
    }
}
