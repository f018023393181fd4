// c15t (@c15t/backend 2.2.1) on PostgreSQL, served with node:http — for the wrk comparison.
//
//   C15T_DATABASE_URL=postgres://postgres@127.0.0.1:5432/consentry_peer_c15t PORT=19xxx node server.mjs
//
// Optional env: C15T_POOL (default 8, Consentry's pool size), C15T_LOG_SQL=1 (print every SQL
// statement to stderr, prefixed "SQL ", for counting statements per request; off when measuring),
// HOST (default 127.0.0.1).
//
// One Node process: JavaScript runs on one thread (the pg driver's I/O is asynchronous, but all
// request handling, JSON, validation and query building share that single core).
process.env.NODE_ENV ??= 'production';

import http from 'node:http';
import { c15tInstance, version } from '@c15t/backend';
import { kyselyAdapter } from '@c15t/backend/db/adapters/kysely';
import { migrator } from '@c15t/backend/db/migrator';
import { DB } from '@c15t/backend/db/schema';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

const url = process.env.C15T_DATABASE_URL;
const port = Number(process.env.PORT);
const host = process.env.HOST || '127.0.0.1';
if (!url || !Number.isInteger(port) || port <= 0) {
  console.error('set C15T_DATABASE_URL and PORT');
  process.exit(64);
}
const logSql = process.env.C15T_LOG_SQL === '1';

const pool = new pg.Pool({ connectionString: url, max: Number(process.env.C15T_POOL || 8) });
const db = new Kysely({
  dialect: new PostgresDialect({ pool }),
  log: logSql
    ? (e) => { if (e.level === 'query') process.stderr.write(`SQL ${e.query.sql.replace(/\s+/g, ' ')}\n`); }
    : undefined,
});
// fumadb 0.3's kysely adapter takes { db, provider } (the docs' kyselyAdapter(db) is older).
const adapter = kyselyAdapter({ db, provider: 'postgresql' });

// Schema: the package's own migrator (what `@c15t/cli self-host migrate` runs), at every start;
// on an up-to-date database it only rewrites its 2 settings rows (version, table names).
const migration = await migrator({ db: DB.client(adapter), schema: 'latest' });
if (migration.operations?.length) {
  await migration.execute();
  console.error(`c15t: migrated (${migration.operations.length} operations)`);
}

const c15t = c15tInstance({
  adapter,
  trustedOrigins: ['bench.example'],
  logger: { level: 'error' },
  disableGeoLocation: true,
});

// node:http <-> Fetch. Bodies are small JSON: read whole, answer whole.
let inflight = 0;
const server = http.createServer(async (req, res) => {
  inflight++;
  try {
    const headers = new Headers();
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
    let body;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    }
    const request = new Request(`http://${req.headers.host || 'localhost'}${req.url}`, {
      method: req.method,
      headers,
      body,
    });
    const response = await c15t.handler(request);
    const out = {};
    response.headers.forEach((v, k) => { if (k !== 'set-cookie') out[k] = v; });
    const cookies = response.headers.getSetCookie();
    if (cookies.length) out['set-cookie'] = cookies;
    const buf = Buffer.from(await response.arrayBuffer());
    out['content-length'] = buf.length;
    res.writeHead(response.status, out);
    res.end(buf);
  } catch (err) {
    console.error('adapter error:', err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('internal error');
  } finally {
    inflight--;
  }
});
server.keepAliveTimeout = 65_000;

// Stop: no new connections; requests already read (wrk leaves some queued when it stops) are
// answered before the pool is closed, for at most 5 s.
const shutdown = async () => {
  server.close();
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
  while (inflight > 0) await new Promise((r) => setTimeout(r, 20));
  server.closeAllConnections();
  await db.destroy();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(port, host, () => console.error(`c15t ${version} listening on http://${host}:${port} (pid ${process.pid})`));
