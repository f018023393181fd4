import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { init } from '../../src/index';
import type { ConsentryInstance } from '../../src/types';
import { ENDPOINT, fakeApi, purpose, resetPage, SITE, siteConfig, tick } from './helpers';

let inst: ConsentryInstance | undefined;
const start = async (extra = {}) => (inst = await init({ siteKey: SITE, endpoint: ENDPOINT, nonce: 'n1', ...extra }));
const $ = <T extends HTMLElement = HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const banner = () => $('.cy-banner');
const overlay = () => $('.cy-overlay');
const dialog = () => $('.cy-dialog');
const buttonsOf = (el: HTMLElement) => Array.from(el.querySelectorAll<HTMLButtonElement>('button'));
const byText = (el: HTMLElement, text: string) => buttonsOf(el).find((b) => b.textContent == text)!;
function key(k: string, shift = false) {
  const e = new KeyboardEvent('keydown', { key: k, shiftKey: shift, bubbles: true, cancelable: true });
  (document.activeElement || document.body).dispatchEvent(e);
  // a browser moves focus on an unhandled Tab: emulate it with the next shown focusable element in document order
  if (k == 'Tab' && !e.defaultPrevented) {
    const at = document.activeElement || document.body;
    const all = Array.from(document.querySelectorAll<HTMLElement>('a[href],button,input:not([disabled])')).filter((x) => !x.closest('[hidden]'));
    (shift ? all.filter((x) => at.compareDocumentPosition(x) & 2).pop() : all.find((x) => at.compareDocumentPosition(x) & 4))?.focus();
  }
}
const setGpc = (v: boolean | undefined) => Object.defineProperty(navigator, 'globalPrivacyControl', { value: v, configurable: true });

beforeEach(() => {
  resetPage();
  setGpc(undefined);
});
afterEach(() => {
  inst?.destroy();
  inst = undefined;
  setGpc(undefined);
});

describe('banner', () => {
  it('shows Accept all, Reject all and Preferences on one layer with equal prominence', async () => {
    fakeApi();
    await start();
    const b = banner();
    expect(b.hidden).toBe(false);
    // a non-modal region: the page stays usable
    expect(b.getAttribute('role')).toBe('region');
    expect(b.hasAttribute('aria-modal')).toBe(false);
    expect(document.getElementById(b.getAttribute('aria-labelledby')!)!.textContent).toBe('Your privacy choices');
    const btns = buttonsOf(b);
    expect(btns.map((x) => x.textContent)).toEqual(['Accept all', 'Reject all', 'Preferences']);
    expect(new Set(btns.map((x) => x.className))).toEqual(new Set(['cy-btn']));
    expect(b.querySelector('a')!.getAttribute('href')).toBe('https://shop.example.com/privacy');
    // focus moved in, not onto "Accept all"
    expect(document.activeElement).toBe(b);
  });

  it('is not shown when nothing needs consent', async () => {
    fakeApi({ config: siteConfig({ purposes: [purpose('necessary', 'notice_only'), purpose('sale_sharing', 'opt_out')] }) });
    await start();
    expect(banner().hidden).toBe(true);
  });

  it('Reject all: one write of explicit denials, source banner, and the banner closes', async () => {
    const api = fakeApi();
    const c = await start();
    let changes = 0;
    c.on('change', () => changes++);
    byText(banner(), 'Reject all').click();
    await tick();
    expect(banner().hidden).toBe(true);
    expect(changes).toBe(1);
    expect(api.posts()).toHaveLength(1);
    expect(api.posts()[0].body).toMatchObject({ source: 'banner', choices: { statistics: false, marketing: false, social_media: false, sale_sharing: false } });
  });

  it('keyboard: Tab moves through the banner and on to the page (no trap), Esc closes it only with focus inside', async () => {
    const api = fakeApi();
    document.body.insertAdjacentHTML('afterbegin', '<button id="page-first">page</button>');
    await start();
    document.body.insertAdjacentHTML('beforeend', '<button id="page-last">after</button>');
    const [accept, reject, prefs] = buttonsOf(banner());
    const link = banner().querySelector('a')!;
    key('Tab');
    expect(document.activeElement).toBe(link);
    key('Tab');
    expect(document.activeElement).toBe(accept);
    key('Tab');
    expect(document.activeElement).toBe(reject);
    key('Tab');
    expect(document.activeElement).toBe(prefs);
    key('Tab'); // not trapped: on to the page
    expect(document.activeElement).toBe($('#page-last'));
    // Esc with the focus on the page leaves the banner alone
    key('Escape');
    expect(banner().hidden).toBe(false);
    // Tab on the page is the page's business: not pulled into the banner
    $('#page-first').focus();
    const tab = new KeyboardEvent('keydown', { key: 'Tab', bubbles: true, cancelable: true });
    $('#page-first').dispatchEvent(tab);
    expect(tab.defaultPrevented).toBe(false);
    accept.focus();
    key('Escape');
    expect(banner().hidden).toBe(true);
    await tick();
    expect(api.posts()).toHaveLength(0);
  });

  it('after Accept all, focus returns to what had it before the banner', async () => {
    fakeApi();
    document.body.insertAdjacentHTML('afterbegin', '<input id="search">');
    $('#search').focus();
    await start();
    expect(document.activeElement).toBe(banner());
    byText(banner(), 'Accept all').click();
    expect(document.activeElement).toBe($('#search'));
  });

  it('uses the locale for its texts and the server for purpose texts', async () => {
    fakeApi();
    await start({ locale: 'de-DE' });
    expect(buttonsOf(banner()).map((x) => x.textContent)).toEqual(['Alle akzeptieren', 'Alle ablehnen', 'Einstellungen']);
    inst!.showPreferences();
    expect(dialog().textContent).toContain('About statistics');
  });

  it('injects its CSS with the nonce and needs no style attributes', async () => {
    fakeApi();
    await start();
    const style = document.querySelector('style')!;
    expect(style.getAttribute('nonce') || (style as HTMLStyleElement & { nonce?: string }).nonce).toBe('n1');
    expect(style.textContent).toContain('.cy-banner');
    inst!.showPreferences();
    expect(document.querySelectorAll('[style]')).toHaveLength(0);
  });

  it('ui: false mounts nothing', async () => {
    fakeApi();
    const c = await start({ ui: false });
    expect(document.querySelector('.cy-root')).toBeNull();
    expect(document.querySelector('style')).toBeNull();
    c.showPreferences();
    expect(document.querySelector('.cy-dialog')).toBeNull();
  });
});

