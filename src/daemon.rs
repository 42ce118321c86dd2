//! Wires configuration into running receivers, pipelines and sinks, and
//! shuts them down in order: receivers → pipelines → sink queues drained.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::codecs::limits::DecodeLimits;
use crate::config::LoadedConfig;
use crate::limits::{BudgetError, MemoryBudget, MemoryPressure, watch_rss};
use crate::listener::ListenerOptions;
use crate::pipeline::{self, stages};
use crate::queue::{Ledger, QueueError, SinkQueue};
use crate::receivers::submit::{AckMode, Submitter};
use crate::receivers::{ReceiverConfig, grpc, http, influx_tcp, influx_udp, kafka};
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
    #[error("pipelines.{pipeline}.aggregate: {source}")]
    AggregateWatermark { pipeline: String, source: crate::pipeline::stages::aggregate::watermark::WatermarkError },
    #[error("{origin}: {source}")]
    MemoryBudget { origin: String, source: BudgetError },
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaReceiverError),
    #[error("{what}.tls: {source}")]
    Tls { what: String, source: Box<crate::tls::TlsError> },
    #[error("[auth]: {0}")]
    Keys(#[from] crate::auth::KeysFileError),
    #[error("{0}.auth = \"required\" needs [auth] keys_file")]
    AuthWithoutKeys(String),
    #[error("query: {0}")]
    Query(#[from] crate::query::service::QueryBuildError),
    #[error("cannot start the query runtime: {0}")]
    QueryRuntime(std::io::Error),
}

/// The addresses the daemon actually listens on (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct BoundAddrs {
    pub admin: Option<std::net::SocketAddr>,
    /// The query listener (`[query] listen`), when `[query]` is configured.
    pub query: Option<std::net::SocketAddr>,
    pub receivers: BTreeMap<String, std::net::SocketAddr>,
}

/// A started daemon; `shutdown` stops it.
pub struct Daemon {
    pub addrs: BoundAddrs,
    stop: CancellationToken,
    done: JoinHandle<()>,
    reloader: Reloader,
    health: Health,
}

/// Re-reads what may change under a running daemon: API keys and TLS
/// certificates (SIGHUP; both are also re-read when their files change).
#[derive(Clone, Default)]
pub struct Reloader {
    keys: Option<Arc<crate::auth::KeyStore>>,
    tls: Vec<Arc<crate::tls::TlsAcceptor>>,
}

impl Reloader {
    pub fn reload(&self) {
        if let Some(k) = &self.keys {
            k.reload();
        }
        for t in &self.tls {
            t.reload();
        }
    }
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

    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Readiness and the first panic, if one happened (see [`telemetry::supervise`]).
    pub fn health(&self) -> Health {
        self.health.clone()
    }
}

/// A listener's options from its config section; a TLS acceptor is kept in
/// `acceptors` so its files are watched.
fn listener_options(
    loaded: &LoadedConfig,
    name: &str,
    what: &str,
    max_connections: usize,
    timeouts: crate::listener::TimeoutsConfig,
    tls: Option<&crate::tls::TlsConfig>,
    acceptors: &mut Vec<Arc<crate::tls::TlsAcceptor>>,
) -> Result<ListenerOptions, DaemonError> {
    let acceptor = tls_acceptor(loaded, name, what, tls, acceptors)?;
    Ok(ListenerOptions::new(name, max_connections, timeouts).with_tls(acceptor))
}

/// A listener's TLS acceptor, kept in `acceptors` so its files are watched.
fn tls_acceptor(
    loaded: &LoadedConfig,
    name: &str,
    what: &str,
    tls: Option<&crate::tls::TlsConfig>,
    acceptors: &mut Vec<Arc<crate::tls::TlsAcceptor>>,
) -> Result<Option<Arc<crate::tls::TlsAcceptor>>, DaemonError> {
    let Some(t) = tls else { return Ok(None) };
    let resolved = t.resolved(|p| loaded.resolve(p));
    let a = crate::tls::TlsAcceptor::new(name, resolved)
        .map_err(|e| DaemonError::Tls { what: what.to_string(), source: Box::new(e) })?;
    acceptors.push(a.clone());
    Ok(Some(a))
}

/// The key check of one listener, or `None` when its auth is off.
struct Guards<'a> {
    config: &'a crate::auth::AuthConfig,
    store: Option<Arc<crate::auth::KeyStore>>,
}

impl Guards<'_> {
    fn guard(
        &self,
        what: &str,
        listener: &str,
        mode: Option<crate::auth::AuthMode>,
        scope: crate::auth::Scope,
        pipeline: Option<String>,
        open_paths: Vec<String>,
    ) -> Result<Option<crate::auth::Guard>, DaemonError> {
        if self.config.mode(mode) == crate::auth::AuthMode::None {
            return Ok(None);
        }
        let store = self.store.clone().ok_or_else(|| DaemonError::AuthWithoutKeys(what.to_string()))?;
        let certs = self.config.client_certs.clone();
        Ok(Some(crate::auth::Guard::new(store, certs, listener, scope, pipeline, open_paths)))
    }
}

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr).await.map_err(|source| DaemonError::Bind { what: what.to_string(), addr, source })
}

