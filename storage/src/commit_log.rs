//! A shard's commit log: the redo log that makes ordinary writes durable.
//!
//! A durable redb commit rewrites the B-tree pages a batch touched and fsyncs them,
//! scattered over the file. Document and `_local` writes instead commit to redb
//! without durability and append the batch's operations here: one sequential write
//! and one fdatasync. A checkpoint (a durable redb commit) now and then makes
//! everything so far durable in the B-trees and starts a new generation of the log.
//! When a shard opens, the records of the current generation are applied again on
//! top of the last checkpoint, which brings back every acknowledged write.
//!
//! Record layout: `len: u32, crc32: u32, generation: u64, index: u64, payload`, all
//! little-endian; the crc covers generation, index and payload. Recovery reads
//! records of the current generation with indexes 0, 1, 2, … and stops at the first
//! that does not match (a torn tail or an older generation's leftovers).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: usize = 24;
/// Largest payload recovery accepts (a larger length field is a torn header).
const MAX_RECORD: u32 = 1 << 30;
/// How far ahead of the records the file is filled with zeros. Overwriting blocks a
/// file already has lets fdatasync skip the metadata journal an append would need.
const PREFILL: u64 = 1 << 20;

/// The path of the commit log that belongs to the shard file at `shard`.
pub(crate) fn log_path(shard: &Path) -> PathBuf {
    let mut name = shard.as_os_str().to_owned();
    name.push("-log");
    PathBuf::from(name)
}

/// The open log of one shard, owned by its writer thread.
pub(crate) struct CommitLog {
    file: File,
    generation: u64,
    /// Where the next record goes.
    end: u64,
    /// Index of the next record within the generation.
    next: u64,
    /// Start of the last record appended (for `undo_last`).
    last: u64,
    /// Length of the file (records plus zero fill).
    allocated: u64,
}

impl CommitLog {
    /// Opens (creating) the log at `path` and reads the payloads of `generation`'s
    /// records, in order.
    pub(crate) fn open(path: &Path, generation: u64) -> io::Result<(CommitLog, Vec<Vec<u8>>)> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if created {
            // The log's directory entry must survive a crash like its records.
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let allocated = file.metadata()?.len();
        let mut log = CommitLog {
            file,
            generation,
            end: 0,
            next: 0,
            last: 0,
            allocated,
        };
        let records = log.read_generation()?;
        Ok((log, records))
    }

    fn read_generation(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut reader = io::BufReader::new(&self.file);
        let mut records = Vec::new();
        loop {
            let mut header = [0u8; HEADER];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let field = |at: usize, n: usize| {
                header[at..at + n]
                    .iter()
                    .rev()
                    .fold(0u64, |v, b| v << 8 | u64::from(*b))
            };
            let (len, crc) = (field(0, 4) as u32, field(4, 4) as u32);
            if field(8, 8) != self.generation || field(16, 8) != self.next || len > MAX_RECORD {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            match reader.read_exact(&mut payload) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            if checksum(&header[8..], &payload) != crc {
                break;
            }
            records.push(payload);
            self.last = self.end;
            self.end += HEADER as u64 + u64::from(len);
            self.next += 1;
        }
        Ok(records)
    }

    /// Appends one record and waits until it is on disk.
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log record too large"))?;
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&self.generation.to_le_bytes());
        buf.extend_from_slice(&self.next.to_le_bytes());
        let crc = checksum(&buf[8..HEADER], payload);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(payload);
        let end = self.end + buf.len() as u64;
        if end > self.allocated {
            // Zeros never read as a record: their generation and length do not match.
            self.file.write_all_at(&vec![0u8; PREFILL as usize], end)?;
            self.allocated = end + PREFILL;
        }
        self.file.write_all_at(&buf, self.end)?;
        self.file.sync_data()?;
        self.last = self.end;
        self.end = end;
        self.next += 1;
        Ok(())
    }

    /// Takes back the record just appended (its batch failed to commit after all),
    /// so that recovery never applies it.
    pub(crate) fn undo_last(&mut self) -> io::Result<()> {
        self.file.write_all_at(&[0u8; HEADER], self.last)?;
        self.file.sync_data()?;
        self.end = self.last;
        self.next = self.next.saturating_sub(1);
        Ok(())
    }

    /// Starts `generation` at the front of the file, after a checkpoint made every
    /// earlier record redundant. Older bytes are overwritten as records come.
    pub(crate) fn restart(&mut self, generation: u64) {
        self.generation = generation;
        self.end = 0;
        self.next = 0;
        self.last = 0;
    }

    /// Gives the file's space back (an idle shard needs none); only after a
    /// checkpoint, as it drops the records.
    pub(crate) fn release(&mut self) -> io::Result<()> {
        self.restart(self.generation);
        self.file.set_len(0)?;
        self.allocated = 0;
        Ok(())
    }

    /// The generation records are written under.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes of records since the last checkpoint.
    pub(crate) fn len(&self) -> u64 {
        self.end
    }
}

fn checksum(header_tail: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header_tail);
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_until_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb-log");
        let (mut log, got) = CommitLog::open(&path, 7).unwrap();
        assert!(got.is_empty());
        log.append(b"one").unwrap();
        log.append(b"two two").unwrap();
        log.append(&vec![3u8; 100_000]).unwrap();
        let end = log.len();
        drop(log);
        let (_, got) = CommitLog::open(&path, 7).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], b"two two");
        assert_eq!(got[2].len(), 100_000);

        // A torn last record (half its payload missing) is dropped, the rest kept.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(end - 50_000).unwrap();
        let (_, got) = CommitLog::open(&path, 7).unwrap();
        assert_eq!(got.len(), 2);
        // A flipped byte in a payload ends the log there.
        f.write_all_at(b"X", (HEADER + 1) as u64).unwrap();
        let (_, got) = CommitLog::open(&path, 7).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn another_generation_and_undone_records_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb-log");
        let (mut log, _) = CommitLog::open(&path, 1).unwrap();
        log.append(b"old a").unwrap();
        log.append(b"old b").unwrap();
        log.append(b"old c").unwrap();
        log.restart(2);
        log.append(b"new a").unwrap();
        log.append(b"new b").unwrap();
        log.undo_last().unwrap();
        drop(log);
        // Generation 2 has one record; the old generation's third record still lies
        // beyond it in the file and must not be read as generation 2's.
        let (mut log, got) = CommitLog::open(&path, 2).unwrap();
        assert_eq!(got, vec![b"new a".to_vec()]);
        log.append(b"new c").unwrap();
        drop(log);
        let (_, got) = CommitLog::open(&path, 2).unwrap();
        assert_eq!(got, vec![b"new a".to_vec(), b"new c".to_vec()]);
        let (_, got) = CommitLog::open(&path, 1).unwrap();
        assert!(
            got.is_empty(),
            "generation 1's first record was overwritten"
        );
    }
}