describe('preference centre', () => {
  it('one switch per purpose; notice_only locked on; Esc closes without saving and returns focus', async () => {
    const api = fakeApi();
    await start();
    const prefs = byText(banner(), 'Preferences');
    prefs.focus();
    prefs.click();
    expect(overlay().hidden).toBe(false);
    expect(dialog().getAttribute('role')).toBe('dialog');
    expect(dialog().getAttribute('aria-modal')).toBe('true');
    expect(document.activeElement).toBe(dialog());
    const inputs = Array.from(dialog().querySelectorAll<HTMLInputElement>('input[role="switch"]'));
    expect(inputs).toHaveLength(5);
    const necessary = inputs[0];
    expect(necessary.checked && necessary.disabled).toBe(true);
    expect(dialog().textContent).toContain('Always active');
    expect(inputs[1].checked).toBe(false); // opt_in undecided
    expect(inputs[4].checked).toBe(true); // opt_out undecided
    // labels and descriptions are wired
    expect(document.querySelector(`label[for="${inputs[1].id}"]`)!.textContent).toBe('Statistics');
    expect(document.getElementById(inputs[1].getAttribute('aria-describedby')!)!.textContent).toBe('About statistics');

    inputs[1].click();
    key('Escape');
    expect(overlay().hidden).toBe(true);
    expect(banner().hidden).toBe(false);
    expect(document.activeElement).toBe(prefs);
    await tick();
    expect(api.posts()).toHaveLength(0);
    // reopening shows the saved state, not the discarded toggle
    prefs.click();
    expect(dialog().querySelectorAll<HTMLInputElement>('input')[1].checked).toBe(false);
  });

  it('focus is trapped in the dialog', async () => {
    fakeApi();
    await start();
    inst!.showPreferences();
    const focusables = Array.from(dialog().querySelectorAll<HTMLElement>('button,input:not([disabled])'));
    focusables[focusables.length - 1].focus();
    key('Tab');
    expect(document.activeElement).toBe(focusables[0]);
    key('Tab', true);
    expect(document.activeElement).toBe(focusables[focusables.length - 1]);
  });

  it('focus outside the open dialog is pulled back in by Tab; Esc there does not close it', async () => {
    fakeApi();
    document.body.insertAdjacentHTML('afterbegin', '<button id="outside">outside</button>');
    await start();
    inst!.showPreferences();
    const focusables = Array.from(dialog().querySelectorAll<HTMLElement>('button,input:not([disabled])'));
    $('#outside').focus();
    key('Escape');
    expect(overlay().hidden).toBe(false);
    key('Tab');
    expect(document.activeElement).toBe(focusables[0]);
    $('#outside').focus();
    key('Tab', true);
    expect(document.activeElement).toBe(focusables[focusables.length - 1]);
  });

  it('Save: focus returns to the link that opened the preference centre', async () => {
    fakeApi({ config: siteConfig({ purposes: [purpose('necessary', 'notice_only'), purpose('sale_sharing', 'opt_out')] }) });
    await start();
    document.body.insertAdjacentHTML('beforeend', '<a href="#" id="pc" data-consentry-preferences>Privacy choices</a>');
    $('#pc').focus();
    $('#pc').click();
    expect(document.activeElement).toBe(dialog());
    byText(dialog(), 'Save choices').click();
    expect(overlay().hidden).toBe(true);
    expect(document.activeElement).toBe($('#pc'));
  });

  it('Esc from the preference centre: focus goes back to its opener, or to the first banner button when that is gone', async () => {
    fakeApi();
    await start();
    document.body.insertAdjacentHTML('afterbegin', '<button id="opener">open</button>');
    $('#opener').focus();
    inst!.showPreferences();
    key('Escape');
    expect(document.activeElement).toBe($('#opener'));
    inst!.showPreferences();
    $('#opener').remove();
    key('Escape');
    expect(document.activeElement).toBe(buttonsOf(banner())[0]);
  });

  it('the lock text ("Always active", GPC) describes its switch', async () => {
    setGpc(true);
    fakeApi();
    await start();
    inst!.showPreferences();
    const inputs = dialog().querySelectorAll<HTMLInputElement>('input');
    const described = (i: HTMLInputElement) => i.getAttribute('aria-describedby')!.split(' ').map((id) => document.getElementById(id)!.textContent);
    expect(described(inputs[0])).toEqual(['About necessary', 'Always active']);
    expect(described(inputs[4])).toEqual(['About sale_sharing', 'Opt-Out Request Honored']);
    expect(described(inputs[1])).toEqual(['About statistics']);
  });

  it('long unbroken words wrap, so the switches stay visible', async () => {
    fakeApi();
    await start();
    expect(document.querySelector('style')!.textContent).toMatch(/\.cy-banner,\.cy-dialog,\.cy-ph\{[^}]*overflow-wrap:anywhere/);
    expect(document.querySelector('style')!.textContent).toContain('.cy-dialog label span{min-width:0}');
  });

  it('purpose titles are text, never HTML, and `$&` in them stays literal', async () => {
    const evil = '<img src=x onerror="window.pwned=1">$&$1';
    fakeApi({ config: siteConfig({ purposes: [purpose('social_media', 'opt_in', { title: evil, description: '<b>d</b>' })] }) });
    document.body.insertAdjacentHTML('beforeend', '<iframe data-consent="social_media" data-src="https://video.example.com/e"></iframe>');
    await start();
    inst!.showPreferences();
    expect(document.querySelectorAll('img,b')).toHaveLength(0);
    expect(dialog().querySelector('label')!.textContent).toBe(evil);
    expect(dialog().textContent).toContain('<b>d</b>');
    const ph = $('.cy-ph');
    expect(ph.querySelector('p')!.textContent).toBe(`This content is blocked until you allow: ${evil}.`);
    expect(ph.querySelector('button')!.textContent).toBe(`Allow: ${evil}`);
  });

  it('Save: one change and one write of what was changed and of undecided opt_in purposes, source preference_centre; both layers close', async () => {
    const api = fakeApi();
    const c = await start();
    let changes = 0;
    c.on('change', () => changes++);
    byText(banner(), 'Preferences').click();
    const inputs = dialog().querySelectorAll<HTMLInputElement>('input');
    inputs[1].click(); // statistics on
    byText(dialog(), 'Save choices').click();
    await tick();
    expect(overlay().hidden && banner().hidden).toBe(true);
    expect(changes).toBe(1);
    expect(api.posts()).toHaveLength(1);
    // never a grant of the opt_out purpose nobody touched, never notice_only
    expect(api.posts()[0].body).toMatchObject({ source: 'preference_centre' });
    expect(api.posts()[0].body!.choices).toEqual({ statistics: true, marketing: false, social_media: false });
    expect(c.get('statistics')).toBe('granted');
    expect(c.get('sale_sharing')).toBe('undecided');
  });

  it('Save after reopening: only the switches the visitor changed', async () => {
    const api = fakeApi();
    const c = await start();
    await c.set({ statistics: true, marketing: false, social_media: false });
    c.showPreferences();
    const inputs = dialog().querySelectorAll<HTMLInputElement>('input');
    inputs[4].click(); // sale_sharing off: a decision
    byText(dialog(), 'Save choices').click();
    await tick();
    expect(api.posts()[1].body!.choices).toEqual({ sale_sharing: false });
    // nothing changed: nothing written
    c.showPreferences();
    byText(dialog(), 'Save choices').click();
    await tick();
    expect(api.posts()).toHaveLength(2);
  });

  it('a [data-consentry-preferences] link opens it', async () => {
    fakeApi();
    await start();
    document.body.insertAdjacentHTML('beforeend', '<a href="#" data-consentry-preferences>Privacy choices</a>');
    $('[data-consentry-preferences]').click();
    expect(overlay().hidden).toBe(false);
  });
});

