// The department query page (部门查询, #/query): choose an area (draw a polygon or a circle, or
// pick a grid), the layers, a CQL2 filter and a grouping; see the counts per layer and per group,
// page through the features in a table linked to the map both ways, and download exactly the
// query shown as CSV or GeoJSON. Everything it creates is released by the returned unmount.
//
// State lives in one plain object (`state`, exposed as window.onemap.query for tests). The last
// successful answer stays on screen until another succeeds: a refused query shows the server's
// reason next to the Run button and leaves the results as they were.
//
// The page never downloads a whole level of grids: the grid search asks the server
// (GET /api/grids?q=), a picked grid is drawn from its exact outline (?geometry=true), and the
// grids named by group-by-level bars are looked up when shown. Downloads too big for a URL are
// POSTed and saved from a Blob.
import { api } from '../../api.js';
import { applyI18n, fmtNumber, getLang, onLangChange, t, tb, tf } from '../../i18n.js';
import { createDrawer } from './draw.js';
import { fmtValue, layerLabel, layerLabelEn, propLabel } from './format.js';
import { bbox as bboxOf, circleRing, ringArea } from './geo.js';
import { createMap, loadStyle, RESULT_LAYERS } from './map.js';
import { createResults, MAX_BARS } from './results.js';

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
const SEARCH_LIMIT = 20; // grids a search lists
const SEARCH_DELAY = 200; // ms of quiet typing before a search is sent
const MAX_URL = 6000; // a download URL longer than this is POSTed instead
const BLOB_TTL = 10_000; // ms an object URL of a saved download is kept before it is revoked

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
          <div class="q-grid-find">
            <input type="search" class="q-grid-search" autocomplete="off" spellcheck="false" maxlength="64"
              role="combobox" aria-autocomplete="list" aria-controls="q-grid-list" aria-expanded="false">
            <select class="q-grid-level"></select>
          </div>
          <p class="q-grid-msg"></p>
          <ul class="q-grid-list" id="q-grid-list" role="listbox"></ul>
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
        <p class="q-groupby-note" hidden></p>
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
      outline: null, // the exact outline (GeoJSON geometry) of a picked grid, once it is in
      layers: [...DEFAULT_LAYERS],
      filter: '', // CQL2 text (or CQL2-JSON) for every chosen layer
      layerFilters: {}, // layer → CQL2 text, ANDed with `filter`
      groupBy: DEFAULT_GROUP,
      status: 'idle', // idle | loading | done | error
      error: null, // the server's detail of the last refused query
      result: null, // { body, filterKind, groupBy, ungrouped, total, layers: { name: { count, groups, next, features } } }
      active: null, // the layer shown in table, groups and on the map
      page: null, // { layer, index, cursors, features, next, loading, error }
      highlight: null, // { layer, id }
      pageSize: PAGE,
      schemas: new Map(), // layer name → /api/layers entry
      download: null, // { kind, busy, error } of a download POSTed (too big for a URL)
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
      onDownload: (kind) => download(kind),
    });

    // ── grid names (group labels, the area's description), learned from what answers carry:
    // searches, map clicks, a picked grid's path and children; looked up when still unknown ──
    const gridNames = new Map(); // code → name
    /** Learns the names a grid's detail carries: its own, its ancestors' and its children's. */
    function learnGrid(g) {
      gridNames.set(g.code, g.name);
      for (const a of Array.isArray(g.path) ? g.path : []) gridNames.set(a.code, a.name);
      for (const c of g.children ?? []) gridNames.set(c.code, c.name);
    }

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
      // a grid: its exact outline, once GET /api/grids/{code}?geometry=true has answered
      if (a.grid && state.outline) return [{ type: 'Feature', properties: { code: a.grid }, geometry: state.outline }];
      return [];
    }

    function setArea(area, info) {
      state.area = area;
      state.outline = null;
      if (area?.type === 'Polygon') {
        state.areaInfo = { kind: 'polygon', vertices: area.coordinates[0].length - 1, m2: ringArea(area.coordinates[0]) };
      } else if (area?.point) {
        state.areaInfo = { kind: 'circle', radius: area.radius_m };
      } else if (area?.grid) {
        state.areaInfo = { kind: 'grid', code: area.grid, ...info };
      } else state.areaInfo = null;
      qmap.set('q-area', areaFeatures());
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
      renderGridMsg();
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
    // One list shows either the grids at a clicked point or a search's answer; only the latest
    // request may fill it (the one before is aborted, and an answer that comes anyway is ignored).
    let listing = null; // AbortController of the request whose answer the list is waiting for
    let listFor = null; // the search (searchKey) the list shows; null: a map click's grids, or none
    let wanted = null; // the search (searchKey) under way
    let enterPending = false; // Enter was pressed before the answer to the text typed came
    let activeOpt = -1; // the option chosen with the arrow keys
    let gridMsg = null; // { key, vars } or { text }: the line above the list
    let searchTimer = 0;
    cleanups.push(() => clearTimeout(searchTimer));

    const searchInput = $('.q-grid-search');
    const gridLevel = () => $('.q-grid-level').value;
    const searchKey = (q) => `${gridLevel()}|${q}`;

    function newListing() {
      clearTimeout(searchTimer);
      listing?.abort();
      listing = new AbortController();
      return listing;
    }

    function setGridMsg(m) { gridMsg = m; renderGridMsg(); }
    function renderGridMsg() {
      const m = gridMsg;
      $('.q-grid-msg').textContent = !m ? '' : m.key ? tf(m.key, m.vars ?? {}) : m.text;
    }

    function renderGridLevels() {
      const sel = $('.q-grid-level');
      const value = sel.value;
      sel.replaceChildren(...['', ...LEVELS].map((l) => {
        const o = document.createElement('option');
        o.value = l;
        o.textContent = l ? t(`level.${l}`) : t('q.grid.allLevels');
        return o;
      }));
      sel.value = value;
      sel.title = t('q.grid.level');
    }

    async function locateAt(ll) {
      enterPending = false;
      wanted = null;
      const ctl = newListing();
      setGridMsg({ key: 'q.grid.loading' });
      try {
        const r = await api.locate(ll.lng.toFixed(7), ll.lat.toFixed(7), { signal: ctl.signal });
        if (listing !== ctl) return;
        const found = LEVELS.map((l) => r.levels?.[l] && { ...r.levels[l], level: l }).filter(Boolean);
        for (const d of r.dedicated ?? []) found.push({ ...d, level: 'grid', dedicated: true });
        for (const g of found) gridNames.set(g.code, g.name);
        setGridMsg({ key: found.length ? 'q.grid.here' : 'q.grid.outside' });
        listFor = null;
        showGridChoices(found);
      } catch (err) {
        if (err.name !== 'AbortError' && listing === ctl) setGridMsg({ text: err.message });
      } finally {
        if (listing === ctl) listing = null;
      }
    }

    /** The path of a search hit without its own name ("示范区 › 三里镇" for 三里镇's community). */
    function ancestors(g) {
      const parts = (g.path ?? '').split(' › ').filter(Boolean);
      if (parts.at(-1) === g.name) parts.pop();
      return parts.join(' › ');
    }

    function showGridChoices(grids) {
      const ul = $('.q-grid-list');
      ul.replaceChildren(...grids.slice(0, SEARCH_LIMIT).map((g, i) => {
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.id = `q-grid-opt-${i}`;
        b.setAttribute('role', 'option');
        b.setAttribute('aria-selected', 'false');
        b.tabIndex = -1;
        b.dataset.code = g.code;
        b.dataset.level = g.level;
        b.dataset.name = g.name;
        const lv = document.createElement('span');
        lv.className = 'lv';
        lv.textContent = g.dedicated ? t('kind.dedicated') : t(`level.${g.level}`);
        const nm = document.createElement('span');
        nm.className = 'nm';
        nm.textContent = g.name;
        b.append(lv, nm);
        if (g.path) {
          b.dataset.path = g.path;
          const pt = document.createElement('span');
          pt.className = 'pt';
          pt.textContent = ancestors(g);
          pt.title = g.path;
          b.append(pt);
        }
        const cd = document.createElement('span');
        cd.className = 'cd';
        cd.textContent = g.code;
        b.append(cd);
        li.append(b);
        return li;
      }));
      activeOpt = -1;
      searchInput.removeAttribute('aria-activedescendant');
      searchInput.setAttribute('aria-expanded', String(grids.length > 0));
    }

    const options = () => [...root.querySelectorAll('.q-grid-list button[data-code]')];

    function setActiveOpt(i) {
      const bs = options();
      activeOpt = bs.length ? Math.max(0, Math.min(i, bs.length - 1)) : -1;
      bs.forEach((b, j) => {
        b.classList.toggle('active', j === activeOpt);
        b.setAttribute('aria-selected', String(j === activeOpt));
      });
      const b = bs[activeOpt];
      if (b) {
        searchInput.setAttribute('aria-activedescendant', b.id);
        b.scrollIntoView({ block: 'nearest' });
      }
    }

    function pickOption(b) {
      if (b) pickGrid(b.dataset.code, { name: b.dataset.name, level: b.dataset.level });
    }

    $('.q-grid-list').addEventListener('click', (e) => pickOption(e.target.closest('button[data-code]')));

    searchInput.addEventListener('input', () => {
      enterPending = false;
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => searchGrids(searchInput.value.trim()), SEARCH_DELAY);
    });
    $('.q-grid-level').addEventListener('change', () => {
      const q = searchInput.value.trim();
      if (q) searchGrids(q);
    });
    searchInput.addEventListener('keydown', (e) => {
      if (e.isComposing) return; // an input method is composing Chinese: its keys are its own
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        const n = options().length;
        if (!n) return;
        e.preventDefault();
        if (e.key === 'ArrowDown') setActiveOpt(activeOpt < n - 1 ? activeOpt + 1 : 0);
        else setActiveOpt(activeOpt > 0 ? activeOpt - 1 : n - 1);
      } else if (e.key === 'Enter') {
        e.preventDefault();
        const q = searchInput.value.trim();
        // the list answers what is typed (or shows a map click's grids): Enter picks from it
        if ((!q && listFor === null) || (q && listFor === searchKey(q) && !listing)) {
          pickOption(options()[Math.max(activeOpt, 0)]);
        } else if (q) {
          // typed faster than the search: pick the best match once its answer is in
          enterPending = true;
          if (!listing || wanted !== searchKey(q)) searchGrids(q);
        }
      }
    });

    async function searchGrids(q) {
      const ctl = newListing();
      if (!q) {
        listing = null;
        listFor = null;
        enterPending = false;
        setGridMsg(null);
        showGridChoices([]);
        return;
      }
      const key = searchKey(q);
      wanted = key;
      setGridMsg({ key: 'q.grid.loading' });
      try {
        const r = await api.searchGrids(q, { level: gridLevel(), limit: SEARCH_LIMIT }, { signal: ctl.signal });
        if (listing !== ctl) return; // a newer search or a map click owns the list
        for (const g of r.grids) gridNames.set(g.code, g.name);
        listing = null;
        listFor = key;
        setGridMsg(!r.grids.length ? { key: 'q.grid.noMatch' }
          : r.matched > r.grids.length ? { key: 'q.grid.more', vars: { k: fmtNumber(r.grids.length), n: fmtNumber(r.matched) } }
            : null);
        showGridChoices(r.grids.map((g) => ({ ...g, dedicated: g.kind === 'dedicated' })));
        if (enterPending) {
          enterPending = false;
          pickOption(options()[0]);
        }
      } catch (err) {
        if (err.name === 'AbortError' || listing !== ctl) return;
        listing = null;
        enterPending = false;
        setGridMsg({ text: err.message });
      }
    }

    let picking = null;
    let picked = Promise.resolve(); // the detail of the grid last picked (settles, never fails)
    async function pickGrid(code, known = {}) {
      picking?.abort();
      const ctl = new AbortController();
      picking = ctl;
      drawer.setMode('none');
      setArea({ grid: code }, { name: known.name ?? gridNames.get(code), level: known.level });
      const detail = api.gridOutline(code, { signal: ctl.signal });
      picked = detail.catch(() => null);
      try {
        const g = await detail;
        if (picking !== ctl || state.area?.grid !== code) return;
        learnGrid(g);
        state.areaInfo = { kind: 'grid', code, name: g.name, level: g.kind === 'dedicated' ? 'grid' : g.level };
        state.outline = g.geometry ?? null;
        qmap.set('q-area', areaFeatures());
        renderArea();
        renderResults(); // group bars may name grids the detail carried
        if (g.bbox) {
          const [w, s, e, n] = g.bbox;
          map.fitBounds([[w, s], [e, n]], { padding: 40, duration: 600, maxZoom: 17 });
        }
      } catch (err) {
        if (err.name !== 'AbortError') console.warn('grid:', err.message);
      } finally {
        if (picking === ctl) picking = null;
      }
    }

    /** Looks up the names of the grids the shown group bars stand for that no answer carried yet:
     *  one search by their common code prefix, then one per code still unknown (≤ MAX_BARS). */
    const asked = new Set(); // codes looked up already (found or not)
    let naming = null;
    async function nameGroups() {
      const r = state.result;
      const level = r?.groupBy;
      if (!LEVELS.includes(level) || !state.active) return;
      await picked; // the picked grid's children may name them
      if (state.result !== r) return;
      const groups = r.layers[state.active]?.groups ?? {};
      const missing = Object.entries(groups)
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, MAX_BARS)
        .map(([k]) => k)
        .filter((k) => k !== 'none' && k !== 'null' && !gridNames.has(k) && !asked.has(k));
      if (!missing.length) return;
      for (const k of missing) asked.add(k);
      naming ??= new AbortController();
      const opts = { signal: naming.signal };
      const learn = (res) => { for (const g of res.grids) gridNames.set(g.code, g.name); };
      try {
        let prefix = missing[0];
        for (const k of missing) while (!k.startsWith(prefix)) prefix = prefix.slice(0, -1);
        if (missing.length > 2 && prefix.length >= 2) learn(await api.searchGrids(prefix, { level, limit: 200 }, opts));
        await Promise.all(missing.filter((k) => !gridNames.has(k))
          .map((k) => api.searchGrids(k, { level, limit: 1 }, opts).then(learn)));
      } catch (err) {
        if (err.name === 'AbortError') return;
        console.warn('grid names:', err.message);
      }
      renderResults();
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

    /** The ones of `layers` whose schema has property `prop`. */
    const layersWith = (prop, layers) => layers.filter((n) => state.schemas.get(n)?.properties?.some((p) => p.name === prop));

    /** Groupable properties of any chosen layer, in order of first appearance. */
    function groupableProps() {
      const seen = new Map();
      for (const n of state.layers) {
        for (const p of state.schemas.get(n)?.properties ?? []) {
          if (GROUPABLE_TYPES.has(p.type) && !NOT_GROUPABLE.has(p.name) && !seen.has(p.name)) seen.set(p.name, p);
        }
      }
      return [...seen.values()];
    }

    function renderGroupBy() {
      const sel = $('.q-groupby');
      const props = groupableProps();
      const valid = ['', ...LEVELS, ...props.map((p) => p.name)];
      if (!valid.includes(state.groupBy)) state.groupBy = '';
      const opt = (value, text) => {
        const o = document.createElement('option');
        o.value = value;
        o.textContent = text;
        return o;
      };
      const group = (label, names) => {
        const g = document.createElement('optgroup');
        g.label = label;
        g.append(...names.map((n) => opt(n, propText(n))));
        return g;
      };
      const levels = document.createElement('optgroup');
      levels.label = t('q.groupBy.levels');
      levels.append(...LEVELS.map((l) => opt(l, t(`level.${l}`))));
      // properties every chosen layer has, then those only some have (the others stay ungrouped)
      const all = props.filter((p) => layersWith(p.name, state.layers).length === state.layers.length).map((p) => p.name);
      const some = props.map((p) => p.name).filter((n) => !all.includes(n));
      sel.replaceChildren(opt('', t('q.groupBy.none')), levels,
        ...(all.length ? [group(t('q.groupBy.props'), all)] : []),
        ...(some.length ? [group(t('q.groupBy.propsSome'), some)] : []));
      sel.value = state.groupBy;
      renderGroupNote();
    }

    const propText = (n) => (propLabel(n) === n ? n : `${propLabel(n)} (${n})`);
    const listText = (xs) => xs.join(getLang() === 'zh' ? '、' : ', ');

    /** Under the select: which chosen layers lack the property grouped by (and stay ungrouped). */
    function renderGroupNote() {
      const by = state.groupBy;
      const lacking = by && !LEVELS.includes(by) ? state.layers.filter((n) => !layersWith(by, [n]).length) : [];
      const note = $('.q-groupby-note');
      note.hidden = !lacking.length;
      note.textContent = lacking.length
        ? tf('q.groupBy.note', { layers: listText(lacking.map((n) => layerLabel(n, state.schemas.get(n)))), prop: propText(by) })
        : '';
    }

    /** The `group_by` of a query over `layers`: a grid level as it is; a property for the layers
     *  that have it ({layer: property}); the layers left out are `ungrouped`. */
    function composeGroupBy(layers) {
      const by = state.groupBy;
      if (!by) return { ungrouped: [] };
      if (LEVELS.includes(by)) return { groupBy: by, ungrouped: [] };
      const having = layersWith(by, layers);
      const ungrouped = layers.filter((l) => !having.includes(l));
      return having.length ? { groupBy: Object.fromEntries(having.map((l) => [l, by])), ungrouped } : { ungrouped: layers };
    }

    $('.q-groupby').addEventListener('change', (e) => {
      state.groupBy = e.target.value;
      renderGroupNote();
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
      const g = composeGroupBy(req.layers);
      if (g.groupBy) req.group_by = g.groupBy;
      const groupBy = g.groupBy ? state.groupBy : null;
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
        state.result = { body: req, filterKind: f.kind, groupBy, ungrouped: groupBy ? g.ungrouped : [], total: res.total, layers };
        state.error = null;
        if (state.download && !state.download.busy) state.download = null;
        if (!req.layers.includes(state.active)) state.active = req.layers.find((n) => layers[n].count > 0) ?? req.layers[0];
        firstPage();
        nameGroups();
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
      nameGroups();
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
    // (for every layer that has the property: the common filter when all do, else theirs)
    function drillGroup(key) {
      const by = state.result?.groupBy;
      if (!by || key === 'none' || key === 'null') return;
      if (ALL_LEVELS.includes(by)) { pickGrid(key); return; }
      const type = state.schemas.get(state.active)?.properties.find((p) => p.name === by)?.type;
      const lit = type === 'int' || type === 'float' || type === 'bool' ? key : `'${key.replaceAll("'", "''")}'`;
      const term = `${by} = ${lit}`;
      const and = (input) => {
        const cur = input.value.trim();
        input.value = cur ? `(${cur}) AND ${term}` : term;
      };
      const common = $('.q-filter-text');
      if (common.value.trim().startsWith('{')) return;
      const having = layersWith(by, state.layers);
      if (having.length === state.layers.length) and(common);
      else {
        for (const l of having) {
          const input = root.querySelector(`.q-perlayer-list input[data-layer="${CSS.escape(l)}"]`);
          if (input) and(input);
        }
        $('.q-perlayer').open = true;
      }
      run();
    }

    function groupLabel(by, key) {
      if (key === 'none') return t('q.groups.none');
      if (ALL_LEVELS.includes(by)) return gridNames.get(key) ?? key;
      return fmtValue(by, key === 'null' ? null : key);
    }

    // ── downloads: a link for a query that fits a URL, else POSTed and saved from a Blob ──
    let exportsMemo = null; // { result, active, value }: the queries are rebuilt only when these change
    function exportsOf() {
      const r = state.result;
      if (!r || !state.active) return null;
      if (exportsMemo?.result === r && exportsMemo.active === state.active) return exportsMemo.value;
      const csv = { area: r.body.area, layers: [state.active] };
      const fl = filterFor(state.active);
      if (fl !== undefined) csv.filter = fl;
      const geojson = { area: r.body.area, layers: r.body.layers };
      if (r.filterKind !== 'none') geojson.filter = r.body.filter;
      const one = (kind, query, name) => {
        const url = api.exportUrl(kind, query);
        return { kind, query, name, href: url.length <= MAX_URL ? url : null };
      };
      const value = { csv: one('csv', csv, `onemap-${state.active}.csv`), geojson: one('geojson', geojson, 'onemap-query.geojson') };
      exportsMemo = { result: r, active: state.active, value };
      return value;
    }

    let downloading = null;
    const blobUrls = new Map(); // object URL → its revoking timer
    async function download(kind) {
      const item = exportsOf()?.[kind];
      if (!item || state.download?.busy) return;
      const ctl = new AbortController();
      downloading = ctl;
      state.download = { kind, busy: true, error: null };
      body.dataset.queryDownload = 'busy';
      renderResults();
      try {
        saveBlob(await api.exportBlob(kind, item.query, { signal: ctl.signal }), item.name);
        state.download = null;
        body.dataset.queryDownload = 'done';
      } catch (err) {
        if (err.name === 'AbortError') return;
        state.download = { kind, busy: false, error: err.message };
        body.dataset.queryDownload = 'error';
      } finally {
        if (downloading === ctl) downloading = null;
      }
      renderResults();
    }

    /** Saves a Blob as a file named `name`: an object URL clicked in a temporary link. */
    function saveBlob(blob, name) {
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = name;
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      // revoked once the browser has surely taken the file (at once would race the download)
      blobUrls.set(url, setTimeout(() => { URL.revokeObjectURL(url); blobUrls.delete(url); }, BLOB_TTL));
    }

    function renderResults() {
      const dl = exportsOf();
      results.render(state, { groupLabel, downloads: dl && { ...dl, busy: state.download?.busy ? state.download.kind : null, error: state.download?.error ?? null } });
      if (state.highlight) results.highlight(state.highlight.id);
    }

    cleanups.push(onLangChange(() => {
      renderGridLevels();
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
      inflight?.abort(); paging?.abort(); listing?.abort(); picking?.abort(); naming?.abort(); downloading?.abort();
      for (const [url, timer] of blobUrls) { clearTimeout(timer); URL.revokeObjectURL(url); }
      map.off('click', onMapClick);
    });

    // ── start: schemas, the grids in view ──
    renderGridLevels();
    renderArea();
    setStatus('idle');
    const ready = (async () => {
      const [layers] = await Promise.all([api.layers(), qmap.ready]);
      for (const l of layers) state.schemas.set(l.name, l);
      state.layers = state.layers.filter((n) => state.schemas.has(n));
      renderLayers();
      afterLayersChange();
      // the grids layer's extent is the district's (or the city's): no grid list needed
      const gb = state.schemas.get('grids')?.bbox;
      if (gb) map.fitBounds([[gb[0], gb[1]], [gb[2], gb[3]]], { padding: 30, duration: 0 });
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
      delete body.dataset.queryDownload;
    });

    return () => { for (const fn of cleanups.reverse()) fn(); };
  },
};
