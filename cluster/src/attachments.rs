//! Attachment data through the coordinator: ranged reads from one copy, and
//! streamed uploads written to every copy of a document's shard range a piece at
//! a time, so that no node holds a large attachment whole.

use crate::fabric::op::{ShardOp, ShardReply};
use crate::shard_map::ShardMap;
use crate::{ClusterError, Coordinator};
use chaise_storage::StagedBlob;

/// A streamed attachment upload in progress on the copies of one shard range.
#[derive(Debug)]
pub struct AttUpload {
    map: std::sync::Arc<ShardMap>,
    range: usize,
    /// The upload id, the same on every copy.
    id: [u8; 16],
    /// Copies that have every byte so far.
    nodes: Vec<String>,
}

impl AttUpload {
    /// The upload id to name in `NewAttachment::Staged`.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }
}

impl Coordinator {
    /// Up to `len` stored bytes of an attachment from `offset`, from a copy of the
    /// shard holding document `id`.
    pub async fn attachment_range(
        &self,
        db: &str,
        id: &str,
        digest: [u8; 16],
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let map = self.map(db)?;
        let range = &map.ranges[map.range_index(id)];
        let op = ShardOp::AttachmentRange {
            digest,
            offset,
            len,
        };
        for node in self.copies(range) {
            if let Ok(ShardReply::Bytes(Some(d))) = self.call(&map, range, &node, op.clone()).await
            {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Starts an upload of attachment data for document `doc_id` on every copy
    /// of its range that answers.
    pub async fn upload_begin(&self, db: &str, doc_id: &str) -> Result<AttUpload, ClusterError> {
        let map = self.map(db)?;
        let range = map.range_index(doc_id);
        let nodes = self.copies(&map.ranges[range]);
        self.upload_begin_on(map, range, nodes).await
    }

    /// Starts an upload on the given copies of range `range` of `map`.
    pub(crate) async fn upload_begin_on(
        &self,
        map: std::sync::Arc<ShardMap>,
        range: usize,
        nodes: Vec<String>,
    ) -> Result<AttUpload, ClusterError> {
        let mut up = AttUpload {
            range,
            id: rand::random(),
            nodes,
            map,
        };
        let id = up.id;
        self.upload_step(&mut up, |_| ShardOp::StageBegin(id))
            .await?;
        Ok(up)
    }

    /// Appends bytes to an upload on every copy still in it.
    pub async fn upload_append(&self, up: &mut AttUpload, data: &[u8]) -> Result<(), ClusterError> {
        let upload = up.id;
        self.upload_step(up, |_| ShardOp::StageAppend {
            upload,
            data: data.to_vec(),
        })
        .await?;
        Ok(())
    }

    /// Finishes an upload: the digest and length of the bytes appended.
    pub async fn upload_finish(&self, up: &mut AttUpload) -> Result<StagedBlob, ClusterError> {
        let id = up.id;
        let replies = self.upload_step(up, |_| ShardOp::StageFinish(id)).await?;
        match replies.into_iter().next() {
            Some(ShardReply::Staged(s)) => Ok(s),
            _ => Err(ClusterError::Internal(
                "upload finish: unexpected reply".into(),
            )),
        }
    }

    /// Drops an upload on every copy (a no-op where a write already used it).
    pub async fn upload_abort(&self, up: &AttUpload) {
        let range = &up.map.ranges[up.range];
        for node in &up.nodes {
            if let Err(e) = self
                .call(&up.map, range, node, ShardOp::StageAbort(up.id))
                .await
            {
                tracing::debug!(%node, error = %e, "could not drop attachment upload");
            }
        }
    }

    /// Runs one upload operation on every copy still in the upload; copies that
    /// fail leave it (internal replication brings them the document later).
    async fn upload_step(
        &self,
        up: &mut AttUpload,
        op: impl Fn(&str) -> ShardOp,
    ) -> Result<Vec<ShardReply>, ClusterError> {
        let range = &up.map.ranges[up.range];
        let mut kept = Vec::with_capacity(up.nodes.len());
        let mut replies = Vec::with_capacity(up.nodes.len());
        let mut last = None;
        for node in std::mem::take(&mut up.nodes) {
            match self.call(&up.map, range, &node, op(&node)).await {
                Ok(r) => {
                    kept.push(node);
                    replies.push(r);
                }
                Err(e) => {
                    tracing::warn!(%node, error = %e, "copy left an attachment upload");
                    last = Some(e);
                }
            }
        }
        up.nodes = kept;
        if up.nodes.is_empty() {
            return Err(last.unwrap_or_else(|| {
                ClusterError::Unavailable("no copy takes the attachment upload".into())
            }));
        }
        Ok(replies)
    }
}
