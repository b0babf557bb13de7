// What every browser test needs: the real server on a small demo store, Debian's Chromium through
// playwright-core with software GL (swiftshader), and a page that records what went wrong.
// The server binary is $ONEMAP_BIN if set, else ../target/release/onemap, else
// ../target/debug/onemap.
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

/**
 * Starts the server and the browser before the file's tests and stops them after. Returns the
 * environment; its fields are set once `before` has run. `database`: a PostGIS URL to put the
 * demo in and serve from, instead of a GeoPackage in a temp dir.
 */
export function useServer({ database } = {}) {
  const env = {
    origin: '', browser: null, log: '',
    /** GET a JSON endpoint, asserting 200. */
    async api(p) {
      const r = await fetch(env.origin + p);
      assert.equal(r.status, 200, `GET ${p} → ${r.status}`);
      return r.json();
    },
    /** POST JSON; returns { status, body }. */
    async post(p, body) {
      const r = await fetch(env.origin + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: r.status, body: await r.json() };
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
    execFileSync(BIN, ['demo', '--scale', 'small', ...store], { stdio: 'pipe' });
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

/**
 * A fresh page at `hash`, recording console errors, uncaught exceptions, requests leaving the
 * server and failed responses; resolves once the view's `window.onemap.ready` has.
 */
export async function openPage(env, hash = '', { width = 1920, height = 1080, context } = {}) {
  const ctx = context ?? await env.browser.newContext({ viewport: { width, height }, acceptDownloads: true });
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
