//! A three-node cluster on 127.0.0.2-4 (same ports on each, like three hosts),
//! formed with `_cluster_setup` exactly as a user would with curl.

use chaise_integration_tests::helpers::{get_bytes, noise, row_ids, urlencode};
use chaise_integration_tests::{call, free_port, Node, NodeOptions, ADMIN, PASSWORD};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOSTS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

struct Cluster {
    nodes: Vec<Node>,
    opts: Vec<NodeOptions>,
    _ini: tempfile::TempDir,
}

fn node_options(host: &str, port: u16, cluster_port: u16, ini: &std::path::Path) -> NodeOptions {
    NodeOptions {
        host: Some(host.to_string()),
        port: Some(port),
        cluster_port: Some(cluster_port),
        args: vec!["--config".into(), ini.display().to_string()],
        env: vec![("COUCHDB_SECRET".into(), "cluster-test-secret".into())],
        ..Default::default()
    }
}

/// Starts three nodes and forms a cluster through node 1.
fn form_cluster() -> Cluster {
    let port = free_port();
    let cluster_port = free_port();
    let ini_dir = tempfile::tempdir().unwrap();
    let ini = ini_dir.path().join("cluster.ini");
    std::fs::write(&ini, "[couchdb]\nsingle_node = false\n").unwrap();
    let opts: Vec<NodeOptions> = HOSTS
        .iter()
        .map(|h| node_options(h, port, cluster_port, &ini))
        .collect();
    let nodes: Vec<Node> = opts.iter().map(|o| Node::start_with(o.clone())).collect();
    let seed = &nodes[0];

    // The seed workflow of CouchDB's docs.
    let (s, b) = seed.post(
        "/_cluster_setup",
        json!({"action": "enable_cluster", "bind_address": HOSTS[0], "username": ADMIN,
               "password": PASSWORD, "port": port, "node_count": "3"}),
    );
    assert!(
        s == 201 || (s == 400 && b["reason"] == "Cluster is already enabled"),
        "enable_cluster: {s} {b}"
    );
    assert_eq!(
        seed.put("/_node/_local/_config/cluster/n", json!("3")).0,
        200
    );
    assert_eq!(
        seed.put("/_node/_local/_config/cluster/q", json!("4")).0,
        200
    );
    for host in &HOSTS[1..] {
        let (s, b) = seed.post(
            "/_cluster_setup",
            json!({"action": "add_node", "host": host, "port": port,
                   "username": ADMIN, "password": PASSWORD}),
        );
        assert_eq!(s, 201, "add_node {host}: {b}");
    }
    let (s, b) = seed.post("/_cluster_setup", json!({"action": "finish_cluster"}));
    assert_eq!(s, 201, "finish_cluster: {b}");
    Cluster {
        nodes,
        opts,
        _ini: ini_dir,
    }
}

