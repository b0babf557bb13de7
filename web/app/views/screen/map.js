// The MapLibre map of the big screen: style loading with a quiet fallback, UI scale, selection
// highlight, and picking the grid under a click.
import * as maplibregl from '/node_modules/maplibre-gl/dist/maplibre-gl.mjs';
import { getJSON } from '../../api.js';
import { BG, GRID_LEVELS } from '../../palette.js';

export const STYLE_URL = '/styles/screen.json';

// What the page shows when the style service is unavailable: the background, so the rest of the
// screen (card, overview) keeps working.
const FALLBACK_STYLE = {
  version: 8,
  state: { ui_scale: { default: 1 }, selected: { default: '' } },
  sources: {},
  layers: [{ id: 'background', type: 'background', paint: { 'background-color': BG } }],
};

// The deepest comprehensive level whose tiles exist at a zoom (tile contract).
const LEVEL_FROM = { district: 0, street: 9, community: 11, grid: 13, micro: 15 };
export function deepestLevelAt(zoom) {
  let best = 'district';
  for (const l of GRID_LEVELS) if (Math.floor(zoom) >= LEVEL_FROM[l]) best = l;
  return best;
}

export async function loadStyle() {
  try {
    return { style: await getJSON(STYLE_URL), ok: true };
  } catch (error) {
    return { style: FALLBACK_STYLE, ok: false, error };
  }
}

export function uiScale() {
  return Math.min(3, Math.max(0.6, innerWidth / 1920));
}

export function createMap(container, style, { onTileError } = {}) {
  const map = new maplibregl.Map({
    container,
    style,
    center: [113, 28.2],
    zoom: 10,
    attributionControl: false,
    maxPitch: 60,
    fadeDuration: 150,
    // Each tile error is reported once per source and kept out of the console: a screen that
    // runs for days must not fill the log while the tile service restarts.
  });
  map.once('style.load', () => styled.add(map));
  map.on('error', (e) => {
    if (e.sourceId || e.tile || e.source) onTileError?.(e);
    else console.warn('map:', e.error?.message ?? e);
  });
  return map;
}

// Maps whose style has loaded. map.isStyleLoaded() is false again while tiles load, and
// 'style.load' fires only once, so it cannot tell by itself whether to wait.
const styled = new WeakSet();

/** Runs fn once the style is loaded (now, if it is). */
export function whenStyle(map, fn) {
  if (styled.has(map) || map.isStyleLoaded()) fn();
  else map.once('style.load', fn);
}

export function setGlobal(map, key, value) {
  whenStyle(map, () => {
    if (map.getGlobalState()[key] !== value) map.setGlobalStateProperty(key, value);
  });
}

/** The code of the deepest-level grid drawn at a pixel, from the rendered grid fills, or null. */
export function gridAtPoint(map, point) {
  const layers = GRID_LEVELS.map((l) => `grids-fill-${l}`).filter((id) => map.getLayer(id));
  if (!layers.length) return null;
  let best = null;
  let rank = -1;
  for (const f of map.queryRenderedFeatures(point, { layers })) {
    const r = GRID_LEVELS.indexOf(f.properties.level);
    if (f.properties.kind !== 'dedicated' && r > rank) { rank = r; best = f.properties.code; }
  }
  return best;
}
