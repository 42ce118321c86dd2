//! Feeding a running tsrelay through its gRPC receiver (tsrelay.v1.Ingest).

use tsrelay::proto::v1::ingest_client::IngestClient;
use tsrelay::proto::v1::{Label, MetricType, Sample, Series, WriteRequest, WriteResponse};

/// One series for [`write`]: labels (including `__name__`), `(value, ts_ms)` points, kind.
pub fn series(labels: &[(&str, &str)], points: &[(f64, i64)], kind: MetricType) -> Series {
    Series {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: points.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
        r#type: kind as i32,
        unit: String::new(),
    }
}

/// Sends one `Write` to the gRPC receiver on 127.0.0.1:`port` and returns the answer.
pub fn write(port: u16, series: Vec<Series>) -> WriteResponse {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let mut client = IngestClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("connect to tsrelay gRPC on port {port}: {e}"));
        client.write(WriteRequest { series, id: 1 }).await.expect("gRPC Write").into_inner()
    })
}

/// Writes and asserts that every sample was accepted.
pub fn write_all(port: u16, series: Vec<Series>) {
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    let r = write(port, series);
    assert_eq!(r.accepted as usize, n, "tsrelay refused samples: {:?}", r.errors);
}
