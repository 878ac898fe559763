// The web console in a real browser (Debian's Chromium driven by playwright-core), against
// a real `signet up` whose gateway a real docker-registry notifies on every push, with
// OpenBao keys in the witness key picker. services/cli/tests/console.rs starts all of
// that and runs this script with:
//
//   SIGNET_URL           the gateway (http://127.0.0.1:PORT); the console is SIGNET_URL/console
//   SIGNET_ADMIN_TOKEN   an admin API token
//   SIGNET_VIEWER_TOKEN  a viewer API token
//   SIGNET_REGISTRY      host:port of the registry the distribution receiver speaks for
//   SIGNET_BAO_KEY       an rsa-2048 OpenBao transit key (hashivault://KEY)
//   SIGNET_BAO_ECDSA_KEY an ecdsa-p256 one, which cannot sign (default KEY-ecdsa)
//   SIGNET_LOCAL_KEY     a local development key that exists (default local://console-signing)
//   SCREENSHOTS_DIR      where the page screenshots go (docs/console to update the docs)
//
// It relies only on what the console promises (docs/console.md, "What the browser test
// relies on"): accessible names, roles, table captions and texts, never CSS classes or
// ids. Each step is one node:test test, run in order; a step whose prerequisite failed
// is skipped.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { pushImage, sha256 } from './oci.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function setting(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') {
    throw new Error(`${name} is not set; services/cli/tests/console.rs sets it (cargo test -p signet-cli --test console)`);
  }
  return v;
}

const SIGNET = setting('SIGNET_URL').replace(/\/+$/, '');
const ADMIN = setting('SIGNET_ADMIN_TOKEN');
const VIEWER = setting('SIGNET_VIEWER_TOKEN');
const REGISTRY = setting('SIGNET_REGISTRY');
const BAO_KEY = setting('SIGNET_BAO_KEY');
const BAO_ECDSA_KEY = setting('SIGNET_BAO_ECDSA_KEY', `${BAO_KEY}-ecdsa`);
const LOCAL_KEY = setting('SIGNET_LOCAL_KEY', 'local://console-signing');
const SHOTS = setting('SCREENSHOTS_DIR');
const CHROMIUM = setting('CHROMIUM', '/usr/bin/chromium');
const AXE = path.join(HERE, 'node_modules', 'axe-core', 'axe.min.js');

// What the test creates.
const W_LOCAL = 'console-local';
const W_BAO = 'console-bao';
const POLICY = 'console-prod';
const RULE = 'console-demo';
const CLUSTER = 'demo-eu-1';
const REPO = 'console/shop-web';
const UNTRUSTED_REPO = 'console/tool';
const MISSING_REPO = 'console/missing';

// Steps, by name (a step lists the ones it needs).
const S1 = '1 sign in with the admin token; the cookie is HttpOnly and SameSite=Strict';
const S2 = '2 create witnesses through the key picker (local and OpenBao; ECDSA is unusable)';
const S3 = '3 a security policy for both witnesses: created Off, enabled through its warning, On';
const S4 = '4 a pushed image appears on Trusted images as "Trusted Image" without a reload';
const S5 = '5 revoke the signature in the console; the row turns "Revoked" without a reload';
const SP = 'jobs, audit, signing rules and webhook receivers pages';
const S6 = '6 sign out; a viewer sees "Read-only", no change controls, and gets 403 on a change';
const S7 = '7 CSRF: no X-CSRF-Token, a wrong one, or another origin: 403 and nothing created';
const S8 = '8 axe-core: no serious or critical violation on any page';

const SHORT = 20_000; // an element the page shows after one API round trip
const LIVE = 60_000; // a signature the registry's notification leads to

// ---------------------------------------------------------------------------------------
// Browser, pages, what went wrong in them.

let browser;
let context; // the "main" context: the console as a person uses it
let page;
let axePage; // the axe pass's page, while it runs
let evilServer;
const problems = []; // console errors, uncaught exceptions and CSP violations in the console
let quiet = 0; // > 0 while a probe makes requests that are meant to fail
let where = 'start';
const done = new Set();
const facts = {}; // what steps hand to later steps (digest, timings)

const launchArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Console messages that are part of the contract rather than a fault of the page. */
function expected(text, url) {
  if (quiet > 0 && /Failed to load resource/.test(text)) return true;
  // Without a session the console asks GET /v1/sessions/current, which answers 401 by
  // contract; Chromium logs every 4xx answer of fetch as an error.
  if (
    /Failed to load resource: the server responded with a status of 401/.test(text) &&
    url.includes('/v1/sessions/current')
  ) {
    return true;
  }
  return false;
}

function watch(p, label) {
  p.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = msg.location()?.url ?? '';
    if (expected(msg.text(), url)) return;
    problems.push(`[${label}, ${where}] console error: ${msg.text()}${url ? ` (${url})` : ''}`);
  });
  p.on('pageerror', (err) => problems.push(`[${label}, ${where}] uncaught: ${err.stack ?? err}`));
}

/** Reports CSP violations as console errors too (an init script is not subject to CSP). */
async function reportCsp(ctx) {
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(
        `CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile || '?'}:${e.lineNumber || '?'}`,
      );
    });
  });
}

