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

test('styles/screen.json and styles/query.json are up to date with tools/build-style.mjs', () => {
  execFileSync(process.execPath, [fileURLToPath(new URL('../tools/build-style.mjs', import.meta.url)), '--check'], { stdio: 'pipe' });
});

for (const [name, st] of [['screen', style], ['query', query]]) {
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
  assert.deepEqual(query.state, { selected: { default: '' } });
});

test('every thematic group has layers, and every source layer of the contract is used', () => {
  const groups = new Set(style.layers.map((l) => l.metadata?.['onemap:group']));
  for (const g of GROUPS) assert.ok(groups.has(g), `no layer in group ${g}`);
  const used = new Set(style.layers.map((l) => l['source-layer']).filter(Boolean));
  for (const sl of ['grids', 'water', 'roads', 'buildings', 'cameras', 'risks', 'events', 'addresses']) assert.ok(used.has(sl), sl);
});
