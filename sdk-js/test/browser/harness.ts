/**
 * Harness of the browser tests: the real Consentry server (built with cargo,
 * run on a free port with a temp SQLite database), a page server on another
 * port (that origin is the site's origin), and headless Debian Chromium
 * driven by playwright-core. Anything missing yields a skip reason instead.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as netServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { startFakeApi } from './fake-api';

export const SDK = resolve(__dirname, '../..');
export const REPO = resolve(SDK, '..');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
/** A host name Chromium resolves to 127.0.0.1: pages from it are plain http and not a secure context. */
export const INSECURE_HOST = 'shop.consentry.test';

/** A running API: its origin, and a way to create a tenant (returns its admin token). */
export interface Backend {
  origin: string;
  kind: 'real' | 'fake';
  createTenant(slug: string): Promise<string>;
  /** Last lines the server printed, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

async function waitHealthy(origin: string, child: ChildProcess, ms: number): Promise<string | null> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode != null || child.signalCode != null) return `the server exited (${child.exitCode ?? child.signalCode})`;
    try {
      const r = await fetch(origin + '/healthz');
      if (r.ok) return null;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return `no healthy answer from ${origin}/healthz within ${ms / 1000}s`;
}

/** Builds (cargo build, a no-op when fresh) and starts the real server; a string is a skip reason. */
export async function startRealServer(): Promise<Backend | string> {
  let bin = process.env.CONSENTRY_BIN;
  if (!bin) {
    bin = join(REPO, 'target/debug/consentry');
    const r = spawnSync('cargo', ['build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'], timeout: 30 * 60_000 });
    if (r.error || r.status !== 0) return `\`cargo build\` in ${REPO} failed (${r.error ? r.error.message : 'exit ' + r.status})`;
  }
  if (!existsSync(bin)) return `server binary missing: ${bin}`;
  const dir = mkdtempSync(join(tmpdir(), 'consentry-e2e-'));
  const env = { ...process.env, DATABASE_URL: `sqlite://${dir}/c.db`, RUST_LOG: process.env.RUST_LOG || 'warn' };
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => (out = (out + b).slice(-8000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const stop = async () => {
    if (child.exitCode == null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const bad = await waitHealthy(origin, child, 60_000);
  if (bad) {
    await stop();
    return `\`consentry serve\` is not usable yet: ${bad}\n--- server output ---\n${out.trim() || '(none)'}`;
  }
  return {
    origin,
    kind: 'real',
    async createTenant(slug) {
      const printed = execFileSync(bin!, ['tenants', 'create', slug], { env, encoding: 'utf8' });
      const line = printed.trim().split('\n').reverse().find((l) => l.trim().startsWith('{'));
      if (!line) throw new Error('`consentry tenants create` printed no JSON: ' + printed);
      return JSON.parse(line).token as string;
    },
    logs: () => out,
    stop,
  };
}

export async function startFakeBackend(): Promise<Backend> {
  const f = await startFakeApi();
  return { origin: f.origin, kind: 'fake', createTenant: async (slug) => f.createTenant(slug).token, logs: () => '', stop: f.close };
}

/** Calls the management API with a tenant's token; throws on an unexpected status. */
export async function manage<T = any>(backend: Backend, token: string, method: string, path: string, body?: unknown, expect = [200, 201, 204]): Promise<T> {
  const r = await fetch(backend.origin + path, {
    method,
    headers: { authorization: 'Bearer ' + token, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!expect.includes(r.status)) throw new Error(`${method} ${path} → ${r.status}: ${text}\n${backend.logs().slice(-2000)}`);
  return text ? JSON.parse(text) : (undefined as T);
}

export const PURPOSES = {
  necessary: { title: 'Strictly necessary', description: 'Needed for the site to work.', consent_model: 'notice_only', gpc_applies: false },
  statistics: { title: 'Statistics cookies', description: 'Anonymous usage statistics.', consent_model: 'opt_in', gpc_applies: false },
  social_media: { title: 'Social media', description: 'Embedded videos and posts.', consent_model: 'opt_in', gpc_applies: false },
  sale_sharing: { title: 'Sale or sharing of personal information', description: 'Cross-context behavioural advertising.', consent_model: 'opt_out', gpc_applies: true },
} as const;

type PurposeDef = { title: string; description: string; consent_model: string; gpc_applies: boolean; cookies?: string[]; hosts?: string[] };

/**
 * A tenant with the four purposes above (or `purposes`), the privacy policy 2021-02-01, and one
 * site for `pageOrigin` (and `moreOrigins`).
 */
export async function setupTenant(
  backend: Backend,
  pageOrigin: string,
  o: { purposes?: Record<string, PurposeDef>; moreOrigins?: string[]; auditSampleRate?: number } = {},
): Promise<{ token: string; siteKey: string; siteId: string }> {
  const token = await backend.createTenant('sdk-e2e-' + Math.random().toString(36).slice(2, 8));
  // purposes first: a site's config shows them at once
  for (const [key, p] of Object.entries(o.purposes || PURPOSES))
    await manage(backend, token, 'PUT', '/v1/purposes/' + key, { ...p, kind: 'cookie_category', legal_basis: 'consent', max_age_days: 395 });
  const site = await manage(backend, token, 'POST', '/v1/sites', {
    name: 'SDK e2e shop',
    origins: [pageOrigin, ...(o.moreOrigins || [])],
    ...(o.auditSampleRate == null ? {} : { audit_sample_rate: o.auditSampleRate }),
  });
  await manage(backend, token, 'POST', '/v1/policies/privacy/revisions', { revision_date: '2021-02-01', url: 'https://example.com/privacy', requires_reconsent: false });
  return { token, siteKey: site.site_key, siteId: site.id };
}

/**
 * The test page: the SDK script tag, a gated external and inline script (carrying the nonce when
 * there is one, as they must under a nonce CSP), a gated iframe, an event log. Under a nonce it
 * also has a gated script without the nonce, which must never run.
 */
export function testPage(o: { siteKey: string; endpoint: string; nonce?: string }): string {
  const n = o.nonce ? ` nonce="${o.nonce}"` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Consentry e2e</title>
<script${n}>
  window.__events = [];
  for (const t of ['ready', 'change', 'saved', 'error'])
    document.addEventListener('consentry:' + t, (e) => window.__events.push({ type: t, detail: e.detail }));
</script>
<script src="/sdk/consentry.js"${n} data-site-key="${o.siteKey}" data-endpoint="${o.endpoint}"></script>
</head><body>
<h1>Shop</h1>
<a href="#" id="privacy-link" data-consentry-preferences>Privacy choices</a>
<script type="text/plain" data-consent="statistics" src="/gated/analytics.js"${n}></script>
<script type="text/plain" data-consent="statistics"${n}>window.__inlineRan = (window.__inlineRan || 0) + 1;</script>
${o.nonce ? '<script type="text/plain" data-consent="statistics">window.__unnoncedRan = 1;</script>' : ''}
<iframe data-consent="social_media" data-src="/gated/social.html" title="Social media embed"></iframe>
</body></html>`;
}

/** Gated scripts in document order: a slow external one, then inline ones, then a fast external one. */
export function orderPage(o: { siteKey: string; endpoint: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Order</title>
<script>
  window.__events = [];
  window.__order = [];
  for (const t of ['ready', 'change', 'saved', 'error'])
    document.addEventListener('consentry:' + t, (e) => window.__events.push({ type: t, detail: e.detail }));
</script>
<script src="/sdk/consentry.js" data-site-key="${o.siteKey}" data-endpoint="${o.endpoint}" data-ui="false"></script>
</head><body>
<script type="text/plain" data-consent="statistics" src="/gated/slow.js"></script>
<script type="text/plain" data-consent="statistics">window.__order.push('inline after slow');</script>
<script type="text/plain" data-consent="statistics" src="/gated/fast.js"></script>
<script type="text/plain" data-consent="statistics">window.__order.push('inline after fast');</script>
</body></html>`;
}

/** Serves the test page and the built SDK; records every request path. `custom`: more pages, by path. */
export async function startPageServer(): Promise<{
  origin: string;
  port: number;
  requests: string[];
  site: { siteKey: string; endpoint: string };
  custom: Map<string, string>;
  close(): Promise<void>;
}> {
  const requests: string[] = [];
  const site = { siteKey: '', endpoint: '' };
  const custom = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push(url.pathname);
    if (custom.has(url.pathname)) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(custom.get(url.pathname));
    }
    const csp = url.searchParams.has('csp');
    if (url.pathname == '/') {
      const nonce = csp ? Math.random().toString(36).slice(2) : undefined;
      const headers: Record<string, string> = { 'content-type': 'text/html; charset=utf-8' };
      if (csp)
        headers['content-security-policy'] = `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src ${site.endpoint}; frame-src 'self'; img-src 'self'`;
      res.writeHead(200, headers);
      return res.end(testPage({ ...site, nonce }));
    }
    if (url.pathname == '/order') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(orderPage(site));
    }
    if (url.pathname == '/gated/slow.js' || url.pathname == '/gated/fast.js') {
      const name = url.pathname.slice(7, -3);
      return setTimeout(
        () => (res.writeHead(200, { 'content-type': 'text/javascript' }), res.end(`window.__order.push('${name}');`)),
        name == 'slow' ? 400 : 0,
      );
    }
    if (url.pathname == '/demo') {
      // the demo page, with the substitutions the Rust server makes
      const html = readFileSync(join(SDK, 'demo/index.html'), 'utf8').replaceAll('{{SITE_KEY}}', site.siteKey).replaceAll('{{ENDPOINT}}', site.endpoint);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(html);
    }
    if (url.pathname == '/sdk/consentry.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(readFileSync(join(SDK, 'dist/consentry.js')));
    }
    if (url.pathname == '/tracker/ga.js') {
      // a tag that sets Google Analytics' cookies from wherever it is loaded
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end("document.cookie = '_ga=GA1.1.42.1; Path=/'; document.cookie = '_ga_X1Y2=GS1.1.1; Path=/'; window.__trackerRan = (window.__trackerRan || 0) + 1;");
    }
    if (url.pathname == '/gated/analytics.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end('window.__analyticsRan = (window.__analyticsRan || 0) + 1;');
    }
    if (url.pathname == '/gated/social.html') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<!doctype html><p>social embed</p>');
    }
    res.writeHead(404).end();
  });
  const port = await freePort();
  await new Promise<void>((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    requests,
    site,
    custom,
    close: () => new Promise<void>((ok) => (server.closeAllConnections(), server.close(() => ok()))),
  };
}

/** Launches Debian Chromium headless; playwright gives each launch a fresh temporary profile. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // a plain-http origin that is not localhost (no secure context), still served from this machine
      // (and its subdomains, for cookie domain tests)
      `--host-resolver-rules=MAP ${INSECURE_HOST} 127.0.0.1, MAP *.${INSECURE_HOST} 127.0.0.1`,
    ],
  });
}

/** Prints a reason so that nobody mistakes a skip for a pass. */
export function shout(lines: string[]): void {
  const bar = '!'.repeat(78);
  console.error(['', bar, ...lines.map((l) => '!! ' + l), bar, ''].join('\n'));
}
