//! The `listeners` workload: how long a write takes to reach every one of
//! many continuous `_changes` listeners.
//!
//! It opens `--listeners` feeds `GET /{db}/_changes?feed=continuous&since=now`,
//! each on a TCP connection of its own, and waits until every one has its
//! response headers. Then it writes `--listener-rounds` documents one at a
//! time with `PUT /{db}/{id}`: for each it takes the instant the write was
//! sent and the instant it was acknowledged, and every listener stamps the
//! instant the chunk that completed the write's change line arrived. A round
//! ends when every listener saw its write (or `--listener-wait` passed).
//!
//! It reports, over the rounds, the time until the last listener saw the
//! write, counted from the write sent and from its acknowledgement (zero if
//! every listener had it before the acknowledgement), and the time each
//! listener took, counted from the write sent. Each figure is the slowest
//! sample, shown with the p50 and p99.
//!
//! Every listener lives in this process, so the figures include the tool's
//! own time to take in that many sockets: with few cores, the server and the
//! tool compete for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use reqwest::{Method, Response};
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::client::{parse_json, Target};
use crate::payload::DocMaker;
use crate::report::Measurement;
use crate::stats::{ErrorLog, Latencies};
use crate::workloads::{check_write, WRITTEN};

/// The heartbeat asked of each feed, in milliseconds: a blank line when the
/// feed is otherwise quiet that long.
const HEARTBEAT_MS: u64 = 10_000;

/// How many feeds are being opened at once (all stay open), so that the
/// server's accept queue does not overflow.
const OPENING_AT_ONCE: usize = 64;

/// The `_id` of the document written in round `n` is this prefix and `n`.
const ROUND_ID_PREFIX: &str = "listen-";

/// The `(workload, metric)` rows the workload reports; their figure is the
/// slowest sample (hence `max`).
pub const ROWS: [(&str, &str); 3] = [
    ("listeners all, from send", "max"),
    ("listeners all, from ack", "max"),
    ("listeners each, from send", "max"),
];

/// Sizes of the listeners workload.
#[derive(Args, Debug, Clone)]
pub struct ListenerConfig {
    /// Continuous _changes listeners opened by listeners, each on a TCP
    /// connection of its own (`ulimit -n` must allow that many sockets).
    #[arg(long = "listeners", value_name = "N", default_value_t = 1000)]
    pub count: usize,
    /// Documents written by listeners, one at a time, each awaited on every
    /// listener.
    #[arg(long = "listener-rounds", value_name = "N", default_value_t = 20)]
    pub rounds: u64,
    /// How long listeners waits for every listener to see a write, in
    /// seconds; a listener that did not is counted as an error.
    #[arg(long = "listener-wait", value_name = "SECS", default_value_t = 10)]
    pub wait: u64,
}

