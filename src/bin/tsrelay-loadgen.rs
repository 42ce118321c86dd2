//! Load generator for end-to-end benchmarks (BENCHMARKS.md, scripts/bench-e2e).
//!
//! Pre-builds request bodies for `--series` distinct series, sends them from
//! `--connections` concurrent senders for `--duration` (or `--requests`), and,
//! given the daemon's pid and admin address, reports what the daemon did with
//! them per CPU-second: the figure DESIGN §6 budgets.
//!
//! Every request carries one timestamp for all of its samples: the wall clock,
//! but at least one millisecond after the last one of the same body, so each
//! series gets strictly increasing timestamps close to real time and the
//! monotonic stage has nothing to drop.
//!
//! `tsrelay-loadgen null-receiver` is the other end of the benchmark: a
//! remote-write endpoint that answers every POST with 204 and counts what it
//! got, so delivery can be checked sample for sample.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// InfluxDB line protocol to /write?precision=ms.
    Lp,
    /// tsrelay.v1.Ingest/Write over gRPC.
    Grpc,
    /// Prometheus remote-write 1.0 (snappy protobuf) to /api/v1/write.
    Rw,
    /// OTLP/HTTP protobuf (gauges) to /v1/metrics.
    Otlp,
}

#[derive(Parser, Debug)]
#[command(name = "tsrelay-loadgen", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Accept remote-write POSTs on any path, answer 204, count requests,
    /// bytes and (with --count-samples) samples; GET /stats shows the counts.
    NullReceiver(NullReceiverArgs),
}

#[derive(Args, Debug)]
struct NullReceiverArgs {
    /// Address to listen on; port 0 picks a free one. The bound address is
    /// printed on stdout as `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Snappy-decode each body and count its samples (costs CPU here, not in the daemon).
    #[arg(long)]
    count_samples: bool,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// HTTP receiver (lp) or gRPC receiver (grpc) address.
    #[arg(long, default_value = "127.0.0.1:8186")]
    target: String,
    #[arg(long, value_enum, default_value = "lp")]
    format: Format,
    /// Distinct series, spread over 100 metric names.
    #[arg(long, default_value_t = 200_000)]
    series: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Series churn, percent of all series replaced per second (line protocol
    /// only): each line carries a tag `gen`, and every second this share of the
    /// series moves to its next generation, i.e. ends, and a new series begins.
    #[arg(long, default_value_t = 0.0)]
    churn_percent: f64,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many requests in total (0 = no limit).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Target samples/s over all senders (0 = as fast as the daemon takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The daemon's pid, to measure its CPU time and peak RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// The daemon's admin address, to read what it delivered and dropped.
    #[arg(long)]
    admin: Option<String>,
    /// A `null-receiver`'s address: wait until it has received everything
    /// and report its count.
    #[arg(long)]
    null_stats: Option<String>,
    /// Send line protocol over HTTPS, trusting this CA (PEM) only.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Send `Authorization: Bearer KEY` with every line-protocol request.
    #[arg(long)]
    key: Option<String>,
    /// Like --key, the key read from this file (a mounted secret).
    #[arg(long, conflicts_with = "key")]
    key_file: Option<std::path::PathBuf>,
    /// Report the daemon's receive → sink request start latency
    /// (`tsrelay_pipeline_latency_seconds`) over this run (needs --admin).
    #[arg(long)]
    latency: bool,
}

/// A request body with a placeholder timestamp on every line.
struct LpBody {
    bytes: Vec<u8>,
    /// Where each line's 13-digit millisecond timestamp starts.
    stamp_at: Vec<usize>,
    /// With churn: where each line's `gen` tag value starts, and the series
    /// index of the body's first line.
    gen_at: Vec<usize>,
    first_series: usize,
    lines: u64,
}

const STAMP_DIGITS: usize = 13;
const GEN_DIGITS: usize = 8;

/// Which generation each series is in, `elapsed` into a run with churn: series
/// `i` of `n` moves on when `elapsed × rate + i / n` passes a whole number, so
/// every second `rate × n` series (spread over all bodies) end and as many begin.
#[derive(Clone, Copy)]
struct Churn {
    per_second: f64,
    series: usize,
    started: Instant,
}

impl Churn {
    fn generation(&self, series: usize, elapsed_s: f64) -> u64 {
        (elapsed_s * self.per_second + series as f64 / self.series as f64) as u64
    }
}

impl LpBody {
    fn stamped(&self, timestamp_ms: i64, churn: Option<Churn>) -> Vec<u8> {
        let digits = format!("{timestamp_ms:0width$}", width = STAMP_DIGITS);
        let mut out = self.bytes.clone();
        for &at in &self.stamp_at {
            out[at..at + STAMP_DIGITS].copy_from_slice(&digits.as_bytes()[..STAMP_DIGITS]);
        }
        if let Some(churn) = churn {
            let elapsed = churn.started.elapsed().as_secs_f64();
            for (line, &at) in self.gen_at.iter().enumerate() {
                let generation = churn.generation(self.first_series + line, elapsed) % 10u64.pow(GEN_DIGITS as u32);
                let digits = format!("{generation:0width$}", width = GEN_DIGITS);
                out[at..at + GEN_DIGITS].copy_from_slice(digits.as_bytes());
            }
        }
        out
    }
}

/// The last timestamp given to each body, behind one lock per body that a sender holds
/// from stamping the body until its answer: the same body is never in flight twice, so
/// its series' timestamps reach the daemon in the order they were given. (Two senders
/// posting one body at once made the later stamp arrive first and the monotonic stage
/// drop the other copy as `out_of_order`: counted, but not the clean loss check the
/// benchmark wants. That happens whenever the bodies are fewer than the senders, e.g.
/// `--series 20000 --batch 10000 --connections 4`, and with 200,000-line bodies.)
#[derive(Default)]
struct BodyStamps(parking_lot::Mutex<std::collections::HashMap<usize, Arc<tokio::sync::Mutex<i64>>>>);

/// A body's stamp, held while the body is in flight.
struct Stamp {
    stamp: i64,
    _in_flight: tokio::sync::OwnedMutexGuard<i64>,
}

impl BodyStamps {
    /// Waits until body `body` is not in flight, then stamps it: now, or one millisecond
    /// after its previous stamp if that is later. Keep the [`Stamp`] until the answer.
    async fn next(&self, body: usize) -> Stamp {
        let lock = self.0.lock().entry(body).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(i64::MIN))).clone();
        let mut last = lock.lock_owned().await;
        let stamp = tsrelay::model::now_ms().max(last.saturating_add(1));
        *last = stamp;
        Stamp { stamp, _in_flight: last }
    }
}

