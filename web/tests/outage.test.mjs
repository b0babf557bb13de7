// The big screen while the server's PostGIS database is away: the server, serving the demo from a
// throwaway cluster (pg.mjs), tells the open screens over GET /api/live (`health`, and `hello`'s
// `store` for a screen opened meanwhile), and the screen's live-state indicator says the figures
// are paused, in either language; the map keeps drawing (tiles come from the server's memory);
// when the database is back, the indicator is live again. Skipped when PostgreSQL or PostGIS is
// not installed (an error in CI).
// Run from web/: `node --test tests/outage.test.mjs` (see harness.mjs for the server and browser).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, SLOW, useServer, waitIdle } from './harness.mjs';
import { startCluster } from './pg.mjs';

const cluster = await startCluster();
const env = cluster ? useServer({ database: cluster.url }) : null;
after(() => cluster?.destroy()); // runs after useServer's `after`: the server is stopped first

const TEXT = {
  'zh-CN': { open: '实时', stale: '数据库中断，数据暂停更新' },
  en: { open: 'Live', stale: 'Database unreachable, figures paused' },
};
// What Chromium logs for a request answered 503: the only console error allowed, and only while
// the database is away (the server refuses with 503 what needs the database).
const FAILED_503 = 'Failed to load resource: the server responded with a status of 503 (Service Unavailable)';

/** Waits for the live-state indicator to show `state` in `lang`. */
function waitState(page, state, lang, timeout) {
  return page.waitForFunction(([s, text]) => {
    const el = document.querySelector('.live-state');
    return el?.dataset.state === s && el.querySelector('.live-state-text')?.textContent === text;
  }, [state, TEXT[lang][state]], { timeout, polling: 100 });
}

/** waitState, failing with what the screen shows and the server said. */
async function expectState(page, state, lang, timeout, what) {
  try {
    await waitState(page, state, lang, timeout);
  } catch (err) {
    const shown = await page.evaluate(() => {
      const el = document.querySelector('.live-state');
      return `${el?.dataset.state}: ${el?.querySelector('.live-state-text')?.textContent}`;
    }).catch((e) => e.message);
    throw new Error(`${what}: not ${state} within ${timeout} ms (shows ${shown})\nserver log:\n${env.log}\ndatabase log:\n${cluster.log().slice(-2000)}`, { cause: err });
  }
}

/** Failures beyond the allowed ones: 503 answers, each logged as FAILED_503 at most once. */
function unexpected({ consoleErrors, failedResponses }) {
  const refused = failedResponses.filter((r) => r.startsWith('503 '));
  const other = consoleErrors.filter((m) => m !== FAILED_503);
  return {
    responses: failedResponses.filter((r) => !r.startsWith('503 ')),
    consoleErrors: consoleErrors.length - other.length > refused.length ? consoleErrors : other,
  };
}
const NONE = { responses: [], consoleErrors: [] };

/** The z/x/y tile holding a point. */
function tileAt(z, lon, lat) {
  const n = 2 ** z;
  const r = (lat * Math.PI) / 180;
  return [z, Math.floor(((lon + 180) / 360) * n), Math.floor(((1 - Math.asinh(Math.tan(r)) / Math.PI) / 2) * n)];
}

