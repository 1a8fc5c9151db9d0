'use strict';
// PouchDB 9 (memory adapter) <-> Chaise: push, pull and live two-way sync of
// 10,000 docs with inline attachments, deletions and conflicts; both ends are then
// compared doc by doc and rev by rev.
//
//   node pouch_sync.js http://admin:s3cret@127.0.0.1:5984 [docs]
//
// The doc count defaults to 10000 (or CHAISE_DOCS).

const {
  assert, serverUrl, log, dbName, remoteDb, localDb, attBytes, compareDbs, run,
} = require('./lib');

const N = Number(process.argv[3] || process.env.CHAISE_DOCS || 10000);
const HALF = Math.floor(N / 2);
const pad = (i) => String(i).padStart(5, '0');

/** Doc `i` of a side; every 20th carries an inline attachment. */
function makeDoc(side, i) {
  const doc = { _id: `${side}-${pad(i)}`, side, i, tags: ['a', side, i % 7], nested: { x: i / 3, s: 'é✓' } };
  if (i % 20 === 0) {
    doc._attachments = {
      'blob.bin': { content_type: 'application/octet-stream', data: attBytes(i, 700 + (i % 500)).toString('base64') },
    };
    if (i % 40 === 0) {
      doc._attachments['note.txt'] = { content_type: 'text/plain', data: Buffer.from(`note ${i} `.repeat(50)).toString('base64') };
    }
  }
  return doc;
}

async function bulk(db, docs) {
  for (let i = 0; i < docs.length; i += 500) {
    const res = await db.bulkDocs(docs.slice(i, i + 500));
    const errs = res.filter((r) => r.error);
    if (errs.length) throw new Error(`${db.name}: bulkDocs errors: ${JSON.stringify(errs.slice(0, 5))}`);
  }
}

/** Applies `fn(doc) -> doc|null` to existing docs (null = skip). */
async function edit(db, ids, fn) {
  const res = await db.allDocs({ keys: ids, include_docs: true });
  const docs = [];
  for (const r of res.rows) {
    if (!r.doc) throw new Error(`${db.name}: ${r.key} missing: ${JSON.stringify(r)}`);
    const d = fn(r.doc);
    if (d) docs.push(d);
  }
  await bulk(db, docs);
}

function checkResult(what, res, expectWritten) {
  log(`${what}: ok=${res.ok} status=${res.status} docs_read=${res.docs_read} docs_written=${res.docs_written} failures=${res.doc_write_failures} last_seq=${JSON.stringify(res.last_seq).slice(0, 40)}`);
  if (!res.ok || res.doc_write_failures || (res.errors && res.errors.length)) {
    throw new Error(`${what} failed: ${JSON.stringify(res).slice(0, 2000)}`);
  }
  if (expectWritten !== undefined && res.docs_written !== expectWritten) {
    throw new Error(`${what}: docs_written ${res.docs_written}, expected ${expectWritten}`);
  }
}

