//! Shared test harness: free loopback ports, temp dirs, the tsrelay binary as
//! a child process, real backend servers as child processes, and polling.
//!
//! Every server a test needs is started here on 127.0.0.1 with a free port
//! and a temp dir, and killed when its handle drops. A missing binary fails
//! the test with the command that installs it.
#![allow(dead_code)]

pub mod fault_http;
pub mod kafka;
pub mod prometheus;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
/// A port free on 127.0.0.1 and not handed out before in this process: the
/// kernel may offer a just-released port again, and two roles of one test
/// (say a receiver and the admin endpoint) must never share one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
    panic!("no fresh free port on 127.0.0.1 after 1000 tries")
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Finds an executable on PATH (or an absolute path); panics with `install` when missing.
pub fn require_binary(name: &str, install: &str) -> PathBuf {
    let candidate = Path::new(name);
    if candidate.is_absolute() && candidate.is_file() {
        return candidate.to_path_buf();
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "test needs `{name}`, which is not installed. Install it with: {install} (or run scripts/install-test-deps)"
    );
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed (and reaped) when dropped.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> ChildGuard {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard { child, name: name.to_string(), log }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit; returns whether it exited.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET over std networking: usable from sync and async tests
/// alike (a blocking reqwest client must not be dropped inside a runtime).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Blocking HTTP client for sync tests (not inside an async runtime).
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

/// Parses Prometheus text format into `series → value` (series as printed, e.g. `name{a="b"}`).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A tsrelay daemon running as a child process with a config written to a temp dir.
pub struct Tsrelay {
    pub process: ChildGuard,
    pub dir: PathBuf,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
}

impl Tsrelay {
    /// Writes `config` (TOML; `{admin}` is replaced with a free admin address,
    /// `{dir}` with the temp dir) and starts `tsrelay run`, waiting for `/readyz`
    /// to answer (ready or not: a failing sink may be the point of the test).
    pub fn start(dir: &Path, config: &str) -> Tsrelay {
        let admin = loopback(free_port());
        let config = config.replace("{admin}", &admin.to_string()).replace("{dir}", &dir.display().to_string());
        let config =
            if config.contains("[admin]") { config } else { format!("{config}\n[admin]\nlisten = \"{admin}\"\n") };
        let config_path = dir.join("tsrelay.toml");
        std::fs::write(&config_path, config).expect("write config");
        Self::start_with_file(dir, &config_path, admin)
    }

    /// Starts (or restarts) with an existing config file.
    pub fn start_with_file(dir: &Path, config_path: &Path, admin: SocketAddr) -> Tsrelay {
        let bin = env!("CARGO_BIN_EXE_tsrelay");
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--config"]).arg(config_path).current_dir(dir).env("RUST_LOG", "info,tsrelay=debug");
        // Only the test's config file decides; no stray override from the environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TSRELAY_") {
                cmd.env_remove(k);
            }
        }
        let mut process = ChildGuard::spawn("tsrelay", &mut cmd, dir);
        wait_for(Duration::from_secs(20), "tsrelay admin endpoint", || {
            if !process.is_running() {
                panic!("tsrelay exited during start-up:\n{}", process.log_tail());
            }
            http_get(admin, "/readyz").map(|_| ())
        });
        Tsrelay { process, dir: dir.to_path_buf(), admin, config_path: config_path.to_path_buf() }
    }

    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let (_, text) = http_get(self.admin, "/metrics").unwrap_or_default();
        parse_metrics(&text)
    }

    /// Sum of every series of `name` whose labels contain all of `labels` (`k="v"` strings).
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        sum_metric(&self.metrics(), name, labels)
    }
}

pub fn sum_metric(m: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let base = k.split('{').next().unwrap_or("");
            base == name && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Samples from a line-protocol file written by the file sink: `(series, value, ts_ns)`.
pub fn read_lp_file(path: &Path) -> Vec<(String, f64, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.rsplitn(3, ' ');
            let ts = parts.next()?.parse().ok()?;
            let field = parts.next()?;
            let series = parts.next()?.to_string();
            let value = field.strip_prefix("value=")?.parse().ok()?;
            Some((series, value, ts))
        })
        .collect()
}

pub mod fifo;
pub mod grpc_client;
pub mod grpcio;
pub mod influxdb;
pub mod load;
pub mod rrdcached;
