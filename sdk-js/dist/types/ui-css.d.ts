/**
 * Stylesheet of the default UI, injected as a <style> element carrying the
 * CSP nonce (no style attributes anywhere). Equal prominence: the banner's
 * three buttons share one class. Colours can be overridden with the
 * --cy-fg, --cy-bg, --cy-accent custom properties on :root.
 */
export declare const CSS: string;
