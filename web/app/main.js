// Entry point: the header (title, clock, language switch) lives for the whole page; views are
// mounted by the hash router into <main id="view">.
import { applyI18n, fmtClock, getLang, onLangChange, setLang } from './i18n.js';
import { route, start } from './router.js';
import { planView } from './views/plan/index.js';
import { queryView } from './views/query/index.js';
import { screenView } from './views/screen/index.js';

function header() {
  const date = document.querySelector('#top .clock-date');
  const time = document.querySelector('#top .clock-time');
  const tick = () => {
    const { date: d, time: t } = fmtClock(new Date());
    if (date.textContent !== d) date.textContent = d;
    time.textContent = t;
  };
  tick();
  // One interval for the life of the page, re-aligned to the second so the clock never lags.
  setTimeout(() => { tick(); setInterval(tick, 1000); }, 1000 - (Date.now() % 1000));
  onLangChange(tick);
  document.querySelector('#top .lang-switch')
    .addEventListener('click', () => setLang(getLang() === 'zh' ? 'en' : 'zh'));
}

document.documentElement.lang = getLang() === 'zh' ? 'zh-CN' : 'en';
applyI18n();
header();
route('screen', screenView);
route('query', queryView);
route('plan', planView);
start(document.getElementById('view'), 'screen');
