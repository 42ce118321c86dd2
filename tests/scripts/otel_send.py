"""Sends a fixed set of metrics with the OpenTelemetry Python SDK's OTLP exporter.

usage: otel_send.py grpc|http ENDPOINT SERVICE [delta]

Records a counter, an up-down counter, a histogram and an observable gauge,
exports twice (the counter grows between exports), then shuts down. With
"delta" the counter and histogram are exported with delta temporality.
"""
import sys

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

protocol, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
delta = len(sys.argv) > 4 and sys.argv[4] == "delta"
temporality = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA} if delta else {}
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, preferred_temporality=temporality)
else:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, preferred_temporality=temporality)

reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
resource = Resource.create({"service.name": service, "service.instance.id": "i1", "host.name": "h1"})
provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = provider.get_meter("tsrelay.test")

requests = meter.create_counter("app.requests", unit="{request}")
depth = meter.create_up_down_counter("app.queue.depth")
latency = meter.create_histogram("app.latency", unit="s")
meter.create_observable_gauge("app.temperature", callbacks=[lambda _: [Observation(21.5, {"room": "x"})]], unit="Cel")

requests.add(5, {"route": "/a"})
requests.add(2, {"route": "/b"})
depth.add(3)
for v in (0.1, 0.3, 2.0):
    latency.record(v)
if not reader.force_flush(timeout_millis=20_000):
    sys.exit("first export failed")
requests.add(4, {"route": "/a"})
latency.record(7.0)
if not reader.force_flush(timeout_millis=20_000):
    sys.exit("second export failed")
provider.shutdown()
print("sent")
