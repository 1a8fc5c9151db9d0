//! An acknowledged write survives `kill -9`: many clients write concurrently, the
//! node is killed mid-load, and after a restart every acknowledged document is there.

use chaise_integration_tests::{call, Node, NodeOptions};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut node = Node::start();
    let db = node.create_db("durable");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let base = node.base();
    let mut workers = Vec::new();
    for w in 0..12 {
        let acked = acked.clone();
        let stop = stop.clone();
        let base = base.clone();
        let db = db.clone();
        workers.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if w % 3 == 0 {
                    // A batch of ten through _bulk_docs.
                    let docs: Vec<Value> = (0..10)
                        .map(|k| json!({"_id": format!("w{w}-{i}-{k}"), "n": i, "pad": "x".repeat(200)}))
                        .collect();
                    let r = client
                        .post(format!("{base}/{db}/_bulk_docs"))
                        .basic_auth("admin", Some("s3cret"))
                        .json(&json!({ "docs": docs }))
                        .send();
                    let Ok(r) = r else { continue };
                    if r.status().as_u16() != 201 {
                        continue;
                    }
                    let Ok(items) = r.json::<Vec<Value>>() else { continue };
                    let mut a = acked.lock().unwrap();
                    for item in items {
                        if item["ok"] == true {
                            a.push((
                                item["id"].as_str().unwrap().to_string(),
                                item["rev"].as_str().unwrap().to_string(),
                            ));
                        }
                    }
                } else {
                    let id = format!("w{w}-{i}");
                    let r = client
                        .put(format!("{base}/{db}/{id}"))
                        .basic_auth("admin", Some("s3cret"))
                        .json(&json!({"n": i}))
                        .send();
                    let Ok(r) = r else { continue };
                    if r.status().as_u16() != 201 {
                        continue;
                    }
                    let Ok(b) = r.json::<Value>() else { continue };
                    if let Some(rev) = b["rev"].as_str() {
                        acked.lock().unwrap().push((id, rev.to_string()));
                    }
                }
            }
        }));
    }
    // Let the load build up, then pull the plug while writes are in flight.
    std::thread::sleep(Duration::from_millis(1500));
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few writes acknowledged: {}",
        acked.len()
    );

    let node = node.restart(NodeOptions::default());
    // Check every acknowledged document through _all_docs with keys.
    for chunk in acked.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
        let (s, b) = call(
            node.req("POST", &format!("/{db}/_all_docs"))
                .json(&json!({ "keys": keys })),
        );
        assert_eq!(s, 200, "{b}");
        let rows = b["rows"].as_array().unwrap();
        for ((id, rev), row) in chunk.iter().zip(rows) {
            assert_eq!(
                row["id"],
                id.as_str(),
                "acknowledged doc lost: {id} ({row})"
            );
            assert_eq!(row["value"]["rev"], rev.as_str(), "wrong rev for {id}");
        }
    }
    // The database is still writable and its counters agree with its contents.
    let (s, info) = node.get(&format!("/{db}"));
    assert_eq!(s, 200);
    assert!(info["doc_count"].as_u64().unwrap() >= acked.len() as u64);
    let (s, _) = node.put(&format!("/{db}/after-restart"), json!({}));
    assert_eq!(s, 201);
}
