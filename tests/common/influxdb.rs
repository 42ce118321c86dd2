//! InfluxDB 1.6 (`influxd`) and VictoriaMetrics (the InfluxDB v2 write API)
//! as child processes on loopback, each with its own temp dir and free ports.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, free_port, http, require_binary, wait_for};

pub struct Influxd {
    pub process: ChildGuard,
    pub port: u16,
}

impl Influxd {
    /// Starts influxd 1.x with everything bound to 127.0.0.1; `max_body_size`
    /// (bytes, 0 = the server's default) makes 413 answers testable.
    pub fn start(dir: &Path, max_body_size: usize) -> Influxd {
        let bin = require_binary("influxd", "apt-get install influxdb influxdb-client");
        let root = dir.join("influxd");
        std::fs::create_dir_all(&root).expect("influxd dir");
        let (port, rpc_port) = (free_port(), free_port());
        let body_limit = if max_body_size > 0 { format!("max-body-size = {max_body_size}") } else { String::new() };
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  {body_limit}
"#,
            root = root.display()
        );
        let config_path = root.join("influxdb.conf");
        std::fs::write(&config_path, config).expect("write influxdb.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-config").arg(&config_path);
        let mut process = ChildGuard::spawn("influxd", &mut cmd, dir);
        let client = http();
        wait_for(Duration::from_secs(30), "influxd /ping", || {
            if !process.is_running() {
                panic!("influxd exited during start-up:\n{}", process.log_tail());
            }
            let r = client.get(format!("http://127.0.0.1:{port}/ping")).send().ok()?;
            (r.status() == 204).then_some(())
        });
        Influxd { process, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs an InfluxQL statement; returns the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let r = http()
            .post(format!("{}/query", self.url()))
            .query(&[("db", db), ("q", q), ("epoch", "ms")])
            .send()
            .unwrap_or_else(|e| panic!("InfluxQL {q:?}: {e}"));
        r.json().unwrap_or_else(|e| panic!("InfluxQL {q:?}: answer is not JSON: {e}"))
    }

    pub fn create_database(&self, db: &str) {
        let v = self.query("", &format!("CREATE DATABASE \"{db}\""));
        assert!(v["results"][0].get("error").is_none(), "CREATE DATABASE {db}: {v}");
    }

    pub fn databases(&self) -> Vec<String> {
        let v = self.query("", "SHOW DATABASES");
        v["results"][0]["series"][0]["values"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Writes line protocol directly (bypassing tsrelay); returns the status.
    pub fn write(&self, db: &str, lines: &str) -> u16 {
        http()
            .post(format!("{}/write", self.url()))
            .query(&[("db", db), ("precision", "ns")])
            .body(lines.to_string())
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("write to influxd: {e}"))
    }

    /// `SELECT * FROM <measurement>` as rows of column name → value.
    pub fn select_all(&self, db: &str, measurement: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let v = self.query(db, &format!("SELECT * FROM \"{measurement}\""));
        let Some(series) = v["results"][0]["series"].as_array() else { return Vec::new() };
        let mut rows = Vec::new();
        for s in series {
            let columns: Vec<String> =
                s["columns"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_string)).collect();
            for values in s["values"].as_array().into_iter().flatten() {
                let row = columns.iter().cloned().zip(values.as_array().into_iter().flatten().cloned()).collect();
                rows.push(row);
            }
        }
        rows
    }
}

/// VictoriaMetrics: accepts `/api/v2/write` (line protocol), read back with PromQL.
pub struct VictoriaMetrics {
    pub process: ChildGuard,
    pub port: u16,
}

impl VictoriaMetrics {
    pub fn start(dir: &Path) -> VictoriaMetrics {
        Self::start_on(dir, free_port())
    }

    /// Starts on a given port (a restart keeps the port and `dir/vm-data`).
    pub fn start_on(dir: &Path, port: u16) -> VictoriaMetrics {
        let bin = require_binary("victoria-metrics", "apt-get install victoria-metrics");
        let data = dir.join("vm-data");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1d")
            .arg("-search.latencyOffset=0s");
        let mut process = ChildGuard::spawn("victoria-metrics", &mut cmd, dir);
        let client = http();
        wait_for(Duration::from_secs(30), "victoria-metrics /health", || {
            if !process.is_running() {
                panic!("victoria-metrics exited during start-up:\n{}", process.log_tail());
            }
            let r = client.get(format!("http://127.0.0.1:{port}/health")).send().ok()?;
            r.status().is_success().then_some(())
        });
        VictoriaMetrics { process, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Raw samples of every series matching `selector` (after a forced flush):
    /// `(labels, [(timestamp_ms, value)])`.
    pub fn export(&self, selector: &str) -> Vec<(serde_json::Value, Vec<(i64, f64)>)> {
        let client = http();
        let _ = client.get(format!("{}/internal/force_flush", self.url())).send();
        let text = client
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", selector)])
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("VictoriaMetrics export {selector:?}: {e}"));
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                let ts = v["timestamps"].as_array().cloned().unwrap_or_default();
                let vals = v["values"].as_array().cloned().unwrap_or_default();
                let points = ts.iter().zip(vals.iter()).filter_map(|(t, x)| Some((t.as_i64()?, x.as_f64()?))).collect();
                (v["metric"].clone(), points)
            })
            .collect()
    }
}
