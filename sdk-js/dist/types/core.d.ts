/**
 * The headless core: state, reconciliation with the server, writes, gating,
 * cleanup of refused purposes' cookies, GPC, and the loader of the tracker audit.
 * The default UI is a separate module passed in as a factory, and Google Consent
 * Mode (`gcm.ts`) is passed in by the builds that have it (the default builds
 * and `consentry.core-gcm.mjs`), so the core build contains neither.
 */
import type { setupConsentMode } from './gcm';
import type { OptionCheck } from './options';
import type { ConsentryInstance, ConsentryOptions, SiteConfig, UiOptions } from './types';
/** What a UI gets from the core. */
export interface UiHost {
    instance: ConsentryInstance;
    config: SiteConfig;
    /** CSP nonce for the injected <style>. */
    nonce?: string;
    locale: string;
    options: UiOptions;
    /** Aborted by `destroy()`: remove listeners and elements then. */
    signal: AbortSignal;
}
/** A UI mounted by the core once the config is known. */
export interface Ui {
    /**
     * State or DOM changed: refresh placeholders and notices; `added`: only these
     * elements (and what they contain) were added to the page. Must not touch the DOM when nothing changed.
     */
    update(added?: Element[]): void;
    /** Shows or hides the banner. */
    banner(show: boolean): void;
    /** Opens the preference centre. */
    preferences(): void;
}
/** Creates a UI; see `ui.ts` for the default one. */
export type UiFactory = (host: UiHost) => Ui;
/**
 * Starts Consentry on this page. Synchronously: pushes the Consent Mode
 * default (when configured), reads the cookie and, when it was written for
 * this site key and region, activates what it allows. Then loads the site
 * config and the visitor's record from the server, reconciles (writes still
 * queued are applied on top), applies GPC, mounts the UI (when a factory is
 * given), shows the banner if consent is needed, emits `ready` and resolves.
 * When the config cannot be loaded it resolves with the cookie's state and
 * `config` null, and retries with backoff. Rejects (never throws) on a
 * startup error, e.g. when `siteKey` or `endpoint` is missing (`''` means this origin).
 */
export declare function init(o: ConsentryOptions, mountUi?: UiFactory): Promise<ConsentryInstance>;
/** Sets up Google Consent Mode for a mapping (`gcm.ts`). */
export type ConsentModeSetup = typeof setupConsentMode;
/**
 * `init` that first checks the options with `check` (the default builds; see `options.ts`)
 * and supports the `googleConsentMode` option with `gcmSetup` (without it that option is
 * reported as `invalid_option` and Consent Mode stays off).
 */
export declare const checked: (check?: OptionCheck, gcmSetup?: ConsentModeSetup) => (o: ConsentryOptions, mountUi?: UiFactory) => Promise<ConsentryInstance>;
