import { vi } from 'vitest';
import type { ConsentWrite, Purpose, SiteConfig, VisitorConsents } from '../../src/types';

export const SITE = 'sk_test';
export const ENDPOINT = 'https://api.consentry.test';

export function purpose(key: string, model: Purpose['consent_model'], extra: Partial<Purpose> = {}): Purpose {
  return {
    key,
    title: key[0].toUpperCase() + key.slice(1).replace(/_/g, ' '),
    description: 'About ' + key,
    kind: 'cookie_category',
    consent_model: model,
    legal_basis: 'consent',
    gpc_applies: false,
    max_age_days: 395,
    cookies: [],
    hosts: [],
    ...extra,
  };
}

/** The config's signed presentation token (opaque to the SDK: sent back with each write). */
export const PRESENTATION = { token: 'eyJhbGciOiJFZERTQSJ9.eyJzaGEyNTYiOiJhYmMifQ.c2ln', sha256: 'a'.repeat(64), issued_at: '2026-12-05T02:00:00Z' };

export function siteConfig(extra: Partial<SiteConfig> = {}): SiteConfig {
  return {
    site: { site_key: SITE, name: 'Shop' },
    region: null,
    gpc_honored: true,
    cookie_max_age_days: 395,
    audit_sample_rate: 0,
    policies: [
      {
        policy_key: 'privacy',
        revision_date: '2021-02-01',
        effective_at: '2021-02-01T00:00:00Z',
        url: 'https://shop.example.com/privacy',
        sha256: 'abc',
        requires_reconsent: false,
      },
    ],
    purposes: [
      purpose('necessary', 'notice_only'),
      purpose('statistics', 'opt_in'),
      purpose('marketing', 'opt_in'),
      purpose('social_media', 'opt_in'),
      purpose('sale_sharing', 'opt_out', { gpc_applies: true }),
    ],
    presentation: PRESENTATION,
    ...extra,
  };
}

export function record(statuses: Record<string, VisitorConsents['purposes'][string]['status']>, needs = false): VisitorConsents {
  const purposes: VisitorConsents['purposes'] = {};
  const reasons = { granted: 'granted', denied: 'refused', not_asked: 'not_asked', stale: 'policy_changed', expired: 'expired' } as const;
  for (const k in statuses) {
    const status = statuses[k];
    purposes[k] = { status, allowed: status == 'granted', reason: reasons[status], updated_at: '2024-01-01T00:00:00Z', source: 'banner' };
  }
  return { subject: 'visitor:x', needs_consent: needs, purposes };
}

export interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: ConsentWrite;
  keepalive?: boolean;
}

type Handler = (call: Call) => Response | Promise<Response> | 'network-error';

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

/**
 * A fake API: records every call; `post` answers writes (default: 201 echoing
 * the choices as granted/denied), `consents` answers the visitor GET.
 */
export function fakeApi(
  opts: { config?: SiteConfig | null | (() => SiteConfig | null); consents?: VisitorConsents | null; post?: Handler } = {},
) {
  const calls: Call[] = [];
  // what the fake server has recorded: the visitor's record, then every accepted write
  const recorded: Record<string, 'granted' | 'denied'> = {};
  for (const [k, v] of Object.entries(opts.consents ? opts.consents.purposes : {}))
    if (v.status == 'granted' || v.status == 'denied') recorded[k] = v.status;
  const config = () => (typeof opts.config == 'function' ? opts.config() : opts.config === undefined ? siteConfig() : opts.config);
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    const headers = lowerHeaders(init.headers);
    const call: Call = { method: init.method || 'GET', url, headers, keepalive: init.keepalive };
    if (init.body) call.body = JSON.parse(String(init.body));
    calls.push(call);
    const cfg = config();
    if (url.includes('/config')) return cfg ? json(cfg) : json({ title: 'down' }, 503);
    if (url.includes('/visitors/')) return opts.consents ? json(opts.consents) : json({ title: 'not found' }, 404);
    if (call.method == 'POST') {
      const r = opts.post
        ? await opts.post(call)
        : (Object.entries(call.body!.choices).forEach(([k, v]) => (recorded[k] = v ? 'granted' : 'denied')),
          json({ event_ids: ['e1'], consents: record({ ...recorded }), gpc_honored: !!call.body!.gpc }, 201));
      if (r == 'network-error') throw new TypeError('Failed to fetch');
      return r;
    }
    return json({}, 404);
  });
  vi.stubGlobal('fetch', fetchMock);
  return { calls, posts: () => calls.filter((c) => c.method == 'POST'), fetchMock };
}

/** Resets cookies, storage and the document between tests. */
export function resetPage(): void {
  for (const c of document.cookie.split(';')) {
    const name = c.split('=')[0].trim();
    if (name) document.cookie = name + '=; Max-Age=0; Path=/';
  }
  localStorage.clear();
  document.head.innerHTML = '';
  document.body.innerHTML = '';
  delete (window as unknown as { dataLayer?: unknown }).dataLayer;
  delete (window as unknown as { gtag?: unknown }).gtag;
}

export const tick = () => new Promise((r) => setTimeout(r, 0));
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Request headers as a plain object with lower-case names. */
export function lowerHeaders(h: HeadersInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((h || {}) as Record<string, string>)) out[k.toLowerCase()] = v;
  return out;
}
