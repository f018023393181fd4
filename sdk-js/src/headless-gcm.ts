/**
 * The headless core with Google Consent Mode v2 (ES module build
 * `consentry.core-gcm.mjs`, import `consentry/core-gcm`): `consentry.core.mjs`
 * plus the `googleConsentMode` option.
 */
import { checked } from './core';
import { setupConsentMode } from './gcm';

export type * from './types';
export type { Ui, UiFactory, UiHost } from './core';

/** The core's `init` with the `googleConsentMode` option (options are not checked further). */
export const init = checked(undefined, setupConsentMode);
