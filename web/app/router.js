// A tiny hash router: '#/screen', '#/query', '#/plan' (with '?id=…' for an open plan), '#/login'
// (with '?next=…'). A view is { mount(el, params) → unmount() }; the router unmounts the old view
// before mounting the next, so a view must release everything it took (map, listeners, timers)
// in its unmount.
//
// Access: a route is open (the login page) or needs a signed-in user, and may need one
// permission. Without a session the router goes to the login page, returning here afterwards;
// with a session that lacks the permission it mounts the `denied` view instead of the page (the
// page's code never runs). An empty or unknown address goes to the user's landing page.

const routes = new Map(); // name → { view, need, open }
let current = null; // { key, unmount }
let outlet = null;
let guard = null;
// Route changes run one after the other: a view still mounting (awaiting its style, say) when
// the address changes finishes first and is then unmounted, so two views never share the outlet.
let queue = Promise.resolve();

/** Declares a route. `need`: the permission it needs; `open`: reachable without a session. */
export function route(name, view, { need = null, open = false } = {}) {
  routes.set(name, { view, need, open });
}

function parse(hash) {
  const m = /^#\/([\w-]+)(?:\?(.*))?$/.exec(hash || '');
  return m ? { name: m[1], params: new URLSearchParams(m[2] || '') } : null;
}

async function step() {
  const r = parse(location.hash);
  if (!r || !routes.has(r.name)) { location.replace(`#/${guard.landing()}`); return; }
  const entry = routes.get(r.name);
  if (!entry.open && !guard.signedIn()) { location.replace(guard.loginHash(location.hash)); return; }
  const allowed = !entry.need || guard.allows(entry.need);
  const key = allowed ? r.name : `${r.name}:denied`;
  if (current?.key === key) return;
  if (current) { current.unmount?.(); current = null; }
  outlet.replaceChildren();
  document.body.dataset.view = allowed ? r.name : 'denied';
  const view = allowed ? entry.view : guard.denied;
  current = { key, unmount: await view.mount(outlet, r.params) };
}

function render() {
  const run = queue.then(step);
  queue = run.catch((err) => console.error('view:', err));
  return run;
}

/**
 * Starts routing into `el`. `options`: { signedIn(): bool, allows(perm): bool, landing(): name,
 * loginHash(hash): '#/login?next=…', denied: the view shown for a page the user may not use }.
 */
export function start(el, options) {
  outlet = el;
  guard = options;
  addEventListener('hashchange', render);
  return render();
}
