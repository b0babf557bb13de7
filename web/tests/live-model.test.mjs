// The live screen's model (app/views/screen/live-model.js) without a browser: snapshot, stream
// messages, replays after a reconnect, the bounded overdue list, rates and top grids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyEvent, applySnapshot, applyStats, consistent, createLiveModel, localDay, OVERDUE_MAX, overdueList, rates, topGrids,
} from '../app/views/screen/live-model.js';

const district = (over = {}) => ({
  as_of: '2026-11-22T02:00:00Z', day: '2026-11-22', level: 'district', parent: null,
  total: {
    events_open: 10, events_overdue: 2, today_new: 3, today_closed: 1, closed: 30, closed_on_time: 27,
    today_by_source: { hotline_12345: 2, police_110: 1 }, today_by_category: { noise: 3 },
  },
  areas: [{ code: '990101', name: '示范区', level: 'district', fid: 1, events_open: 10, events_overdue: 2 }],
  top_grids: [],
  overdue_list: [
    { id: 'A', title: 'a', category: 'noise', source: 'police_110', deadline: '2026-11-20T00:00:00Z', grid: 'G1' },
    { id: 'B', title: 'b', category: 'noise', source: 'police_110', deadline: '2026-11-21T00:00:00Z', grid: 'G2' },
  ],
  ...over,
});
const order = (over = {}) => ({
  op: 'created', seq: 100, id: 'N1', fid: 5000, lon: 113, lat: 28.2, source: 'grid_report', category: 'noise',
  status: 'new', title: 'n', created_at: '2026-11-22T03:00:00Z', deadline: '2026-11-23T03:00:00Z', overdue: false,
  grids: { street: 'S', community: 'C', grid: 'G1', micro: 'M' }, ...over,
});

test('the local day is the UTC+8 day', () => {
  assert.equal(localDay('2026-11-21T15:59:59Z'), '2026-11-21');
  assert.equal(localDay('2026-11-21T16:00:00Z'), '2026-11-22');
  assert.equal(localDay('nonsense'), null);
});

test('a snapshot fills totals, today, areas and the overdue list; stats messages replace area numbers', () => {
  const m = createLiveModel();
  const changed = applySnapshot(m, district());
  assert.deepEqual(changed, ['990101']);
  assert.equal(m.root, '990101');
  assert.equal(m.total.today_new, 3);
  assert.ok(consistent(m));
  assert.deepEqual(overdueList(m).map((o) => o.id), ['A', 'B']);
  applySnapshot(m, { level: 'grid', parent: null, areas: [
    { code: 'G1', name: '一', level: 'grid', fid: 11, events_open: 4, events_overdue: 1 },
    { code: 'G2', name: '二', level: 'grid', fid: 12, events_open: 6, events_overdue: 0 },
    { code: 'G3', name: '三', level: 'grid', fid: 13, events_open: 0, events_overdue: 0 },
  ] });
  assert.deepEqual(topGrids(m).map((g) => [g.code, g.name, g.open]), [['G2', '二', 6], ['G1', '一', 4]]);

  const { changed: c2, dayChanged } = applyStats(m, { day: '2026-11-22', areas: {
    990101: { level: 'district', fid: 1, events_open: 11, events_overdue: 2, today_new: 4, today_closed: 1, closed: 30, closed_on_time: 27 },
    G3: { level: 'grid', fid: 13, events_open: 7, events_overdue: 0 },
  } });
  assert.equal(dayChanged, false);
  assert.deepEqual(c2.sort(), ['990101', 'G3']);
  assert.equal(m.total.today_new, 4);
  assert.equal(topGrids(m)[0].code, 'G3');
  assert.equal(applyStats(m, { day: '2026-11-23', areas: {} }).dayChanged, true);
});

test('created orders of today count by source and category once; replays and other days do not', () => {
  const m = createLiveModel();
  applySnapshot(m, district());
  assert.ok(applyEvent(m, order()).fresh);
  assert.equal(m.todayBySource.grid_report, 1);
  assert.equal(m.todayByCategory.noise, 4);
  assert.equal(applyEvent(m, order()).fresh, false, 'the same seq twice');
  applyEvent(m, order({ seq: 101, id: 'N2', created_at: '2026-11-20T03:00:00Z' }));
  assert.equal(m.todayByCategory.noise, 4, 'an order of another day');
  applyEvent(m, order({ seq: 102, op: 'updated', status: 'processing' }));
  assert.equal(m.todayBySource.grid_report, 1, 'an update is no new order');
  // after a reconnect the screen sets seq to hello's: older orders replayed are not counted again
  m.seq = 200;
  assert.equal(applyEvent(m, order({ seq: 150, id: 'N3' })).fresh, false);
});

test('the overdue list keeps the oldest deadlines, at most OVERDUE_MAX, and says when it lost one of a longer list', () => {
  const m = createLiveModel();
  applySnapshot(m, district());
  applyEvent(m, order({ seq: 1, id: 'C', overdue: true, deadline: '2026-11-19T00:00:00Z' }));
  assert.deepEqual(overdueList(m).map((o) => o.id), ['C', 'A', 'B']);
  assert.equal(overdueList(m)[0].grid, 'G1');
  let r = applyEvent(m, order({ seq: 2, op: 'updated', id: 'A', status: 'closed', overdue: false }));
  assert.equal(r.overdueLeft, false, 'the server had no more than these');
  for (let i = 0; i < 40; i++) applyEvent(m, order({ seq: 10 + i, id: `X${i}`, overdue: true, deadline: `2026-10-${String(1 + (i % 28)).padStart(2, '0')}T00:00:00Z` }));
  assert.equal(m.overdue.size, OVERDUE_MAX);
  const list = overdueList(m);
  assert.ok(list.every((o, i) => i === 0 || Date.parse(list[i - 1].deadline) <= Date.parse(o.deadline)));
  r = applyEvent(m, order({ seq: 99, op: 'updated', id: list[0].id, status: 'closed', overdue: false }));
  assert.equal(r.overdueLeft, true);
});

test('rates: closure is closed over all orders, on time is on-time over closed; unknown is null', () => {
  const m = createLiveModel();
  assert.deepEqual(rates(m), { closure: null, onTime: null });
  applySnapshot(m, district());
  const r = rates(m);
  assert.equal(r.closure, 30 / 40);
  assert.equal(r.onTime, 27 / 30);
});
