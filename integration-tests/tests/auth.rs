//! Authentication and authorization: basic auth, cookie sessions (`/_session`),
//! `_users` accounts, server-admin-only endpoints and database membership, with
//! CouchDB 3.5's exact status codes, error strings and cookie attributes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chaise_integration_tests::helpers::{
    call_with_headers, header, not_admin, set_config_in_memory,
};
use chaise_integration_tests::{call, set_config, Node, ADMIN, PASSWORD};
use reqwest::blocking::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

fn bad_credentials() -> Value {
    json!({"error": "unauthorized", "reason": "Name or password is incorrect."})
}

/// POSTs JSON credentials to `/_session`; returns status, headers, body.
fn login(node: &Node, name: &str, password: &str) -> (u16, HeaderMap, Value) {
    call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/json")
            .body(json!({"name": name, "password": password}).to_string()),
    )
}

/// The `AuthSession` token of a login response's `Set-Cookie`.
fn session_token(h: &HeaderMap) -> String {
    let c = header(h, "set-cookie").expect("set-cookie");
    let first = c.split(';').next().unwrap();
    let token = first
        .strip_prefix("AuthSession=")
        .expect("AuthSession cookie");
    assert!(!token.is_empty(), "{c}");
    token.to_string()
}

/// A request from a client that does not follow redirects.
fn no_redirect(node: &Node, method: &str, path: &str) -> RequestBuilder {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    client.request(method.parse().unwrap(), node.url(path))
}

fn with_cookie(r: RequestBuilder, token: &str) -> RequestBuilder {
    r.header("cookie", format!("AuthSession={token}"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Creates `org.couchdb.user:<name>` in `_users` as the admin.
fn create_user(node: &Node, name: &str, password: &str, roles: &[&str]) {
    let (s, b) = node.put(
        &format!("/_users/org.couchdb.user:{name}"),
        json!({"name": name, "type": "user", "roles": roles, "password": password}),
    );
    assert_eq!(s, 201, "create user {name}: {b}");
}

fn as_user(node: &Node, method: &str, path: &str, name: &str, pw: &str) -> RequestBuilder {
    node.anon(method, path).basic_auth(name, Some(pw))
}

// ---------------------------------------------------------------------------
// Basic auth
// ---------------------------------------------------------------------------

#[test]
fn basic_auth_admin_session_shape() {
    let node = Node::start();
    let (s, b) = node.get("/_session");
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({
            "ok": true,
            "userCtx": {"name": ADMIN, "roles": ["_admin"]},
            "info": {
                "authentication_handlers": ["cookie", "default"],
                "authenticated": "default"
            }
        })
    );
}

#[test]
fn basic_auth_wrong_password_or_unknown_user_is_401() {
    let node = Node::start();
    // (Fewer than 5 failures for the admin: more would lock it out.)
    for (user, pw, paths) in [
        (ADMIN, "wrong", &["/", "/_session"][..]),
        (ADMIN, "", &["/_all_dbs", "/_up"][..]),
        ("nobody", "x", &["/", "/_session", "/_all_dbs", "/_up"][..]),
    ] {
        for &path in paths {
            let (s, h, b) = call_with_headers(node.anon("GET", path).basic_auth(user, Some(pw)));
            assert_eq!(s, 401, "{user}:{pw} {path}");
            assert_eq!(b, bad_credentials(), "{user}:{pw} {path}");
            // No browser popup unless asked for.
            assert!(header(&h, "www-authenticate").is_none(), "{h:?}");
        }
    }
    // The right password still works afterwards.
    let (s, _) = node.get("/_all_dbs");
    assert_eq!(s, 200);
}

#[test]
fn www_authenticate_is_echoed_when_requested() {
    let node = Node::start();
    let (s, h, _) = call_with_headers(
        node.anon("GET", "/_all_dbs")
            .header("X-CouchDB-WWW-Authenticate", "Cookie"),
    );
    assert_eq!(s, 401);
    assert_eq!(header(&h, "www-authenticate").as_deref(), Some("Cookie"));
}

#[test]
fn malformed_basic_header_is_rejected() {
    let node = Node::start();
    let (s, b) = call(
        node.anon("GET", "/_session")
            .header("authorization", "Basic !!!notbase64"),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "Authorization header has invalid base64 value"})
    );
    // No `:` at all, or the special `_:_`, is anonymous.
    for raw in ["justaname", "_:_"] {
        let (s, b) = call(
            node.anon("GET", "/_session")
                .header("authorization", format!("Basic {}", STANDARD.encode(raw))),
        );
        assert_eq!(s, 200, "{raw}: {b}");
        assert_eq!(b["userCtx"]["name"], Value::Null, "{raw}");
    }
}

