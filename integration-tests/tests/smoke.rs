//! The first minute of a new user: start a node, create a database, write and read.

use chaise_integration_tests::Node;
use serde_json::json;

#[test]
fn create_write_read() {
    let node = Node::start();
    let (s, b) = node.get("/");
    assert_eq!(s, 200);
    assert_eq!(b["couchdb"], "Welcome");
    let db = node.create_db("smoke");
    let (s, b) = node.put(&format!("/{db}/doc1"), json!({"a": 1}));
    assert_eq!(s, 201, "{b}");
    let rev = b["rev"].as_str().unwrap().to_string();
    let (s, b) = node.get(&format!("/{db}/doc1"));
    assert_eq!(s, 200);
    assert_eq!(b, json!({"_id": "doc1", "_rev": rev, "a": 1}));
}
