// The planner's map style, as plain data from palette.js: tools/build-style.mjs writes it to
// styles/plan.json (served with {{origin}} filled in); the page falls back to the overlays alone
// (planStyle({ context: false })) when the style service is unavailable.
//
// Context: the published grids of every level from the server's tiles, quiet and grey, over a
// light basemap (water, roads, buildings, addresses from z16). Overlays: GeoJSON sources the page
// fills at run time (the style declares them empty):
//   p-draft    the plan's draft grids (properties as GET /api/plans/{id}: level, state, name …),
//              lines by level, fills by state; the editable level (global state `edit_level`)
//              stands out, the others are drawn fainter
//   p-label    one point per draft grid of the editable level (its name), so a name shows once
//   p-sel      the selected draft grids
//   p-viol     validation findings (property `i`, the row; global state `viol` highlights one)
//   p-hist     the geometry of a grid version hovered in the history
//   p-line     the split line being drawn (LineString and its Point vertices)
//   p-handles  vertex handles (kind=vertex, `shared` = number of editable grids using it) and
//              mid-edge handles (kind=mid); `active` marks the one being dragged
import * as P from '../../palette.js';

const SRC = 'om';
export const REG = ['Noto Sans CJK SC Regular', 'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', 'PingFang SC'];
const BOLD = ['Noto Sans CJK SC Bold', 'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', 'PingFang SC'];
export const OVERLAY_SOURCES = ['p-draft', 'p-label', 'p-sel', 'p-viol', 'p-hist', 'p-line', 'p-handles'];
export const DRAFT_LEVELS = ['street', 'community', 'grid', 'micro'];
const EMPTY = { type: 'FeatureCollection', features: [] };
const group = (g) => ({ 'onemap:group': g });
const LEVEL_FROM = { district: 0, street: 9, community: 11, grid: 13, micro: 15 };
const LABEL = { district: [0, 10.5], street: [9, 12.5], community: [11, 14.5], grid: [13, 16.5], micro: [16.5, 23] };

function contextLayers() {
  const C = P.PLAN;
  const L = [];
  const isCluster = ['to-boolean', ['get', 'cluster']];
  L.push({ id: 'water', type: 'fill', source: SRC, 'source-layer': 'water', metadata: group('base'), paint: { 'fill-color': C.water } });
  L.push({ id: 'roads-case', type: 'line', source: SRC, 'source-layer': 'roads', minzoom: 10, metadata: group('base'),
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: { 'line-color': C.roadCase, 'line-width': ['interpolate', ['exponential', 1.6], ['zoom'], 10, 1.5, 18, 12] } });
  L.push({ id: 'roads', type: 'line', source: SRC, 'source-layer': 'roads', minzoom: 10, metadata: group('base'),
    layout: { 'line-cap': 'round', 'line-join': 'round' },
    paint: { 'line-color': C.road, 'line-width': ['interpolate', ['exponential', 1.6], ['zoom'], 10, 0.8, 18, 9] } });
  L.push({ id: 'buildings', type: 'fill', source: SRC, 'source-layer': 'buildings', minzoom: 12, metadata: group('base'),
    paint: { 'fill-color': C.building, 'fill-outline-color': C.buildingLine } });
  L.push({ id: 'addresses', type: 'circle', source: SRC, 'source-layer': 'addresses', minzoom: 16, metadata: group('base'),
    filter: ['!', isCluster],
    paint: { 'circle-color': C.address, 'circle-opacity': 0.8, 'circle-radius': ['interpolate', ['linear'], ['zoom'], 16, 1.5, 19, 3] } });
  // the published grids, finest first so coarser boundaries draw on top
  const width = { district: [2.2, 3], street: [1.5, 2.4], community: [1, 1.6], grid: [0.6, 1.1], micro: [0.4, 0.7] };
  for (const l of ['micro', 'grid', 'community', 'street', 'district']) {
    L.push({ id: `grids-line-${l}`, type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
      minzoom: LEVEL_FROM[l], filter: ['all', ['==', ['get', 'level'], l], ['==', ['get', 'kind'], 'comprehensive']],
      layout: { 'line-join': 'round' },
      paint: { 'line-color': C.context[l], 'line-width': ['interpolate', ['linear'], ['zoom'], LEVEL_FROM[l], width[l][0], LEVEL_FROM[l] + 5, width[l][1]] } });
  }
  L.push({ id: 'grids-line-dedicated', type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('grids'),
    minzoom: P.DEDICATED.from, filter: ['==', ['get', 'kind'], 'dedicated'],
    paint: { 'line-color': P.QUERY.dedicated, 'line-opacity': 0.5, 'line-width': 1, 'line-dasharray': [3, 2] } });
  // the scope of the plan being created: the page sets this filter to the picked codes
  L.push({ id: 'scope-fill', type: 'fill', source: SRC, 'source-layer': 'grids', metadata: group('scope'),
    filter: ['in', ['get', 'code'], ['literal', []]], paint: { 'fill-color': C.scope, 'fill-opacity': 0.12 } });
  L.push({ id: 'scope-line', type: 'line', source: SRC, 'source-layer': 'grids', metadata: group('scope'),
    filter: ['in', ['get', 'code'], ['literal', []]], layout: { 'line-join': 'round' },
    paint: { 'line-color': C.scope, 'line-width': 3 } });
  return L;
}

