#!/usr/bin/env python3
"""A grpcio client of tsrelay.v1.Ingest for the integration tests.

Usage: grpc_ingest.py STUBS_DIR TARGET MODE [options]

STUBS_DIR holds the modules grpc_tools.protoc generated from
proto/tsrelay/v1/ingest.proto. Prints one JSON object on stdout describing
what happened; exits 0 unless the client itself failed.

Modes:
  write     --repeat unary Writes (default 1) of --samples samples each; prints the
            last one's {"code", "accepted", "metadata"} and every "codes"
  busy      opens a WriteStream and keeps it open, then makes a unary Write
            (prints the unary call's code and trailing metadata)
  steady    unary Writes every --every seconds for --seconds seconds on one
            channel; prints {"ok": N, "failed": [codes...]}
  idle      one Write, waits --seconds, another Write on the same channel
  malformed unary Writes of hand-made bytes through grpcio's raw-bytes call: a
            series whose label name is not UTF-8, one whose label runs past the
            series' end, then a good request; prints every {"code", "details"}
Options: --tls-ca F [--tls-cert F --tls-key F] for TLS / mutual TLS;
--key K sends `authorization: Bearer K` as call credentials (TLS) or metadata.
"""
import argparse
import json
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stubs")
    ap.add_argument("target")
    ap.add_argument("mode")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--every", type=float, default=0.2)
    ap.add_argument("--tls-ca")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--key")
    ap.add_argument("--name", default="grpcio_test")
    a = ap.parse_args()
    sys.path.insert(0, a.stubs)
    import grpc
    from tsrelay.v1 import ingest_pb2, ingest_pb2_grpc

    def request(n, rid=1):
        now = int(time.time() * 1000)
        series = ingest_pb2.Series(
            labels=[ingest_pb2.Label(name="__name__", value=a.name), ingest_pb2.Label(name="host", value="py")],
            samples=[ingest_pb2.Sample(value=float(i), timestamp=now - n + i) for i in range(n)],
            type=ingest_pb2.GAUGE,
        )
        return ingest_pb2.WriteRequest(series=[series], id=rid)

    metadata = []
    if a.tls_ca:
        root = open(a.tls_ca, "rb").read()
        cert = open(a.tls_cert, "rb").read() if a.tls_cert else None
        key = open(a.tls_key, "rb").read() if a.tls_key else None
        creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
        if a.key:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(a.key))
        channel = grpc.secure_channel(a.target, creds)
    else:
        channel = grpc.insecure_channel(a.target)
        if a.key:
            metadata = [("authorization", "Bearer " + a.key)]
    stub = ingest_pb2_grpc.IngestStub(channel)

    def unary(n, rid=1):
        try:
            resp, call = stub.Write.with_call(request(n, rid), timeout=10, metadata=metadata)
            return {"code": "OK", "accepted": resp.accepted, "metadata": {}}
        except grpc.RpcError as e:
            md = {k: v for k, v in (e.trailing_metadata() or [])}
            return {"code": e.code().name, "details": e.details(), "metadata": md}

    if a.mode == "write":
        answers = [unary(a.samples, i + 1) for i in range(a.repeat)]
        out = answers[-1]
        out["codes"] = [r["code"] for r in answers]
        print(json.dumps(out))
    elif a.mode == "busy":
        started = threading.Event()
        release = threading.Event()

        def requests():
            yield request(1, 1)
            started.set()
            release.wait(20)

        answers = stub.WriteStream(requests(), metadata=metadata)
        first = next(answers)
        started.wait(10)
        out = unary(1, 2)
        out["stream_first_accepted"] = first.accepted
        release.set()
        try:
            for _ in answers:
                pass
        except grpc.RpcError:
            pass
        print(json.dumps(out))
    elif a.mode == "steady":
        ok, failed = 0, []
        deadline = time.time() + a.seconds
        rid = 0
        while time.time() < deadline:
            rid += 1
            r = unary(1, rid)
            if r["code"] == "OK":
                ok += 1
            else:
                failed.append(r["code"])
            time.sleep(a.every)
        print(json.dumps({"ok": ok, "failed": failed}))
    elif a.mode == "idle":
        first = unary(1, 1)
        time.sleep(a.seconds)
        second = unary(1, 2)
        print(json.dumps({"first": first["code"], "second": second["code"]}))
    elif a.mode == "malformed":
        raw = channel.unary_unary(
            "/tsrelay.v1.Ingest/Write",
            request_serializer=lambda b: b,
            response_deserializer=ingest_pb2.WriteResponse.FromString,
        )
        good = request(1, 3).SerializeToString()
        bodies = [
            b"\x10\x01" + b"\x0a\x05\x0a\x03\x0a\x01\xff",  # id 1; series { label { name: 0xff } }
            b"\x10\x02" + b"\x0a\x04\x0a\x09\x0a\x01",  # id 2; a label 9 bytes long in a 4-byte series
            good,
        ]
        answers = []
        for body in bodies:
            try:
                resp = raw(body, timeout=10, metadata=metadata)
                answers.append({"code": "OK", "accepted": resp.accepted})
            except grpc.RpcError as e:
                answers.append({"code": e.code().name, "details": e.details()})
        print(json.dumps({"answers": answers}))
    else:
        sys.exit("unknown mode " + a.mode)
    channel.close()


if __name__ == "__main__":
    main()
