/**
 * Public types of the Consentry browser SDK. Field names of server payloads
 * follow the REST API (snake_case); SDK-side types are camelCase.
 */
import type { ConsentSource, Problem, SiteConfig } from './api';

/** A purpose's state for this visitor: an explicit decision, or none yet. */
export type ConsentStatus = 'granted' | 'denied' | 'undecided';

/**
 * The API's request and response bodies (wire shapes, snake_case), derived
 * from the server's OpenAPI document: see `api.ts`.
 */
export type {
  ConsentModel,
  ConsentSource,
  ConsentWrite,
  ConsentWriteResult,
  PolicyRevision,
  Problem,
  Purpose,
  ServerPurposeState,
  ServerStatus,
  SiteConfig,
  VisitorConsents,
} from './api';

/** Google Consent Mode v2 consent types. */
export type GoogleConsentType =
  | 'ad_storage'
  | 'analytics_storage'
  | 'ad_user_data'
  | 'ad_personalization'
  | 'functionality_storage'
  | 'personalization_storage'
  | 'security_storage';

/**
 * Maps each Google consent type to one purpose key, or several that must all
 * be allowed, e.g. `{ analytics_storage: 'statistics', ad_storage: 'marketing' }`.
 */
export type GoogleConsentModeMapping = Partial<Record<GoogleConsentType, string | string[]>>;

/** Texts of the default UI; `{purpose}` is replaced by a purpose title. */
export interface UiLabels {
  title: string;
  body: string;
  policy: string;
  acceptAll: string;
  rejectAll: string;
  preferences: string;
  prefsTitle: string;
  save: string;
  close: string;
  alwaysOn: string;
  gpcTitle: string;
  gpcBody: string;
  blocked: string;
  allow: string;
}

/** Options of the default UI. */
export interface UiOptions {
  /** Overrides of the built-in texts (en, de, fr, es). */
  labels?: Partial<UiLabels>;
}

/** Options of {@link init}. */
export interface ConsentryOptions {
  /** Public site key, `sk_...`. */
  siteKey: string;
  /** Base URL of the Consentry API, e.g. `https://consent.example.com`; `''` for this page's origin. */
  endpoint: string;
  /** Region code such as `US-CA`; the server decides when absent. */
  region?: string;
  /** BCP 47 locale for texts; default: `<html lang>` or the browser's. */
  locale?: string;
  /** Default UI: true (default), false for headless, or options. Ignored by the core build. */
  ui?: boolean | UiOptions;
  /** Parent domain for the cookie, e.g. `example.com`, so subdomains share it. */
  cookieDomain?: string;
  /** Enables Google Consent Mode v2 with this mapping; nothing is sent to Google without it. */
  googleConsentMode?: GoogleConsentModeMapping;
  /** CSP nonce for activated scripts and the UI's <style>; default: the SDK script's nonce. */
  nonce?: string;
  /**
   * The visitor id (a hyphenated uuid) the site's backend knows for this browser, e.g. from its
   * own long-lived cookie, for browsers that drop script-set cookies early (Safari: 7 days).
   * It wins over the id in the SDK's cookie; a cookie of another id is not used at all.
   */
  visitorId?: string;
}

/** The visitor's consent state at one moment. */
export interface ConsentSnapshot {
  /** uuid v4, kept in the first-party cookie. */
  visitorId: string;
  /** `revision_date` of the privacy policy the state refers to. */
  policyRevision: string | null;
  /** Status per purpose key; notice_only purposes are `granted`. */
  purposes: Record<string, ConsentStatus>;
  /** Purposes that may be used now (consent model applied). */
  allowed: string[];
  /** The banner should be shown: an opt_in purpose is undecided, or the site's configuration is not known yet. */
  needsConsent: boolean;
  /** A Global Privacy Control signal was honoured on this page. */
  gpc: boolean;
  /** True when the server accepted this state; false while a write is pending. */
  confirmed: boolean;
}

/** Payload of the `change` event: one per user action. */
export interface ConsentChange extends ConsentSnapshot {
  /** Purposes whose status changed with this action (may be empty). */
  changed: string[];
  source: ConsentSource;
}

