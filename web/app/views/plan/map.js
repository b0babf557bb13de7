// The planner's MapLibre map on styles/plan.json: the published grids from the tiles as context
// and the style's GeoJSON overlays (p-draft, p-sel, p-viol, p-hist, p-line, p-handles, see
// style.js) that the page fills. What an overlay shows can be read back with `data(source)`.
import * as maplibregl from '/node_modules/maplibre-gl/dist/maplibre-gl.mjs';
import { getJSON } from '../../api.js';
import { OVERLAY_SOURCES, planStyle } from './style.js';

export const STYLE_URL = '/styles/plan.json';
const EMPTY = { type: 'FeatureCollection', features: [] };

export async function loadStyle() {
  try {
    return { style: await getJSON(STYLE_URL), ok: true };
  } catch (error) {
    // without the style service: the overlays on a plain background, so editing still works
    return { style: planStyle({ context: false }), ok: false, error };
  }
}

export function createMap(container, style) {
  const map = new maplibregl.Map({
    container, style, center: [113, 28.2], zoom: 11,
    attributionControl: false, maxPitch: 0, dragRotate: false, pitchWithRotate: false, fadeDuration: 0,
    boxZoom: false, // shift-click adds a grid to the selection
  });
  map.touchZoomRotate.disableRotation();
  map.keyboard.disableRotation?.();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  map.on('error', (e) => {
    if (!(e.sourceId || e.tile || e.source)) console.warn('map:', e.error?.message ?? e);
  });
  const data = new Map(OVERLAY_SOURCES.map((s) => [s, EMPTY]));
  let loaded = false;
  const ready = new Promise((resolve) => {
    map.once('load', () => {
      loaded = true;
      for (const s of OVERLAY_SOURCES) {
        if (!map.getSource(s)) map.addSource(s, { type: 'geojson', data: EMPTY });
        map.getSource(s).setData(data.get(s));
      }
      resolve(map);
    });
  });
  const globals = {};
  return {
    map,
    ready,
    /** Replaces what an overlay source shows (kept until the style is in). */
    set(source, features) {
      const fc = { type: 'FeatureCollection', features };
      data.set(source, fc);
      if (loaded) map.getSource(source)?.setData(fc);
    },
    data: (source) => data.get(source),
    /** Sets a global-state property of the style (edit_level, viol). */
    setGlobal(key, value) {
      globals[key] = value;
      ready.then(() => {
        if (map.getGlobalState()[key] !== value) map.setGlobalStateProperty(key, value);
      });
    },
    /** Outlines these published grids (the scope being picked). */
    setScope(codes) {
      ready.then(() => {
        const f = ['in', ['get', 'code'], ['literal', codes]];
        for (const id of ['scope-fill', 'scope-line']) if (map.getLayer(id)) map.setFilter(id, f);
      });
    },
    /** Re-fetches the published tiles (after a publish or a revert changed them). */
    refreshContext() {
      ready.then(() => { if (map.getSource('om')) map.refreshTiles('om'); });
    },
  };
}
