/**
 * The state kept in the first-party cookie, its encoding, and the pure rules
 * that reconcile it with the server's record. No I/O except cookie access.
 */
import type { ConsentModel, ConsentStatus, SiteConfig, VisitorConsents } from './types';

/** What the cookie holds. Times are epoch seconds. */
export interface StoredState {
  /** Visitor id, uuid v4. */
  id: string;
  /** Policy revision (`revision_date`) the decisions were made under. */
  rev: string | null;
  /** Explicit decisions; a purpose absent here is undecided. */
  choices: Record<string, 'granted' | 'denied'>;
  /** Purposes allowed without a decision (opt_out, notice_only) per the last config. */
  open: string[];
  /** First stored decision. */
  created: number;
  /** Last change. */
  updated: number;
  /** Not yet accepted by the server. */
  pending: boolean;
  /** Global Privacy Control denials were applied to `choices`. */
  gpc: boolean;
}

/** Cookie name. */
export const COOKIE = 'consentry';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** Encodes the state as a cookie-safe query string (`v=1&id=…&g=statistics&d=marketing`). */
export function encodeState(s: StoredState): string {
  const q = new URLSearchParams({ v: '1', id: s.id, r: s.rev || '', c: '' + s.created, u: '' + s.updated });
  for (const k in s.choices) q.append(s.choices[k] == 'granted' ? 'g' : 'd', k);
  for (const k of s.open) q.append('o', k);
  if (s.pending) q.set('p', '1');
  if (s.gpc) q.set('x', '1');
  return q + '';
}

/** Decodes {@link encodeState}'s output; null when missing, malformed or of another version. */
export function decodeState(v: string | null | undefined): StoredState | null {
  if (!v) return null;
  const q = new URLSearchParams(v);
  const id = q.get('id') || '';
  if (q.get('v') != '1' || !UUID.test(id)) return null;
  const choices: StoredState['choices'] = {};
  for (const k of q.getAll('d')) choices[k] = 'denied';
  for (const k of q.getAll('g')) choices[k] = 'granted';
  return {
    id,
    rev: q.get('r') || null,
    choices,
    open: q.getAll('o'),
    created: +(q.get('c') || 0),
    updated: +(q.get('u') || 0),
    pending: q.has('p'),
    gpc: q.has('x'),
  };
}

/** Reads the state cookie of `doc`. */
export function readCookie(doc: Document): StoredState | null {
  const m = doc.cookie.match(/(?:^|;\s*)consentry=([^;]*)/);
  return decodeState(m && m[1]);
}

/**
 * Writes the state cookie: Path=/, SameSite=Lax, Secure on https, the parent
 * `domain` when given, lifetime `days`.
 */
export function writeCookie(doc: Document, s: StoredState, days: number, domain?: string): void {
  doc.cookie =
    COOKIE + '=' + encodeState(s) + '; Path=/; Max-Age=' + Math.round(days * 86400) + '; SameSite=Lax' +
    (domain ? '; Domain=' + domain : '') +
    (doc.location.protocol == 'https:' ? '; Secure' : '');
}

/** Whether a purpose may be used: notice_only always, opt_in when granted, opt_out unless denied. */
export function isAllowed(model: ConsentModel, status: ConsentStatus | undefined): boolean {
  return model == 'notice_only' || (model == 'opt_in' ? status == 'granted' : status != 'denied');
}

/** Result of {@link reconcile}. */
export interface Reconciled {
  purposes: Record<string, ConsentStatus>;
  needsConsent: boolean;
}

/**
 * Decides each purpose's status. The server is the record, except for
 * decisions still waiting in the write queue (`pending`). Without a server
 * answer the cookie is used, with the server's rules applied locally: a grant
 * given before a revision requiring reconsent took effect is stale, and a
 * decision older than the purpose's max age expired; both become undecided.
 * A purpose the visitor never decided (e.g. added later) is undecided, never
 * denied. Consent is needed when an opt_in purpose is undecided or the server
 * says so. `now` is epoch seconds.
 */
export function reconcile(
  config: SiteConfig,
  local: StoredState | null,
  server: VisitorConsents | null,
  pending: boolean,
  now: number,
): Reconciled {
  const purposes: Record<string, ConsentStatus> = {};
  let needsConsent = !!server && server.needs_consent && !pending;
  for (const p of config.purposes) {
    const mine = local && local.choices[p.key];
    let st: ConsentStatus;
    if (p.consent_model == 'notice_only') st = 'granted';
    else if (mine && pending) st = mine;
    else if (server) {
      const s = server.purposes[p.key];
      st = s && (s.status == 'granted' || s.status == 'denied') ? s.status : 'undecided';
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
  const p = config.policies.find((r) => r.policy_key == 'privacy') || config.policies[0];
  return p ? p.revision_date : null;
}
