//! CouchDB `AuthSession` cookie tokens (`couch_httpd_auth` / `couch_secrets`).
//!
//! A token is `base64url_nopad(Name ":" TimeHex ":" MAC)` where `TimeHex` is
//! the issue time in unix seconds as uppercase hex and `MAC` is the raw
//! `HMAC(alg, Secret ++ UserSalt, Name ":" TimeHex)`; `alg` is the first of
//! `[chttpd_auth] hash_algorithms` (default `sha256, sha`) when signing, and
//! any of them (picked by MAC length) when verifying.
//!
//! Parsing follows CouchDB: the decoded token is split at the first two
//! `':'` (so the name ends at the first `':'` and the MAC may contain any
//! byte), a structurally broken token is a 400 `bad_request`
//! ("Malformed AuthSession cookie. Please clear your cookies."), while an
//! unknown user, bad time, wrong MAC or expired token is silently ignored
//! (the request continues unauthenticated). A token is valid while
//! `now < time + timeout`, and should be re-issued once more than 10% of the
//! timeout has elapsed.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::auth::password::{constant_time_eq, hmac_raw, HashAlg};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "AuthSession";

/// Default `[chttpd_auth] timeout` in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Default `[chttpd_auth] hash_algorithms`: sign with SHA-256, accept SHA-1.
pub const DEFAULT_HASH_ALGORITHMS: [HashAlg; 2] = [HashAlg::Sha256, HashAlg::Sha1];

/// Decoder accepting base64url with or without `=` padding.
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A successfully verified session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The user name the token was issued to.
    pub name: String,
    /// Issue time (unix seconds).
    pub issued_at: u64,
    /// More than 10% of the timeout has elapsed: send a fresh cookie.
    pub needs_refresh: bool,
}

/// Why a session token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Not base64url or fewer than three `':'`-separated fields. CouchDB
    /// answers 400 `bad_request` with this message.
    #[error("Malformed AuthSession cookie. Please clear your cookies.")]
    Malformed,
    /// The time field is not a hex integer (CouchDB ignores the cookie).
    #[error("AuthSession cookie has an invalid timestamp")]
    BadTimestamp,
    /// The MAC matches no configured secret/algorithm (cookie ignored).
    #[error("AuthSession cookie signature does not match")]
    BadMac,
    /// `now >= issued_at + timeout` (cookie ignored).
    #[error("AuthSession cookie has expired")]
    Expired,
}

/// The three raw fields of a decoded token.
struct RawToken {
    name: String,
    time_str: String,
    time: u64,
    mac: Vec<u8>,
}

fn decode_raw(token: &str) -> Result<RawToken, CookieError> {
    let token = token.trim();
    let token = token
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(token);
    let bytes = LENIENT_URL_SAFE
        .decode(token)
        .map_err(|_| CookieError::Malformed)?;
    let mut parts = bytes.splitn(3, |&b| b == b':');
    let (Some(name), Some(time), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CookieError::Malformed);
    };
    let name = String::from_utf8(name.to_vec()).map_err(|_| CookieError::Malformed)?;
    let time_str = std::str::from_utf8(time).map_err(|_| CookieError::BadTimestamp)?;
    let time = parse_hex_time(time_str).ok_or(CookieError::BadTimestamp)?;
    Ok(RawToken {
        name,
        time_str: time_str.to_string(),
        time,
        mac: mac.to_vec(),
    })
}

