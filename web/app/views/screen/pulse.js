// New work orders pulse on the map for a few seconds. A fixed number of slots (the GeoJSON source
// `live` of the style holds one feature per busy slot, feature id = slot) is reused: a new order
// takes a free slot or the oldest one, so however many orders arrive the map never holds more
// than MAX markers. One requestAnimationFrame loop, running only while a pulse is alive and at
// most ~30 times a second, writes each slot's animation phase as feature-state (`ring`, `fade`);
// the style turns them into radius and opacity. The source's data is set only when slots change.

export const SOURCE = 'live';
export const MAX = 48;
export const LIFE_MS = 6000; // how long a new order pulses
const BEAT_MS = 1600; // one ring expanding
const FADE_MS = 1500; // the last part of the life, fading out
const FRAME_MS = 33;

export function createPulses(map) {
  /** @type {({ id: string, lon: number, lat: number, source: string, t0: number } | null)[]} */
  const slots = new Array(MAX).fill(null);
  let dirty = false;
  let raf = 0;
  let last = 0;
  let destroyed = false;

  const source = () => map.getSource(SOURCE);

  function features() {
    const out = [];
    slots.forEach((s, i) => {
      if (!s) return;
      out.push({
        type: 'Feature', id: i,
        geometry: { type: 'Point', coordinates: [s.lon, s.lat] },
        properties: { id: s.id, source: s.source, category: s.category },
      });
    });
    return { type: 'FeatureCollection', features: out };
  }

  function frame(now) {
    raf = 0;
    if (destroyed) return;
    if (now - last < FRAME_MS && !dirty) { raf = requestAnimationFrame(frame); return; }
    last = now;
    // Without the source (style not loaded yet, or the fallback style) pulses only age out.
    const src = source();
    let alive = 0;
    for (let i = 0; i < MAX; i++) {
      const s = slots[i];
      if (!s) continue;
      const age = now - s.t0;
      if (age >= LIFE_MS) {
        slots[i] = null;
        dirty = true;
        if (src) map.removeFeatureState({ source: SOURCE, id: i });
        continue;
      }
      alive++;
      if (src) {
        map.setFeatureState({ source: SOURCE, id: i }, {
          ring: (Math.max(0, age) % BEAT_MS) / BEAT_MS,
          fade: Math.min(1, (LIFE_MS - age) / FADE_MS),
        });
      }
    }
    if (dirty && src) { src.setData(features()); dirty = false; }
    if (alive) raf = requestAnimationFrame(frame);
  }

  return {
    /** Starts a pulse for an order { id, lon, lat, source }. */
    add(ev) {
      if (destroyed || !Number.isFinite(ev.lon) || !Number.isFinite(ev.lat)) return;
      const now = performance.now();
      let slot = slots.findIndex((s) => s?.id === ev.id);
      if (slot < 0) slot = slots.indexOf(null);
      if (slot < 0) { // all busy: the oldest gives way
        slot = 0;
        for (let i = 1; i < MAX; i++) if (slots[i].t0 < slots[slot].t0) slot = i;
      }
      slots[slot] = { id: ev.id, lon: ev.lon, lat: ev.lat, source: ev.source, category: ev.category, t0: now };
      dirty = true;
      if (!raf) raf = requestAnimationFrame(frame);
    },
    /** The live pulses: [{ id, slot, age }] (for tests and diagnostics). */
    list() {
      const now = performance.now();
      return slots.flatMap((s, i) => (s ? [{ id: s.id, slot: i, age: now - s.t0 }] : []));
    },
    destroy() {
      destroyed = true;
      cancelAnimationFrame(raf);
      raf = 0;
      slots.fill(null);
    },
  };
}
