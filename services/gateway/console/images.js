// Trusted images: every signature signet made, whether it still counts, and where the image
// runs; untrusted or revoked images running in protected namespaces come first.

import { api, seg } from './api.js';
import {
  h, alertBox, badge, button, confirmDialog, digest, field, fmtNumber, formatTime, messageOf,
  pageHeading, plural, ref, replaceKeepFocus, table, time, uid,
} from './ui.js';

const PROBLEM = { untrusted: ['Untrusted', 'warn'], revoked: ['Revoked', 'bad'], break_glass: ['Break-glass', 'bad'] };

function runsIn(places) {
  if (!places.length) return h('span', { class: 'muted', text: 'Not running' });
  return h('ul', { class: 'plain' }, places.map((p) => h('li', null,
    h('span', { text: `${p.cluster} / ${p.namespace}` }),
    h('span', { class: 'sub', text: ` ${plural(Number(p.containers) || 0, 'container')}` }))));
}

/** Groups running containers by cluster and namespace: [{cluster, namespace, containers}]. */
function placesOf(workloads) {
  const m = new Map();
  for (const w of workloads) {
    const k = `${w.cluster}\u0000${w.running?.namespace}`;
    const e = m.get(k) || { cluster: w.cluster, namespace: w.running?.namespace ?? '', containers: 0 };
    e.containers += 1;
    m.set(k, e);
  }
  return [...m.values()];
}

