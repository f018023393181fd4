/**
 * Stylesheet of the default UI, injected as a <style> element carrying the
 * CSP nonce (no style attributes anywhere). Equal prominence: the banner's
 * three buttons share one class. Colours can be overridden with the
 * --cy-fg, --cy-bg, --cy-accent custom properties on :root.
 */
export const CSS =
  '.cy-banner,.cy-dialog,.cy-ph{font:14px/1.5 system-ui,sans-serif;color:var(--cy-fg,#1a1a1a);background:var(--cy-bg,#fff);box-sizing:border-box;overflow-wrap:anywhere}' +
  '.cy-banner{position:fixed;z-index:2147483646;left:1rem;right:1rem;bottom:1rem;max-width:44rem;margin:auto;padding:1.25rem;border-radius:.5rem;box-shadow:0 4px 24px rgba(0,0,0,.3)}' +
  '.cy-overlay{position:fixed;z-index:2147483647;inset:0;background:rgba(0,0,0,.5);display:flex;align-items:center;justify-content:center;padding:1rem}' +
  '.cy-banner[hidden],.cy-overlay[hidden],.cy-blocked{display:none!important}' +
  '.cy-dialog{position:relative;width:100%;max-width:36rem;max-height:100%;overflow:auto;padding:1.5rem;border-radius:.5rem}' +
  '.cy-banner h2,.cy-dialog h2{margin:0 0 .5rem;font-size:1.125rem}' +
  '.cy-banner p,.cy-dialog p{margin:.25rem 0}' +
  '.cy-row{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:1rem}' +
  '.cy-btn{flex:1 1 9rem;font:inherit;font-weight:600;padding:.6rem 1rem;border:2px solid var(--cy-fg,#1a1a1a);border-radius:.375rem;background:var(--cy-fg,#1a1a1a);color:var(--cy-bg,#fff);cursor:pointer}' +
  '.cy-btn:hover{opacity:.85}' +
  '.cy-root :focus-visible,.cy-ph :focus-visible{outline:3px solid var(--cy-accent,#0a66c2);outline-offset:2px}' +
  '.cy-banner:focus,.cy-dialog:focus{outline:0}' +
  '.cy-dialog ul{list-style:none;margin:1rem 0 0;padding:0}' +
  '.cy-dialog li{padding:.75rem 0;border-top:1px solid #ddd}' +
  '.cy-dialog label{display:flex;justify-content:space-between;align-items:center;gap:1rem;font-weight:600}' +
  '.cy-dialog label span{min-width:0}' +
  '.cy-dialog input{appearance:none;flex:none;position:relative;width:2.5rem;height:1.4rem;margin:0;border-radius:1rem;background:#8a8a8a;cursor:pointer}' +
  '.cy-dialog input:before{content:"";position:absolute;top:.2rem;left:.2rem;width:1rem;height:1rem;border-radius:50%;background:#fff;transition:left .15s}' +
  '.cy-dialog input:checked{background:var(--cy-accent,#1a7f37)}' +
  '.cy-dialog input:checked:before{left:1.3rem}' +
  '.cy-dialog input:disabled{opacity:.6;cursor:not-allowed}' +
  '.cy-lock{font-size:.85em;opacity:.8}' +
  '.cy-gpc{padding:.5rem .75rem;border-left:4px solid #1a7f37;background:#eef7f0;color:#1a1a1a}' +
  '.cy-x{position:absolute;top:.5rem;right:.5rem;border:0;background:none;color:inherit;font-size:1.5rem;line-height:1;padding:.25rem .5rem;cursor:pointer}' +
  '.cy-ph{display:flex;flex-direction:column;align-items:center;justify-content:center;gap:.5rem;padding:1.5rem;border:1px dashed #8a8a8a;text-align:center}' +
  '.cy-ph .cy-btn{flex:none}';
