//! `GET|POST /{db}/_changes`: the normal feed and the live ones (`longpoll`,
//! `continuous`/`live`, `eventsource`).
//!
//! A live feed streams its body from a task of its own. The task parks on the
//! update-sequence watch channels of this node's shard copies, a heartbeat timer
//! and the closing of the response body, so an idle feed costs one parked task;
//! only ranges with no copy on this node are re-checked on a short timer.

use crate::doc_json::{render_doc, RenderOpts, RenderRev};
use crate::error::{ApiError, ApiResult};
use crate::handlers::document::inline_data;
use crate::request::Req;
use crate::response::{push_json, push_str};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use chaise_cluster::seq::SeqVector;
use chaise_cluster::{ChangesCursor, ChangesQuery, ChangesRow};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const FEEDS: [&str; 5] = ["normal", "continuous", "live", "longpoll", "eventsource"];

/// How often ranges with no copy on this node are re-checked by a live feed.
const REMOTE_RECHECK: Duration = Duration::from_millis(250);

/// The opening of a normal or longpoll body (`chttpd_db:changes_callback`).
const RESULTS_OPEN: &[u8] = b"{\"results\":[\n";

/// Live feeds (`_changes` and `_db_updates`) open on this node.
static OPEN_FEEDS: AtomicUsize = AtomicUsize::new(0);

/// `GET /_node/{node}/_stats[/group/metric]`: the live-feed gauge, under
/// CouchDB's name `couchdb.httpd.clients_requesting_changes` (it counts open
/// `_changes` and `_db_updates` live feeds).
pub fn stats(req: &Req, path: &[&str]) -> ApiResult<Response> {
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(not_allowed("GET,HEAD"));
    }
    let all = serde_json::json!({"couchdb": {"httpd": {"clients_requesting_changes": {
        "value": OPEN_FEEDS.load(Ordering::Relaxed),
        "type": "counter",
        "desc": "number of clients for continuous _changes"
    }}}});
    let found = path.iter().try_fold(&all, |v, k| v.get(*k));
    match found {
        Some(v) => Ok(crate::response::json(StatusCode::OK, v)),
        None => Err(ApiError::not_found("missing")),
    }
}

/// Counts one open live feed for as long as it lives.
pub(crate) struct OpenFeed(());

impl OpenFeed {
    /// Counts a feed that starts now.
    pub(crate) fn start() -> Self {
        OPEN_FEEDS.fetch_add(1, Ordering::Relaxed);
        OpenFeed(())
    }
}

impl Drop for OpenFeed {
    fn drop(&mut self) {
        OPEN_FEEDS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The kind of a changes feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// One JSON body with what is there now.
    Normal,
    /// One JSON body, once there is at least one change (or at the timeout).
    Longpoll,
    /// One JSON object per line, until the timeout or the limit.
    Continuous,
    /// Server-sent events.
    EventSource,
}

/// The sending half of a streamed body.
pub(crate) type BodySender = mpsc::Sender<Result<Bytes, Infallible>>;

/// A response whose body is streamed from `rx` (`text/event-stream` for
/// eventsource feeds, JSON otherwise).
pub(crate) fn streamed(feed: Feed) -> (BodySender, Response) {
    let (tx, rx) = mpsc::channel(16);
    let mut resp = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let h = resp.headers_mut();
    if feed == Feed::EventSource {
        h.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
    } else {
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("cache-control", HeaderValue::from_static("must-revalidate"));
    }
    (tx, resp)
}

/// The heartbeat bytes of a feed.
pub(crate) fn heartbeat_bytes(feed: Feed) -> &'static [u8] {
    if feed == Feed::EventSource {
        b"event: heartbeat\ndata: \n\n"
    } else {
        b"\n"
    }
}

/// Timing of a live feed: `heartbeat` (ms or `true`) and `timeout` (ms), capped by
/// `[chttpd] changes_timeout` as `couch_changes:get_changes_timeout` does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Interval of heartbeats; with heartbeats the feed never times out.
    pub heartbeat: Option<Duration>,
    /// Idle time after which the feed ends (without heartbeats).
    pub timeout: Duration,
}