async fn bind_udp(what: &str, addr: std::net::SocketAddr) -> Result<tokio::net::UdpSocket, DaemonError> {
    tokio::net::UdpSocket::bind(addr).await.map_err(|source| DaemonError::Bind { what: what.to_string(), addr, source })
}

/// Starts everything the config describes on the current runtime.
pub async fn start(loaded: LoadedConfig) -> Result<Daemon, DaemonError> {
    let config = &loaded.config;
    let budget = MemoryBudget::estimate(config);
    budget.check().map_err(|source| DaemonError::MemoryBudget { origin: loaded.origin(), source })?;
    // The budget above counted the line-protocol interner at this size.
    crate::codecs::intern::SeriesInterner::size_global_from(config.limits.memory_bytes);
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
    let mut tls_acceptors = Vec::new();
    let key_store = match &config.auth.keys_file {
        Some(path) => Some(crate::auth::KeyStore::open(&loaded.resolve(path))?),
        None => None,
    };
    let guards = Guards { config: &config.auth, store: key_store.clone() };
    let key_watch = key_store.clone().map(|k| crate::auth::watch(k, crate::auth::RELOAD_CHECK_EVERY, stop.clone()));

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
        sink_tasks.push(sinks::spawn_sink(
            name,
            sink_config,
            &loaded.registry,
            &|p| loaded.resolve(p),
            queue.clone(),
            sink_health,
        )?);
        queues.insert(name.clone(), queue);
    }

    let mut pipelines = Vec::new();
    let mut inputs = BTreeMap::new();
    let mut discovery = crate::query::discovery::Discovery::new(loaded.registry.clone());
    for (name, p) in &config.pipelines {
        let sink_queues = p.sinks.iter().filter_map(|s| queues.get(s).cloned()).collect();
        let mut stages = stages::build(name, p, loaded.registry.clone());
        if let Some(a) = &stages.aggregator {
            a.restore(&data_dir)
                .map_err(|source| DaemonError::AggregateWatermark { pipeline: name.clone(), source })?;
        }
        stages.aggregate_sinks = p
            .aggregate
            .iter()
            .map(|r| r.sinks.as_ref().map(|names| names.iter().filter_map(|s| queues.get(s).cloned()).collect()))
            .collect();
        if let Some(series) = stages.series.clone() {
            discovery.add(series);
        }
        let running = pipeline::spawn(name, p, stages, sink_queues);
        // A receiver feeds one pipeline (the config refuses more): it decodes with its limits.
        let limits = Arc::new(DecodeLimits::for_pipeline(p));
        for r in &p.receivers {
            inputs.insert(r.clone(), (running.input.clone(), limits.clone()));
        }
        pipelines.push(running);
    }

    let mut receiver_tasks = Vec::new();
    for (name, rc) in &config.receivers {
        let Some((input, limits)) = inputs.remove(name) else {
            continue;
        };
        health.register_receiver(name);
        let pipeline_name = input.pipeline().to_string();
        let metrics = ReceiverMetrics::new(name);
        let pressure = pressure.clone();
        let submitter = move |max_wait, ack, ack_timeout| Submitter {
            input,
            metrics,
            max_wait,
            ack,
            ack_timeout,
            pressure,
            limits,
        };
        let token = stop.clone();
        let shutdown = async move { token.cancelled().await };
        // Network listeners are ready once bound; a Kafka receiver once it
        // has its first partition assignment (it reports that itself).
        let mut listening = true;
        let task = match rc {
            ReceiverConfig::Http(c) => {
                let what = format!("receivers.{name}");
                let scope = crate::auth::Scope::Write;
                let guard = guards.guard(&what, name, c.auth, scope, Some(pipeline_name), http::open_paths())?;
                let options = listener_options(
                    &loaded,
                    name,
                    &what,
                    c.max_connections,
                    c.timeouts,
                    c.tls.as_ref(),
                    &mut tls_acceptors,
                )?
                .with_auth(guard);
                let listener = bind(&what, c.listen).await?;
                addrs.receivers.insert(name.clone(), listener.local_addr().unwrap_or(c.listen));
                let submitter = submitter(Duration::from_millis(c.max_wait_ms), c.ack, c.ack_timeout);
                let (c, n) = (c.clone(), name.clone());
                tokio::spawn(async move {
                    if let Err(e) = http::serve(listener, c, submitter, options, shutdown).await {
                        tracing::error!(receiver = %n, error = %e, "HTTP receiver stopped");
                    }
                })
            }
            ReceiverConfig::Grpc(c) => {
                let what = format!("receivers.{name}");
                let scope = crate::auth::Scope::Write;
                let guard = guards.guard(&what, name, c.auth, scope, Some(pipeline_name), Vec::new())?;
                let options = listener_options(
                    &loaded,
                    name,
                    &what,
                    c.max_connections,
                    c.timeouts,
                    c.tls.as_ref(),
                    &mut tls_acceptors,
                )?
                .with_auth(guard);
                let listener = bind(&what, c.listen).await?;
                addrs.receivers.insert(name.clone(), listener.local_addr().unwrap_or(c.listen));
                let submitter = submitter(Duration::from_millis(c.max_wait_ms), c.ack, c.ack_timeout);
                let (c, n) = (c.clone(), name.clone());
                tokio::spawn(async move {
                    if let Err(e) = grpc::serve(listener, c, submitter, options, shutdown).await {
                        tracing::error!(receiver = %n, error = %e, "gRPC receiver stopped");
                    }
                })
            }
            ReceiverConfig::InfluxTcp(c) => {
                let what = format!("receivers.{name}");
                let tls = tls_acceptor(&loaded, name, &what, c.tls.as_ref(), &mut tls_acceptors)?;
                let listener = bind(&what, c.listen).await?;
                addrs.receivers.insert(name.clone(), listener.local_addr().unwrap_or(c.listen));
                // Streams wait for room as long as it takes; max_wait is unused.
                let submitter = submitter(Duration::from_secs(1), AckMode::Accepted, Duration::from_secs(30));
                let (c, n) = (c.clone(), name.clone());
                tokio::spawn(async move {
                    if let Err(e) = influx_tcp::serve(listener, c, submitter, tls, shutdown).await {
                        tracing::error!(receiver = %n, error = %e, "influx_tcp receiver stopped");
                    }
                })
            }
            ReceiverConfig::InfluxUdp(c) => {
                let socket = bind_udp(&format!("receivers.{name}"), c.listen).await?;
                addrs.receivers.insert(name.clone(), socket.local_addr().unwrap_or(c.listen));
                let submitter =
                    submitter(Duration::from_millis(c.max_wait_ms), AckMode::Accepted, Duration::from_secs(30));
                let (c, n) = (c.clone(), name.clone());
                tokio::spawn(async move {
                    if let Err(e) = influx_udp::serve(socket, c, submitter, shutdown).await {
                        tracing::error!(receiver = %n, error = %e, "influx_udp receiver stopped");
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

    let a = &config.admin;
    let admin_guard = guards.guard("admin", "admin", a.auth, crate::auth::Scope::Read, None, a.open_paths.clone())?;
    let admin_options =
        listener_options(&loaded, "admin", "admin", a.max_connections, a.timeouts, a.tls.as_ref(), &mut tls_acceptors)?
            .with_auth(admin_guard);
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
        admin_options,
        async move { admin_token.cancelled().await },
    ));
    tracing::info!(addr = ?addrs.admin, "admin endpoint listening");

    let query_thread = match &config.query {
        Some(qc) => {
            let service = Arc::new(crate::query::QueryService::from_config(&loaded, qc)?);
            let console = crate::console::open_paths();
            let guard = guards.guard("query", "query", qc.auth, crate::auth::Scope::Read, None, console)?;
            let options = listener_options(
                &loaded,
                "query",
                "query",
                qc.max_connections,
                qc.timeouts,
                qc.tls.as_ref(),
                &mut tls_acceptors,
            )?
            .with_auth(guard);
            let listener = bind("query", qc.listen).await?;
            addrs.query = listener.local_addr().ok();
            let listener = listener.into_std().map_err(DaemonError::QueryRuntime)?;
            let extra = crate::status::router(health.clone()).merge(crate::console::router());
            let thread = spawn_query_runtime(listener, service, extra, options, qc.worker_threads, stop.clone())?;
            tracing::info!(addr = ?addrs.query, "query listener");
            Some(thread)
        }
        None => None,
    };
    let reloader = Reloader { keys: key_store, tls: tls_acceptors.clone() };
    let tls_watch = crate::tls::watch(tls_acceptors, stop.clone());

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
        tls_watch.abort();
        if let Some(k) = key_watch {
            k.abort();
        }
        let _ = admin_task.await;
        if let Some(t) = query_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        tracing::info!("stopped");
    });
    Ok(Daemon { addrs, stop, done, health, reloader })
}

/// After the shutdown timeout, how long receivers get to answer the requests
/// whose acknowledgements just failed.
const RECEIVER_GRACE: Duration = Duration::from_secs(2);

/// The query API runs on a runtime of its own (its own threads), so renders —
/// JSON parsing, bucketing, waiting on backends — never take CPU time from the
/// ingestion runtime's workers.
fn spawn_query_runtime(
    listener: std::net::TcpListener,
    service: Arc<crate::query::QueryService>,
    extra: axum::Router,
    options: ListenerOptions,
    threads: usize,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("tsrelay-query")
        .enable_all()
        .build()
        .map_err(DaemonError::QueryRuntime)?;
    std::thread::Builder::new()
        .name("tsrelay-query".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "query listener unusable");
                        return;
                    }
                };
                if let Err(e) =
                    crate::query::api::serve(listener, service, extra, options, async move { stop.cancelled().await })
                        .await
                {
                    tracing::error!(error = %e, "query listener stopped");
                }
            });
        })
        .map_err(DaemonError::QueryRuntime)
}
