// @vitest-environment node
// The SDK and the server's OpenAPI document agree: src/api.gen.ts, from which the SDK's wire types
// derive (src/api.ts), is what `npm run gen:api` produces from openapi/openapi.json now; so a change
// of the document fails here until it is regenerated, and then `npm run typecheck` wherever the SDK
// no longer fits it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const spec = resolve(root, '../openapi/openapi.json');
const out = mkdtempSync(join(tmpdir(), 'consentry-api-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Runs scripts/gen-api.mjs on `specFile` into a temporary file; its text, or the error output. */
function generate(specFile: string): { ok: boolean; text: string } {
  const file = join(out, 'api.gen.ts');
  rmSync(file, { force: true });
  try {
    execFileSync(process.execPath, [join(root, 'scripts/gen-api.mjs'), '--spec', specFile, '--out', file], { cwd: root, stdio: 'pipe' });
    return { ok: true, text: readFileSync(file, 'utf8') };
  } catch (e) {
    return { ok: false, text: String((e as { stderr?: Buffer }).stderr || e) };
  }
}

describe('src/api.gen.ts', () => {
  it('is what openapi/openapi.json produces now (run `npm run gen:api` and commit it)', () => {
    const fresh = generate(spec);
    expect(fresh.ok, fresh.text).toBe(true);
    const committed = readFileSync(join(root, 'src/api.gen.ts'), 'utf8');
    expect(committed, 'src/api.gen.ts is out of date with openapi/openapi.json: run npm run gen:api').toBe(fresh.text);
  }, 60_000);

  it('is deterministic and ignores operations the SDK does not call', () => {
    const doc = JSON.parse(readFileSync(spec, 'utf8'));
    const base = generate(spec).text;
    doc.paths['/v1/not-for-the-sdk'] = { get: { operationId: 'not_for_the_sdk', responses: { 204: { description: 'none' } } } };
    const other = join(out, 'other.json');
    writeFileSync(other, JSON.stringify(doc));
    expect(generate(other).text).toBe(base);
  }, 60_000);

  it('fails, naming it, when an operation the SDK calls is gone', () => {
    const doc = JSON.parse(readFileSync(spec, 'utf8'));
    delete doc.paths['/v1/sites/{site_key}/consents'].post;
    const other = join(out, 'gone.json');
    writeFileSync(other, JSON.stringify(doc));
    const r = generate(other);
    expect(r.ok).toBe(false);
    expect(r.text).toContain('has no POST /v1/sites/{site_key}/consents, which the SDK calls');
  }, 60_000);
});
