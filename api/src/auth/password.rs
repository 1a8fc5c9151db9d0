//! CouchDB-compatible password hashing and verification.
//!
//! Covers the two places CouchDB stores password hashes:
//!
//! * server admins in the `[admins]` config section, as a single string
//!   (`-pbkdf2:sha256-<derived_key>,<salt>,<iterations>`, the older
//!   `-pbkdf2-…` / `-pbkdf2:sha-…` SHA-1 forms, the other `:sha224` /
//!   `:sha384` / `:sha512` PRFs, and the legacy `-hashed-<sha1>,<salt>`);
//! * `_users` documents, as the `password_scheme` / `pbkdf2_prf` / `salt` /
//!   `iterations` / `derived_key` (or legacy `password_sha`) fields.
//!
//! Like CouchDB, the salt is a 32 character lowercase hex string and it is
//! fed to PBKDF2 / SHA-1 as the bytes of that string (not hex-decoded), and
//! derived keys are compared as lowercase hex strings.
//!
//! [`CredentialCache`] memoizes successful verifications so that the
//! deliberately slow PBKDF2 (600000 iterations by default) runs once per
//! credential instead of on every basic-auth request.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use sha2::{Sha224, Sha256, Sha384, Sha512};

/// Default PBKDF2 iteration count of CouchDB 3.5 (`[chttpd_auth] iterations`).
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// CouchDB's default `[chttpd_auth] max_iterations`; stored hashes claiming
/// more iterations than this are rejected instead of being computed.
pub const MAX_ITERATIONS: u64 = 1_000_000_000;

/// Iteration count CouchDB assumes for a `pbkdf2` user doc without `iterations`.
const USER_DOC_DEFAULT_ITERATIONS: u64 = 10_000;

/// A SHA-family hash function, used as PBKDF2 PRF and as cookie HMAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1 (CouchDB/Erlang name `sha`).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256 (the 3.4+ default).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Parses a CouchDB/Erlang hash name (`sha`, `sha224`, `sha256`, `sha384`,
    /// `sha512`; `sha1` is accepted as an alias of `sha`).
    pub fn from_name(name: &str) -> Option<HashAlg> {
        match name {
            "sha" | "sha1" => Some(HashAlg::Sha1),
            "sha224" => Some(HashAlg::Sha224),
            "sha256" => Some(HashAlg::Sha256),
            "sha384" => Some(HashAlg::Sha384),
            "sha512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The CouchDB/Erlang name of the algorithm (`sha` for SHA-1).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha",
            HashAlg::Sha224 => "sha224",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// Digest size in bytes (also the PBKDF2 derived key length CouchDB uses).
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
}

/// Raw HMAC of `msg` under `key` with the given hash function.
pub fn hmac_raw(alg: HashAlg, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail;
        // fall back to an empty MAC rather than panicking regardless.
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(msg);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match alg {
        HashAlg::Sha1 => run::<Hmac<Sha1>>(key, msg),
        HashAlg::Sha224 => run::<Hmac<Sha224>>(key, msg),
        HashAlg::Sha256 => run::<Hmac<Sha256>>(key, msg),
        HashAlg::Sha384 => run::<Hmac<Sha384>>(key, msg),
        HashAlg::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

/// PBKDF2-HMAC-`prf` of `password` and `salt` (the salt string's bytes) with
/// a key length equal to the digest size, as lowercase hex — exactly
/// `couch_passwords:pbkdf2/4`. `iterations` below 1 is treated as 1.
pub fn pbkdf2_hex(prf: HashAlg, password: &[u8], salt: &[u8], iterations: u32) -> String {
    let rounds = iterations.max(1);
    let mut out = vec![0u8; prf.output_len()];
    match prf {
        HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, rounds, &mut out),
        HashAlg::Sha224 => pbkdf2::pbkdf2_hmac::<Sha224>(password, salt, rounds, &mut out),
        HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out),
        HashAlg::Sha384 => pbkdf2::pbkdf2_hmac::<Sha384>(password, salt, rounds, &mut out),
        HashAlg::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out),
    }
    hex::encode(out)
}

