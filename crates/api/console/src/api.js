// The client of witness's HTTP API: one place that knows paths, the CSRF header and the shape of
// errors, so views only deal in JSON values and `ApiError`s.
//
// It does not retry or cache: views decide when to poll, and every failure reaches the reviewer.

/** A failed API call: the HTTP status (0 when witness did not answer) and the server's message. */
export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    /** The answer's JSON, when it was JSON: some errors say more (`access` on a 403). */
    this.body = body;
  }
}

// The session cookie is HttpOnly, so a script injected into this page could still send requests
// with it; witness therefore also wants this token, which only the console's own code holds (it
// comes in the body of /api/login and /api/me), on every POST.
let csrfToken = null;
let onUnauthorized = () => {};
// Why the reviewer reads recordings (a ticket), asked for once where witness requires one
// (`[review] require_reason`, answered 428) and sent with every later request of this page.
let readingReason = null;

/** Remembers the CSRF token of the current login (null after logging out). */
export function setCsrfToken(token) {
  csrfToken = token ?? null;
}

/** Called when a request answers 401: the login expired or was revoked. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/**
 * Sends one request and returns its JSON (or text, with `{ text: true }`). Non-2xx answers throw
 * an ApiError carrying the server's `{"error"}` message. A 401 also calls the unauthorized
 * handler, unless `expect401` says the caller handles it (login, and the check at start).
 */
async function request(method, path, { body, text = false, expect401 = false } = {}) {
  const headers = { Accept: text ? 'text/plain, */*' : 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  if (readingReason) headers['X-Witness-Reason'] = encodeURIComponent(readingReason);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `witness did not answer ${method} ${path} (${e.message}): check that it is running and reachable`);
  }
  const raw = await response.text();
  if (response.status === 428 && !readingReason) {
    // Witness wants a reason before it shows recordings: ask once, then ask witness again.
    const given = window.prompt(`${errorMessage(method, path, response, raw)}\n\nWhy do you open this recording (a ticket)?`);
    if (given && given.trim()) {
      readingReason = given.trim();
      return request(method, path, { body, text, expect401 });
    }
  }
  if (!response.ok) {
    let body = null;
    try {
      body = JSON.parse(raw);
    } catch {
      // Not JSON: the message says what there is.
    }
    const error = new ApiError(response.status, errorMessage(method, path, response, raw), body);
    if (response.status === 401 && !expect401) onUnauthorized(error);
    throw error;
  }
  if (text) return raw;
  try {
    return raw ? JSON.parse(raw) : null;
  } catch {
    throw new ApiError(response.status, `${method} ${path} answered something that is not JSON: ${raw.slice(0, 120)}`);
  }
}

function errorMessage(method, path, response, raw) {
  try {
    const parsed = JSON.parse(raw);
    if (parsed && typeof parsed.error === 'string' && parsed.error) return parsed.error;
  } catch {
    // Not JSON (a proxy's error page, say): fall through to a message built from the status.
  }
  const detail = raw.trim().slice(0, 200);
  return `${method} ${path} failed: HTTP ${response.status} ${response.statusText}${detail ? `: ${detail}` : ''}`;
}

/** A query string of the non-empty values in `params`, with a leading `?` (or ''). */
export function queryString(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const s = search.toString();
  return s ? `?${s}` : '';
}

const id = (value) => encodeURIComponent(value);

// === Login ===

export const login = (token) => request('POST', '/api/login', { body: { token }, expect401: true });
export const me = () => request('GET', '/api/me', { expect401: true });
export const logout = () => request('POST', '/api/logout', { expect401: true });
export const loginOptions = () => request('GET', '/api/login/options', { expect401: true });

// === Sessions ===

export const sessions = (filter) => request('GET', `/api/sessions${queryString(filter)}`);
export const session = (sessionId) => request('GET', `/api/sessions/${id(sessionId)}`);
export const endSession = (sessionId, reason) => request('POST', `/api/sessions/${id(sessionId)}/end`, { body: { reason } });
export const asciicast = (sessionId) => request('GET', `/api/sessions/${id(sessionId)}/asciicast`, { text: true });

/** One page of a session's events: `{events, next_after}`. */
export const events = (sessionId, { after, limit, kinds } = {}) =>
  request('GET', `/api/sessions/${id(sessionId)}/events${queryString({ after, limit, kinds: kinds?.join(',') })}`);

/**
 * All events of a session after `after` (from the start when undefined), page by page until
 * `next_after` is null. Returns the events and the seq to continue from later.
 */
export async function allEvents(sessionId, { after, kinds } = {}) {
  const all = [];
  let cursor = after;
  for (;;) {
    const page = await events(sessionId, { after: cursor, kinds, limit: 1000 });
    all.push(...page.events);
    if (page.events.length > 0) cursor = page.events[page.events.length - 1].seq;
    if (page.next_after === null || page.next_after === undefined) break;
    cursor = page.next_after;
  }
  return { events: all, last: cursor };
}

// === Approvals ===

export const approvals = () => request('GET', '/api/approvals');
export const decide = (approvalId, approve, reason) =>
  request('POST', `/api/approvals/${id(approvalId)}/${approve ? 'approve' : 'deny'}`, reason ? { body: { reason } } : {});

// === Reading recordings a review rule covers ===

/** Asks to read a session a `[[review.rules]]` rule covers; answers the (pending) request. */
export const askAccess = (sessionId, reason) => request('POST', `/api/sessions/${id(sessionId)}/access`, { body: { reason } });
/** Requests to read recordings this reviewer made or may decide. */
export const accessRequests = () => request('GET', '/api/access');
export const decideAccess = (requestId, grant, reason) =>
  request('POST', `/api/access/${id(requestId)}/${grant ? 'approve' : 'deny'}`, reason ? { body: { reason } } : {});

/** The reason given for reading recordings on this page, if any (asked once where required). */
export const givenReason = () => readingReason;

// === Audit, tokens, ledger ===

export const audit = ({ limit, before } = {}) => request('GET', `/api/audit${queryString({ limit, before })}`);
export const tokens = () => request('GET', '/api/tokens');
export const createToken = (spec) => request('POST', '/api/tokens', { body: spec });
export const revokeToken = (tokenId) => request('POST', `/api/tokens/${id(tokenId)}/revoke`);
export const verify = () => request('GET', '/api/verify');
