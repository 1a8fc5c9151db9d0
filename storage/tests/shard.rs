//! Shard storage against real files: writes, conflicts, replication merges,
//! reopening, local docs, purge, changes and compaction.

use chaise_storage::{
    AllDocsRange, AttachmentInfo, DocError, DocUpdate, EditKind, NewAttachment, Rev, Shard,
    ATT_CHUNK,
};
use std::sync::Arc;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn edit(id: &str, parent: Option<&Rev>, body: &str) -> DocUpdate {
    DocUpdate {
        id: id.into(),
        kind: EditKind::Interactive {
            parent: parent.cloned(),
        },
        deleted: false,
        body: body.as_bytes().to_vec(),
        attachments: vec![],
    }
}

fn replicated(id: &str, pos: u64, ids: &[&str], deleted: bool) -> DocUpdate {
    DocUpdate {
        id: id.into(),
        kind: EditKind::Replicated {
            pos,
            ids: ids.iter().map(|s| s.to_string()).collect(),
        },
        deleted,
        body: b"{}".to_vec(),
        attachments: vec![],
    }
}

async fn write1(shard: &Shard, u: DocUpdate) -> Result<Rev, DocError> {
    shard.update_docs(vec![u]).await.unwrap().pop().unwrap()
}

#[test]
fn edits_conflicts_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shards/00000000-ffffffff/db.1.redb");
    let rt = rt();
    let (r1, r2) = rt.block_on(async {
        let shard = Shard::open(&path, true).unwrap();
        let r1 = write1(&shard, edit("a", None, r#"{"v":1}"#)).await.unwrap();
        assert_eq!(r1.pos, 1);
        // Creating again without a rev conflicts; editing a stale rev conflicts.
        assert_eq!(
            write1(&shard, edit("a", None, "{}")).await,
            Err(DocError::Conflict)
        );
        let r2 = write1(&shard, edit("a", Some(&r1), r#"{"v":2}"#))
            .await
            .unwrap();
        assert_eq!(r2.pos, 2);
        assert_eq!(
            write1(&shard, edit("a", Some(&r1), "{}")).await,
            Err(DocError::Conflict)
        );
        shard.close();
        (r1, r2)
    });
    // Reopen: the tree, the body of the leaf and the counters are on disk.
    rt.block_on(async {
        let shard = Shard::open(&path, false).unwrap();
        let reader = shard.reader().unwrap();
        let info = reader.doc_info("a").unwrap().unwrap();
        assert_eq!(info.tree.winner().unwrap().rev, r2);
        assert!(info.tree.contains(&r1));
        let body = reader.rev_body("a", &r2).unwrap().unwrap();
        assert_eq!(body.body, br#"{"v":2}"#);
        // Bodies of replaced revisions are not kept.
        assert!(reader.rev_body("a", &r1).unwrap().is_none());
        let si = reader.info().unwrap();
        assert_eq!((si.doc_count, si.doc_del_count, si.update_seq), (1, 0, 2));
        // Writes continue from the stored sequence.
        write1(&shard, edit("b", None, "{}")).await.unwrap();
        assert_eq!(shard.reader().unwrap().info().unwrap().update_seq, 3);
    });
}

#[test]
fn replicated_revisions_merge_and_pick_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let shard = Shard::open(&dir.path().join("s.redb"), true).unwrap();
        write1(&shard, replicated("d", 2, &["b", "a"], false))
            .await
            .unwrap();
        write1(&shard, replicated("d", 2, &["c", "a"], false))
            .await
            .unwrap();
        // Same revision again: a no-op that does not take a new sequence.
        let seq = shard.reader().unwrap().info().unwrap().update_seq;
        write1(&shard, replicated("d", 2, &["c", "a"], false))
            .await
            .unwrap();
        assert_eq!(shard.reader().unwrap().info().unwrap().update_seq, seq);
        let info = shard.reader().unwrap().doc_info("d").unwrap().unwrap();
        let leaves = info.tree.leaves();
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0].rev.to_string(), "2-c", "higher rev id wins a tie");
        // Deleting the winner makes the other branch win.
        write1(&shard, replicated("d", 3, &["z", "c"], true))
            .await
            .unwrap();
        let info = shard.reader().unwrap().doc_info("d").unwrap().unwrap();
        assert_eq!(info.tree.winner().unwrap().rev.to_string(), "2-b");
        assert!(!info.is_deleted());
        let si = shard.reader().unwrap().info().unwrap();
        assert_eq!((si.doc_count, si.doc_del_count), (1, 0));
    });
}