/** Waits until `cond()` holds, polling. */
async function until(what, cond, ms = 60000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

run(async () => {
  const url = serverUrl();
  const name = dbName('pouch-sync');
  const remote = remoteDb(url, name);
  const local = localDb(name + '-local');
  const info = await remote.info(); // creates the database
  log(`remote ${name}: ${JSON.stringify(info).slice(0, 200)}`);

  // 1. Half the docs on each side; push and pull one-shot.
  const lIdx = [...Array(HALF).keys()];
  await bulk(local, lIdx.map((i) => makeDoc('L', i)));
  await bulk(remote, lIdx.map((i) => makeDoc('R', i)));
  log(`created ${HALF} docs on each side`);

  checkResult('push', await local.replicate.to(remote, { batch_size: 500 }), HALF);
  checkResult('pull', await local.replicate.from(remote, { batch_size: 500 }), HALF);
  // A second pass has nothing to do.
  checkResult('push again', await local.replicate.to(remote, { batch_size: 500 }), 0);
  checkResult('pull again', await local.replicate.from(remote, { batch_size: 500 }), 0);
  await compareDbs(local, remote);
  log('after push + pull: both ends identical');

  // 2. Divergent edits on both sides.
  const ids = (side, from, to) => [...Array(to - from).keys()].map((k) => `${side}-${pad(from + k)}`);
  const k = Math.max(1, Math.floor(HALF / 25)); // 200 for N = 10000
  const conflicted = [...ids('L', 0, k), ...ids('R', 0, k)];
  const delDel = ids('L', k, 2 * k); // deleted on the local side only
  const delR = ids('R', k, 2 * k); // deleted on the remote side only
  const delVsEdit = ids('L', 2 * k, 2 * k + k / 2); // deleted locally, edited remotely
  const attAdded = ids('R', 2 * k, 3 * k); // remote adds an attachment
  await edit(local, conflicted, (d) => ({ ...d, v: 'local', edited: true }));
  await edit(remote, conflicted, (d) => ({ ...d, v: 'remote', edited: true, extra: [1, 2, 3] }));
  await edit(local, delDel, (d) => ({ _id: d._id, _rev: d._rev, _deleted: true }));
  await edit(remote, delR, (d) => ({ _id: d._id, _rev: d._rev, _deleted: true, why: 'tombstone body' }));
  await edit(local, delVsEdit, (d) => ({ _id: d._id, _rev: d._rev, _deleted: true }));
  await edit(remote, delVsEdit, (d) => ({ ...d, v: 'survivor' }));
  await edit(remote, attAdded, (d) => {
    d._attachments = d._attachments || {};
    d._attachments['added.txt'] = { content_type: 'text/plain', data: Buffer.from(`added to ${d._id}`).toString('base64') };
    return d;
  });
  // A second level of conflict: edited twice on the local side.
  await edit(local, conflicted.slice(0, 10), (d) => ({ ...d, v: 'local2' }));
  log(`diverged: ${conflicted.length} conflicts, ${delDel.length + delR.length} deletions, ${delVsEdit.length} delete/edit conflicts, ${attAdded.length} attachments added`);

  // 3. Live two-way sync until both ends agree.
  const events = { change: 0, paused: 0, active: 0, denied: 0, error: null };
  const sync = local.sync(remote, { live: true, retry: true, batch_size: 500 });
  sync.on('change', () => { events.change++; });
  sync.on('paused', () => { events.paused++; });
  sync.on('active', () => { events.active++; });
  sync.on('denied', (e) => { events.denied++; events.error = e; });
  sync.on('error', (e) => { events.error = e; });
  const syncDone = new Promise((resolve) => sync.on('complete', resolve));

  const expectLeaves = async (db, id, n) => {
    try {
      const revs = await db.get(id, { open_revs: 'all' });
      return revs.length === n;
    } catch (e) {
      if (e.status === 404) return false;
      throw e;
    }
  };
  const last = (a) => a[a.length - 1];
  await until('conflicts to reach both sides', async () => {
    if (events.error) throw new Error(`sync error: ${JSON.stringify(events.error)}`);
    return (await expectLeaves(local, last(conflicted), 2)) && (await expectLeaves(remote, conflicted[0], 2)) &&
      (await expectLeaves(local, last(delVsEdit), 2)) && (await expectLeaves(remote, last(delVsEdit), 2));
  });
  log(`live sync delivered the first conflicts (events ${JSON.stringify(events)})`);

  // 4. While the live sync runs: new docs and edits on both sides must flow across.
  await bulk(local, [...Array(100).keys()].map((i) => ({ _id: `live-L-${pad(i)}`, live: true })));
  await bulk(remote, [...Array(100).keys()].map((i) => ({ _id: `live-R-${pad(i)}`, live: true })));
  const resolved = conflicted.slice(10, 20);
  // Resolve a few conflicts remotely: delete the losing leaf.
  for (const id of resolved) {
    const d = await remote.get(id, { conflicts: true });
    assert.strictEqual(d._conflicts.length, 1, `${id} conflicts on the remote: ${JSON.stringify(d)}`);
    const r = await remote.remove(id, d._conflicts[0]);
    assert.ok(r.ok, JSON.stringify(r));
  }
  await until('live edits to reach both sides', async () => {
    if (events.error) throw new Error(`sync error: ${JSON.stringify(events.error)}`);
    const a = await local.allDocs({ keys: ['live-R-00099'] });
    const b = await remote.allDocs({ keys: ['live-L-00099'] });
    const c = await local.get(last(resolved), { conflicts: true });
    return !a.rows[0].error && !b.rows[0].error && !c._conflicts;
  });
  // Let the sync settle, then stop it.
  await until('sync to go idle', async () => {
    const [a, b] = await Promise.all([local.info(), remote.info()]);
    return a.doc_count === b.doc_count;
  });
  await new Promise((r) => setTimeout(r, 1500));
  sync.cancel();
  await syncDone;
  if (events.error) throw new Error(`sync error: ${JSON.stringify(events.error)}`);
  log(`live sync stopped (events ${JSON.stringify(events)})`);

  // 5. Doc by doc, rev by rev.
  const stillConflicted = [...conflicted.filter((id) => !resolved.includes(id)), ...delVsEdit];
  const leaves = await compareDbs(local, remote, stillConflicted);
  let nConf = 0; let nDel = 0;
  for (const v of leaves.values()) { if (v.leaves.length > 1) nConf++; if (v.deleted) nDel++; }
  const expectDocs = 2 * HALF + 200;
  assert.strictEqual(leaves.size, expectDocs, `doc ids: ${leaves.size}, expected ${expectDocs}`);
  assert.strictEqual(nDel, delDel.length + delR.length, `deleted winners: ${nDel}`);
  assert.strictEqual(nConf, stillConflicted.length + resolved.length,
    `docs with several leaves: ${nConf}, expected ${stillConflicted.length + resolved.length}`);
  // Deleted-vs-edited: the edit wins (a live leaf beats a deleted one).
  for (const id of delVsEdit) {
    const d = await remote.get(id);
    assert.strictEqual(d.v, 'survivor', `${id}: ${JSON.stringify(d)}`);
  }
  const ri = await remote.info();
  assert.strictEqual(ri.doc_count, expectDocs - nDel, `remote doc_count ${ri.doc_count}`);
  assert.strictEqual(ri.doc_del_count, nDel, `remote doc_del_count ${ri.doc_del_count}`);
  log(`both ends identical: ${leaves.size} ids, ${nConf} with several leaves, ${nDel} deleted`);
  await remote.destroy();
});
