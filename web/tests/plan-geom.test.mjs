// The planner's geometry without a browser: handles (a shared vertex or edge is one handle),
// the drag preview (what the server will do), point in polygon, label points.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyMove, bboxOf, contains, gridsCrossed, handlesOf, labelPoint, midpoint } from '../app/views/plan/geom.js';

// two unit squares side by side sharing the edge x = 1, and a third square below the first
const sq = (code, x, y) => ({
  type: 'Feature', id: code, properties: { code },
  geometry: { type: 'Polygon', coordinates: [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]] },
});
const A = sq('A', 0, 0);
const B = sq('B', 1, 0);
const C = { ...sq('C', 0, -1), geometry: { type: 'MultiPolygon', coordinates: [sq('C', 0, -1).geometry.coordinates] } };

test('a vertex shared by several grids is one handle, an edge shared by two is one mid handle', () => {
  const { vertices, mids } = handlesOf([A, B, C]);
  // corners: A 4 + B 2 new + C 2 new = 8
  assert.equal(vertices.length, 8);
  const at = (x, y) => vertices.find((v) => v.from[0] === x && v.from[1] === y);
  assert.deepEqual(at(1, 0).grids.sort(), ['A', 'B', 'C']);
  assert.deepEqual(at(1, 1).grids.sort(), ['A', 'B']);
  assert.deepEqual(at(2, 1).grids, ['B']);
  // edges: A 4 + B 3 + C 3 = 10 distinct
  assert.equal(mids.length, 10);
  const shared = mids.find((m) => m.from[0] === 1 && m.from[1] === 0.5);
  assert.deepEqual(shared.grids.sort(), ['A', 'B']);
  assert.deepEqual(midpoint([1, 0], [1, 1]), [1, 0.5]);
});

test('moving a vertex moves it in every grid that has it; a mid-edge move inserts the vertex in both', () => {
  const fs = [A, B, C];
  const { vertices, mids } = handlesOf(fs);
  const v = vertices.find((x) => x.from[0] === 1 && x.from[1] === 1);
  const moved = applyMove(fs, v, [1.2, 1.1]);
  assert.deepEqual(moved[0].geometry.coordinates[0][2], [1.2, 1.1]);
  assert.deepEqual(moved[1].geometry.coordinates[0][3], [1.2, 1.1]);
  assert.equal(moved[2], C, 'untouched features are the same objects');
  const m = mids.find((x) => x.from[0] === 1 && x.from[1] === 0.5);
  const split = applyMove(fs, m, [1.3, 0.5]);
  assert.equal(split[0].geometry.coordinates[0].length, 6);
  assert.equal(split[1].geometry.coordinates[0].length, 6);
  assert.ok(split[0].geometry.coordinates[0].some((c) => c[0] === 1.3));
  assert.ok(split[1].geometry.coordinates[0].some((c) => c[0] === 1.3));
  assert.equal(split[2], C);
  // a MultiPolygon's vertex moves too
  const low = vertices.find((x) => x.from[0] === 0 && x.from[1] === -1);
  assert.deepEqual(applyMove(fs, low, [-0.5, -1])[2].geometry.coordinates[0][0][0], [-0.5, -1]);
});

test('point in polygon, bbox, label point, grids a line crosses', () => {
  assert.ok(contains(A.geometry, [0.5, 0.5]));
  assert.ok(!contains(A.geometry, [1.5, 0.5]));
  assert.ok(contains(C.geometry, [0.5, -0.5]));
  const holed = { type: 'Polygon', coordinates: [A.geometry.coordinates[0], [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75], [0.25, 0.25]]] };
  assert.ok(!contains(holed, [0.5, 0.5]));
  assert.ok(contains(holed, [0.1, 0.5]));
  assert.deepEqual(bboxOf(B.geometry), [1, 0, 2, 1]);
  // a U shape: the label point is inside, not in the notch
  const u = { type: 'Polygon', coordinates: [[[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3], [0, 0]]] };
  assert.ok(contains(u, labelPoint(u)));
  assert.ok(contains(A.geometry, labelPoint(A.geometry)));
  assert.deepEqual(gridsCrossed([A, B, C], [[0.5, 1.5], [0.5, 0.5]]), ['A']);
  assert.deepEqual(gridsCrossed([A, B, C], [[-0.5, 0.5], [2.5, 0.5]]).sort(), ['A', 'B']);
});
