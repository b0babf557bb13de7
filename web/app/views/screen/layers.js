// The layer switcher: one toggle per thematic group of the style (layers carry metadata
// "onemap:group"), each with a small legend. The choice is kept in localStorage.
import { applyI18n } from '../../i18n.js';
import * as P from '../../palette.js';
import { whenStyle } from './map.js';

const KEY = 'onemap.layers.hidden';

const sw = (c, label, cls = 'sw') => `<span class="lg"><i class="${cls}" style="--c:${c}"></i><span data-i18n="${label}"></span></span>`;
const LEGENDS = {
  grids: P.GRID_LEVELS.map((l) => `<span class="lg"><i class="ln" style="--c:${P.GRID_STYLE[l].line};--w:${Math.max(1, P.GRID_STYLE[l].width)}px"></i><span data-i18n="level.${l}"></span></span>`).join(''),
  dedicated: `<span class="lg"><i class="ln dash" style="--c:${P.DEDICATED.line}"></i><span data-i18n="kind.dedicated"></span></span>`,
  buildings: `<span class="ramp" style="--ramp:linear-gradient(90deg,${P.TAX_RAMP.map(([, c]) => c).join(',')})"><i></i><span data-i18n="legend.tax"></span><span class="ramp-ends"><span>0</span><span>${P.TAX_RAMP.at(-1)[0].toLocaleString('en')}+</span></span></span>`,
  risks: [1, 2, 3, 4].map((l) => sw(P.RISK_LEVELS[l], `risk.${P.RISK_NAMES[l]}`)).join(''),
  cameras: Object.entries(P.CAMERA_STATUS).map(([k, c]) => sw(c, `camera.${k}`)).join(''),
  events: ['new', 'processing', 'overdue', 'closed'].map((k) => sw(P.EVENT_STATUS[k], `event.${k}`)).join(''),
  addresses: '',
};
const SWATCH = {
  grids: P.GRID_STYLE.district.line, dedicated: P.DEDICATED.line, buildings: P.TAX_RAMP[4][1],
  risks: P.RISK_LEVELS[1], cameras: P.CAMERA_STATUS.online, events: P.EVENT_CLUSTER, addresses: P.ADDRESS,
};

function readHidden() {
  try { return new Set(JSON.parse(localStorage.getItem(KEY) || '[]')); } catch { return new Set(); }
}

export function createLayerPanel(el, map) {
  el.classList.add('layers', 'panel');
  el.innerHTML = `<h2 data-i18n-b="layers.title"></h2><ul>${P.GROUPS.map((g) => `
    <li data-group="${g}">
      <label class="toggle">
        <input type="checkbox" name="${g}" checked>
        <span class="knob" style="--c:${SWATCH[g]}"></span>
        <span class="name" data-i18n-b="layers.${g}"></span>
      </label>
      ${LEGENDS[g] ? `<div class="legend">${LEGENDS[g]}</div>` : ''}
    </li>`).join('')}</ul>`;
  applyI18n(el);
  const hidden = readHidden();

  function apply() {
    whenStyle(map, () => {
      for (const layer of map.getStyle().layers) {
        const g = layer.metadata?.['onemap:group'];
        if (!g || !P.GROUPS.includes(g)) continue;
        const vis = hidden.has(g) ? 'none' : 'visible';
        if ((layer.layout?.visibility ?? 'visible') !== vis) map.setLayoutProperty(layer.id, 'visibility', vis);
      }
    });
    for (const input of el.querySelectorAll('input[type=checkbox]')) {
      input.checked = !hidden.has(input.name);
      input.closest('li').classList.toggle('off', hidden.has(input.name));
    }
  }

  el.addEventListener('change', (e) => {
    const input = e.target.closest('input[type=checkbox]');
    if (!input) return;
    if (input.checked) hidden.delete(input.name); else hidden.add(input.name);
    try { localStorage.setItem(KEY, JSON.stringify([...hidden])); } catch { /* keep in memory */ }
    apply();
  });
  apply();
}
