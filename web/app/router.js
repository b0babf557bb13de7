// A tiny hash router: '#/screen', '#/query', '#/plan' (with '?id=…' for an open plan). A view is
// { mount(el, params) → unmount() }; the router unmounts the old view before mounting the next,
// so a view must release everything it took (map, listeners, timers) in its unmount.

const routes = new Map();
let current = null; // { name, unmount }
let outlet = null;
let fallback = 'screen';

export function route(name, view) { routes.set(name, view); }

function parse(hash) {
  const m = /^#\/([\w-]+)(?:\?(.*))?$/.exec(hash || '');
  return m ? { name: m[1], params: new URLSearchParams(m[2] || '') } : null;
}

async function render() {
  const r = parse(location.hash);
  if (!r || !routes.has(r.name)) { location.replace(`#/${fallback}`); return; }
  if (current?.name === r.name) return;
  if (current) { current.unmount?.(); current = null; }
  outlet.replaceChildren();
  document.body.dataset.view = r.name;
  current = { name: r.name, unmount: await routes.get(r.name).mount(outlet, r.params) };
}

export function start(el, defaultRoute = 'screen') {
  outlet = el;
  fallback = defaultRoute;
  addEventListener('hashchange', render);
  return render();
}
