//! A real Prometheus (Debian's `prometheus` 2.42) with its remote-write
//! receiver, on a free loopback port, with its TSDB in a temp dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, free_port, http, require_binary, wait_for};

pub const INSTALL_HINT: &str = "apt-get install -y prometheus";

pub struct Prometheus {
    pub process: ChildGuard,
    pub port: u16,
    pub dir: PathBuf,
    starts: u32,
}

/// One series of an instant query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPoint {
    pub labels: BTreeMap<String, String>,
    /// The value as Prometheus prints it ("NaN" for NaN).
    pub value: String,
}

impl Prometheus {
    /// Starts on a free port with a fresh TSDB under `dir`.
    pub fn start(dir: &Path) -> Prometheus {
        Self::start_on(dir, free_port(), 1)
    }

    /// Starts with its own `prometheus.yml` (scrape jobs, `remote_write`: a sender).
    pub fn start_with_config(dir: &Path, config: &str) -> Prometheus {
        std::fs::create_dir_all(dir).expect("create prometheus dir");
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        Self::start_on(dir, free_port(), 1)
    }

    fn start_on(dir: &Path, port: u16, starts: u32) -> Prometheus {
        let bin = require_binary("prometheus", INSTALL_HINT);
        std::fs::create_dir_all(dir.join("data")).expect("create prometheus data dir");
        let config = dir.join("prometheus.yml");
        if !config.exists() {
            std::fs::write(&config, "global: {scrape_interval: 15s}\nscrape_configs: []\n")
                .expect("write prometheus.yml");
        }
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver");
        let mut process = ChildGuard::spawn(&format!("prometheus-{starts}"), &mut cmd, dir);
        let client = http();
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        wait_for(Duration::from_secs(30), "prometheus /-/ready", || {
            if !process.is_running() {
                panic!("prometheus exited during start-up:\n{}", process.log_tail());
            }
            client.get(&ready).send().ok().filter(|r| r.status().is_success()).map(|_| ())
        });
        Prometheus { process, port, dir: dir.to_path_buf(), starts }
    }

    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        if !self.process.terminate(Duration::from_secs(30)) {
            self.process.kill9();
        }
    }

    /// Starts again on the same port with the same data.
    pub fn restart(&mut self) {
        if self.process.is_running() {
            self.stop();
        }
        let next = Self::start_on(&self.dir, self.port, self.starts + 1);
        *self = next;
    }

    /// An instant query at `time_ms` (or now).
    pub fn query(&self, promql: &str, time_ms: Option<i64>) -> Vec<QueryPoint> {
        let mut params = vec![("query", promql.to_string())];
        if let Some(t) = time_ms {
            params.push(("time", format!("{:.3}", t as f64 / 1000.0)));
        }
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let answer: serde_json::Value = http()
            .get(&url)
            .query(&params)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("query {promql:?} failed: {e}"));
        assert_eq!(answer["status"], "success", "query {promql:?}: {answer}");
        answer["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| QueryPoint {
                        labels: s["metric"]
                            .as_object()
                            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                            .unwrap_or_default(),
                        value: s["value"][1].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single value of a scalar-like query (`sum(...)`, `count(...)`), 0 when empty.
    pub fn query_number(&self, promql: &str, time_ms: Option<i64>) -> f64 {
        self.query(promql, time_ms).first().and_then(|p| p.value.parse().ok()).unwrap_or(0.0)
    }
}
