use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tsrelay::config;

/// Streaming ingestion daemon: receives samples (HTTP line protocol, NDJSON,
/// gRPC), cleans them up once and delivers them to every configured backend.
#[derive(Parser)]
#[command(name = "tsrelay", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file; without it, config/tsrelay.toml if present, else the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config (pipelines, references, registry, graph files) and exit.
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage the API keys of the keys file the config names (`[auth] keys_file`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Graphs of the read side (DESIGN §7).
    Graph {
        #[command(subcommand)]
        command: GraphCommand,
    },
    /// Live status of a running daemon in the terminal (`GET /api/v1/status`),
    /// refreshed every second. Keys: r sort by rate, d by drops, n by name, q quit.
    Top {
        /// URL of a listener serving /api/v1/status: the admin endpoint (default) or the query listener.
        #[arg(long, visible_alias = "admin", default_value = "http://127.0.0.1:9188")]
        url: String,
        /// A key with the `read` scope, when the listener requires one (or TSRELAY_KEY).
        #[arg(long)]
        key: Option<String>,
        /// Print the report once as text and exit (no terminal UI).
        #[arg(long)]
        once: bool,
        /// Initial sort: rate, drops or name.
        #[arg(long, default_value = "rate")]
        sort: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key: prints it once, alone on its line, and stores only its SHA-256.
    New {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Shown in logs and metrics instead of the key.
        #[arg(long)]
        name: String,
        /// write, read, admin (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "write")]
        scopes: Vec<String>,
        /// Pipelines the key may feed (comma-separated); default: all.
        #[arg(long, value_delimiter = ',')]
        pipelines: Vec<String>,
        #[arg(long)]
        samples_per_second: Option<u32>,
        #[arg(long)]
        samples_burst: Option<u32>,
        #[arg(long)]
        requests_per_second: Option<u32>,
        #[arg(long)]
        requests_burst: Option<u32>,
    },
    /// Show every key's name, scopes, pipelines and limits.
    List {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn print_err(message: &str) -> ExitCode {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {message}\n").as_bytes());
    ExitCode::from(2)
}

fn keys(command: KeysCommand) -> ExitCode {
    use tsrelay::auth::{KeySpec, Scope, cli};
    let config = match &command {
        KeysCommand::New { config, .. } | KeysCommand::List { config } => config.clone(),
    };
    let loaded = match config::load(config_path(config).as_deref()) {
        Ok(l) => l,
        Err(e) => return print_err(&e.to_string()),
    };
    let path = match cli::keys_file_path(&loaded) {
        Ok(p) => p,
        Err(e) => return print_err(&e),
    };
    match command {
        KeysCommand::List { .. } => match cli::list(&path) {
            Ok(table) => {
                let _ = std::io::Write::write_all(&mut std::io::stdout(), table.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => print_err(&e.to_string()),
        },
        KeysCommand::New {
            name,
            scopes,
            pipelines,
            samples_per_second,
            samples_burst,
            requests_per_second,
            requests_burst,
            ..
        } => {
            let scopes: Result<Vec<Scope>, String> = scopes.iter().map(|s| Scope::parse(s)).collect();
            let scopes = match scopes {
                Ok(s) => s,
                Err(e) => return print_err(&e),
            };
            let spec = KeySpec {
                name: name.clone(),
                sha256: String::new(),
                scopes,
                pipelines,
                samples_per_second,
                samples_burst,
                requests_per_second,
                requests_burst,
            };
            match cli::new_key(&path, spec) {
                Ok(key) => {
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{key}\n").as_bytes());
                    let note = format!(
                        "key {name} added to {}; it is shown only now. A running tsrelay picks it up within a second.\n",
                        path.display()
                    );
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
                    ExitCode::SUCCESS
                }
                Err(e) => print_err(&e.to_string()),
            }
        }
    }
}

#[derive(Subcommand)]
enum GraphCommand {
    /// Render a stored graph from one backend, without a running daemon.
    Render {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Graph id (from `[query] graphs_dir`).
        #[arg(long)]
        graph: String,
        /// Sink name to read from.
        #[arg(long)]
        backend: String,
        /// ms since the epoch, RFC 3339, `now`, `-6h`.
        #[arg(long, allow_hyphen_values = true)]
        start: String,
        #[arg(long, default_value = "now", allow_hyphen_values = true)]
        end: String,
        /// Step, e.g. `60s`, `5m`.
        #[arg(long)]
        step: String,
        #[arg(long, value_enum, default_value_t = tsrelay::query::format::Format::Table)]
        format: tsrelay::query::format::Format,
    },
}

// The allocator is the system's (glibc). The hot path hardly allocates any more
// (under 2 % of the CPU in malloc/free under full load), and against mimalloc glibc
// left the same samples per CPU-second at 30-60 MiB less peak RSS in every load of
// scripts/bench-e2e (BENCHMARKS.md, eleventh session).

const DEFAULT_CONFIG: &str = "config/tsrelay.toml";

fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| Path::new(DEFAULT_CONFIG).is_file().then(|| PathBuf::from(DEFAULT_CONFIG)))
}

fn top(url: &str, key: Option<String>, once: bool, sort: &str) -> ExitCode {
    use tsrelay::top::{SortBy, StatusClient, ui, view};
    let sort = match sort {
        "rate" => SortBy::Rate,
        "drops" => SortBy::Drops,
        "name" => SortBy::Name,
        other => return print_err(&format!("--sort {other:?}: expected rate, drops or name")),
    };
    let client = match StatusClient::new(url, key) {
        Ok(c) => c,
        Err(e) => return print_err(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(r) => r,
        Err(e) => return print_err(&format!("cannot start the runtime: {e}")),
    };
    if once {
        return match runtime.block_on(client.fetch()) {
            Ok(status) => {
                let text = view::plain(&view::tables(&status, sort));
                let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => print_err(&e.to_string()),
        };
    }
    match ui::run(client, runtime.handle(), sort) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => print_err(&e.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tsrelay::telemetry::init_logging(cli.log_json);
    match cli.command {
        Command::Keys { command } => keys(command),
        Command::Top { url, key, once, sort } => {
            top(&url, key.or_else(|| std::env::var("TSRELAY_KEY").ok()), once, &sort)
        }
        Command::Graph { command: GraphCommand::Render { config, graph, backend, start, end, step, format } } => {
            let loaded = match config::load(config_path(config).as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(&e),
            };
            let request = tsrelay::query::request::RenderRequest {
                graph: graph.into(),
                backend,
                start: start.into(),
                end: Some(end.into()),
                step: Some(step.into()),
                max_points: None,
            };
            match tsrelay::query::format::render_once(&loaded, &request, format) {
                Ok(text) => {
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Validate { config } => match config::load(config_path(config).as_deref()) {
            Ok(loaded) => {
                let c = &loaded.config;
                let budget = tsrelay::limits::MemoryBudget::estimate(c);
                if let Err(e) = budget.check() {
                    let message = format!("error: {}: {e}\n{}", loaded.origin(), budget.report());
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
                    return ExitCode::from(2);
                }
                // Graph files are read (by the daemon and here) only with a `[query]`
                // section: without it nothing would ever render them.
                let graphs = match &c.query {
                    Some(query_config) => match tsrelay::query::QueryService::from_config(&loaded, query_config) {
                        Ok(service) => format!("{} graphs", service.graphs().len()),
                        Err(e) => return fail(&format!("{}: {e}", loaded.origin())),
                    },
                    None => "no [query]: graph files not read".to_string(),
                };
                let derived: String = c.derived.iter().map(|d| format!("  derived: {d}\n")).collect();
                let summary = format!(
                    "{}: ok ({} receivers, {} pipelines, {} sinks, {graphs})\n{}{derived}",
                    loaded.origin(),
                    c.receivers.len(),
                    c.pipelines.len(),
                    c.sinks.len(),
                    budget.report()
                );
                let _ = std::io::Write::write_all(&mut std::io::stdout(), summary.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {e}\n").as_bytes());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let loaded = match config::load(config_path(config).as_deref()) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            // Before the runtime's threads exist, so that every arena they get is made under these settings.
            for (setting, value) in tsrelay::limits::tune_allocator() {
                tracing::debug!(setting, value, "allocator setting");
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(loaded))
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {e}\n").as_bytes());
    ExitCode::from(2)
}

async fn run(loaded: config::LoadedConfig) -> ExitCode {
    tracing::info!(config = %loaded.origin(), "starting tsrelay {}", env!("CARGO_PKG_VERSION"));
    let daemon = match tsrelay::daemon::start(loaded).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = daemon.stop_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        // SIGHUP re-reads the API keys and TLS certificates.
        let reloader = daemon.reloader();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading API keys and TLS certificates");
                        reloader.reload();
                    }
                });
            }
            Err(e) => tracing::warn!("cannot listen for SIGHUP: {e}"),
        }
    }
    let health = daemon.health();
    daemon.wait().await;
    match health.panic() {
        // A task panicked: the daemon drained what it could; say so in the status.
        Some(panic) => {
            tracing::error!(%panic, "stopped after a panic");
            ExitCode::from(3)
        }
        None => ExitCode::SUCCESS,
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
