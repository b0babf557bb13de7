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
export async function postJSON(path, body, { signal } = {}) {
  return answer(await fetch(path, {
    method: 'POST', signal, body: JSON.stringify(body),
    headers: { accept: 'application/json', 'content-type': 'application/json' },
  }));
}

export const api = {
  grids: (level, opts) => getJSON(`/api/grids?level=${encodeURIComponent(level)}`, opts),
  grid: (code, opts) => getJSON(`/api/grids/${encodeURIComponent(code)}`, opts),
  locate: (lon, lat, opts) => getJSON(`/api/locate?lon=${lon}&lat=${lat}`, opts),
  layers: (opts) => getJSON('/api/layers', opts),
  /** GET /api/stats?level=…[&parent=…]: per-area work-order aggregates, top grids, overdue list. */
  stats: (level, parent, opts) => getJSON(`/api/stats?level=${encodeURIComponent(level)}${parent ? `&parent=${encodeURIComponent(parent)}` : ''}`, opts),
  /** POST /api/query {area, layers, filter, group_by, limit, cursor}. */
  query: (body, opts) => postJSON('/api/query', body, opts),
  /** The download URL of a query: kind 'csv' (one layer) or 'geojson'. */
  exportUrl: (kind, q) => `/api/query.${kind}?q=${encodeURIComponent(JSON.stringify(q))}`,
};