async function newContext(options = {}) {
  const ctx = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    locale: 'en-GB',
    timezoneId: 'UTC',
    colorScheme: 'light',
    reducedMotion: 'reduce',
    ...options,
  });
  ctx.setDefaultTimeout(SHORT);
  return ctx;
}

/** Runs a step unless one it needs failed; on failure keeps a screenshot and the page's accessibility tree. */
function step(name, needs, fn) {
  test(name, async (t) => {
    const missing = needs.filter((n) => !done.has(n));
    if (missing.length) {
      t.skip(`needs: ${missing.join(', ')}`);
      return;
    }
    where = name;
    const started = Date.now();
    try {
      await fn(t);
      done.add(name);
      console.log(`# ${name}: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } catch (e) {
      console.log(`# ${name}: FAILED after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await diagnose(name);
      throw e;
    }
  });
}

async function diagnose(name) {
  const p = axePage && !axePage.isClosed() ? axePage : page;
  if (!p || p.isClosed()) return;
  try {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'signet-console-failure-'));
    const file = path.join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
    await p.screenshot({ path: file, fullPage: true, timeout: 10_000 });
    console.log(`# screenshot of the failure: ${file}`);
    console.log(`# URL: ${p.url()}`);
    const tree = await p.locator('body').ariaSnapshot({ timeout: 10_000 });
    console.log(`# accessibility tree of the page:\n${tree.slice(0, 8000)}`);
  } catch (e) {
    console.log(`# (no diagnosis: ${e.message})`);
  }
}

async function shot(p, name) {
  await p.evaluate(() => document.activeElement?.blur?.());
  await p.mouse.move(0, 0);
  const file = path.join(SHOTS, `${name}.png`);
  await p.screenshot({ path: file, fullPage: true, animations: 'disabled', caret: 'hide' });
  console.log(`# screenshot ${file}`);
}

// ---------------------------------------------------------------------------------------
// The API, as a script (bearer token, no cookie, no Origin).

async function api(method, route, body, token = ADMIN) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(`${SIGNET}${route}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: resp.status, json, text };
}

async function apiOk(method, route, body) {
  const r = await api(method, route, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${route}: ${r.status} ${r.text}`);
  return r.json;
}

async function until(what, timeout, probe, interval = 250) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout / 1000} s`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

// ---------------------------------------------------------------------------------------
// The console, through accessible names only.

const nav = (p) => p.getByRole('navigation', { name: 'Main', exact: true });
const table = (p, caption) => p.getByRole('table', { name: caption, exact: true });
const rows = (p, caption, text) => table(p, caption).getByRole('row').filter({ hasText: text });
const button = (scope, name) => scope.getByRole('button', { name, exact: true });
const openDialog = (p) => p.getByRole('dialog');

/** Follows the Main navigation link NAME; the page's one h1 has that name and the hash route is HASH. */
async function go(p, name, hash) {
  await nav(p).getByRole('link', { name, exact: true }).click();
  await p.getByRole('heading', { level: 1, name, exact: true }).waitFor();
  assert.equal(new URL(p.url()).hash, hash, `the ${name} page's route`);
  assert.equal(await p.getByRole('heading', { level: 1 }).count(), 1, `one h1 on the ${name} page`);
}

async function signIn(p, token) {
  const field = p.getByLabel('API token', { exact: true });
  await field.waitFor();
  assert.equal(await field.getAttribute('type'), 'password', 'the token field hides what is typed');
  await field.fill(token);
  await button(p, 'Sign in').click();
  await nav(p).waitFor();
}

async function signOut(p) {
  await button(p, 'Sign out').click();
  await p.getByLabel('API token', { exact: true }).waitFor();
}

/** The session as the page sees it: GET /v1/sessions/current with its cookie. */
async function currentSession(p) {
  return p.evaluate(async () => {
    const r = await fetch('/v1/sessions/current', { credentials: 'same-origin' });
    return { status: r.status, body: r.status === 200 ? await r.json() : await r.text() };
  });
}

/** A request made by script in the page, with the session cookie; quietly, since it is meant to fail. */
async function pageRequest(p, method, route, body, headers = {}) {
  quiet++;
  try {
    return await p.evaluate(
      async ({ method, route, body, headers }) => {
        const r = await fetch(route, {
          method,
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json', ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: r.status, text: await r.text() };
      },
      { method, route, body, headers },
    );
  } finally {
    quiet--;
  }
}

async function sessionCookie(ctx) {
  return (await ctx.cookies(SIGNET)).find((c) => c.name === 'signet_session');
}

// ---------------------------------------------------------------------------------------

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)`);
  assert.ok(fs.existsSync(AXE), `${AXE} is missing: npm ci in ${HERE} (scripts/test.sh does)`);
  // launch() runs the browser on a fresh temporary profile, removed when it closes.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: launchArgs });
  console.log(`# ${CHROMIUM} ${browser.version()}, console at ${SIGNET}/console`);
  context = await newContext();
  await reportCsp(context);
  page = await context.newPage();
  watch(page, 'console');
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (evilServer ? evilServer.close(r) : r()));
  if (problems.length) console.log(`# console problems:\n${problems.join('\n')}`);
});

