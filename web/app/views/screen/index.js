// The big screen (大屏): a full-screen map; on the left the district overview and the layer
// switcher; on the right the grid card over the overdue list; between them the live counters
// (top) and the charts (bottom), all fed by the live stream (live-view.js). Everything it creates
// is released by the returned unmount.
import { api } from '../../api.js';
import { current } from '../../session.js';
import { applyI18n, fmtNumber, onLangChange, t } from '../../i18n.js';
import { createCard } from './card.js';
import { createLayerPanel } from './layers.js';
import { createLiveScreen } from './live-view.js';
import { createMap, deepestLevelAt, gridAtPoint, loadStyle, setGlobal, uiScale } from './map.js';

const LAYOUT = `
  <div class="map" id="map"></div>
  <div class="left">
    <section class="overview panel">
      <h2 data-i18n-b="overview.title"></h2>
      <div class="ov-grid">
        <div class="ov"><span class="v" data-o="households"></span><span class="k" data-i18n="card.households"></span></div>
        <div class="ov"><span class="v" data-o="cameras"></span><span class="k" data-i18n="card.cameras"></span></div>
        <div class="ov"><span class="v" data-o="risks"></span><span class="k" data-i18n="card.risks"></span></div>
        <div class="ov"><span class="v" data-o="events_open"></span><span class="k" data-i18n="card.eventsOpen"></span></div>
        <div class="ov warn"><span class="v" data-o="events_overdue"></span><span class="k" data-i18n="card.eventsOverdue"></span></div>
        <div class="ov"><span class="v" data-o="buildings"></span><span class="k" data-i18n="card.buildings"></span></div>
      </div>
    </section>
    <section class="layer-panel"></section>
  </div>
  <section class="live-kpis panel" aria-live="off">
    <div class="lk" data-k="today_new"><span class="v">–</span><span class="k" data-i18n-b="live.todayNew"></span></div>
    <div class="lk" data-k="today_closed"><span class="v">–</span><span class="k" data-i18n-b="live.todayClosed"></span></div>
    <div class="lk" data-k="events_open"><span class="v">–</span><span class="k" data-i18n-b="card.eventsOpen"></span></div>
    <div class="lk warn" data-k="events_overdue"><span class="v">–</span><span class="k" data-i18n-b="card.eventsOverdue"></span></div>
    <div class="live-state" data-state="connecting"><i></i><span class="live-state-text"></span><time></time></div>
  </section>
  <div class="right">
    <aside class="grid-card" id="grid-card" aria-live="polite"></aside>
    <section class="overdue panel">
      <h2><span data-i18n-b="live.overdueList"></span><span class="od-total"></span></h2>
      <div class="od-viewport"><ol class="od-list"></ol></div>
      <p class="od-empty" data-i18n="live.noOverdue" hidden></p>
    </section>
  </div>
  <div class="charts">
    <section class="panel chart-panel" data-chart="source"><h2 data-i18n-b="live.bySource"></h2><div class="chart"></div></section>
    <section class="panel chart-panel" data-chart="category"><h2 data-i18n-b="live.byCategory"></h2><div class="chart"></div></section>
    <section class="panel chart-panel" data-chart="rates"><h2 data-i18n-b="live.rates"></h2><div class="chart"></div></section>
    <section class="panel chart-panel" data-chart="top"><h2 data-i18n-b="live.topGrids"></h2><div class="chart"></div></section>
  </div>
  <div class="map-tools">
    <span class="status" data-state="loading"><i></i><span class="status-text"></span></span>
    <button type="button" class="pitch" data-i18n-title="view.pitch.title"></button>
  </div>`;

