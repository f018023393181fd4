/**
 * The headless core: state, reconciliation with the server, writes, gating,
 * GPC and Google Consent Mode. The default UI is a separate module passed in
 * as a factory, so the core build does not contain it.
 */
import { setupConsentMode } from './gcm';
import { activate, nonceOf, purposesOf } from './gating';
import { backoff, createQueue } from './queue';
import {
  applyGpc,
  cookieName,
  cookieValue,
  decodeState,
  encodeState,
  isAllowed,
  LEGACY_COOKIE,
  policyRevision,
  readCookie,
  reconcile,
  uuid,
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

type Listeners = { [E in keyof ConsentryEvents]?: ((d: ConsentryEvents[E]) => void)[] };

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

function start(o: ConsentryOptions, mountUi?: UiFactory): Promise<ConsentryInstance> {
  if (!o || !o.siteKey || o.endpoint == null) throw new Error('consentry: siteKey and endpoint are required');
  const d = document;
  const map = o.googleConsentMode;
  // before anything else, so the default precedes every tag
  const gcm = map && Object.keys(map).length ? setupConsentMode(window, map) : null;
  const base = o.endpoint.replace(/\/+$/, '') + '/v1/sites/' + encodeURIComponent(o.siteKey);
  const nonce = o.nonce || nonceOf(d.currentScript) || nonceOf(d.querySelector('script[nonce]')) || undefined;
  const locale = o.locale || d.documentElement.lang || navigator.language || 'en';
  const gpcSignal = (navigator as { globalPrivacyControl?: boolean }).globalPrivacyControl === true;
  const now = () => Math.floor(Date.now() / 1000);
  const name = cookieName(o.siteKey);
  const region = o.region || '';

  let stored: StoredState | null = readCookie(d, name);
  if (!stored || stored.site != o.siteKey) {
    // a cookie of an older SDK (read once: the next write uses the new name) or of another site:
    // only its visitor id is kept, its state waits for the server
    const other = stored || readCookie(d, LEGACY_COOKIE);
    stored = other && { ...other, site: '', choices: {}, pending: false };
  }
  const visitorId = stored ? stored.id : uuid();
  let config: SiteConfig | null = null;
  let models: Record<string, ConsentModel> = {};
  let purposes: Record<string, ConsentStatus> = {};
  /** When this page last changed each purpose (epoch s), for merging with another tab's cookie. */
  const at: Record<string, number> = {};
  let needs = false;
  let gpc = false;
  let ready = false;
  let wantPrefs = false;
  let ui: Ui | undefined;
  const said: Record<string, 1> = {};
  const subs: Listeners = {};
  const stop = new AbortController();
  const signal = stop.signal;

  const allowed = (p: string) => isAllowed(models[p] || 'opt_in', purposes[p]);
  /** The policy revision choices are made under: the config's, else the cookie's. */
  const rev = () => (config ? policyRevision(config) : stored?.rev) || null;
  const snapshot = (): ConsentSnapshot => ({
    visitorId,
    policyRevision: rev(),
    purposes: { ...purposes },
    allowed: Object.keys({ ...models, ...purposes }).filter(allowed),
    // unknown while the config is not loaded
    needsConsent: needs || !config,
    gpc,
    confirmed: !q.size() && !stored?.pending,
  });
  const emit = <E extends keyof ConsentryEvents>(ev: E, detail: ConsentryEvents[E]) => {
    for (const cb of subs[ev] || [])
      try {
        cb(detail);
      } catch (e) {
        setTimeout(() => {
          throw e; // report a listener's error without breaking the SDK
        });
      }
    d.dispatchEvent(new CustomEvent('consentry:' + ev, { detail }));
  };
  /** A choice that will not be recorded: logged once per reason, `error` every time. */
  const fail = (reason: ConsentryError['reason'], status: number, problem: ConsentryError['problem'], choices?: Record<string, boolean>) => {
    // eslint-disable-next-line no-console
    if (!said[reason]) console.error('consentry: not recorded:', reason, status, problem);
    said[reason] = 1;
    emit('error', { reason, status, problem, choices });
  };
  /** Activates what is allowed and refreshes the UI; `consentMode`: also Consent Mode, when it changed. */
  const apply = (consentMode?: boolean) => {
    activate(d, allowed, nonce);
    ui?.update();
    if (consentMode && gcm) gcm.update(allowed, detail(), true);
  };
  const detail = (changed?: string[], source?: string) => ({ purposes: { ...purposes }, allowed: snapshot().allowed, changed, source });
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
  const persist = (pending: boolean, touched: boolean) => {
    const raw = cookieValue(d, name);
    const cur = decodeState(raw);
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
      updated: touched || !stored ? t : stored.updated || t,
      pending,
      gpc: gpc || !!stored?.gpc,
    };
    const v = encodeState(stored);
    const life = (config?.cookie_max_age_days || 395) * 86400;
    if (touched || v != raw) writeCookie(d, name, v, stored.updated + life - t, o.cookieDomain);
  };
  /** Takes the server's record as the state (GPC denials and writes still queued stay). */
  const adopt = (server: VisitorConsents) => {
    const ov = overlay();
    const r = reconcile(config!, stored, server, ov, now());
    if (gpc) applyGpc(config!, r.purposes);
    purposes = r.purposes;
    needs = r.needsConsent;
    persist(Object.keys(ov).length > 0, false);
    apply(true);
  };

  const q = createQueue({
    url: base + '/consents',
    storageKey: 'consentry:' + o.siteKey,
    signal,
    onSent(_, res) {
      if (!q.size())
        if (config && res?.consents) adopt(res.consents);
        else persist(false, false);
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
  const write = async (choices: Record<string, boolean>, source: ConsentSource, user: boolean, token?: string): Promise<boolean> => {
    const body: Record<string, boolean> = {};
    const changed: string[] = [];
    for (const k in choices) {
      const v = choices[k];
      const p = config?.purposes.find((x) => x.key == k);
      // notice_only and unknown purposes are never sent; GPC denials stay (11 CCR §7025(c)(1));
      // without the config: the cookie's models, and no grant at all under GPC
      if (typeof v != 'boolean' || models[k] == 'notice_only' || (config && !p) || (v && (p ? gpc && p.gpc_applies : gpcSignal))) continue;
      const st = v ? 'granted' : 'denied';
      if (purposes[k] != st) changed.push(k);
      purposes[k] = st;
      at[k] = now();
      body[k] = v;
    }
    if (!Object.keys(body).length) return !token && !q.size();
    if (config) needs = config.purposes.some((p) => p.consent_model == 'opt_in' && purposes[p.key] == 'undecided');
    const r = rev();
    persist(true, true);
    apply();
    if (user) {
      if (gcm) gcm.update(allowed, detail(changed, source));
      emit('change', { ...snapshot(), changed, source } as ConsentChange);
    }
    // the server refuses a write without a policy revision: the choice stays on this page, unconfirmed
    if (!r) {
      fail(config ? 'no_policy' : 'offline', 0, null, body);
      return false;
    }
    const where = o.region || config?.region;
    return q.push({
      key: uuid(),
      at: Date.now(),
      body: {
        visitor_id: visitorId,
        choices: body,
        policy_revision: r,
        source,
        region: where || undefined,
        gpc: gpcSignal || undefined,
        identity_token: token,
        // checked against the server's request schema: a field it renames, or a new required one, fails the build
      } satisfies ConsentWrite,
    });
  };
  /** Choices giving `v` to `keys`, by default every purpose known. */
  const all = (v: boolean, keys = config ? config.purposes.map((p) => p.key) : Object.keys({ ...models, ...purposes })) => {
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
        console.error('consentry: no config yet, retrying');
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
      const l = (subs[ev] = subs[ev] || []) as (typeof cb)[];
      l.push(cb);
      if (ev == 'ready' && ready) cb(snapshot() as never);
      return () => {
        l.splice(l.indexOf(cb) >>> 0, 1);
      };
    },
  };

  // The cookie applies at once only when it was written for this site key and
  // region, is not waiting for a write this browser no longer holds, and GPC
  // is off or was applied to it; otherwise its state waits for the server.
  if (
    stored &&
    stored.site == o.siteKey &&
    stored.region == region &&
    (!gpcSignal || stored.gpc) &&
    (!stored.pending || Object.keys(overlay()).length)
  ) {
    purposes = { ...stored.choices };
    models = { ...stored.models };
    apply(true);
  }
  // only what was added is looked at; state changes re-scan the page
  const observer = new MutationObserver((records) => {
    const added = records.flatMap((r) => [...r.addedNodes]).filter((n) => n.nodeType == 1) as Element[];
    added.forEach((n) => activate(n, allowed, nonce));
    if (ui && added.length) ui.update(added);
  });
  observer.observe(d.documentElement, { childList: true, subtree: true });
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
  d.addEventListener('visibilitychange', () => d.visibilityState == 'hidden' && q.beacon(), { signal });
  addEventListener('online', () => ready && (q.flush(), config || load()), { signal });

  const query = (locale?: string) => {
    const s = new URLSearchParams();
    if (o.region) s.set('region', o.region);
    if (locale) s.set('locale', locale);
    const t = '' + s;
    return t ? '?' + t : '';
  };
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
      get<SiteConfig>('/config' + query(locale)),
      // also with writes still queued: the record may have changed elsewhere; the queued choices go on top
      stored ? get<VisitorConsents>('/visitors/' + visitorId + '/consents' + query()) : null,
    ]).then(([cfg, server]) => {
      if (signal.aborted || config) return;
      if (cfg) {
        config = cfg;
        models = {};
        for (const p of cfg.purposes) models[p.key] = p.consent_model;
        const ov = overlay();
        const r = reconcile(cfg, stored, server, ov, now());
        purposes = r.purposes;
        needs = r.needsConsent;
        gpc = gpcSignal && cfg.gpc_honored && cfg.purposes.some((p) => p.gpc_applies);
        const denied = gpc ? applyGpc(cfg, purposes) : [];
        if (mountUi) ui = mountUi({ instance: inst, config: cfg, nonce, locale, options: typeof o.ui == 'object' ? o.ui : {}, signal });
        // GPC denials are written before `ready`; the browser adds Sec-GPC: 1 itself
        if (denied.length) write(all(false, denied), 'banner', false);
        else if (stored) persist(Object.keys(ov).length > 0 || (!server && stored.pending), false);
      } else timer = setTimeout(() => signal.aborted || load(), backoff(tries++, Math.random()));
      q.flush();
      apply(true);
      if (!ready) emit('ready', ((ready = true), snapshot()));
      if (ui) {
        if (wantPrefs) ui.preferences();
        else if (needs) ui.banner(true);
        wantPrefs = false;
      }
    });
  };
  return load().then(() => inst);
}
