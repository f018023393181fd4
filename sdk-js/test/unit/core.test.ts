import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { init } from '../../src/core';
import { encodeState, readCookie, writeCookie } from '../../src/state';
import type { ConsentChange, ConsentryInstance, ConsentSnapshot } from '../../src/types';
import { ENDPOINT, fakeApi, json, record, resetPage, SITE, siteConfig, tick, UUID } from './helpers';

const ID = '0b7c8f5e-3c1a-4d2b-9e8f-1a2b3c4d5e6f';
const opts = { siteKey: SITE, endpoint: ENDPOINT + '/' };
let inst: ConsentryInstance | undefined;
const start = async (extra = {}) => (inst = await init({ ...opts, ...extra }));

function cookie(choices: Record<string, 'granted' | 'denied'>, extra = {}) {
  writeCookie(
    document,
    { id: ID, rev: '2021-02-01', choices, open: ['necessary', 'sale_sharing'], created: 1, updated: Math.floor(Date.now() / 1000) - 60, pending: false, gpc: false, ...extra },
    30,
  );
}
function gated(html: string) {
  document.body.insertAdjacentHTML('beforeend', html);
}
const setGpc = (v: boolean | undefined) => Object.defineProperty(navigator, 'globalPrivacyControl', { value: v, configurable: true });

beforeEach(() => {
  resetPage();
  setGpc(undefined);
});
afterEach(() => {
  inst?.destroy();
  inst = undefined;
});

describe('init and reconciliation', () => {
  it('rejects without siteKey or endpoint', async () => {
    await expect(init({ siteKey: '', endpoint: ENDPOINT })).rejects.toThrow(/siteKey/);
  });

  it('new visitor: loads the config with region and locale, skips the visitor GET, needs consent, stores nothing yet', async () => {
    const api = fakeApi();
    const ready = vi.fn();
    document.addEventListener('consentry:ready', (e) => ready((e as CustomEvent).detail), { once: true });
    const c = await start({ region: 'US-CA', locale: 'de' });
    expect(api.calls.map((x) => x.url)).toEqual([ENDPOINT + '/v1/sites/sk_test/config?region=US-CA&locale=de']);
    expect(c.visitorId).toMatch(UUID);
    expect(c.config!.site.site_key).toBe(SITE);
    expect(c.getAll()).toEqual({ necessary: 'granted', statistics: 'undecided', marketing: 'undecided', social_media: 'undecided', sale_sharing: 'undecided' });
    expect(c.allowed('sale_sharing')).toBe(true); // opt_out
    expect(c.allowed('statistics')).toBe(false);
    expect(c.snapshot()).toMatchObject({ needsConsent: true, confirmed: true, gpc: false, policyRevision: '2021-02-01' });
    expect(ready).toHaveBeenCalledTimes(1);
    expect(readCookie(document)).toBeNull();
  });

  it('returning visitor: the cookie applies synchronously, then the server record wins', async () => {
    cookie({ statistics: 'granted', marketing: 'denied' });
    const api = fakeApi({ consents: record({ statistics: 'stale', marketing: 'denied', social_media: 'not_asked' }, true) });
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script>');
    const p = init({ ...opts, region: 'US-CA' });
    // before any network answer
    expect(document.querySelector('script[src="/a.js"]')!.getAttribute('type')).toBeNull();
    const c = (inst = await p);
    expect(api.calls[1].url).toBe(ENDPOINT + '/v1/sites/sk_test/visitors/' + ID + '/consents?region=US-CA');
    expect(c.visitorId).toBe(ID);
    expect(c.get('statistics')).toBe('undecided'); // stale: reconsent revision
    expect(c.get('marketing')).toBe('denied');
    expect(c.snapshot().needsConsent).toBe(true);
    expect(readCookie(document)!.choices).toEqual({ marketing: 'denied' });
  });

  it('without the server, the cookie state is used and ready still fires', async () => {
    cookie({ statistics: 'granted' });
    fakeApi({ config: null });
    const c = await start();
    expect(c.config).toBeNull();
    expect(c.get('statistics')).toBe('granted');
    expect(c.allowed('sale_sharing')).toBe(true);
    expect(c.allowed('marketing')).toBe(false);
  });

  it("on('ready') replays for late subscribers; unsubscribe works", async () => {
    fakeApi();
    const c = await start();
    const cb = vi.fn();
    c.on('ready', cb);
    expect(cb).toHaveBeenCalledWith(expect.objectContaining({ visitorId: c.visitorId }));
    const change = vi.fn();
    const off = c.on('change', change);
    off();
    await c.acceptAll();
    expect(change).not.toHaveBeenCalled();
  });
});

