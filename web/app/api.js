// JSON over the same origin. Errors come back as application/problem+json; they are thrown as
// ApiError with the problem's title/detail so the UI can say what went wrong.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function answer(res) {
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, problem);
  }
  return res.json();
}

export async function getJSON(path, { signal } = {}) {
  return answer(await fetch(path, { signal, headers: { accept: 'application/json' } }));
}

/** POSTs a JSON body; the answer (or the ApiError) as getJSON gives it. */
export async function postJSON(path, body, { signal, user } = {}) {
  const headers = { accept: 'application/json', 'content-type': 'application/json' };
  // the author the server records for the change (percent-encoded: header values are ASCII)
  if (user) headers['x-onemap-user'] = encodeURIComponent(user);
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
   *  `opts.user` is recorded as the op's author (else the server takes the plan's). */
  planOp: (id, op, opts) => postJSON(`/api/plans/${enc(id)}/ops`, op, opts),
  validatePlan: (id, opts) => getJSON(`/api/plans/${enc(id)}/validate`, opts),
  publishPlan: (id, body, opts) => postJSON(`/api/plans/${enc(id)}/publish`, body, opts),
  history: (code, opts) => getJSON(`/api/grids/${enc(code)}/history`, opts),
  revert: (code, body, opts) => postJSON(`/api/grids/${enc(code)}/revert`, body, opts),
};