impl Timing {
    /// Parses `_changes`' `heartbeat` and `timeout`.
    fn parse(state: &AppState, req: &Req) -> ApiResult<Timing> {
        let default = state.config_u64("chttpd", "changes_timeout", 60_000);
        let heartbeat = match req.param("heartbeat") {
            None => None,
            Some("true") => Some(default),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n > 0 => Some((n as u64).min(default)),
                Ok(_) => {
                    return Err(ApiError::bad_request(
                        "The heartbeat value should be a positive integer (in milliseconds).",
                    ))
                }
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).",
                    ))
                }
            },
        };
        let timeout = match req.param("timeout") {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => n.min(default),
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "Invalid timeout value. Expecting a non-negative integer value (in milliseconds).",
                    ))
                }
            },
        };
        Ok(Timing {
            heartbeat: heartbeat.map(Duration::from_millis),
            timeout: Duration::from_millis(timeout),
        })
    }
}

/// A parsed changes request.
struct Params {
    feed: Feed,
    query: ChangesQuery,
    opts: RenderOpts,
    include_docs: bool,
    all_leaves: bool,
    seq_interval: Option<u64>,
    timing: Timing,
}

/// `GET|POST /{db}/_changes`.
pub async fn changes(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return Err(not_allowed("GET,HEAD,POST"));
    }
    let p = parse(state, req, ctx).await?;
    if p.feed == Feed::Normal {
        // Errors opening the feed or reading its first rows still get a status;
        // the rest is streamed as the copies deliver it.
        let mut cursor = state.coordinator.changes_cursor(ctx.db, &p.query).await?;
        let first = cursor.next_batch().await?;
        let db = ctx.db.to_string();
        return spawn_body(state, Feed::Normal, move |state, tx| async move {
            if let Err(e) = stream_normal(&state, &db, &p, cursor, first, &tx).await {
                tracing::warn!(%db, error = %e.reason, "changes feed cut short");
            }
        });
    }
    // Counted from here, so the gauge already shows it when the headers go out.
    let open = OpenFeed::start();
    let db = ctx.db.to_string();
    let feed = p.feed;
    spawn_body(state, feed, move |state, tx| {
        run_live(state, db, p, tx, open)
    })
}

/// A response whose body `task` writes to the sender it is given, in its own task.
pub(crate) fn spawn_body<F, Fut>(state: &AppState, feed: Feed, task: F) -> ApiResult<Response>
where
    F: FnOnce(Arc<AppState>, BodySender) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let shared = state
        .shared()
        .ok_or_else(|| ApiError::internal("the server is stopping"))?;
    let (tx, resp) = streamed(feed);
    tokio::spawn(task(shared, tx));
    Ok(resp)
}

async fn parse(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Params> {
    let feed = match req.param("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" | "live" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        _ => {
            return Err(ApiError::bad_request(format!(
                "Supported `feed` types: {}",
                FEEDS.join(", ")
            )))
        }
    };
    let body = if req.method == Method::POST {
        req.require_json()?;
        if req.body.is_empty() {
            None
        } else {
            Some(req.json_object()?)
        }
    } else {
        None
    };
    // chttpd_db:parse_changes_query honours only the exact value "true" for flags.
    let flag = |name: &str| req.param(name) == Some("true");
    let filter = req.param("filter");
    let mut doc_ids = None;
    let mut design_only = false;
    match filter {
        None => {}
        Some("_doc_ids") => {
            let list = match &body {
                Some(b) => b.get("doc_ids").cloned().unwrap_or(Value::Null),
                None => match req.param("doc_ids") {
                    Some(v) => serde_json::from_str(v)
                        .map_err(|_| ApiError::bad_request("invalid UTF-8 JSON"))?,
                    None => Value::Null,
                },
            };
            let ids = list
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    ApiError::bad_request("`doc_ids` filter parameter is not a list of doc ids.")
                })?;
            doc_ids = Some(ids);
        }
        Some("_design") => design_only = true,
        Some(f) if f.starts_with('_') => {
            return Err(ApiError::bad_request("unknown builtin filter name"))
        }
        Some(_) => return Err(ApiError::not_found("missing")),
    }
    // A browser reconnecting an EventSource resumes from the last id it saw.
    let last_event_id = match feed {
        Feed::EventSource => req.header("last-event-id"),
        _ => None,
    };
    let since = match last_event_id.or(req.param("since")) {
        None | Some("0") => SeqVector::default(),
        Some("now") => state.coordinator.current_seq(ctx.db).await?,
        Some(s) => SeqVector::decode(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let limit = req.uint_param("limit")?.map_or(usize::MAX, |l| l as usize);
    let include_docs = flag("include_docs");
    let all_leaves = match req.param("style") {
        None | Some("main_only") => false,
        Some("all_docs") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Supported `style` values: main_only, all_docs",
            ))
        }
    };
    let opts = RenderOpts {
        conflicts: flag("conflicts"),
        attachments: flag("attachments"),
        att_encoding_info: flag("att_encoding_info"),
        ..Default::default()
    };
    let seq_interval = req.uint_param("seq_interval")?.filter(|n| *n > 0);
    let timing = Timing::parse(state, req)?;
    Ok(Params {
        feed,
        query: ChangesQuery {
            since,
            limit,
            // Only a normal feed reads backwards.
            descending: feed == Feed::Normal && flag("descending"),
            include_docs,
            doc_ids,
            design_only,
        },
        opts,
        include_docs,
        all_leaves,
        seq_interval,
        timing,
    })
}

