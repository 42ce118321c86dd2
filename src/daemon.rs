//! Wires configuration into running receivers, pipelines and sinks, and
//! shuts them down in order: receivers → pipelines → sink queues drained.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::LoadedConfig;
use crate::limits::{BudgetError, MemoryBudget, MemoryPressure, watch_rss};
use crate::pipeline::{self, stages};
use crate::queue::{Ledger, QueueError, SinkQueue};
use crate::receivers::submit::{AckMode, Submitter};
use crate::receivers::{ReceiverConfig, grpc, http, kafka};
use crate::sinks::{self, SinkBuildError};
use crate::telemetry::{self, Health, MemoryMetrics, ReceiverMetrics, SinkMetrics};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind { what: String, addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Sink(#[from] SinkBuildError),
    #[error("sink {sink}: {source}")]
    Queue { sink: String, source: QueueError },
    #[error("{origin}: {source}")]
    MemoryBudget { origin: String, source: BudgetError },
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaReceiverError),
}

/// The addresses the daemon actually listens on (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct BoundAddrs {
    pub admin: Option<std::net::SocketAddr>,
    pub receivers: BTreeMap<String, std::net::SocketAddr>,
}

/// A started daemon; `shutdown` stops it.
pub struct Daemon {
    pub addrs: BoundAddrs,
    stop: CancellationToken,
    done: JoinHandle<()>,
    health: Health,
}

impl Daemon {
    /// Asks the daemon to stop and waits until it has.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }

    /// Waits until the daemon stops (after `stop` is cancelled).
    pub async fn wait(self) {
        let _ = self.done.await;
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Readiness and the first panic, if one happened (see [`telemetry::supervise`]).
    pub fn health(&self) -> Health {
        self.health.clone()
    }
}

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr).await.map_err(|source| DaemonError::Bind { what: what.to_string(), addr, source })
}

