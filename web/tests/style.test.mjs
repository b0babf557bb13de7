// The committed style is what tools/build-style.mjs makes, it is valid for MapLibre, and it asks
// for nothing outside the server (no glyphs, no sprite, every URL under {{origin}}).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateStyleMin } from '@maplibre/maplibre-gl-style-spec';
import { GROUPS } from '../app/palette.js';

const STYLE = fileURLToPath(new URL('../../styles/screen.json', import.meta.url));
const style = JSON.parse(readFileSync(STYLE, 'utf8'));

test('styles/screen.json is up to date with tools/build-style.mjs', () => {
  execFileSync(process.execPath, [fileURLToPath(new URL('../tools/build-style.mjs', import.meta.url)), '--check'], { stdio: 'pipe' });
});

test('the style validates and stays on the server', () => {
  assert.deepEqual(validateStyleMin(style).map((e) => e.message), []);
  assert.equal(style.glyphs, undefined);
  assert.equal(style.sprite, undefined);
  const urls = JSON.stringify(style).match(/[a-z]+:\/\/[^"]*/gi) || [];
  assert.deepEqual(urls, []);
  assert.equal(style.sources.om.url, '{{origin}}/tiles/all.json');
});

test('every thematic group has layers, and every source layer of the contract is used', () => {
  const groups = new Set(style.layers.map((l) => l.metadata?.['onemap:group']));
  for (const g of GROUPS) assert.ok(groups.has(g), `no layer in group ${g}`);
  const used = new Set(style.layers.map((l) => l['source-layer']).filter(Boolean));
  for (const sl of ['grids', 'water', 'roads', 'buildings', 'cameras', 'risks', 'events', 'addresses']) assert.ok(used.has(sl), sl);
});
