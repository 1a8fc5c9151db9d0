//! `Range` requests on attachments, as CouchDB's `attachment_ranges` suite and
//! `chttpd_db:db_attachment_req` answer them: 206 with `Content-Range`, several
//! ranges as `multipart/byteranges`, 416 for unsatisfiable ranges, and whole
//! data for malformed headers, `bytes=0-` and gzip-stored attachments.

use chaise_integration_tests::{raw, Node, Raw};

const TEXT: &[u8] = b"This is a base64 encoded text";

fn setup(node: &Node) -> String {
    let db = node.create_db("ranges");
    let r = raw(node
        .req("PUT", &format!("/{db}/bin_doc/foo.txt"))
        .header("content-type", "application/octet-stream")
        .body(TEXT.to_vec()));
    assert_eq!(r.status, 201, "{:?}", r.json());
    db
}

fn get_range(node: &Node, db: &str, range: &str) -> Raw {
    raw(node
        .req("GET", &format!("/{db}/bin_doc/foo.txt"))
        .header("range", range))
}

#[test]
fn single_ranges_as_couchdb() {
    let node = Node::start();
    let db = setup(&node);
    let cases: [(&str, u16, &[u8], Option<&str>); 6] = [
        ("bytes=0-28", 206, TEXT, Some("bytes 0-28/29")),
        ("bytes=0-", 200, TEXT, None),
        ("bytes=2-", 206, &TEXT[2..], Some("bytes 2-28/29")),
        ("bytes=0-29", 206, TEXT, Some("bytes 0-28/29")),
        ("bytes=10-15", 206, b"base64", Some("bytes 10-15/29")),
        ("bytes=-3", 206, b"ext", Some("bytes 26-28/29")),
    ];
    for (range, status, body, content_range) in cases {
        let r = get_range(&node, &db, range);
        assert_eq!(r.status, status, "{range}");
        assert_eq!(r.body, body, "{range}");
        assert_eq!(
            r.header("content-range").as_deref(),
            content_range,
            "{range}"
        );
        assert_eq!(r.header("content-length"), Some(body.len().to_string()));
        assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    }
    // A malformed header is ignored.
    for bad in ["bytes:0-", "lines=1-2", "bytes=a-b", "bytes=-"] {
        let r = get_range(&node, &db, bad);
        assert_eq!((r.status, r.body.as_slice()), (200, TEXT), "{bad}");
    }
}

#[test]
fn unsatisfiable_ranges_are_416() {
    let node = Node::start();
    let db = setup(&node);
    for range in ["bytes=5-3", "bytes=300-310", "bytes=29-"] {
        let r = get_range(&node, &db, range);
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.json()["error"], "requested_range_not_satisfiable");
        assert_eq!(r.header("content-range").as_deref(), Some("bytes */29"));
    }
}

#[test]
fn several_ranges_are_multipart_byteranges() {
    let node = Node::start();
    let db = setup(&node);
    let r = get_range(&node, &db, "bytes=0-3,10-15,-3");
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=\"")
        .and_then(|b| b.strip_suffix('"'))
        .expect("byteranges content type");
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string()));
    let body = String::from_utf8(r.body.clone()).unwrap();
    let expected = format!(
        "--{b}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-3/29\r\n\r\nThis\r\n--{b}\
         \r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 10-15/29\r\n\r\nbase64\r\n--{b}\
         \r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 26-28/29\r\n\r\next\r\n--{b}--",
        b = boundary
    );
    assert_eq!(body, expected);
    // Ten ranges or more: the whole data, as CouchDB.
    let many = (0..10)
        .map(|i| format!("{i}-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let r = get_range(&node, &db, &format!("bytes={many}"));
    assert_eq!((r.status, r.body.as_slice()), (200, TEXT));
}

#[test]
fn etag_and_head_with_ranges() {
    let node = Node::start();
    let db = setup(&node);
    let r = get_range(&node, &db, "bytes=0-3");
    let etag = r.header("etag").expect("etag");
    let r = raw(node
        .req("GET", &format!("/{db}/bin_doc/foo.txt"))
        .header("if-none-match", &etag));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = raw(node
        .req("GET", &format!("/{db}/bin_doc/foo.txt"))
        .header("if-none-match", "\"other\""));
    assert_eq!(r.status, 200);
    let r = raw(node
        .req("HEAD", &format!("/{db}/bin_doc/foo.txt"))
        .header("range", "bytes=0-3"));
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length").as_deref(), Some("4"));
    assert!(r.body.is_empty());
}

#[test]
fn gzip_stored_attachments_ignore_ranges() {
    let node = Node::start();
    let db = node.create_db("ranges");
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/t.txt"))
        .header("content-type", "text/plain")
        .body(TEXT.to_vec()));
    assert_eq!(r.status, 201);
    let r = raw(node
        .req("GET", &format!("/{db}/doc/t.txt"))
        .header("range", "bytes=0-3"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, TEXT);
    assert_eq!(r.header("accept-ranges").as_deref(), Some("none"));
    assert_eq!(r.header("content-range"), None);
}
