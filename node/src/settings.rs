//! Effective settings of a node: command-line flags beat ini files, ini files beat
//! defaults.

use anyhow::Context;
use chaise_api::config_store::{parse_ini_map, ConfigStore};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;

/// Command-line interface of `chaise`.
#[derive(Debug, Parser)]
#[command(
    name = "chaise",
    version,
    about = "A CouchDB-compatible document database node"
)]
pub struct Cli {
    /// Data directory (default `[couchdb] database_dir`, else `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP port (default `[chttpd] port`, else 5984).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind (default `[chttpd] bind_address`, else 127.0.0.1).
    #[arg(long)]
    pub bind_address: Option<String>,
    /// CouchDB-style ini file; may repeat, later files win.
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    /// Port for node-to-node traffic (default `[chaise] cluster_port`, else 9100).
    #[arg(long)]
    pub cluster_port: Option<u16>,
    /// Node name, `name@host` (env NODENAME; a bare host becomes `chaise@host`).
    #[arg(long, env = "NODENAME")]
    pub node_name: Option<String>,
}

/// The resolved settings.
pub struct Settings {
    pub data_dir: PathBuf,
    pub port: u16,
    pub bind_address: String,
    pub node_name: String,
    /// Port of the fabric (node-to-node gRPC).
    pub cluster_port: u16,
    /// Address other nodes reach this node's fabric at: the node name's host and
    /// the cluster port.
    pub fabric_addr: String,
    /// Address clients (and other nodes proxying `/_node/...`) reach this node's
    /// HTTP API at: the node name's host and the HTTP port.
    pub http_addr: String,
    /// TLS between nodes, when `[fabric] tls = true`.
    pub fabric_tls: Option<chaise_cluster::fabric::FabricTls>,
    pub q: u32,
    pub n: usize,
    pub log_level: String,
    pub config: Arc<ConfigStore>,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        // The data directory may itself come from an ini file.
        let data_dir = match &cli.data_dir {
            Some(d) => d.clone(),
            None => {
                let mut dir = None;
                for f in &cli.config {
                    if let Ok(text) = std::fs::read_to_string(f) {
                        if let Some(d) = parse_ini_map(&text)
                            .get("couchdb")
                            .and_then(|s| s.get("database_dir"))
                        {
                            dir = Some(PathBuf::from(d));
                        }
                    }
                }
                dir.unwrap_or_else(|| PathBuf::from("./data"))
            }
        };
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let config = ConfigStore::load(&cli.config, data_dir.join("local.ini"))
            .context("loading configuration")?;
        let config = Arc::new(config);
        let port = match cli.port {
            Some(p) => p,
            None => config
                .get("chttpd", "port")
                .map(|p| p.trim().parse().context("[chttpd] port"))
                .transpose()?
                .unwrap_or(5984),
        };
        let bind_address = cli
            .bind_address
            .clone()
            .or_else(|| config.get("chttpd", "bind_address"))
            .unwrap_or_else(|| "127.0.0.1".to_string());
        // What the node runs with is visible through the config API.
        config.set_in_memory("chttpd", "port", &port.to_string());
        config.set_in_memory("chttpd", "bind_address", &bind_address);
        config.set_in_memory("couchdb", "database_dir", &data_dir.display().to_string());
        let node_name = match &cli.node_name {
            Some(n) if n.contains('@') => n.clone(),
            Some(host) => format!("chaise@{host}"),
            None => "chaise@127.0.0.1".to_string(),
        };
        let num = |section: &str, key: &str, default: u64| -> anyhow::Result<u64> {
            match config.get(section, key) {
                Some(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("[{section}] {key}")),
                None => Ok(default),
            }
        };
        let cluster_port = match cli.cluster_port {
            Some(p) => p,
            None => num("chaise", "cluster_port", 9100)? as u16,
        };
        let host = node_name.split_once('@').map_or("127.0.0.1", |(_, h)| h);
        let fabric_addr = format!("{host}:{cluster_port}");
        let http_addr = format!("{host}:{port}");
        config.set_in_memory("chaise", "cluster_port", &cluster_port.to_string());
        let fabric_tls = if config.get_or("fabric", "tls", "false") == "true" {
            let read = |key: &str| -> anyhow::Result<Vec<u8>> {
                let path = config
                    .get("fabric", key)
                    .with_context(|| format!("[fabric] tls = true needs [fabric] {key}"))?;
                std::fs::read(&path).with_context(|| format!("reading [fabric] {key} {path}"))
            };
            Some(chaise_cluster::fabric::FabricTls {
                cert_pem: read("cert_file")?,
                key_pem: read("key_file")?,
                ca_pem: read("ca_file")?,
            })
        } else {
            None
        };
        Ok(Settings {
            fabric_tls,
            data_dir,
            cluster_port,
            fabric_addr,
            http_addr,
            port,
            bind_address,
            node_name,
            q: num("cluster", "q", 2)? as u32,
            n: num("cluster", "n", 3)? as usize,
            log_level: config.get_or("log", "level", "info"),
            config,
        })
    }
}
