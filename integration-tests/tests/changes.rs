//! The normal `_changes` feed, checked against CouchDB 3.x (`chttpd_db`,
//! `couch_changes`, `fabric_view_changes`).

use chaise_integration_tests::helpers::{
    create_q, hex_rev, no_db, put_doc, seq_num, strs, urlencode,
};
use chaise_integration_tests::{call, Node};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn changes(node: &Node, db: &str, query: &str) -> Value {
    let (s, b) = node.get(&format!("/{db}/_changes{query}"));
    assert_eq!(s, 200, "_changes{query}: {b}");
    b
}

fn results(b: &Value) -> &Vec<Value> {
    b["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {b}"))
}

fn ids(b: &Value) -> Vec<String> {
    results(b)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("<none>").to_string())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn row_shape_deleted_and_last_seq() {
    let node = Node::start();
    let db = create_q(&node, "ch-shape", 1);
    let ra = put_doc(&node, &db, "a", json!({"v": 1}));
    let rb = put_doc(&node, &db, "b", json!({}));
    let (s, del) = node.delete(&format!("/{db}/b?rev={rb}"));
    assert_eq!(s, 200, "{del}");
    let rb2 = del["rev"].as_str().expect("rev").to_string();

    let b = changes(&node, &db, "");
    let keys: BTreeSet<&str> = b
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["results", "last_seq", "pending"]));
    let rows = results(&b);
    assert_eq!(rows.len(), 2, "{b}");
    // Exactly seq, id, changes (+ deleted).
    assert_eq!(
        rows[0],
        json!({"seq": rows[0]["seq"], "id": "a", "changes": [{"rev": ra}]})
    );
    assert_eq!(
        rows[1],
        json!({"seq": rows[1]["seq"], "id": "b", "changes": [{"rev": rb2}], "deleted": true})
    );
    assert!(
        rows[0]["seq"].is_string() && rows[1]["seq"].is_string(),
        "{b}"
    );
    assert_eq!(seq_num(&rows[0]["seq"]), 1);
    assert_eq!(seq_num(&rows[1]["seq"]), 3);
    assert!(b["last_seq"].is_string());
    assert_eq!(b["last_seq"], rows[1]["seq"]);
    assert_eq!(b["pending"], 0);
    // The feed ends at the database's update_seq.
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(seq_num(&b["last_seq"]), seq_num(&info["update_seq"]));

    // An empty database.
    let empty = node.create_db("ch-shape-empty");
    let b = changes(&node, &empty, "");
    assert_eq!(b["results"], json!([]));
    assert_eq!(b["pending"], 0);
    assert_eq!(seq_num(&b["last_seq"]), 0);

    assert_eq!(node.get("/ch-no-such-db/_changes"), (404, no_db()));
}

#[test]
fn raw_body_format() {
    let node = Node::start();
    let db = create_q(&node, "ch-raw", 1);
    put_doc(&node, &db, "a", json!({}));
    put_doc(&node, &db, "b", json!({}));
    let text = node
        .req("GET", &format!("/{db}/_changes"))
        .send()
        .expect("request")
        .text()
        .expect("body");
    // {"results":[\n{row},\n{row}\n],\n"last_seq":"...","pending":0}\n
    assert!(text.starts_with("{\"results\":[\n{\"seq\":"), "{text:?}");
    assert!(text.contains("},\n{\"seq\":"), "{text:?}");
    assert!(text.contains("}\n],\n\"last_seq\":\""), "{text:?}");
    assert!(text.ends_with(",\"pending\":0}\n"), "{text:?}");
    serde_json::from_str::<Value>(&text).expect("valid JSON");

    let text = node
        .req("GET", &format!("/{db}/_changes?since=now"))
        .send()
        .expect("request")
        .text()
        .expect("body");
    assert!(
        text.starts_with("{\"results\":[\n\n],\n\"last_seq\":\""),
        "{text:?}"
    );
    serde_json::from_str::<Value>(&text).expect("valid JSON");
}