/// Like Erlang's `list_to_integer(S, 16)` restricted to non-negative values
/// that fit in a u64 (an optional leading `+`, hex digits of either case).
fn parse_hex_time(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn mac_key(secret: &str, user_salt: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(secret.len() + user_salt.len());
    key.extend_from_slice(secret.as_bytes());
    key.extend_from_slice(user_salt.as_bytes());
    key
}

/// Creates a token for `name` issued at `now_secs`, signed with HMAC-SHA256
/// keyed by `secret ++ user_salt` (CouchDB's default `hash_algorithms`).
pub fn make_token(name: &str, secret: &str, user_salt: &str, now_secs: u64) -> String {
    make_token_with(HashAlg::Sha256, name, secret, user_salt, now_secs)
}

/// Like [`make_token`] with an explicit HMAC algorithm (the first entry of
/// `[chttpd_auth] hash_algorithms`, see [`parse_hash_algorithms`]).
pub fn make_token_with(
    alg: HashAlg,
    name: &str,
    secret: &str,
    user_salt: &str,
    now_secs: u64,
) -> String {
    let session = format!("{name}:{now_secs:X}");
    let mac = hmac_raw(alg, &mac_key(secret, user_salt), session.as_bytes());
    let mut raw = session.into_bytes();
    raw.push(b':');
    raw.extend_from_slice(&mac);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a token into (name, issue time) without checking the MAC, so the
/// caller can look up the user's salt first. `None` if malformed or the time
/// is unparsable; use [`parse_token`] to tell those apart.
pub fn decode_token(token: &str) -> Option<(String, u64)> {
    parse_token(token).ok()
}

/// Decodes a token into (name, issue time) without checking the MAC.
/// `Err(Malformed)` deserves a 400 as in CouchDB; `Err(BadTimestamp)` means
/// the cookie should just be ignored.
pub fn parse_token(token: &str) -> Result<(String, u64), CookieError> {
    decode_raw(token).map(|raw| (raw.name, raw.time))
}

/// Verifies a token against one secret with the default algorithms
/// (HMAC-SHA256 or HMAC-SHA1, chosen by MAC length), the user's salt, the
/// current time and `[chttpd_auth] timeout`.
pub fn verify_token(
    token: &str,
    secret: &str,
    user_salt: &str,
    now_secs: u64,
    timeout_secs: u64,
) -> Result<TokenInfo, CookieError> {
    verify_token_with(
        token,
        &[secret],
        &DEFAULT_HASH_ALGORITHMS,
        user_salt,
        now_secs,
        timeout_secs,
    )
}

/// Verifies a token accepting any of `secrets` (secret rotation) and any of
/// `algorithms` whose output size equals the MAC length, like
/// `couch_secrets:verify/3`. The MAC is checked before the expiry.
pub fn verify_token_with(
    token: &str,
    secrets: &[&str],
    algorithms: &[HashAlg],
    user_salt: &str,
    now_secs: u64,
    timeout_secs: u64,
) -> Result<TokenInfo, CookieError> {
    let raw = decode_raw(token)?;
    let message = format!("{}:{}", raw.name, raw.time_str);
    let mut ok = false;
    for secret in secrets {
        let key = mac_key(secret, user_salt);
        for &alg in algorithms {
            if alg.output_len() != raw.mac.len() {
                continue;
            }
            let expected = hmac_raw(alg, &key, message.as_bytes());
            // Evaluate every candidate (no early exit) like CouchDB's lists:any
            // over constant-time comparisons.
            ok |= constant_time_eq(&expected, &raw.mac);
        }
    }
    if !ok {
        return Err(CookieError::BadMac);
    }
    let issued = u128::from(raw.time);
    let timeout = u128::from(timeout_secs);
    let now = u128::from(now_secs);
    let expires = issued + timeout;
    if now >= expires {
        return Err(CookieError::Expired);
    }
    // CouchDB: TimeLeft < Timeout * 0.9.
    let time_left = expires - now;
    Ok(TokenInfo {
        name: raw.name,
        issued_at: raw.time,
        needs_refresh: time_left * 10 < timeout * 9,
    })
}

/// Parses `[chttpd_auth] hash_algorithms` (comma separated Erlang hash
/// names); unknown names are skipped and an empty result falls back to
/// `[sha256]`, as in `couch_util:get_config_hash_algorithms/0`.
pub fn parse_hash_algorithms(value: &str) -> Vec<HashAlg> {
    let algs: Vec<HashAlg> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|name| {
            let alg = HashAlg::from_name(name);
            if alg.is_none() || name == "sha1" {
                tracing::warn!(algorithm = name, "unsupported hash algorithm ignored");
                return None;
            }
            alg
        })
        .collect();
    if algs.is_empty() {
        vec![HashAlg::Sha256]
    } else {
        algs
    }
}

/// `SameSite` cookie attribute (`[chttpd_auth] same_site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=None`.
    None,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
}