function contextLabels() {
  const C = P.PLAN;
  const L = [];
  const halo = { 'text-halo-color': 'rgba(255,255,255,0.9)', 'text-halo-width': 1.4 };
  L.push({ id: 'roads-label', type: 'symbol', source: SRC, 'source-layer': 'roads', minzoom: 14, metadata: group('base'),
    layout: { 'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': 11 },
    paint: { 'text-color': C.roadLabel, ...halo } });
  for (const l of ['community', 'street', 'district']) {
    L.push({ id: `grids-label-${l}`, type: 'symbol', source: SRC, 'source-layer': 'grid_labels', metadata: group('grids'),
      minzoom: Math.max(LABEL[l][0], LEVEL_FROM[l]), maxzoom: LABEL[l][1],
      filter: ['all', ['==', ['get', 'level'], l], ['==', ['get', 'kind'], 'comprehensive']],
      layout: { 'text-field': ['get', 'name'], 'text-font': l === 'community' ? REG : BOLD, 'text-size': l === 'community' ? 12 : 14,
        'text-padding': 4, 'text-max-width': 8 },
      paint: { 'text-color': C.contextLabel, 'text-opacity': 0.8, ...halo } });
  }
  return L;
}

function overlayLayers() {
  const C = P.PLAN;
  const L = [];
  const g = group('plan');
  const editing = ['==', ['get', 'level'], ['global-state', 'edit_level']];
  const isPoint = ['==', ['geometry-type'], 'Point'];
  const isLine = ['==', ['geometry-type'], 'LineString'];
  // draft fills by state, of the editable level only (the levels nest: their fills would pile up)
  L.push({ id: 'p-draft-fill', type: 'fill', source: 'p-draft', metadata: g, filter: editing,
    paint: {
      'fill-color': ['match', ['get', 'state'], 'changed', C.state.changed, 'new', C.state.new, C.state.unchanged],
      'fill-opacity': ['match', ['get', 'state'], 'changed', C.stateOpacity.changed, 'new', C.stateOpacity.new, C.stateOpacity.unchanged],
    } });
  // draft lines: finest first so coarser boundaries draw on top
  for (const l of ['micro', 'grid', 'community', 'street']) {
    const d = C.draft[l];
    L.push({ id: `p-draft-line-${l}`, type: 'line', source: 'p-draft', metadata: g,
      filter: ['all', ['==', ['get', 'level'], l], ['!=', ['get', 'kind'], 'dedicated']], layout: { 'line-join': 'round' },
      paint: {
        'line-color': d.line,
        'line-opacity': ['case', editing, 1, C.idle],
        'line-width': ['case', editing, d.width * 1.4, d.width],
      } });
  }
  L.push({ id: 'p-draft-line-dedicated', type: 'line', source: 'p-draft', metadata: g,
    filter: ['==', ['get', 'kind'], 'dedicated'],
    paint: { 'line-color': P.QUERY.dedicated, 'line-opacity': ['case', editing, 1, C.idle], 'line-width': 1.4, 'line-dasharray': [3, 2] } });
  L.push({ id: 'p-sel-fill', type: 'fill', source: 'p-sel', metadata: g, paint: { 'fill-color': C.selected, 'fill-opacity': 0.14 } });
  L.push({ id: 'p-sel-line', type: 'line', source: 'p-sel', metadata: g, layout: { 'line-join': 'round' },
    paint: { 'line-color': C.selected, 'line-width': 3.2 } });
  const hl = ['==', ['get', 'i'], ['global-state', 'viol']];
  L.push({ id: 'p-viol-fill', type: 'fill', source: 'p-viol', metadata: g, filter: ['!', isPoint],
    paint: { 'fill-color': C.violation, 'fill-opacity': ['case', hl, 0.55, 0.3] } });
  L.push({ id: 'p-viol-line', type: 'line', source: 'p-viol', metadata: g, filter: ['!', isPoint], layout: { 'line-join': 'round' },
    paint: { 'line-color': C.violation, 'line-width': ['case', hl, 3.5, 1.6] } });
  L.push({ id: 'p-viol-pt', type: 'circle', source: 'p-viol', metadata: g, filter: isPoint,
    paint: { 'circle-color': 'rgba(0,0,0,0)', 'circle-radius': ['case', hl, 11, 8], 'circle-stroke-color': C.violation, 'circle-stroke-width': 2.5 } });
  L.push({ id: 'p-hist-fill', type: 'fill', source: 'p-hist', metadata: g, paint: { 'fill-color': C.history, 'fill-opacity': 0.1 } });
  L.push({ id: 'p-hist-line', type: 'line', source: 'p-hist', metadata: g, layout: { 'line-join': 'round' },
    paint: { 'line-color': C.history, 'line-width': 2.6, 'line-dasharray': [2, 1.2] } });
  L.push({ id: 'p-line-line', type: 'line', source: 'p-line', metadata: g, filter: isLine,
    paint: { 'line-color': C.line, 'line-width': 2.4, 'line-dasharray': [2, 1.2] } });
  L.push({ id: 'p-line-pt', type: 'circle', source: 'p-line', metadata: g, filter: isPoint,
    paint: { 'circle-color': '#ffffff', 'circle-radius': 4, 'circle-stroke-color': C.line, 'circle-stroke-width': 2 } });
  // names of the editable level's draft grids (one point each, from the page)
  L.push({ id: 'p-draft-label', type: 'symbol', source: 'p-label', metadata: g,
    layout: { 'text-field': ['get', 'name'], 'text-font': REG, 'text-size': 12, 'text-max-width': 7, 'text-padding': 3 },
    paint: { 'text-color': C.label, 'text-halo-color': 'rgba(255,255,255,0.92)', 'text-halo-width': 1.6 } });
  const active = ['to-boolean', ['get', 'active']];
  L.push({ id: 'p-handles-mid', type: 'circle', source: 'p-handles', metadata: g, filter: ['==', ['get', 'kind'], 'mid'],
    paint: { 'circle-color': ['case', active, C.handleActive, 'rgba(255,255,255,0.85)'], 'circle-radius': ['case', active, 5, 3.4],
      'circle-stroke-color': ['case', active, '#ffffff', C.handleMid], 'circle-stroke-width': 1.3 } });
  const shared = ['>', ['get', 'shared'], 1];
  L.push({ id: 'p-handles-vertex', type: 'circle', source: 'p-handles', metadata: g, filter: ['==', ['get', 'kind'], 'vertex'],
    paint: { 'circle-color': ['case', active, C.handleActive, '#ffffff'], 'circle-radius': ['case', active, 6.5, shared, 5, 4.2],
      'circle-stroke-color': ['case', active, '#ffffff', shared, C.handleShared, C.handle], 'circle-stroke-width': ['case', shared, 2.4, 1.8] } });
  return L;
}

/** The planner's style; `context: false` gives the overlays on a plain background only. */
export function planStyle({ context = true } = {}) {
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': P.PLAN.bg }, metadata: group('base') }];
  if (context) layers.push(...contextLayers());
  const overlays = overlayLayers();
  const labelsAt = overlays.findIndex((l) => l.id === 'p-draft-label');
  layers.push(...overlays.slice(0, labelsAt));
  if (context) layers.push(...contextLabels());
  layers.push(...overlays.slice(labelsAt));
  const sources = {};
  if (context) sources[SRC] = { type: 'vector', url: '{{origin}}/tiles/all.json' };
  for (const s of OVERLAY_SOURCES) sources[s] = { type: 'geojson', data: EMPTY };
  return {
    version: 8,
    name: 'onemap plan 规划',
    metadata: { 'onemap:generator': 'web/tools/build-style.mjs (edit app/views/plan/style.js, not this file)' },
    state: { edit_level: { default: 'grid' }, viol: { default: -1 } },
    sources,
    layers,
  };
}