#[test]
fn repeated_failures_lock_the_account() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &[]);
    create_user(&node, "carol", "carolpw", &[]);
    let locked = json!({"error": "forbidden", "reason": "Account is temporarily locked due to multiple authentication failures"});
    for i in 0..5 {
        let (s, b) = call(as_user(&node, "GET", "/_session", "bob", "wrong"));
        assert_eq!((s, b), (401, bad_credentials()), "failure {i}");
    }
    // From now on even the right password is refused, by basic auth and login.
    let (s, b) = call(as_user(&node, "GET", "/_session", "bob", "wrong"));
    assert_eq!((s, b), (403, locked.clone()));
    let (s, b) = call(as_user(&node, "GET", "/_session", "bob", "bobpw"));
    assert_eq!((s, b), (403, locked.clone()));
    let (s, _, b) = login(&node, "bob", "bobpw");
    assert_eq!((s, b), (403, locked.clone()));
    // Other accounts are not affected.
    let (s, _) = call(as_user(&node, "GET", "/_session", "carol", "carolpw"));
    assert_eq!(s, 200);
    let (s, _) = node.get("/_session");
    assert_eq!(s, 200);
    // Failed cookie logins count as well.
    for _ in 0..5 {
        let (s, _, _) = login(&node, "carol", "nope");
        assert_eq!(s, 401);
    }
    let (s, _, b) = login(&node, "carol", "carolpw");
    assert_eq!((s, b), (403, locked.clone()));
    // `[chttpd_auth_lockout] mode = off` lifts the lock; `warn` never locks.
    set_config_in_memory(&node, "chttpd_auth_lockout", "mode", "off");
    let (s, _) = call(as_user(&node, "GET", "/_session", "bob", "bobpw"));
    assert_eq!(s, 200);
    set_config_in_memory(&node, "chttpd_auth_lockout", "mode", "warn");
    let (s, _) = call(as_user(&node, "GET", "/_session", "bob", "bobpw"));
    assert_eq!(s, 200);
}

#[test]
fn lockout_threshold_is_configurable() {
    let node = Node::start();
    create_user(&node, "dave", "davepw", &[]);
    set_config_in_memory(&node, "chttpd_auth_lockout", "threshold", "2");
    for _ in 0..2 {
        let (s, _) = call(as_user(&node, "GET", "/", "dave", "x"));
        assert_eq!(s, 401);
    }
    let (s, b) = call(as_user(&node, "GET", "/", "dave", "davepw"));
    assert_eq!(s, 403, "{b}");
}

// ---------------------------------------------------------------------------
// Anonymous access
// ---------------------------------------------------------------------------

#[test]
fn anonymous_public_endpoints() {
    let node = Node::start();
    for path in ["/", "/_up", "/_uuids", "/_session"] {
        let (s, b) = call(node.anon("GET", path));
        assert_eq!(s, 200, "{path}: {b}");
    }
    let (_, b) = call(node.anon("GET", "/_session"));
    assert_eq!(
        b,
        json!({
            "ok": true,
            "userCtx": {"name": null, "roles": []},
            "info": {
                "authentication_handlers": ["cookie", "default"]
            }
        })
    );
    // `authentication_db` is only shown when `[chttpd_auth] authentication_db`
    // is set (CouchDB 3's default.ini leaves it commented out).
    set_config_in_memory(&node, "chttpd_auth", "authentication_db", "_users");
    let (_, b) = call(node.anon("GET", "/_session"));
    assert_eq!(
        b["info"],
        json!({"authentication_handlers": ["cookie", "default"], "authentication_db": "_users"})
    );
}