// 1 -------------------------------------------------------------------------------------
step(S1, [], async () => {
  const resp = await page.goto(`${SIGNET}/console`);
  assert.equal(resp.status(), 200, 'GET /console');
  const csp = resp.headers()['content-security-policy'] ?? '';
  for (const part of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"]) {
    assert.ok(csp.includes(part), `the console's CSP has ${part}: ${csp}`);
  }
  await page.getByLabel('API token', { exact: true }).waitFor();
  await shot(page, 'sign-in');

  // A wrong token is refused in an alert, and no cookie is set.
  await page.getByLabel('API token', { exact: true }).fill('sgt_00000000000000000000000000000000_wrong');
  quiet++;
  try {
    await button(page, 'Sign in').click();
    await page.getByRole('alert').filter({ hasText: /\S/ }).waitFor();
  } finally {
    quiet--;
  }
  assert.equal(await sessionCookie(context), undefined, 'no session cookie after a refused token');

  await signIn(page, ADMIN);
  const cookie = await sessionCookie(context);
  assert.ok(cookie, 'the signet_session cookie is set');
  assert.equal(cookie.httpOnly, true, 'HttpOnly');
  assert.equal(cookie.sameSite, 'Strict', 'SameSite=Strict');
  assert.equal(cookie.path, '/', 'Path=/');
  const hours = (cookie.expires - Date.now() / 1000) / 3600;
  assert.ok(hours > 7.9 && hours <= 8.01, `the cookie lasts 8 h (Max-Age), not ${hours.toFixed(2)} h`);
  assert.equal(
    await page.evaluate(() => document.cookie.includes('signet_session')),
    false,
    'scripts cannot read the session cookie',
  );

  const session = await currentSession(page);
  assert.equal(session.status, 200, `GET /v1/sessions/current: ${JSON.stringify(session)}`);
  assert.equal(session.body.role, 'admin');
  assert.ok(session.body.csrf_token, 'the session has a CSRF token');
  facts.adminName = session.body.name;
  const banner = page.getByRole('banner');
  const header = (await banner.count()) ? banner.first() : page.locator('body');
  await header.getByText(session.body.name).first().waitFor();
  await header.getByText('admin').first().waitFor();
  await button(page, 'Sign out').waitFor();
  // The default page is Trusted images.
  await page.getByRole('heading', { level: 1, name: 'Trusted images', exact: true }).waitFor();
  assert.equal(new URL(page.url()).hash, '#/images', 'the default route');
  for (const name of ['Witnesses', 'Security policies', 'Trusted images', 'Jobs', 'Audit', 'Signing rules', 'Webhooks']) {
    await nav(page).getByRole('link', { name, exact: true }).waitFor();
  }
});

// 2 -------------------------------------------------------------------------------------
step(S2, [S1], async () => {
  await go(page, 'Witnesses', '#/witnesses');
  await table(page, 'Witnesses').waitFor();
  await button(page, 'New witness').click();
  const select = page.getByLabel('KMS key', { exact: true });
  await select.waitFor();
  assert.equal(await select.evaluate((e) => e.tagName), 'SELECT', 'the KMS key picker is a <select>');
  const baoUri = `hashivault://${BAO_KEY}`;
  const ecdsaUri = `hashivault://${BAO_ECDSA_KEY}`;
  for (const uri of [LOCAL_KEY, baoUri, ecdsaUri]) {
    await select.locator(`option[value="${uri}"]`).waitFor({ state: 'attached' });
  }
  const options = await select
    .locator('option')
    .evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent.trim(), disabled: o.disabled })));
  console.log(`# key picker options:\n${options.map((o) => `#   ${o.value}: ${o.text}${o.disabled ? ' [disabled]' : ''}`).join('\n')}`);
  const option = (uri) => options.find((o) => o.value === uri);
  assert.equal(option(LOCAL_KEY).disabled, false, `${LOCAL_KEY} can be picked`);
  assert.ok(option(LOCAL_KEY).text.startsWith(`${LOCAL_KEY} (`), `the option reads "<uri> (<algorithm>)": ${option(LOCAL_KEY).text}`);
  assert.equal(option(baoUri).disabled, false, `${baoUri} can be picked`);
  assert.ok(option(baoUri).text.startsWith(`${baoUri} (`), `the option reads "<uri> (<algorithm>)": ${option(baoUri).text}`);
  assert.equal(option(ecdsaUri).disabled, true, `the ECDSA key ${ecdsaUri} cannot be picked`);
  assert.match(option(ecdsaUri).text, / — unusable: \S/, `the ECDSA option says why: ${option(ecdsaUri).text}`);

  const form = async (name, uri, description) => {
    const nameField = page.getByLabel('Name', { exact: true });
    if (!(await nameField.isVisible())) await button(page, 'New witness').click();
    await nameField.fill(name);
    await page.getByLabel('KMS key', { exact: true }).selectOption(uri);
    await page.getByLabel('Description', { exact: true }).fill(description);
    await button(page, 'Create witness').click();
    await rows(page, 'Witnesses', name).first().waitFor();
    await button(page, `Rotate ${name}`).waitFor();
    await button(page, `Revoke ${name}`).waitFor();
  };
  await form(W_LOCAL, LOCAL_KEY, 'development key on this laptop');
  await form(W_BAO, baoUri, 'OpenBao transit key');

  const local = await apiOk('GET', `/v1/witnesses/${W_LOCAL}`);
  assert.equal(local.kms_key, LOCAL_KEY);
  assert.equal(local.description, 'development key on this laptop');
  const bao = await apiOk('GET', `/v1/witnesses/${W_BAO}`);
  assert.equal(bao.kms_key, baoUri);
  assert.equal(bao.state, 'active');

  // A witness's name shows its public key and how to verify with cosign.
  await table(page, 'Witnesses').getByText(W_LOCAL, { exact: true }).first().click();
  await page.locator('pre').filter({ hasText: 'BEGIN PUBLIC KEY' }).first().waitFor();
  await page.getByText(/cosign verify/).first().waitFor();
  await page.getByRole('button', { name: /^Copy/ }).first().waitFor();
  await go(page, 'Witnesses', '#/witnesses');
  await rows(page, 'Witnesses', W_BAO).first().waitFor();
  await shot(page, 'witnesses');
});

