// The department query page (部门查询, #/query): choose an area (draw a polygon or a circle, or
// pick a grid), the layers, a CQL2 filter and a grouping; see the counts per layer and per group,
// page through the features in a table linked to the map both ways, and download exactly the
// query shown as CSV or GeoJSON. Everything it creates is released by the returned unmount.
//
// State lives in one plain object (`state`, exposed as window.onemap.query for tests). The last
// successful answer stays on screen until another succeeds: a refused query shows the server's
// reason next to the Run button and leaves the results as they were.
import { api } from '../../api.js';
import { applyI18n, fmtNumber, getLang, onLangChange, t, tb, tf } from '../../i18n.js';
import { createDrawer } from './draw.js';
import { fmtValue, layerLabel, layerLabelEn, propLabel } from './format.js';
import { bbox as bboxOf, circleRing, ringArea } from './geo.js';
import { createMap, loadStyle, RESULT_LAYERS } from './map.js';
import { createResults } from './results.js';

const PAGE = 50;
const LEVELS = ['street', 'community', 'grid', 'micro'];
const ALL_LEVELS = ['district', ...LEVELS];
// Layers a query never looks at (the grids are areas, roads and water are map context).
const NOT_QUERIED = new Set(['grids', 'roads', 'water']);
const DEFAULT_LAYERS = ['cameras', 'risks', 'events'];
const DEFAULT_GROUP = 'status';
// Properties that name or identify a feature: grouping by them gives one group per feature.
const NOT_GROUPABLE = new Set(['name', 'title', 'address', 'ext_id', 'code', 'phone', 'staff', 'grid', 'parent', 'building']);
const GROUPABLE_TYPES = new Set(['text', 'int', 'bool', 'date']);

const LAYOUT = `
  <div class="q">
    <aside class="q-side">
      <div class="q-side-body">
      <section class="q-sec q-area">
        <h2 data-i18n-b="q.area"></h2>
        <div class="q-tools" role="toolbar">
          <button type="button" data-tool="polygon" aria-pressed="false"><i class="ic ic-polygon"></i><span data-i18n="q.tool.polygon"></span></button>
          <button type="button" data-tool="circle" aria-pressed="false"><i class="ic ic-circle"></i><span data-i18n="q.tool.circle"></span></button>
          <button type="button" data-tool="grid" aria-pressed="false"><i class="ic ic-grid"></i><span data-i18n="q.tool.grid"></span></button>
          <button type="button" data-tool="clear"><span data-i18n="q.tool.clear"></span></button>
        </div>
        <p class="q-hint"></p>
        <p class="q-area-desc"></p>
        <label class="q-radius" hidden><span data-i18n="q.radius"></span>
          <input type="number" min="1" max="100000" step="1" inputmode="numeric"><span data-i18n="q.unit.m"></span></label>
        <div class="q-gridpick" hidden>
          <input type="search" class="q-grid-search" autocomplete="off" spellcheck="false">
          <p class="q-grid-msg"></p>
          <ul class="q-grid-list"></ul>
        </div>
      </section>
      <section class="q-sec">
        <h2 data-i18n-b="q.layers"></h2>
        <ul class="q-layer-list"></ul>
      </section>
      <section class="q-sec">
        <h2 data-i18n-b="q.filter"></h2>
        <input type="text" class="q-filter-text" spellcheck="false" autocomplete="off" placeholder="status = 'new' AND category = 'noise'">
        <p class="q-help" data-i18n="q.filter.help"></p>
        <div class="q-props"><span class="q-props-lbl" data-i18n="q.filter.props"></span><span class="q-chips"></span></div>
        <details class="q-perlayer"><summary data-i18n="q.filter.perLayer"></summary><div class="q-perlayer-list"></div></details>
      </section>
      <section class="q-sec">
        <h2 data-i18n-b="q.groupBy"></h2>
        <select class="q-groupby"></select>
        <p class="q-help" data-i18n="q.groupBy.help"></p>
      </section>
      </div>
      <div class="q-side-foot">
        <p class="q-error" role="alert" hidden></p>
        <button type="button" class="q-run"></button>
      </div>
    </aside>
    <div class="q-map" id="map"></div>
    <section class="q-results"></section>
  </div>`;

