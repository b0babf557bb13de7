// What the big screen knows of the live work orders: the district's totals, today's orders by
// source and category, every area's open/overdue counts (for the grid tint), the grid-level
// areas with names (for the top grids) and the oldest overdue orders. Plain data, no DOM: the
// snapshot (GET /api/stats) replaces it, the stream (`stats`, `event`) updates it in place, and
// the page draws from it. Everything here is bounded: areas by the grids of the district, the
// overdue list by OVERDUE_MAX, the per-day counters by the number of sources and categories.

export const OVERDUE_MAX = 20;
export const TOP_GRIDS = 10;
const LOCAL_OFFSET_MS = 8 * 3600_000; // "today" is the UTC+8 day

/** The local (UTC+8) day of an ISO time, 'YYYY-MM-DD', or null. */
export function localDay(iso) {
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!Number.isFinite(t)) return null;
  return new Date(t + LOCAL_OFFSET_MS).toISOString().slice(0, 10);
}

const TOTAL_KEYS = ['events_open', 'events_overdue', 'today_new', 'today_closed', 'closed', 'closed_on_time'];
const emptyTotal = () => Object.fromEntries(TOTAL_KEYS.map((k) => [k, null]));

export function createLiveModel() {
  return {
    day: null, // the stats' local day
    asOf: null,
    root: null, // the district's code
    total: emptyTotal(),
    todayBySource: {},
    todayByCategory: {},
    /** code → { level, fid, open, overdue } for every area of every level. */
    areas: new Map(),
    /** code → name, for the grid-level areas (top grids, overdue list). */
    names: new Map(),
    /** ext id → { id, title, category, source, deadline, grid }: the oldest overdue orders. */
    overdue: new Map(),
    /** Whether the server had more overdue orders than the list holds. */
    overdueTruncated: false,
    /** The highest change-log seq applied from the stream or known to be in the snapshot. */
    seq: 0,
    snapshots: 0,
    /** When the screen last received numbers (client clock, ms), for "updated at". */
    updatedAt: null,
  };
}

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function setArea(m, code, a) {
  const prev = m.areas.get(code);
  const next = {
    level: a.level ?? prev?.level ?? null,
    fid: a.fid ?? prev?.fid ?? null,
    open: num(a.events_open),
    overdue: num(a.events_overdue),
  };
  m.areas.set(code, next);
  return !prev || prev.open !== next.open || prev.overdue !== next.overdue || prev.fid !== next.fid;
}

/**
 * Applies one GET /api/stats answer. The district-level answer (level 'district', no parent)
 * carries the totals, today's counters and the overdue list; every level carries its areas.
 * Returns the codes of the areas whose numbers changed.
 */
export function applySnapshot(m, snap) {
  const changed = [];
  for (const a of snap.areas ?? []) {
    if (setArea(m, a.code, a)) changed.push(a.code);
    if (a.level === 'grid' && a.name) m.names.set(a.code, a.name);
  }
  for (const g of snap.top_grids ?? []) if (g.name) m.names.set(g.code, g.name);
  if (snap.level === 'district' && !snap.parent) {
    const t = snap.total ?? {};
    for (const k of TOTAL_KEYS) m.total[k] = t[k] ?? null;
    m.todayBySource = { ...(t.today_by_source ?? {}) };
    m.todayByCategory = { ...(t.today_by_category ?? {}) };
    m.day = snap.day ?? m.day;
    m.asOf = snap.as_of ?? m.asOf;
    m.root = snap.areas?.[0]?.code ?? m.root;
    m.overdue.clear();
    const list = snap.overdue_list ?? [];
    for (const o of list.slice(0, OVERDUE_MAX)) m.overdue.set(o.id, { ...o });
    m.overdueTruncated = list.length >= OVERDUE_MAX || num(t.events_overdue) > list.length;
    if (typeof snap.seq === 'number') m.seq = Math.max(m.seq, snap.seq);
    m.snapshots += 1;
    m.updatedAt = Date.now();
  }
  return changed;
}

