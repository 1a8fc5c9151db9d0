//! `chaise`: one Chaise node. Reads configuration (flags, ini files, environment),
//! opens the data directory, sets up the server admin and system databases, and
//! serves the CouchDB API until SIGTERM/SIGINT.

mod bootstrap;
mod settings;

use anyhow::Context;
use chaise_cluster::{Coordinator, NodeConfig};
use clap::Parser;

/// mimalloc: fewer and cheaper allocations on the request and write paths than the
/// system allocator, and less fragmentation growth under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (position in its `mi_option_t` enum, between
/// `eager_commit_delay` = 14 and `use_numa_nodes` = 16, which the bindings name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's `mi_option_allow_thp`, the last entry of `mi_option_t`.
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 37;

/// Freed memory goes back to the OS after a second unused instead of 10 ms: under
/// a steady write load the same pages are reused rather than unmapped and faulted
/// in (and zeroed) again, while an idle node still shrinks.
///
/// No transparent huge pages, as most databases advise: each first touch of fresh
/// memory would zero a whole 2 MiB page, which in a virtual machine costs
/// milliseconds on the write path, and memory would grow in 2 MiB steps.
///
/// `MIMALLOC_PURGE_DELAY` and `MIMALLOC_ALLOW_THP` in the environment still win.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it when it purges.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: a plain integer option, read when mimalloc maps memory; and a
        // prctl that only changes this process's page policy.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = settings::Cli::parse();
    let settings = settings::Settings::resolve(&cli)?;
    init_logging(&settings.log_level);
    tracing::info!(data_dir = %settings.data_dir.display(), node = %settings.node_name, "starting chaise");

    bootstrap::ensure_credentials(&settings)?;
    let server_uuid = bootstrap::ensure_uuid(&settings.config)?;
    let secret = settings
        .config
        .get("chttpd_auth", "secret")
        .unwrap_or_default();
    let coordinator = Coordinator::open(NodeConfig {
        data_dir: settings.data_dir.clone(),
        node: settings.node_name.clone(),
        fabric_addr: settings.fabric_addr.clone(),
        http_addr: settings.http_addr.clone(),
        secret,
        tls: settings.fabric_tls.clone(),
        q: settings.q,
        n: settings.n,
    })
    .await
    .context("opening the data directory")?;

    // Stop signal shared by the HTTP server and the fabric.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fabric_bind = format!("{}:{}", settings.bind_address, settings.cluster_port);
    let fabric_bind: std::net::SocketAddr = tokio::net::lookup_host(&fabric_bind)
        .await
        .with_context(|| format!("resolving {fabric_bind}"))?
        .next()
        .with_context(|| format!("no address for {fabric_bind}"))?;
    // Bind now, so a taken port is an error at start rather than later.
    std::net::TcpListener::bind(fabric_bind)
        .with_context(|| format!("binding the cluster port {fabric_bind}"))?;
    let fabric = tokio::spawn(chaise_cluster::fabric::server::serve(
        fabric_bind,
        coordinator.fabric_service(),
        settings.fabric_tls.clone(),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(addr = %fabric_bind, "cluster port listening");
    tokio::spawn(coordinator.clone().run_internal_replication());
    bootstrap::ensure_system_dbs(&settings, &coordinator).await?;

    let state =
        chaise_api::AppState::new(coordinator.clone(), settings.config.clone(), server_uuid);
    let addr = format!("{}:{}", settings.bind_address, settings.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "listening");
    eprintln!("chaise listening on http://{addr}");
    let http_stop = stopped(stop_rx);
    let feeds = coordinator.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Live feeds would otherwise hold the graceful shutdown open.
        feeds.stop_feeds();
        let _ = stop_tx.send(true);
    });
    chaise_api::serve(listener, state, http_stop)
        .await
        .context("serving HTTP")?;
    let _ = fabric.await;
    coordinator.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves once the stop flag is raised.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
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

fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        let level = match level {
            "debug" => "debug",
            "warning" | "warn" => "warn",
            "error" | "critical" | "alert" | "emergency" => "error",
            "none" => "off",
            _ => "info",
        };
        format!("{level},hyper=warn,h2=warn,openraft=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