describe('big screen, database outage', { timeout: 4 * SLOW, skip: cluster ? false : 'PostgreSQL and PostGIS are not installed' }, () => {
  test('the live state goes stale ("数据库中断，数据暂停更新" / "Database unreachable, figures paused") while PostGIS is down and live again when it is back; the map keeps drawing', async (t) => {
    // a grid to look at during the outage, and a tile of it (asked for while the database answers)
    const grid = await env.api(`/api/grids/${(await env.api('/api/grids?level=grid')).grids[0].code}`);
    const [w, s, e, n] = grid.bbox;
    const [z, x, y] = tileAt(14, (w + e) / 2, (s + n) / 2);
    const tileUrl = `/tiles/grids/${z}/${x}/${y}.mvt`;

    const { page, ctx, rec } = await openPage(env, '#/screen');
    // from here on, what the page does, by phase: 'up', 'down' (from the stop until the screen is
    // live again), 'back'
    let phase = 'up';
    const requests = []; // [phase, "GET /path"]
    const during = { consoleErrors: [], failedResponses: [] }; // the 'down' phase's
    page.on('request', (r) => requests.push([phase, `${r.method()} ${new URL(r.url()).pathname}`]));
    const count = (re) => ['up', 'down', 'back'].map((p) => requests.filter(([q, r]) => q === p && re.test(r)).length).join('/');
    try {
      await page.evaluate(() => window.onemap.live.ready);
      await expectState(page, 'open', 'zh-CN', SLOW, 'the screen');
      assert.equal((await env.api('/healthz')).health, 'ok');
      assert.deepEqual(rec.consoleErrors, [], 'console errors before the outage');
      assert.deepEqual(rec.failedResponses, [], 'failed requests before the outage');

      // a second screen's context signs in now: POST /api/login needs the database (it re-reads
      // the accounts), an open session does not
      const secondCtx = await env.browser.newContext({ viewport: { width: 1280, height: 720 } });
      await env.loginApi(secondCtx);

      // ── the database goes away ──
      phase = 'down';
      page.on('console', (m) => { if (phase === 'down' && m.type() === 'error') during.consoleErrors.push(m.text()); });
      page.on('response', (r) => { if (phase === 'down' && r.status() >= 400) during.failedResponses.push(`${r.status()} ${r.url()}`); });
      let t0 = Date.now();
      cluster.stop();
      await expectState(page, 'stale', 'zh-CN', 20_000, 'the screen, after the database stopped');
      t.diagnostic(`database stopped → screen stale: ${Date.now() - t0} ms`);

      const asked = Date.now();
      const h = await fetch(`${env.origin}/healthz`);
      const health = await h.json();
      t.diagnostic(`/healthz → ${h.status} in ${Date.now() - asked} ms: ${health.error}`);
      assert.equal(h.status, 503, JSON.stringify(health));
      assert.equal(health.health, 'store_unreachable', JSON.stringify(health));
      assert.equal(health.outages, 1, JSON.stringify(health));

      // the map keeps drawing: a tile not asked for before, and the tiles of the map moved onto
      // the grid
      const tile = await page.evaluate(async (u) => {
        const r = await fetch(u);
        return { status: r.status, bytes: (await r.arrayBuffer()).byteLength };
      }, tileUrl);
      assert.equal(tile.status, 200, `${tileUrl} → ${JSON.stringify(tile)}`);
      assert.ok(tile.bytes > 0, `${tileUrl} is empty`);
      await page.evaluate(([a, b, c, d]) => window.onemap.map.fitBounds([[a, b], [c, d]], { animate: false }), grid.bbox);
      await waitIdle(page);
      assert.ok(requests.some(([p, r]) => p === 'down' && /^GET \/tiles\/.+\.mvt$/.test(r) && r !== `GET ${tileUrl}`),
        'the map asked for no tile while the database was away');

      // a screen opened now draws from the server's memory and learns of the outage from `hello`
      const second = await openPage(env, '#/screen', { context: secondCtx });
      try {
        await second.page.evaluate(() => window.onemap.live.ready);
        await expectState(second.page, 'stale', 'zh-CN', 20_000, 'a screen opened during the outage');
        assert.deepEqual(second.rec.pageErrors, [], 'uncaught exceptions (screen opened during the outage)');
        assert.deepEqual(second.rec.foreign, [], 'requests outside the server (screen opened during the outage)');
        assert.deepEqual(unexpected(second.rec), NONE, 'failures (screen opened during the outage)');
      } finally { await second.ctx.close(); }

      // the language switch relabels the state
      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'en');
      await expectState(page, 'stale', 'en', 5000, 'the screen in English');

      // ── the database is back ──
      t0 = Date.now();
      cluster.restart();
      await expectState(page, 'open', 'en', 40_000, 'the screen, after the database restarted');
      phase = 'back';
      t.diagnostic(`database restarted → screen live: ${Date.now() - t0} ms`);
      const back = await env.api('/healthz');
      assert.equal(back.health, 'ok');
      assert.equal(back.outages, 1);

      t.diagnostic(`page requests up/down/back: /api/stats ${count(/ \/api\/stats$/)}, /api/live ${count(/ \/api\/live$/)}, `
        + `tiles ${count(/^GET \/tiles\/.+\.mvt$/)}`);
      t.diagnostic(`during the outage: ${JSON.stringify(during)}`);
      assert.deepEqual(rec.pageErrors, [], 'uncaught exceptions');
      assert.deepEqual(rec.foreign, [], 'requests outside the server');
      assert.deepEqual(unexpected(during), NONE, 'failures during the outage');
      // before and after the outage, none: all of the page's failures are the outage's
      assert.deepEqual(rec.consoleErrors, during.consoleErrors, 'console errors outside the outage');
      assert.deepEqual(rec.failedResponses, during.failedResponses, 'failed requests outside the outage');
    } finally { await ctx.close(); }
  });
});
