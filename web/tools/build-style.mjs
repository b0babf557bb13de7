#!/usr/bin/env node
// Writes styles/screen.json (the big-screen map style), styles/query.json (the light desk map
// of the department query page) and styles/plan.json (the planner's map, app/views/plan/style.js)
// from app/palette.js.
//   node web/tools/build-style.mjs          write the files
//   node web/tools/build-style.mjs --check  exit 1 if a committed file differs
// The style has no `glyphs`: MapLibre draws label text with the browser's own fonts.
// Sizes go through the global state `ui_scale` (set by the page from its width, 1 at 1920 px)
// so lines and labels keep their proportions on a 4K wall running at device scale 1.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as P from '../app/palette.js';
import { planStyle } from '../app/views/plan/style.js';

const OUT = fileURLToPath(new URL('../../styles/screen.json', import.meta.url));
const OUT_QUERY = fileURLToPath(new URL('../../styles/query.json', import.meta.url));
const OUT_PLAN = fileURLToPath(new URL('../../styles/plan.json', import.meta.url));
const SRC = 'om';
const REG = ['Noto Sans CJK SC Regular', 'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', 'PingFang SC'];
const BOLD = ['Noto Sans CJK SC Bold', 'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', 'PingFang SC'];

const s = (n) => ['*', ['global-state', 'ui_scale'], n];
// Linear zoom ramp whose outputs are scaled: zr(z0, v0, z1, v1, …)
const zr = (...stops) => {
  const out = ['interpolate', ['linear'], ['zoom']];
  for (let i = 0; i < stops.length; i += 2) out.push(stops[i], s(stops[i + 1]));
  return out;
};
const group = (g) => ({ 'onemap:group': g });
const isCluster = ['to-boolean', ['get', 'cluster']];
const halo = { 'text-halo-color': 'rgba(4,9,20,0.9)', 'text-halo-width': s(1.4), 'text-halo-blur': 0.5 };

const layers = [];
layers.push({ id: 'background', type: 'background', paint: { 'background-color': P.BG }, metadata: group('base') });

// ── basemap ───────────────────────────────────────────────────────────────
layers.push({
  id: 'water', type: 'fill', source: SRC, 'source-layer': 'water', metadata: group('base'),
  paint: { 'fill-color': P.BASEMAP.water, 'fill-outline-color': P.BASEMAP.waterLine },
});
layers.push({
  id: 'water-line', type: 'line', source: SRC, 'source-layer': 'water', metadata: group('base'),
  paint: { 'line-color': P.BASEMAP.waterLine, 'line-width': zr(8, 0.5, 16, 2) },
});
const roadW = { expressway: [3, 14], arterial: [2, 10], secondary: [1.2, 7], branch: [0.6, 4] };
layers.push({
  id: 'roads', type: 'line', source: SRC, 'source-layer': 'roads', minzoom: 9, metadata: group('base'),
  layout: { 'line-cap': 'round', 'line-join': 'round', 'line-sort-key': ['match', ['get', 'class'], 'expressway', 4, 'arterial', 3, 'secondary', 2, 1] },
  paint: {
    'line-color': ['match', ['get', 'class'],
      'expressway', P.BASEMAP.road.expressway, 'arterial', P.BASEMAP.road.arterial,
      'secondary', P.BASEMAP.road.secondary, P.BASEMAP.road.branch],
    'line-width': ['interpolate', ['exponential', 1.6], ['zoom'],
      10, ['match', ['get', 'class'], 'expressway', s(roadW.expressway[0]), 'arterial', s(roadW.arterial[0]), 'secondary', s(roadW.secondary[0]), s(roadW.branch[0])],
      18, ['match', ['get', 'class'], 'expressway', s(roadW.expressway[1]), 'arterial', s(roadW.arterial[1]), 'secondary', s(roadW.secondary[1]), s(roadW.branch[1])]],
  },
});

// ── grids: fills (only the deepest level shown at a zoom, a patchwork of opacities) ──
const levelEq = (l) => ['all', ['==', ['get', 'level'], l], ['==', ['get', 'kind'], 'comprehensive']];
const fillUntil = { district: 9, street: 11, community: 13, grid: 15, micro: 24 };
// The live load of a grid, set by the screen as feature-state { open, overdue } (absent: 0).
const fsOpen = ['coalesce', ['feature-state', 'open'], 0];
const fsOverdue = ['coalesce', ['feature-state', 'overdue'], 0];
const hasOpen = ['>', fsOpen, 0];
const loadColor = ['interpolate', ['linear'], ['/', fsOverdue, ['max', fsOpen, 1]],
  0, P.GRID_LOAD.open, 0.5, P.GRID_LOAD.mixed, 1, P.GRID_LOAD.overdue];
