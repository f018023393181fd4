/**
 * Google Consent Mode v2. Only used when a mapping is configured: then
 * `window.dataLayer` and `gtag` are defined, a `default` (all mapped types
 * denied, wait_for_update 500 ms) is pushed synchronously at init, and an
 * `update` precedes every `consentry_consent_changed` dataLayer event.
 */
import type { GoogleConsentModeMapping } from './types';
/** Name of the dataLayer event pushed after each consent update. */
export declare const DATA_LAYER_EVENT = "consentry_consent_changed";
/**
 * Consent Mode for one mapping: pushes `update` (skipped when `onlyIfChanged`
 * and equal to the last one), then our event; `allowed` says whether a purpose may be used.
 */
export type ConsentMode = (allowed: (purpose: string) => boolean, detail?: object, onlyIfChanged?: boolean) => void;
/** Defines dataLayer/gtag if needed and pushes the `default` command at once. */
export declare function setupConsentMode(w: Window, map: GoogleConsentModeMapping): ConsentMode;
