//! Load generator for end-to-end benchmarks (BENCHMARKS.md).
//!
//! Pre-builds request bodies for `--series` distinct series, sends them from
//! `--connections` concurrent senders for `--duration` (or `--requests`), and,
//! given the daemon's pid and admin address, reports what the daemon did with
//! them per CPU-second: the figure DESIGN §6 budgets.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// InfluxDB line protocol to /write (no timestamps: the daemon stamps "now").
    Lp,
    /// tsrelay.v1.Ingest/Write over gRPC.
    Grpc,
}

#[derive(Parser, Debug)]
#[command(name = "tsrelay-loadgen")]
struct Args {
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
    /// The daemon's admin address, to read what it delivered.
    #[arg(long)]
    admin: Option<String>,
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

fn build_lp_bodies(series: usize, batch: usize) -> Vec<Arc<Vec<u8>>> {
    let mut bodies = Vec::new();
    let mut body = String::new();
    let mut in_body = 0;
    for i in 0..series {
        let _ = writeln!(body, "{}", series_line(i));
        in_body += 1;
        if in_body == batch {
            bodies.push(Arc::new(std::mem::take(&mut body).into_bytes()));
            in_body = 0;
        }
    }
    if in_body > 0 {
        bodies.push(Arc::new(body.into_bytes()));
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

async fn delivered(client: &reqwest::Client, admin: &str) -> Option<f64> {
    let text = client.get(format!("http://{admin}/metrics")).send().await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("tsrelay_sink_sent_samples_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum(),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;
    let per_sender_rate = args.rate as f64 / args.connections as f64;

    let before_cpu = args.pid.and_then(proc_usage);
    let before_delivered = match &args.admin {
        Some(a) => delivered(&client, a).await,
        None => None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    match args.format {
        Format::Lp => {
            let bodies = Arc::new(build_lp_bodies(args.series, args.batch));
            let url = format!("http://{}/write", args.target);
            for c in 0..args.connections {
                let (client, bodies, url) = (client.clone(), bodies.clone(), url.clone());
                let (sent, refused, requests) = (sent.clone(), refused.clone(), requests.clone());
                let limit = args.requests;
                tasks.push(tokio::spawn(async move {
                    let mut i = c;
                    let t0 = Instant::now();
                    let mut mine = 0u64;
                    while Instant::now() < deadline && (limit == 0 || requests.load(Ordering::Relaxed) < limit) {
                        let body = bodies[i % bodies.len()].clone();
                        let lines = bytecount(&body);
                        i += 1;
                        requests.fetch_add(1, Ordering::Relaxed);
                        match client.post(&url).body(body.to_vec()).send().await {
                            Ok(r) if r.status().is_success() => {
                                sent.fetch_add(lines, Ordering::Relaxed);
                                mine += lines;
                            }
                            _ => {
                                refused.fetch_add(lines, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        pace(per_sender_rate, mine, t0).await;
                    }
                }));
            }
        }
        Format::Grpc => {
            let reqs = Arc::new(build_grpc_requests(args.series, args.batch));
            let endpoint = format!("http://{}", args.target);
            for c in 0..args.connections {
                let mut grpc = tsrelay::proto::v1::ingest_client::IngestClient::connect(endpoint.clone()).await?;
                let reqs = reqs.clone();
                let (sent, refused, requests) = (sent.clone(), refused.clone(), requests.clone());
                let limit = args.requests;
                tasks.push(tokio::spawn(async move {
                    let mut i = c;
                    let t0 = Instant::now();
                    let mut mine = 0u64;
                    while Instant::now() < deadline && (limit == 0 || requests.load(Ordering::Relaxed) < limit) {
                        let req = reqs[i % reqs.len()].clone();
                        let n = req.series.len() as u64;
                        i += 1;
                        requests.fetch_add(1, Ordering::Relaxed);
                        match grpc.write(req).await {
                            Ok(_) => {
                                sent.fetch_add(n, Ordering::Relaxed);
                                mine += n;
                            }
                            Err(_) => {
                                refused.fetch_add(n, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
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
    let mut report = format!(
        "sent {sent} samples in {elapsed:.1} s = {:.0} samples/s; refused (503/errors) {}; requests {}\n",
        sent as f64 / elapsed,
        refused.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed)
    );
    if let Some(admin) = &args.admin {
        // Let the queues drain before reading what was delivered.
        let mut last = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let d = delivered(&client, admin).await;
            if d.is_some() && d == last {
                break;
            }
            last = d;
        }
        if let (Some(b), Some(a)) = (before_delivered, last) {
            let _ = writeln!(report, "daemon delivered {:.0} samples (per sink, summed)", a - b);
        }
    }
    if let (Some(pid), Some((cpu0, _))) = (args.pid, before_cpu)
        && let Some((cpu1, hwm)) = proc_usage(pid)
    {
        let cpu = cpu1 - cpu0;
        let _ = writeln!(
            report,
            "daemon CPU {cpu:.2} s ⇒ {:.0} samples per CPU-second; peak RSS {:.1} MiB",
            sent as f64 / cpu.max(0.01),
            hwm as f64 / 1048576.0
        );
    }
    print!("{report}");
    Ok(())
}

fn bytecount(body: &[u8]) -> u64 {
    body.iter().filter(|&&b| b == b'\n').count() as u64
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
