// Small geodesy for the query page, matching the server's rules (src/query/mod.rs): haversine
// metres on the mean Earth radius for circles around points, and the same local equirectangular
// projection for drawing a circle as a polygon.

const R_EARTH = 6_371_008.8;
const rad = (d) => (d * Math.PI) / 180;
const deg = (r) => (r * 180) / Math.PI;

/** Great-circle distance in metres between two [lon, lat]. */
export function haversine([lon1, lat1], [lon2, lat2]) {
  const dLat = rad(lat2 - lat1);
  const dLon = rad(lon2 - lon1);
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(rad(lat1)) * Math.cos(rad(lat2)) * Math.sin(dLon / 2) ** 2;
  return 2 * R_EARTH * Math.asin(Math.sqrt(a));
}

/** A circle of `radius` metres around `center` as a closed ring of `n` segments. */
export function circleRing([lon, lat], radius, n = 128) {
  const k = Math.max(Math.cos(rad(lat)), 1e-9);
  const ring = [];
  for (let i = 0; i <= n; i++) {
    const a = (i / n) * 2 * Math.PI;
    ring.push([lon + deg((radius * Math.cos(a)) / (R_EARTH * k)), lat + deg((radius * Math.sin(a)) / R_EARTH)]);
  }
  return ring;
}

/** The area of a closed ring in square metres (local projection at its first vertex). */
export function ringArea(ring) {
  if (ring.length < 4) return 0;
  const [lon0, lat0] = ring[0];
  const k = Math.cos(rad(lat0));
  const xy = ring.map(([lon, lat]) => [rad(lon - lon0) * R_EARTH * k, rad(lat - lat0) * R_EARTH]);
  let s = 0;
  for (let i = 0; i + 1 < xy.length; i++) s += xy[i][0] * xy[i + 1][1] - xy[i + 1][0] * xy[i][1];
  return Math.abs(s) / 2;
}

/** [west, south, east, north] of any GeoJSON geometry, or null when it has no coordinates. */
export function bbox(geometry) {
  let w = Infinity; let s = Infinity; let e = -Infinity; let n = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === 'number') {
      if (c[0] < w) w = c[0];
      if (c[0] > e) e = c[0];
      if (c[1] < s) s = c[1];
      if (c[1] > n) n = c[1];
    } else for (const x of c) walk(x);
  };
  if (geometry?.type === 'GeometryCollection') for (const g of geometry.geometries) walk(g.coordinates);
  else if (geometry?.coordinates) walk(geometry.coordinates);
  return w <= e ? [w, s, e, n] : null;
}
