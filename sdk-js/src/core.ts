/**
 * The headless core: state, reconciliation with the server, writes, gating,
 * GPC and Google Consent Mode. The default UI is a separate module passed in
 * as a factory, so the core build does not contain it.
 */
import { setupConsentMode } from './gcm';
import { activate, purposesOf } from './gating';
import { createQueue } from './queue';
import { applyGpc, isAllowed, policyRevision, readCookie, reconcile, writeCookie, type StoredState } from './state';
import type {
  ConsentChange,
  ConsentModel,
  ConsentryEvents,
  ConsentryInstance,
  ConsentryOptions,
  ConsentSnapshot,
  ConsentSource,
  ConsentStatus,
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
  /** State or DOM changed: refresh placeholders and notices. Must not touch the DOM when nothing changed. */
  update(): void;
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
 * default (when configured), reads the cookie and activates what it allows.
 * Then loads the site config and the visitor's record from the server,
 * reconciles, applies GPC, mounts the UI (when a factory is given), shows the
 * banner if consent is needed, emits `ready` and resolves. When the server
 * cannot be reached it resolves with the cookie's state and `config` null.
 * Rejects only when `siteKey` or `endpoint` is missing (`''` means this origin).
 */
export function init(o: ConsentryOptions, mountUi?: UiFactory): Promise<ConsentryInstance> {
  if (!o || !o.siteKey || o.endpoint == null) return Promise.reject(new Error('consentry: siteKey and endpoint are required'));
  const d = document;
  const map = o.googleConsentMode;
  // before anything else, so the default precedes every tag
  const gcm = map && Object.keys(map).length ? setupConsentMode(window, map) : null;
  const base = o.endpoint.replace(/\/+$/, '') + '/v1/sites/' + encodeURIComponent(o.siteKey);
  // browsers hide the nonce attribute's value once parsed; the property keeps it
  const nonceOf = (s: Element | null) => (s && ((s as HTMLScriptElement).nonce || s.getAttribute('nonce'))) || undefined;
  const nonce = o.nonce || nonceOf(d.currentScript) || nonceOf(d.querySelector('script[nonce]'));
  const locale = o.locale || d.documentElement.lang || navigator.language || 'en';
  const gpcSignal = (navigator as { globalPrivacyControl?: boolean }).globalPrivacyControl === true;
  const now = () => Math.floor(Date.now() / 1000);

  let stored: StoredState | null = readCookie(d);
  const visitorId = stored ? stored.id : crypto.randomUUID();
  let config: SiteConfig | null = null;
  let models: Record<string, ConsentModel> = {};
  let purposes: Record<string, ConsentStatus> = {};
  let needs = false;
  let gpc = false;
  let ready = false;
  let identity: string | undefined;
  let ui: Ui | undefined;
  const subs: Listeners = {};
  const stop = new AbortController();
  const signal = stop.signal;

  const allowed = (p: string) => isAllowed(models[p] || 'opt_in', purposes[p]);
  const snapshot = (): ConsentSnapshot => ({
    visitorId,
    policyRevision: config ? policyRevision(config) : stored && stored.rev,
    purposes: { ...purposes },
    allowed: Object.keys({ ...models, ...purposes }).filter(allowed),
    needsConsent: needs,
    gpc,
    confirmed: !q.size() && !(stored && stored.pending),
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
  const apply = () => {
    activate(d, allowed, nonce);
    if (ui) ui.update();
  };
  const detail = (changed?: string[], source?: string) => ({ purposes: { ...purposes }, allowed: snapshot().allowed, changed, source });
  /** Writes the cookie from the current state; `touched`: a decision was made now. */
  const persist = (pending: boolean, touched: boolean) => {
    const choices: StoredState['choices'] = {};
    for (const k in purposes) if (models[k] != 'notice_only' && purposes[k] != 'undecided') choices[k] = purposes[k] as 'granted';
    const t = now();
    stored = {
      id: visitorId,
      rev: config ? policyRevision(config) : stored && stored.rev,
      choices,
      open: Object.keys(models).filter((k) => models[k] != 'opt_in'),
      created: (stored && stored.created) || t,
      updated: touched || !stored ? t : stored.updated,
      pending,
      gpc: gpc || !!(stored && stored.gpc),
    };
    writeCookie(d, stored, config ? config.cookie_max_age_days : 395, o.cookieDomain);
  };
  /** Takes the server's record as the state (GPC denials stay). */
  const adopt = (server: VisitorConsents) => {
    const r = reconcile(config!, stored, server, false, now());
    if (gpc) applyGpc(config!, r.purposes);
    purposes = r.purposes;
    needs = r.needsConsent;
    persist(false, false);
    apply();
    if (gcm) gcm.update(allowed, detail(), true);
  };

  const q = createQueue({
    url: base + '/consents',
    storageKey: 'consentry:' + o.siteKey,
    signal,
    onSent(_, res) {
      if (!q.size() && config) {
        if (res && res.consents) adopt(res.consents);
        else persist(false, false);
      }
      emit('saved', snapshot());
    },
    onDrop(it, status) {
      // eslint-disable-next-line no-console
      console.warn('consentry: write refused', status, it.body);
    },
  });

  /** One write; `user`: a user action, which also emits one `change`. */
  const write = (choices: Record<string, boolean>, source: ConsentSource, user: boolean): Promise<boolean> => {
    if (!config) return Promise.resolve(false);
    const body: Record<string, boolean> = {};
    const changed: string[] = [];
    for (const p of config.purposes) {
      const v = choices[p.key];
      // notice_only purposes cannot be refused and are never sent; GPC denials stay (11 CCR §7025(c)(1))
      if (typeof v != 'boolean' || p.consent_model == 'notice_only' || (v && gpc && p.gpc_applies)) continue;
      const st = v ? 'granted' : 'denied';
      if (purposes[p.key] != st) changed.push(p.key);
      purposes[p.key] = st;
      body[p.key] = v;
    }
    if (!Object.keys(body).length) return Promise.resolve(!q.size());
    needs = config.purposes.some((p) => p.consent_model == 'opt_in' && purposes[p.key] == 'undecided');
    persist(true, true);
    apply();
    if (user) {
      if (gcm) gcm.update(allowed, detail(changed, source));
      emit('change', { ...snapshot(), changed, source } as ConsentChange);
    }
    const region = o.region || config.region;
    return q.push({
      key: crypto.randomUUID(),
      body: {
        visitor_id: visitorId,
        choices: body,
        policy_revision: policyRevision(config) || undefined,
        source,
        region: region || undefined,
        gpc: gpcSignal || undefined,
        identity_token: identity,
      },
    });
  };
  const all = (v: boolean) => {
    const c: Record<string, boolean> = {};
    for (const p of config ? config.purposes : []) c[p.key] = v;
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
    showPreferences: () => ui && ui.preferences(),
    identify(token) {
      identity = token;
      const c: Record<string, boolean> = {};
      for (const k in purposes) if (models[k] != 'notice_only' && purposes[k] != 'undecided') c[k] = purposes[k] == 'granted';
      return write(c, 'preference_centre', false);
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

  // The cookie applies at once, unless GPC is on and the cookie predates it:
  // then which purposes GPC covers is unknown until the config arrives.
  if (stored && (!gpcSignal || stored.gpc)) {
    purposes = { ...stored.choices };
    for (const k of stored.open) models[k] = 'opt_out';
    apply();
    if (gcm) gcm.update(allowed, detail(), true);
  }
  const observer = new MutationObserver(apply);
  observer.observe(d.documentElement, { childList: true, subtree: true });
  d.addEventListener(
    'click',
    (e) => {
      const t = (e.target as Element).closest('[data-consent-grant],[data-consentry-preferences]');
      if (!t || !ready) return;
      e.preventDefault();
      const g = t.getAttribute('data-consent-grant');
      if (g == null) inst.showPreferences();
      else write(Object.fromEntries(purposesOf(g).map((p) => [p, true])), 'placeholder', true);
    },
    { signal },
  );
  d.addEventListener('visibilitychange', () => d.visibilityState == 'hidden' && q.beacon(), { signal });
  addEventListener('online', () => q.flush(), { signal });

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

  return Promise.all([
    get<SiteConfig>('/config' + query(locale)),
    // with writes still queued, the server is behind: their answers bring its record
    stored && !q.size() ? get<VisitorConsents>('/visitors/' + visitorId + '/consents' + query()) : null,
  ]).then(([cfg, server]) => {
    if (signal.aborted) return inst;
    if (cfg) {
      config = cfg;
      models = {};
      for (const p of cfg.purposes) models[p.key] = p.consent_model;
      const r = reconcile(cfg, stored, server, q.size() > 0, now());
      purposes = r.purposes;
      needs = r.needsConsent;
      gpc = gpcSignal && cfg.gpc_honored && cfg.purposes.some((p) => p.gpc_applies);
      const denied = gpc ? applyGpc(cfg, purposes) : [];
      if (mountUi) ui = mountUi({ instance: inst, config: cfg, nonce, locale, options: typeof o.ui == 'object' ? o.ui : {}, signal });
      // GPC denials are written before `ready`; the browser adds Sec-GPC: 1 itself
      if (denied.length) write(Object.fromEntries(denied.map((k) => [k, false])), 'banner', false);
      else if (stored) persist(q.size() > 0 || (!server && stored.pending), false);
    }
    q.flush();
    apply();
    if (gcm) gcm.update(allowed, detail(), true);
    ready = true;
    emit('ready', snapshot());
    if (ui && needs) ui.banner(true);
    return inst;
  });
}
