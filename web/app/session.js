// Who is signed in (GET /api/me) and what they may do. The session itself is an HttpOnly cookie
// the page never sees; this module only keeps the server's answer about it:
//   { name, role, role_label, scope: [codes], perms: ['view', 'query', …], kiosk }
// A 401 from any request (api.js) or a live stream that the server refused (live.js) sends the
// user to the login page, with `next` set to where they were. A kiosk (wall screen) session asks
// /api/me every 5 minutes, which renews its cookie.
import { api, onUnauthorized } from './api.js';
import { hasKey, t } from './i18n.js';

export const KIOSK_RENEW_MS = 5 * 60_000;
/** The pages and the permission each needs, in the order a user lands on the first allowed. */
export const PAGES = [['screen', 'view'], ['query', 'query'], ['plan', 'plan']];

let me = null;
let renewTimer = 0;
const listeners = new Set();

/** The signed-in principal as /api/me gave it, or null. */
export function current() { return me; }

/** Whether the signed-in principal has permission `perm` (view, query, plan, ingest, accounts, audit). */
export function can(perm) { return Boolean(me?.perms?.includes(perm)); }

/** The page a user lands on: the first of screen, query, plan they may use, else 'home'. */
export function landing() {
  return PAGES.find(([, perm]) => can(perm))?.[0] ?? 'home';
}

/** The role's label in the current language (the server's Chinese label for a role unknown here). */
export function roleLabel(who = me) {
  if (!who) return '';
  return hasKey(`role.${who.role}`) ? t(`role.${who.role}`) : (who.role_label ?? who.role ?? '');
}

/** The name to show: a kiosk token's session is named `token:NAME`. */
export function displayName(who = me) {
  return (who?.name ?? '').replace(/^token:/, '');
}

/** Calls fn(me) after every change of who is signed in; returns the unsubscribe function. */
export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function set(next) {
  const changed = JSON.stringify(next) !== JSON.stringify(me);
  me = next;
  // a wall screen runs for days: keep its session alive (each /api/me renews its cookie)
  if (me?.kiosk && !renewTimer) {
    renewTimer = setInterval(() => { check().catch(() => { /* 401: to the login page; else next time */ }); }, KIOSK_RENEW_MS);
  } else if (!me?.kiosk && renewTimer) {
    clearInterval(renewTimer);
    renewTimer = 0;
  }
  if (changed) for (const fn of listeners) fn(me);
}

/** Asks the server who is signed in: the principal, or null for none (401). Other failures
 *  (server unreachable) are thrown. */
export async function load() {
  try {
    set(await api.me());
  } catch (err) {
    if (err.status !== 401) throw err;
    set(null);
  }
  return me;
}

/** Re-asks /api/me; a 401 goes to the login page (by the api.js handler). */
export async function check() {
  set(await api.me());
  return me;
}

/** Takes the answer of a successful POST /api/login. */
export function signedIn(who) { set(who); }

/** POST /api/logout, then the login page. A session already gone counts as logged out. */
export async function signOut() {
  try {
    await api.logout();
  } catch (err) {
    if (err.status !== 401) throw err;
  }
  set(null);
  location.hash = '#/login';
}

/** The login page's address, returning to `hash` afterwards. */
export function loginHash(hash = location.hash) {
  const next = safeNext(hash);
  return next ? `#/login?next=${encodeURIComponent(next)}` : '#/login';
}

/** `hash` if it is one of the app's own routes (never another site, never the login page). */
export function safeNext(hash) {
  if (typeof hash !== 'string' || !/^#\/[\w-]+(?:\?[^#]*)?$/.test(hash)) return null;
  return /^#\/login(?:\?|$)/.test(hash) ? null : hash;
}

/** The session is gone: forget it and go to the login page (once, whatever asked). */
export function expired() {
  set(null);
  if (/^#\/login(?:\?|$)/.test(location.hash)) return;
  location.replace(loginHash());
}

onUnauthorized(() => expired());
