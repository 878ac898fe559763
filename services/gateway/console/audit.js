// Audit: the append-only audit log and the admission decisions verifiers reported, with
// filters. The API filters by action prefix and exact subject (audit) and by outcome and
// start time (decisions); the rest is filtered here over the newest entries.

import { api } from './api.js';
import { h, alertBox, button, code, field, fmtNumber, messageOf, pageHeading, ref, replaceKeepFocus, showMore, stateBadge, table, time, uid } from './ui.js';

const OUTCOMES = ['allowed', 'denied', 'warned', 'would_deny', 'break_glass'];
const ACTIONS = [
  'witness.', 'witness.create', 'witness.rotate', 'witness.revoke', 'witness.revoke_version', 'signature.publish',
  'signature.revoke', 'job.fail', 'job.retry', 'token.create', 'token.revoke', 'rule.', 'policy.', 'policy.create',
  'policy.update', 'policy.enable', 'policy.disable', 'policy.delete', 'admission.break_glass', 'workload.untrusted',
];
const LIMIT = 500;
const KEYS = ['actor', 'object', 'action', 'outcome', 'from', 'to'];

function toIso(local) {
  if (!local) return undefined;
  const d = new Date(local); // datetime-local values are local time
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function preview(detail) {
  if (detail === null || detail === undefined) return '';
  if (typeof detail !== 'object') return String(detail);
  const parts = [];
  for (const [k, v] of Object.entries(detail)) {
    if (v === null || v === undefined || typeof v === 'object') continue;
    parts.push(`${k}=${v}`);
    if (parts.join(' ').length > 140) break;
  }
  const text = parts.join(' ');
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

export function auditPage(ctx) {
  const heading = pageHeading('Audit');
  const alert = alertBox();
  const auditHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading the audit log…' }));
  const decisionsHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading admission decisions…' }));
  const inputs = {
    actor: h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'token:ci, signer, alice@example.com' }),
    object: h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'witness, image, namespace…' }),
    action: h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'witness.' }),
    outcome: h('select', null, h('option', { value: '', text: 'Any outcome' }), OUTCOMES.map((o) => h('option', { value: o, text: o.replace(/_/g, ' ') }))),
    from: h('input', { type: 'datetime-local', step: '1' }),
    to: h('input', { type: 'datetime-local', step: '1' }),
  };
  const actionList = h('datalist', { id: uid('actions') }, ACTIONS.map((a) => h('option', { value: a })));
  inputs.action.setAttribute('list', actionList.id);
  let filters = {};
  const PAGE = 100;
  let shown = { audit: PAGE, decisions: PAGE };
  let last = { audit: null, decisions: null };

  const clear = button('Clear', { class: 'btn-secondary' });
  const form = h('form', { class: 'panel filters', role: 'search', 'aria-label': 'Filter the audit log and admission decisions' },
    h('div', { class: 'filter-grid' },
      field({ label: 'Actor', input: inputs.actor, hint: 'Who: part of a token, receiver or user name.' }),
      field({ label: 'Object', input: inputs.object, hint: 'On what: part of a subject, image or workload.' }),
      field({ label: 'Action', input: inputs.action, hint: 'Audit log: an action or its prefix.' }),
      field({ label: 'Outcome', input: inputs.outcome, hint: 'Admission decisions only.' }),
      field({ label: 'From', input: inputs.from }),
      field({ label: 'To', input: inputs.to })),
    actionList,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Filter'), clear));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const params = new URLSearchParams();
    for (const k of KEYS) {
      const v = inputs[k].value.trim();
      if (v) params.set(k, v);
    }
    const qs = params.toString();
    ctx.navigate(`#/audit${qs ? `?${qs}` : ''}`, { replace: false, force: true });
  });
  clear.addEventListener('click', () => {
    for (const k of KEYS) inputs[k].value = '';
    ctx.navigate('#/audit', { force: true });
  });

  async function loadAudit() {
    const action = filters.action || undefined;
    const object = (filters.object || '').toLowerCase();
    const requests = [api.get('/v1/audit', { action, limit: LIMIT })];
    if (filters.object) requests.push(api.get('/v1/audit', { action, subject: filters.object, limit: LIMIT }));
    const answers = await Promise.all(requests);
    const byId = new Map();
    for (const a of answers) for (const e of (Array.isArray(a?.entries) ? a.entries : [])) byId.set(e.id, e);
    let entries = [...byId.values()].sort((a, b) => Number(b.id) - Number(a.id));
    const fromMs = filters.from ? Date.parse(toIso(filters.from)) : null;
    const toMs = filters.to ? Date.parse(toIso(filters.to)) : null;
    const actor = (filters.actor || '').toLowerCase();
    entries = entries.filter((e) => {
      const t = Date.parse(e.at);
      if (fromMs && t < fromMs) return false;
      if (toMs && t > toMs) return false;
      if (actor && !String(e.actor).toLowerCase().includes(actor)) return false;
      if (object && !String(e.subject).toLowerCase().includes(object)) return false;
      return true;
    });
    return entries;
  }

  async function loadDecisions() {
    const res = await api.get('/v1/admission-decisions', { outcome: filters.outcome || undefined, since: toIso(filters.from), limit: LIMIT });
    let decisions = Array.isArray(res?.decisions) ? res.decisions : [];
    const toMs = filters.to ? Date.parse(toIso(filters.to)) : null;
    const actor = (filters.actor || '').toLowerCase();
    const object = (filters.object || '').toLowerCase();
    decisions = decisions.filter((d) => {
      if (toMs && Date.parse(d.at) > toMs) return false;
      if (actor && !String(d.user ?? '').toLowerCase().includes(actor)) return false;
      if (object) {
        const hay = [d.cluster, d.namespace, d.kind, d.name, d.policy, ...(d.images || []).flatMap((i) => [i.image, i.digest])]
          .filter(Boolean).join(' ').toLowerCase();
        if (!hay.includes(object)) return false;
      }
      return true;
    });
    return decisions;
  }

  function moreButton(kind, total, label) {
    return showMore({
      total, shown: shown[kind], step: PAGE, label, key: kind,
      onMore: () => {
        shown[kind] += PAGE;
        if (kind === 'audit') replaceKeepFocus(auditHost, renderAudit(last.audit));
        else replaceKeepFocus(decisionsHost, renderDecisions(last.decisions));
      },
    });
  }

  function renderAudit(all) {
    const entries = all.slice(0, shown.audit);
    return [table({
      caption: 'Audit log',
      captionExtra: ` (${fmtNumber(all.length)} matching, from the newest ${LIMIT})`,
      columns: [{ label: 'Time' }, { label: 'Actor' }, { label: 'Action' }, { label: 'Object', class: 'col-break' }, { label: 'Detail', class: 'col-break' }],
      rows: entries.map((e) => [
        time(e.at),
        e.actor,
        code(e.action),
        { th: ref(e.subject) },
        e.detail && typeof e.detail === 'object' && Object.keys(e.detail).length
          ? [h('span', { class: 'sub', text: preview(e.detail) }),
            h('details', { class: 'json' }, h('summary', null, 'Full detail'), h('pre', null, JSON.stringify(e.detail, null, 2)))]
          : preview(e.detail),
      ]),
      empty: 'No audit entry matches.',
    }), moreButton('audit', all.length, 'audit entries')];
  }

  function renderDecisions(all) {
    const decisions = all.slice(0, shown.decisions);
    return [table({
      caption: 'Admission decisions',
      captionExtra: ` (${fmtNumber(all.length)} matching, from the newest ${LIMIT})`,
      columns: [{ label: 'Time' }, { label: 'Namespace' }, { label: 'Workload' }, { label: 'Policy' }, { label: 'Outcome' }, { label: 'Images', class: 'col-break' }, { label: 'Requested by' }],
      rows: decisions.map((d) => [
        time(d.at),
        [h('span', { text: d.namespace }), h('div', { class: 'sub', text: `cluster ${d.cluster}` })],
        { th: `${d.kind} ${d.name}` },
        [h('span', { text: d.policy }), h('div', { class: 'sub', text: `${d.mode}${d.dry_run ? ', API server dry run' : ''}` })],
        [stateBadge(d.outcome), d.break_glass ? h('div', { class: 'sub', text: `break-glass: ${d.break_glass}` }) : null],
        h('ul', { class: 'plain' }, (d.images || []).map((i) => h('li', null, ref(i.image),
          i.exempt ? h('span', { class: 'sub', text: ' exempt' }) : null,
          i.reason ? h('span', { class: 'sub block', text: `${i.reason}${i.detail ? `: ${i.detail}` : ''}` }) : null))),
        d.user || '—',
      ]),
      empty: 'No admission decision matches.',
    }), moreButton('decisions', all.length, 'admission decisions')];
  }

  async function refresh() {
    const [a, d] = await Promise.allSettled([loadAudit(), loadDecisions()]);
    const errors = [];
    if (a.status === 'fulfilled') { last.audit = a.value; replaceKeepFocus(auditHost, renderAudit(a.value)); }
    else if (!a.reason?.sessionEnded) errors.push(`Could not load the audit log: ${messageOf(a.reason)}`);
    if (d.status === 'fulfilled') { last.decisions = d.value; replaceKeepFocus(decisionsHost, renderDecisions(d.value)); }
    else if (!d.reason?.sessionEnded) errors.push(`Could not load admission decisions: ${messageOf(d.reason)}`);
    auditHost.removeAttribute('aria-busy');
    decisionsHost.removeAttribute('aria-busy');
    if (errors.length) alert.show(errors.join(' ')); else alert.clear();
  }

  return {
    el: h('div', { class: 'page' }, heading,
      h('p', { class: 'lede', text: 'Every change to the control plane, and every admission decision the verifiers reported. Neither can be changed or deleted.' }),
      form, alert.el,
      h('section', { 'aria-labelledby': 'audit-h' }, h('h2', { id: 'audit-h', text: 'Who changed what' }), auditHost),
      h('section', { 'aria-labelledby': 'decisions-h' }, h('h2', { id: 'decisions-h', text: 'What the verifiers decided' }), decisionsHost)),
    heading,
    route(r) {
      filters = {};
      shown = { audit: PAGE, decisions: PAGE };
      for (const k of KEYS) {
        const v = r.query.get(k) || '';
        if (k === 'outcome' && v && !OUTCOMES.includes(v)) continue;
        filters[k] = v;
        inputs[k].value = v;
      }
      return refresh();
    },
    refresh,
  };
}
