// Signing in and access control in the browser: the login page (a wrong name and a wrong password
// read the same; a locked account says until when, in UTC+8; too many attempts and the
// authenticator code), where each role lands and what it may open, logging out, a page loaded or
// a request answered without a session going to the login page (fetch and the live stream), the
// kiosk link, and the Content-Security-Policy the pages run under. Screenshots of the login page
// at 1920×1080 and 4K go to /tmp/onemap-shots/ (not checked in).
// Run from web/: `node --test tests/login.test.mjs` (see harness.mjs for the server and browser).
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { ADMIN, PASSWORD, openPage, SLOW, useServer } from './harness.mjs';

const env = useServer();
const SHOTS = '/tmp/onemap-shots';
const WRONG_ZH = '用户名或密码错误';
const WRONG_EN = 'Wrong user name or password';
const HHMM = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hour12: false });

/** What the page shows in the error line: text and the code it was for. */
const errorLine = (page) => page.locator('.login-error').evaluate((el) => ({ text: el.textContent, code: el.dataset.code ?? null }));

/** A fresh context on the login page (no session), recording as openPage does. */
const openLogin = (hash = '#/login', opts = {}) => openPage(env, hash, { login: false, ...opts });

/** The page's failures other than the 401 of the first /api/me (no session yet). */
const unexpected = (rec) => ({
  pageErrors: rec.pageErrors,
  consoleErrors: rec.consoleErrors.filter((m) => !m.includes('status of 401')),
  failed: rec.failedResponses.filter((r) => !/^401 .*\/api\/(me|login)$/.test(r)),
  foreign: rec.foreign,
});
const CLEAN = { pageErrors: [], consoleErrors: [], failed: [], foreign: [] };

/** Submits the login form and waits for its answer. */
async function submit(page, name, password) {
  await page.locator('.login-name').fill(name);
  await page.locator('.login-password').fill(password);
  const answer = page.waitForResponse((r) => r.url() === `${env.origin}/api/login`);
  await page.locator('.login-go').click();
  return answer;
}

/** Waits until the router has mounted `view` (body[data-view]) and its window.onemap.ready. */
async function waitView(page, view) {
  await page.waitForFunction((v) => document.body.dataset.view === v && window.onemap?.ready, view);
  await page.evaluate(() => window.onemap.ready);
}

/** The header as the user sees it: who, the view links shown, whether log out shows. */
const headerOf = (page) => page.evaluate(() => {
  const top = document.getElementById('top');
  const shown = (el) => Boolean(el && el.getClientRects().length);
  return {
    user: shown(top.querySelector('.user')) ? top.querySelector('.user').innerText.replace(/\s+/g, ' ').trim() : null,
    links: [...top.querySelectorAll('.views a')].filter(shown).map((a) => a.dataset.view),
    logout: shown(top.querySelector('.logout')),
  };
});

/** The TOTP code (RFC 6238: SHA-1, 6 digits, 30 s) of a base32 secret at `unix` seconds. */
function totp(secret, unix) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => Number.parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const at = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** A code that stays valid for a few seconds more (waits out the end of a 30 s step). */
async function freshTotp(secret) {
  const left = 30 - ((Date.now() / 1000) % 30);
  if (left < 4) await new Promise((r) => setTimeout(r, left * 1000 + 200));
  return totp(secret, Date.now() / 1000);
}

let street = null;