// 3 -------------------------------------------------------------------------------------
step(S3, [S2], async () => {
  await go(page, 'Security policies', '#/policies');
  await table(page, 'Security policies').waitFor();
  await button(page, 'New policy').click();
  await page.getByLabel('Name', { exact: true }).fill(POLICY);
  await page.getByLabel('Cluster', { exact: true }).fill(CLUSTER);
  await page.getByLabel('Namespaces', { exact: true }).fill('shop, payments-*');
  await page.getByLabel('Namespace selector', { exact: true }).waitFor();
  const witnesses = page.getByRole('group', { name: 'Witnesses', exact: true });
  await witnesses.getByRole('checkbox', { name: W_LOCAL, exact: true }).check();
  await witnesses.getByRole('checkbox', { name: W_BAO, exact: true }).check();
  await page.getByLabel('Required signatures', { exact: true }).fill('1');
  const mode = page.getByLabel('Mode', { exact: true });
  const modes = await mode.locator('option').evaluateAll((os) => os.map((o) => o.value));
  for (const m of ['enforce', 'warn', 'dry-run']) assert.ok(modes.includes(m), `mode ${m} is offered: ${modes}`);
  await mode.selectOption('enforce');
  await page.getByLabel('Note', { exact: true }).fill('shop images must be signed');
  await button(page, 'Create policy').click();

  const row = rows(page, 'Security policies', POLICY).first();
  await row.waitFor();
  await row.getByText('Off', { exact: true }).waitFor();
  const created = await apiOk('GET', `/v1/policies/${POLICY}`);
  assert.equal(created.enabled, false, 'new policies are created disabled');
  assert.deepEqual([...created.witnesses].sort(), [W_BAO, W_LOCAL]);
  assert.equal(created.require, 1);
  assert.equal(created.mode, 'enforce');
  assert.equal(created.cluster, CLUSTER);

  const toggle = page.getByRole('switch', { name: `Enabled: ${POLICY}`, exact: true });
  assert.equal(await toggle.isChecked(), false, 'the switch is off');
  await toggle.click();
  const warning = openDialog(page).filter({ hasText: 'test it in a non-production namespace first' });
  await warning.waitFor();
  await button(warning, 'Cancel').waitFor();
  await button(warning, 'Enable').click();
  await warning.waitFor({ state: 'hidden' });
  await row.getByText('On', { exact: true }).waitFor();
  assert.equal(await toggle.isChecked(), true, 'the switch is on');
  await until('the policy is enabled in the store', SHORT, async () => (await apiOk('GET', `/v1/policies/${POLICY}`)).enabled);
  await shot(page, 'policies');

  // What it would have denied: decisions a verifier of the cluster reported over the last
  // six days (sent with the admin token, as a verifier would).
  const now = Date.now();
  const decisions = [];
  for (let i = 0; i < 24; i++) {
    const deny = i % 3 === 0;
    const image = deny ? `${REGISTRY}/${UNTRUSTED_REPO}:dev` : `${REGISTRY}/${REPO}:v1`;
    decisions.push({
      at: new Date(now - i * 6 * 3600_000 - (i % 4) * 40 * 60_000).toISOString(),
      cluster: CLUSTER,
      uid: crypto.randomUUID(),
      namespace: i % 2 ? 'shop' : 'payments-eu',
      kind: 'Pod',
      name: `web-${i}`,
      operation: 'CREATE',
      policy: POLICY,
      mode: i > 12 ? 'dry-run' : 'enforce',
      outcome: deny ? (i > 12 ? 'would_deny' : 'denied') : 'allowed',
      images: [
        deny
          ? { image, reason: 'unsigned', detail: `no signature artifact for ${image}` }
          : { image, witnesses: [W_LOCAL] },
      ],
      message: deny ? `image "${image}" is not allowed in this namespace by policy "${POLICY}": unsigned` : '',
    });
  }
  const recorded = await apiOk('POST', '/v1/admission-decisions', { decisions });
  assert.equal(recorded.recorded, decisions.length);

  // The revoke dialog of a witness names the policies that depend on it; Escape closes it.
  await go(page, 'Witnesses', '#/witnesses');
  await button(page, `Revoke ${W_BAO}`).click();
  const revoke = openDialog(page);
  await revoke.getByText(POLICY).first().waitFor();
  await button(revoke, 'Revoke').waitFor();
  await button(revoke, 'Cancel').waitFor();
  await page.keyboard.press('Escape');
  await revoke.waitFor({ state: 'hidden' });
  assert.equal((await apiOk('GET', `/v1/witnesses/${W_BAO}`)).state, 'active', 'Escape revoked nothing');

  // Its impact: a chart over time and what would have been denied.
  await go(page, 'Security policies', '#/policies');
  await table(page, 'Security policies').getByText(POLICY, { exact: true }).first().click();
  const denied = table(page, 'Would have been denied');
  await denied.waitFor();
  await denied.getByRole('row').filter({ hasText: UNTRUSTED_REPO }).first().waitFor();
  await page.locator('svg').first().waitFor();
  // The chart has a text alternative: an accessible name, a <title>, or a caption.
  const alternatives = await page.locator('svg').evaluateAll((svgs) =>
    svgs
      .map((svg) =>
        [
          svg.getAttribute('aria-label'),
          svg.getAttribute('aria-labelledby') && document.getElementById(svg.getAttribute('aria-labelledby'))?.textContent,
          svg.querySelector(':scope > title')?.textContent,
          svg.closest('figure')?.querySelector('figcaption')?.textContent,
        ].find((t) => t && t.trim()),
      )
      .filter(Boolean),
  );
  assert.ok(alternatives.length > 0, 'the impact chart has a text alternative');
  console.log(`# impact chart's text alternative: ${alternatives[0].trim().slice(0, 200)}`);
  await shot(page, 'policy-impact');
});

