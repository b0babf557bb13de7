// JSON over the same origin. Errors come back as application/problem+json; they are thrown as
// ApiError with the problem's title/detail so the UI can say what went wrong.
//
// Credentials travel as the session cookie (HttpOnly: the page never sees it; same-origin fetch
// sends it). A 401 from any helper here means the session is gone: the handler set with
// onUnauthorized (session.js: back to the login page) is called before the error is thrown.

export class ApiError extends Error {
  constructor(status, problem, res) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    /** Seconds from a Retry-After header (429), else null. */
    const retry = Number.parseInt(res?.headers?.get('retry-after') ?? '', 10);
    this.retryAfter = Number.isFinite(retry) ? retry : null;
  }
}

let unauthorized = null;
/** fn(error) is called on every 401 answer (except the login's own). */
export function onUnauthorized(fn) { unauthorized = fn; }

/** The ApiError of a failed response (its problem JSON read if there is one). */
async function failure(res) {
  let problem = null;
  try { problem = await res.json(); } catch { /* not JSON */ }
  return new ApiError(res.status, problem, res);
}

async function answer(res, { login = false } = {}) {
  if (!res.ok) {
    const err = await failure(res);
    if (res.status === 401 && !login) unauthorized?.(err);
    throw err;
  }
  return res.json();
}

export async function getJSON(path, { signal } = {}) {
  return answer(await fetch(path, { signal, headers: { accept: 'application/json' } }));
}

/** POSTs a JSON body; the answer (or the ApiError) as getJSON gives it. The author the server
 *  records for a change is the signed-in account. */
export async function postJSON(path, body, { signal } = {}) {
  const headers = { accept: 'application/json', 'content-type': 'application/json' };
  return answer(await fetch(path, { method: 'POST', signal, body: JSON.stringify(body), headers }));
}

/** DELETE; resolves with nothing (204) or throws the ApiError. */
export async function del(path, { signal } = {}) {
  const res = await fetch(path, { method: 'DELETE', signal, headers: { accept: 'application/json' } });
  if (!res.ok) await answer(res);
}

/** POSTs a JSON body and resolves with the answer as a Blob (a download); throws the ApiError. */
export async function postBlob(path, body, { signal } = {}) {
  const res = await fetch(path, { method: 'POST', signal, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  if (!res.ok) await answer(res);
  return res.blob();
}

const enc = encodeURIComponent;

export const api = {
  /** POST /api/login {name, password, otp?} → who is signed in (as `me`); a refusal is thrown
   *  as ApiError with `problem.code` (wrong | locked | otp_required | otp_not_enrolled |
   *  throttled), without calling the 401 handler. */
  login: async (body, opts = {}) => answer(await fetch('/api/login', {
    method: 'POST', signal: opts.signal, body: JSON.stringify(body),
    headers: { accept: 'application/json', 'content-type': 'application/json' },
  }), { login: true }),
  /** GET /api/me → {name, role, role_label, scope, perms, kiosk}. */
  me: (opts) => getJSON('/api/me', opts),
  /** POST /api/logout (204): the session ends and its cookie is cleared. */
  logout: async (opts = {}) => {
    const res = await fetch('/api/logout', { method: 'POST', signal: opts.signal, headers: { accept: 'application/json' } });
    if (!res.ok) throw await failure(res);
  },
  grids: (level, opts) => getJSON(`/api/grids?level=${encodeURIComponent(level)}`, opts),
  grid: (code, opts) => getJSON(`/api/grids/${encodeURIComponent(code)}`, opts),
  /** GET /api/grids/{code}?geometry=true: one grid as `grid` gives it, with its exact outline
   *  (`geometry`, GeoJSON). */
  gridOutline: (code, opts) => getJSON(`/api/grids/${enc(code)}?geometry=true`, opts),
  /** GET /api/grids?q=…[&level=…][&limit=…]: grids by name (contains) or code (prefix), best
   *  first → {count, matched, grids: [{code, name, level, kind, households, path, bbox}]}. */
  searchGrids: (q, { level, limit } = {}, opts) => getJSON(`/api/grids?q=${enc(q)}${level ? `&level=${enc(level)}` : ''}${limit ? `&limit=${limit}` : ''}`, opts),
  locate: (lon, lat, opts) => getJSON(`/api/locate?lon=${lon}&lat=${lat}`, opts),
  layers: (opts) => getJSON('/api/layers', opts),
  /** GET /api/stats?level=…[&parent=…]: per-area work-order aggregates, top grids, overdue list. */
  stats: (level, parent, opts) => getJSON(`/api/stats?level=${encodeURIComponent(level)}${parent ? `&parent=${encodeURIComponent(parent)}` : ''}`, opts),
  /** POST /api/query {area, layers, filter, group_by, limit, cursor}. */
  query: (body, opts) => postJSON('/api/query', body, opts),
  /** The download URL of a query: kind 'csv' (one layer) or 'geojson'. */
  exportUrl: (kind, q) => `/api/query.${kind}?q=${encodeURIComponent(JSON.stringify(q))}`,
  /** POST /api/query.{csv,geojson} with the query as the body (any size): the download as a Blob. */
  exportBlob: (kind, q, opts) => postBlob(`/api/query.${kind}`, q, opts),
  // grid edit plans (docs/plans-api.md)
  plans: (opts) => getJSON('/api/plans', opts),
  createPlan: (body, opts) => postJSON('/api/plans', body, opts),
  plan: (id, opts) => getJSON(`/api/plans/${enc(id)}`, opts),
  discardPlan: (id, opts) => del(`/api/plans/${enc(id)}`, opts),
  /** POST /api/plans/{id}/ops: one op → {n, kind, summary, changed, created, deleted, plan};
   *  the signed-in account is recorded as the op's author. */
  planOp: (id, op, opts) => postJSON(`/api/plans/${enc(id)}/ops`, op, opts),
  validatePlan: (id, opts) => getJSON(`/api/plans/${enc(id)}/validate`, opts),
  publishPlan: (id, body, opts) => postJSON(`/api/plans/${enc(id)}/publish`, body, opts),
  history: (code, opts) => getJSON(`/api/grids/${enc(code)}/history`, opts),
  revert: (code, body, opts) => postJSON(`/api/grids/${enc(code)}/revert`, body, opts),
};
