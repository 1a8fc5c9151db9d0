//! Document endpoints: `GET|HEAD|PUT|DELETE|COPY /{db}/{docid}`, `_design/` and
//! `_local/` documents, and the write path shared with `POST /{db}`.

use crate::att_data::{pieces_len, receive, stream_body, Compression, Incoming, Piece};
use crate::doc_json::{
    self, parse_rev, render_doc, render_local, ParsedDoc, RenderOpts, RenderRev,
};
use crate::error::{doc_error_code, ApiError, ApiResult};
use crate::handlers::users;
use crate::multipart;
use crate::request::Req;
use crate::response::{empty, head_of, json, json_bytes, with_header};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::ClusterError;
use chaise_cluster::{OpenedDoc, RevSelector};
use chaise_storage::{DocError, NewAttachment, Rev};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Dispatches a request on a regular or design document.
pub async fn handle(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    match req.method {
        Method::GET => get(state, req, ctx, id).await,
        Method::HEAD => Ok(head_of(get(state, req, ctx, id).await?)),
        Method::PUT => put(state, req, ctx, id).await,
        Method::DELETE => delete(state, req, ctx, id).await,
        ref m if m.as_str() == "COPY" => copy(state, req, ctx, id).await,
        _ => Err(not_allowed("GET,HEAD,PUT,DELETE,COPY")),
    }
}

/// Render options from the query string.
pub fn render_opts(req: &Req) -> ApiResult<RenderOpts> {
    let meta = req.bool_param("meta", false)?;
    let atts_since = match req.json_param("atts_since")? {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|r| {
                    r.as_str()
                        .ok_or_else(|| ApiError::bad_request("Invalid rev format"))
                        .and_then(parse_rev)
                })
                .collect::<ApiResult<Vec<_>>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("atts_since must be a list of revs")),
    };
    Ok(RenderOpts {
        revs: req.bool_param("revs", false)?,
        revs_info: meta || req.bool_param("revs_info", false)?,
        conflicts: meta || req.bool_param("conflicts", false)?,
        deleted_conflicts: meta || req.bool_param("deleted_conflicts", false)?,
        local_seq: req.bool_param("local_seq", false)?,
        attachments: req.bool_param("attachments", false)? || atts_since.is_some(),
        atts_since,
        att_encoding_info: req.bool_param("att_encoding_info", false)?,
        follows: false,
    })
}

/// Fetches the data of the attachments that `opts` inlines.
pub async fn inline_data(
    state: &AppState,
    db: &str,
    id: &str,
    atts: &[chaise_storage::AttachmentInfo],
    opts: &RenderOpts,
) -> ApiResult<HashMap<[u8; 16], Vec<u8>>> {
    let mut data = HashMap::new();
    if opts.follows {
        return Ok(data);
    }
    for a in atts.iter().filter(|a| opts.inline(a)) {
        if let Some(bytes) = state.coordinator.attachment_data(db, id, a.digest).await? {
            data.insert(a.digest, crate::att_data::decoded(a, bytes)?);
        }
    }
    Ok(data)
}

/// Renders one opened revision (with its attachments' data when asked).
pub async fn render_rev(
    state: &AppState,
    db: &str,
    id: &str,
    doc: &OpenedDoc,
    rev: &chaise_cluster::OpenedRev,
    opts: &RenderOpts,
    out: &mut Vec<u8>,
) -> ApiResult<()> {
    let (body, atts): (&[u8], &[chaise_storage::AttachmentInfo]) = match &rev.body {
        Some(b) => (&b.body, &b.attachments),
        None => (b"{}", &[]),
    };
    let opts = &effective_opts(doc, &rev.rev, opts);
    let data = inline_data(state, db, id, atts, opts).await?;
    render_doc(
        out,
        &RenderRev {
            id,
            rev: &rev.rev,
            deleted: rev.deleted,
            body,
            attachments: atts,
            info: &doc.info,
        },
        opts,
        &data,
    );
    Ok(())
}

/// `opts` for rendering `rev`: `atts_since` narrowed to the newest given revision
/// on its own path.
fn effective_opts(doc: &OpenedDoc, rev: &Rev, opts: &RenderOpts) -> RenderOpts {
    match &opts.atts_since {
        Some(since) => RenderOpts {
            atts_since: Some(since_ancestor(doc, rev, since)),
            ..opts.clone()
        },
        None => opts.clone(),
    }
}

