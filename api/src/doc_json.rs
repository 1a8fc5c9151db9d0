//! Documents as JSON: reading what clients send (special `_` fields, inline
//! attachments, `_revisions`) and rendering stored revisions back.

use crate::att_data::{new_data, Compression};
use crate::error::{ApiError, ApiResult};
use crate::response::{push_json, push_str};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chaise_storage::{AttachmentInfo, DocInfo, DocUpdate, EditKind, NewAttachment, Rev};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A document body as a client sent it, split into its parts.
#[derive(Debug, Default)]
pub struct ParsedDoc {
    /// `_id`.
    pub id: Option<String>,
    /// `_rev`.
    pub rev: Option<Rev>,
    /// `_deleted`.
    pub deleted: bool,
    /// User fields as compact JSON.
    pub body: Vec<u8>,
    /// `_attachments`.
    pub attachments: Vec<NewAttachment>,
    /// `_revisions` as (start, ids).
    pub revisions: Option<(u64, Vec<String>)>,
    /// Attachments marked `"follows": true`, whose data comes in later parts of a
    /// `multipart/related` body; each holds a placeholder in `attachments`.
    pub follows: Vec<Follows>,
    /// `revpos` given with inline data attachments, by name: a replicated edit
    /// (`new_edits=false`) keeps it, as CouchDB does.
    pub data_revpos: Vec<(String, u64)>,
}

/// An attachment whose data follows the document in a multipart body.
#[derive(Debug, Clone)]
pub struct Follows {
    /// Its place in `ParsedDoc::attachments`.
    pub index: usize,
    /// Attachment name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// `encoding` the sender applied (its data then arrives encoded).
    pub encoding: Option<String>,
    /// `length` (decoded), when given.
    pub length: Option<u64>,
    /// `revpos`, when given.
    pub revpos: Option<u64>,
}

/// Parses a revision string as CouchDB's `couch_doc:parse_rev`: split at the first
/// `-`, the prefix must be an integer (an optional `+` allowed), and an id of 32
/// characters must be hex (kept lowercase, as CouchDB stores it decoded). Any other
/// id, even an empty one (`"1-"`), is a well-formed revision that may simply not
/// exist.
pub fn parse_rev(s: &str) -> ApiResult<Rev> {
    let bad = || ApiError::bad_request("Invalid rev format");
    let (prefix, id) = s.split_once('-').ok_or_else(bad)?;
    let digits = prefix.strip_prefix('+').unwrap_or(prefix);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let pos = digits.parse::<u64>().map_err(|_| bad())?;
    let id = if pos != 0 && id.len() == 32 {
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        id.to_ascii_lowercase()
    } else {
        id.to_string()
    };
    Ok(Rev { pos, id })
}

/// Checks a document id against CouchDB's rules.
pub fn validate_doc_id(id: &str) -> ApiResult<()> {
    if id.is_empty() {
        return Err(ApiError::illegal_docid("Document id must not be empty"));
    }
    if id == "_design/" || id == "_local/" {
        return Err(ApiError::illegal_docid(format!(
            "Illegal document id `{id}`"
        )));
    }
    if id.starts_with('_') && !id.starts_with("_design/") && !id.starts_with("_local/") {
        return Err(ApiError::illegal_docid(
            "Only reserved document ids may start with underscore.",
        ));
    }
    Ok(())
}

/// Refuses attachment names CouchDB refuses on document writes
/// (`chttpd_db:validate_attachment_name`).
pub fn validate_attachment_name(name: &str) -> ApiResult<()> {
    if name.starts_with('_') {
        return Err(ApiError::bad_request(format!(
            "Attachment name '{name}' starts with prohibited character '_'"
        )));
    }
    Ok(())
}

/// [`validate_attachment_name`] for every attachment of a document.
pub fn validate_attachment_names(doc: &ParsedDoc) -> ApiResult<()> {
    doc.attachments
        .iter()
        .try_for_each(|a| validate_attachment_name(a.name()))
}

