//! Generated protobuf types (build.rs).

pub mod v1 {
    tonic::include_proto!("tsrelay.v1");

    // `ingest_server`: the `Ingest` server, taking requests as bytes
    // (`crate::receivers::grpc::RawWriteRequest`, see build.rs).
    include!(concat!(env!("OUT_DIR"), "/ingest_server/tsrelay.v1.rs"));
}

/// Prometheus remote-write 1.0 messages (`proto/prometheus/prompb/`, vendored).
/// The sink encodes by hand; the receiver decodes with these types.
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// Prometheus remote-write 2.0 messages (`io.prometheus.write.v2`, vendored).
pub mod write_v2 {
    tonic::include_proto!("io.prometheus.write.v2");
}

/// OTLP metrics (`proto/opentelemetry/`, vendored), with the nesting the
/// generated code refers to (`super::super::...`).
#[allow(clippy::all)]
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        pub mod resource {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        pub mod metrics {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.metrics.v1");
            }
        }
        pub mod collector {
            pub mod metrics {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.collector.metrics.v1");
                }
            }
        }
    }
}
