// Labels for data: layer names, property names and coded values (status, category …), Chinese
// first; unknown names and codes show as they are.
import { fmtNumber, getLang, hasKey, t } from '../../i18n.js';

/** The label of a data layer: ours for the built-in ones, else the layer's own title. */
export function layerLabel(name, schema) {
  return hasKey(`q.layer.${name}`) ? t(`q.layer.${name}`) : (schema?.title || name);
}

/** The English of a built-in layer's label (for the small second line in Chinese mode). */
export function layerLabelEn(name) {
  return hasKey(`q.layer.${name}`) ? t(`q.layer.${name}`, 'en') : '';
}

export function propLabel(prop) {
  return hasKey(`prop.${prop}`) ? t(`prop.${prop}`) : prop;
}

const dateTimes = {};
function fmtDateTime(s) {
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  dateTimes[getLang()] ??= new Intl.DateTimeFormat(getLang() === 'zh' ? 'zh-CN' : 'en-GB',
    { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false });
  return dateTimes[getLang()].format(d);
}

const decimals = {};
function fmtDecimal(n) {
  decimals[getLang()] ??= new Intl.NumberFormat(getLang() === 'zh' ? 'zh-CN' : 'en-GB', { maximumFractionDigits: 2 });
  return decimals[getLang()].format(n);
}

// Identifiers print as they are, without thousands separators.
const RAW = new Set(['id', 'building', 'ext_id', 'grid', 'code', 'parent', 'phone']);

/** A property value as a person reads it. */
export function fmtValue(prop, v) {
  if (v === null || v === undefined || v === '') return '–';
  if (RAW.has(prop)) return String(v);
  const key = `v.${prop}.${v}`;
  if ((typeof v === 'string' || typeof v === 'number') && hasKey(key)) return t(key);
  if (typeof v === 'number') return Number.isInteger(v) ? fmtNumber(v) : fmtDecimal(v);
  if (typeof v === 'boolean') return v ? '✓' : '✗';
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) return fmtDateTime(v);
  return String(v);
}