describe('GPC in the UI', () => {
  it('shows "Opt-Out Request Honored" and locks the GPC purpose off; other purposes stay open', async () => {
    setGpc(true);
    const api = fakeApi();
    await start();
    const note = banner().querySelector<HTMLElement>('.cy-gpc')!;
    expect(note.hidden).toBe(false);
    expect(note.textContent).toContain('Opt-Out Request Honored');
    inst!.showPreferences();
    const inputs = dialog().querySelectorAll<HTMLInputElement>('input');
    expect(inputs[4].checked).toBe(false);
    expect(inputs[4].disabled).toBe(true);
    expect(inputs[1].disabled).toBe(false);
    byText(dialog(), 'Accept all').click();
    await tick();
    expect(api.posts()[1].body).toMatchObject({ source: 'preference_centre', gpc: true, choices: { statistics: true, marketing: true, social_media: true } });
  });

  it('is hidden without the signal', async () => {
    fakeApi();
    await start();
    expect(banner().querySelector<HTMLElement>('.cy-gpc')!.hidden).toBe(true);
  });
});

describe('iframe placeholders', () => {
  it('under GPC, a GPC-denied purpose says the opt-out is honoured instead of offering Allow', async () => {
    setGpc(true);
    document.body.insertAdjacentHTML(
      'beforeend',
      '<iframe data-consent="sale_sharing" data-src="https://ads.example.com/e"></iframe><iframe data-consent="social_media" data-src="https://video.example.com/e"></iframe>',
    );
    fakeApi();
    await start();
    const [gpcPh, other] = Array.from(document.querySelectorAll<HTMLElement>('.cy-ph'));
    expect(gpcPh.querySelector('button')).toBeNull();
    expect(gpcPh.textContent).toContain('Opt-Out Request Honored');
    expect(other.querySelector('button')!.textContent).toBe('Allow: Social media');
  });

  it('a placeholder appears for an iframe added later', async () => {
    fakeApi();
    await start();
    const div = document.createElement('div');
    div.innerHTML = '<iframe data-consent="social_media" data-src="https://video.example.com/e"></iframe>';
    document.body.append(div);
    await tick();
    expect(div.querySelector('.cy-ph')).not.toBeNull();
  });

  it('replace a blocked iframe and grant in place with source placeholder', async () => {
    document.body.insertAdjacentHTML('beforeend', '<iframe data-consent="social_media" data-src="https://video.example.com/e"></iframe>');
    const api = fakeApi();
    await start();
    const iframe = $('iframe');
    const ph = $('.cy-ph');
    expect(iframe.classList.contains('cy-blocked')).toBe(true);
    expect(ph.textContent).toContain('Social media');
    ph.querySelector('button')!.click();
    await tick();
    expect(api.posts()[0].body).toMatchObject({ source: 'placeholder', choices: { social_media: true } });
    expect(iframe.getAttribute('src')).toBe('https://video.example.com/e');
    expect(iframe.classList.contains('cy-blocked')).toBe(false);
    expect(document.querySelector('.cy-ph')).toBeNull();
  });
});