// 4 -------------------------------------------------------------------------------------
step(S4, [S2], async () => {
  await apiOk('POST', '/v1/signing-rules', {
    name: RULE,
    repositories: [`${REGISTRY}/console/**`],
    witness: W_LOCAL,
  });
  // A job that dies (the image does not exist), for the Jobs page and its Retry button.
  await apiOk('POST', '/v1/sign', { image: `${REGISTRY}/${MISSING_REPO}:v1`, witness: W_LOCAL });

  await go(page, 'Trusted images', '#/images');
  await table(page, 'Trusted images').waitFor();
  await page.evaluate(() => {
    window.__signetTestMarker = 'not reloaded';
  });
  const pushed = Date.now();
  const digest = await pushImage(REGISTRY, REPO, 'v1');
  facts.digest = digest;
  console.log(`# pushed ${REGISTRY}/${REPO}:v1 as ${digest}`);
  // When the signature is recorded, to see how fast the page follows.
  let recordedAt;
  const watcher = until('the signature is recorded', LIVE, async () => {
    const r = await api('GET', `/v1/signatures?witness=${W_LOCAL}&limit=100`);
    const s = r.json?.signatures?.find((x) => x.digest === digest);
    if (s) recordedAt = Date.parse(s.created_at);
    return s;
  }).catch(() => undefined);

  const row = rows(page, 'Trusted images', REPO).filter({ hasText: 'Trusted Image' }).first();
  await row.waitFor({ timeout: LIVE });
  const shown = Date.now();
  await watcher;
  await button(row, `Revoke signature ${digest}`).waitFor();
  assert.equal(await page.evaluate(() => window.__signetTestMarker), 'not reloaded', 'the page was not reloaded');
  facts.pushToRow = shown - pushed;
  facts.signatureToRow = recordedAt ? shown - recordedAt : undefined;
  console.log(
    `# push -> row: ${(facts.pushToRow / 1000).toFixed(2)} s; signature recorded -> row: ${
      recordedAt ? `${(facts.signatureToRow / 1000).toFixed(2)} s` : '?'
    }`,
  );
  const status = await page.getByRole('status').allTextContents();
  console.log(`# role=status says: ${JSON.stringify(status)}`);

  // Where it runs, and an unsigned image running in the protected namespace, as the
  // cluster's verifier would report them (sent with the admin token).
  const at = new Date().toISOString();
  await apiOk('POST', '/v1/inventory', {
    cluster: CLUSTER,
    sync: { id: crypto.randomUUID(), page: 0, last: true },
    containers: [
      {
        namespace: 'shop', pod: 'web-7d9f-x2x', pod_uid: crypto.randomUUID(), container: 'web',
        image: `${REGISTRY}/${REPO}:v1`, digest, standing: 'trusted', policy: POLICY,
        witnesses: [W_LOCAL], evaluated_at: at,
      },
      {
        namespace: 'shop', pod: 'tool-5c4b-q8w', pod_uid: crypto.randomUUID(), container: 'tool',
        image: `${REGISTRY}/${UNTRUSTED_REPO}:dev`, digest: sha256(crypto.randomBytes(32)), standing: 'untrusted',
        policy: POLICY, witnesses: [], reason: 'unsigned: no signature by console-local or console-bao', evaluated_at: at,
      },
    ],
  });
  // Re-read the page (hash navigation, not a reload).
  await go(page, 'Witnesses', '#/witnesses');
  await go(page, 'Trusted images', '#/images');
  await rows(page, 'Trusted images', REPO).filter({ hasText: 'Trusted Image' }).first().waitFor();
  await rows(page, 'Trusted images', UNTRUSTED_REPO).filter({ hasText: 'Untrusted' }).first().waitFor();
  await rows(page, 'Trusted images', REPO).filter({ hasText: CLUSTER }).first().waitFor();
  const order = await table(page, 'Trusted images').getByRole('row').allTextContents();
  const untrustedAt = order.findIndex((t) => t.includes(UNTRUSTED_REPO));
  const trustedAt = order.findIndex((t) => t.includes(REPO));
  assert.ok(untrustedAt < trustedAt, `untrusted images running in protected namespaces are listed first: ${JSON.stringify(order)}`);
  await shot(page, 'images');
});