/// Reads an attachment's `digest` field (`md5-<base64>`).
pub fn parse_digest(s: &str) -> Option<[u8; 16]> {
    let b64 = s.strip_prefix("md5-")?;
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// Formats a digest as CouchDB does.
pub fn format_digest(d: &[u8; 16]) -> String {
    format!("md5-{}", STANDARD.encode(d))
}

fn parse_attachments(
    v: Value,
    follows: &mut Vec<Follows>,
    revpos_of: &mut Vec<(String, u64)>,
) -> ApiResult<Vec<NewAttachment>> {
    let Value::Object(map) = v else {
        return Err(ApiError::doc_validation(
            "Bad special document member: _attachments",
        ));
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, att) in map {
        let Value::Object(att) = att else {
            return Err(ApiError::bad_request(format!("Bad attachment: {name}")));
        };
        let content_type = att
            .get("content_type")
            .and_then(|v| v.as_str())
            .unwrap_or("application/octet-stream")
            .to_string();
        if att.get("stub").and_then(|v| v.as_bool()) == Some(true) {
            let info = att
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(parse_digest)
                .map(|digest| AttachmentInfo {
                    name: name.clone(),
                    content_type: content_type.clone(),
                    digest,
                    length: att.get("length").and_then(|v| v.as_u64()).unwrap_or(0),
                    revpos: att.get("revpos").and_then(|v| v.as_u64()).unwrap_or(0),
                    encoding: att
                        .get("encoding")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    encoded_length: att.get("encoded_length").and_then(|v| v.as_u64()),
                });
            out.push(NewAttachment::Stub { name, info });
        } else if att.get("follows").and_then(|v| v.as_bool()) == Some(true) {
            follows.push(Follows {
                index: out.len(),
                name: name.clone(),
                content_type,
                encoding: att
                    .get("encoding")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                length: att.get("length").and_then(|v| v.as_u64()),
                revpos: att.get("revpos").and_then(|v| v.as_u64()),
            });
            out.push(NewAttachment::Stub { name, info: None });
        } else if let Some(data) = att.get("data") {
            let data = data
                .as_str()
                .and_then(|s| STANDARD.decode(s.as_bytes()).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid attachment data for {name}"))
                })?;
            if let Some(revpos) = att.get("revpos").and_then(|v| v.as_u64()) {
                revpos_of.push((name.clone(), revpos));
            }
            out.push(NewAttachment::data(name, content_type, data));
        } else {
            return Err(ApiError::bad_request(format!(
                "Attachment {name} has neither data nor stub"
            )));
        }
    }
    Ok(out)
}

/// Splits a client's document object into its parts, refusing unknown `_` fields.
pub fn parse_doc(obj: Map<String, Value>) -> ApiResult<ParsedDoc> {
    let mut doc = ParsedDoc::default();
    let mut body = Map::new();
    for (k, v) in obj {
        if !k.starts_with('_') {
            body.insert(k, v);
            continue;
        }
        match k.as_str() {
            // As `couch_doc:transfer_fields`: the id is checked wherever it appears.
            "_id" => match v {
                Value::String(s) => {
                    validate_doc_id(&s)?;
                    doc.id = Some(s)
                }
                _ => return Err(ApiError::illegal_docid("Document id must be a string")),
            },
            "_rev" => match v {
                Value::String(s) => doc.rev = Some(parse_rev(&s)?),
                _ => return Err(ApiError::bad_request("Invalid rev format")),
            },
            "_deleted" if v.is_boolean() => doc.deleted = v.as_bool().unwrap_or(false),
            "_attachments" => {
                doc.attachments = parse_attachments(v, &mut doc.follows, &mut doc.data_revpos)?
            }
            "_revisions" if v.is_object() => doc.revisions = Some(parse_revisions(&v)?),
            "_revs_info" | "_conflicts" | "_deleted_conflicts" | "_local_seq" | "_access" => {}
            _ => {
                return Err(ApiError::doc_validation(format!(
                    "Bad special document member: {k}"
                )))
            }
        }
    }
    doc.body = serde_json::to_vec(&Value::Object(body)).unwrap_or_else(|_| b"{}".to_vec());
    Ok(doc)
}

/// Reads `_revisions` with `couch_doc`'s checks and messages.
fn parse_revisions(v: &Value) -> ApiResult<(u64, Vec<String>)> {
    let start = match v.get("start") {
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.as_u64(),
        _ => {
            return Err(ApiError::doc_validation(
                "_revisions.start isn't an integer.",
            ))
        }
    };
    let Some(Value::Array(raw_ids)) = v.get("ids") else {
        return Err(ApiError::doc_validation("_revisions.ids isn't a array."));
    };
    // A negative start cannot name a revision.
    let start = start.ok_or_else(|| ApiError::bad_request("Invalid rev format"))?;
    let mut ids = Vec::with_capacity(raw_ids.len());
    for id in raw_ids {
        let Value::String(id) = id else {
            return Err(ApiError::doc_validation("RevId isn't a string"));
        };
        if start != 0 && id.len() == 32 {
            if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::doc_validation("RevId isn't a valid hexadecimal"));
            }
            ids.push(id.to_ascii_lowercase());
        } else {
            ids.push(id.clone());
        }
    }
    if ids.is_empty() || ids.iter().any(String::is_empty) {
        return Err(ApiError::bad_request("Invalid rev format"));
    }
    Ok((start, ids))
}

