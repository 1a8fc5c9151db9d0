//! The live `_changes` feeds (`longpoll`, `continuous`/`live`, `eventsource`),
//! checked against CouchDB 3.x (`chttpd_db:changes_callback`,
//! `fabric_view_changes:keep_sending_changes`).

use chaise_integration_tests::helpers::{create_q, put_doc};
use chaise_integration_tests::{call, Node};
use reqwest::blocking::Response;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Opens a feed (asserting 200) and returns the response, body unread.
fn open(node: &Node, path: &str) -> Response {
    let resp = node
        .req("GET", path)
        .timeout(Duration::from_secs(60))
        .send()
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp
}

/// The lines of a streamed body, read on a thread as they arrive; `None` marks
/// the end of the body.
struct Lines(mpsc::Receiver<Option<String>>);

impl Lines {
    fn of(resp: Response) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(resp);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(_) => {
                        let l = line.strip_suffix('\n').unwrap_or(&line).to_string();
                        if tx.send(Some(l)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Lines(rx)
    }

    /// The next line; panics if none comes within `secs` or the body ended.
    fn next(&self, secs: u64) -> String {
        match self.0.recv_timeout(Duration::from_secs(secs)) {
            Ok(Some(l)) => l,
            Ok(None) => panic!("the feed ended"),
            Err(e) => panic!("no line within {secs}s: {e}"),
        }
    }

    /// The next non-empty line, parsed.
    fn next_json(&self, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs() + 1;
            let l = self.next(left);
            if !l.is_empty() {
                return serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            }
            assert!(Instant::now() < deadline, "only heartbeats");
        }
    }

    /// Every line until the body ends (within `secs`).
    fn rest(&self, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(Some(l)) => out.push(l),
                Ok(None) => return out,
                Err(_) => panic!("the feed did not end within {secs}s; got {out:?}"),
            }
        }
    }
}

fn normal(node: &Node, db: &str, query: &str) -> Value {
    let (s, b) = node.get(&format!("/{db}/_changes{query}"));
    assert_eq!(s, 200, "{b}");
    b
}

fn parse_all(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn continuous_sends_existing_rows_then_ends_at_timeout_with_last_seq() {
    let node = Node::start();
    let db = create_q(&node, "feed-cont", 2);
    put_doc(&node, &db, "a", json!({}));
    put_doc(&node, &db, "b", json!({}));
    let expected = normal(&node, &db, "");
    for feed in ["continuous", "live"] {
        let started = Instant::now();
        let lines = Lines::of(open(
            &node,
            &format!("/{db}/_changes?feed={feed}&timeout=300"),
        ));
        let all = parse_all(&lines.rest(20));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(&all[..2], expected["results"].as_array().expect("rows"));
        assert_eq!(
            all[2],
            json!({"last_seq": expected["last_seq"], "pending": 0}),
            "{feed}"
        );
    }
    let resp = open(&node, &format!("/{db}/_changes?feed=continuous&timeout=10"));
    assert_eq!(resp.headers()["content-type"], "application/json");
}

#[test]
fn continuous_listener_sees_a_write_quickly() {
    let node = Node::start();
    let db = create_q(&node, "feed-latency", 4);
    put_doc(&node, &db, "old", json!({}));
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&timeout=30000"),
    ));
    // Let the feed park, then write.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3 {
        let id = format!("new{i}");
        let rev = put_doc(&node, &db, &id, json!({"i": i}));
        let written = Instant::now();
        let row = lines.next_json(5);
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "took {:?}",
            written.elapsed()
        );
        assert_eq!(row["id"], id, "{row}");
        assert_eq!(row["changes"], json!([{"rev": rev}]));
    }
}

#[test]
fn since_now_skips_earlier_changes() {
    let node = Node::start();
    let db = create_q(&node, "feed-now", 2);
    put_doc(&node, &db, "before", json!({}));
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&timeout=1500"),
    ));
    std::thread::sleep(Duration::from_millis(200));
    put_doc(&node, &db, "after", json!({}));
    let all = parse_all(&lines.rest(20));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["id"], "after");
    assert_eq!(all[1]["last_seq"], normal(&node, &db, "")["last_seq"]);
}

#[test]
fn limit_ends_a_continuous_feed() {
    let node = Node::start();
    let db = create_q(&node, "feed-limit", 1);
    for id in ["a", "b", "c"] {
        put_doc(&node, &db, id, json!({}));
    }
    // The limit is reached by rows already there.
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&limit=2&timeout=30000"),
    ));
    let all = parse_all(&lines.rest(10));
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[2], json!({"last_seq": all[1]["seq"], "pending": 1}));

    // The limit is reached by rows arriving one at a time.
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&limit=2&timeout=30000"),
    ));
    std::thread::sleep(Duration::from_millis(200));
    put_doc(&node, &db, "d", json!({}));
    assert_eq!(lines.next_json(5)["id"], "d");
    put_doc(&node, &db, "e", json!({}));
    let all = parse_all(&lines.rest(10));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["id"], "e");
    assert_eq!(all[1]["last_seq"], all[0]["seq"]);
}

