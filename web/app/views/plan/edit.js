// Editing the draft on the map, without a drawing library:
// - handles: one per distinct vertex of the editable level's grids (a vertex several grids share
//   is one handle) and one at the middle of each distinct edge (shown when the edge is long
//   enough on screen). Dragging one previews the move on the whole draft (every level, as the
//   server glues them) and, on release, asks the page to send the op with `from` = the handle's
//   exact original coordinates;
// - select: a click reports the point (shift-click adds to the selection);
// - split: a click adds a point of the line, a double-click finishes it, Backspace drops the last
//   point, Esc cancels.
// Handles live in the 'p-handles' overlay, the line in 'p-line'.
import { handlesOf } from './geom.js';

const HIT_VERTEX = 9; // px around a vertex handle that grab it
const HIT_MID = 7;
const MID_MIN_PX = 28; // an edge shorter than this on screen shows no mid handle
const DRAG_PX = 3; // a press that moves less than this is a click, not a move
const SAME_PX = 4; // a split click this near the last point is the second click of a double-click

const pt = (c, props) => ({ type: 'Feature', properties: props, geometry: { type: 'Point', coordinates: c } });

export function createEditor(pmap, { onPreview, onMove, onSelect, onSplit, onMode }) {
  const { map } = pmap;
  const canvas = map.getCanvasContainer();
  let mode = 'select';
  let enabled = false; // a draft plan with grids at the editable level
  let busy = false; // a request in flight: nothing can be grabbed
  let handles = { vertices: [], mids: [] };
  let shownMids = [];
  let drag = null; // { handle, start: {x, y}, to, moved }
  let pending = null; // the handle dropped, drawn where it went until the answer redraws
  let line = [];
  let cursor = null;
  let finishedAt = -Infinity;

  function render() {
    const f = [];
    if (enabled && mode === 'select') {
      const active = drag?.moved ? drag : pending;
      const z = (c) => map.project(c);
      shownMids = handles.mids.filter((m) => {
        const a = z(m.a); const b = z(m.b);
        return Math.hypot(a.x - b.x, a.y - b.y) >= MID_MIN_PX;
      });
      const af = active?.handle.kind === 'vertex' ? active.handle.from : null;
      const touches = (c) => af && c[0] === af[0] && c[1] === af[1];
      for (const m of shownMids) {
        if (active?.handle === m || touches(m.a) || touches(m.b)) continue; // its edge is moving
        f.push(pt(m.from, { kind: 'mid', shared: m.grids.length }));
      }
      for (const v of handles.vertices) {
        if (active?.handle === v) continue;
        f.push(pt(v.from, { kind: 'vertex', shared: v.grids.length }));
      }
      if (active) f.push(pt(active.to, { kind: active.handle.kind, shared: active.handle.grids.length, active: true }));
    } else shownMids = [];
    pmap.set('p-handles', f);
    const lf = [];
    if (mode === 'split' && line.length) {
      const l = cursor ? [...line, cursor] : line;
      if (l.length >= 2) lf.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: l } });
      for (const c of line) lf.push(pt(c, {}));
    }
    pmap.set('p-line', lf);
  }

  /** The handle under a pixel: the nearest vertex within reach, else the nearest mid-edge. */
  function handleAt(p) {
    let best = null;
    let bd = HIT_VERTEX;
    for (const v of handles.vertices) {
      const q = map.project(v.from);
      const d = Math.hypot(q.x - p.x, q.y - p.y);
      if (d <= bd) { bd = d; best = v; }
    }
    if (best) return best;
    bd = HIT_MID;
    for (const m of shownMids) {
      const q = map.project(m.from);
      const d = Math.hypot(q.x - p.x, q.y - p.y);
      if (d <= bd) { bd = d; best = m; }
    }
    return best;
  }

  function pointOf(e) {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left - canvas.clientLeft, y: e.clientY - r.top - canvas.clientTop };
  }

  function setMode(m) {
    mode = m;
    line = [];
    cursor = null;
    if (m === 'split') map.doubleClickZoom.disable(); else map.doubleClickZoom.enable();
    map.getCanvas().style.cursor = m === 'split' ? 'crosshair' : '';
    render();
    onMode?.(m);
  }

  const onDown = (e) => {
    if (!enabled || busy || mode !== 'select' || e.originalEvent.button !== 0) return;
    const h = handleAt(e.point);
    if (!h) return;
    e.preventDefault(); // no drag-pan: this press moves the handle
    drag = { handle: h, start: e.point, to: h.from, moved: false };
    addEventListener('mousemove', onDragMove);
    addEventListener('mouseup', onUp);
  };

  let frame = 0;
  const onDragMove = (e) => {
    if (!drag) return;
    const p = pointOf(e);
    if (!drag.moved && Math.hypot(p.x - drag.start.x, p.y - drag.start.y) < DRAG_PX) return;
    drag.moved = true;
    const ll = map.unproject([p.x, p.y]);
    drag.to = [ll.lng, ll.lat];
    map.getCanvas().style.cursor = 'grabbing';
    if (!frame) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        if (!drag) return;
        onPreview(drag.handle, drag.to);
        render();
      });
    }
  };

  const onUp = (e) => {
    removeEventListener('mousemove', onDragMove);
    removeEventListener('mouseup', onUp);
    const d = drag;
    drag = null;
    map.getCanvas().style.cursor = '';
    if (!d?.moved) { render(); return; }
    const p = pointOf(e);
    const ll = map.unproject([p.x, p.y]);
    const to = [ll.lng, ll.lat];
    pending = { handle: d.handle, to };
    onPreview(d.handle, to);
    render();
    onMove(d.handle, to);
  };

  const onClick = (e) => {
    if (mode === 'split') {
      if (!enabled || busy) return;
      const c = [e.lngLat.lng, e.lngLat.lat];
      if (line.length) {
        const q = map.project(line.at(-1));
        if (Math.hypot(q.x - e.point.x, q.y - e.point.y) <= SAME_PX) return;
      }
      line.push(c);
      render();
      return;
    }
    if (performance.now() - finishedAt < 400) return;
    onSelect(e.lngLat, e.originalEvent.shiftKey);
  };
  const onDblClick = (e) => {
    if (mode !== 'split') return;
    e.preventDefault();
    if (line.length < 2 || busy) return;
    const l = line;
    finishedAt = performance.now();
    line = [];
    cursor = null;
    render();
    onSplit(l);
  };
  const onHover = (e) => {
    if (drag) return;
    if (mode === 'split') {
      if (line.length) { cursor = [e.lngLat.lng, e.lngLat.lat]; render(); }
      return;
    }
    map.getCanvas().style.cursor = enabled && !busy && handleAt(e.point) ? 'grab' : '';
  };
  const onKey = (e) => {
    if (mode !== 'split' || e.target.closest?.('input, textarea, select')) return;
    if (e.key === 'Escape') { e.preventDefault(); setMode('select'); } else if (e.key === 'Backspace' && line.length) {
      e.preventDefault();
      line.pop();
      render();
    }
  };
  const onView = () => { if (enabled && mode === 'select') render(); };

  map.on('mousedown', onDown);
  map.on('click', onClick);
  map.on('dblclick', onDblClick);
  map.on('mousemove', onHover);
  map.on('moveend', onView);
  document.addEventListener('keydown', onKey);

  return {
    get mode() { return mode; },
    setMode,
    /** The features whose vertices get handles (the editable level), and whether editing is on. */
    setFeatures(features, on) {
      handles = on ? handlesOf(features) : { vertices: [], mids: [] };
      enabled = on;
      pending = null;
      if (!on && drag) { drag = null; removeEventListener('mousemove', onDragMove); removeEventListener('mouseup', onUp); }
      render();
    },
    setBusy(b) { busy = b; },
    /** Forgets a dropped handle (the op was refused: the page redraws the draft as it was). */
    dropPending() { pending = null; render(); },
    handles: () => handles,
    shownMids: () => shownMids,
    dragging: () => Boolean(drag),
    destroy() {
      cancelAnimationFrame(frame);
      map.off('mousedown', onDown);
      map.off('click', onClick);
      map.off('dblclick', onDblClick);
      map.off('mousemove', onHover);
      map.off('moveend', onView);
      removeEventListener('mousemove', onDragMove);
      removeEventListener('mouseup', onUp);
      document.removeEventListener('keydown', onKey);
    },
  };
}