/// Bytes a streamed feed gathers before sending them on.
const SEND_AT: usize = 64 * 1024;

/// Streams a normal feed's body from its cursor, one batch after the other.
async fn stream_normal(
    state: &AppState,
    db: &str,
    p: &Params,
    mut cursor: ChangesCursor,
    first: Option<Vec<ChangesRow>>,
    tx: &BodySender,
) -> ApiResult<()> {
    let mut out = RESULTS_OPEN.to_vec();
    if render_cursor(state, db, p, &mut cursor, first, &mut out, tx)
        .await?
        .is_none()
    {
        return Ok(());
    }
    let (last_seq, pending) = cursor.finish().await?;
    results_close(&last_seq, pending, &mut out);
    send(tx, out).await;
    Ok(())
}

/// Renders the rows of a cursor (from `first` on) into `out`, sending `out` on to
/// `tx` whenever it fills up. The number of rows, or `None` if the client went
/// away.
async fn render_cursor(
    state: &AppState,
    db: &str,
    p: &Params,
    cursor: &mut ChangesCursor,
    first: Option<Vec<ChangesRow>>,
    out: &mut Vec<u8>,
    tx: &BodySender,
) -> ApiResult<Option<usize>> {
    let mut at = 0;
    let mut batch = first;
    while let Some(rows) = batch {
        // The next batch is read first: `seq_interval` shows the very last seq.
        let next = cursor.next_batch().await?;
        render_rows(state, db, p, &rows, (at, next.is_none()), out).await?;
        at += rows.len();
        if out.len() >= SEND_AT && !send(tx, std::mem::take(out)).await {
            return Ok(None);
        }
        batch = next;
    }
    Ok(Some(at))
}

/// Renders a batch of rows in the feed's framing: joined by `",\n"` in a JSON
/// body, one per line for continuous feeds, one event each for eventsource.
/// `(at, ends)`: the index of the batch's first row in the body, and whether the
/// batch is the body's last.
async fn render_rows(
    state: &AppState,
    db: &str,
    p: &Params,
    rows: &[ChangesRow],
    (at, ends): (usize, bool),
    out: &mut Vec<u8>,
) -> ApiResult<()> {
    let n = rows.len();
    for (i, row) in rows.iter().enumerate() {
        let show_seq = p
            .seq_interval
            .is_none_or(|k| (at + i + 1) % (k as usize) == 0 || (ends && i + 1 == n));
        match p.feed {
            Feed::Normal | Feed::Longpoll => {
                if at + i > 0 {
                    out.extend_from_slice(b",\n");
                }
                render_row(state, db, row, p, show_seq, out).await?;
            }
            Feed::Continuous => {
                render_row(state, db, row, p, show_seq, out).await?;
                out.push(b'\n');
            }
            Feed::EventSource => {
                out.extend_from_slice(b"data: ");
                render_row(state, db, row, p, show_seq, out).await?;
                out.extend_from_slice(b"\nid: ");
                push_seq(out, row, show_seq);
                out.extend_from_slice(b"\n\n");
            }
        }
    }
    Ok(())
}

/// The end of a normal or longpoll body: `"\n],\n\"last_seq\":...,\"pending\":N}\n"`.
fn results_close(last_seq: &str, pending: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\n],\n\"last_seq\":");
    push_str(out, last_seq);
    out.extend_from_slice(b",\"pending\":");
    out.extend_from_slice(pending.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
}

/// A row's sequence as a JSON string, or `null` when sequences are not shown.
fn push_seq(out: &mut Vec<u8>, row: &ChangesRow, show_seq: bool) {
    if show_seq {
        push_str(out, &row.seq);
    } else {
        out.extend_from_slice(b"null");
    }
}

