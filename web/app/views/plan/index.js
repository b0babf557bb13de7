// The planner (网格规划, #/plan): grid edit plans (docs/plans-api.md) on a light desk map.
// Without a plan open: the plans (GET /api/plans) and a form to make one over a scope of grids
// picked by a click on the map or by code or name. With a plan open: its draft grids over the
// published ones, one level editable at a time: drag a vertex handle (a vertex several grids
// share is one handle) or the middle of an edge, split by a line, merge selected grids, edit a
// grid's attributes, undo; validate (findings drawn on the map, impact tables), publish, and a
// grid's history with revert. Every edit is one op sent to the server; the map is redrawn from
// the plan the server answers, and a refused op shows the server's reason under the tools.
//
// State lives in one plain object (window.onemap.plan.state for tests). Everything mount creates
// is released by the returned unmount.
import { api } from '../../api.js';
import { displayName } from '../../session.js';
import { applyI18n, fmtNumber, onLangChange, t, tb, tf } from '../../i18n.js';
import { h } from './dom.js';
import { createEditor } from './edit.js';
import { alongHalf, applyMove, bboxOf, contains, gridsCrossed, labelPoint, unionBbox } from './geom.js';
import { createMap, loadStyle } from './map.js';
import {
  fmtTime, historyRows, impactView, refusalView, resultView, revertPreview, violationRows, violationSummary,
} from './panels.js';

export const EDIT_LEVELS = ['community', 'grid', 'micro'];
const PICK_LEVELS = ['street', 'community', 'grid'];
const CHILD = { district: 'street', street: 'community', community: 'grid', grid: 'micro', micro: 'micro' };
const ATTRS = ['name', 'staff', 'phone', 'population'];

const LAYOUT = `
  <div class="pl">
    <aside class="pl-side">
      <div class="pl-side-body">
        <section class="pl-sec pl-list" data-when="list">
          <h2 data-i18n-b="p.plans"></h2>
          <p class="pl-muted pl-list-msg"></p>
          <ul class="pl-plans"></ul>
        </section>
        <section class="pl-sec pl-new" data-when="list">
          <h2 data-i18n-b="p.new"></h2>
          <label class="pl-field"><span data-i18n="p.title"></span><input type="text" class="pl-new-title" autocomplete="off"></label>
          <label class="pl-field"><span data-i18n="p.author"></span><input type="text" class="pl-new-author" autocomplete="off" readonly data-i18n-title="p.author.signedIn"></label>
          <div class="pl-field"><span data-i18n="p.scope"></span>
            <ul class="pl-scope"></ul>
            <input type="search" class="pl-scope-search" autocomplete="off" spellcheck="false">
            <p class="pl-muted pl-scope-help" data-i18n="p.scope.help"></p>
            <p class="pl-muted pl-scope-msg"></p>
            <ul class="pl-choices"></ul>
          </div>
          <p class="pl-error pl-create-error" role="alert" hidden></p>
          <button type="button" class="pl-btn pl-primary pl-create" data-i18n="p.create"></button>
        </section>
        <section class="pl-sec pl-head" data-when="plan">
          <button type="button" class="pl-link pl-back" data-i18n="p.back"></button>
          <div class="pl-head-row"><h2 class="pl-plan-title"></h2><span class="pl-badge pl-plan-status"></span></div>
          <p class="pl-muted pl-plan-meta"></p>
          <p class="pl-note pl-readonly" hidden></p>
        </section>
        <section class="pl-sec pl-edit" data-when="plan">
          <h3 data-i18n="p.level"></h3>
          <div class="pl-seg pl-levels" role="radiogroup"></div>
          <div class="pl-tools" role="toolbar">
            <button type="button" class="pl-btn" data-tool="select" aria-pressed="true" data-i18n="p.tool.select"></button>
            <button type="button" class="pl-btn" data-tool="split" aria-pressed="false" data-i18n="p.tool.split"></button>
            <button type="button" class="pl-btn" data-act="merge" data-i18n="p.tool.merge"></button>
            <button type="button" class="pl-btn" data-act="undo" data-i18n="p.tool.undo"></button>
          </div>
          <p class="pl-hint"></p>
          <p class="pl-error pl-op-error" role="alert" hidden></p>
          <p class="pl-ok pl-op-ok" role="status"></p>
        </section>
        <section class="pl-sec pl-selsec" data-when="plan">
          <h3 data-i18n="p.sel"></h3>
          <p class="pl-sel-desc"></p>
          <form class="pl-attrs" hidden>
            <label class="pl-field"><span data-i18n="prop.name"></span><input name="name" type="text" autocomplete="off"></label>
            <label class="pl-field"><span data-i18n="prop.staff"></span><input name="staff" type="text" autocomplete="off"></label>
            <label class="pl-field"><span data-i18n="prop.phone"></span><input name="phone" type="text" autocomplete="off"></label>
            <label class="pl-field"><span data-i18n="prop.population"></span><input name="population" type="number" min="0" step="1"></label>
            <p class="pl-muted pl-attrs-hh"></p>
            <button type="submit" class="pl-btn pl-primary pl-attrs-save" data-i18n="p.attrs.save"></button>
          </form>
        </section>
        <section class="pl-sec" data-when="plan">
          <h3 data-i18n="p.ops"></h3>
          <ol class="pl-ops"></ol>
          <button type="button" class="pl-link pl-discard" data-i18n="p.discard"></button>
        </section>
      </div>
    </aside>
    <div class="pl-map" id="map"></div>
    <aside class="pl-panel">
      <div class="pl-tabs" role="tablist">
        <button type="button" role="tab" data-tab="validate" data-i18n="p.tab.validate"></button>
        <button type="button" role="tab" data-tab="publish" data-i18n="p.tab.publish"></button>
        <button type="button" role="tab" data-tab="history" data-i18n="p.tab.history"></button>
      </div>
      <section class="pl-tab" data-tab="validate">
        <div class="pl-row"><button type="button" class="pl-btn pl-primary pl-validate" data-i18n="p.validate"></button><span class="pl-validate-status"></span></div>
        <p class="pl-error pl-validate-error" role="alert" hidden></p>
        <ul class="pl-viols pl-validate-list"></ul>
        <div class="pl-impact-box"></div>
      </section>
      <section class="pl-tab" data-tab="publish">
        <form class="pl-publish">
          <label class="pl-field"><span data-i18n="p.publisher"></span><input type="text" class="pl-pub-author" autocomplete="off" readonly data-i18n-title="p.author.signedIn"></label>
          <label class="pl-field"><span data-i18n="p.reason"></span><textarea class="pl-pub-reason" rows="3"></textarea></label>
          <button type="submit" class="pl-btn pl-primary pl-pub-go" data-i18n="p.publish"></button>
        </form>
        <p class="pl-muted pl-pub-help" data-i18n="p.publish.help"></p>
        <div class="pl-pub-out"></div>
      </section>
      <section class="pl-tab" data-tab="history">
        <p class="pl-hist-head"></p>
        <div class="pl-hist-out"></div>
        <ol class="pl-hist"></ol>
      </section>
    </aside>
  </div>`;

