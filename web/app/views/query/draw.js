// Drawing the query area on the map, without a drawing library:
// - polygon: a click adds a vertex; a double-click, or a click on the first vertex, finishes;
//   Backspace removes the last vertex; Esc cancels;
// - circle: a click sets the centre, the pointer shows the radius in metres, a second click sets it;
// - grid: a click reports the point (the page asks the server which grids hold it).
// The draft lives in the 'q-draft' overlay; the finished shape goes to the page through onDone.
import { fmtNumber, t } from '../../i18n.js';
import { circleRing, haversine } from './geo.js';

const CLOSE_PX = 10; // a click this near the first vertex closes the ring
const SAME_PX = 4; // a click this near the last vertex is the second click of a double-click

const pt = (c, props = {}) => ({ type: 'Feature', properties: props, geometry: { type: 'Point', coordinates: c } });

export function createDrawer(qmap, { onDone, onPick, onMode }) {
  const { map } = qmap;
  let mode = 'none';
  let verts = [];
  let centre = null;
  let cursor = null;
  let pickAt = null;
  let finishedAt = -Infinity; // the clicks of a double-click that finished a shape are spent

  const radiusTo = (c) => Math.round(haversine(centre, c));
  const near = (a, p, px) => {
    const q = map.project(a);
    return Math.hypot(q.x - p.x, q.y - p.y) <= px;
  };

  function render() {
    const f = [];
    if (mode === 'polygon' && verts.length) {
      const line = cursor ? [...verts, cursor] : verts;
      if (line.length >= 2) f.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: line.length >= 3 ? [...line, verts[0]] : line } });
      verts.forEach((v, i) => f.push(pt(v, i === 0 ? { first: true } : {})));
    } else if (mode === 'circle' && centre) {
      f.push(pt(centre, { first: true }));
      if (cursor) {
        const r = radiusTo(cursor);
        if (r > 0) {
          f.push({ type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [circleRing(centre, r)] } });
          f.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: [centre, cursor] } });
          f.push(pt(cursor, { label: `${t('q.radius')} ${fmtNumber(r)} ${t('q.unit.m')}` }));
        }
      }
    } else if (mode === 'grid' && pickAt) {
      f.push(pt(pickAt, { first: true }));
    }
    qmap.set('q-draft', f);
  }

  function reset() {
    verts = [];
    centre = null;
    cursor = null;
    pickAt = null;
  }

  function setMode(m) {
    reset();
    mode = m;
    const drawing = m === 'polygon' || m === 'circle';
    if (drawing) map.doubleClickZoom.disable(); else map.doubleClickZoom.enable();
    map.getCanvas().style.cursor = m === 'none' ? '' : 'crosshair';
    render();
    onMode?.(m);
  }

  function finishPolygon() {
    const ring = [...verts, verts[0]];
    finishedAt = performance.now();
    setMode('none');
    onDone({ type: 'Polygon', coordinates: [ring] });
  }

  const onClick = (e) => {
    const c = [e.lngLat.lng, e.lngLat.lat];
    if (mode === 'polygon') {
      if (verts.length >= 3 && near(verts[0], e.point, CLOSE_PX)) { finishPolygon(); return; }
      if (verts.length && near(verts.at(-1), e.point, SAME_PX)) return;
      verts.push(c);
      render();
    } else if (mode === 'circle') {
      if (!centre) { centre = c; cursor = null; render(); return; }
      const r = radiusTo(c);
      if (r < 1) return;
      const center = centre;
      finishedAt = performance.now();
      setMode('none');
      onDone({ point: center, radius_m: r });
    } else if (mode === 'grid') {
      pickAt = c;
      render();
      onPick(e.lngLat);
    }
  };
  const onDblClick = (e) => {
    if (mode !== 'polygon') {
      if (performance.now() - finishedAt < 600) e.preventDefault(); // no zoom from a finishing double-click
      return;
    }
    e.preventDefault();
    if (verts.length >= 3) finishPolygon();
  };
  const onMove = (e) => {
    if ((mode === 'polygon' && verts.length) || (mode === 'circle' && centre)) {
      cursor = [e.lngLat.lng, e.lngLat.lat];
      render();
    }
  };
  const onKey = (e) => {
    if (mode === 'none' || e.target.closest?.('input, textarea, select')) return;
    if (e.key === 'Escape') { e.preventDefault(); setMode('none'); } else if (e.key === 'Backspace' && mode === 'polygon' && verts.length) {
      e.preventDefault();
      verts.pop();
      render();
    }
  };

  map.on('click', onClick);
  map.on('dblclick', onDblClick);
  map.on('mousemove', onMove);
  document.addEventListener('keydown', onKey);

  return {
    get mode() { return mode; },
    /** True while drawing, and just after a shape was finished (its clicks are not selections). */
    busy: () => mode !== 'none' || performance.now() - finishedAt < 600,
    setMode,
    /** Redraws the draft (its radius label follows the language). */
    render,
    /** Forgets the point a grid pick was made at. */
    clearPick() { pickAt = null; render(); },
    destroy() {
      map.off('click', onClick);
      map.off('dblclick', onDblClick);
      map.off('mousemove', onMove);
      document.removeEventListener('keydown', onKey);
    },
  };
}