fn series_line(i: usize) -> String {
    format!(
        "bench_metric_{},host=host-{:05},region=r{},service=svc-{} value={}",
        i % 100,
        i / 100,
        i % 7,
        i % 13,
        i % 1000
    )
}

/// `churn`: every line also carries a `gen` tag to be filled in per request.
fn build_lp_bodies(series: usize, batch: usize, churn: bool) -> Vec<LpBody> {
    let empty =
        |first_series| LpBody { bytes: Vec::new(), stamp_at: Vec::new(), gen_at: Vec::new(), first_series, lines: 0 };
    let mut bodies = Vec::new();
    let mut body = empty(0);
    for i in 0..series {
        let line = series_line(i);
        if churn {
            let (series_key, fields) = line.split_once(' ').unwrap_or((&line, ""));
            body.bytes.extend_from_slice(series_key.as_bytes());
            body.bytes.extend_from_slice(b",gen=");
            body.gen_at.push(body.bytes.len());
            body.bytes.extend_from_slice(&[b'0'; GEN_DIGITS]);
            body.bytes.push(b' ');
            body.bytes.extend_from_slice(fields.as_bytes());
        } else {
            body.bytes.extend_from_slice(line.as_bytes());
        }
        body.bytes.push(b' ');
        body.stamp_at.push(body.bytes.len());
        body.bytes.extend_from_slice(&[b'0'; STAMP_DIGITS]);
        body.bytes.push(b'\n');
        body.lines += 1;
        if body.lines as usize == batch {
            bodies.push(std::mem::replace(&mut body, empty(i + 1)));
        }
    }
    if body.lines > 0 {
        bodies.push(body);
    }
    bodies
}

