/**
 * Consentry headless core (ES module build `consentry.core.mjs`): everything
 * but the default UI and Google Consent Mode (`consentry.core-gcm.mjs` has it).
 * Pass your own {@link UiFactory} as the second argument of `init`, or drive
 * your own interface with `set`, `acceptAll`, `rejectAll`.
 */
export { init } from './core';
export type * from './types';
export type { Ui, UiFactory, UiHost } from './core';