/// A replicated revision keeps the revpos its inline attachments were sent with
/// (CouchDB never recomputes it for `new_edits=false`): such data is stored with
/// the sender's metadata.
fn keep_sent_revpos(attachments: &mut [NewAttachment], sent: &[(String, u64)]) {
    for a in attachments.iter_mut() {
        let NewAttachment::Data {
            name,
            content_type,
            data,
            encoding,
            length,
        } = a
        else {
            continue;
        };
        let Some(revpos) = sent.iter().find(|(n, _)| n == name).map(|(_, r)| *r) else {
            continue;
        };
        let info = AttachmentInfo {
            name: name.clone(),
            content_type: content_type.clone(),
            digest: chaise_storage::rev_id::md5_digest(data),
            length: *length,
            revpos,
            encoded_length: encoding.as_ref().map(|_| data.len() as u64),
            encoding: encoding.clone(),
        };
        *a = NewAttachment::Replica {
            info,
            data: std::mem::take(data),
        };
    }
}

/// Turns a parsed document into a storage update for document `id`; new
/// identity-encoded data of compressible types is gzip-encoded on the way.
pub fn to_update(
    doc: ParsedDoc,
    id: String,
    new_edits: bool,
    comp: &Compression,
) -> ApiResult<DocUpdate> {
    if let Some(f) = doc.follows.first() {
        return Err(ApiError::bad_request(format!(
            "Attachment `{}` follows but the body is not multipart/related",
            f.name
        )));
    }
    let mut attachments = Vec::with_capacity(doc.attachments.len());
    for a in doc.attachments {
        attachments.push(match a {
            NewAttachment::Data {
                name,
                content_type,
                data,
                encoding: None,
                ..
            } => new_data(comp, name, content_type, data)?,
            other => other,
        });
    }
    if !new_edits {
        keep_sent_revpos(&mut attachments, &doc.data_revpos);
    }
    let kind =
        if new_edits {
            EditKind::Interactive { parent: doc.rev }
        } else {
            match (doc.revisions, doc.rev) {
                (Some((start, ids)), rev) => {
                    if let Some(rev) = rev {
                        if rev.pos != start || ids.first() != Some(&rev.id) {
                            return Err(ApiError::bad_request(
                                "Document rev and _revisions have different values",
                            ));
                        }
                    }
                    if start == 0 || ids.len() as u64 > start {
                        return Err(ApiError::bad_request("Invalid rev format"));
                    }
                    EditKind::Replicated { pos: start, ids }
                }
                (None, Some(rev)) => {
                    if rev.pos == 0 {
                        return Err(ApiError::bad_request("Invalid rev format"));
                    }
                    EditKind::Replicated {
                        pos: rev.pos,
                        ids: vec![rev.id],
                    }
                }
                (None, None) => return Err(ApiError::bad_request(
                    "When `new_edits: false`, the document needs `_rev` or `_revisions` specified",
                )),
            }
        };
    Ok(DocUpdate {
        id,
        kind,
        deleted: doc.deleted,
        body: doc.body,
        attachments,
    })
}

/// What to add to a rendered document.
#[derive(Debug, Clone, Default)]
pub struct RenderOpts {
    /// `_revisions`.
    pub revs: bool,
    /// `_revs_info`.
    pub revs_info: bool,
    /// `_conflicts`.
    pub conflicts: bool,
    /// `_deleted_conflicts`.
    pub deleted_conflicts: bool,
    /// `_local_seq`.
    pub local_seq: bool,
    /// Inline every attachment's data.
    pub attachments: bool,
    /// Inline only attachments changed after these revisions.
    pub atts_since: Option<Vec<Rev>>,
    /// Show `encoding`/`encoded_length`.
    pub att_encoding_info: bool,
    /// Attachments that would go inline are marked `"follows": true` instead
    /// (their data goes in multipart parts).
    pub follows: bool,
}

impl RenderOpts {
    /// Whether the attachment's data goes inline: with `attachments=true`, all of
    /// them, or with `atts_since` only those changed after the newest given rev.
    pub fn inline(&self, att: &AttachmentInfo) -> bool {
        self.attachments
            && match &self.atts_since {
                Some(since) => att.revpos > since.iter().map(|r| r.pos).max().unwrap_or(0),
                None => true,
            }
    }
}

/// One revision to render.
pub struct RenderRev<'a> {
    /// Document id.
    pub id: &'a str,
    /// The revision.
    pub rev: &'a Rev,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// User fields (compact JSON object).
    pub body: &'a [u8],
    /// Attachments.
    pub attachments: &'a [AttachmentInfo],
    /// The document's tree (for revs, conflicts...).
    pub info: &'a DocInfo,
}