impl SameSite {
    /// Parses the config value case-insensitively (`none`, `lax`, `strict`);
    /// anything else (including empty) means no attribute.
    pub fn parse(value: &str) -> Option<SameSite> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Some(SameSite::None),
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// Attributes of the `AuthSession` cookie (`couch_httpd_auth:cookie_attributes/1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieOptions {
    /// `Max-Age` (and `Expires`) in seconds: the timeout when
    /// `allow_persistent_cookies = true` (the default), else `None`.
    pub max_age: Option<u64>,
    /// Add `Secure` (request came over https).
    pub secure: bool,
    /// `[chttpd_auth] cookie_domain` (omitted when empty or unsafe).
    pub domain: Option<String>,
    /// `[chttpd_auth] same_site`.
    pub same_site: Option<SameSite>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A cookie attribute value must not break out of its attribute.
fn safe_attr(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ';' && c != ',' && c != '"')
}

/// `Set-Cookie` header value for a token, as CouchDB sends it:
/// `AuthSession=<token>; Version=1; Path=/; HttpOnly`, with
/// `; Expires=<date>; Max-Age=N` after `Version=1` when `max_age` is given.
pub fn set_cookie_header(token: &str, max_age: Option<u64>) -> String {
    let opts = CookieOptions {
        max_age,
        ..CookieOptions::default()
    };
    set_cookie_header_with(token, &opts, now_unix())
}

/// Full-control variant of [`set_cookie_header`]. Attribute order follows
/// mochiweb: `Version`, `Expires`, `Max-Age`, `Secure`, `Domain`, `Path`,
/// `HttpOnly`, `SameSite`; `Expires` is `now_secs + max_age` formatted as
/// `Wdy, DD-Mon-YYYY HH:MM:SS GMT`.
pub fn set_cookie_header_with(token: &str, opts: &CookieOptions, now_secs: u64) -> String {
    let mut s = format!("{COOKIE_NAME}={token}; Version=1");
    if let Some(age) = opts.max_age {
        s.push_str("; Expires=");
        s.push_str(&cookie_date(now_secs.saturating_add(age)));
        s.push_str("; Max-Age=");
        s.push_str(&age.to_string());
    }
    if opts.secure {
        s.push_str("; Secure");
    }
    if let Some(domain) = opts.domain.as_deref() {
        if safe_attr(domain) {
            s.push_str("; Domain=");
            s.push_str(domain);
        }
    }
    s.push_str("; Path=/; HttpOnly");
    if let Some(same_site) = opts.same_site {
        s.push_str("; SameSite=");
        s.push_str(same_site.as_str());
    }
    s
}

/// `Set-Cookie` header value for logout: `AuthSession=; Version=1; Path=/;
/// HttpOnly` — what CouchDB sends when `allow_persistent_cookies = false`.
/// The empty value is what invalidates the session.
pub fn clear_cookie_header() -> String {
    set_cookie_header_with("", &CookieOptions::default(), now_unix())
}

/// Logout header with the same attributes as the login cookie. Note that
/// CouchDB (`clear_auth_cookie/1`) really does send the configured
/// `Max-Age`/`Expires` here (not a date in the past): the cookie keeps an
/// empty value, which CouchDB treats as "no session".
pub fn clear_cookie_header_with(opts: &CookieOptions, now_secs: u64) -> String {
    set_cookie_header_with("", opts, now_secs)
}