async fn render_row(
    state: &AppState,
    db: &str,
    row: &ChangesRow,
    p: &Params,
    show_seq: bool,
    out: &mut Vec<u8>,
) -> ApiResult<()> {
    out.extend_from_slice(b"{\"seq\":");
    push_seq(out, row, show_seq);
    out.extend_from_slice(b",\"id\":");
    push_str(out, &row.id);
    out.extend_from_slice(b",\"changes\":[");
    let leaves = if p.all_leaves {
        &row.leaves[..]
    } else {
        &row.leaves[..row.leaves.len().min(1)]
    };
    for (i, l) in leaves.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"rev\":");
        push_str(out, &l.rev.to_string());
        out.push(b'}');
    }
    out.push(b']');
    if row.deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    if p.include_docs {
        out.extend_from_slice(b",\"doc\":");
        match (row.leaves.first(), &row.info) {
            (Some(w), Some(info)) => {
                let (body, atts): (&[u8], &[chaise_storage::AttachmentInfo]) = match &row.body {
                    Some(b) => (&b.body, &b.attachments),
                    None => (b"{}", &[]),
                };
                let data = inline_data(state, db, &row.id, atts, &p.opts).await?;
                render_doc(
                    out,
                    &RenderRev {
                        id: &row.id,
                        rev: &w.rev,
                        deleted: w.deleted,
                        body,
                        attachments: atts,
                        info,
                    },
                    &p.opts,
                    &data,
                );
            }
            _ => push_json(out, &Value::Null),
        }
    }
    out.push(b'}');
    Ok(())
}

/// Why a live feed stopped waiting.
pub(crate) enum Wake {
    /// Something may have changed: look again.
    Changed,
    /// Time for a heartbeat.
    Heartbeat,
    /// The feed ends (timeout, or the node is stopping).
    End,
    /// The client went away.
    Gone,
}

/// What a live feed waits on between looks: its change signals, the client, the
/// node's stop flag and its timers.
pub(crate) struct Waiter {
    timing: Timing,
    stop: watch::Receiver<bool>,
    next_heartbeat: Instant,
    deadline: Instant,
}

impl Waiter {
    /// A waiter whose timers start now.
    pub(crate) fn new(state: &AppState, timing: Timing) -> Self {
        let now = Instant::now();
        Waiter {
            timing,
            stop: state.coordinator.feeds_stopping(),
            next_heartbeat: now + timing.heartbeat.unwrap_or(Duration::ZERO),
            deadline: now + timing.timeout,
        }
    }

    /// Restarts the timers: data was just sent.
    pub(crate) fn sent(&mut self) {
        let now = Instant::now();
        self.next_heartbeat = now + self.timing.heartbeat.unwrap_or(Duration::ZERO);
        self.deadline = now + self.timing.timeout;
    }

    /// Waits for `changed` (which must be cancel-safe), a timer, the client's
    /// departure or the node's stop.
    pub(crate) async fn wait(
        &mut self,
        tx: &BodySender,
        changed: impl std::future::Future,
    ) -> Wake {
        if *self.stop.borrow() {
            return Wake::End;
        }
        let heartbeat = self.timing.heartbeat.is_some();
        tokio::select! {
            _ = tx.closed() => Wake::Gone,
            _ = self.stop.changed() => Wake::End,
            _ = changed => Wake::Changed,
            _ = tokio::time::sleep_until(self.next_heartbeat), if heartbeat => {
                self.sent();
                Wake::Heartbeat
            }
            _ = tokio::time::sleep_until(self.deadline), if !heartbeat => Wake::End,
        }
    }
}

/// The signals that something changed in one database: this node's shard
/// copies' update seqs, and a short timer if some range has no copy here.
struct DbSignals {
    watchers: Vec<watch::Receiver<u64>>,
    remote: bool,
}

impl DbSignals {
    fn open(state: &AppState, db: &str) -> ApiResult<Self> {
        let mut watchers = state.coordinator.watch_db(db)?;
        // A copy closed meanwhile (its database deleted) signals nothing more.
        watchers.retain(|w| w.has_changed().is_ok());
        let ranges = state
            .coordinator
            .shard_map(db)
            .map_or(0, |m| m.ranges.len());
        Ok(DbSignals {
            remote: watchers.len() < ranges,
            watchers,
        })
    }

    /// Marks every current value seen: a later commit wakes [`Self::changed`].
    fn mark_seen(&mut self) {
        for w in &mut self.watchers {
            w.borrow_and_update();
        }
    }

