// The planner's lists and tables as DOM, from the server's answers: validation findings, the
// impact of a plan, a publish/revert result, and a grid's history. Pure rendering: the page
// passes the data and what a click does; the language is read at render time.
import { fmtNumber, getLang, t, tf } from '../../i18n.js';
import { h } from './dom.js';

export const IMPACT_LAYERS = ['addresses', 'cameras', 'risks', 'buildings', 'events'];
const COUNT_KEYS = ['households', 'addresses', 'cameras', 'risks', 'buildings', 'events_open'];
const MAX_FEATURE_ROWS = 300;

const timeFormats = {};
/** A server timestamp as local (UTC+8) date and time. */
export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const l = getLang();
  timeFormats[l] ??= new Intl.DateTimeFormat(l === 'zh' ? 'zh-CN' : 'en-GB', {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
  });
  return timeFormats[l].format(d);
}

export function fmtArea(m2) {
  if (m2 == null || Number.isNaN(Number(m2))) return '';
  const n = Number(m2);
  const v = n >= 100 ? fmtNumber(Math.round(n)) : n.toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en-GB', { maximumFractionDigits: 1 });
  return `${v} ${t('p.unit.m2')}`;
}

export const kindLabel = (kind) => {
  const k = `p.v.${kind}`;
  const s = t(k);
  return s === k ? kind : s;
};

/** The rows of a list of violations; a click on one calls onPick(index). */
export function violationRows(violations, { nameOf, onPick, active = -1 }) {
  return violations.map((v, i) => {
    const names = (v.grids ?? []).map((c) => nameOf(c) ?? c);
    const area = v.area_m2 > 0 ? fmtArea(v.area_m2) : '';
    return h('li', {},
      h('button', { type: 'button', class: 'pl-viol', dataset: { i, kind: v.kind }, 'aria-pressed': String(i === active), onclick: () => onPick(i) },
        h('span', { class: 'pl-viol-kind', text: kindLabel(v.kind) }),
        h('span', { class: 'pl-viol-grids', text: names.join('、') || '–' }),
        area && h('span', { class: 'pl-viol-area', text: area }),
        v.detail && h('span', { class: 'pl-viol-detail', text: v.detail })));
  });
}

/** Count of violations per kind, "重叠 2 · 缝隙 1". */
export function violationSummary(violations) {
  const by = new Map();
  for (const v of violations) by.set(v.kind, (by.get(v.kind) ?? 0) + 1);
  return [...by].map(([k, n]) => `${kindLabel(k)} ${n}`).join(' · ');
}

const layerName = (l) => t(l === 'events' ? 'layers.events' : `layers.${l}`);

/** The impact of a plan: moved features per layer, per-grid counts before → after, the features. */
export function impactView(impact, { nameOf, onGrid }) {
  const box = h('div', { class: 'pl-impact' });
  if (!impact) return box;
  const moved = impact.moved ?? {};
  box.append(h('h3', { text: t('p.impact.moved') }),
    h('ul', { class: 'pl-moved' }, IMPACT_LAYERS.map((l) => h('li', { dataset: { layer: l, n: moved[l] ?? 0 } },
      h('span', { class: 'k', text: layerName(l) }), h('b', { text: fmtNumber(moved[l] ?? 0) })))));
  const grids = impact.grids ?? [];
  box.append(h('h3', { text: tf('p.impact.grids', { n: fmtNumber(grids.length) }) }));
  if (!grids.length) box.append(h('p', { class: 'pl-muted', text: t('p.impact.none') }));
  else {
    // the counts that change somewhere (households always), so the table fits the panel
    const keys = COUNT_KEYS.filter((k) => k === 'households' || grids.some((g) => (g.before?.[k] ?? 0) !== (g.after?.[k] ?? 0)));
    const head = h('tr', {}, h('th', { text: t('p.impact.grid') }), keys.map((k) => h('th', { text: t(`p.count.${k}`) })));
    const rows = grids.map((g) => h('tr', { dataset: { code: g.code }, tabindex: '0', onclick: () => onGrid(g.code) },
      h('td', { class: 'nm', title: g.code, text: g.name || nameOf(g.code) || g.code }),
      keys.map((k) => {
        const b = g.before?.[k] ?? 0;
        const a = g.after?.[k] ?? 0;
        const d = a - b;
        return h('td', { class: d ? (d > 0 ? 'up' : 'down') : 'same', dataset: { k, before: b, after: a } },
          d ? `${fmtNumber(b)} → ${fmtNumber(a)}` : fmtNumber(a));
      })));
    box.append(h('div', { class: 'pl-tablewrap' }, h('table', { class: 'pl-table pl-impact-grids' }, h('thead', {}, head), h('tbody', {}, rows))));
  }
  const feats = impact.features ?? [];
  if (feats.length) {
    const shown = feats.slice(0, MAX_FEATURE_ROWS);
    box.append(h('details', { class: 'pl-feats' },
      h('summary', { text: tf('p.impact.features', { n: fmtNumber(feats.length) }) }),
      h('div', { class: 'pl-tablewrap' }, h('table', { class: 'pl-table' },
        h('thead', {}, h('tr', {}, h('th', { text: t('p.impact.layer') }), h('th', { text: t('prop.name') }), h('th', { text: t('p.impact.from') }), h('th', { text: t('p.impact.to') }))),
        h('tbody', {}, shown.map((f) => h('tr', {},
          h('td', { text: layerName(f.layer) }), h('td', { text: f.name ?? f.id }),
          h('td', { title: f.from ?? '', text: nameOf(f.from) ?? f.from ?? '–' }), h('td', { title: f.to ?? '', text: nameOf(f.to) ?? f.to ?? '–' })))))),
      feats.length > shown.length && h('p', { class: 'pl-muted', text: tf('p.impact.more', { n: fmtNumber(feats.length - shown.length) }) })));
  }
  return box;
}

