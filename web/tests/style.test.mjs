// The committed styles are what tools/build-style.mjs makes, they are valid for MapLibre, and they
// ask for nothing outside the server (no glyphs, no sprite, every URL under {{origin}}).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateStyleMin } from '@maplibre/maplibre-gl-style-spec';
import { GROUPS } from '../app/palette.js';

const read = (name) => JSON.parse(readFileSync(fileURLToPath(new URL(`../../styles/${name}.json`, import.meta.url)), 'utf8'));
const style = read('screen');
const query = read('query');
const plan = read('plan');

test('styles/screen.json, query.json and plan.json are up to date with tools/build-style.mjs', () => {
  execFileSync(process.execPath, [fileURLToPath(new URL('../tools/build-style.mjs', import.meta.url)), '--check'], { stdio: 'pipe' });
});

for (const [name, st] of [['screen', style], ['query', query], ['plan', plan]]) {
  test(`the ${name} style validates and stays on the server`, () => {
    assert.deepEqual(validateStyleMin(st).map((e) => e.message), []);
    assert.equal(st.glyphs, undefined);
    assert.equal(st.sprite, undefined);
    const urls = JSON.stringify(st).match(/[a-z]+:\/\/[^"]*/gi) || [];
    assert.deepEqual(urls, []);
    assert.equal(st.sources.om.url, '{{origin}}/tiles/all.json');
  });
}

test('the query style shows every grid level and the point layers a query can look at', () => {
  const ids = new Set(query.layers.map((l) => l.id));
  for (const l of ['district', 'street', 'community', 'grid', 'micro']) assert.ok(ids.has(`grids-line-${l}`), l);
  const groups = new Set(query.layers.map((l) => l.metadata?.['onemap:group']));
  for (const g of ['addresses', 'cameras', 'risks', 'buildings', 'events']) assert.ok(groups.has(g), g);
  // a picked grid is the page's own overlay, drawn from its exact outline: no selection by state
  assert.equal(query.state, undefined);
  assert.ok(!query.layers.some((l) => JSON.stringify(l.filter ?? '').includes('global-state')));
});

test('every thematic group has layers, and every source layer of the contract is used', () => {
  const groups = new Set(style.layers.map((l) => l.metadata?.['onemap:group']));
  for (const g of GROUPS) assert.ok(groups.has(g), `no layer in group ${g}`);
  const used = new Set(style.layers.map((l) => l['source-layer']).filter(Boolean));
  for (const sl of ['grids', 'water', 'roads', 'buildings', 'cameras', 'risks', 'events', 'addresses']) assert.ok(used.has(sl), sl);
});

test('the plan style draws the published grids as context and declares the page overlays', async () => {
  const ids = new Set(plan.layers.map((l) => l.id));
  for (const l of ['district', 'street', 'community', 'grid', 'micro']) assert.ok(ids.has(`grids-line-${l}`), l);
  for (const l of ['community', 'grid', 'micro']) assert.ok(ids.has(`p-draft-line-${l}`), l);
  for (const id of ['p-draft-fill', 'p-sel-line', 'p-viol-fill', 'p-hist-line', 'p-line-line', 'p-handles-vertex', 'p-handles-mid', 'p-draft-label']) assert.ok(ids.has(id), id);
  const { OVERLAY_SOURCES, planStyle } = await import('../app/views/plan/style.js');
  for (const s of OVERLAY_SOURCES) assert.equal(plan.sources[s]?.type, 'geojson', s);
  assert.deepEqual(plan.state, { edit_level: { default: 'grid' }, viol: { default: -1 } });
  // handles draw above everything else, the draft above the context
  const at = (id) => plan.layers.findIndex((l) => l.id === id);
  assert.ok(at('p-handles-vertex') === plan.layers.length - 1);
  assert.ok(at('p-draft-fill') > at('grids-line-district'));
  // the fallback without the style service: the same overlays on a plain background
  const bare = planStyle({ context: false });
  assert.deepEqual(validateStyleMin(bare).map((e) => e.message), []);
  assert.equal(bare.sources.om, undefined);
  assert.deepEqual(bare.layers.filter((l) => l.id.startsWith('p-')).map((l) => l.id), plan.layers.filter((l) => l.id.startsWith('p-')).map((l) => l.id));
});