#[test]
fn each_doc_once_at_latest_seq() {
    let node = Node::start();
    let db = create_q(&node, "ch-once", 1);
    let ra = put_doc(&node, &db, "a", json!({"v": 1}));
    put_doc(&node, &db, "b", json!({}));
    put_doc(&node, &db, "c", json!({}));
    let ra2 = put_doc(&node, &db, "a", json!({"_rev": ra, "v": 2}));
    let ra3 = put_doc(&node, &db, "a", json!({"_rev": ra2, "v": 3}));
    let b = changes(&node, &db, "");
    assert_eq!(ids(&b), strs(&["b", "c", "a"]));
    let rows = results(&b);
    assert_eq!(rows[2]["changes"], json!([{"rev": ra3}]));
    assert_eq!(seq_num(&rows[2]["seq"]), 5);
    assert_eq!(seq_num(&b["last_seq"]), 5);
}

#[test]
fn since_values() {
    let node = Node::start();
    let db = create_q(&node, "ch-since", 1);
    for id in ["a", "b", "c"] {
        put_doc(&node, &db, id, json!({}));
    }
    let all = changes(&node, &db, "");
    assert_eq!(changes(&node, &db, "?since=0"), all);
    let rows = results(&all).clone();

    // A row's seq as since: only newer changes.
    let after_b = changes(
        &node,
        &db,
        &format!(
            "?since={}",
            urlencode(rows[1]["seq"].as_str().unwrap_or_default())
        ),
    );
    assert_eq!(ids(&after_b), strs(&["c"]));
    // last_seq as since: nothing.
    let last = all["last_seq"].as_str().expect("last_seq").to_string();
    let none = changes(&node, &db, &format!("?since={}", urlencode(&last)));
    assert_eq!(none["results"], json!([]));
    assert_eq!(none["pending"], 0);
    // Quoted, as some clients send it.
    let quoted = changes(
        &node,
        &db,
        &format!("?since={}", urlencode(&format!("\"{last}\""))),
    );
    assert_eq!(quoted["results"], json!([]));

    // since=now: nothing now, then only what comes after.
    let now = changes(&node, &db, "?since=now");
    assert_eq!(now["results"], json!([]));
    assert_eq!(seq_num(&now["last_seq"]), 3);
    let now_seq = now["last_seq"].as_str().expect("seq").to_string();
    let rd = put_doc(&node, &db, "d", json!({}));
    let after = changes(&node, &db, &format!("?since={}", urlencode(&now_seq)));
    assert_eq!(
        results(&after)
            .iter()
            .map(|r| (r["id"].clone(), r["changes"].clone()))
            .collect::<Vec<_>>(),
        vec![(json!("d"), json!([{"rev": rd}]))]
    );

    // A malformed since.
    for bad in ["garbage", "5-!!!"] {
        let (s, b) = node.get(&format!("/{db}/_changes?since={}", urlencode(bad)));
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(
            b,
            json!({"error": "bad_request", "reason": "Malformed sequence supplied in 'since' parameter."})
        );
    }
}

#[test]
fn opaque_seqs_across_shards() {
    let node = Node::start();
    let db = create_q(&node, "ch-shards", 4);
    let docs: Vec<Value> = (0..40)
        .map(|i| json!({"_id": format!("d{i:02}")}))
        .collect();
    let (s, b) = node.post(&format!("/{db}/_bulk_docs"), json!({ "docs": docs }));
    assert_eq!(s, 201, "{b}");
    let all = changes(&node, &db, "");
    let rows = results(&all).clone();
    assert_eq!(rows.len(), 40);
    let every: BTreeSet<String> = ids(&all).into_iter().collect();
    assert_eq!(every.len(), 40, "each doc once");
    // Any row's seq, passed back, yields exactly the rows after it.
    for k in [0usize, 7, 19, 33, 39] {
        let seq = rows[k]["seq"].as_str().expect("seq");
        let rest = changes(&node, &db, &format!("?since={}", urlencode(seq)));
        let got: BTreeSet<String> = ids(&rest).into_iter().collect();
        let want: BTreeSet<String> = rows[k + 1..]
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(got, want, "since row {k}");
    }
    // Walking with limit=3 visits every doc exactly once.
    let mut seen = Vec::new();
    let mut since = "0".to_string();
    for _ in 0..100 {
        let page = changes(&node, &db, &format!("?limit=3&since={}", urlencode(&since)));
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 3);
        assert!(page["pending"].is_u64(), "{page}");
        since = page["last_seq"].as_str().expect("last_seq").to_string();
        if page_ids.is_empty() {
            assert_eq!(page["pending"], 0);
            break;
        }
        seen.extend(page_ids);
    }
    let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 40, "{seen:?}");
    assert_eq!(seen_set, every);
}

