/**
 * Script-tag build (`consentry.js`): defines `window.Consentry` and starts
 * itself from its own tag's data attributes:
 *
 *   <script src="/sdk/consentry.js" data-site-key="sk_…" data-endpoint="https://consent.example.com"
 *     data-region="US-CA" data-locale="en" data-cookie-domain="example.com" data-ui="false"
 *     data-visitor-id="<uuid the site's backend knows>"
 *     data-google-consent-mode='{"analytics_storage":"statistics"}'></script>
 *
 * The running instance is `Consentry.instance` (a promise); `consentry:ready`,
 * `consentry:change` and `consentry:saved` DOM events fire on `document`.
 */
import { init } from './index';
import type { ConsentryInstance } from './types';

/** Shape of `window.Consentry`. */
export interface ConsentryGlobal {
  init: typeof init;
  /** The instance started from the script tag's data attributes, if any. */
  instance?: Promise<ConsentryInstance>;
}

declare global {
  interface Window {
    Consentry: ConsentryGlobal;
  }
}

const tag = document.currentScript as HTMLScriptElement | null;
const a = (tag && tag.dataset) || {};
const api: ConsentryGlobal = (window.Consentry = { init });
let googleConsentMode;
try {
  googleConsentMode = a.googleConsentMode ? JSON.parse(a.googleConsentMode) : undefined;
} catch (e) {
  // eslint-disable-next-line no-console
  console.error('consentry: data-google-consent-mode is not valid JSON; Google Consent Mode stays off', e);
}
if (a.siteKey && a.endpoint != null)
  api.instance = init({
    siteKey: a.siteKey,
    endpoint: a.endpoint,
    region: a.region,
    locale: a.locale,
    cookieDomain: a.cookieDomain,
    visitorId: a.visitorId,
    ui: a.ui != 'false',
    googleConsentMode,
  });
