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
export const WINDOW_MS = 3000;
/** How often cookies are read while observing, in milliseconds. */
export const POLL_MS = 200;
/** The most items of a kind in one report (the server takes no more). */
const MAX = 100;

interface Report {
  allowed: string[];
  gpc: boolean;
  cookies: string[];
  hosts: string[];
}

/** Starts the audit for `consent`; `base` is `{endpoint}/v1/sites/{site_key}`. Returns a function that stops it. */
export default function audit(consent: ConsentryInstance, base: string): () => void {
  const d = document;
  const gpc = (navigator as { globalPrivacyControl?: boolean }).globalPrivacyControl === true;
  const own = [location.hostname, new URL(base, location.href).hostname];
  /** Reports being filled, by consent state. */
  let reports: Record<string, Report> = {};
  /** Observing until (epoch ms). */
  let until = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const send = () => {
    const list = Object.values(reports);
    reports = {};
    if (list.length)
      navigator.sendBeacon(base + '/observations', JSON.stringify({ page: location.pathname, reports: list.slice(-10) }));
  };
  /** Notes a cookie name or host under the consent state now. */
  const note = (kind: 'cookies' | 'hosts', item: string) => {
    if (Date.now() > until || !item || (kind == 'hosts' && own.includes(item))) return;
    const allowed = consent.snapshot().allowed;
    const r = (reports[allowed + ''] ||= { allowed, gpc, cookies: [], hosts: [] });
    if (!r[kind].includes(item) && r[kind].length < MAX) r[kind].push(item);
  };
  const host = (url: string | null | undefined) => {
    try {
      const u = new URL(url!, location.href);
      if (/^https?:$/.test(u.protocol)) note('hosts', u.hostname);
    } catch {
      // not a URL
    }
  };
  const cookies = () => {
    for (const c of d.cookie.split('; ')) note('cookies', c.split('=')[0]);
    if (Date.now() > until) send();
    else timer = setTimeout(cookies, POLL_MS);
  };
  /** Opens a window (at start and after a consent change). */
  const watch = () => {
    until = Date.now() + WINDOW_MS;
    clearTimeout(timer);
    cookies();
  };
  /** A script (not a gated one) or an iframe with a source. */
  const element = (n: Node) => {
    const e = n as HTMLScriptElement;
    if ((e.tagName == 'SCRIPT' && e.type != 'text/plain') || e.tagName == 'IFRAME') host(e.getAttribute('src'));
  };

  const po = new PerformanceObserver((l) => l.getEntries().map((e) => host(e.name)));
  const mo = new MutationObserver((records) =>
    records.map((r) => (r.type == 'attributes' ? element(r.target) : r.addedNodes.forEach((n) => (element(n), (n as Element).querySelectorAll?.('script,iframe').forEach(element))))),
  );
  watch();
  po.observe({ type: 'resource', buffered: true });
  mo.observe(d, { childList: true, subtree: true, attributes: true, attributeFilter: ['src'] });
  const off = consent.on('change', watch);
  const hidden = () => d.hidden && send();
  d.addEventListener('visibilitychange', hidden);
  return () => {
    po.disconnect();
    mo.disconnect();
    off();
    clearTimeout(timer);
    d.removeEventListener('visibilitychange', hidden);
  };
}
