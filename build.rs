fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc, so a fresh machine needs no system package to build.
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    // tsrelay's own proto: the messages and the client here; the server is built
    // apart, taking `WriteRequest` as the bytes it arrived in (the receiver walks
    // them in place, src/receivers/grpc/raw.rs), the rest from this module.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/tsrelay/v1/ingest.proto"], &["proto"])?;
    let server_out = std::path::Path::new(&std::env::var("OUT_DIR")?).join("ingest_server");
    std::fs::create_dir_all(&server_out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&server_out)
        .extern_path(".tsrelay.v1", "crate::proto::v1")
        .extern_path(".tsrelay.v1.WriteRequest", "crate::receivers::grpc::RawWriteRequest")
        .compile_protos(&["proto/tsrelay/v1/ingest.proto"], &["proto"])?;
    // Prometheus remote-write 1.0 (package `prometheus`) and 2.0 (`io.prometheus.write.v2`),
    // vendored from the Prometheus repository; they import each other from `prompb/`.
    tonic_prost_build::configure().build_client(false).build_server(false).compile_protos(
        &["proto/prometheus/prompb/remote.proto", "proto/prometheus/prompb/io/prometheus/write/v2/types.proto"],
        &["proto/prometheus/prompb"],
    )?;
    otlp()?;
    Ok(())
}

/// OTLP metrics, vendored from opentelemetry-proto. OTLP/HTTP also carries the
/// messages as JSON (the protobuf JSON mapping with OTLP's exceptions: ids in
/// hex, enums as numbers, 64-bit integers as strings or numbers), so the
/// messages derive `Deserialize` with the field helpers in `src/codecs/otlp/json.rs`.
fn otlp() -> Result<(), Box<dyn std::error::Error>> {
    const J: &str = "crate::codecs::otlp::json";
    const M: &str = ".opentelemetry.proto.metrics.v1";
    const C: &str = ".opentelemetry.proto.common.v1";
    let mut b = tonic_prost_build::configure()
        .build_client(false)
        .message_attribute(
            ".opentelemetry.proto",
            "#[derive(serde::Deserialize)] #[serde(rename_all = \"camelCase\", default)]",
        )
        .enum_attribute(".opentelemetry.proto", "#[derive(serde::Deserialize)] #[serde(rename_all = \"camelCase\")]");
    // A oneof is spelled as its chosen field in the parent object. Matched as a
    // path suffix (no leading dot) so it does not reach the oneof's variants too.
    for oneof in ["Metric.data", "NumberDataPoint.value", "Exemplar.value"].map(|f| format!("{}.{f}", &M[1..])) {
        b = b.field_attribute(oneof, "#[serde(flatten)]");
    }
    b = b.field_attribute(format!("{}.AnyValue.value", &C[1..]), "#[serde(flatten)]");
    let with = |helper: &str| format!("#[serde(deserialize_with = \"{J}::{helper}\")]");
    let fields: &[(&str, &[&str])] = &[
        (
            "u64",
            &[
                "NumberDataPoint.start_time_unix_nano",
                "NumberDataPoint.time_unix_nano",
                "HistogramDataPoint.start_time_unix_nano",
                "HistogramDataPoint.time_unix_nano",
                "HistogramDataPoint.count",
                "ExponentialHistogramDataPoint.start_time_unix_nano",
                "ExponentialHistogramDataPoint.time_unix_nano",
                "ExponentialHistogramDataPoint.count",
                "ExponentialHistogramDataPoint.zero_count",
                "SummaryDataPoint.start_time_unix_nano",
                "SummaryDataPoint.time_unix_nano",
                "SummaryDataPoint.count",
                "Exemplar.time_unix_nano",
            ],
        ),
        ("u64_list", &["HistogramDataPoint.bucket_counts", "ExponentialHistogramDataPoint.Buckets.bucket_counts"]),
        ("i64", &["NumberDataPoint.value.as_int", "Exemplar.value.as_int"]),
        (
            "f64",
            &[
                "NumberDataPoint.value.as_double",
                "Exemplar.value.as_double",
                "SummaryDataPoint.sum",
                "SummaryDataPoint.ValueAtQuantile.quantile",
                "SummaryDataPoint.ValueAtQuantile.value",
                "ExponentialHistogramDataPoint.zero_threshold",
            ],
        ),
        (
            "f64_opt",
            &[
                "HistogramDataPoint.sum",
                "HistogramDataPoint.min",
                "HistogramDataPoint.max",
                "ExponentialHistogramDataPoint.sum",
                "ExponentialHistogramDataPoint.min",
                "ExponentialHistogramDataPoint.max",
            ],
        ),
        ("f64_list", &["HistogramDataPoint.explicit_bounds"]),
        ("hex_bytes", &["Exemplar.span_id", "Exemplar.trace_id"]),
    ];
    for (helper, paths) in fields {
        for path in *paths {
            b = b.field_attribute(format!("{M}.{path}"), with(helper));
        }
    }
    b = b
        .field_attribute(format!("{C}.AnyValue.value.int_value"), with("i64"))
        .field_attribute(format!("{C}.AnyValue.value.double_value"), with("f64"))
        .field_attribute(format!("{C}.AnyValue.value.bytes_value"), with("base64_bytes"));
    b.compile_protos(&["proto/opentelemetry/proto/collector/metrics/v1/metrics_service.proto"], &["proto"])?;
    Ok(())
}