#[test]
fn stubs_local_docs_purge_changes_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let shard = Shard::open(&dir.path().join("s.redb"), true).unwrap();
        let mut u = edit("att", None, "{}");
        u.attachments.push(NewAttachment::data(
            "a.txt".into(),
            "text/plain".into(),
            b"hello".to_vec(),
        ));
        let r1 = write1(&shard, u).await.unwrap();
        let mut u = edit("att", Some(&r1), r#"{"x":1}"#);
        u.attachments.push(NewAttachment::Stub {
            name: "a.txt".into(),
            info: None,
        });
        let r2 = write1(&shard, u).await.unwrap();
        let body = shard
            .reader()
            .unwrap()
            .rev_body("att", &r2)
            .unwrap()
            .unwrap();
        assert_eq!(body.attachments[0].revpos, 1);
        assert_eq!(body.attachments[0].length, 5);
        let data = shard
            .reader()
            .unwrap()
            .attachment(&body.attachments[0].digest)
            .unwrap();
        assert_eq!(data.as_deref(), Some(&b"hello"[..]));
        // A stub the parent does not have.
        let mut u = edit("att", Some(&r2), "{}");
        u.attachments.push(NewAttachment::Stub {
            name: "nope".into(),
            info: None,
        });
        assert!(matches!(
            write1(&shard, u).await,
            Err(DocError::MissingStub { .. })
        ));

        // Local docs: a counter, checked on update.
        assert_eq!(
            shard
                .write_local("_local/x".into(), None, Some(b"{}".to_vec()))
                .await
                .unwrap(),
            Ok(1)
        );
        assert_eq!(
            shard
                .write_local("_local/x".into(), Some(1), Some(b"{}".to_vec()))
                .await
                .unwrap(),
            Ok(2)
        );
        assert_eq!(
            shard
                .write_local("_local/x".into(), Some(1), Some(b"{}".to_vec()))
                .await
                .unwrap(),
            Err(DocError::LocalConflict)
        );

        // Changes list each doc once, at its latest sequence.
        write1(&shard, edit("b", None, "{}")).await.unwrap();
        let rows = shard
            .reader()
            .unwrap()
            .changes(0, usize::MAX, false)
            .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["att", "b"]);
        let all = shard
            .reader()
            .unwrap()
            .all_docs(&AllDocsRange {
                limit: 10,
                inclusive_end: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 2);

        // Purge the only leaf of "b": the document is gone, not a tombstone.
        let b = shard.reader().unwrap().doc_info("b").unwrap().unwrap();
        let leaf = b.tree.winner().unwrap().rev;
        let purged = shard
            .purge(vec![("b".into(), vec![leaf.clone()])])
            .await
            .unwrap();
        assert_eq!(purged, vec![("b".to_string(), vec![leaf])]);
        assert!(shard.reader().unwrap().doc_info("b").unwrap().is_none());
        let si = shard.reader().unwrap().info().unwrap();
        assert_eq!((si.doc_count, si.purge_seq), (1, 1));

        // Deleting "att" and compacting drops the now unreferenced attachment.
        let mut del = edit("att", Some(&r2), "{}");
        del.deleted = true;
        write1(&shard, del).await.unwrap();
        shard.compact().await.unwrap();
        let digest = body.attachments[0].digest;
        assert!(!shard.reader().unwrap().has_attachment(&digest).unwrap());
    });
}

#[test]
fn concurrent_writers_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let shard: Arc<Shard> = Shard::open(&dir.path().join("s.redb"), true).unwrap();
        let mut tasks = Vec::new();
        for t in 0..32 {
            let shard = shard.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    write1(&shard, edit(&format!("{t}-{i}"), None, "{}"))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let si = shard.reader().unwrap().info().unwrap();
        assert_eq!((si.doc_count, si.update_seq), (640, 640));
    });
}

