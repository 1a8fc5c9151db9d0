//! The workloads, their settings, and the suite that runs them on one server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::client::{parse_json, Target};
use crate::driver::{closed_loop, repeated, Outcome};
use crate::listeners::{self, ListenerConfig};
use crate::payload::{seed_id, DocMaker};
use crate::report::Measurement;

/// Statuses that mean a write was accepted (`202` is CouchDB's "accepted,
/// quorum not yet met").
pub const WRITTEN: [StatusCode; 2] = [StatusCode::CREATED, StatusCode::ACCEPTED];

/// A workload that can be picked with `--only`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// `POST /db/_bulk_docs` in batches -> docs/s.
    #[value(name = "bulk_docs")]
    BulkDocs,
    /// Single-document `POST /db` -> docs/s.
    #[value(name = "post")]
    Post,
    /// Random `GET /db/{id}` over a seeded database -> req/s.
    #[value(name = "get")]
    Get,
    /// Full `GET /db/_all_docs`, without and with docs -> rows/s.
    #[value(name = "all_docs")]
    AllDocs,
    /// Full normal `GET /db/_changes` feed -> rows/s.
    #[value(name = "changes")]
    Changes,
    /// Single-doc writes seen by many continuous `_changes` listeners -> ms
    /// until all (and each) saw a write.
    #[value(name = "listeners")]
    Listeners,
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 6] = [
        Workload::BulkDocs,
        Workload::Post,
        Workload::Get,
        Workload::AllDocs,
        Workload::Changes,
        Workload::Listeners,
    ];

    /// Whether the workload reads the shared seeded database (rather than
    /// writing into a fresh one of its own).
    fn reads_seeded_db(self) -> bool {
        matches!(self, Workload::Get | Workload::AllDocs | Workload::Changes)
    }

    /// The `(workload, metric)` rows the workload reports.
    fn rows(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Workload::BulkDocs => &[("bulk_docs", "docs/s")],
            Workload::Post => &[("post", "docs/s")],
            Workload::Get => &[("get", "req/s")],
            Workload::AllDocs => &[("all_docs", "rows/s"), ("all_docs include_docs", "rows/s")],
            Workload::Changes => &[("changes", "rows/s")],
            Workload::Listeners => &listeners::ROWS,
        }
    }
}

/// Sizes of the workloads.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Total documents written by bulk_docs.
    #[arg(long = "bulk-docs", value_name = "N", default_value_t = 200_000)]
    pub bulk_docs: u64,
    /// Documents per _bulk_docs request (bulk_docs and seeding).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub batch_size: u64,
    /// Concurrent connections for bulk_docs and seeding.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub bulk_conns: usize,
    /// Total documents written by post, one per request.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub post_docs: u64,
    /// Concurrent connections for post.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub post_conns: usize,
    /// Total requests made by get.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub get_requests: u64,
    /// Concurrent connections for get.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub get_conns: usize,
    /// Documents seeded (with _bulk_docs) into the database that get,
    /// all_docs and changes read.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub seed_docs: u64,
    /// How many times all_docs and changes read the whole database.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub scan_repeats: u64,
    /// Approximate size of each document's JSON, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    pub doc_size: usize,
    /// Per-request timeout, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// Time limit of each workload (and of seeding), in seconds; work not
    /// started by then is skipped and counted as an error.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub max_secs: u64,
    #[command(flatten)]
    pub listeners: ListenerConfig,
}

impl Config {
    /// Rejects sizes that make no sense.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("--batch-size", self.batch_size),
            ("--bulk-conns", self.bulk_conns as u64),
            ("--post-conns", self.post_conns as u64),
            ("--get-conns", self.get_conns as u64),
            ("--seed-docs", self.seed_docs),
            ("--scan-repeats", self.scan_repeats),
            ("--timeout", self.timeout),
            ("--max-secs", self.max_secs),
        ];
        for (flag, value) in positive.into_iter().chain(self.listeners.positive()) {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        Ok(())
    }

    /// The most connections any workload opens to one server.
    pub fn max_conns(&self) -> usize {
        self.bulk_conns.max(self.post_conns).max(self.get_conns)
    }

    /// One line per selected workload saying what it does.
    pub fn describe(&self, selected: &[Workload]) -> Vec<String> {
        selected
            .iter()
            .map(|workload| match workload {
                Workload::BulkDocs => format!(
                    "bulk_docs: {} docs in batches of {} on {} conns",
                    self.bulk_docs, self.batch_size, self.bulk_conns
                ),
                Workload::Post => format!(
                    "post:      {} single-doc POSTs on {} conns",
                    self.post_docs, self.post_conns
                ),
                Workload::Get => format!(
                    "get:       {} random GETs over {} seeded docs on {} conns",
                    self.get_requests, self.seed_docs, self.get_conns
                ),
                Workload::AllDocs => format!(
                    "all_docs:  {} x full _all_docs (plain and include_docs) over {} docs",
                    self.scan_repeats, self.seed_docs
                ),
                Workload::Changes => format!(
                    "changes:   {} x full normal _changes over {} docs",
                    self.scan_repeats, self.seed_docs
                ),
                Workload::Listeners => self.listeners.describe(),
            })
            .collect()
    }
}