#[test]
fn anonymous_admin_only_endpoints_are_401() {
    let node = Node::start();
    node.create_db("private");
    let reqs: [(&str, &str); 11] = [
        ("GET", "/_all_dbs"),
        ("GET", "/_dbs_info"),
        ("GET", "/_active_tasks"),
        ("GET", "/_membership"),
        ("GET", "/_node/_local/_config"),
        ("GET", "/_node/_local/_config/admins"),
        ("GET", "/_node/_local/_versions"),
        ("GET", "/_node/_local/_dbs/private"),
        ("PUT", "/newdb"),
        ("DELETE", "/private"),
        ("POST", "/private/_purge"),
    ];
    for (m, path) in reqs {
        let (s, b) = call(
            node.anon(m, path)
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_eq!((s, b), (401, not_admin()), "{m} {path}");
    }
    // Nothing happened.
    let (s, _) = node.get("/newdb");
    assert_eq!(s, 404);
    let (s, _) = node.get("/private");
    assert_eq!(s, 200);
}

#[test]
fn anonymous_on_admin_only_db() {
    let node = Node::start();
    node.create_db("closed");
    let (s, b) = call(node.anon("GET", "/closed"));
    assert_eq!(s, 401);
    assert_eq!(
        b,
        json!({"error": "unauthorized", "reason": "You are not authorized to access this db."})
    );
    let (s, _) = call(
        node.anon("PUT", "/closed/doc")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!(s, 401);
}

#[test]
fn require_valid_user() {
    let node = Node::start();
    set_config_in_memory(&node, "chttpd", "require_valid_user", "true");
    let (s, h, b) = call_with_headers(node.anon("GET", "/"));
    assert_eq!(s, 401);
    assert_eq!(
        b,
        json!({"error": "unauthorized", "reason": "Authentication required."})
    );
    assert_eq!(
        header(&h, "www-authenticate").as_deref(),
        Some("Basic realm=\"server\"")
    );
    let (s, _) = call(node.anon("GET", "/_up"));
    assert_eq!(s, 401);
    let (s, _) = call(node.anon("GET", "/_session"));
    assert_eq!(s, 401);
    // Logging in is always possible, and so is everything with credentials.
    let (s, h, b) = login(&node, ADMIN, PASSWORD);
    assert_eq!(s, 200, "{b}");
    let token = session_token(&h);
    let (s, _) = call(with_cookie(node.anon("GET", "/"), &token));
    assert_eq!(s, 200);
    let (s, _) = node.get("/");
    assert_eq!(s, 200);
    // ..._except_for_up lets load balancers in.
    set_config_in_memory(&node, "chttpd", "require_valid_user", "false");
    set_config_in_memory(&node, "chttpd", "require_valid_user_except_for_up", "true");
    let (s, b) = call(node.anon("GET", "/_up"));
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(node.anon("GET", "/"));
    assert_eq!(s, 401);
    assert_eq!(b["reason"], "Authentication required.");
}

// ---------------------------------------------------------------------------
// Cookie sessions
// ---------------------------------------------------------------------------

#[test]
fn session_login_json_sets_cookie() {
    let node = Node::start();
    let before = now_secs();
    let (s, h, b) = login(&node, ADMIN, PASSWORD);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"ok": true, "name": ADMIN, "roles": ["_admin"]}));
    let cookie = header(&h, "set-cookie").expect("set-cookie");
    let attrs: Vec<&str> = cookie.split("; ").collect();
    assert!(attrs[0].starts_with("AuthSession="), "{cookie}");
    assert_eq!(attrs[1], "Version=1", "{cookie}");
    assert!(attrs.contains(&"Path=/"), "{cookie}");
    assert!(attrs.contains(&"HttpOnly"), "{cookie}");
    assert!(attrs.contains(&"Max-Age=600"), "{cookie}");
    assert!(
        attrs
            .iter()
            .any(|a| a.starts_with("Expires=") && a.ends_with(" GMT")),
        "{cookie}"
    );
    assert!(
        !attrs
            .iter()
            .any(|a| a.starts_with("Domain=") || a.starts_with("SameSite=") || *a == "Secure"),
        "{cookie}"
    );
    // Token: base64url(name ":" HEXTIME ":" mac).
    let token = session_token(&h);
    let raw = URL_SAFE_NO_PAD.decode(&token).expect("base64url token");
    let mut parts = raw.splitn(3, |&b| b == b':');
    assert_eq!(parts.next().unwrap(), ADMIN.as_bytes());
    let time = std::str::from_utf8(parts.next().unwrap()).unwrap();
    assert!(
        time.bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "{time}"
    );
    let t = u64::from_str_radix(time, 16).unwrap();
    assert!(t >= before && t <= now_secs() + 1, "{t}");
    assert_eq!(parts.next().unwrap().len(), 32, "HMAC-SHA256 by default");
}

#[test]
fn session_login_form_encoded() {
    let node = Node::start();
    let (s, h, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("name={ADMIN}&password={PASSWORD}")),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"ok": true, "name": ADMIN, "roles": ["_admin"]}));
    let token = session_token(&h);
    let (s, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["name"], ADMIN);
    // `username` is accepted instead of `name`.
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/json")
            .body(json!({"username": ADMIN, "password": PASSWORD}).to_string()),
    );
    assert_eq!(s, 200, "{b}");
}

#[test]
fn session_cookie_authenticates_later_requests() {
    let node = Node::start();
    let (_, h, _) = login(&node, ADMIN, PASSWORD);
    let token = session_token(&h);
    let (s, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({
            "ok": true,
            "userCtx": {"name": ADMIN, "roles": ["_admin"]},
            "info": {
                "authentication_handlers": ["cookie", "default"],
                "authenticated": "cookie"
            }
        })
    );
    let (s, b) = call(with_cookie(node.anon("GET", "/_all_dbs"), &token));
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(with_cookie(node.anon("PUT", "/made-by-cookie"), &token));
    assert_eq!(s, 201, "{b}");
    // Other cookies around it do not matter.
    let (s, b) = call(
        node.anon("GET", "/_session")
            .header("cookie", format!("a=b; AuthSession={token}; c=d")),
    );
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["name"], ADMIN);
}

#[test]
fn session_cookie_invalid_cases() {
    let node = Node::start();
    let (_, h, _) = login(&node, ADMIN, PASSWORD);
    let token = session_token(&h);
    // A forged signature is ignored: the request is anonymous.
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let forged = URL_SAFE_NO_PAD.encode(&raw);
    let (s, b) = call(with_cookie(node.anon("GET", "/_session"), &forged));
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"], json!({"name": null, "roles": []}));
    let (s, b) = call(with_cookie(node.anon("GET", "/_all_dbs"), &forged));
    assert_eq!((s, b), (401, not_admin()));
    // A token that is not even `name:time:mac` is a 400.
    let garbage = URL_SAFE_NO_PAD.encode("no colons here");
    let (s, b) = call(with_cookie(node.anon("GET", "/_session"), &garbage));
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "Malformed AuthSession cookie. Please clear your cookies."})
    );
    // An empty cookie is no cookie.
    let (s, b) = call(
        node.anon("GET", "/_session")
            .header("cookie", "AuthSession="),
    );
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["name"], Value::Null);
}

