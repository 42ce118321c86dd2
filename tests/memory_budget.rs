//! The start-up memory check through the CLI: `tsrelay validate` prints the
//! worst case per consumer, and a config over `limits.memory_bytes` is
//! refused by `validate` and by `run` with the largest consumers named.
mod common;

use std::process::Command;

use common::free_port;

fn config(memory_bytes: u64, queue_samples: u64) -> String {
    format!(
        r#"
[limits]
memory_bytes = {memory_bytes}
[admin]
listen = "127.0.0.1:{admin}"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
[sinks.big]
type = "blackhole"
queue = {{ max_samples = {queue_samples}, when_full = "drop_newest" }}
[sinks.spill]
type = "blackhole"
queue = {{ type = "disk", max_bytes = 10737418240 }}
[pipelines.main]
receivers = ["grpc"]
sinks = ["big", "spill"]
shards = 2
"#,
        admin = free_port(),
        grpc = free_port()
    )
}

fn tsrelay(args: &[&str], config: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tsrelay.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .expect("run tsrelay");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_prints_the_worst_case_of_every_consumer() {
    let (ok, stdout, stderr) = tsrelay(&["validate"], &config(512 << 20, 100_000));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("memory budget: worst case"), "{stdout}");
    for consumer in
        ["sinks.big queue (100000 samples)", "sinks.spill disk queue read-ahead", "pipelines.main ingest queue"]
    {
        assert!(stdout.contains(consumer), "{consumer} missing:\n{stdout}");
    }
}

#[test]
fn a_config_that_cannot_fit_is_refused_naming_the_largest_consumers() {
    let config = config(256 << 20, 2_000_000);
    let (ok, _, stderr) = tsrelay(&["validate"], &config);
    assert!(!ok, "validate accepted a config over budget");
    assert!(stderr.contains("exceeds limits.memory_bytes"), "{stderr}");
    assert!(stderr.contains("largest: sinks.big queue (2000000 samples)"), "{stderr}");

    let (ok, _, stderr) = tsrelay(&["run"], &config);
    assert!(!ok, "run started with a config over budget");
    assert!(stderr.contains("largest: sinks.big queue (2000000 samples)"), "{stderr}");
}
