'use strict';
// A "null" CouchDB for pouch_bench.js's floor: it answers what a PouchDB push asks
// at once and stores nothing, so a push to it costs only the client's own work.
//
//   node null_couch.js [port]    (prints "listening <port>" once ready)

const http = require('http');

function send(res, code, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function answer(req, res, body) {
  const parts = new URL(req.url, 'http://x').pathname.split('/').filter(Boolean);
  if (parts.length === 0) return send(res, 200, { couchdb: 'Welcome', version: '3.5.0' });
  if (parts.length === 1) {
    if (req.method === 'PUT') return send(res, 201, { ok: true });
    if (req.method === 'DELETE') return send(res, 200, { ok: true });
    return send(res, 200, { db_name: parts[0], doc_count: 0, update_seq: '0', instance_start_time: '0' });
  }
  switch (parts[1]) {
    case '_revs_diff': {
      const missing = {};
      for (const [id, revs] of Object.entries(JSON.parse(body))) missing[id] = { missing: revs };
      return send(res, 200, missing);
    }
    case '_bulk_docs':
      JSON.parse(body);
      return send(res, 201, []);
    case '_local':
      if (req.method === 'GET') return send(res, 404, { error: 'not_found', reason: 'missing' });
      return send(res, 201, { ok: true, id: parts.slice(1).join('/'), rev: '0-1' });
    case '_ensure_full_commit':
      return send(res, 201, { ok: true, instance_start_time: '0' });
    default:
      return send(res, 404, { error: 'not_found', reason: 'missing' });
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => answer(req, res, Buffer.concat(chunks).toString()));
});
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