export const planView = {
  async mount(root, params) {
    root.innerHTML = LAYOUT;
    applyI18n(root);
    const $ = (s) => root.querySelector(s);
    const cleanups = [];
    const body = document.body;
    body.dataset.planState = 'idle';
    body.dataset.planAnswers = '0';

    const state = {
      plans: null, // GET /api/plans
      listError: null,
      createError: null, // { missing: [label keys] } | { detail }
      scope: [], // [{code, name, level}] of the plan being made
      plan: null, // GET /api/plans/{id}
      byCode: new Map(), // code → draft feature
      level: 'grid', // the editable level
      tool: 'select', // select | split
      selected: [], // draft grid codes in click order
      busy: false,
      opError: null, // the last refused op (text)
      opOk: null, // the last op's summary
      validation: null, // { planKey, answer } | null
      validateError: null,
      validating: false,
      violations: [], // what p-viol shows: from validate, or a refused publish/revert
      violFrom: null, // 'validate' | 'publish' | 'revert'
      activeViol: -1,
      tab: 'history',
      publish: { busy: false, result: null, error: null, formError: null },
      history: { code: null, name: null, data: null, error: null, loading: false, pinned: null, revert: null, result: null, refusal: null },
    };
    let answers = 0;
    const answered = () => { body.dataset.planAnswers = String(++answers); };

    const { style } = await loadStyle();
    const pmap = createMap($('#map'), style);
    const { map } = pmap;
    cleanups.push(() => map.remove());

    const readonly = () => !state.plan || state.plan.status !== 'draft';
    const features = () => state.plan?.grids?.features ?? [];
    const editableFeatures = (fs = features()) => fs.filter((f) => f.properties.level === state.level && f.properties.kind !== 'dedicated');
    const nameOf = (code) => (code ? state.byCode.get(code)?.properties.name ?? null : null);
    /** Identifies the plan's content: validation answers older than this are marked stale. */
    const planKey = () => (state.plan ? `${state.plan.id}:${state.plan.ops.length}:${state.plan.ops.filter((o) => o.undone).length}` : '');

    // The server records the signed-in account as the author of every change: the author and
    // publisher fields show it and cannot be edited.
    const author = displayName();
    $('.pl-new-author').value = author;

    // ── the editor on the map ──
    const editor = createEditor(pmap, {
      onPreview: (handle, to) => drawDraft(applyMove(features(), handle, to)),
      onMove: (handle, to) => moveVertex(handle, to),
      onSelect: (ll, shift) => clickAt(ll, shift),
      onSplit: (line) => split(line),
      onMode: (m) => { state.tool = m; renderTools(); },
    });
    cleanups.push(() => editor.destroy());

    function drawDraft(fs = features()) {
      pmap.set('p-draft', fs);
      const sel = new Set(state.selected);
      pmap.set('p-sel', fs.filter((f) => sel.has(f.properties.code)));
    }

    function redraw() {
      drawDraft();
      const editable = editableFeatures();
      pmap.set('p-label', editable.map((f) => {
        const c = labelPoint(f.geometry);
        return c && { type: 'Feature', properties: { code: f.properties.code, name: f.properties.name }, geometry: { type: 'Point', coordinates: c } };
      }).filter(Boolean));
      editor.setFeatures(editable, !readonly());
    }

    function setBusy(b) {
      state.busy = b;
      editor.setBusy(b);
      body.dataset.planState = b ? 'busy' : (state.opError ? 'error' : 'idle');
      renderTools();
      renderSelection();
    }

    // ── the plans list ──
    async function loadPlans() {
      try {
        state.plans = await api.plans();
        state.listError = null;
      } catch (err) {
        state.listError = { key: 'p.error', detail: err.message };
      }
      renderList();
    }

    function renderList() {
      const msg = $('.pl-list-msg');
      const ul = $('.pl-plans');
      if (state.listError) { msg.textContent = tf(state.listError.key, state.listError); ul.replaceChildren(); return; }
      if (!state.plans) { msg.textContent = t('p.loading'); ul.replaceChildren(); return; }
      msg.textContent = state.plans.length ? '' : t('p.plans.none');
      ul.replaceChildren(...state.plans.map((p) => h('li', {},
        h('button', { type: 'button', class: 'pl-plan', dataset: { id: p.id, status: p.status }, onclick: () => openPlan(p.id) },
          h('span', { class: 'pl-plan-t', text: p.title || `#${p.id}` }),
          h('span', { class: 'pl-badge', dataset: { status: p.status }, text: t(`p.status.${p.status}`) }),
          h('span', { class: 'pl-plan-m', text: [p.author, tf('p.plans.scope', { n: (p.scope ?? []).length, codes: (p.scope ?? []).join('、') }), fmtTime(p.created_at)].filter(Boolean).join(' · ') }),
          h('span', { class: 'pl-plan-m', text: `#${p.id} · ${tf('p.plans.counts', { grids: fmtNumber(p.grids ?? 0), ops: fmtNumber(p.ops ?? 0) })}` })))));
    }

    // ── the scope of a new plan: a click on the map, or a search by code or name ──
    const gridLists = new Map();
    const gridsOf = (level) => {
      if (!gridLists.has(level)) {
        const p = api.grids(level).then((r) => r.grids);
        p.catch(() => gridLists.delete(level));
        gridLists.set(level, p);
      }
      return gridLists.get(level);
    };

    let locating = null;
    async function locateAt(ll) {
      locating?.abort();
      const ctl = new AbortController();
      locating = ctl;
      const msg = $('.pl-scope-msg');
      msg.textContent = t('p.loading');
      try {
        const r = await api.locate(ll.lng.toFixed(7), ll.lat.toFixed(7), { signal: ctl.signal });
        const found = PICK_LEVELS.map((l) => r.levels?.[l] && { ...r.levels[l], level: l }).filter(Boolean);
        msg.textContent = found.length ? t('p.scope.here') : t('p.scope.outside');
        showChoices(found);
      } catch (err) {
        if (err.name !== 'AbortError') msg.textContent = err.message;
      }
    }

    function showChoices(grids) {
      $('.pl-choices').replaceChildren(...grids.slice(0, 20).map((g) => {
        const added = state.scope.some((s) => s.code === g.code);
        return h('li', {},
          h('button', { type: 'button', class: 'pl-choice', dataset: { code: g.code, level: g.level }, disabled: added,
            onclick: () => addScope({ code: g.code, name: g.name, level: g.level }) },
          h('span', { class: 'lv', text: t(`level.${g.level}`) }), h('span', { class: 'nm', text: g.name }), h('span', { class: 'cd', text: g.code })),
          h('button', { type: 'button', class: 'pl-link pl-choice-hist', dataset: { code: g.code }, text: t('p.tab.history'),
            onclick: () => showHistory(g.code, g.name) }));
      }));
    }

    let searchTimer = 0;
    let searchSeq = 0;
    $('.pl-scope-search').addEventListener('input', (e) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => searchGrids(e.target.value.trim()), 200);
    });
    cleanups.push(() => clearTimeout(searchTimer));

    async function searchGrids(q) {
      const seq = ++searchSeq;
      const msg = $('.pl-scope-msg');
      if (!q) { msg.textContent = ''; showChoices([]); return; }
      msg.textContent = t('p.loading');
      try {
        const found = [];
        for (const level of PICK_LEVELS) {
          for (const g of await gridsOf(level)) {
            if (found.length >= 20) break;
            if (g.kind !== 'dedicated' && (g.code.startsWith(q) || g.name.includes(q))) found.push({ ...g, level });
          }
        }
        if (seq !== searchSeq) return;
        msg.textContent = found.length ? '' : t('p.scope.noMatch');
        showChoices(found);
      } catch (err) {
        if (seq === searchSeq) msg.textContent = err.message;
      }
    }

    function addScope(g) {
      if (state.scope.some((s) => s.code === g.code)) return;
      state.scope.push(g);
      renderScope();
      for (const b of root.querySelectorAll('.pl-choice')) b.disabled = state.scope.some((s) => s.code === b.dataset.code);
    }

    function renderScope() {
      $('.pl-scope').replaceChildren(...state.scope.map((s) => h('li', { class: 'pl-chip', dataset: { code: s.code } },
        h('span', { text: `${t(`level.${s.level}`)} · ${s.name}` }),
        h('button', { type: 'button', class: 'pl-chip-x', title: t('p.scope.remove'), 'aria-label': t('p.scope.remove'),
          onclick: () => { state.scope = state.scope.filter((x) => x.code !== s.code); renderScope(); }, text: '×' }))));
      if (!state.scope.length) $('.pl-scope').append(h('li', { class: 'pl-muted', text: t('p.scope.none') }));
      pmap.setScope(state.plan ? [] : state.scope.map((s) => s.code));
    }

    const required = (keys) => tf('p.required', { fields: keys.map((k) => t(k)).join('、') });

    function renderCreateError() {
      const e = state.createError;
      const el = $('.pl-create-error');
      el.hidden = !e;
      el.textContent = !e ? '' : e.missing ? required(e.missing) : tf('p.error.create', { detail: e.detail });
    }

    async function createPlan() {
      const title = $('.pl-new-title').value.trim();
      const who = $('.pl-new-author').value.trim();
      const missing = [!title && 'p.title', !who && 'p.author', !state.scope.length && 'p.scope'].filter(Boolean);
      state.createError = missing.length ? { missing } : null;
      renderCreateError();
      if (missing.length) return;
      const btn = $('.pl-create');
      btn.disabled = true;
      try {
        const plan = await api.createPlan({ title, author: who, scope: state.scope.map((s) => s.code) });
        state.scope = [];
        $('.pl-new-title').value = '';
        renderScope();
        showChoices([]);
        openLoaded(plan);
        loadPlans();
      } catch (e) {
        state.createError = { detail: describe(e) };
        renderCreateError();
      } finally {
        btn.disabled = false;
        answered();
      }
    }
    $('.pl-create').addEventListener('click', createPlan);

    // ── a plan ──
    async function openPlan(id) {
      try {
        openLoaded(await api.plan(id));
      } catch (err) {
        state.listError = { key: 'p.error.open', id, detail: err.message };
        renderList();
      }
    }

    function openLoaded(plan, { fit = true } = {}) {
      const first = state.plan?.id !== plan.id;
      if (first) {
        state.selected = [];
        state.validation = null;
        state.validateError = null;
        state.opError = null;
        state.opOk = null;
        state.publish = { busy: false, result: null, error: null, formError: null };
        setViolations([], null);
        state.tab = plan.status === 'draft' ? 'validate' : 'history';
        clearHistory();
      }
      applyPlan(plan);
      if (first) {
        state.level = defaultLevel(plan);
        pmap.setGlobal('edit_level', state.level);
        editor.setMode('select');
        history.replaceState(null, '', `#/plan?id=${plan.id}`);
        pmap.setScope([]);
        $('.pl-pub-author').value = author;
        if (fit) fitTo(unionBbox(features().map((f) => bboxOf(f.geometry))));
      }
      redraw();
      renderAll();
    }

    function defaultLevel(plan) {
      const fs = plan.grids?.features ?? [];
      const scopeLevels = fs.filter((f) => plan.scope.includes(f.properties.code)).map((f) => f.properties.level);
      const l = CHILD[scopeLevels[0]] ?? 'grid';
      const has = (x) => fs.some((f) => f.properties.level === x);
      if (has(l)) return l;
      return EDIT_LEVELS.find(has) ?? 'grid';
    }

    function applyPlan(plan) {
      state.plan = plan;
      state.byCode = new Map((plan.grids?.features ?? []).map((f) => [f.properties.code, f]));
      state.selected = state.selected.filter((c) => state.byCode.has(c));
    }

    function closePlan() {
      state.plan = null;
      state.byCode = new Map();
      state.selected = [];
      setViolations([], null);
      clearHistory();
      state.tab = 'history';
      editor.setMode('select');
      history.replaceState(null, '', '#/plan');
      redraw();
      renderScope();
      renderAll();
      loadPlans();
    }
    $('.pl-back').addEventListener('click', closePlan);

    function fitTo(b) {
      if (!b) return;
      if (b[0] === b[2] && b[1] === b[3]) map.flyTo({ center: [b[0], b[1]], zoom: Math.max(map.getZoom(), 17), duration: 500 });
      else map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 50, maxZoom: 18, duration: 500 });
    }

    // ── ops ──
    /** The server's reason for a refusal: the problem's detail (its title is only the HTTP status). */
    function describe(err) {
      const p = err.problem;
      return p?.detail || p?.title || err.message;
    }

    /** Sends one op; the map is redrawn from the plan the server answers. Resolves the answer or null. */
    async function runOp(op) {
      if (!state.plan || state.busy) return null;
      state.opError = null;
      setBusy(true);
      try {
        const r = await api.planOp(state.plan.id, op);
        applyPlan(r.plan);
        state.opOk = { n: r.n, kind: r.kind, summary: r.summary };
        return r;
      } catch (err) {
        state.opError = { key: 'p.error.op', op: op.op, detail: describe(err) };
        state.opOk = null;
        if (err.status === 409) refreshPlan();
        return null;
      } finally {
        setBusy(false);
        redraw();
        renderAll();
        answered();
      }
    }

    async function refreshPlan() {
      if (!state.plan) return;
      try { openLoaded(await api.plan(state.plan.id), { fit: false }); } catch { /* stays as it was */ }
    }

    function moveVertex(handle, to) {
      runOp({ op: 'move_vertex', from: handle.from, to });
    }

    function clickAt(ll, shift) {
      const p = [ll.lng, ll.lat];
      if (!state.plan) { locateAt(ll); return; }
      const hit = editableFeatures().find((f) => contains(f.geometry, p));
      const code = hit?.properties.code;
      if (shift) {
        if (!code) return;
        state.selected = state.selected.includes(code) ? state.selected.filter((c) => c !== code) : [...state.selected, code];
      } else {
        state.selected = code ? [code] : [];
      }
      selectionChanged();
    }

    function select(codes) {
      state.selected = codes.filter((c) => state.byCode.has(c));
      selectionChanged();
    }

    function selectionChanged() {
      drawDraft();
      renderSelection();
      renderTools();
      if (state.selected.length === 1) {
        const c = state.selected[0];
        if (state.history.code === c) return;
        if (state.byCode.get(c)?.properties.state === 'new') {
          // a grid the plan made has no published version to ask about
          clearHistory();
          Object.assign(state.history, { code: c, name: nameOf(c), error: t('p.hist.new') });
          renderHistory();
        } else showHistory(c, nameOf(c), { switchTab: false });
      }
    }

    async function split(line) {
      let code = state.selected.length === 1 ? state.selected[0] : null;
      if (!code) {
        const crossed = gridsCrossed(editableFeatures(), line);
        if (crossed.length === 1) [code] = crossed;
        else if (crossed.length > 1) {
          const mid = alongHalf(line);
          code = crossed.find((c) => contains(state.byCode.get(c).geometry, mid)) ?? null;
        }
      }
      if (!code) { state.opError = { key: 'p.split.which' }; renderTools(); return; }
      const r = await runOp({ op: 'split', code, line });
      if (r) {
        editor.setMode('select');
        select([code, ...(r.created ?? [])]);
      }
    }

    async function merge() {
      if (state.selected.length < 2) return;
      const codes = [...state.selected];
      const r = await runOp({ op: 'merge', codes });
      if (r) select([codes[0]]);
    }

    async function undo() { await runOp({ op: 'undo' }); }

    root.querySelector('.pl-tools').addEventListener('click', (e) => {
      const b = e.target.closest('button');
      if (!b || b.disabled) return;
      if (b.dataset.tool) editor.setMode(b.dataset.tool === state.tool && b.dataset.tool !== 'select' ? 'select' : b.dataset.tool);
      else if (b.dataset.act === 'merge') merge();
      else if (b.dataset.act === 'undo') undo();
    });

    function setLevel(l) {
      if (!EDIT_LEVELS.includes(l) || l === state.level) return;
      state.level = l;
      pmap.setGlobal('edit_level', l);
      state.selected = [];
      redraw();
      renderAll();
    }
    $('.pl-levels').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-level]');
      if (b && !b.disabled) setLevel(b.dataset.level);
    });

    $('.pl-attrs').addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = state.byCode.get(state.selected[0]);
      if (!f || readonly()) return;
      const form = e.currentTarget;
      const set = {};
      for (const k of ATTRS) {
        const raw = form.elements[k].value.trim();
        if (k === 'population') {
          if (raw === '') continue;
          const n = Number(raw);
          if (!Number.isInteger(n) || n < 0) { state.opError = { key: 'p.attrs.badPopulation' }; renderTools(); return; }
          if (n !== f.properties.population) set[k] = n;
        } else if (raw !== (f.properties[k] ?? '')) set[k] = raw;
      }
      if (!Object.keys(set).length) { state.opOk = { key: 'p.attrs.same' }; state.opError = null; renderTools(); return; }
      await runOp({ op: 'attributes', code: f.properties.code, set });
    });

    $('.pl-discard').addEventListener('click', async () => {
      if (!state.plan || readonly() || state.busy) return;
      if (!confirm(tf('p.discard.confirm', { title: state.plan.title }))) return;
      try {
        await api.discardPlan(state.plan.id);
        await refreshPlan();
      } catch (err) {
        state.opError = { key: 'p.error.op', op: 'discard', detail: describe(err) };
        renderTools();
      }
      answered();
    });

    // ── validation ──
    function setViolations(vs, from) {
      state.violations = vs ?? [];
      state.violFrom = from;
      state.activeViol = -1;
      pmap.setGlobal('viol', -1);
      pmap.set('p-viol', state.violations.filter((v) => v.geometry).map((v, i) => ({ type: 'Feature', properties: { i, kind: v.kind }, geometry: v.geometry })));
    }

    function pickViolation(i) {
      const v = state.violations[i];
      if (!v) return;
      state.activeViol = i;
      pmap.setGlobal('viol', i);
      fitTo(bboxOf(v.geometry) ?? unionBbox((v.grids ?? []).map((c) => bboxOf(state.byCode.get(c)?.geometry))));
      for (const b of root.querySelectorAll('.pl-viol')) b.setAttribute('aria-pressed', String(Number(b.dataset.i) === i));
    }

    async function validate() {
      if (!state.plan || state.validating) return;
      state.validating = true;
      state.validateError = null;
      renderValidation();
      const key = planKey();
      try {
        const answer = await api.validatePlan(state.plan.id);
        state.validation = { key, answer };
        setViolations(answer.violations ?? [], 'validate');
      } catch (err) {
        state.validateError = describe(err);
      } finally {
        state.validating = false;
        renderValidation();
        answered();
      }
    }
    $('.pl-validate').addEventListener('click', validate);

    // ── publish ──
    $('.pl-publish').addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!state.plan || readonly() || state.publish.busy) return;
      const who = $('.pl-pub-author').value.trim();
      const reason = $('.pl-pub-reason').value.trim();
      const missing = [!who && 'p.publisher', !reason && 'p.reason'].filter(Boolean);
      if (missing.length) { state.publish.formError = missing; renderPublish(); return; }
      state.publish = { busy: true, result: null, error: null, formError: null };
      renderPublish();
      try {
        const r = await api.publishPlan(state.plan.id, { author: who, reason });
        state.publish.result = r;
        state.opError = null;
        state.opOk = null;
        setViolations([], null);
        pmap.refreshContext();
        clearHistory();
        await refreshPlan();
      } catch (err) {
        state.publish.error = err;
        if (err.problem?.violations) setViolations(err.problem.violations, 'publish');
      } finally {
        state.publish.busy = false;
        renderAll();
        answered();
      }
    });

    // ── history and revert ──
    function clearHistory() {
      historyCtl?.abort();
      state.history = { code: null, name: null, data: null, error: null, loading: false, pinned: null, revert: null, result: null, refusal: null };
      pmap.set('p-hist', []);
    }

    let historyCtl = null;
    async function showHistory(code, name, { switchTab = true, keepResult = false } = {}) {
      historyCtl?.abort();
      const ctl = new AbortController();
      historyCtl = ctl;
      const keep = keepResult ? { result: state.history.result, refusal: state.history.refusal } : { result: null, refusal: null };
      state.history = { code, name: name ?? code, data: null, error: null, loading: true, pinned: null, revert: null, ...keep };
      pmap.set('p-hist', []);
      if (switchTab) state.tab = 'history';
      renderPanel();
      try {
        const data = await api.history(code, { signal: ctl.signal });
        if (state.history.code !== code) return;
        state.history.data = data;
      } catch (err) {
        if (err.name === 'AbortError') return;
        state.history.error = err.status === 404 ? t('p.hist.none') : describe(err);
      } finally {
        if (state.history.code === code) { state.history.loading = false; renderHistory(); }
      }
    }

    function showVersion(v) {
      const shown = v ?? state.history.data?.versions.find((x) => x.version === state.history.pinned);
      pmap.set('p-hist', shown?.geometry ? [{ type: 'Feature', properties: { version: shown.version }, geometry: shown.geometry }] : []);
    }

    // Opening the revert form asks the server what the revert would do (a dry run): which grids go
    // back, which later changes are undone (by whom, why), and whether the result would pass.
    async function askRevert(version) {
      const hs = state.history;
      const code = hs.code;
      hs.revert = { version, author, reason: '', preview: null, previewError: null };
      hs.formError = null;
      renderHistory();
      root.querySelector('.pl-rv-reason')?.focus();
      try {
        const preview = await api.revert(code, { version, dry_run: true });
        if (state.history.code !== code || state.history.revert?.version !== version) return;
        state.history.revert.preview = preview;
      } catch (err) {
        if (state.history.code !== code || state.history.revert?.version !== version) return;
        state.history.revert.previewError = describe(err);
      } finally {
        if (state.history.code === code && state.history.revert?.version === version) {
          const focused = document.activeElement;
          const typed = { author: root.querySelector('.pl-rv-author')?.value, reason: root.querySelector('.pl-rv-reason')?.value };
          Object.assign(state.history.revert, Object.fromEntries(Object.entries(typed).filter(([, v]) => v != null)));
          renderHistory();
          if (focused?.classList?.contains('pl-rv-author')) root.querySelector('.pl-rv-author')?.focus();
          else root.querySelector('.pl-rv-reason')?.focus();
        }
        answered();
      }
    }

    async function revert(version, who, reason) {
      const hs = state.history;
      if (!who || !reason) {
        hs.revert = { ...hs.revert, author: who, reason, busy: false };
        hs.refusal = null;
        hs.result = null;
        hs.formError = [!who && 'p.author', !reason && 'p.reason'].filter(Boolean);
        renderHistory();
        return;
      }
      hs.revert = { ...hs.revert, version, author: who, reason, busy: true };
      hs.formError = null;
      renderHistory();
      try {
        const r = await api.revert(hs.code, { version, author: who, reason });
        hs.result = r;
        hs.refusal = null;
        setViolations([], null);
        pmap.refreshContext();
        await showHistory(hs.code, hs.name, { switchTab: false, keepResult: true });
      } catch (err) {
        hs.refusal = err;
        hs.result = null;
        hs.revert = { ...hs.revert, version, author: who, reason, busy: false };
        if (err.problem?.violations) setViolations(err.problem.violations, 'revert');
      } finally {
        renderHistory();
        answered();
      }
    }

    // ── rendering ──
    function renderAll() {
      body.dataset.planMode = state.plan ? 'plan' : 'list';
      root.querySelector('.pl').dataset.mode = state.plan ? 'plan' : 'list';
      renderList();
      renderScope();
      renderCreateError();
      renderHead();
      renderTools();
      renderSelection();
      renderOps();
      renderPanel();
    }

    function renderHead() {
      const p = state.plan;
      if (!p) return;
      $('.pl-plan-title').textContent = p.title || `#${p.id}`;
      const badge = $('.pl-plan-status');
      badge.dataset.status = p.status;
      badge.textContent = t(`p.status.${p.status}`);
      $('.pl-plan-meta').textContent = [`#${p.id}`, p.author, fmtTime(p.created_at),
        tf('p.plans.scope', { n: p.scope.length, codes: p.scope.map((c) => nameOf(c) ?? c).join('、') }),
        tf('p.plans.grids', { n: fmtNumber(features().length) })].filter(Boolean).join(' · ');
      const ro = $('.pl-readonly');
      ro.hidden = p.status === 'draft';
      ro.textContent = p.status === 'published'
        ? tf('p.readonly.published', { time: fmtTime(p.published_at), seq: p.published_seq ?? '–' })
          + (p.published_by || p.reason ? `\n${tf('p.readonly.by', { who: p.published_by ?? '–', reason: p.reason ?? '' })}` : '')
        : t('p.readonly.discarded');
      $('.pl-discard').hidden = p.status !== 'draft';
    }

    function renderTools() {
      const ro = readonly();
      const levels = $('.pl-levels');
      const fs = features();
      levels.replaceChildren(...EDIT_LEVELS.map((l) => {
        const n = fs.filter((f) => f.properties.level === l).length;
        return h('button', { type: 'button', role: 'radio', class: 'pl-btn', dataset: { level: l }, 'aria-checked': String(l === state.level), disabled: !n },
          `${t(`level.${l}`)} `, h('small', { text: fmtNumber(n) }));
      }));
      for (const b of root.querySelectorAll('.pl-tools [data-tool]')) {
        b.setAttribute('aria-pressed', String(b.dataset.tool === state.tool));
        b.disabled = ro || state.busy;
      }
      $('.pl-tools [data-act="merge"]').disabled = ro || state.busy || state.selected.length < 2;
      $('.pl-tools [data-act="undo"]').disabled = ro || state.busy || !state.plan?.can_undo;
      $('.pl-hint').textContent = ro ? '' : state.busy ? t('p.busy') : t(`p.hint.${state.tool}`);
      const err = $('.pl-op-error');
      const e = state.opError;
      err.hidden = !e;
      err.textContent = e ? tf(e.key, { op: e.op === 'discard' ? t('p.discard') : t(`p.op.${e.op}`), detail: e.detail }) : '';
      const ok = state.opOk;
      $('.pl-op-ok').textContent = e || !ok ? '' : ok.key ? t(ok.key)
        : tf('p.op.done', { summary: `#${ok.n} ${t(`p.op.${ok.kind}`)}${ok.summary ? ` · ${ok.summary}` : ''}` });
      body.dataset.planState = state.busy ? 'busy' : (state.opError ? 'error' : 'idle');
    }

    function renderSelection() {
      const desc = $('.pl-sel-desc');
      const form = $('.pl-attrs');
      const sel = state.selected.map((c) => state.byCode.get(c)).filter(Boolean);
      desc.dataset.state = '';
      if (!sel.length) {
        desc.textContent = readonly() ? t('p.sel.noneRo') : t('p.sel.none');
        form.hidden = true;
        return;
      }
      if (sel.length > 1) {
        desc.textContent = tf('p.sel.many', { n: sel.length, names: sel.map((f) => f.properties.name).join('、') });
        form.hidden = true;
        return;
      }
      const p = sel[0].properties;
      desc.textContent = [t(`level.${p.level}`), p.name, p.code, t(`p.state.${p.state}`)].join(' · ');
      desc.dataset.state = p.state;
      form.hidden = false;
      const ro = readonly();
      for (const k of ATTRS) {
        const input = form.elements[k];
        if (form.dataset.code !== p.code || document.activeElement !== input) input.value = p[k] ?? '';
        input.disabled = ro;
      }
      form.dataset.code = p.code;
      $('.pl-attrs-hh').textContent = `${t('prop.households')} ${fmtNumber(p.households)}${p.parent ? ` · ${t('p.parent')} ${nameOf(p.parent) ?? p.parent}` : ''}`;
      $('.pl-attrs-save').disabled = ro || state.busy;
    }

    function renderOps() {
      const ops = [...(state.plan?.ops ?? [])].reverse().slice(0, 50);
      const ol = $('.pl-ops');
      ol.replaceChildren(...ops.map((o) => h('li', { class: o.undone ? 'undone' : '', dataset: { n: o.n, kind: o.kind } },
        h('span', { class: 'n', text: `#${o.n}` }),
        h('span', { class: 'k', text: t(`p.op.${o.kind}`) }),
        h('span', { class: 's', text: o.summary ?? '' }),
        h('span', { class: 'w', text: [o.author, fmtTime(o.time)].filter(Boolean).join(' · ') }))));
      if (!ops.length) ol.append(h('li', { class: 'pl-muted', text: t('p.ops.none') }));
    }

    function renderPanel() {
      const hasPlan = Boolean(state.plan);
      if (!hasPlan && state.tab !== 'history') state.tab = 'history';
      for (const b of root.querySelectorAll('.pl-tabs [data-tab]')) {
        b.setAttribute('aria-selected', String(b.dataset.tab === state.tab));
        b.disabled = !hasPlan && b.dataset.tab !== 'history';
      }
      for (const s of root.querySelectorAll('.pl-tab')) s.hidden = s.dataset.tab !== state.tab;
      renderValidation();
      renderPublish();
      renderHistory();
    }
    root.querySelector('.pl-tabs').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-tab]');
      if (!b || b.disabled) return;
      state.tab = b.dataset.tab;
      renderPanel();
      if (state.tab === 'history' && state.selected.length === 1 && state.history.code !== state.selected[0]) {
        selectionChanged();
      }
    });

    function renderValidation() {
      const v = state.validation;
      const btn = $('.pl-validate');
      btn.disabled = !state.plan || state.validating;
      btn.textContent = state.validating ? t('p.validating') : t('p.validate');
      const st = $('.pl-validate-status');
      const err = $('.pl-validate-error');
      err.hidden = !state.validateError;
      err.textContent = state.validateError ? tf('p.error', { detail: state.validateError }) : '';
      const list = $('.pl-validate-list');
      const box = $('.pl-impact-box');
      if (!v) {
        st.textContent = state.plan ? t('p.validate.never') : '';
        st.dataset.result = '';
        list.replaceChildren();
        box.replaceChildren();
        return;
      }
      const a = v.answer;
      const vs = a.violations ?? [];
      const stale = v.key !== planKey();
      st.dataset.result = a.ok ? 'ok' : 'bad';
      st.textContent = (a.ok ? t('p.validate.ok') : `${t('p.validate.found')} ${violationSummary(vs)}`)
        + (a.elapsed_ms != null ? ` (${fmtNumber(a.elapsed_ms)} ms)` : '')
        + (stale ? ` · ${t('p.validate.stale')}` : '');
      st.dataset.stale = String(stale);
      const active = state.violFrom === 'validate' ? state.activeViol : -1;
      list.replaceChildren(...violationRows(vs, { nameOf, onPick: pickValidation, active }));
      box.replaceChildren(impactView(a.impact, { nameOf, onGrid: (c) => { if (state.byCode.has(c)) { fitTo(bboxOf(state.byCode.get(c).geometry)); } } }));
    }

    function pickValidation(i) {
      if (state.violFrom !== 'validate') setViolations(state.validation?.answer.violations ?? [], 'validate');
      pickViolation(i);
    }

    function renderPublish() {
      const p = state.publish;
      const ro = readonly();
      $('.pl-pub-go').disabled = ro || p.busy;
      $('.pl-pub-go').textContent = p.busy ? t('p.publishing') : t('p.publish');
      $('.pl-pub-author').disabled = ro;
      $('.pl-pub-reason').disabled = ro;
      const out = $('.pl-pub-out');
      const kids = [];
      if (p.formError) kids.push(h('p', { class: 'pl-error', role: 'alert', text: required(p.formError) }));
      if (p.result) kids.push(resultView(p.result, 'p.published'));
      if (p.error) {
        kids.push(p.error.status === 409
          ? refusalView(p.error, { nameOf, onPick: pickViolation, active: state.violFrom === 'publish' ? state.activeViol : -1 })
          : h('p', { class: 'pl-error', role: 'alert', text: tf('p.error', { detail: describe(p.error) }) }));
      }
      if (!p.result && state.plan?.status === 'published') kids.push(h('p', { class: 'pl-note', text: tf('p.readonly.published', { time: fmtTime(state.plan.published_at), seq: state.plan.published_seq ?? '–' }) }));
      out.replaceChildren(...kids);
    }

    function renderHistory() {
      const hs = state.history;
      const head = $('.pl-hist-head');
      const out = $('.pl-hist-out');
      const ol = $('.pl-hist');
      if (!hs.code) {
        head.textContent = state.plan ? t('p.hist.pick') : t('p.hist.pickList');
        out.replaceChildren();
        ol.replaceChildren();
        return;
      }
      head.replaceChildren(h('b', { text: hs.name ?? hs.code }), h('span', { class: 'cd', text: ` ${hs.code}` }));
      const kids = [];
      if (hs.loading) kids.push(h('p', { class: 'pl-muted', text: t('p.loading') }));
      if (hs.error) kids.push(h('p', { class: 'pl-muted', text: hs.error }));
      if (hs.formError) kids.push(h('p', { class: 'pl-error', role: 'alert', text: required(hs.formError) }));
      if (hs.result) kids.push(resultView(hs.result, 'p.reverted'));
      if (hs.refusal) {
        kids.push(hs.refusal.status === 409
          ? refusalView(hs.refusal, { nameOf, onPick: pickViolation, active: state.violFrom === 'revert' ? state.activeViol : -1 })
          : h('p', { class: 'pl-error', role: 'alert', text: tf('p.error', { detail: describe(hs.refusal) }) }));
      }
      out.replaceChildren(...kids);
      if (!hs.data) { ol.replaceChildren(); return; }
      if (!hs.data.versions?.length) { ol.replaceChildren(h('li', { class: 'pl-muted', text: t('p.hist.none') })); return; }
      ol.replaceChildren(...historyRows(hs.data, {
        pinned: hs.pinned,
        revert: hs.revert,
        preview: hs.revert ? revertPreview(hs.revert, nameOf) : null,
        readonly: false,
        onHover: (v) => showVersion(v),
        onPin: (v) => {
          hs.pinned = hs.pinned === v.version ? null : v.version;
          showVersion(null);
          for (const b of root.querySelectorAll('.pl-ver-main')) b.setAttribute('aria-pressed', String(Number(b.closest('li').dataset.version) === hs.pinned));
          if (hs.pinned != null) fitTo(bboxOf(v.geometry));
        },
        onAskRevert: (version) => { askRevert(version); },
        onRevert: revert,
        onCancel: () => { hs.revert = null; hs.formError = null; renderHistory(); },
      }));
    }

    // Ctrl+Z (⌘Z) undoes the last op, outside text fields
    const onKey = (e) => {
      if (!(e.ctrlKey || e.metaKey) || e.key.toLowerCase() !== 'z' || e.shiftKey || e.altKey) return;
      if (e.target.closest?.('input, textarea, select') || readonly() || !state.plan?.can_undo) return;
      e.preventDefault();
      undo();
    };
    document.addEventListener('keydown', onKey);
    cleanups.push(() => document.removeEventListener('keydown', onKey));

    cleanups.push(onLangChange(() => {
      renderAll();
      for (const el of root.querySelectorAll('[data-i18n-b]')) tb(el, el.dataset.i18nB);
      $('.pl-scope-search').placeholder = t('p.scope.search');
    }));
    $('.pl-scope-search').placeholder = t('p.scope.search');
    cleanups.push(() => {
      locating?.abort();
      historyCtl?.abort();
      delete body.dataset.planState;
      delete body.dataset.planAnswers;
      delete body.dataset.planMode;
    });

    // ── start ──
    renderAll();
    const ready = (async () => {
      await pmap.ready;
      const first = loadPlans();
      const id = params?.get('id');
      if (id) await openPlan(id);
      else {
        try {
          const { grids } = await api.grids('district');
          const d = grids?.[0] && await api.grid(grids[0].code);
          if (d?.bbox) map.fitBounds([[d.bbox[0], d.bbox[1]], [d.bbox[2], d.bbox[3]]], { padding: 30, duration: 0 });
        } catch (err) { console.warn('plan page:', err.message); }
      }
      await first;
      await new Promise((r) => (map.loaded() ? r() : map.once('idle', r)));
      body.dataset.mapIdle = '1';
      return map;
    })();
    ready.catch((err) => console.warn('plan page:', err.message));

    const hooks = {
      map, ready, state, editor, pmap,
      plan: () => state.plan,
      open: openPlan,
      select,
      setLevel,
      op: runOp,
      validate,
      handles: () => editor.handles(),
      busy: () => state.busy,
    };
    window.onemap = { map, ready, plan: hooks };
    cleanups.push(() => {
      delete window.onemap;
      delete body.dataset.mapIdle;
    });

    return () => { for (const fn of cleanups.reverse()) fn(); };
  },
};