// 5 -------------------------------------------------------------------------------------
step(S5, [S4], async () => {
  const { digest } = facts;
  await page.evaluate(() => {
    window.__signetTestMarker = 'not reloaded';
  });
  const row = rows(page, 'Trusted images', REPO).first();
  await button(row, `Revoke signature ${digest}`).click();
  const dialog = openDialog(page);
  await dialog.waitFor();
  const reason = dialog.getByRole('textbox');
  if (await reason.count()) await reason.first().fill('built from an unreviewed branch');
  const started = Date.now();
  await button(dialog, 'Revoke').click();
  await dialog.waitFor({ state: 'hidden' });
  const revoked = rows(page, 'Trusted images', REPO).filter({ hasText: 'Revoked' }).first();
  await revoked.waitFor({ timeout: 30_000 });
  console.log(`# Revoke -> "Revoked": ${((Date.now() - started) / 1000).toFixed(2)} s`);
  assert.equal(await page.evaluate(() => window.__signetTestMarker), 'not reloaded', 'the page was not reloaded');
  assert.equal(await revoked.getByText('Trusted Image', { exact: true }).count(), 0, 'no "Trusted Image" badge on the revoked row');
  const sigs = await apiOk('GET', `/v1/signatures?witness=${W_LOCAL}&limit=100`);
  const record = sigs.signatures.find((s) => s.digest === digest);
  assert.ok(record?.revoked, `the signature is revoked in the store: ${JSON.stringify(record)}`);
});

// pages ---------------------------------------------------------------------------------
step(SP, [S4], async () => {
  await until('the job of the missing image has failed', LIVE, async () => {
    const r = await apiOk('GET', '/v1/jobs?state=failed&limit=100');
    return r.jobs.find((j) => j.request.image.includes(MISSING_REPO));
  });
  await go(page, 'Jobs', '#/jobs');
  const dead = rows(page, 'Jobs', MISSING_REPO).first();
  await dead.waitFor();
  await dead.getByRole('button', { name: /^Retry/ }).waitFor();
  await rows(page, 'Jobs', REPO).filter({ hasText: 'succeeded' }).first().waitFor();
  await shot(page, 'jobs');

  await go(page, 'Audit', '#/audit');
  for (const label of ['Actor', 'Object', 'Action', 'Outcome', 'From', 'To']) {
    assert.ok((await page.getByLabel(label, { exact: true }).count()) >= 1, `an audit filter labelled "${label}"`);
  }
  await rows(page, 'Audit log', 'witness.create').first().waitFor();
  await rows(page, 'Audit log', 'rule.create').first().waitFor();
  await rows(page, 'Admission decisions', POLICY).first().waitFor();
  await shot(page, 'audit');
  const action = page.getByLabel('Action', { exact: true });
  if ((await action.evaluate((e) => e.tagName)) === 'SELECT') {
    await action.selectOption({ label: 'witness.create' }).catch(() => action.selectOption('witness.create'));
  } else {
    await action.fill('witness.');
  }
  await button(page, 'Filter').click();
  await until('the audit log shows only witness entries', SHORT, async () => (await rows(page, 'Audit log', 'rule.create').count()) === 0);
  await rows(page, 'Audit log', 'witness.create').first().waitFor();

  await go(page, 'Signing rules', '#/rules');
  await rows(page, 'Signing rules', RULE).first().waitFor();
  await shot(page, 'rules');

  await go(page, 'Webhooks', '#/webhooks');
  await rows(page, 'Webhook receivers', 'distribution').first().waitFor();
  await shot(page, 'webhooks');
});