#[test]
fn heartbeats_are_empty_lines_and_keep_the_feed_open() {
    let node = Node::start();
    let db = create_q(&node, "feed-hb", 2);
    let started = Instant::now();
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&heartbeat=100&timeout=200"),
    ));
    // With heartbeats the timeout does not end the feed (couch_changes).
    for _ in 0..8 {
        assert_eq!(lines.next(5), "");
    }
    assert!(started.elapsed() >= Duration::from_millis(700));
    put_doc(&node, &db, "x", json!({}));
    assert_eq!(lines.next_json(5)["id"], "x");
    // heartbeat=true is accepted (60 s by default).
    let resp = open(
        &node,
        &format!("/{db}/_changes?feed=continuous&heartbeat=true"),
    );
    drop(resp);
}

#[test]
fn bad_feed_heartbeat_and_timeout_values_are_refused() {
    let node = Node::start();
    let db = create_q(&node, "feed-bad", 1);
    let cases = [
        (
            "feed=bogus",
            "Supported `feed` types: normal, continuous, live, longpoll, eventsource",
        ),
        (
            "feed=continuous&heartbeat=-5",
            "The heartbeat value should be a positive integer (in milliseconds).",
        ),
        (
            "feed=continuous&heartbeat=0",
            "The heartbeat value should be a positive integer (in milliseconds).",
        ),
        (
            "feed=continuous&heartbeat=abc",
            "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).",
        ),
        (
            "feed=longpoll&timeout=abc",
            "Invalid timeout value. Expecting a non-negative integer value (in milliseconds).",
        ),
        (
            "feed=continuous&timeout=-1",
            "Invalid timeout value. Expecting a non-negative integer value (in milliseconds).",
        ),
    ];
    for (q, reason) in cases {
        let (s, b) = node.get(&format!("/{db}/_changes?{q}"));
        assert_eq!(s, 400, "{q}: {b}");
        assert_eq!(b, json!({"error": "bad_request", "reason": reason}), "{q}");
    }
    let (s, b) = node.get(&format!("/{db}/_changes?feed=continuous&limit=x"));
    assert_eq!(s, 400, "{b}");
}

