//! Defaults that compose: on a 1 GiB machine (a memory cgroup limited to
//! 1 GiB, which tsrelay reads like a container's limit), any config that only
//! names receivers, sinks and pipelines validates and runs; bounds set
//! explicitly that do not fit are still refused, naming them.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// A memory cgroup limited to `bytes`, below this process's own; removed on drop.
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    fn new(bytes: u64) -> MemoryCgroup {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let name = format!("tsrelay-test-{}-{}", std::process::id(), free_port());
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let (dir, file) = if unified {
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
            (Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')).join(&name), "memory.max")
        } else {
            let path = own
                .lines()
                .find_map(|l| {
                    let mut p = l.splitn(3, ':');
                    let (_, c, path) = (p.next()?, p.next()?, p.next()?);
                    c.split(',').any(|c| c == "memory").then_some(path)
                })
                .expect("a cgroup v1 memory controller");
            (Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')).join(&name), "memory.limit_in_bytes")
        };
        let made = std::fs::create_dir(&dir).and_then(|()| std::fs::write(dir.join(file), bytes.to_string()));
        if let Err(e) = made {
            let _ = std::fs::remove_dir(&dir);
            panic!(
                "cannot create a memory cgroup {} limited to {bytes} bytes ({e}); this test poses as a 1 GiB machine \
                 that way and needs root with a writable cgroup hierarchy",
                dir.display()
            );
        }
        MemoryCgroup { dir }
    }

    /// `tsrelay args...` inside the cgroup.
    fn command(&self, args: &[&str], cwd: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("echo $$ > '{}/cgroup.procs' && exec \"$0\" \"$@\"", self.dir.display()))
            .arg(env!("CARGO_BIN_EXE_tsrelay"))
            .args(args)
            .current_dir(cwd);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TSRELAY_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const GIB: u64 = 1 << 30;

fn two_influx(http: u16, admin: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
[sinks.a]
type = "influxdb"
url = "http://127.0.0.1:1"
database = "a"
[sinks.b]
type = "influxdb"
url = "http://127.0.0.1:1"
database = "b"
[pipelines.main]
receivers = ["http"]
sinks = ["a", "b"]
"#
    )
}

fn file_and_kafka(http: u16, admin: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
[sinks.out]
type = "file"
path = "out.lp"
[sinks.k]
type = "kafka"
brokers = "127.0.0.1:1"
topic = "metrics"
[pipelines.main]
receivers = ["http"]
sinks = ["out"]
"#
    )
}

fn validate(cg: &MemoryCgroup, dir: &Path, config: &str) -> Output {
    std::fs::write(dir.join("tsrelay.toml"), config).unwrap();
    cg.command(&["validate", "--config", "tsrelay.toml"], dir).output().expect("run tsrelay validate")
}

/// Validates, then runs until ready, inside the 1 GiB cgroup.
fn validates_and_runs(config: &str, admin: u16) {
    let cg = MemoryCgroup::new(GIB);
    let dir = tempfile::tempdir().unwrap();
    let out = validate(&cg, dir.path(), config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // 60 % of the cgroup's 1 GiB.
    assert!(stdout.contains("of limits.memory_bytes 614.4 MiB"), "{stdout}");
    assert!(stdout.contains("derived: "), "{stdout}");

    let mut cmd = cg.command(&["run", "--config", "tsrelay.toml"], dir.path());
    let mut p = ChildGuard::spawn("tsrelay", &mut cmd, dir.path());
    wait_for(Duration::from_secs(20), "tsrelay ready inside the 1 GiB cgroup", || {
        assert!(p.is_running(), "tsrelay refused to start:\n{}", p.log_tail());
        http_get(loopback(admin), "/metrics").map(|_| ())
    });
    let metrics = parse_metrics(&http_get(loopback(admin), "/metrics").unwrap().1);
    let limit = sum_metric(&metrics, "tsrelay_memory_limit_bytes", &[]);
    assert_eq!(limit, (GIB / 100 * 60) as f64, "{metrics:?}");
    assert!(p.terminate(Duration::from_secs(20)), "stops");
}

#[test]
fn two_influxdb_sinks_with_defaults_start_on_a_1_gib_machine() {
    let (http, admin) = (free_port(), free_port());
    validates_and_runs(&two_influx(http, admin), admin);
}

#[test]
fn a_file_sink_and_an_unused_kafka_sink_start_on_a_1_gib_machine() {
    let (http, admin) = (free_port(), free_port());
    validates_and_runs(&file_and_kafka(http, admin), admin);
}

#[test]
fn an_explicit_queue_that_does_not_fit_is_refused_by_name() {
    let cg = MemoryCgroup::new(GIB);
    let dir = tempfile::tempdir().unwrap();
    let config = two_influx(free_port(), free_port())
        .replace("database = \"a\"", "database = \"a\"\nqueue = { max_samples = 5000000 }");
    let out = validate(&cg, dir.path(), &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an oversize explicit queue must be refused");
    assert!(stderr.contains("exceeds limits.memory_bytes = 614.4 MiB"), "{stderr}");
    assert!(stderr.contains("largest: queues of sinks.a, sinks.b") && stderr.contains("5000000 samples"), "{stderr}");
    // The same through `run`.
    let mut cmd = cg.command(&["run", "--config", "tsrelay.toml"], dir.path());
    let out = cmd.output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sinks.a") && stderr.contains("5000000 samples"), "{stderr}");
}