fn build_grpc_requests(series: usize, batch: usize) -> Vec<tsrelay::proto::v1::WriteRequest> {
    use tsrelay::proto::v1::{Label, Sample, Series, WriteRequest};
    let mut out = Vec::new();
    let mut cur = WriteRequest::default();
    for i in 0..series {
        let l = |n: &str, v: String| Label { name: n.into(), value: v };
        cur.series.push(Series {
            labels: vec![
                l("__name__", format!("bench_metric_{}", i % 100)),
                l("host", format!("host-{:05}", i / 100)),
                l("region", format!("r{}", i % 7)),
                l("service", format!("svc-{}", i % 13)),
            ],
            samples: vec![Sample { value: (i % 1000) as f64, timestamp: 0 }],
            ..Default::default()
        });
        if cur.series.len() == batch {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.series.is_empty() {
        out.push(cur);
    }
    out
}

/// The same series as [`build_grpc_requests`], as remote-write 1.0 requests.
fn build_rw_requests(series: usize, batch: usize) -> Vec<tsrelay::proto::prometheus::WriteRequest> {
    use tsrelay::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    build_grpc_requests(series, batch)
        .into_iter()
        .map(|r| WriteRequest {
            timeseries: r
                .series
                .into_iter()
                .map(|s| TimeSeries {
                    labels: s.labels.into_iter().map(|l| Label { name: l.name, value: l.value }).collect(),
                    samples: s.samples.iter().map(|x| Sample { value: x.value, timestamp: 0 }).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// The same series as OTLP gauges: one resource, one metric per name, the
/// other labels as point attributes.
fn build_otlp_requests(
    series: usize,
    batch: usize,
) -> Vec<tsrelay::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest> {
    use tsrelay::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use tsrelay::proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
    use tsrelay::proto::opentelemetry::proto::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    build_grpc_requests(series, batch)
        .into_iter()
        .map(|r| {
            let mut metrics: Vec<Metric> = Vec::new();
            for s in r.series {
                let name = s.labels[0].value.clone();
                let point = NumberDataPoint {
                    attributes: s.labels[1..].iter().map(|l| kv(&l.name, &l.value)).collect(),
                    value: Some(number_data_point::Value::AsDouble(s.samples[0].value)),
                    ..Default::default()
                };
                match metrics.iter_mut().find(|m| m.name == name) {
                    Some(Metric { data: Some(metric::Data::Gauge(g)), .. }) => g.data_points.push(point),
                    _ => metrics.push(Metric {
                        name,
                        data: Some(metric::Data::Gauge(Gauge { data_points: vec![point] })),
                        ..Default::default()
                    }),
                }
            }
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                    ..Default::default()
                }],
            }
        })
        .collect()
}

/// utime + stime of `pid` in seconds, and its peak RSS in bytes.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks / 100.0, hwm_kb * 1024))
}

async fn fetch_text(client: &reqwest::Client, url: String) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

/// The sum of every series of the metric `name` in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// What the daemon's /metrics says at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
struct DaemonCounts {
    delivered: f64,
    dropped: f64,
    /// Cumulative `(le, count)` of `tsrelay_pipeline_latency_seconds`, summed over sinks.
    latency_buckets: Vec<(f64, f64)>,
}

async fn daemon_counts(client: &reqwest::Client, admin: &str) -> Option<DaemonCounts> {
    let text = fetch_text(client, format!("http://{admin}/metrics")).await?;
    Some(DaemonCounts {
        delivered: metric_sum(&text, "tsrelay_sink_sent_samples_total"),
        dropped: metric_sum(&text, "tsrelay_dropped_samples_total"),
        latency_buckets: latency_buckets(&text),
    })
}

fn latency_buckets(text: &str) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("tsrelay_pipeline_latency_seconds_bucket{")) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let Some(count) = line.rsplit_once(' ').and_then(|(_, c)| c.parse::<f64>().ok()) else { continue };
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile of the observations between two bucket snapshots, with
/// linear interpolation inside a bucket (as PromQL's `histogram_quantile`).
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<(f64, f64)> {
    let delta: Vec<(f64, f64)> =
        after.iter().map(|&(le, c)| (le, c - before.iter().find(|(b, _)| *b == le).map_or(0.0, |x| x.1))).collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower_le, mut lower_count) = (0.0, 0.0);
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                return Some((lower_le, total));
            }
            let within = if count > lower_count { (rank - lower_count) / (count - lower_count) } else { 1.0 };
            return Some((lower_le + (le - lower_le) * within, total));
        }
        (lower_le, lower_count) = (le, count);
    }
    None
}