// 6 -------------------------------------------------------------------------------------
const FORBIDDEN = /^(New witness|New policy|Create|Rotate|Revoke|Enable|Disable|Retry|Delete)/;
step(S6, [S1], async () => {
  const before = (await sessionCookie(context))?.value;
  await signOut(page);
  assert.equal(await sessionCookie(context), undefined, 'the cookie is cleared on sign-out');
  const old = await fetch(`${SIGNET}/v1/sessions/current`, { headers: { Cookie: `signet_session=${before}` } });
  assert.equal(old.status, 401, 'the old session cookie no longer works');

  await signIn(page, VIEWER);
  const banner = page.getByRole('banner');
  const header = (await banner.count()) ? banner.first() : page.locator('body');
  await header.getByText('Read-only', { exact: true }).waitFor();
  const session = await currentSession(page);
  assert.equal(session.body.role, 'viewer');

  const pages = [
    ['Witnesses', '#/witnesses', 'Witnesses', W_LOCAL],
    ['Security policies', '#/policies', 'Security policies', POLICY],
    ['Trusted images', '#/images', 'Trusted images', REPO],
    ['Jobs', '#/jobs', 'Jobs', MISSING_REPO],
    ['Audit', '#/audit', 'Audit log', 'witness.create'],
    ['Signing rules', '#/rules', 'Signing rules', RULE],
    ['Webhooks', '#/webhooks', 'Webhook receivers', 'distribution'],
  ];
  for (const [name, hash, caption, text] of pages) {
    await go(page, name, hash);
    // Wait for the page's data (what earlier steps made), so its controls are drawn.
    await rows(page, caption, text)
      .first()
      .waitFor({ timeout: 10_000 })
      .catch(() => table(page, caption).waitFor());
    const controls = await page.getByRole('button', { name: FORBIDDEN }).allTextContents();
    assert.deepEqual(controls, [], `the viewer sees no change buttons on ${name}`);
    assert.equal(await page.getByRole('switch').count(), 0, `the viewer sees no switches on ${name}`);
  }

  // The API refuses a viewer's change even with the cookie and a valid CSRF token.
  const csrf = session.body.csrf_token;
  const create = await pageRequest(page, 'POST', '/v1/witnesses', { name: 'viewer-made', kms_key: LOCAL_KEY }, { 'X-CSRF-Token': csrf });
  assert.equal(create.status, 403, `a viewer's POST /v1/witnesses: ${create.status} ${create.text}`);
  const patch = await pageRequest(page, 'PATCH', `/v1/policies/${POLICY}`, { enabled: false }, { 'X-CSRF-Token': csrf });
  assert.equal(patch.status, 403, `a viewer's PATCH /v1/policies: ${patch.status} ${patch.text}`);
  assert.equal((await api('GET', '/v1/witnesses/viewer-made')).status, 404, 'no witness was created');
  if (done.has(S3)) {
    assert.equal((await apiOk('GET', `/v1/policies/${POLICY}`)).enabled, true, 'the policy stays enabled');
  }
});

// 7 -------------------------------------------------------------------------------------
function evilPages(target) {
  const body = JSON.stringify({ name: 'csrf-evil-form', kms_key: LOCAL_KEY, description: '' }).slice(0, -2);
  JSON.parse(`${body}="}`); // what the form sends is valid JSON: a real attack
  // enctype=text/plain sends NAME=VALUE: the name holds the JSON up to the last value's
  // opening quote, the value closes it: {"...","description":"="}.
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Win a prize</title></head>
<body>
<form id="f" method="POST" action="${target}/v1/witnesses" enctype="text/plain">
<input type="hidden" name='${body.replace(/'/g, '&#39;')}' value='"}'>
</form>
<script src="/evil.js"></script>
</body></html>`;
  const js = `fetch(${JSON.stringify(`${target}/v1/witnesses`)}, {
  method: 'POST', mode: 'no-cors', credentials: 'include',
  headers: { 'Content-Type': 'text/plain' },
  body: ${JSON.stringify(JSON.stringify({ name: 'csrf-evil-fetch', kms_key: LOCAL_KEY }))},
}).catch(() => {}).finally(() => document.getElementById('f').submit());
`;
  return { html, js };
}

step(S7, [S1], async () => {
  if ((await currentSession(page)).body?.role !== 'admin') {
    if (await button(page, 'Sign out').isVisible()) await signOut(page);
    await signIn(page, ADMIN);
  }
  const probe = { name: 'csrf-no-header', kms_key: LOCAL_KEY };
  const none = await pageRequest(page, 'POST', '/v1/witnesses', probe);
  assert.equal(none.status, 403, `POST with the cookie and no X-CSRF-Token: ${none.status} ${none.text}`);
  assert.match(none.text, /csrf/i, 'the refusal mentions CSRF');
  const wrong = await pageRequest(page, 'POST', '/v1/witnesses', probe, { 'X-CSRF-Token': 'not-the-token' });
  assert.equal(wrong.status, 403, `POST with a wrong X-CSRF-Token: ${wrong.status} ${wrong.text}`);
  // Playwright's request API shares the context's cookies and sends no CSRF header.
  const viaRequest = await context.request.post(`${SIGNET}/v1/witnesses`, { data: probe, failOnStatusCode: false });
  assert.equal(viaRequest.status(), 403, `request API without X-CSRF-Token: ${viaRequest.status()}`);
  assert.equal((await api('GET', '/v1/witnesses/csrf-no-header')).status, 404, 'no witness was created');
  // The same session does change things with its token (so the 403s above are the CSRF check).
  if (done.has(S3)) {
    const csrf = (await currentSession(page)).body.csrf_token;
    const note = await pageRequest(page, 'PATCH', `/v1/policies/${POLICY}`, { note: 'shop images must be signed (reviewed)' }, { 'X-CSRF-Token': csrf });
    assert.equal(note.status, 200, `PATCH with the CSRF token: ${note.status} ${note.text}`);
  }

  // A page of another origin (another port on the same loopback host, so same-site: the
  // SameSite=Strict cookie is sent and only the CSRF and Origin checks stand in the way).
  const { html, js } = evilPages(SIGNET);
  evilServer = http.createServer((req, res) => {
    if (req.url === '/evil.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(js);
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(html);
    }
  });
  await new Promise((r) => evilServer.listen(0, '127.0.0.1', r));
  const evilOrigin = `http://127.0.0.1:${evilServer.address().port}`;
  const evil = await context.newPage();
  const posts = [];
  evil.on('response', async (r) => {
    if (r.url() === `${SIGNET}/v1/witnesses` && r.request().method() === 'POST') {
      posts.push({ status: r.status(), body: r.request().postData(), text: await r.text().catch(() => '') });
    }
  });
  await evil.goto(`${evilOrigin}/`);
  await until('both forged requests were answered', SHORT, async () => posts.length >= 2);
  await evil.waitForLoadState('load');
  await evil.close();
  for (const p of posts) {
    console.log(`# forged POST from ${evilOrigin}: ${p.body.trim()} -> ${p.status} ${p.text}`);
    assert.equal(p.status, 403, `a POST from ${evilOrigin} is refused`);
  }
  for (const name of ['csrf-evil-form', 'csrf-evil-fetch']) {
    assert.equal((await api('GET', `/v1/witnesses/${name}`)).status, 404, `no witness ${name} was created`);
  }
  const all = await apiOk('GET', '/v1/witnesses');
  assert.deepEqual(
    all.witnesses.map((w) => w.name).filter((n) => !n.startsWith('console-')),
    [],
    'only the console test witnesses exist',
  );
});

