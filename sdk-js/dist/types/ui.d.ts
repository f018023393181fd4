/**
 * The default UI: a banner (Accept all, Reject all and Preferences on the same
 * layer, equal prominence), a preference centre dialog with one switch per
 * purpose, and placeholders for gated iframes. Accessible: the banner is a
 * non-modal region (focus moved in, not trapped); the preference centre is a
 * modal dialog (aria-modal, focus trapped); Esc closes the layer holding the
 * focus without saving, and focus returns to what opened it; all usable by
 * keyboard. Texts come from the server config (purpose title and
 * description) and the locale. Built with DOM calls only: server texts are
 * never parsed as HTML, and no inline style is used (strict CSP).
 */
import type { UiFactory } from './core';
import type { UiLabels } from './types';
/** English texts, the fallback for every other locale. */
export declare const LABELS_EN: UiLabels;
/** Mounts the default UI; the core calls it once the config is known. */
export declare const mountUi: UiFactory;
