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
export declare const LEGACY_COOKIE = "consentry";
/** Longest cookie value written; entries the server also has are left out to stay below it. */
export declare const COOKIE_MAX = 3800;
/** A hyphenated uuid, as the API takes visitor ids. */
export declare const UUID: RegExp;
/** Cookie name of a site: `consentry_` and the first 8 characters of the site key after its `pk_` prefix. */
export declare const cookieName: (siteKey: string) => string;
/** A random uuid v4 (RFC 9562) from `crypto.getRandomValues`, which, unlike `randomUUID`, also exists on plain http. */
export declare const uuid: () => string;
/**
 * Encodes the state as a cookie-safe query string, lists space-separated
 * (`v=1&id=…&k=pk_…&r=…&c=…&u=…&g=statistics+social_media&d=marketing&o=sale_sharing&n=necessary`).
 * When it would be longer than `max`, what the server also knows is left out
 * until it fits: the model lists first, then grants, then denials. Without a
 * model a purpose counts as opt_in, and without a decision as undecided, so
 * what is left out is never allowed early: it waits for the server.
 */
export declare function encodeState(s: StoredState): string;
/** Decodes {@link encodeState}'s output (and the older one-key-per-entry form); null when missing, malformed or of another version. */
export declare function decodeState(v: string | null | undefined): StoredState | null;
/** Every value of cookie `name` the page sees: one per variant (host-only, Domain= a parent domain), oldest first. */
export declare const cookieValues: (doc: Document, name: string) => string[];
/**
 * The value among `values` holding the newest decision (`u`), null when none
 * decodes; a tie goes to the greater value: the same answer in every tab and on every load.
 */
export declare const newest: (values: string[]) => string | null;
/** Reads the state cookie `name` of `doc` (the newest, when the page sees several). */
export declare function readCookie(doc: Document, name: string): StoredState | null;
/**
 * Deletes cookie `name` (Path=/) in every variant a page can see: host-only
 * and `Domain=` each of the host's domains (`www.example.com`, `example.com`, `com`).
 */
export declare function dropCookie(doc: Document, name: string): void;
/**
 * Writes the state cookie `name` (an encoded state): Path=/, SameSite=Lax,
 * Secure on https, the parent `domain` when given, lifetime `seconds`.
 */
export declare function writeCookie(doc: Document, name: string, value: string, seconds: number, domain?: string): void;
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
export declare function reconcile(config: SiteConfig, local: StoredState | null, server: VisitorConsents | null, pending: Record<string, boolean>, now: number): Reconciled;
/**
 * Applies a Global Privacy Control signal: every refusable purpose with
 * `gpc_applies` becomes denied (11 CCR §7025(b)). Mutates `purposes`;
 * returns the keys that were not denied before.
 */
export declare function applyGpc(config: SiteConfig, purposes: Record<string, ConsentStatus>): string[];
/** `revision_date` of the `privacy` policy, else of the first policy; null when none. */
export declare function policyRevision(config: SiteConfig): string | null;
