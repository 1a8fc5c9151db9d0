//! `GET|POST /_db_updates`: database events (`created`, `updated`, `deleted`)
//! from this node's event log, as a normal, longpoll, continuous or eventsource
//! feed (`global_changes_httpd`).

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::handlers::changes::{
    heartbeat_bytes, send, streamed, BodySender, Feed, OpenFeed, Timing, Waiter, Wake,
};
use crate::request::Req;
use crate::response::{json_bytes, push_str};
use crate::routes::not_allowed;
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::db_updates::{DbEvent, DbUpdates};
use std::sync::Arc;
use std::time::Duration;

/// A parsed `_db_updates` request.
struct Params {
    feed: Feed,
    since: u64,
    limit: usize,
    descending: bool,
    timing: Timing,
}

/// `global_changes_httpd:to_non_neg_int`.
fn non_neg_int(v: &str) -> ApiResult<u64> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("invalid_integer"))
}

fn parse(state: &AppState, req: &Req) -> ApiResult<Params> {
    let feed = match req.param("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        _ => {
            return Err(ApiError::bad_request(
                "Supported `feed` types: normal, continuous, longpoll, eventsource",
            ))
        }
    };
    let log = state.coordinator.db_updates();
    let since = match req.param("since") {
        None => 0,
        Some("now") => log.current(),
        Some(s) => log.decode_seq(s).ok_or_else(|| {
            ApiError::bad_request("Malformed sequence supplied in 'since' parameter.")
        })?,
    };
    let limit = match req.param("limit") {
        None => usize::MAX,
        Some(v) => usize::try_from(non_neg_int(v)?).unwrap_or(usize::MAX),
    };
    let default = state.config_u64("chttpd", "changes_timeout", 60_000);
    let heartbeat = match req.param("heartbeat") {
        None | Some("false") => None,
        Some("true") => Some(default),
        Some(v) => Some(non_neg_int(v)?.clamp(1, default)),
    };
    let timeout = match req.param("timeout") {
        None => default,
        Some(v) => non_neg_int(v)?.min(default),
    };
    Ok(Params {
        feed,
        since,
        limit,
        descending: feed == Feed::Normal && req.param("descending") == Some("true"),
        timing: Timing {
            heartbeat: heartbeat.map(Duration::from_millis),
            timeout: Duration::from_millis(timeout),
        },
    })
}

/// `GET|POST /_db_updates` (server admins only).
pub async fn db_updates(state: &AppState, req: &Req) -> ApiResult<Response> {
    auth::require_admin(&req.user)?;
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return Err(not_allowed("GET,HEAD,POST"));
    }
    let p = parse(state, req)?;
    let log = state.coordinator.db_updates();
    if p.feed == Feed::Normal {
        let (events, last) = log.since(p.since, p.descending, p.limit);
        return Ok(json_bytes(StatusCode::OK, body(log, p.feed, &events, last)));
    }
    let shared = state
        .shared()
        .ok_or_else(|| ApiError::internal("the server is stopping"))?;
    let (tx, resp) = streamed(p.feed);
    let open = OpenFeed::start();
    tokio::spawn(run_live(shared, p, tx, open));
    Ok(resp)
}

/// Renders events in the feed's framing.
fn render_events(log: &DbUpdates, feed: Feed, events: &[DbEvent], out: &mut Vec<u8>) {
    for (i, e) in events.iter().enumerate() {
        let seq = log.encode_seq(e.seq);
        if feed == Feed::EventSource {
            out.extend_from_slice(b"data: ");
        } else if i > 0 && matches!(feed, Feed::Normal | Feed::Longpoll) {
            out.extend_from_slice(b",\n");
        }
        out.extend_from_slice(b"{\"db_name\":");
        push_str(out, &e.db_name);
        out.extend_from_slice(b",\"type\":");
        push_str(out, e.kind.as_str());
        out.extend_from_slice(b",\"seq\":");
        push_str(out, &seq);
        out.push(b'}');
        match feed {
            Feed::Normal | Feed::Longpoll => {}
            Feed::Continuous => out.push(b'\n'),
            Feed::EventSource => {
                out.extend_from_slice(b"\nid: ");
                push_str(out, &seq);
                out.extend_from_slice(b"\n\n");
            }
        }
    }
}

/// A whole normal or longpoll body.
fn body(log: &DbUpdates, feed: Feed, events: &[DbEvent], last: u64) -> Vec<u8> {
    let mut out = b"{\"results\":[\n".to_vec();
    render_events(log, feed, events, &mut out);
    out.extend_from_slice(b"\n],\n\"last_seq\":");
    push_str(&mut out, &log.encode_seq(last));
    out.extend_from_slice(b"}\n");
    out
}

/// The end of a live feed: `{"last_seq":..}` for continuous feeds.
fn end(log: &DbUpdates, feed: Feed, last: u64) -> Vec<u8> {
    match feed {
        Feed::Continuous => {
            let mut out = b"{\"last_seq\":".to_vec();
            push_str(&mut out, &log.encode_seq(last));
            out.extend_from_slice(b"}\n");
            out
        }
        _ => Vec::new(),
    }
}

async fn run_live(state: Arc<AppState>, p: Params, tx: BodySender, open: OpenFeed) {
    let _open = open;
    live_loop(&state, p, &tx).await;
}

async fn live_loop(state: &AppState, p: Params, tx: &BodySender) {
    let log = state.coordinator.db_updates();
    let mut signal = log.subscribe();
    let mut waiter = Waiter::new(state, p.timing);
    let mut since = p.since;
    let mut left = p.limit;
    loop {
        signal.borrow_and_update();
        let (events, last) = log.since(since, false, left);
        since = last;
        left -= events.len();
        if !events.is_empty() || left == 0 {
            if p.feed == Feed::Longpoll {
                send(tx, body(log, p.feed, &events, last)).await;
                return;
            }
            let mut out = Vec::new();
            render_events(log, p.feed, &events, &mut out);
            if left == 0 {
                out.extend_from_slice(&end(log, p.feed, last));
                send(tx, out).await;
                return;
            }
            if !send(tx, out).await {
                return;
            }
            waiter.sent();
        }
        loop {
            match waiter.wait(tx, signal.changed()).await {
                Wake::Changed => break,
                Wake::Gone => return,
                Wake::Heartbeat => {
                    // A longpoll body is sent whole; its heartbeat is leading
                    // whitespace.
                    if !send(tx, heartbeat_bytes(p.feed).to_vec()).await {
                        return;
                    }
                }
                Wake::End => {
                    let out = match p.feed {
                        Feed::Longpoll => body(log, p.feed, &[], since),
                        _ => end(log, p.feed, since),
                    };
                    send(tx, out).await;
                    return;
                }
            }
        }
    }
}
