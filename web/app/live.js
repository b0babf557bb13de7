// The live stream of the server (GET /api/live, Server-Sent Events): one EventSource whose named
// events (`hello`, `event`, `changed`, `stats`, `health`) reach the callbacks as parsed JSON.
//
// EventSource reconnects by itself after a dropped connection (resending Last-Event-ID). It gives
// up for good when a reconnect is answered with an error status (a server restarting behind a
// proxy); then a new EventSource is opened after a back-off (1 s doubling to 30 s). A fresh
// connection starts with `hello`, on which a client resynchronises its state from /api/stats.
// `reconnect()` drops the connection and opens a new one (for a connection that has gone quiet).
//
// EventSource does not tell an expired session (401) from any other refusal, so when it gives up
// /api/me is asked: a 401 there sends the user to the login page (session.js).
import { check as checkSession } from './session.js';

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const NAMES = ['hello', 'event', 'changed', 'stats', 'health'];

/**
 * @param {string} url
 * @param {{ hello?, event?, changed?, stats?, health?: (data: object, e: MessageEvent) => void,
 *           state?: (state: 'connecting'|'open'|'down') => void }} on
 */
export function connectLive(url, on = {}) {
  let es = null;
  let closed = false;
  let retry = 0;
  let backoff = BACKOFF_MIN_MS;
  let state = '';
  let lastMessageAt = Date.now();

  const setState = (s) => {
    if (s === state) return;
    state = s;
    on.state?.(s);
  };
  // One listener per event name for the life of the connection object, reused by each
  // EventSource opened, and removed from the one being dropped.
  const listeners = NAMES.map((name) => [name, (e) => {
    lastMessageAt = Date.now();
    let data;
    try { data = JSON.parse(e.data); } catch {
      console.warn(`live: unreadable ${name} message`);
      return;
    }
    on[name]?.(data, e);
  }]);
  const onOpen = () => { backoff = BACKOFF_MIN_MS; lastMessageAt = Date.now(); setState('open'); };
  const onError = () => {
    if (closed || !es) return;
    if (es.readyState !== EventSource.CLOSED) { setState('connecting'); return; }
    drop();
    setState('down');
    checkSession().catch(() => { /* 401: on the way to the login page; else the server is away */ });
    retry = setTimeout(() => { retry = 0; open(); }, backoff);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  };

  function open() {
    if (closed) return;
    setState('connecting');
    es = new EventSource(url);
    for (const [name, fn] of listeners) es.addEventListener(name, fn);
    es.addEventListener('open', onOpen);
    es.addEventListener('error', onError);
  }

  function drop() {
    if (!es) return;
    for (const [name, fn] of listeners) es.removeEventListener(name, fn);
    es.removeEventListener('open', onOpen);
    es.removeEventListener('error', onError);
    es.close();
    es = null;
  }

  open();
  return {
    get state() { return state; },
    /** Milliseconds since the last message (or the opening of the connection). */
    get quietFor() { return Date.now() - lastMessageAt; },
    reconnect() {
      if (closed) return;
      clearTimeout(retry);
      retry = 0;
      drop();
      open();
    },
    close() {
      closed = true;
      clearTimeout(retry);
      drop();
    },
  };
}