/// `couch_db:find_ancestor_rev_pos`: of the `atts_since` revisions, the newest one
/// on `rev`'s own path (none: every attachment is sent).
fn since_ancestor(doc: &OpenedDoc, rev: &Rev, since: &[Rev]) -> Vec<Rev> {
    doc.info
        .tree
        .path_to(rev)
        .unwrap_or_default()
        .into_iter()
        .map(|(r, _)| r)
        .find(|r| since.contains(r))
        .into_iter()
        .collect()
}

/// Drops the options CouchDB computes as document "meta" (`couch_db:doc_meta_info`);
/// they only exist when the winning revision is opened, not a given one.
pub fn without_meta(opts: &RenderOpts) -> RenderOpts {
    RenderOpts {
        revs_info: false,
        conflicts: false,
        deleted_conflicts: false,
        local_seq: false,
        ..opts.clone()
    }
}

/// Whether rendering the winner with `opts` adds meta fields (then CouchDB sends no
/// ETag and ignores `If-None-Match`). Empty `_conflicts` lists are not meta.
fn has_meta(doc: &OpenedDoc, rev: &Rev, opts: &RenderOpts) -> bool {
    let other = |deleted: bool| {
        doc.info
            .tree
            .leaves()
            .iter()
            .any(|l| l.deleted == deleted && &l.rev != rev)
    };
    opts.revs_info
        || opts.local_seq
        || (opts.conflicts && other(false))
        || (opts.deleted_conflicts && other(true))
}