export const queryView = {
  async mount(root) {
    root.innerHTML = LAYOUT;
    applyI18n(root);
    const $ = (s) => root.querySelector(s);
    const cleanups = [];
    const body = document.body;
    body.dataset.queryState = 'idle';
    body.dataset.queryRuns = '0';

    const state = {
      mode: 'none',
      area: null, // what POST /api/query takes as `area`
      areaInfo: null, // { kind: 'polygon'|'circle'|'grid', … } for the description
      layers: [...DEFAULT_LAYERS],
      filter: '', // CQL2 text (or CQL2-JSON) for every chosen layer
      layerFilters: {}, // layer → CQL2 text, ANDed with `filter`
      groupBy: DEFAULT_GROUP,
      status: 'idle', // idle | loading | done | error
      error: null, // the server's detail of the last refused query
      result: null, // { body, filterKind, total, layers: { name: { count, groups, next, features } } }
      active: null, // the layer shown in table, groups and on the map
      page: null, // { layer, index, cursors, features, next, loading, error }
      highlight: null, // { layer, id }
      pageSize: PAGE,
      schemas: new Map(), // layer name → /api/layers entry
    };

    const { style } = await loadStyle();
    const qmap = createMap($('#map'), style);
    const { map } = qmap;
    cleanups.push(() => map.remove());

    const results = createResults($('.q-results'), {
      onActivate: (layer) => activate(layer),
      onRow: (id) => select(id, { from: 'table' }),
      onPage: (d) => turnPage(d),
      onGroup: (key) => drillGroup(key),
    });

    // ── grids by level (names for group labels, the grid search) ──
    const gridLists = new Map();
    const gridsOf = (level) => {
      if (!gridLists.has(level)) {
        const p = api.grids(level).then((r) => new Map(r.grids.map((g) => [g.code, g])));
        p.catch(() => gridLists.delete(level));
        gridLists.set(level, p);
      }
      return gridLists.get(level);
    };
    const gridNames = new Map(); // code → name, filled as lists arrive
    const learnLevel = (level) => gridsOf(level).then((m) => { for (const [c, g] of m) gridNames.set(c, g.name); });

    // ── area ──
    const drawer = createDrawer(qmap, {
      onDone: (area) => setArea(area),
      onPick: (ll) => locateAt(ll),
      onMode: (m) => { state.mode = m; renderArea(); },
    });
    cleanups.push(() => drawer.destroy());

    function areaFeatures() {
      const a = state.area;
      if (!a) return [];
      if (a.type === 'Polygon') return [{ type: 'Feature', properties: {}, geometry: a }];
      if (a.point) return [{ type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [circleRing(a.point, a.radius_m)] } }];
      return []; // a grid is drawn by the style from the tiles (global state `selected`)
    }

    function setArea(area, info) {
      state.area = area;
      if (area?.type === 'Polygon') {
        state.areaInfo = { kind: 'polygon', vertices: area.coordinates[0].length - 1, m2: ringArea(area.coordinates[0]) };
      } else if (area?.point) {
        state.areaInfo = { kind: 'circle', radius: area.radius_m };
      } else if (area?.grid) {
        state.areaInfo = { kind: 'grid', code: area.grid, ...info };
      } else state.areaInfo = null;
      qmap.set('q-area', areaFeatures());
      qmap.setSelected(area?.grid ?? '');
      if (!area?.grid) drawer.clearPick();
      renderArea();
      if (area) run();
      else clearResults();
    }

    function renderArea() {
      for (const b of root.querySelectorAll('.q-tools [data-tool]')) {
        if (b.dataset.tool !== 'clear') b.setAttribute('aria-pressed', String(b.dataset.tool === state.mode));
      }
      $('.q-tools [data-tool="clear"]').disabled = !state.area && state.mode === 'none';
      $('.q-hint').textContent = t(`q.hint.${state.mode}`);
      const i = state.areaInfo;
      let desc = t('q.area.none');
      if (i?.kind === 'polygon') {
        desc = `${t('q.area.polygon')} · ${i.vertices} ${t('q.area.vertices')} · ${t('q.area.about')} ${fmtArea(i.m2)}`;
      } else if (i?.kind === 'circle') {
        desc = `${t('q.area.circle')} · ${t('q.radius')} ${fmtNumber(i.radius)} ${t('q.unit.m')}`;
      } else if (i?.kind === 'grid') {
        desc = [i.level && t(`level.${i.level}`), i.name, i.code].filter(Boolean).join(' · ');
      }
      $('.q-area-desc').textContent = desc;
      $('.q-area-desc').dataset.kind = i?.kind ?? '';
      const radius = $('.q-radius');
      radius.hidden = i?.kind !== 'circle';
      const input = radius.querySelector('input');
      if (i?.kind === 'circle' && document.activeElement !== input) input.value = String(i.radius);
      $('.q-gridpick').hidden = state.mode !== 'grid';
      $('.q-grid-search').placeholder = t('q.grid.search');
    }

    function fmtArea(m2) {
      return m2 >= 100_000
        ? `${(m2 / 1e6).toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en-GB', { maximumFractionDigits: 2 })} ${t('q.unit.km2')}`
        : `${fmtNumber(Math.round(m2))} ${getLang() === 'zh' ? '平方米' : 'm²'}`;
    }

    root.querySelector('.q-tools').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-tool]');
      if (!b) return;
      const tool = b.dataset.tool;
      if (tool === 'clear') { drawer.setMode('none'); setArea(null); return; }
      drawer.setMode(state.mode === tool ? 'none' : tool);
      if (tool === 'grid' && state.mode === 'grid') $('.q-grid-search').focus();
    });

    $('.q-radius input').addEventListener('change', (e) => {
      const r = Math.round(Number(e.target.value));
      if (!state.area?.point || !(r >= 1 && r <= 100_000)) { renderArea(); return; }
      setArea({ point: state.area.point, radius_m: r });
    });

    // ── picking a grid: by a click on the map, or by code or name ──
    let locating = null;
    async function locateAt(ll) {
      locating?.abort();
      const ctl = new AbortController();
      locating = ctl;
      const msg = $('.q-grid-msg');
      msg.textContent = t('q.grid.loading');
      try {
        const r = await api.locate(ll.lng.toFixed(7), ll.lat.toFixed(7), { signal: ctl.signal });
        const found = LEVELS.map((l) => r.levels?.[l] && { ...r.levels[l], level: l }).filter(Boolean);
        for (const d of r.dedicated ?? []) found.push({ ...d, level: 'grid', dedicated: true });
        msg.textContent = found.length ? t('q.grid.here') : t('q.grid.outside');
        showGridChoices(found);
      } catch (err) {
        if (err.name !== 'AbortError') msg.textContent = err.message;
      }
    }

    function showGridChoices(grids) {
      const ul = $('.q-grid-list');
      ul.replaceChildren(...grids.slice(0, 20).map((g) => {
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.code = g.code;
        b.dataset.level = g.level;
        b.dataset.name = g.name;
        const lv = document.createElement('span');
        lv.className = 'lv';
        lv.textContent = g.dedicated ? t('kind.dedicated') : t(`level.${g.level}`);
        const nm = document.createElement('span');
        nm.className = 'nm';
        nm.textContent = g.name;
        const cd = document.createElement('span');
        cd.className = 'cd';
        cd.textContent = g.code;
        b.append(lv, nm, cd);
        li.append(b);
        return li;
      }));
    }

    $('.q-grid-list').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-code]');
      if (b) pickGrid(b.dataset.code, { name: b.dataset.name, level: b.dataset.level });
    });

    let searchTimer = 0;
    let searchSeq = 0;
    $('.q-grid-search').addEventListener('input', (e) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => searchGrids(e.target.value.trim()), 200);
    });
    cleanups.push(() => clearTimeout(searchTimer));

    async function searchGrids(q) {
      const seq = ++searchSeq;
      const msg = $('.q-grid-msg');
      if (!q) { msg.textContent = ''; showGridChoices([]); return; }
      msg.textContent = t('q.grid.loading');
      try {
        const found = [];
        // Micro-grids are many (about ten times the grids): searched by full code only.
        if (/^\d{19}$/.test(q)) {
          const g = await api.grid(q).catch(() => null);
          if (g) found.push(g);
        }
        for (const level of ['street', 'community', 'grid']) {
          for (const g of (await gridsOf(level)).values()) {
            if (found.length >= 20) break;
            if (g.code.startsWith(q) || g.name.includes(q)) found.push({ ...g, dedicated: g.kind === 'dedicated' });
          }
        }
        if (seq !== searchSeq) return;
        msg.textContent = found.length ? '' : t('q.grid.noMatch');
        showGridChoices(found);
      } catch (err) {
        if (seq === searchSeq) msg.textContent = err.message;
      }
    }

    let picking = null;
    async function pickGrid(code, known = {}) {
      picking?.abort();
      const ctl = new AbortController();
      picking = ctl;
      drawer.setMode('none');
      setArea({ grid: code }, { name: known.name ?? gridNames.get(code), level: known.level });
      try {
        const g = await api.grid(code, { signal: ctl.signal });
        if (state.area?.grid !== code) return;
        state.areaInfo = { kind: 'grid', code, name: g.name, level: g.kind === 'dedicated' ? 'grid' : g.level };
        renderArea();
        if (g.bbox) {
          const [w, s, e, n] = g.bbox;
          map.fitBounds([[w, s], [e, n]], { padding: 40, duration: 600, maxZoom: 17 });
        }
      } catch (err) {
        if (err.name !== 'AbortError') console.warn('grid:', err.message);
      }
    }

    // ── layers, filter, group by ──
    const queryable = () => [...state.schemas.values()].filter((l) => !NOT_QUERIED.has(l.name));

    function renderLayers() {
      const ul = $('.q-layer-list');
      ul.replaceChildren(...queryable().map((l) => {
        const li = document.createElement('li');
        li.dataset.layer = l.name;
        const label = document.createElement('label');
        const input = document.createElement('input');
        input.type = 'checkbox';
        input.value = l.name;
        input.checked = state.layers.includes(l.name);
        const nm = document.createElement('span');
        nm.className = 'nm';
        const total = document.createElement('span');
        total.className = 'total';
        total.textContent = fmtNumber(l.count);
        label.append(input, nm, total);
        li.append(label);
        return li;
      }));
      relabelLayers();
    }

    function relabelLayers() {
      for (const li of root.querySelectorAll('.q-layer-list li')) {
        const nm = li.querySelector('.nm');
        const name = li.dataset.layer;
        if (layerLabelEn(name)) tb(nm, `q.layer.${name}`); else nm.textContent = layerLabel(name, state.schemas.get(name));
        li.querySelector('.total').textContent = fmtNumber(state.schemas.get(name)?.count);
      }
    }

    $('.q-layer-list').addEventListener('change', (e) => {
      const input = e.target.closest('input[type=checkbox]');
      if (!input) return;
      const chosen = new Set([...root.querySelectorAll('.q-layer-list input:checked')].map((i) => i.value));
      state.layers = queryable().map((l) => l.name).filter((n) => chosen.has(n));
      afterLayersChange();
      if (state.area) run();
    });

    /** Properties every chosen layer has, in the order of the first one. */
    function commonProps() {
      const [first, ...rest] = state.layers.map((n) => state.schemas.get(n)?.properties ?? []);
      if (!first) return [];
      return first.filter((p) => rest.every((ps) => ps.some((q) => q.name === p.name && q.type === p.type)));
    }

    function afterLayersChange() {
      qmap.showContext(state.layers);
      renderGroupBy();
      renderFilterHints();
    }

    function renderGroupBy() {
      const sel = $('.q-groupby');
      const props = commonProps().filter((p) => GROUPABLE_TYPES.has(p.type) && !NOT_GROUPABLE.has(p.name));
      const valid = ['', ...LEVELS, ...props.map((p) => p.name)];
      if (!valid.includes(state.groupBy)) state.groupBy = '';
      const opt = (value, text) => {
        const o = document.createElement('option');
        o.value = value;
        o.textContent = text;
        return o;
      };
      const levels = document.createElement('optgroup');
      levels.label = t('q.groupBy.levels');
      levels.append(...LEVELS.map((l) => opt(l, t(`level.${l}`))));
      const byProp = document.createElement('optgroup');
      byProp.label = t('q.groupBy.props');
      byProp.append(...props.map((p) => opt(p.name, propLabel(p.name) === p.name ? p.name : `${propLabel(p.name)} (${p.name})`)));
      sel.replaceChildren(opt('', t('q.groupBy.none')), levels, ...(props.length ? [byProp] : []));
      sel.value = state.groupBy;
    }

    $('.q-groupby').addEventListener('change', (e) => {
      state.groupBy = e.target.value;
      if (state.groupBy && LEVELS.includes(state.groupBy)) learnLevel(state.groupBy).then(renderResults, () => {});
      if (state.area) run();
    });

    function renderFilterHints() {
      readFilters(); // keep what was typed in the per-layer inputs about to be rebuilt
      const chips = $('.q-chips');
      chips.replaceChildren(...commonProps().map((p) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'chip';
        b.dataset.prop = p.name;
        b.dataset.type = p.type;
        b.title = `${propLabel(p.name)} · ${p.type}`;
        b.textContent = p.name;
        return b;
      }));
      // one input per chosen layer, keeping what was typed
      const list = $('.q-perlayer-list');
      list.replaceChildren(...state.layers.map((name) => {
        const label = document.createElement('label');
        label.dataset.layer = name;
        const nm = document.createElement('span');
        nm.className = 'nm';
        nm.textContent = layerLabel(name, state.schemas.get(name));
        const input = document.createElement('input');
        input.type = 'text';
        input.spellcheck = false;
        input.autocomplete = 'off';
        input.dataset.layer = name;
        input.value = state.layerFilters[name] ?? '';
        input.placeholder = (state.schemas.get(name)?.properties ?? []).map((p) => p.name).join(', ');
        label.append(nm, input);
        return label;
      }));
    }

    $('.q-chips').addEventListener('click', (e) => {
      const b = e.target.closest('.chip');
      if (!b) return;
      const input = $('.q-filter-text');
      const ins = b.dataset.type === 'text' ? `${b.dataset.prop} = ''` : `${b.dataset.prop} = `;
      const at = input.selectionStart ?? input.value.length;
      const before = input.value.slice(0, at);
      const glue = before && !/\s$/.test(before) ? ' ' : '';
      input.value = before + glue + ins + input.value.slice(input.selectionEnd ?? at);
      const caret = before.length + glue.length + ins.length - (b.dataset.type === 'text' ? 1 : 0);
      input.focus();
      input.setSelectionRange(caret, caret);
    });

    function readFilters() {
      state.filter = $('.q-filter-text').value.trim();
      for (const i of root.querySelectorAll('.q-perlayer-list input')) {
        const v = i.value.trim();
        if (v) state.layerFilters[i.dataset.layer] = v; else delete state.layerFilters[i.dataset.layer];
      }
    }
    root.querySelector('.q-side').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target.matches('.q-filter-text, .q-perlayer-list input')) { e.preventDefault(); run(); }
    });
    $('.q-run').addEventListener('click', () => run());

    /** The `filter` of a query over `layers`: CQL2 text for all, a CQL2-JSON object, or a map of
     *  layer → text when layers differ; undefined when nothing filters. Throws on a bad mix. */
    function composeFilter(layers) {
      const common = state.filter;
      const own = layers.filter((l) => state.layerFilters[l]);
      if (common.startsWith('{')) {
        if (own.length) throw new Error(t('q.filter.jsonMix'));
        try { return { kind: 'json', filter: JSON.parse(common) }; } catch { throw new Error(t('q.filter.badJson')); }
      }
      if (!own.length) return common ? { kind: 'text', filter: common } : { kind: 'none' };
      const map = {};
      for (const l of layers) {
        const parts = [common, state.layerFilters[l]].filter(Boolean);
        if (parts.length) map[l] = parts.length === 1 ? parts[0] : parts.map((p) => `(${p})`).join(' AND ');
      }
      return { kind: 'map', filter: map };
    }

    /** The filter of the shown query restricted to one layer (for its pages and its CSV). */
    function filterFor(layer) {
      const r = state.result;
      if (!r || r.filterKind === 'none') return undefined;
      if (r.filterKind !== 'map') return r.body.filter;
      return r.body.filter[layer] === undefined ? undefined : { [layer]: r.body.filter[layer] };
    }

    // ── running the query ──
    let inflight = null;
    let runs = 0;
    async function run() {
      readFilters();
      if (!state.area) return;
      if (!state.layers.length) { fail(t('q.error.layers')); return; }
      let f;
      try { f = composeFilter(state.layers); } catch (err) { fail(err.message); return; }
      const req = { area: state.area, layers: [...state.layers], limit: PAGE };
      if (f.kind !== 'none') req.filter = f.filter;
      if (state.groupBy) req.group_by = state.groupBy;
      inflight?.abort();
      const ctl = new AbortController();
      inflight = ctl;
      setStatus('loading');
      try {
        const res = await api.query(req, { signal: ctl.signal });
        if (ctl.signal.aborted) return;
        const layers = {};
        for (const name of req.layers) {
          const l = res.layers[name];
          layers[name] = { count: l.count, groups: l.groups ?? null, next: l.next ?? null, features: l.features?.features ?? [] };
        }
        state.result = { body: req, filterKind: f.kind, total: res.total, layers };
        state.error = null;
        if (!req.layers.includes(state.active)) state.active = req.layers.find((n) => layers[n].count > 0) ?? req.layers[0];
        if (LEVELS.includes(req.group_by)) learnLevel(req.group_by).then(renderResults, () => {});
        firstPage();
        setStatus('done');
        answered();
      } catch (err) {
        if (err.name === 'AbortError') return;
        fail(err.message);
      } finally {
        if (inflight === ctl) inflight = null;
      }
    }

    function fail(detail) {
      state.error = detail;
      setStatus('error');
      answered();
    }

    /** Counts an answered (or refused) query, for tests to wait on. */
    function answered() { body.dataset.queryRuns = String(++runs); }

    function setStatus(s) {
      state.status = s;
      body.dataset.queryState = s;
      const err = $('.q-error');
      err.hidden = s !== 'error';
      err.textContent = s === 'error' ? tf('q.error', { detail: state.error }) : '';
      const btn = $('.q-run');
      btn.disabled = s === 'loading' || !state.area;
      btn.textContent = s === 'loading' ? t('q.running') : t('q.run');
      renderResults();
    }

    function clearResults() {
      inflight?.abort();
      state.result = null;
      state.page = null;
      state.active = null;
      state.error = null;
      setHighlight(null);
      setStatus('idle');
    }

    // ── the active layer, its pages, and the highlighted feature ──
    function firstPage() {
      const l = state.result.layers[state.active];
      state.page = { layer: state.active, index: 0, cursors: [null], features: l.features, next: l.next, loading: false };
      showPage();
    }

    function showPage() {
      qmap.set('q-results', state.page?.features ?? []);
      if (state.highlight && (state.highlight.layer !== state.page?.layer || !state.page.features.some((f) => f.id === state.highlight.id))) setHighlight(null);
      renderResults();
    }

    function activate(layer) {
      if (!state.result?.layers[layer] || layer === state.active) return;
      paging?.abort();
      state.active = layer;
      firstPage();
    }

    let paging = null;
    async function turnPage(delta) {
      const p = state.page;
      const r = state.result;
      if (!p || !r || p.loading) return;
      const index = p.index + delta;
      if (index < 0 || (delta > 0 && !p.next)) return;
      if (index === 0) { firstPage(); return; }
      const cursor = delta > 0 ? p.next : p.cursors[index];
      const req = { area: r.body.area, layers: [p.layer], limit: PAGE, cursor };
      const filter = filterFor(p.layer);
      if (filter !== undefined) req.filter = filter;
      paging?.abort();
      const ctl = new AbortController();
      paging = ctl;
      p.loading = true;
      p.error = null;
      renderResults();
      try {
        const res = await api.query(req, { signal: ctl.signal });
        if (state.page !== p) return;
        const l = res.layers[p.layer];
        p.index = index;
        p.cursors[index] = cursor;
        p.features = l.features.features;
        p.next = l.next ?? null;
        p.loading = false;
        $('.q-scroll').scrollTop = 0;
        showPage();
      } catch (err) {
        if (err.name === 'AbortError' || state.page !== p) return;
        p.loading = false;
        p.error = err.message; // shown by the pager; the results stay as they are
        renderResults();
      }
    }

    function setHighlight(h) {
      state.highlight = h;
      const f = h ? state.page?.features.find((x) => x.id === h.id) : null;
      qmap.set('q-hl', f ? [f] : []);
      results.highlight(f ? h.id : null, { scroll: h?.from === 'map' });
    }

    function select(id, { from }) {
      const f = state.page?.features.find((x) => x.id === id);
      if (!f) return;
      setHighlight({ layer: state.page.layer, id, from });
      if (from !== 'table') return;
      const b = bboxOf(f.geometry);
      if (!b) return;
      if (b[0] === b[2] && b[1] === b[3]) map.flyTo({ center: [b[0], b[1]], zoom: Math.max(map.getZoom(), 16), duration: 700 });
      else map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 80, maxZoom: 18, duration: 700 });
    }

    // a click on a result on the map highlights its row
    const onMapClick = (e) => {
      if (drawer.busy() || !state.page) return;
      const layers = RESULT_LAYERS.filter((l) => map.getLayer(l));
      const { x, y } = e.point;
      const hits = map.queryRenderedFeatures([[x - 5, y - 5], [x + 5, y + 5]], { layers });
      if (hits.length) select(Number(hits[0].id), { from: 'map' });
    };
    map.on('click', onMapClick);
    const hover = (on) => () => { if (!drawer.busy()) map.getCanvas().style.cursor = on ? 'pointer' : ''; };
    for (const l of RESULT_LAYERS) { map.on('mouseenter', l, hover(true)); map.on('mouseleave', l, hover(false)); }

    // a click on a group: a value adds to the filter, a grid becomes the area
    function drillGroup(key) {
      const by = state.result?.body.group_by;
      if (!by || key === 'none' || key === 'null') return;
      if (ALL_LEVELS.includes(by)) { pickGrid(key); return; }
      const type = commonProps().find((p) => p.name === by)?.type;
      const lit = type === 'int' || type === 'float' || type === 'bool' ? key : `'${key.replaceAll("'", "''")}'`;
      const term = `${by} = ${lit}`;
      const input = $('.q-filter-text');
      const cur = input.value.trim();
      if (cur.startsWith('{')) return;
      input.value = cur ? `(${cur}) AND ${term}` : term;
      run();
    }

    function groupLabel(by, key) {
      if (key === 'none') return t('q.groups.none');
      if (ALL_LEVELS.includes(by)) return gridNames.get(key) ?? key;
      return fmtValue(by, key === 'null' ? null : key);
    }

    function downloadUrls() {
      const r = state.result;
      if (!r || !state.active) return null;
      const csv = { area: r.body.area, layers: [state.active] };
      const fl = filterFor(state.active);
      if (fl !== undefined) csv.filter = fl;
      const geojson = { area: r.body.area, layers: r.body.layers };
      if (r.filterKind !== 'none') geojson.filter = r.body.filter;
      return { csv: api.exportUrl('csv', csv), geojson: api.exportUrl('geojson', geojson) };
    }

    function renderResults() {
      results.render(state, { groupLabel, urls: downloadUrls() });
      if (state.highlight) results.highlight(state.highlight.id);
    }

    cleanups.push(onLangChange(() => {
      renderArea();
      relabelLayers();
      renderGroupBy();
      renderFilterHints();
      setStatus(state.status);
      drawer.render();
      results.relabel();
      renderResults();
    }));
    cleanups.push(() => {
      inflight?.abort(); paging?.abort(); locating?.abort(); picking?.abort();
      map.off('click', onMapClick);
    });

    // ── start: schemas, the district in view ──
    renderArea();
    setStatus('idle');
    const ready = (async () => {
      const [layers] = await Promise.all([api.layers(), qmap.ready]);
      for (const l of layers) state.schemas.set(l.name, l);
      state.layers = state.layers.filter((n) => state.schemas.has(n));
      renderLayers();
      afterLayersChange();
      const { grids } = await api.grids('district');
      if (grids?.[0]) {
        gridNames.set(grids[0].code, grids[0].name);
        const d = await api.grid(grids[0].code);
        if (d.bbox) {
          const [w, s, e, n] = d.bbox;
          map.fitBounds([[w, s], [e, n]], { padding: 30, duration: 0 });
        }
      }
      await new Promise((r) => (map.loaded() ? r() : map.once('idle', r)));
      body.dataset.mapIdle = '1';
      return map;
    })();
    ready.catch((err) => console.warn('query page:', err.message));

    window.onemap = { map, ready, query: state, run, setArea, pickGrid, drawer };
    cleanups.push(() => {
      delete window.onemap;
      delete body.dataset.mapIdle;
      delete body.dataset.queryState;
      delete body.dataset.queryRuns;
    });

    return () => { for (const fn of cleanups.reverse()) fn(); };
  },
};
