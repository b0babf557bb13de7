// Plain geometry for the planner (no DOM, no map: tested in node by tests/plan-geom.test.mjs).
// Coordinates are [lon, lat] exactly as the server sent them: a vertex shared by several grids
// has the same numbers in each, so identical coordinates are one handle and the `from` of a
// move is the original pair, untouched.

/** The rings (outer and holes) of a Polygon or MultiPolygon, each closed (first = last). */
export function ringsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === 'Polygon') return geometry.coordinates;
  if (geometry.type === 'MultiPolygon') return geometry.coordinates.flat();
  return [];
}

/** Polygons of a Polygon or MultiPolygon as arrays of rings. */
function polygonsOf(geometry) {
  if (geometry?.type === 'Polygon') return [geometry.coordinates];
  if (geometry?.type === 'MultiPolygon') return geometry.coordinates;
  return [];
}

export const keyOf = (c) => `${c[0]},${c[1]}`;
const edgeKey = (a, b) => { const ka = keyOf(a); const kb = keyOf(b); return ka < kb ? `${ka}|${kb}` : `${kb}|${ka}`; };
export const midpoint = (a, b) => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];

/**
 * The handles of `features` (the draft grids being edited): one per distinct vertex, with the
 * codes of the grids that use it, and one per distinct edge at its midpoint (an edge two grids
 * share is one handle). `from` is what a move sends: the vertex itself, or the edge's midpoint.
 */
export function handlesOf(features) {
  const vertices = new Map(); // key → { c, grids:Set }
  const edges = new Map(); // edgeKey → { a, b, grids:Set }
  for (const f of features) {
    const code = f.properties?.code ?? f.id;
    for (const ring of ringsOf(f.geometry)) {
      const n = ring.length - 1; // closed ring: the last point repeats the first
      for (let i = 0; i < n; i++) {
        const c = ring[i];
        const k = keyOf(c);
        let v = vertices.get(k);
        if (!v) vertices.set(k, v = { c, grids: new Set() });
        v.grids.add(code);
        const d = ring[i + 1];
        if (keyOf(d) === k) continue;
        const ek = edgeKey(c, d);
        let e = edges.get(ek);
        if (!e) edges.set(ek, e = { a: c, b: d, grids: new Set() });
        e.grids.add(code);
      }
    }
  }
  return {
    vertices: [...vertices.values()].map((v) => ({ kind: 'vertex', from: v.c, grids: [...v.grids] })),
    mids: [...edges.values()].map((e) => ({ kind: 'mid', from: midpoint(e.a, e.b), a: e.a, b: e.b, grids: [...e.grids] })),
  };
}

/**
 * What a move does to the draft, as the server will do it (for the preview while dragging):
 * every vertex equal to `from` goes to `to`; for a mid-edge move, every edge whose midpoint is
 * `from` gets the vertex `to` inserted. Returns new features (those untouched are the same objects).
 */
export function applyMove(features, handle, to) {
  const from = handle.from;
  const fk = keyOf(from);
  return features.map((f) => {
    let touched = false;
    const ringMap = (ring) => {
      if (handle.kind === 'vertex') {
        if (!ring.some((c) => c[0] === from[0] && c[1] === from[1])) return ring;
        touched = true;
        return ring.map((c) => (c[0] === from[0] && c[1] === from[1] ? to : c));
      }
      const out = [ring[0]];
      for (let i = 1; i < ring.length; i++) {
        if (keyOf(midpoint(ring[i - 1], ring[i])) === fk) { out.push(to); touched = true; }
        out.push(ring[i]);
      }
      return touched ? out : ring;
    };
    const g = f.geometry;
    let geometry = g;
    if (g?.type === 'Polygon') geometry = { type: 'Polygon', coordinates: g.coordinates.map(ringMap) };
    else if (g?.type === 'MultiPolygon') geometry = { type: 'MultiPolygon', coordinates: g.coordinates.map((p) => p.map(ringMap)) };
    return touched ? { ...f, geometry } : f;
  });
}

function inRing(pt, ring) {
  const [x, y] = pt;
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Whether a [lon, lat] lies inside a Polygon or MultiPolygon (holes excluded). */
export function contains(geometry, pt) {
  return polygonsOf(geometry).some(([outer, ...holes]) => inRing(pt, outer) && !holes.some((h) => inRing(pt, h)));
}

/** [w, s, e, n] of any GeoJSON geometry (null when it has no coordinates). */
export function bboxOf(geometry) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === 'number') {
      if (c[0] < b[0]) b[0] = c[0];
      if (c[1] < b[1]) b[1] = c[1];
      if (c[0] > b[2]) b[2] = c[0];
      if (c[1] > b[3]) b[3] = c[1];
    } else for (const x of c) walk(x);
  };
  if (geometry?.type === 'GeometryCollection') for (const g of geometry.geometries) walk(g.coordinates);
  else if (geometry?.coordinates) walk(geometry.coordinates);
  return b[0] === Infinity ? null : b;
}