// 8 -------------------------------------------------------------------------------------
step(S8, [S5], async () => {
  // The console's CSP forbids the inline script addScriptTag makes, rightly: this pass
  // runs in its own context that bypasses CSP; the main context checks CSP (step 9).
  const ctx = await newContext({ bypassCSP: true });
  const p = await ctx.newPage();
  axePage = p;
  watch(p, 'axe pass');
  const serious = [];
  const audit = async (label) => {
    await p.addScriptTag({ path: AXE });
    const result = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    for (const v of result.violations) {
      const line = `${label}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.length} nodes: ${v.nodes
        .slice(0, 4)
        .map((n) => n.target.join(' '))
        .join(' | ')})`;
      if (v.impact === 'serious' || v.impact === 'critical') serious.push(line);
      else console.log(`# axe ${line}`);
    }
    console.log(`# axe ${label}: ${result.violations.length} violations, ${result.passes?.length ?? '?'} rules passed`);
  };
  try {
    await p.goto(`${SIGNET}/console`);
    await p.getByLabel('API token', { exact: true }).waitFor();
    await audit('sign-in');
    const signedIn = await ctx.request.post(`${SIGNET}/v1/sessions`, { headers: { Authorization: `Bearer ${ADMIN}` } });
    assert.equal(signedIn.status(), 201, 'POST /v1/sessions');
    await p.reload();
    await nav(p).waitFor();

    await go(p, 'Witnesses', '#/witnesses');
    await rows(p, 'Witnesses', W_LOCAL).first().waitFor();
    await audit('witnesses');
    await button(p, 'New witness').click();
    await p.getByLabel('KMS key', { exact: true }).locator(`option[value="${LOCAL_KEY}"]`).waitFor({ state: 'attached' });
    await audit('new witness form');
    await go(p, 'Witnesses', '#/witnesses');
    await button(p, `Revoke ${W_BAO}`).click();
    await openDialog(p).getByText(POLICY).first().waitFor();
    await audit('revoke witness dialog');
    await button(openDialog(p), 'Cancel').click();
    await table(p, 'Witnesses').getByText(W_LOCAL, { exact: true }).first().click();
    await p.locator('pre').filter({ hasText: 'BEGIN PUBLIC KEY' }).first().waitFor();
    await audit('witness public key');

    await go(p, 'Security policies', '#/policies');
    await rows(p, 'Security policies', POLICY).first().waitFor();
    await audit('policies');
    await button(p, 'New policy').click();
    await p.getByRole('group', { name: 'Witnesses', exact: true }).waitFor();
    await audit('new policy form');
    await go(p, 'Security policies', '#/policies');
    await table(p, 'Security policies').getByText(POLICY, { exact: true }).first().click();
    await table(p, 'Would have been denied').getByRole('row').filter({ hasText: UNTRUSTED_REPO }).first().waitFor();
    await audit('policy impact');

    const others = [
      ['Trusted images', '#/images', 'Trusted images', REPO],
      ['Jobs', '#/jobs', 'Jobs', MISSING_REPO],
      ['Audit', '#/audit', 'Audit log', 'witness.create'],
      ['Signing rules', '#/rules', 'Signing rules', RULE],
      ['Webhooks', '#/webhooks', 'Webhook receivers', 'distribution'],
    ];
    for (const [name, hash, caption, text] of others) {
      await go(p, name, hash);
      await rows(p, caption, text).first().waitFor();
      await audit(name);
    }
  } catch (e) {
    await diagnose(S8);
    throw e;
  } finally {
    await ctx.close();
    axePage = undefined;
  }
  assert.deepEqual(serious, [], 'serious or critical accessibility violations');
});

// 9 -------------------------------------------------------------------------------------
test('9 no console errors, uncaught exceptions or CSP violations on any page', () => {
  where = '9';
  assert.deepEqual(problems, [], 'what the browser reported');
});