describe('writes', () => {
  it('one user action = one change event and one write with an Idempotency-Key', async () => {
    const api = fakeApi();
    const c = await start({ region: 'US-CA' });
    const changes: ConsentChange[] = [];
    const saved: ConsentSnapshot[] = [];
    c.on('change', (e) => changes.push(e));
    c.on('saved', (e) => saved.push(e));
    const done = c.acceptAll();
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ source: 'banner', confirmed: false, changed: ['statistics', 'marketing', 'social_media', 'sale_sharing'] });
    expect(c.snapshot().confirmed).toBe(false);
    expect(await done).toBe(true);
    expect(api.posts()).toHaveLength(1);
    const post = api.posts()[0];
    expect(post.url).toBe(ENDPOINT + '/v1/sites/sk_test/consents');
    expect(post.headers['idempotency-key']).toMatch(UUID);
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.body).toEqual({
      visitor_id: c.visitorId,
      choices: { statistics: true, marketing: true, social_media: true, sale_sharing: true },
      policy_revision: '2021-02-01',
      source: 'banner',
      region: 'US-CA',
    });
    expect(saved).toHaveLength(1);
    expect(c.snapshot().confirmed).toBe(true);
    const stored = readCookie(document)!;
    expect(stored).toMatchObject({ id: c.visitorId, rev: '2021-02-01', pending: false });
    expect(stored.choices).toEqual({ statistics: 'granted', marketing: 'granted', social_media: 'granted', sale_sharing: 'granted' });
    // a second action has its own key
    await c.set({ marketing: false });
    expect(api.posts()[1].headers['idempotency-key']).not.toBe(post.headers['idempotency-key']);
    expect(api.posts()[1].body!.source).toBe('preference_centre');
    expect(changes).toHaveLength(2);
  });

  it('reject all stores explicit denials, never undecided', async () => {
    const api = fakeApi();
    const c = await start();
    await c.rejectAll();
    expect(api.posts()[0].body!.choices).toEqual({ statistics: false, marketing: false, social_media: false, sale_sharing: false });
    expect(c.getAll()).toEqual({ necessary: 'granted', statistics: 'denied', marketing: 'denied', social_media: 'denied', sale_sharing: 'denied' });
    expect(readCookie(document)!.choices).toEqual({ statistics: 'denied', marketing: 'denied', social_media: 'denied', sale_sharing: 'denied' });
    expect(c.snapshot().needsConsent).toBe(false);
  });

  it('never sends notice_only or unknown purposes', async () => {
    const api = fakeApi();
    const c = await start();
    await c.set({ necessary: false, statistics: true, bogus: true });
    expect(api.posts()[0].body!.choices).toEqual({ statistics: true });
    expect(c.get('necessary')).toBe('granted');
    // nothing left to write: no event, no request
    const change = vi.fn();
    c.on('change', change);
    await c.set({ necessary: false });
    expect(change).not.toHaveBeenCalled();
    expect(api.posts()).toHaveLength(1);
  });

  it('a failed write is queued, retried with the same key, and only then confirmed', async () => {
    let n = 0;
    const api = fakeApi({ post: () => (n++ == 0 ? 'network-error' : json({ event_ids: [], consents: record({ statistics: 'granted' }), gpc_honored: false }, 201)) });
    const c = await start();
    vi.useFakeTimers();
    try {
      const saved = vi.fn();
      c.on('saved', saved);
      expect(await c.set({ statistics: true })).toBe(false);
      expect(c.get('statistics')).toBe('granted');
      expect(c.snapshot().confirmed).toBe(false);
      expect(readCookie(document)!.pending).toBe(true);
      expect(JSON.parse(localStorage.getItem('consentry:sk_test')!)).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1000);
      expect(api.posts()).toHaveLength(2);
      expect(api.posts()[1].headers['idempotency-key']).toBe(api.posts()[0].headers['idempotency-key']);
      expect(saved).toHaveBeenCalledTimes(1);
      expect(c.snapshot().confirmed).toBe(true);
      expect(readCookie(document)!.pending).toBe(false);
      expect(localStorage.getItem('consentry:sk_test')).toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes left by an earlier page are sent first and win over the server record', async () => {
    cookie({ statistics: 'granted' }, { pending: true });
    const left = { key: 'k-old', body: { visitor_id: ID, choices: { statistics: true }, policy_revision: '2021-02-01', source: 'banner' } };
    localStorage.setItem('consentry:sk_test', JSON.stringify([left]));
    const api = fakeApi({ consents: record({ statistics: 'denied' }) });
    const c = await start();
    expect(api.calls.some((x) => x.url.includes('/visitors/'))).toBe(false);
    expect(c.get('statistics')).toBe('granted');
    await tick();
    expect(api.posts()[0].headers['idempotency-key']).toBe('k-old');
    expect(c.snapshot().confirmed).toBe(true);
  });

  it('a write the server refuses is dropped and the state stays unconfirmed', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    fakeApi({ post: () => json({ type: 'about:blank', title: 'Bad Request', status: 400 }, 400) });
    const c = await start();
    expect(await c.set({ statistics: true })).toBe(true);
    expect(warn).toHaveBeenCalled();
    expect(localStorage.getItem('consentry:sk_test')).toBeNull();
    expect(c.snapshot().confirmed).toBe(false);
  });

  it('identify() re-sends the decisions with the identity token, without a change event', async () => {
    const api = fakeApi();
    const c = await start();
    await c.set({ statistics: true, marketing: false });
    const change = vi.fn();
    c.on('change', change);
    await c.identify('id.jwt.token');
    expect(api.posts()[1].body).toMatchObject({ identity_token: 'id.jwt.token', choices: { statistics: true, marketing: false } });
    expect(change).not.toHaveBeenCalled();
    await c.set({ social_media: true });
    expect(api.posts()[2].body!.identity_token).toBe('id.jwt.token');
  });

  it('the queue is flushed with keepalive when the page is hidden', async () => {
    const api = fakeApi({ post: () => 'network-error' });
    const c = await start();
    await c.set({ statistics: true });
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
    Object.defineProperty(document, 'visibilityState', { value: 'visible', configurable: true });
    expect(api.posts()).toHaveLength(2);
    expect(api.posts()[1].keepalive).toBe(true);
    expect(api.posts()[1].headers['idempotency-key']).toBe(api.posts()[0].headers['idempotency-key']);
  });
});

