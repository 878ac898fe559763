// The signet console: sign-in, the page shell and its hash router, and the live event
// stream that keeps the current page up to date.

import { request, setCsrfToken, setSessionEndedHandler } from './api.js';
import { messageOf } from './ui.js';
import { witnessesPage } from './witnesses.js';
import { policiesPage } from './policies.js';
import { imagesPage } from './images.js';
import { jobsPage } from './jobs.js';
import { auditPage } from './audit.js';
import { rulesPage } from './rules.js';
import { webhooksPage } from './webhooks.js';

const PAGES = {
  witnesses: { label: 'Witnesses', create: witnessesPage },
  policies: { label: 'Security policies', create: policiesPage },
  images: { label: 'Trusted images', create: imagesPage },
  jobs: { label: 'Jobs', create: jobsPage },
  audit: { label: 'Audit', create: auditPage },
  rules: { label: 'Signing rules', create: rulesPage },
  webhooks: { label: 'Webhooks', create: webhooksPage },
};
const DEFAULT_ROUTE = '#/images';

const EVENT_TYPES = [
  'signature.published', 'signature.failed', 'signature.revoked', 'witness.created', 'witness.rotated',
  'witness.key_revoked', 'witness.revoked', 'policy.updated', 'admission.break_glass', 'workload.untrusted',
  'admission.decision', 'lagged',
];

const signinView = document.getElementById('signin-view');
// Elements of the sign-in view are found through it, since it is detached while signed in.
const $ = (id) => document.getElementById(id) || signinView.querySelector(`#${id}`);

const state = {
  session: null,
  page: null,
  pageKey: null,
  events: null,
  reconnectTimer: null,
  reconnectDelay: 5000,
  refreshTimer: null,
  refreshFirst: 0,
  refreshForced: false,
  staleWhileHidden: false,
  pendingNews: [],
  expiryTimer: null,
};

// ---------------------------------------------------------------------------
// Announcements (the one role="status" region)

function announce(message) {
  const el = $('announcer');
  if (!el) return;
  el.textContent = String(message);
}

// ---------------------------------------------------------------------------
// Sign-in and the session

function showSignIn({ alert = '', notice = '' } = {}) {
  stopEvents();
  // A confirmation left open would sit on top of the sign-in form.
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  clearTimeout(state.refreshTimer);
  clearTimeout(state.expiryTimer);
  state.session = null;
  state.page = null;
  state.pageKey = null;
  setCsrfToken(null);
  $('page').replaceChildren();
  $('announcer').textContent = '';
  $('app-view').hidden = true;
  $('boot').hidden = true;
  // The sign-in view lives in the document only while it shows (one h1 per page).
  if (!signinView.isConnected) $('app-view').before(signinView);
  signinView.hidden = false;
  const alertEl = $('signin-alert');
  alertEl.textContent = alert;
  alertEl.hidden = !alert;
  const noticeEl = $('signin-notice');
  noticeEl.textContent = notice;
  noticeEl.hidden = !notice;
  document.title = 'Sign in · signet console';
  const token = $('signin-token');
  token.value = '';
  token.focus();
}

function startSession(session, { fromSignIn = false } = {}) {
  state.session = session;
  setCsrfToken(session.csrf_token);
  $('who-name').textContent = String(session.name ?? '');
  $('who-role').textContent = String(session.role ?? '');
  $('readonly-badge').hidden = session.role === 'admin';
  document.body.classList.toggle('read-only', session.role !== 'admin');
  $('boot').hidden = true;
  $('signin-alert').hidden = true;
  $('signin-notice').hidden = true;
  signinView.hidden = true;
  signinView.remove();
  $('app-view').hidden = false;
  scheduleExpiryCheck(session.expires_at);
  startEvents();
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', DEFAULT_ROUTE);
  handleRoute({ focus: fromSignIn ? 'heading' : null });
}

function sessionEnded() {
  if (!state.session) return;
  showSignIn({ alert: 'Your session has ended. Sign in again to continue.' });
}

function scheduleExpiryCheck(expiresAt) {
  clearTimeout(state.expiryTimer);
  const at = Date.parse(expiresAt);
  if (!Number.isFinite(at)) return;
  const delay = Math.min(Math.max(at - Date.now() + 1000, 1000), 2 ** 31 - 1);
  state.expiryTimer = setTimeout(() => {
    // Asking is enough: a 401 ends the session in the page too.
    request('GET', '/v1/sessions/current').catch(() => {});
  }, delay);
}