/**
 * Payload of the `error` event: a choice that was not, and will not be, recorded by the server,
 * or an init option the SDK cannot use.
 */
export interface ConsentryError {
  /**
   * `refused`: the server answered 4xx (other than 408/429) and the write was dropped;
   * `gave_up`: the write still failed after many attempts or a day and was dropped;
   * `no_policy`: no privacy policy is in force for the site, so nothing can be recorded;
   * `offline`: the site's configuration could not be loaded and no policy revision is known.
   * The choice stays on this page as unconfirmed state (`confirmed: false`).
   * `invalid_option`: the init option `option` cannot be used (see the console); the SDK
   * goes on with that option's default.
   */
  reason: 'refused' | 'gave_up' | 'no_policy' | 'offline' | 'invalid_option';
  /** HTTP status of a refusal; 0 when there was none. */
  status: number;
  /** The refusal's body (an RFC 9457 problem), when readable; else null. */
  problem: Problem | null;
  /** The choices of the write concerned, when there was one. */
  choices?: Record<string, boolean>;
  /** With `invalid_option`: the option's name, e.g. `cookieDomain` or `googleConsentMode.ad_storage`. */
  option?: string;
}

/** Events of an instance and their payloads. */
export interface ConsentryEvents {
  /** State reconciled with the server (or the cookie when offline); fires once. */
  ready: ConsentSnapshot;
  /** A user action changed the state; the write to the server follows. */
  change: ConsentChange;
  /** The server accepted a write; `confirmed` may now be true. */
  saved: ConsentSnapshot;
  /**
   * A choice could not be recorded (refused, given up, no policy, offline), or an init option
   * is invalid (`invalid_option`: replayed to later subscribers); also `consentry:error` on document.
   */
  error: ConsentryError;
}

/** What {@link init} resolves to. */
export interface ConsentryInstance {
  /** The site's configuration, or null while the server could not be reached (retried with backoff). */
  readonly config: SiteConfig | null;
  /** The visitor id (uuid v4). */
  readonly visitorId: string;
  /** Status of one purpose; `undecided` for unknown purposes. */
  get(purpose: string): ConsentStatus;
  /** Whether a purpose may be used now, after applying its consent model. */
  allowed(purpose: string): boolean;
  /** Status of every purpose of the site. */
  getAll(): Record<string, ConsentStatus>;
  /** The full state, including whether it is confirmed by the server. */
  snapshot(): ConsentSnapshot;
  /**
   * Records the visitor's choices (`true` grants, `false` denies) as one
   * action: one `change` event and one API write. notice_only and unknown
   * purposes are ignored, and so are grants of GPC-denied purposes.
   * Resolves true when the server accepted it; false when it was queued for
   * retry, or when it cannot be recorded (the server refused it, no policy is
   * in force, or offline without a known policy revision), which also emits `error`.
   */
  set(choices: Record<string, boolean>, source?: ConsentSource): Promise<boolean>;
  /** Grants every purpose that can be refused; one action. */
  acceptAll(source?: ConsentSource): Promise<boolean>;
  /** Denies every purpose that can be refused (explicit denials); one action. */
  rejectAll(source?: ConsentSource): Promise<boolean>;
  /**
   * Opens the preference centre (default UI only; no-op when headless). While
   * the configuration is not loaded yet it logs, retries at once, and opens once it arrives.
   */
  showPreferences(): void;
  /**
   * Links this visitor to a signed-in data subject: the current decisions are
   * re-sent with the identity token in one write. The token goes with that
   * write only, never with later ones. Resolves false (and emits `error`) when
   * the server refuses it; the token is then forgotten.
   */
  identify(identityToken: string): Promise<boolean>;
  /**
   * Stops the SDK on this page: removes its listeners, observer and UI and
   * stops retrying. Activated scripts stay; the cookie and queued writes are kept.
   */
  destroy(): void;
  /** Subscribes to an event; returns the unsubscribe function. `ready` replays once ready. */
  on<E extends keyof ConsentryEvents>(event: E, cb: (detail: ConsentryEvents[E]) => void): () => void;
}
