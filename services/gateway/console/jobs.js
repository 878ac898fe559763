// Jobs: sign jobs with their state, filtered by state; failed jobs (dead letters) can be
// put back on the queue.

import { api, seg } from './api.js';
import { h, alertBox, button, digest, field, messageOf, pageHeading, ref, replaceKeepFocus, stateBadge, table, time, uid } from './ui.js';

const STATES = ['queued', 'running', 'succeeded', 'failed'];

export function jobsPage(ctx) {
  const heading = pageHeading('Jobs');
  const alert = alertBox();
  const listHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading jobs…' }));
  const stateSel = h('select', null, h('option', { value: '', text: 'All states' }), STATES.map((st) => h('option', { value: st, text: st })));
  let jobs = [];
  let state = '';

  stateSel.addEventListener('change', () => {
    const q = stateSel.value ? `?state=${encodeURIComponent(stateSel.value)}` : '';
    ctx.navigate(`#/jobs${q}`, { replace: true });
  });

  async function retry(job, btn) {
    btn.disabled = true;
    btn.textContent = 'Retrying…';
    try {
      await api.post(`/v1/jobs/${seg(job.id)}/retry`);
      ctx.announce(`Job for ${job.request?.image ?? job.id} queued again`);
      ctx.refresh(0);
    } catch (err) {
      btn.disabled = false;
      btn.textContent = 'Retry';
      if (!err.sessionEnded) alert.show(`Could not retry the job for ${job.request?.image ?? job.id}: ${messageOf(err)}`);
    }
  }

  function render() {
    const columns = [{ label: 'Created' }, { label: 'Image', class: 'col-image' }, { label: 'Witness' }, { label: 'State' }, { label: 'Result', class: 'col-result' }];
    if (ctx.canWrite) columns.push({ label: 'Actions', class: 'col-actions' });
    const rows = jobs.map((j) => {
      const imageId = uid('job-image');
      const result = j.state === 'succeeded'
        ? (j.digest ? digest(j.digest) : '')
        : j.error ? h('span', { class: j.state === 'failed' ? 'error-text' : 'sub', text: j.error }) : (j.digest ? digest(j.digest) : '');
      const row = [
        time(j.created_at),
        { th: [h('span', { id: imageId }, ref(j.request?.image ?? '')), h('span', { class: 'sub block', text: `from ${j.source ?? '?'}` })] },
        j.request?.witness ?? '',
        [stateBadge(j.state), h('span', { class: 'sub block', text: `${j.attempts ?? 0} ${Number(j.attempts) === 1 ? 'attempt' : 'attempts'}` })],
        result,
      ];
      if (ctx.canWrite) {
        if (j.state === 'failed') {
          const b = button('Retry', { class: 'btn-small btn-secondary', 'aria-describedby': imageId, dataset: { focusKey: `retry:${j.id}` } });
          b.addEventListener('click', () => retry(j, b));
          row.push(b);
        } else {
          row.push('');
        }
      }
      return row;
    });
    return table({
      caption: 'Jobs',
      captionExtra: state ? ` in state ${state}` : null,
      columns,
      rows,
      empty: state ? `No ${state} jobs.` : 'No jobs yet.',
      rowClass: (i) => (jobs[i].state === 'failed' ? 'row-alert' : undefined),
    });
  }

  async function refresh() {
    try {
      const res = await api.get('/v1/jobs', { state: state || undefined, limit: 200 });
      jobs = Array.isArray(res?.jobs) ? res.jobs : [];
      alert.clear();
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Could not load jobs: ${messageOf(err)}`);
      listHost.removeAttribute('aria-busy');
      return;
    }
    listHost.removeAttribute('aria-busy');
    replaceKeepFocus(listHost, render());
  }

  return {
    el: h('div', { class: 'page' }, heading,
      h('p', { class: 'lede', text: 'Sign requests from the API, webhooks and the bus. A failed job is a dead letter: retry it once its cause is fixed.' }),
      h('div', { class: 'toolbar' }, field({ label: 'State', input: stateSel, inline: true })),
      alert.el, listHost),
    heading,
    route(r) {
      const st = r.query.get('state') || '';
      state = STATES.includes(st) ? st : '';
      stateSel.value = state;
      return refresh();
    },
    refresh,
  };
}