export const screenView = {
  async mount(root) {
    root.innerHTML = LAYOUT;
    // an account scoped to some grids sees its own area, not the district
    if (current()?.scope?.length) root.querySelector('.overview h2').dataset.i18nB = 'overview.scopeTitle';
    applyI18n(root);
    const $ = (s) => root.querySelector(s);
    const cleanups = [];
    let statusKey = 'status.loading';
    const setStatus = (key, state) => {
      if (statusKey === key) return;
      statusKey = key;
      $('.status').dataset.state = state;
      $('.status-text').textContent = t(key);
    };
    $('.status-text').textContent = t(statusKey);

    const { style, ok: styleOk } = await loadStyle();
    const map = createMap($('#map'), style, { onTileError: () => setStatus('status.noTiles', 'error') });
    if (!styleOk) setStatus('status.noStyle', 'error');
    cleanups.push(() => map.remove());

    const onResize = () => setGlobal(map, 'ui_scale', uiScale());
    onResize();
    addEventListener('resize', onResize);
    cleanups.push(() => removeEventListener('resize', onResize));

    map.once('idle', () => {
      document.body.dataset.mapIdle = '1';
      if (styleOk && statusKey === 'status.loading') setStatus('status.ok', 'ok');
    });

    // ── pitch toggle ──
    const pitchBtn = $('.pitch');
    const showPitch = () => { pitchBtn.textContent = map.getPitch() > 5 ? t('view.2d') : t('view.3d'); };
    pitchBtn.addEventListener('click', () => map.easeTo({ pitch: map.getPitch() > 5 ? 0 : 50, duration: 800 }));
    map.on('pitchend', showPitch);
    showPitch();

    // ── grid selection ──
    let inflight = null;
    // the map's free middle: between the side columns, under the counters, over the charts
    const fitPadding = () => {
      const left = $('.left').getBoundingClientRect();
      const right = $('.right').getBoundingClientRect();
      const kpis = $('.live-kpis').getBoundingClientRect();
      const charts = $('.charts').getBoundingClientRect();
      const top = Math.max(document.getElementById('top')?.getBoundingClientRect().bottom ?? 0, kpis.height ? kpis.bottom : 0);
      const pad = Math.round(24 * uiScale());
      return {
        top: top + pad,
        bottom: (charts.height ? innerHeight - charts.top : 0) + pad,
        left: (left.width ? left.right : 0) + pad,
        right: (right.width ? innerWidth - right.left : 0) + pad,
      };
    };

    async function openGrid(code, { fit = false, source = 'api' } = {}) {
      inflight?.abort();
      const ctl = new AbortController();
      inflight = ctl;
      card.loading();
      try {
        const g = await api.grid(code, { signal: ctl.signal });
        if (ctl.signal.aborted) return null;
        card.show(g);
        $('#grid-card').dataset.source = source;
        setGlobal(map, 'selected', g.code);
        if (fit && g.bbox) {
          const [w, s, e, n] = g.bbox;
          map.fitBounds([[w, s], [e, n]], { padding: fitPadding(), duration: 900, maxZoom: 18 });
        }
        return g;
      } catch (err) {
        if (err.name === 'AbortError') return null;
        card.error(err);
        throw err;
      } finally {
        if (inflight === ctl) inflight = null;
      }
    }

    const card = createCard($('#grid-card'), { onOpen: (code, o) => openGrid(code, o).catch(() => {}) });
    cleanups.push(() => { inflight?.abort(); card.destroy(); });

    map.on('click', async (e) => {
      const code = gridAtPoint(map, e.point);
      if (code) { openGrid(code, { source: 'tiles' }).catch(() => {}); return; }
      // No grid drawn there (layer hidden, tiles unavailable): ask the server which grid holds it.
      try {
        const r = await api.locate(e.lngLat.lng.toFixed(7), e.lngLat.lat.toFixed(7));
        const levels = ['district', 'street', 'community', 'grid', 'micro'];
        const deepest = levels.indexOf(deepestLevelAt(map.getZoom()));
        for (let i = deepest; i >= 0; i--) {
          const hit = r.levels?.[levels[i]];
          if (hit) { openGrid(hit.code, { source: 'locate' }).catch(() => {}); return; }
        }
      } catch { /* a click outside the district */ }
    });

    createLayerPanel($('.layer-panel'), map);

    // ── overview of the district ──
    let overview = null;
    const renderOverview = () => {
      if (!overview) return;
      const c = overview.counts;
      if (liveTotal?.events_open != null) { c.events_open = liveTotal.events_open; c.events_overdue = liveTotal.events_overdue; }
      const o = (k) => root.querySelector(`[data-o="${k}"]`);
      o('households').textContent = fmtNumber(c.households);
      o('cameras').textContent = `${fmtNumber(c.cameras_online)}/${fmtNumber(c.cameras)}`;
      o('risks').textContent = fmtNumber(c.risks);
      o('events_open').textContent = fmtNumber(c.events_open);
      o('events_overdue').textContent = fmtNumber(c.events_overdue);
      o('buildings').textContent = fmtNumber(c.buildings);
    };
    cleanups.push(onLangChange(() => { renderOverview(); showPitch(); $('.status-text').textContent = t(statusKey); }));

    // ── live: counters, charts, overdue list, grid tint and pulses from the stream ──
    let liveTotal = null;
    const live = createLiveScreen(root, map, {
      openGrid: (code) => openGrid(code, { fit: true }).catch(() => {}),
      onTotals: (total) => { liveTotal = total; renderOverview(); },
      onAreas: (model, codes) => {
        const code = card.code;
        const a = code && codes.has(code) ? model.areas.get(code) : null;
        if (a) card.patch(code, { events_open: a.open, events_overdue: a.overdue });
      },
    });
    cleanups.push(() => live.destroy());

    // What the screen covers: the district, or for an account scoped to some streets or
    // communities, those grids (their counts summed; the first one's card opens, and the map
    // fits them all).
    const scope = current()?.scope ?? [];
    const loadOverview = async () => {
      if (!scope.length) {
        const { grids } = await api.grids('district');
        if (!grids?.length) throw new Error('no district in the store');
        return { counts: { ...grids[0].counts }, code: grids[0].code, bbox: null };
      }
      const cards = await Promise.all(scope.map((code) => api.grid(code)));
      const counts = {};
      for (const g of cards) for (const [k, v] of Object.entries(g.counts ?? {})) if (typeof v === 'number') counts[k] = (counts[k] ?? 0) + v;
      const boxes = cards.map((g) => g.bbox).filter(Boolean);
      const bbox = boxes.length ? [Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1])), Math.max(...boxes.map((b) => b[2])), Math.max(...boxes.map((b) => b[3]))] : null;
      return { counts, code: cards[0].code, bbox: cards.length > 1 ? bbox : null };
    };

    const ready = (async () => {
      overview = await loadOverview();
      root.dataset.scope = scope.join(',');
      renderOverview();
      await openGrid(overview.code, { fit: !overview.bbox });
      if (overview.bbox) {
        const [w, s, e, n] = overview.bbox;
        map.fitBounds([[w, s], [e, n]], { padding: fitPadding(), duration: 900, maxZoom: 18 });
      }
      return map;
    })();
    ready.catch((err) => console.warn('overview:', err.message));

    // The screen runs unattended: refresh the overview and the open card every minute (one timer,
    // cleared on unmount; a refresh never moves the map and gives way to a user's selection).
    const REFRESH_MS = 60_000;
    const refresh = async () => {
      try {
        overview = await loadOverview();
        renderOverview();
        const code = card.code;
        if (code && !inflight) {
          const g = await api.grid(code);
          if (card.code === code && !inflight) card.show(g);
        }
      } catch { /* server restarting: try again next time */ }
    };
    const timer = setInterval(refresh, REFRESH_MS);
    cleanups.push(() => clearInterval(timer));

    window.onemap = { map, ready, openGrid, deepestLevelAt, refresh, live };
    cleanups.push(() => { delete window.onemap; delete document.body.dataset.mapIdle; });

    return () => { for (const fn of cleanups.reverse()) fn(); };
  },
};