fn open_revs_param(req: &Req) -> ApiResult<Option<RevSelector>> {
    let Some(raw) = req.param("open_revs") else {
        return Ok(None);
    };
    let latest = req.bool_param("latest", false)?;
    if raw == "all" {
        return Ok(Some(RevSelector::AllLeaves));
    }
    let list: Value = serde_json::from_str(raw)
        .map_err(|_| ApiError::bad_request("Invalid JSON in open_revs"))?;
    let revs = list
        .as_array()
        .ok_or_else(|| ApiError::bad_request("open_revs must be a list of revs or \"all\""))?
        .iter()
        .map(|r| {
            r.as_str()
                .ok_or_else(|| ApiError::bad_request("Invalid rev format"))
                .and_then(parse_rev)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Some(RevSelector::Revs { revs, latest }))
}

async fn get(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    if ctx.db == users::USERS_DB {
        users::check_read(ctx, &req.user, id)?;
    }
    let opts = render_opts(req)?;
    if let Some(sel) = open_revs_param(req)? {
        return open_revs(state, req, ctx, id, sel, &without_meta(&opts)).await;
    }
    let wanted = match req.param("rev") {
        Some(r) => Some(parse_rev(r)?),
        None => None,
    };
    // As CouchDB 3.5's chttpd_db: with latest=true the winner is opened whatever
    // ?rev= says.
    let wanted = if req.bool_param("latest", false)? {
        None
    } else {
        wanted
    };
    let (sel, opts) = match &wanted {
        Some(rev) => (
            RevSelector::Rev {
                rev: rev.clone(),
                latest: false,
            },
            without_meta(&opts),
        ),
        None => (RevSelector::Winner, opts),
    };
    let doc = state
        .coordinator
        .open_doc_r(ctx.db, id, sel, r_param(req)?)
        .await?
        .ok_or_else(|| ApiError::not_found("missing"))?;
    let rev = match doc.revs.first() {
        Some(Ok(r)) => r.clone(),
        _ => return Err(ApiError::not_found("missing")),
    };
    if wanted.is_none() && rev.deleted {
        return Err(ApiError::not_found("deleted"));
    }
    if rev.body.is_none() && !rev.deleted {
        return Err(ApiError::not_found("missing"));
    }
    let etag = (!has_meta(&doc, &rev.rev, &opts)).then(|| format!("\"{}\"", rev.rev));
    if let Some(etag) = &etag {
        if if_none_match(req, etag) {
            return Ok(with_header(empty(StatusCode::NOT_MODIFIED), "etag", etag));
        }
    }
    let resp = if opts.attachments && multipart::accepts(req, "multipart/related") {
        let boundary = multipart::boundary();
        let mut pieces = Vec::new();
        let written =
            multipart_rev(state, ctx.db, id, &doc, &rev, &opts, &boundary, &mut pieces).await?;
        multipart_response(state, ctx.db, id, pieces, &written.content_type(&boundary))
    } else {
        let mut out = Vec::with_capacity(256);
        render_rev(state, ctx.db, id, &doc, &rev, &opts, &mut out).await?;
        out.push(b'\n');
        json_bytes(StatusCode::OK, out)
    };
    Ok(match &etag {
        Some(etag) => with_header(resp, "etag", etag),
        None => resp,
    })
}

/// `GET ?open_revs=` as JSON: `{"ok": doc}` / `{"missing": rev}` items, in the order
/// fabric_doc_open_revs sorts them (found revisions first, each group by
/// generation then rev id).
async fn open_revs(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    id: &str,
    sel: RevSelector,
    opts: &RenderOpts,
) -> ApiResult<Response> {
    let requested: Vec<Rev> = match &sel {
        RevSelector::Revs { revs, .. } => revs.clone(),
        _ => Vec::new(),
    };
    let all = matches!(sel, RevSelector::AllLeaves);
    // (missing?, rev, index of the opened revision)
    let mut items: Vec<(bool, Rev, Option<usize>)> = Vec::new();
    let opened = state
        .coordinator
        .open_doc_r(ctx.db, id, sel, r_param(req)?)
        .await?;
    match &opened {
        None if all => return Err(ApiError::not_found("missing")),
        None => items.extend(requested.iter().map(|r| (true, r.clone(), None))),
        Some(doc) => {
            for (i, r) in doc.revs.iter().enumerate() {
                match r {
                    Ok(rev) if rev.body.is_some() || rev.deleted => {
                        items.push((false, rev.rev.clone(), Some(i)))
                    }
                    Ok(rev) => items.push((true, rev.rev.clone(), None)),
                    Err(rev) => items.push((true, rev.clone(), None)),
                }
            }
        }
    }
    items.sort_by(|a, b| (a.0, a.1.pos, &a.1.id).cmp(&(b.0, b.1.pos, &b.1.id)));
    items.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let found = |i: Option<usize>| match (&opened, i) {
        (Some(doc), Some(i)) => match doc.revs.get(i) {
            Some(Ok(rev)) => Some((doc, rev)),
            _ => None,
        },
        _ => None,
    };
    let missing = |rev: &Rev| json!({"missing": rev.to_string()}).to_string().into_bytes();
    if multipart::accepts(req, "multipart/mixed") {
        let outer = multipart::boundary();
        let inner = multipart::boundary();
        let mut pieces = vec![Piece::Bytes(format!("--{outer}").into_bytes())];
        for (_, rev, i) in &items {
            match found(*i) {
                Some((doc, opened)) => {
                    let mut parts = Vec::new();
                    let ct =
                        multipart_rev(state, ctx.db, id, doc, opened, opts, &inner, &mut parts)
                            .await?
                            .content_type(&inner);
                    pieces.push(Piece::Bytes(
                        format!("\r\nContent-Type: {ct}\r\n\r\n").into_bytes(),
                    ));
                    pieces.extend(parts);
                }
                None => {
                    let mut part =
                        b"\r\nContent-Type: application/json; error=\"true\"\r\n\r\n".to_vec();
                    part.extend(missing(rev));
                    pieces.push(Piece::Bytes(part));
                }
            }
            pieces.push(Piece::Bytes(format!("\r\n--{outer}").into_bytes()));
        }
        pieces.push(Piece::Bytes(b"--".to_vec()));
        return Ok(multipart_response(
            state,
            ctx.db,
            id,
            pieces,
            &multipart::content_type("mixed", &outer),
        ));
    }
    let mut out = b"[".to_vec();
    for (n, (_, rev, i)) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        match found(*i) {
            Some((doc, opened)) => {
                out.extend_from_slice(b"{\"ok\":");
                render_rev(state, ctx.db, id, doc, opened, opts, &mut out).await?;
                out.push(b'}');
            }
            None => out.extend(missing(rev)),
        }
    }
    out.extend_from_slice(b"]\n");
    Ok(json_bytes(StatusCode::OK, out))
}

