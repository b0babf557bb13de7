// Pages about access rather than the map: `deniedView`, shown by the router instead of a page the
// signed-in role may not use (the page itself is never loaded), and `homeView` (#/home), the
// landing page of roles without a map page (安全管理员, 审计管理员): what they can do, through the
// API or the command line.
import { applyI18n, onLangChange, t, tb, tf } from '../i18n.js';
import { can, current, displayName, landing, roleLabel } from '../session.js';

// What the roles without a map page do, by permission: the API routes and the CLI.
const WORK = [
  { perm: 'accounts', key: 'home.accounts', routes: ['GET /api/admin/users', 'POST /api/admin/users', 'PATCH /api/admin/users/{name}', 'GET /api/admin/tokens', 'POST /api/admin/tokens', 'DELETE /api/admin/tokens/{id}'], cli: 'onemap user … / onemap token …' },
  { perm: 'audit', key: 'home.audit', routes: ['GET /api/audit', 'GET /api/audit.csv'], cli: null },
];

function page(root, build) {
  const el = document.createElement('div');
  el.className = 'access';
  const box = document.createElement('section');
  box.className = 'access-box panel';
  el.append(box);
  root.replaceChildren(el);
  const render = () => { box.replaceChildren(); build(box); applyI18n(box); };
  render();
  const off = onLangChange(render);
  window.onemap = { ready: Promise.resolve() };
  return () => { off(); delete window.onemap; };
}

const node = (tag, props = {}, ...kids) => {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...kids);
  return el;
};

export const deniedView = {
  mount(root) {
    return page(root, (box) => {
      const title = node('h2', { className: 'access-title' });
      tb(title, 'access.denied');
      box.append(title, node('p', { className: 'access-text', textContent: tf('access.deniedText', { role: roleLabel(current()) }) }));
      const to = landing();
      const label = to === 'home' ? t('access.home') : t(`nav.${to}`);
      box.append(node('p', {}, node('a', { className: 'access-go', href: `#/${to}`, textContent: tf('access.go', { page: label }) })));
    });
  },
};

export const homeView = {
  mount(root) {
    return page(root, (box) => {
      const me = current();
      box.append(node('h2', { className: 'access-title', textContent: `${displayName(me)} · ${roleLabel(me)}` }));
      const work = WORK.filter((w) => can(w.perm));
      if (!work.length) {
        box.append(node('p', { className: 'access-text', textContent: t('home.nothing') }));
        return;
      }
      box.append(node('p', { className: 'access-text', textContent: t('home.intro') }));
      for (const w of work) {
        const sec = node('section', { className: 'access-work' }, node('h3', { textContent: t(w.key) }));
        sec.dataset.perm = w.perm;
        sec.append(node('ul', {}, ...w.routes.map((r) => node('li', {}, node('code', { textContent: r })))));
        if (w.cli) sec.append(node('p', { className: 'access-cli' }, `${t('home.cli')} `, node('code', { textContent: w.cli })));
        box.append(sec);
      }
    });
  },
};
