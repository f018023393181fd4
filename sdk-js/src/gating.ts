/**
 * Script and iframe gating. Gated markup cannot run or load by itself:
 *   <script type="text/plain" data-consent="statistics" src="…">  (or inline)
 *   <iframe data-consent="social_media" data-src="…">
 * `data-consent` may name several purposes (space or comma separated); all must be allowed.
 * An allowed script is replaced by a real one (type from `data-type`, default classic)
 * carrying the nonce; an allowed iframe gets its `src`. Activation is one-way.
 */

/** Selector of gated elements still waiting for consent. */
export const GATED = 'script[type="text/plain"][data-consent],iframe[data-consent][data-src]';

/** Purposes named by a `data-consent` / `data-consent-grant` value. */
export const purposesOf = (v: string | null | undefined): string[] => (v || '').split(/[\s,]+/).filter(Boolean);

/** Activates every gated element under `root` whose purposes are all allowed. */
export function activate(root: ParentNode, allowed: (purpose: string) => boolean, nonce?: string): void {
  root.querySelectorAll<HTMLElement>(GATED).forEach((el) => {
    const ps = purposesOf(el.getAttribute('data-consent'));
    if (!ps.length || !ps.every(allowed)) return;
    const src = el.getAttribute('data-src');
    if (el.tagName == 'IFRAME') {
      el.removeAttribute('data-src');
      (el as HTMLIFrameElement).src = src!;
      return;
    }
    const s = el.ownerDocument.createElement('script');
    for (const a of Array.from(el.attributes))
      if (!/^(type|data-type|data-src|nonce)$/.test(a.name)) s.setAttribute(a.name, a.value);
    const type = el.getAttribute('data-type');
    if (type) s.type = type;
    if (src) s.src = src;
    // dynamically inserted scripts are async by default: keep document order unless async was asked
    if (!el.hasAttribute('async')) s.async = false;
    if (nonce) s.nonce = nonce;
    s.text = (el as HTMLScriptElement).text;
    el.replaceWith(s);
  });
}