/// Legacy `simple` scheme: lowercase hex of `sha1(password ++ salt)`.
pub fn simple_hash_hex(password: &[u8], salt: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(password);
    h.update(salt);
    hex::encode(h.finalize())
}

/// A fresh random salt: 16 random bytes as 32 lowercase hex characters
/// (the shape of `couch_uuids:random()`).
pub fn random_salt() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares two byte strings without short-circuiting on the first
/// difference (only the lengths leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Hashes a server admin password into the CouchDB 3.5 `[admins]` format
/// `-pbkdf2:sha256-<derived_key_hex>,<salt>,<iterations>` with a fresh salt.
/// `iterations` below 1 is treated as 1.
pub fn hash_admin_password(password: &str, iterations: u32) -> String {
    let iterations = iterations.max(1);
    let salt = random_salt();
    let key = pbkdf2_hex(
        HashAlg::Sha256,
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
    );
    format!("-pbkdf2:sha256-{key},{salt},{iterations}")
}

/// True if an `[admins]` value is already hashed (starts with `-pbkdf2` or
/// `-hashed-`) and must not be hashed again.
pub fn is_hashed(value: &str) -> bool {
    value.starts_with("-pbkdf2") || value.starts_with("-hashed-")
}

/// A parsed `[admins]` value.
enum AdminHash<'a> {
    Simple {
        hash: &'a str,
        salt: &'a str,
    },
    Pbkdf2 {
        prf: HashAlg,
        key: &'a str,
        salt: &'a str,
        iterations: u64,
    },
}

/// Splits like Erlang's `string:tokens(S, ",")` (empty tokens dropped).
fn tokens(s: &str) -> Vec<&str> {
    s.split(',').filter(|t| !t.is_empty()).collect()
}

fn parse_admin_hash(stored: &str) -> Option<AdminHash<'_>> {
    if let Some(rest) = stored.strip_prefix("-hashed-") {
        return match tokens(rest).as_slice() {
            [hash, salt] => Some(AdminHash::Simple { hash, salt }),
            _ => None,
        };
    }
    let (prf, rest) = if let Some(rest) = stored.strip_prefix("-pbkdf2-") {
        (HashAlg::Sha1, rest)
    } else {
        let rest = stored.strip_prefix("-pbkdf2:")?;
        let (name, rest) = rest.split_once('-')?;
        // CouchDB only knows `sha` here, not the `sha1` alias.
        if name == "sha1" {
            return None;
        }
        (HashAlg::from_name(name)?, rest)
    };
    match tokens(rest).as_slice() {
        [key, salt, iterations] => {
            let iterations: u64 = iterations.parse().ok()?;
            Some(AdminHash::Pbkdf2 {
                prf,
                key,
                salt,
                iterations,
            })
        }
        _ => None,
    }
}

fn check_pbkdf2(
    prf: HashAlg,
    password: &[u8],
    salt: &str,
    iterations: u64,
    expected: &str,
) -> bool {
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return false;
    }
    let Ok(iterations) = u32::try_from(iterations) else {
        return false;
    };
    let actual = pbkdf2_hex(prf, password, salt.as_bytes(), iterations);
    constant_time_eq(actual.as_bytes(), expected.as_bytes())
}

/// Verifies a clear-text password against an `[admins]` value in any format
/// CouchDB accepts (`-pbkdf2:<prf>-…`, `-pbkdf2-…`, `-hashed-…`).
/// Unknown or malformed values (including plain text) never match.
pub fn verify_admin_password(password: &str, stored: &str) -> bool {
    match parse_admin_hash(stored) {
        Some(AdminHash::Simple { hash, salt }) => {
            let actual = simple_hash_hex(password.as_bytes(), salt.as_bytes());
            constant_time_eq(actual.as_bytes(), hash.as_bytes())
        }
        Some(AdminHash::Pbkdf2 {
            prf,
            key,
            salt,
            iterations,
        }) => check_pbkdf2(prf, password.as_bytes(), salt, iterations, key),
        None => false,
    }
}

/// The salt of an `[admins]` value (used as the per-user part of the
/// `AuthSession` cookie MAC key), or `None` if the value is not a known hash.
pub fn salt_of(stored: &str) -> Option<String> {
    match parse_admin_hash(stored)? {
        AdminHash::Simple { salt, .. } | AdminHash::Pbkdf2 { salt, .. } => Some(salt.to_string()),
    }
}

