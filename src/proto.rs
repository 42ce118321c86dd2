//! Generated protobuf types (build.rs).

pub mod v1 {
    tonic::include_proto!("tsrelay.v1");
}