/** What a publish or a revert did: {seq, grids: {inserted, updated, deleted}, moved: {layer: n}}. */
export function resultView(r, titleKey) {
  const g = r.grids ?? {};
  const moved = Object.entries(r.moved ?? {}).filter(([, n]) => n > 0);
  return h('div', { class: 'pl-result', role: 'status' },
    h('b', { text: tf(titleKey, { seq: r.seq ?? '–' }) }),
    h('p', { text: tf('p.result.grids', { inserted: fmtNumber(g.inserted ?? 0), updated: fmtNumber(g.updated ?? 0), deleted: fmtNumber(g.deleted ?? 0) }) }),
    h('p', { text: moved.length ? `${t('p.result.moved')}${moved.map(([l, n]) => `${layerName(l)} ${fmtNumber(n)}`).join('、')}` : t('p.result.noMoved') }));
}

/** A refused publish or revert (409): the server's detail, its violations and conflicts. */
export function refusalView(err, { nameOf, onPick, active }) {
  const p = err.problem ?? {};
  const box = h('div', { class: 'pl-refusal', role: 'alert' }, h('b', { text: tf('p.refused', { detail: p.detail || p.title || err.message }) }));
  if (p.violations?.length) {
    box.append(h('p', { text: `${t('p.validate.found')} ${violationSummary(p.violations)}` }),
      h('ul', { class: 'pl-viols' }, violationRows(p.violations, { nameOf, onPick, active })));
  }
  if (p.conflicts?.length) {
    box.append(h('p', { text: t('p.conflicts') }),
      h('ul', { class: 'pl-conflicts' }, p.conflicts.map((c) => h('li', { dataset: { code: c.code } },
        h('b', { text: nameOf(c.code) ?? c.code }), h('span', { text: c.detail ?? '' })))));
  }
  return box;
}

/**
 * What a revert would do, from its dry run: the grids that go back, the later changes it undoes
 * (time, who, why, which plan), whether the result passes validation, and whose grid changes.
 */
