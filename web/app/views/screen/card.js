// The grid card: one DOM panel, built once and refilled for each grid (the screen runs for days,
// so nothing accumulates). Clicks on breadcrumb and drill-down items are delegated to the panel.
import { applyI18n, fmtNumber, onLangChange, t } from '../../i18n.js';
import { RISK_LEVELS, RISK_NAMES } from '../../palette.js';

const TEMPLATE = `
  <nav class="crumbs" aria-label="path"></nav>
  <div class="card-head">
    <span class="badge level"></span>
    <h2 class="name"></h2>
  </div>
  <div class="code-row"><span class="lbl" data-i18n="card.code"></span><span class="code"></span></div>
  <dl class="people">
    <div><dt data-i18n-b="card.staff"></dt><dd data-f="staff"></dd></div>
    <div><dt data-i18n-b="card.phone"></dt><dd data-f="phone"></dd></div>
  </dl>
  <div class="kpis">
    <div class="kpi"><span class="v" data-f="households"></span><span class="k" data-i18n-b="card.households"></span></div>
    <div class="kpi"><span class="v" data-f="population"></span><span class="k" data-i18n-b="card.population"></span></div>
    <div class="kpi"><span class="v" data-f="cameras"></span><span class="k" data-i18n-b="card.cameras"></span></div>
    <div class="kpi"><span class="v" data-f="buildings"></span><span class="k" data-i18n-b="card.buildings"></span></div>
    <div class="kpi"><span class="v" data-f="events_open"></span><span class="k" data-i18n-b="card.eventsOpen"></span></div>
    <div class="kpi warn"><span class="v" data-f="events_overdue"></span><span class="k" data-i18n-b="card.eventsOverdue"></span></div>
  </div>
  <div class="risks">
    <h3 data-i18n-b="card.risks"></h3>
    <div class="risk-row">
      ${[1, 2, 3, 4].map((l) => `<div class="risk" style="--c:${RISK_LEVELS[l]}"><span class="v" data-f="risk_${RISK_NAMES[l]}"></span><span class="k" data-i18n="risk.${RISK_NAMES[l]}"></span></div>`).join('')}
    </div>
  </div>
  <section class="drill">
    <h3 data-i18n-b="card.drill"></h3>
    <ul class="children"></ul>
    <p class="empty" data-i18n="card.noChildren"></p>
  </section>
  <p class="card-msg" role="status"></p>`;

export function createCard(el, { onOpen }) {
  el.classList.add('card', 'panel');
  el.innerHTML = TEMPLATE;
  el.hidden = true;
  const $ = (s) => el.querySelector(s);
  const field = (k) => el.querySelector(`[data-f="${k}"]`);
  let data = null;

  function render() {
    applyI18n(el);
    if (!data) return;
    const c = data.counts || {};
    el.dataset.code = data.code;
    el.dataset.level = data.level;
    $('.name').textContent = data.name;
    $('.code').textContent = data.code;
    $('.badge.level').textContent = data.kind === 'dedicated' ? t('kind.dedicated') : t(`level.${data.level}`);
    $('.badge.level').dataset.level = data.level;
    field('staff').textContent = data.staff || '–';
    field('phone').textContent = data.phone || '–';
    field('households').textContent = fmtNumber(data.households ?? c.households);
    field('population').textContent = fmtNumber(data.population);
    field('cameras').textContent = `${fmtNumber(c.cameras_online)}/${fmtNumber(c.cameras)}`;
    field('buildings').textContent = fmtNumber(c.buildings);
    field('events_open').textContent = fmtNumber(c.events_open);
    field('events_overdue').textContent = fmtNumber(c.events_overdue);
    for (const n of Object.values(RISK_NAMES)) field(`risk_${n}`).textContent = fmtNumber(c.risks_by_level?.[n] ?? 0);

    const crumbs = (data.path || []).map((p, i, all) => {
      const b = document.createElement(i === all.length - 1 ? 'span' : 'button');
      b.className = 'crumb';
      b.textContent = p.name;
      b.title = `${t(`level.${p.level}`)} · ${p.code}`;
      if (b.tagName === 'BUTTON') { b.type = 'button'; b.dataset.code = p.code; }
      return b;
    });
    $('.crumbs').replaceChildren(...crumbs);

    const kids = (data.children || []).map((ch) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'child';
      b.dataset.code = ch.code;
      const nm = document.createElement('span');
      nm.className = 'child-name';
      nm.textContent = ch.name;
      const meta = document.createElement('span');
      meta.className = 'child-meta';
      meta.textContent = `${ch.kind === 'dedicated' ? t('kind.dedicated') : t(`level.${ch.level}`)} · ${fmtNumber(ch.households)} ${t('unit.hh')}`;
      b.append(nm, meta);
      li.append(b);
      return li;
    });
    $('.children').replaceChildren(...kids);
    $('.drill .empty').hidden = kids.length > 0;
  }

  el.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-code]');
    if (b && el.contains(b)) onOpen(b.dataset.code, { fit: true });
  });
  const offLang = onLangChange(render);

  return {
    show(grid) {
      data = grid;
      el.hidden = false;
      el.classList.remove('loading', 'error');
      $('.card-msg').textContent = '';
      render();
    },
    loading() { el.classList.add('loading'); },
    error(err) {
      el.classList.remove('loading');
      el.classList.add('error');
      el.hidden = false;
      $('.card-msg').textContent = `${t('card.error')}: ${err.message}`;
    },
    /** Live numbers for the grid shown (from the stream), without a request. */
    patch(code, { events_open: open, events_overdue: overdue }) {
      if (!data || data.code !== code) return;
      data.counts = { ...data.counts, events_open: open, events_overdue: overdue };
      field('events_open').textContent = fmtNumber(open);
      field('events_overdue').textContent = fmtNumber(overdue);
    },
    get code() { return data?.code ?? null; },
    destroy() { offLang(); data = null; },
  };
}

