// What every browser test needs: the real server on a small demo store, Debian's Chromium through
// playwright-core with software GL (swiftshader), and a page that records what went wrong.
// The server binary is $ONEMAP_BIN if set, else ../target/release/onemap, else
// ../target/debug/onemap.
//
// Access control is on: the test's own requests (env.api, env.post, env.fetch) carry an admin
// token made with `onemap token create`; browser contexts sign in as the admin account ADMIN
// (made with `onemap user add`) before openPage opens a page, unless told otherwise.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { freePort } from './net.mjs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB = fileURLToPath(new URL('..', import.meta.url));
const STYLES = path.resolve(WEB, '../styles');
const BIN = process.env.ONEMAP_BIN
  ? path.resolve(process.env.ONEMAP_BIN)
  : ['release', 'debug'].map((p) => path.resolve(WEB, `../target/${p}/onemap`)).find(existsSync)
    ?? path.resolve(WEB, '../target/release/onemap');
const CHROMIUM = '/usr/bin/chromium';
export const SLOW = 120_000; // swiftshader on 2 cores, and a debug server renders tiles slowly
/** A password the server's rules accept (≥ 10 characters of 3 kinds). */
export const PASSWORD = 'Test-Pass-2026';
/** The admin account browser contexts sign in as by default. */
export const ADMIN = { name: 'webadmin', password: PASSWORD };

/**
 * Starts the server and the browser before the file's tests and stops them after. Returns the
 * environment; its fields are set once `before` has run. `database`: a PostGIS URL to put the
 * demo in and serve from, instead of a GeoPackage in a temp dir.
 */
