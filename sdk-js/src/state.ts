/**
 * The state kept in the first-party cookie, its encoding, and the pure rules
 * that reconcile it with the server's record. No I/O except cookie access.
 */
import type { ConsentStatus, SiteConfig, VisitorConsents } from './types';

/** What the cookie holds. Times are epoch seconds. */
export interface StoredState {
  /** Visitor id, uuid v4. */
  id: string;
  /** Site key the cookie was written for; '' in a cookie of an older SDK (name `consentry`). */
  site: string;
  /** Region the page asked for (`region` option) when it was written; '' when the server decided. */
  region: string;
  /** Policy revision (`revision_date`) the decisions were made under. */
  rev: string | null;
  /** Explicit decisions; a purpose absent here is undecided. */
  choices: Record<string, 'granted' | 'denied'>;
  /** Consent models other than opt_in per the last config (absent: opt_in, i.e. not allowed without a decision). */
  models: Record<string, 'opt_out' | 'notice_only'>;
  /** First stored decision. */
  created: number;
  /** Last decision made on a page (a write); the cookie expires `cookie_max_age_days` after it. */
  updated: number;
  /** Not yet accepted by the server. */
  pending: boolean;
  /** Global Privacy Control denials were applied to `choices`. */
  gpc: boolean;
}

/** Name of the cookie of older SDK versions, read once for migration. */
export const LEGACY_COOKIE = 'consentry';
/** Longest cookie value written; entries the server also has are left out to stay below it. */
export const COOKIE_MAX = 3800;
/** A hyphenated uuid, as the API takes visitor ids. */
export const UUID = /^[\da-f]{8}(-[\da-f]{4}){3}-[\da-f]{12}$/i;
/** Cookie keys of the lists: decisions first (what stays longest when the cookie must shrink), then models. */
const LISTS = [
  ['d', 'choices', 'denied'],
  ['g', 'choices', 'granted'],
  ['o', 'models', 'opt_out'],
  ['n', 'models', 'notice_only'],
] as const;

/** Cookie name of a site: `consentry_` and the first 8 characters of the site key after its `pk_` prefix. */
export const cookieName = (siteKey: string): string =>
  'consentry_' + siteKey.replace(/^[a-z]+_|[^\dA-Za-z]/g, '').slice(0, 8);

/** A random uuid v4 (RFC 9562) from `crypto.getRandomValues`, which, unlike `randomUUID`, also exists on plain http. */
export const uuid = (): string =>
  // 10000000-1000-4000-8000-100000000000: each 0, 1 and 8 becomes a random hex digit, keeping the
  // version (4) and the variant bits (8: 10xx)
  '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
    (+c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (+c / 4)))).toString(16),
  );

/**
 * Encodes the state as a cookie-safe query string, lists space-separated
 * (`v=1&id=…&k=pk_…&r=…&c=…&u=…&g=statistics+social_media&d=marketing&o=sale_sharing&n=necessary`).
 * When it would be longer than `max`, what the server also knows is left out
 * until it fits: the model lists first, then grants, then denials. Without a
 * model a purpose counts as opt_in, and without a decision as undecided, so
 * what is left out is never allowed early: it waits for the server.
 */
export function encodeState(s: StoredState): string {
  const lists = LISTS.map(([n, f, v]) => [n, Object.keys(s[f]).filter((k) => (s[f] as Record<string, string>)[k] == v)] as const);
  for (let i = 3; ; ) {
    const q = new URLSearchParams({ v: '1', id: s.id, k: s.site, z: s.region, r: s.rev || '', c: '' + s.created, u: '' + s.updated });
    for (const [n, keys] of lists) if (keys.length) q.set(n, keys.join(' '));
    if (s.pending) q.set('p', '1');
    if (s.gpc) q.set('x', '1');
    const v = '' + q;
    if (v.length <= COOKIE_MAX || i < 0) return v;
    // model lists go whole, decisions one by one
    if (i > 1) lists[i--][1].length = 0;
    else if (!lists[i][1].pop()) i--;
  }
}

/** Decodes {@link encodeState}'s output (and the older one-key-per-entry form); null when missing, malformed or of another version. */
export function decodeState(v: string | null | undefined): StoredState | null {
  // (null and undefined parse as no entries, or as `null`)
  const q = new URLSearchParams(v!);
  const id = q.get('id')!;
  if (q.get('v') != '1' || !UUID.test(id)) return null;
  const s = { choices: {}, models: {} } as Pick<StoredState, 'choices' | 'models'>;
  // (of a cookie of an older SDK, whose entries repeat a key each, only the visitor id is used)
  for (const [n, f, v] of LISTS) for (const k of (q.get(n) || '').split(' ')) if (k) (s[f] as Record<string, string>)[k] = v;
  return {
    id,
    site: q.get('k') || '',
    region: q.get('z') || '',
    rev: q.get('r') || null,
    ...s,
    created: +q.get('c')!,
    updated: +q.get('u')!,
    pending: q.has('p'),
    gpc: q.has('x'),
  };
}