/// `samples` from a null receiver's /stats.
async fn null_samples(client: &reqwest::Client, addr: &str) -> Option<f64> {
    let text = fetch_text(client, format!("http://{addr}/stats")).await?;
    text.lines().find_map(|l| l.strip_prefix("samples ")?.trim().parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.command {
        // One thread: the receiver's own cost stays small and predictable
        // next to the daemon it measures.
        Some(Command::NullReceiver(args)) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(null_receiver::run(args))
        }
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(load(cli.load)),
    }
}

async fn load(args: LoadArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    // The senders' client: HTTPS with the given CA, and the key as a default header.
    let mut sender = reqwest::Client::builder().pool_max_idle_per_host(args.connections);
    if let Some(ca) = &args.tls_ca {
        let pem = std::fs::read(ca)?;
        sender = sender.tls_built_in_root_certs(false).add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let key = match &args.key_file {
        Some(f) => Some(std::fs::read_to_string(f)?.trim().to_string()),
        None => args.key.clone(),
    };
    if let Some(key) = &key {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse()?);
        sender = sender.default_headers(headers);
    }
    let sender = sender.build()?;
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let reasons = Arc::new(RefusalReasons::default());
    let requests = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;
    let per_sender_rate = args.rate as f64 / args.connections as f64;
    let stamps = Arc::new(BodyStamps::default());

    let before_cpu = args.pid.and_then(proc_usage);
    let before = match &args.admin {
        Some(a) => daemon_counts(&client, a).await,
        None => None,
    };
    let before_null = match &args.null_stats {
        Some(a) => Some(null_samples(&client, a).await.ok_or("null receiver: no /stats")?),
        None => None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    // One sequence over all senders: request k sends body k mod n, so the
    // same body comes round again only after every other body was sent.
    let limit = args.requests;
    let next_request = move |requests: &AtomicU64| {
        let k = requests.fetch_add(1, Ordering::Relaxed);
        (Instant::now() < deadline && (limit == 0 || k < limit)).then_some(k)
    };
    match args.format {
        Format::Lp => {
            let churn = (args.churn_percent > 0.0).then(|| Churn {
                per_second: args.churn_percent / 100.0,
                series: args.series,
                started: Instant::now(),
            });
            let bodies = Arc::new(build_lp_bodies(args.series, args.batch, churn.is_some()));
            let scheme = if args.tls_ca.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{}/write?precision=ms", args.target);
            for _ in 0..args.connections {
                let (client, bodies, url, stamps) = (sender.clone(), bodies.clone(), url.clone(), stamps.clone());
                let (sent, refused, requests) = (sent.clone(), refused.clone(), requests.clone());
                let reasons = reasons.clone();
                tasks.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let mut mine = 0u64;
                    while let Some(k) = next_request(&requests) {
                        let n = bodies.len() as u64;
                        let body = &bodies[(k % n) as usize];
                        let stamp = stamps.next((k % n) as usize).await;
                        let stamped = body.stamped(stamp.stamp, churn);
                        match client.post(&url).body(stamped).send().await {
                            Ok(r) if r.status().is_success() => {
                                sent.fetch_add(body.lines, Ordering::Relaxed);
                                mine += body.lines;
                            }
                            answer => {
                                reasons.note_http(&answer);
                                refused.fetch_add(body.lines, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        drop(stamp);
                        pace(per_sender_rate, mine, t0).await;
                    }
                }));
            }
        }
        Format::Grpc => {
            let reqs = Arc::new(build_grpc_requests(args.series, args.batch));
            let endpoint = format!("http://{}", args.target);
            for _ in 0..args.connections {
                let mut grpc = tsrelay::proto::v1::ingest_client::IngestClient::connect(endpoint.clone()).await?;
                let (reqs, stamps) = (reqs.clone(), stamps.clone());
                let (sent, refused, requests) = (sent.clone(), refused.clone(), requests.clone());
                let reasons = reasons.clone();
                tasks.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let mut mine = 0u64;
                    while let Some(k) = next_request(&requests) {
                        let n = reqs.len() as u64;
                        let mut req = reqs[(k % n) as usize].clone();
                        let stamp = stamps.next((k % n) as usize).await;
                        let timestamp = stamp.stamp;
                        req.series.iter_mut().flat_map(|s| s.samples.iter_mut()).for_each(|s| s.timestamp = timestamp);
                        let count = req.series.len() as u64;
                        match grpc.write(req).await {
                            Ok(_) => {
                                sent.fetch_add(count, Ordering::Relaxed);
                                mine += count;
                            }
                            Err(status) => {
                                reasons.note(format!("grpc_{:?}", status.code()));
                                refused.fetch_add(count, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        drop(stamp);
                        pace(per_sender_rate, mine, t0).await;
                    }
                }));
            }
        }
        Format::Rw | Format::Otlp => {
            use prost::Message;
            // Bodies are encoded per request (fresh timestamps) in the load
            // generator's own CPU time, not the daemon's.
            type Encoder = Arc<dyn Fn(usize, i64) -> (Vec<u8>, u64) + Send + Sync>;
            let (encode, url, bodies): (Encoder, String, u64) = match args.format {
                Format::Rw => {
                    let reqs = build_rw_requests(args.series, args.batch);
                    let n = reqs.len() as u64;
                    let f = move |i: usize, ts: i64| {
                        let mut req = reqs[i].clone();
                        req.timeseries.iter_mut().flat_map(|s| s.samples.iter_mut()).for_each(|s| s.timestamp = ts);
                        let raw = req.encode_to_vec();
                        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default();
                        (body, req.timeseries.len() as u64)
                    };
                    (Arc::new(f), format!("http://{}/api/v1/write", args.target), n)
                }
                _ => {
                    let reqs = build_otlp_requests(args.series, args.batch);
                    let n = reqs.len() as u64;
                    let f = move |i: usize, ts: i64| {
                        let mut req = reqs[i].clone();
                        let mut n = 0;
                        for m in req
                            .resource_metrics
                            .iter_mut()
                            .flat_map(|r| r.scope_metrics.iter_mut())
                            .flat_map(|s| s.metrics.iter_mut())
                        {
                            if let Some(tsrelay::proto::opentelemetry::proto::metrics::v1::metric::Data::Gauge(g)) =
                                &mut m.data
                            {
                                for p in &mut g.data_points {
                                    p.time_unix_nano = ts as u64 * 1_000_000;
                                    n += 1;
                                }
                            }
                        }
                        (req.encode_to_vec(), n)
                    };
                    (Arc::new(f), format!("http://{}/v1/metrics", args.target), n)
                }
            };
            let rw = matches!(args.format, Format::Rw);
            let content_type = "application/x-protobuf";
            for _ in 0..args.connections {
                let (client, url, stamps, encode) = (client.clone(), url.clone(), stamps.clone(), encode.clone());
                let (sent, refused, requests) = (sent.clone(), refused.clone(), requests.clone());
                let reasons = reasons.clone();
                tasks.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let mut mine = 0u64;
                    while let Some(k) = next_request(&requests) {
                        let i = (k % bodies) as usize;
                        let stamp = stamps.next(i).await;
                        let (body, count) = encode(i, stamp.stamp);
                        let mut post = client.post(&url).header("Content-Type", content_type);
                        if rw {
                            post = post
                                .header("Content-Encoding", "snappy")
                                .header("X-Prometheus-Remote-Write-Version", "0.1.0");
                        }
                        match post.body(body).send().await {
                            Ok(r) if r.status().is_success() => {
                                sent.fetch_add(count, Ordering::Relaxed);
                                mine += count;
                            }
                            answer => {
                                reasons.note_http(&answer);
                                refused.fetch_add(count, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        drop(stamp);
                        pace(per_sender_rate, mine, t0).await;
                    }
                }));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    // The sequence also counted each sender's final look past the deadline or limit.
    let requests = requests.load(Ordering::Relaxed).saturating_sub(args.connections as u64);
    let mut report = format!(
        "sent {sent} samples in {elapsed:.1} s = {:.0} samples/s; refused {} ({}); requests {requests}\n",
        sent as f64 / elapsed,
        refused.load(Ordering::Relaxed),
        reasons.summary(),
    );

    // Let the queues drain: until every accepted sample is accounted for (and
    // has reached the null receiver), or nothing moved for 3 s; at most 20 s.
    let (mut after, mut after_null) = (None, None);
    let mut still = 0;
    for _ in 0..200 {
        let d = match &args.admin {
            Some(a) => daemon_counts(&client, a).await,
            None => None,
        };
        let nul = match &args.null_stats {
            Some(a) => null_samples(&client, a).await,
            None => None,
        };
        let accounted = match (&before, &d) {
            (Some(b), Some(d)) => d.delivered + d.dropped - b.delivered - b.dropped >= sent as f64,
            _ => true,
        };
        let expected_at_null = match (&before, &d) {
            (Some(b), Some(d)) => d.delivered - b.delivered,
            _ => sent as f64,
        };
        let arrived = match (before_null, nul) {
            (Some(b), Some(n)) => n - b >= expected_at_null,
            _ => true,
        };
        if accounted && arrived {
            (after, after_null) = (d, nul);
            break;
        }
        still = if (&d, nul) == (&after, after_null) { still + 1 } else { 0 };
        (after, after_null) = (d, nul);
        if still >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut result = format!(
        "RESULT sent={sent} elapsed={elapsed:.3} refused={} refused_requests={}",
        refused.load(Ordering::Relaxed),
        reasons.summary()
    );
    if let (Some(b), Some(a)) = (&before, &after) {
        let (delivered, dropped) = (a.delivered - b.delivered, a.dropped - b.dropped);
        let _ = writeln!(report, "daemon delivered {delivered:.0} samples (per sink, summed), dropped {dropped:.0}");
        let _ = write!(result, " delivered={delivered:.0} dropped={dropped:.0}");
        if args.latency {
            match (
                quantile(&b.latency_buckets, &a.latency_buckets, 0.5),
                quantile(&b.latency_buckets, &a.latency_buckets, 0.99),
            ) {
                (Some((p50, n)), Some((p99, _))) => {
                    let _ = writeln!(
                        report,
                        "receive → sink request start over {n:.0} sink requests: p50 {:.1} ms, p99 {:.1} ms",
                        p50 * 1e3,
                        p99 * 1e3
                    );
                    let _ = write!(result, " p50_ms={:.1} p99_ms={:.1}", p50 * 1e3, p99 * 1e3);
                }
                _ => report.push_str("no tsrelay_pipeline_latency_seconds observations in this run\n"),
            }
        }
    }
    if let (Some(b), Some(n)) = (before_null, after_null) {
        let _ = writeln!(report, "null receiver got {:.0} samples", n - b);
        let _ = write!(result, " null={:.0}", n - b);
    }
    if let (Some(pid), Some((cpu0, _))) = (args.pid, before_cpu)
        && let Some((cpu1, hwm)) = proc_usage(pid)
    {
        let cpu = cpu1 - cpu0;
        let per_cpu = sent as f64 / cpu.max(0.01);
        let hwm_mib = hwm as f64 / 1048576.0;
        let _ =
            writeln!(report, "daemon CPU {cpu:.2} s ⇒ {per_cpu:.0} samples per CPU-second; peak RSS {hwm_mib:.1} MiB");
        let _ = write!(result, " cpu={cpu:.2} per_cpu={per_cpu:.0} hwm_mib={hwm_mib:.1}");
    }
    println!("{report}{result}");
    Ok(())
}

async fn pace(rate: f64, sent: u64, t0: Instant) {
    if rate <= 0.0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate);
    let elapsed = t0.elapsed();
    if due > elapsed {
        tokio::time::sleep(due - elapsed).await;
    }
}

mod null_receiver {
    use std::io::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::NullReceiverArgs;

    #[derive(Default)]
    struct Counts {
        requests: AtomicU64,
        bytes: AtomicU64,
        samples: AtomicU64,
        /// Bodies that were not snappy-compressed protobuf `WriteRequest`s.
        undecodable: AtomicU64,
        count_samples: bool,
    }

    pub async fn run(args: NullReceiverArgs) -> Result<(), Box<dyn std::error::Error>> {
        let counts = Arc::new(Counts { count_samples: args.count_samples, ..Counts::default() });
        let app = Router::new().route("/stats", get(stats)).fallback(accept).with_state(counts);
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        let mut out = std::io::stdout();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
        axum::serve(listener, app).await?;
        Ok(())
    }

    async fn stats(State(c): State<Arc<Counts>>) -> String {
        format!(
            "requests {}\nbytes {}\nsamples {}\nundecodable {}\n",
            c.requests.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            c.samples.load(Ordering::Relaxed),
            c.undecodable.load(Ordering::Relaxed)
        )
    }

    async fn accept(State(c): State<Arc<Counts>>, body: Bytes) -> StatusCode {
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if c.count_samples {
            match snap::raw::Decoder::new().decompress_vec(&body).ok().and_then(|raw| count_samples(&raw)) {
                Some(n) => {
                    c.samples.fetch_add(n, Ordering::Relaxed);
                }
                None => {
                    c.undecodable.fetch_add(1, Ordering::Relaxed);
                    return StatusCode::BAD_REQUEST;
                }
            }
        }
        StatusCode::NO_CONTENT
    }

    /// Samples in a protobuf `prometheus.WriteRequest`: field 1 (timeseries),
    /// inside each its field 2 (samples). Walks the wire format without
    /// building any message.
    pub fn count_samples(request: &[u8]) -> Option<u64> {
        let mut total = 0;
        let mut outer = Wire(request);
        while let Some((field, kind)) = outer.key()? {
            if field == 1 && kind == 2 {
                let mut series = Wire(outer.bytes()?);
                while let Some((field, kind)) = series.key()? {
                    if field == 2 && kind == 2 {
                        series.bytes()?;
                        total += 1;
                    } else {
                        series.skip(kind)?;
                    }
                }
            } else {
                outer.skip(kind)?;
            }
        }
        Some(total)
    }

    struct Wire<'a>(&'a [u8]);

    impl<'a> Wire<'a> {
        fn varint(&mut self) -> Option<u64> {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let (&b, rest) = self.0.split_first()?;
                self.0 = rest;
                value |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(value);
                }
            }
            None
        }

        /// The next `(field number, wire type)`, `Some(None)` at the end, `None` if malformed.
        fn key(&mut self) -> Option<Option<(u64, u8)>> {
            if self.0.is_empty() {
                return Some(None);
            }
            let key = self.varint()?;
            Some(Some((key >> 3, (key & 7) as u8)))
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.0.len() {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }

        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = usize::try_from(self.varint()?).ok()?;
            self.take(n)
        }

        fn skip(&mut self, kind: u8) -> Option<()> {
            match kind {
                0 => self.varint().map(drop),
                1 => self.take(8).map(drop),
                2 => self.bytes().map(drop),
                5 => self.take(4).map(drop),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_samples_of_an_encoded_write_request() {
        use prost::Message;
        use tsrelay::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
        let series = |n: usize| TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: format!("m{n}") }],
            samples: (0..n).map(|i| Sample { value: i as f64, timestamp: i as i64 }).collect(),
            ..Default::default()
        };
        let request = WriteRequest { timeseries: vec![series(3), series(1), series(5)], ..Default::default() };
        assert_eq!(null_receiver::count_samples(&request.encode_to_vec()), Some(9));
        assert_eq!(null_receiver::count_samples(&[0x0a, 0x05, 0x01]), None);
    }

    #[test]
    fn every_line_is_stamped_and_rounds_increase() {
        let bodies = build_lp_bodies(25, 10, false);
        assert_eq!(bodies.iter().map(|b| b.lines).collect::<Vec<_>>(), [10, 10, 5]);
        let text = String::from_utf8(bodies[2].stamped(1_790_000_000_123, None)).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().all(|l| l.ends_with(" 1790000000123")), "{text}");
    }

    #[test]
    fn churn_moves_the_given_share_of_series_to_a_new_generation_per_second() {
        let bodies = build_lp_bodies(1000, 300, true);
        assert_eq!(bodies.iter().map(|b| b.first_series).collect::<Vec<_>>(), [0, 300, 600, 900]);
        let churn = Churn { per_second: 0.1, series: 1000, started: Instant::now() };
        let text = String::from_utf8(bodies[1].stamped(1_790_000_000_123, Some(churn))).unwrap();
        assert!(text.lines().all(|l| l.contains(",gen=00000000 value=") && l.ends_with(" 1790000000123")), "{text}");
        // 10 %/s: after 1 s the last 100 series (i/n ≥ 0.9) are in generation 1, after 10 s all.
        let moved = |elapsed: f64| (0..1000).filter(|&i| churn.generation(i, elapsed) == 1).count();
        assert_eq!(moved(0.0), 0);
        assert_eq!(moved(1.0), 100);
        assert_eq!(moved(5.0), 500);
        assert_eq!((0..1000).filter(|&i| churn.generation(i, 10.0) >= 1).count(), 1000);
    }

    #[tokio::test]
    async fn stamps_follow_the_clock_and_strictly_increase_per_body() {
        let stamps = BodyStamps::default();
        let first = stamps.next(0).await.stamp;
        assert!((first - tsrelay::model::now_ms()).abs() < 1000);
        let mut previous = first;
        for _ in 0..1000 {
            let next = stamps.next(0).await.stamp;
            assert!(next > previous);
            previous = next;
        }
        assert!(stamps.next(1).await.stamp >= first);
    }

    #[tokio::test]
    async fn a_body_is_never_in_flight_twice() {
        let stamps = Arc::new(BodyStamps::default());
        let held = stamps.next(0).await;
        let other_body = stamps.next(1).await;
        assert!(other_body.stamp >= held.stamp, "another body is not held up");
        let waiting = tokio::spawn({
            let stamps = stamps.clone();
            async move { stamps.next(0).await.stamp }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "body 0 was stamped again while in flight");
        let first = held.stamp;
        drop(held);
        let second = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("stamped once free").unwrap();
        assert!(second > first);
    }

    #[test]
    fn quantiles_interpolate_within_the_delta_of_two_snapshots() {
        let before = [(0.01, 10.0), (0.05, 10.0), (f64::INFINITY, 10.0)];
        let after = [(0.01, 10.0), (0.05, 110.0), (f64::INFINITY, 110.0)];
        let (p50, n) = quantile(&before, &after, 0.5).unwrap();
        assert_eq!(n, 100.0);
        assert!((p50 - 0.03).abs() < 1e-9, "{p50}");
    }
}

/// Refused requests counted by why: the HTTP status (`429`, `503`, …), the gRPC code,
/// or the kind of transport error, so a benchmark can tell rate limiting from overload
/// from a broken connection.
#[derive(Default)]
struct RefusalReasons(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl RefusalReasons {
    fn note(&self, reason: String) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(reason).or_default() += 1;
        }
    }

    fn note_http(&self, answer: &Result<reqwest::Response, reqwest::Error>) {
        self.note(match answer {
            Ok(response) => response.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".into(),
            Err(e) if e.is_connect() => "connect".into(),
            Err(e) if e.is_body() => "body".into(),
            Err(e) if e.is_request() => format!(
                "request({})",
                std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string()).replace([' ', ','], "_")
            ),
            Err(_) => "other".into(),
        });
    }

    /// `429:3,transport:1`, or `none`.
    fn summary(&self) -> String {
        let counts = self.0.lock().map(|c| c.clone()).unwrap_or_default();
        if counts.is_empty() {
            return "none".into();
        }
        counts.iter().map(|(reason, n)| format!("{reason}:{n}")).collect::<Vec<_>>().join(",")
    }
}