/// Runs the `selected` workloads on one server, printing a line as each one
/// ends, and returns their measurements. Failures are recorded in the
/// measurements, never returned.
pub async fn run_suite(
    target: &Target,
    server: &str,
    config: &Config,
    selected: &[Workload],
) -> Vec<Measurement> {
    let suite = Suite {
        target,
        server,
        config,
        maker: Arc::new(DocMaker::new(config.doc_size)),
    };
    let mut results = Vec::new();

    // Writers: each on a fresh database of its own.
    for &workload in selected.iter().filter(|w| !w.reads_seeded_db()) {
        let rows = match target.create_db().await {
            Ok(db) => {
                let mut rows = suite.run(workload, &db).await;
                suite.drop_db(&db, &mut rows).await;
                rows
            }
            Err(error) => failed(workload, &error),
        };
        suite.emit(rows, &mut results);
    }

    // Readers: all on one seeded database.
    let readers: Vec<Workload> = selected
        .iter()
        .copied()
        .filter(|w| w.reads_seeded_db())
        .collect();
    if readers.is_empty() {
        return results;
    }
    match suite.seeded_db().await {
        Ok(db) => {
            let mut rows = Vec::new();
            for &workload in &readers {
                let ran = suite.run(workload, &db).await;
                suite.emit(ran, &mut rows);
            }
            suite.drop_db(&db, &mut rows).await;
            results.extend(rows);
        }
        Err(error) => {
            for &workload in &readers {
                suite.emit(failed(workload, &error), &mut results);
            }
        }
    }
    results
}

/// Failed measurements for every row of `workload`.
fn failed(workload: Workload, error: &anyhow::Error) -> Vec<Measurement> {
    workload
        .rows()
        .iter()
        .map(|&(name, metric)| Measurement::failed(name, metric, error))
        .collect()
}

/// What every workload needs.
struct Suite<'a> {
    target: &'a Target,
    server: &'a str,
    config: &'a Config,
    maker: Arc<DocMaker>,
}