impl ListenerConfig {
    /// The flags that must be at least 1, with their values.
    pub fn positive(&self) -> [(&'static str, u64); 3] {
        [
            ("--listeners", self.count as u64),
            ("--listener-rounds", self.rounds),
            ("--listener-wait", self.wait),
        ]
    }

    /// One line saying what the workload does.
    pub fn describe(&self) -> String {
        format!(
            "listeners: {} continuous _changes listeners, {} writes one at a time, each awaited up to {} s",
            self.count, self.rounds, self.wait
        )
    }
}

/// Runs the workload on the empty database `db` of `target`, printing a line
/// per round tagged with `server`; no round starts after `limit`. Failures
/// are counted on the first row, never returned.
pub async fn run(
    target: &Target,
    server: &str,
    db: &str,
    config: &ListenerConfig,
    maker: &DocMaker,
    limit: Duration,
) -> Vec<Measurement> {
    let started = Instant::now();
    let deadline = started + limit;
    let mut errors = ErrorLog::default();
    let path = format!("/{db}/_changes?feed=continuous&since=now&heartbeat={HEARTBEAT_MS}");
    let mut feeds = Feeds::open(target, &path, config.count, deadline, &mut errors).await;
    println!(
        "[{server}] listeners: {} of {} feeds open in {:.2} s",
        feeds.live(),
        config.count,
        started.elapsed().as_secs_f64()
    );

    let mut all_from_sent = Latencies::default();
    let mut all_from_acked = Latencies::default();
    let mut each = Latencies::default();
    let rounds_started = Instant::now();
    for round in 0..config.rounds {
        if feeds.live() == 0 {
            errors.record(&anyhow!("no listener left: rounds {round}.. not run"));
            break;
        }
        if Instant::now() >= deadline {
            errors.record(&anyhow!(
                "time limit of {} s reached: only {round} of {} rounds run",
                limit.as_secs(),
                config.rounds
            ));
            break;
        }
        let id = round_id(round);
        let body = maker.doc(Some(&id), round);
        let doc_path = format!("/{db}/{id}");
        let sent = Instant::now();
        let written = write(target, &doc_path, body).await;
        let acked = Instant::now();
        if let Err(error) = written {
            errors.record(&error);
            continue;
        }
        let expected = feeds.live();
        let wait = Duration::from_secs(config.wait);
        let (seen, missed) = feeds.await_round(round, acked + wait, &mut errors).await;
        for at in &seen {
            each.record(at.saturating_duration_since(sent));
        }
        if missed > 0 {
            // Not every listener saw it: there is no "all saw it" time.
            errors.record(&anyhow!(
                "{missed} of {} open listeners did not see a write within {} s",
                seen.len() + missed,
                config.wait
            ));
        }
        let Some(&last) = seen.iter().max() else {
            println!(
                "[{server}] listeners round {:>3}/{}: acked in {}, no listener saw it",
                round + 1,
                config.rounds,
                millis(acked - sent),
            );
            continue;
        };
        if missed == 0 {
            all_from_sent.record(last.saturating_duration_since(sent));
            all_from_acked.record(last.saturating_duration_since(acked));
        }
        println!(
            "[{server}] listeners round {:>3}/{}: acked in {}, {} of {expected} saw it {} after send, {} after ack",
            round + 1,
            config.rounds,
            millis(acked - sent),
            seen.len(),
            millis(last - sent),
            signed_millis(last, acked),
        );
    }
    let elapsed = rounds_started.elapsed();
    feeds.close().await;

    let [from_sent, from_acked, per_listener] = ROWS;
    vec![
        Measurement::from_latencies(from_sent.0, from_sent.1, all_from_sent, elapsed, errors),
        Measurement::from_latencies(
            from_acked.0,
            from_acked.1,
            all_from_acked,
            elapsed,
            ErrorLog::default(),
        ),
        Measurement::from_latencies(
            per_listener.0,
            per_listener.1,
            each,
            elapsed,
            ErrorLog::default(),
        ),
    ]
}

/// Writes one document with `PUT path`.
async fn write(target: &Target, path: &str, body: String) -> Result<()> {
    let bytes = target.send(Method::PUT, path, Some(body), &WRITTEN).await?;
    check_write(&parse_json(&bytes, path)?).with_context(|| format!("PUT {path}"))
}

/// What a listener tells the workload.
#[derive(Debug)]
enum Event {
    /// The listener's feed is open (its headers arrived), or could not be.
    Opened { listener: usize, result: Result<()> },
    /// The listener's feed delivered the change of round `round`'s document
    /// in a chunk that arrived at `at`.
    Saw {
        listener: usize,
        round: u64,
        at: Instant,
    },
    /// The listener's feed ended or failed.
    Ended {
        listener: usize,
        error: anyhow::Error,
    },
}

/// The open feeds: a task per listener, and the events they send.
struct Feeds {
    tasks: Vec<JoinHandle<()>>,
    events: UnboundedReceiver<Event>,
    /// Which listeners have their feed open.
    open: Vec<bool>,
}

impl Feeds {
    /// Opens `count` feeds `GET path` and waits until each is open or failed
    /// (each failure recorded in `errors`), or until `deadline`.
    async fn open(
        target: &Target,
        path: &str,
        count: usize,
        deadline: Instant,
        errors: &mut ErrorLog,
    ) -> Self {
        let (sender, events) = unbounded_channel();
        let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
        let path: Arc<str> = path.into();
        let tasks = (0..count)
            .map(|listener| {
                let listener = Listener {
                    index: listener,
                    events: sender.clone(),
                };
                let (target, path, gate) = (target.clone(), Arc::clone(&path), Arc::clone(&gate));
                tokio::spawn(async move {
                    let opened = {
                        let _turn = gate.acquire().await;
                        target.open_feed(&path).await
                    };
                    listener.run(opened).await;
                })
            })
            .collect();
        drop(sender);
        let mut feeds = Self {
            tasks,
            events,
            open: vec![false; count],
        };

        let mut pending = count;
        while pending > 0 {
            let Some(event) = feeds.next_event(deadline).await else {
                errors.record(&anyhow!("{pending} of {count} listeners not open in time"));
                break;
            };
            match event {
                Event::Opened { listener, result } => {
                    pending -= 1;
                    match result {
                        Ok(()) => feeds.open[listener] = true,
                        Err(error) => errors.record(&error),
                    }
                }
                other => feeds.note(other, errors),
            }
        }
        feeds
    }