#[test]
fn limit_and_pending() {
    let node = Node::start();
    let db = create_q(&node, "ch-limit", 1);
    for id in ["a", "b", "c", "d", "e"] {
        put_doc(&node, &db, id, json!({}));
    }
    let b = changes(&node, &db, "?limit=2");
    assert_eq!(ids(&b), strs(&["a", "b"]));
    assert_eq!(b["pending"], 3);
    assert_eq!(b["last_seq"], results(&b)[1]["seq"]);
    let next = changes(
        &node,
        &db,
        &format!(
            "?limit=2&since={}",
            urlencode(b["last_seq"].as_str().unwrap_or_default())
        ),
    );
    assert_eq!(ids(&next), strs(&["c", "d"]));
    assert_eq!(next["pending"], 1);
    let b = changes(&node, &db, "?limit=5");
    assert_eq!(b["pending"], 0);
}

#[test]
fn descending() {
    let node = Node::start();
    let db = create_q(&node, "ch-desc", 1);
    for id in ["a", "b", "c"] {
        put_doc(&node, &db, id, json!({}));
    }
    let b = changes(&node, &db, "?descending=true");
    assert_eq!(ids(&b), strs(&["c", "b", "a"]));
    let rows = results(&b);
    let nums: Vec<u64> = rows.iter().map(|r| seq_num(&r["seq"])).collect();
    assert_eq!(nums, vec![3, 2, 1]);
    // The feed ends at the oldest row it walked back to.
    assert_eq!(seq_num(&b["last_seq"]), 1);
    assert_eq!(b["pending"], 0);
    let b = changes(&node, &db, "?descending=true&limit=1");
    assert_eq!(ids(&b), strs(&["c"]));
    assert_eq!(b["pending"], 2);
    // since is ignored when descending (fabric_view_changes:get_start_seq).
    let all = changes(&node, &db, "");
    let last = all["last_seq"].as_str().expect("seq").to_string();
    let b = changes(
        &node,
        &db,
        &format!("?descending=true&since={}", urlencode(&last)),
    );
    assert_eq!(ids(&b), strs(&["c", "b", "a"]));
}