describe('login and access', { timeout: 10 * SLOW }, () => {
  before(async () => {
    // the accounts the tests use; the department user is scoped to one street
    street = (await env.api('/api/grids?level=street')).grids[0];
    assert.ok(street?.code, 'no street in the demo');
    await env.addUser('viewer1', 'viewer');
    await env.addUser('dept1', 'department', { scope: [street.code] });
    await env.addUser('audit1', 'auditor');
    await env.addUser('locky', 'viewer');
  });

  test('a wrong password and an unknown user get the same message, with no hint which part; the page stays on #/login', async () => {
    const { page, ctx, rec } = await openLogin();
    try {
      assert.equal(await page.locator('.login-box h2').evaluate((el) => el.firstChild.textContent), '用户登录');
      const wrongPw = await submit(page, 'viewer1', 'Not-The-Pass-1');
      assert.equal(wrongPw.status(), 401);
      await page.waitForFunction(() => document.querySelector('.login-box').dataset.state === 'error');
      const first = await errorLine(page);
      assert.deepEqual(first, { text: WRONG_ZH, code: 'wrong' });
      assert.ok(new URL(page.url()).hash.startsWith('#/login'));
      assert.equal(await page.locator('.login-password').inputValue(), '', 'the wrong password stays in the field');

      const unknown = await submit(page, 'nobody-here', 'Not-The-Pass-1');
      assert.equal(unknown.status(), 401);
      await page.waitForFunction(() => document.querySelector('.login-box').dataset.state === 'error');
      assert.deepEqual(await errorLine(page), first, 'an unknown user reads differently from a wrong password');
      // and the server's answers say no more than the page
      assert.deepEqual(await unknown.json(), await wrongPw.json());
      assert.ok(new URL(page.url()).hash.startsWith('#/login'));
      assert.equal(await page.locator('.login-otp-field').isVisible(), false);

      // in English
      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'en');
      assert.deepEqual(await errorLine(page), { text: WRONG_EN, code: 'wrong' });
      assert.equal(await page.locator('.login-go').innerText(), 'Sign in');
      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
      // signed out: no view links, no user, no log out
      assert.deepEqual(await headerOf(page), { user: null, links: [], logout: false });
      assert.deepEqual(unexpected(rec), CLEAN);
    } finally { await ctx.close(); }
  });

  test('a locked account says until when (HH:MM, UTC+8), even with the right password', async () => {
    const { page, ctx, rec } = await openLogin();
    try {
      // five wrong passwords (the server's default lock-out), then the right one in the form;
      // failed logins from one address are throttled past 10 a minute: this file makes at most 8
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${env.origin}/api/login`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'locky', password: `Wrong-Pass-${i}x` }),
        });
        const body = await r.json();
        if (body.code === 'locked') break;
        assert.equal(r.status, 401, JSON.stringify(body));
        assert.equal(body.code, 'wrong', JSON.stringify(body));
      }
      const answer = await submit(page, 'locky', PASSWORD);
      const body = await answer.json();
      assert.equal(answer.status(), 401, JSON.stringify(body));
      assert.equal(body.code, 'locked', `after repeated failures: ${JSON.stringify(body)}`);
      assert.ok(!Number.isNaN(Date.parse(body.until)), `until: ${body.until}`);
      await page.waitForFunction(() => document.querySelector('.login-error').dataset.code === 'locked');
      const time = HHMM.format(new Date(body.until));
      assert.deepEqual(await errorLine(page), { text: `登录失败次数过多，账户已锁定至 ${time}`, code: 'locked' });
      assert.ok(new URL(page.url()).hash.startsWith('#/login'));
      assert.deepEqual(unexpected(rec), CLEAN);
    } finally { await ctx.close(); }
  });

  test('too many attempts from one address: the wait counts down and the button waits too', async () => {
    // The server's 429 is stood in for: a real one would keep this address from signing in for
    // a minute, the other tests' too.
    const { page, ctx } = await openLogin();
    try {
      let asked = 0;
      await page.route(`${env.origin}/api/login`, (route) => {
        asked += 1;
        return route.fulfill({
          status: 429, headers: { 'retry-after': '3' }, contentType: 'application/problem+json',
          body: JSON.stringify({ type: 'about:blank', title: 'Too Many Requests', status: 429, detail: 'too many failed logins from this address', code: 'throttled' }),
        });
      });
      await page.locator('.login-name').fill('viewer1');
      await page.locator('.login-password').fill('Some-Pass-123');
      await page.locator('.login-go').click();
      await page.waitForFunction(() => document.querySelector('.login-error').dataset.code === 'throttled');
      assert.match((await errorLine(page)).text, /^尝试次数过多，请 [123] 秒后再试$/);
      assert.ok(await page.locator('.login-go').isDisabled(), 'the button does not wait');
      await page.locator('.login-password').press('Enter');
      await page.waitForFunction(() => !document.querySelector('.login-go').disabled, null, { timeout: 6000 });
      assert.equal((await errorLine(page)).text, '', 'the wait is over but still shown');
      assert.equal(asked, 1, 'sent again while waiting');
    } finally { await ctx.close(); }
  });

  test('an account with an authenticator: the code field appears, a code of 5 digits is refused on the page, the right one signs in', async () => {
    await env.addUser('otp1', 'planner');
    const link = env.cli(['user', 'totp', 'otp1']).trim().split('\n').at(-1);
    const secret = new URL(link).searchParams.get('secret');
    assert.ok(secret, `no secret in ${link}`);
    const { page, ctx, rec } = await openLogin();
    try {
      const first = await submit(page, 'otp1', PASSWORD);
      assert.equal((await first.json()).code, 'otp_required');
      await page.waitForFunction(() => document.querySelector('.login-error').dataset.code === 'otp_required');
      assert.equal(await page.locator('.login-otp-field').isVisible(), true);
      assert.equal((await errorLine(page)).text, '请输入动态验证码');
      assert.equal(await page.locator('.login-otp-field > span').innerText(), '动态验证码');
      assert.equal(await page.evaluate(() => document.activeElement?.className), 'login-otp');
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: `${SHOTS}/login-otp-1920x1080.png` });

      let sent = 0;
      page.on('request', (r) => { if (r.url() === `${env.origin}/api/login`) sent += 1; });
      await page.locator('.login-otp').fill('12345');
      await page.locator('.login-go').click();
      await page.waitForFunction(() => document.querySelector('.login-error').dataset.code === 'otp_format');
      assert.equal((await errorLine(page)).text, '动态验证码为 6 位数字');
      assert.equal(sent, 0, 'a 5-digit code was sent');

      await page.locator('.login-otp').fill(await freshTotp(secret));
      const answer = page.waitForResponse((r) => r.url() === `${env.origin}/api/login`);
      await page.locator('.login-go').click();
      const ok = await answer;
      assert.equal(ok.status(), 200, await ok.text());
      assert.deepEqual(JSON.parse(ok.request().postData()).name, 'otp1');
      await waitView(page, 'screen');
      assert.deepEqual(await headerOf(page), { user: 'otp1 · 网格规划', links: ['screen', 'query', 'plan'], logout: true });
      assert.deepEqual(unexpected(rec), CLEAN);
    } finally { await ctx.close(); }
  });

  test('a viewer lands on #/screen; the header has no query or plan link; #/plan and #/query by address say no access and load nothing', async () => {
    const { page, ctx, rec } = await openLogin('');
    try {
      assert.equal(new URL(page.url()).hash, '#/login');
      await env.login(page, 'viewer1', PASSWORD);
      assert.equal(new URL(page.url()).hash, '#/screen');
      await waitView(page, 'screen');
      assert.deepEqual(await headerOf(page), { user: 'viewer1 · 大屏查看', links: [], logout: true });
      const plansAsked = [];
      page.on('request', (r) => { if (/\/api\/(plans|query)/.test(r.url())) plansAsked.push(r.url()); });
      for (const hash of ['#/plan', '#/query', '#/plan?id=1']) {
        await page.evaluate((h) => { location.hash = h; }, hash);
        await waitView(page, 'denied');
        assert.match(await page.locator('.access-title').innerText(), /^无权访问/);
        assert.match(await page.locator('.access-text').innerText(), /大屏查看/);
        assert.equal(await page.locator('.pl, .pl-create, .pl-tools, .q, .q-run').count(), 0, `${hash}: the page was loaded`);
        assert.equal(await page.evaluate(() => Boolean(window.onemap?.plan || window.onemap?.query)), false);
      }
      // the way back is offered
      await page.locator('.access-go').click();
      await waitView(page, 'screen');
      assert.deepEqual(plansAsked, []);
      // English
      await page.evaluate(() => { location.hash = '#/plan'; });
      await waitView(page, 'denied');
      await page.locator('#top .lang-switch').click();
      await page.waitForFunction(() => document.querySelector('.access-title')?.innerText.startsWith('No access'));
      assert.match(await page.locator('.access-text').innerText(), /Screen viewer/);
      assert.deepEqual((await headerOf(page)).user, 'viewer1 · Screen viewer');
      assert.equal(await page.locator('#top .logout').innerText(), 'Log out');
      await page.locator('#top .lang-switch').click();
      assert.deepEqual(unexpected(rec), CLEAN);
    } finally { await ctx.close(); }
  });

  test('a department user scoped to a street opens #/query and queries the street', async () => {
    const ctx = await env.browser.newContext({ viewport: { width: 1600, height: 1000 } });
    try {
      const me = await env.loginApi(ctx, 'dept1', PASSWORD);
      assert.equal(me.role, 'department');
      assert.deepEqual(me.scope, [street.code]);
      assert.ok(me.perms.includes('query') && me.perms.includes('view') && !me.perms.includes('plan'), me.perms.join());
      const { page, rec } = await openPage(env, '#/query', { context: ctx });
      assert.equal(await page.evaluate(() => document.body.dataset.view), 'query');
      assert.deepEqual(await headerOf(page), { user: 'dept1 · 部门查询', links: ['screen', 'query'], logout: true });
      await page.evaluate((c) => window.onemap.pickGrid(c), street.code);
      await page.waitForFunction(() => Number(document.body.dataset.queryRuns) >= 1 && document.body.dataset.queryState !== 'loading');
      assert.equal(await page.evaluate(() => document.body.dataset.queryState), 'done', await page.locator('.q-error').innerText().catch(() => ''));
      assert.ok(await page.locator('.q-counts button[data-layer]').count() > 0);
      // the plan page is not theirs
      await page.evaluate(() => { location.hash = '#/plan'; });
      await waitView(page, 'denied');
      assert.deepEqual(rec.pageErrors, []);
      assert.deepEqual(rec.consoleErrors, []);
      assert.deepEqual(rec.failedResponses, []);
    } finally { await ctx.close(); }
  });

  test('the screen of a street-scoped user opens at the street: its card, its counts, its title', async () => {
    const ctx = await env.browser.newContext({ viewport: { width: 1920, height: 1080 } });
    try {
      await env.loginApi(ctx, 'dept1', PASSWORD);
      const { page, rec } = await openPage(env, '#/screen', { context: ctx });
      await waitView(page, 'screen');
      await page.waitForFunction((c) => document.getElementById('grid-card')?.dataset.code === c, street.code);
      await page.waitForFunction(() => !window.onemap.map.isMoving());
      const shown = await page.evaluate(() => ({
        title: document.querySelector('.overview h2').innerText,
        households: document.querySelector('[data-o="households"]').textContent,
        scope: document.querySelector('[data-scope]')?.dataset.scope,
      }));
      assert.match(shown.title, /^辖区概况/);
      assert.equal(shown.scope, street.code);
      assert.equal(shown.households.replace(/,/g, ''), String(street.counts.households));
      // the map is at the street, not the district
      const inView = await page.evaluate(() => {
        const b = window.onemap.map.getBounds();
        return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
      });
      const card = await env.api(`/api/grids/${street.code}`);
      const [w, s, e, n] = card.bbox;
      const c = [(w + e) / 2, (s + n) / 2];
      assert.ok(inView[0] < c[0] && c[0] < inView[2] && inView[1] < c[1] && c[1] < inView[3], `${inView} does not hold the street's centre ${c}`);
      assert.deepEqual(rec.pageErrors, []);
      assert.deepEqual(rec.consoleErrors, []);
      assert.deepEqual(rec.failedResponses, []);
    } finally { await ctx.close(); }
  });

  test('an auditor has no map page: a short page says what the role does through the API', async () => {
    const { page, ctx, rec } = await openLogin('');
    try {
      await env.login(page, 'audit1', PASSWORD);
      await waitView(page, 'home');
      assert.equal(new URL(page.url()).hash, '#/home');
      assert.deepEqual(await headerOf(page), { user: 'audit1 · 审计管理员', links: [], logout: true });
      assert.deepEqual(await page.locator('.access-work').evaluateAll((els) => els.map((e) => e.dataset.perm)), ['audit']);
      assert.match(await page.locator('.access-work').innerText(), /GET \/api\/audit/);
      await page.evaluate(() => { location.hash = '#/screen'; });
      await waitView(page, 'denied');
      assert.deepEqual(unexpected(rec), CLEAN);
    } finally { await ctx.close(); }
  });

  test('log out: back to the login page, and the session is over on the server', async () => {
    const { page, ctx, rec } = await openPage(env, '#/screen');
    try {
      assert.deepEqual(await headerOf(page), { user: `${ADMIN.name} · 系统管理员`, links: ['screen', 'query', 'plan'], logout: true });
      assert.equal((await ctx.request.get(`${env.origin}/api/me`)).status(), 200);
      const out = page.waitForResponse((r) => r.url() === `${env.origin}/api/logout`);
      await page.locator('#top .logout').click();
      assert.equal((await out).status(), 204);
      await page.waitForFunction(() => location.hash === '#/login' && document.body.dataset.view === 'login');
      assert.deepEqual(await headerOf(page), { user: null, links: [], logout: false });
      assert.equal(await page.evaluate(() => window.onemap?.map), undefined, 'the screen is still mounted');
      assert.equal((await ctx.request.get(`${env.origin}/api/me`)).status(), 401);
      // a reload stays on the login page
      await page.reload();
      await waitView(page, 'login');
      assert.equal(new URL(page.url()).hash, '#/login');
      assert.deepEqual(rec.pageErrors, []);
    } finally { await ctx.close(); }
  });

  test('any page loaded without a session goes to #/login, and signing in returns to it', async () => {
    const ctx = await env.browser.newContext({ viewport: { width: 1600, height: 1000 } });
    try {
      const errors = [];
      // each a page load of its own (a new page: not a hash change in a running app)
      for (const [hash, next] of [['', null], ['#/', null], ['#/screen', '#/screen'], ['#/query', '#/query'], ['#/plan?id=7', '#/plan?id=7'], ['#/home', '#/home'], ['#/nowhere', '#/nowhere']]) {
        const p = await ctx.newPage();
        p.on('pageerror', (e) => errors.push(e.message));
        await p.goto(`${env.origin}/${hash}`);
        await waitView(p, 'login');
        const at = new URL(p.url()).hash;
        assert.equal(at, next ? `#/login?next=${encodeURIComponent(next)}` : '#/login', `${hash || '(none)'} → ${at}`);
        assert.equal(await p.evaluate(() => Boolean(window.onemap?.map)), false, `${hash}: a map was made`);
        await p.close();
      }
      // `next` is honoured after signing in through the form
      const page = await ctx.newPage();
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${env.origin}/#/query`);
      await waitView(page, 'login');
      await env.login(page, ADMIN.name, ADMIN.password);
      assert.equal(new URL(page.url()).hash, '#/query');
      await waitView(page, 'query');
      // …but never to another site
      await page.evaluate(() => { location.hash = `#/login?next=${encodeURIComponent('https://example.org/')}`; });
      await waitView(page, 'login');
      await env.login(page, ADMIN.name, ADMIN.password);
      assert.equal(new URL(page.url()).hash, '#/screen');
      assert.deepEqual(errors, []);
    } finally { await ctx.close(); }
  });

  test('a session that ends while a page is open: the next request, or the live stream, goes to the login page', async () => {
    const { page, ctx, rec } = await openPage(env, '#/screen');
    try {
      await page.evaluate(() => window.onemap.live.ready);
      // the cookie goes (as when the session expires): the next API request answers 401
      await ctx.clearCookies();
      await page.evaluate(() => window.onemap.refresh());
      await page.waitForFunction(() => location.hash === `#/login?next=${encodeURIComponent('#/screen')}`);
      await waitView(page, 'login');
      // signing in again returns to the screen
      await env.login(page);
      await waitView(page, 'screen');
      await page.evaluate(() => window.onemap.live.ready);

      // the live stream refused (401): EventSource gives up, /api/me says 401, and the login page shows
      await ctx.clearCookies();
      await page.evaluate(async () => {
        const { connectLive } = await import('/app/live.js');
        window.__probe = connectLive('/api/live', {});
      });
      await page.waitForFunction(() => location.hash.startsWith('#/login?next='), null, { timeout: 15_000 });
      await page.evaluate(() => window.__probe.close());
      assert.deepEqual(rec.pageErrors, []);
    } finally { await ctx.close(); }
  });

  test('the pages run under the server\'s Content-Security-Policy with no violation', async () => {
    const index = await fetch(`${env.origin}/`);
    const csp = index.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'(;|$)/, `CSP of /: ${csp || '(none)'}`);
    assert.match(csp, /worker-src 'self' blob:/, csp);
    const ctx = await env.browser.newContext({ viewport: { width: 1600, height: 1000 } });
    await ctx.addInitScript(() => {
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    try {
      const { page } = await openPage(env, '#/login', { context: ctx, login: false });
      assert.deepEqual(await page.evaluate(() => window.__csp), [], '#/login');
      await env.loginApi(ctx);
      for (const view of ['screen', 'query', 'plan']) {
        const p = await ctx.newPage();
        await p.goto(`${env.origin}/#/${view}`);
        await waitView(p, view);
        await p.waitForFunction(() => document.body.dataset.mapIdle === '1', null, { timeout: SLOW });
        if (view === 'screen') await p.evaluate(() => window.onemap.live.charts());
        assert.deepEqual(await p.evaluate(() => window.__csp), [], `#/${view}`);
        await p.close();
      }
    } finally { await ctx.close(); }
  });

  test('a kiosk link (GET /kiosk/{token}) opens the screen as a kiosk session; /api/me says so and renews its cookie', async () => {
    const token = env.cli(['token', 'create', '--kiosk', '--role', 'viewer', '--name', 'wall']).trim().split('\n').at(-1).trim();
    // /kiosk/{token} goes by the server's snapshot of the accounts (re-read every 5 s): wait
    // until the server lists the token (GET /api/admin/tokens re-reads them)
    const until = Date.now() + 15_000;
    while (!JSON.stringify(await env.api('/api/admin/tokens')).includes('"wall"')) {
      assert.ok(Date.now() < until, 'the server did not learn of the kiosk token');
      await new Promise((r) => setTimeout(r, 250));
    }
    const ctx = await env.browser.newContext({ viewport: { width: 1920, height: 1080 } });
    try {
      const page = await ctx.newPage();
      page.setDefaultTimeout(SLOW);
      await page.goto(`${env.origin}/kiosk/${token}`);
      await waitView(page, 'screen');
      assert.equal(new URL(page.url()).hash, '#/screen');
      const me = await ctx.request.get(`${env.origin}/api/me`);
      const who = await me.json();
      assert.equal(who.role, 'viewer');
      assert.equal(who.kiosk, true, `GET /api/me of a kiosk session: ${JSON.stringify(who)}`);
      assert.match(me.headers()['set-cookie'] ?? '', /^onemap_session=[^;]+;.*Max-Age=\d+/, 'GET /api/me did not renew the kiosk cookie');
      assert.deepEqual(await headerOf(page), { user: 'wall · 大屏查看', links: [], logout: false });
    } finally { await ctx.close(); }
  });

  test('a kiosk session has no log-out button and asks /api/me every 5 minutes', async () => {
    // the server's `kiosk` flag is stood in for (on a viewer's session), to test the page alone
    const ctx = await env.browser.newContext({ viewport: { width: 1920, height: 1080 } });
    try {
      await env.loginApi(ctx, 'viewer1', PASSWORD);
      const page = await ctx.newPage();
      page.setDefaultTimeout(SLOW);
      const asked = [];
      await page.route(`${env.origin}/api/me`, async (route) => {
        const res = await route.fetch();
        asked.push(res.status());
        await route.fulfill({ response: res, json: { ...await res.json(), kiosk: true } });
      });
      await page.clock.install();
      await page.goto(`${env.origin}/#/screen`);
      await waitView(page, 'screen');
      assert.deepEqual(await headerOf(page), { user: 'viewer1 · 大屏查看', links: [], logout: false });
      assert.equal(await page.evaluate(() => document.body.dataset.kiosk), '1');
      const n = asked.length;
      await page.clock.fastForward('04:50');
      await page.waitForTimeout(300);
      assert.equal(asked.length, n, '/api/me asked before 5 minutes');
      await page.clock.fastForward('00:15');
      const deadline = Date.now() + 5000;
      while (asked.length === n && Date.now() < deadline) await page.waitForTimeout(100);
      assert.equal(asked.length, n + 1, '/api/me not asked after 5 minutes');
      assert.deepEqual(asked, asked.map(() => 200));
      assert.equal(new URL(page.url()).hash, '#/screen');
    } finally { await ctx.close(); }
  });

  test('screenshots of the login page at 1920×1080 and 4K are legible', async () => {
    mkdirSync(SHOTS, { recursive: true });
    // 4K as a 1920×1080 layout at device scale 2, and as a 3840×2160 wall at scale 1
    for (const [name, width, height, scale] of [['1920x1080', 1920, 1080, 1], ['3840x2160', 1920, 1080, 2], ['3840x2160-wall', 3840, 2160, 1]]) {
      const { page, ctx } = await openLogin('#/login', { width, height, deviceScaleFactor: scale });
      try {
        // the refusal is stood in for: real failures count towards this address's throttle
        await page.route(`${env.origin}/api/login`, (route) => route.fulfill({
          status: 401, contentType: 'application/problem+json',
          body: JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'wrong name or password', code: 'wrong' }),
        }));
        await submit(page, '张三', 'Not-The-Pass-9');
        await page.waitForFunction(() => document.querySelector('.login-error').dataset.code === 'wrong');
        const sizes = await page.evaluate(() => Object.fromEntries(['.login-box h2', '.login-field > span', '.login-name', '.login-error', '.login-go']
          .map((sel) => [sel, Number.parseFloat(getComputedStyle(document.querySelector(sel)).fontSize)])));
        // at least 16 px at 1920 wide, and scaled with the width: device pixels grow ×2 on 4K
        const min = 16 * (width / 1920);
        for (const [sel, px] of Object.entries(sizes)) assert.ok(px >= min, `${name} ${sel}: ${px} px < ${min}`);
        const box = await page.locator('.login-box').boundingBox();
        assert.ok(Math.abs(box.x + box.width / 2 - width / 2) < 4, `the form is not centred: ${JSON.stringify(box)}`);
        const top = await page.locator('#top').boundingBox();
        assert.ok(box.y > top.y + top.height && box.y + box.height < height, `the form does not fit under the header: ${JSON.stringify(box)}`);
        await page.screenshot({ path: `${SHOTS}/login-${name}.png` });
      } finally { await ctx.close(); }
    }
  });
});
