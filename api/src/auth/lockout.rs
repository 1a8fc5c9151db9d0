//! Temporary lockout after repeated authentication failures
//! (`[chttpd_auth_lockout]`, CouchDB 3.4+ `couch_auth_lockout`).
//!
//! Failures are counted per (client address, user name, user salt); once a
//! count reaches `threshold` (default 5) every further attempt for that key is
//! refused with 403 while `mode = enforce` (the default), even with the right
//! password, until the entry is `max_lifetime` ms old (default 300000). A
//! successful login does not reset the count. `mode = warn` only logs, `off`
//! (or any other value) disables the tracking. At most `max_objects` keys
//! (default 10000) are remembered.

use crate::config_store::ConfigStore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The reason of the 403 for a locked-out account.
pub const LOCKOUT_MSG: &str =
    "Account is temporarily locked due to multiple authentication failures";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Warn,
    Enforce,
}

type Key = (IpAddr, String, String);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u64,
    since: Instant,
}

/// The failure counters.
#[derive(Debug, Default)]
pub struct Lockout {
    entries: Mutex<HashMap<Key, Entry>>,
}

fn mode(config: &ConfigStore) -> Mode {
    match config
        .get_or("chttpd_auth_lockout", "mode", "enforce")
        .trim()
    {
        "enforce" => Mode::Enforce,
        "warn" => Mode::Warn,
        _ => Mode::Off,
    }
}

fn max_lifetime(config: &ConfigStore) -> Duration {
    Duration::from_millis(config.get_parsed("chttpd_auth_lockout", "max_lifetime", 300_000u64))
}

impl Lockout {
    /// Whether attempts of `name` (keyed by `salt`) from `peer` are refused.
    /// Without a known peer nothing is tracked.
    pub fn is_locked_out(
        &self,
        config: &ConfigStore,
        peer: Option<IpAddr>,
        name: &str,
        salt: &str,
    ) -> bool {
        let Some(peer) = peer else { return false };
        let mode = mode(config);
        if mode == Mode::Off {
            return false;
        }
        let threshold = config.get_parsed("chttpd_auth_lockout", "threshold", 5u64);
        let lifetime = max_lifetime(config);
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let key = (peer, name.to_string(), salt.to_string());
        let Some(entry) = entries.get(&key).copied() else {
            return false;
        };
        if entry.since.elapsed() >= lifetime {
            entries.remove(&key);
            return false;
        }
        if entry.failures < threshold {
            return false;
        }
        match mode {
            Mode::Enforce => true,
            _ => {
                tracing::warn!(user = name, %peer, "authentication failure threshold reached");
                false
            }
        }
    }

    /// Counts one failed attempt of `name` from `peer`.
    pub fn record_failure(
        &self,
        config: &ConfigStore,
        peer: Option<IpAddr>,
        name: &str,
        salt: &str,
    ) {
        let Some(peer) = peer else { return };
        if mode(config) == Mode::Off {
            return;
        }
        let lifetime = max_lifetime(config);
        let max_objects = config.get_parsed("chttpd_auth_lockout", "max_objects", 10_000usize);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let key = (peer, name.to_string(), salt.to_string());
        if !entries.contains_key(&key) && entries.len() >= max_objects {
            entries.retain(|_, e| e.since.elapsed() < lifetime);
            if entries.len() >= max_objects {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.since)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    entries.remove(&k);
                }
            }
        }
        let now = Instant::now();
        let entry = entries.entry(key).or_insert(Entry {
            failures: 0,
            since: now,
        });
        if entry.since.elapsed() >= lifetime {
            *entry = Entry {
                failures: 0,
                since: now,
            };
        }
        entry.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ConfigStore {
        let dir = std::env::temp_dir().join(format!(
            "chaise-lockout-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = ConfigStore::empty(dir.join("local.ini"));
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some((k, v)) = line.split_once('=') {
                store.set_in_memory("chttpd_auth_lockout", k.trim(), v.trim());
            }
        }
        store
    }

    fn ip() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn locks_after_threshold_per_key() {
        let c = config("threshold = 2");
        let l = Lockout::default();
        assert!(!l.is_locked_out(&c, ip(), "bob", "s"));
        l.record_failure(&c, ip(), "bob", "s");
        assert!(!l.is_locked_out(&c, ip(), "bob", "s"));
        l.record_failure(&c, ip(), "bob", "s");
        assert!(l.is_locked_out(&c, ip(), "bob", "s"));
        // Other user, other salt, other peer, unknown peer: not locked.
        assert!(!l.is_locked_out(&c, ip(), "eve", "s"));
        assert!(!l.is_locked_out(&c, ip(), "bob", "t"));
        assert!(!l.is_locked_out(&c, Some(IpAddr::from([10, 0, 0, 1])), "bob", "s"));
        assert!(!l.is_locked_out(&c, None, "bob", "s"));
    }

    #[test]
    fn warn_and_off_never_lock() {
        for mode in ["warn", "off", "bogus"] {
            let c = config(&format!("threshold = 1\nmode = {mode}"));
            let l = Lockout::default();
            l.record_failure(&c, ip(), "bob", "s");
            l.record_failure(&c, ip(), "bob", "s");
            assert!(!l.is_locked_out(&c, ip(), "bob", "s"), "{mode}");
        }
    }

    #[test]
    fn entries_expire() {
        let c = config("threshold = 1\nmax_lifetime = 0");
        let l = Lockout::default();
        l.record_failure(&c, ip(), "bob", "s");
        assert!(!l.is_locked_out(&c, ip(), "bob", "s"));
    }

    #[test]
    fn max_objects_bounds_memory() {
        let c = config("max_objects = 3");
        let l = Lockout::default();
        for i in 0..10 {
            l.record_failure(&c, ip(), &format!("u{i}"), "s");
        }
        assert!(l.entries.lock().map(|e| e.len()).unwrap_or(0) <= 3);
    }
}
