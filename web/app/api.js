// JSON over the same origin. Errors come back as application/problem+json; they are thrown as
// ApiError with the problem's title/detail so the UI can say what went wrong.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function getJSON(path, { signal } = {}) {
  const res = await fetch(path, { signal, headers: { accept: 'application/json' } });
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, problem);
  }
  return res.json();
}

export const api = {
  grids: (level, opts) => getJSON(`/api/grids?level=${encodeURIComponent(level)}`, opts),
  grid: (code, opts) => getJSON(`/api/grids/${encodeURIComponent(code)}`, opts),
  locate: (lon, lat, opts) => getJSON(`/api/locate?lon=${lon}&lat=${lat}`, opts),
};