const loadOpacity = (l) => {
  const out = ['interpolate', ['linear'], fsOpen];
  P.GRID_LOAD.stops[l].forEach((v, i) => out.push(v, P.GRID_LOAD.opacity[i]));
  return out;
};
for (const l of P.GRID_LEVELS) {
  const st = P.GRID_STYLE[l];
  layers.push({
    id: `grids-fill-${l}`, type: 'fill', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
    minzoom: st.from, maxzoom: fillUntil[l], filter: levelEq(l),
    paint: {
      // grids with open work orders: tinted by the live load (feature-state, see GRID_LOAD)
      'fill-color': ['case', hasOpen, loadColor, st.fill],
      // else vary the tint by the code's last digit so neighbours read as separate cells
      'fill-opacity': ['case', hasOpen, loadOpacity(l),
        ['match', ['%', ['to-number', ['slice', ['get', 'code'], -1], 0], 4], 0, 0.05, 1, 0.09, 2, 0.13, 0.07]],
    },
  });
}
layers.push({
  id: 'grids-selected-fill', type: 'fill', source: SRC, 'source-layer': 'grids', metadata: group('selection'),
  filter: ['==', ['get', 'code'], ['global-state', 'selected']],
  paint: { 'fill-color': P.SELECTED, 'fill-opacity': 0.12 },
});

// ── buildings (3D) ─────────────────────────────────────────────────────────
const taxRamp = ['interpolate', ['linear'], ['to-number', ['get', 'tax_10k_cny'], 0]];
for (const [v, c] of P.TAX_RAMP) taxRamp.push(v, c);
layers.push({
  id: 'buildings', type: 'fill-extrusion', source: SRC, 'source-layer': 'buildings', minzoom: 12, metadata: group('buildings'),
  paint: {
    'fill-extrusion-color': taxRamp,
    'fill-extrusion-height': ['to-number', ['get', 'height_m'], 10],
    'fill-extrusion-base': 0,
    'fill-extrusion-opacity': 0.85,
  },
});

// ── grid lines, deepest first so coarser boundaries draw on top ──────────
for (const l of [...P.GRID_LEVELS].reverse()) {
  const st = P.GRID_STYLE[l];
  if (l === 'district' || l === 'street') {
    layers.push({
      id: `grids-glow-${l}`, type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
      minzoom: st.from, filter: levelEq(l), layout: { 'line-join': 'round' },
      paint: { 'line-color': st.line, 'line-opacity': 0.25, 'line-blur': s(4), 'line-width': zr(8, st.width * 3, 16, st.width * 5) },
    });
  }
  layers.push({
    id: `grids-line-${l}`, type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
    minzoom: st.from, filter: levelEq(l), layout: { 'line-join': 'round' },
    paint: { 'line-color': st.line, 'line-opacity': 0.9, 'line-width': zr(st.from, st.width * 0.7, st.from + 5, st.width * 1.4) },
  });
}
layers.push({
  id: 'grids-line-dedicated', type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('dedicated'),
  minzoom: P.DEDICATED.from, filter: ['==', ['get', 'kind'], 'dedicated'],
  paint: { 'line-color': P.DEDICATED.line, 'line-width': zr(13, P.DEDICATED.width, 18, P.DEDICATED.width * 1.6), 'line-dasharray': [3, 2] },
});
layers.push({
  id: 'grids-selected-line', type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('selection'),
  filter: ['==', ['get', 'code'], ['global-state', 'selected']], layout: { 'line-join': 'round' },
  paint: { 'line-color': P.SELECTED, 'line-width': zr(8, 3, 18, 5) },
});