#[test]
fn longpoll_waits_for_the_first_change() {
    let node = Node::start();
    let db = create_q(&node, "feed-longpoll", 2);
    put_doc(&node, &db, "old", json!({}));
    let before = normal(&node, &db, "");

    // Nothing new: the timeout answers an empty result at `since`.
    let started = Instant::now();
    let (s, b) = node.get(&format!(
        "/{db}/_changes?feed=longpoll&since=now&timeout=400"
    ));
    assert_eq!(s, 200, "{b}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        b,
        json!({"results": [], "last_seq": before["last_seq"], "pending": 0})
    );

    // A write answers a waiting request with just that change.
    let url = format!("/{db}/_changes?feed=longpoll&since=now&timeout=30000");
    let resp = open(&node, &url);
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let body: Value = resp.json().expect("json body");
        (body, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let rev = put_doc(&node, &db, "new", json!({}));
    let (b, waited) = waiter.join().expect("waiter");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let rows = b["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{b}");
    assert_eq!(rows[0]["id"], "new");
    assert_eq!(rows[0]["changes"], json!([{"rev": rev}]));
    assert_eq!(b["last_seq"], rows[0]["seq"]);
    assert_eq!(b["last_seq"], normal(&node, &db, "")["last_seq"]);
}

#[test]
fn longpoll_heartbeats_are_whitespace_in_the_body() {
    let node = Node::start();
    let db = create_q(&node, "feed-lp-hb", 1);
    let resp = open(
        &node,
        &format!("/{db}/_changes?feed=longpoll&since=now&heartbeat=100"),
    );
    let reader = std::thread::spawn(move || resp.text().expect("body"));
    std::thread::sleep(Duration::from_millis(600));
    put_doc(&node, &db, "z", json!({}));
    let text = reader.join().expect("reader");
    assert!(text.starts_with("{\"results\":[\n\n\n"), "{text:?}");
    let b: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(b["results"][0]["id"], "z", "{b}");
}

#[test]
fn filters_docs_and_styles_on_live_feeds() {
    let node = Node::start();
    let db = create_q(&node, "feed-filters", 2);
    // _doc_ids from the query string, with include_docs.
    let ids = "%5B%22b%22%5D";
    let lines = Lines::of(open(
        &node,
        &format!(
            "/{db}/_changes?feed=continuous&since=now&filter=_doc_ids&doc_ids={ids}&include_docs=true&timeout=1500"
        ),
    ));
    std::thread::sleep(Duration::from_millis(200));
    put_doc(&node, &db, "a", json!({"v": 1}));
    let rev = put_doc(&node, &db, "b", json!({"v": 2}));
    let all = parse_all(&lines.rest(20));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["id"], "b");
    assert_eq!(all[0]["doc"], json!({"_id": "b", "_rev": rev, "v": 2}));

    // _doc_ids from a POST body.
    let resp = node
        .req(
            "POST",
            &format!("/{db}/_changes?feed=continuous&filter=_doc_ids&timeout=200"),
        )
        .header("content-type", "application/json")
        .body(r#"{"doc_ids":["a"]}"#)
        .send()
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let all = parse_all(&Lines::of(resp).rest(20));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["id"], "a");

    // _design: only design documents.
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&filter=_design&timeout=1500"),
    ));
    std::thread::sleep(Duration::from_millis(200));
    put_doc(&node, &db, "c", json!({}));
    put_doc(&node, &db, "_design/d", json!({"views": {}}));
    let all = parse_all(&lines.rest(20));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["id"], "_design/d");

    // style=all_docs lists every leaf; conflicts shows them in the doc.
    let (s, b) = node.post(
        &format!("/{db}/_bulk_docs"),
        json!({"new_edits": false, "docs": [
            {"_id": "k", "_rev": "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
            {"_id": "k", "_rev": "1-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}]}),
    );
    assert_eq!(s, 201, "{b}");
    let all = parse_all(
        &Lines::of(open(
            &node,
            &format!(
                "/{db}/_changes?feed=continuous&filter=_doc_ids&doc_ids=%5B%22k%22%5D&style=all_docs&include_docs=true&conflicts=true&timeout=100"
            ),
        ))
        .rest(20),
    );
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        all[0]["changes"],
        json!([{"rev": "1-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
               {"rev": "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}])
    );
    assert_eq!(
        all[0]["doc"]["_conflicts"],
        json!(["1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
    );
}

#[test]
fn seq_interval_leaves_some_seqs_null() {
    let node = Node::start();
    let db = create_q(&node, "feed-seqint", 1);
    for id in ["a", "b", "c"] {
        put_doc(&node, &db, id, json!({}));
    }
    let all = parse_all(
        &Lines::of(open(
            &node,
            &format!("/{db}/_changes?feed=continuous&seq_interval=2&timeout=100"),
        ))
        .rest(20),
    );
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all[0]["seq"].is_null(), "{all:?}");
    assert!(all[1]["seq"].is_string(), "{all:?}");
    assert!(all[2]["seq"].is_string(), "{all:?}");
    assert_eq!(all[3]["last_seq"], all[2]["seq"]);
}

/// The events of an eventsource body: (data, id) pairs and heartbeat count.
fn events(text: &str) -> (Vec<(Value, String)>, usize) {
    let mut out = Vec::new();
    let mut heartbeats = 0;
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        if block == "event: heartbeat\ndata: " {
            heartbeats += 1;
            continue;
        }
        let (data, id) = block
            .strip_prefix("data: ")
            .and_then(|b| b.split_once("\nid: "))
            .unwrap_or_else(|| panic!("bad event {block:?}"));
        out.push((
            serde_json::from_str(data).expect("event data"),
            id.to_string(),
        ));
    }
    (out, heartbeats)
}

#[test]
fn eventsource_events_ids_and_last_event_id_resume() {
    let node = Node::start();
    let db = create_q(&node, "feed-es", 2);
    for id in ["a", "b", "c"] {
        put_doc(&node, &db, id, json!({}));
    }
    let resp = open(
        &node,
        &format!("/{db}/_changes?feed=eventsource&timeout=200"),
    );
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let text = resp.text().expect("body");
    assert!(text.ends_with("\n\n"), "{text:?}");
    let (evs, _) = events(&text);
    assert_eq!(evs.len(), 3, "{text}");
    for (data, id) in &evs {
        // The id is the JSON-encoded seq (chttpd_db: ?JSON_ENCODE(Seq)).
        assert_eq!(id, &data["seq"].to_string());
    }

    // A reconnecting browser sends the last id it saw; the feed resumes there.
    let resp = node
        .req(
            "GET",
            &format!("/{db}/_changes?feed=eventsource&timeout=200"),
        )
        .header("last-event-id", evs[0].1.as_str())
        .send()
        .expect("resume");
    assert_eq!(resp.status().as_u16(), 200);
    let (resumed, _) = events(&resp.text().expect("body"));
    let got: Vec<&Value> = resumed.iter().map(|(d, _)| &d["id"]).collect();
    let want: Vec<&Value> = evs[1..].iter().map(|(d, _)| &d["id"]).collect();
    assert_eq!(got, want);

    // Heartbeats are `event: heartbeat` events.
    let resp = open(
        &node,
        &format!("/{db}/_changes?feed=eventsource&since=now&heartbeat=100"),
    );
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(resp);
        let mut text = String::new();
        while !text.contains("\"id\":\"late\"") || !text.ends_with("\n\n") {
            if r.read_line(&mut text).unwrap_or(0) == 0 {
                break;
            }
        }
        text
    });
    std::thread::sleep(Duration::from_millis(500));
    put_doc(&node, &db, "late", json!({}));
    let text = reader.join().expect("reader");
    let (evs, heartbeats) = events(&text);
    assert!(heartbeats >= 2, "{text:?}");
    assert_eq!(evs.len(), 1, "{text:?}");
    assert_eq!(evs[0].0["id"], "late");
}

fn open_feeds(node: &Node) -> u64 {
    let (s, b) = node.get("/_node/_local/_stats/couchdb/httpd/clients_requesting_changes");
    assert_eq!(s, 200, "{b}");
    b["value"].as_u64().expect("gauge")
}

#[test]
fn disconnected_clients_free_their_feeds() {
    let node = Node::start();
    let db = create_q(&node, "feed-disconnect", 2);
    assert_eq!(open_feeds(&node), 0);
    let mut feeds = Vec::new();
    for i in 0..200 {
        let feed = if i % 2 == 0 {
            "continuous"
        } else {
            "eventsource"
        };
        feeds.push(open(
            &node,
            &format!("/{db}/_changes?feed={feed}&since=now"),
        ));
    }
    assert_eq!(open_feeds(&node), 200);
    // A write reaches all of them and the server keeps answering quickly.
    put_doc(&node, &db, "ping", json!({}));
    let started = Instant::now();
    let (s, _) = node.get("/");
    assert_eq!(s, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(feeds);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_feeds(&node) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} feeds still open",
            open_feeds(&node)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let (s, _) = node.get(&format!("/{db}"));
    assert_eq!(s, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn deleting_the_database_ends_its_feeds() {
    let node = Node::start();
    let db = create_q(&node, "feed-deleted", 2);
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&timeout=30000"),
    ));
    std::thread::sleep(Duration::from_millis(200));
    let (s, b) = node.delete(&format!("/{db}"));
    assert_eq!(s, 200, "{b}");
    lines.rest(10);
    let (s, b) = call(node.req("GET", &format!("/{db}/_changes?feed=continuous")));
    assert_eq!(s, 404, "{b}");
}

#[test]
fn open_feeds_do_not_hold_a_graceful_stop() {
    let mut node = Node::start();
    let db = create_q(&node, "feed-stop", 1);
    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&since=now&heartbeat=10000"),
    ));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(node.terminate(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    // The feed ended with its last_seq line.
    let all = parse_all(&lines.rest(10));
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0]["last_seq"].is_string(), "{all:?}");
}

/// Live feeds that start far behind catch up in batches: a continuous feed sends
/// every row once, in the normal feed's order, then its last line; a longpoll feed
/// answers with all of them at once; a limit cuts across batches.
#[test]
fn live_feeds_catch_up_across_batches() {
    let node = Node::start();
    let db = create_q(&node, "feed-long", 2);
    for start in (0..2300).step_by(500) {
        let docs: Vec<Value> = (start..(start + 500).min(2300))
            .map(|i| json!({"_id": format!("l{i:05}")}))
            .collect();
        let (s, b) = node.post(&format!("/{db}/_bulk_docs"), json!({ "docs": docs }));
        assert_eq!(s, 201, "{b}");
    }
    let expected = normal(&node, &db, "");
    let rows = expected["results"].as_array().expect("rows");
    assert_eq!(rows.len(), 2300);

    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&timeout=200"),
    ));
    let all = parse_all(&lines.rest(30));
    assert_eq!(all.len(), 2301);
    assert_eq!(&all[..2300], &rows[..]);
    assert_eq!(
        all[2300],
        json!({"last_seq": expected["last_seq"], "pending": 0})
    );

    let b = normal(&node, &db, "?feed=longpoll");
    assert_eq!(b["results"], expected["results"]);
    assert_eq!(b["last_seq"], expected["last_seq"]);

    let lines = Lines::of(open(
        &node,
        &format!("/{db}/_changes?feed=continuous&limit=1500&timeout=30000"),
    ));
    let all = parse_all(&lines.rest(30));
    assert_eq!(all.len(), 1501);
    assert_eq!(&all[..1500], &rows[..1500]);
    assert_eq!(all[1500]["pending"], 800);
}