#[test]
fn streamed_uploads_chunk_dedup_and_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let shard = Shard::open(&dir.path().join("s.redb"), true).unwrap();
        // Three and a bit chunks, appended in uneven pieces.
        let data: Vec<u8> = (0..(3 * ATT_CHUNK + 1234))
            .map(|i| (i % 251) as u8)
            .collect();
        let upload = [7u8; 16];
        shard.stage_begin(upload).unwrap();
        for piece in data.chunks(100_000) {
            shard.stage_append(upload, piece).await.unwrap();
        }
        let staged = shard.stage_finish(upload).await.unwrap();
        assert_eq!(staged.length, data.len() as u64);
        assert_eq!(staged.digest, chaise_storage::rev_id::md5_digest(&data));
        let info = AttachmentInfo {
            name: "big.bin".into(),
            content_type: "application/octet-stream".into(),
            digest: staged.digest,
            length: staged.length,
            revpos: 0,
            encoding: None,
            encoded_length: None,
        };
        let mut u = edit("big", None, "{}");
        u.attachments.push(NewAttachment::Staged {
            info: info.clone(),
            upload,
        });
        let r1 = write1(&shard, u).await.unwrap();
        let reader = shard.reader().unwrap();
        assert_eq!(reader.attachment(&staged.digest).unwrap().unwrap(), data);
        let mid = ATT_CHUNK as u64 - 10;
        assert_eq!(
            reader
                .attachment_range(&staged.digest, mid, 20)
                .unwrap()
                .unwrap(),
            data[mid as usize..mid as usize + 20]
        );
        drop(reader);

        // The same data again, inline: deduplicated onto the stored blob.
        let mut u = edit("copy", None, "{}");
        u.attachments.push(NewAttachment::data(
            "same.bin".into(),
            "application/octet-stream".into(),
            data.clone(),
        ));
        write1(&shard, u).await.unwrap();
        assert_eq!(
            shard
                .reader()
                .unwrap()
                .attachment_ref(&staged.digest)
                .unwrap()
                .unwrap()
                .blob,
            upload
        );

        // An upload used twice is refused the second time.
        let mut u = edit("again", None, "{}");
        u.attachments.push(NewAttachment::Staged { info, upload });
        assert!(matches!(
            write1(&shard, u).await,
            Err(DocError::BadRequest(_))
        ));

        // An abandoned upload survives compaction while open, not after abort.
        let open = [9u8; 16];
        shard.stage_begin(open).unwrap();
        shard.stage_append(open, &data).await.unwrap();
        shard.compact().await.unwrap();
        let info_before = shard.reader().unwrap().info().unwrap();
        assert!(info_before.active_size >= (data.len() + 3 * ATT_CHUNK) as u64);
        shard.stage_abort(open).await.unwrap();

        // Deleting both docs and compacting frees every chunk.
        let mut del = edit("big", Some(&r1), "{}");
        del.deleted = true;
        write1(&shard, del).await.unwrap();
        shard.compact().await.unwrap();
        assert!(shard
            .reader()
            .unwrap()
            .has_attachment(&staged.digest)
            .unwrap());
        let copy = shard.reader().unwrap().doc_info("copy").unwrap().unwrap();
        let mut del = edit("copy", Some(&copy.tree.winner().unwrap().rev), "{}");
        del.deleted = true;
        write1(&shard, del).await.unwrap();
        shard.compact().await.unwrap();
        let reader = shard.reader().unwrap();
        assert!(!reader.has_attachment(&staged.digest).unwrap());
        assert!(reader.info().unwrap().active_size < data.len() as u64);
    });
}

/// What a crash leaves of the open shard at `from`: its files as they are on disk
/// now, the commit log copied first (a checkpoint between the two copies then only
/// makes the log's records redundant). Without `with_log` only the shard file.
fn crash_copy(from: &std::path::Path, to: &std::path::Path, with_log: bool) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let log = |p: &std::path::Path| std::path::PathBuf::from(format!("{}-log", p.display()));
    if with_log {
        std::fs::copy(log(from), log(to)).unwrap();
    }
    std::fs::copy(from, to).unwrap();
}