export function imagesPage(ctx) {
  const heading = pageHeading('Trusted images');
  const alert = alertBox();
  const summary = h('div', { class: 'summary-line' });
  const listHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading images…' }));
  const filterInput = h('input', { type: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: 'repository, digest or witness' });
  let data = null;

  filterInput.addEventListener('input', () => { if (data) replaceKeepFocus(listHost, render()); });

  async function revokeSignature(row, opener) {
    const reason = h('textarea', { rows: '3', maxlength: '500', placeholder: 'Built from an unreviewed branch' });
    const running = row.places.length
      ? h('p', { class: 'callout callout-warn' }, `It runs now in ${row.places.map((p) => `${p.cluster}/${p.namespace}`).join(', ')}. Running containers keep running; their standing becomes revoked, and protected namespaces refuse new Pods of it.`)
      : null;
    const ok = await confirmDialog({
      title: 'Revoke this signature?',
      body: [
        h('p', null, 'The signature of ', ref(`${row.repository}@${row.digest}`), ` by witness ${row.witness} stops counting at once: verifiers refuse it, and signet will not sign this image with that witness again.`),
        running,
        h('p', { class: 'hint', text: 'The signature layer stays in the registry, so verifiers that do not ask signet (cosign with the public key) still accept it.' }),
        field({ label: 'Reason', input: reason, hint: 'Kept on the record and in the audit log.' }),
      ],
      confirmLabel: 'Revoke',
      confirmingLabel: 'Revoking…',
      danger: true,
      opener,
      onConfirm: async () => {
        const why = reason.value.trim() || `revoked in the signet console by ${ctx.session.name}`;
        await api.post(`/v1/signatures/${seg(row.signatureId)}/revoke`, { reason: why });
        ctx.announce(`Signature of ${row.repository}@${row.digest} revoked`);
      },
    });
    if (ok) ctx.refresh(0);
  }

  function buildRows() {
    const { images, signatures, workloads } = data;
    const trustedKey = new Set(images.map((i) => `${i.repository}\u0000${i.digest}\u0000${i.witness}`));
    const imageByKey = new Map(images.map((i) => [`${i.repository}\u0000${i.digest}\u0000${i.witness}`, i]));
    const byDigest = new Map();
    for (const w of workloads) {
      const d = w.running?.digest;
      if (!d) continue;
      if (!byDigest.has(d)) byDigest.set(d, []);
      byDigest.get(d).push(w);
    }

    // Problem groups: running containers whose standing is bad.
    const problems = new Map();
    for (const w of workloads) {
      const st = w.running?.standing;
      if (!PROBLEM[st]) continue;
      const key = `${st}\u0000${w.running.digest || w.running.image}`;
      if (!problems.has(key)) {
        problems.set(key, { kind: 'problem', standing: st, image: w.running.image, digest: w.running.digest || '', protected: false, workloads: [], reasons: new Set(), policies: new Set() });
      }
      const g = problems.get(key);
      g.workloads.push(w);
      if (w.running.policy) { g.protected = true; g.policies.add(w.running.policy); }
      if (w.running.reason) g.reasons.add(w.running.reason);
    }

    const rows = [];
    const usedSig = new Set();
    const problemRows = [...problems.values()].map((g) => {
      const sig = signatures.find((x) => x.digest === g.digest && (x.revoked || !trustedKey.has(`${x.repository}\u0000${x.digest}\u0000${x.witness}`)));
      if (sig) usedSig.add(sig.id);
      return { ...g, places: placesOf(g.workloads), witness: sig?.witness, repository: sig?.repository, signatureId: sig?.id, signed_at: sig?.created_at, revocation: sig?.revoked };
    });
    problemRows.sort((a, b) => Number(b.protected) - Number(a.protected));
    rows.push(...problemRows.filter((r) => r.protected));

    const seen = new Set();
    const sigRows = signatures.filter((sig) => !usedSig.has(sig.id)).map((sig) => {
      const key = `${sig.repository}\u0000${sig.digest}\u0000${sig.witness}`;
      seen.add(key);
      const trusted = !sig.revoked && trustedKey.has(key);
      const img = imageByKey.get(key);
      const places = trusted && Array.isArray(img?.running) ? img.running : placesOf(byDigest.get(sig.digest) || []);
      return { kind: trusted ? 'trusted' : 'revoked', repository: sig.repository, digest: sig.digest, witness: sig.witness, signatureId: sig.id, signed_at: sig.created_at, revocation: sig.revoked, places, keyRevoked: !sig.revoked && !trusted };
    });
    // Trusted images beyond the signatures that were listed.
    for (const img of images) {
      const key = `${img.repository}\u0000${img.digest}\u0000${img.witness}`;
      if (seen.has(key)) continue;
      sigRows.push({ kind: 'trusted', repository: img.repository, digest: img.digest, witness: img.witness, signatureId: null, signed_at: img.signed_at, places: Array.isArray(img.running) ? img.running : [] });
    }
    rows.push(...sigRows.filter((r) => r.kind === 'trusted'), ...sigRows.filter((r) => r.kind !== 'trusted'));
    rows.push(...problemRows.filter((r) => !r.protected));
    return rows;
  }

  function render() {
    const all = buildRows();
    const q = filterInput.value.trim().toLowerCase();
    const rows = q
      ? all.filter((r) => [r.repository, r.image, r.digest, r.witness].some((v) => v && String(v).toLowerCase().includes(q)))
      : all;
    const digestCount = new Map();
    for (const r of rows) if (r.signatureId) digestCount.set(r.digest, (digestCount.get(r.digest) || 0) + 1);

    const columns = [{ label: 'Image and digest', class: 'col-imagedigest' }, { label: 'Witness' }, { label: 'Status', class: 'col-status' }, { label: 'Runs in' }, { label: 'Signed' }];
    if (ctx.canWrite) columns.push({ label: 'Actions', class: 'col-actions' });
    const cells = rows.map((r) => {
      let status;
      if (r.kind === 'problem') {
        const [text, kind] = PROBLEM[r.standing];
        status = [badge(text, kind)];
        status.push(h('div', { class: 'sub', text: r.protected ? `in protected namespaces (policy ${[...r.policies].join(', ')})` : 'no policy protects its namespace' }));
        if (r.reasons.size) status.push(h('div', { class: 'sub', text: [...r.reasons][0] }));
      } else if (r.kind === 'trusted') {
        status = badge('Trusted Image', 'ok');
      } else {
        status = [badge('Revoked', 'bad')];
        if (r.revocation) status.push(h('div', { class: 'sub', text: `by ${r.revocation.by ?? '?'}: ${r.revocation.reason ?? ''}` }));
        else if (r.keyRevoked) status.push(h('div', { class: 'sub', text: 'its witness or key version was revoked' }));
      }
      const name = r.repository || r.image || '';
      const row = [
        { th: [ref(name), h('span', { class: 'block' }, r.digest ? digest(r.digest) : h('span', { class: 'muted', text: 'digest unknown' }))] },
        r.witness || h('span', { class: 'muted', text: '—' }),
        status,
        runsIn(r.places || []),
        time(r.signed_at),
      ];
      if (ctx.canWrite) {
        if (r.signatureId && !r.revocation && r.kind !== 'problem') {
          const label = digestCount.get(r.digest) > 1 ? `Revoke signature ${r.digest} by ${r.witness}` : `Revoke signature ${r.digest}`;
          const b = button('Revoke signature', { class: 'btn-small btn-danger btn-wrap', 'aria-label': label, dataset: { focusKey: `revoke:${r.signatureId}` } });
          b.addEventListener('click', () => revokeSignature(r, b));
          row.push(b);
        } else {
          row.push('');
        }
      }
      return row;
    });
    return table({
      caption: 'Trusted images',
      captionExtra: q ? ` (${rows.length} of ${all.length} match “${filterInput.value.trim()}”)` : null,
      columns,
      rows: cells,
      empty: q ? 'No image matches the filter.' : 'No signed images yet.',
      rowClass: (i) => (rows[i].kind === 'problem' && rows[i].protected ? 'row-alert' : rows[i].kind !== 'trusted' ? 'row-muted' : undefined),
    });
  }

  function renderSummary() {
    const rows = buildRows();
    const trusted = rows.filter((r) => r.kind === 'trusted').length;
    const revoked = rows.filter((r) => r.kind === 'revoked').length;
    const bad = rows.filter((r) => r.kind === 'problem' && r.protected).length;
    const parts = [
      h('li', null, h('strong', { text: fmtNumber(trusted) }), ` valid ${trusted === 1 ? 'signature' : 'signatures'}`),
      h('li', null, h('strong', { text: fmtNumber(revoked) }), ` revoked ${revoked === 1 ? 'signature' : 'signatures'}`),
      h('li', { class: bad ? 'warn' : undefined }, h('strong', { text: fmtNumber(bad) }), ` ${bad === 1 ? 'image without valid signatures runs' : 'images without valid signatures run'} in protected namespaces`),
    ];
    const clusters = Array.isArray(data.clusters) ? data.clusters : [];
    for (const c of clusters) {
      parts.push(h('li', { class: c.stale ? 'stale' : undefined }, `Cluster ${c.cluster}: inventory reported ${formatTime(c.reported_at)}`, c.stale ? ' — stale: its verifier has not reported for a while' : ''));
    }
    return h('ul', { class: 'plain summary-list' }, parts);
  }

  async function refresh() {
    try {
      const [imgs, sigs, wls] = await Promise.all([
        api.get('/v1/images', { running: 'true', limit: 1000 }),
        api.get('/v1/signatures', { limit: 1000 }),
        api.get('/v1/workloads', { limit: 5000 }),
      ]);
      data = {
        images: Array.isArray(imgs?.images) ? imgs.images : [],
        signatures: Array.isArray(sigs?.signatures) ? sigs.signatures : [],
        workloads: Array.isArray(wls?.workloads) ? wls.workloads : [],
        clusters: Array.isArray(wls?.clusters) ? wls.clusters : [],
      };
      alert.clear();
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Could not load images: ${messageOf(err)}`);
      listHost.removeAttribute('aria-busy');
      return;
    }
    listHost.removeAttribute('aria-busy');
    replaceKeepFocus(summary, renderSummary());
    replaceKeepFocus(listHost, render());
  }

  const filterId = uid('filter');
  filterInput.id = filterId;
  return {
    el: h('div', { class: 'page' }, heading,
      h('p', { class: 'lede', text: 'Every image signet signed, whether its signature still counts, and where it runs. Untrusted or revoked images running in protected namespaces are listed first.' }),
      summary,
      h('div', { class: 'toolbar' }, h('div', { class: 'field field-inline' }, h('label', { for: filterId, text: 'Filter images' }), filterInput)),
      alert.el, listHost),
    heading,
    route() { return refresh(); },
    refresh,
  };
}