#[test]
fn session_cookie_dies_with_password_change() {
    let node = Node::start();
    create_user(&node, "dora", "first", &[]);
    let (s, h, _) = login(&node, "dora", "first");
    assert_eq!(s, 200);
    let token = session_token(&h);
    let (_, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(b["userCtx"]["name"], "dora");
    let (_, doc) = node.get("/_users/org.couchdb.user:dora");
    let (s, b) = node.put(
        "/_users/org.couchdb.user:dora",
        json!({"_rev": doc["_rev"], "name": "dora", "type": "user", "roles": [], "password": "second"}),
    );
    assert_eq!(s, 201, "{b}");
    let (_, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(
        b["userCtx"]["name"],
        Value::Null,
        "new salt, old cookie invalid"
    );
    let (s, _, _) = login(&node, "dora", "first");
    assert_eq!(s, 401);
    let (s, _, _) = login(&node, "dora", "second");
    assert_eq!(s, 200);
}

#[test]
fn session_login_wrong_credentials() {
    let node = Node::start();
    for (n, p) in [(ADMIN, "nope"), ("ghost", "x")] {
        let (s, h, b) = login(&node, n, p);
        assert_eq!(s, 401, "{n}");
        assert_eq!(b, bad_credentials());
        // The session cookie is cleared.
        let c = header(&h, "set-cookie").expect("set-cookie");
        assert!(c.starts_with("AuthSession=;"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
    }
    // No password at all: still a 401.
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/json")
            .body(json!({"name": ADMIN}).to_string()),
    );
    assert_eq!((s, b), (401, bad_credentials()));
    // ?fail= redirects on failure.
    let (s, h, _) = call_with_headers(
        no_redirect(&node, "POST", "/_session?fail=/failed")
            .header("content-type", "application/json")
            .body(json!({"name": ADMIN, "password": "nope"}).to_string()),
    );
    assert_eq!(s, 302);
    assert_eq!(
        header(&h, "location"),
        Some(format!("http://127.0.0.1:{}/failed", node.port))
    );
}

#[test]
fn session_login_bad_requests() {
    let node = Node::start();
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/json")
            .body(json!({"password": "x"}).to_string()),
    );
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "request body must contain a username"})
    );
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/json")
            .body(json!({"name": "a", "username": "b", "password": "x"}).to_string()),
    );
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "request body contains different usernames"})
    );
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "text/plain")
            .body("name=admin&password=s3cret"),
    );
    assert_eq!(s, 415);
    assert_eq!(
        b,
        json!({"error": "bad_content_type", "reason": "Content-Type must be 'application/x-www-form-urlencoded' or 'application/json'"})
    );
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session")
            .header("content-type", "application/json")
            .body("{not json"),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "bad_request");
    let (s, h, b) = call_with_headers(node.anon("PUT", "/_session"));
    assert_eq!(s, 405);
    assert_eq!(
        b,
        json!({"error": "method_not_allowed", "reason": "Only GET,HEAD,POST,DELETE allowed"})
    );
    assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD,POST,DELETE"));
}

#[test]
fn session_next_redirects() {
    let node = Node::start();
    let (s, h, b) = call_with_headers(
        no_redirect(&node, "POST", "/_session?next=/_utils/index.html")
            .header("content-type", "application/json")
            .body(json!({"name": ADMIN, "password": PASSWORD}).to_string()),
    );
    assert_eq!(s, 302);
    assert_eq!(
        header(&h, "location"),
        Some(format!("http://127.0.0.1:{}/_utils/index.html", node.port))
    );
    assert_eq!(b, json!({"ok": true, "name": ADMIN, "roles": ["_admin"]}));
    let token = session_token(&h);
    let (_, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(b["userCtx"]["name"], ADMIN);
    // Logout honours ?next= too.
    let (s, h, b) = call_with_headers(with_cookie(
        no_redirect(&node, "DELETE", "/_session?next=/bye"),
        &token,
    ));
    assert_eq!(s, 302);
    assert_eq!(
        header(&h, "location"),
        Some(format!("http://127.0.0.1:{}/bye", node.port))
    );
    assert_eq!(b, json!({"ok": true}));
    // Only local paths.
    let (s, _, b) = call_with_headers(
        node.anon("POST", "/_session?next=http://evil.example/")
            .header("content-type", "application/json")
            .body(json!({"name": ADMIN, "password": PASSWORD}).to_string()),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "path must begin with a /."})
    );
}