describe('GPC', () => {
  afterEach(() => setGpc(undefined));

  it('denies gpc_applies purposes before ready, writes with gpc: true, shows it in the snapshot', async () => {
    setGpc(true);
    const api = fakeApi();
    const seen: string[] = [];
    document.addEventListener('consentry:ready', (e) => seen.push('ready:' + (e as CustomEvent<ConsentSnapshot>).detail.purposes.sale_sharing), { once: true });
    document.addEventListener('consentry:change', () => seen.push('change'), { once: true });
    const c = await start();
    expect(seen).toEqual(['ready:denied']);
    expect(c.get('sale_sharing')).toBe('denied');
    expect(c.allowed('sale_sharing')).toBe(false);
    expect(c.snapshot().gpc).toBe(true);
    expect(api.posts()).toHaveLength(1);
    expect(api.posts()[0].body).toMatchObject({ choices: { sale_sharing: false }, gpc: true });
    expect(readCookie(document)).toMatchObject({ gpc: true, choices: { sale_sharing: 'denied' } });

    // the visitor can still decide other purposes; GPC denials stay
    await c.acceptAll();
    expect(api.posts()[1].body!.choices).toEqual({ statistics: true, marketing: true, social_media: true });
    expect(api.posts()[1].body!.gpc).toBe(true);
    expect(c.get('sale_sharing')).toBe('denied');
    await c.set({ sale_sharing: true });
    expect(api.posts()).toHaveLength(2);
  });

  it('already denied on the server: nothing to write', async () => {
    setGpc(true);
    cookie({ sale_sharing: 'denied' }, { gpc: true });
    const api = fakeApi({ consents: record({ sale_sharing: 'denied' }) });
    await start();
    expect(api.posts()).toHaveLength(0);
  });

  it('is not applied when the site does not honour it, nor without the signal', async () => {
    setGpc(true);
    const api = fakeApi({ config: siteConfig({ gpc_honored: false }) });
    const c = await start();
    expect(c.get('sale_sharing')).toBe('undecided');
    expect(api.posts()).toHaveLength(0);
    c.destroy();
    setGpc(false);
    const c2 = await start();
    expect(c2.snapshot().gpc).toBe(false);
  });

  it('a cookie from before the signal does not activate anything synchronously', async () => {
    setGpc(true);
    cookie({ statistics: 'granted' });
    gated('<script type="text/plain" data-consent="sale_sharing" src="/sale.js"></script>');
    gated('<script type="text/plain" data-consent="statistics" src="/stats.js"></script>');
    fakeApi({ consents: record({ statistics: 'granted' }) });
    const p = init(opts);
    expect(document.querySelectorAll('script[type="text/plain"]')).toHaveLength(2);
    inst = await p;
    expect(document.querySelector('script[src="/sale.js"]')!.getAttribute('type')).toBe('text/plain');
    expect(document.querySelector('script[src="/stats.js"]')!.getAttribute('type')).toBeNull();
  });
});

