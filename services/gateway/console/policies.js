// Security policies: list, create (disabled), the enable switch behind a warning, and a
// policy's impact: decisions over time (SVG chart + table), what would have been denied,
// and what runs now that enforcing it would stop.

import { api, seg } from './api.js';
import {
  h, alertBox, button, code, confirmDialog, field, fmtNumber, formatTime, messageOf,
  onOffBadge, pageHeading, ref, replaceKeepFocus, showMore, splitList, stateBadge, table, time, uid,
} from './ui.js';
import { decisionChart } from './chart.js';

const FAILING = new Set(['denied', 'warned', 'would_deny', 'break_glass']);

const PERIODS = [
  { value: '24h', label: 'Last 24 hours', ms: 24 * 3600e3 },
  { value: '7d', label: 'Last 7 days', ms: 7 * 24 * 3600e3 },
  { value: '30d', label: 'Last 30 days', ms: 30 * 24 * 3600e3 },
  { value: 'all', label: 'All time', ms: null },
];

// ----- namespaces and label selectors -----

/** "prod, staging-*" -> "{prod,staging-*}" (a glob alternation); one entry stays as it is. */
export function namespacesToGlob(text) {
  const list = splitList(text);
  if (!list.length) throw new Error('Give at least one namespace or glob, such as shop or team-*.');
  if (list.length === 1) return list[0];
  if (list.some((x) => /[{}]/.test(x))) throw new Error('With several namespaces, write each as a plain name or glob, without braces.');
  return `{${list.join(',')}}`;
}

/** The reverse, for display: "{prod,staging-*}" -> "prod, staging-*". */
export function displayNamespaces(ns) {
  const m = /^\{([^{}]*)\}$/.exec(String(ns ?? ''));
  return m ? m[1].split(',').join(', ') : String(ns ?? '');
}

function splitTopLevel(text) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '(') depth += 1;
    else if (c === ')') {
      depth -= 1;
      if (depth < 0) throw new Error(`"${text}": a ')' without its '('`);
    } else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new Error(`"${text}": a '(' without its ')'`);
  parts.push(text.slice(start));
  return parts;
}

/** kubectl -l syntax -> a Kubernetes LabelSelector (the same rules as the CLI). */
export function parseSelector(text) {
  const matchLabels = {};
  const matchExpressions = [];
  for (const raw of splitTopLevel(text)) {
    const term = raw.trim();
    if (!term) throw new Error(`"${text}": an empty requirement (two commas in a row?)`);
    const open = term.indexOf('(');
    if (open >= 0) {
      if (!term.endsWith(')')) throw new Error(`"${term}": a value set must end with ')'`);
      const head = term.slice(0, open).trim().split(/\s+/);
      if (head.length !== 2) throw new Error(`"${term}": write key in (a,b) or key notin (a,b)`);
      const op = { in: 'In', notin: 'NotIn' }[head[1]];
      if (!op) throw new Error(`"${term}": "${head[1]}" is not in or notin`);
      const inner = term.slice(open + 1, -1);
      const values = inner.trim() ? inner.split(',').map((v) => v.trim()) : [];
      matchExpressions.push({ key: head[0], operator: op, values });
    } else if (term.includes('!=')) {
      const i = term.indexOf('!=');
      matchExpressions.push({ key: term.slice(0, i).trim(), operator: 'NotIn', values: [term.slice(i + 2).trim()] });
    } else if (term.includes('=')) {
      const i = term.indexOf('=');
      let v = term.slice(i + 1);
      if (v.startsWith('=')) v = v.slice(1);
      matchLabels[term.slice(0, i).trim()] = v.trim();
    } else if (term.startsWith('!')) {
      matchExpressions.push({ key: term.slice(1).trim(), operator: 'DoesNotExist' });
    } else if (term.split(/\s+/).length === 1) {
      matchExpressions.push({ key: term, operator: 'Exists' });
    } else {
      throw new Error(`"${term}" is not a label requirement`);
    }
  }
  const sel = {};
  if (Object.keys(matchLabels).length) sel.matchLabels = matchLabels;
  if (matchExpressions.length) sel.matchExpressions = matchExpressions;
  return sel;
}

