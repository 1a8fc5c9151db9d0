//! The node-local log of database events behind `/_db_updates`.
//!
//! Every node keeps its own log in memory: `created` and `deleted` are recorded
//! when the node applies the Raft command (so on every node), `updated` when a
//! write lands on one of this node's shard copies, debounced so a burst of
//! writes gives one event. As CouchDB's `_global_changes` database does, the log
//! keeps only the newest event of each kind per database: a newer one replaces
//! the older, so the log stays as small as the set of databases.
//!
//! Sequences are `"<n>-<epoch>"`; the epoch changes at every start, so a
//! sequence from before a restart reads the whole (new) log again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long `updated` events of one database are gathered before one is logged.
const DEBOUNCE: Duration = Duration::from_millis(25);

/// What happened to a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbEventKind {
    /// It was created.
    Created,
    /// Documents were written to it.
    Updated,
    /// It was deleted.
    Deleted,
}

impl DbEventKind {
    /// The `type` of the event in `/_db_updates`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbEventKind::Created => "created",
            DbEventKind::Updated => "updated",
            DbEventKind::Deleted => "deleted",
        }
    }
}

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbEvent {
    /// Its position in the log.
    pub seq: u64,
    /// The database.
    pub db_name: String,
    /// What happened.
    pub kind: DbEventKind,
}

#[derive(Default)]
struct Log {
    last: u64,
    by_seq: BTreeMap<u64, (String, DbEventKind)>,
    latest: HashMap<(String, DbEventKind), u64>,
}

/// The event log of one node, with a watch channel of its newest sequence.
pub struct DbUpdates {
    log: Mutex<Log>,
    seq_tx: watch::Sender<u64>,
    dirty: Mutex<HashSet<String>>,
    epoch: String,
}

impl Default for DbUpdates {
    fn default() -> Self {
        DbUpdates {
            log: Mutex::new(Log::default()),
            seq_tx: watch::Sender::new(0),
            dirty: Mutex::new(HashSet::new()),
            epoch: format!("{:08x}", rand::random::<u32>()),
        }
    }
}

impl DbUpdates {
    /// Logs an event now.
    pub fn record(&self, db: &str, kind: DbEventKind) {
        let seq = {
            let Ok(mut log) = self.log.lock() else { return };
            log.last += 1;
            let seq = log.last;
            if let Some(old) = log.latest.insert((db.to_string(), kind), seq) {
                log.by_seq.remove(&old);
            }
            log.by_seq.insert(seq, (db.to_string(), kind));
            seq
        };
        self.seq_tx.send_replace(seq);
    }

    /// Notes a write to a database; one `updated` event follows shortly for all
    /// the writes noted meanwhile.
    pub fn note_updated(self: &Arc<Self>, db: &str) {
        let Ok(mut dirty) = self.dirty.lock() else {
            return;
        };
        if dirty.contains(db) {
            return;
        }
        let first = dirty.is_empty();
        dirty.insert(db.to_string());
        drop(dirty);
        if !first {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let me = self.clone();
                rt.spawn(async move {
                    tokio::time::sleep(DEBOUNCE).await;
                    me.flush();
                });
            }
            Err(_) => self.flush(),
        }
    }

    fn flush(&self) {
        let dbs: Vec<String> = match self.dirty.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => return,
        };
        for db in dbs {
            self.record(&db, DbEventKind::Updated);
        }
    }

    /// Events after `since` (oldest first, or newest first when `descending`),
    /// at most `limit`, and the sequence to resume from.
    pub fn since(&self, since: u64, descending: bool, limit: usize) -> (Vec<DbEvent>, u64) {
        let Ok(log) = self.log.lock() else {
            return (Vec::new(), since);
        };
        let event = |(seq, (db, kind)): (&u64, &(String, DbEventKind))| DbEvent {
            seq: *seq,
            db_name: db.clone(),
            kind: *kind,
        };
        let range = log.by_seq.range(since.saturating_add(1)..);
        let events: Vec<DbEvent> = if descending {
            range.rev().take(limit).map(event).collect()
        } else {
            range.take(limit).map(event).collect()
        };
        let last = if descending || events.len() < limit {
            log.last.max(since)
        } else {
            events.last().map_or(since, |e| e.seq)
        };
        (events, last)
    }

    /// The newest sequence.
    pub fn current(&self) -> u64 {
        *self.seq_tx.borrow()
    }

    /// A receiver of the newest sequence, for live feeds.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }

    /// The opaque form of a sequence.
    pub fn encode_seq(&self, seq: u64) -> String {
        format!("{seq}-{}", self.epoch)
    }

    /// Reads an opaque sequence; `None` if it is not one. A sequence of another
    /// epoch (before a restart) reads as 0.
    pub fn decode_seq(&self, s: &str) -> Option<u64> {
        if s == "0" {
            return Some(0);
        }
        let (n, epoch) = s.split_once('-')?;
        let n: u64 = n.parse().ok()?;
        Some(if epoch == self.epoch { n } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_event_replaces_older_of_same_kind() {
        let u = DbUpdates::default();
        u.record("a", DbEventKind::Created);
        u.record("b", DbEventKind::Created);
        u.record("a", DbEventKind::Updated);
        u.record("a", DbEventKind::Updated);
        let (ev, last) = u.since(0, false, usize::MAX);
        let got: Vec<(&str, DbEventKind, u64)> = ev
            .iter()
            .map(|e| (e.db_name.as_str(), e.kind, e.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", DbEventKind::Created, 1),
                ("b", DbEventKind::Created, 2),
                ("a", DbEventKind::Updated, 4)
            ]
        );
        assert_eq!(last, 4);
        let (ev, last) = u.since(2, false, 1);
        assert_eq!((ev.len(), last), (1, 4));
        let (ev, _) = u.since(0, true, 2);
        assert_eq!(ev.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 2]);
    }

    #[test]
    fn seqs_of_another_epoch_restart_from_zero() {
        let u = DbUpdates::default();
        let s = u.encode_seq(7);
        assert_eq!(u.decode_seq(&s), Some(7));
        assert_eq!(u.decode_seq("7-zzzzzzzz"), Some(0));
        assert_eq!(u.decode_seq("0"), Some(0));
        assert_eq!(u.decode_seq("x"), None);
    }

    #[tokio::test]
    async fn bursts_of_writes_give_one_event() {
        let u = Arc::new(DbUpdates::default());
        for _ in 0..10 {
            u.note_updated("a");
        }
        let mut rx = u.subscribe();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("flushed")
            .expect("open");
        let (ev, _) = u.since(0, false, usize::MAX);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, DbEventKind::Updated);
    }
}