/// Renders a revision as CouchDB does, key order included. `data` holds the
/// bytes of attachments to inline.
pub fn render_doc(
    out: &mut Vec<u8>,
    r: &RenderRev<'_>,
    opts: &RenderOpts,
    data: &HashMap<[u8; 16], Vec<u8>>,
) {
    open_doc(out, r.id, &r.rev.to_string(), r.body);
    // `couch_doc:to_json_body`: the flag follows the body's fields.
    if r.deleted {
        out.extend_from_slice(b",\"_deleted\":true");
    }
    let path = if opts.revs || opts.revs_info {
        r.info.tree.path_to(r.rev).unwrap_or_default()
    } else {
        Vec::new()
    };
    if opts.revs {
        out.extend_from_slice(b",\"_revisions\":{\"start\":");
        out.extend_from_slice(r.rev.pos.to_string().as_bytes());
        out.extend_from_slice(b",\"ids\":");
        let ids: Vec<Value> = path
            .iter()
            .map(|(rev, _)| Value::String(rev.id.clone()))
            .collect();
        push_json(out, &Value::Array(ids));
        out.push(b'}');
    }
    if opts.revs_info {
        let infos: Vec<Value> = path
            .iter()
            .enumerate()
            .map(|(i, (rev, deleted))| {
                let status = if *deleted {
                    "deleted"
                } else if i == 0 {
                    "available"
                } else {
                    "missing"
                };
                serde_json::json!({"rev": rev.to_string(), "status": status})
            })
            .collect();
        out.extend_from_slice(b",\"_revs_info\":");
        push_json(out, &Value::Array(infos));
    }
    // `couch_db:doc_meta_info` order: revs_info, conflicts, deleted_conflicts, local_seq.
    if opts.conflicts || opts.deleted_conflicts {
        let leaves = r.info.tree.leaves();
        let others = |deleted: bool| -> Vec<Value> {
            leaves
                .iter()
                .filter(|l| l.deleted == deleted && &l.rev != r.rev)
                .map(|l| Value::String(l.rev.to_string()))
                .collect()
        };
        if opts.conflicts {
            let c = others(false);
            if !c.is_empty() {
                out.extend_from_slice(b",\"_conflicts\":");
                push_json(out, &Value::Array(c));
            }
        }
        if opts.deleted_conflicts {
            let c = others(true);
            if !c.is_empty() {
                out.extend_from_slice(b",\"_deleted_conflicts\":");
                push_json(out, &Value::Array(c));
            }
        }
    }
    if opts.local_seq {
        out.extend_from_slice(b",\"_local_seq\":");
        out.extend_from_slice(r.info.seq.to_string().as_bytes());
    }
    if !r.attachments.is_empty() {
        out.extend_from_slice(b",\"_attachments\":{");
        for (i, a) in r.attachments.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, &a.name);
            out.push(b':');
            push_json(
                out,
                &attachment_json(a, opts, data.get(&a.digest).filter(|_| opts.inline(a))),
            );
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// One attachment entry: a stub, or the data inline.
pub fn attachment_json(a: &AttachmentInfo, opts: &RenderOpts, data: Option<&Vec<u8>>) -> Value {
    let mut m = Map::new();
    m.insert("content_type".into(), Value::String(a.content_type.clone()));
    m.insert("revpos".into(), a.revpos.into());
    m.insert("digest".into(), Value::String(format_digest(&a.digest)));
    match data {
        Some(d) => {
            m.insert("data".into(), Value::String(STANDARD.encode(d)));
        }
        None if opts.follows && opts.inline(a) => {
            m.insert("length".into(), a.length.into());
            m.insert("follows".into(), Value::Bool(true));
        }
        None => {
            m.insert("length".into(), a.length.into());
            m.insert("stub".into(), Value::Bool(true));
        }
    }
    if opts.att_encoding_info {
        if let Some(enc) = &a.encoding {
            m.insert("encoding".into(), Value::String(enc.clone()));
            m.insert(
                "encoded_length".into(),
                a.encoded_length.unwrap_or(a.length).into(),
            );
        }
    }
    Value::Object(m)
}

/// Renders a `_local` document.
pub fn render_local(out: &mut Vec<u8>, id: &str, rev: u64, body: &[u8]) {
    open_doc(out, id, &format!("0-{rev}"), body);
    out.push(b'}');
}

/// Writes `{"_id":…,"_rev":…` followed by the stored body's own fields, leaving
/// the object open for the members that come after them.
fn open_doc(out: &mut Vec<u8>, id: &str, rev: &str, body: &[u8]) {
    out.extend_from_slice(b"{\"_id\":");
    push_str(out, id);
    out.extend_from_slice(b",\"_rev\":");
    push_str(out, rev);
    let inner = body
        .strip_prefix(b"{")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(b"");
    if !inner.is_empty() {
        out.push(b',');
        out.extend_from_slice(inner);
    }
}