async function signIn(event) {
  event.preventDefault();
  const token = $('signin-token');
  const submit = $('signin-submit');
  const alertEl = $('signin-alert');
  const value = token.value.trim();
  $('signin-notice').hidden = true;
  if (!value) {
    alertEl.textContent = 'Enter an API token.';
    alertEl.hidden = false;
    token.focus();
    return;
  }
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  try {
    const session = await request('POST', '/v1/sessions', { bearer: value });
    token.value = '';
    startSession(session, { fromSignIn: true });
  } catch (err) {
    let msg = messageOf(err);
    if (err.status === 401) msg = `That token was not accepted: ${err.detail}`;
    else if (err.status === 403) msg = `This token cannot open a console session (only admin and viewer tokens can): ${err.detail}`;
    alertEl.textContent = msg;
    alertEl.hidden = false;
    token.focus();
    token.select();
  } finally {
    submit.disabled = false;
    submit.textContent = 'Sign in';
  }
}

async function signOut() {
  const btn = $('signout');
  btn.disabled = true;
  // Close the stream first: it would otherwise reconnect without a session.
  stopEvents();
  try {
    await request('DELETE', '/v1/sessions/current', { quiet401: true });
  } catch (err) {
    if (err.status !== 401) {
      btn.disabled = false;
      announce(`Signing out failed: ${messageOf(err)}`);
      startEvents();
      return;
    }
  }
  btn.disabled = false;
  showSignIn({ notice: 'You have signed out.' });
}

// ---------------------------------------------------------------------------
// Router

function parseRoute(hash) {
  if (!hash.startsWith('#/')) return null;
  const [path, qs = ''] = hash.slice(2).split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { page: parts[0] || '', rest: parts.slice(1), query: new URLSearchParams(qs) };
}

function navigate(hash, { replace = false, force = false } = {}) {
  if (location.hash === hash) {
    if (force) handleRoute({});
    return;
  }
  if (replace) {
    history.replaceState(null, '', hash);
    handleRoute({});
  } else {
    location.hash = hash;
  }
}

