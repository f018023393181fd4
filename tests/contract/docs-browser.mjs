// The browsable API reference at /docs, in a real browser (Debian's chromium via playwright-core):
// the page loads with no request leaving this machine and lists every operation of the document.
// Run by tests/run.sh after `npm ci` in sdk-js (which provides playwright-core).
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = createRequire(join(root, 'sdk-js', 'package.json'))('playwright-core');
const bin = process.env.CONSENTRY_BIN || join(root, 'target', 'debug', 'consentry');

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const port = await freePort();
const db = join(mkdtempSync(join(tmpdir(), 'consentry-docs-')), 'c.db');
const server = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`], {
  env: { ...process.env, DATABASE_URL: `sqlite://${db}`, CONSENTRY__LOG: 'warn' },
  stdio: 'inherit',
});
const base = `http://127.0.0.1:${port}`;
let failure = null;
let browser;
try {
  for (let i = 0; i < 50; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  const spec = JSON.parse(readFileSync(join(root, 'openapi', 'openapi.json'), 'utf8'));
  const expected = Object.values(spec.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(base)) foreign.push(r.url()); });
  await page.goto(`${base}/docs`);
  await page.waitForSelector('.opblock', { timeout: 15000 });
  const listed = await page.locator('.opblock').count();
  const title = await page.locator('.info .title').first().innerText();
  await page.screenshot({ path: join(root, 'target', 'docs.png'), fullPage: false });
  if (listed !== expected) failure = `the docs list ${listed} operations, the document has ${expected}`;
  else if (!title.includes('Consentry API')) failure = `unexpected title: ${title}`;
  else if (foreign.length) failure = `the docs fetched from elsewhere: ${foreign.join(', ')}`;
  else console.log(`docs: ${listed} operations listed at /docs, no request left 127.0.0.1`);
} catch (e) {
  failure = String(e);
} finally {
  await browser?.close();
  server.kill();
}
if (failure) {
  console.error(`FAIL docs in the browser: ${failure}`);
  process.exit(1);
}