    /// How many feeds are open.
    fn live(&self) -> usize {
        self.open.iter().filter(|&&open| open).count()
    }

    /// The next event, or `None` if `deadline` passed or no listener is left.
    async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Takes note of an event that is not a sighting of the awaited write: a
    /// feed that ended is closed, and its error recorded.
    fn note(&mut self, event: Event, errors: &mut ErrorLog) {
        match event {
            Event::Ended { listener, error } => {
                if std::mem::take(&mut self.open[listener]) {
                    errors.record(&error);
                }
            }
            // Late: its round was given up on.
            Event::Saw { .. } => {}
            // Too late: not counted as open.
            Event::Opened { result, .. } => {
                if let Err(error) = result {
                    errors.record(&error);
                }
            }
        }
    }

    /// Waits until every open feed delivered round `round`'s write or until
    /// `deadline`, and returns the instants at which they did and how many
    /// feeds still open did not. Feeds that end meanwhile are closed, their
    /// errors recorded.
    async fn await_round(
        &mut self,
        round: u64,
        deadline: Instant,
        errors: &mut ErrorLog,
    ) -> (Vec<Instant>, usize) {
        let mut seen: Vec<Option<Instant>> = vec![None; self.open.len()];
        let mut waiting = self.live();
        while waiting > 0 {
            let Some(event) = self.next_event(deadline).await else {
                break;
            };
            match event {
                Event::Saw {
                    listener,
                    round: r,
                    at,
                } if r == round && self.open[listener] && seen[listener].is_none() => {
                    seen[listener] = Some(at);
                    waiting -= 1;
                }
                Event::Ended { listener, .. } if self.open[listener] => {
                    if seen[listener].is_none() {
                        waiting -= 1;
                    }
                    self.note(event, errors);
                }
                other => self.note(other, errors),
            }
        }
        let missed = (self.open.iter().zip(&seen))
            .filter(|(&open, seen)| open && seen.is_none())
            .count();
        (seen.into_iter().flatten().collect(), missed)
    }

    /// Stops every listener, which closes its connection.
    async fn close(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled, as asked.
            let _ = task.await;
        }
    }
}

impl Drop for Feeds {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One listener: reads its feed and reports what it sees.
struct Listener {
    index: usize,
    events: UnboundedSender<Event>,
}

impl Listener {
    /// Reports the feed `opened` and reads it until it ends or fails.
    async fn run(self, opened: Result<Response>) {
        let response = match opened {
            Ok(response) => {
                self.send(Event::Opened {
                    listener: self.index,
                    result: Ok(()),
                });
                response
            }
            Err(error) => {
                self.send(Event::Opened {
                    listener: self.index,
                    result: Err(error),
                });
                return;
            }
        };
        let error = self.read(response).await;
        self.send(Event::Ended {
            listener: self.index,
            error,
        });
    }

    /// Reads the feed, reporting each change line of a round's document, and
    /// returns why it stopped.
    async fn read(&self, mut response: Response) -> anyhow::Error {
        let mut lines = Lines::default();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return anyhow!("a continuous _changes feed ended"),
                Err(error) => {
                    return anyhow::Error::new(error).context("reading a continuous _changes feed")
                }
            };
            // Stamped before parsing: parsing is the tool's time, not the server's.
            let at = Instant::now();
            let mut failure = None;
            lines.push(&chunk, |line| {
                if failure.is_some() {
                    return;
                }
                match changed_id(line) {
                    Ok(Some(id)) => {
                        if let Some(round) = round_of(&id) {
                            self.send(Event::Saw {
                                listener: self.index,
                                round,
                                at,
                            });
                        }
                    }
                    Ok(None) => {}
                    Err(error) => failure = Some(error),
                }
            });
            if let Some(error) = failure {
                return error.context("reading a continuous _changes feed");
            }
        }
    }

    fn send(&self, event: Event) {
        // The workload stopped listening: nothing to tell.
        let _ = self.events.send(event);
    }
}