#[test]
fn session_logout_clears_cookie() {
    let node = Node::start();
    let (_, h, _) = login(&node, ADMIN, PASSWORD);
    let token = session_token(&h);
    let (s, h, b) = call_with_headers(with_cookie(node.anon("DELETE", "/_session"), &token));
    assert_eq!(s, 200);
    assert_eq!(b, json!({"ok": true}));
    let c = header(&h, "set-cookie").expect("set-cookie");
    assert!(c.starts_with("AuthSession=; Version=1"), "{c}");
    assert!(c.contains("Path=/") && c.contains("HttpOnly"), "{c}");
    // The cleared cookie the browser now sends means anonymous.
    let (_, b) = call(
        node.anon("GET", "/_session")
            .header("cookie", "AuthSession="),
    );
    assert_eq!(b["userCtx"]["name"], Value::Null);
}

#[test]
fn session_basic_true_forces_login() {
    let node = Node::start();
    let (s, b) = call(node.anon("GET", "/_session?basic=true"));
    assert_eq!(s, 401);
    assert_eq!(
        b,
        json!({"error": "unauthorized", "reason": "Please login."})
    );
    let (s, b) = node.get("/_session?basic=true");
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["name"], ADMIN);
}

#[test]
fn session_cookie_attributes_follow_config() {
    let node = Node::start();
    set_config_in_memory(&node, "chttpd_auth", "timeout", "1234");
    set_config_in_memory(&node, "chttpd_auth", "cookie_domain", "example.com");
    set_config_in_memory(&node, "chttpd_auth", "same_site", "strict");
    let (s, h, _) = login(&node, ADMIN, PASSWORD);
    assert_eq!(s, 200);
    let cookie = header(&h, "set-cookie").unwrap();
    let attrs: Vec<&str> = cookie.split("; ").collect();
    assert!(attrs.contains(&"Max-Age=1234"), "{cookie}");
    assert!(attrs.contains(&"Domain=example.com"), "{cookie}");
    assert!(attrs.contains(&"SameSite=Strict"), "{cookie}");
    set_config_in_memory(&node, "chttpd_auth", "allow_persistent_cookies", "false");
    let (_, h, _) = login(&node, ADMIN, PASSWORD);
    let cookie = header(&h, "set-cookie").unwrap();
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    // Logout clears with the same attributes.
    let (_, h, _) = call_with_headers(node.anon("DELETE", "/_session"));
    let cookie = header(&h, "set-cookie").unwrap();
    assert!(cookie.contains("Domain=example.com"), "{cookie}");
}

#[test]
fn session_cookie_expires_after_timeout() {
    let node = Node::start();
    set_config_in_memory(&node, "chttpd_auth", "timeout", "1");
    let (_, h, _) = login(&node, ADMIN, PASSWORD);
    let token = session_token(&h);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (s, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(s, 200);
    assert_eq!(
        b["userCtx"]["name"],
        Value::Null,
        "expired cookie is ignored"
    );
}

#[test]
fn session_cookie_is_refreshed_when_ageing() {
    let node = Node::start();
    set_config_in_memory(&node, "chttpd_auth", "timeout", "10");
    let (_, h, _) = login(&node, ADMIN, PASSWORD);
    let token = session_token(&h);
    // Fresh: no new cookie.
    let (_, h, _) = call_with_headers(with_cookie(node.anon("GET", "/_session"), &token));
    assert!(header(&h, "set-cookie").is_none(), "{h:?}");
    // Once more than 10% of the lifetime is used, responses carry a new one.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (s, h, b) = call_with_headers(with_cookie(node.anon("GET", "/_all_dbs"), &token));
    assert_eq!(s, 200, "{b}");
    let fresh = session_token(&h);
    assert_ne!(fresh, token);
    let cookie = header(&h, "set-cookie").unwrap();
    assert!(
        cookie.contains("Max-Age=10") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let (_, b) = call(with_cookie(node.anon("GET", "/_session"), &fresh));
    assert_eq!(b["userCtx"]["name"], ADMIN);
}

// ---------------------------------------------------------------------------
// Server admins added at run time
// ---------------------------------------------------------------------------

#[test]
fn admin_added_through_config_can_log_in() {
    let node = Node::start();
    let (s, b) = call(
        node.req("PUT", "/_node/_local/_config/admins/root2")
            .header("content-type", "application/json")
            .body("\"pw2\""),
    );
    assert_eq!((s, b), (200, json!("")));
    let (s, b) = call(as_user(&node, "GET", "/_session", "root2", "pw2"));
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"], json!({"name": "root2", "roles": ["_admin"]}));
    let (s, _) = call(as_user(&node, "GET", "/_all_dbs", "root2", "pw2"));
    assert_eq!(s, 200);
    let (s, _, b) = login(&node, "root2", "pw2");
    assert_eq!(s, 200);
    assert_eq!(b["roles"], json!(["_admin"]));
    // Removing the admin ends it.
    let (s, _) = node.delete("/_node/_local/_config/admins/root2");
    assert_eq!(s, 200);
    let (s, b) = call(as_user(&node, "GET", "/_session", "root2", "pw2"));
    assert_eq!((s, b), (401, bad_credentials()));
}

// ---------------------------------------------------------------------------
// `_users` accounts
// ---------------------------------------------------------------------------

#[test]
fn user_doc_is_stored_hashed() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &["reader"]);
    let (s, doc) = node.get("/_users/org.couchdb.user:bob");
    assert_eq!(s, 200);
    assert!(doc.get("password").is_none(), "plaintext kept: {doc}");
    assert!(!doc.to_string().contains("bobpw"), "{doc}");
    assert_eq!(doc["password_scheme"], "pbkdf2");
    assert_eq!(doc["pbkdf2_prf"], "sha256");
    assert_eq!(
        doc["iterations"], 1000,
        "[chttpd_auth] iterations of test.ini"
    );
    let salt = doc["salt"].as_str().expect("salt");
    assert_eq!(salt.len(), 32, "{doc}");
    let dk = doc["derived_key"].as_str().expect("derived_key");
    assert_eq!(dk.len(), 64, "sha256 derived key in hex: {doc}");
    assert!(dk.bytes().all(|c| c.is_ascii_hexdigit()), "{doc}");
    assert_eq!(doc["name"], "bob");
    assert_eq!(doc["type"], "user");
    assert_eq!(doc["roles"], json!(["reader"]));
}

