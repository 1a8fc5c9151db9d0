'use strict';
// PouchDB 9 (memory adapter) against Chaise: time to pull 10,000 ~1 KB docs from the
// server and to push 10,000 ~1 KB docs to it. Prints the figures; asserts nothing
// beyond the replications succeeding with the right counts.
//
//   node pouch_bench.js http://admin:secret@127.0.0.1:5984 [docs] [batch_size] [pull|push|floor]
//
// Without a mode, each figure is taken in a fresh Node process (so that neither
// inherits the other's heap), and last the push "floor": the same push to
// null_couch.js, a server that stores nothing, i.e. what the client alone costs.

const { serverUrl, log, dbName, remoteDb, localDb, run } = require('./lib');
const PouchDB = require('pouchdb-core');

// CHAISE_TRACE=1: time spent waiting on each kind of request, to tell server time
// from client time.
const TRACE = process.env.CHAISE_TRACE === '1';
const waits = new Map();
function traced(url, name) {
  if (!TRACE) return remoteDb(url, name);
  return new PouchDB(`${url}/${name}`, {
    fetch: async (u, o) => {
      const t = process.hrtime.bigint();
      const got = await PouchDB.fetch(u, o);
      const body = await got.arrayBuffer();
      const res = new Response(got.status === 204 || got.status === 304 ? null : body,
        { status: got.status, statusText: got.statusText, headers: got.headers });
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      const path = new URL(String(u)).pathname.split('/').slice(2).join('/').replace(/^_local\/.*/, '_local/*');
      const kind = `${(o && o.method) || 'GET'} ${path.startsWith('_') ? path : 'doc'}`;
      if (process.env.CHAISE_TRACE_URLS && (kind.endsWith('doc') || kind.includes('_changes') || kind.includes('_bulk_get'))) console.log(String(u));
      const w = waits.get(kind) || { n: 0, ms: 0, bytes: 0 };
      w.n += 1; w.ms += ms; w.bytes += body.byteLength;
      waits.set(kind, w);
      return res;
    },
  });
}
function report(what) {
  if (!TRACE) return;
  for (const [k, w] of [...waits].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`  ${what} ${k}: ${w.n} requests, ${w.ms.toFixed(0)} ms waiting, ${(w.bytes / 1024).toFixed(0)} KiB`);
  }
  waits.clear();
}

const N = Number(process.argv[3] || process.env.CHAISE_DOCS || 10000);
const BATCH = Number(process.argv[4] || 100); // PouchDB's default batch_size
const pad = (i) => String(i).padStart(6, '0');

/** A ~1 KB document. */
function doc(prefix, i) {
  return {
    _id: `${prefix}-${pad(i)}`,
    n: i,
    title: `document number ${i}`,
    tags: ['bench', `t${i % 10}`, `g${i % 97}`],
    body: 'lorem ipsum dolor sit amet '.repeat(34).slice(0, 900),
  };
}

async function fill(db, prefix) {
  for (let i = 0; i < N; i += 1000) {
    const n = Math.min(1000, N - i);
    await db.bulkDocs([...Array(n).keys()].map((k) => doc(prefix, i + k)));
  }
}

async function timed(what, fn) {
  const t = process.hrtime.bigint();
  const res = await fn();
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (!res.ok || res.docs_written !== N) throw new Error(`${what}: ${JSON.stringify(res).slice(0, 500)}`);
  console.log(`${what}: ${N} docs in ${(ms / 1000).toFixed(2)} s (${Math.round(N / (ms / 1000))} docs/s), batch_size ${BATCH}`);
  return ms;
}

/** Pull: the server has the docs, an empty local db pulls them. */
async function pull(url) {
  const src = traced(url, dbName('bench-pull'));
  await src.info();
  await fill(src, 'p');
  const sample = JSON.stringify(doc('p', 1)).length;
  log(`server db filled with ${N} docs of ${sample} bytes`);
  const pullTarget = localDb('bench-pull-local');
  waits.clear();
  await timed('pull (Chaise -> PouchDB memory)', () => pullTarget.replicate.from(src, { batch_size: BATCH }));
  report('pull');
  await src.destroy();
}

/** Push: a local db with the docs pushes them to an empty server db. */
async function push(url, what) {
  const local = localDb('bench-push-local');
  await fill(local, 'q');
  const dst = traced(url, dbName('bench-push'));
  await dst.info();
  waits.clear();
  await timed(what, () => local.replicate.to(dst, { batch_size: BATCH }));
  report('push');
  await dst.destroy();
}

/** Runs this script again in `mode`, in a fresh process; resolves when it ended well. */
function child(url, mode) {
  const { execFileSync } = require('child_process');
  execFileSync(process.execPath, [__filename, url, String(N), String(BATCH), mode], { stdio: 'inherit' });
}

/** Starts null_couch.js; resolves with its URL and a function that stops it. */
function nullCouch() {
  const { spawn } = require('child_process');
  const proc = spawn(process.execPath, [require('path').join(__dirname, 'null_couch.js')]);
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.stdout.once('data', (d) => {
      const port = String(d).match(/listening (\d+)/)[1];
      resolve({ url: `http://127.0.0.1:${port}`, stop: () => proc.kill() });
    });
  });
}

run(async () => {
  const url = serverUrl();
  switch (process.argv[5]) {
    case 'pull': return pull(url);
    case 'push': return push(url, 'push (PouchDB memory -> Chaise)');
    case 'floor': return push(url, 'push floor (PouchDB memory -> null server)');
    default: {
      child(url, 'pull');
      child(url, 'push');
      const floor = await nullCouch();
      try { child(floor.url, 'floor'); } finally { floor.stop(); }
    }
  }
});