/// Fields CouchDB strips from a user doc before writing fresh hash fields.
const PASSWORD_FIELDS: [&str; 8] = [
    "derived_key",
    "iterations",
    "password",
    "password_scheme",
    "password_sha",
    "preserve_salt",
    "pbkdf2_prf",
    "salt",
];

/// True if a `_users` doc has a `password` that is neither a string nor
/// `null`; CouchDB rejects such docs (403 `forbidden`).
pub fn user_doc_password_invalid(doc: &Map<String, Value>) -> bool {
    matches!(doc.get("password"), Some(v) if !v.is_string() && !v.is_null())
}

/// Replaces a clear-text `password` in a `_users` doc by CouchDB 3.5 hash
/// fields, as `couch_users_db:before_doc_update` does: the password-related
/// fields are removed and `password_scheme:"pbkdf2"`, `pbkdf2_prf:"sha256"`,
/// `salt`, `iterations` and `derived_key` are put first. The existing string
/// `salt` is kept when `preserve_salt` is `true`, otherwise a fresh one is
/// used. Returns true if the doc was changed; docs without a string
/// `password` are left untouched (see [`user_doc_password_invalid`]).
pub fn hash_user_doc_password(doc: &mut Map<String, Value>, iterations: u32) -> bool {
    let password = match doc.get("password") {
        Some(Value::String(p)) => p.clone(),
        _ => return false,
    };
    let iterations = iterations.max(1);
    let preserve = matches!(doc.get("preserve_salt"), Some(Value::Bool(true)));
    let salt = match doc.get("salt") {
        Some(Value::String(s)) if preserve => s.clone(),
        _ => random_salt(),
    };
    let derived_key = pbkdf2_hex(
        HashAlg::Sha256,
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
    );
    let old = std::mem::take(doc);
    doc.insert("password_scheme".into(), Value::from("pbkdf2"));
    doc.insert("pbkdf2_prf".into(), Value::from("sha256"));
    doc.insert("salt".into(), Value::from(salt));
    doc.insert("iterations".into(), Value::from(iterations));
    doc.insert("derived_key".into(), Value::from(derived_key));
    for (k, v) in old {
        if !PASSWORD_FIELDS.contains(&k.as_str()) {
            doc.insert(k, v);
        }
    }
    true
}

/// Verifies a clear-text password against a `_users` doc (or any JSON object
/// with the same credential fields), following `couch_httpd_auth`:
/// `password_scheme` missing = `simple` (`password_sha`); `pbkdf2` with
/// `pbkdf2_prf` missing = `sha` and `iterations` missing = 10000; also the
/// `simple+pbkdf2` upgrade scheme. Anything malformed never matches.
pub fn verify_user_doc_password(password: &str, doc: &Value) -> bool {
    let Some(obj) = doc.as_object() else {
        return false;
    };
    let salt = match obj.get("salt") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return false,
    };
    let scheme = match obj.get("password_scheme") {
        None => "simple",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return false,
    };
    match scheme {
        "simple" => {
            let Some(expected) = obj.get("password_sha").and_then(Value::as_str) else {
                return false;
            };
            let actual = simple_hash_hex(password.as_bytes(), salt.as_bytes());
            constant_time_eq(actual.as_bytes(), expected.as_bytes())
        }
        "pbkdf2" => verify_user_pbkdf2(password.as_bytes(), salt, obj),
        "simple+pbkdf2" => {
            let legacy = simple_hash_hex(password.as_bytes(), salt.as_bytes());
            verify_user_pbkdf2(legacy.as_bytes(), salt, obj)
        }
        _ => false,
    }
}

fn verify_user_pbkdf2(password: &[u8], salt: &str, obj: &Map<String, Value>) -> bool {
    let prf = match obj.get("pbkdf2_prf") {
        None => HashAlg::Sha1,
        Some(Value::String(name)) => match HashAlg::from_name(name) {
            Some(alg) => alg,
            None => return false,
        },
        Some(_) => return false,
    };
    let iterations = match obj.get("iterations") {
        None => USER_DOC_DEFAULT_ITERATIONS,
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => return false,
        },
    };
    let Some(expected) = obj.get("derived_key").and_then(Value::as_str) else {
        return false;
    };
    check_pbkdf2(prf, password, salt, iterations, expected)
}