impl Suite<'_> {
    /// The time limit of one workload.
    fn limit(&self) -> Duration {
        Duration::from_secs(self.config.max_secs)
    }

    /// Prints `rows` and adds them to `results`.
    fn emit(&self, rows: Vec<Measurement>, results: &mut Vec<Measurement>) {
        for row in &rows {
            println!("{}", row.progress_line(self.server));
        }
        results.extend(rows);
    }

    /// Deletes database `db`, counting a failure against the last of `rows`.
    async fn drop_db(&self, db: &str, rows: &mut [Measurement]) {
        if let Err(error) = self.target.delete_db(db).await {
            match rows.last_mut() {
                Some(row) => row.errors.record(&error),
                None => eprintln!("[{}] {error:#}", self.server),
            }
        }
    }

    /// Runs one workload on database `db`.
    async fn run(&self, workload: Workload, db: &str) -> Vec<Measurement> {
        match workload {
            Workload::BulkDocs => {
                let outcome = self.load(db, self.config.bulk_docs, None).await;
                vec![Measurement::from_outcome("bulk_docs", "docs/s", outcome)]
            }
            Workload::Post => vec![Measurement::from_outcome(
                "post",
                "docs/s",
                self.post(db).await,
            )],
            Workload::Get => vec![Measurement::from_outcome(
                "get",
                "req/s",
                self.get(db).await,
            )],
            Workload::AllDocs => {
                let plain = self
                    .scan(format!("/{db}/_all_docs"), |body, expected| {
                        check_all_docs(body, expected, false)
                    })
                    .await;
                let with_docs = self
                    .scan(
                        format!("/{db}/_all_docs?include_docs=true"),
                        |body, expected| check_all_docs(body, expected, true),
                    )
                    .await;
                vec![
                    Measurement::from_outcome("all_docs", "rows/s", plain),
                    Measurement::from_outcome("all_docs include_docs", "rows/s", with_docs),
                ]
            }
            Workload::Changes => {
                let outcome = self.scan(format!("/{db}/_changes"), check_changes).await;
                vec![Measurement::from_outcome("changes", "rows/s", outcome)]
            }
            Workload::Listeners => {
                let config = &self.config.listeners;
                let (target, server) = (self.target, self.server);
                listeners::run(target, server, db, config, &self.maker, self.limit()).await
            }
        }
    }

    /// Creates a database and fills it with `--seed-docs` documents whose ids
    /// are `seed_id(0..n)`; fails unless every document was written.
    async fn seeded_db(&self) -> Result<String> {
        let db = self.target.create_db().await?;
        let started = Instant::now();
        let outcome = self.load(&db, self.config.seed_docs, Some(seed_id)).await;
        if outcome.errors.count == 0 && outcome.units == self.config.seed_docs {
            println!(
                "[{}] seeded {} docs in {:.2} s",
                self.server,
                outcome.units,
                started.elapsed().as_secs_f64()
            );
            return Ok(db);
        }
        let first = outcome
            .errors
            .samples
            .first()
            .map(|(message, _)| message.clone())
            .unwrap_or_default();
        let error = anyhow!(
            "seeding {} docs failed ({} requests failed): {first}",
            self.config.seed_docs,
            outcome.errors.count
        );
        if let Err(cleanup) = self.target.delete_db(&db).await {
            eprintln!("[{}] {cleanup:#}", self.server);
        }
        Err(error)
    }

    /// Writes `total` documents with `_bulk_docs` on `--bulk-conns`
    /// connections, with ids `id(n)` or server-chosen ones.
    async fn load(&self, db: &str, total: u64, id: Option<fn(u64) -> String>) -> Outcome {
        let batch = self.config.batch_size;
        let target = self.target.clone();
        let maker = Arc::clone(&self.maker);
        let path: Arc<str> = format!("/{db}/_bulk_docs").into();
        let batches = total.div_ceil(batch);
        closed_loop(self.config.bulk_conns, batches, self.limit(), move |i| {
            let start = i * batch;
            let end = (start + batch).min(total);
            let body = maker.batch(start..end, id);
            let target = target.clone();
            let path = Arc::clone(&path);
            async move {
                let bytes = target
                    .send(Method::POST, &path, Some(body), &WRITTEN)
                    .await?;
                check_bulk_docs(&parse_json(&bytes, &path)?, end - start)
                    .with_context(|| format!("POST {path}"))?;
                Ok(end - start)
            }
        })
        .await
    }

    /// Writes `--post-docs` documents one per `POST /db` on `--post-conns`
    /// connections.
    async fn post(&self, db: &str) -> Outcome {
        let target = self.target.clone();
        let maker = Arc::clone(&self.maker);
        let path: Arc<str> = format!("/{db}").into();
        let (conns, docs) = (self.config.post_conns, self.config.post_docs);
        closed_loop(conns, docs, self.limit(), move |n| {
            let body = maker.doc(None, n);
            let target = target.clone();
            let path = Arc::clone(&path);
            async move {
                let bytes = target
                    .send(Method::POST, &path, Some(body), &WRITTEN)
                    .await?;
                check_write(&parse_json(&bytes, &path)?).with_context(|| format!("POST {path}"))?;
                Ok(1)
            }
        })
        .await
    }

    /// Reads random seeded documents on `--get-conns` connections.
    async fn get(&self, db: &str) -> Outcome {
        let target = self.target.clone();
        let seeded = self.config.seed_docs;
        let db: Arc<str> = db.into();
        let (conns, requests) = (self.config.get_conns, self.config.get_requests);
        closed_loop(conns, requests, self.limit(), move |_| {
            let id = seed_id(rand::thread_rng().gen_range(0..seeded));
            let path = format!("/{db}/{id}");
            let target = target.clone();
            async move {
                let bytes = target
                    .send(Method::GET, &path, None, &[StatusCode::OK])
                    .await?;
                let doc = parse_json(&bytes, &path)?;
                if doc.get("_id").and_then(Value::as_str) != Some(id.as_str()) {
                    bail!("GET {path}: response is not document {id}");
                }
                Ok(1)
            }
        })
        .await
    }

    /// Reads `path` (a whole-database listing) `--scan-repeats` times. The
    /// time counted is until the whole body arrived; `check` then verifies it
    /// lists `--seed-docs` rows.
    async fn scan(&self, path: String, check: fn(&Value, u64) -> Result<()>) -> Outcome {
        let expected = self.config.seed_docs;
        let path = path.as_str();
        repeated(self.config.scan_repeats, self.limit(), || async move {
            let started = Instant::now();
            let bytes = self
                .target
                .send(Method::GET, path, None, &[StatusCode::OK])
                .await?;
            let took: Duration = started.elapsed();
            check(&parse_json(&bytes, path)?, expected).with_context(|| format!("GET {path}"))?;
            Ok((expected, took))
        })
        .await
    }
}

