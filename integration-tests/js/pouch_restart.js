'use strict';
// A live two-way PouchDB sync that survives a server restart mid-sync.
//
//   node pouch_restart.js http://admin:s3cret@127.0.0.1:5984 [docs-per-side]
//
// Protocol with the driver (integration-tests/tests/clients.rs): once both
// directions have moved at least 40% of their docs the script prints a line
// `RESTART_NOW`; the driver kills the server (SIGKILL), starts it again on the same
// port and data directory and writes a line `RESTARTED` to the script's stdin. The
// sync (live, retry) must resume from its checkpoints: after the restart each
// direction may only look at the changes it had not checkpointed (checked through
// the `_changes` rows and `_revs_diff` ids seen after the restart), and at the end
// both ends hold exactly the expected docs, each with a single revision.
//
// Without a driver (stdin is a terminal or CHAISE_NO_RESTART=1) the script just
// syncs without a restart.

const readline = require('readline');
// PouchDB 9 lets a few connection errors of a live, retrying replication escape as
// unhandled rejections while the server is down (finishBatch calls `src.info()`
// without a catch); the replication itself retries all the same.
process.on('unhandledRejection', (e) => {
  if (e && e.name === 'FetchError' && e.type === 'system') {
    console.log(`(unhandled connection error while the server is down: ${e.message})`);
    return;
  }
  console.error('FAIL: unhandled rejection', e);
  process.exit(1);
});

const { assert, serverUrl, log, fail, dbName, remoteDb, localDb, compareDbs, run } = require('./lib');

const N = Number(process.argv[3] || process.env.CHAISE_DOCS || 3000);
const BATCH = 100;
const pad = (i) => String(i).padStart(5, '0');
const doc = (side, i) => ({ _id: `${side}-${pad(i)}`, side, i, payload: 'x'.repeat(200 + (i % 50)) });

/** What the HTTP adapter did, before and after the restart. */
// Everything after the first failed request (the server went away) counts as "after
// the restart".
const phase = { restarted: false, frozen: false };
const seen = {
  before: { changesRows: 0, revsDiffIds: 0, bulkGetDocs: 0, bulkDocsDocs: 0 },
  after: { changesRows: 0, revsDiffIds: 0, bulkGetDocs: 0, bulkDocsDocs: 0, firstSince: undefined, requests: 0 },
};

/** The last requests, for the diagnosis when the sync gets stuck. */
const recent = [];
function remember(url, opts, what) {
  recent.push(`${new Date().toISOString().slice(11, 23)} ${opts.method || 'GET'} ${url.replace(/^[^/]*\/\/[^/]*/, '').slice(0, 140)} -> ${what}`);
  if (recent.length > 40) recent.shift();
}

function observe(url, opts, res, err) {
  remember(url, opts, err ? `error ${err.code || err.message}` : res.status);
  if (phase.frozen) return;
  if (err) { phase.restarted = true; return; }
  const s = phase.restarted ? seen.after : seen.before;
  const u = new URL(url);
  const last = u.pathname.split('/').pop();
  if (phase.restarted) s.requests++;
  try {
    if (last === '_revs_diff' && opts.body) s.revsDiffIds += Object.keys(JSON.parse(opts.body)).length;
    if (last === '_bulk_docs' && opts.body) s.bulkDocsDocs += JSON.parse(opts.body).docs.length;
    if (last === '_bulk_get' && opts.body) s.bulkGetDocs += JSON.parse(opts.body).docs.length;
  } catch (e) { /* not JSON: not ours to count */ }
  if (last === '_changes' && res.ok) {
    if (phase.restarted && s.firstSince === undefined) s.firstSince = u.searchParams.get('since');
    // Read a copy concurrently (awaiting it here could stall the original stream).
    res.clone().json().then((b) => { s.changesRows += (b.results || []).length; }, () => {});
  }
}

/** Resolves when the driver writes `RESTARTED` (or at once without a driver). */
function restartHandshake() {
  if (process.env.CHAISE_NO_RESTART === '1' || process.stdin.isTTY) return Promise.resolve(false);
  console.log('RESTART_NOW');
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    const timer = setTimeout(() => reject(new Error('no RESTARTED from the driver within 60 s')), 60000);
    rl.on('line', (line) => {
      if (line.trim() === 'RESTARTED') { clearTimeout(timer); rl.close(); resolve(true); }
    });
  });
}

const written = { push: 0, pull: 0 };