fn names() -> Vec<String> {
    HOSTS.iter().map(|h| format!("chaise@{h}")).collect()
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `_all_docs` with docs as one node sees it (its own copies first).
fn all_docs(node: &Node, db: &str) -> Value {
    let (s, b) = node.get(&format!("/{db}/_all_docs?include_docs=true&conflicts=true"));
    assert_eq!(s, 200, "{b}");
    b["rows"].clone()
}

#[test]
fn three_nodes_quorum_failover_and_convergence() {
    let mut c = form_cluster();
    let expected: Vec<String> = names();

    // Membership and setup state agree on every node.
    for node in &c.nodes {
        eventually("membership", 20, || {
            let (_, b) = node.get("/_membership");
            b["cluster_nodes"] == json!(expected) && b["all_nodes"] == json!(expected)
        });
        // Followers apply the system databases' creation at their next heartbeat.
        eventually("setup state", 10, || {
            node.get("/_cluster_setup").1["state"] == "cluster_finished"
        });
    }

    // A q=4, n=3 database created through a follower; shard maps identical everywhere.
    let (s, b) = c.nodes[1].json("PUT", "/cdb?q=4&n=3", None);
    assert_eq!(s, 201, "{b}");
    let maps: Vec<Value> = c
        .nodes
        .iter()
        .map(|n| {
            let mut m = Value::Null;
            eventually("shard map", 10, || {
                let (s, b) = n.get("/_node/_local/_dbs/cdb");
                m = b;
                s == 200
            });
            m
        })
        .collect();
    assert!(
        maps.iter().all(|m| m == &maps[0]),
        "shard maps differ: {maps:?}"
    );
    let by_range = maps[0]["by_range"].as_object().unwrap();
    assert_eq!(by_range.len(), 4);
    for nodes in by_range.values() {
        assert_eq!(nodes, &json!(expected));
    }
    let (_, info) = c.nodes[2].get("/cdb");
    assert_eq!(info["cluster"], json!({"q": 4, "n": 3, "w": 2, "r": 2}));

    // Writes through every node, reads through every node.
    for i in 0..30 {
        let node = &c.nodes[i % 3];
        let (s, b) = node.put(&format!("/cdb/doc{i}"), json!({"i": i}));
        assert_eq!(s, 201, "{b}");
    }
    for node in &c.nodes {
        for i in 0..30 {
            let (s, b) = node.get(&format!("/cdb/doc{i}"));
            assert_eq!(s, 200, "{b}");
            assert_eq!(b["i"], i);
        }
        assert_eq!(all_docs(node, "cdb").as_array().unwrap().len(), 30);
    }
    // /_node/{name}/... reaches the named node.
    let (s, b) = c.nodes[0].get(&format!(
        "/_node/chaise@{}/_config/chttpd/bind_address",
        HOSTS[2]
    ));
    assert_eq!((s, b), (200, json!(HOSTS[2])));

    // Kill node 3 under a write load: writes keep succeeding, nothing acknowledged is lost.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (w, base) in [c.nodes[0].base(), c.nodes[1].base()]
        .into_iter()
        .enumerate()
    {
        let (acked, stop) = (acked.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut i = 0;
            let mut statuses = BTreeSet::new();
            while !stop.load(Ordering::Relaxed) && i < 400 {
                i += 1;
                let id = format!("load{w}-{i}");
                let r = client
                    .put(format!("{base}/cdb/{id}"))
                    .basic_auth(ADMIN, Some(PASSWORD))
                    .json(&json!({"w": w, "i": i}))
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                statuses.insert(status);
                let b: Value = r.json().unwrap();
                if status == 201 || status == 202 {
                    acked
                        .lock()
                        .unwrap()
                        .push((id, b["rev"].as_str().unwrap().to_string()));
                }
            }
            statuses
        }));
    }
    // A changes position taken through node 3 (which reads its own copies).
    let (s, feed) = c.nodes[2].get("/cdb/_changes");
    assert_eq!(s, 200);
    let seq_via_3 = feed["last_seq"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(300));
    c.nodes[2].kill9();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let statuses = w.join().unwrap();
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 202),
            "writes failed while a node was down: {statuses:?}"
        );
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "too few writes: {}", acked.len());

    // The position names copies on node 3, which is gone: the feed resumes from
    // other copies, possibly repeating rows, never skipping one.
    let (s, feed) = c.nodes[0].get(&format!("/cdb/_changes?since={}", urlencode(&seq_via_3)));
    assert_eq!(s, 200, "{feed}");
    let seen: BTreeSet<String> = feed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for (id, _) in &acked {
        assert!(seen.contains(id), "changes skipped {id} after failover");
    }

    // With a node down, w=3 cannot be met: 202 Accepted; reads are still served.
    let (s, b) = c.nodes[0].json("PUT", "/cdb/need-three?w=3", Some(json!({"x": 1})));
    assert_eq!(s, 202, "{b}");
    for (id, rev) in &acked {
        let (s, b) = c.nodes[1].get(&format!("/cdb/{id}"));
        assert_eq!(s, 200, "acknowledged {id} unreadable: {b}");
        assert_eq!(b["_rev"], rev.as_str());
    }

    // Restart node 3: it catches up by itself and every copy is equal, doc by doc.
    let dead = c.nodes.remove(2);
    c.nodes.push(dead.restart(c.opts[2].clone()));
    let reference = all_docs(&c.nodes[0], "cdb");
    assert_eq!(reference.as_array().unwrap().len(), 30 + acked.len() + 1);
    for node in &c.nodes {
        eventually("copies to converge", 60, || {
            all_docs(node, "cdb") == reference
        });
    }
    let (_, b) = c.nodes[2].get("/_membership");
    assert_eq!(b["cluster_nodes"], json!(expected));

    // One copy per range (n=1): most ranges live on other nodes, so long listings
    // stream across the fabric in batches and merge; every node gives the same.
    let (s, b) = c.nodes[0].json("PUT", "/spread?q=4&n=1", None);
    assert_eq!(s, 201, "{b}");
    let docs: Vec<Value> = (0..2400)
        .map(|i| json!({"_id": format!("s{i:05}")}))
        .collect();
    let (s, b) = c.nodes[0].post("/spread/_bulk_docs", json!({ "docs": docs }));
    assert_eq!(s, 201, "{b}");
    let ids: Vec<String> = (0..2400).map(|i| format!("s{i:05}")).collect();
    for node in &c.nodes {
        let (s, b) = node.get("/spread/_all_docs?skip=100&limit=2200");
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["total_rows"], 2400);
        assert_eq!(b["offset"], 100);
        assert_eq!(row_ids(&b), ids[100..2300].to_vec());
        let (s, b) = node.get("/spread/_changes");
        assert_eq!(s, 200, "{b}");
        let mut seen: Vec<String> = b["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        seen.sort();
        assert_eq!(seen, ids);
        assert_eq!(b["pending"], 0);
    }
}