#[test]
fn acknowledged_writes_survive_a_crash_through_the_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live/s.redb");
    let rt = rt();
    rt.block_on(async {
        // A first write, checkpointed by closing the shard.
        let shard = Shard::open(&path, true).unwrap();
        let a1 = write1(&shard, edit("a", None, r#"{"v":1}"#)).await.unwrap();
        drop(shard);

        // Writes of every logged kind, acknowledged while the shard stays open.
        let shard = Shard::open(&path, false).unwrap();
        let a2 = write1(&shard, edit("a", Some(&a1), r#"{"v":2}"#))
            .await
            .unwrap();
        write1(&shard, replicated("a", 2, &["zz", &a1.id], false))
            .await
            .unwrap();
        let mut u = edit("b", None, "{}");
        u.attachments.push(NewAttachment::data(
            "b.txt".into(),
            "text/plain".into(),
            b"bee".to_vec(),
        ));
        let b1 = write1(&shard, u).await.unwrap();
        let many: Vec<DocUpdate> = (0..300)
            .map(|i| edit(&format!("m{i:03}"), None, r#"{"many":true}"#))
            .collect();
        assert!(shard
            .update_docs(many)
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok));
        // Past the log's checkpoint size: later records go to a new generation.
        let pad = format!(r#"{{"pad":"{}"}}"#, "p".repeat(4000));
        for batch in 0..12 {
            let docs: Vec<DocUpdate> = (0..100)
                .map(|i| edit(&format!("big{batch:02}-{i:03}"), None, &pad))
                .collect();
            assert!(shard
                .update_docs(docs)
                .await
                .unwrap()
                .iter()
                .all(Result::is_ok));
        }
        // A small last write: the batches above leave the log short of a checkpoint
        // by far more than this, so it stays in the log alone.
        write1(&shard, edit("tail", None, "{}")).await.unwrap();
        shard
            .write_local("_local/cp".into(), None, Some(br#"{"seq":7}"#.to_vec()))
            .await
            .unwrap()
            .unwrap();
        let before = shard.reader().unwrap().info().unwrap();

        crash_copy(&path, &dir.path().join("crash/s.redb"), true);
        crash_copy(&path, &dir.path().join("nolog/s.redb"), false);

        // The shard file alone lacks the writes after its last checkpoint: those
        // were made durable by the log alone.
        let bare = Shard::open(&dir.path().join("nolog/s.redb"), false).unwrap();
        let r = bare.reader().unwrap();
        assert!(r.info().unwrap().update_seq < before.update_seq);
        assert!(r.doc_info("tail").unwrap().is_none());
        drop(bare);

        // With the log, every acknowledged write is back.
        let crashed = dir.path().join("crash/s.redb");
        let copy = Shard::open(&crashed, false).unwrap();
        let r = copy.reader().unwrap();
        let after = r.info().unwrap();
        assert_eq!(
            (after.update_seq, after.doc_count, after.doc_del_count),
            (before.update_seq, before.doc_count, before.doc_del_count)
        );
        let a = r.doc_info("a").unwrap().unwrap();
        assert_eq!(a.tree.leaves().len(), 2, "the replicated conflict is back");
        assert!(a.tree.contains(&a2));
        let b = r.rev_body("b", &b1).unwrap().unwrap();
        let data = r.attachment(&b.attachments[0].digest).unwrap();
        assert_eq!(data.as_deref(), Some(&b"bee"[..]));
        assert!(r.doc_info("m299").unwrap().is_some());
        assert!(r.doc_info("big00-000").unwrap().is_some());
        assert!(r.doc_info("big11-099").unwrap().is_some());
        assert!(r.doc_info("tail").unwrap().is_some());
        assert_eq!(r.local_doc("_local/cp").unwrap().unwrap().rev, 1);

        // Writing on continues from the recovered state, and survives a reopen.
        let b2 = write1(&copy, edit("b", Some(&b1), "{}")).await.unwrap();
        drop(copy);
        let copy = Shard::open(&crashed, false).unwrap();
        let r = copy.reader().unwrap();
        assert_eq!(r.info().unwrap().update_seq, before.update_seq + 1);
        assert_eq!(
            r.doc_info("b").unwrap().unwrap().tree.winner().unwrap().rev,
            b2
        );
        drop(shard);
    });
}

#[test]
fn a_new_shard_ignores_a_stray_log_of_an_earlier_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let rt = rt();
    rt.block_on(async {
        let shard = Shard::open(&path, true).unwrap();
        write1(&shard, edit("old", None, "{}")).await.unwrap();
        crash_copy(&path, &dir.path().join("old/s.redb"), true);
        drop(shard);
        Shard::remove_files(&path).unwrap();
        assert!(!path.exists());
        // The crashed copy's log is put back beside a shard file that no longer
        // exists: the new shard must not take its records.
        std::fs::copy(
            dir.path().join("old/s.redb-log"),
            dir.path().join("s.redb-log"),
        )
        .unwrap();
        let shard = Shard::open(&path, true).unwrap();
        let r = shard.reader().unwrap();
        assert!(r.doc_info("old").unwrap().is_none());
        assert_eq!(r.info().unwrap().update_seq, 0);
    });
}
