// Browser tests of the planner (#/plan), as a planner uses it: a plan made in the UI over a
// community, a vertex two draft grids share dragged with the mouse, validated and published in
// the UI, and the published tiles checked for the new boundary; then a refused op shown inline,
// undo, a mid-edge drag, split, attributes, violations and a refused publish, history and revert,
// and the language switch. Run from web/: `node --test tests/` (see harness.mjs).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, openPage, SLOW, useServer, waitIdle } from './harness.mjs';

const env = useServer();
const W = 1600;
const H = 1000;
const KINDS_ZH = new Set(['重叠', '缝隙', '超出上级', '无效环', '狭长碎片', '户数超限']);

const openPlan = (hash = '#/plan') => openPage(env, hash, { width: W, height: H });

const answers = (page) => page.evaluate(() => Number(document.body.dataset.planAnswers));
/** Waits until the page has had `n` plan requests answered (or refused) in all. */
const waitAnswers = (page, n) => page.waitForFunction(
  (k) => Number(document.body.dataset.planAnswers) >= k && document.body.dataset.planState !== 'busy', n,
);

/** lon/lat → page pixels (whole pixels, as a mouse clicks). */
const pixelsOf = (page, lls) => page.evaluate((ps) => {
  const m = window.onemap.map;
  const r = m.getCanvasContainer().getBoundingClientRect();
  return ps.map((p) => { const q = m.project(p); return [Math.round(r.left + q.x), Math.round(r.top + q.y)]; });
}, lls);

/** Page pixels → lon/lat, as MapLibre turns a mouse event into a map point. */
const lngLatAt = (page, pts) => page.evaluate((ps) => {
  const m = window.onemap.map;
  const r = m.getCanvasContainer().getBoundingClientRect();
  return ps.map(([x, y]) => { const ll = m.unproject([x - r.left, y - r.top]); return [ll.lng, ll.lat]; });
}, pts);

async function centerOn(page, ll, zoom) {
  await page.evaluate(([c, z]) => new Promise((resolve) => {
    const m = window.onemap.map;
    m.once('moveend', resolve);
    m.jumpTo({ center: c, zoom: z });
  }), [ll, zoom]);
  await waitIdle(page);
}

async function fitOn(page, bbox) {
  await page.evaluate((b) => new Promise((resolve) => {
    const m = window.onemap.map;
    m.once('moveend', resolve);
    m.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 120, duration: 0 });
  }), bbox);
  await waitIdle(page);
}

/** Presses at a pixel, moves by (dx, dy) in steps, releases; returns the release pixel. */
async function drag(page, [x, y], [dx, dy]) {
  await page.mouse.move(x, y);
  await page.mouse.down();
  await page.mouse.move(x + dx / 3, y + dy / 3, { steps: 3 });
  await page.mouse.move(x + dx, y + dy, { steps: 4 });
  await page.mouse.up();
  return [x + dx, y + dy];
}

const rings = (g) => (g.type === 'Polygon' ? g.coordinates : g.coordinates.flat());
const verticesOf = (g) => rings(g).flatMap((r) => r.slice(0, -1));
const hasVertex = (g, c) => verticesOf(g).some((v) => v[0] === c[0] && v[1] === c[1]);
const rad = (d) => (d * Math.PI) / 180;
const metres = ([lon1, lat1], [lon2, lat2]) => {
  const a = Math.sin(rad(lat2 - lat1) / 2) ** 2 + Math.cos(rad(lat1)) * Math.cos(rad(lat2)) * Math.sin(rad(lon2 - lon1) / 2) ** 2;
  return 2 * 6_371_008.8 * Math.asin(Math.sqrt(a));
};
const nearest = (g, c) => Math.min(...verticesOf(g).map((v) => metres(v, c)));
const feature = (plan, code) => plan.grids.features.find((f) => f.properties.code === code);
const bboxOf = (g) => {
  const vs = verticesOf(g);
  return [Math.min(...vs.map((v) => v[0])), Math.min(...vs.map((v) => v[1])), Math.max(...vs.map((v) => v[0])), Math.max(...vs.map((v) => v[1]))];
};