/// A 200 streaming `pieces` with this content type (and its length when known).
fn multipart_response(
    state: &AppState,
    db: &str,
    id: &str,
    pieces: Vec<Piece>,
    content_type: &str,
) -> Response {
    let length = pieces_len(&pieces);
    let resp = Response::new(stream_body(state, db, id, pieces));
    let resp = with_header(resp, "content-type", content_type);
    match length {
        Some(n) => with_header(resp, "content-length", &n.to_string()),
        None => resp,
    }
}

/// One revision as CouchDB's multipart document (`couch_doc:doc_to_multi_part_stream`
/// with `attachments, follows, att_encoding_info`): adds its parts to `out` and
/// returns how they were written. Every attachment that `opts.atts_since` does
/// not make a stub follows, whatever `opts.attachments` says.
#[allow(clippy::too_many_arguments)]
pub async fn multipart_rev(
    state: &AppState,
    db: &str,
    id: &str,
    doc: &OpenedDoc,
    rev: &chaise_cluster::OpenedRev,
    opts: &RenderOpts,
    boundary: &str,
    out: &mut Vec<Piece>,
) -> ApiResult<multipart::DocBody> {
    let opts = RenderOpts {
        attachments: true,
        follows: true,
        att_encoding_info: true,
        ..opts.clone()
    };
    let mut json = Vec::with_capacity(256);
    render_rev(state, db, id, doc, rev, &opts, &mut json).await?;
    let effective = effective_opts(doc, &rev.rev, &opts);
    let follows: Vec<&chaise_storage::AttachmentInfo> = rev
        .body
        .iter()
        .flat_map(|b| b.attachments.iter())
        .filter(|a| effective.inline(a))
        .collect();
    Ok(multipart::doc_parts(boundary, json, &follows, true, out))
}

