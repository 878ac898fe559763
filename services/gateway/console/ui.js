// DOM helpers for the signet console. Everything the API returns is treated as hostile:
// values only ever reach the page as text nodes or attribute values, never as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

let idCounter = 0;
/** A fresh element id with a readable prefix. */
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

function append(el, child) {
  if (child === null || child === undefined || child === false || child === true) return;
  if (Array.isArray(child)) {
    for (const c of child) append(el, c);
  } else if (child instanceof Node) {
    el.appendChild(child);
  } else {
    el.appendChild(document.createTextNode(String(child)));
  }
}

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'required', 'readOnly', 'multiple', 'open', 'indeterminate']);

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false && !PROPS.has(k)) continue;
    if (k === 'class') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    } else if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (PROPS.has(k)) {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

/** createElement with attributes (see applyAttrs) and children (nodes, strings, arrays). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = String(v);
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

/** Replaces an element's children, keeping keyboard focus on the "same" control. */
export function replaceKeepFocus(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset?.focusKey : null;
  container.replaceChildren();
  append(container, children);
  if (key) {
    const keyed = [...container.querySelectorAll('[data-focus-key]')];
    // The same control, else another control for the same object ("rotate:prod" ->
    // "name:prod"), else the table region itself, so focus never falls to <body>.
    const object = key.slice(key.indexOf(':') + 1);
    const again = keyed.find((e) => e.dataset.focusKey === key)
      || keyed.find((e) => e.dataset.focusKey.slice(e.dataset.focusKey.indexOf(':') + 1) === object)
      || container.querySelector('.table-wrap, [tabindex]');
    if (again) again.focus({ preventScroll: true });
  }
}

// ---------- formatting ----------

const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: '2-digit' });
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return dateTimeFmt.format(d);
}

/** <time> showing local time (date above clock), with the exact value as its datetime. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted', text: '—' });
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', { text: String(iso) });
  return h('time', { datetime: String(iso), class: 'when', title: d.toISOString() },
    h('span', { class: 'when-date', text: dateFmt.format(d) }), ' ',
    h('span', { class: 'when-clock', text: clockFmt.format(d) }));
}

export function code(text, cls) {
  return h('code', { class: cls, text: text ?? '' });
}

/** An image reference or URI in <code>, breakable after each "/" and before "@" (<wbr>). */
export function ref(text) {
  const el = h('code', { class: 'ref' });
  const parts = String(text ?? '').split(/(?<=\/)|(?=@)/);
  parts.forEach((part, i) => {
    if (i) el.append(document.createElement('wbr'));
    // A digest has no break opportunity of its own: let it wrap anywhere.
    el.append(part.startsWith('@') ? h('span', { class: 'ref-digest', text: part }) : document.createTextNode(part));
  });
  return el;
}

/** A fingerprint or digest cut to its first 12 hex digits (the whole in its title), for tables. */
export function shortDigest(text) {
  const full = String(text ?? '');
  const cut = full.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]+$/, '$1…');
  return h('code', { class: 'digest', title: full, text: cut });
}

