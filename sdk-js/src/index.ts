/**
 * Consentry browser SDK with the default UI (ES module build `consentry.mjs`).
 *
 *   import { init } from 'consentry';
 *   const consent = await init({ siteKey: 'sk_…', endpoint: 'https://consent.example.com' });
 *   consent.on('change', (e) => console.log(e.purposes));
 */
import { checked } from './core';
import { setupConsentMode } from './gcm';
import { checkOptions } from './options';
import type { ConsentryInstance, ConsentryOptions } from './types';
import { mountUi } from './ui';

export type * from './types';
export type { Ui, UiFactory, UiHost } from './core';

/**
 * Starts Consentry with the default UI, or headless with `ui: false`.
 * See the core's `init` for the sequence; resolves once `ready` fired.
 */
export function init(options: ConsentryOptions): Promise<ConsentryInstance> {
  return initCore(options, options && options.ui === false ? undefined : mountUi);
}

/** The core's `init`, checking the options first, with Google Consent Mode. */
const initCore = checked(checkOptions, setupConsentMode);
