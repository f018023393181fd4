import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { checked, init } from '../../src/core';
import { setupConsentMode } from '../../src/gcm';
import { checkOptions } from '../../src/options';
import { cookieName, cookieValues, encodeState, readCookie, writeCookie, type StoredState } from '../../src/state';
import type { ConsentChange, ConsentryError, ConsentryInstance, ConsentSnapshot, SiteConfig } from '../../src/types';
import { ENDPOINT, fakeApi, json, PRESENTATION, purpose, record, resetPage, SITE, siteConfig, tick, UUID } from './helpers';

const ID = '0b7c8f5e-3c1a-4d2b-9e8f-1a2b3c4d5e6f';
const NAME = cookieName(SITE);
const opts = { siteKey: SITE, endpoint: ENDPOINT + '/' };
let inst: ConsentryInstance | undefined;
const start = async (extra = {}) => (inst = await init({ ...opts, ...extra }));
const stored = () => readCookie(document, NAME);
const queued = () => JSON.parse(localStorage.getItem('consentry:sk_test') || '[]');

function cookieState(choices: Record<string, 'granted' | 'denied'>, extra: Partial<StoredState> = {}): StoredState {
  return {
    id: ID,
    site: SITE,
    region: '',
    rev: '2021-02-01',
    choices,
    models: { necessary: 'notice_only', sale_sharing: 'opt_out' },
    created: 1,
    updated: Math.floor(Date.now() / 1000) - 60,
    pending: false,
    gpc: false,
    ...extra,
  };
}
function cookie(choices: Record<string, 'granted' | 'denied'>, extra: Partial<StoredState> = {}, name = NAME) {
  writeCookie(document, name, encodeState(cookieState(choices, extra)), 30 * 86400);
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
    expect(stored()).toBeNull();
  });

  it('returning visitor: the cookie applies synchronously, then the server record wins', async () => {
    cookie({ statistics: 'granted', marketing: 'denied' }, { region: 'US-CA' });
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
    expect(stored()!.choices).toEqual({ marketing: 'denied' });
  });

  it('a cookie of an older SDK, another site key or another region does not apply before the server answered', async () => {
    const typeOf = (src: string) => document.querySelector(`script[src="${src}"]`)!.getAttribute('type');
    const cases: [string, () => void][] = [
      // the name `consentry` of older versions, in their one-key-per-entry format: read once for its visitor id
      ['legacy', () => (document.cookie = `consentry=v=1&id=${ID}&r=2021-02-01&c=1&u=${Math.floor(Date.now() / 1000) - 60}&g=statistics&o=necessary&o=sale_sharing; Path=/`)],
      ['other site', () => cookie({ statistics: 'granted' }, { site: 'sk_other' })],
      ['other region', () => cookie({ statistics: 'granted' }, { region: 'DE' })],
      // pending, but the write it waits for is not in this browser's queue: the server may not know it
      ['unconfirmed', () => cookie({ statistics: 'granted' }, { pending: true })],
    ];
    for (const [what, setup] of cases) {
      resetPage();
      gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script><script type="text/plain" data-consent="sale_sharing" src="/s.js"></script>');
      setup();
      const api = fakeApi({ consents: record({ statistics: 'granted' }) });
      const p = init({ ...opts, region: what == 'other region' ? 'US-CA' : undefined });
      expect([typeOf('/a.js'), typeOf('/s.js')], what).toEqual(['text/plain', 'text/plain']);
      const c = (inst = await p);
      // the visitor id is kept, the server's record decides
      expect(c.visitorId, what).toBe(ID);
      expect(api.calls[1].url, what).toContain('/visitors/' + ID + '/consents');
      expect([typeOf('/a.js'), typeOf('/s.js')], what).toEqual([null, null]);
      c.destroy();
    }
    // migrated: the state is now in this site's cookie
    expect(stored()).toMatchObject({ id: ID, site: SITE, choices: { statistics: 'granted' } });
  });

  it('the cookie lifetime is renewed by a write only, not on every load', async () => {
    cookie({ statistics: 'granted' }, { updated: Math.floor(Date.now() / 1000) - 10 * 86400 });
    const set = vi.spyOn(document, 'cookie', 'set');
    fakeApi({ consents: record({ statistics: 'granted' }) });
    const c = await start();
    // the server agrees with the cookie: nothing is written
    expect(set).not.toHaveBeenCalled();
    c.destroy();
    // the server's record differs: written with the remaining lifetime
    fakeApi({ consents: record({ statistics: 'granted', marketing: 'denied' }) });
    const c2 = (inst = await init(opts));
    expect(set).toHaveBeenCalledTimes(1);
    expect(set.mock.calls[0][0]).toMatch(/Max-Age=(33264000|3326399\d); /); // 395 - 10 days
    // a decision renews it
    await c2.set({ social_media: true });
    expect(set.mock.calls[set.mock.calls.length - 1][0]).toContain('Max-Age=' + 395 * 86400 + ';');
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

  it('server down: needs consent (unknown), retries the config with backoff, then reconciles and mounts the UI', async () => {
    cookie({ statistics: 'granted' });
    let up = false;
    const api = fakeApi({ config: () => (up ? siteConfig() : null), consents: record({ statistics: 'granted', marketing: 'denied' }) });
    vi.useFakeTimers();
    try {
      const mount = vi.fn(() => ({ update() {}, banner() {}, preferences() {} }));
      const c = (inst = await init(opts, mount));
      expect(c.config).toBeNull();
      expect(c.snapshot().needsConsent).toBe(true);
      const configCalls = () => api.calls.filter((x) => x.url.includes('/config')).length;
      expect(configCalls()).toBe(1);
      await vi.advanceTimersByTimeAsync(1000);
      expect(configCalls()).toBe(2);
      await vi.advanceTimersByTimeAsync(2000);
      expect(configCalls()).toBe(3);
      up = true;
      await vi.advanceTimersByTimeAsync(4000);
      expect(configCalls()).toBe(4);
      expect(c.config).not.toBeNull();
      expect(mount).toHaveBeenCalledTimes(1);
      expect(c.getAll()).toMatchObject({ statistics: 'granted', marketing: 'denied' });
      await vi.advanceTimersByTimeAsync(120000);
      expect(configCalls()).toBe(4); // no more retries
    } finally {
      vi.useRealTimers();
    }
  });

  it('server down: choices are queued with the policy revision from the cookie', async () => {
    cookie({ statistics: 'granted' });
    const api = fakeApi({ config: null, post: () => 'network-error' });
    const c = await start();
    expect(await c.set({ statistics: false, necessary: false, sale_sharing: false })).toBe(false);
    expect(api.posts()[0].body).toMatchObject({ choices: { statistics: false, sale_sharing: false }, policy_revision: '2021-02-01' });
    expect(queued()).toHaveLength(1);
    expect(c.get('statistics')).toBe('denied');
    expect(c.snapshot().confirmed).toBe(false);
    // reject all: every purpose the cookie knows, never a notice_only one
    await c.rejectAll();
    expect(api.posts()[api.posts().length - 1].body!.choices).toEqual({ statistics: false, sale_sharing: false });
  });

  it('server down without a cookie: writes resolve false with reason offline', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const api = fakeApi({ config: null });
    const c = await start();
    const errors: ConsentryError[] = [];
    c.on('error', (e) => errors.push(e));
    expect(await c.set({ statistics: true })).toBe(false);
    expect(errors).toMatchObject([{ reason: 'offline', status: 0, choices: { statistics: true } }]);
    expect(error.mock.calls[0]).toEqual(['consentry: offline', 0, null]);
    expect(api.posts()).toHaveLength(0);
    expect(c.snapshot()).toMatchObject({ needsConsent: true, confirmed: false });
  });

  it('server down: the "Privacy choices" link logs, retries at once, and opens the preference centre when the config arrives', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    let up = false;
    fakeApi({ config: () => (up ? siteConfig() : null) });
    const ui = { update: vi.fn(), banner: vi.fn(), preferences: vi.fn() };
    inst = await init(opts, () => ui);
    gated('<a href="#" data-consentry-preferences>Privacy choices</a>');
    up = true;
    document.querySelector<HTMLElement>('[data-consentry-preferences]')!.click();
    expect(error).toHaveBeenCalledWith(expect.stringMatching(/offline, retrying/));
    await tick();
    await tick();
    expect(ui.preferences).toHaveBeenCalledTimes(1);
    expect(ui.banner).not.toHaveBeenCalled();
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
      presentation: PRESENTATION.token,
    });
    expect(saved).toHaveLength(1);
    expect(c.snapshot().confirmed).toBe(true);
    const st = stored()!;
    expect(st).toMatchObject({ id: c.visitorId, site: SITE, rev: '2021-02-01', pending: false });
    expect(st.choices).toEqual({ statistics: 'granted', marketing: 'granted', social_media: 'granted', sale_sharing: 'granted' });
    // a second action has its own key
    await c.set({ marketing: false });
    expect(api.posts()[1].headers['idempotency-key']).not.toBe(post.headers['idempotency-key']);
    expect(api.posts()[1].body!.source).toBe('preference_centre');
    expect(changes).toHaveLength(2);
  });

  it("sends the config's presentation token back with the write (what the banner showed)", async () => {
    const api = fakeApi();
    const c = await start();
    await c.rejectAll();
    expect(api.posts()[0].body!.presentation).toBe(PRESENTATION.token);
  });

  it('an older server gives no presentation: the write carries none', async () => {
    const { presentation: _, ...older } = siteConfig();
    const api = fakeApi({ config: older as SiteConfig });
    const c = await start();
    await c.rejectAll();
    expect(api.posts()[0].body).not.toHaveProperty('presentation');
  });

  it('reject all stores explicit denials, never undecided', async () => {
    const api = fakeApi();
    const c = await start();
    await c.rejectAll();
    expect(api.posts()[0].body!.choices).toEqual({ statistics: false, marketing: false, social_media: false, sale_sharing: false });
    expect(c.getAll()).toEqual({ necessary: 'granted', statistics: 'denied', marketing: 'denied', social_media: 'denied', sale_sharing: 'denied' });
    expect(stored()!.choices).toEqual({ statistics: 'denied', marketing: 'denied', social_media: 'denied', sale_sharing: 'denied' });
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
      expect(stored()!.pending).toBe(true);
      expect(JSON.parse(localStorage.getItem('consentry:sk_test')!)).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1000);
      expect(api.posts()).toHaveLength(2);
      expect(api.posts()[1].headers['idempotency-key']).toBe(api.posts()[0].headers['idempotency-key']);
      expect(saved).toHaveBeenCalledTimes(1);
      expect(c.snapshot().confirmed).toBe(true);
      expect(stored()!.pending).toBe(false);
      expect(localStorage.getItem('consentry:sk_test')).toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes left by an earlier page: the server record is still fetched, the queued choices go on top, then they are sent', async () => {
    cookie({ statistics: 'granted', marketing: 'granted' }, { pending: true });
    const left = { key: 'k-old', at: Date.now() - 5000, body: { visitor_id: ID, choices: { statistics: true }, policy_revision: '2021-02-01', source: 'banner' } };
    localStorage.setItem('consentry:sk_test', JSON.stringify([left]));
    // meanwhile, elsewhere: statistics and marketing were withdrawn, social media granted
    const api = fakeApi({ consents: record({ statistics: 'denied', marketing: 'denied', social_media: 'granted' }) });
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script>');
    const p = init(opts);
    // the queue holds the write the cookie waits for: applied at once
    expect(document.querySelector('script[src="/a.js"]')!.getAttribute('type')).toBeNull();
    const c = (inst = await p);
    expect(api.calls.some((x) => x.url.includes('/visitors/' + ID))).toBe(true);
    expect(c.getAll()).toMatchObject({ statistics: 'granted', marketing: 'denied', social_media: 'granted' });
    expect(stored()!.choices).toMatchObject({ statistics: 'granted', marketing: 'denied', social_media: 'granted' });
    await tick();
    expect(api.posts()[0].headers['idempotency-key']).toBe('k-old');
    expect(c.snapshot().confirmed).toBe(true);
  });

  it('a write the server refuses resolves false, emits error with the problem, and does not block later writes', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const problem = { type: 'about:blank', title: 'Bad Request', status: 400, detail: 'bad' };
    let n = 0;
    const api = fakeApi({ post: () => (n++ == 0 ? json(problem, 400) : json({ event_ids: [], consents: record({ marketing: 'granted' }), gpc_honored: false }, 201)) });
    const c = await start();
    const errors: ConsentryError[] = [];
    const domErrors: ConsentryError[] = [];
    c.on('error', (e) => errors.push(e));
    document.addEventListener('consentry:error', (e) => domErrors.push((e as CustomEvent<ConsentryError>).detail), { once: true });
    expect(await c.set({ statistics: true })).toBe(false);
    expect(errors).toEqual([{ reason: 'refused', status: 400, problem, choices: { statistics: true } }]);
    expect(domErrors).toEqual(errors);
    expect(error).toHaveBeenCalledTimes(1);
    expect(localStorage.getItem('consentry:sk_test')).toBeNull();
    expect(c.snapshot().confirmed).toBe(false);
    // the next write goes through
    expect(await c.acceptAll()).toBe(true);
    expect(api.posts()).toHaveLength(2);
    expect(c.snapshot().confirmed).toBe(true);
  });

  it('with no policy in force nothing is queued: error once, false, the choice stays local and unconfirmed', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const api = fakeApi({ config: siteConfig({ policies: [] }) });
    const c = await start();
    const errors: ConsentryError[] = [];
    c.on('error', (e) => errors.push(e));
    expect(await c.set({ statistics: true })).toBe(false);
    expect(await c.rejectAll()).toBe(false);
    expect(api.posts()).toHaveLength(0);
    expect(localStorage.getItem('consentry:sk_test')).toBeNull();
    expect(error).toHaveBeenCalledTimes(1);
    expect(errors.map((e) => e.reason)).toEqual(['no_policy', 'no_policy']);
    expect(c.get('statistics')).toBe('denied');
    expect(c.snapshot().confirmed).toBe(false);
    expect(stored()!.pending).toBe(true);
  });

  it('identify() sends the token with its own write only; later writes never carry it', async () => {
    const api = fakeApi();
    const c = await start();
    await c.set({ statistics: true, marketing: false });
    const change = vi.fn();
    c.on('change', change);
    expect(await c.identify('id.jwt.token')).toBe(true);
    expect(api.posts()[1].body).toMatchObject({ identity_token: 'id.jwt.token', choices: { statistics: true, marketing: false } });
    expect(change).not.toHaveBeenCalled();
    await c.set({ social_media: true });
    expect(api.posts()[2].body).not.toHaveProperty('identity_token');
  });

  it('identify(): a refused token resolves false, is forgotten, and later writes go through', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const api = fakeApi({
      post: (call) =>
        call.body!.identity_token
          ? json({ type: 'about:blank', title: 'Bad Request', status: 400, detail: 'identity linking is not enabled' }, 400)
          : json({ event_ids: [], consents: record({ statistics: 'granted' }), gpc_honored: false }, 201),
    });
    const c = await start();
    await c.set({ statistics: true });
    const errors: ConsentryError[] = [];
    c.on('error', (e) => errors.push(e));
    expect(await c.identify('id.jwt.token')).toBe(false);
    expect(errors[0]).toMatchObject({ reason: 'refused', status: 400 });
    expect(await c.set({ marketing: true })).toBe(true);
    expect(api.posts().map((p) => p.body!.identity_token)).toEqual([undefined, 'id.jwt.token', undefined]);
    expect(localStorage.getItem('consentry:sk_test')).toBeNull();
  });

  it("two tabs: neither loses the other one's queued write or its withdrawal in the cookie", async () => {
    cookie({ statistics: 'granted', marketing: 'granted' });
    const api = fakeApi({ consents: record({ statistics: 'granted', marketing: 'granted' }), post: () => 'network-error' });
    const a = await init(opts);
    const b = (inst = await init(opts));
    try {
      await a.set({ statistics: false }); // withdrawal in tab A
      await b.set({ social_media: true }); // tab B, which still had statistics granted in memory
      expect(stored()!.choices).toEqual({ statistics: 'denied', marketing: 'granted', social_media: 'granted' });
      expect(queued().map((i: { body: { choices: object } }) => i.body.choices)).toEqual([{ statistics: false }, { social_media: true }]);
      expect(b.get('statistics')).toBe('denied');
      // the same purpose changed in both: the later change wins
      await b.set({ marketing: false });
      await a.set({ social_media: false });
      expect(stored()!.choices).toEqual({ statistics: 'denied', marketing: 'denied', social_media: 'denied' });
      expect(api.posts().length).toBeGreaterThanOrEqual(4);
    } finally {
      a.destroy();
    }
  });

  it('on plain http (no crypto.randomUUID) ids come from getRandomValues', async () => {
    const real = crypto;
    vi.stubGlobal('crypto', { getRandomValues: (a: Uint8Array) => real.getRandomValues(a) });
    const api = fakeApi();
    const c = await start();
    expect(c.visitorId).toMatch(UUID);
    await c.acceptAll();
    expect(api.posts()[0].headers['idempotency-key']).toMatch(UUID);
  });

  it('any startup error is a rejected promise, never a synchronous throw', async () => {
    vi.stubGlobal('crypto', {});
    fakeApi();
    let p: Promise<unknown> | undefined;
    expect(() => (p = init(opts))).not.toThrow();
    await expect(p).rejects.toThrow();
    expect(() => (p = init(undefined as never))).not.toThrow();
    await expect(p).rejects.toThrow(/siteKey/);
  });

  it('the queue is flushed with keepalive when the page is hidden', async () => {
    const api = fakeApi({ post: () => 'network-error' });
    const c = await start();
    await c.set({ statistics: true });
    Object.defineProperty(document, 'hidden', { value: true, configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
    Object.defineProperty(document, 'hidden', { value: false, configurable: true });
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
    expect(stored()).toMatchObject({ gpc: true, choices: { sale_sharing: 'denied' } });

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

  it('a GPC-denied purpose cannot be granted by a placeholder either', async () => {
    setGpc(true);
    gated('<button data-consent-grant="sale_sharing">x</button>');
    const api = fakeApi();
    const c = await start();
    await tick();
    document.querySelector<HTMLButtonElement>('button')!.click();
    await tick();
    expect(api.posts()).toHaveLength(1); // the GPC denial only
    expect(c.get('sale_sharing')).toBe('denied');
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
  // the builds with Consent Mode (the default ones, consentry.core-gcm.mjs)
  const init = checked(undefined, setupConsentMode);
  const start = async (extra = {}) => (inst = await init({ ...opts, ...extra }));
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
  const page = (nonce?: string) => {
    const n = nonce ? ` nonce="${nonce}"` : '';
    gated(
      `<script type="text/plain" data-consent="statistics" src="https://cdn.example.com/stats.js" data-x="1"${n}></script>` +
        `<script type="text/plain" data-consent="statistics" data-type="module"${n}>window.inline = 1</script>` +
        `<script type="text/plain" data-consent="statistics marketing" src="/both.js"${n}></script>` +
        `<script type="text/plain" data-consent="sale_sharing" src="/sale.js"${n}></script>` +
        '<iframe data-consent="social_media" data-src="https://video.example.com/embed"></iframe>',
    );
  };
  /**
   * happy-dom loads no script file and fires `load` at once on insertion; this holds
   * those events back until the test says a script has `loaded`.
   */
  function holdLoads() {
    const real = EventTarget.prototype.dispatchEvent;
    let release = false;
    vi.spyOn(HTMLScriptElement.prototype, 'dispatchEvent').mockImplementation(function (this: HTMLScriptElement, e: Event) {
      return e.type == 'load' && !release ? true : real.call(this, e);
    });
    return (src: string) => {
      release = true;
      document.querySelector(`script[src="${src}"]:not([type="text/plain"])`)!.dispatchEvent(new Event('load'));
      release = false;
    };
  }

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
    page('n0nce');
    fakeApi();
    const loaded = holdLoads();
    const c = await start({ nonce: 'n0nce' });
    await c.set({ statistics: true });
    const s = document.querySelector<HTMLScriptElement>('script[src="https://cdn.example.com/stats.js"]')!;
    expect(s.getAttribute('type')).toBeNull();
    expect(s.nonce).toBe('n0nce');
    expect(s.async).toBe(false);
    expect(s.getAttribute('data-x')).toBe('1');
    loaded('https://cdn.example.com/stats.js');
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
    page('from-page');
    fakeApi();
    const c = await start();
    await c.set({ statistics: true });
    expect(document.querySelector<HTMLScriptElement>('script[src="https://cdn.example.com/stats.js"]')!.nonce).toBe('from-page');
  });

  it('under a nonce, only gated scripts carrying that nonce run: injected markup cannot borrow it', async () => {
    gated(
      '<script type="text/plain" data-consent="statistics" src="/ok.js" nonce="n0nce"></script>' +
        '<script type="text/plain" data-consent="statistics" src="/none.js"></script>' +
        '<script type="text/plain" data-consent="statistics" nonce="guess">window.wrong = 1</script>' +
        '<iframe data-consent="statistics" data-src="https://video.example.com/embed"></iframe>',
    );
    fakeApi();
    const c = await start({ nonce: 'n0nce' });
    await c.set({ statistics: true });
    // markup injected later (e.g. through innerHTML) and found by the observer
    const div = document.createElement('div');
    div.innerHTML = '<script type="text/plain" data-consent="statistics">window.injected = 1</script>';
    document.body.append(div);
    await tick();
    expect(document.querySelector('script[src="/ok.js"]')!.getAttribute('type')).toBeNull();
    expect(document.querySelector('script[src="/none.js"]')!.getAttribute('type')).toBe('text/plain');
    expect(document.querySelectorAll('script[type="text/plain"][data-consent]')).toHaveLength(3);
    expect(Array.from(document.querySelectorAll<HTMLScriptElement>('script:not([type])')).map((x) => x.text || x.getAttribute('src'))).toEqual(['/ok.js']);
    // iframes carry no nonce: frame-src governs them
    expect(document.querySelector('iframe')!.getAttribute('src')).toBe('https://video.example.com/embed');
  });

  it('without a nonce in use, every gated script is activated as before', async () => {
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script><script type="text/plain" data-consent="statistics">1</script>');
    fakeApi();
    const c = await start();
    await c.set({ statistics: true });
    expect(document.querySelectorAll('script[type="text/plain"]')).toHaveLength(0);
  });

  it('keeps document order: an inline script waits for the external one before it to load', async () => {
    gated(
      '<script type="text/plain" data-consent="statistics" src="/first.js"></script>' +
        '<script type="text/plain" data-consent="statistics" id="i1">window.order.push(1)</script>' +
        '<script type="text/plain" data-consent="statistics" src="/async.js" async></script>' +
        '<script type="text/plain" data-consent="statistics" src="/second.js"></script>' +
        '<script type="text/plain" data-consent="statistics" id="i2">window.order.push(2)</script>' +
        '<script type="text/plain" data-consent="statistics" id="i3">window.order.push(3)</script>',
    );
    fakeApi();
    const loaded = holdLoads();
    const c = await start();
    await c.set({ statistics: true });
    const real = () => Array.from(document.querySelectorAll<HTMLScriptElement>('script:not([type="text/plain"])')).map((x) => x.id || x.getAttribute('src'));
    const first = document.querySelector<HTMLScriptElement>('script[src="/first.js"]')!;
    expect(first.async).toBe(false);
    expect(document.querySelector<HTMLScriptElement>('script[src="/async.js"]:not([type])')!.async).toBe(true);
    // the external ones are inserted at once (fetched in parallel, run in order); the inline ones wait
    expect(real()).toEqual(['/first.js', '/async.js', '/second.js']);
    // the waiting ones are no longer gated: a later scan does not activate them twice
    await c.set({ marketing: true });
    expect(document.querySelectorAll('script#i1')).toHaveLength(1);
    loaded('/first.js');
    expect(real()).toEqual(['/first.js', 'i1', '/async.js', '/second.js']);
    loaded('/second.js');
    expect(real()).toEqual(['/first.js', 'i1', '/async.js', '/second.js', 'i2', 'i3']);
  });

  it('activates gated elements added later', async () => {
    cookie({ statistics: 'granted' });
    fakeApi({ consents: record({ statistics: 'granted' }) });
    await start();
    gated('<script type="text/plain" data-consent="statistics" src="/late.js"></script>');
    await tick();
    expect(document.querySelector('script[src="/late.js"]')!.getAttribute('type')).toBeNull();
  });

  it('clicks on [data-consent-grant] before ready are not accepted', async () => {
    gated('<button data-consent-grant="social_media">Load video</button>');
    const api = fakeApi();
    const p = init({ ...opts, ui: false });
    document.querySelector<HTMLButtonElement>('[data-consent-grant]')!.click();
    const c = (inst = await p);
    await tick();
    expect(api.posts()).toHaveLength(0);
    expect(c.get('social_media')).toBe('undecided');
  });

  it('the observer only looks at added nodes', async () => {
    cookie({ statistics: 'granted' });
    fakeApi({ consents: record({ statistics: 'granted' }) });
    await start();
    const docScan = vi.spyOn(document, 'querySelectorAll');
    const div = document.createElement('div');
    div.innerHTML = '<script type="text/plain" data-consent="statistics" src="/nested.js"></script>';
    gated('<script type="text/plain" data-consent="statistics" src="/top.js"></script>');
    document.body.append(div);
    await tick();
    expect(document.querySelectorAll('script[type="text/plain"]')).toHaveLength(0);
    expect(docScan).toHaveBeenCalledTimes(1); // the line above
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
  expect(
    encodeState({
      id: ID,
      site: 'pk_AbCdEfGh1234',
      region: 'US-CA',
      rev: '2021-02-01',
      choices: { statistics: 'granted', social_media: 'granted', marketing: 'denied' },
      models: { sale_sharing: 'opt_out', necessary: 'notice_only' },
      created: 1,
      updated: 2,
      pending: true,
      gpc: true,
    }),
  ).toBe(`v=1&id=${ID}&k=pk_AbCdEfGh1234&z=US-CA&r=2021-02-01&c=1&u=2&d=marketing&g=statistics+social_media&o=sale_sharing&n=necessary&p=1&x=1`);
  expect(cookieName('pk_AbCdEfGh1234')).toBe('consentry_AbCdEfGh');
});

describe('configuration changes never revive a choice', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const typeOf = () => document.querySelector('script[src="/a.js"]')!.getAttribute('type');

  it('two copies of the cookie (another cookie domain): the newest decision applies at once, the other is deleted at the next write', async () => {
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script>');
    // an older host-only copy that granted, the newest (on the parent domain) withdrew
    document.cookie = `${NAME}=${encodeState(cookieState({ statistics: 'granted' }, { updated: now() - 600 }))}; Path=/`;
    document.cookie = `${NAME}=${encodeState(cookieState({ statistics: 'denied' }, { updated: now() - 60 }))}; Path=/; Domain=example.com`;
    fakeApi({ consents: null, config: null });
    const p = init({ ...opts, cookieDomain: 'example.com' });
    expect(typeOf()).toBe('text/plain');
    const c = (inst = await p);
    expect(c.get('statistics')).toBe('denied');
    expect(typeOf()).toBe('text/plain');
  });

  it('a withdrawal still queued goes on top of the cookie before anything is activated', async () => {
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script>');
    cookie({ statistics: 'granted' }, { pending: true });
    localStorage.setItem(
      'consentry:' + SITE,
      JSON.stringify([{ key: 'k1', at: Date.now(), body: { visitor_id: ID, choices: { statistics: false }, policy_revision: '2021-02-01', source: 'banner' } }]),
    );
    fakeApi({ config: null });
    const p = init(opts);
    expect(typeOf()).toBe('text/plain');
    inst = await p;
    expect(inst.get('statistics')).toBe('denied');
  });

  it("a newer cookie of the older SDK wins over this site's cookie: nothing applies before the server answered, then it is deleted", async () => {
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script>');
    cookie({ statistics: 'granted' }, { updated: now() - 600 });
    document.cookie = `consentry=v=1&id=${ID}&r=2021-02-01&c=1&u=${now() - 60}&d=statistics; Path=/`;
    fakeApi({ consents: record({ statistics: 'denied' }) });
    const p = init(opts);
    expect(typeOf()).toBe('text/plain');
    const c = (inst = await p);
    expect(c.get('statistics')).toBe('denied');
    expect(typeOf()).toBe('text/plain');
    // (happy-dom keeps a deleted cookie's name with an empty value)
    expect(cookieValues(document, 'consentry').filter(Boolean)).toEqual([]);
    expect(stored()).toMatchObject({ id: ID, choices: { statistics: 'denied' } });
  });
});

describe('init options (checked in the default builds)', () => {
  const startChecked = async (extra = {}) => (inst = await checked(checkOptions, setupConsentMode)({ ...opts, ...extra }));
  const errors: ConsentryError[] = [];
  const onError = (e: Event) => errors.push((e as CustomEvent).detail);
  beforeEach(() => {
    errors.length = 0;
    document.addEventListener('consentry:error', onError);
  });
  afterEach(() => document.removeEventListener('consentry:error', onError));

  it('an option the SDK cannot use: console.error, an error event naming it, the default instead; replayed to later subscribers', async () => {
    const log = vi.spyOn(console, 'error').mockImplementation(() => {});
    const api = fakeApi();
    const c = await startChecked({
      endpoint: 'api.consentry.test',
      region: 'California',
      locale: 'english please',
      cookieDomain: 'https://shop.example.com',
      visitorId: 'abc',
      ui: 'no',
      nonce: 'not base64',
      cookie_domain: 'example.com',
      googleConsentMode: { analytics_storage: [], ads_storage: 'marketing', ad_storage: 'marketing' },
    });
    const bad = ['endpoint', 'region', 'locale', 'cookieDomain', 'visitorId', 'ui', 'nonce', 'cookie_domain', 'googleConsentMode.analytics_storage', 'googleConsentMode.ads_storage'];
    expect(errors.map((e) => e.option)).toEqual(bad);
    expect(errors.every((e) => e.reason == 'invalid_option' && e.status == 0 && e.problem == null)).toBe(true);
    expect(log.mock.calls.map((a) => a[1])).toEqual(bad);
    expect(log.mock.calls[1]).toEqual(['consentry: invalid_option', 'region', 'California']);
    const late: string[] = [];
    c.on('error', (e) => late.push(e.option!));
    expect(late).toEqual(bad);
    // the defaults: this origin's API, the server decides the region, the page's locale, a new visitor id, the host's cookie
    expect(api.calls[0].url).toBe('/v1/sites/sk_test/config?locale=' + navigator.language);
    expect(c.visitorId).toMatch(UUID);
    await c.set({ statistics: true });
    expect(stored()!.choices).toEqual({ statistics: 'granted' });
  });

  it('valid options give no error; the region is normalised to upper case', async () => {
    const api = fakeApi();
    await startChecked({ region: 'us-ca', locale: 'de-CH', cookieDomain: '.example.com', visitorId: ID.toUpperCase(), ui: false, nonce: 'n', googleConsentMode: { analytics_storage: 'statistics' } });
    expect(errors).toEqual([]);
    expect(api.calls[0].url).toBe(ENDPOINT + '/v1/sites/sk_test/config?region=US-CA&locale=de-CH');
    expect(inst!.visitorId).toBe(ID);
  });

  it('the headless core checks what it must: a malformed visitorId is reported and replaced', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    fakeApi();
    const c = await start({ visitorId: 'visitor-1', region: 'Narnia' });
    expect(errors.map((e) => e.option)).toEqual(['visitorId']);
    expect(c.visitorId).toMatch(UUID);
  });

  it('Consent Mode: an empty list of purposes keeps its type denied even once everything is accepted', async () => {
    fakeApi();
    const c = await startChecked({ googleConsentMode: { analytics_storage: [], ad_storage: 'marketing' } });
    await c.acceptAll();
    const w = window as unknown as { dataLayer: unknown[] };
    const updates = w.dataLayer.map((e) => (e && typeof e == 'object' && 'length' in e ? Array.from(e as IArguments) : e)).filter((e) => Array.isArray(e) && e[1] == 'update');
    expect(updates[updates.length - 1]).toEqual(['consent', 'update', { analytics_storage: 'denied', ad_storage: 'granted' }]);
  });
});

describe('visitorId option', () => {
  it('wins over the cookie: a cookie of another visitor is not applied, the known visitor\'s record is fetched', async () => {
    gated('<script type="text/plain" data-consent="statistics" src="/a.js"></script>');
    cookie({ statistics: 'granted' });
    const known = '7d1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    const api = fakeApi({ consents: record({ statistics: 'denied' }) });
    const p = init({ ...opts, visitorId: known });
    expect(document.querySelector('script[src="/a.js"]')!.getAttribute('type')).toBe('text/plain');
    const c = (inst = await p);
    expect(c.visitorId).toBe(known);
    expect(api.calls[1].url).toContain('/visitors/' + known + '/consents');
    expect(c.get('statistics')).toBe('denied');
    await c.set({ marketing: false });
    expect(api.posts()[0].body!.visitor_id).toBe(known);
    expect(stored()!.id).toBe(known);
  });

  it('without any cookie (dropped after 7 days): the record of the known visitor is the state, no banner needed', async () => {
    const known = '7d1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    fakeApi({ consents: record({ statistics: 'granted', marketing: 'denied', social_media: 'denied', sale_sharing: 'denied' }) });
    const c = await start({ visitorId: known });
    expect(c.snapshot()).toMatchObject({ visitorId: known, needsConsent: false, purposes: { statistics: 'granted' } });
  });
});

describe('fallbacks: data-consent="!purpose"', () => {
  it('run once while the purpose is refused, are shown only then, on every load; never while undecided', async () => {
    gated(
      '<script type="text/plain" data-consent="!statistics" src="/fallback.js"></script>' +
        '<p id="fb" data-consent="!statistics" hidden>no stats</p><p id="both" data-consent="statistics !marketing" hidden>stats, no ads</p>' +
        '<iframe data-consent="!social_media" data-src="/static-map.html"></iframe>',
    );
    const fallbacks = () => document.querySelectorAll('script[src="/fallback.js"]:not([type="text/plain"])').length;
    const shown = (id: string) => !document.getElementById(id)!.hidden;
    fakeApi();
    const c = await start({ ui: false });
    expect([fallbacks(), shown('fb'), shown('both')]).toEqual([0, false, false]);
    await c.set({ statistics: false, social_media: false });
    expect([fallbacks(), shown('fb'), shown('both')]).toEqual([1, true, false]);
    expect(document.querySelector('iframe')!.getAttribute('src')).toBe('/static-map.html');
    await c.set({ statistics: true, marketing: false });
    expect([fallbacks(), shown('fb'), shown('both')]).toEqual([1, false, true]);
    await c.set({ statistics: false });
    // never twice per page
    expect([fallbacks(), shown('fb')]).toEqual([1, true]);
    c.destroy();
    // the next load: from the cookie, at once
    resetPage();
    cookie({ statistics: 'denied' });
    gated('<script type="text/plain" data-consent="!statistics" src="/fallback.js"></script>');
    fakeApi({ consents: record({ statistics: 'denied' }) });
    const p = init(opts);
    expect(fallbacks()).toBe(1);
    inst = await p;
    expect(fallbacks()).toBe(1);
  });
});

describe('withdrawal cleans up (issue 12)', () => {
  const config = () =>
    siteConfig({
      purposes: [
        purpose('necessary', 'notice_only', { cookies: ['session'] }),
        purpose('statistics', 'opt_in', { cookies: ['_ga', '_ga_*'] }),
        purpose('marketing', 'opt_in', { cookies: ['_fbp'] }),
      ],
    });
  // (happy-dom keeps a deleted Domain= variant as an empty value: a value is what counts)
  const names = () =>
    document.cookie
      .split('; ')
      .filter((c) => c.split('=')[1])
      .map((c) => c.split('=')[0])
      .filter((n) => !n.startsWith('consentry'))
      .sort();
  const plant = () => {
    for (const c of ['_ga=1', '_ga_X1=2', '_gax=3', '_fbp=4', 'session=5']) document.cookie = c + '; Path=/';
  };

  it("a refused or withdrawn purpose's declared cookies go (names and prefix patterns), others stay; nothing runs again", async () => {
    gated('<script type="text/plain" data-consent="statistics" src="/stats.js"></script>');
    fakeApi({ config });
    const c = await start({ ui: false });
    plant();
    await c.set({ statistics: true, marketing: true });
    expect(names()).toEqual(['_fbp', '_ga', '_ga_X1', '_gax', 'session']);
    expect(document.querySelectorAll('script[src="/stats.js"]:not([type])').length).toBe(1);
    // `_ga` is a name (not `_gax`), `_ga_*` a prefix
    await c.set({ statistics: false });
    expect(names()).toEqual(['_fbp', '_gax', 'session']);
    expect(document.querySelectorAll('script[src="/stats.js"]').length).toBe(1);
    await c.rejectAll();
    expect(names()).toEqual(['_gax', 'session']);
  });

  it('at load, from the server record, once the config is known', async () => {
    plant();
    fakeApi({ config, consents: record({ statistics: 'denied', marketing: 'granted' }) });
    cookie({ statistics: 'denied', marketing: 'granted' });
    await start({ ui: false });
    expect(names()).toEqual(['_fbp', '_gax', 'session']);
  });
});

describe('the headless core without Consent Mode', () => {
  it('reports googleConsentMode as an option it cannot use, and pushes nothing', async () => {
    const errors: unknown[] = [];
    document.addEventListener('consentry:error', (e) => errors.push((e as CustomEvent).detail), { once: true });
    fakeApi();
    await start({ googleConsentMode: { analytics_storage: 'statistics' } });
    expect(errors).toMatchObject([{ reason: 'invalid_option', option: 'googleConsentMode' }]);
    expect((window as unknown as { dataLayer?: unknown }).dataLayer).toBeUndefined();
  });
});

describe('allowed', () => {
  it('applies the consent model: notice_only always, opt_in when granted, opt_out unless denied', async () => {
    fakeApi({
      config: siteConfig({
        purposes: [purpose('necessary', 'notice_only'), purpose('statistics', 'opt_in'), purpose('marketing', 'opt_in'), purpose('sale_sharing', 'opt_out'), purpose('social_media', 'opt_out')],
      }),
    });
    const c = await start();
    expect(c.allowed('necessary')).toBe(true);
    expect(c.allowed('statistics')).toBe(false); // undecided
    expect(c.allowed('sale_sharing')).toBe(true); // undecided
    expect(c.allowed('unknown')).toBe(false); // no model: opt_in, no decision
    await c.set({ statistics: true, marketing: false, sale_sharing: false, social_media: true });
    expect(c.allowed('statistics')).toBe(true);
    expect(c.allowed('marketing')).toBe(false);
    expect(c.allowed('sale_sharing')).toBe(false);
    expect(c.allowed('social_media')).toBe(true);
  });
});
