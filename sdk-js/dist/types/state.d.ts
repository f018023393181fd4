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
export declare const COOKIE = "consentry";
/** Encodes the state as a cookie-safe query string (`v=1&id=…&g=statistics&d=marketing`). */
export declare function encodeState(s: StoredState): string;
/** Decodes {@link encodeState}'s output; null when missing, malformed or of another version. */
export declare function decodeState(v: string | null | undefined): StoredState | null;
/** Reads the state cookie of `doc`. */
export declare function readCookie(doc: Document): StoredState | null;
/**
 * Writes the state cookie: Path=/, SameSite=Lax, Secure on https, the parent
 * `domain` when given, lifetime `days`.
 */
export declare function writeCookie(doc: Document, s: StoredState, days: number, domain?: string): void;
/** Whether a purpose may be used: notice_only always, opt_in when granted, opt_out unless denied. */
export declare function isAllowed(model: ConsentModel, status: ConsentStatus | undefined): boolean;
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
export declare function reconcile(config: SiteConfig, local: StoredState | null, server: VisitorConsents | null, pending: boolean, now: number): Reconciled;
/**
 * Applies a Global Privacy Control signal: every refusable purpose with
 * `gpc_applies` becomes denied (11 CCR §7025(b)). Mutates `purposes`;
 * returns the keys that were not denied before.
 */
export declare function applyGpc(config: SiteConfig, purposes: Record<string, ConsentStatus>): string[];
/** `revision_date` of the `privacy` policy, else of the first policy; null when none. */
export declare function policyRevision(config: SiteConfig): string | null;
