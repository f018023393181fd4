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
import type { Ui, UiFactory } from './core';
import { purposesOf, within } from './gating';
import type { UiLabels } from './types';
import { CSS } from './ui-css';

/** English texts, the fallback for every other locale. */
export const LABELS_EN: UiLabels = {
  title: 'Your privacy choices',
  body: 'We use cookies and similar technologies for the purposes described in the preferences. You can accept all, reject all, or choose, and change your mind at any time.',
  policy: 'Privacy policy',
  acceptAll: 'Accept all',
  rejectAll: 'Reject all',
  preferences: 'Preferences',
  prefsTitle: 'Privacy preferences',
  save: 'Save choices',
  close: 'Close',
  alwaysOn: 'Always active',
  // wording of 11 CCR §7025(c)(6)
  gpcTitle: 'Opt-Out Request Honored',
  gpcBody: 'Your browser sent a Global Privacy Control signal, so we do not sell or share your personal information.',
  blocked: 'This content is blocked until you allow: {purpose}.',
  allow: 'Allow: {purpose}',
};

const LOCALES: Record<string, Partial<UiLabels>> = {
  de: {
    title: 'Ihre Datenschutz-Einstellungen',
    body: 'Wir verwenden Cookies und ähnliche Technologien für die in den Einstellungen beschriebenen Zwecke. Sie können alle akzeptieren, alle ablehnen oder auswählen und Ihre Wahl jederzeit ändern.',
    policy: 'Datenschutzerklärung',
    acceptAll: 'Alle akzeptieren',
    rejectAll: 'Alle ablehnen',
    preferences: 'Einstellungen',
    prefsTitle: 'Datenschutz-Einstellungen',
    save: 'Auswahl speichern',
    close: 'Schließen',
    alwaysOn: 'Immer aktiv',
    gpcBody: 'Ihr Browser hat ein Global-Privacy-Control-Signal gesendet: Wir verkaufen und teilen Ihre personenbezogenen Daten nicht.',
    blocked: 'Dieser Inhalt ist blockiert, bis Sie zustimmen: {purpose}.',
    allow: 'Erlauben: {purpose}',
  },
  fr: {
    title: 'Vos choix de confidentialité',
    body: 'Nous utilisons des cookies et des technologies similaires pour les finalités décrites dans les préférences. Vous pouvez tout accepter, tout refuser ou choisir, et changer d’avis à tout moment.',
    policy: 'Politique de confidentialité',
    acceptAll: 'Tout accepter',
    rejectAll: 'Tout refuser',
    preferences: 'Préférences',
    prefsTitle: 'Préférences de confidentialité',
    save: 'Enregistrer mes choix',
    close: 'Fermer',
    alwaysOn: 'Toujours actif',
    gpcBody: 'Votre navigateur a envoyé un signal Global Privacy Control : nous ne vendons ni ne partageons vos données personnelles.',
    blocked: 'Ce contenu est bloqué tant que vous n’autorisez pas : {purpose}.',
    allow: 'Autoriser : {purpose}',
  },
  es: {
    title: 'Sus opciones de privacidad',
    body: 'Usamos cookies y tecnologías similares para los fines descritos en las preferencias. Puede aceptar todo, rechazar todo o elegir, y cambiar de opinión en cualquier momento.',
    policy: 'Política de privacidad',
    acceptAll: 'Aceptar todo',
    rejectAll: 'Rechazar todo',
    preferences: 'Preferencias',
    prefsTitle: 'Preferencias de privacidad',
    save: 'Guardar selección',
    close: 'Cerrar',
    alwaysOn: 'Siempre activo',
    gpcBody: 'Su navegador envió una señal Global Privacy Control: no vendemos ni compartimos su información personal.',
    blocked: 'Este contenido está bloqueado hasta que permita: {purpose}.',
    allow: 'Permitir: {purpose}',
  },
};

