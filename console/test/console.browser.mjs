// The console in a real browser (Debian's chromium via playwright-core) against the real server,
// on SQLite and, when CONSENTRY_TEST_POSTGRES_URL is set, on PostgreSQL: `serve --demo` prints a
// console address with a one-time code; the test writes data over the API, then walks every page
// at 375 px wide with the keyboard and mouse: sign in, see the charts with the data it wrote,
// complete an opt-out, find a person and ask for their export, publish a revision, retry a dead
// letter, revoke a token. axe-core checks each page (no serious or critical issue; a screenshot of
// each goes to target/console-<page>-<backend>.png), and any
// Content-Security-Policy violation or request to another origin fails the run.
// Usage: node test/console.browser.mjs   (CONSENTRY_BIN: the server binary)
import { createRequire } from 'node:module';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const require = createRequire(join(here, '..', 'package.json'));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const bin = process.env.CONSENTRY_BIN || join(root, 'target', 'debug', 'consentry');
const ORIGIN = 'https://www.example.com';

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** A fresh database URL per backend; PostgreSQL needs CONSENTRY_TEST_POSTGRES_URL and psql. */
function databases() {
  const list = [['sqlite', `sqlite://${join(mkdtempSync(join(tmpdir(), 'consentry-console-')), 'c.db')}`]];
  const admin = process.env.CONSENTRY_TEST_POSTGRES_URL;
  if (admin) {
    const name = `consentry_test_console_${process.pid}_${Date.now()}`; // .ci/run drops leftovers by this prefix
    execFileSync('psql', [admin, '-qc', `CREATE DATABASE "${name}"`]);
    list.push(['postgres', admin.replace(/\/[^/]*$/, `/${name}`), () => execFileSync('psql', [admin, '-qc', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`])]);
  } else {
    console.log('console: PostgreSQL skipped (set CONSENTRY_TEST_POSTGRES_URL)');
  }
  return list;
}

/** A webhook receiver that fails until `healthy` is set, then answers 200. */
function receiver() {
  const state = { healthy: false, received: 0 };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.received++;
      res.writeHead(state.healthy ? 200 : 500).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ state, server, url: `http://127.0.0.1:${server.address().port}/hook` })));
}

async function run(backend, databaseUrl) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env, DATABASE_URL: databaseUrl, CONSENTRY__LOG: 'warn',
    CONSENTRY__WEBHOOKS__RETRY_BASE: '100ms', CONSENTRY__WEBHOOKS__RETRY_MAX_DELAY: '200ms',
    CONSENTRY__WEBHOOKS__RETRY_WINDOW: '1s', CONSENTRY__WEBHOOKS__POLL_INTERVAL: '100ms',
    CONSENTRY__WEBHOOKS__PRIVATE_RECEIVERS: 'true',
  };
  const server = spawn(bin, ['serve', '--demo', '--listen', `127.0.0.1:${port}`], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  server.stdout.on('data', (d) => { stdout += d; });
  const hook = await receiver();
  let browser;
  try {
    let consoleUrl;
    for (let i = 0; i < 150 && !consoleUrl; i++) {
      consoleUrl = /console: (http:\/\/\S+#code=\S+)/.exec(stdout)?.[1];
      if (!consoleUrl) await sleep(200);
    }
    check(consoleUrl, `serve --demo printed no console address:\n${stdout}`);
    const admin = execFileSync(bin, ['tokens', 'issue', '--tenant', 'ntt-cloud-communications', '--scope', 'admin'], { env, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    const api = async (method, path, body, headers = {}) => {
      const res = await fetch(base + path, {
        method, headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    };

    // The data the pages must show.
    const { body: { sites } } = await api('GET', '/v1/sites');
    const site = sites.find((s) => s.name === 'www.example.com');
    const { body: { revisions } } = await api('GET', '/v1/policies/privacy/revisions');
    const revision = revisions.at(-1).revision_date;
    const visitor = (n) => `0b9c3f1e-8d4a-4f6e-9a51-${String(n).padStart(12, '0')}`;
    const submit = (n, choices, gpc) =>
      fetch(`${base}/v1/sites/${site.site_key}/consents`, {
        method: 'POST',
        headers: { Origin: ORIGIN, 'Content-Type': 'application/json', ...(gpc ? { 'Sec-GPC': '1' } : {}) },
        body: JSON.stringify({ visitor_id: visitor(n), choices, policy_revision: revision, source: 'banner' }),
      }).then((r) => check(r.status === 201, `visitor ${n}: ${r.status}`));
    await submit(1, { statistics: true, social_media: true });
    await submit(2, { statistics: true, social_media: true });
    await submit(3, { statistics: false, social_media: false });
    await submit(4, { statistics: false, social_media: false }, true); // GPC denies social_media first
    const ada = 'email:ada@example.com';
    check((await api('POST', '/v1/consents', { subject: ada, choices: { marketing: true }, policy_revision: revision, source: 'api', region: 'DE' })).status === 201, 'record ada');
    const received = new Date(Date.now() - 40 * 86400_000).toISOString();
    const optOut = (await api('POST', '/v1/opt-outs', { subject: 'user:overdue', channel: 'phone', scope: 'sale_sharing', received_at: received })).body;
    const webhook = (await api('POST', '/v1/webhooks', { url: hook.url, events: ['opt_out.created'] })).body;
    check(webhook.id, `webhook: ${JSON.stringify(webhook)}`);
    await api('POST', '/v1/opt-outs', { subject: 'user:dead-letter', channel: 'email', scope: 'sale_sharing' });
    let dead;
    for (let i = 0; i < 100 && !dead; i++) {
      dead = (await api('GET', `/v1/webhooks/${webhook.id}/deliveries?status=dead`)).body.deliveries[0];
      if (!dead) await sleep(100);
    }
    check(dead, 'no delivery became a dead letter');
    const narrow = (await api('POST', '/v1/tokens', { scopes: ['consents:check'], label: 'mailer-to-revoke' })).body;

    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext({ viewport: { width: 375, height: 800 }, acceptDownloads: true });
    const page = await context.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 404/.test(m.text())) problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) problems.push(`foreign request: ${r.url()}`); });

    const axe = async (name) => {
      await page.evaluate(axeSource + '\n;0');
      const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
      const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      check(!bad.length, `${name}: axe found ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target).join(' ')}`).join('; ')}`);
      const slug = name.toLowerCase().replace(/[^a-z]+/g, '-');
      await page.screenshot({ path: join(root, 'target', `console-${slug}-${backend}.png`), fullPage: true });
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width <= 375, `${name}: the page is ${width} px wide at 375 px`);
    };
    const go = async (label) => {
      await page.getByRole('button', { name: 'Menu' }).click();
      await page.getByRole('navigation').getByRole('link', { name: label }).click();
      await page.getByRole('heading', { level: 1, name: label }).waitFor();
    };

    // Sign in with the one-time code; the token is in sessionStorage and not in the address.
    await page.goto(consoleUrl);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    check(!page.url().includes('code='), 'the code stays in the address bar');
    check(await page.evaluate(() => !!sessionStorage.getItem('consentry.console.token')), 'no token in sessionStorage');
    // Overview: figures and charts of the data written above (4 banner submissions, 1 with GPC).
    await page.locator('[data-figure="submissions"]').filter({ hasText: /^\d+$/ }).waitFor();
    const submissions = Number(await page.locator('[data-figure="submissions"]').innerText());
    check(submissions === 6, `overview: ${submissions} submissions, expected 6 (4 banner, 1 API, 1 opt-out request)`);
    const acceptAll = await page.locator('[data-figure="accept_all"]').innerText();
    check(acceptAll.startsWith('2 '), `overview: accept all shows ${acceptAll}, expected 2 (visitors 1 and 2)`);
    const rejectAll = await page.locator('[data-figure="reject_all"]').innerText();
    check(rejectAll.startsWith('2 '), `overview: reject all shows ${rejectAll}, expected 2 (visitors 3 and 4)`);
    check((await page.locator('[data-figure="overdue"]').innerText()) === '1', 'overview: 1 overdue opt-out');
    check((await page.locator('.chart canvas').count()) >= 2, 'overview: two charts');
    check((await page.locator('[data-count="statistics/granted/banner"]').innerText()) === '2', 'overview: 2 statistics grants from the banner');
    check((await page.locator('[data-figure="gpc_share"]').innerText()) === '25.0 %', 'overview: GPC share 1 of 4 banner submissions');
    await axe('Overview');

    // Opt-out requests: the overdue one is highlighted; complete it with a note (keyboard).
    await go('Opt-out requests');
    const row = page.locator(`tr[data-opt-out="${optOut.id}"]`);
    await row.waitFor();
    check((await row.getAttribute('class')) === 'overdue', 'the overdue request is highlighted');
    await row.getByRole('button', { name: 'Complete…' }).focus();
    await page.keyboard.press('Enter');
    await row.getByLabel('Note (what was done)').fill('Suppressed in the CRM; partners notified');
    await row.getByRole('button', { name: 'Confirm completion' }).press('Enter');
    await page.getByRole('status').filter({ hasText: 'completed' }).waitFor();
    const done = (await api('GET', '/v1/opt-outs?status=completed')).body.opt_outs.find((o) => o.id === optOut.id);
    check(done?.completion_note === 'Suppressed in the CRM; partners notified', 'the opt-out is completed with its note');
    await axe('Opt-out requests');

    // People: find Ada, her state, her events with the chain verified, and ask for the export.
    await go('People');
    await page.getByLabel('Identifier').fill(ada);
    await page.getByLabel('Identifier').press('Enter');
    await page.locator('[data-chain="verified"]').waitFor();
    check((await page.locator('tr[data-purpose="marketing"]').innerText()).includes('granted'), 'people: marketing granted');
    const exportAnswer = page.waitForResponse((r) => r.url().includes('/export'));
    const download = page.waitForEvent('download', { timeout: 5000 }).catch(() => null);
    await page.getByRole('button', { name: 'Download export' }).click();
    const answer = await exportAnswer;
    if (answer.status() === 200) {
      check(await download, 'the export was not downloaded');
    } else {
      check(answer.status() === 404, `export answered ${answer.status()}`);
      await page.getByRole('alert').filter({ hasText: 'not available on this server yet' }).waitFor();
    }
    await axe('People');

    // Policies: publish a revision that requires reconsent.
    await go('Policies');
    await page.getByLabel('Revision date').fill('2026-11-30');
    await page.getByLabel('Address of the published text').fill('https://www.example.com/privacy-2026');
    await page.getByLabel('Requires reconsent').check();
    // Visitors 1 and 2 granted statistics and social_media, Ada granted marketing: 3 people.
    await page.locator('[data-reconsent-preview]').filter({ hasText: 'asks 3 people again (5 grants' }).waitFor();
    await page.getByRole('button', { name: 'Publish revision' }).click();
    await page.locator('tr[data-revision="2026-11-30"]').waitFor();
    check((await api('GET', '/v1/policies/privacy/revisions')).body.revisions.some((r) => r.revision_date === '2026-11-30' && r.requires_reconsent), 'the revision is published');
    await axe('Policies');

    await go('Purposes and sites');
    await page.getByRole('cell', { name: site.site_key }).waitFor();
    await axe('Purposes and sites');

    // Webhooks: retry the dead letter once the receiver is healthy.
    hook.state.healthy = true;
    await go('Webhooks');
    const deadRow = page.locator(`tr[data-delivery="${dead.id}"]`);
    await deadRow.getByRole('button', { name: 'Retry' }).click();
    await page.getByRole('status').filter({ hasText: 'queued again' }).waitFor();
    let delivered = false;
    for (let i = 0; i < 100 && !delivered; i++) {
      delivered = (await api('GET', `/v1/webhooks/${webhook.id}/deliveries?status=delivered`)).body.deliveries.some((d) => d.id === dead.id);
      if (!delivered) await sleep(100);
    }
    check(delivered, 'the retried dead letter was not delivered');
    await axe('Webhooks');

    // Tracker audit: the inventory, or a clear message while the server lacks it.
    await go('Tracker audit');
    await page.locator('h2:has-text("Inventory"), p[role="alert"]').first().waitFor();
    await axe('Tracker audit');

    // Tokens: revoke the narrow token; it is refused from then on.
    await go('Tokens');
    page.once('dialog', (d) => d.accept());
    await page.locator(`tr[data-token="${narrow.id}"]`).getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('status').filter({ hasText: 'revoked' }).waitFor();
    const refused = await fetch(`${base}/v1/consents/check`, {
      method: 'POST', headers: { Authorization: `Bearer ${narrow.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ purpose: 'statistics', subjects: ['user:1'] }),
    });
    check(refused.status === 401, `the revoked token answered ${refused.status}`);
    await axe('Tokens');

    // Sign out: the token leaves sessionStorage; the sign-in form is labelled.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token').waitFor();
    check(await page.evaluate(() => !sessionStorage.getItem('consentry.console.token')), 'sign-out keeps the token');
    await axe('Sign-in');
    check(!problems.length, problems.join('\n'));
    console.log(`console (${backend}): every page walked, axe clean, no CSP violation or foreign request`);
  } finally {
    await browser?.close();
    hook.server.close();
    server.kill();
    await new Promise((r) => server.once('exit', r));
  }
}

let failed = 0;
for (const [backend, url, cleanup] of databases()) {
  try {
    await run(backend, url);
  } catch (e) {
    failed++;
    console.error(`FAIL console (${backend}): ${e.stack ?? e}`);
  } finally {
    try { cleanup?.(); } catch {}
  }
}
process.exit(failed ? 1 : 0);
