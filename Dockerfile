# syntax=docker/dockerfile:1
#
# tsrelay image: the daemon and the load generator, built in a Rust image and
# copied into a slim Debian runtime that runs as an unprivileged user.
#   docker build -t tsrelay:local .
#   docker run --rm -p 8186:8186 -p 4317:4317 -p 9188:9188 tsrelay:local
# Config: /etc/tsrelay/tsrelay.toml (mount your own over it). Data (disk
# queues): /var/lib/tsrelay (mount a volume; the image works with a
# read-only root filesystem).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The rdkafka crate builds its bundled librdkafka with the C toolchain, make
# and zlib headers this image has, and protoc comes from the
# protoc-bin-vendored crate. The profile-guided build (scripts/build-dist)
# needs llvm-profdata, and python3 and curl for its training run on
# 127.0.0.1.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && rustup component add llvm-tools
COPY . .
# The cache mounts keep the crate registry and compiled dependencies between
# builds; the binaries are copied out because the target cache is not part
# of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    scripts/build-dist \
 && install -D -m 0755 -t /out target/dist/tsrelay target/dist/tsrelay-loadgen

# ---- runtime ----------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tsrelay \
 && useradd --system --uid 10001 --gid tsrelay --no-create-home \
      --home-dir /var/lib/tsrelay --shell /usr/sbin/nologin tsrelay \
 && install -d -o tsrelay -g tsrelay -m 0750 /var/lib/tsrelay \
 && install -d -m 0755 /etc/tsrelay

COPY --from=builder /out/tsrelay /out/tsrelay-loadgen /usr/local/bin/
COPY deploy/docker/healthcheck /usr/local/bin/tsrelay-healthcheck
COPY deploy/docker/tsrelay.toml /etc/tsrelay/tsrelay.toml

# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/tsrelay

# HTTP (line protocol, NDJSON), gRPC, admin (/metrics, /healthz, /readyz).
EXPOSE 8186 4317 9188

# Liveness, as the Helm chart probes it. The runtime has no curl: the check
# speaks HTTP/1.0 to /healthz through bash's /dev/tcp.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/tsrelay-healthcheck"]

ENTRYPOINT ["/usr/local/bin/tsrelay"]
CMD ["run", "--config", "/etc/tsrelay/tsrelay.toml"]