export function digest(text) {
  return h('code', { class: 'digest', text: text ?? '' });
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many ?? `${one}s`}`;
}

export function fmtNumber(n) {
  return Number(n ?? 0).toLocaleString();
}

// ---------- badges ----------

/** kinds: ok, bad, warn, neutral, info */
export function badge(text, kind = 'neutral') {
  return h('span', { class: ['badge', `badge-${kind}`], text });
}

const STATE_KINDS = {
  active: 'ok', revoked: 'bad', succeeded: 'ok', failed: 'bad', queued: 'info', running: 'info',
  allowed: 'ok', denied: 'bad', warned: 'warn', would_deny: 'warn', break_glass: 'bad',
  trusted: 'ok', exempt: 'neutral', untrusted: 'warn',
  enforce: 'bad', warn: 'warn', 'dry-run': 'info',
};

export function stateBadge(state) {
  const t = String(state ?? '');
  const label = t.replace(/_/g, ' ');
  return badge(label.charAt(0).toUpperCase() + label.slice(1), STATE_KINDS[t] ?? 'neutral');
}

export function onOffBadge(on) {
  return badge(on ? 'On' : 'Off', on ? 'ok' : 'neutral');
}

// ---------- page structure ----------

export function pageHeading(text) {
  return h('h1', { tabindex: '-1', class: 'page-title', text });
}

/** A role="alert" box that stays hidden while empty. */
export function alertBox() {
  const el = h('div', { role: 'alert', class: 'alert', hidden: true });
  return {
    el,
    show(message) {
      const msg = messageOf(message);
      if (el.textContent !== msg || el.hidden) {
        el.textContent = msg;
        el.hidden = false;
      }
    },
    clear() {
      if (!el.hidden) {
        el.hidden = true;
        el.textContent = '';
      }
    },
  };
}

export function messageOf(err) {
  if (err == null) return '';
  if (typeof err === 'string') return err;
  if (err.detail) return err.status ? `${err.detail} (${err.status})` : err.detail;
  return err.message || String(err);
}

/**
 * A table inside a focusable, labelled scroll region.
 * columns: [{label, class?}]; rows: arrays of cells (Node | string | {th: content} | {cell, class}).
 */
export function table({ caption, captionExtra, columns, rows, empty, rowKey, rowClass }) {
  const capId = uid('cap');
  const thead = h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class, text: c.label }))));
  const tbody = h('tbody');
  if (!rows.length) {
    tbody.append(h('tr', { class: 'empty-row' }, h('td', { colspan: String(columns.length) }, empty || 'Nothing to show.')));
  }
  rows.forEach((cells, i) => {
    const tr = h('tr', { class: rowClass ? rowClass(i) : undefined });
    if (rowKey) tr.dataset.key = rowKey(i);
    cells.forEach((cell, j) => {
      const cls = columns[j]?.class;
      if (cell && typeof cell === 'object' && !(cell instanceof Node) && !Array.isArray(cell) && 'th' in cell) {
        tr.append(h('th', { scope: 'row', class: cls }, cell.th));
      } else {
        tr.append(h('td', { class: cls }, cell));
      }
    });
    tbody.append(tr);
  });
  // The table's name is the caption's title alone (tests and people find tables by it);
  // the extra words (counts, filters) describe it.
  const extraId = captionExtra ? uid('cap-extra') : undefined;
  const t = h('table', { class: 'data', 'aria-labelledby': capId, 'aria-describedby': extraId },
    h('caption', null, h('span', { id: capId }, caption), captionExtra ? h('span', { class: 'caption-extra', id: extraId }, captionExtra) : null),
    thead, tbody);
  return h('div', { class: 'table-wrap', role: 'region', 'aria-labelledby': capId, tabindex: '0' }, t);
}

/** "Showing 25 of 80. [Show 25 more …]" under a long table; null when everything shows. */
export function showMore({ total, shown, step, label, key, onMore }) {
  if (total <= shown) return null;
  const b = h('button', { type: 'button', class: 'btn btn-secondary btn-small', dataset: { focusKey: `more:${key}` } },
    `Show ${Math.min(step, total - shown)} more ${label}`);
  b.addEventListener('click', onMore);
  return h('div', { class: 'more-rows' }, h('span', { class: 'muted', text: `Showing ${shown.toLocaleString()} of ${total.toLocaleString()}.` }), b);
}

/** A labelled form control: returns {row, input}. */
export function field({ label, input, hint, id, inline }) {
  const inputId = id || input.id || uid('f');
  input.id = inputId;
  const parts = [h('label', { for: inputId, text: label })];
  if (hint) {
    const hintId = uid('hint');
    const prev = input.getAttribute('aria-describedby');
    input.setAttribute('aria-describedby', prev ? `${prev} ${hintId}` : hintId);
    parts.push(h('p', { class: 'hint', id: hintId }, hint));
  }
  parts.splice(1, 0, input);
  return h('div', { class: ['field', inline ? 'field-inline' : null] }, parts);
}

export function button(label, attrs = {}) {
  return h('button', { type: 'button', ...attrs, class: ['btn', attrs.class] }, label);
}

/** Puts a button into a busy state while `work` runs; returns work's result. */
export async function busy(btn, label, work) {
  const old = btn.textContent;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  if (label) btn.textContent = label;
  try {
    return await work();
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
    if (label) btn.textContent = old;
  }
}

// ---------- dialogs ----------

/**
 * A modal confirmation built on <dialog>/showModal (focus stays inside, Escape closes).
 * onConfirm may throw: the error is shown inside the dialog, which stays open.
 * Resolves true when confirmed and onConfirm succeeded, false when cancelled.
 */
export function confirmDialog({ title, body, confirmLabel, confirmingLabel, danger = false, onConfirm, focusConfirm = false, opener: givenOpener }) {
  return new Promise((resolve) => {
    const opener = givenOpener || document.activeElement;
    const titleId = uid('dlg-title');
    const bodyId = uid('dlg-body');
    const alert = alertBox();
    const cancel = button('Cancel', { class: 'btn-secondary', value: 'cancel' });
    const confirm = h('button', { type: 'submit', class: ['btn', danger ? 'btn-danger' : 'btn-primary'] }, confirmLabel);
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', { id: titleId, class: 'dialog-title', text: title }),
      h('div', { id: bodyId, class: 'dialog-body' }, body),
      alert.el,
      h('div', { class: 'dialog-actions' }, cancel, confirm));
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'aria-describedby': bodyId }, form);
    let done = false;
    let working = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      if (dlg.open) dlg.close();
      dlg.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      else refocusByKey(opener?.dataset?.focusKey);
      resolve(ok);
    };
    cancel.addEventListener('click', () => finish(false));
    dlg.addEventListener('cancel', (e) => {
      if (working) { e.preventDefault(); return; }
      finish(false);
    });
    dlg.addEventListener('close', () => finish(false));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (working) return;
      if (!form.reportValidity()) return;
      working = true;
      alert.clear();
      cancel.disabled = true;
      try {
        await busy(confirm, confirmingLabel, async () => { if (onConfirm) await onConfirm(form); });
        working = false;
        finish(true);
      } catch (err) {
        working = false;
        cancel.disabled = false;
        if (err && err.sessionEnded) { finish(false); return; }
        alert.show(err);
        confirm.focus();
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    (focusConfirm ? confirm : cancel).focus();
  });
}

/** Focuses the control with this data-focus-key (or another for the same object), else <main>. */
export function refocusByKey(key) {
  if (key) {
    const keyed = [...document.querySelectorAll('#main [data-focus-key]')];
    const object = key.slice(key.indexOf(':') + 1);
    const el = keyed.find((e) => e.dataset.focusKey === key)
      || keyed.find((e) => e.dataset.focusKey.slice(e.dataset.focusKey.indexOf(':') + 1) === object);
    if (el) { el.focus(); return; }
  }
  document.getElementById('main')?.focus();
}

/** Copies text to the clipboard, with a fallback for pages that are not a secure context. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch { /* fall back below */ }
  }
  const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  ta.remove();
  return ok;
}

/** "a, b" <-> array helpers for comma separated inputs. */
export function splitList(text) {
  return String(text ?? '').split(',').map((x) => x.trim()).filter(Boolean);
}
