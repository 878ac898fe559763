// Signing rules: which pushed repositories the webhook receivers sign, and by which witness.

import { api, seg } from './api.js';
import {
  h, alertBox, button, code, confirmDialog, field, messageOf, onOffBadge, pageHeading,
  ref, replaceKeepFocus, splitList, table, time, uid,
} from './ui.js';

export function rulesPage(ctx) {
  const heading = pageHeading('Signing rules');
  const alert = alertBox();
  const listHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading signing rules…' }));
  const toolbar = h('div', { class: 'toolbar' });
  const formHost = h('div');
  let rules = [];

  if (ctx.canWrite) {
    const titleId = uid('new-rule');
    const formAlert = alertBox();
    const name = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '63' });
    const repos = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'registry.example.com/team/**' });
    const tag = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: '*' });
    const witness = h('select', { required: true }, h('option', { value: '', text: 'Loading witnesses…' }));
    const enabled = h('input', { type: 'checkbox', checked: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create rule');
    const cancel = button('Cancel', { class: 'btn-secondary' });
    const form = h('form', { id: uid('rule-form'), class: 'panel form', hidden: true, 'aria-labelledby': titleId },
      h('h2', { id: titleId, text: 'New signing rule' }),
      h('div', { class: 'form-grid' },
        field({ label: 'Name', input: name }),
        field({ label: 'Repositories', input: repos, hint: 'Comma separated globs over registry/repository: * stays within a path component, ** crosses them.' }),
        field({ label: 'Tag pattern', input: tag, hint: 'A glob over the tag; * for every tag.' }),
        field({ label: 'Witness', input: witness }),
        h('div', { class: 'field field-check' }, enabled, h('label', { for: (enabled.id = uid('en')), text: 'Enabled' }))),
      formAlert.el,
      h('div', { class: 'form-actions' }, submit, cancel));
    const toggle = button('New rule', { class: 'btn-primary', 'aria-expanded': 'false', 'aria-controls': form.id });
    const close = () => {
      form.hidden = true;
      form.reset();
      formAlert.clear();
      toggle.setAttribute('aria-expanded', 'false');
      toggle.focus();
    };
    toggle.addEventListener('click', async () => {
      if (!form.hidden) { close(); return; }
      form.hidden = false;
      toggle.setAttribute('aria-expanded', 'true');
      name.focus();
      try {
        const ws = await api.get('/v1/witnesses');
        const active = (ws?.witnesses || []).filter((w) => w.state === 'active' && !String(w.kms_key).startsWith('pubkey:'));
        witness.replaceChildren(h('option', { value: '', text: active.length ? 'Choose a witness' : 'No witness can sign' }),
          ...active.map((w) => h('option', { value: w.name, text: w.name })));
      } catch (err) {
        if (!err.sessionEnded) witness.replaceChildren(h('option', { value: '', text: 'Witnesses could not be listed' }));
      }
    });
    cancel.addEventListener('click', close);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      formAlert.clear();
      const body = { name: name.value.trim(), repositories: splitList(repos.value), tag_pattern: tag.value.trim() || '*', witness: witness.value, enabled: enabled.checked };
      if (!body.repositories.length) { formAlert.show('Give at least one repository glob.'); repos.focus(); return; }
      if (!body.witness) { formAlert.show('Choose the witness that signs.'); witness.focus(); return; }
      submit.disabled = true;
      submit.textContent = 'Creating…';
      try {
        const r = await api.post('/v1/signing-rules', body);
        ctx.announce(`Signing rule ${r?.name ?? body.name} created`);
        close();
        ctx.refresh(0);
      } catch (err) {
        if (!err.sessionEnded) formAlert.show(err);
      } finally {
        submit.disabled = false;
        submit.textContent = 'Create rule';
      }
    });
    toolbar.append(toggle);
    formHost.append(form);
  }

  async function setEnabled(rule, sw) {
    sw.disabled = true;
    try {
      await api.patch(`/v1/signing-rules/${seg(rule.name)}`, { enabled: sw.checked });
      ctx.announce(`Signing rule ${rule.name} ${sw.checked ? 'enabled' : 'disabled'}`);
      ctx.refresh(0);
    } catch (err) {
      sw.checked = !sw.checked;
      if (!err.sessionEnded) alert.show(`Could not change ${rule.name}: ${messageOf(err)}`);
    } finally {
      sw.disabled = false;
    }
  }

  async function remove(rule, opener) {
    const ok = await confirmDialog({
      title: `Delete signing rule ${rule.name}?`,
      body: h('p', null, 'Pushes to ', ref((rule.repositories || []).join(', ')), ` will no longer be signed by ${rule.witness} automatically. Signatures already made stay.`),
      confirmLabel: 'Delete',
      confirmingLabel: 'Deleting…',
      danger: true,
      opener,
      onConfirm: async () => {
        await api.del(`/v1/signing-rules/${seg(rule.name)}`);
        ctx.announce(`Signing rule ${rule.name} deleted`);
      },
    });
    if (ok) ctx.refresh(0);
  }

  function render() {
    const columns = [{ label: 'Name' }, { label: 'Repositories', class: 'col-wide' }, { label: 'Tag pattern' }, { label: 'Witness' }, { label: 'Enabled' }, { label: 'Updated' }];
    if (ctx.canWrite) columns.push({ label: 'Actions', class: 'col-actions' });
    const rows = rules.map((r) => {
      let enabledCell = onOffBadge(Boolean(r.enabled));
      if (ctx.canWrite) {
        const sw = h('input', { type: 'checkbox', role: 'switch', class: 'switch', checked: Boolean(r.enabled), 'aria-label': `Enabled: ${r.name}`, dataset: { focusKey: `enabled:${r.name}` } });
        sw.addEventListener('change', () => setEnabled(r, sw));
        enabledCell = h('div', { class: 'switch-cell' }, sw, onOffBadge(Boolean(r.enabled)));
      }
      const row = [
        { th: r.name },
        h('ul', { class: 'plain' }, (r.repositories || []).map((x) => h('li', null, ref(x)))),
        code(r.tag_pattern),
        r.witness,
        enabledCell,
        time(r.updated_at),
      ];
      if (ctx.canWrite) {
        const b = button('Delete', { class: 'btn-small btn-danger', 'aria-label': `Delete ${r.name}`, dataset: { focusKey: `delete:${r.name}` } });
        b.addEventListener('click', () => remove(r, b));
        row.push(b);
      }
      return row;
    });
    return table({ caption: 'Signing rules', columns, rows, empty: 'No signing rules: pushes are signed only when a webhook request names its witness.' });
  }

  async function refresh() {
    try {
      const res = await api.get('/v1/signing-rules');
      rules = Array.isArray(res?.rules) ? res.rules : [];
      alert.clear();
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Could not load signing rules: ${messageOf(err)}`);
      listHost.removeAttribute('aria-busy');
      return;
    }
    listHost.removeAttribute('aria-busy');
    replaceKeepFocus(listHost, render());
  }

  return {
    el: h('div', { class: 'page' }, heading,
      h('p', { class: 'lede', text: 'When a registry announces a push, the webhook receivers sign the image with the witness of every enabled rule that matches its repository and tag.' }),
      toolbar, formHost, alert.el, listHost),
    heading,
    route() { return refresh(); },
    refresh,
  };
}