export function revertPreview(revert, nameOf) {
  if (revert.previewError) return h('p', { class: 'pl-error pl-rv-preview', role: 'alert', text: tf('p.error', { detail: revert.previewError }) });
  const p = revert.preview;
  if (!p) return h('p', { class: 'pl-muted pl-rv-preview', text: t('p.rv.checking') });
  const grids = p.grids ?? [];
  const undone = p.undone ?? [];
  const moved = Object.entries(p.impact?.moved ?? {}).filter(([, n]) => n > 0);
  return h('div', { class: 'pl-rv-preview', dataset: { ok: String(Boolean(p.ok)) } },
    h('p', { class: 'pl-rv-grids', text: tf('p.rv.grids', { n: fmtNumber(grids.length) }) + grids.map((g) => nameOf(g.code) ?? g.code).join('、') }),
    h('p', { text: tf('p.rv.undone', { n: fmtNumber(undone.length) }) }),
    h('ul', { class: 'pl-rv-undone' }, undone.map((u) => h('li', { dataset: { seq: u.seq } },
      h('time', { datetime: u.time ?? '', text: fmtTime(u.time) }),
      h('span', { class: 'pl-ver-who', text: u.author || '–' }),
      h('span', { class: 'pl-ver-why', text: u.reason || '' }),
      h('span', { class: 'pl-ver-plan', text: u.plan != null ? tf('p.hist.plan', { id: u.plan }) : u.revert ? t('p.rv.aRevert') : t('p.hist.noPlan') })))),
    h('p', { text: moved.length ? `${t('p.result.moved')}${moved.map(([l, n]) => `${layerName(l)} ${fmtNumber(n)}`).join('、')}` : t('p.result.noMoved') }),
    p.ok
      ? h('p', { class: 'pl-rv-ok', text: t('p.rv.ok') })
      : h('p', { class: 'pl-error pl-rv-bad', role: 'alert', text: `${tf('p.rv.bad', { n: fmtNumber(p.violations?.length ?? 0) })} ${violationSummary(p.violations ?? [])}` }));
}

const opLabel = (op) => {
  const k = `p.hist.op.${op}`;
  const s = t(k);
  return s === k ? op : s;
};

/**
 * A grid's versions, newest first. Hovering a row calls onHover(version|null); a click pins it;
 * "revert" opens the form under the row (revert.version), with `preview` (the dry run's view) in it;
 * the form calls onRevert(version, author, reason).
 */
export function historyRows(hist, { pinned, revert, preview, readonly, onHover, onPin, onAskRevert, onRevert, onCancel }) {
  const versions = [...(hist.versions ?? [])].reverse();
  const latest = versions[0]?.version;
  return versions.map((v) => {
    const li = h('li', { class: 'pl-ver', dataset: { version: v.version, op: v.op }, 'aria-current': v.version === latest ? 'true' : null },
      h('button', { type: 'button', class: 'pl-ver-main', 'aria-pressed': String(pinned === v.version),
        onmouseenter: () => onHover(v), onmouseleave: () => onHover(null), onfocus: () => onHover(v), onblur: () => onHover(null),
        onclick: () => onPin(v) },
        h('span', { class: 'pl-ver-n', text: `v${v.version}` }),
        h('span', { class: 'pl-ver-op', dataset: { op: v.op }, text: opLabel(v.op) }),
        h('time', { datetime: v.time ?? '', text: fmtTime(v.time) }),
        h('span', { class: 'pl-ver-who', text: v.author || '–' }),
        h('span', { class: 'pl-ver-why', text: v.reason || '' }),
        h('span', { class: 'pl-ver-plan', text: v.plan != null ? tf('p.hist.plan', { id: v.plan }) : t('p.hist.noPlan') })));
    if (!readonly && v.version !== latest) {
      if (revert?.version === v.version) {
        const author = h('input', { type: 'text', class: 'pl-rv-author', value: revert.author ?? '', autocomplete: 'off', readOnly: true, title: t('p.author.signedIn') });
        const reason = h('input', { type: 'text', class: 'pl-rv-reason', value: revert.reason ?? '', autocomplete: 'off' });
        li.append(h('form', { class: 'pl-rv-form', onsubmit: (e) => { e.preventDefault(); onRevert(v.version, author.value.trim(), reason.value.trim()); } },
          h('label', {}, h('span', { text: t('p.author') }), author),
          h('label', {}, h('span', { text: t('p.reason') }), reason),
          preview,
          h('div', { class: 'pl-row' },
            h('button', { type: 'submit', class: 'pl-btn pl-primary pl-rv-go', disabled: Boolean(revert.busy), text: t('p.hist.revertGo') }),
            h('button', { type: 'button', class: 'pl-btn', onclick: onCancel, text: t('p.cancel') }))));
      } else {
        li.append(h('button', { type: 'button', class: 'pl-link pl-rv', dataset: { version: v.version }, onclick: () => onAskRevert(v.version), text: t('p.hist.revert') }));
      }
    }
    return li;
  });
}