// ── point layers. Below a zoom the server sends clusters (cluster=true, count and per-class
// counts, keys absent when 0); above it the features themselves, names only from z14. ──
const num = (k) => ['to-number', ['get', k], 0];
// Clusters of the three point layers come from the same places (the members' centre), so camera
// and risk clusters are drawn as satellites left and right of the work-order bubble.
const CAM_OFFSET = [-11, -9];
const RISK_OFFSET = [11, -9];
// Counts of work orders always show; camera and risk counts give way when crowded.
const countLabel = (field, size, color, { always = false, offset = [0, 0] } = {}) => ({
  layout: {
    'text-field': ['number-format', field, {}], 'text-font': BOLD, 'text-size': s(size),
    'text-allow-overlap': always, 'text-padding': s(1), 'text-offset': offset.map((v) => v / size),
  },
  paint: { 'text-color': color, ...halo },
});

// addresses: clusters below z16 (count, households), points from z16
layers.push({
  id: 'addresses-cluster', type: 'circle', source: SRC, 'source-layer': 'addresses', minzoom: 14, metadata: group('addresses'),
  filter: isCluster,
  paint: {
    'circle-color': 'rgba(176,190,197,0.14)', 'circle-stroke-color': 'rgba(176,190,197,0.5)', 'circle-stroke-width': s(0.8),
    'circle-radius': ['interpolate', ['linear'], num('count'), 1, s(4), 30, s(8), 300, s(14)],
  },
});
layers.push({
  id: 'addresses', type: 'circle', source: SRC, 'source-layer': 'addresses', minzoom: 16, metadata: group('addresses'),
  filter: ['!', isCluster],
  paint: { 'circle-color': P.ADDRESS, 'circle-opacity': 0.7, 'circle-radius': zr(16, 2, 19, 4) },
});

// risks: clusters below z12 coloured by the most severe level present (l_1 … l_4 counts),
// points (and construction/flood polygons) from z12
const riskColor = ['match', ['to-number', ['get', 'level'], 4], 1, P.RISK_LEVELS[1], 2, P.RISK_LEVELS[2], 3, P.RISK_LEVELS[3], P.RISK_LEVELS[4]];
const worstLevel = ['case', ['has', 'l_1'], 1, ['has', 'l_2'], 2, ['has', 'l_3'], 3, 4];
const riskClusterColor = ['case', ['has', 'l_1'], P.RISK_LEVELS[1], ['has', 'l_2'], P.RISK_LEVELS[2], ['has', 'l_3'], P.RISK_LEVELS[3], P.RISK_LEVELS[4]];
layers.push({
  id: 'risks-area', type: 'fill', source: SRC, 'source-layer': 'risks', minzoom: 12, metadata: group('risks'),
  filter: ['==', ['geometry-type'], 'Polygon'],
  paint: { 'fill-color': riskColor, 'fill-opacity': 0.22 },
});
layers.push({
  id: 'risks-area-line', type: 'line', source: SRC, 'source-layer': 'risks', minzoom: 12, metadata: group('risks'),
  filter: ['==', ['geometry-type'], 'Polygon'],
  paint: { 'line-color': riskColor, 'line-width': zr(12, 1, 17, 2), 'line-dasharray': [2, 1] },
});

// cameras: clusters below z13 (s_online, s_offline, s_fault), points from z13
const camColor = ['match', ['get', 'status'], 'online', P.CAMERA_STATUS.online, 'fault', P.CAMERA_STATUS.fault, P.CAMERA_STATUS.offline];
// share online: ≥95 % green, 80 % amber, ≤60 % red
const camShare = ['/', num('s_online'), ['max', num('count'), 1]];
const camClusterColor = ['interpolate', ['linear'], camShare, 0.6, P.CAMERA_SHARE_LOW, 0.8, P.CAMERA_STATUS.fault, 0.95, P.CAMERA_STATUS.online];
layers.push({
  id: 'cameras-cluster', type: 'circle', source: SRC, 'source-layer': 'cameras', minzoom: 11, metadata: group('cameras'),
  filter: isCluster,
  layout: { 'circle-sort-key': num('count') },
  paint: {
    'circle-color': P.BG, 'circle-opacity': 0.75,
    'circle-radius': ['interpolate', ['linear'], num('count'), 1, s(4), 10, s(7.5), 40, s(11), 150, s(15)],
    'circle-stroke-color': camClusterColor, 'circle-stroke-width': s(1.6),
    'circle-translate': CAM_OFFSET,
  },
});
// online is the norm: small and quiet; offline and faulty cameras stand out
const camOnline = ['==', ['get', 'status'], 'online'];
layers.push({
  id: 'cameras', type: 'circle', source: SRC, 'source-layer': 'cameras', minzoom: 13, metadata: group('cameras'),
  filter: ['!', isCluster],
  layout: { 'circle-sort-key': ['match', ['get', 'status'], 'fault', 2, 'offline', 1, 0] },
  paint: {
    'circle-color': ['case', camOnline, camColor, P.BG],
    'circle-opacity': ['case', camOnline, 0.55, 1],
    'circle-radius': ['interpolate', ['linear'], ['zoom'], 13, ['case', camOnline, s(1.8), s(3.2)], 18, ['case', camOnline, s(4), s(6.5)]],
    'circle-stroke-color': camColor,
    'circle-stroke-width': ['interpolate', ['linear'], ['zoom'], 13, ['case', camOnline, 0, s(1.5)], 18, ['case', camOnline, s(1), s(2.5)]],
  },
});