#[test]
fn include_docs_and_conflicts() {
    let node = Node::start();
    let db = create_q(&node, "ch-docs", 1);
    let ra = put_doc(&node, &db, "a", json!({"v": 1}));
    let rb = put_doc(&node, &db, "b", json!({"v": 2}));
    let (_, del) = node.delete(&format!("/{db}/b?rev={rb}"));
    let rb2 = del["rev"].as_str().expect("rev").to_string();
    // A conflicted doc c.
    let low = hex_rev(1, 'a');
    let high = hex_rev(1, 'b');
    let (s, b) = node.post(
        &format!("/{db}/_bulk_docs"),
        json!({"new_edits": false, "docs": [
            {"_id": "c", "_rev": low, "side": "low"},
            {"_id": "c", "_rev": high, "side": "high"},
        ]}),
    );
    assert_eq!(s, 201, "{b}");

    let b = changes(&node, &db, "?include_docs=true");
    let rows = results(&b);
    assert_eq!(rows.len(), 3, "{b}");
    assert_eq!(rows[0]["doc"], json!({"_id": "a", "_rev": ra, "v": 1}));
    // A deleted doc comes back as its tombstone.
    assert_eq!(rows[1]["deleted"], true);
    assert_eq!(
        rows[1]["doc"],
        json!({"_id": "b", "_rev": rb2, "_deleted": true})
    );
    assert_eq!(
        rows[2]["doc"],
        json!({"_id": "c", "_rev": high, "side": "high"})
    );
    assert_eq!(rows[2]["changes"], json!([{"rev": high}]));

    // conflicts=true adds _conflicts to included docs.
    let b = changes(&node, &db, "?include_docs=true&conflicts=true");
    assert_eq!(
        results(&b)[2]["doc"],
        json!({"_id": "c", "_rev": high, "side": "high", "_conflicts": [low]})
    );
    // style=all_docs lists every leaf, winner first.
    let b = changes(&node, &db, "?style=all_docs");
    assert_eq!(
        results(&b)[2]["changes"],
        json!([{"rev": high}, {"rev": low}])
    );
    assert_eq!(results(&b)[0]["changes"], json!([{"rev": ra}]));
    let b = changes(&node, &db, "?style=main_only");
    assert_eq!(results(&b)[2]["changes"], json!([{"rev": high}]));
    // Without include_docs there is no doc member.
    let b = changes(&node, &db, "");
    assert!(results(&b).iter().all(|r| r.get("doc").is_none()), "{b}");
    // CouchDB only honours the exact value "true" for include_docs.
    let b = changes(&node, &db, "?include_docs=yes");
    assert!(results(&b).iter().all(|r| r.get("doc").is_none()), "{b}");
}

#[test]
fn builtin_filters() {
    let node = Node::start();
    let db = create_q(&node, "ch-filter", 2);
    for id in ["a", "b", "c", "d"] {
        put_doc(&node, &db, id, json!({}));
    }
    put_doc(&node, &db, "_design/x", json!({"views": {}}));
    let (s, _) = node.put(&format!("/{db}/_local/l"), json!({}));
    assert_eq!(s, 201);

    // Local docs never appear.
    let b = changes(&node, &db, "");
    let all: BTreeSet<String> = ids(&b).into_iter().collect();
    assert_eq!(all, set(&["a", "b", "c", "d", "_design/x"]));

    let b = changes(
        &node,
        &db,
        &format!(
            "?filter=_doc_ids&doc_ids={}",
            urlencode(r#"["c","a","zz"]"#)
        ),
    );
    let got: BTreeSet<String> = ids(&b).into_iter().collect();
    assert_eq!(got, set(&["a", "c"]));

    let (s, b) = node.post(
        &format!("/{db}/_changes?filter=_doc_ids"),
        json!({"doc_ids": ["b", "_design/x"]}),
    );
    assert_eq!(s, 200, "{b}");
    let got: BTreeSet<String> = ids(&b).into_iter().collect();
    assert_eq!(got, set(&["b", "_design/x"]));

    // doc_ids without filter=_doc_ids does not filter.
    let (s, b) = node.post(&format!("/{db}/_changes"), json!({"doc_ids": ["b"]}));
    assert_eq!(s, 200, "{b}");
    assert_eq!(results(&b).len(), 5);

    let b = changes(&node, &db, "?filter=_design");
    assert_eq!(ids(&b), strs(&["_design/x"]));

    let bad_ids = json!({"error": "bad_request",
                         "reason": "`doc_ids` filter parameter is not a list of doc ids."});
    let (s, b) = node.get(&format!("/{db}/_changes?filter=_doc_ids"));
    assert_eq!(s, 400, "{b}");
    assert_eq!(b, bad_ids);
    let (s, b) = node.get(&format!(
        "/{db}/_changes?filter=_doc_ids&doc_ids={}",
        urlencode("[1,2]")
    ));
    assert_eq!(s, 400, "{b}");
    assert_eq!(b, bad_ids);
    let (s, b) = node.post(
        &format!("/{db}/_changes?filter=_doc_ids"),
        json!({"doc_ids": "a"}),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b, bad_ids);

    let (s, b) = node.get(&format!("/{db}/_changes?filter=_bogus"));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "unknown builtin filter name"})
    );
}

