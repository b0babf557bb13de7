// Browser tests of the big screen, as a person sees it: the real server on a small demo store,
// Debian's Chromium through playwright-core, software GL (swiftshader).
// Run from web/: `node --test tests/` (needs a built server and `apt-get install chromium
// fonts-noto-cjk`). The server binary is $ONEMAP_BIN if set, else ../target/release/onemap, else
// ../target/debug/onemap. Tests marked [tiles] need GET /styles/{name}.json and the vector tiles.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePng, distinctColours } from './png.mjs';
import { openPage, SLOW, useServer, waitIdle } from './harness.mjs';

const LEVELS = ['district', 'street', 'community', 'grid', 'micro'];
const LEVEL_FROM = { district: 0, street: 9, community: 11, grid: 13, micro: 15 }; // tile contract

const env = useServer();
const api = (p) => env.api(p);

/** A fresh page on the screen, recording what went wrong while it ran. */
const openScreen = (opts) => openPage(env, '', opts);

const cardName = (page) => page.locator('#grid-card .name');
const waitCard = (page, code) => page.waitForFunction(
  (c) => { const el = document.getElementById('grid-card'); return el && !el.hidden && el.dataset.code === c && !el.classList.contains('loading'); },
  code,
);

describe('big screen', { timeout: 10 * SLOW }, () => {
  test('loads at #/screen without JS errors and requests nothing outside its origin', async () => {
    const { page, ctx, rec } = await openScreen();
    try {
      assert.equal(new URL(page.url()).hash, '#/screen');
      assert.equal(await page.locator('#top h1').innerText().then((s) => s.replace(/\s+/g, '')), '社会治理一张图·onemap');
      assert.match(await page.locator('#top .clock-time').innerText(), /^\d\d:\d\d:\d\d$/);
      const district = (await api('/api/grids?level=district')).grids[0];
      await expectCard(page, district.code, district.name);
      assert.deepEqual(rec.pageErrors, [], 'uncaught exceptions');
      // Failed resource loads are the [tiles] test's business; anything else the app logs is a bug.
      assert.deepEqual(rec.consoleErrors.filter((m) => !m.startsWith('Failed to load resource')), [], 'console errors');
      assert.deepEqual(rec.foreign, [], 'requests outside the server');
    } finally { await ctx.close(); }
  });

  test('a grid card opened by code shows the API figures; drill down and breadcrumb move through the hierarchy', async () => {
    const { page, ctx, rec } = await openScreen();
    try {
      const district = await api(`/api/grids/${(await api('/api/grids?level=district')).grids[0].code}`);
      await page.evaluate((c) => window.onemap.openGrid(c), district.code);
      await expectCard(page, district.code, district.name);
      const card = page.locator('#grid-card');
      assert.equal(await card.locator('.badge.level').innerText(), '区');
      assert.equal(await card.locator('[data-f=staff]').innerText(), district.staff);
      assert.equal(await card.locator('[data-f=phone]').innerText(), district.phone);
      const n = (v) => v.toLocaleString('zh-CN');
      assert.equal(await card.locator('[data-f=households]').innerText(), n(district.households));
      assert.equal(await card.locator('[data-f=cameras]').innerText(), `${n(district.counts.cameras_online)}/${n(district.counts.cameras)}`);
      assert.equal(await card.locator('[data-f=risk_red]').innerText(), n(district.counts.risks_by_level.red));
      assert.equal(await card.locator('[data-f=events_overdue]').innerText(), n(district.counts.events_overdue));

      // drill down: district → street → community, the map follows
      let parent = district;
      for (const level of ['street', 'community']) {
        assert.equal(await card.locator('.children .child').count(), parent.children.length);
        const child = parent.children[0];
        assert.equal(child.level, level);
        await card.locator(`.children .child[data-code="${child.code}"]`).click();
        await expectCard(page, child.code, child.name);
        const detail = await api(`/api/grids/${child.code}`);
        await page.waitForFunction(([w, s, e, nn]) => {
          const m = window.onemap.map; const c = m.getCenter();
          return !m.isMoving() && c.lng > w && c.lng < e && c.lat > s && c.lat < nn;
        }, detail.bbox);
        const crumbs = await card.locator('.crumbs .crumb').allInnerTexts();
        assert.deepEqual(crumbs, detail.path.map((p) => p.name));
        parent = detail;
      }
      // the breadcrumb goes back up to the district
      await card.locator(`.crumbs button[data-code="${district.code}"]`).click();
      await expectCard(page, district.code, district.name);
      assert.deepEqual(rec.pageErrors, []);
    } finally { await ctx.close(); }
  });

  test('the language switch turns header and card into English and back, and is remembered', async () => {
    const { page, ctx } = await openScreen();
    try {
      const card = page.locator('#grid-card');
      await card.locator('.name').waitFor();
      const staffLabel = card.locator('.people dt').first();
      assert.match(await staffLabel.innerText(), /^网格员/);
      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'en');
      assert.equal(await page.locator('#top h1').innerText().then((s) => s.replace(/\s*·\s*/g, ' · ')), 'Social Governance One Map · onemap');
      assert.equal(await staffLabel.innerText(), 'Grid worker');
      assert.equal(await card.locator('.badge.level').innerText(), 'District');
      assert.equal(await card.locator('.drill h3').innerText(), 'Drill down');
      assert.equal(await page.locator('#top .lang-switch').innerText(), '中文');
      assert.doesNotMatch(await page.locator('.layers').innerText(), /[\u4e00-\u9fff]/, 'layer panel still has Chinese');
      assert.doesNotMatch(await card.locator('.kpis, .risks, .drill h3, .people dt').allInnerTexts().then((a) => a.join(' ')), /[\u4e00-\u9fff]/, 'card labels still have Chinese');

      await page.reload();
      await page.waitForFunction(() => window.onemap?.ready);
      await page.evaluate(() => window.onemap.ready);
      assert.equal(await page.locator('.people dt').first().innerText(), 'Grid worker', 'choice not remembered');

      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
      assert.match(await page.locator('#top h1').innerText(), /^社会治理一张图/);
      assert.match(await page.locator('.people dt').first().innerText(), /^网格员/);
      assert.equal(await page.locator('#grid-card .badge.level').innerText(), '区');
    } finally { await ctx.close(); }
  });

  test('the layout scales from 1920×1080 to a 3840×2160 wall', async () => {
    const sizes = {};
    for (const [w, h] of [[1920, 1080], [3840, 2160]]) {
      const { page, ctx } = await openScreen({ width: w, height: h });
      try {
        await page.locator('#grid-card .name').waitFor();
        sizes[w] = await page.evaluate(() => {
          const r = (s) => document.querySelector(s).getBoundingClientRect();
          return {
            title: parseFloat(getComputedStyle(document.querySelector('#top h1')).fontSize),
            card: r('#grid-card'), left: r('.left'),
            scale: window.onemap.map.getGlobalState().ui_scale,
          };
        });
        const s = sizes[w];
        assert.ok(s.left.right < s.card.left, 'left panel and card overlap');
        assert.ok(s.card.right <= w && s.card.bottom <= h, 'card off screen');
      } finally { await ctx.close(); }
    }
    assert.ok(Math.abs(sizes[3840].title / sizes[1920].title - 2) < 0.05, `title ${sizes[1920].title}px → ${sizes[3840].title}px`);
    assert.ok(Math.abs(sizes[3840].card.width / sizes[1920].card.width - 2) < 0.05);
    assert.equal(sizes[1920].scale, 1);
    assert.equal(sizes[3840].scale, 2);
  });

  test('opening grids over and over does not grow the DOM', async () => {
    const { page, ctx } = await openScreen();
    try {
      const codes = (await api('/api/grids?level=community')).grids.slice(0, 4).map((g) => g.code);
      const cycle = () => page.evaluate(async (cs) => {
        for (const c of cs) await window.onemap.openGrid(c);
        return document.getElementsByTagName('*').length;
      }, codes);
      const first = await cycle();
      for (let i = 0; i < 5; i++) assert.equal(await cycle(), first);
    } finally { await ctx.close(); }
  });

  test('[tiles] the map draws the district and the page logs no error', async () => {
    const { page, ctx, rec } = await openScreen();
    try {
      await page.waitForFunction(() => document.body.dataset.mapIdle === '1');
      await waitIdle(page);
      // only the map: hide the panels drawn over it for the shot
      await page.addStyleTag({ content: '#top, .left, .grid-card, .map-tools { visibility: hidden !important; }' });
      const png = decodePng(await page.locator('#map canvas').screenshot());
      const colours = distinctColours(png);
      assert.ok(colours > 50, `the map canvas shows ${colours} colour(s): are /styles/screen.json and /tiles/… served?`);
      assert.deepEqual(rec.failedResponses, [], 'failed responses');
      assert.deepEqual(rec.consoleErrors, [], 'console errors');
      assert.deepEqual(rec.foreign, []);
    } finally { await ctx.close(); }
  });

  test('[tiles] clicking the map opens the card of the deepest grid drawn there', async () => {
    const { page, ctx } = await openScreen();
    try {
      // zoom to a street, mid-way between two integer zooms so the tile zoom is unambiguous
      const street = (await api('/api/grids?level=street')).grids[0];
      await page.evaluate((c) => window.onemap.openGrid(c, { fit: true }), street.code);
      await page.evaluate(() => {
        const m = window.onemap.map;
        m.jumpTo({ zoom: Math.floor(m.getZoom()) + 0.5 });
      });
      await waitIdle(page);
      const zoom = await page.evaluate(() => window.onemap.map.getZoom());
      const level = LEVELS.filter((l) => Math.floor(zoom) >= LEVEL_FROM[l]).at(-1);

      // find a pixel over the map whose neighbourhood lies in one grid of that level
      const candidates = await page.evaluate(() => {
        const out = [];
        const canvas = document.querySelector('#map canvas');
        for (let y = 200; y < innerHeight - 100; y += 60) {
          for (let x = 400; x < innerWidth - 400; x += 60) {
            if (document.elementFromPoint(x, y) !== canvas) continue;
            const ll = window.onemap.map.unproject([x, y]);
            out.push({ x, y, lon: ll.lng, lat: ll.lat });
          }
        }
        return out;
      });
      let target = null;
      for (const c of candidates) {
        const here = (await api(`/api/locate?lon=${c.lon}&lat=${c.lat}`)).levels?.[level];
        if (!here) continue;
        const around = await page.evaluate(({ x, y }) => [[-8, 0], [8, 0], [0, -8], [0, 8]]
          .map(([dx, dy]) => window.onemap.map.unproject([x + dx, y + dy])), c);
        const same = await Promise.all(around.map((ll) => api(`/api/locate?lon=${ll.lng}&lat=${ll.lat}`)));
        if (same.every((r) => r.levels?.[level]?.code === here.code)) { target = { ...c, grid: here }; break; }
      }
      assert.ok(target, `no pixel well inside a ${level} grid at zoom ${zoom}`);
      await page.mouse.click(target.x, target.y);
      await expectCard(page, target.grid.code, target.grid.name);
      assert.equal(await page.locator('#grid-card').getAttribute('data-source'), 'tiles', 'the card came from /api/locate, not from the drawn grids');
    } finally { await ctx.close(); }
  });
});

async function expectCard(page, code, name) {
  await waitCard(page, code);
  assert.equal(await cardName(page).innerText(), name);
}
