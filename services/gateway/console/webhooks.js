// Webhooks: each receiver's counters since the gateway process started, and the latest
// jobs webhooks enqueued.

import { api } from './api.js';
import { h, alertBox, code, fmtNumber, messageOf, pageHeading, ref, replaceKeepFocus, stateBadge, table, time } from './ui.js';

const COUNTERS = [
  ['deliveries', 'Deliveries'], ['events', 'Events'], ['jobs', 'Jobs'], ['ignored', 'Ignored'],
  ['unmatched', 'Unmatched'], ['foreign', 'Foreign'], ['unauthenticated', 'Unauthenticated'],
  ['replays', 'Replays'], ['malformed', 'Malformed'], ['unavailable', 'Unavailable'],
];
const WARN = new Set(['unauthenticated', 'replays', 'malformed', 'unavailable', 'foreign']);

export function webhooksPage(ctx) {
  const heading = pageHeading('Webhooks');
  const alert = alertBox();
  const statsHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading receivers…' }));
  const jobsHost = h('div', { class: 'list-host' });

  function renderStats(receivers) {
    const names = Object.keys(receivers).sort();
    // Anything the gateway reports beyond the known counters (such as a last delivery time).
    const extra = [];
    for (const n of names) {
      const r = receivers[n];
      if (!r || typeof r !== 'object') continue;
      for (const [k, v] of Object.entries(r)) {
        if (COUNTERS.some(([c]) => c === k) || extra.includes(k)) continue;
        if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) extra.push(k);
      }
    }
    const columns = [{ label: 'Receiver' }, ...COUNTERS.map(([, label]) => ({ label, class: 'num' })), ...extra.map((k) => ({ label: k.replace(/_/g, ' ') }))];
    const rows = names.map((n) => {
      const r = receivers[n] || {};
      return [
        { th: code(n) },
        ...COUNTERS.map(([k]) => {
          const v = Number(r[k] ?? 0);
          return WARN.has(k) && v > 0 ? h('strong', { class: 'error-text', text: fmtNumber(v) }) : fmtNumber(v);
        }),
        ...extra.map((k) => (/_at$|^last/.test(k) && typeof r[k] === 'string' ? time(r[k]) : r[k] === null || r[k] === undefined ? '—' : String(r[k]))),
      ];
    });
    return table({ caption: 'Webhook receivers', captionExtra: ' (counts since the gateway started)', columns, rows, empty: 'No webhook receiver has counters yet.' });
  }

  function renderJobs(jobs) {
    return table({
      caption: 'Latest webhook deliveries',
      captionExtra: ' (the sign jobs receivers enqueued)',
      columns: [{ label: 'Received' }, { label: 'Receiver' }, { label: 'Image', class: 'col-image' }, { label: 'Witness' }, { label: 'State' }],
      rows: jobs.map((j) => [
        time(j.created_at),
        String(j.source ?? '').replace(/^webhook:/, ''),
        { th: ref(j.request?.image ?? '') },
        j.request?.witness ?? '',
        stateBadge(j.state),
      ]),
      empty: 'No job came from a webhook among the latest jobs.',
    });
  }

  async function refresh() {
    const [stats, jobs] = await Promise.allSettled([api.get('/v1/webhooks/stats'), api.get('/v1/jobs', { limit: 500 })]);
    const errors = [];
    if (stats.status === 'fulfilled') {
      const receivers = stats.value?.receivers && typeof stats.value.receivers === 'object' ? stats.value.receivers : {};
      replaceKeepFocus(statsHost, renderStats(receivers));
    } else if (!stats.reason?.sessionEnded) errors.push(`Could not load the receivers' counters: ${messageOf(stats.reason)}`);
    if (jobs.status === 'fulfilled') {
      const list = (Array.isArray(jobs.value?.jobs) ? jobs.value.jobs : []).filter((j) => String(j.source ?? '').startsWith('webhook:')).slice(0, 50);
      replaceKeepFocus(jobsHost, renderJobs(list));
    } else if (!jobs.reason?.sessionEnded) errors.push(`Could not load webhook jobs: ${messageOf(jobs.reason)}`);
    statsHost.removeAttribute('aria-busy');
    if (errors.length) alert.show(errors.join(' ')); else alert.clear();
  }

  return {
    el: h('div', { class: 'page' }, heading,
      h('p', { class: 'lede' }, 'Registries announce pushes to the receivers; signing rules decide what gets signed. Receivers authenticate their senders with their own secrets (see docs/webhooks.md). Each gateway replica counts its own deliveries.'),
      alert.el, statsHost, jobsHost),
    heading,
    route() { return refresh(); },
    refresh,
  };
}