/** A LabelSelector in kubectl -l syntax. */
export function selectorText(sel) {
  if (!sel || typeof sel !== 'object') return '';
  const parts = [];
  for (const [k, v] of Object.entries(sel.matchLabels || {})) parts.push(`${k}=${v}`);
  for (const r of sel.matchExpressions || []) {
    const vals = Array.isArray(r.values) ? r.values.join(',') : '';
    if (r.operator === 'In') parts.push(`${r.key} in (${vals})`);
    else if (r.operator === 'NotIn') parts.push(`${r.key} notin (${vals})`);
    else if (r.operator === 'Exists') parts.push(String(r.key));
    else if (r.operator === 'DoesNotExist') parts.push(`!${r.key}`);
  }
  return parts.join(', ');
}

function modeEffect(mode) {
  if (mode === 'enforce') return 'refuses every workload whose images lack the required signatures';
  if (mode === 'warn') return 'admits workloads whose images lack the required signatures, with a warning';
  return 'admits everything and records what it would have denied';
}

export function policiesPage(ctx) {
  const heading = pageHeading('Security policies');
  const alert = alertBox();
  const listHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading policies…' }));
  const detailHost = h('div', { class: 'detail-host' });
  const toolbar = h('div', { class: 'toolbar' });
  const formHost = h('div');
  let policies = [];
  let route = null;
  let focusDetail = false;
  let returnFocus = null; // after closing a detail: the name link that opened it
  let period = '7d';
  let deniedShown = 25;

  const createForm = ctx.canWrite ? buildCreateForm() : null;
  if (createForm) {
    const toggle = button('New policy', { class: 'btn-primary', 'aria-expanded': 'false', 'aria-controls': createForm.form.id });
    toggle.addEventListener('click', () => (createForm.form.hidden ? createForm.open() : createForm.close()));
    createForm.toggle = toggle;
    toolbar.append(toggle);
    formHost.append(createForm.form);
  }

  function buildCreateForm() {
    const titleId = uid('new-policy');
    const formAlert = alertBox();
    const name = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '63' });
    const clusterList = h('datalist', { id: uid('clusters') });
    const cluster = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', list: clusterList.id });
    const namespaces = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'shop, team-*' });
    const selector = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'signet.dev/enforce=true' });
    const witnessBox = h('div', { class: 'checkbox-list' }, h('p', { class: 'loading', text: 'Loading witnesses…' }));
    const require = h('input', { type: 'number', min: '1', step: '1', value: '1', required: true, inputmode: 'numeric' });
    const mode = h('select', null, ['enforce', 'warn', 'dry-run'].map((m) => h('option', { value: m, text: m })));
    const note = h('input', { type: 'text', autocomplete: 'off' });
    const exemptions = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'registry.k8s.io/pause:*' });
    const requireDigest = h('input', { type: 'checkbox' });
    const breakGlass = h('input', { type: 'checkbox' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create policy');
    const cancel = button('Cancel', { class: 'btn-secondary' });
    const legendId = uid('legend');
    const form = h('form', { id: uid('policy-form'), class: 'panel form', hidden: true, 'aria-labelledby': titleId },
      h('h2', { id: titleId, text: 'New policy' }),
      h('p', { class: 'hint', text: 'New policies are created disabled: check their impact, then switch them on.' }),
      h('div', { class: 'form-grid' },
        field({ label: 'Name', input: name }),
        h('div', { class: 'field' }, h('label', { for: (cluster.id = uid('cluster')), text: 'Cluster' }), cluster, clusterList,
          h('p', { class: 'hint', id: (cluster.dataset.hint = uid('hint')), text: 'The cluster name its verifier reports with.' })),
        field({ label: 'Namespaces', input: namespaces, hint: 'Comma separated names or globs (team-*).' }),
        field({ label: 'Namespace selector', input: selector, hint: 'Optional, kubectl syntax: env=prod,tier in (web,api),!legacy.' })),
      h('fieldset', { class: 'fieldset' },
        h('legend', { id: legendId, text: 'Witnesses' }), witnessBox),
      h('div', { class: 'form-grid' },
        field({ label: 'Required signatures', input: require, hint: 'How many of the chosen witnesses must have signed (N of M).' }),
        field({ label: 'Mode', input: mode, hint: 'enforce denies, warn admits with a warning, dry-run only records.' }),
        field({ label: 'Note', input: note })),
      h('details', { class: 'more' },
        h('summary', null, 'More options'),
        h('div', { class: 'form-grid' },
          field({ label: 'Exempt images', input: exemptions, hint: 'Comma separated image patterns that need no signature.' }),
          h('div', { class: 'field field-check' }, requireDigest, h('label', { for: (requireDigest.id = uid('rd')), text: 'Require digests (refuse tag references)' })),
          h('div', { class: 'field field-check' }, breakGlass, h('label', { for: (breakGlass.id = uid('bg')), text: 'Allow break-glass' })))),
      formAlert.el,
      h('div', { class: 'form-actions' }, submit, cancel));
    cluster.setAttribute('aria-describedby', cluster.dataset.hint);

    function syncRequireMax() {
      const n = witnessBox.querySelectorAll('input:checked').length;
      require.max = String(Math.max(1, n));
    }
    witnessBox.addEventListener('change', syncRequireMax);

    async function load() {
      try {
        const [ws, wl] = await Promise.all([
          api.get('/v1/witnesses'),
          api.get('/v1/workloads', { limit: 1 }).catch((e) => { if (e.sessionEnded) throw e; return null; }),
        ]);
        const active = (ws?.witnesses || []).filter((w) => w.state === 'active');
        if (!active.length) {
          witnessBox.replaceChildren(h('p', null, 'There is no active witness. ', h('a', { href: '#/witnesses', text: 'Create a witness' }), ' first.'));
        } else {
          witnessBox.replaceChildren(...active.map((w) => {
            const cb = h('input', { type: 'checkbox', name: 'witnesses', value: w.name, id: uid('w') });
            return h('div', { class: 'check' }, cb, h('label', { for: cb.id, text: w.name }));
          }));
        }
        clusterList.replaceChildren(...(wl?.clusters || []).map((c) => h('option', { value: String(c.cluster) })));
        syncRequireMax();
      } catch (err) {
        if (!err.sessionEnded) witnessBox.replaceChildren(h('p', { class: 'note-error', text: `Could not list witnesses: ${messageOf(err)}` }));
      }
    }

    const self = {
      form,
      toggle: null,
      open() {
        form.hidden = false;
        self.toggle?.setAttribute('aria-expanded', 'true');
        name.focus();
        load();
      },
      close() {
        form.hidden = true;
        form.reset();
        for (const d of form.querySelectorAll('details')) d.open = false;
        formAlert.clear();
        self.toggle?.setAttribute('aria-expanded', 'false');
        self.toggle?.focus();
      },
    };
    cancel.addEventListener('click', () => self.close());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      formAlert.clear();
      const chosen = [...witnessBox.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value);
      const body = {
        name: name.value.trim(),
        cluster: cluster.value.trim(),
        witnesses: chosen,
        require: Number.parseInt(require.value, 10) || 1,
        mode: mode.value,
        note: note.value,
        enabled: false,
      };
      try {
        body.namespace = namespacesToGlob(namespaces.value);
        if (selector.value.trim()) body.namespace_selector = parseSelector(selector.value.trim());
      } catch (err) {
        formAlert.show(err.message);
        return;
      }
      const ex = splitList(exemptions.value);
      if (ex.length) body.exemptions = ex;
      if (requireDigest.checked) body.require_digest = true;
      if (breakGlass.checked) body.allow_break_glass = true;
      if (!chosen.length) {
        formAlert.show('Choose at least one witness.');
        witnessBox.querySelector('input')?.focus();
        return;
      }
      submit.disabled = true;
      submit.textContent = 'Creating…';
      try {
        const p = await api.post('/v1/policies', body);
        ctx.announce(`Policy ${p?.name ?? body.name} created, disabled`);
        self.close();
        ctx.refresh(0);
      } catch (err) {
        if (!err.sessionEnded) formAlert.show(err);
      } finally {
        submit.disabled = false;
        submit.textContent = 'Create policy';
      }
    });
    return self;
  }

  // ----- enable / disable -----
  async function setEnabled(p, sw, stateText) {
    if (!sw.checked) {
      // Turning off: no confirmation, it only lifts the policy.
      sw.disabled = true;
      try {
        await api.patch(`/v1/policies/${seg(p.name)}`, { enabled: false });
        stateText.replaceWith(onOffBadge(false));
        ctx.announce(`Policy ${p.name} disabled`);
        ctx.refresh(0);
      } catch (err) {
        sw.checked = true;
        if (!err.sessionEnded) alert.show(`Could not disable ${p.name}: ${messageOf(err)}`);
      } finally {
        sw.disabled = false;
      }
      return;
    }
    sw.checked = false; // stays off until confirmed
    const impactNote = h('p', { class: 'muted', 'aria-live': 'polite', text: 'Checking what it would do…' });
    api.get(`/v1/policies/${seg(p.name)}/impact`).then((rep) => {
      const imp = rep?.impact || {};
      const run = rep?.running || {};
      impactNote.classList.remove('muted');
      impactNote.textContent = `So far ${fmtNumber(imp.decisions)} admission decisions were made under it, of which ${fmtNumber(imp.would_block)} would have been blocked. `
        + `${fmtNumber(run.containers)} ${Number(run.containers) === 1 ? 'container runs' : 'containers run'} in its namespaces now; enforcing it would stop ${fmtNumber(run.would_stop)} of them if their Pods were recreated.`;
    }).catch(() => { impactNote.textContent = 'Its impact could not be read.'; });
    const ok = await confirmDialog({
      title: `Enable ${p.name}?`,
      body: [
        h('p', null, `Verifiers in cluster ${p.cluster} apply it at once to namespaces ${displayNamespaces(p.namespace)}`,
          p.namespace_selector ? ` whose labels match ${selectorText(p.namespace_selector)}` : '',
          `. In ${p.mode} mode it ${modeEffect(p.mode)}.`),
        h('p', { class: 'callout callout-warn' }, h('strong', { text: 'If you have not done so yet, test it in a non-production namespace first' }),
          ': run it in dry-run mode there and check its impact before it guards production.'),
        impactNote,
      ],
      confirmLabel: 'Enable',
      confirmingLabel: 'Enabling…',
      opener: sw,
      onConfirm: async () => {
        await api.patch(`/v1/policies/${seg(p.name)}`, { enabled: true });
      },
    });
    if (ok) {
      sw.checked = true;
      if (stateText.isConnected) stateText.replaceWith(onOffBadge(true));
      ctx.announce(`Policy ${p.name} enabled`);
      ctx.refresh(0);
    }
  }

  // ----- list -----
  function renderList() {
    const columns = [{ label: 'Name' }, { label: 'Cluster' }, { label: 'Namespaces' }, { label: 'Witnesses' }, { label: 'Mode' }, { label: 'Enabled' }, { label: 'Updated' }];
    const rows = policies.map((p) => {
      const ws = Array.isArray(p.witnesses) ? p.witnesses : [];
      const nsCell = [h('span', { text: displayNamespaces(p.namespace) })];
      if (p.namespace_selector && selectorText(p.namespace_selector)) {
        nsCell.push(h('div', { class: 'sub' }, 'labels: ', code(selectorText(p.namespace_selector))));
      }
      let enabledCell;
      if (ctx.canWrite) {
        const sw = h('input', { type: 'checkbox', role: 'switch', class: 'switch', 'aria-label': `Enabled: ${p.name}`, checked: Boolean(p.enabled), dataset: { focusKey: `enabled:${p.name}` } });
        let stateText = onOffBadge(Boolean(p.enabled));
        sw.addEventListener('change', () => {
          // The badge node may have been swapped; find the current one next to the switch.
          stateText = sw.parentElement?.querySelector('.badge') || stateText;
          setEnabled(p, sw, stateText);
        });
        enabledCell = h('div', { class: 'switch-cell' }, sw, stateText);
      } else {
        enabledCell = onOffBadge(Boolean(p.enabled));
      }
      return [
        { th: h('a', { class: 'name', href: `#/policies/${encodeURIComponent(p.name)}`, dataset: { focusKey: `name:${p.name}` }, text: p.name }) },
        p.cluster,
        nsCell,
        [h('span', { text: ws.join(', ') }), h('div', { class: 'sub', text: `${p.require} of ${ws.length} required` })],
        stateBadge(p.mode),
        enabledCell,
        time(p.updated_at),
      ];
    });
    return table({ caption: 'Security policies', columns, rows, empty: ctx.canWrite ? 'No security policies yet. Create one with “New policy”.' : 'No security policies yet.' });
  }

  // ----- impact -----
  async function renderImpact(name) {
    const p = policies.find((x) => x.name === name);
    const titleId = 'policy-impact-title';
    if (!p) {
      return h('section', { class: 'panel detail', 'aria-labelledby': titleId },
        h('h2', { id: titleId, tabindex: '-1', text: `Impact of ${name}` }),
        h('p', null, 'There is no policy of that name. ', h('a', { href: '#/policies', text: 'Back to all policies' })));
    }
    const per = PERIODS.find((x) => x.value === period) || PERIODS[1];
    const now = Date.now();
    const since = per.ms ? new Date(now - per.ms).toISOString() : undefined;
    const [report, decisionList] = await Promise.all([
      api.get(`/v1/policies/${seg(name)}/impact`, { since }),
      api.get('/v1/admission-decisions', { policy: name, since, limit: 1000 }),
    ]);
    const imp = report?.impact || {};
    const run = report?.running || {};
    const decisions = Array.isArray(decisionList?.decisions) ? decisionList.decisions : [];
    const failing = decisions.filter((d) => FAILING.has(d.outcome));

    const periodSel = h('select', { dataset: { focusKey: `period:${name}` } }, PERIODS.map((x) => h('option', { value: x.value, text: x.label, selected: x.value === per.value })));
    periodSel.addEventListener('change', () => {
      period = periodSel.value;
      deniedShown = 25;
      ctx.refresh(0);
    });

    const stat = (label, value, kind) => h('div', { class: ['stat', kind ? `stat-${kind}` : null] }, h('dt', { text: label }), h('dd', { text: value }));
    const outcomes = Object.entries(imp.outcomes || {}).map(([k, v]) => `${k.replace(/_/g, ' ')} ${fmtNumber(v)}`).join(', ');
    const reasons = Object.entries(imp.reasons || {}).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(', ');
    const nss = Object.entries(imp.namespaces || {}).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(', ');
    const standings = Object.entries(run.standings || {}).map(([k, v]) => `${k.replace(/_/g, ' ')} ${fmtNumber(v)}`).join(', ');

    const shown = failing.slice(0, deniedShown);
    const deniedTable = table({
      caption: 'Would have been denied',
      captionExtra: failing.length ? ` (${fmtNumber(failing.length)} in this period${decisions.length >= 1000 ? ', among the newest 1,000 decisions' : ''})` : null,
      columns: [{ label: 'Time' }, { label: 'Namespace' }, { label: 'Workload' }, { label: 'Images' }, { label: 'Outcome' }, { label: 'Requested by' }],
      rows: shown.map((d) => [
        time(d.at),
        [h('span', { text: d.namespace }), h('div', { class: 'sub', text: `cluster ${d.cluster}` })],
        `${d.kind} ${d.name}`,
        h('ul', { class: 'plain' }, (d.images || []).filter((i) => i.reason || !i.exempt).map((i) => h('li', null, ref(i.image), i.reason ? h('span', { class: 'sub block', text: `${i.reason}${i.detail ? `: ${i.detail}` : ''}` }) : null))),
        stateBadge(d.outcome),
        d.user || '—',
      ]),
      empty: 'Nothing would have been denied in this period.',
    });

    const topImages = Array.isArray(imp.top_images) ? imp.top_images : [];
    const runImages = Array.isArray(run.images) ? run.images : [];

    return h('section', { class: 'panel detail', 'aria-labelledby': titleId },
      h('div', { class: 'detail-head' },
        h('h2', { id: titleId, tabindex: '-1', text: `Impact of ${p.name}` }),
        h('a', { href: '#/policies', class: 'back-link', text: 'Close' })),
      h('p', null, stateBadge(p.mode), ' ', onOffBadge(p.enabled), ' ',
        `Cluster ${p.cluster}, namespaces ${displayNamespaces(p.namespace)}`,
        p.namespace_selector && selectorText(p.namespace_selector) ? ` with labels ${selectorText(p.namespace_selector)}` : '',
        `; ${p.require} of ${(p.witnesses || []).join(', ')} must have signed.`,
        p.note ? h('span', { class: 'sub', text: ` Note: ${p.note}` }) : null),
      h('div', { class: 'toolbar' }, field({ label: 'Period', input: periodSel })),
      h('dl', { class: 'stats' },
        stat('Admission decisions', fmtNumber(imp.decisions)),
        stat('Would have been blocked', fmtNumber(imp.would_block), imp.would_block ? 'bad' : null),
        stat('Containers running now', fmtNumber(run.containers)),
        stat('Enforcing would stop', fmtNumber(run.would_stop), run.would_stop ? 'bad' : null)),
      h('ul', { class: 'plain facts-line' },
        outcomes ? h('li', null, h('strong', { text: 'Outcomes: ' }), outcomes) : null,
        reasons ? h('li', null, h('strong', { text: 'Reasons: ' }), reasons) : null,
        nss ? h('li', null, h('strong', { text: 'Namespaces: ' }), nss) : null,
        standings ? h('li', null, h('strong', { text: 'Running now by standing: ' }), standings) : null,
        run.reported_at ? h('li', null, h('strong', { text: 'Inventory reported: ' }), formatTime(run.reported_at)) : h('li', { class: 'muted', text: 'The cluster has not reported an inventory yet.' })),
      h('h3', { text: 'Decisions over time' }),
      decisionChart({ decisions, sinceMs: since ? Date.parse(since) : null, nowMs: now, policy: p.name, truncated: decisions.length >= 1000, isFailing: (d) => FAILING.has(d.outcome) }),
      h('h3', { text: 'What it would have denied' }),
      deniedTable,
      showMore({
        total: failing.length, shown: shown.length, step: 25, label: 'denied decisions', key: `denied:${name}`,
        onMore: () => { deniedShown += 25; ctx.refresh(0); },
      }),
      topImages.length ? table({
        caption: 'Images most often blocked',
        columns: [{ label: 'Image' }, { label: 'Reason' }, { label: 'Decisions' }],
        rows: topImages.map((i) => [ref(i.image), i.reason, fmtNumber(i.count)]),
      }) : null,
      runImages.length ? table({
        caption: 'Images running in its namespaces',
        columns: [{ label: 'Image' }, { label: 'Containers' }],
        rows: runImages.map((i) => [ref(i.image), fmtNumber(i.containers)]),
      }) : null);
  }

  async function refresh() {
    let list;
    try {
      list = await api.get('/v1/policies');
      alert.clear();
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Could not load policies: ${messageOf(err)}`);
      listHost.removeAttribute('aria-busy');
      return;
    }
    policies = Array.isArray(list?.policies) ? list.policies : [];
    listHost.removeAttribute('aria-busy');
    replaceKeepFocus(listHost, renderList());
    const selected = route?.rest?.[0];
    if (selected) {
      let detail;
      try {
        detail = await renderImpact(selected);
      } catch (err) {
        if (err.sessionEnded) return;
        detail = h('section', { class: 'panel detail' }, h('h2', { tabindex: '-1', text: `Impact of ${selected}` }), h('p', { role: 'alert', class: 'alert', text: `Could not load its impact: ${messageOf(err)}` }));
      }
      replaceKeepFocus(detailHost, detail);
      if (focusDetail) {
        focusDetail = false;
        detailHost.querySelector('h2')?.focus();
      }
    } else {
      const hadFocus = detailHost.contains(document.activeElement) || document.activeElement === document.body;
      detailHost.replaceChildren();
      if (returnFocus && hadFocus) listHost.querySelector(`[data-focus-key="${CSS.escape(returnFocus)}"]`)?.focus();
    }
    returnFocus = null;
  }

  return {
    el: h('div', { class: 'page' }, heading,
      h('p', { class: 'lede', text: 'A security policy makes the verifier of a cluster require signatures from its witnesses before workloads start in its namespaces.' }),
      toolbar, formHost, alert.el, listHost, detailHost),
    heading,
    route(r) {
      const changed = (route?.rest?.[0] || '') !== (r.rest?.[0] || '');
      if (!r.rest?.[0] && route?.rest?.[0]) returnFocus = `name:${route.rest[0]}`;
      route = r;
      if (changed) deniedShown = 25;
      focusDetail = Boolean(r.rest?.[0]) && changed;
      return refresh();
    },
    refresh,
  };
}

