//! Generated protobuf types (build.rs).

pub mod v1 {
    tonic::include_proto!("tsrelay.v1");
}

/// Prometheus remote-write 1.0 messages (`proto/prometheus/remote.proto`).
/// The sink encodes by hand; these types decode in tests and benchmarks.
pub mod prometheus {
    tonic::include_proto!("prometheus");
}