/// Starts everything the config describes on the current runtime.
pub async fn start(loaded: LoadedConfig) -> Result<Daemon, DaemonError> {
    let config = &loaded.config;
    let budget = MemoryBudget::estimate(config);
    budget.check().map_err(|source| DaemonError::MemoryBudget { origin: loaded.origin(), source })?;
    for d in &config.derived {
        tracing::info!(bound = %d, limit = config.limits.memory_bytes, "bound derived from limits.memory_bytes");
    }
    let prometheus = telemetry::install_recorder();
    let memory_metrics = MemoryMetrics::new();
    memory_metrics.limit_bytes.set(config.limits.memory_bytes as f64);
    memory_metrics.worst_case_bytes.set(budget.total() as f64);
    let pressure = MemoryPressure::default();
    let rss_watch = watch_rss(config.limits.rss_high_water_bytes(), pressure.clone(), memory_metrics);
    let health = Health::default();
    let stop = CancellationToken::new();
    telemetry::supervise(health.clone(), stop.clone());
    let mut addrs = BoundAddrs::default();

    // Sinks first, so nothing is accepted before it has somewhere to go.
    let mut queues: BTreeMap<String, Arc<SinkQueue>> = BTreeMap::new();
    let mut sink_tasks = Vec::new();
    let data_dir = loaded.resolve(&config.data_dir);
    for (name, sink_config) in &config.sinks {
        let common = sink_config.common();
        let ledger = Ledger::new(SinkMetrics::new(name));
        let queue = SinkQueue::open(name, common.queue, &data_dir, ledger)
            .map_err(|source| DaemonError::Queue { sink: name.clone(), source })?;
        let queue = Arc::new(queue);
        let sink_health = health.register_sink(name, common.unhealthy_after);
        if let SinkQueue::Disk(d) = &*queue {
            d.set_health(sink_health.clone());
        }
        sink_tasks.push(sinks::spawn_sink(name, sink_config, &loaded, queue.clone(), sink_health)?);
        queues.insert(name.clone(), queue);
    }

    let mut pipelines = Vec::new();
    let mut inputs = BTreeMap::new();
    let mut discovery = stages::Discovery::new(loaded.registry.clone());
    for (name, p) in &config.pipelines {
        let sink_queues = p.sinks.iter().filter_map(|s| queues.get(s).cloned()).collect();
        let stages = stages::build(name, p, loaded.registry.clone());
        if let Some(series) = stages.series.clone() {
            discovery.add(series);
        }
        let running = pipeline::spawn(name, p, stages, sink_queues);
        for r in &p.receivers {
            inputs.insert(r.clone(), running.input.clone());
        }
        pipelines.push(running);
    }

    let mut receiver_tasks = Vec::new();
    for (name, rc) in &config.receivers {
        let Some(input) = inputs.remove(name) else {
            continue;
        };
        health.register_receiver(name);
        let metrics = ReceiverMetrics::new(name);
        let pressure = pressure.clone();
        let submitter =
            move |max_wait, ack, ack_timeout| Submitter { input, metrics, max_wait, ack, ack_timeout, pressure };
        let token = stop.clone();
        let shutdown = async move { token.cancelled().await };
        // Network listeners are ready once bound; a Kafka receiver once it
        // has its first partition assignment (it reports that itself).
        let mut listening = true;
        let task = match rc {
            ReceiverConfig::Http(c) => {
                let listener = bind(&format!("receivers.{name}"), c.listen).await?;
                addrs.receivers.insert(name.clone(), listener.local_addr().unwrap_or(c.listen));
                let submitter = submitter(Duration::from_millis(c.max_wait_ms), c.ack, c.ack_timeout);
                let (c, n) = (c.clone(), name.clone());
                tokio::spawn(async move {
                    if let Err(e) = http::serve(listener, c, submitter, shutdown).await {
                        tracing::error!(receiver = %n, error = %e, "HTTP receiver stopped");
                    }
                })
            }
            ReceiverConfig::Grpc(c) => {
                let listener = bind(&format!("receivers.{name}"), c.listen).await?;
                addrs.receivers.insert(name.clone(), listener.local_addr().unwrap_or(c.listen));
                let submitter = submitter(Duration::from_millis(c.max_wait_ms), c.ack, c.ack_timeout);
                let (c, n) = (c.clone(), name.clone());
                tokio::spawn(async move {
                    if let Err(e) = grpc::serve(listener, c, submitter, shutdown).await {
                        tracing::error!(receiver = %n, error = %e, "gRPC receiver stopped");
                    }
                })
            }
            ReceiverConfig::Kafka(c) => {
                listening = false;
                // The receiver makes one acknowledgement per batch itself (Submitter::offer).
                let submitter = submitter(Duration::from_millis(c.pause_after_ms), AckMode::Accepted, c.drain_timeout);
                kafka::spawn(name, c, submitter, health.clone(), stop.clone())?
            }
        };
        if listening {
            health.receiver_listening(name);
            tracing::info!(receiver = %name, addr = ?addrs.receivers.get(name), "receiver listening");
        }
        receiver_tasks.push(task);
    }
    // The pipelines' only senders now live in the receivers.
    drop(inputs);

    let admin_listener = bind("admin", config.admin.listen).await?;
    addrs.admin = admin_listener.local_addr().ok();
    // The admin endpoint outlives the drain: /metrics and /readyz (which
    // reports a panic) stay readable until the daemon is done.
    let admin_stop = CancellationToken::new();
    let admin_token = admin_stop.clone();
    let admin_task = tokio::spawn(crate::admin::serve(
        admin_listener,
        prometheus,
        health.clone(),
        Arc::new(discovery),
        async move { admin_token.cancelled().await },
    ));
    tracing::info!(addr = ?addrs.admin, "admin endpoint listening");

    let shutdown_timeout = config.shutdown_timeout;
    let token = stop.clone();
    let done = tokio::spawn(async move {
        token.cancelled().await;
        tracing::info!("shutting down: receivers stop accepting, queues drain");
        let mut receiver_tasks = receiver_tasks;
        // The pipelines' own input handles go now; the receivers hold the rest.
        let mut pipeline_tasks: Vec<tokio::task::JoinSet<()>> = pipelines.into_iter().map(|p| p.tasks).collect();
        let drain = async {
            for t in &mut receiver_tasks {
                let _ = t.await;
            }
            for tasks in &mut pipeline_tasks {
                while tasks.join_next().await.is_some() {}
            }
            for q in queues.values() {
                q.close();
            }
            for t in &mut sink_tasks {
                let _ = t.await;
            }
        };
        let timed_out = tokio::time::timeout(shutdown_timeout, drain).await.is_err();
        if timed_out {
            tracing::warn!(timeout = ?shutdown_timeout, "shutdown timed out; counting what is left as dropped");
            // From now on whatever still flows out of the pipelines is refused
            // by the closed queues and counted (`reason="shutdown"`).
            for q in queues.values() {
                q.close();
            }
        }
        for t in &sink_tasks {
            t.abort();
        }
        for (name, q) in &queues {
            // Memory queues count what is left as dropped; disk queues keep it.
            let lost = q.finish();
            if lost > 0 {
                tracing::warn!(sink = %name, samples = lost, "dropped at shutdown");
            }
        }
        // Requests still waiting for a delivery acknowledgement now have their
        // answer (failed acks: 503 / UNAVAILABLE); let the receivers send it,
        // and let the pipelines flush what they still hold into the closed
        // queues, where it is counted.
        let answered = async {
            for t in &mut receiver_tasks {
                if !t.is_finished() {
                    let _ = t.await;
                }
            }
            for tasks in &mut pipeline_tasks {
                while tasks.join_next().await.is_some() {}
            }
        };
        if timed_out && tokio::time::timeout(RECEIVER_GRACE, answered).await.is_err() {
            tracing::warn!(grace = ?RECEIVER_GRACE, "receivers or pipelines still busy after the shutdown timeout; stopping them");
        }
        rss_watch.abort();
        admin_stop.cancel();
        let _ = admin_task.await;
        tracing::info!("stopped");
    });
    Ok(Daemon { addrs, stop, done, health })
}

/// After the shutdown timeout, how long receivers get to answer the requests
/// whose acknowledgements just failed.
const RECEIVER_GRACE: Duration = Duration::from_secs(2);
