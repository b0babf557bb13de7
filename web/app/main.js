// Entry point: the header (title, view switch, clock, who is signed in, log out, language switch)
// lives for the whole page; views are mounted by the hash router into <main id="view">.
// First the server is asked who is signed in (GET /api/me): without a session every page but the
// login page goes to #/login?next=<where the user was>.
import { applyI18n, fmtClock, getLang, onLangChange, setLang, t } from './i18n.js';
import { route, start } from './router.js';
import * as session from './session.js';
import { deniedView, homeView } from './views/access.js';
import { loginView } from './views/login/index.js';
import { planView } from './views/plan/index.js';
import { queryView } from './views/query/index.js';
import { screenView } from './views/screen/index.js';

const START_RETRY_MS = 5000;

function header() {
  const date = document.querySelector('#top .clock-date');
  const time = document.querySelector('#top .clock-time');
  const tick = () => {
    const { date: d, time: tm } = fmtClock(new Date());
    if (date.textContent !== d) date.textContent = d;
    time.textContent = tm;
  };
  tick();
  // One interval for the life of the page, re-aligned to the second so the clock never lags.
  setTimeout(() => { tick(); setInterval(tick, 1000); }, 1000 - (Date.now() % 1000));
  onLangChange(tick);
  document.querySelector('#top .lang-switch')
    .addEventListener('click', () => setLang(getLang() === 'zh' ? 'en' : 'zh'));

  const logout = document.querySelector('#top .logout');
  logout.addEventListener('click', async () => {
    logout.disabled = true;
    try {
      await session.signOut();
    } catch (err) {
      logout.title = `${t('auth.logout.failed')}: ${err.message}`;
    } finally {
      logout.disabled = false;
    }
  });
  showUser(session.current());
  session.onSessionChange(showUser);
  onLangChange(() => showUser(session.current()));
}

/** The signed-in user in the header, the view links the role may use, log out (not for a kiosk). */
function showUser(me) {
  const top = document.getElementById('top');
  top.querySelector('.user').hidden = !me;
  top.querySelector('.user-name').textContent = session.displayName(me);
  top.querySelector('.user-role').textContent = session.roleLabel(me);
  top.querySelector('.logout').hidden = !me || Boolean(me.kiosk);
  if (me?.kiosk) document.body.dataset.kiosk = '1';
  else delete document.body.dataset.kiosk;
  let links = 0;
  for (const a of top.querySelectorAll('.views a[data-need]')) {
    a.hidden = !session.can(a.dataset.need);
    if (!a.hidden) links += 1;
  }
  // one page only (a viewer's screen) or none: no switch to show
  top.querySelector('.views').hidden = links < 2;
}

/** GET /api/me, retried while the server cannot be reached (a wall screen may boot first). */
async function whoIsThere(outlet) {
  for (;;) {
    try {
      return await session.load();
    } catch (err) {
      console.warn('who is signed in:', err.message);
      const p = document.createElement('p');
      p.className = 'start-offline';
      p.textContent = t('start.offline');
      outlet.replaceChildren(p);
      await new Promise((r) => setTimeout(r, START_RETRY_MS));
    }
  }
}

document.documentElement.lang = getLang() === 'zh' ? 'zh-CN' : 'en';
applyI18n();
header();
route('login', loginView, { open: true });
route('home', homeView);
route('screen', screenView, { need: 'view' });
route('query', queryView, { need: 'query' });
route('plan', planView, { need: 'plan' });
const outlet = document.getElementById('view');
await whoIsThere(outlet);
outlet.replaceChildren();
start(outlet, {
  signedIn: () => Boolean(session.current()),
  allows: session.can,
  landing: () => (session.current() ? session.landing() : 'login'),
  loginHash: session.loginHash,
  denied: deniedView,
});