/// True if a `_users` doc's hash differs from the current target
/// (`pbkdf2` / `sha256` / `iterations`) and should be re-hashed after a
/// successful login (`upgrade_hash_on_auth`, see `couch_password_hasher`).
pub fn user_doc_needs_upgrade(doc: &Value, iterations: u32) -> bool {
    let scheme = doc.get("password_scheme").and_then(Value::as_str);
    let prf = doc.get("pbkdf2_prf").and_then(Value::as_str);
    let iters = doc.get("iterations").and_then(Value::as_u64);
    !(scheme == Some("pbkdf2") && prf == Some("sha256") && iters == Some(u64::from(iterations)))
}

/// Default capacity of a [`CredentialCache`].
pub const DEFAULT_CACHE_ENTRIES: usize = 1024;

struct CacheInner {
    /// Credential digest -> last-use tick (for LRU eviction).
    entries: HashMap<[u8; 32], u64>,
    tick: u64,
}

/// A bounded, thread-safe memo of successful password verifications.
///
/// Entries are keyed by a keyed SHA-256 (HMAC with a random per-cache key) of
/// (name, stored hash, password), so a changed password hash or a different
/// password always misses, and no clear-text password is kept in memory.
/// Failures are never cached. When full, the least recently used entry is
/// evicted.
pub struct CredentialCache {
    inner: Mutex<CacheInner>,
    key: [u8; 32],
    max_entries: usize,
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_ENTRIES)
    }
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl CredentialCache {
    /// Creates a cache holding at most `max_entries` credentials
    /// (0 disables caching).
    pub fn new(max_entries: usize) -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        CredentialCache {
            inner: Mutex::new(CacheInner {
                entries: HashMap::new(),
                tick: 0,
            }),
            key,
            max_entries,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn digest(&self, name: &str, password: &str, stored: &str) -> [u8; 32] {
        let mut msg = Vec::with_capacity(24 + name.len() + password.len() + stored.len());
        for part in [name, stored, password] {
            msg.extend_from_slice(&(part.len() as u64).to_be_bytes());
            msg.extend_from_slice(part.as_bytes());
        }
        let mac = hmac_raw(HashAlg::Sha256, &self.key, &msg);
        let mut out = [0u8; 32];
        if mac.len() == out.len() {
            out.copy_from_slice(&mac);
        }
        out
    }

    /// Returns true if (`name`, `password`, `stored`) verified before;
    /// otherwise runs `verify` (the expensive check, executed without holding
    /// the lock) and remembers the result if it is a success.
    pub fn verify(
        &self,
        name: &str,
        password: &str,
        stored: &str,
        verify: impl FnOnce() -> bool,
    ) -> bool {
        if self.max_entries == 0 {
            return verify();
        }
        let digest = self.digest(name, password, stored);
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(last) = inner.entries.get_mut(&digest) {
                *last = tick;
                return true;
            }
        }
        if !verify() {
            return false;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if !inner.entries.contains_key(&digest) && inner.entries.len() >= self.max_entries {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, &t)| t)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(digest, tick);
        true
    }

    /// Forgets every cached credential.
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// Number of cached credentials.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::Cell;

    const IT: u32 = 10;

    #[test]
    fn admin_hash_format_and_verify() {
        let h = hash_admin_password("s3cret", IT);
        assert!(h.starts_with("-pbkdf2:sha256-"));
        let rest = &h["-pbkdf2:sha256-".len()..];
        let parts: Vec<&str> = rest.split(',').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 64);
        assert_eq!(parts[1].len(), 32);
        assert!(parts[1]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(parts[2], "10");
        assert!(is_hashed(&h));
        assert!(verify_admin_password("s3cret", &h));
        assert!(!verify_admin_password("s3cre", &h));
        assert_eq!(salt_of(&h).as_deref(), Some(parts[1]));
        // Fresh salt each time.
        assert_ne!(h, hash_admin_password("s3cret", IT));
    }

    #[test]
    fn pbkdf2_known_vector() {
        // RFC 6070 test vector (PBKDF2-HMAC-SHA1).
        assert_eq!(
            pbkdf2_hex(HashAlg::Sha1, b"password", b"salt", 2),
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"
        );
        // Well-known PBKDF2-HMAC-SHA256 vector.
        assert_eq!(
            pbkdf2_hex(HashAlg::Sha256, b"password", b"salt", 1),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
    }

    #[test]
    fn independent_vectors() {
        // Computed with Python's hashlib.
        let salt = "1f0e8b0c9d3e4a5b6c7d8e9f00112233";
        let k256 = "c9ce8c83a5bec026e5064480237be9d555cf028250cd982ea0b463021c814f65";
        assert!(verify_admin_password(
            "pw",
            &format!("-pbkdf2:sha256-{k256},{salt},10")
        ));
        let k512 = "70fe58803389838be0304df478eaa4ad95ad70b1174f0ab9fbe5431700e1c3a1\
                    802029b949615a8849b1e25b4bfbabd991f4f86fe1bebcd92197f0aceda8de65";
        assert!(verify_admin_password(
            "pw",
            &format!("-pbkdf2:sha512-{k512},{salt},3")
        ));
        let sha = "7f3e23e9cfd7a41bd67b10bc99e8dbd61bd60384";
        assert!(verify_admin_password(
            "pw",
            &format!("-hashed-{sha},{salt}")
        ));
        let doc = json!({"salt": salt, "password_sha": sha});
        assert!(verify_user_doc_password("pw", &doc));
        let doc = json!({"password_scheme": "pbkdf2", "pbkdf2_prf": "sha256", "salt": salt,
            "iterations": 10, "derived_key": k256});
        assert!(verify_user_doc_password("pw", &doc));
        // Uppercase hex is not what CouchDB stores, and it compares strings.
        assert!(!verify_admin_password(
            "pw",
            &format!("-pbkdf2:sha256-{},{salt},10", k256.to_uppercase())
        ));
    }

    #[test]
    fn legacy_admin_formats() {
        let salt = "1f0e8b0c9d3e4a5b6c7d8e9f00112233";
        let k1 = pbkdf2_hex(HashAlg::Sha1, b"pw", salt.as_bytes(), 10);
        assert!(verify_admin_password(
            "pw",
            &format!("-pbkdf2-{k1},{salt},10")
        ));
        assert!(verify_admin_password(
            "pw",
            &format!("-pbkdf2:sha-{k1},{salt},10")
        ));
        assert!(!verify_admin_password(
            "pw",
            &format!("-pbkdf2:sha1-{k1},{salt},10")
        ));
        assert!(!verify_admin_password(
            "px",
            &format!("-pbkdf2-{k1},{salt},10")
        ));
        for alg in [HashAlg::Sha224, HashAlg::Sha384, HashAlg::Sha512] {
            let k = pbkdf2_hex(alg, b"pw", salt.as_bytes(), 3);
            let stored = format!("-pbkdf2:{}-{k},{salt},3", alg.name());
            assert!(verify_admin_password("pw", &stored), "{stored}");
            assert!(!verify_admin_password("pw2", &stored));
            assert_eq!(salt_of(&stored).as_deref(), Some(salt));
        }
        let sha = simple_hash_hex(b"pw", salt.as_bytes());
        let stored = format!("-hashed-{sha},{salt}");
        assert!(verify_admin_password("pw", &stored));
        assert!(!verify_admin_password("p", &stored));
        assert_eq!(salt_of(&stored).as_deref(), Some(salt));
    }

    #[test]
    fn couchdb_documented_hashed_admin() {
        // From the CouchDB docs: "-hashed-6d3c…,7f4a…" is not tied to a known
        // password; just make sure parsing/compare don't misbehave.
        let stored =
            "-hashed-6d3c30241ba0aaa4e16c6ea99224f915687ed8cd,7f4a3e05e0cbc6f48a0035e3508eef90";
        assert!(!verify_admin_password("anything", stored));
        assert_eq!(
            salt_of(stored).as_deref(),
            Some("7f4a3e05e0cbc6f48a0035e3508eef90")
        );
    }

    #[test]
    fn garbage_never_matches_or_panics() {
        for s in [
            "",
            "plain",
            "-pbkdf2",
            "-pbkdf2-",
            "-pbkdf2-a,b",
            "-pbkdf2-a,b,c",
            "-pbkdf2-a,b,0",
            "-pbkdf2-a,b,-5",
            "-pbkdf2-a,b,99999999999999999999999",
            "-pbkdf2-a,b,2000000000",
            "-pbkdf2:md5-a,b,1",
            "-pbkdf2:sha256",
            "-pbkdf2:sha256-a,b,1,2",
            "-hashed-",
            "-hashed-abc",
            "-hashed-a,b,c",
            "-pbkdf2:-a,b,1",
            "\u{1F600}",
        ] {
            assert!(!verify_admin_password("", s), "{s}");
            assert!(!verify_admin_password("x", s), "{s}");
        }
        assert_eq!(salt_of("plain"), None);
        assert!(!is_hashed("plain"));
        assert!(is_hashed("-hashed-x"));
    }

    #[test]
    fn user_doc_hashing() {
        let mut doc = json!({
            "_id": "org.couchdb.user:bob",
            "name": "bob",
            "type": "user",
            "roles": [],
            "password": "pw",
            "password_sha": "old",
            "salt": "keepme"
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        assert!(hash_user_doc_password(&mut doc, IT));
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "password_scheme",
                "pbkdf2_prf",
                "salt",
                "iterations",
                "derived_key",
                "_id",
                "name",
                "type",
                "roles"
            ]
        );
        assert_eq!(doc["password_scheme"], "pbkdf2");
        assert_eq!(doc["pbkdf2_prf"], "sha256");
        assert_eq!(doc["iterations"], 10);
        let salt = doc["salt"].as_str().unwrap_or_default().to_string();
        assert_eq!(salt.len(), 32);
        assert_ne!(salt, "keepme");
        assert_eq!(doc["derived_key"].as_str().map(str::len), Some(64));
        let v = Value::Object(doc.clone());
        assert!(verify_user_doc_password("pw", &v));
        assert!(!verify_user_doc_password("pw ", &v));
        assert!(user_doc_needs_upgrade(&v, 600_000));
        assert!(!user_doc_needs_upgrade(&v, IT));

        // No password: untouched.
        let before = doc.clone();
        assert!(!hash_user_doc_password(&mut doc, IT));
        assert_eq!(doc, before);
    }

    #[test]
    fn user_doc_preserve_salt() {
        let mut doc = json!({"name": "a", "password": "pw", "salt": "abc", "preserve_salt": true})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(hash_user_doc_password(&mut doc, IT));
        assert_eq!(doc["salt"], "abc");
        assert!(doc.get("preserve_salt").is_none());
        assert!(verify_user_doc_password("pw", &Value::Object(doc)));

        // preserve_salt without salt: fresh salt.
        let mut doc = json!({"password": "pw", "preserve_salt": true})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(hash_user_doc_password(&mut doc, IT));
        assert_eq!(doc["salt"].as_str().map(str::len), Some(32));
    }

    #[test]
    fn user_doc_invalid_password() {
        let doc = json!({"password": 5})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(user_doc_password_invalid(&doc));
        let doc = json!({"password": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(!user_doc_password_invalid(&doc));
        let mut doc2 = doc.clone();
        assert!(!hash_user_doc_password(&mut doc2, IT));
    }

    #[test]
    fn user_doc_legacy_schemes() {
        let salt = "abcdef";
        // 3.0-3.3 style: pbkdf2 without prf = sha1.
        let k = pbkdf2_hex(HashAlg::Sha1, b"pw", salt.as_bytes(), 10);
        let doc =
            json!({"password_scheme": "pbkdf2", "salt": salt, "iterations": 10, "derived_key": k});
        assert!(verify_user_doc_password("pw", &doc));
        assert!(!verify_user_doc_password("pw2", &doc));
        for alg in [
            HashAlg::Sha1,
            HashAlg::Sha224,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            let k = pbkdf2_hex(alg, b"pw", salt.as_bytes(), 4);
            let doc = json!({"password_scheme": "pbkdf2", "pbkdf2_prf": alg.name(),
                "salt": salt, "iterations": 4, "derived_key": k});
            assert!(verify_user_doc_password("pw", &doc));
        }
        // simple scheme (also the default when password_scheme is missing).
        let sha = simple_hash_hex(b"pw", salt.as_bytes());
        let doc = json!({"password_scheme": "simple", "salt": salt, "password_sha": sha});
        assert!(verify_user_doc_password("pw", &doc));
        let doc = json!({"salt": salt, "password_sha": sha});
        assert!(verify_user_doc_password("pw", &doc));
        assert!(!verify_user_doc_password("nope", &doc));
        // simple+pbkdf2.
        let k = pbkdf2_hex(HashAlg::Sha256, sha.as_bytes(), salt.as_bytes(), 3);
        let doc = json!({"password_scheme": "simple+pbkdf2", "pbkdf2_prf": "sha256",
            "salt": salt, "iterations": 3, "derived_key": k});
        assert!(verify_user_doc_password("pw", &doc));
    }

    #[test]
    fn user_doc_garbage() {
        for doc in [
            json!(null),
            json!([]),
            json!({}),
            json!({"password_scheme": "pbkdf2"}),
            json!({"password_scheme": "pbkdf2", "derived_key": "x", "iterations": 0}),
            json!({"password_scheme": "pbkdf2", "derived_key": "x", "iterations": -1}),
            json!({"password_scheme": "pbkdf2", "derived_key": "x", "iterations": 1.5}),
            json!({"password_scheme": "pbkdf2", "derived_key": "x", "iterations": 1, "pbkdf2_prf": "md5"}),
            json!({"password_scheme": "pbkdf2", "derived_key": 3, "iterations": 1}),
            json!({"password_scheme": "bcrypt"}),
            json!({"password_scheme": 1}),
            json!({"salt": 1, "password_sha": "x"}),
        ] {
            assert!(!verify_user_doc_password("", &doc), "{doc}");
        }
    }

    #[test]
    fn cache_memoizes_successes_only() {
        let cache = CredentialCache::new(2);
        let calls = Cell::new(0);
        let ok = || {
            calls.set(calls.get() + 1);
            true
        };
        assert!(cache.verify("bob", "pw", "H1", ok));
        assert!(cache.verify("bob", "pw", "H1", ok));
        assert_eq!(calls.get(), 1);
        // Different password / stored hash / name miss.
        assert!(cache.verify("bob", "pw2", "H1", ok));
        assert_eq!(calls.get(), 2);
        let fail = || {
            calls.set(calls.get() + 1);
            false
        };
        assert!(!cache.verify("bob", "pw3", "H1", fail));
        assert!(!cache.verify("bob", "pw3", "H1", fail));
        assert_eq!(calls.get(), 4);
        assert_eq!(cache.len(), 2);
        // Touch ("bob","pw") so ("bob","pw2") is the LRU victim.
        assert!(cache.verify("bob", "pw", "H1", ok));
        assert_eq!(calls.get(), 4);
        assert!(cache.verify("bob", "pw", "H2", ok));
        assert_eq!(calls.get(), 5);
        assert_eq!(cache.len(), 2);
        assert!(cache.verify("bob", "pw", "H1", ok));
        assert_eq!(calls.get(), 5);
        assert!(cache.verify("bob", "pw2", "H1", ok));
        assert_eq!(calls.get(), 6);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn cache_disabled_and_real_hash() {
        let cache = CredentialCache::new(0);
        let calls = Cell::new(0);
        for _ in 0..2 {
            assert!(cache.verify("a", "b", "c", || {
                calls.set(calls.get() + 1);
                true
            }));
        }
        assert_eq!(calls.get(), 2);

        let cache = CredentialCache::default();
        let stored = hash_admin_password("pw", IT);
        assert!(
            cache.verify("admin", "pw", &stored, || verify_admin_password(
                "pw", &stored
            ))
        );
        assert!(
            !cache.verify("admin", "px", &stored, || verify_admin_password(
                "px", &stored
            ))
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cache_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CredentialCache>();
    }
}