/**
 * Applies a `stats` message: absolute numbers for the areas a batch touched. Returns
 * { changed: codes whose open/overdue changed, dayChanged }.
 */
export function applyStats(m, msg) {
  const changed = [];
  const dayChanged = Boolean(msg.day && m.day && msg.day !== m.day);
  for (const [code, a] of Object.entries(msg.areas ?? {})) {
    if (setArea(m, code, a)) changed.push(code);
    if (a.level === 'district' && (!m.root || m.root === code)) {
      m.root = code;
      for (const k of TOTAL_KEYS) if (k in a) m.total[k] = a[k];
    }
  }
  if (msg.as_of) m.asOf = msg.as_of;
  m.updatedAt = Date.now();
  if (msg.day && !dayChanged) m.day = msg.day;
  return { changed, dayChanged };
}

function bump(obj, key, by = 1) {
  if (!key) return;
  obj[key] = Math.max(0, (obj[key] ?? 0) + by);
}

/**
 * Applies an `event` message (created or updated work order). Counts a created order in
 * today's sources and categories when it was created today and is newer than what the counters
 * hold; keeps the overdue list. Returns { fresh: whether the message was new to the model,
 * overdueLeft: an order left a full overdue list, so the next ones are unknown }.
 */
export function applyEvent(m, ev) {
  const seq = num(ev.seq);
  if (seq && seq <= m.seq) return { fresh: false, overdueLeft: false };
  if (seq) m.seq = seq;
  if (ev.op === 'created' && m.day && localDay(ev.created_at) === m.day) {
    bump(m.todayBySource, ev.source);
    bump(m.todayByCategory, ev.category);
  }
  let overdueLeft = false;
  const open = ev.status !== 'closed';
  if (open && ev.overdue) {
    const item = {
      id: ev.id, title: ev.title, category: ev.category, source: ev.source,
      deadline: ev.deadline, grid: ev.grids?.grid ?? ev.grid ?? null,
    };
    const list = overdueList(m);
    const last = list[list.length - 1];
    // a full list holds the oldest deadlines only: a later one stays out
    if (m.overdue.has(ev.id) || list.length < OVERDUE_MAX || byDeadline(item, last) < 0) {
      m.overdue.set(ev.id, item);
      if (m.overdue.size > OVERDUE_MAX) {
        m.overdue.delete(overdueList(m).at(-1).id);
        m.overdueTruncated = true;
      }
    }
  } else if (m.overdue.delete(ev.id)) {
    overdueLeft = m.overdueTruncated;
  }
  return { fresh: true, overdueLeft };
}

const byDeadline = (a, b) => (Date.parse(a.deadline) || 0) - (Date.parse(b.deadline) || 0) || String(a.id).localeCompare(String(b.id));

/** The overdue orders, oldest deadline first. */
export function overdueList(m) {
  return [...m.overdue.values()].sort(byDeadline);
}

/** Closure rate (closed / all orders) and on-time rate (closed on time / closed), 0..1 or null. */
export function rates(m) {
  const { closed, closed_on_time: onTime, events_open: open } = m.total;
  const all = num(closed) + num(open);
  return {
    closure: closed == null || open == null || all === 0 ? null : num(closed) / all,
    onTime: closed == null || onTime == null || num(closed) === 0 ? null : num(onTime) / num(closed),
  };
}

/** The grid-level areas with the most open orders (ties: more overdue, then code). */
export function topGrids(m, n = TOP_GRIDS) {
  const out = [];
  for (const [code, a] of m.areas) {
    if (a.level !== 'grid' || a.open <= 0) continue;
    out.push({ code, name: m.names.get(code) ?? code, open: a.open, overdue: a.overdue, fid: a.fid });
  }
  out.sort((a, b) => b.open - a.open || b.overdue - a.overdue || a.code.localeCompare(b.code));
  return out.slice(0, n);
}

/** Whether today's per-source counters add up to the district's count of today's orders. */
export function consistent(m) {
  if (m.total.today_new == null) return true;
  let sum = 0;
  for (const v of Object.values(m.todayBySource)) sum += v;
  return sum === m.total.today_new;
}