    /// Resolves when a copy commits, a copy closes (`false`), or the re-check
    /// timer of ranges held elsewhere fires.
    async fn changed(&mut self) -> bool {
        let remote = self.remote;
        let local = async {
            if self.watchers.is_empty() {
                return std::future::pending().await;
            }
            let waits = self.watchers.iter_mut().map(|w| Box::pin(w.changed()));
            futures_util::future::select_all(waits).await.0.is_ok()
        };
        tokio::select! {
            ok = local => ok,
            _ = tokio::time::sleep(REMOTE_RECHECK), if remote => true,
        }
    }
}

/// Sends bytes; `false` once the client is gone.
pub(crate) async fn send(tx: &BodySender, bytes: Vec<u8>) -> bool {
    tx.send(Ok(Bytes::from(bytes))).await.is_ok()
}

/// Runs a live feed until it ends, its client goes away or the node stops.
async fn run_live(state: Arc<AppState>, db: String, p: Params, tx: BodySender, open: OpenFeed) {
    let _open = open;
    if let Err(e) = live_loop(&state, &db, p, &tx).await {
        tracing::debug!(%db, error = %e.reason, "live changes feed ended");
    }
}

async fn live_loop(state: &AppState, db: &str, p: Params, tx: &BodySender) -> ApiResult<()> {
    let mut signals = DbSignals::open(state, db)?;
    let mut waiter = Waiter::new(state, p.timing);
    let mut query = p.query.clone();
    let mut sent = 0usize;
    // Whether the `{"results":[` of a longpoll body went out (with a heartbeat).
    let mut opened = false;
    // Where the feed stands and how much is left after it (for the last line).
    let mut last: (String, u64);
    loop {
        signals.mark_seen();
        let mut cursor = state.coordinator.changes_cursor(db, &query).await?;
        let first = cursor.next_batch().await?;
        let mut out = Vec::new();
        if first.is_some() || sent >= p.query.limit {
            if p.feed == Feed::Longpoll && !opened {
                out.extend_from_slice(RESULTS_OPEN);
            }
            let Some(rows) = render_cursor(state, db, &p, &mut cursor, first, &mut out, tx).await?
            else {
                return Ok(());
            };
            sent += rows;
            last = cursor.finish().await?;
            query.limit = p.query.limit.saturating_sub(sent);
            if p.feed == Feed::Longpoll {
                results_close(&last.0, last.1, &mut out);
                send(tx, out).await;
                return Ok(());
            }
            if query.limit == 0 {
                end_live(p.feed, &last, &mut out);
                send(tx, out).await;
                return Ok(());
            }
            if !send(tx, out).await {
                return Ok(());
            }
            waiter.sent();
        } else {
            last = cursor.finish().await?;
        }
        query.since = SeqVector::decode(&last.0).map_err(|e| ApiError::internal(e.to_string()))?;
        loop {
            match waiter.wait(tx, signals.changed()).await {
                Wake::Changed => break,
                Wake::Gone => return Ok(()),
                Wake::Heartbeat => {
                    let mut hb = Vec::new();
                    if p.feed == Feed::Longpoll && !opened {
                        hb.extend_from_slice(RESULTS_OPEN);
                        opened = true;
                    }
                    hb.extend_from_slice(heartbeat_bytes(p.feed));
                    if !send(tx, hb).await {
                        return Ok(());
                    }
                }
                Wake::End => {
                    let mut out = Vec::new();
                    if p.feed == Feed::Longpoll {
                        if !opened {
                            out.extend_from_slice(RESULTS_OPEN);
                        }
                        results_close(&last.0, last.1, &mut out);
                    } else {
                        end_live(p.feed, &last, &mut out);
                    }
                    send(tx, out).await;
                    return Ok(());
                }
            }
        }
        // A copy that closed (its database deleted, or reopened) is replaced.
        if signals.watchers.iter().any(|w| w.has_changed().is_err()) {
            signals = DbSignals::open(state, db)?;
        }
    }
}

/// The last line of a continuous feed (`{"last_seq":..,"pending":N}`); an
/// eventsource feed just ends.
fn end_live(feed: Feed, (last_seq, pending): &(String, u64), out: &mut Vec<u8>) {
    if feed == Feed::Continuous {
        out.extend_from_slice(b"{\"last_seq\":");
        push_str(out, last_seq);
        out.extend_from_slice(b",\"pending\":");
        out.extend_from_slice(pending.to_string().as_bytes());
        out.extend_from_slice(b"}\n");
    }
}
