"""Calls OTLP MetricsService/Export with the stubs of pip `opentelemetry-proto`
(installed with the OpenTelemetry exporter) and grpcio, and prints what came back.

usage: otlp_grpc_call.py HOST:PORT [--key K] [--points N] [--repeat R] [--name NAME]

Each call carries one gauge with N points (distinct `i` attributes). Prints one
JSON object: {"codes": [...], "details": [...], "metadata": {trailing metadata
of the last failure}, "rejected": [rejected_data_points of each OK call]}.
"""
import argparse
import json
import time

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

p = argparse.ArgumentParser()
p.add_argument("target")
p.add_argument("--key")
p.add_argument("--points", type=int, default=1)
p.add_argument("--repeat", type=int, default=1)
p.add_argument("--name", default="otlp_grpc_test")
a = p.parse_args()


def request(call):
    now = time.time_ns()
    points = [
        metrics_pb2.NumberDataPoint(
            time_unix_nano=now,
            as_double=float(i),
            attributes=[common_pb2.KeyValue(key="i", value=common_pb2.AnyValue(string_value=f"{call}-{i}"))],
        )
        for i in range(a.points)
    ]
    metric = metrics_pb2.Metric(name=a.name, gauge=metrics_pb2.Gauge(data_points=points))
    resource = resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="grpc-test"))]
    )
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])])
        ]
    )


out = {"codes": [], "details": [], "metadata": {}, "rejected": []}
with grpc.insecure_channel(a.target) as channel:
    stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
    metadata = [("authorization", f"Bearer {a.key}")] if a.key else []
    for call in range(a.repeat):
        try:
            resp = stub.Export(request(call), metadata=metadata, timeout=15)
            out["codes"].append("OK")
            out["details"].append("")
            out["rejected"].append(resp.partial_success.rejected_data_points)
        except grpc.RpcError as e:
            out["codes"].append(e.code().name)
            out["details"].append(e.details())
            out["metadata"] = {k: v for k, v in (e.trailing_metadata() or [])}
print(json.dumps(out))
