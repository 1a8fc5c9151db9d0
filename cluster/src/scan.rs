//! Long reads across a database: `_changes` and `_all_docs` streamed from one copy
//! of every range and merged a batch at a time, so neither the coordinator nor the
//! shard copies ever hold a whole result, and a slow client slows the scans down
//! instead of filling memory.

use crate::coordinator::{AllDocsQuery, AllDocsRow, ChangesQuery, ChangesRow};
use crate::fabric::op::{LocalScan, ShardChange, ShardReply, SCAN_BATCH};
use crate::seq::{SeqEntry, SeqVector};
use crate::ClusterError;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// Where the batches of one range's read come from.
pub(crate) enum ScanSource {
    /// This node's copy, read a batch at a time as the cursor asks.
    Local(LocalScan),
    /// Another node's copy, streaming its batches over the fabric.
    Remote(mpsc::Receiver<Result<ShardReply, ClusterError>>),
}

impl ScanSource {
    /// The next batch; `None` once the read ended.
    async fn next(&mut self) -> Option<Result<ShardReply, ClusterError>> {
        match self {
            ScanSource::Local(scan) => scan.next().await,
            ScanSource::Remote(rx) => rx.recv().await,
        }
    }
}

/// How many batches a streamed read may run ahead of its reader.
pub(crate) const SCAN_AHEAD: usize = 2;

/// The rows of one range's scan not yet taken, and what its last batch said.
struct RangeScan<T, M> {
    source: ScanSource,
    rows: VecDeque<T>,
    /// What the last batch said besides its rows.
    meta: M,
    /// Whether the scan ended.
    done: bool,
}

impl<T, M> RangeScan<T, M> {
    fn new(source: ScanSource, meta: M) -> Self {
        RangeScan {
            source,
            rows: VecDeque::new(),
            meta,
            done: false,
        }
    }

    /// Receives batches until there are rows to take or the scan ended; `split`
    /// takes a reply apart into rows and what else it says.
    async fn fill(
        &mut self,
        split: impl Fn(ShardReply) -> Result<(Vec<T>, M), ClusterError>,
    ) -> Result<(), ClusterError> {
        while self.rows.is_empty() && !self.done {
            match self.source.next().await {
                Some(reply) => {
                    let (rows, meta) = split(reply?)?;
                    self.rows.extend(rows);
                    self.meta = meta;
                }
                None => self.done = true,
            }
        }
        Ok(())
    }
}

fn unexpected(reply: ShardReply) -> ClusterError {
    ClusterError::Internal(format!("unexpected shard reply {reply:?}"))
}

/// What a changes batch says besides its rows: the shard's update sequence and
/// the changes after the batch's last row.
#[derive(Debug, Clone, Copy, Default)]
struct ChangesMeta {
    update_seq: u64,
    pending: u64,
}

fn split_changes(reply: ShardReply) -> Result<(Vec<ShardChange>, ChangesMeta), ClusterError> {
    match reply {
        ShardReply::Changes {
            rows,
            update_seq,
            pending,
        } => Ok((
            rows,
            ChangesMeta {
                update_seq,
                pending,
            },
        )),
        other => Err(unexpected(other)),
    }
}

/// A `_changes` read in progress: the ranges one after the other, each from the
/// copy its position was taken on. Take rows with [`ChangesCursor::next_batch`],
/// then the position and the count left with [`ChangesCursor::finish`].
pub struct ChangesCursor {
    ranges: Vec<RangeScan<ShardChange, ChangesMeta>>,
    /// Per-range positions after the last row taken.
    vector: Vec<SeqEntry>,
    current: usize,
    /// Rows still wanted.
    left: usize,
    /// Whether the query asked for fewer rows than there were.
    limited: bool,
    descending: bool,
    doc_ids: bool,
}

impl ChangesCursor {
    /// A cursor over the scans of every range, started at `vector`.
    pub(crate) fn new(q: &ChangesQuery, scans: Vec<ScanSource>, vector: Vec<SeqEntry>) -> Self {
        ChangesCursor {
            ranges: scans
                .into_iter()
                .map(|source| RangeScan::new(source, ChangesMeta::default()))
                .collect(),
            vector,
            current: 0,
            left: q.limit,
            limited: q.limit == 0,
            descending: q.descending,
            doc_ids: q.doc_ids.is_some(),
        }
    }

