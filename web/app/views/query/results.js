// The results panel: counts per layer (tabs), group counts of the active layer as a bar list,
// and one page of its features as a table, with paging and downloads. The panel owns a bounded
// DOM: table rows and bars are reused from render to render, never accumulated.
// A download whose query fits a URL is a plain link; a bigger one is a link-styled button whose
// click the page answers by POSTing the query (onDownload), with a busy line and an inline error.
import { applyI18n, fmtNumber, getLang, t, tf } from '../../i18n.js';
import { fmtValue, layerLabel, layerLabelEn, propLabel } from './format.js';

export const MAX_BARS = 24;

const TEMPLATE = `
  <div class="q-summary">
    <div class="q-sum-head">
      <h2 data-i18n-b="q.results"></h2>
      <span class="q-total"><span data-i18n="q.total"></span> <b></b></span>
    </div>
    <p class="q-stale" data-i18n="q.stale" hidden></p>
    <p class="q-empty" data-i18n="q.empty"></p>
    <ul class="q-counts" role="tablist"></ul>
    <div class="q-groups-box" hidden>
      <h3 class="q-groups-title"></h3>
      <ol class="q-groups"></ol>
      <p class="q-groups-note" hidden></p>
      <p class="q-groups-hint"></p>
    </div>
  </div>
  <div class="q-tablebox">
    <div class="q-table-bar">
      <h3 class="q-table-title"></h3>
      <span class="q-pageinfo"></span>
      <span class="q-pager">
        <button type="button" class="q-prev" data-i18n="q.table.prev"></button>
        <button type="button" class="q-next" data-i18n="q.table.next"></button>
      </span>
      <span class="q-dl">
        <span class="q-dl-lbl" data-i18n="q.download"></span>
        <a class="q-csv" data-kind="csv" download data-i18n="q.download.csv"></a>
        <a class="q-geojson" data-kind="geojson" download data-i18n="q.download.geojson"></a>
        <span class="q-dl-msg" role="status"></span>
      </span>
    </div>
    <div class="q-scroll">
      <table class="q-table"><thead><tr></tr></thead><tbody></tbody></table>
      <p class="q-none" data-i18n="q.table.none" hidden></p>
    </div>
  </div>`;

/** Makes `parent` hold exactly n children, reusing the ones it has (make() builds a new one). */
function sizeTo(parent, n, make) {
  while (parent.children.length > n) parent.lastElementChild.remove();
  while (parent.children.length < n) parent.append(make());
}

