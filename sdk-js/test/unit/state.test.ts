import { describe, expect, it } from 'vitest';
import {
  applyGpc,
  decodeState,
  encodeState,
  isAllowed,
  policyRevision,
  readCookie,
  reconcile,
  writeCookie,
  type StoredState,
} from '../../src/state';
import { purpose, record, siteConfig } from './helpers';

const ID = '0b7c8f5e-3c1a-4d2b-9e8f-1a2b3c4d5e6f';
const state = (extra: Partial<StoredState> = {}): StoredState => ({
  id: ID,
  rev: '2021-02-01',
  choices: { statistics: 'granted', marketing: 'denied' },
  open: ['necessary', 'sale_sharing'],
  created: 1700000000,
  updated: 1700000100,
  pending: false,
  gpc: false,
  ...extra,
});
const DAY = 86400;

describe('cookie encoding', () => {
  it('round-trips every field', () => {
    for (const s of [state(), state({ pending: true, gpc: true, rev: null, choices: {}, open: [] })])
      expect(decodeState(encodeState(s))).toEqual(s);
  });

  it('is cookie-safe and compact', () => {
    const v = encodeState(state({ choices: { 'a b;c,d"é': 'granted' } }));
    expect(v).not.toMatch(/[\s;,"\\]/);
    expect(decodeState(v)!.choices).toEqual({ 'a b;c,d"é': 'granted' });
    expect(encodeState(state()).length).toBeLessThan(200);
  });

  it('rejects missing, malformed or foreign values', () => {
    expect(decodeState(null)).toBeNull();
    expect(decodeState('')).toBeNull();
    expect(decodeState('garbage')).toBeNull();
    expect(decodeState(encodeState(state()).replace('v=1', 'v=2'))).toBeNull();
    expect(decodeState(encodeState(state({ id: 'not-a-uuid' })))).toBeNull();
  });

  it('writes SameSite=Lax, Path=/, Max-Age from days, Domain and Secure on https', () => {
    const doc = { cookie: '', location: { protocol: 'https:' } } as unknown as Document;
    writeCookie(doc, state(), 395, 'example.com');
    expect(doc.cookie).toMatch(/^consentry=v=1&id=/);
    expect(doc.cookie).toContain('; Path=/; Max-Age=' + 395 * DAY + '; SameSite=Lax; Domain=example.com; Secure');
    const plain = { cookie: '', location: { protocol: 'http:' } } as unknown as Document;
    writeCookie(plain, state(), 1);
    expect(plain.cookie).not.toContain('Secure');
    expect(plain.cookie).not.toContain('Domain');
  });

  it('reads back what it wrote through document.cookie', () => {
    writeCookie(document, state(), 30);
    document.cookie = 'other=1; Path=/';
    expect(readCookie(document)).toEqual(state());
  });
});

describe('isAllowed', () => {
  it('applies the consent model', () => {
    expect(isAllowed('notice_only', 'denied')).toBe(true);
    expect(isAllowed('opt_in', 'granted')).toBe(true);
    expect(isAllowed('opt_in', 'undecided')).toBe(false);
    expect(isAllowed('opt_in', undefined)).toBe(false);
    expect(isAllowed('opt_out', 'undecided')).toBe(true);
    expect(isAllowed('opt_out', 'denied')).toBe(false);
  });
});

describe('reconcile (re-prompt decisions)', () => {
  const now = 1700000100 + DAY;

  it('a new visitor must be asked; notice_only is granted, opt_out is not a reason to ask', () => {
    const r = reconcile(siteConfig(), null, null, false, now);
    expect(r.needsConsent).toBe(true);
    expect(r.purposes).toEqual({
      necessary: 'granted',
      statistics: 'undecided',
      marketing: 'undecided',
      social_media: 'undecided',
      sale_sharing: 'undecided',
    });
    const usOnly = siteConfig({ purposes: [purpose('necessary', 'notice_only'), purpose('sale_sharing', 'opt_out')] });
    expect(reconcile(usOnly, null, null, false, now).needsConsent).toBe(false);
  });

  it('the server is the record and maps not_asked/stale/expired to undecided', () => {
    const server = record({ statistics: 'stale', marketing: 'expired', social_media: 'denied', sale_sharing: 'not_asked' }, true);
    const r = reconcile(siteConfig(), state(), server, false, now);
    expect(r.purposes).toMatchObject({ statistics: 'undecided', marketing: 'undecided', social_media: 'denied', sale_sharing: 'undecided' });
    expect(r.needsConsent).toBe(true);
  });

  it('re-prompts when the server says needs_consent even if all look decided', () => {
    const server = record({ statistics: 'granted', marketing: 'denied', social_media: 'denied' }, true);
    expect(reconcile(siteConfig(), state(), server, false, now).needsConsent).toBe(true);
    const fine = record({ statistics: 'granted', marketing: 'denied', social_media: 'denied' }, false);
    expect(reconcile(siteConfig(), state(), fine, false, now).needsConsent).toBe(false);
  });

  it('a purpose added after the decision is undecided, never denied', () => {
    const cfg = siteConfig();
    cfg.purposes.push(purpose('personalisation', 'opt_in'));
    const decided = state({ choices: { statistics: 'denied', marketing: 'denied', social_media: 'denied' } });
    const server = record({ statistics: 'denied', marketing: 'denied', social_media: 'denied' });
    for (const srv of [server, null]) {
      const r = reconcile(cfg, decided, srv, false, now);
      expect(r.purposes.personalisation).toBe('undecided');
      expect(r.needsConsent).toBe(true);
    }
  });

  it('offline: a grant older than a reconsent revision becomes undecided, denials stay', () => {
    const cfg = siteConfig();
    cfg.policies[0] = { ...cfg.policies[0], revision_date: '2023-12-01', effective_at: new Date((now - 10) * 1000).toISOString(), requires_reconsent: true };
    const r = reconcile(cfg, state(), null, false, now);
    expect(r.purposes.statistics).toBe('undecided');
    expect(r.purposes.marketing).toBe('denied');
    expect(r.needsConsent).toBe(true);
    // a revision without requires_reconsent changes nothing
    cfg.policies[0].requires_reconsent = false;
    expect(reconcile(cfg, state(), null, false, now).purposes.statistics).toBe('granted');
  });

  it('offline: a decision older than max_age_days expires', () => {
    const cfg = siteConfig({ purposes: [purpose('statistics', 'opt_in', { max_age_days: 30 }), purpose('marketing', 'opt_in', { max_age_days: null })] });
    const old = state({ updated: now - 31 * DAY });
    const r = reconcile(cfg, old, null, false, now);
    expect(r.purposes).toEqual({ statistics: 'undecided', marketing: 'denied' });
    expect(reconcile(cfg, state({ updated: now - 29 * DAY }), null, false, now).purposes.statistics).toBe('granted');
  });

  it('decisions still queued win over the server record', () => {
    const server = record({ statistics: 'denied', marketing: 'denied' }, true);
    const r = reconcile(siteConfig(), state(), server, true, now);
    expect(r.purposes.statistics).toBe('granted');
    expect(r.purposes.social_media).toBe('undecided');
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
