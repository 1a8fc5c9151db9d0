'use strict';
// Shared helpers for the client compatibility scripts (PouchDB 9 + nano against Chaise).
//
// Every script takes the server URL with credentials as its first argument or in
// CHAISE_URL, e.g. `node pouch_sync.js http://admin:s3cret@127.0.0.1:5984`.

const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-adapter-memory'))
  .plugin(require('pouchdb-replication'))
  .plugin(require('pouchdb-mapreduce'));
const assert = require('assert');
const crypto = require('crypto');

/** The server URL (with credentials), without a trailing slash. */
function serverUrl() {
  const url = process.argv[2] || process.env.CHAISE_URL;
  if (!url) {
    fail('usage: node ' + require('path').basename(process.argv[1]) +
      ' http://user:pass@host:port   (or set CHAISE_URL)');
  }
  return url.replace(/\/+$/, '');
}

/** Prints a message and exits non-zero. */
function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

/** Logs a progress line with the elapsed time. */
const t0 = Date.now();
function log(...args) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...args);
}

/** A unique database name with a prefix. */
function dbName(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomBytes(3).toString('hex')}`;
}

/**
 * A PouchDB on the server. `onFetch(url, opts, response, error)` (optional) sees every
 * HTTP request the adapter makes and its response (or the error when it failed).
 */
function remoteDb(url, name, onFetch) {
  const opts = {};
  if (onFetch) {
    opts.fetch = async (u, o) => {
      let res;
      try {
        res = await PouchDB.fetch(u, o);
      } catch (e) {
        await onFetch(String(u), o || {}, undefined, e);
        throw e;
      }
      await onFetch(String(u), o || {}, res);
      return res;
    };
  }
  return new PouchDB(`${url}/${name}`, opts);
}

/** An in-memory local PouchDB. */
function localDb(name) {
  return new PouchDB(name, { adapter: 'memory' });
}

/** Deterministic pseudo-random bytes for attachment `i`. */
function attBytes(i, size) {
  const out = Buffer.alloc(size);
  let x = (i * 2654435761) >>> 0;
  for (let k = 0; k < size; k++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[k] = x >>> 24;
  }
  return out;
}

/** Where two strings first differ, with a little context. */
function diffStr(na, a, nb, b) {
  a = String(a); b = String(b);
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  const from = Math.max(0, i - 120);
  return `first difference at char ${i}:\n    ${na}: ...${a.slice(from, i + 200)}\n    ${nb}: ...${b.slice(from, i + 200)}`;
}

/** Sorted copy. */
function sorted(a) {
  return [...a].sort();
}

/** Canonical JSON (sorted object keys) for deep comparisons that ignore key order. */
function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

/**
 * Known server deviations that are reported as warnings instead of failures (set
 * CHAISE_STRICT=1 to fail on them too):
 *
 * - revpos: `_bulk_docs` with `new_edits:false` (and `PUT ?new_edits=false`) with an
 *   inline (`data`) attachment stores the new revision's pos as the attachment's
 *   `revpos` instead of the `revpos` the replicator sent. CouchDB keeps the given
 *   revpos on replicated writes (couch_db:update_docs(_, _, _, replicated_changes)
 *   does not call set_new_att_revpos). PouchDB pushes attachments inline, so after a
 *   push the server's revpos differs from PouchDB's for unchanged attachments of
 *   later revisions.
 */
const STRICT = process.env.CHAISE_STRICT === '1';
const warnings = new Map();
function warn(kind, msg) {
  if (!warnings.has(kind)) warnings.set(kind, []);
  warnings.get(kind).push(msg);
}

/** Prints the collected known-deviation warnings. */
function reportWarnings() {
  for (const [kind, msgs] of warnings) {
    console.log(`WARN known server deviation "${kind}": ${msgs.length} occurrence(s), e.g.\n  ${msgs.slice(0, 3).join('\n  ')}`);
  }
}

/** The fields of an attachment that must agree on both ends. */
function attSummary(atts, withRevpos = true) {
  if (!atts) return undefined;
  const out = {};
  for (const name of Object.keys(atts).sort()) {
    const a = atts[name];
    // Like CouchDB, the server stores compressible types (text/*, JSON, ...) gzipped and
    // their digest is the md5 of the gzipped bytes, while PouchDB's is the md5 of the
    // content; the data itself must be identical. Other types must agree on the digest.
    const compressible = /^(text\/|application\/(javascript|json|xml))/.test(a.content_type || '');
    out[name] = { content_type: a.content_type, digest: compressible ? '(gzip)' : a.digest, data: a.data, revpos: withRevpos ? a.revpos : '-' };
  }
  return out;
}

/** A document reduced to what must be identical on both ends. */
function docSummary(doc, withRevpos = true) {
  const d = { ...doc };
  if (d._attachments) d._attachments = attSummary(d._attachments, withRevpos);
  if (d._conflicts) d._conflicts = sorted(d._conflicts);
  return canon(d);
}

/**
 * Every document's leaf revisions, from the changes feed with `style=all_docs`:
 * Map id -> {leaves: sorted revs, deleted: winner deleted}.
 */
async function leafMap(db) {
  const res = await db.changes({ since: 0, style: 'all_docs', batch_size: 5000 });
  const m = new Map();
  for (const r of res.results) {
    if (m.has(r.id)) throw new Error(`${db.name}: _changes lists ${r.id} twice`);
    m.set(r.id, { leaves: sorted(r.changes.map((c) => c.rev)), deleted: !!r.deleted });
  }
  return m;
}

/** Fetches `{id, rev}` pairs with bulkGet (revs, attachments inline) in batches. */
async function fetchRevs(db, pairs) {
  const out = new Map();
  for (let i = 0; i < pairs.length; i += 1000) {
    const res = await db.bulkGet({ docs: pairs.slice(i, i + 1000), revs: true, attachments: true });
    for (const r of res.results) {
      for (const d of r.docs) {
        if (!d.ok) throw new Error(`${db.name}: bulkGet ${r.id}: ${JSON.stringify(d)}`);
        out.set(`${r.id} ${d.ok._rev}`, [docSummary(d.ok), docSummary(d.ok, false)]);
      }
    }
  }
  return out;
}

/**
 * Compares two databases doc by doc and rev by rev: the same ids, the same leaf
 * revisions (conflicts included) with the same bodies, histories and attachments,
 * and the same winners (with `_conflicts`). Throws on the first differences.
 * `conflictIds` are also checked with `open_revs: 'all'`. Returns the leaf map.
 */
async function compareDbs(a, b, conflictIds = []) {
  const [la, lb] = await Promise.all([leafMap(a), leafMap(b)]);
  const problems = [];
  for (const [id, v] of la) {
    const w = lb.get(id);
    if (!w) problems.push(`${id}: only in ${a.name}`);
    else if (canon(v) !== canon(w)) problems.push(`${id}: leaves ${a.name}=${canon(v)} ${b.name}=${canon(w)}`);
  }
  for (const id of lb.keys()) if (!la.has(id)) problems.push(`${id}: only in ${b.name}`);
  if (problems.length) throw new Error(`${problems.length} docs differ:\n  ` + problems.slice(0, 20).join('\n  '));

  // Every leaf revision, body + _revisions + attachments.
  const pairs = [];
  for (const [id, v] of la) for (const rev of v.leaves) pairs.push({ id, rev });
  const [ra, rb] = await Promise.all([fetchRevs(a, pairs), fetchRevs(b, pairs)]);
  for (const { id, rev } of pairs) {
    const k = `${id} ${rev}`;
    const [x, y] = [ra.get(k), rb.get(k)];
    if (x[0] === y[0]) continue;
    if (!STRICT && x[1] === y[1]) warn('revpos', `${k}: ${diffStr(a.name, x[0], b.name, y[0])}`);
    else problems.push(`${k}: ${diffStr(a.name, x[0], b.name, y[0])}`);
  }
  if (problems.length) throw new Error(`${problems.length} revisions differ:\n  ` + problems.slice(0, 10).join('\n  '));

  // Winners, with their conflicts.
  const opts = { include_docs: true, conflicts: true, attachments: true };
  const [wa, wb] = await Promise.all([a.allDocs(opts), b.allDocs(opts)]);
  const live = [...la].filter(([, v]) => !v.deleted).length;
  for (const [db, w] of [[a, wa], [b, wb]]) {
    if (w.rows.length !== live || w.total_rows !== live) {
      problems.push(`${db.name}: allDocs has ${w.rows.length} rows, total_rows ${w.total_rows}; changes says ${live} live docs`);
    }
  }
  const mb = new Map(wb.rows.map((r) => [r.id, r]));
  for (const r of wa.rows) {
    const s = mb.get(r.id);
    if (!s) { problems.push(`${r.id}: winner missing in ${b.name}`); continue; }
    if (r.value.rev !== s.value.rev) problems.push(`${r.id}: winner ${a.name}=${r.value.rev} ${b.name}=${s.value.rev}`);
    else if (docSummary(r.doc, STRICT) !== docSummary(s.doc, STRICT)) {
      problems.push(`${r.id}: winning doc ${diffStr(a.name, docSummary(r.doc), b.name, docSummary(s.doc))}`);
    }
  }
  if (problems.length) throw new Error(`${problems.length} winners differ:\n  ` + problems.slice(0, 10).join('\n  '));

  // open_revs=all on the conflicted docs.
  for (const id of conflictIds) {
    const [oa, ob] = await Promise.all([a.get(id, { open_revs: 'all', revs: true }), b.get(id, { open_revs: 'all', revs: true })]);
    const fa = sorted(oa.map((x) => docSummary(x.ok || x, STRICT)));
    const fb = sorted(ob.map((x) => docSummary(x.ok || x, STRICT)));
    if (canon(fa) !== canon(fb)) problems.push(`${id}: open_revs=all\n    ${a.name}: ${fa}\n    ${b.name}: ${fb}`);
    if (oa.length < 2) problems.push(`${id}: expected a conflict, ${a.name} has ${oa.length} leaves`);
  }
  if (problems.length) throw new Error(`${problems.length} open_revs differ:\n  ` + problems.slice(0, 10).join('\n  '));
  return la;
}

/** Runs `main` and turns any rejection into a clear failure. */
function run(main) {
  main().then(
    () => { reportWarnings(); log('OK'); process.exit(0); },
    (e) => fail(((e && e.stack) || JSON.stringify(e)) + (e && e.request ? '\nrequest: ' + JSON.stringify(e.request) + '\nstatus: ' + e.statusCode + ' ' + e.error + ' ' + e.reason : '')),
  );
}

module.exports = {
  PouchDB, assert, serverUrl, fail, log, dbName, remoteDb, localDb, attBytes, sorted, canon,
  docSummary, leafMap, compareDbs, run, warn, reportWarnings,
};
