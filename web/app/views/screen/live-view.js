// The live part of the big screen: the stream (GET /api/live) and the snapshot (GET /api/stats)
// feed one model (live-model.js); the map (grid tint through feature-state, pulses of new
// orders, tile refresh where stored geometry changed), the counters, the charts and the overdue
// list draw from it.
//
// Rendering is throttled: messages only update the model and mark what changed; one flush at
// most every FLUSH_MS draws it all, so a flood of orders costs a few redraws a second. On every
// `hello` (a new connection, or a reconnection) the screen resynchronises from /api/stats; a
// minute tick rolls the day over, ages the overdue list, reconnects a stream that has gone quiet
// while the server moved on (GET /healthz `seq`), and every RESYNC_MS resynchronises anyway.
// destroy() releases all of it (stream, timers, animation frame, charts).
import { api, getJSON } from '../../api.js';
import { hasKey, t } from '../../i18n.js';
import { connectLive } from '../../live.js';
import { GRID_LEVELS } from '../../palette.js';
import { createCharts } from './charts.js';
import {
  applyEvent, applySnapshot, applyStats, consistent, createLiveModel, localDay, OVERDUE_MAX,
} from './live-model.js';
import { createKpis, createOverdueList } from './panels.js';
import { createPulses } from './pulse.js';

const FLUSH_MS = 300;
const TILE_REFRESH_MS = 2000;
const HELLO_WAIT_MS = 2000;
const REFILL_MS = 3000;
const TICK_MS = 60_000;
const RESYNC_MS = 10 * 60_000;
const QUIET_MS = 90_000;
const HEAL_AFTER_MS = 5000; // counters that disagree this long are resynchronised …
const HEAL_EVERY_MS = 30_000; // … at most this often
const TILE_SOURCE = 'om';
const TILE_MAXZOOM = 16;
const TILE_IDS_MAX = 200;

const label = (prefix, code) => (code && hasKey(`${prefix}.${code}`) ? t(`${prefix}.${code}`) : code ?? '');

/**
 * @param root  the screen's element (holds .live-kpis, .overdue and the .chart boxes)
 * @param map   the MapLibre map
 * @param hooks { openGrid(code), onTotals(total), onAreas(model, codes) }
 */