function handleRoute({ focus = 'auto' } = {}) {
  if (!state.session) return;
  let route = parseRoute(location.hash);
  if (!route) {
    if (state.page) return; // an in-page anchor such as #main
    history.replaceState(null, '', DEFAULT_ROUTE);
    route = parseRoute(DEFAULT_ROUTE);
  }
  if (!PAGES[route.page]) {
    history.replaceState(null, '', DEFAULT_ROUTE);
    route = parseRoute(DEFAULT_ROUTE);
  }
  const def = PAGES[route.page];
  for (const a of document.querySelectorAll('nav.sidebar a[data-page]')) {
    if (a.dataset.page === route.page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${def.label} · signet console`;
  if (state.pageKey !== route.page || !state.page) {
    const ctx = {
      session: state.session,
      canWrite: state.session.role === 'admin',
      announce,
      refresh: (delay) => scheduleRefresh(delay ?? 300),
      navigate,
    };
    state.pageKey = route.page;
    state.page = def.create(ctx);
    $('page').replaceChildren(state.page.el);
    if (focus === 'heading' || focus === 'auto') state.page.heading?.focus({ preventScroll: false });
  }
  const load = () => state.page.route(route);
  load.isRoute = true;
  runRefresh(load);
}

// ---------------------------------------------------------------------------
// Refreshing the current page (never two loads at once; a request during a load runs after it)

// Events debounce the reload by `delay`, but a steady stream of events (a busy cluster
// reporting decisions) still reloads the page at least once a second.
const MAX_WAIT = 1000;

function scheduleRefresh(delay = 300, { fromEvent = false } = {}) {
  const now = Date.now();
  if (!fromEvent) state.refreshForced = true;
  if (!state.refreshFirst) state.refreshFirst = now;
  const due = Math.min(now + delay, state.refreshFirst + MAX_WAIT);
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    state.refreshFirst = 0;
    flushNews();
    const forced = state.refreshForced;
    state.refreshForced = false;
    // For events, a hidden tab reloads when it is shown again (see visibilitychange).
    if (!forced && document.visibilityState === 'hidden') {
      state.staleWhileHidden = true;
      return;
    }
    runRefresh(() => state.page?.refresh());
  }, Math.max(0, due - now));
}

async function runRefresh(load) {
  const page = state.page;
  if (!page) return;
  // Per page: a new page never waits for the old one's load.
  if (page.loading) {
    // A pending route change also re-reads the data: a plain refresh does not replace it.
    if (!(page.again?.isRoute && !load.isRoute)) page.again = load;
    return;
  }
  page.loading = true;
  try {
    await load();
  } catch (err) {
    if (!err?.sessionEnded) console.warn('signet console: refresh failed', err);
  } finally {
    page.loading = false;
    const next = page.again;
    page.again = null;
    if (next && state.page === page) runRefresh(next);
  }
}

// ---------------------------------------------------------------------------
// Live events

function setLive(kind) {
  const el = $('live-indicator');
  const text = { live: 'Live', connecting: 'Connecting', reconnecting: 'Reconnecting', offline: 'Offline' }[kind];
  el.className = `live live-${kind}`;
  $('live-text').textContent = text;
  el.title = kind === 'live' ? 'The page follows changes as they happen' : 'Changes are not being followed right now';
}

function describe(type, subject, data) {
  const s = subject ? String(subject) : '';
  const d = data && typeof data === 'object' ? data : {};
  // Signature events carry the record (or the job): name the image, not just its digest.
  const image = typeof d.repository === 'string' && typeof d.digest === 'string'
    ? `${d.repository}@${d.digest}`
    : (typeof d.request?.image === 'string' ? d.request.image : s);
  const by = typeof d.witness === 'string' ? ` by witness ${d.witness}` : (typeof d.request?.witness === 'string' ? ` by witness ${d.request.witness}` : '');
  switch (type) {
    case 'signature.published': return `signature published for ${image}${by}`;
    case 'signature.failed': return `signature failed for ${image}${by}`;
    case 'signature.revoked': return `signature revoked for ${image}${by}`;
    case 'witness.created': return `witness ${s} created`;
    case 'witness.rotated': return `witness ${s} rotated`;
    case 'witness.key_revoked': return `a key version of witness ${s} was revoked`;
    case 'witness.revoked': return `witness ${s} revoked`;
    case 'policy.updated': {
      const action = data && typeof data === 'object' && typeof data.action === 'string' ? data.action : 'updated';
      return `policy ${s} ${action}`;
    }
    case 'admission.break_glass': return `break-glass admission: ${s}`;
    case 'workload.untrusted': return `workload no longer trusted: ${s}`;
    case 'admission.decision': {
      const outcome = data && typeof data === 'object' && typeof data.outcome === 'string' ? data.outcome.replace(/_/g, ' ') : '';
      return `admission decision${outcome ? ` (${outcome})` : ''} for ${s}`;
    }
    case 'lagged': return 'many changes at once: re-reading the page';
    default: return `${type}${s ? ` ${s}` : ''}`;
  }
}

function onEvent(e) {
  let msg = {};
  try {
    msg = JSON.parse(e.data || '{}') || {};
  } catch { msg = {}; }
  const type = typeof msg.type === 'string' ? msg.type : e.type;
  state.pendingNews.push(describe(type === 'message' ? 'update' : type, msg.subject, msg.data));
  scheduleRefresh(300, { fromEvent: true });
}

function flushNews() {
  const news = state.pendingNews;
  state.pendingNews = [];
  if (!news.length) return;
  // Admission decisions can come in bursts: say the others, and count those.
  const decisions = news.filter((n) => n.startsWith('admission decision'));
  const others = [...new Set(news.filter((n) => !n.startsWith('admission decision')))];
  const parts = others.slice(0, 3);
  if (others.length > 3) parts.push(`${others.length - 3} more changes`);
  if (decisions.length === 1) parts.push(decisions[0]);
  else if (decisions.length > 1) parts.push(`${decisions.length} admission decisions`);
  announce(parts.join('; '));
}

function startEvents() {
  stopEvents();
  if (!state.session || typeof EventSource === 'undefined') return;
  setLive('connecting');
  const es = new EventSource('/v1/events/stream');
  state.events = es;
  es.addEventListener('open', () => {
    state.reconnectDelay = 5000;
    setLive('live');
  });
  es.addEventListener('error', () => {
    if (state.events !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      // The gateway refused the stream (the session may have ended): check, then retry.
      setLive('offline');
      es.close();
      state.events = null;
      clearTimeout(state.reconnectTimer);
      state.reconnectTimer = setTimeout(async () => {
        if (!state.session) return;
        try {
          await request('GET', '/v1/sessions/current');
          startEvents();
          scheduleRefresh(0);
        } catch (err) {
          if (!err.sessionEnded) {
            state.reconnectDelay = Math.min(state.reconnectDelay * 2, 60000);
            startEventsLater();
          }
        }
      }, state.reconnectDelay);
    } else {
      setLive('reconnecting');
    }
  });
  for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
  es.addEventListener('message', onEvent);
}

function startEventsLater() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(() => { if (state.session) startEvents(); }, state.reconnectDelay);
}

function stopEvents() {
  clearTimeout(state.reconnectTimer);
  if (state.events) {
    state.events.close();
    state.events = null;
  }
}

// ---------------------------------------------------------------------------
// Boot

async function boot() {
  setSessionEndedHandler(sessionEnded);
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  $('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const target = state.session ? $('main') : signinView;
    target.focus();
    target.scrollIntoView();
  });
  window.addEventListener('hashchange', () => handleRoute({ focus: 'auto' }));
  // Coming back to a tab that slept: re-read what it shows.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.session && state.staleWhileHidden) {
      state.staleWhileHidden = false;
      scheduleRefresh(0);
    }
  });
  try {
    const session = await request('GET', '/v1/sessions/current', { quiet401: true });
    startSession(session);
  } catch (err) {
    if (err.status === 401) showSignIn();
    else showSignIn({ alert: `The gateway could not be asked for your session: ${messageOf(err)}` });
  }
}

boot();
