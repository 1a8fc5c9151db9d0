//! `chaise`: one Chaise node. Reads configuration (flags, ini files, environment),
//! opens the data directory, sets up the server admin and system databases, and
//! serves the CouchDB API until SIGTERM/SIGINT.

mod bootstrap;
mod settings;

use anyhow::Context;
use chaise_cluster::Coordinator;
use clap::Parser;
use std::sync::Arc;

/// mimalloc: fewer and cheaper allocations on the request and write paths than the
/// system allocator, and less fragmentation growth under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = settings::Cli::parse();
    let settings = settings::Settings::resolve(&cli)?;
    init_logging(&settings.log_level);
    tracing::info!(data_dir = %settings.data_dir.display(), node = %settings.node_name, "starting chaise");

    bootstrap::ensure_credentials(&settings)?;
    let server_uuid = bootstrap::ensure_uuid(&settings.config)?;
    let coordinator = Coordinator::open(
        &settings.data_dir,
        &settings.node_name,
        settings.q,
        settings.n,
    )
    .context("opening the data directory")?;
    bootstrap::ensure_system_dbs(&settings, &coordinator).await?;

    let state =
        chaise_api::AppState::new(coordinator.clone(), settings.config.clone(), server_uuid);
    let addr = format!("{}:{}", settings.bind_address, settings.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "listening");
    eprintln!("chaise listening on http://{addr}");
    chaise_api::serve(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    close(&coordinator);
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Lets queued writes finish and closes every shard file.
fn close(coordinator: &Arc<Coordinator>) {
    coordinator.shutdown();
}

fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        let level = match level {
            "debug" => "debug",
            "warning" | "warn" => "warn",
            "error" | "critical" | "alert" | "emergency" => "error",
            "none" => "off",
            _ => "info",
        };
        format!("{level},hyper=warn,h2=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
