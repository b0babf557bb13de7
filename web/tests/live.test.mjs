// The big screen, live: work orders POSTed to the real server reach the open screen through
// GET /api/live and show within 2 s (a pulsing marker, the counters); closing one moves the
// closure numbers and the grid's tint (feature-state); a burst of orders grows neither the DOM,
// nor the listeners, nor the pulses; the language switch relabels the charts.
// Run from web/: `node --test tests/` (see harness.mjs for the server and the browser).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, SLOW, useServer, waitIdle } from './harness.mjs';

const env = useServer();
const CJK = /[\u4e00-\u9fff]/;
let points = []; // locations of the demo's work orders: inside the district's grids
let seqNo = 0;

/** Loads, once, the locations of the demo's work orders (inside the district's grids). */
let located = null;
function locate() {
  located ??= (async () => {
    const district = (await env.api('/api/grids?level=district')).grids[0].code;
    const r = await env.post('/api/query', { area: { grid: district }, layers: ['events'], limit: 500 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    points = r.body.layers.events.features.features.map((f) => f.geometry.coordinates);
    assert.ok(points.length >= 50, 'the demo has work orders to take locations from');
  })();
  return located;
}

const SOURCES = ['hotline_12345', 'police_110', 'grid_report', 'camera_alarm', 'resident_app', 'petition'];
const CATEGORIES = ['noise', 'sanitation', 'traffic', 'illegal_parking'];
const DAY = 86_400_000;

/** A new work order (GeoJSON Feature) at one of the demo's locations. */
function order(i, over = {}) {
  seqNo += 1;
  const id = `T-${process.pid}-${seqNo}`;
  return {
    type: 'Feature', id,
    geometry: { type: 'Point', coordinates: points[(seqNo * 7 + i) % points.length] },
    properties: {
      source: SOURCES[i % SOURCES.length], category: CATEGORIES[i % CATEGORIES.length], status: 'new',
      title: `测试工单 ${seqNo}`, deadline: new Date(Date.now() + 2 * DAY).toISOString(), department: '城管', ...over,
    },
  };
}

async function postOrders(features) {
  const r = await env.post('/api/events', features.length === 1 ? features[0] : { type: 'FeatureCollection', features });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

async function patch(id, body) {
  const r = await env.fetch(`/api/events/${encodeURIComponent(id)}`, {
    method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

/** The screen, open and live: the first snapshot drawn, the charts up, the stream open. */
async function openLive(opts) {
  await locate();
  const p = await openPage(env, '#/screen', opts);
  await p.page.evaluate(() => window.onemap.live.ready);
  await p.page.waitForFunction(() => document.querySelector('.live-state')?.dataset.state === 'open');
  return p;
}

const kpi = (page, k) => page.evaluate((key) => Number(document.querySelector(`.lk[data-k="${key}"]`).dataset.value), k);

/**
 * Listeners added and not removed, counted by wrapping EventTarget (installed before the page's
 * scripts): window.__listeners() in all, on window, document, connected nodes and other live
 * targets (nodes taken out of the page go with their listeners), and per "Class:type" in
 * window.__listeners().byType. Listeners on an AbortSignal are left out: each belongs to one
 * request (MapLibre's, ours) and goes with it.
 */
function countListeners() {
  const registry = new Map(); // target → Map(type|capture → Set(listener)); strong refs: a test page
  const add = EventTarget.prototype.addEventListener;
  const remove = EventTarget.prototype.removeEventListener;
  const key = (type, o) => `${type}|${typeof o === 'boolean' ? o : Boolean(o?.capture)}`;
  EventTarget.prototype.addEventListener = function (type, fn, o) {
    if (fn && !(typeof o === 'object' && o?.once) && !(this instanceof AbortSignal)) {
      let m = registry.get(this);
      if (!m) registry.set(this, m = new Map());
      const k = key(type, o);
      if (!m.has(k)) m.set(k, new Set());
      m.get(k).add(fn);
    }
    return add.call(this, type, fn, o);
  };
  EventTarget.prototype.removeEventListener = function (type, fn, o) {
    registry.get(this)?.get(key(type, o))?.delete(fn);
    return remove.call(this, type, fn, o);
  };
  window.__listeners = () => {
    let total = 0;
    const byType = {};
    for (const [target, m] of registry) {
      if (target instanceof Node && !target.isConnected) continue;
      for (const [k, set] of m) {
        if (!set.size) continue;
        total += set.size;
        const name = `${target.constructor.name}:${k.split('|')[0]}`;
        byType[name] = (byType[name] ?? 0) + set.size;
      }
    }
    return { total, byType };
  };
  // and the EventSources not closed
  const sources = [];
  const Native = window.EventSource;
  window.EventSource = class extends Native {
    constructor(...a) { super(...a); sources.push(this); }
  };
  Object.defineProperty(window, '__openStreams', { get: () => sources.filter((e) => e.readyState !== Native.CLOSED).length });
}

describe('big screen, live', { timeout: 10 * SLOW }, () => {
  test('a POSTed order pulses on the map and counts in today\'s new orders within 2 s; no console error, nothing fetched off the server (ECharts included)', async (t) => {
    const { page, ctx, rec } = await openLive();
    try {
      await page.waitForFunction(() => document.body.dataset.mapIdle === '1');
      const before = await kpi(page, 'today_new');
      const o = order(0);
      const t0 = Date.now();
      await postOrders([o]);
      await page.waitForFunction(([id, n]) => {
        const { live, map } = window.onemap;
        const pulse = live.pulses().find((p) => p.id === id);
        const drawn = map.queryRenderedFeatures({ layers: ['live-pulse-core'] }).some((f) => f.properties.id === id);
        const count = Number(document.querySelector('.lk[data-k="today_new"]').dataset.value);
        return pulse && drawn && count === n;
      }, [o.id, before + 1], { polling: 50, timeout: 5000 });
      const took = Date.now() - t0;
      t.diagnostic(`POST → pulse drawn and counter +1: ${took} ms`);
      assert.ok(took < 2000, `the pulse and the counter took ${took} ms`);
      assert.equal(await page.locator('.lk[data-k="today_new"] .v').innerText(), (before + 1).toLocaleString('zh-CN'));

      // the marker is animated: its ring's phase moves between frames (waited for rather than
      // sampled once 250 ms apart: on a loaded machine a frame can take that long)
      const a = await page.evaluate((id) => {
        const p = window.onemap.live.pulses().find((x) => x.id === id);
        return window.onemap.map.getFeatureState({ source: 'live', id: p.slot }).ring;
      }, o.id);
      const moved = await page.waitForFunction(([id, first]) => {
        const p = window.onemap.live.pulses().find((x) => x.id === id);
        return p && window.onemap.map.getFeatureState({ source: 'live', id: p.slot }).ring !== first;
      }, [o.id, a], { polling: 'raf', timeout: 3000 }).then(() => true, () => false);
      assert.ok(moved, 'the pulse does not move');

      // the source chart counts it
      const bySource = await page.evaluate(() => window.onemap.live.model.todayBySource);
      assert.ok(bySource[o.properties.source] >= 1);

      assert.deepEqual(rec.pageErrors, [], 'uncaught exceptions');
      assert.deepEqual(rec.consoleErrors, [], 'console errors');
      assert.deepEqual(rec.foreign, [], 'requests outside the server');
      assert.equal(await page.locator('[data-chart] canvas').count() >= 4, true, 'the four charts draw');
      assert.ok(await page.evaluate(() => performance.getEntriesByName(`${location.origin}/node_modules/echarts/dist/echarts.esm.min.mjs`).length === 1),
        'ECharts comes from web/node_modules');
    } finally { await ctx.close(); }
  });

  test('closing an order moves the closure numbers and the tint of its grid (feature-state, no tile refetch)', async () => {
    const { page, ctx, rec } = await openLive();
    let tileRequests = 0;
    page.on('request', (r) => { if (r.url().includes('/tiles/')) tileRequests += 1; });
    try {
      const o = order(1);
      const created = await postOrders([o]);
      const gridCode = created.results[0].grids.grid;
      const grid = (await env.api('/api/stats?level=grid')).areas.find((a) => a.code === gridCode);
      assert.ok(grid, `grid ${gridCode} in /api/stats?level=grid`);
      const state = () => page.evaluate((fid) => window.onemap.map.getFeatureState({ source: 'om', sourceLayer: 'grids', id: fid }), grid.fid);
      await page.waitForFunction(([fid, open]) => window.onemap.map.getFeatureState({ source: 'om', sourceLayer: 'grids', id: fid }).open === open,
        [grid.fid, grid.events_open], { timeout: 5000 });
      // let the map settle: first tiles, and the refresh of the tiles where the order was added
      await page.waitForTimeout(2500);
      await waitIdle(page);

      const before = {
        closed: await kpi(page, 'today_closed'),
        open: await kpi(page, 'events_open'),
        rate: await page.evaluate(() => window.onemap.live.chartOption('rates').series[0].data[0].value),
        tiles: tileRequests,
      };
      const answer = await patch(o.id, { status: 'closed' });
      assert.equal(answer.status, 'closed');
      await page.waitForFunction(([n, fid, open]) => Number(document.querySelector('.lk[data-k="today_closed"]').dataset.value) === n
        && window.onemap.map.getFeatureState({ source: 'om', sourceLayer: 'grids', id: fid }).open === open,
      [before.closed + 1, grid.fid, grid.events_open - 1], { polling: 50, timeout: 5000 });
      assert.equal(await kpi(page, 'events_open'), before.open - 1);
      const rate = await page.evaluate(() => window.onemap.live.chartOption('rates').series[0].data[0].value);
      assert.ok(rate > before.rate, `closure rate ${before.rate} → ${rate}`);

      // what the map holds is what the server says
      const after = (await env.api('/api/stats?level=grid')).areas.find((a) => a.code === gridCode);
      assert.deepEqual(await state(), { open: after.events_open, overdue: after.events_overdue });
      const district = (await env.api('/api/stats?level=district')).total;
      assert.equal(await kpi(page, 'today_closed'), district.today_closed);
      assert.equal(await kpi(page, 'events_open'), district.events_open);
      // the number change itself fetched no tile (the `changed` notice may, 2 s later)
      assert.equal(tileRequests, before.tiles, 'tiles were fetched for a number change');

      // an order overdue since long ago heads the overdue list; closing it takes it out, and the
      // list (the oldest 20 of more) is refilled from the server
      const late = order(2, { created_at: '2026-01-01T00:00:00Z', deadline: '2026-01-02T00:00:00Z' });
      await postOrders([late]);
      await page.waitForFunction((id) => document.querySelector('.od-list li:not([hidden])')?.dataset.id === id, late.id, { timeout: 5000 });
      const server = (await env.api('/api/stats?level=district')).overdue_list;
      assert.equal(server[0].id, late.id);
      const rows = () => page.evaluate(() => [...document.querySelectorAll('.od-list li:not([hidden])')].map((li) => li.dataset.id));
      assert.equal((await rows()).length, server.length);
      await patch(late.id, { status: 'closed' });
      await page.waitForFunction((id) => !document.querySelector(`.od-list li[data-id="${id}"]:not([hidden])`), late.id, { timeout: 5000 });
      const refilled = (await env.api('/api/stats?level=district')).overdue_list.map((x) => x.id);
      await page.waitForFunction((n) => document.querySelectorAll('.od-list li:not([hidden])').length === n, refilled.length, { timeout: 8000 });
      assert.deepEqual(await rows(), refilled);
      assert.deepEqual(rec.pageErrors, []);
      assert.deepEqual(rec.consoleErrors, []);
    } finally { await ctx.close(); }
  });

  test('a burst of 200 orders grows neither the DOM nor the listeners; pulses stay bounded and die out', async (t) => {
    const ctx = await env.browser.newContext({ viewport: { width: 1920, height: 1080 } });
    await ctx.addInitScript(countListeners);
    const { page, rec } = await openLive({ context: ctx });
    try {
      const cdp = await ctx.newCDPSession(page);
      // Measured with no request in flight (the stream aside): a fetch holds an abort listener
      // on its signal until it ends.
      const inFlight = new Set();
      page.on('request', (r) => { if (!r.url().endsWith('/api/live')) inFlight.add(r); });
      page.on('requestfinished', (r) => inFlight.delete(r));
      page.on('requestfailed', (r) => inFlight.delete(r));
      const settle = async () => {
        await waitIdle(page);
        for (let i = 0; i < 100 && inFlight.size; i++) await page.waitForTimeout(50);
      };
      const measure = async () => {
        await settle();
        await cdp.send('HeapProfiler.collectGarbage');
        const { usedSize } = await cdp.send('Runtime.getHeapUsage');
        return {
          heap: usedSize,
          ...await page.evaluate(() => ({
            nodes: document.getElementsByTagName('*').length,
            listeners: window.__listeners().total,
            byType: window.__listeners().byType,
            pulses: window.onemap.live.pulses().length,
          })),
        };
      };
      const burst = async (n) => {
        const before = await kpi(page, 'today_new');
        await postOrders(Array.from({ length: n }, (_, i) => order(i)));
        await page.waitForFunction((want) => Number(document.querySelector('.lk[data-k="today_new"]').dataset.value) === want,
          before + n, { timeout: 10_000 });
        await page.waitForTimeout(500); // the last flush
      };
      await burst(60); // warm up: every chart, row and pulse slot has been used once
      const first = await measure();
      await burst(200);
      const second = await measure();
      await burst(200);
      const third = await measure();
      t.diagnostic(`after 60/260/460 orders: ${JSON.stringify([first, second, third].map(({ byType, ...m }) => m))}`);
      assert.equal(second.nodes, first.nodes, 'DOM nodes');
      assert.equal(third.nodes, first.nodes, 'DOM nodes');
      const grown = (a, b) => Object.keys(b.byType).filter((k) => (b.byType[k] ?? 0) > (a.byType[k] ?? 0))
        .map((k) => `${k} ${a.byType[k] ?? 0}→${b.byType[k]}`).join(', ');
      assert.ok(second.listeners <= first.listeners && third.listeners <= first.listeners,
        `listeners ${first.listeners} → ${second.listeners} → ${third.listeners}; grown: ${grown(first, second)}; ${grown(first, third)}`);
      const MAX = 48;
      assert.ok(second.pulses <= MAX && third.pulses <= MAX, `pulses ${second.pulses}, ${third.pulses}`);
      assert.ok(third.pulses > 0);
      const pulseData = await page.evaluate(() => window.onemap.map.getSource('live').serialize().data);
      assert.ok(!pulseData.features || pulseData.features.length <= MAX);
      // the numbers add up after the bursts
      const total = (await env.api('/api/stats?level=district')).total;
      const model = await page.evaluate(() => window.onemap.live.model);
      assert.equal(model.total.today_new, total.today_new);
      assert.deepEqual(model.todayBySource, total.today_by_source);
      assert.deepEqual(model.todayByCategory, total.today_by_category);
      // memory: the heap after the third burst is within a few MB of the second
      assert.ok(third.heap - second.heap < 8e6, `heap ${second.heap} → ${third.heap}`);
      // pulses last a few seconds, then the animation stops
      await page.waitForFunction(() => window.onemap.live.pulses().length === 0, null, { timeout: 10_000 });

      // leaving the screen releases what it took: the stream is closed, and coming back leaves
      // as many listeners as the first visit
      await page.evaluate(() => { location.hash = '#/query'; });
      await page.waitForFunction(() => document.body.dataset.view === 'query' && window.__openStreams === 0);
      await page.evaluate(() => { location.hash = '#/screen'; });
      await page.waitForFunction(() => window.onemap?.live);
      await page.evaluate(() => window.onemap.live.ready);
      const back = await measure();
      assert.equal(await page.evaluate(() => window.__openStreams), 1, 'streams open');
      assert.equal(back.nodes, first.nodes, 'DOM nodes after leaving and coming back');
      assert.equal(back.listeners, first.listeners, `listeners after leaving and coming back: ${grown(first, back)}`);
      assert.deepEqual(rec.pageErrors, []);
      assert.deepEqual(rec.consoleErrors, []);
    } finally { await ctx.close(); }
  });

  test('the language switch relabels the charts: titles, legends, axes and gauges', async () => {
    const { page, ctx } = await openLive();
    try {
      await postOrders([order(1, { category: 'noise', source: 'police_110' })]);
      await page.waitForFunction(() => (window.onemap.live.chartOption('category')?.yAxis?.[0]?.data ?? []).includes('噪音扰民'), null, { timeout: 5000 });
      const texts = () => page.evaluate(() => {
        const o = (n) => window.onemap.live.chartOption(n);
        return {
          headings: [...document.querySelectorAll('[data-chart] h2, .overdue h2 > span:first-child, .lk .k')].map((e) => e.innerText),
          source: o('source').series[0].data.map((d) => d.name),
          sourceUnit: o('source').title[0].subtext,
          category: o('category').yAxis[0].data,
          gauges: o('rates').series.map((s) => s.data[0].name),
          topLegend: o('top').legend[0].data,
          topSeries: o('top').series.map((s) => s.name),
        };
      });
      const zh = await texts();
      assert.ok(zh.source.includes('110 警情'));
      assert.deepEqual(zh.gauges, ['办结率', '按期办结率']);
      assert.ok(zh.headings.some((h) => h.startsWith('今日事件来源')), zh.headings.join());

      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'en');
      await page.waitForFunction(() => !/[\u4e00-\u9fff]/.test(JSON.stringify(window.onemap.live.chartOption('rates').series.map((s) => s.data[0].name))));
      const en = await texts();
      assert.ok(en.source.includes('110 police'), en.source.join());
      assert.ok(en.category.includes('Noise'), en.category.join());
      assert.deepEqual(en.gauges, ['Closure rate', 'On-time rate']);
      assert.deepEqual(en.topLegend.map((d) => d.name ?? d), ['Open', 'of which overdue']);
      assert.ok(en.headings.includes("Today's orders by source"), en.headings.join());
      for (const [k, v] of Object.entries(en)) assert.doesNotMatch(JSON.stringify(v), CJK, `${k} still has Chinese`);

      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
      assert.deepEqual((await texts()).gauges, ['办结率', '按期办结率']);
    } finally { await ctx.close(); }
  });
});