/// Whether `If-None-Match` names this ETag (`chttpd:etag_match`: a list split at
/// commas and spaces, `W/` prefixes ignored).
pub fn if_none_match(req: &Req, etag: &str) -> bool {
    req.header("if-none-match").is_some_and(|h| {
        h.split([',', ' '])
            .filter(|t| !t.is_empty())
            .any(|t| t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

/// The revision a write names in `?rev=`, the body's `_rev` and `If-Match`; they
/// must agree.
pub fn agreed_rev(req: &Req, body_rev: Option<Rev>) -> ApiResult<Option<Rev>> {
    let query = req.param("rev").map(parse_rev).transpose()?;
    let if_match = req
        .header("if-match")
        .map(|h| parse_rev(h.trim().trim_matches('"')))
        .transpose()?;
    let rev = match (query, body_rev) {
        (Some(q), Some(b)) if q != b => {
            return Err(ApiError::bad_request(
                "Document rev from request body and query string have different values",
            ))
        }
        (q, b) => q.or(b),
    };
    match (rev, if_match) {
        (Some(r), Some(m)) if r != m => Err(ApiError::bad_request(
            "Document rev and etag have different values",
        )),
        (r, m) => Ok(r.or(m)),
    }
}

fn w_param(req: &Req) -> ApiResult<Option<usize>> {
    Ok(req.uint_param("w")?.map(|w| w as usize))
}

/// `?r=`: how many copies a read asks before answering.
pub(crate) fn r_param(req: &Req) -> ApiResult<Option<usize>> {
    Ok(req.uint_param("r")?.map(|r| r as usize))
}

async fn put(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    let content_type = req.header("content-type").unwrap_or("");
    if multipart::media_type(content_type) == "multipart/related" {
        let boundary = multipart::boundary_of(content_type)?;
        return put_multipart(state, req, ctx, id, boundary).await;
    }
    let mut parsed = doc_json::parse_doc(doc_object(req)?)?;
    doc_json::validate_attachment_names(&parsed)?;
    let new_edits = req.bool_param("new_edits", true)?;
    if new_edits {
        parsed.rev = agreed_rev(req, parsed.rev.take())?;
    }
    save(state, req, ctx, parsed, id.to_string(), new_edits).await
}

/// `PUT` of a `multipart/related` body, as CouchDB's replicator and PouchDB send
/// documents with attachments: the JSON document first, then one part per
/// attachment marked `"follows": true`, in the order of `_attachments`. Each part
/// is streamed into the shard copies as it arrives.
async fn put_multipart(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    id: &str,
    boundary: String,
) -> ApiResult<Response> {
    let mut parts = multer::Multipart::new(req.take_stream(), boundary);
    let doc_part = parts
        .next_field()
        .await
        .map_err(multipart::parse_error)?
        .ok_or_else(|| ApiError::bad_request("multipart body without a document part"))?;
    let json = doc_part.bytes().await.map_err(multipart::parse_error)?;
    let obj = match crate::request::parse_json(&json)? {
        Value::Object(m) => m,
        _ => return Err(ApiError::bad_request("Document must be a JSON object")),
    };
    let mut parsed = doc_json::parse_doc(obj)?;
    doc_json::validate_attachment_names(&parsed)?;
    let comp = crate::att_data::Compression::from_config(state);
    let max = state.config_u64("couchdb", "max_attachment_size", 1_073_741_824);
    // Uploads are dropped once the write is done (a no-op for those it used).
    let mut guards = Vec::new();
    for f in std::mem::take(&mut parsed.follows) {
        let field = parts
            .next_field()
            .await
            .map_err(multipart::parse_error)?
            .ok_or_else(|| {
                ApiError::bad_request(format!("Attachment `{}` is missing its data part", f.name))
            })?;
        let incoming = crate::att_data::Incoming {
            db: ctx.db,
            doc_id: id,
            name: f.name,
            content_type: f.content_type,
            encoded: f.encoding.map(|e| (e, f.length.unwrap_or(0))),
            max,
        };
        let (mut att, guard) = crate::att_data::receive(state, &comp, incoming, field).await?;
        if let (NewAttachment::Staged { info, .. }, Some(revpos)) = (&mut att, f.revpos) {
            info.revpos = revpos;
        }
        let slot = parsed
            .attachments
            .get_mut(f.index)
            .ok_or_else(|| ApiError::internal("attachment slot lost"))?;
        *slot = att;
        guards.extend(guard);
    }
    let new_edits = req.bool_param("new_edits", true)?;
    if new_edits {
        parsed.rev = agreed_rev(req, parsed.rev.take())?;
    }
    let resp = save(state, req, ctx, parsed, id.to_string(), new_edits).await;
    drop(guards);
    resp
}

/// The request body as a document object (`couch_doc:from_json_obj`'s error
/// otherwise).
fn doc_object(req: &Req) -> ApiResult<serde_json::Map<String, Value>> {
    match req.json_body()? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request("Document must be a JSON object")),
    }
}

/// Opens the winner as CouchDB's `couch_doc_open(Db, Id, nil, [])` does before a
/// DELETE or COPY: 404 `missing` or `deleted`.
pub(crate) async fn open_winner(
    state: &AppState,
    ctx: &DbCtx<'_>,
    id: &str,
) -> ApiResult<chaise_cluster::OpenedRev> {
    let doc = state
        .coordinator
        .open_doc(ctx.db, id, RevSelector::Winner)
        .await?
        .ok_or_else(|| ApiError::not_found("missing"))?;
    match doc.revs.into_iter().next() {
        Some(Ok(r)) if r.deleted => Err(ApiError::not_found("deleted")),
        Some(Ok(r)) => Ok(r),
        _ => Err(ApiError::not_found("missing")),
    }
}

async fn delete(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    open_winner(state, ctx, id).await?;
    // No rev at all is left to the write, which then conflicts.
    let rev = agreed_rev(req, None)?;
    let parsed = ParsedDoc {
        rev,
        deleted: true,
        body: b"{}".to_vec(),
        ..Default::default()
    };
    let saved = write(state, req, ctx, parsed, id.to_string(), true).await?;
    Ok(saved.response(true, None))
}

async fn copy(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    let source_rev = agreed_rev(req, None)?;
    let dest = req
        .header("destination")
        .ok_or_else(|| ApiError::bad_request("Destination header is mandatory for COPY."))?;
    if dest.starts_with("http://") || dest.starts_with("https://") {
        return Err(ApiError::bad_request("Destination URL must be relative."));
    }
    // couch_httpd_db:parse_copy_destination_header: `id?rev=R`.
    let (dest_id, dest_rev) = match dest.split_once('?') {
        Some((d, qs)) => {
            let rev = qs.split_once('=').map_or(qs, |(_, r)| r);
            (d.to_string(), Some(parse_rev(rev)?))
        }
        None => (dest.to_string(), None),
    };
    let dest_id = percent_encoding::percent_decode_str(&dest_id)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("Destination is not valid UTF-8"))?
        .into_owned();
    doc_json::validate_doc_id(&dest_id)?;
    let src = match source_rev {
        None => open_winner(state, ctx, id).await?,
        Some(rev) => {
            let doc = state
                .coordinator
                .open_doc(ctx.db, id, RevSelector::Rev { rev, latest: false })
                .await?
                .ok_or_else(|| ApiError::not_found("missing"))?;
            match doc.revs.into_iter().next() {
                Some(Ok(r)) if !r.deleted && r.body.is_some() => r,
                _ => return Err(ApiError::not_found("missing")),
            }
        }
    };
    let body = src.body.unwrap_or_else(|| chaise_storage::RevBody {
        body: b"{}".to_vec(),
        attachments: Vec::new(),
    });
    // Attachment data is copied as stored, a piece at a time, into the shard of
    // the destination (never held whole).
    let mut attachments = Vec::with_capacity(body.attachments.len());
    let mut guards = Vec::new();
    for a in &body.attachments {
        let incoming = Incoming {
            db: ctx.db,
            doc_id: &dest_id,
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            encoded: a.encoding.clone().map(|e| (e, a.length)),
            max: u64::MAX,
        };
        let stored = a.encoded_length.unwrap_or(a.length);
        let pieces = stored_pieces(state, ctx.db, id, a.digest, stored);
        let (att, guard) = receive(state, &Compression::never(), incoming, pieces).await?;
        attachments.push(att);
        guards.extend(guard);
    }
    let parsed = ParsedDoc {
        rev: dest_rev,
        body: body.body,
        attachments,
        ..Default::default()
    };
    save(state, req, ctx, parsed, dest_id, true).await
}

/// The stored bytes of an attachment of document `id`, read in pieces.
fn stored_pieces<'a>(
    state: &'a AppState,
    db: &'a str,
    id: &'a str,
    digest: [u8; 16],
    length: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, ClusterError>> + 'a {
    futures_util::stream::try_unfold(0u64, move |offset| async move {
        if offset >= length {
            return Ok(None);
        }
        let piece = state
            .coordinator
            .attachment_range(db, id, digest, offset, COPY_PIECE)
            .await?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ClusterError::Internal("attachment data missing".into()))?;
        let next = offset + piece.len() as u64;
        Ok(Some((bytes::Bytes::from(piece), next)))
    })
}

