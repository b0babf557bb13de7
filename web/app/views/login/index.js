// The login page (#/login?next=…): user name and password, and a 6-digit authenticator code once
// the server says the account needs one (`otp_required`). A refusal is said in one line, by the
// server's `code`: a wrong name and a wrong password read the same (no hint which part), a locked
// account says until when (UTC+8), too many attempts from this address say how long to wait
// (counting down; the button waits too). Success goes to `next` (one of the app's own pages the
// user may use), else to the user's landing page.
import { ApiError, api } from '../../api.js';
import { applyI18n, onLangChange, t, tb, tf } from '../../i18n.js';
import { PAGES, can, landing, safeNext, signedIn } from '../../session.js';

const LAYOUT = `
  <div class="login">
    <form class="login-box panel" novalidate>
      <h2 class="login-title"></h2>
      <label class="login-field"><span data-i18n="login.name"></span>
        <input type="text" class="login-name" name="username" autocomplete="username" maxlength="256" spellcheck="false" autocapitalize="off"></label>
      <label class="login-field"><span data-i18n="login.password"></span>
        <input type="password" class="login-password" name="password" autocomplete="current-password" maxlength="1024"></label>
      <label class="login-field login-otp-field" hidden><span data-i18n="login.otp"></span>
        <input type="text" class="login-otp" name="otp" inputmode="numeric" autocomplete="one-time-code" maxlength="6" pattern="[0-9]{6}">
        <small class="login-help" data-i18n="login.otp.help"></small></label>
      <p class="login-error" role="alert" aria-live="assertive"></p>
      <button type="submit" class="login-go"></button>
    </form>
  </div>`;

const HHMM = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hour12: false });

/** An ISO time as HH:MM in UTC+8, or null. */
export function localHM(iso) {
  const d = new Date(iso ?? '');
  return Number.isNaN(d.getTime()) ? null : HHMM.format(d);
}

/** Where to go after signing in: `next` when it is a page the user may use, else the landing page. */
function destination(next) {
  const hash = safeNext(next);
  const name = hash && /^#\/([\w-]+)/.exec(hash)[1];
  const need = PAGES.find(([page]) => page === name)?.[1];
  return hash && (!need || can(need)) ? hash : `#/${landing()}`;
}

export const loginView = {
  async mount(root) {
    root.innerHTML = LAYOUT;
    applyI18n(root);
    const $ = (s) => root.querySelector(s);
    const form = $('.login-box');
    const name = $('.login-name');
    const password = $('.login-password');
    const otp = $('.login-otp');
    const go = $('.login-go');
    const errorLine = $('.login-error');
    let error = null; // { key, vars, code } shown in the error line
    let busy = false;
    let waitUntil = 0; // throttled: no attempt before this time (ms)
    let countdown = 0;
    let inflight = null;

    const render = () => {
      tb($('.login-title'), 'login.title');
      go.textContent = t(busy ? 'login.busy' : 'login.submit');
      go.disabled = busy || Date.now() < waitUntil;
      form.dataset.state = busy ? 'busy' : error ? 'error' : 'idle';
      errorLine.textContent = error ? tf(error.key, error.vars ?? {}) : '';
      if (error?.code) errorLine.dataset.code = error.code;
      else delete errorLine.dataset.code;
    };
    const showError = (key, vars, code) => { error = { key, vars, code }; render(); };
    const showOtp = (on) => {
      $('.login-otp-field').hidden = !on;
      if (!on) otp.value = '';
    };

    function throttle(seconds) {
      waitUntil = Date.now() + seconds * 1000;
      clearInterval(countdown);
      const tick = () => {
        const left = Math.ceil((waitUntil - Date.now()) / 1000);
        if (left <= 0) {
          clearInterval(countdown);
          countdown = 0;
          if (error?.code === 'throttled') error = null;
          render();
          return;
        }
        showError('login.throttled', { n: left }, 'throttled');
      };
      tick();
      countdown = setInterval(tick, 1000);
    }

    function refused(err) {
      const p = err.problem ?? {};
      switch (p.code) {
        case 'wrong':
          showOtp(false);
          password.value = '';
          password.focus();
          return showError('login.wrong', null, 'wrong');
        case 'locked': {
          const time = localHM(p.until);
          return time ? showError('login.locked', { time }, 'locked') : showError('login.lockedNoTime', null, 'locked');
        }
        case 'throttled':
          return throttle(Math.max(1, err.retryAfter ?? 60));
        case 'otp_required': {
          const sent = !$('.login-otp-field').hidden && otp.value !== '';
          showOtp(true);
          otp.value = '';
          otp.focus();
          return showError(sent ? 'login.otpWrong' : 'login.otpRequired', null, 'otp_required');
        }
        case 'otp_not_enrolled':
          return showError('login.otpNotEnrolled', null, 'otp_not_enrolled');
        default:
          if (err.status === 429) return throttle(Math.max(1, err.retryAfter ?? 60));
          return showError('login.failed', { detail: err.message }, 'other');
      }
    }

    async function submit(e) {
      e.preventDefault();
      if (busy || Date.now() < waitUntil) return;
      const body = { name: name.value.trim(), password: password.value };
      if (!body.name || !body.password) { showError('login.missing', null, 'missing'); (body.name ? password : name).focus(); return; }
      if (!$('.login-otp-field').hidden) {
        const code = otp.value.replace(/\s+/g, '');
        if (!/^\d{6}$/.test(code)) { showError('login.otpFormat', null, 'otp_format'); otp.focus(); return; }
        body.otp = code;
      }
      busy = true;
      error = null;
      render();
      inflight = new AbortController();
      let who;
      try {
        who = await api.login(body, { signal: inflight.signal });
      } catch (err) {
        if (err.name === 'AbortError') return;
        busy = false;
        if (err instanceof ApiError) refused(err);
        else showError('login.offline', null, 'offline'); // no answer at all
        return;
      } finally {
        inflight = null;
      }
      // signed in: the page stays busy until the router has left it
      password.value = '';
      signedIn(who);
      location.replace(destination(new URLSearchParams(location.hash.split('?')[1] ?? '').get('next')));
    }

    form.addEventListener('submit', submit);
    const offLang = onLangChange(() => { applyI18n(root); render(); });
    render();
    name.focus();
    window.onemap = { ready: Promise.resolve(), login: { get error() { return error; } } };

    return () => {
      inflight?.abort();
      clearInterval(countdown);
      offLang();
      delete window.onemap;
    };
  },
};