/**
 * Vertices shared by at least two draft grids of `level` and on no boundary of the level above
 * (so a small move stays inside the plan's scope); those of exactly two grids first.
 */
function sharedVertices(plan, level, above, { most = false } = {}) {
  const fs = plan.grids.features;
  const outer = new Set(fs.filter((f) => f.properties.level === above).flatMap((f) => verticesOf(f.geometry).map(String)));
  const owners = new Map();
  for (const f of fs.filter((x) => x.properties.level === level && x.properties.kind !== 'dedicated')) {
    for (const v of new Set(verticesOf(f.geometry).map(String))) owners.set(v, [...(owners.get(v) ?? []), f.properties.code]);
  }
  return [...owners].filter(([k, o]) => o.length >= 2 && !outer.has(k))
    .sort(most ? (a, b) => b[1].length - a[1].length : (a, b) => (a[1].length === 2 ? 0 : a[1].length) - (b[1].length === 2 ? 0 : b[1].length))
    .map(([k, o]) => ({ from: k.split(',').map(Number), owners: o }));
}

/** A community with no dedicated grid below it, and the codes of the grids it holds. */
async function communityAndBelow(skip = []) {
  for (const c of (await env.api('/api/grids?level=community')).grids) {
    if (c.kind === 'dedicated' || skip.includes(c.code)) continue;
    const codes = [c.code];
    let dedicated = false;
    for (const g of (await env.api(`/api/grids/${c.code}`)).children) {
      if (g.kind === 'dedicated') dedicated = true;
      codes.push(g.code);
      for (const m of (await env.api(`/api/grids/${g.code}`)).children) codes.push(m.code);
    }
    if (!dedicated) return { community: c, codes };
  }
  throw new Error('no community without dedicated grids in the demo');
}

/** Validates in the UI; resolves the status element's result (ok | bad) and the answer. */
async function validateInUi(page) {
  await page.locator('.pl-tabs [data-tab="validate"]').click();
  const n = await answers(page);
  await page.locator('.pl-validate').click();
  await waitAnswers(page, n + 1);
  const result = await page.locator('.pl-validate-status').getAttribute('data-result');
  const id = await page.evaluate(() => window.onemap.plan.plan().id);
  return { result, answer: await env.api(`/api/plans/${id}/validate`) };
}

/** Clicks a draft grid of the editable level at its label point (brought into view first). */
const clickSelect = async (page, code, { shift = false } = {}) => {
  const c = await page.evaluate((k) => window.onemap.plan.pmap.data('p-label').features.find((f) => f.properties.code === k)?.geometry.coordinates, code);
  assert.ok(c, `no label point for ${code}`);
  const inView = await page.evaluate((p) => {
    const m = window.onemap.map;
    const q = m.project(p);
    const el = m.getCanvasContainer();
    return q.x > 20 && q.y > 20 && q.x < el.clientWidth - 60 && q.y < el.clientHeight - 40;
  }, c);
  if (!inView) await centerOn(page, c, await page.evaluate(() => window.onemap.map.getZoom()));
  const [[x, y]] = await pixelsOf(page, [c]);
  if (shift) await page.keyboard.down('Shift');
  await page.mouse.click(x, y);
  if (shift) await page.keyboard.up('Shift');
};