/// Checks a `_bulk_docs` response: one successful result per document.
fn check_bulk_docs(body: &Value, expected: u64) -> Result<()> {
    let results = body.as_array().context("response is not an array")?;
    if results.len() as u64 != expected {
        bail!("{} results for {expected} docs", results.len());
    }
    results.iter().try_for_each(check_write)
}

/// Checks one write result: `{"ok": true, "id": ..., "rev": ...}`.
pub fn check_write(result: &Value) -> Result<()> {
    if result.get("error").is_some() {
        bail!("write failed: {result}");
    }
    let ok = result.get("ok").and_then(Value::as_bool) == Some(true);
    let id = result.get("id").and_then(Value::as_str).is_some();
    let rev = result.get("rev").and_then(Value::as_str).is_some();
    if !(ok && id && rev) {
        bail!("write result lacks ok/id/rev: {result}");
    }
    Ok(())
}

/// Checks an `_all_docs` response lists `expected` rows (with their docs if
/// `with_docs`).
fn check_all_docs(body: &Value, expected: u64, with_docs: bool) -> Result<()> {
    let total = body.get("total_rows").and_then(Value::as_u64);
    if total != Some(expected) {
        bail!("total_rows is {total:?}, expected {expected}");
    }
    let rows = body
        .get("rows")
        .and_then(Value::as_array)
        .context("no rows array")?;
    if rows.len() as u64 != expected {
        bail!("{} rows, expected {expected}", rows.len());
    }
    if with_docs {
        for row in rows {
            let id = row.get("id").and_then(Value::as_str);
            let doc_id = row.pointer("/doc/_id").and_then(Value::as_str);
            if id.is_none() || id != doc_id {
                bail!("row {id:?} lacks its doc");
            }
        }
    }
    Ok(())
}

/// Checks a normal `_changes` response lists `expected` results.
fn check_changes(body: &Value, expected: u64) -> Result<()> {
    let results = body
        .get("results")
        .and_then(Value::as_array)
        .context("no results array")?;
    if results.len() as u64 != expected {
        bail!("{} results, expected {expected}", results.len());
    }
    if body.get("last_seq").is_none() {
        bail!("no last_seq");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bulk_docs_results_are_checked() {
        let good = json!([{"ok": true, "id": "a", "rev": "1-x"}]);
        assert!(check_bulk_docs(&good, 1).is_ok());
        assert!(check_bulk_docs(&good, 2).is_err());
        let conflict = json!([{"id": "a", "error": "conflict", "reason": "x"}]);
        assert!(check_bulk_docs(&conflict, 1).is_err());
    }

    #[test]
    fn all_docs_counts_and_docs_are_checked() {
        let body = json!({"total_rows": 1, "rows": [{"id": "a", "doc": {"_id": "a"}}]});
        assert!(check_all_docs(&body, 1, true).is_ok());
        assert!(check_all_docs(&body, 2, false).is_err());
        let bare = json!({"total_rows": 1, "rows": [{"id": "a"}]});
        assert!(check_all_docs(&bare, 1, false).is_ok());
        assert!(check_all_docs(&bare, 1, true).is_err());
    }

    #[test]
    fn changes_count_is_checked() {
        let body = json!({"results": [{"id": "a"}], "last_seq": "1"});
        assert!(check_changes(&body, 1).is_ok());
        assert!(check_changes(&body, 2).is_err());
    }
}