/** The union of bboxes. */
export function unionBbox(boxes) {
  const bs = boxes.filter(Boolean);
  if (!bs.length) return null;
  return [Math.min(...bs.map((b) => b[0])), Math.min(...bs.map((b) => b[1])), Math.max(...bs.map((b) => b[2])), Math.max(...bs.map((b) => b[3]))];
}

/** The point halfway along a polyline (by length in degrees, good enough to find the grid cut). */
export function alongHalf(line) {
  let total = 0;
  for (let i = 1; i < line.length; i++) total += Math.hypot(line[i][0] - line[i - 1][0], line[i][1] - line[i - 1][1]);
  let rest = total / 2;
  for (let i = 1; i < line.length; i++) {
    const d = Math.hypot(line[i][0] - line[i - 1][0], line[i][1] - line[i - 1][1]);
    if (d >= rest && d > 0) {
      const t = rest / d;
      return [line[i - 1][0] + t * (line[i][0] - line[i - 1][0]), line[i - 1][1] + t * (line[i][1] - line[i - 1][1])];
    }
    rest -= d;
  }
  return line[0];
}

/** The draft grids the segment a→b crosses the boundary of, or lies in. */
export function gridsCrossed(features, line) {
  const hits = new Set();
  for (const f of features) {
    const code = f.properties?.code ?? f.id;
    if (line.some((p) => contains(f.geometry, p))) { hits.add(code); continue; }
    outer: for (const ring of ringsOf(f.geometry)) {
      for (let i = 1; i < ring.length; i++) {
        for (let j = 1; j < line.length; j++) {
          if (segmentsCross(ring[i - 1], ring[i], line[j - 1], line[j])) { hits.add(code); break outer; }
        }
      }
    }
  }
  return [...hits];
}

function segmentsCross(p1, p2, p3, p4) {
  const d = (a, b, c) => (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
  const d1 = d(p3, p4, p1); const d2 = d(p3, p4, p2); const d3 = d(p1, p2, p3); const d4 = d(p1, p2, p4);
  return ((d1 > 0) !== (d2 > 0)) && ((d3 > 0) !== (d4 > 0)) && d1 !== 0 && d2 !== 0 && d3 !== 0 && d4 !== 0;
}

/** Number of vertices of a (Multi)Polygon (closing points not counted). */
export function vertexCount(geometry) {
  return ringsOf(geometry).reduce((n, r) => n + r.length - 1, 0);
}

function ringArea(ring) {
  let a = 0;
  for (let i = 1; i < ring.length; i++) a += ring[i - 1][0] * ring[i][1] - ring[i][0] * ring[i - 1][1];
  return a / 2;
}

/**
 * A point inside a (Multi)Polygon to hang its name on: on the horizontal line through the middle
 * of its largest part, the middle of the widest stretch inside. One point per grid, so a name is
 * drawn once however the map cuts the polygon into tiles.
 */
export function labelPoint(geometry) {
  const polys = polygonsOf(geometry);
  if (!polys.length) return null;
  const best = polys.reduce((a, p) => (Math.abs(ringArea(p[0])) > Math.abs(ringArea(a[0])) ? p : a));
  const b = bboxOf({ type: 'Polygon', coordinates: best });
  if (!b) return null;
  let pick = null;
  // try the middle line first, then lines a little above and below it
  for (const f of [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8]) {
    const y = b[1] + (b[3] - b[1]) * f;
    const xs = [];
    for (const ring of best) {
      for (let i = 1; i < ring.length; i++) {
        const [x1, y1] = ring[i - 1];
        const [x2, y2] = ring[i];
        if ((y1 > y) !== (y2 > y)) xs.push(x1 + ((y - y1) * (x2 - x1)) / (y2 - y1));
      }
    }
    xs.sort((p, q) => p - q);
    for (let i = 0; i + 1 < xs.length; i += 2) {
      const w = xs[i + 1] - xs[i];
      if (!pick || w > pick.w) pick = { w, c: [(xs[i] + xs[i + 1]) / 2, y] };
    }
    if (pick && pick.w > (b[2] - b[0]) * 0.3) break;
  }
  return pick?.c ?? [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
}
