// The side charts of the big screen (ECharts, served from web/node_modules like MapLibre and
// loaded only when the screen mounts): today's orders by source (ring) and by category (bars),
// closure and on-time rates (gauges), the grids with the most open orders (stacked bars).
// Each chart is created once and fed by setOption with the same structure, so a screen that runs
// for days keeps one canvas per chart; sizes follow the UI scale (1 at 1920 px wide); the
// language switch relabels everything. destroy() disposes the charts.
import { getLang, hasKey, onLangChange, t } from '../../i18n.js';
import { CHART, EVENT_SOURCES, SOURCE_COLORS } from '../../palette.js';
import { rates, topGrids } from './live-model.js';
import { uiScale } from './map.js';

const ECHARTS = '/node_modules/echarts/dist/echarts.esm.min.mjs';
let loading = null;
const loadECharts = () => (loading ??= import(ECHARTS));

const CATEGORY_MAX = 8;
const label = (prefix, code) => (hasKey(`${prefix}.${code}`) ? t(`${prefix}.${code}`) : code);
const pct = (v) => (v == null ? '–' : `${(v * 100).toFixed(1)}%`);
const FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif';

function base(k) {
  return {
    backgroundColor: 'transparent',
    animationDuration: 500,
    animationDurationUpdate: 400,
    textStyle: { fontFamily: FONT, fontSize: 12 * k, color: CHART.text },
    tooltip: { show: false },
  };
}

// The value axis of the bar charts: guide lines only (each bar carries its number).
function valueAxis() {
  return {
    type: 'value', minInterval: 1, splitNumber: 4,
    axisLabel: { show: false }, axisLine: { show: false }, axisTick: { show: false },
    splitLine: { lineStyle: { color: CHART.grid } },
  };
}

function categoryAxis(k, names) {
  return {
    type: 'category', inverse: true, data: names,
    axisTick: { show: false }, axisLine: { lineStyle: { color: CHART.grid } },
    axisLabel: { color: CHART.muted, fontSize: 11 * k, width: 92 * k, overflow: 'truncate' },
  };
}

// The note an empty chart shows: always present (options merge), hidden when there is data.
const emptyNote = (show, text, k) => [{
  id: 'empty', type: 'text', left: 'center', top: 'middle', invisible: !show,
  style: { text, fill: CHART.faint, fontSize: 12 * k, fontFamily: FONT },
}];

