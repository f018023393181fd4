/**
 * The check of `init` options in the default builds (`consentry.js`,
 * `consentry.mjs`). The headless core leaves it out to stay within its 5 KB:
 * there TypeScript's types check the options, and the core itself refuses a
 * malformed `visitorId` and a cookie domain the browser does not store.
 */
import type { ConsentryOptions } from './types';
import { UUID } from './state';

/** Reports option `option` (e.g. `cookieDomain`, `googleConsentMode.ad_storage`) of value `value`. */
export type OptionCheck = (options: ConsentryOptions, invalid: (option: string, value: unknown) => void) => ConsentryOptions;

const any = /./;
const kind = /^(true|false|\[object Object])$/;
/** Tests of the options' values (as strings); an option not listed here is unknown. */
const VALID: Record<string, { test(v: unknown): boolean }> = {
  siteKey: any,
  // an absolute http(s) URL or a path on this origin
  endpoint: /^(https?:\/\/[^/?#]+)?(\/[^?#]*)?$/,
  // ISO 3166-1 alpha-2 or ISO 3166-2, as the API takes them
  region: /^[a-z]{2}(-[a-z\d]{1,3})?$/i,
  // BCP 47
  locale: /^[a-z]{2,3}(-[a-z\d]+)*$/i,
  ui: kind,
  // the page's host or a parent domain (no scheme, port or path); the browser has the last word
  cookieDomain: { test: (v) => location.hostname.endsWith(v as string) },
  googleConsentMode: kind,
  // base64
  nonce: /^[\w+/=-]+$/,
  visitorId: UUID,
};
/** Consent Mode v2 consent types. */
const TYPES = /^(ad_(storage|user_data|personalization)|(analytics|functionality|personalization|security)_storage)$/;

/**
 * Returns the options the SDK can use: each one it cannot (unknown, or of a
 * value it cannot use) is reported and left out, so its default applies. In
 * `googleConsentMode`, a type Google does not know is left out, and one mapped
 * to anything but a purpose key or a non-empty list of them stays denied.
 */
export const checkOptions: OptionCheck = (options, invalid) => {
  const o = { ...options } as ConsentryOptions & Record<string, unknown>;
  for (const k in o) if (o[k] != null && !VALID[k]?.test(o[k])) invalid(k, o[k]), delete o[k];
  const map = o.googleConsentMode as Record<string, unknown> | undefined;
  if (map) {
    const m: Record<string, string | string[]> = {};
    for (const t in map) {
      const v = map[t];
      const ok = TYPES.test(t);
      if (!ok || !('' + v).split(',').every((p) => /^\w+$/.test(p))) invalid('googleConsentMode.' + t, v);
      // '' is no purpose: never allowed
      if (ok) m[t] = typeof v == 'string' || Array.isArray(v) ? (v as string) : '';
    }
    o.googleConsentMode = m;
  }
  return o;
};