layers.push({
  id: 'risks-cluster', type: 'circle', source: SRC, 'source-layer': 'risks', minzoom: 10, metadata: group('risks'),
  filter: isCluster,
  layout: { 'circle-sort-key': ['-', 10, worstLevel] },
  paint: {
    'circle-color': riskClusterColor, 'circle-opacity': 0.9,
    'circle-radius': ['interpolate', ['linear'], num('count'), 1, s(4), 10, s(7.5), 40, s(11), 150, s(15)],
    'circle-stroke-color': 'rgba(255,255,255,0.75)', 'circle-stroke-width': s(0.8),
    'circle-translate': RISK_OFFSET,
  },
});
layers.push({
  id: 'risks-point', type: 'circle', source: SRC, 'source-layer': 'risks', minzoom: 12, metadata: group('risks'),
  filter: ['all', ['!', isCluster], ['==', ['geometry-type'], 'Point']],
  layout: { 'circle-sort-key': ['-', 10, ['to-number', ['get', 'level'], 4]] },
  paint: {
    'circle-color': riskColor,
    'circle-radius': ['interpolate', ['linear'], ['zoom'],
      12, ['match', ['to-number', ['get', 'level'], 4], 1, s(4.5), 2, s(3.5), s(2.2)],
      17, ['match', ['to-number', ['get', 'level'], 4], 1, s(9), 2, s(8), s(6.5)]],
    'circle-stroke-color': 'rgba(255,255,255,0.85)',
    'circle-stroke-width': ['interpolate', ['linear'], ['zoom'], 12, ['match', ['to-number', ['get', 'level'], 4], 1, s(1), 2, s(0.6), 0], 17, s(1.5)],
  },
});

// events (work orders): clusters below z16 sized by the open orders (count, open, overdue);
// clusters of closed orders only are a faint dot. Orders themselves from z16.
const ev = (st) => P.EVENT_STATUS[st];
// share of the open orders that are overdue: blue (none) → red (all)
const overdueShare = ['/', num('overdue'), ['max', num('open'), 1]];
const overdueRamp = (a, b) => ['interpolate', ['linear'], overdueShare, 0, a, 0.5, P.EVENT_CLUSTER_MIXED, 1, b];
layers.push({
  id: 'events-cluster-closed', type: 'circle', source: SRC, 'source-layer': 'events', minzoom: 12, metadata: group('events'),
  filter: ['all', isCluster, ['<=', num('open'), 0]],
  paint: { 'circle-color': ev('closed'), 'circle-opacity': 0.45, 'circle-radius': zr(12, 1.8, 16, 3) },
});
layers.push({
  id: 'events-cluster', type: 'circle', source: SRC, 'source-layer': 'events', metadata: group('events'),
  filter: ['all', isCluster, ['>', num('open'), 0]],
  layout: { 'circle-sort-key': num('open') },
  paint: {
    'circle-color': overdueRamp(P.EVENT_CLUSTER, P.EVENT_CLUSTER_OVERDUE), 'circle-opacity': 0.72,
    'circle-radius': ['interpolate', ['linear'], num('open'), 1, s(7), 5, s(9.5), 20, s(13), 80, s(19), 300, s(27)],
    'circle-stroke-color': overdueRamp('#7fb2ff', ev('overdue')), 'circle-stroke-width': s(1.2),
  },
});
layers.push({
  id: 'events', type: 'circle', source: SRC, 'source-layer': 'events', minzoom: 16, metadata: group('events'),
  filter: ['!', isCluster],
  layout: { 'circle-sort-key': ['match', ['get', 'status'], 'overdue', 5, 'new', 4, 'dispatched', 3, 'processing', 2, 1] },
  paint: {
    'circle-color': ['match', ['get', 'status'], 'new', ev('new'), 'dispatched', ev('dispatched'),
      'processing', ev('processing'), 'overdue', ev('overdue'), ev('closed')],
    'circle-radius': ['interpolate', ['linear'], ['zoom'],
      16, ['case', ['==', ['get', 'status'], 'closed'], s(2.5), s(5.5)],
      19, ['case', ['==', ['get', 'status'], 'closed'], s(4), s(8)]],
    'circle-opacity': ['case', ['==', ['get', 'status'], 'closed'], 0.45, 0.95],
    'circle-stroke-color': '#ffffff', 'circle-stroke-width': ['case', ['==', ['get', 'status'], 'closed'], 0, s(1.2)],
  },
});

