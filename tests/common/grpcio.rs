//! The Python grpcio client (tests/clients/grpc_ingest.py) against tsrelay's
//! gRPC receiver: a real gRPC implementation that is not tonic.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "python3 -m pip install grpcio grpcio-tools";

/// Generates the Python stubs of proto/tsrelay/v1/ingest.proto into `dir`
/// and returns `dir`. Fails with the install command when grpcio is missing.
pub fn stubs(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = Command::new("python3").args(["-c", "import grpc, grpc_tools"]).status();
    assert!(
        matches!(check, Ok(s) if s.success()),
        "the gRPC tests need Python's grpcio and grpcio-tools. Install them with: {INSTALL} (or run scripts/install-test-deps)"
    );
    let out = dir.join("grpc_stubs");
    std::fs::create_dir_all(&out).expect("stub dir");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", root.join("proto").display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(root.join("proto/tsrelay/v1/ingest.proto"))
        .status()
        .expect("run grpc_tools.protoc");
    assert!(status.success(), "grpc_tools.protoc failed");
    out
}

/// Runs the client (`mode` and options as in the script's usage) and returns its JSON answer.
pub fn run(stubs: &Path, target: &str, mode: &str, options: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/grpc_ingest.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(stubs)
        .arg(target)
        .arg(mode)
        .args(options)
        .output()
        .expect("run the grpcio client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "grpcio client {mode} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("grpcio client printed {stdout:?}: {e}"))
}

/// Calls OTLP `MetricsService/Export` with grpcio and the stubs of pip
/// `opentelemetry-proto` (tests/scripts/otlp_grpc_call.py; options as in its
/// usage) and returns its JSON answer: `codes`, `details`, `metadata`, `rejected`.
pub fn otlp_export(target: &str, options: &[&str]) -> serde_json::Value {
    let check = Command::new("python3")
        .args(["-c", "import grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc"])
        .status();
    assert!(
        matches!(check, Ok(s) if s.success()),
        "the OTLP gRPC client needs grpcio and opentelemetry-proto. Install them with: \
         python3 -m pip install grpcio opentelemetry-exporter-otlp (or run scripts/install-test-deps)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/otlp_grpc_call.py");
    let out = Command::new("python3").arg(script).arg(target).args(options).output().expect("run otlp_grpc_call.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "otlp_grpc_call.py failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("otlp_grpc_call.py printed {stdout:?}: {e}"))
}