#[test]
fn feed_types_and_methods() {
    let node = Node::start();
    let db = create_q(&node, "ch-feeds", 1);
    put_doc(&node, &db, "a", json!({}));

    let (s, b) = node.get(&format!("/{db}/_changes?feed=bogus"));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request",
               "reason": "Supported `feed` types: normal, continuous, live, longpoll, eventsource"})
    );
    let normal = changes(&node, &db, "?feed=normal");
    assert_eq!(ids(&normal), strs(&["a"]));

    // longpoll with pending changes answers at once, in the normal shape.
    let lp = changes(&node, &db, "?feed=longpoll&since=0&timeout=2000");
    assert_eq!(lp, normal);

    // continuous/live with a timeout must not fail.
    for feed in ["continuous", "live"] {
        let resp = node
            .req("GET", &format!("/{db}/_changes?feed={feed}&timeout=200"))
            .timeout(Duration::from_secs(20))
            .send()
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200, "{feed}");
    }

    // POST works like GET.
    let (s, b) = node.post(&format!("/{db}/_changes"), json!({}));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, normal);
    let (s, b) = call(
        node.req("POST", &format!("/{db}/_changes"))
            .header("content-type", "text/plain")
            .body("{}"),
    );
    assert_eq!(s, 415, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    );
    let (s, b) = node.put(&format!("/{db}/_changes"), json!({}));
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"], "method_not_allowed");
}

/// A feed longer than one shard read batch (1,000 rows) comes out whole and in
/// per-range order; a limit that stops mid-range resumes from its `last_seq`
/// without gaps, and `pending` counts exactly what is left.
#[test]
fn long_feeds_stream_across_batches() {
    let node = Node::start();
    let db = create_q(&node, "long_changes", 2);
    let total = 2500;
    for start in (0..total).step_by(500) {
        let docs: Vec<Value> = (start..start + 500)
            .map(|i| json!({"_id": format!("c{i:05}")}))
            .collect();
        let (s, b) = node.post(&format!("/{db}/_bulk_docs"), json!({ "docs": docs }));
        assert_eq!(s, 201, "{b}");
    }
    let all: BTreeSet<String> = (0..total).map(|i| format!("c{i:05}")).collect();

    let b = changes(&node, &db, "");
    assert_eq!(results(&b).len(), total);
    assert_eq!(ids(&b).into_iter().collect::<BTreeSet<_>>(), all);
    assert_eq!(b["pending"], 0);

    // limit=0 (CouchDB 3.5): no rows, the position unchanged, everything pending.
    let b = changes(&node, &db, "?limit=0");
    assert_eq!(results(&b).len(), 0);
    assert_eq!(b["pending"], total);
    assert_eq!(seq_num(&b["last_seq"]), 0);

    // In pages of 1,100: every doc once, pending counting down.
    let mut seen = BTreeSet::new();
    let mut since = "0".to_string();
    let mut pages = 0;
    loop {
        let b = changes(
            &node,
            &db,
            &format!("?limit=1100&since={}", urlencode(&since)),
        );
        let got = ids(&b);
        for id in &got {
            assert!(seen.insert(id.clone()), "{id} twice");
        }
        assert_eq!(b["pending"], total - seen.len(), "page {pages}");
        since = b["last_seq"].as_str().unwrap().to_string();
        pages += 1;
        if got.len() < 1100 {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);

    // seq_interval counts rows across the whole body; the last row shows its seq.
    let b = changes(&node, &db, "?seq_interval=600");
    let rows = results(&b);
    let shown: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r["seq"].is_null())
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(shown, vec![600, 1200, 1800, 2400, 2500]);
    assert_eq!(rows[total - 1]["seq"], b["last_seq"]);
}