// ── labels: roads, then grids from fine to coarse (coarser placed first). Grid names come from
// grid_labels, one point per grid in exactly one tile, so a name is drawn once however it is cut. ─
layers.push({
  id: 'roads-label', type: 'symbol', source: SRC, 'source-layer': 'roads', minzoom: 14, metadata: group('base'),
  layout: { 'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': s(11) },
  paint: { 'text-color': P.BASEMAP.roadLabel, ...halo },
});
layers.push({
  id: 'grids-label-dedicated', type: 'symbol', source: SRC, 'source-layer': 'grid_labels', minzoom: 14, metadata: group('dedicated'),
  filter: ['==', ['get', 'kind'], 'dedicated'],
  layout: { 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': s(12) },
  paint: { 'text-color': P.DEDICATED.line, ...halo },
});
const gridLabel = (l) => {
  const st = P.GRID_STYLE[l];
  const coarse = l === 'district' || l === 'street';
  layers.push({
    id: `grids-label-${l}`, type: 'symbol', source: SRC, 'source-layer': 'grid_labels', metadata: group('grids'),
    minzoom: Math.max(st.label[0], st.from), maxzoom: st.label[1], filter: levelEq(l),
    layout: {
      'text-field': ['get', 'name'], 'text-font': coarse ? BOLD : REG, 'text-size': s(st.text),
      'text-letter-spacing': coarse ? 0.15 : 0.05, 'text-padding': s(4), 'text-max-width': 8,
      'symbol-sort-key': P.GRID_LEVELS.indexOf(l),
    },
    paint: { 'text-color': coarse ? '#e6f7ff' : st.line, ...halo },
  });
};
for (const l of ['micro', 'grid', 'community']) gridLabel(l);
// cluster counts (symbols higher in the list are placed first): over the community and finer
// grid labels, under the street and district names; small clusters go without a number
layers.push({
  id: 'cameras-cluster-count', type: 'symbol', source: SRC, 'source-layer': 'cameras', minzoom: 11, metadata: group('cameras'),
  filter: ['all', isCluster, ['>=', num('count'), 10]], ...countLabel(num('count'), 9.5, '#e6fff7', { offset: CAM_OFFSET }),
});
layers.push({
  id: 'risks-cluster-count', type: 'symbol', source: SRC, 'source-layer': 'risks', minzoom: 10, metadata: group('risks'),
  filter: ['all', isCluster, ['>=', num('count'), 10]], ...countLabel(num('count'), 9.5, '#ffffff', { offset: RISK_OFFSET }),
});
layers.push({
  id: 'events-cluster-count', type: 'symbol', source: SRC, 'source-layer': 'events', metadata: group('events'),
  filter: ['all', isCluster, ['>', num('open'), 0]], ...countLabel(num('open'), 11, '#ffffff', { always: true }),
});

for (const l of ['street', 'district']) gridLabel(l);

// ── live: new work orders pulse for a few seconds. The page fills the GeoJSON source `live` with a
// bounded set of recent orders (feature id = slot) and animates each through its feature-state:
// `ring` runs 0 → 1 for each beat of the expanding ring, `fade` falls 1 → 0 at the end of its life.
const ring = ['coalesce', ['feature-state', 'ring'], 0];
const fade = ['coalesce', ['feature-state', 'fade'], 1];
const sourceColor = ['match', ['get', 'source'], ...P.EVENT_SOURCES.flatMap((k) => [k, P.SOURCE_COLORS[k]]), P.EVENT_STATUS.new];
layers.push({
  id: 'live-pulse-ring', type: 'circle', source: 'live', metadata: group('live'),
  paint: {
    'circle-color': sourceColor,
    'circle-opacity': ['*', 0.22, ['-', 1, ring], fade],
    'circle-radius': ['interpolate', ['linear'], ring, 0, s(6), 1, s(36)],
    'circle-stroke-color': sourceColor,
    'circle-stroke-width': s(2.2),
    'circle-stroke-opacity': ['*', ['-', 1, ring], fade],
  },
});
layers.push({
  id: 'live-pulse-core', type: 'circle', source: 'live', metadata: group('live'),
  paint: {
    'circle-color': sourceColor, 'circle-radius': s(5.5), 'circle-opacity': fade,
    'circle-stroke-color': '#ffffff', 'circle-stroke-width': s(1.6), 'circle-stroke-opacity': fade,
  },
});

const style = {
  version: 8,
  name: 'onemap screen 大屏',
  metadata: { 'onemap:generator': 'web/tools/build-style.mjs (edit that, not this file)' },
  state: { ui_scale: { default: 1 }, selected: { default: '' } },
  sources: {
    [SRC]: { type: 'vector', url: '{{origin}}/tiles/all.json' },
    live: { type: 'geojson', data: { type: 'FeatureCollection', features: [] } },
  },
  light: { anchor: 'viewport', color: '#cfe3ff', intensity: 0.35, position: [1.3, 210, 40] },
  layers,
};

// ── the query page's map: light, quiet context for a desk ──────────────────
// Grid boundaries of every level with their names, roads, water, buildings and the point layers
// as small dots (their clusters as faint circles). Layers carry metadata "onemap:group" naming the
// data layer they show, so the page can show only the layers a query looks at. The page adds its
// own overlays (area, draft, results, highlight) at run time.
function queryStyle() {
  const Q = P.QUERY;
  const L = [];
  const notCluster = ['!', isCluster];
  L.push({ id: 'background', type: 'background', paint: { 'background-color': Q.bg }, metadata: group('base') });
  L.push({ id: 'water', type: 'fill', source: SRC, 'source-layer': 'water', metadata: group('base'),
    paint: { 'fill-color': Q.water, 'fill-outline-color': Q.waterLine } });
  L.push({ id: 'roads-case', type: 'line', source: SRC, 'source-layer': 'roads', minzoom: 10, metadata: group('base'),
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: { 'line-color': Q.roadCase, 'line-width': ['interpolate', ['exponential', 1.6], ['zoom'], 10, 1.5, 18, 12] } });
  L.push({ id: 'roads', type: 'line', source: SRC, 'source-layer': 'roads', minzoom: 10, metadata: group('base'),
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: { 'line-color': Q.road, 'line-width': ['interpolate', ['exponential', 1.6], ['zoom'], 10, 0.8, 18, 9] } });
  L.push({ id: 'buildings', type: 'fill', source: SRC, 'source-layer': 'buildings', minzoom: 12, metadata: group('buildings'),
    paint: { 'fill-color': Q.building, 'fill-outline-color': Q.buildingLine } });
  const width = { district: [2.4, 3.2], street: [1.6, 2.6], community: [1.1, 1.8], grid: [0.7, 1.2], micro: [0.4, 0.8] };
  for (const l of [...P.GRID_LEVELS].reverse()) {
    const st = P.GRID_STYLE[l];
    L.push({ id: `grids-line-${l}`, type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
      minzoom: st.from, filter: ['all', ['==', ['get', 'level'], l], ['==', ['get', 'kind'], 'comprehensive']],
      layout: { 'line-join': 'round' },
      paint: { 'line-color': Q.grid[l], 'line-width': ['interpolate', ['linear'], ['zoom'], st.from, width[l][0], st.from + 5, width[l][1]] } });
  }
  L.push({ id: 'grids-line-dedicated', type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
    minzoom: P.DEDICATED.from, filter: ['==', ['get', 'kind'], 'dedicated'],
    paint: { 'line-color': Q.dedicated, 'line-width': 1.2, 'line-dasharray': [3, 2] } });
  const riskColor = ['match', ['to-number', ['get', 'level'], 4], 1, P.RISK_LEVELS[1], 2, P.RISK_LEVELS[2], 3, P.RISK_LEVELS[3], P.RISK_LEVELS[4]];
  L.push({ id: 'risks-area', type: 'fill', source: SRC, 'source-layer': 'risks', minzoom: 12, metadata: group('risks'),
    filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': riskColor, 'fill-opacity': 0.15 } });
  const faintCluster = (name, color, minzoom) => L.push({
    id: `${name}-cluster`, type: 'circle', source: SRC, 'source-layer': name, minzoom, metadata: group(name),
    filter: isCluster,
    paint: { 'circle-color': color, 'circle-opacity': 0.18, 'circle-stroke-color': color, 'circle-stroke-opacity': 0.45,
      'circle-stroke-width': 0.8, 'circle-radius': ['interpolate', ['linear'], num('count'), 1, 3, 50, 7, 500, 12] },
  });
  const dot = (name, color, minzoom, r, extra = {}) => L.push({
    id: name, type: 'circle', source: SRC, 'source-layer': name, minzoom, metadata: group(name),
    filter: extra.filter ?? notCluster,
    paint: { 'circle-color': color, 'circle-opacity': 0.75, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 0.8,
      'circle-radius': ['interpolate', ['linear'], ['zoom'], minzoom, r[0], 18, r[1]] },
  });
  faintCluster('addresses', Q.address, 14);
  dot('addresses', Q.address, 16, [1.5, 3]);
  faintCluster('events', Q.event, 11);
  dot('events', Q.event, 16, [2.5, 5]);
  faintCluster('cameras', Q.camera, 11);
  dot('cameras', Q.camera, 13, [2, 4.5]);
  faintCluster('risks', P.RISK_LEVELS[2], 10);
  dot('risks', riskColor, 12, [2.5, 5.5], { filter: ['all', notCluster, ['==', ['geometry-type'], 'Point']] });
  const qHalo = { 'text-halo-color': 'rgba(255,255,255,0.9)', 'text-halo-width': 1.4 };
  L.push({ id: 'roads-label', type: 'symbol', source: SRC, 'source-layer': 'roads', minzoom: 14, metadata: group('base'),
    layout: { 'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': 11 },
    paint: { 'text-color': Q.roadLabel, ...qHalo } });
  for (const l of ['micro', 'grid', 'community', 'street', 'district']) {
    const st = P.GRID_STYLE[l];
    const coarse = l === 'district' || l === 'street';
    L.push({ id: `grids-label-${l}`, type: 'symbol', source: SRC, 'source-layer': 'grid_labels', metadata: group('grids'),
      minzoom: Math.max(st.label[0], st.from), maxzoom: st.label[1],
      filter: ['all', ['==', ['get', 'level'], l], ['==', ['get', 'kind'], 'comprehensive']],
      layout: { 'text-field': ['get', 'name'], 'text-font': coarse ? BOLD : REG, 'text-size': Math.max(11, st.text - 2),
        'text-padding': 4, 'text-max-width': 8, 'symbol-sort-key': P.GRID_LEVELS.indexOf(l) },
      paint: { 'text-color': coarse ? Q.grid.district : Q.gridLabel, ...qHalo } });
  }
  return {
    version: 8,
    name: 'onemap query 查询',
    metadata: { 'onemap:generator': 'web/tools/build-style.mjs (edit that, not this file)' },
    sources: { [SRC]: { type: 'vector', url: '{{origin}}/tiles/all.json' } },
    layers: L,
  };
}

let stale = false;
for (const [out, st] of [[OUT, style], [OUT_QUERY, queryStyle()], [OUT_PLAN, planStyle()]]) {
  const text = JSON.stringify(st, null, 1) + '\n';
  if (process.argv.includes('--check')) {
    let cur = '';
    try { cur = readFileSync(out, 'utf8'); } catch { /* missing: stale */ }
    if (cur !== text) { console.error(`${out} is out of date: run node web/tools/build-style.mjs`); stale = true; }
  } else {
    writeFileSync(out, text);
    console.log(`wrote ${out} (${st.layers.length} layers)`);
  }
}
if (stale) process.exit(1);