/// Formats unix seconds as an RFC 2109 cookie date
/// (`Wdy, DD-Mon-YYYY HH:MM:SS GMT`), like mochiweb.
pub fn cookie_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[(days % 7) as usize];
    let month_name = MONTHS[(month.clamp(1, 12) - 1) as usize];
    format!(
        "{weekday}, {day:02}-{month_name}-{year:04} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31); Howard Hinnant's
/// `civil_from_days` for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "92de07df7e7a3fe14808cef90a7cc0d91";
    const SALT: &str = "1f0e8b0c9d3e4a5b6c7d8e9f00112233";
    const T: u64 = 1_700_000_000; // 0x6553F100

    #[test]
    fn token_layout() {
        let tok = make_token("bob", SECRET, SALT, T);
        assert!(!tok.contains('='));
        let raw = URL_SAFE_NO_PAD.decode(&tok).unwrap_or_default();
        assert!(raw.starts_with(b"bob:6553F100:"));
        let mac = &raw[b"bob:6553F100:".len()..];
        let mut key = SECRET.as_bytes().to_vec();
        key.extend_from_slice(SALT.as_bytes());
        assert_eq!(
            mac,
            hmac_raw(HashAlg::Sha256, &key, b"bob:6553F100").as_slice()
        );
        assert_eq!(decode_token(&tok), Some(("bob".to_string(), T)));
    }

    #[test]
    fn independent_vectors() {
        // Computed with Python's hmac/base64 modules.
        assert_eq!(
            make_token("bob", SECRET, SALT, T),
            "Ym9iOjY1NTNGMTAwOgjSPt6m8hbqV1SFmLqYcU-HZVUQ1H_RdaI8yaTkPU6M"
        );
        assert_eq!(
            make_token_with(HashAlg::Sha1, "bob", SECRET, SALT, T),
            "Ym9iOjY1NTNGMTAwOt1iEu0e5HWfMzlnE5qBWgTuTUlj"
        );
    }

    #[test]
    fn verify_roundtrip_and_refresh() {
        let tok = make_token("bob", SECRET, SALT, T);
        let info = verify_token(&tok, SECRET, SALT, T, 600);
        assert_eq!(
            info,
            Ok(TokenInfo {
                name: "bob".into(),
                issued_at: T,
                needs_refresh: false
            })
        );
        // 10% of 600 = 60 s: at exactly 60 s TimeLeft = 540 = 0.9 * 600 (no refresh).
        assert_eq!(
            verify_token(&tok, SECRET, SALT, T + 60, 600).map(|i| i.needs_refresh),
            Ok(false)
        );
        assert_eq!(
            verify_token(&tok, SECRET, SALT, T + 61, 600).map(|i| i.needs_refresh),
            Ok(true)
        );
        assert!(verify_token(&tok, SECRET, SALT, T + 599, 600).is_ok());
        assert_eq!(
            verify_token(&tok, SECRET, SALT, T + 600, 600),
            Err(CookieError::Expired)
        );
        // Token from the future is fine (CouchDB only checks the upper bound).
        assert_eq!(
            verify_token(&tok, SECRET, SALT, T - 100, 600).map(|i| i.needs_refresh),
            Ok(false)
        );
    }

    #[test]
    fn wrong_key_material() {
        let tok = make_token("bob", SECRET, SALT, T);
        assert_eq!(
            verify_token(&tok, "other", SALT, T, 600),
            Err(CookieError::BadMac)
        );
        assert_eq!(
            verify_token(&tok, SECRET, "othersalt", T, 600),
            Err(CookieError::BadMac)
        );
        // Rotation: any listed secret works.
        assert!(verify_token_with(
            &tok,
            &["old", SECRET],
            &DEFAULT_HASH_ALGORITHMS,
            SALT,
            T,
            600
        )
        .is_ok());
        // Tampered name.
        let raw = URL_SAFE_NO_PAD.decode(&tok).unwrap_or_default();
        let mut forged = b"eve".to_vec();
        forged.extend_from_slice(&raw[3..]);
        let forged = URL_SAFE_NO_PAD.encode(forged);
        assert_eq!(
            verify_token(&forged, SECRET, SALT, T, 600),
            Err(CookieError::BadMac)
        );
    }

    #[test]
    fn sha1_tokens_accepted() {
        let tok = make_token_with(HashAlg::Sha1, "bob", SECRET, SALT, T);
        assert!(verify_token(&tok, SECRET, SALT, T, 600).is_ok());
        // Not accepted when only sha256 is configured.
        assert_eq!(
            verify_token_with(&tok, &[SECRET], &[HashAlg::Sha256], SALT, T, 600),
            Err(CookieError::BadMac)
        );
        let tok = make_token_with(HashAlg::Sha512, "bob", SECRET, SALT, T);
        assert_eq!(
            verify_token(&tok, SECRET, SALT, T, 600),
            Err(CookieError::BadMac)
        );
        assert!(verify_token_with(&tok, &[SECRET], &[HashAlg::Sha512], SALT, T, 600).is_ok());
    }

    #[test]
    fn mac_with_colons_and_names() {
        // Whatever the MAC bytes are, parsing splits only at the first two ':'.
        for i in 0..200u64 {
            let tok = make_token("bob", SECRET, SALT, T + i);
            assert!(verify_token(&tok, SECRET, SALT, T + i, 600).is_ok());
        }
        // Hand-made MAC containing ':' bytes.
        let raw = b"al:65:\x3a\x3a:x".to_vec();
        let tok = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(parse_token(&tok), Ok(("al".to_string(), 0x65)));
        // Unicode names round-trip.
        let tok = make_token("jöhn", SECRET, SALT, T);
        assert_eq!(
            verify_token(&tok, SECRET, SALT, T, 600).map(|i| i.name),
            Ok("jöhn".into())
        );
        // A name with ':' is cut at the first ':' (as in CouchDB): MAC fails.
        let tok = make_token("a:b", SECRET, SALT, T);
        assert_eq!(parse_token(&tok), Ok(("a".to_string(), 0xB)));
        assert!(verify_token(&tok, SECRET, SALT, T, 600).is_err());
    }

    #[test]
    fn malformed_tokens() {
        assert_eq!(parse_token(""), Err(CookieError::Malformed));
        assert_eq!(parse_token("!!!"), Err(CookieError::Malformed));
        assert_eq!(
            parse_token(&URL_SAFE_NO_PAD.encode("bob")),
            Err(CookieError::Malformed)
        );
        assert_eq!(
            parse_token(&URL_SAFE_NO_PAD.encode("bob:12")),
            Err(CookieError::Malformed)
        );
        assert_eq!(
            parse_token(&URL_SAFE_NO_PAD.encode("bob:zz:mac")),
            Err(CookieError::BadTimestamp)
        );
        assert_eq!(
            parse_token(&URL_SAFE_NO_PAD.encode("bob::mac")),
            Err(CookieError::BadTimestamp)
        );
        assert_eq!(
            parse_token(&URL_SAFE_NO_PAD.encode("bob:FFFFFFFFFFFFFFFFFF:mac")),
            Err(CookieError::BadTimestamp)
        );
        assert_eq!(
            parse_token(&URL_SAFE_NO_PAD.encode(b"\xff:1:m")),
            Err(CookieError::Malformed)
        );
        assert_eq!(decode_token("%%%"), None);
        // Padding and lowercase hex are tolerated; quoted value too.
        let padded = base64::engine::general_purpose::URL_SAFE.encode("bob:6553f100:m");
        assert!(padded.ends_with('='));
        assert_eq!(parse_token(&padded), Ok(("bob".into(), T)));
        assert_eq!(
            parse_token(&format!("\"{}\"", URL_SAFE_NO_PAD.encode("bob:1:m"))),
            Ok(("bob".into(), 1))
        );
        assert_eq!(
            verify_token("", SECRET, SALT, T, 600),
            Err(CookieError::Malformed)
        );
        // Huge timeout doesn't overflow.
        let tok = make_token("bob", SECRET, SALT, u64::MAX);
        assert!(verify_token(&tok, SECRET, SALT, 0, u64::MAX).is_ok());
    }

    #[test]
    fn hash_algorithm_config() {
        assert_eq!(
            parse_hash_algorithms("sha256, sha"),
            vec![HashAlg::Sha256, HashAlg::Sha1]
        );
        assert_eq!(parse_hash_algorithms("sha512"), vec![HashAlg::Sha512]);
        assert_eq!(parse_hash_algorithms(""), vec![HashAlg::Sha256]);
        assert_eq!(parse_hash_algorithms("md4, bogus"), vec![HashAlg::Sha256]);
        assert_eq!(
            parse_hash_algorithms(" sha ,sha224,"),
            vec![HashAlg::Sha1, HashAlg::Sha224]
        );
    }

    #[test]
    fn cookie_headers() {
        assert_eq!(
            set_cookie_header_with("TOK", &CookieOptions::default(), T),
            "AuthSession=TOK; Version=1; Path=/; HttpOnly"
        );
        // mochiweb's own test vector: 2007-05-15 13:45:33 UTC + 86417 s.
        let when = 1_179_236_733;
        assert_eq!(cookie_date(when), "Tue, 15-May-2007 13:45:33 GMT");
        let opts = CookieOptions {
            max_age: Some(86_417),
            ..CookieOptions::default()
        };
        assert_eq!(
            set_cookie_header_with("TOK", &opts, when),
            "AuthSession=TOK; Version=1; Expires=Wed, 16-May-2007 13:45:50 GMT; Max-Age=86417; Path=/; HttpOnly"
        );
        let opts = CookieOptions {
            max_age: Some(600),
            secure: true,
            domain: Some("example.com".into()),
            same_site: SameSite::parse("LAX"),
        };
        assert_eq!(
            set_cookie_header_with("TOK", &opts, 0),
            "AuthSession=TOK; Version=1; Expires=Thu, 01-Jan-1970 00:10:00 GMT; Max-Age=600; Secure; Domain=example.com; Path=/; HttpOnly; SameSite=Lax"
        );
        let bad_domain = CookieOptions {
            domain: Some("x; HttpOnly=no".into()),
            ..CookieOptions::default()
        };
        assert_eq!(
            set_cookie_header_with("T", &bad_domain, 0),
            "AuthSession=T; Version=1; Path=/; HttpOnly"
        );
        assert_eq!(
            clear_cookie_header(),
            "AuthSession=; Version=1; Path=/; HttpOnly"
        );
        assert_eq!(
            clear_cookie_header_with(&opts, 0),
            "AuthSession=; Version=1; Expires=Thu, 01-Jan-1970 00:10:00 GMT; Max-Age=600; Secure; Domain=example.com; Path=/; HttpOnly; SameSite=Lax"
        );
        let live = set_cookie_header("TOK", Some(600));
        assert!(live.starts_with("AuthSession=TOK; Version=1; Expires="));
        assert!(live.ends_with(" GMT; Max-Age=600; Path=/; HttpOnly"));
        assert_eq!(
            set_cookie_header("TOK", None),
            "AuthSession=TOK; Version=1; Path=/; HttpOnly"
        );
        assert_eq!(SameSite::parse(""), None);
        assert_eq!(SameSite::parse("None"), Some(SameSite::None));
    }

    #[test]
    fn dates() {
        assert_eq!(cookie_date(0), "Thu, 01-Jan-1970 00:00:00 GMT");
        assert_eq!(cookie_date(951_782_400), "Tue, 29-Feb-2000 00:00:00 GMT");
        assert_eq!(cookie_date(1_709_251_199), "Thu, 29-Feb-2024 23:59:59 GMT");
        assert_eq!(cookie_date(4_102_444_800), "Fri, 01-Jan-2100 00:00:00 GMT");
        // No panic at the extreme.
        assert!(cookie_date(u64::MAX).ends_with(" GMT"));
    }
}
