#!/usr/bin/env node
// Writes styles/screen.json (the big-screen map style) from app/palette.js.
//   node web/tools/build-style.mjs          write the file
//   node web/tools/build-style.mjs --check  exit 1 if the committed file differs
// The style has no `glyphs`: MapLibre draws label text with the browser's own fonts.
// Sizes go through the global state `ui_scale` (set by the page from its width, 1 at 1920 px)
// so lines and labels keep their proportions on a 4K wall running at device scale 1.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as P from '../app/palette.js';

const OUT = fileURLToPath(new URL('../../styles/screen.json', import.meta.url));
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
for (const l of P.GRID_LEVELS) {
  const st = P.GRID_STYLE[l];
  layers.push({
    id: `grids-fill-${l}`, type: 'fill', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
    minzoom: st.from, maxzoom: fillUntil[l], filter: levelEq(l),
    paint: {
      'fill-color': st.fill,
      // vary the tint by the code's last digit so neighbours read as separate cells
      'fill-opacity': ['match', ['%', ['to-number', ['slice', ['get', 'code'], -1], 0], 4], 0, 0.05, 1, 0.09, 2, 0.13, 0.07],
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

// ── risks ────────────────────────────────────────────────────────────────
const riskColor = ['match', ['to-number', ['get', 'level'], 4], 1, P.RISK_LEVELS[1], 2, P.RISK_LEVELS[2], 3, P.RISK_LEVELS[3], P.RISK_LEVELS[4]];
layers.push({
  id: 'risks-area', type: 'fill', source: SRC, 'source-layer': 'risks', minzoom: 10, metadata: group('risks'),
  filter: ['==', ['geometry-type'], 'Polygon'],
  paint: { 'fill-color': riskColor, 'fill-opacity': 0.28, 'fill-outline-color': riskColor },
});
layers.push({
  id: 'risks-area-line', type: 'line', source: SRC, 'source-layer': 'risks', minzoom: 10, metadata: group('risks'),
  filter: ['==', ['geometry-type'], 'Polygon'],
  paint: { 'line-color': riskColor, 'line-width': s(1.5) },
});
layers.push({
  id: 'risks-point', type: 'circle', source: SRC, 'source-layer': 'risks', minzoom: 10, metadata: group('risks'),
  filter: ['==', ['geometry-type'], 'Point'],
  layout: { 'circle-sort-key': ['-', 10, ['to-number', ['get', 'level'], 4]] },
  paint: {
    'circle-color': riskColor, 'circle-radius': zr(10, 3.5, 16, 8),
    'circle-stroke-color': 'rgba(255,255,255,0.85)', 'circle-stroke-width': zr(10, 0.6, 16, 1.5),
  },
});

// ── cameras ──────────────────────────────────────────────────────────────
layers.push({
  id: 'cameras', type: 'circle', source: SRC, 'source-layer': 'cameras', minzoom: 11, metadata: group('cameras'),
  paint: {
    'circle-color': ['match', ['get', 'status'], 'online', P.CAMERA_STATUS.online, 'fault', P.CAMERA_STATUS.fault, P.CAMERA_STATUS.offline],
    'circle-radius': zr(11, 2.5, 17, 6),
    'circle-stroke-color': P.BG, 'circle-stroke-width': s(1),
  },
});

// ── addresses ────────────────────────────────────────────────────────────
layers.push({
  id: 'addresses-cluster', type: 'circle', source: SRC, 'source-layer': 'addresses', minzoom: 14, metadata: group('addresses'),
  filter: isCluster,
  paint: {
    'circle-color': 'rgba(176,190,197,0.18)', 'circle-stroke-color': 'rgba(176,190,197,0.6)', 'circle-stroke-width': s(1),
    'circle-radius': ['interpolate', ['linear'], ['to-number', ['get', 'count'], 1], 1, s(6), 50, s(11), 500, s(18)],
  },
});
layers.push({
  id: 'addresses-cluster-count', type: 'symbol', source: SRC, 'source-layer': 'addresses', minzoom: 14, metadata: group('addresses'),
  filter: isCluster,
  layout: { 'text-field': ['to-string', ['get', 'count']], 'text-font': REG, 'text-size': s(10), 'text-allow-overlap': true },
  paint: { 'text-color': '#cfd8dc' },
});
layers.push({
  id: 'addresses', type: 'circle', source: SRC, 'source-layer': 'addresses', minzoom: 14, metadata: group('addresses'),
  filter: ['!', isCluster],
  paint: { 'circle-color': P.ADDRESS, 'circle-opacity': 0.7, 'circle-radius': zr(14, 1.5, 18, 3.5) },
});

// ── events (work orders) ─────────────────────────────────────────────────
const ev = (st) => P.EVENT_STATUS[st];
layers.push({
  id: 'events-cluster', type: 'circle', source: SRC, 'source-layer': 'events', metadata: group('events'),
  filter: isCluster,
  paint: {
    'circle-color': P.EVENT_CLUSTER, 'circle-opacity': 0.55,
    'circle-radius': ['interpolate', ['linear'], ['to-number', ['get', 'count'], 1], 1, s(8), 10, s(12), 100, s(18), 1000, s(26), 10000, s(34)],
    'circle-stroke-color': ['case', ['>', ['to-number', ['get', 'overdue'], 0], 0], ev('overdue'), '#7fb2ff'],
    'circle-stroke-width': ['case', ['>', ['to-number', ['get', 'overdue'], 0], 0], s(2.5), s(1.2)],
  },
});
layers.push({
  id: 'events-cluster-count', type: 'symbol', source: SRC, 'source-layer': 'events', metadata: group('events'),
  filter: isCluster,
  layout: {
    'text-field': ['number-format', ['to-number', ['get', 'count'], 0], {}],
    'text-font': BOLD, 'text-size': s(12), 'text-allow-overlap': true, 'text-ignore-placement': true,
  },
  paint: { 'text-color': '#ffffff', ...halo },
});
layers.push({
  id: 'events', type: 'circle', source: SRC, 'source-layer': 'events', minzoom: 14, metadata: group('events'),
  filter: ['!', isCluster],
  layout: { 'circle-sort-key': ['match', ['get', 'status'], 'overdue', 5, 'new', 4, 'dispatched', 3, 'processing', 2, 1] },
  paint: {
    'circle-color': ['match', ['get', 'status'], 'new', ev('new'), 'dispatched', ev('dispatched'),
      'processing', ev('processing'), 'overdue', ev('overdue'), ev('closed')],
    'circle-radius': ['interpolate', ['linear'], ['zoom'],
      14, ['case', ['==', ['get', 'status'], 'closed'], s(2), s(4.5)],
      18, ['case', ['==', ['get', 'status'], 'closed'], s(3.5), s(7)]],
    'circle-opacity': ['case', ['==', ['get', 'status'], 'closed'], 0.5, 0.95],
    'circle-stroke-color': '#ffffff', 'circle-stroke-width': ['case', ['==', ['get', 'status'], 'closed'], 0, s(1)],
  },
});

// ── labels: roads, then grids from fine to coarse (coarser placed first) ─
layers.push({
  id: 'roads-label', type: 'symbol', source: SRC, 'source-layer': 'roads', minzoom: 14, metadata: group('base'),
  layout: { 'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': s(11) },
  paint: { 'text-color': P.BASEMAP.roadLabel, ...halo },
});
layers.push({
  id: 'grids-label-dedicated', type: 'symbol', source: SRC, 'source-layer': 'grids', minzoom: 14, metadata: group('dedicated'),
  filter: ['==', ['get', 'kind'], 'dedicated'],
  layout: { 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': s(12) },
  paint: { 'text-color': P.DEDICATED.line, ...halo },
});
for (const l of [...P.GRID_LEVELS].reverse()) {
  const st = P.GRID_STYLE[l];
  const coarse = l === 'district' || l === 'street';
  layers.push({
    id: `grids-label-${l}`, type: 'symbol', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
    minzoom: Math.max(st.label[0], st.from), maxzoom: st.label[1], filter: levelEq(l),
    layout: {
      'text-field': ['get', 'name'], 'text-font': coarse ? BOLD : REG, 'text-size': s(st.text),
      'text-letter-spacing': coarse ? 0.15 : 0.05, 'text-padding': s(4), 'text-max-width': 8,
      'symbol-sort-key': P.GRID_LEVELS.indexOf(l),
    },
    paint: { 'text-color': coarse ? '#e6f7ff' : st.line, ...halo },
  });
}

const style = {
  version: 8,
  name: 'onemap screen 大屏',
  metadata: { 'onemap:generator': 'web/tools/build-style.mjs (edit that, not this file)' },
  state: { ui_scale: { default: 1 }, selected: { default: '' } },
  sources: {
    [SRC]: { type: 'vector', url: '{{origin}}/tiles/all.json' },
  },
  light: { anchor: 'viewport', color: '#cfe3ff', intensity: 0.35, position: [1.3, 210, 40] },
  layers,
};

const text = JSON.stringify(style, null, 1) + '\n';
if (process.argv.includes('--check')) {
  const cur = readFileSync(OUT, 'utf8');
  if (cur !== text) { console.error(`${OUT} is out of date: run node web/tools/build-style.mjs`); process.exit(1); }
} else {
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT} (${layers.length} layers)`);
}
