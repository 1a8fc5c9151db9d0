//! `/_db_updates`, checked against CouchDB 3.x (`global_changes_httpd`).

use chaise_integration_tests::{call, Node};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

fn updates(node: &Node, query: &str) -> Value {
    let (s, b) = node.get(&format!("/_db_updates{query}"));
    assert_eq!(s, 200, "{query}: {b}");
    b
}

/// (db_name, type) of the events about databases starting with `prefix`.
fn events_of(b: &Value, prefix: &str) -> Vec<(String, String)> {
    b["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {b}"))
        .iter()
        .filter(|e| e["db_name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .map(|e| {
            (
                e["db_name"].as_str().unwrap_or("").to_string(),
                e["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn ev(db: &str, kind: &str) -> (String, String) {
    (db.to_string(), kind.to_string())
}

/// Waits until a normal feed shows the events wanted (updates are debounced).
fn wait_for(node: &Node, query: &str, prefix: &str, want: &[(String, String)]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let b = updates(node, query);
        if events_of(&b, prefix) == want {
            return b;
        }
        assert!(Instant::now() < deadline, "{b} lacks {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn server_admins_only() {
    let node = Node::start();
    let (s, b) = call(node.anon("GET", "/_db_updates"));
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["error"], "unauthorized");
    let (s, b) = node.put("/_db_updates", json!({}));
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"], "method_not_allowed");
}

#[test]
fn created_updated_and_deleted_events() {
    let node = Node::start();
    let start = updates(&node, "")["last_seq"].clone();
    node.create_db("dbu-a");
    node.create_db("dbu-b");
    let (s, _) = node.put("/dbu-a/doc", json!({}));
    assert_eq!(s, 201);
    // `updated` comes shortly after the write (debounced).
    wait_for(
        &node,
        "",
        "dbu-",
        &[
            ev("dbu-a", "created"),
            ev("dbu-b", "created"),
            ev("dbu-a", "updated"),
        ],
    );
    let (s, _) = node.delete("/dbu-b");
    assert_eq!(s, 200);
    let b = wait_for(
        &node,
        "",
        "dbu-",
        &[
            ev("dbu-a", "created"),
            ev("dbu-b", "created"),
            ev("dbu-a", "updated"),
            ev("dbu-b", "deleted"),
        ],
    );
    let rows = b["results"].as_array().expect("rows");
    for r in rows {
        assert_eq!(
            r.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["db_name".into(), "type".into(), "seq".into()]),
            "{r}"
        );
        assert!(r["seq"].is_string());
    }
    assert_eq!(b["last_seq"], rows[rows.len() - 1]["seq"]);
    assert_ne!(b["last_seq"], start);

    // POST answers like GET.
    let (s, p) = node.post("/_db_updates", json!({}));
    assert_eq!(s, 200, "{p}");
    assert_eq!(p, b);

    // A burst of writes gives one `updated` event, the newest replacing the older.
    for i in 0..20 {
        let (s, _) = node.put(&format!("/dbu-a/d{i}"), json!({}));
        assert_eq!(s, 201);
    }
    let b = wait_for(
        &node,
        "",
        "dbu-",
        &[
            ev("dbu-a", "created"),
            ev("dbu-b", "created"),
            ev("dbu-b", "deleted"),
            ev("dbu-a", "updated"),
        ],
    );
    // Only what happened after `since` comes back.
    let rows = b["results"].as_array().expect("rows");
    let since = rows[rows.len() - 2]["seq"]
        .as_str()
        .expect("seq")
        .to_string();
    let after = updates(&node, &format!("?since={since}"));
    assert_eq!(events_of(&after, ""), vec![ev("dbu-a", "updated")]);
}

#[test]
fn since_limit_and_descending() {
    let node = Node::start();
    for n in ["dbl-1", "dbl-2", "dbl-3"] {
        node.create_db(n);
    }
    let all = updates(&node, "");
    let names = events_of(&all, "dbl-");
    assert_eq!(names.len(), 3);
    let b = updates(&node, "?limit=2");
    assert_eq!(b["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(b["last_seq"], b["results"][1]["seq"]);
    let next = updates(
        &node,
        &format!("?since={}", b["last_seq"].as_str().expect("seq")),
    );
    let mut both = events_of(&b, "");
    both.extend(events_of(&next, ""));
    assert_eq!(both, events_of(&all, ""));
    let desc = updates(&node, "?descending=true&limit=1");
    assert_eq!(events_of(&desc, ""), vec![ev("dbl-3", "created")]);
    let now = updates(&node, "?since=now");
    assert_eq!(events_of(&now, ""), vec![]);
    assert_eq!(now["last_seq"], all["last_seq"]);
}

#[test]
fn bad_parameters_are_refused() {
    let node = Node::start();
    for q in [
        "limit=-1",
        "limit=x",
        "timeout=x",
        "heartbeat=x",
        "heartbeat=-2",
    ] {
        let (s, b) = node.get(&format!("/_db_updates?{q}"));
        assert_eq!(s, 400, "{q}: {b}");
        assert_eq!(
            b,
            json!({"error": "bad_request", "reason": "invalid_integer"}),
            "{q}"
        );
    }
    let (s, b) = node.get("/_db_updates?feed=live");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["reason"],
        "Supported `feed` types: normal, continuous, longpoll, eventsource"
    );
    let (s, b) = node.get("/_db_updates?since=garbage");
    assert_eq!(s, 400, "{b}");
}

#[test]
fn longpoll_waits_for_an_event_or_the_timeout() {
    let node = Node::start();
    let started = Instant::now();
    let b = updates(&node, "?feed=longpoll&since=now&timeout=300");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(b["results"], json!([]));
    let resp = node
        .req("GET", "/_db_updates?feed=longpoll&since=now&timeout=30000")
        .send()
        .expect("longpoll");
    assert_eq!(resp.status().as_u16(), 200);
    let waiter = std::thread::spawn(move || resp.json::<Value>().expect("json"));
    std::thread::sleep(Duration::from_millis(400));
    node.create_db("dblp-x");
    let b = waiter.join().expect("waiter");
    assert_eq!(events_of(&b, ""), vec![ev("dblp-x", "created")]);
    assert_eq!(b["last_seq"], b["results"][0]["seq"]);
}

#[test]
fn continuous_feed_streams_events_and_ends_with_last_seq() {
    let node = Node::start();
    let resp = node
        .req(
            "GET",
            "/_db_updates?feed=continuous&since=now&timeout=1000&limit=3",
        )
        .send()
        .expect("continuous");
    assert_eq!(resp.status().as_u16(), 200);
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut r = BufReader::new(resp);
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                return lines;
            }
            lines.push((Instant::now(), l));
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let created = Instant::now();
    node.create_db("dbc-1");
    std::thread::sleep(Duration::from_millis(100));
    let (s, _) = node.delete("/dbc-1");
    assert_eq!(s, 200);
    let lines = reader.join().expect("reader");
    let values: Vec<Value> = lines
        .iter()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(_, l)| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(values.len(), 3, "{lines:?}");
    assert_eq!(values[0]["db_name"], "dbc-1");
    assert_eq!(values[0]["type"], "created");
    assert!(lines[0].0.duration_since(created) < Duration::from_secs(2));
    assert_eq!(values[1]["type"], "deleted");
    assert_eq!(values[2], json!({"last_seq": values[1]["seq"]}));

    // limit ends the feed as soon as it is reached.
    let started = Instant::now();
    let (s, _) = call(node.req("GET", "/_db_updates?feed=continuous&limit=1&timeout=30000"));
    assert_eq!(s, 200);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn eventsource_feed_and_heartbeats() {
    let node = Node::start();
    let resp = node
        .req(
            "GET",
            "/_db_updates?feed=eventsource&since=now&heartbeat=100",
        )
        .send()
        .expect("eventsource");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(resp);
        let mut text = String::new();
        while !text.contains("dbe-1") || !text.ends_with("\n\n") {
            if r.read_line(&mut text).unwrap_or(0) == 0 {
                break;
            }
        }
        text
    });
    std::thread::sleep(Duration::from_millis(450));
    node.create_db("dbe-1");
    let text = reader.join().expect("reader");
    assert!(
        text.starts_with("event: heartbeat\ndata: \n\nevent: heartbeat\ndata: \n\n"),
        "{text:?}"
    );
    let event = text
        .split("\n\n")
        .find(|b| b.starts_with("data: "))
        .unwrap_or_else(|| panic!("no event in {text:?}"));
    let (data, id) = event
        .strip_prefix("data: ")
        .and_then(|e| e.split_once("\nid: "))
        .expect("data and id");
    let data: Value = serde_json::from_str(data).expect("data");
    assert_eq!(data["db_name"], "dbe-1");
    assert_eq!(data["type"], "created");
    assert_eq!(id, data["seq"].to_string());
}
