// Every UI string, in one place. Chinese is the default; the choice is kept in localStorage.
// In Chinese mode labels marked bilingual carry their English in smaller text (see `tb`).

const KEY = 'onemap.lang';

const STRINGS = {
  zh: {
    'app.title': '社会治理一张图',
    'lang.switch': 'EN',
    'lang.switch.title': 'Switch to English',
    'status.ok': '在线',
    'status.loading': '加载中',
    'status.noStyle': '样式服务不可用',
    'status.noTiles': '瓦片服务不可用',
    'layers.title': '图层',
    'layers.grids': '网格',
    'layers.dedicated': '专属网格',
    'layers.buildings': '楼宇经济',
    'layers.risks': '风险隐患',
    'layers.cameras': '视频监控',
    'layers.events': '事件工单',
    'layers.addresses': '标准地址',
    'legend.tax': '税收(万元)',
    'view.3d': '3D',
    'view.2d': '2D',
    'view.pitch.title': '切换 2D / 3D 视角',
    'level.district': '区',
    'level.street': '街道',
    'level.community': '社区',
    'level.grid': '网格',
    'level.micro': '微网格',
    'kind.dedicated': '专属网格',
    'card.staff': '网格员',
    'card.phone': '电话',
    'card.households': '户数',
    'card.population': '人口',
    'card.addresses': '标准地址',
    'card.cameras': '监控在线/总数',
    'card.buildings': '楼宇',
    'card.eventsOpen': '未结工单',
    'card.eventsOverdue': '超期工单',
    'card.risks': '风险隐患',
    'card.drill': '下钻',
    'card.noChildren': '已是最末级网格',
    'card.loading': '加载中…',
    'card.error': '无法加载网格信息',
    'card.code': '编码',
    'risk.red': '红',
    'risk.orange': '橙',
    'risk.yellow': '黄',
    'risk.blue': '蓝',
    'camera.online': '在线',
    'camera.offline': '离线',
    'camera.fault': '故障',
    'event.new': '新建',
    'event.dispatched': '已派单',
    'event.processing': '处置中',
    'event.overdue': '超期',
    'event.closed': '已办结',
    'overview.title': '全区概况',
    'unit.hh': '户',
  },
  en: {
    'app.title': 'Social Governance One Map',
    'lang.switch': '中文',
    'lang.switch.title': '切换到中文',
    'status.ok': 'Live',
    'status.loading': 'Loading',
    'status.noStyle': 'Style service unavailable',
    'status.noTiles': 'Tile service unavailable',
    'layers.title': 'Layers',
    'layers.grids': 'Grids',
    'layers.dedicated': 'Dedicated grids',
    'layers.buildings': 'Buildings',
    'layers.risks': 'Risk points',
    'layers.cameras': 'Cameras',
    'layers.events': 'Work orders',
    'layers.addresses': 'Addresses',
    'legend.tax': 'Tax (10k CNY)',
    'view.3d': '3D',
    'view.2d': '2D',
    'view.pitch.title': 'Toggle 2D / 3D view',
    'level.district': 'District',
    'level.street': 'Street',
    'level.community': 'Community',
    'level.grid': 'Grid',
    'level.micro': 'Micro-grid',
    'kind.dedicated': 'Dedicated grid',
    'card.staff': 'Grid worker',
    'card.phone': 'Phone',
    'card.households': 'Households',
    'card.population': 'Population',
    'card.addresses': 'Addresses',
    'card.cameras': 'Cameras online/total',
    'card.buildings': 'Buildings',
    'card.eventsOpen': 'Open orders',
    'card.eventsOverdue': 'Overdue orders',
    'card.risks': 'Risk points',
    'card.drill': 'Drill down',
    'card.noChildren': 'Lowest level: no sub-grids',
    'card.loading': 'Loading…',
    'card.error': 'Could not load the grid',
    'card.code': 'Code',
    'risk.red': 'Red',
    'risk.orange': 'Orange',
    'risk.yellow': 'Yellow',
    'risk.blue': 'Blue',
    'camera.online': 'Online',
    'camera.offline': 'Offline',
    'camera.fault': 'Fault',
    'event.new': 'New',
    'event.dispatched': 'Dispatched',
    'event.processing': 'Processing',
    'event.overdue': 'Overdue',
    'event.closed': 'Closed',
    'overview.title': 'District overview',
    'unit.hh': 'hh',
  },
};

export const LANGS = Object.keys(STRINGS);

let lang = readLang();
const listeners = new Set();

function readLang() {
  try {
    const l = localStorage.getItem(KEY);
    return l && STRINGS[l] ? l : 'zh';
  } catch { return 'zh'; }
}

export function getLang() { return lang; }

/** The string for `key` in the current language (the key itself if missing, so gaps show). */
export function t(key, l = lang) {
  return STRINGS[l][key] ?? STRINGS.zh[key] ?? key;
}

/** Fills `el` with the label for `key`: in Chinese mode "中文" + small English, else English. */
export function tb(el, key) {
  const main = t(key);
  if (lang === 'zh') {
    let small = el.querySelector(':scope > small');
    if (el.firstChild?.nodeType !== Node.TEXT_NODE || !small) {
      el.textContent = '';
      el.append(document.createTextNode(''), small = document.createElement('small'));
    }
    el.firstChild.nodeValue = main;
    small.textContent = t(key, 'en');
  } else {
    el.textContent = main;
  }
}

/** Applies the current language to every [data-i18n] / [data-i18n-b] / [data-i18n-title] under root. */
export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-b]')) tb(el, el.dataset.i18nB);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

export function setLang(l) {
  if (!STRINGS[l] || l === lang) return;
  lang = l;
  try { localStorage.setItem(KEY, l); } catch { /* private mode: keep it for this page only */ }
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
  applyI18n();
  for (const fn of listeners) fn(l);
}

/** Calls fn(lang) after each switch; returns the function that unsubscribes. */
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const numberFormats = {};
export function fmtNumber(n) {
  if (n == null || Number.isNaN(n)) return '–';
  numberFormats[lang] ??= new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en-GB');
  return numberFormats[lang].format(n);
}

const clockFormats = {};
export function fmtClock(d) {
  clockFormats[lang] ??= {
    date: new Intl.DateTimeFormat(lang === 'zh' ? 'zh-CN' : 'en-GB',
      { year: 'numeric', month: lang === 'zh' ? 'long' : 'short', day: 'numeric', weekday: 'short' }),
    time: new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }),
  };
  return { date: clockFormats[lang].date.format(d), time: clockFormats[lang].time.format(d) };
}
