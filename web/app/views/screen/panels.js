// The live DOM panels of the big screen: the counters strip (today's new and closed orders, open,
// overdue, and the stream's state, including a server whose database is away) and the overdue list. Both are built once: the list has a
// fixed number of rows that are refilled and hidden, never added, so the DOM does not grow
// however long the screen runs. A long list steps through its rows by itself.
import { fmtNumber, onLangChange, t, tf } from '../../i18n.js';
import { OVERDUE_MAX, overdueList } from './live-model.js';

const STEP_MS = 4000;
const KPIS = ['today_new', 'today_closed', 'events_open', 'events_overdue'];

export function createKpis(el) {
  const value = Object.fromEntries(KPIS.map((k) => [k, el.querySelector(`[data-k="${k}"] .v`)]));
  const stateEl = el.querySelector('.live-state');
  const stateText = stateEl.querySelector('.live-state-text');
  const timeEl = stateEl.querySelector('time');
  let state = 'connecting';
  let storeDown = false;
  let updatedAt = null;
  const shown = {};
  const timeFmt = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

  function renderState() {
    // An open stream from a server whose database is away: the figures are frozen.
    const shownState = state === 'open' && storeDown ? 'stale' : state;
    stateEl.dataset.state = shownState;
    stateText.textContent = t(`live.state.${shownState}`);
    timeEl.textContent = updatedAt ? `${t('live.asOf')} ${timeFmt.format(new Date(updatedAt))}` : '';
  }
  const offLang = onLangChange(() => {
    for (const k of KPIS) if (k in shown) value[k].textContent = fmtNumber(shown[k]);
    renderState();
  });
  renderState();

  return {
    render(m) {
      for (const k of KPIS) {
        const v = m.total[k];
        if (shown[k] === v) continue;
        const before = shown[k];
        shown[k] = v;
        value[k].textContent = fmtNumber(v);
        value[k].closest('.lk').dataset.value = v ?? '';
        // a short glow when a number moves (the animation object is dropped when it ends)
        if (before != null && v != null) value[k].animate([{ textShadow: '0 0 1.2rem #ffffff', transform: 'scale(1.12)' }, { textShadow: 'none', transform: 'none' }], { duration: 700, easing: 'ease-out' });
      }
      if (m.updatedAt !== updatedAt) { updatedAt = m.updatedAt; renderState(); }
    },
    setState(s) { if (s !== state) { state = s; renderState(); } },
    /** 'ok' or 'unreachable' (the server's store); anything else counts as ok. */
    setStore(s) { const down = s === 'unreachable'; if (down !== storeDown) { storeDown = down; renderState(); } },
    destroy() { offLang(); },
  };
}

function lateText(deadline, now) {
  const ms = now - Date.parse(deadline);
  if (!Number.isFinite(ms)) return '';
  const min = Math.max(0, Math.floor(ms / 60_000));
  const d = Math.floor(min / 1440);
  const h = Math.floor((min % 1440) / 60);
  const parts = d ? `${d}${t('unit.day')}${h ? ` ${h}${t('unit.hour')}` : ''}` : h ? `${h}${t('unit.hour')}` : `${min % 60}${t('unit.minute')}`;
  return tf('live.lateBy', { d: parts });
}

export function createOverdueList(el, { onGrid, categoryLabel, gridName }) {
  const total = el.querySelector('.od-total');
  const viewport = el.querySelector('.od-viewport');
  const list = el.querySelector('.od-list');
  const empty = el.querySelector('.od-empty');
  const rows = [];
  for (let i = 0; i < OVERDUE_MAX; i++) {
    const li = document.createElement('li');
    li.hidden = true;
    li.innerHTML = '<button type="button" class="od"><span class="od-title"></span><span class="od-late"></span><span class="od-meta"></span></button>';
    list.append(li);
    rows.push({ li, button: li.firstChild, title: li.querySelector('.od-title'), late: li.querySelector('.od-late'), meta: li.querySelector('.od-meta') });
  }
  let model = null;
  let offset = 0;
  let held = false;

  function render(m = model) {
    model = m;
    if (!m) return;
    const items = overdueList(m);
    const now = Date.now();
    rows.forEach((r, i) => {
      const o = items[i];
      r.li.hidden = !o;
      if (!o) return;
      r.li.dataset.id = o.id;
      r.button.dataset.grid = o.grid ?? '';
      r.title.textContent = o.title || o.id;
      r.late.textContent = lateText(o.deadline, now);
      r.meta.textContent = [gridName(o.grid), categoryLabel(o.category)].filter(Boolean).join(' · ');
    });
    empty.hidden = items.length > 0;
    const n = m.total.events_overdue;
    total.textContent = n == null ? '' : tf('live.overdueTotal', { n: fmtNumber(n) });
    if (offset > overflow()) scrollTo(overflow());
  }

  // A list longer than its box moves up one row every STEP_MS, then back to the top: a short
  // transition now and then, not an animation running for days. A pointer over it holds it.
  const overflow = () => Math.max(0, list.offsetHeight - viewport.clientHeight);
  function scrollTo(px) {
    offset = px > 4 ? px : 0;
    list.style.transform = offset ? `translateY(${-offset}px)` : '';
  }
  function step() {
    if (held || document.hidden) return;
    const over = overflow();
    const row = rows[1].li.offsetTop - rows[0].li.offsetTop || rows[0].li.offsetHeight;
    const next = over > 4 && offset < over ? Math.min(over, offset + row) : 0;
    if (next !== offset) scrollTo(next);
  }
  const ticker = setInterval(step, STEP_MS);
  const hold = () => { held = true; };
  const release = () => { held = false; };
  viewport.addEventListener('pointerenter', hold);
  viewport.addEventListener('pointerleave', release);

  el.addEventListener('click', (e) => {
    const b = e.target.closest('button.od');
    if (b?.dataset.grid) onGrid(b.dataset.grid);
  });
  const offLang = onLangChange(() => render());

  return {
    render,
    destroy() {
      offLang();
      clearInterval(ticker);
      viewport.removeEventListener('pointerenter', hold);
      viewport.removeEventListener('pointerleave', release);
      model = null;
    },
  };
}
