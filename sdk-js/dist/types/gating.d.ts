/**
 * Script and iframe gating. Gated markup cannot run or load by itself:
 *   <script type="text/plain" data-consent="statistics" src="…">  (or inline)
 *   <iframe data-consent="social_media" data-src="…">
 * `data-consent` may name several purposes (space or comma separated); all must be allowed.
 * A purpose written `!purpose` must be refused instead (denied: by the visitor or GPC), which
 * gives fallbacks: `<script type="text/plain" data-consent="!statistics">` runs, at most once
 * per page, when statistics is refused; any other element whose `data-consent` has a `!`
 * (`<p data-consent="!social_media" hidden>`) is shown while its condition holds, hidden otherwise.
 * An allowed script is replaced by a real one (type from `data-type`, default classic)
 * carrying the nonce; an allowed iframe gets its `src`. Activation is one-way.
 * With a nonce in use, only gated scripts carrying that same nonce are activated:
 * markup injected into the page cannot borrow the page's nonce through the SDK.
 * Activated scripts run in document order: external ones are not async (unless
 * the original had `async`), and an inline one waits until the external one
 * activated before it has loaded.
 */
/** Selector of gated elements still waiting for consent. */
export declare const GATED = "script[type=\"text/plain\"][data-consent],iframe[data-consent][data-src]";
/** Purposes named by a `data-consent` / `data-consent-grant` value. */
export declare const purposesOf: (v: string | null | undefined) => string[];
/** An element's CSP nonce: browsers hide the attribute's value once parsed, the property keeps it. */
export declare const nonceOf: (el: Element | null) => string | null | undefined;
/** `root` itself (when it matches) and its descendants matching `sel`, in document order. */
export declare const within: <T extends Element>(root: ParentNode, sel: string) => T[];
/**
 * Activates every gated element in `root` (itself included) whose condition
 * holds, and shows or hides fallback content. `holds` answers for one entry
 * of `data-consent`: `purpose` (allowed) or `!purpose` (refused). `nonce`: the
 * page's CSP nonce, '' when there is none.
 */
export declare function activate(root: ParentNode, holds: (entry: string) => boolean, nonce: string): void;