/// Splits a byte stream into `\n`-terminated lines, whatever the chunks.
#[derive(Default)]
struct Lines {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl Lines {
    /// Adds `chunk` and calls `line` with each line it completes (without its
    /// `\n` or `\r\n`).
    fn push(&mut self, chunk: &[u8], mut line: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                line(trim_cr(&rest[..end]));
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                line(trim_cr(&self.partial));
                self.partial.clear();
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
    }
}

/// `line` without a trailing `\r`.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The document id of a continuous feed line: `Some` for a change row,
/// `None` for a heartbeat (blank line) or the closing `last_seq` line, an
/// error for anything else.
fn changed_id(line: &[u8]) -> Result<Option<String>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let snippet = || -> String { String::from_utf8_lossy(line).chars().take(200).collect() };
    let mut row: Value = serde_json::from_slice(line)
        .with_context(|| format!("feed line is not JSON: {}", snippet()))?;
    if let Some(Value::String(id)) = row.get_mut("id") {
        return Ok(Some(std::mem::take(id)));
    }
    if row.get("last_seq").is_some() {
        return Ok(None);
    }
    bail!("unexpected feed line: {}", snippet())
}

/// The `_id` of the document written in round `round`.
fn round_id(round: u64) -> String {
    format!("{ROUND_ID_PREFIX}{round:06}")
}

/// The round whose document has `_id` `id`, if any.
fn round_of(id: &str) -> Option<u64> {
    id.strip_prefix(ROUND_ID_PREFIX)?.parse().ok()
}

/// A duration in milliseconds, e.g. `1.23 ms`.
fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// `at - since` in milliseconds, negative if `at` came first.
fn signed_millis(at: Instant, since: Instant) -> String {
    match at.checked_duration_since(since) {
        Some(after) => millis(after),
        None => format!("-{}", millis(since - at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `chunks` make, as strings.
    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.push(chunk, |line| {
                out.push(String::from_utf8(line.to_vec()).expect("utf-8"))
            });
        }
        out
    }

    #[test]
    fn lines_are_joined_across_chunks() {
        let feed = b"{\"seq\":\"1\",\"id\":\"listen-000001\",\"changes\":[]}\n\n{\"id\":\"b\"}\r\n";
        let whole = split(&[feed]);
        assert_eq!(
            whole,
            [
                "{\"seq\":\"1\",\"id\":\"listen-000001\",\"changes\":[]}",
                "",
                "{\"id\":\"b\"}"
            ]
        );
        // Every way of cutting the feed in three gives the same lines.
        for i in 0..feed.len() {
            for j in i..feed.len() {
                assert_eq!(split(&[&feed[..i], &feed[i..j], &feed[j..]]), whole);
            }
        }
        // A line whose end has not come is held back.
        assert_eq!(split(&[b"{\"id\":", b"\"a\"}"]), Vec::<String>::new());
    }

    #[test]
    fn feed_lines_are_parsed() {
        let row = br#"{"seq":"3-g1AAAA","id":"listen-000003","changes":[{"rev":"1-abc"}]}"#;
        assert_eq!(changed_id(row).unwrap().as_deref(), Some("listen-000003"));
        assert_eq!(changed_id(b"").unwrap(), None);
        assert_eq!(changed_id(b"  ").unwrap(), None);
        assert_eq!(
            changed_id(br#"{"last_seq":"9","pending":0}"#).unwrap(),
            None
        );
        assert!(changed_id(b"{\"seq\":").is_err());
        assert!(changed_id(br#"{"error":"not_found"}"#).is_err());
    }

    #[test]
    fn round_ids_round_trip() {
        assert_eq!(round_of(&round_id(0)), Some(0));
        assert_eq!(round_of(&round_id(1234)), Some(1234));
        assert_eq!(round_of("doc-00000001"), None);
        assert_eq!(round_of("listen-x"), None);
    }

    #[test]
    fn signed_millis_shows_which_came_first() {
        let now = Instant::now();
        let later = now + Duration::from_micros(1500);
        assert_eq!(signed_millis(later, now), "1.50 ms");
        assert_eq!(signed_millis(now, later), "-1.50 ms");
    }
}
