// @vitest-environment node
// The committed dist/ is what `npm run build` produces now (the Rust server embeds it),
// and the minified+gzipped bundles stay within their size budgets.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const dist = join(root, 'dist');

/** Paths of all files under `dir`, relative to it, sorted. */
function files(dir: string, base = dir): string[] {
  return readdirSync(dir)
    .flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f), base) : [relative(base, join(dir, f))]))
    .sort();
}

/** Bytes after gzip -9. */
const gz = (f: string) => gzipSync(readFileSync(join(dist, f)), { level: 9 }).length;

describe('size budget (minified + gzipped)', () => {
  // 1 KB = 1000 bytes, the stricter reading
  const budgets: [string, number][] = [
    ['consentry.core.mjs', 5_000], // headless core
    ['consentry.core-gcm.mjs', 5_400], // headless core with Google Consent Mode
    ['consentry.audit.mjs', 2_000], // tracker audit module, loaded on sampled page views only
    ['consentry.mjs', 12_000], // core + default UI + CSS
    ['consentry.js', 12_000], // same, IIFE with auto-init
  ];
  it.each(budgets)('%s ≤ %i bytes', (file, budget) => {
    const size = gz(file);
    console.log(`${file}: ${readFileSync(join(dist, file)).length} B minified, ${size} B gzipped (budget ${budget})`);
    expect(size).toBeLessThanOrEqual(budget);
  });

  it('the core build contains no UI and nothing uses eval or new Function', () => {
    const core = readFileSync(join(dist, 'consentry.core.mjs'), 'utf8');
    expect(core).not.toContain('cy-banner');
    expect(core).not.toContain('dataLayer');
    expect(readFileSync(join(dist, 'consentry.core-gcm.mjs'), 'utf8')).toContain('dataLayer');
    expect(readFileSync(join(dist, 'consentry.mjs'), 'utf8')).toContain('cy-banner');
    for (const f of ['consentry.core.mjs', 'consentry.core-gcm.mjs', 'consentry.audit.mjs', 'consentry.mjs', 'consentry.js'])
      expect(readFileSync(join(dist, f), 'utf8')).not.toMatch(/\beval\(|new Function|Function\(/);
  });
});

describe('dist/', () => {
  const out = mkdtempSync(join(tmpdir(), 'consentry-dist-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('is exactly what `npm run build` produces (run it and commit dist/)', () => {
    execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--outdir', out], { cwd: root, stdio: 'pipe' });
    expect(files(dist)).toEqual(files(out));
    for (const f of files(out)) expect(readFileSync(join(dist, f), 'utf8'), f).toBe(readFileSync(join(out, f), 'utf8'));
  }, 60_000);
});
