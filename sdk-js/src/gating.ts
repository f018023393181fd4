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
export const GATED = 'script[type="text/plain"][data-consent],iframe[data-consent][data-src]';

/** Purposes named by a `data-consent` / `data-consent-grant` value. */
export const purposesOf = (v: string | null | undefined): string[] => (v || '').match(/[^\s,]+/g) || [];

/** An element's CSP nonce: browsers hide the attribute's value once parsed, the property keeps it. */
export const nonceOf = (el: Element | null): string | null | undefined => (el as HTMLElement | null)?.nonce || el?.getAttribute('nonce');

/** `root` itself (when it matches) and its descendants matching `sel`, in document order. */
export const within = <T extends Element>(root: ParentNode, sel: string): T[] =>
  [root as T, ...root.querySelectorAll<T>(sel)].filter((e) => e.matches?.(sel));

/** The last external script activated in order that has not loaded yet; later inline scripts wait for it. */
let tail: HTMLScriptElement | null = null;

/** Elements other than gated ones shown only while their `data-consent` holds (fallback content). */
const SHOWN = '[data-consent*="!"]:not(script,iframe)';

/**
 * Activates every gated element in `root` (itself included) whose condition
 * holds, and shows or hides fallback content. `holds` answers for one entry
 * of `data-consent`: `purpose` (allowed) or `!purpose` (refused). `nonce`: the
 * page's CSP nonce, '' when there is none.
 */
export function activate(root: ParentNode, holds: (entry: string) => boolean, nonce: string): void {
  const ok = (el: Element) => {
    const ps = purposesOf(el.getAttribute('data-consent'));
    return ps.length && ps.every(holds);
  };
  within<HTMLElement>(root, SHOWN).forEach((el) => (el.hidden = !ok(el)));
  within<HTMLElement>(root, GATED).forEach((el) => {
    if (!ok(el)) return;
    const src = el.getAttribute('data-src');
    if (el.tagName == 'IFRAME') {
      return el.removeAttribute('data-src'), ((el as HTMLIFrameElement).src = src!);
    }
    // under a nonce CSP, a gated script must carry the nonce itself
    if (nonce && nonceOf(el) != nonce) return;
    const s = document.createElement('script');
    // all attributes but type and nonce; data-type and data-src become type and src
    for (const a of el.attributes) if (!/^(type|nonce)$/.test(a.name)) s.setAttribute(a.name.replace(/^data-(?=(type|src)$)/, ''), a.value);
    // ('' when there is none)
    s.nonce = nonce;
    s.text = (el as HTMLScriptElement).text;
    // no longer gated, even while it waits below
    el.removeAttribute('data-consent');
    const put = () => el.replaceWith(s);
    const after = (t: HTMLScriptElement, f: () => void) => {
      t.addEventListener('load', f);
      t.addEventListener('error', f);
    };
    if (s.hasAttribute('src')) {
      // dynamically inserted scripts are async by default: keep document order unless async was asked
      if (!el.hasAttribute('async')) {
        s.async = false;
        tail = s;
        after(s, () => tail == s && (tail = null));
      }
      put();
    } else if (tail?.isConnected) after(tail, put);
    else put();
  });
}