describe('Google Consent Mode v2', () => {
  const w = window as unknown as { dataLayer?: unknown[]; gtag?: unknown };
  const mapping = { analytics_storage: 'statistics', ad_storage: ['marketing', 'sale_sharing'], security_storage: 'necessary' };
  const entries = () => w.dataLayer!.map((e) => (e && typeof e == 'object' && 'length' in e ? Array.from(e as IArguments) : e));

  it('nothing is defined or pushed without a mapping', async () => {
    fakeApi();
    const c = await start();
    await c.acceptAll();
    expect(w.dataLayer).toBeUndefined();
    expect(w.gtag).toBeUndefined();
  });

  it('pushes the default synchronously at init, before anything else', () => {
    fakeApi();
    const p = init({ ...opts, googleConsentMode: mapping });
    expect(entries()).toEqual([
      ['consent', 'default', { analytics_storage: 'denied', ad_storage: 'denied', security_storage: 'denied', wait_for_update: 500 }],
    ]);
    expect(Object.prototype.toString.call(w.dataLayer![0])).toBe('[object Arguments]');
    return p.then((c) => (inst = c));
  });

  it('one update on load from the stored consent, before our dataLayer event', async () => {
    cookie({ statistics: 'granted', marketing: 'denied' });
    fakeApi({ consents: record({ statistics: 'granted', marketing: 'denied' }) });
    const p = init({ ...opts, googleConsentMode: mapping });
    inst = await p;
    const e = entries();
    expect(e).toHaveLength(3);
    expect(e[1]).toEqual(['consent', 'update', { analytics_storage: 'granted', ad_storage: 'denied', security_storage: 'granted' }]);
    expect(e[2]).toMatchObject({ event: 'consentry_consent_changed' });
  });

  it('every change: update first, then consentry_consent_changed', async () => {
    fakeApi();
    const c = await start({ googleConsentMode: mapping });
    const before = entries().length;
    const order: string[] = [];
    c.on('change', () => order.push('change:' + entries().length));
    await c.acceptAll();
    const e = entries().slice(before);
    expect(e[0]).toEqual(['consent', 'update', { analytics_storage: 'granted', ad_storage: 'granted', security_storage: 'granted' }]);
    expect(e[1]).toMatchObject({ event: 'consentry_consent_changed', consentry: { changed: expect.arrayContaining(['statistics']), source: 'banner' } });
    expect(order).toEqual(['change:' + (before + 2)]);
    await c.rejectAll();
    expect(entries().slice(before + 2)).toMatchObject([['consent', 'update', { analytics_storage: 'denied', ad_storage: 'denied' }], { event: 'consentry_consent_changed' }]);
  });

  it('keeps an existing gtag and dataLayer', async () => {
    const mine = vi.fn();
    w.dataLayer = [{ event: 'gtm.js' }];
    w.gtag = mine;
    fakeApi();
    inst = await init({ ...opts, googleConsentMode: { analytics_storage: 'statistics' } });
    expect(mine).toHaveBeenCalledWith('consent', 'default', { analytics_storage: 'denied', wait_for_update: 500 });
  });
});

