import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { init as initHeadless } from '../../src/headless';
import type { ConsentryInstance } from '../../src/types';
import { fakeApi, resetPage, SITE } from './helpers';

const w = window as unknown as { Consentry?: { init: unknown; instance?: Promise<ConsentryInstance> }; dataLayer?: unknown[] };
let inst: ConsentryInstance | undefined;

beforeEach(() => {
  resetPage();
  delete w.Consentry;
  vi.resetModules();
});
afterEach(() => {
  inst?.destroy();
  inst = undefined;
  Object.defineProperty(document, 'currentScript', { value: null, configurable: true });
});

function sdkTag(attrs: Record<string, string>) {
  const s = document.createElement('script');
  for (const k in attrs) s.setAttribute(k, attrs[k]);
  document.head.append(s);
  Object.defineProperty(document, 'currentScript', { value: s, configurable: true });
}

describe('script-tag build (iife entry)', () => {
  it('defines window.Consentry and starts from the data attributes', async () => {
    const api = fakeApi();
    sdkTag({
      src: '/sdk/consentry.js',
      nonce: 'tag-nonce',
      'data-site-key': SITE,
      'data-endpoint': 'https://api.consentry.test',
      'data-region': 'US-CA',
      'data-locale': 'fr',
      'data-ui': 'false',
      'data-google-consent-mode': '{"analytics_storage":"statistics"}',
    });
    // under a nonce, gated scripts carry it too
    document.body.insertAdjacentHTML('beforeend', '<script type="text/plain" data-consent="statistics" src="/s.js" nonce="tag-nonce"></script>');
    await import('../../src/iife');
    expect(typeof w.Consentry!.init).toBe('function');
    expect(w.dataLayer).toHaveLength(1); // the Consent Mode default, synchronously
    inst = await w.Consentry!.instance!;
    expect(api.calls[0].url).toBe('https://api.consentry.test/v1/sites/sk_test/config?region=US-CA&locale=fr');
    expect(document.querySelector('.cy-root')).toBeNull(); // data-ui="false"
    await inst.set({ statistics: true });
    expect((document.querySelector('script[src="/s.js"]') as HTMLScriptElement & { nonce: string }).nonce).toBe('tag-nonce');
  });

  it('malformed data-google-consent-mode JSON: logs an error and starts without Consent Mode', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    fakeApi();
    sdkTag({ 'data-site-key': SITE, 'data-endpoint': 'https://api.consentry.test', 'data-google-consent-mode': '{analytics_storage:' });
    await import('../../src/iife');
    expect(error).toHaveBeenCalledWith(expect.stringMatching(/data-google-consent-mode/), expect.anything());
    inst = await w.Consentry!.instance!;
    expect(w.dataLayer).toBeUndefined();
    expect(inst.snapshot().needsConsent).toBe(true);
  });

  it('only defines window.Consentry without data attributes', async () => {
    sdkTag({ src: '/sdk/consentry.js' });
    await import('../../src/iife');
    expect(w.Consentry!.instance).toBeUndefined();
  });

  it("an empty data-endpoint means the page's own origin", async () => {
    const api = fakeApi();
    sdkTag({ 'data-site-key': SITE, 'data-endpoint': '' });
    await import('../../src/iife');
    inst = await w.Consentry!.instance!;
    expect(api.calls[0].url).toMatch(/^\/v1\/sites\/sk_test\/config\?locale=/);
  });
});

describe('headless build', () => {
  it('mounts no UI even when asked', async () => {
    fakeApi();
    inst = await initHeadless({ siteKey: SITE, endpoint: 'https://api.consentry.test', ui: true });
    expect(inst.snapshot().needsConsent).toBe(true);
    expect(document.querySelector('.cy-root')).toBeNull();
  });
});
