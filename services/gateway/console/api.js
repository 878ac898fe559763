// The gateway API, called with the console's session cookie (same origin). Every request
// that changes something carries the session's CSRF token.

let csrfToken = null;
let onSessionEnded = () => {};

export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** Called once whenever the gateway answers 401 to a request made with the session. */
export function setSessionEndedHandler(fn) {
  onSessionEnded = fn;
}

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail || code || `the gateway answered HTTP ${status}`;
    this.sessionEnded = false;
  }
}

function buildUrl(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

async function errorFrom(res) {
  let code = '';
  let detail = '';
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      code = typeof j.error === 'string' ? j.error : '';
      detail = typeof j.detail === 'string' ? j.detail : '';
    } catch {
      detail = text.slice(0, 300);
    }
  } catch { /* body unreadable */ }
  return new ApiError(res.status, code, detail || `${res.status} ${res.statusText || ''}`.trim());
}

/**
 * request(method, path, {query, body, bearer, text, signal})
 * - bearer: sign in with an API token instead of the cookie (POST /v1/sessions)
 * - text: the answer is text (PEM), not JSON
 */
export async function request(method, path, opts = {}) {
  const headers = { Accept: opts.text ? 'application/x-pem-file, text/plain' : 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: opts.signal };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  if (opts.bearer) {
    headers.Authorization = `Bearer ${opts.bearer}`;
  } else if (method !== 'GET' && method !== 'HEAD' && csrfToken) {
    headers['X-CSRF-Token'] = csrfToken;
  }
  let res;
  try {
    res = await fetch(buildUrl(path, opts.query), init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The gateway cannot be reached. Check your connection and try again.');
  }
  if (res.status === 401 && !opts.bearer && !opts.quiet401) {
    const err = await errorFrom(res);
    err.sessionEnded = true;
    onSessionEnded(err);
    throw err;
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  if (opts.text) return res.text();
  const body = await res.text();
  if (!body) return null;
  try {
    return JSON.parse(body);
  } catch {
    throw new ApiError(res.status, 'bad_answer', 'The gateway answered something that is not JSON.');
  }
}

export const api = {
  get: (path, query, opts) => request('GET', path, { ...opts, query }),
  post: (path, body, query) => request('POST', path, { body, query }),
  patch: (path, body) => request('PATCH', path, { body }),
  del: (path) => request('DELETE', path),
  text: (path) => request('GET', path, { text: true }),
};

/** Encodes one path segment (names are validated by the gateway, but never trusted here). */
export function seg(value) {
  return encodeURIComponent(String(value));
}