export function createResults(el, { onActivate, onRow, onPage, onGroup, onDownload }) {
  el.innerHTML = TEMPLATE;
  applyI18n(el);
  const $ = (s) => el.querySelector(s);
  const tbody = $('.q-table tbody');
  const headRow = $('.q-table thead tr');
  let columns = [];
  let rowsShown = [];
  let highlighted = null;

  el.addEventListener('click', (e) => {
    const post = e.target.closest('.q-dl a[data-post]');
    if (post) { e.preventDefault(); onDownload(post.dataset.kind); return; }
    const tab = e.target.closest('.q-counts button[data-layer]');
    if (tab) { onActivate(tab.dataset.layer); return; }
    const bar = e.target.closest('.q-groups button[data-key]');
    if (bar) { onGroup(bar.dataset.key); return; }
    if (e.target.closest('.q-prev')) { onPage(-1); return; }
    if (e.target.closest('.q-next')) { onPage(1); return; }
    const tr = e.target.closest('tbody tr');
    if (tr && tbody.contains(tr)) onRow(Number(tr.dataset.id));
  });
  el.addEventListener('keydown', (e) => {
    const post = e.target.closest('.q-dl a[data-post]');
    if (post && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); onDownload(post.dataset.kind); return; }
    const tr = e.target.closest('tbody tr');
    if (tr && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); onRow(Number(tr.dataset.id)); }
  });

  function renderCounts(s) {
    const r = s.result;
    const ul = $('.q-counts');
    const names = r ? Object.keys(r.layers) : [];
    sizeTo(ul, names.length, () => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('role', 'tab');
      b.innerHTML = '<span class="nm"></span><span class="n"></span>';
      li.append(b);
      return li;
    });
    names.forEach((name, i) => {
      const b = ul.children[i].firstElementChild;
      const n = r.layers[name].count;
      b.dataset.layer = name;
      b.dataset.count = String(n);
      b.setAttribute('aria-selected', String(name === s.active));
      const nm = b.querySelector('.nm');
      const en = layerLabelEn(name);
      nm.textContent = layerLabel(name, s.schemas.get(name));
      if (getLang() === 'zh' && en) {
        const sm = document.createElement('small');
        sm.textContent = en;
        nm.append(sm);
      }
      b.querySelector('.n').textContent = fmtNumber(n);
    });
    $('.q-total b').textContent = r ? fmtNumber(r.total) : '–';
    $('.q-total').hidden = !r;
    $('.q-empty').hidden = !!r;
    $('.q-stale').hidden = !(r && s.error);
  }

  function renderGroups(s, groupLabel) {
    const r = s.result;
    const box = $('.q-groups-box');
    const groups = r && s.active ? r.layers[s.active]?.groups : null;
    const by = r?.groupBy ?? null;
    // grouped by a property this layer lacks: the layer was asked ungrouped; say so
    const ungrouped = !groups && !!by && !!r.ungrouped?.includes(s.active);
    box.hidden = !groups && !ungrouped;
    const note = $('.q-groups-note');
    note.hidden = !ungrouped;
    note.textContent = ungrouped ? tf('q.groups.ungrouped', { prop: propLabel(by) === by ? by : `${propLabel(by)} (${by})` }) : '';
    $('.q-groups-hint').hidden = ungrouped;
    if (!groups) $('.q-groups').replaceChildren();
    if (!groups && !ungrouped) return;
    const isLevel = ['district', 'street', 'community', 'grid', 'micro'].includes(by);
    $('.q-groups-title').textContent = `${t('q.groups.by')} · ${isLevel ? t(`level.${by}`) : propLabel(by)} · ${layerLabel(s.active, s.schemas.get(s.active))}`;
    if (ungrouped) return;
    $('.q-groups-hint').textContent = isLevel ? t('q.groups.hintLevel') : t('q.groups.hintProp');
    const entries = Object.entries(groups).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const shown = entries.slice(0, MAX_BARS);
    const rest = entries.slice(MAX_BARS).reduce((n, [, c]) => n + c, 0);
    if (rest) shown.push([null, rest]);
    const max = Math.max(1, ...shown.map(([, c]) => c));
    const ol = $('.q-groups');
    sizeTo(ol, shown.length, () => {
      const li = document.createElement('li');
      li.innerHTML = '<button type="button"><span class="g-name"></span><span class="g-bar"><i></i></span><span class="g-n"></span></button>';
      return li;
    });
    shown.forEach(([key, n], i) => {
      const b = ol.children[i].firstElementChild;
      if (key === null) { delete b.dataset.key; b.disabled = true; } else { b.dataset.key = key; b.disabled = key === 'none' || key === 'null'; }
      const name = key === null ? t('q.groups.others') : groupLabel(by, key);
      b.querySelector('.g-name').textContent = name;
      b.title = key === null ? name : `${name} · ${key}`;
      b.querySelector('.g-bar i').style.width = `${((100 * n) / max).toFixed(1)}%`;
      b.querySelector('.g-n').textContent = fmtNumber(n);
      b.dataset.count = String(n);
    });
  }

  function renderTable(s) {
    const r = s.result;
    const page = s.page;
    const layer = s.active;
    const schema = layer ? s.schemas.get(layer) : null;
    $('.q-table-title').textContent = layer ? layerLabel(layer, schema) : '';
    const features = page?.features ?? [];
    const count = r && layer ? r.layers[layer].count : 0;
    // columns: id, the schema's properties, and any extra property the server added (buildings'
    // intersection area)
    const cols = ['id', ...(schema?.properties ?? []).map((p) => p.name)];
    for (const f of features.slice(0, 1)) for (const k of Object.keys(f.properties)) if (!cols.includes(k)) cols.push(k);
    if (cols.join() !== columns.join() || headRow.dataset.lang !== getLang()) {
      columns = cols;
      headRow.dataset.lang = getLang();
      sizeTo(headRow, cols.length, () => document.createElement('th'));
      cols.forEach((c, i) => { headRow.children[i].textContent = propLabel(c); headRow.children[i].title = c; });
    }
    sizeTo(tbody, features.length, () => {
      const tr = document.createElement('tr');
      tr.tabIndex = 0;
      return tr;
    });
    features.forEach((f, i) => {
      const tr = tbody.children[i];
      tr.dataset.id = String(f.id);
      tr.classList.toggle('hl', f.id === highlighted);
      tr.setAttribute('aria-selected', String(f.id === highlighted));
      sizeTo(tr, cols.length, () => document.createElement('td'));
      cols.forEach((c, j) => {
        const v = c === 'id' ? f.id : f.properties[c];
        const text = fmtValue(c, v);
        const td = tr.children[j];
        if (td.textContent !== text) td.textContent = text;
        const title = v !== null && v !== undefined && String(v) !== text ? String(v) : '';
        if (td.title !== title) td.title = title;
      });
    });
    rowsShown = features;
    $('.q-none').hidden = !(r && layer && features.length === 0 && !page?.loading);
    const first = page ? page.index * s.pageSize : 0;
    const info = $('.q-pageinfo');
    info.classList.toggle('err', !!page?.error);
    info.textContent = page?.error ? tf('q.error.page', { detail: page.error })
      : r && layer && features.length
        ? tf('q.table.rows', { a: fmtNumber(first + 1), b: fmtNumber(first + features.length), n: fmtNumber(count) })
        : '';
    $('.q-prev').disabled = !page || page.index === 0 || page.loading;
    $('.q-next').disabled = !page || !page.next || page.loading;
    $('.q-pager').hidden = !r || !layer;
    $('.q-table').hidden = !r || !layer;
    el.classList.toggle('paging', !!page?.loading);
  }

  /** One download link: `href` when the query fits a URL, else a button the page POSTs for. */
  function setLink(a, d, busy) {
    if (d.href) {
      if (a.getAttribute('href') !== d.href) a.href = d.href;
      delete a.dataset.post;
      a.removeAttribute('role');
      a.removeAttribute('tabindex');
    } else {
      a.removeAttribute('href');
      a.dataset.post = '1';
      a.setAttribute('role', 'button');
      a.tabIndex = 0;
    }
    a.setAttribute('download', d.name);
    a.setAttribute('aria-busy', String(busy));
    a.setAttribute('aria-disabled', String(busy));
  }

  function renderDownloads(dls) {
    const dl = $('.q-dl');
    dl.hidden = !dls;
    if (!dls) return;
    setLink($('.q-csv'), dls.csv, dls.busy === 'csv');
    setLink($('.q-geojson'), dls.geojson, dls.busy === 'geojson');
    const msg = $('.q-dl-msg');
    msg.classList.toggle('err', !!dls.error);
    msg.textContent = dls.busy ? t('q.download.busy') : dls.error ? tf('q.download.error', { detail: dls.error }) : '';
    dl.classList.toggle('busy', !!dls.busy);
  }

  return {
    render(s, { groupLabel, downloads }) {
      renderCounts(s);
      renderGroups(s, groupLabel);
      renderTable(s);
      renderDownloads(downloads);
      el.dataset.state = s.status;
    },
    /** Marks the row of feature `id` (null: none); scrolls it into view when asked. */
    highlight(id, { scroll = false } = {}) {
      highlighted = id;
      for (const tr of tbody.children) {
        const on = Number(tr.dataset.id) === id;
        tr.classList.toggle('hl', on);
        tr.setAttribute('aria-selected', String(on));
        if (on && scroll) tr.scrollIntoView({ block: 'nearest' });
      }
    },
    feature(id) { return rowsShown.find((f) => f.id === id) ?? null; },
    /** Re-labels what depends on the language only. */
    relabel() { applyI18n(el); },
  };
}