/** Mounts the default UI; the core calls it once the config is known. */
export const mountUi: UiFactory = ({ instance: c, config, nonce, locale, options, signal }) => {
  const d = document;
  const L: UiLabels = { ...LABELS_EN, ...LOCALES[locale.toLowerCase().split('-')[0]], ...options.labels };
  const h = (tag: string, attrs: Record<string, string>, ...kids: (Node | string)[]) => {
    const e = d.createElement(tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    e.append(...kids);
    return e;
  };
  const btn = (label: string, action: string, cls = 'cy-btn') => h('button', { type: 'button', class: cls, 'data-cy': action }, label);
  const gpcNote = () => h('p', { class: 'cy-gpc', role: 'status', hidden: '' }, h('strong', {}, L.gpcTitle), ' ', L.gpcBody);
  const titles = (keys: string[]) => keys.map((k) => (config.purposes.find((p) => p.key == k) || { title: k }).title).join(', ');
  const policy = config.policies.find((p) => p.policy_key == 'privacy') || config.policies[0];

  const banner = h(
    'div',
    { class: 'cy-banner', role: 'region', 'aria-labelledby': 'cy-bt', 'aria-describedby': 'cy-bd', tabindex: '-1', hidden: '' },
    h('h2', { id: 'cy-bt' }, L.title),
    h('p', { id: 'cy-bd' }, L.body, ...(policy && /^https?:/i.test(policy.url) ? [' ', h('a', { href: policy.url, target: '_blank', rel: 'noopener' }, L.policy)] : [])),
    gpcNote(),
    h('div', { class: 'cy-row' }, btn(L.acceptAll, 'accept'), btn(L.rejectAll, 'reject'), btn(L.preferences, 'prefs')),
  );
  const inputs: Record<string, HTMLInputElement> = {};
  const locks: Record<string, HTMLElement> = {};
  /** Switch positions when the preference centre opened. */
  const start: Record<string, boolean> = {};
  const dialog = h(
    'div',
    { class: 'cy-dialog', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'cy-pt', tabindex: '-1' },
    h('h2', { id: 'cy-pt' }, L.prefsTitle),
    gpcNote(),
    h(
      'ul',
      {},
      ...config.purposes.map((p, i) => {
        const id = 'cy-p' + i;
        inputs[p.key] = h('input', { type: 'checkbox', role: 'switch', id }) as HTMLInputElement;
        return h(
          'li',
          {},
          h('label', { for: id }, h('span', {}, p.title), inputs[p.key]),
          h('p', { id: id + 'd' }, p.description),
          (locks[p.key] = h('p', { class: 'cy-lock', id: id + 'l', hidden: '' })),
        );
      }),
    ),
    h('div', { class: 'cy-row' }, btn(L.acceptAll, 'all'), btn(L.rejectAll, 'none'), btn(L.save, 'save')),
    btn('×', 'close', 'cy-x'),
  );
  dialog.lastElementChild!.setAttribute('aria-label', L.close);
  const overlay = h('div', { class: 'cy-overlay', hidden: '' }, dialog);
  const root = h('div', { class: 'cy-root', lang: locale }, banner, overlay);
  const style = h('style', {}, CSS) as HTMLStyleElement;
  if (nonce) style.nonce = nonce;
  d.head.append(style);
  (d.body || d.documentElement).append(root);
  signal.addEventListener('abort', () => {
    root.remove();
    style.remove();
    placeholders.forEach((ph, f) => (f.classList.remove('cy-blocked'), ph.remove()));
  });

  let layer: HTMLElement | null = null;
  let back: HTMLElement | null = null; // focus before the banner
  let prefsBack: HTMLElement | null = null; // focus before the preference centre
  /** Focuses the first of `els` still shown on the page (none: focus stays where the browser puts it). */
  const refocus = (...els: (Element | null)[]) => {
    for (const el of els)
      if (el && el.isConnected && el != d.body && !el.closest('[hidden]')) return (el as HTMLElement).focus();
  };
  const open = (el: HTMLElement) => {
    layer = el;
    el.focus();
  };
  const closePrefs = () => {
    overlay.hidden = true;
    layer = banner.hidden ? null : banner;
    refocus(prefsBack, banner.hidden ? null : banner.querySelector('button'), back);
    prefsBack = null;
  };
  const done = () => {
    overlay.hidden = banner.hidden = true;
    layer = null;
    refocus(prefsBack, back);
    prefsBack = null;
  };

  root.addEventListener('click', (e) => {
    const a = (e.target as Element).closest('[data-cy]');
    const act = a && a.getAttribute('data-cy');
    if (act == 'prefs') return ui.preferences();
    if (act == 'close') return closePrefs();
    const src = banner.contains(a) ? 'banner' : 'preference_centre';
    if (act == 'accept' || act == 'all') done(), c.acceptAll(src);
    if (act == 'reject' || act == 'none') done(), c.rejectAll(src);
    if (act == 'save') {
      // only what the visitor changed, and explicit answers for undecided opt_in purposes:
      // never a grant of an opt_out purpose nobody touched
      const choices: Record<string, boolean> = {};
      for (const p of config.purposes) {
        const i = inputs[p.key];
        if (!i.disabled && (i.checked != start[p.key] || (p.consent_model == 'opt_in' && c.get(p.key) == 'undecided')))
          choices[p.key] = i.checked;
      }
      done();
      c.set(choices, 'preference_centre');
    }
  });
  d.addEventListener(
    'keydown',
    (e) => {
      if (!layer) return;
      // Esc only where the focus is; Tab is kept inside the modal preference centre only
      if (e.key == 'Escape' && layer.contains(d.activeElement)) {
        e.preventDefault();
        if (layer == dialog) closePrefs();
        else done();
      } else if (e.key == 'Tab' && layer == dialog) {
        const f = Array.from(layer.querySelectorAll<HTMLElement>('a[href],button,input:not([disabled])'));
        const at = d.activeElement;
        const edge = e.shiftKey ? f[0] : f[f.length - 1];
        if (at == layer || at == edge || !layer.contains(at)) {
          e.preventDefault();
          (e.shiftKey ? f[f.length - 1] : f[0]).focus();
        }
      }
    },
    { capture: true, signal },
  );

  const placeholders = new Map<Element, Element>();
  const ui: Ui = {
    update(added) {
      const s = c.snapshot();
      root.querySelectorAll<HTMLElement>('.cy-gpc').forEach((n) => (n.hidden = !s.gpc));
      for (const n of added || [d])
        within(n, 'iframe[data-consent][data-src]:not([data-consent*="!"])').forEach((f) => {
          if (placeholders.has(f)) return;
          const ps = purposesOf(f.getAttribute('data-consent'));
          const t = titles(ps);
          // a purpose denied by GPC cannot be allowed here: say the opt-out is honoured instead
          const gpcDenied = ps.some((k) => s.gpc && s.purposes[k] == 'denied' && config.purposes.some((p) => p.key == k && p.gpc_applies));
          const ph = h(
            'div',
            { class: 'cy-ph' },
            // a function, so that `$&` and the like in a title stay literal
            h('p', {}, L.blocked.replace('{purpose}', () => t)),
            gpcDenied
              ? h('p', { class: 'cy-gpc' }, h('strong', {}, L.gpcTitle), ' ', L.gpcBody)
              : h('button', { type: 'button', class: 'cy-btn', 'data-consent-grant': ps.join(' ') }, L.allow.replace('{purpose}', () => t)),
          );
          f.classList.add('cy-blocked');
          f.before(ph);
          placeholders.set(f, ph);
        });
      placeholders.forEach((ph, f) => {
        if (f.isConnected && f.hasAttribute('data-src')) return;
        f.classList.remove('cy-blocked');
        ph.remove();
        placeholders.delete(f);
      });
    },
    banner(show) {
      if (show && banner.hidden) back = d.activeElement as HTMLElement;
      banner.hidden = !show;
      if (show) open(banner);
      else if (layer == banner) done();
    },
    preferences() {
      const s = c.snapshot();
      for (const p of config.purposes) {
        const i = inputs[p.key];
        const lock = p.consent_model == 'notice_only' ? L.alwaysOn : s.gpc && p.gpc_applies ? L.gpcTitle : '';
        i.checked = start[p.key] = s.allowed.includes(p.key);
        i.disabled = !!lock;
        locks[p.key].textContent = lock;
        locks[p.key].hidden = !lock;
        // the lock text describes its switch (only while shown)
        i.setAttribute('aria-describedby', i.id + 'd' + (lock ? ' ' + i.id + 'l' : ''));
      }
      if (overlay.hidden) prefsBack = d.activeElement as HTMLElement;
      overlay.hidden = false;
      open(dialog);
    },
  };
  return ui;
};