export function useServer({ database } = {}) {
  const env = {
    origin: '', browser: null, log: '',
    /** The admin token the test's own requests carry. */
    token: '',
    /** The CLI's store arguments (`--store FILE` or `--database URL`). */
    store: [],
    /** fetch() of a path on the server with the admin token. */
    fetch(p, init = {}) {
      return fetch(env.origin + p, { ...init, headers: { authorization: `Bearer ${env.token}`, ...init.headers } });
    },
    /** GET a JSON endpoint, asserting 200. */
    async api(p) {
      const r = await env.fetch(p);
      assert.equal(r.status, 200, `GET ${p} → ${r.status}`);
      return r.json();
    },
    /** POST JSON; returns { status, body }. */
    async post(p, body) {
      const r = await env.fetch(p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: r.status, body: await r.json() };
    },
    /** Runs the CLI on the test's store; resolves its stdout. */
    cli(args, input) {
      // in the temp dir: `demo` on a database writes ./onemap-demo-accounts.txt
      return execFileSync(BIN, [...args, ...env.store], { input, stdio: 'pipe', encoding: 'utf8', cwd: dir });
    },
    /**
     * Makes an account with `onemap user add` (password on stdin) and waits until the running
     * server knows it. `scope`: grid codes.
     */
    async addUser(name, role, { scope = [], password = PASSWORD } = {}) {
      env.cli(['user', 'add', name, '--role', role, ...scope.flatMap((c) => ['--scope', c]), '--password-stdin'], `${password}\n`);
      const until = Date.now() + 15_000;
      for (;;) {
        const r = await env.fetch('/api/admin/users');
        if (r.ok && JSON.stringify(await r.json()).includes(JSON.stringify(name))) return { name, password };
        if (Date.now() > until) throw new Error(`the server did not learn of the account ${name} (GET /api/admin/users → ${r.status})`);
        await new Promise((res) => setTimeout(res, 250));
      }
    },
    /** Signs `target` (a page or a browser context) in through POST /api/login on its context's
     *  request API, which shares the context's cookies; resolves /api/login's answer. */
    async loginApi(target, name = ADMIN.name, password = ADMIN.password) {
      const ctx = typeof target.context === 'function' ? target.context() : target;
      const r = await ctx.request.post(`${env.origin}/api/login`, { data: { name, password } });
      assert.equal(r.status(), 200, `POST /api/login as ${name} → ${r.status()} ${await r.text()}`);
      signedIn.add(ctx);
      return r.json();
    },
    /** Signs in through the login form of `page` (opening #/login); resolves once the page has
     *  left the login page. */
    async login(page, name = ADMIN.name, password = ADMIN.password) {
      if (!/#\/login(\?|$)/.test(page.url())) await page.goto(`${env.origin}/#/login`);
      await page.locator('.login-name').fill(name);
      await page.locator('.login-password').fill(password);
      await page.locator('.login-go').click();
      await page.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: 20_000 });
      signedIn.add(page.context());
    },
  };
  let dir; let server;

  async function waitHealthy(url, ms) {
    const until = Date.now() + ms;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`onemap serve exited (${server.exitCode}):\n${env.log}`);
      try {
        const r = await fetch(url);
        if (r.ok) return;
      } catch { /* not listening yet */ }
      if (Date.now() > until) throw new Error(`no healthy ${url} after ${ms} ms:\n${env.log}`);
      await new Promise((r) => setTimeout(r, 100)); // poll interval
    }
  }

  before(async () => {
    assert.ok(existsSync(BIN), `server binary not found at ${BIN}: run \`cargo build\` in the repository root, or set ONEMAP_BIN`);
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install -y chromium fonts-noto-cjk`);
    dir = mkdtempSync(path.join(tmpdir(), 'onemap-web-'));
    const store = database ? ['--database', database] : ['--store', path.join(dir, 's.gpkg')];
    env.store = store;
    env.cli(['demo', '--scale', 'small']);
    // the token is the last line the CLI prints
    env.token = env.cli(['token', 'create', '--role', 'admin', '--name', 'webtest']).trim().split('\n').at(-1).trim();
    assert.match(env.token, /^\S{16,}$/, 'onemap token create printed no token on its last line');
    env.cli(['user', 'add', ADMIN.name, '--role', 'admin', '--password-stdin'], `${ADMIN.password}\n`);
    const port = await freePort();
    env.origin = `http://127.0.0.1:${port}`;
    server = spawn(BIN, ['serve', ...store, '--bind', `127.0.0.1:${port}`, '--web', WEB, '--styles', STYLES], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'onemap=warn' },
    });
    const keep = (b) => { env.log = (env.log + b).slice(-4000); };
    server.stdout.on('data', keep);
    server.stderr.on('data', keep);
    await waitHealthy(`${env.origin}/healthz`, 30_000);
    env.browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  after(async () => {
    await env.browser?.close();
    if (server && server.exitCode === null) {
      const gone = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await gone;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  return env;
}

/** Browser contexts that have signed in (once each). */
const signedIn = new WeakSet();

/**
 * A fresh page at `hash`, recording console errors, uncaught exceptions, requests leaving the
 * server and failed responses; resolves once the view's `window.onemap.ready` has. The context
 * signs in as ADMIN first unless it has already, or `login` is false (or another {name, password}).
 */
export async function openPage(env, hash = '', { width = 1920, height = 1080, context, login = ADMIN, deviceScaleFactor } = {}) {
  const ctx = context ?? await env.browser.newContext({ viewport: { width, height }, acceptDownloads: true, deviceScaleFactor });
  if (login && !signedIn.has(ctx)) await env.loginApi(ctx, login.name, login.password);
  const page = await ctx.newPage();
  page.setDefaultTimeout(SLOW);
  const rec = { consoleErrors: [], pageErrors: [], foreign: [], failedResponses: [] };
  page.on('console', (m) => { if (m.type() === 'error') rec.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => rec.pageErrors.push(e.message));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${env.origin}/`) && !u.startsWith('data:') && !u.startsWith('blob:')) rec.foreign.push(u);
  });
  page.on('response', (r) => { if (r.status() >= 400) rec.failedResponses.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${env.origin}/${hash}`);
  await page.waitForFunction(() => window.onemap?.ready);
  await page.evaluate(() => window.onemap.ready);
  return { page, ctx, rec };
}

/** Resolves when the page's map has nothing left to load or move. */
export function waitIdle(page) {
  return page.evaluate(() => new Promise((resolve) => {
    const m = window.onemap.map;
    if (m.loaded() && !m.isMoving() && m.areTilesLoaded()) resolve();
    else m.once('idle', resolve);
  }));
}
