// Colours shared by the map style (tools/build-style.mjs) and the DOM legend, so they cannot drift.
// Plain data: this module is imported both by the browser and by node.

export const BG = '#070d1a';

export const GRID_LEVELS = ['district', 'street', 'community', 'grid', 'micro'];

// Per grid level: line colour, line width (px at 1920 wide), fill, the zoom the level's tiles
// start at (from the tile contract) and the zoom range in which its label is shown.
export const GRID_STYLE = {
  district:  { line: '#00e5ff', width: 3.2, fill: '#00e5ff', from: 0,  label: [0, 10.5],  text: 20 },
  street:    { line: '#40a9ff', width: 2.4, fill: '#2f7dff', from: 9,  label: [9, 12.5],  text: 16 },
  community: { line: '#8c9eff', width: 1.7, fill: '#6f7dff', from: 11, label: [11, 14.5], text: 14 },
  grid:      { line: '#5fb3b3', width: 1.1, fill: '#3aa6a6', from: 13, label: [13, 16.5], text: 12.5 },
  micro:     { line: '#4a6a8a', width: 0.7, fill: '#4a6a8a', from: 15, label: [16.5, 23], text: 11 },
};
export const DEDICATED = { line: '#ff7eb3', width: 1.6, from: 13 };
export const SELECTED = '#ffe066';

export const CAMERA_STATUS = { online: '#00e6a8', offline: '#7b8794', fault: '#ffb300' };
// Camera clusters with 60 % or less of their cameras online.
export const CAMERA_SHARE_LOW = '#ff5252';

// National four-colour risk scale: level 1 red … level 4 blue.
export const RISK_LEVELS = { 1: '#e53935', 2: '#fb8c00', 3: '#fdd835', 4: '#1e88e5' };
export const RISK_NAMES = { 1: 'red', 2: 'orange', 3: 'yellow', 4: 'blue' };

export const EVENT_STATUS = {
  new: '#4fc3f7', dispatched: '#9575cd', processing: '#26c6da', closed: '#607d8b', overdue: '#ff5252',
};
export const EVENT_CLUSTER = '#1f6feb';
// Work-order clusters by the share of open orders that are overdue: none, half, all.
export const EVENT_CLUSTER_MIXED = '#6a3fb5';
export const EVENT_CLUSTER_OVERDUE = '#c62846';

// Building tax ramp, 10k CNY per year: [stop, colour].
export const TAX_RAMP = [
  [0, '#1b2a4a'], [300, '#1565c0'], [1000, '#00acc1'], [2500, '#43a047'],
  [5000, '#fdd835'], [10000, '#fb8c00'], [15000, '#e53935'],
];

export const BASEMAP = {
  water: '#0d2b4a', waterLine: '#17466e',
  road: { expressway: '#3a4f72', arterial: '#2e3f5e', secondary: '#26344f', branch: '#1d2940' },
  roadLabel: '#6f86ad',
};

export const ADDRESS = '#b0bec5';

// The thematic groups of the layer switcher, in display order. Every style layer carries
// metadata "onemap:group" naming one of these (or "base").
export const GROUPS = ['grids', 'dedicated', 'buildings', 'risks', 'cameras', 'events', 'addresses'];

// The department query page (#/query): a light map for a desk, drawn by styles/query.json
// (tools/build-style.mjs) with the page's own overlays (area, results, highlight) on top.
export const QUERY = {
  bg: '#f2f3ef',
  water: '#cde1f0', waterLine: '#9fc3e0',
  road: '#ffffff', roadCase: '#d3d6da', roadLabel: '#76808a',
  grid: { district: '#37474f', street: '#3b5b92', community: '#5c74b8', grid: '#8aa0c8', micro: '#c2cde0' },
  gridLabel: '#3f4a5a',
  dedicated: '#c2418a',
  building: '#e4dccb', buildingLine: '#c7b898',
  camera: '#2f9e6e', event: '#6c7a96', address: '#9aa5b1',
  // overlays
  area: '#1c7ed6',
  result: '#e8590c',
  highlight: '#c2255c',
};

// ── live work orders on the big screen ──────────────────────────────────────────────────────────
// The sources of work orders, in display order, each with one colour: the pulse of a new order on
// the map and its slice of the "today by source" chart share it.
export const EVENT_SOURCES = ['hotline_12345', 'police_110', 'grid_report', 'camera_alarm', 'resident_app', 'petition'];
export const SOURCE_COLORS = {
  hotline_12345: '#40a9ff', police_110: '#ff5c7a', grid_report: '#00e5ff',
  camera_alarm: '#ffb300', resident_app: '#00e6a8', petition: '#b388ff',
};

// Grids tinted by their open work orders (feature-state `open` and `overdue`, set by the screen
// from the live stats, so a changed number never refetches a tile): the colour goes from `open`
// to `overdue` with the share of open orders that are overdue; the opacity grows with the open
// count through the level's stops (a district holds far more orders than a micro-grid).
export const GRID_LOAD = {
  open: '#f5a623', mixed: '#ff7043', overdue: '#ff2d55',
  opacity: [0.16, 0.3, 0.48],
  stops: { district: [1, 100, 1000], street: [1, 40, 400], community: [1, 12, 120], grid: [1, 4, 30], micro: [1, 2, 8] },
};

// Side charts of the screen.
export const CHART = {
  text: '#dbe7ff', muted: '#8aa0c8', faint: '#5a6f96', grid: 'rgba(64,169,255,0.12)',
  bar: ['#00e5ff', '#1f6feb'], open: '#40a9ff', overdue: '#ff5252',
  closure: '#00e6a8', onTime: '#40a9ff', track: 'rgba(64,169,255,0.14)',
};

// ── the planner (#/plan): a light desk map like the query page. Published grids come from the
// tiles as quiet context; the plan's draft grids are drawn over them by level (line) and by state
// (fill), with the page's editing overlays (selection, handles, violations, history) on top.
export const PLAN = {
  bg: '#f3f4f1',
  water: '#d3e4f1', road: '#ffffff', roadCase: '#dadde1', roadLabel: '#8a939c',
  building: '#ebe5d8', buildingLine: '#d6cbb4', address: '#a9b4bf',
  // published grids (context) by level
  context: { district: '#596470', street: '#7d8aa3', community: '#98a6c0', grid: '#b6c1d5', micro: '#cfd6e2' },
  contextLabel: '#6b7684',
  scope: '#f08c00', // grids picked as the scope of a new plan
  // the draft: line colour and width (px) per level, the editable level stands out
  draft: {
    community: { line: '#364fc7', width: 2.6 },
    grid: { line: '#1971c2', width: 1.8 },
    micro: { line: '#0c8599', width: 1.1 },
    street: { line: '#5f3dc4', width: 3.2 },
  },
  idle: 0.45, // opacity of the levels that are not being edited
  // the draft's fill by state: unchanged (barely), changed, new
  state: { unchanged: '#adb5bd', changed: '#f59f00', new: '#2f9e44' },
  stateOpacity: { unchanged: 0.03, changed: 0.15, new: 0.17 },
  label: '#1f2933',
  selected: '#e8590c',
  handle: '#1c7ed6', handleShared: '#0b4f8a', handleMid: '#868e96', handleActive: '#e8590c',
  violation: '#e03131',
  history: '#9c36b5',
  line: '#e8590c',
};
