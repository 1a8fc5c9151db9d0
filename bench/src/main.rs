//! `bench`: a load tool for CouchDB-compatible servers.
//!
//! It drives a base URL (credentials in its userinfo, sent as Basic auth)
//! with a fixed set of workloads and prints their rates; with `--compare` it
//! runs the same workloads against a second URL and prints the ratios
//! (first / second). Exit status: 0 if every request succeeded, 1 if any
//! failed (the report says so loudly), 2 if the run could not start.

mod client;
mod driver;
mod listeners;
mod machine;
mod payload;
mod report;
mod stats;
mod workloads;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::client::Target;
use crate::report::Report;
use crate::workloads::{Config, Workload};

/// Load tool for CouchDB-compatible servers: prints rates per workload, and
/// with --compare the ratios first / second.
#[derive(Parser, Debug)]
#[command(
    name = "bench",
    version,
    after_help = "Exit status: 0 if every request succeeded, 1 if any failed, 2 if the run could not start."
)]
struct Cli {
    /// Base URL of the server under test, e.g. http://admin:pw@127.0.0.1:5984
    url: String,
    /// Base URL of a second server to run the same workloads against.
    #[arg(long, value_name = "URL")]
    compare: Option<String>,
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<Workload>,
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the benchmark; `Ok` carries failure if any request failed.
async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    config.validate()?;
    let mut selected = if cli.only.is_empty() {
        Workload::ALL.to_vec()
    } else {
        cli.only
    };
    selected.sort();
    selected.dedup();

    let timeout = Duration::from_secs(config.timeout);
    let mut targets = vec![(
        "A".to_string(),
        Target::new(&cli.url, config.max_conns(), timeout)?,
    )];
    if let Some(url) = &cli.compare {
        targets.push((
            "B".to_string(),
            Target::new(url, config.max_conns(), timeout)?,
        ));
    }

    println!("machine: {}", machine::describe());
    for (name, target) in &targets {
        let server = target
            .describe_server()
            .await
            .with_context(|| format!("cannot reach {name} at {}", target.label))?;
        println!("{name}: {} ({server})", target.label);
    }
    for line in config.describe(&selected) {
        println!("  {line}");
    }
    println!(
        "  docs of ~{} bytes; request timeout {} s; workload time limit {} s",
        config.doc_size, config.timeout, config.max_secs
    );
    println!();

    let mut results = Vec::new();
    for (name, target) in &targets {
        let measurements = workloads::run_suite(target, name, &config, &selected).await;
        results.push((name.clone(), measurements));
    }

    let report = Report::new(results);
    println!();
    print!("{}", report.render());
    let errors = report.total_errors();
    if errors > 0 {
        eprintln!("bench: failed requests: {errors}; the results are not valid");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
