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

/**
 * Consent Mode for one mapping: pushes `update` (skipped when `onlyIfChanged`
 * and equal to the last one), then our event; `allowed` says whether a purpose may be used.
 */
export type ConsentMode = (allowed: (purpose: string) => boolean, detail?: object, onlyIfChanged?: boolean) => void;

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
  let last = '';
  const update: ConsentMode = (allowed, detail, onlyIfChanged) => {
    const u: Record<string, unknown> = {};
    // the purposes a type needs; an empty list (or anything but a key or a list) gives [''], never allowed
    for (const t in map) u[t] = ('' + map[t as 'ad_storage']).split(',').every(allowed) ? 'granted' : 'denied';
    const s = JSON.stringify(u);
    if (onlyIfChanged && s == last) return;
    // the first call is the default (everything denied)
    if (last) gtag('consent', 'update', u), dl.push({ event: DATA_LAYER_EVENT, consentry: detail });
    else gtag('consent', 'default', { ...u, wait_for_update: 500 });
    last = s;
  };
  update(() => false);
  return update;
}