/** Every value of cookie `name` the page sees: one per variant (host-only, Domain= a parent domain), oldest first. */
export const cookieValues = (doc: Document, name: string): string[] =>
  // (the browser separates cookies with `; `, and a value has no `;`)
  ('; ' + doc.cookie)
    .split('; ' + name + '=')
    .slice(1)
    .map((c) => c.split(';')[0]);

/**
 * The value among `values` holding the newest decision (`u`), null when none
 * decodes; a tie goes to the greater value: the same answer in every tab and on every load.
 */
export const newest = (values: string[]): string | null =>
  values.reduce<string | null>((best, v) => {
    const s = decodeState(v);
    const b = decodeState(best);
    return s && (!b || (s.updated - b.updated || +(v > best!)) > 0) ? v : best;
  }, null);

/** Reads the state cookie `name` of `doc` (the newest, when the page sees several). */
export function readCookie(doc: Document, name: string): StoredState | null {
  return decodeState(newest(cookieValues(doc, name)));
}

/**
 * Deletes cookie `name` (Path=/) in every variant a page can see: host-only
 * and `Domain=` each of the host's domains (`www.example.com`, `example.com`, `com`).
 */
export function dropCookie(doc: Document, name: string): void {
  const h = doc.location.hostname.split('.');
  for (let i = -1; i < h.length; i++) doc.cookie = name + '=; Path=/; Max-Age=0' + (i < 0 ? '' : '; Domain=' + h.slice(i).join('.'));
}

/**
 * Writes the state cookie `name` (an encoded state): Path=/, SameSite=Lax,
 * Secure on https, the parent `domain` when given, lifetime `seconds`.
 */
export function writeCookie(doc: Document, name: string, value: string, seconds: number, domain?: string): void {
  doc.cookie =
    name + '=' + value + '; Path=/; Max-Age=' + (seconds | 0) + '; SameSite=Lax' +
    (domain ? '; Domain=' + domain : '') +
    (doc.location.protocol == 'https:' ? '; Secure' : '');
}

/** Result of {@link reconcile}. */
export interface Reconciled {
  purposes: Record<string, ConsentStatus>;
  needsConsent: boolean;
}

/**
 * Decides each purpose's status. The server is the record, except for
 * choices of writes still waiting in the write queue (`pending`, applied on
 * top). Without a server answer the cookie is used, with the server's rules
 * applied locally: a grant given before a revision requiring reconsent took
 * effect is stale, and a decision older than the purpose's max age expired;
 * both become undecided. A purpose the visitor never decided (e.g. added
 * later) is undecided, never denied. Consent is needed when an opt_in purpose
 * is undecided or the server says so (and no write is pending). `now` is epoch seconds.
 */
export function reconcile(
  config: SiteConfig,
  local: StoredState | null,
  server: VisitorConsents | null,
  pending: Record<string, boolean>,
  now: number,
): Reconciled {
  const purposes: Record<string, ConsentStatus> = {};
  let needsConsent = !!server?.needs_consent && !Object.keys(pending)[0];
  for (const p of config.purposes) {
    const mine = local?.choices[p.key];
    const queued = pending[p.key];
    let st: ConsentStatus;
    if (p.consent_model == 'notice_only') st = 'granted';
    else if (queued != null) st = queued ? 'granted' : 'denied';
    else if (server) {
      const s = server.purposes[p.key]?.status;
      st = s == 'granted' || s == 'denied' ? s : 'undecided';
    } else if (
      !mine ||
      (p.max_age_days != null && local!.updated + p.max_age_days * 86400 < now) ||
      (mine == 'granted' &&
        config.policies.some((r) => r.requires_reconsent && Date.parse(r.effective_at) / 1000 > local!.updated))
    )
      st = 'undecided';
    else st = mine;
    purposes[p.key] = st;
    if (p.consent_model == 'opt_in' && st == 'undecided') needsConsent = true;
  }
  return { purposes, needsConsent };
}

/**
 * Applies a Global Privacy Control signal: every refusable purpose with
 * `gpc_applies` becomes denied (11 CCR §7025(b)). Mutates `purposes`;
 * returns the keys that were not denied before.
 */
export function applyGpc(config: SiteConfig, purposes: Record<string, ConsentStatus>): string[] {
  const changed: string[] = [];
  for (const p of config.purposes)
    if (p.gpc_applies && p.consent_model != 'notice_only' && purposes[p.key] != 'denied') {
      purposes[p.key] = 'denied';
      changed.push(p.key);
    }
  return changed;
}

/** `revision_date` of the `privacy` policy, else of the first policy; null when none. */
export function policyRevision(config: SiteConfig): string | null {
  return (config.policies.find((r) => r.policy_key == 'privacy') || config.policies[0])?.revision_date || null;
}