describe('script and iframe gating', () => {
  const page = () =>
    gated(
      '<script type="text/plain" data-consent="statistics" src="https://cdn.example.com/stats.js" data-x="1"></script>' +
        '<script type="text/plain" data-consent="statistics" data-type="module">window.inline = 1</script>' +
        '<script type="text/plain" data-consent="statistics marketing" src="/both.js"></script>' +
        '<script type="text/plain" data-consent="sale_sharing" src="/sale.js"></script>' +
        '<iframe data-consent="social_media" data-src="https://video.example.com/embed"></iframe>',
    );

  it('activates nothing before consent', async () => {
    page();
    fakeApi();
    const p = init({ ...opts, ui: false });
    expect(document.querySelectorAll('script[type="text/plain"]')).toHaveLength(4);
    inst = await p;
    // only the opt_out purpose is allowed without a decision
    expect(document.querySelectorAll('script[type="text/plain"]')).toHaveLength(3);
    expect(document.querySelector('iframe')!.getAttribute('src')).toBeNull();
  });

  it('activates allowed scripts with the nonce, keeping attributes and order', async () => {
    page();
    fakeApi();
    const c = await start({ nonce: 'n0nce' });
    await c.set({ statistics: true });
    const s = document.querySelector<HTMLScriptElement>('script[src="https://cdn.example.com/stats.js"]')!;
    expect(s.getAttribute('type')).toBeNull();
    expect(s.nonce).toBe('n0nce');
    expect(s.async).toBe(false);
    expect(s.getAttribute('data-x')).toBe('1');
    const inline = document.querySelector<HTMLScriptElement>('script[type="module"]')!;
    expect(inline.text).toBe('window.inline = 1');
    expect(document.querySelector('script[src="/both.js"]')!.getAttribute('type')).toBe('text/plain');
    expect(document.querySelector('iframe')!.getAttribute('src')).toBeNull();
    await c.set({ marketing: true, social_media: true });
    expect(document.querySelector('script[src="/both.js"]')!.getAttribute('type')).toBeNull();
    expect(document.querySelector('iframe')!.getAttribute('src')).toBe('https://video.example.com/embed');
  });

  it('takes the nonce of a nonced script when none is configured', async () => {
    const own = document.createElement('script');
    own.setAttribute('nonce', 'from-page');
    document.head.append(own);
    page();
    fakeApi();
    const c = await start();
    await c.set({ statistics: true });
    expect(document.querySelector<HTMLScriptElement>('script[src="https://cdn.example.com/stats.js"]')!.nonce).toBe('from-page');
  });

  it('activates gated elements added later', async () => {
    cookie({ statistics: 'granted' });
    fakeApi({ consents: record({ statistics: 'granted' }) });
    await start();
    gated('<script type="text/plain" data-consent="statistics" src="/late.js"></script>');
    await tick();
    expect(document.querySelector('script[src="/late.js"]')!.getAttribute('type')).toBeNull();
  });

  it('a [data-consent-grant] control grants in place with source placeholder', async () => {
    page();
    gated('<button data-consent-grant="social_media">Load video</button>');
    const api = fakeApi();
    const c = await start({ ui: false });
    const change = vi.fn();
    c.on('change', change);
    document.querySelector<HTMLButtonElement>('[data-consent-grant]')!.click();
    await tick();
    expect(api.posts()[0].body).toMatchObject({ choices: { social_media: true }, source: 'placeholder' });
    expect(change).toHaveBeenCalledTimes(1);
    expect(document.querySelector('iframe')!.getAttribute('src')).toBe('https://video.example.com/embed');
  });

  it('destroy() stops gating and listening', async () => {
    fakeApi();
    const c = await start();
    c.destroy();
    cookie({ statistics: 'granted' });
    gated('<script type="text/plain" data-consent="statistics" src="/x.js"></script><button data-consent-grant="statistics">x</button>');
    document.querySelector<HTMLButtonElement>('button')!.click();
    await tick();
    expect(document.querySelector('script[src="/x.js"]')!.getAttribute('type')).toBe('text/plain');
  });
});

it('the cookie value stays the documented format', () => {
  expect(encodeState({ id: ID, rev: '2021-02-01', choices: { statistics: 'granted' }, open: [], created: 1, updated: 2, pending: false, gpc: false })).toBe(
    `v=1&id=${ID}&r=2021-02-01&c=1&u=2&g=statistics`,
  );
});
