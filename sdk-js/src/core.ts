/**
 * The headless core: state, reconciliation with the server, writes, gating,
 * cleanup of refused purposes' cookies, GPC, and the loader of the tracker audit.
 * The default UI is a separate module passed in as a factory, and Google Consent
 * Mode (`gcm.ts`) is passed in by the builds that have it (the default builds
 * and `consentry.core-gcm.mjs`), so the core build contains neither.
 */
import type { setupConsentMode } from './gcm';
import type { OptionCheck } from './options';
import { activate, nonceOf, purposesOf } from './gating';
import { backoff, createQueue } from './queue';
import {
  applyGpc,
  cookieName,
  cookieValues,
  decodeState,
  dropCookie,
  encodeState,
  LEGACY_COOKIE,
  newest,
  policyRevision,
  reconcile,
  uuid,
  UUID,
  writeCookie,
  type StoredState,
} from './state';
import type {
  ConsentChange,
  ConsentModel,
  ConsentryError,
  ConsentryEvents,
  ConsentryInstance,
  ConsentryOptions,
  ConsentSnapshot,
  ConsentSource,
  ConsentStatus,
  ConsentWrite,
  SiteConfig,
  UiOptions,
  VisitorConsents,
} from './types';

/** What a UI gets from the core. */
export interface UiHost {
  instance: ConsentryInstance;
  config: SiteConfig;
  /** CSP nonce for the injected <style>. */
  nonce?: string;
  locale: string;
  options: UiOptions;
  /** Aborted by `destroy()`: remove listeners and elements then. */
  signal: AbortSignal;
}

/** A UI mounted by the core once the config is known. */
export interface Ui {
  /**
   * State or DOM changed: refresh placeholders and notices; `added`: only these
   * elements (and what they contain) were added to the page. Must not touch the DOM when nothing changed.
   */
  update(added?: Element[]): void;
  /** Shows or hides the banner. */
  banner(show: boolean): void;
  /** Opens the preference centre. */
  preferences(): void;
}

/** Creates a UI; see `ui.ts` for the default one. */
export type UiFactory = (host: UiHost) => Ui;

/**
 * Starts Consentry on this page. Synchronously: pushes the Consent Mode
 * default (when configured), reads the cookie and, when it was written for
 * this site key and region, activates what it allows. Then loads the site
 * config and the visitor's record from the server, reconciles (writes still
 * queued are applied on top), applies GPC, mounts the UI (when a factory is
 * given), shows the banner if consent is needed, emits `ready` and resolves.
 * When the config cannot be loaded it resolves with the cookie's state and
 * `config` null, and retries with backoff. Rejects (never throws) on a
 * startup error, e.g. when `siteKey` or `endpoint` is missing (`''` means this origin).
 */
export function init(o: ConsentryOptions, mountUi?: UiFactory): Promise<ConsentryInstance> {
  // the executor runs synchronously, and anything it throws becomes a rejection
  return new Promise((ok) => ok(start(o, mountUi)));
}

/** Sets up Google Consent Mode for a mapping (`gcm.ts`). */
export type ConsentModeSetup = typeof setupConsentMode;

/**
 * `init` that first checks the options with `check` (the default builds; see `options.ts`)
 * and supports the `googleConsentMode` option with `gcmSetup` (without it that option is
 * reported as `invalid_option` and Consent Mode stays off).
 */
export const checked =
  (check?: OptionCheck, gcmSetup?: ConsentModeSetup) =>
  (o: ConsentryOptions, mountUi?: UiFactory): Promise<ConsentryInstance> =>
    new Promise((ok) => ok(start(o, mountUi, check, gcmSetup)));

