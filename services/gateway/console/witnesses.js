// Witnesses: list, create (KMS key picker), rotate, revoke (with the policies it affects),
// and one witness's public key with the cosign command that verifies its signatures.

import { api, seg } from './api.js';
import { displayNamespaces } from './policies.js';
import {
  h, alertBox, badge, button, code, confirmDialog, copyText, field, messageOf, pageHeading,
  plural, ref, replaceKeepFocus, shortDigest, stateBadge, table, time, uid,
} from './ui.js';

export function witnessesPage(ctx) {
  const heading = pageHeading('Witnesses');
  const alert = alertBox();
  const listHost = h('div', { class: 'list-host', 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading witnesses…' }));
  const detailHost = h('div', { class: 'detail-host' });
  const toolbar = h('div', { class: 'toolbar' });
  const formHost = h('div');
  let witnesses = [];
  let route = null;
  let focusDetail = false;
  let returnFocus = null; // after closing a detail: the name link that opened it
  let kmsKeys = null;

  // ----- create form -----
  const createForm = ctx.canWrite ? buildCreateForm() : null;
  if (createForm) {
    const toggle = button('New witness', { class: 'btn-primary', 'aria-expanded': 'false', 'aria-controls': createForm.form.id, dataset: { focusKey: 'new:witness' } });
    toggle.addEventListener('click', () => {
      if (createForm.form.hidden) createForm.open();
      else createForm.close();
    });
    createForm.toggle = toggle;
    toolbar.append(toggle);
    formHost.append(createForm.form);
  }

  function buildCreateForm() {
    const titleId = uid('new-witness');
    const formAlert = alertBox();
    const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '63' });
    const select = h('select', { name: 'kms_key' }, h('option', { value: '', text: 'Loading keys…' }));
    const providerNotes = h('div', { class: 'provider-notes', id: uid('providers') });
    select.setAttribute('aria-describedby', providerNotes.id);
    const description = h('input', { type: 'text', name: 'description', autocomplete: 'off' });
    const otherUri = h('input', { type: 'text', name: 'other_uri', autocomplete: 'off', spellcheck: 'false', placeholder: 'awskms:///alias/signet-release' });
    const publicKey = h('textarea', { name: 'public_key', rows: '5', spellcheck: 'false', placeholder: '-----BEGIN PUBLIC KEY-----' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create witness');
    const cancel = button('Cancel', { class: 'btn-secondary' });
    const form = h('form', { id: uid('witness-form'), class: 'panel form', hidden: true, 'aria-labelledby': titleId },
      h('h2', { id: titleId, text: 'New witness' }),
      h('div', { class: 'form-grid' },
        field({ label: 'Name', input: name, hint: '1 to 63 of a-z 0-9 - _ . starting with a letter or digit.' }),
        h('div', { class: 'field' }, h('label', { for: (select.id = uid('kms')), text: 'KMS key' }), select, providerNotes),
        field({ label: 'Description', input: description })),
      h('details', { class: 'more' },
        h('summary', null, 'Key not listed, or a verify-only witness?'),
        h('div', { class: 'form-grid' },
          field({ label: 'Key URI', input: otherUri, hint: 'Used instead of the list above: awskms://, hashivault://, alikms:// or local:// (see docs/kms.md).' }),
          field({ label: 'Public key (PEM)', input: publicKey, hint: 'A verify-only witness: someone who signs outside signet. signet verifies its signatures and never signs with it.' }))),
      formAlert.el,
      h('div', { class: 'form-actions' }, submit, cancel));

    async function loadKeys() {
      providerNotes.replaceChildren();
      select.replaceChildren(h('option', { value: '', text: 'Loading keys…' }));
      try {
        kmsKeys = await api.get('/v1/kms/keys');
      } catch (err) {
        if (err.sessionEnded) return;
        select.replaceChildren(h('option', { value: '', text: 'No keys could be listed' }));
        providerNotes.append(h('p', { class: 'note-error', text: `Could not list KMS keys: ${messageOf(err)}` }));
        return;
      }
      const keys = Array.isArray(kmsKeys?.keys) ? kmsKeys.keys : [];
      const providers = Array.isArray(kmsKeys?.providers) ? kmsKeys.providers : [];
      const opts = [h('option', { value: '', text: keys.length ? 'Choose a key' : 'No keys found' })];
      for (const k of keys) {
        const alg = k.algorithm ? k.algorithm : 'algorithm unknown';
        let text = `${k.uri} (${alg})`;
        if (!k.usable) text += ` — unusable: ${k.reason || 'cannot sign'}`;
        opts.push(h('option', { value: String(k.uri), text, disabled: !k.usable }));
      }
      select.replaceChildren(...opts);
      const failed = providers.filter((p) => p && p.error);
      const fine = providers.filter((p) => p && !p.error).map((p) => p.provider);
      if (fine.length) providerNotes.append(h('p', { class: 'hint', text: `Keys listed from: ${fine.join(', ')}.` }));
      if (failed.length) {
        providerNotes.append(h('ul', { class: 'note-error' },
          failed.map((p) => h('li', null, h('strong', { text: `${p.provider}: ` }), `could not list keys: ${p.error}`))));
      }
    }

    const api_ = {
      form,
      toggle: null,
      open() {
        form.hidden = false;
        api_.toggle?.setAttribute('aria-expanded', 'true');
        name.focus();
        loadKeys();
      },
      close() {
        form.hidden = true;
        form.reset();
        for (const d of form.querySelectorAll('details')) d.open = false;
        formAlert.clear();
        api_.toggle?.setAttribute('aria-expanded', 'false');
        api_.toggle?.focus();
      },
    };
    cancel.addEventListener('click', () => api_.close());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      formAlert.clear();
      const body = { name: name.value.trim(), description: description.value.trim() };
      if (!body.name) { formAlert.show('Give the witness a name.'); name.focus(); return; }
      if (otherUri.value.trim()) body.kms_key = otherUri.value.trim();
      else if (publicKey.value.trim()) body.public_key = publicKey.value.trim();
      else if (select.value) body.kms_key = select.value;
      else { formAlert.show('Choose a KMS key, or give a key URI or a public key.'); select.focus(); return; }
      submit.disabled = true;
      submit.textContent = 'Creating…';
      try {
        const w = await api.post('/v1/witnesses', body);
        ctx.announce(`Witness ${w?.name ?? body.name} created`);
        api_.close();
        ctx.refresh(0);
      } catch (err) {
        if (!err.sessionEnded) formAlert.show(err);
      } finally {
        submit.disabled = false;
        submit.textContent = 'Create witness';
      }
    });
    return api_;
  }

  // ----- actions -----
  async function rotate(w, opener) {
    const body = [h('p', null, 'signet makes a new key version primary. Signatures made with older versions keep verifying until you revoke those versions.')];
    let getPayload = () => undefined;
    if (String(w.kms_key).startsWith('awskms://')) {
      const sel = h('select', { required: true }, h('option', { value: '', text: 'Loading keys…' }));
      body.push(h('p', null, 'AWS KMS cannot add versions to an asymmetric key: choose the key the witness moves to.'),
        field({ label: 'New KMS key', input: sel }));
      api.get('/v1/kms/keys').then((res) => {
        const keys = (res?.keys || []).filter((k) => k.usable && String(k.uri) !== String(w.kms_key));
        sel.replaceChildren(h('option', { value: '', text: keys.length ? 'Choose a key' : 'No other usable key' }),
          ...keys.map((k) => h('option', { value: String(k.uri), text: `${k.uri} (${k.algorithm || 'algorithm unknown'})` })));
      }).catch(() => sel.replaceChildren(h('option', { value: '', text: 'No keys could be listed' })));
      getPayload = () => ({ kms_key: sel.value });
    } else if (String(w.kms_key).startsWith('pubkey:')) {
      const ta = h('textarea', { required: true, rows: '5', spellcheck: 'false' });
      body.push(h('p', null, 'This is a verify-only witness: give its next public key, of the same type as the current one.'),
        field({ label: 'New public key (PEM)', input: ta }));
      getPayload = () => ({ public_key: ta.value.trim() });
    } else {
      body.push(h('p', null, 'The KMS creates a new version of ', code(w.kms_key), '.'));
    }
    const ok = await confirmDialog({
      title: `Rotate witness ${w.name}?`,
      body,
      confirmLabel: 'Rotate',
      confirmingLabel: 'Rotating…',
      opener,
      onConfirm: async () => {
        const res = await api.post(`/v1/witnesses/${seg(w.name)}/rotate`, getPayload());
        const primary = (res?.key_versions || []).find((v) => v.primary);
        ctx.announce(`Witness ${w.name} rotated${primary ? `: key version ${primary.version} is now primary` : ''}`);
      },
    });
    if (ok) ctx.refresh(0);
  }

  function affectedList(preview) {
    const affected = Array.isArray(preview?.affected_policies) ? preview.affected_policies : [];
    if (!affected.length) return h('p', { class: 'callout' }, 'No enabled security policy uses this witness.');
    return [
      h('p', { class: 'callout callout-danger' }, `${plural(affected.length, 'enabled security policy', 'enabled security policies')} ${affected.length === 1 ? 'uses' : 'use'} it:`),
      h('ul', { class: 'affected' }, affected.map((p) => {
        const name = typeof p === 'string' ? p : p?.name;
        const li = h('li', null, h('strong', { text: String(name ?? '') }));
        if (p && typeof p === 'object') {
          li.append(` (${p.mode ?? ''} mode, cluster ${p.cluster ?? ''}, namespaces ${displayNamespaces(p.namespace)})`);
          if (p.denies_everything) li.append(' ', badge('Denies everything', 'bad'));
          if (p.consequence) li.append(h('span', { class: 'consequence', text: `: ${p.consequence}` }));
        }
        return li;
      })),
    ];
  }

  async function revoke(w, opener) {
    let preview;
    opener.setAttribute('aria-busy', 'true');
    try {
      preview = await api.post(`/v1/witnesses/${seg(w.name)}/revoke`, undefined, { dry_run: 'true' });
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Cannot revoke ${w.name}: ${messageOf(err)}`);
      return;
    } finally {
      opener.removeAttribute('aria-busy');
    }
    const ok = await confirmDialog({
      title: `Revoke witness ${w.name}?`,
      body: [
        h('p', null, 'It signs nothing more and none of its signatures count, from now on. This cannot be undone.'),
        affectedList(preview),
      ],
      confirmLabel: 'Revoke',
      confirmingLabel: 'Revoking…',
      danger: true,
      opener,
      onConfirm: async () => {
        await api.post(`/v1/witnesses/${seg(w.name)}/revoke`);
        ctx.announce(`Witness ${w.name} revoked`);
      },
    });
    if (ok) ctx.refresh(0);
  }

  async function revokeVersion(w, v, opener) {
    let preview;
    try {
      preview = await api.post(`/v1/witnesses/${seg(w.name)}/versions/${seg(v.version)}/revoke`, undefined, { dry_run: 'true' });
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Cannot revoke key version ${v.version}: ${messageOf(err)}`);
      return;
    }
    const ok = await confirmDialog({
      title: `Revoke key version ${v.version} of ${w.name}?`,
      body: [h('p', null, 'Signatures made with this key version stop counting, from now on. The witness keeps signing with its primary version.'), affectedList(preview)],
      confirmLabel: 'Revoke',
      confirmingLabel: 'Revoking…',
      danger: true,
      opener,
      onConfirm: async () => {
        await api.post(`/v1/witnesses/${seg(w.name)}/versions/${seg(v.version)}/revoke`);
        ctx.announce(`Key version ${v.version} of witness ${w.name} revoked`);
      },
    });
    if (ok) ctx.refresh(0);
  }

  // ----- rendering -----
  function renderList() {
    const columns = [
      { label: 'Name' }, { label: 'State' }, { label: 'KMS key' },
      { label: 'Key versions' }, { label: 'Fingerprint', class: 'col-digest' }, { label: 'Created' },
    ];
    if (ctx.canWrite) columns.push({ label: 'Actions', class: 'col-actions' });
    const rows = witnesses.map((w) => {
      const versions = Array.isArray(w.key_versions) ? w.key_versions : [];
      const live = versions.filter((v) => v.state === 'active').length;
      const cells = [
        { th: h('a', { class: 'name', href: `#/witnesses/${encodeURIComponent(w.name)}`, dataset: { focusKey: `name:${w.name}` }, text: w.name }) },
        stateBadge(w.state),
        [ref(w.kms_key), h('span', { class: 'sub block', text: w.algorithm ?? '' })],
        `${versions.length} (${live} active)`,
        w.fingerprint ? shortDigest(w.fingerprint) : h('span', { class: 'muted', text: 'none active' }),
        time(w.created_at),
      ];
      if (ctx.canWrite) {
        if (w.state === 'active') {
          const rot = button('Rotate', { class: 'btn-small btn-secondary', 'aria-label': `Rotate ${w.name}`, dataset: { focusKey: `rotate:${w.name}` } });
          rot.addEventListener('click', () => rotate(w, rot));
          const rev = button('Revoke', { class: 'btn-small btn-danger', 'aria-label': `Revoke ${w.name}`, dataset: { focusKey: `revoke:${w.name}` } });
          rev.addEventListener('click', () => revoke(w, rev));
          cells.push(h('div', { class: 'row-actions' }, rot, rev));
        } else {
          cells.push(h('span', { class: 'muted', text: 'Revoked' }));
        }
      }
      return cells;
    });
    return table({
      caption: 'Witnesses',
      columns,
      rows,
      empty: ctx.canWrite ? 'No witnesses yet. Create one with “New witness”.' : 'No witnesses yet.',
      rowClass: (i) => (witnesses[i].state === 'revoked' ? 'row-muted' : undefined),
    });
  }

  function renderDetail(name) {
    const w = witnesses.find((x) => x.name === name);
    if (!w) {
      return h('section', { class: 'panel detail', 'aria-labelledby': 'witness-detail-title' },
        h('h2', { id: 'witness-detail-title', tabindex: '-1', text: `Witness ${name}` }),
        h('p', null, 'There is no witness of that name. ', h('a', { href: '#/witnesses', text: 'Back to all witnesses' })));
    }
    // The witness carries its primary public key (what /public-key serves), so no request
    // is needed; a revoked witness has none.
    const pem = typeof w.public_key === 'string' && w.public_key ? w.public_key : null;
    const keyFile = `${w.name}.pub`;
    const imageInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'registry.example.com/team/app:v1' });
    const cmdId = uid('cmd');
    const cmd = h('code', { id: cmdId });
    const commandFor = () => `cosign verify --key ${keyFile} --insecure-ignore-tlog=true ${imageInput.value.trim() || 'IMAGE'}`;
    cmd.textContent = commandFor();
    imageInput.addEventListener('input', () => { cmd.textContent = commandFor(); });
    const copy = button('Copy', { class: 'btn-secondary btn-small', 'aria-describedby': cmdId, dataset: { focusKey: `copy:${w.name}` } });
    copy.addEventListener('click', async () => {
      const ok = await copyText(commandFor());
      ctx.announce(ok ? 'The cosign command was copied to the clipboard' : 'Copying failed: select the command and copy it by hand');
    });

    const versions = Array.isArray(w.key_versions) ? w.key_versions : [];
    const vColumns = [{ label: 'Version' }, { label: 'State' }, { label: 'Primary' }, { label: 'Fingerprint', class: 'col-digest' }, { label: 'Created' }];
    if (ctx.canWrite) vColumns.push({ label: 'Actions', class: 'col-actions' });
    const vRows = versions.map((v) => {
      const cells = [{ th: String(v.version) }, stateBadge(v.state), v.primary ? badge('Primary', 'info') : '', code(v.fingerprint, 'digest'), time(v.created_at)];
      if (ctx.canWrite) {
        if (v.state === 'active' && !v.primary && w.state === 'active') {
          const b = button('Revoke version', { class: 'btn-small btn-danger', 'aria-label': `Revoke key version ${v.version} of ${w.name}`, dataset: { focusKey: `revokever:${w.name}/${v.version}` } });
          b.addEventListener('click', () => revokeVersion(w, v, b));
          cells.push(b);
        } else {
          cells.push('');
        }
      }
      return cells;
    });

    return h('section', { class: 'panel detail', 'aria-labelledby': 'witness-detail-title' },
      h('div', { class: 'detail-head' },
        h('h2', { id: 'witness-detail-title', tabindex: '-1', text: `Witness ${w.name}` }),
        h('a', { href: '#/witnesses', class: 'back-link', text: 'Close' })),
      h('dl', { class: 'facts' },
        h('div', null, h('dt', { text: 'State' }), h('dd', null, stateBadge(w.state))),
        h('div', null, h('dt', { text: 'KMS key' }), h('dd', null, ref(w.kms_key))),
        h('div', null, h('dt', { text: 'Algorithm' }), h('dd', { text: w.algorithm ?? '' })),
        h('div', null, h('dt', { text: 'Description' }), h('dd', { text: w.description || '—' })),
        h('div', null, h('dt', { text: 'Created' }), h('dd', null, time(w.created_at)))),
      h('h3', { text: 'Public key' }),
      pem !== null
        ? [h('pre', { class: 'pem' }, pem),
          h('p', null, h('a', { href: `/v1/witnesses/${encodeURIComponent(w.name)}/public-key`, download: keyFile, text: `Download ${keyFile}` }),
            ' — or from a terminal: ', code(`signet witness export-key ${w.name} > ${keyFile}`))]
        : h('p', { class: 'muted', text: 'No public key to show: the witness has no active primary key version.' }),
      h('h3', { text: 'Verify with cosign' }),
      h('p', null, 'signet publishes standard cosign signatures; anyone with the public key can check them. signet does not write to a transparency log, hence ', code('--insecure-ignore-tlog=true'), '.'),
      field({ label: 'Image to verify', input: imageInput }),
      h('div', { class: 'command' }, h('pre', null, cmd), copy),
      h('h3', { text: 'Key versions' }),
      table({ caption: `Key versions of ${w.name}`, columns: vColumns, rows: vRows, empty: 'No key versions.' }));
  }

  async function refresh() {
    let list;
    try {
      list = await api.get('/v1/witnesses');
      alert.clear();
    } catch (err) {
      if (!err.sessionEnded) alert.show(`Could not load witnesses: ${messageOf(err)}`);
      listHost.removeAttribute('aria-busy');
      return;
    }
    witnesses = Array.isArray(list?.witnesses) ? list.witnesses : [];
    listHost.removeAttribute('aria-busy');
    replaceKeepFocus(listHost, renderList());
    const selected = route?.rest?.[0];
    if (selected) {
      const detail = renderDetail(selected);
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
      h('p', { class: 'lede', text: 'Witnesses are named signing identities bound to KMS keys. Policies name the witnesses whose signatures they require.' }),
      toolbar, formHost, alert.el, listHost, detailHost),
    heading,
    route(r, { focus } = {}) {
      const changed = (route?.rest?.[0] || '') !== (r.rest?.[0] || '');
      if (!r.rest?.[0] && route?.rest?.[0]) returnFocus = `name:${route.rest[0]}`;
      route = r;
      focusDetail = Boolean(r.rest?.[0]) && (changed || focus);
      return refresh();
    },
    refresh,
  };
}
