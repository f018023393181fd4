/**
 * Google Consent Mode v2. Only used when a mapping is configured: then
 * `window.dataLayer` and `gtag` are defined, a `default` (all mapped types
 * denied, wait_for_update 500 ms) is pushed synchronously at init, and an
 * `update` precedes every `consentry_consent_changed` dataLayer event.
 */
import type { GoogleConsentModeMapping } from './types';

type Gtag = (...args: unknown[]) => void;
interface GtagWindow {
  dataLayer?: unknown[];
  gtag?: Gtag;
}

/** Name of the dataLayer event pushed after each consent update. */
export const DATA_LAYER_EVENT = 'consentry_consent_changed';

/** Consent Mode for one mapping; `allowed` says whether a purpose may be used. */
export interface ConsentMode {
  /** Pushes `update` (skipped when `onlyIfChanged` and equal to the last one), then our event. */
  update(allowed: (purpose: string) => boolean, detail: object, onlyIfChanged?: boolean): void;
}

/** Defines dataLayer/gtag if needed and pushes the `default` command at once. */
export function setupConsentMode(w: Window, map: GoogleConsentModeMapping): ConsentMode {
  const g = w as unknown as GtagWindow;
  const dl = (g.dataLayer = g.dataLayer || []);
  // gtag.js reads Arguments objects from the dataLayer, so push `arguments` itself
  const gtag: Gtag =
    g.gtag ||
    (g.gtag = function () {
      // eslint-disable-next-line prefer-rest-params
      dl.push(arguments);
    });
  /** The purposes a type needs; an empty list (or anything but a key or a list) gives [''], never allowed. */
  const needs = (t: string) => ('' + map[t as 'ad_storage']).split(',');
  const types = Object.keys(map) as (keyof GoogleConsentModeMapping)[];
  const state = (f: (t: keyof GoogleConsentModeMapping) => boolean) => {
    const o: Record<string, string> = {};
    for (const t of types) o[t] = f(t) ? 'granted' : 'denied';
    return o;
  };
  const none = state(() => false);
  gtag('consent', 'default', { ...none, wait_for_update: 500 });
  let last = JSON.stringify(none);
  return {
    update(allowed, detail, onlyIfChanged) {
      const u = state((t) => needs(t).every(allowed));
      const s = JSON.stringify(u);
      if (onlyIfChanged && s == last) return;
      last = s;
      gtag('consent', 'update', u);
      dl.push({ event: DATA_LAYER_EVENT, consentry: detail });
    },
  };
}