#[test]
fn leader_kill_during_database_creation_leaves_no_half_database() {
    let mut c = form_cluster();
    // Node 1 initialised the Raft group, so it leads. Create through node 2 while
    // node 1 dies.
    let base = c.nodes[1].base();
    let creator = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut created = Vec::new();
        for i in 0..10 {
            let db = format!("racedb{i}");
            if let Ok(r) = client
                .put(format!("{base}/{db}?q=2"))
                .basic_auth(ADMIN, Some(PASSWORD))
                .send()
            {
                if r.status().as_u16() == 201 {
                    created.push(db);
                }
            }
        }
        created
    });
    std::thread::sleep(Duration::from_millis(30));
    c.nodes[0].kill9();
    let created = creator.join().unwrap();

    // The survivors elect a leader and agree on which databases exist; every one
    // that exists is whole: same shard map everywhere and usable through any node.
    let survivors = &c.nodes[1..];
    let mut dbs = Vec::new();
    eventually("survivors to agree", 30, || {
        let lists: Vec<Value> = survivors.iter().map(|n| n.get("/_all_dbs").1).collect();
        dbs = lists[0].as_array().cloned().unwrap_or_default();
        lists.iter().all(|l| l == &lists[0])
    });
    for db in &created {
        assert!(dbs.contains(&json!(db)), "acknowledged {db} is missing");
    }
    for db in dbs
        .iter()
        .filter_map(Value::as_str)
        .filter(|d| d.starts_with("racedb"))
    {
        let maps: Vec<Value> = survivors
            .iter()
            .map(|n| n.get(&format!("/_node/_local/_dbs/{db}")).1)
            .collect();
        assert_eq!(maps[0], maps[1], "{db}: shard maps differ");
        for (i, n) in survivors.iter().enumerate() {
            let (s, b) = call(
                n.req("PUT", &format!("/{db}/probe{i}"))
                    .header("content-type", "application/json")
                    .body("{}"),
            );
            assert!(
                s == 201 || s == 202,
                "{db} unusable through node {i}: {s} {b}"
            );
        }
    }
    // A database that was not created exists nowhere (no half-created leftovers).
    let (s, _) = survivors[0].get("/racedb-never");
    assert_eq!(s, 404);

    // `/_up` tells load balancers whether a node follows a leader: the two
    // survivors are up; a lone survivor has no quorum and reports seeding until a
    // peer comes back.
    for n in survivors {
        eventually("survivors to be up", 30, || {
            n.get("/_up") == (200, json!({"status": "ok", "seeds": {}}))
        });
    }
    c.nodes[2].kill9();
    eventually("lone node to report seeding", 30, || {
        let (s, b) = c.nodes[1].get("/_up");
        s == 404 && b["status"] == "seeding" && b["seeds"].is_object()
    });
    let dead = c.nodes.pop().unwrap();
    c.nodes.push(dead.restart(c.opts[2].clone()));
    eventually("node to be up again", 30, || {
        c.nodes[1].get("/_up").0 == 200 && c.nodes[2].get("/_up").0 == 200
    });
}