async function until(what, cond, ms = 90000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; docs written ${JSON.stringify(written)}; the last requests:\n  ${recent.join('\n  ')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

run(async () => {
  const url = serverUrl();
  const name = dbName('pouch-restart');
  const remote = remoteDb(url, name, observe);
  const local = localDb(name + '-local');
  await remote.info();
  for (let i = 0; i < N; i += 500) {
    const n = Math.min(500, N - i);
    await local.bulkDocs([...Array(n).keys()].map((k) => doc('L', i + k)));
    await remote.bulkDocs([...Array(n).keys()].map((k) => doc('R', i + k)));
  }
  log(`created ${N} docs on each side of ${name}`);

  written.push = 0; written.pull = 0;
  const errors = [];
  const sync = local.sync(remote, {
    live: true, retry: true, batch_size: BATCH, back_off_function: () => 300,
  });
  sync.on('change', (info) => { written[info.direction] += info.change.docs.length; });
  sync.on('denied', (e) => errors.push(e));
  sync.on('error', (e) => errors.push(e));
  const done = new Promise((resolve) => sync.on('complete', resolve));

  await until('40% of the docs to move both ways', () => {
    if (errors.length) throw new Error(`sync error: ${JSON.stringify(errors)}`);
    return written.push >= 0.4 * N && written.pull >= 0.4 * N;
  });
  const atKill = { ...written };
  log(`asking for a restart after push ${atKill.push}, pull ${atKill.pull} docs written`);
  const restarted = await restartHandshake();
  if (!restarted) phase.restarted = true;
  log(`server ${restarted ? 'restarted' : 'not restarted (no driver)'}; docs written so far: push ${written.push}, pull ${written.pull}`);

  await until('all docs on both sides', async () => {
    if (errors.length) throw new Error(`sync error: ${JSON.stringify(errors)}`);
    const [a, b] = await Promise.all([local.info(), remote.info()]);
    return a.doc_count === 2 * N && b.doc_count === 2 * N;
  });
  // The live sync still works after the restart.
  await local.bulkDocs([...Array(20).keys()].map((k) => doc('L2', k)));
  await remote.bulkDocs([...Array(20).keys()].map((k) => doc('R2', k)));
  await until('docs written after the restart to cross', async () => {
    const [a, b] = await Promise.all([local.info(), remote.info()]);
    return a.doc_count === 2 * N + 40 && b.doc_count === 2 * N + 40;
  });
  await new Promise((r) => setTimeout(r, 500));
  sync.cancel();
  await done;
  phase.frozen = true;
  log(`after the restart: ${JSON.stringify(seen.after)}; before: ${JSON.stringify(seen.before)}; docs written: ${JSON.stringify(written)}`);

  // Nothing lost, nothing duplicated: every doc once, with exactly one revision.
  const leaves = await compareDbs(local, remote);
  assert.strictEqual(leaves.size, 2 * N + 40, `ids: ${leaves.size}`);
  for (const [id, v] of leaves) {
    if (v.leaves.length !== 1 || !v.leaves[0].startsWith('1-') || v.deleted) {
      fail(`${id}: expected one 1-x revision, got ${JSON.stringify(v)}`);
    }
  }
  const ri = await remote.info();
  assert.strictEqual(ri.doc_count, 2 * N + 40, `remote doc_count ${ri.doc_count}`);
  assert.strictEqual(ri.doc_del_count, 0, `remote doc_del_count ${ri.doc_del_count}`);

  if (restarted) {
    // Resumed from the checkpoints, not from 0. Each side's changes feed ends with
    // 2N + 40 rows (its own docs, the other side's and the 20 + 20 written after the
    // restart). PouchDB reports a batch's docs and then checkpoints it, one batch at a
    // time, so at least `atKill[dir] - BATCH` rows were checkpointed when the restart
    // was asked for; a resumed direction sees at most the rest, one that restarted
    // from 0 sees all 2N + 40 again.
    const total = 2 * N + 40;
    const pullBound = total - atKill.pull + BATCH;
    const pushBound = total - atKill.push + BATCH;
    if (seen.after.firstSince === undefined || seen.after.firstSince === '0') {
      fail(`the pull restarted from since=${seen.after.firstSince}, not from its checkpoint`);
    }
    if (seen.after.changesRows > pullBound) {
      fail(`the pull re-read ${seen.after.changesRows} changes after the restart (at most ${pullBound} expected): not resumed from the checkpoint`);
    }
    if (seen.after.revsDiffIds > pushBound) {
      fail(`the push re-checked ${seen.after.revsDiffIds} docs after the restart (at most ${pushBound} expected): not resumed from the checkpoint`);
    }
    log(`resumed from checkpoints: pull since=${String(seen.after.firstSince).slice(0, 30)}..., ${seen.after.changesRows} changes rows and ${seen.after.revsDiffIds} revs_diff ids after the restart (bounds ${pullBound}/${pushBound})`);
  }
  log(`both ends identical: ${leaves.size} docs, one revision each`);
  await remote.destroy();
});