#[test]
fn user_can_log_in_basic_and_cookie() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &["reader", "writer"]);
    let (s, b) = call(as_user(&node, "GET", "/_session", "bob", "bobpw"));
    assert_eq!(s, 200);
    assert_eq!(
        b["userCtx"],
        json!({"name": "bob", "roles": ["reader", "writer"]})
    );
    assert_eq!(b["info"]["authenticated"], "default");
    let (s, b) = call(as_user(&node, "GET", "/_session", "bob", "wrong"));
    assert_eq!((s, b), (401, bad_credentials()));
    let (s, h, b) = login(&node, "bob", "bobpw");
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({"ok": true, "name": "bob", "roles": ["reader", "writer"]})
    );
    let token = session_token(&h);
    let (_, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(b["userCtx"]["name"], "bob");
    assert_eq!(b["info"]["authenticated"], "cookie");
    // A deleted user can no longer log in.
    let (_, doc) = node.get("/_users/org.couchdb.user:bob");
    let rev = doc["_rev"].as_str().unwrap();
    let (s, _) = node.delete(&format!("/_users/org.couchdb.user:bob?rev={rev}"));
    assert_eq!(s, 200);
    let (s, b) = call(as_user(&node, "GET", "/_session", "bob", "bobpw"));
    assert_eq!((s, b), (401, bad_credentials()));
    let (_, b) = call(with_cookie(node.anon("GET", "/_session"), &token));
    assert_eq!(b["userCtx"]["name"], Value::Null);
}

fn forbidden(reason: &str) -> Value {
    json!({"error": "forbidden", "reason": reason})
}

fn missing() -> Value {
    json!({"error": "not_found", "reason": "missing"})
}