const OPTIONS = {
  source(m, k) {
    const data = EVENT_SOURCES.map((s) => ({ name: label('v.source', s), value: m.todayBySource[s] ?? 0, itemStyle: { color: SOURCE_COLORS[s] } }));
    for (const [s, v] of Object.entries(m.todayBySource)) {
      if (!EVENT_SOURCES.includes(s)) data.push({ name: label('v.source', s), value: v });
    }
    const total = data.reduce((a, d) => a + d.value, 0);
    return {
      ...base(k),
      legend: {
        orient: 'vertical', right: 4 * k, top: 'middle', itemWidth: 9 * k, itemHeight: 9 * k, itemGap: 7 * k,
        icon: 'circle', textStyle: { color: CHART.muted, fontSize: 11 * k },
        formatter: (name) => `${name}  ${data.find((d) => d.name === name)?.value ?? 0}`,
      },
      title: {
        text: String(total), subtext: t('live.orders'), left: '29%', top: 'center', textAlign: 'center',
        itemGap: 2 * k,
        textStyle: { color: '#ffffff', fontSize: 22 * k, fontWeight: 700, fontFamily: FONT },
        subtextStyle: { color: CHART.muted, fontSize: 11 * k, fontFamily: FONT },
      },
      series: [{
        type: 'pie', radius: ['52%', '76%'], center: ['30%', '50%'], avoidLabelOverlap: true,
        label: { show: false }, labelLine: { show: false }, emphasis: { scale: false },
        itemStyle: { borderColor: 'rgba(7,13,26,0.9)', borderWidth: 2 * k },
        data: total ? data : data.map((d) => ({ ...d, value: 0 })),
        stillShowZeroSum: true,
      }],
    };
  },

  category(m, k) {
    const rows = Object.entries(m.todayByCategory).filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, CATEGORY_MAX);
    return {
      ...base(k),
      grid: { left: 8 * k, right: 36 * k, top: 6 * k, bottom: 4 * k, containLabel: true },
      xAxis: { ...valueAxis(), show: rows.length > 0 },
      yAxis: categoryAxis(k, rows.map(([c]) => label('v.category', c))),
      series: [{
        type: 'bar', name: t('live.orders'), barMaxWidth: 12 * k, barCategoryGap: '38%',
        data: rows.map(([, v]) => v),
        itemStyle: {
          borderRadius: [0, 3 * k, 3 * k, 0],
          color: { type: 'linear', x: 0, y: 0, x2: 1, y2: 0, colorStops: [{ offset: 0, color: CHART.bar[1] }, { offset: 1, color: CHART.bar[0] }] },
        },
        label: { show: true, position: 'right', color: CHART.text, fontSize: 10 * k },
      }],
      graphic: emptyNote(!rows.length, t('live.emptyToday'), k),
    };
  },

  rates(m, k) {
    const r = rates(m);
    const gauge = (name, v, color, x) => ({
      type: 'gauge', name, center: [x, '56%'], radius: '64%', startAngle: 215, endAngle: -35, min: 0, max: 100,
      progress: { show: true, width: 9 * k, roundCap: true, itemStyle: { color } },
      axisLine: { roundCap: true, lineStyle: { width: 9 * k, color: [[1, CHART.track]] } },
      axisTick: { show: false }, splitLine: { show: false }, axisLabel: { show: false }, pointer: { show: false },
      anchor: { show: false },
      title: { offsetCenter: [0, '62%'], color: CHART.muted, fontSize: 11 * k, fontFamily: FONT },
      detail: {
        offsetCenter: [0, '2%'], valueAnimation: false, color: '#ffffff', fontSize: 20 * k, fontWeight: 700, fontFamily: FONT,
        formatter: () => pct(v),
      },
      data: [{ value: v == null ? 0 : Math.round(v * 1000) / 10, name }],
    });
    return {
      ...base(k),
      series: [gauge(t('live.closureRate'), r.closure, CHART.closure, '25%'), gauge(t('live.onTimeRate'), r.onTime, CHART.onTime, '75%')],
    };
  },

  top(m, k) {
    const rows = topGrids(m);
    return {
      ...base(k),
      legend: {
        top: 0, right: 4 * k, itemWidth: 10 * k, itemHeight: 7 * k, textStyle: { color: CHART.muted, fontSize: 10 * k },
        data: [t('live.series.open'), t('live.series.overdue')],
      },
      grid: { left: 8 * k, right: 30 * k, top: 20 * k, bottom: 2 * k, containLabel: true },
      xAxis: { ...valueAxis(), show: rows.length > 0 },
      yAxis: categoryAxis(k, rows.map((g) => g.name)),
      series: [
        { type: 'bar', name: t('live.series.overdue'), stack: 'open', barMaxWidth: 10 * k, data: rows.map((g) => g.overdue), itemStyle: { color: CHART.overdue } },
        {
          type: 'bar', name: t('live.series.open'), stack: 'open', barMaxWidth: 10 * k,
          data: rows.map((g) => ({ value: g.open - g.overdue, code: g.code })),
          itemStyle: { color: CHART.open, borderRadius: [0, 3 * k, 3 * k, 0] },
          label: { show: true, position: 'right', color: CHART.text, fontSize: 10 * k, formatter: (p) => String(rows[p.dataIndex]?.open ?? '') },
        },
      ],
      graphic: emptyNote(!rows.length, t('live.noOpen'), k),
    };
  },
};

/**
 * Creates the charts in els = { source, category, rates, top } (elements sized by CSS).
 * onGrid(code) is called when a bar of the top grids is clicked.
 */
export async function createCharts(els, { onGrid } = {}) {
  const echarts = await loadECharts();
  const charts = {};
  for (const [name, el] of Object.entries(els)) charts[name] = echarts.init(el, null, { renderer: 'canvas' });
  let model = null;
  let scale = uiScale();
  let destroyed = false;

  function draw(notMerge = false) {
    if (!model || destroyed) return;
    for (const [name, chart] of Object.entries(charts)) chart.setOption(OPTIONS[name](model, scale), { notMerge, lazyUpdate: false });
  }

  charts.top.on('click', (p) => {
    const code = topGrids(model)[p.dataIndex]?.code;
    if (code) onGrid?.(code);
  });

  // One observer for the four boxes: a changed size (window, 4K wall) resizes and rescales.
  const ro = new ResizeObserver(() => {
    if (destroyed) return;
    const k = uiScale();
    for (const c of Object.values(charts)) c.resize();
    if (k !== scale) { scale = k; draw(true); }
  });
  for (const el of Object.values(els)) ro.observe(el);
  const offLang = onLangChange(() => draw(true));

  return {
    /** Draws the model (call at most a few times a second). */
    update(m) { model = m; draw(); },
    /** The current options of a chart, for tests: { title, legend, yAxis, series } as ECharts holds them. */
    option(name) { return charts[name]?.getOption(); },
    get lang() { return getLang(); },
    destroy() {
      destroyed = true;
      offLang();
      ro.disconnect();
      for (const c of Object.values(charts)) c.dispose();
    },
  };
}
