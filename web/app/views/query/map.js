// The query page's MapLibre map: the light context style (styles/query.json) and the page's own
// overlays on top of it: the committed area, the draft being drawn, the current page of results
// and the highlighted feature. Each overlay is one GeoJSON source, so what the map shows can be
// read back (getData) and the map never holds more than one page of results.
import * as maplibregl from '/node_modules/maplibre-gl/dist/maplibre-gl.mjs';
import { getJSON } from '../../api.js';
import { QUERY as Q } from '../../palette.js';

export const STYLE_URL = '/styles/query.json';
const EMPTY = { type: 'FeatureCollection', features: [] };

// What the page shows when the style service is unavailable: a plain background, so drawing and
// querying keep working.
const FALLBACK_STYLE = {
  version: 8,
  sources: {},
  layers: [{ id: 'background', type: 'background', paint: { 'background-color': Q.bg } }],
};

export const SOURCES = ['q-area', 'q-results', 'q-hl', 'q-draft'];
/** The overlay layers a click on a result can hit. */
export const RESULT_LAYERS = ['q-results-fill', 'q-results-line', 'q-results-pt'];

const isPoint = ['==', ['geometry-type'], 'Point'];
const isPolygon = ['==', ['geometry-type'], 'Polygon'];
const isLine = ['==', ['geometry-type'], 'LineString'];

const OVERLAY = [
  { id: 'q-area-fill', type: 'fill', source: 'q-area', paint: { 'fill-color': Q.area, 'fill-opacity': 0.08 } },
  { id: 'q-area-line', type: 'line', source: 'q-area', layout: { 'line-join': 'round' }, paint: { 'line-color': Q.area, 'line-width': 2.2 } },
  { id: 'q-results-fill', type: 'fill', source: 'q-results', filter: isPolygon, paint: { 'fill-color': Q.result, 'fill-opacity': 0.25 } },
  { id: 'q-results-line', type: 'line', source: 'q-results', filter: ['!', isPoint], paint: { 'line-color': Q.result, 'line-width': 1.5 } },
  { id: 'q-results-pt', type: 'circle', source: 'q-results', filter: isPoint,
    paint: { 'circle-color': Q.result, 'circle-radius': ['interpolate', ['linear'], ['zoom'], 10, 3.5, 17, 6.5], 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1.2 } },
  { id: 'q-hl-fill', type: 'fill', source: 'q-hl', filter: isPolygon, paint: { 'fill-color': Q.highlight, 'fill-opacity': 0.35 } },
  { id: 'q-hl-line', type: 'line', source: 'q-hl', filter: ['!', isPoint], paint: { 'line-color': Q.highlight, 'line-width': 3 } },
  { id: 'q-hl-pt', type: 'circle', source: 'q-hl', filter: isPoint,
    paint: { 'circle-color': 'rgba(0,0,0,0)', 'circle-radius': 12, 'circle-stroke-color': Q.highlight, 'circle-stroke-width': 3.5 } },
  { id: 'q-draft-fill', type: 'fill', source: 'q-draft', filter: isPolygon, paint: { 'fill-color': Q.area, 'fill-opacity': 0.06 } },
  { id: 'q-draft-line', type: 'line', source: 'q-draft', filter: ['any', isLine, isPolygon],
    layout: { 'line-join': 'round' }, paint: { 'line-color': Q.area, 'line-width': 2, 'line-dasharray': [2, 1.5] } },
  { id: 'q-draft-pt', type: 'circle', source: 'q-draft', filter: ['all', isPoint, ['!', ['has', 'label']]],
    paint: { 'circle-color': '#ffffff', 'circle-radius': ['case', ['to-boolean', ['get', 'first']], 6, 4],
      'circle-stroke-color': Q.area, 'circle-stroke-width': 2 } },
  { id: 'q-draft-label', type: 'symbol', source: 'q-draft', filter: ['all', isPoint, ['has', 'label']],
    layout: { 'text-field': ['get', 'label'], 'text-size': 13, 'text-offset': [0, -1.2], 'text-allow-overlap': true, 'text-ignore-placement': true,
      'text-font': ['Noto Sans CJK SC Regular', 'Noto Sans CJK SC', 'Microsoft YaHei', 'PingFang SC'] },
    paint: { 'text-color': Q.area, 'text-halo-color': '#ffffff', 'text-halo-width': 2 } },
];

export async function loadStyle() {
  try {
    return { style: await getJSON(STYLE_URL), ok: true };
  } catch (error) {
    return { style: FALLBACK_STYLE, ok: false, error };
  }
}

/** The map with its overlays; `ready` resolves once the style and the overlays are in. */
export function createMap(container, style) {
  const map = new maplibregl.Map({
    container, style, center: [113, 28.2], zoom: 11,
    attributionControl: false, maxPitch: 0, dragRotate: false, pitchWithRotate: false, fadeDuration: 0,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  // Tile errors stay out of the console (the page says nothing of them); anything else is logged.
  map.on('error', (e) => {
    if (!(e.sourceId || e.tile || e.source)) console.warn('map:', e.error?.message ?? e);
  });
  const data = new Map(SOURCES.map((s) => [s, EMPTY]));
  const ready = new Promise((resolve) => {
    map.once('load', () => {
      for (const s of SOURCES) map.addSource(s, { type: 'geojson', data: data.get(s) });
      for (const l of OVERLAY) map.addLayer(l);
      resolve(map);
    });
  });
  let loaded = false;
  ready.then(() => { loaded = true; });
  return {
    map,
    ready,
    /** Replaces what an overlay source shows (kept until the style is in). */
    set(source, features) {
      const fc = { type: 'FeatureCollection', features };
      data.set(source, fc);
      if (loaded) map.getSource(source)?.setData(fc);
    },
    /** Shows only the context layers of these data layers (grids and the basemap always). */
    showContext(layers) {
      ready.then(() => {
        for (const l of map.getStyle().layers) {
          const g = l.metadata?.['onemap:group'];
          if (!g || ['base', 'grids'].includes(g)) continue;
          const vis = layers.includes(g) ? 'visible' : 'none';
          if ((l.layout?.visibility ?? 'visible') !== vis) map.setLayoutProperty(l.id, 'visibility', vis);
        }
      });
    },
  };
}