function start(options: ConsentryOptions, mountUi?: UiFactory, check?: OptionCheck, gcmSetup?: ConsentModeSetup): Promise<ConsentryInstance> {
  if (!options?.siteKey || options.endpoint == null) throw new Error('consentry: no siteKey or endpoint');
  const d = document;
  // this instance's subscribers (an EventTarget reports a listener's error without breaking the SDK)
  const subs = new EventTarget();
  const emit = <E extends keyof ConsentryEvents>(ev: E, detail: ConsentryEvents[E]) => {
    subs.dispatchEvent(new CustomEvent(ev, { detail }));
    d.dispatchEvent(new CustomEvent('consentry:' + ev, { detail }));
  };
  /** Init options the SDK could not use, replayed to later `error` subscribers. */
  const bad: ConsentryError[] = [];
  const said: Record<string, 1> = {};
  /**
   * Reports an `error`: a choice that will not be recorded (logged once per
   * reason), or init option `option` of value `v`, which the SDK cannot use and replaces by its default.
   */
  const fail = (reason: ConsentryError['reason'], status: number, problem: ConsentryError['problem'], choices?: Record<string, boolean>, option?: string, v?: unknown) => {
    const e = { reason, status, problem, choices, option };
    // eslint-disable-next-line no-console
    if (!said[reason + option]) console.error('consentry: ' + reason, option || status, option ? v : problem);
    said[reason + option] = 1;
    if (option) bad.push(e);
    emit('error', e);
  };
  const invalid = (k: string, v: unknown) => fail('invalid_option', 0, null, undefined, k, v);
  const o = check ? check(options, invalid) : options;
  const region = (o.region || '').toUpperCase();
  let cookieDomain = o.cookieDomain;
  // sent to the API as is: never a malformed one
  const vid = UUID.test(o.visitorId!) ? o.visitorId!.toLowerCase() : o.visitorId && invalid('visitorId', o.visitorId);
  const map = o.googleConsentMode;
  // before anything else, so the default precedes every tag
  const gcm = map && Object.keys(map)[0] ? (gcmSetup ? gcmSetup(window, map) : invalid('googleConsentMode', map)) : null;
  const api = (o.endpoint || '').replace(/\/+$/, '');
  const base = api + '/v1/sites/' + encodeURIComponent(o.siteKey);
  const nonce = o.nonce || nonceOf(d.currentScript) || nonceOf(d.querySelector('script[nonce]')) || '';
  const locale = o.locale || d.documentElement.lang || navigator.language || 'en';
  const gpcSignal = (navigator as { globalPrivacyControl?: boolean }).globalPrivacyControl === true;
  const now = () => Math.floor(Date.now() / 1000);
  const name = cookieName(o.siteKey);

  // Several cookies may hold a state: one per cookie domain the site has used, and the older
  // SDK's. The newest decision wins (the others are deleted at the next write), so a changed
  // configuration never brings an older decision back.
  let seen = newest(cookieValues(d, name));
  let stored = decodeState(newest([seen!, ...cookieValues(d, LEGACY_COOKIE)]));
  if (stored && (stored.site != o.siteKey || (vid && stored.id != vid))) {
    // a cookie of an older SDK (the next write uses the new name) or of another site: only its
    // visitor id is kept and its state waits for the server; a cookie of another visitor than
    // the `visitorId` option is not used at all
    stored = vid ? null : { ...stored, site: '', choices: {}, pending: false };
  }
  // the visitor cookie the API sets when it is on the page's site (not capped like ours), for when ours is gone
  const kept = cookieValues(d, name + '_id').find((v) => UUID.test(v));
  const visitorId = vid || (stored ? stored.id : kept || uuid());
  let config: SiteConfig | null = null;
  let models: Record<string, ConsentModel> = {};
  let purposes: Record<string, ConsentStatus> = {};
  /** When this page last changed each purpose (epoch s), for merging with another tab's cookie. */
  const at: Record<string, number> = {};
  let needs: boolean | undefined = false;
  let gpc = false;
  let ready = false;
  let wantPrefs = false;
  let ui: Ui | undefined;
  const stop = new AbortController();
  const { signal } = stop;

  /** Whether purpose `p` may be used: notice_only always, opt_in (also without a model) when granted, opt_out unless denied. */
  const allowed = (p: string) => {
    const m = models[p];
    return m == 'opt_out' ? purposes[p] != 'denied' : m == 'notice_only' || purposes[p] == 'granted';
  };
  /** Every purpose this page knows of. */
  const known = () => Object.keys({ ...models, ...purposes });
  /** One entry of `data-consent`: `purpose` is allowed, `!purpose` refused. */
  const holds = (e: string) => (e[0] == '!' ? purposes[e.slice(1)] == 'denied' : allowed(e));
  /** The policy revision choices are made under: the config's, else the cookie's. */
  const rev = () => (config ? policyRevision(config) : stored?.rev) || null;
  const snapshot = (): ConsentSnapshot => ({
    visitorId,
    policyRevision: rev(),
    purposes: { ...purposes },
    allowed: known().filter(allowed),
    // unknown while the config is not loaded
    needsConsent: needs || !config,
    gpc,
    confirmed: !q.size() && !stored?.pending,
  });
  /** Activates what is allowed and refreshes the UI; `consentMode`: also Consent Mode, when it changed. */
  const apply = (consentMode?: boolean) => {
    activate(d, holds, nonce);
    // the cookies a refused purpose declares go, on this host and every parent domain (the cookie domain too)
    for (const p of config?.purposes || [])
      if (purposes[p.key] == 'denied')
        // (`c` is `name=value`: `_ga` matches what starts with `_ga=`, `_ga_*` what starts with `_ga_`)
        for (const c of d.cookie.split('; ')) if (p.cookies.some((x) => !c.indexOf((x + '=').replace('*=', '')))) dropCookie(d, c.split('=')[0]);
    if (ui) ui.update();
    if (consentMode) gcm?.(allowed, detail(), true);
  };
  /** What Consent Mode's dataLayer event carries (never the visitor id). */
  const detail = (changed?: string[], source?: string) => ({ purposes: { ...purposes }, allowed: known().filter(allowed), changed, source });
  /** Choices of writes still queued (by any tab) for this visitor, the latest last. */
  const overlay = () => {
    const c: Record<string, boolean> = {};
    for (const it of q.items()) if (it.body.visitor_id == visitorId) Object.assign(c, it.body.choices);
    return c;
  };
  /**
   * Writes the cookie from the current state; `touched`: a decision was made
   * now (only then is the cookie's lifetime renewed). Another tab may have
   * written it since this page last did: its decisions on purposes this page
   * did not change since, or changed earlier, are taken over first.
   */
  const persist = (pending: boolean, touched?: boolean) => {
    const all = cookieValues(d, name);
    const raw = newest(all);
    // written since this page last read or wrote it
    const cur = raw != seen && decodeState(raw);
    if (cur && stored && cur.id == visitorId)
      for (const k in cur.choices) {
        const c = cur.choices[k];
        const b = stored.choices[k];
        // changed by the other tab; here unchanged since (undecided is absent from the cookie), or changed earlier
        if (c != b && (purposes[k] == (b || 'undecided') || cur.updated > (at[k] || 0))) purposes[k] = c;
      }
    const choices: StoredState['choices'] = {};
    for (const k in purposes) if (models[k] != 'notice_only' && purposes[k] != 'undecided') choices[k] = purposes[k] as 'granted';
    const t = now();
    stored = {
      id: visitorId,
      site: o.siteKey,
      region,
      rev: rev(),
      choices,
      // the cookie keeps opt_out and notice_only (opt_in is the default)
      models: models as StoredState['models'],
      created: stored?.created || t,
      updated: (!touched && stored?.updated) || t,
      pending,
      gpc: gpc || !!stored?.gpc,
    };
    const v = encodeState(stored);
    const put = () => writeCookie(d, name, v, stored!.updated + (config?.cookie_max_age_days || 395) * 86400 - t, cookieDomain);
    const old = cookieValues(d, LEGACY_COOKIE).length;
    // (a value has no comma: one cookie holding v is all.join() == v; a decision made now gives a
    // new value but in the second this page last wrote it, whose cookie then is the same)
    if ('' + all != v || old) {
      put();
      // the browser refused the Domain (e.g. a public suffix): the page's host, said out loud
      if (cookieDomain && !cookieValues(d, name).includes(v)) invalid('cookieDomain', cookieDomain), (cookieDomain = undefined), put();
      // one cookie only: the other variants (another cookie domain) and the older SDK's go
      if (cookieValues(d, name)[1] || old) dropCookie(d, name), dropCookie(d, LEGACY_COOKIE), put();
    }
    seen = v;
  };
  /**
   * Takes the server's record (null: none) as the state; writes still queued
   * go on top and GPC applies. Returns the purposes GPC denied only now.
   */
  const adopt = (server: VisitorConsents | null) => {
    const ov = overlay();
    ({ purposes, needsConsent: needs } = reconcile(config!, stored, server, ov, now()));
    const denied = gpc ? applyGpc(config!, purposes) : [];
    if (stored) persist(!!Object.keys(ov)[0] || (!server && stored.pending));
    apply(true);
    return denied;
  };

  const q = createQueue({
    url: base + '/consents',
    storageKey: 'consentry:' + o.siteKey,
    signal,
    onSent(_, res) {
      if (!q.size())
        if (config && res?.consents) adopt(res.consents);
        else persist(false);
      emit('saved', snapshot());
    },
    onDrop(it, status, problem) {
      fail(status ? 'refused' : 'gave_up', status, problem, it.body.choices);
    },
  });

  /**
   * One write; `user`: a user action, which also emits one `change`;
   * `token`: an identity token, sent with this write only.
   */
  const write = async (choices: Record<string, boolean>, source: ConsentSource, user?: boolean, token?: string): Promise<boolean> => {
    const body: Record<string, boolean> = {};
    const changed: string[] = [];
    for (const k in choices) {
      const v = choices[k];
      const p = config?.purposes.find((x) => x.key == k);
      // notice_only and unknown purposes are never sent; GPC denials stay (11 CCR §7025(c)(1));
      // without the config: the cookie's models, and no grant at all under GPC
      if (v !== !!v || models[k] == 'notice_only' || (config && !p) || (v && (p ? gpc && p.gpc_applies : gpcSignal))) continue;
      const st = v ? 'granted' : 'denied';
      if (purposes[k] != st) changed.push(k);
      purposes[k] = st;
      at[k] = now();
      body[k] = v;
    }
    if (!Object.keys(body).length) return !token && !q.size();
    // (without the config, consent is needed anyway: see snapshot)
    needs = config?.purposes.some((p) => p.consent_model == 'opt_in' && purposes[p.key] == 'undecided');
    const r = rev();
    persist(true, true);
    apply();
    if (user) {
      gcm?.(allowed, detail(changed, source));
      emit('change', { ...snapshot(), changed, source } as ConsentChange);
    }
    // the server refuses a write without a policy revision: the choice stays on this page, unconfirmed
    if (!r) {
      fail(config ? 'no_policy' : 'offline', 0, null, body);
      return false;
    }
    return q.push({
      key: uuid(),
      at: Date.now(),
      body: {
        visitor_id: visitorId,
        choices: body,
        policy_revision: r,
        source,
        region: region || config?.region || undefined,
        gpc: gpcSignal || undefined,
        identity_token: token,
        // what the banner showed (signed by the server): the receipt names it
        presentation: config?.presentation?.token,
        // checked against the server's request schema: a field it renames, or a new required one, fails the build
      } satisfies ConsentWrite,
    });
  };
  /** Choices giving `v` to `keys`, by default every purpose known. */
  const all = (v: boolean, keys = known()) => {
    const c: Record<string, boolean> = {};
    for (const k of keys) c[k] = v;
    return c;
  };

  const inst: ConsentryInstance = {
    get config() {
      return config;
    },
    visitorId,
    get: (p) => purposes[p] || 'undecided',
    allowed,
    getAll: () => ({ ...purposes }),
    snapshot,
    set: (c, source = 'preference_centre') => write(c, source, true),
    acceptAll: (source = 'banner') => write(all(true), source, true),
    rejectAll: (source = 'banner') => write(all(false), source, true),
    showPreferences() {
      if (ui) ui.preferences();
      else if (mountUi) {
        // eslint-disable-next-line no-console
        console.error('consentry: offline, retrying');
        wantPrefs = true;
        if (ready) load();
      }
    },
    identify(token) {
      // the decisions, as the cookie has them
      const c: Record<string, boolean> = {};
      for (const k in stored?.choices) c[k] = stored!.choices[k] == 'granted';
      return write(c, 'preference_centre', false, token);
    },
    destroy() {
      stop.abort();
      observer.disconnect();
    },
    on(ev, cb) {
      const f = (e: Event) => cb((e as CustomEvent).detail);
      subs.addEventListener(ev, f);
      if (ev == 'ready' && ready) cb(snapshot() as never);
      if (ev == 'error') bad.map(cb as never);
      return () => subs.removeEventListener(ev, f);
    },
  };

  // The cookie applies at once only when it was written for this site key and
  // region, is not waiting for a write this browser no longer holds, and GPC
  // is off or was applied to it; otherwise its state waits for the server.
  // Writes still queued (by any tab) go on top: a withdrawal waiting to be sent is never undone.
  const ov = overlay();
  if (stored && stored.site == o.siteKey && stored.region == region && (!gpcSignal || stored.gpc) && (!stored.pending || Object.keys(ov).length)) {
    purposes = { ...stored.choices };
    for (const k in ov) purposes[k] = ov[k] ? 'granted' : 'denied';
    models = { ...stored.models };
  }
  // also without a state: fallback content is hidden until a refusal is known
  apply(true);
  // only what was added is looked at; state changes re-scan the page
  const observer = new MutationObserver((records) => {
    const added = records.flatMap((r) => [...r.addedNodes]).filter((n) => (n as Element).tagName) as Element[];
    added.map((n) => activate(n, holds, nonce));
    if (ui && added.length) ui.update(added);
  });
  observer.observe(d, { childList: true, subtree: true });
  d.addEventListener(
    'click',
    (e) => {
      const t = (e.target as Element).closest('[data-consent-grant],[data-consentry-preferences]');
      if (!t || !ready) return;
      e.preventDefault();
      const g = t.getAttribute('data-consent-grant');
      if (g == null) inst.showPreferences();
      else write(all(true, purposesOf(g)), 'placeholder', true);
    },
    { signal },
  );
  d.addEventListener('visibilitychange', () => d.hidden && q.beacon(), { signal });
  addEventListener('online', () => ready && (q.flush(), config || load()), { signal });

  // the query strings: the record's `?region=…` (or none), the config's also with the locale (never empty)
  const qs = new URLSearchParams(region ? { region } : {});
  const query = qs + '' && '?' + qs;
  qs.set('locale', locale);
  const get = <T>(path: string): Promise<T | null> =>
    fetch(base + path, { credentials: 'omit' })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);

  let tries = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** Loads the config and the visitor's record and reconciles; until the config arrives, retries with backoff. */
  const load = (): Promise<unknown> => {
    clearTimeout(timer);
    return Promise.all([
      get<SiteConfig>('/config?' + qs),
      // also with writes still queued: the record may have changed elsewhere; the queued choices go on top
      stored || vid || kept ? get<VisitorConsents>('/visitors/' + visitorId + '/consents' + query) : null,
    ]).then(([cfg, server]) => {
      if (config || signal.aborted) return;
      if (cfg) {
        config = cfg;
        models = {};
        // GPC applies when the browser sends it, the site honours it and a purpose is subject to it
        for (const p of cfg.purposes) (models[p.key] = p.consent_model), p.gpc_applies && (gpc = gpcSignal && cfg.gpc_honored);
        const denied = adopt(server);
        if (mountUi) ui = mountUi({ instance: inst, config: cfg, nonce, locale, options: Object(o.ui), signal });
        // the tracker audit, on the sampled share of page views only (a module of its own)
        if (Math.random() < cfg.audit_sample_rate) import(api + '/sdk/consentry.audit.mjs').then((m) => m.default(inst, base), () => {});
        // GPC denials are written before `ready`; the browser adds Sec-GPC: 1 itself
        if (denied.length) write(all(false, denied), 'banner');
      } else timer = setTimeout(() => signal.aborted || load(), backoff(tries++, Math.random()));
      q.flush();
      apply(true);
      if (!ready) (ready = true), emit('ready', snapshot());
      if (ui) {
        if (wantPrefs) ui.preferences();
        else if (needs) ui.banner(true);
        wantPrefs = false;
      }
    });
  };
  return load().then(() => inst);
}