describe('plan page', { timeout: 12 * SLOW }, () => {
  let published = null; // the community of the first test

  test('a plan made in the UI: drag a shared vertex, validate, publish, and the tiles show the new boundary', async () => {
    const { page, ctx, rec } = await openPlan();
    try {
      const { community, codes } = await communityAndBelow();
      published = community.code;
      assert.equal(await page.locator('.pl-plan-title').isVisible(), false);
      // ── create: title, author, scope picked by searching its name ──
      const title = `调整${community.name}网格边界`;
      await page.locator('.pl-new-title').fill(title);
      // the author is the signed-in account, not typed
      assert.equal(await page.locator('.pl-new-author').inputValue(), ADMIN.name);
      assert.equal(await page.locator('.pl-new-author').getAttribute('readonly'), '');
      await page.locator('.pl-scope-search').fill(community.name);
      await page.locator(`.pl-choice[data-code="${community.code}"]`).click();
      assert.equal(await page.locator(`.pl-scope .pl-chip[data-code="${community.code}"]`).count(), 1);
      const n0 = await answers(page);
      await page.locator('.pl-create').click();
      await waitAnswers(page, n0 + 1);
      await page.waitForFunction(() => window.onemap.plan.plan()?.id);
      const plan = await page.evaluate(() => window.onemap.plan.plan());
      assert.equal(plan.status, 'draft');
      assert.equal(plan.title, title);
      assert.deepEqual(plan.scope, [community.code]);
      assert.equal(new URL(page.url()).hash, `#/plan?id=${plan.id}`);
      assert.equal(await page.locator('.pl-plan-title').innerText(), title);
      assert.equal(await page.locator('.pl-plan-status').innerText(), '草稿');
      // the draft holds the community and every grid below it, all unchanged
      assert.deepEqual(plan.grids.features.map((f) => f.properties.code).sort(), [...codes].sort());
      assert.ok(plan.grids.features.every((f) => f.properties.state === 'unchanged'));
      assert.equal(await page.locator('.pl-levels [aria-checked="true"]').getAttribute('data-level'), 'grid');
      const listed = await env.api('/api/plans');
      assert.ok(listed.some((p) => p.id === plan.id && p.status === 'draft'));

      // ── drag a vertex two grids share (one handle), until the plan validates ──
      const candidates = sharedVertices(plan, 'grid', 'community');
      assert.ok(candidates.length, 'no shared interior vertex');
      let moved = null;
      for (const cand of candidates.slice(0, 4)) {
        const handles = await page.evaluate((c) => window.onemap.plan.handles().vertices
          .filter((v) => v.from[0] === c[0] && v.from[1] === c[1]).map((v) => v.grids), cand.from);
        assert.equal(handles.length, 1, 'a shared vertex is one handle');
        assert.deepEqual([...handles[0]].sort(), [...cand.owners].sort());
        await centerOn(page, cand.from, 17);
        const [px] = await pixelsOf(page, [cand.from]);
        const n = await answers(page);
        const end = await drag(page, px, [14, 9]);
        await waitAnswers(page, n + 1);
        const [to] = await lngLatAt(page, [end]);
        assert.equal(await page.locator('.pl-op-error').isVisible(), false, await page.locator('.pl-op-error').innerText());
        // both grids (and every other draft grid at that vertex) moved it, on the server
        const after = await env.api(`/api/plans/${plan.id}`);
        for (const code of cand.owners) {
          const g = feature(after, code).geometry;
          assert.ok(!hasVertex(g, cand.from), `${code} still has the old vertex`);
          assert.ok(nearest(g, to) < 0.05, `${code}: the new vertex is ${nearest(g, to)} m from where the mouse let go`);
          assert.equal(feature(after, code).properties.state, 'changed');
        }
        assert.ok(!after.grids.features.some((f) => hasVertex(f.geometry, cand.from)), 'a draft grid kept the old vertex');
        const at = verticesOf(feature(after, cand.owners[0]).geometry).find((v) => metres(v, to) < 0.05);
        // the page redrew from the server's answer
        const shown = await page.evaluate((c) => window.onemap.plan.pmap.data('p-draft').features.find((f) => f.properties.code === c).geometry, cand.owners[0]);
        assert.ok(hasVertex(shown, at));
        const { result, answer } = await validateInUi(page);
        if (result === 'ok') { moved = { ...cand, to: at }; break; }
        // this move broke a rule (a micro-grid's households, say): undo it and try another vertex
        assert.ok(answer.violations.length > 0);
        const u = await answers(page);
        await page.locator('.pl-tools [data-act="undo"]').click();
        await waitAnswers(page, u + 1);
      }
      assert.ok(moved, 'no vertex move that validates');
      assert.match(await page.locator('.pl-validate-status').innerText(), /^校验通过/);
      assert.equal(await page.locator('.pl-validate-list li').count(), 0);
      // the impact table lists only grids of the plan
      for (const code of await page.locator('.pl-impact-grids tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.code))) {
        assert.ok(codes.includes(code), `impact row ${code}`);
      }

      // ── publish with a reason ──
      await page.locator('.pl-tabs [data-tab="publish"]').click();
      assert.equal(await page.locator('.pl-pub-author').inputValue(), ADMIN.name);
      await page.locator('.pl-pub-reason').fill('');
      await page.locator('.pl-pub-go').click();
      assert.match(await page.locator('.pl-pub-out .pl-error').innerText(), /^请填写：原因/);
      const reason = '两网格共用顶点外移，均衡户数';
      await page.locator('.pl-pub-reason').fill(reason);
      const np = await answers(page);
      await page.locator('.pl-pub-go').click();
      await waitAnswers(page, np + 1);
      await page.waitForSelector('.pl-pub-out .pl-result');
      assert.match(await page.locator('.pl-pub-out .pl-result b').innerText(), /^已发布，序号 \d+/);
      await page.waitForFunction(() => window.onemap.plan.plan().status === 'published');
      assert.equal(await page.locator('.pl-plan-status').innerText(), '已发布');
      assert.ok(await page.locator('.pl-tools [data-tool="select"]').isDisabled(), 'read-only after publish');
      assert.ok(await page.locator('.pl-pub-go').isDisabled());
      assert.equal(await page.evaluate(() => window.onemap.plan.pmap.data('p-handles').features.length), 0);
      assert.equal((await env.api(`/api/plans/${plan.id}`)).status, 'published');

      // ── the history of a moved grid: the new version came from this plan ──
      await clickSelect(page, moved.owners[0]);
      await page.locator('.pl-tabs [data-tab="history"]').click();
      await page.waitForSelector('.pl-hist .pl-ver');
      const first = page.locator('.pl-hist .pl-ver').first();
      assert.equal(await first.locator('.pl-ver-plan').innerText(), `方案 #${plan.id}`);
      // the server records the reason as "[plan N] reason" (docs/plans-api.md says the reason itself)
      assert.ok((await first.locator('.pl-ver-why').innerText()).includes(reason));
      const hist = await env.api(`/api/grids/${moved.owners[0]}/history`);
      assert.ok(hist.versions.length >= 2);
      const older = hist.versions.at(-2);
      assert.ok(hasVertex(older.geometry, moved.from), 'the version before the plan has the old vertex');
      // hovering the older version draws it
      await page.locator(`.pl-ver[data-version="${older.version}"] .pl-ver-main`).hover();
      const drawn = await page.evaluate(() => window.onemap.plan.pmap.data('p-hist').features);
      assert.equal(drawn.length, 1);
      assert.ok(hasVertex(drawn[0].geometry, moved.from));

      // ── the published tiles: the big screen's grids have the new boundary ──
      const screen = await openPage(env, '#/screen', { width: W, height: H, context: ctx });
      try {
        await centerOn(screen.page, moved.to, 16.5);
        const tileGeoms = await screen.page.evaluate((codes) => codes.map((c) => window.onemap.map
          .querySourceFeatures('om', { sourceLayer: 'grids', filter: ['==', ['get', 'code'], c] }).map((f) => f.geometry)), moved.owners);
        for (const [i, code] of moved.owners.entries()) {
          assert.ok(tileGeoms[i].length, `${code} not in the tiles`);
          const dNew = Math.min(...tileGeoms[i].map((g) => nearest(g, moved.to)));
          const dOld = Math.min(...tileGeoms[i].map((g) => nearest(g, moved.from)));
          assert.ok(dNew < 0.5, `${code}: the tiles' nearest vertex is ${dNew} m from the moved one`);
          assert.ok(dOld > 3, `${code}: the tiles still have a vertex ${dOld} m from the old one`);
        }
        assert.deepEqual(screen.rec.pageErrors, []);
      } finally {
        await screen.page.close();
      }

      // ── revert the grid to the version before the plan ──
      await page.locator(`.pl-ver[data-version="${older.version}"] .pl-rv`).click();
      // the form first shows what the revert would do (a dry run, nothing written)
      const seqBefore = (await env.api('/healthz')).seq;
      await page.waitForSelector('.pl-rv-preview[data-ok="true"]');
      const preview = await page.locator('.pl-rv-preview').innerText();
      assert.match(preview, /将恢复 \d+ 个网格/);
      assert.match(preview, /将撤销此后的 1 次变更/);
      assert.ok(preview.includes('恢复后的网格核对通过'), preview);
      assert.equal(await page.locator('.pl-rv-undone li').count(), 1);
      assert.equal((await env.api('/healthz')).seq, seqBefore, 'the dry run wrote nothing');
      await page.locator('.pl-rv-reason').fill('恢复原边界');
      const nr = await answers(page);
      await page.locator('.pl-rv-go').click();
      await waitAnswers(page, nr + 1);
      await page.waitForSelector('.pl-hist-out .pl-result, .pl-hist-out .pl-refusal');
      const refusal = await page.locator('.pl-hist-out .pl-refusal').count();
      assert.equal(refusal, 0, refusal ? await page.locator('.pl-hist-out .pl-refusal').innerText() : '');
      assert.match(await page.locator('.pl-hist-out .pl-result b').innerText(), /^已恢复，序号 \d+/);
      const reverted = await env.api(`/api/grids/${moved.owners[0]}/history`);
      assert.equal(reverted.versions.length, hist.versions.length + 1);
      assert.ok(hasVertex(reverted.versions.at(-1).geometry, moved.from), 'the reverted version has the old vertex back');
      await page.waitForSelector(`.pl-hist .pl-ver[data-version="${reverted.versions.at(-1).version}"]`);

      assert.deepEqual(rec.pageErrors, [], 'uncaught exceptions');
      assert.deepEqual(rec.consoleErrors, [], 'console errors');
      assert.deepEqual(rec.foreign, [], 'requests outside the server');
      assert.deepEqual(rec.failedResponses, [], 'failed responses');
    } finally {
      await ctx.close();
    }
  });

  test('a refused op shows inline; undo, mid-edge drag, split and attributes; the language switch', async () => {
    const { community } = await communityAndBelow([published]);
    const made = await env.post('/api/plans', { title: '编辑测试', author: '测试员', scope: [community.code] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const id = made.body.id;
    const { page, ctx, rec } = await openPlan(`#/plan?id=${id}`);
    try {
      await page.waitForFunction((k) => window.onemap.plan.plan()?.id === k, id);
      const plan = await env.api(`/api/plans/${id}`);
      const grids = plan.grids.features.filter((f) => f.properties.level === 'grid');
      await fitOn(page, bboxOf(feature(plan, community.code).geometry));

      // ── merge of two grids that share no vertex: the server's 400, inline; nothing changes ──
      const far = grids.flatMap((a) => grids.filter((b) => b !== a && !verticesOf(a.geometry).some((v) => hasVertex(b.geometry, v))).map((b) => [a, b]))[0];
      assert.ok(far, 'two grids that do not touch');
      await clickSelect(page, far[0].properties.code);
      await clickSelect(page, far[1].properties.code, { shift: true });
      assert.deepEqual(await page.evaluate(() => window.onemap.plan.state.selected), far.map((f) => f.properties.code));
      assert.match(await page.locator('.pl-sel-desc').innerText(), /^已选 2 个网格/);
      let n = await answers(page);
      await page.locator('.pl-tools [data-act="merge"]').click();
      await waitAnswers(page, n + 1);
      const err = page.locator('.pl-op-error');
      assert.ok(await err.isVisible());
      assert.match(await err.innerText(), /^合并未成功：.+/);
      assert.equal(await page.evaluate(() => document.body.dataset.planState), 'error');
      assert.equal((await env.api(`/api/plans/${id}`)).ops.length, plan.ops.length, 'a refused op changed the plan');

      // ── drag a shared vertex, then undo: the geometry is back ──
      const cand = sharedVertices(plan, 'grid', 'community')[0];
      await centerOn(page, cand.from, 17);
      const [px] = await pixelsOf(page, [cand.from]);
      n = await answers(page);
      await drag(page, px, [-12, 10]);
      await waitAnswers(page, n + 1);
      assert.equal(await err.isVisible(), false);
      const movedPlan = await env.api(`/api/plans/${id}`);
      for (const c of cand.owners) assert.ok(!hasVertex(feature(movedPlan, c).geometry, cand.from));
      n = await answers(page);
      await page.locator('.pl-tools [data-act="undo"]').click();
      await waitAnswers(page, n + 1);
      const undone = await env.api(`/api/plans/${id}`);
      for (const c of cand.owners) {
        assert.deepEqual(feature(undone, c).geometry, feature(plan, c).geometry, `${c} not restored by undo`);
        assert.equal(feature(undone, c).properties.state, 'unchanged');
      }
      assert.equal(await page.locator('.pl-ops li.undone').count() >= 1, true, 'the undone op is struck through');

      // ── drag the middle of an edge two grids share: both get the new vertex ──
      const mid = await page.evaluate(() => {
        const m = window.onemap.plan.editor.shownMids().filter((x) => x.grids.length === 2);
        return m.length ? { from: m[0].from, grids: m[0].grids } : null;
      }) ?? await page.evaluate(() => {
        const m = window.onemap.plan.handles().mids.filter((x) => x.grids.length === 2);
        return { from: m[0].from, grids: m[0].grids };
      });
      await centerOn(page, mid.from, 17.5);
      const [mp] = await pixelsOf(page, [mid.from]);
      n = await answers(page);
      const mend = await drag(page, mp, [10, -8]);
      await waitAnswers(page, n + 1);
      assert.equal(await err.isVisible(), false, await err.innerText());
      const [mto] = await lngLatAt(page, [mend]);
      const withMid = await env.api(`/api/plans/${id}`);
      for (const c of mid.grids) {
        const before = verticesOf(feature(undone, c).geometry).length;
        const g = feature(withMid, c).geometry;
        assert.equal(verticesOf(g).length, before + 1, `${c}: one vertex inserted`);
        assert.ok(nearest(g, mto) < 0.05, `${c}: the inserted vertex is where the mouse let go`);
      }

      // ── split a grid by a line drawn across it (click, double-click) ──
      await page.keyboard.press('Escape');
      const target = grids.find((f) => !mid.grids.includes(f.properties.code)) ?? grids[0];
      const code = target.properties.code;
      await fitOn(page, bboxOf(target.geometry));
      await clickSelect(page, code);
      const line = await page.evaluate((k) => {
        const { pmap, plan: p } = window.onemap.plan;
        const lp = pmap.data('p-label').features.find((f) => f.properties.code === k).geometry.coordinates;
        const g = p().grids.features.find((f) => f.properties.code === k).geometry;
        const rs = g.type === 'Polygon' ? g.coordinates : g.coordinates.flat();
        const xs = [];
        for (const r of rs) {
          for (let i = 1; i < r.length; i++) {
            const [x1, y1] = r[i - 1]; const [x2, y2] = r[i];
            if ((y1 > lp[1]) !== (y2 > lp[1])) xs.push(x1 + ((lp[1] - y1) * (x2 - x1)) / (y2 - y1));
          }
        }
        xs.sort((a, b) => a - b);
        const i = xs.findIndex((x, j) => j % 2 === 0 && x <= lp[0] && xs[j + 1] >= lp[0]);
        const [a, b] = [xs[i], xs[i + 1]];
        const pad = (b - a) * 0.04;
        return [[a - pad, lp[1]], [b + pad, lp[1]]];
      }, code);
      await page.locator('.pl-tools [data-tool="split"]').click();
      assert.equal(await page.locator('.pl-tools [data-tool="split"]').getAttribute('aria-pressed'), 'true');
      const [p1, p2] = await pixelsOf(page, line);
      n = await answers(page);
      await page.mouse.click(p1[0], p1[1]);
      await page.mouse.dblclick(p2[0], p2[1]);
      await waitAnswers(page, n + 1);
      assert.equal(await err.isVisible(), false, await err.innerText());
      const split = await env.api(`/api/plans/${id}`);
      const created = split.grids.features.filter((f) => !withMid.grids.features.some((g) => g.properties.code === f.properties.code));
      assert.ok(created.some((f) => f.properties.level === 'grid' && f.properties.state === 'new'), 'a new grid from the split');
      const sel = await page.evaluate(() => window.onemap.plan.state.selected);
      assert.equal(sel.length, 2);
      assert.equal(sel[0], code);
      assert.equal(await page.locator('.pl-tools [data-tool="select"]').getAttribute('aria-pressed'), 'true');

      // ── attributes of one grid ──
      await clickSelect(page, code);
      const form = page.locator('.pl-attrs');
      await form.locator('input[name="name"]').fill('新命名网格');
      await form.locator('input[name="staff"]').fill('赵网格');
      await form.locator('input[name="population"]').fill('1234');
      n = await answers(page);
      await page.locator('.pl-attrs-save').click();
      await waitAnswers(page, n + 1);
      const named = feature(await env.api(`/api/plans/${id}`), code).properties;
      assert.equal(named.name, '新命名网格');
      assert.equal(named.staff, '赵网格');
      assert.equal(named.population, 1234);
      assert.equal(named.state, 'changed');
      assert.ok(await page.evaluate((k) => window.onemap.plan.pmap.data('p-label').features.some((f) => f.properties.code === k && f.properties.name === '新命名网格'), code));

      // ── the language switch relabels the page, the plan stays ──
      await page.locator('.lang-switch').click();
      assert.equal(await page.locator('.pl-tabs [data-tab="validate"]').innerText(), 'Validate & impact');
      assert.equal(await page.locator('.pl-tools [data-tool="split"]').innerText(), 'Split');
      assert.match(await page.locator('.pl-levels [data-level="micro"]').innerText(), /^Micro-grid/);
      assert.match(await page.locator('.pl-sel-desc').innerText(), /^Grid · 新命名网格/);
      assert.equal(await page.locator('.pl-plan-status').innerText(), 'Draft');
      await page.locator('.lang-switch').click();
      assert.equal(await page.locator('.pl-tabs [data-tab="validate"]').innerText(), '校验与影响');

      // ── back to the plans; a click on the map lists the grids there, to add to a new plan's scope ──
      const inside = await page.evaluate((k) => window.onemap.plan.pmap.data('p-label').features.find((f) => f.properties.code === k).geometry.coordinates, code);
      await page.locator('.pl-back').click();
      await page.waitForFunction(() => document.body.dataset.planMode === 'list');
      assert.equal(new URL(page.url()).hash, '#/plan');
      assert.ok(await page.locator(`.pl-plan[data-id="${id}"]`).isVisible());
      const [[cx, cy]] = await pixelsOf(page, [inside]);
      await page.mouse.click(cx, cy);
      await page.waitForSelector(`.pl-choice[data-code="${community.code}"]`);
      assert.equal(await page.locator(`.pl-choice[data-code="${community.code}"] .lv`).innerText(), '社区');
      await page.locator(`.pl-choice[data-code="${community.code}"]`).click();
      assert.equal(await page.locator(`.pl-scope .pl-chip[data-code="${community.code}"]`).count(), 1);
      await page.waitForFunction((c) => JSON.stringify(window.onemap.map.getFilter('scope-line')).includes(c), community.code);
      // its history from the list
      await page.locator(`.pl-choice-hist[data-code="${community.code}"]`).click();
      await page.waitForSelector('.pl-hist .pl-ver');
      assert.equal(await page.locator('.pl-tabs [data-tab="history"]').getAttribute('aria-selected'), 'true');

      assert.deepEqual(rec.pageErrors, [], 'uncaught exceptions');
      assert.deepEqual(rec.consoleErrors.filter((m) => !m.includes('status of 400')), [], 'console errors');
      assert.deepEqual(rec.foreign, [], 'requests outside the server');
      assert.deepEqual(rec.failedResponses.filter((r) => !/^400 .*\/api\/plans\/\d+\/ops$/.test(r)), [], 'failed responses');
    } finally {
      await ctx.close();
    }
  });

  test('violations are listed in Chinese and drawn; a plan with violations is refused at publish', async () => {
    const { community } = await communityAndBelow([published]);
    const made = await env.post('/api/plans', { title: '越界测试', author: '测试员', scope: [community.code] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const id = made.body.id;
    const { page, ctx, rec } = await openPlan(`#/plan?id=${id}`);
    try {
      await page.waitForFunction((k) => window.onemap.plan.plan()?.id === k, id);
      const plan = await env.api(`/api/plans/${id}`);
      // the vertex most grids share, dragged far across its neighbours
      const cand = sharedVertices(plan, 'grid', 'community', { most: true })[0];
      assert.ok(cand.owners.length >= 3, 'no vertex three grids share');
      await centerOn(page, cand.from, 15);
      const [px] = await pixelsOf(page, [cand.from]);
      let n = await answers(page);
      await drag(page, px, [260, 170]);
      await waitAnswers(page, n + 1);
      assert.equal(await page.locator('.pl-op-error').isVisible(), false, await page.locator('.pl-op-error').innerText());
      assert.equal((await env.api(`/api/plans/${id}`)).ops.length, plan.ops.length + 1);
      const { result, answer } = await validateInUi(page);
      assert.equal(result, 'bad', 'a vertex dragged a kilometre across its neighbours still validates');
      assert.equal(answer.ok, false);
      const rows = page.locator('.pl-validate-list .pl-viol');
      assert.equal(await rows.count(), answer.violations.length);
      for (const k of await rows.locator('.pl-viol-kind').allInnerTexts()) assert.ok(KINDS_ZH.has(k), `kind ${k}`);
      const drawn = await page.evaluate(() => window.onemap.plan.pmap.data('p-viol').features.length);
      assert.equal(drawn, answer.violations.filter((v) => v.geometry).length);
      await rows.first().click();
      await page.waitForFunction(() => window.onemap.map.getGlobalState().viol === 0);
      assert.equal(await rows.first().getAttribute('aria-pressed'), 'true');
      // publish: refused with the violations
      await page.locator('.pl-tabs [data-tab="publish"]').click();
      await page.locator('.pl-pub-reason').fill('试发布');
      n = await answers(page);
      await page.locator('.pl-pub-go').click();
      await waitAnswers(page, n + 1);
      await page.waitForSelector('.pl-pub-out .pl-refusal');
      assert.match(await page.locator('.pl-pub-out .pl-refusal b').innerText(), /^未通过：/);
      assert.ok(await page.locator('.pl-pub-out .pl-refusal .pl-viol').count() > 0);
      assert.equal((await env.api(`/api/plans/${id}`)).status, 'draft');
      assert.equal(await page.locator('.pl-plan-status').innerText(), '草稿');
      // undo puts the plan back; it validates again
      n = await answers(page);
      await page.locator('.pl-tools [data-act="undo"]').click();
      await waitAnswers(page, n + 1);
      const again = await validateInUi(page);
      assert.equal(again.result, 'ok', JSON.stringify(again.answer.violations.slice(0, 3)));
      assert.deepEqual(rec.pageErrors, []);
      assert.deepEqual(rec.consoleErrors.filter((m) => !m.includes('status of 409')), []);
      assert.deepEqual(rec.foreign, []);
    } finally {
      await ctx.close();
    }
  });
});