/// A copy that was down while a document with attachments was written gets the
/// attachment data from internal replication (streamed in pieces), and then
/// serves it alone.
#[test]
fn attachments_reach_a_copy_that_was_down() {
    let mut c = form_cluster();
    let (s, b) = c.nodes[0].json("PUT", "/attdb?q=2&n=3", None);
    assert_eq!(s, 201, "{b}");
    c.nodes[2].kill9();

    // 2.5 MiB of incompressible bytes (several copy pieces) and a gzip-stored text.
    let big = noise(7, 5 << 19);
    let text = "internal replication ".repeat(500);
    let (s, b) = call(
        c.nodes[0]
            .req("PUT", "/attdb/withatts/big")
            .header("content-type", "application/octet-stream")
            .body(big.clone()),
    );
    assert!(s == 201 || s == 202, "{s} {b}");
    let (s, b) = call(
        c.nodes[0]
            .req(
                "PUT",
                &format!(
                    "/attdb/withatts/notes.txt?rev={}",
                    b["rev"].as_str().unwrap()
                ),
            )
            .header("content-type", "text/plain")
            .body(text.clone()),
    );
    assert!(s == 201 || s == 202, "{s} {b}");
    let (_, doc) = c.nodes[0].get("/attdb/withatts?att_encoding_info=true");
    assert_eq!(doc["_attachments"]["notes.txt"]["encoding"], "gzip");

    let dead = c.nodes.pop().unwrap();
    c.nodes.push(dead.restart(c.opts[2].clone()));
    // r=1 through node 3 reads its own copy only.
    eventually("the copy that was down to get the document", 60, || {
        let (s, b) = c.nodes[2].get("/attdb/withatts?r=1&att_encoding_info=true");
        s == 200 && b["_rev"] == doc["_rev"]
    });
    let (_, copy) = c.nodes[2].get("/attdb/withatts?r=1&att_encoding_info=true");
    assert_eq!(copy["_attachments"], doc["_attachments"]);

    // With the other two gone, node 3 serves the bytes from its own copy.
    c.nodes[0].kill9();
    c.nodes[1].kill9();
    let got = get_bytes(&c.nodes[2], "/attdb/withatts/big");
    assert!(got == big, "big attachment differs ({} bytes)", got.len());
    let got = get_bytes(&c.nodes[2], "/attdb/withatts/notes.txt");
    assert_eq!(got, text.as_bytes());
}