/// Bytes of attachment data one read of a COPY carries.
const COPY_PIECE: u64 = 1024 * 1024;

/// `s` encoded as `couch_util:url_encode` does (for `Location` headers): only
/// `[A-Za-z0-9_.:-]` stay as is.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A written document, before the response is shaped.
pub struct Saved {
    /// 201, 202 or 200.
    pub status: StatusCode,
    /// The document id.
    pub id: String,
    /// The new revision; `None` for `batch=ok` writes.
    pub rev: Option<Rev>,
}

impl Saved {
    /// `{"ok":true,"id":..,"rev":..}` (no rev for batch writes), with the new rev's
    /// ETag when `etag` and a `Location` header when given.
    pub fn response(&self, etag: bool, location: Option<&str>) -> Response {
        let resp = match &self.rev {
            None => json(self.status, &json!({"ok": true, "id": self.id})),
            Some(rev) => {
                let rev = rev.to_string();
                let resp = json(self.status, &json!({"ok": true, "id": self.id, "rev": rev}));
                if etag {
                    with_header(resp, "etag", &format!("\"{rev}\""))
                } else {
                    resp
                }
            }
        };
        match location {
            Some(l) => with_header(resp, "location", l),
            None => resp,
        }
    }
}

/// Writes one document and answers as CouchDB's PUT does (201/202/200, ETag,
/// absolute Location).
pub async fn save(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    parsed: ParsedDoc,
    id: String,
    new_edits: bool,
) -> ApiResult<Response> {
    let local = id.starts_with("_local/");
    let saved = write(state, req, ctx, parsed, id, new_edits).await?;
    // batch=ok answers carry neither header.
    if local || saved.rev.is_none() {
        return Ok(saved.response(false, None));
    }
    let location = req.absolute_uri(&format!(
        "/{}/{}",
        url_encode(ctx.db),
        url_encode(&saved.id)
    ))?;
    Ok(saved.response(saved.rev.is_some(), Some(&location)))
}

