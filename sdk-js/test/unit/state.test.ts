import { describe, expect, it } from 'vitest';
import {
  applyGpc,
  COOKIE_MAX,
  cookieName,
  cookieValues,
  decodeState,
  dropCookie,
  encodeState,
  newest,
  policyRevision,
  readCookie,
  reconcile,
  uuid,
  writeCookie,
  type StoredState,
} from '../../src/state';
import { purpose, record, siteConfig, UUID } from './helpers';

const ID = '0b7c8f5e-3c1a-4d2b-9e8f-1a2b3c4d5e6f';
const state = (extra: Partial<StoredState> = {}): StoredState => ({
  id: ID,
  site: 'pk_AbCdEfGh12345678',
  region: '',
  rev: '2021-02-01',
  choices: { statistics: 'granted', marketing: 'denied' },
  models: { necessary: 'notice_only', sale_sharing: 'opt_out' },
  created: 1700000000,
  updated: 1700000100,
  pending: false,
  gpc: false,
  ...extra,
});
const DAY = 86400;

describe('cookie encoding', () => {
  it('round-trips every field', () => {
    for (const s of [state(), state({ pending: true, gpc: true, rev: null, choices: {}, models: {}, region: 'US-CA' })])
      expect(decodeState(encodeState(s))).toEqual(s);
  });

  it('is cookie-safe and compact: one list per kind', () => {
    const v = encodeState(state({ choices: { 'a;c,d"é': 'granted', statistics: 'granted', marketing: 'denied' } }));
    expect(v).not.toMatch(/[\s;,"\\]/);
    expect(decodeState(v)!.choices).toEqual({ 'a;c,d"é': 'granted', statistics: 'granted', marketing: 'denied' });
    expect(v).toContain('&g=a%3Bc%2Cd%22%C3%A9+statistics&');
    expect(encodeState(state()).length).toBeLessThan(200);
  });

  it('reads the visitor id of an older cookie (one key per entry, no site key)', () => {
    const old = `v=1&id=${ID}&r=2021-02-01&c=1&u=2&g=statistics&g=social_media&d=marketing&o=necessary&o=sale_sharing&p=1`;
    expect(decodeState(old)).toMatchObject({ id: ID, site: '', rev: '2021-02-01', created: 1, updated: 2, pending: true });
  });

  it('61 purposes with 64-character keys: the cookie stays under the limit, leaving out what the server has', () => {
    const keys = Array.from({ length: 61 }, (_, i) => (i + '_').padEnd(64, 'x'));
    const all = (v: 'granted' | 'denied') => Object.fromEntries(keys.map((k) => [k, v]));
    const models = Object.fromEntries(keys.map((k) => [k, 'opt_out' as const]));
    for (const s of [state({ choices: all('granted'), models }), state({ choices: { ...all('granted'), [keys[0]]: 'denied' }, models, pending: true, gpc: true })]) {
      const v = encodeState(s);
      expect(v.length).toBeLessThanOrEqual(COOKIE_MAX);
      const back = decodeState(v)!;
      // identity and flags are never left out
      expect(back).toMatchObject({ id: ID, site: s.site, rev: s.rev, pending: s.pending, gpc: s.gpc });
      // model lists go first (absent: opt_in, i.e. nothing allowed early), then grants; what stays is exact
      expect(back.models).toEqual({});
      for (const k in back.choices) expect(back.choices[k]).toBe(s.choices[k]);
      expect(Object.keys(back.choices).length).toBeGreaterThan(50);
      if (s.choices[keys[0]] == 'denied') expect(back.choices[keys[0]]).toBe('denied');
    }
    // through document.cookie: the browser keeps it
    writeCookie(document, 'consentry_big', encodeState(state({ choices: all('granted'), models })), 3600);
    expect(readCookie(document, 'consentry_big')!.id).toBe(ID);
    writeCookie(document, 'consentry_big', '', 0);
  });

  it('rejects missing, malformed or foreign values', () => {
    expect(decodeState(null)).toBeNull();
    expect(decodeState('')).toBeNull();
    expect(decodeState('garbage')).toBeNull();
    expect(decodeState(encodeState(state()).replace('v=1', 'v=3'))).toBeNull();
    expect(decodeState(encodeState(state({ id: 'not-a-uuid' })))).toBeNull();
  });

  it('writes SameSite=Lax, Path=/, Max-Age from days, Domain and Secure on https', () => {
    const doc = { cookie: '', location: { protocol: 'https:' } } as unknown as Document;
    writeCookie(doc, 'consentry_AbCdEfGh', encodeState(state()), 395 * DAY, 'example.com');
    expect(doc.cookie).toMatch(/^consentry_AbCdEfGh=v=1&id=/);
    expect(doc.cookie).toContain('; Path=/; Max-Age=' + 395 * DAY + '; SameSite=Lax; Domain=example.com; Secure');
    const plain = { cookie: '', location: { protocol: 'http:' } } as unknown as Document;
    writeCookie(plain, 'x', encodeState(state()), DAY);
    expect(plain.cookie).not.toContain('Secure');
    expect(plain.cookie).not.toContain('Domain');
  });

  it('reads back what it wrote through document.cookie', () => {
    writeCookie(document, 'consentry_AbCdEfGh', encodeState(state()), 30 * DAY);
    document.cookie = 'other=1; Path=/';
    document.cookie = 'consentry_Zzzzzzzz=' + encodeState(state({ id: '1b7c8f5e-3c1a-4d2b-9e8f-1a2b3c4d5e6f' })) + '; Path=/';
    expect(readCookie(document, 'consentry_AbCdEfGh')).toEqual(state());
    expect(readCookie(document, 'consentry')).toBeNull();
  });

  it('the cookie name carries the site key, so two sites on one domain do not collide', () => {
    expect(cookieName('pk_AbCdEfGh12345678')).toBe('consentry_AbCdEfGh');
    expect(cookieName('sk_test')).toBe('consentry_test');
    expect(cookieName('pk_AbCdEfGh12345678')).not.toBe(cookieName('pk_ZyXwVuTs12345678'));
  });
});

describe('uuid', () => {
  it('is an RFC 9562 version 4 uuid from getRandomValues, also where randomUUID is missing (plain http)', () => {
    const ids = new Set(Array.from({ length: 200 }, uuid));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(UUID);
  });
});

describe('reconcile (re-prompt decisions)', () => {
  const now = 1700000100 + DAY;

  it('a new visitor must be asked; notice_only is granted, opt_out is not a reason to ask', () => {
    const r = reconcile(siteConfig(), null, null, {}, now);
    expect(r.needsConsent).toBe(true);
    expect(r.purposes).toEqual({
      necessary: 'granted',
      statistics: 'undecided',
      marketing: 'undecided',
      social_media: 'undecided',
      sale_sharing: 'undecided',
    });
    const usOnly = siteConfig({ purposes: [purpose('necessary', 'notice_only'), purpose('sale_sharing', 'opt_out')] });
    expect(reconcile(usOnly, null, null, {}, now).needsConsent).toBe(false);
  });

  it('the server is the record and maps not_asked/stale/expired to undecided', () => {
    const server = record({ statistics: 'stale', marketing: 'expired', social_media: 'denied', sale_sharing: 'not_asked' }, true);
    const r = reconcile(siteConfig(), state(), server, {}, now);
    expect(r.purposes).toMatchObject({ statistics: 'undecided', marketing: 'undecided', social_media: 'denied', sale_sharing: 'undecided' });
    expect(r.needsConsent).toBe(true);
  });

  it('re-prompts when the server says needs_consent even if all look decided', () => {
    const server = record({ statistics: 'granted', marketing: 'denied', social_media: 'denied' }, true);
    expect(reconcile(siteConfig(), state(), server, {}, now).needsConsent).toBe(true);
    const fine = record({ statistics: 'granted', marketing: 'denied', social_media: 'denied' }, false);
    expect(reconcile(siteConfig(), state(), fine, {}, now).needsConsent).toBe(false);
  });

  it('a purpose added after the decision is undecided, never denied', () => {
    const cfg = siteConfig();
    cfg.purposes.push(purpose('personalisation', 'opt_in'));
    const decided = state({ choices: { statistics: 'denied', marketing: 'denied', social_media: 'denied' } });
    const server = record({ statistics: 'denied', marketing: 'denied', social_media: 'denied' });
    for (const srv of [server, null]) {
      const r = reconcile(cfg, decided, srv, {}, now);
      expect(r.purposes.personalisation).toBe('undecided');
      expect(r.needsConsent).toBe(true);
    }
  });

  it('offline: a grant older than a reconsent revision becomes undecided, denials stay', () => {
    const cfg = siteConfig();
    cfg.policies[0] = { ...cfg.policies[0], revision_date: '2023-12-01', effective_at: new Date((now - 10) * 1000).toISOString(), requires_reconsent: true };
    const r = reconcile(cfg, state(), null, {}, now);
    expect(r.purposes.statistics).toBe('undecided');
    expect(r.purposes.marketing).toBe('denied');
    expect(r.needsConsent).toBe(true);
    // a revision without requires_reconsent changes nothing
    cfg.policies[0].requires_reconsent = false;
    expect(reconcile(cfg, state(), null, {}, now).purposes.statistics).toBe('granted');
  });

  it('offline: a decision older than max_age_days expires', () => {
    const cfg = siteConfig({ purposes: [purpose('statistics', 'opt_in', { max_age_days: 30 }), purpose('marketing', 'opt_in', { max_age_days: null })] });
    const old = state({ updated: now - 31 * DAY });
    const r = reconcile(cfg, old, null, {}, now);
    expect(r.purposes).toEqual({ statistics: 'undecided', marketing: 'denied' });
    expect(reconcile(cfg, state({ updated: now - 29 * DAY }), null, {}, now).purposes.statistics).toBe('granted');
  });

  it('choices still queued go on top of the server record, which is the record for the rest', () => {
    const server = record({ statistics: 'denied', marketing: 'denied', social_media: 'stale' }, true);
    // the cookie says marketing denied and statistics granted; only the queued statistics grant is pending
    const r = reconcile(siteConfig(), state({ choices: { statistics: 'granted', marketing: 'granted' } }), server, { statistics: true }, now);
    expect(r.purposes.statistics).toBe('granted');
    expect(r.purposes.marketing).toBe('denied');
    expect(r.purposes.social_media).toBe('undecided');
    expect(r.needsConsent).toBe(true);
  });
});

describe('applyGpc', () => {
  it('denies every refusable purpose with gpc_applies and reports which changed', () => {
    const cfg = siteConfig();
    cfg.purposes.push(purpose('targeted_ads', 'opt_in', { gpc_applies: true }), purpose('strict', 'notice_only', { gpc_applies: true }));
    const p = { necessary: 'granted', statistics: 'granted', sale_sharing: 'undecided', targeted_ads: 'denied', strict: 'granted' } as const;
    const purposes = { ...p } as Record<string, 'granted' | 'denied' | 'undecided'>;
    expect(applyGpc(cfg, purposes)).toEqual(['sale_sharing']);
    expect(purposes).toEqual({ ...p, sale_sharing: 'denied' });
  });
});

describe('policyRevision', () => {
  it('prefers the privacy policy, then the first one', () => {
    const cfg = siteConfig();
    const cookies = { ...cfg.policies[0], policy_key: 'cookies', revision_date: '2022-01-01' };
    expect(policyRevision({ ...cfg, policies: [cookies, cfg.policies[0]] })).toBe('2021-02-01');
    expect(policyRevision({ ...cfg, policies: [cookies] })).toBe('2022-01-01');
    expect(policyRevision({ ...cfg, policies: [] })).toBeNull();
  });
});

describe('several cookies of one name (cookie domain changed, stale copies)', () => {
  const v = (u: number, choices: StoredState['choices'] = {}) => encodeState(state({ updated: u, choices }));

  it('newest: the latest decision wins, whatever the order; a tie goes to the same value every time; undecodable ones never win', () => {
    const old = v(100, { statistics: 'granted' });
    const now = v(200, { statistics: 'denied' });
    expect(newest([old, now])).toBe(now);
    expect(newest([now, old])).toBe(now);
    const a = v(200, { statistics: 'granted' });
    expect(newest([a, now])).toBe(newest([now, a]));
    expect(newest(['garbage', old])).toBe(old);
    expect(newest(['garbage'])).toBeNull();
    expect(newest([])).toBeNull();
  });

  it('cookieValues lists every variant the page sees, and no cookie whose name only starts the same', () => {
    const doc = { cookie: 'consentry_abc=1; consentry=2; consentry_abc=3; consentry_abcd=4' } as Document;
    expect(cookieValues(doc, 'consentry_abc')).toEqual(['1', '3']);
    expect(cookieValues(doc, 'consentry')).toEqual(['2']);
  });

  it('dropCookie deletes the host-only variant and one per domain of the host', () => {
    const written: string[] = [];
    const doc = { location: { hostname: 'www.shop.example.com' }, set cookie(c: string) { written.push(c); } } as unknown as Document;
    dropCookie(doc, 'consentry_abc');
    expect(written).toEqual([
      'consentry_abc=; Path=/; Max-Age=0',
      'consentry_abc=; Path=/; Max-Age=0; Domain=www.shop.example.com',
      'consentry_abc=; Path=/; Max-Age=0; Domain=shop.example.com',
      'consentry_abc=; Path=/; Max-Age=0; Domain=example.com',
      'consentry_abc=; Path=/; Max-Age=0; Domain=com',
    ]);
  });
});
