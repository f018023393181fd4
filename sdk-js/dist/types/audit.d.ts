/**
 * The tracker audit (ES module `consentry.audit.mjs`, served by the API at
 * `/sdk/consentry.audit.mjs`). The core imports it only on the sampled share of
 * page views (the site's `audit_sample_rate`) and calls its default export.
 *
 * For {@link WINDOW_MS} after it starts and after each consent change it notes
 * the cookie names the page can read (polled), and the hosts of resources
 * (PerformanceObserver, earlier ones too), scripts and iframes (MutationObserver)
 * the page loads, each with the purposes allowed at that moment. At the end of
 * each window (and when the page is hidden) it sends what it noted, once, with
 * `navigator.sendBeacon` to `POST /v1/sites/{site_key}/observations`: one report
 * per consent state, no cookie values, no query strings, no visitor id. The
 * page's own host and the API's are left out. The server attributes each item
 * to the purpose declaring it (`cookies`, `hosts`); one seen while that purpose
 * was not allowed is a violation.
 */
import type { ConsentryInstance } from './types';
/** How long it observes after start and after each consent change, in milliseconds. */
export declare const WINDOW_MS = 3000;
/** How often cookies are read while observing, in milliseconds. */
export declare const POLL_MS = 200;
/** Starts the audit for `consent`; `base` is `{endpoint}/v1/sites/{site_key}`. Returns a function that stops it. */
export default function audit(consent: ConsentryInstance, base: string): () => void;