#[test]
fn nodes_refuse_callers_without_the_cluster_secret() {
    let port = free_port();
    let cluster_port = free_port();
    let ini_dir = tempfile::tempdir().unwrap();
    let ini = ini_dir.path().join("cluster.ini");
    std::fs::write(&ini, "[couchdb]\nsingle_node = false\n").unwrap();
    let mut a = node_options("127.0.0.5", port, cluster_port, &ini);
    let mut b = node_options("127.0.0.6", port, cluster_port, &ini);
    a.env = vec![("COUCHDB_SECRET".into(), "one-secret".into())];
    b.env = vec![("COUCHDB_SECRET".into(), "another-secret".into())];
    let a = Node::start_with(a);
    let b = Node::start_with(b);
    let (s, body) = a.post(
        "/_cluster_setup",
        json!({"action": "add_node", "host": "127.0.0.6", "port": port,
               "username": ADMIN, "password": PASSWORD}),
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("Add node failed."),
        "{body}"
    );
    eventually("the refusal to be logged", 5, || {
        b.logs().contains("refused fabric call")
    });
    let (_, m) = a.get("/_membership");
    assert_eq!(m["cluster_nodes"], json!(["chaise@127.0.0.5"]));
}

#[test]
fn members_are_listed_and_removed_through_any_node() {
    let c = form_cluster();
    let expected = names();
    let (s, b) = c.nodes[1].get("/_node/_local/_nodes/_all_docs");
    assert_eq!(s, 200, "{b}");
    let ids = row_ids(&b);
    assert_eq!(ids, expected);
    // Removal through a follower is forwarded to the Raft leader.
    let (s, b) = c.nodes[1].delete(&format!("/_node/_local/_nodes/{}", expected[2]));
    assert_eq!(s, 200, "{b}");
    for node in &c.nodes[..2] {
        eventually("membership without node 3", 10, || {
            node.get("/_membership").1["cluster_nodes"] == json!(expected[..2])
        });
    }
    let (s, _) = c.nodes[0].get(&format!("/_node/_local/_nodes/{}", expected[2]));
    assert_eq!(s, 404);
    // The two remaining nodes still serve reads and writes.
    let (s, b) = c.nodes[0].put(
        "/_users/org.couchdb.user:probe",
        json!({"name": "probe", "type": "user", "roles": [], "password": "x"}),
    );
    assert!(s == 201 || s == 202, "{s} {b}");
}

/// Certificates for a test cluster: a CA and one certificate per host (IP SAN).
fn write_certs(dir: &std::path::Path, hosts: &[&str]) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    for host in hosts {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![host.to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{host}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{host}.key")), key.serialize_pem()).unwrap();
    }
}

#[test]
fn nodes_talk_over_tls_when_configured() {
    let hosts = ["127.0.0.7", "127.0.0.8"];
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path(), &hosts);
    let port = free_port();
    let cluster_port = free_port();
    let nodes: Vec<Node> = hosts
        .iter()
        .map(|h| {
            let ini = dir.path().join(format!("{h}.ini"));
            let d = dir.path().display();
            std::fs::write(
                &ini,
                format!(
                    "[couchdb]\nsingle_node = false\n[fabric]\ntls = true\ncert_file = {d}/{h}.pem\nkey_file = {d}/{h}.key\nca_file = {d}/ca.pem\n"
                ),
            )
            .unwrap();
            Node::start_with(node_options(h, port, cluster_port, &ini))
        })
        .collect();
    let (s, b) = nodes[0].post(
        "/_cluster_setup",
        json!({"action": "add_node", "host": hosts[1], "port": port,
               "username": ADMIN, "password": PASSWORD}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = nodes[0].json("PUT", "/tlsdb?q=2&n=2", None);
    assert_eq!(s, 201, "{b}");
    let (s, b) = nodes[0].put("/tlsdb/a", json!({"x": 1}));
    assert_eq!(s, 201, "{b}");
    eventually("the doc through the other node", 10, || {
        nodes[1].get("/tlsdb/a").0 == 200
    });

    // A node without TLS cannot join: its plaintext calls are refused.
    let ini = dir.path().join("plain.ini");
    std::fs::write(&ini, "[couchdb]\nsingle_node = false\n").unwrap();
    let plain = Node::start_with(node_options("127.0.0.9", port, cluster_port, &ini));
    let (s, b) = plain.post(
        "/_cluster_setup",
        json!({"action": "add_node", "host": hosts[0], "port": port,
               "username": ADMIN, "password": PASSWORD}),
    );
    assert_eq!(s, 400, "{b}");
}