    /// The next rows, at most one batch; `None` when the feed has no more.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<ChangesRow>>, ClusterError> {
        while self.left > 0 && self.current < self.ranges.len() {
            let i = self.current;
            let range = &mut self.ranges[i];
            range.fill(split_changes).await?;
            if range.rows.is_empty() {
                self.current += 1;
                continue;
            }
            let take = range.rows.len().min(self.left).min(SCAN_BATCH);
            let mut out = Vec::with_capacity(take);
            for c in range.rows.drain(..take) {
                self.vector[i].seq = c.row.seq;
                out.push(ChangesRow {
                    seq: SeqVector(self.vector.clone()).encode(),
                    id: c.row.id,
                    leaves: c.row.leaves,
                    deleted: c.row.deleted,
                    body: c.body,
                    info: c.info,
                });
            }
            self.left -= take;
            if self.left == 0 {
                self.limited = true;
            }
            return Ok(Some(out));
        }
        Ok(None)
    }

    /// The position after the last row taken and the number of changes after it.
    /// When every change was taken, the position is the end of every range.
    pub async fn finish(mut self) -> Result<(String, u64), ClusterError> {
        let mut pending = 0u64;
        for range in &mut self.ranges {
            // A range not reached yet still says how much it holds.
            if !range.done && range.rows.is_empty() {
                range.fill(split_changes).await?;
            }
            pending += range.rows.len() as u64 + range.meta.pending;
        }
        if !self.descending && !self.limited {
            for (e, range) in self.vector.iter_mut().zip(&self.ranges) {
                e.seq = e.seq.max(range.meta.update_seq);
            }
        }
        let pending = if self.doc_ids { 0 } else { pending };
        Ok((SeqVector(self.vector).encode(), pending))
    }
}

/// What an `_all_docs` batch says besides its rows: the shard's document count and
/// the documents before the range (first batch only).
#[derive(Debug, Clone, Copy, Default)]
struct AllDocsMeta {
    total: u64,
    before: u64,
}

fn split_all_docs(reply: ShardReply) -> Result<(Vec<AllDocsRow>, AllDocsMeta), ClusterError> {
    match reply {
        ShardReply::AllDocs {
            total,
            before,
            rows,
        } => Ok((rows, AllDocsMeta { total, before })),
        other => Err(unexpected(other)),
    }
}

/// An `_all_docs` read in progress: the scans of every range merged in id order.
pub struct AllDocsCursor {
    ranges: Vec<RangeScan<AllDocsRow, AllDocsMeta>>,
    descending: bool,
    skip: usize,
    left: usize,
    /// Documents in the database.
    pub total_rows: u64,
    /// Documents before the first row.
    pub offset: u64,
}

impl AllDocsCursor {
    /// A cursor over the scans of every range; waits for each scan's first batch,
    /// which carries the counts.
    pub(crate) async fn open(
        q: &AllDocsQuery,
        scans: Vec<ScanSource>,
    ) -> Result<AllDocsCursor, ClusterError> {
        let mut ranges = Vec::with_capacity(scans.len());
        let (mut total, mut before) = (0, 0);
        for source in scans {
            let mut range = RangeScan::new(source, AllDocsMeta::default());
            if let Some(reply) = range.source.next().await {
                let (rows, meta) = split_all_docs(reply?)?;
                range.rows.extend(rows);
                total += meta.total;
                before += meta.before;
            }
            ranges.push(range);
        }
        Ok(AllDocsCursor {
            ranges,
            descending: q.range.descending,
            skip: q.skip,
            left: q.range.limit,
            total_rows: total,
            offset: (before + q.skip as u64).min(total),
        })
    }

    /// The next rows in order, at most one batch; `None` when there are no more.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<AllDocsRow>>, ClusterError> {
        let mut out = Vec::new();
        while self.left > 0 && out.len() < SCAN_BATCH {
            let mut next: Option<usize> = None;
            for i in 0..self.ranges.len() {
                self.ranges[i].fill(split_all_docs).await?;
                let Some(row) = self.ranges[i].rows.front() else {
                    continue;
                };
                let better = match next.and_then(|n| self.ranges[n].rows.front()) {
                    None => true,
                    Some(best) if self.descending => row.id > best.id,
                    Some(best) => row.id < best.id,
                };
                if better {
                    next = Some(i);
                }
            }
            let Some(row) = next.and_then(|n| self.ranges[n].rows.pop_front()) else {
                break;
            };
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            out.push(row);
            self.left -= 1;
        }
        Ok((!out.is_empty()).then_some(out))
    }
}