#[test]
fn user_docs_are_validated_as_couchdb_auth_design_doc_does() {
    let node = Node::start();
    let put = |id: &str, doc: Value| node.put(&format!("/_users/org.couchdb.user:{id}"), doc);
    let refused = [
        ("x", json!({"name": "x", "roles": []}), "doc.type must be user"),
        ("x", json!({"type": "user", "roles": []}), "doc.name is required"),
        ("x", json!({"name": "x", "type": "user"}), "doc.roles must exist"),
        ("x", json!({"name": "x", "type": "user", "roles": "r"}), "doc.roles must be an array"),
        ("x", json!({"name": "x", "type": "user", "roles": [1]}), "doc.roles can only contain strings"),
        ("x", json!({"name": "y", "type": "user", "roles": []}), "Doc ID must be of the form org.couchdb.user:name"),
        ("x", json!({"name": "x", "type": "user", "roles": [], "password_sha": "ab"}),
            "Users with password_sha must have a salt.See /_utils/script/couch.js for example code."),
        ("x", json!({"name": "x", "type": "user", "roles": [], "password_scheme": "md5"}),
            "Password scheme `md5` not supported."),
        ("x", json!({"name": "x", "type": "user", "roles": [], "password_scheme": "pbkdf2", "derived_key": "00"}),
            "iterations must be a number."),
        ("x", json!({"name": "x", "type": "user", "roles": ["_admin"]}),
            "No system roles (starting with underscore) in users db."),
        ("_x", json!({"name": "_x", "type": "user", "roles": []}), "Username may not start with underscore."),
        ("a:b", json!({"name": "a:b", "type": "user", "roles": []}), "Character `:` is not allowed in usernames."),
    ];
    for (id, doc, reason) in refused {
        assert_eq!(put(id, doc.clone()), (403, forbidden(reason)), "{doc}");
    }
    // Even a server admin's write is validated; `_metrics` is the one system role
    // a user may hold; a hashed password passes the pbkdf2 checks.
    let (s, b) = put(
        "m",
        json!({"name": "m", "type": "user", "roles": ["_metrics"], "password": "p"}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = node.post(
        "/_users",
        json!({"_id": "org.couchdb.user:p", "name": "p", "roles": []}),
    );
    assert_eq!((s, b), (403, forbidden("doc.type must be user")));
    // _bulk_docs refuses the bad document alone.
    let (s, b) = node.post(
        "/_users/_bulk_docs",
        json!({"docs": [
            {"_id": "org.couchdb.user:ok", "name": "ok", "type": "user", "roles": [], "password": "p"},
            {"_id": "org.couchdb.user:bad", "name": "bad", "type": "admin", "roles": []},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b[0]["ok"], true, "{b}");
    assert_eq!(
        b[1],
        json!({"id": "org.couchdb.user:bad", "error": "forbidden", "reason": "doc.type must be user"})
    );
}

#[test]
fn open_users_db_lets_users_sign_up_and_keep_to_their_own_doc() {
    let node = Node::start();
    create_user(&node, "ann", "annpw", &["staff"]);
    // By default (CouchDB 3) only admins reach `_users`; an admin may open it.
    let (s, _) = call(node.anon("GET", "/_users/org.couchdb.user:sam"));
    assert_eq!(s, 401);
    set_config(&node, "couchdb", "users_db_security_editable", "true");
    let (s, b) = node.put(
        "/_users/_security",
        json!({"members": {"names": [], "roles": []}, "admins": {"names": [], "roles": []}}),
    );
    assert_eq!(s, 200, "{b}");
    let sam = "/_users/org.couchdb.user:sam";
    let signup = |doc: Value| call(node.anon("PUT", sam).json(&doc));

    // Anonymous sign-up, without roles.
    let (s, b) =
        signup(json!({"name": "sam", "type": "user", "roles": ["boss"], "password": "sampw"}));
    assert_eq!((s, b), (403, forbidden("Only _admin may set roles")));
    let (s, b) = signup(json!({"name": "sam", "type": "user", "roles": [], "password": "sampw"}));
    assert_eq!(s, 201, "{b}");
    let rev = b["rev"].as_str().unwrap().to_string();
    // An anonymous client cannot take the account over, nor read it.
    let (s, b) =
        signup(json!({"_rev": rev, "name": "sam", "type": "user", "roles": [], "password": "x"}));
    assert_eq!(
        (s, b),
        (
            403,
            forbidden("You may only update your own user document.")
        )
    );
    assert_eq!(call(node.anon("GET", sam)), (404, missing()));

    // Sam reads and updates their own document, but not its roles.
    let (s, doc) = call(as_user(&node, "GET", sam, "sam", "sampw"));
    assert_eq!(s, 200, "{doc}");
    let mut edit = doc.clone();
    edit["roles"] = json!(["staff"]);
    let (s, b) = call(as_user(&node, "PUT", sam, "sam", "sampw").json(&edit));
    assert_eq!((s, b), (403, forbidden("Only _admin may edit roles")));
    let mut edit = doc.clone();
    edit["password"] = json!("newpw");
    let (s, b) = call(as_user(&node, "PUT", sam, "sam", "sampw").json(&edit));
    assert_eq!(s, 201, "{b}");
    let (s, _) = call(as_user(&node, "GET", "/_session", "sam", "newpw"));
    assert_eq!(s, 200);

    // Other users' documents are hidden, and out of reach.
    let ann = "/_users/org.couchdb.user:ann";
    assert_eq!(
        call(as_user(&node, "GET", ann, "sam", "newpw")),
        (404, missing())
    );
    let (_, ann_doc) = node.get(ann);
    let (s, b) = call(as_user(&node, "PUT", ann, "sam", "newpw").json(&ann_doc));
    assert_eq!((s, b), (404, missing()));
    let del = format!("{ann}?rev={}", ann_doc["_rev"].as_str().unwrap());
    assert_eq!(
        call(as_user(&node, "DELETE", &del, "sam", "newpw")),
        (404, missing())
    );
    let wanted = json!({"docs": [{"id": "org.couchdb.user:sam"}, {"id": "org.couchdb.user:ann"}]});
    let (s, b) = call(as_user(&node, "POST", "/_users/_bulk_get", "sam", "newpw").json(&wanted));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["results"][0]["docs"][0]["ok"]["name"], "sam", "{b}");
    let refused = &b["results"][1]["docs"][0]["error"];
    assert_eq!(
        (&refused["error"], &refused["reason"]),
        (&json!("not_found"), &json!("missing")),
        "{b}"
    );
    let (s, b) = call(as_user(
        &node,
        "GET",
        "/_users/_design/_auth",
        "sam",
        "newpw",
    ));
    assert_eq!(
        (s, b),
        (
            403,
            forbidden("Only administrators can view design docs in the users database.")
        )
    );
    for listing in ["/_users/_all_docs", "/_users/_changes"] {
        let (s, b) = call(as_user(&node, "GET", listing, "sam", "newpw"));
        assert_eq!(
            (s, b),
            (
                401,
                json!({"error": "unauthorized", "reason": "You are not a server admin."})
            ),
            "{listing}"
        );
    }
    // Sam may delete their own account.
    let (_, doc) = call(as_user(&node, "GET", sam, "sam", "newpw"));
    let del = format!("{sam}?rev={}", doc["_rev"].as_str().unwrap());
    let (s, b) = call(as_user(&node, "DELETE", &del, "sam", "newpw"));
    assert_eq!(s, 200, "{b}");
}

#[test]
fn user_is_not_server_admin() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &[]);
    // Server-admin-only endpoints: 401 even for an authenticated user.
    let reqs: [(&str, &str); 6] = [
        ("GET", "/_all_dbs"),
        ("GET", "/_active_tasks"),
        ("GET", "/_membership"),
        ("GET", "/_node/_local/_config"),
        ("PUT", "/bobs-db"),
        ("GET", "/_foo"),
    ];
    for (m, path) in reqs {
        let (s, b) = call(as_user(&node, m, path, "bob", "bobpw"));
        assert_eq!((s, b), (401, not_admin()), "{m} {path}");
    }
}

#[test]
fn user_is_forbidden_on_admin_only_db() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &["reader"]);
    node.create_db("adminsonly");
    let (s, b) = node.put("/adminsonly/doc", json!({"v": 1}));
    assert_eq!(s, 201, "{b}");
    for (m, path) in [
        ("GET", "/adminsonly"),
        ("GET", "/adminsonly/doc"),
        ("GET", "/adminsonly/_all_docs"),
        ("PUT", "/adminsonly/doc2"),
    ] {
        let (s, b) = call(
            as_user(&node, m, path, "bob", "bobpw")
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_eq!(s, 403, "{m} {path}");
        assert_eq!(
            b,
            json!({"error": "forbidden", "reason": "You are not allowed to access this db."}),
            "{m} {path}"
        );
    }
}

#[test]
fn member_by_name_can_read_and_write() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &[]);
    create_user(&node, "eve", "evepw", &[]);
    node.create_db("shared");
    let (s, b) = node.put(
        "/shared/_security",
        json!({"admins": {"names": [], "roles": []}, "members": {"names": ["bob"], "roles": []}}),
    );
    assert_eq!((s, b), (200, json!({"ok": true})));
    let (s, b) = call(as_user(&node, "GET", "/shared", "bob", "bobpw"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["db_name"], "shared");
    let (s, b) = call(
        as_user(&node, "PUT", "/shared/note", "bob", "bobpw")
            .header("content-type", "application/json")
            .body(r#"{"text":"hi"}"#),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(as_user(&node, "GET", "/shared/note", "bob", "bobpw"));
    assert_eq!(s, 200);
    assert_eq!(b["text"], "hi");
    // Members cannot write design docs or the security object.
    let (s, b) = call(
        as_user(&node, "PUT", "/shared/_design/x", "bob", "bobpw")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!(s, 403, "{b}");
    assert_eq!(
        b,
        json!({"error": "forbidden", "reason": "You are not a db or server admin."})
    );
    let (s, _) = call(
        as_user(&node, "PUT", "/shared/_security", "bob", "bobpw")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!(s, 403);
    // Another user is still kept out; so is a cookie-less anonymous client.
    let (s, b) = call(as_user(&node, "GET", "/shared", "eve", "evepw"));
    assert_eq!(s, 403, "{b}");
    let (s, _) = call(node.anon("GET", "/shared/note"));
    assert_eq!(s, 401);
    // The session cookie carries the same rights.
    let (_, h, _) = login(&node, "bob", "bobpw");
    let token = session_token(&h);
    let (s, _) = call(with_cookie(node.anon("GET", "/shared/note"), &token));
    assert_eq!(s, 200);
}

#[test]
fn member_by_role_and_db_admin() {
    let node = Node::start();
    create_user(&node, "bob", "bobpw", &["team"]);
    create_user(&node, "carl", "carlpw", &["boss"]);
    node.create_db("teamdb");
    let (s, _) = node.put(
        "/teamdb/_security",
        json!({"admins": {"names": [], "roles": ["boss"]}, "members": {"names": [], "roles": ["team"]}}),
    );
    assert_eq!(s, 200);
    let (s, _) = call(as_user(&node, "GET", "/teamdb", "bob", "bobpw"));
    assert_eq!(s, 200);
    // A db admin (by role) may write design docs and read security.
    let (s, b) = call(
        as_user(&node, "PUT", "/teamdb/_design/app", "carl", "carlpw")
            .header("content-type", "application/json")
            .body(r#"{"views":{}}"#),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(as_user(&node, "GET", "/teamdb/_security", "carl", "carlpw"));
    assert_eq!(s, 200);
    assert_eq!(b["members"]["roles"], json!(["team"]));
    // But is no server admin.
    let (s, b) = call(as_user(&node, "DELETE", "/teamdb", "carl", "carlpw"));
    assert_eq!((s, b), (401, not_admin()));
}

#[test]
fn public_db_is_open_to_everyone() {
    let node = Node::start();
    node.create_db("open");
    let (s, _) = node.put("/open/_security", json!({}));
    assert_eq!(s, 200);
    let (s, b) = call(
        node.anon("PUT", "/open/anon-doc")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!(s, 201, "{b}");
    let (s, _) = call(node.anon("GET", "/open/anon-doc"));
    assert_eq!(s, 200);
}