/// Writes one document: validation, the write itself and the status CouchDB
/// gives it (202 for `batch=ok`, whose write errors are not reported).
pub async fn write(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    mut parsed: ParsedDoc,
    id: String,
    new_edits: bool,
) -> ApiResult<Saved> {
    doc_json::validate_doc_id(&id)?;
    if id.starts_with("_local/") {
        return write_local(state, ctx, &id, parsed).await;
    }
    if id.starts_with("_design/") {
        ctx.require_admin(&req.user)?;
    }
    if ctx.db == users::USERS_DB {
        users::before_write(state, ctx, &req.user, &id, &mut parsed).await?;
    }
    let max = state.config_u64("couchdb", "max_document_size", 8_000_000) as usize;
    if parsed.body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "document_too_large",
            id,
        ));
    }
    let deleted = parsed.deleted;
    let batch = req.param("batch") == Some("ok");
    let comp = crate::att_data::Compression::from_config(state);
    let update = doc_json::to_update(parsed, id.clone(), new_edits, &comp)?;
    let w = w_param(req)?;
    let result = state
        .coordinator
        .update_docs(ctx.db, vec![update], w)
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("no write result"))?;
    if batch {
        // CouchDB writes batch=ok documents after answering; a refusal is only logged.
        if let Err(e) = &result.result {
            tracing::info!(db = ctx.db, id, error = %e, "batch write refused");
        }
        return Ok(Saved {
            status: StatusCode::ACCEPTED,
            id,
            rev: None,
        });
    }
    let rev = result.result.map_err(ApiError::from)?;
    let status = if result.accepted {
        StatusCode::ACCEPTED
    } else if deleted {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(Saved {
        status,
        id,
        rev: Some(rev),
    })
}

fn local_rev(rev: Option<&Rev>) -> ApiResult<Option<u64>> {
    match rev {
        None => Ok(None),
        Some(r) if r.pos == 0 => {
            r.id.parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request("Invalid rev format"))
        }
        Some(_) => Err(ApiError::conflict()),
    }
}

async fn write_local(
    state: &AppState,
    ctx: &DbCtx<'_>,
    id: &str,
    parsed: ParsedDoc,
) -> ApiResult<Saved> {
    if !parsed.attachments.is_empty() {
        return Err(ApiError::bad_request(
            "_local documents do not accept attachments.",
        ));
    }
    let rev = local_rev(parsed.rev.as_ref())?;
    let body = (!parsed.deleted).then_some(parsed.body);
    let deleting = body.is_none();
    match state.coordinator.write_local(ctx.db, id, rev, body).await? {
        Ok(n) => {
            let status = if deleting {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(Saved {
                status,
                id: id.to_string(),
                rev: Some(Rev {
                    pos: 0,
                    id: n.to_string(),
                }),
            })
        }
        Err(DocError::NotFound) => Err(ApiError::not_found("missing")),
        Err(e) => {
            let (status, error) = doc_error_code(&e);
            Err(ApiError::new(status, error, e.to_string()))
        }
    }
}

/// Requests on `/{db}/_local/{id}`.
pub async fn local(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    match req.method {
        Method::GET | Method::HEAD => {
            let doc = state
                .coordinator
                .get_local(ctx.db, id)
                .await?
                .ok_or_else(|| ApiError::not_found("missing"))?;
            let mut out = Vec::new();
            render_local(&mut out, id, doc.rev, &doc.body);
            out.push(b'\n');
            let resp = json_bytes(StatusCode::OK, out);
            Ok(if req.method == Method::HEAD {
                head_of(resp)
            } else {
                resp
            })
        }
        Method::PUT => {
            let mut parsed = doc_json::parse_doc(doc_object(req)?)?;
            parsed.rev = agreed_rev(req, parsed.rev.take())?;
            let location =
                req.absolute_uri(&format!("/{}/{}", url_encode(ctx.db), url_encode(id)))?;
            Ok(write_local(state, ctx, id, parsed)
                .await?
                .response(false, Some(&location)))
        }
        Method::DELETE => {
            let rev = agreed_rev(req, None)?;
            let parsed = ParsedDoc {
                rev,
                deleted: true,
                ..Default::default()
            };
            Ok(write_local(state, ctx, id, parsed)
                .await?
                .response(false, None))
        }
        _ => Err(not_allowed("GET,HEAD,PUT,DELETE")),
    }
}
