// Building elements and formatting values for every view.
//
// Everything a recording holds (statements, commands, terminal text, identities) was written by
// whoever used the gateway, so it is untrusted. Views therefore build the DOM with `h()`, which
// only ever creates text nodes for content, and never assign `innerHTML`.

/**
 * Creates an element. `props` sets attributes, except: `class` (string or array, falsy parts
 * dropped), `dataset` (object), `on*` functions (event listeners), and `value`/`checked`/`disabled`/
 * `hidden` (set as properties, so they work on form controls). Children may be nodes, strings,
 * numbers, null/false (skipped) or arrays of these.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'hidden') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A small coloured label, e.g. a decision or a status. */
export function badge(text, tone = 'neutral', extraClass) {
  return h('span', { class: ['badge', `badge-${tone}`, extraClass] }, text);
}

const VERIFY_TONES = { verified: 'good', pending: 'neutral', failed: 'bad' };
const VERIFY_HELP = {
  verified: 'Covered by a signed checkpoint of the ledger',
  pending: 'Recorded, but not yet covered by a signed checkpoint (or still open)',
  failed: 'Verification found a problem with this recording',
};

/** The ledger verification state of a session, as the `.verify-badge` tests look for. */
export function verifyBadge(verify) {
  const el = badge(verify, VERIFY_TONES[verify] ?? 'neutral', 'verify-badge');
  el.title = VERIFY_HELP[verify] ?? '';
  return el;
}

/** Open sessions pulse, so a reviewer sees at a glance what is happening right now. */
export function statusBadge(status) {
  return status === 'open' ? badge('live', 'live', 'status-live') : badge('closed', 'neutral');
}

const DECISION_TONES = { allow: 'good', deny: 'bad', hold: 'warn' };

export function decisionBadge(decision) {
  return decision ? badge(decision, DECISION_TONES[decision] ?? 'neutral', 'decision') : null;
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/**
 * A timestamp in the reviewer's local time, to the second, with its offset from UTC so that a
 * time read out to someone elsewhere means the same: `2024-05-01 14:03:22 +02:00`.
 */
export function formatTime(value) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value ?? '');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${utcOffset(date)}`;
}

/** The local offset from UTC at `date`: `+02:00`, `-05:30`, `+00:00`. */
export function utcOffset(date) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** A `<time>` element showing local time, with the exact UTC instant on hover. */
export function timeEl(value) {
  if (!value) return h('span', { class: 'muted' }, '—');
  const date = new Date(value);
  return h('time', { datetime: value, title: Number.isNaN(date.getTime()) ? value : date.toISOString() }, formatTime(date));
}

/** A span of milliseconds for people: `850 ms`, `12.4 s`, `3 m 05 s`, `2 h 14 m`. */
export function formatSpan(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${pad(Math.floor(s % 60))} s`;
  return `${Math.floor(m / 60)} h ${pad(m % 60)} m`;
}

/** A statement's duration, recorded in microseconds. */
export function formatMicros(us) {
  if (us === null || us === undefined) return '';
  return us < 1000 ? `${us} µs` : formatSpan(us / 1000);
}

/** Time since the session started, as a timeline shows it: `+1:02.345`. */
export function formatOffset(ns) {
  const ms = Math.max(0, Math.round(ns / 1e6));
  const minutes = Math.floor(ms / 60000);
  const seconds = ((ms % 60000) / 1000).toFixed(3).padStart(6, '0');
  return minutes >= 60
    ? `+${Math.floor(minutes / 60)}:${pad(minutes % 60)}:${seconds}`
    : `+${minutes}:${seconds}`;
}

/** Sums a `masked` attr (rule → detector → count) into one number. */
export function maskedCount(masked) {
  if (!masked || typeof masked !== 'object') return 0;
  let total = 0;
  for (const detectors of Object.values(masked)) {
    for (const count of Object.values(detectors ?? {})) total += Number(count) || 0;
  }
  return total;
}

/** A link to a session's page. The whole id is shown: ids are UUIDv7, whose first blocks are a
 * timestamp, so any shortened form would look alike for sessions started close together. */
export function sessionLink(id) {
  return h('a', { href: `#/sessions/${encodeURIComponent(id)}`, class: 'mono session-id' }, id);
}
