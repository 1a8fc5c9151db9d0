'use strict';
// Plain CRUD with nano 11 against Chaise: databases, documents, bulk, listings,
// attachments and the errors clients rely on (409 conflict, 404 not found, 412).
//
//   node nano_crud.js http://admin:s3cret@127.0.0.1:5984

const Nano = require('nano');
const { assert, serverUrl, log, dbName, run } = require('./lib');

/** Expects `p` to reject with HTTP `status` and CouchDB error `error`. */
async function rejects(what, p, status, error) {
  try {
    const r = await p;
    throw new Error(`${what}: expected ${status} ${error}, got success ${JSON.stringify(r)}`);
  } catch (e) {
    if (e.statusCode === undefined) throw e;
    assert.strictEqual(e.statusCode, status, `${what}: status ${e.statusCode} (${e.error}: ${e.reason}), expected ${status}`);
    if (error !== undefined) assert.strictEqual(e.error, error, `${what}: error ${JSON.stringify(e.error)}, expected ${JSON.stringify(error)}`);
    assert.ok(typeof e.reason === 'string' && e.reason.length, `${what}: reason ${JSON.stringify(e.reason)}`);
    return e;
  }
}

run(async () => {
  const nano = Nano({ url: serverUrl() });

  // Server.
  const info = await nano.info();
  assert.strictEqual(info.couchdb, 'Welcome', JSON.stringify(info));
  assert.ok(/^3\./.test(info.version), `version ${info.version}`);
  const uuids = await nano.uuids(3);
  assert.strictEqual(uuids.uuids.length, 3, JSON.stringify(uuids));

  // Databases.
  const name = dbName('nano');
  const created = await nano.db.create(name);
  assert.deepStrictEqual(created, { ok: true });
  await rejects('create twice', nano.db.create(name), 412, 'file_exists');
  await rejects('bad name', nano.db.create('Bad Name!'), 400, 'illegal_database_name');
  assert.ok((await nano.db.list()).includes(name), 'db.list misses the new db');
  const dbi = await nano.db.get(name);
  assert.strictEqual(dbi.db_name, name);
  assert.strictEqual(dbi.doc_count, 0);
  await rejects('get missing db', nano.db.get(name + '-missing'), 404, 'not_found');
  const db = nano.use(name);
  log(`created ${name}`);

  // Documents: insert, get, update, conflict, destroy.
  const ins = await db.insert({ _id: 'doc1', kind: 'fruit', name: 'apple', n: 1.5, list: [1, 'two', null] });
  assert.ok(ins.ok && ins.id === 'doc1' && /^1-[0-9a-f]{32}$/.test(ins.rev), JSON.stringify(ins));
  const got = await db.get('doc1');
  assert.deepStrictEqual(got, { _id: 'doc1', _rev: ins.rev, kind: 'fruit', name: 'apple', n: 1.5, list: [1, 'two', null] });
  const auto = await db.insert({ kind: 'generated id' });
  assert.ok(auto.ok && /^[0-9a-f]{32}$/.test(auto.id), `generated id ${JSON.stringify(auto)}`);
  const upd = await db.insert({ ...got, name: 'pear' });
  assert.ok(upd.ok && upd.rev.startsWith('2-'), JSON.stringify(upd));
  await rejects('stale update', db.insert({ ...got, name: 'plum' }), 409, 'conflict');
  await rejects('create existing', db.insert({ _id: 'doc1', x: 1 }), 409, 'conflict');
  await rejects('get missing', db.get('nope'), 404, 'not_found');
  await rejects('destroy stale', db.destroy('doc1', ins.rev), 409, 'conflict');
  const withRevs = await db.get('doc1', { revs_info: true });
  assert.strictEqual(withRevs._revs_info.length, 2, JSON.stringify(withRevs));
  const head = await db.head('doc1');
  assert.strictEqual(head.etag, `"${upd.rev}"`, `HEAD etag ${JSON.stringify(head)}`);
  const del = await db.destroy('doc1', upd.rev);
  assert.ok(del.ok && del.rev.startsWith('3-'), JSON.stringify(del));
  const gone = await rejects('get deleted', db.get('doc1'), 404, 'not_found');
  assert.strictEqual(gone.reason, 'deleted', `reason for a deleted doc: ${gone.reason}`);
  // A non-leaf revision's body is readable in CouchDB until compaction; Chaise may
  // already have dropped it (as after compaction): 404 missing is fine, but a body
  // that is returned must be the right one.
  try {
    const old = await db.get('doc1', { rev: ins.rev });
    assert.strictEqual(old.name, 'apple', `old revision ${JSON.stringify(old)}`);
  } catch (e) {
    if (e.statusCode !== 404 || e.reason !== 'missing') throw e;
    log('note: old (non-leaf) revision bodies are not kept (404 missing, as after compaction)');
  }
  log('documents ok');

  // Bulk and listings.
  const docs = [...Array(50).keys()].map((i) => ({ _id: `b${String(i).padStart(3, '0')}`, i, even: i % 2 === 0 }));
  const bulk = await db.bulk({ docs });
  assert.strictEqual(bulk.length, 50);
  assert.ok(bulk.every((r) => r.ok && r.rev.startsWith('1-')), JSON.stringify(bulk.slice(0, 3)));
  const bulk2 = await db.bulk({ docs: [{ _id: 'b000', again: true }, { _id: 'fresh' }] });
  assert.strictEqual(bulk2[0].error, 'conflict', JSON.stringify(bulk2));
  assert.ok(bulk2[1].ok, JSON.stringify(bulk2));
  const list = await db.list({ include_docs: true, startkey: 'b010', endkey: 'b019' });
  assert.strictEqual(list.rows.length, 10, JSON.stringify(list).slice(0, 300));
  assert.strictEqual(list.total_rows, 52, `total_rows ${list.total_rows}`);
  assert.ok(list.rows.every((r, k) => r.id === `b0${10 + k}` && r.doc.i === 10 + k && r.value.rev === r.doc._rev));
  // (From b049: the generated id above is random hex and may sort between b049 and b999.)
  const desc = await db.list({ descending: true, startkey: 'b049', limit: 3, skip: 1 });
  assert.deepStrictEqual(desc.rows.map((r) => r.id), ['b048', 'b047', 'b046']);
  const fetched = await db.fetch({ keys: ['b001', 'missing', 'b002'] });
  assert.strictEqual(fetched.rows.length, 3);
  assert.strictEqual(fetched.rows[0].doc.i, 1);
  assert.strictEqual(fetched.rows[1].error, 'not_found', JSON.stringify(fetched.rows[1]));
  const revs = await db.fetchRevs({ keys: ['b003'] });
  assert.ok(revs.rows[0].value.rev.startsWith('1-'), JSON.stringify(revs));
  // Delete half in bulk.
  const toDelete = list.rows.map((r) => ({ _id: r.id, _rev: r.value.rev, _deleted: true }));
  const delRes = await db.bulk({ docs: toDelete });
  assert.ok(delRes.every((r) => r.ok), JSON.stringify(delRes.slice(0, 3)));
  const after = await db.info();
  assert.strictEqual(after.doc_count, 42, `doc_count ${after.doc_count}`);
  assert.strictEqual(after.doc_del_count, 11, `doc_del_count ${after.doc_del_count}`);
  const changes = await db.changes({ since: 0 });
  assert.strictEqual(changes.results.length, 53, `changes ${changes.results.length}`);
  assert.strictEqual(changes.results.filter((c) => c.deleted).length, 11);
  log('bulk and listings ok');

  // Attachments.
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...[...Array(3000).keys()].map((i) => (i * 7) & 0xff)]);
  const a1 = await db.attachment.insert('withatt', 'image.png', png, 'image/png');
  assert.ok(a1.ok && a1.rev.startsWith('1-'), JSON.stringify(a1));
  const a2 = await db.attachment.insert('withatt', 'notes.txt', 'hello nano '.repeat(100), 'text/plain', { rev: a1.rev });
  assert.ok(a2.ok && a2.rev.startsWith('2-'), JSON.stringify(a2));
  const back = await db.attachment.get('withatt', 'image.png');
  assert.ok(Buffer.compare(Buffer.from(back), png) === 0, `attachment bytes differ (${back.length} vs ${png.length})`);
  const text = await db.attachment.get('withatt', 'notes.txt');
  assert.strictEqual(Buffer.from(text).toString(), 'hello nano '.repeat(100));
  const stubs = await db.get('withatt');
  assert.deepStrictEqual(Object.keys(stubs._attachments).sort(), ['image.png', 'notes.txt']);
  assert.ok(stubs._attachments['image.png'].stub && stubs._attachments['image.png'].length === png.length &&
    stubs._attachments['image.png'].content_type === 'image/png', JSON.stringify(stubs._attachments));
  const inline = await db.get('withatt', { attachments: true });
  assert.strictEqual(Buffer.from(inline._attachments['image.png'].data, 'base64').compare(png), 0);
  // 409 either way: `conflict` while the old revision's body is kept, or (CouchDB 3.x
  // chttpd for a revision it cannot open, e.g. after compaction) not_found/missing_rev.
  const stale = await rejects('attachment stale rev',
    db.attachment.insert('withatt', 'x.txt', 'x', 'text/plain', { rev: a1.rev }), 409, undefined);
  assert.ok(stale.error === 'conflict' || (stale.error === 'not_found' && stale.reason === 'missing_rev'),
    `attachment stale rev: ${stale.error} ${stale.reason}`);
  await rejects('missing attachment', db.attachment.get('withatt', 'nope.bin'), 404, 'not_found');
  const a3 = await db.attachment.destroy('withatt', 'notes.txt', { rev: a2.rev });
  assert.ok(a3.ok && a3.rev.startsWith('3-'), JSON.stringify(a3));
  const afterDel = await db.get('withatt');
  assert.deepStrictEqual(Object.keys(afterDel._attachments), ['image.png']);
  // Inline attachment on insert; multipart insert and get.
  await db.insert({ _id: 'inline', _attachments: { 'a.txt': { content_type: 'text/plain', data: Buffer.from('inline!').toString('base64') } } });
  assert.strictEqual(Buffer.from(await db.attachment.get('inline', 'a.txt')).toString(), 'inline!');
  const mp = await db.multipart.insert({ kind: 'multipart' },
    [{ name: 'm.bin', data: Buffer.from([1, 2, 3, 4, 5]), content_type: 'application/octet-stream' }], 'mp');
  assert.ok(mp.ok, JSON.stringify(mp));
  assert.deepStrictEqual([...Buffer.from(await db.attachment.get('mp', 'm.bin'))], [1, 2, 3, 4, 5]);
  log('attachments ok');

  // Errors on missing databases and unauthenticated access.
  const missing = nano.use(name + '-missing');
  await rejects('insert into missing db', missing.insert({ a: 1 }), 404, 'not_found');
  await rejects('list missing db', missing.list(), 404, 'not_found');
  const anon = Nano({ url: serverUrl().replace(/\/\/[^@/]*@/, '//') });
  await rejects('anonymous create db', anon.db.create(name + '-anon'), 401, 'unauthorized');
  const badpw = Nano({ url: serverUrl().replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:wrong@') });
  await rejects('wrong password', badpw.db.list(), 401, 'unauthorized');

  // Destroy.
  assert.deepStrictEqual(await nano.db.destroy(name), { ok: true });
  await rejects('destroy twice', nano.db.destroy(name), 404, 'not_found');
  assert.ok(!(await nano.db.list()).includes(name), 'db still listed after destroy');
  log('destroy ok');
});
