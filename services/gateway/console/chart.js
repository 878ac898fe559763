// The impact chart: admission decisions under one policy over time, bucketed by hour or
// day, as an inline SVG stacked bar chart with a text alternative (a summary and a table).

import { h, s, table, uid, fmtNumber } from './ui.js';

const HOUR = 3600e3;
const DAY = 24 * HOUR;
const MAX_BUCKETS = 60;

const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const longFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

/** Bucket boundaries from start to end: hours, or runs of `days` local days. */
function buckets(startMs, endMs) {
  const span = Math.max(endMs - startMs, HOUR);
  const out = [];
  if (span <= 48 * HOUR) {
    const d = new Date(startMs);
    d.setMinutes(0, 0, 0);
    for (let t = d.getTime(); t < endMs; t += HOUR) out.push({ start: t, end: t + HOUR, unit: 'hour' });
    return out;
  }
  const days = Math.max(1, Math.ceil(span / DAY / MAX_BUCKETS));
  const d = new Date(startMs);
  d.setHours(0, 0, 0, 0);
  while (d.getTime() < endMs) {
    const start = d.getTime();
    d.setDate(d.getDate() + days);
    out.push({ start, end: d.getTime(), unit: days === 1 ? 'day' : `${days} days` });
  }
  return out;
}

function label(b) {
  if (b.unit === 'hour') {
    const d = new Date(b.start);
    return d.getHours() === 0 ? `${dayFmt.format(d)} ${hourFmt.format(d)}` : hourFmt.format(d);
  }
  return dayFmt.format(new Date(b.start));
}

function longLabel(b) {
  return b.unit === 'hour' ? longFmt.format(new Date(b.start)) : dayFmt.format(new Date(b.start));
}

function niceMax(n) {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export function decisionChart({ decisions, sinceMs, nowMs, policy, truncated, isFailing }) {
  const times = decisions.map((d) => Date.parse(d.at)).filter(Number.isFinite);
  // The chart spans from the first decision of the period (hourly bars when that is
  // within two days, daily bars otherwise) to now; an empty period shows its last day.
  let start = times.length ? Math.min(...times) : (sinceMs || nowMs - DAY);
  if (sinceMs && start < sinceMs) start = sinceMs;
  const bs = buckets(start, nowMs).map((b) => ({ ...b, passed: 0, failed: 0 }));
  for (const d of decisions) {
    const t = Date.parse(d.at);
    if (!Number.isFinite(t) || !bs.length) continue;
    // Newest first from the API; a linear scan over at most 60 buckets is plenty.
    let b = bs.find((x) => t >= x.start && t < x.end);
    if (!b) b = t < bs[0].start ? bs[0] : bs[bs.length - 1];
    if (isFailing(d)) b.failed += 1;
    else b.passed += 1;
  }
  const per = bs[0]?.unit === 'hour' ? 'hour' : bs[0]?.unit || 'day';
  const total = decisions.length;
  const totalFailed = bs.reduce((a, b) => a + b.failed, 0);
  const busiest = bs.reduce((a, b) => (b.passed + b.failed > (a ? a.passed + a.failed : -1) ? b : a), null);

  const titleId = uid('chart-title');
  const descId = uid('chart-desc');
  const summary = total
    ? `${fmtNumber(total)} decisions under ${policy} from ${longLabel(bs[0])} to now, per ${per}; ${fmtNumber(totalFailed)} would have been denied. `
      + `The busiest ${per === 'hour' ? 'hour' : 'period'} was ${longLabel(busiest)} with ${fmtNumber(busiest.passed + busiest.failed)} (${fmtNumber(busiest.failed)} would have been denied).`
    : `No decisions under ${policy} in this period.`;

  // Geometry (viewBox units; the SVG scales to its container).
  const W = 760;
  const H = 240;
  const m = { top: 12, right: 12, bottom: 40, left: 48 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxY = niceMax(Math.max(1, ...bs.map((b) => b.passed + b.failed)));
  const y = (v) => m.top + ph - (v / maxY) * ph;
  const slot = pw / Math.max(1, bs.length);
  const barW = Math.max(2, Math.min(40, slot * 0.7));

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`, class: 'chart', preserveAspectRatio: 'xMidYMid meet', focusable: 'false' },
    s('title', { id: titleId, text: `Admission decisions under ${policy} per ${per}` }),
    s('desc', { id: descId, text: summary }));

  const grid = s('g', { class: 'chart-grid' });
  for (const v of [0, maxY / 2, maxY]) {
    grid.append(
      s('line', { x1: m.left, x2: W - m.right, y1: y(v), y2: y(v) }),
      s('text', { x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'chart-axis', text: fmtNumber(v) }));
  }
  svg.append(grid);

  const labelEvery = Math.max(1, Math.ceil(bs.length / 8));
  const bars = s('g', { class: 'chart-bars' });
  bs.forEach((b, i) => {
    const x = m.left + i * slot + (slot - barW) / 2;
    const g = s('g', null, s('title', { text: `${longLabel(b)}: ${b.passed + b.failed} decisions, ${b.failed} would have been denied` }));
    if (b.passed) g.append(s('rect', { x, width: barW, y: y(b.passed), height: y(0) - y(b.passed), class: 'bar-passed' }));
    if (b.failed) g.append(s('rect', { x, width: barW, y: y(b.passed + b.failed), height: y(b.passed) - y(b.passed + b.failed), class: 'bar-failed' }));
    bars.append(g);
    if (i % labelEvery === 0) {
      bars.append(s('text', { x: x + barW / 2, y: H - m.bottom + 16, 'text-anchor': 'middle', class: 'chart-axis', text: label(b) }));
    }
  });
  svg.append(bars, s('line', { x1: m.left, x2: W - m.right, y1: y(0), y2: y(0), class: 'chart-baseline' }));

  const legend = h('ul', { class: 'legend' },
    h('li', null, h('span', { class: 'swatch swatch-passed', 'aria-hidden': 'true' }), 'Allowed'),
    h('li', null, h('span', { class: 'swatch swatch-failed', 'aria-hidden': 'true' }), 'Would have been denied (denied, warned, would deny or break-glass)'));

  const dataTable = table({
    caption: `Decisions per ${per}`,
    columns: [{ label: per === 'hour' ? 'Hour' : 'Period' }, { label: 'Allowed' }, { label: 'Would have been denied' }],
    rows: bs.filter((b) => b.passed || b.failed).map((b) => [{ th: longLabel(b) }, fmtNumber(b.passed), fmtNumber(b.failed)]),
    empty: 'No decisions in this period.',
  });

  return h('figure', { class: 'chart-figure' },
    svg,
    h('figcaption', null, legend,
      h('p', { class: 'chart-summary', text: summary + (truncated ? ' The chart counts the newest 1,000 decisions only.' : '') })),
    h('details', { class: 'more' }, h('summary', null, 'The chart as a table'), dataTable));
}
