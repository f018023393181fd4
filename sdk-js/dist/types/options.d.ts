/**
 * The check of `init` options in the default builds (`consentry.js`,
 * `consentry.mjs`). The headless core leaves it out to stay within its 5 KB:
 * there TypeScript's types check the options, and the core itself refuses a
 * malformed `visitorId` and a cookie domain the browser does not store.
 */
import type { ConsentryOptions } from './types';
/** Reports option `option` (e.g. `cookieDomain`, `googleConsentMode.ad_storage`) of value `value`. */
export type OptionCheck = (options: ConsentryOptions, invalid: (option: string, value: unknown) => void) => ConsentryOptions;
/**
 * Returns the options the SDK can use: each one it cannot (unknown, or of a
 * value it cannot use) is reported and left out, so its default applies. In
 * `googleConsentMode`, a type Google does not know is left out, and one mapped
 * to anything but a purpose key or a non-empty list of them stays denied.
 */
export declare const checkOptions: OptionCheck;
