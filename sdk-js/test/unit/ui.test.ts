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
  // a browser moves focus on an unhandled Tab; emulate the next element in the layer
  if (k == 'Tab' && !e.defaultPrevented) {
    const all = Array.from(document.querySelectorAll<HTMLElement>('a[href],button,input:not([disabled])'));
    const i = all.indexOf(document.activeElement as HTMLElement);
    all[shift ? i - 1 : i + 1]?.focus();
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
    expect(b.getAttribute('role')).toBe('dialog');
    expect(b.getAttribute('aria-modal')).toBe('true');
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

  it('keyboard: Tab is trapped, Enter activates, Esc closes without saving', async () => {
    const api = fakeApi();
    await start();
    const [accept, reject, prefs] = buttonsOf(banner());
    const link = banner().querySelector('a')!;
    key('Tab');
    expect(document.activeElement).toBe(link);
    key('Tab');
    expect(document.activeElement).toBe(accept);
    key('Tab');
    key('Tab');
    expect(document.activeElement).toBe(prefs);
    key('Tab'); // wraps
    expect(document.activeElement).toBe(link);
    key('Tab', true); // and back
    expect(document.activeElement).toBe(prefs);
    expect(reject).toBeTruthy();
    key('Escape');
    expect(banner().hidden).toBe(true);
    await tick();
    expect(api.posts()).toHaveLength(0);
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

  it('Save: one change and one write of every switch, source preference_centre; both layers close', async () => {
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
    expect(api.posts()[0].body).toMatchObject({
      source: 'preference_centre',
      choices: { statistics: true, marketing: false, social_media: false, sale_sharing: true },
    });
    expect(api.posts()[0].body!.choices).not.toHaveProperty('necessary');
    expect(c.get('statistics')).toBe('granted');
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
