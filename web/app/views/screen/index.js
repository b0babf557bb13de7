// The big screen (大屏): a full-screen map, the layer switcher with the district overview on the
// left, the grid card on the right. Everything it creates is released by the returned unmount.
import { api } from '../../api.js';
import { applyI18n, fmtNumber, onLangChange, t } from '../../i18n.js';
import { createCard } from './card.js';
import { createLayerPanel } from './layers.js';
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
  <aside class="grid-card" id="grid-card" aria-live="polite"></aside>
  <div class="map-tools">
    <span class="status" data-state="loading"><i></i><span class="status-text"></span></span>
    <button type="button" class="pitch" data-i18n-title="view.pitch.title"></button>
  </div>`;

export const screenView = {
  async mount(root) {
    root.innerHTML = LAYOUT;
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
    const fitPadding = () => {
      const left = $('.left').getBoundingClientRect();
      const card = $('.grid-card').getBoundingClientRect();
      const top = document.getElementById('top')?.getBoundingClientRect().bottom ?? 0;
      const pad = Math.round(24 * uiScale());
      return {
        top: top + pad,
        bottom: pad,
        left: (left.width ? left.right : 0) + pad,
        right: (card.width ? innerWidth - card.left : 0) + pad,
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
      const o = (k) => root.querySelector(`[data-o="${k}"]`);
      o('households').textContent = fmtNumber(c.households);
      o('cameras').textContent = `${fmtNumber(c.cameras_online)}/${fmtNumber(c.cameras)}`;
      o('risks').textContent = fmtNumber(c.risks);
      o('events_open').textContent = fmtNumber(c.events_open);
      o('events_overdue').textContent = fmtNumber(c.events_overdue);
      o('buildings').textContent = fmtNumber(c.buildings);
    };
    cleanups.push(onLangChange(() => { renderOverview(); showPitch(); $('.status-text').textContent = t(statusKey); }));

    const ready = (async () => {
      const { grids } = await api.grids('district');
      if (!grids?.length) throw new Error('no district in the store');
      overview = grids[0];
      renderOverview();
      await openGrid(grids[0].code, { fit: true });
      return map;
    })();
    ready.catch((err) => console.warn('district:', err.message));

    // The screen runs unattended: refresh the overview and the open card every minute (one timer,
    // cleared on unmount; a refresh never moves the map and gives way to a user's selection).
    const REFRESH_MS = 60_000;
    const refresh = async () => {
      try {
        const { grids } = await api.grids('district');
        if (grids?.[0]) { overview = grids[0]; renderOverview(); }
        const code = card.code;
        if (code && !inflight) {
          const g = await api.grid(code);
          if (card.code === code && !inflight) card.show(g);
        }
      } catch { /* server restarting: try again next time */ }
    };
    const timer = setInterval(refresh, REFRESH_MS);
    cleanups.push(() => clearInterval(timer));

    window.onemap = { map, ready, openGrid, deepestLevelAt, refresh };
    cleanups.push(() => { delete window.onemap; delete document.body.dataset.mapIdle; });

    return () => { for (const fn of cleanups.reverse()) fn(); };
  },
};
