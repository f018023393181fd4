/**
 * Script and iframe gating. Gated markup cannot run or load by itself:
 *   <script type="text/plain" data-consent="statistics" src="…">  (or inline)
 *   <iframe data-consent="social_media" data-src="…">
 * `data-consent` may name several purposes (space or comma separated); all must be allowed.
 * An allowed script is replaced by a real one (type from `data-type`, default classic)
 * carrying the nonce; an allowed iframe gets its `src`. Activation is one-way.
 */
/** Selector of gated elements still waiting for consent. */
export declare const GATED = "script[type=\"text/plain\"][data-consent],iframe[data-consent][data-src]";
/** Purposes named by a `data-consent` / `data-consent-grant` value. */
export declare const purposesOf: (v: string | null | undefined) => string[];
/** Activates every gated element under `root` whose purposes are all allowed. */
export declare function activate(root: ParentNode, allowed: (purpose: string) => boolean, nonce?: string): void;