export function createLiveScreen(root, map, hooks = {}) {
  const model = createLiveModel();
  const kpis = createKpis(root.querySelector('.live-kpis'));
  const overdue = createOverdueList(root.querySelector('.overdue'), {
    onGrid: (code) => hooks.openGrid?.(code),
    categoryLabel: (c) => label('v.category', c),
    gridName: (code) => (code ? model.names.get(code) ?? code : ''),
  });
  const pulses = createPulses(map);
  let charts = null;
  let destroyed = false;
  const pendingAreas = new Set(); // areas whose tint is to be written
  const touched = new Set(); // areas changed since the last flush (for the grid card)
  let flushTimer = 0;
  let lastFlush = 0;
  let flushes = 0;
  let streamSeq = 0;
  let ticks = 0;
  let inconsistentSince = null;
  let healTimer = 0;
  let lastResync = 0;
  let resolveReady;
  const ready = new Promise((r) => { resolveReady = r; });

  // ── charts: ECharts loads on mount; the screen works (and the model fills) before it has ──
  const chartsReady = createCharts({
    source: root.querySelector('[data-chart="source"] .chart'),
    category: root.querySelector('[data-chart="category"] .chart'),
    rates: root.querySelector('[data-chart="rates"] .chart'),
    top: root.querySelector('[data-chart="top"] .chart'),
  }, { onGrid: (code) => hooks.openGrid?.(code) }).then((c) => {
    if (destroyed) { c.destroy(); return null; }
    charts = c;
    schedule();
    return c;
  }).catch((err) => { console.warn('charts:', err.message); return null; });

  // ── drawing ──
  function schedule() {
    if (flushTimer || destroyed) return;
    flushTimer = setTimeout(flush, Math.max(0, lastFlush + FLUSH_MS - performance.now()));
  }

  function writeTint() {
    if (!pendingAreas.size || !map.getSource(TILE_SOURCE)) return;
    for (const code of pendingAreas) {
      const a = model.areas.get(code);
      if (a?.fid == null) continue;
      map.setFeatureState({ source: TILE_SOURCE, sourceLayer: 'grids', id: a.fid }, { open: a.open, overdue: a.overdue });
    }
    pendingAreas.clear();
  }

  function flush() {
    flushTimer = 0;
    if (destroyed) return;
    lastFlush = performance.now();
    flushes += 1;
    writeTint();
    kpis.render(model);
    overdue.render(model);
    charts?.update(model);
    hooks.onTotals?.(model.total);
    if (touched.size) { hooks.onAreas?.(model, touched); touched.clear(); }
    heal();
    if (model.snapshots && charts) resolveReady();
  }

  // Today's per-source counters come from the stream's orders; when they disagree with the
  // server's count of today's orders for a while (a message lost in a reconnect), resync.
  function heal() {
    if (!model.snapshots || consistent(model)) { inconsistentSince = null; return; }
    const now = performance.now();
    inconsistentSince ??= now;
    if (now - inconsistentSince >= HEAL_AFTER_MS && now - lastResync >= HEAL_EVERY_MS) {
      inconsistentSince = null;
      resync(['district']);
    } else if (!healTimer) {
      healTimer = setTimeout(() => { healTimer = 0; heal(); }, HEAL_AFTER_MS + 100);
    }
  }

  // ── snapshot ──
  let syncing = null;
  let syncAgain = new Set();
  let syncAbort = null;
  async function resync(levels = GRID_LEVELS) {
    if (destroyed) return;
    if (syncing) { for (const l of levels) syncAgain.add(l); return; }
    lastResync = performance.now();
    syncAbort = new AbortController();
    const { signal } = syncAbort;
    syncing = (async () => {
      try {
        // the district level first: totals, today, overdue list; then the areas of each level
        const answers = await Promise.all(levels.map((l) => api.stats(l, null, { signal })));
        if (destroyed) return;
        for (const snap of answers) for (const code of applySnapshot(model, snap)) { pendingAreas.add(code); touched.add(code); }
        schedule();
      } catch (err) {
        if (err.name !== 'AbortError') console.warn('stats:', err.message);
      }
    })();
    await syncing;
    syncing = null;
    if (syncAgain.size && !destroyed) {
      const next = [...syncAgain];
      syncAgain = new Set();
      resync(GRID_LEVELS.filter((l) => next.includes(l)));
    }
  }
  // An order left a full overdue list: the next oldest is known to the server only. Refill soon
  // (one request for any number of orders leaving meanwhile).
  let refillTimer = 0;
  function refill() {
    refillTimer ||= setTimeout(() => { refillTimer = 0; resync(['district']); }, REFILL_MS);
  }
  const firstSync = setTimeout(() => resync(), HELLO_WAIT_MS); // no hello (stream unavailable)

  // ── tiles: where stored geometry changed, reload the tiles the map holds there ──
  let changedBoxes = [];
  let tileTimer = 0;
  function refreshTiles() {
    tileTimer = 0;
    const boxes = changedBoxes;
    changedBoxes = [];
    if (destroyed || !boxes.length || !map.getSource(TILE_SOURCE)) return;
    const zoom = Math.floor(map.getZoom());
    const ids = [];
    for (let z = Math.max(0, zoom - 4); z <= Math.min(TILE_MAXZOOM, zoom + 1); z++) {
      const n = 2 ** z;
      const pad = 360 / n / 16; // the tiles' buffer: an order near an edge is drawn by both
      for (const [w, s, e, nn] of boxes) {
        const x0 = lonToX(w - pad, n); const x1 = lonToX(e + pad, n);
        const y0 = latToY(nn + pad, n); const y1 = latToY(s - pad, n);
        for (let x = x0; x <= x1; x++) for (let y = y0; y <= y1; y++) ids.push({ x, y, z });
      }
      if (ids.length > TILE_IDS_MAX) break;
    }
    if (ids.length > TILE_IDS_MAX) map.refreshTiles(TILE_SOURCE);
    else map.refreshTiles(TILE_SOURCE, ids);
  }

  // ── the stream ──
  const live = connectLive('/api/live', {
    hello(d) {
      clearTimeout(firstSync);
      // A new connection: what the server holds up to d.seq comes with the snapshot, so orders
      // replayed from before it must not be counted again. (Set, not raised: a restarted server
      // may count from lower.)
      model.seq = Number(d.seq) || 0;
      streamSeq = model.seq;
      kpis.setStore(d.store);
      resync();
    },
    // The server's database went away (the figures are frozen at what it holds) or came back.
    health(h) {
      kpis.setStore(h.store);
      if (h.store === 'ok') resync();
    },
    event(ev) {
      streamSeq = Math.max(streamSeq, Number(ev.seq) || 0);
      const r = applyEvent(model, ev);
      if (!r.fresh) return;
      if (ev.op === 'created') pulses.add(ev);
      if (r.overdueLeft) refill(); // the list lost one of a longer list
      schedule();
    },
    stats(msg) {
      const overdueBefore = model.total.events_overdue;
      const { changed, dayChanged } = applyStats(model, msg);
      // Orders that pass their deadline come as a count only (no `event`): a list that is not
      // full and now knows fewer orders than the count asks the server for them.
      const overdueNow = model.total.events_overdue;
      if (overdueNow !== overdueBefore && model.overdue.size < OVERDUE_MAX && overdueNow > model.overdue.size) refill();
      for (const code of changed) { pendingAreas.add(code); touched.add(code); }
      if (dayChanged) resync();
      schedule();
    },
    changed(c) {
      streamSeq = Math.max(streamSeq, Number(c.seq) || 0);
      if (!Array.isArray(c.bbox) || c.bbox.length !== 4) return;
      if (changedBoxes.length >= 32) changedBoxes = [union(changedBoxes)];
      changedBoxes.push(c.bbox);
      tileTimer ||= setTimeout(refreshTiles, TILE_REFRESH_MS);
    },
    state(s) { kpis.setState(s); },
  });

  // ── the minute tick ──
  let tickDay = localDay(Date.now());
  const tick = setInterval(async () => {
    ticks += 1;
    const today = localDay(Date.now());
    if (today !== tickDay) { tickDay = today; resync(); return; } // midnight (UTC+8): a new "today"
    if (ticks % Math.round(RESYNC_MS / TICK_MS) === 0) resync();
    overdue.render(model); // how late each order is
    if (live.state === 'open' && live.quietFor > QUIET_MS) {
      try {
        const h = await getJSON('/healthz');
        if (!destroyed && Number(h.seq) > streamSeq) live.reconnect();
      } catch { /* the server is away: EventSource is on it */ }
    }
  }, TICK_MS);

  // the tint waits for the tile source
  const onStyle = () => schedule();
  map.on('style.load', onStyle);

  return {
    model,
    ready,
    charts: () => chartsReady,
    pulses: () => pulses.list(),
    chartOption: (name) => charts?.option(name) ?? null,
    get stream() { return live.state; },
    get flushes() { return flushes; },
    flush,
    resync,
    destroy() {
      destroyed = true;
      live.close();
      syncAbort?.abort();
      for (const id of [flushTimer, healTimer, tileTimer, refillTimer, firstSync]) clearTimeout(id);
      clearInterval(tick);
      map.off('style.load', onStyle);
      pulses.destroy();
      kpis.destroy();
      overdue.destroy();
      charts?.destroy();
      charts = null;
    },
  };
}

function lonToX(lon, n) { return Math.min(n - 1, Math.max(0, Math.floor(((lon + 180) / 360) * n))); }
function latToY(lat, n) {
  const r = (Math.max(-85.0511, Math.min(85.0511, lat)) * Math.PI) / 180;
  return Math.min(n - 1, Math.max(0, Math.floor(((1 - Math.asinh(Math.tan(r)) / Math.PI) / 2) * n)));
}
function union(boxes) {
  return boxes.reduce((a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])]);
}
