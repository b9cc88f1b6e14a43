// A session's request timeline: one row per request (a statement, a command, a forwarding) with
// what came of it, and one row per other notable event. Clicking a row shows everything recorded
// about it, including a statement's result rows.
//
// Grouping follows the order the gateway records in: PostgreSQL answers requests in the order it
// got them, so results are matched to waiting requests first in, first out; an SSH channel's
// exit belongs to that channel's last request; an HTTP connection answers its requests in order,
// so a response belongs to the oldest request still without one, and so do the parts of a
// streamed body recorded before it (`http.response_part`, shown with it). Terminal bytes
// (`ssh.input`/`ssh.output`) and WebSocket messages (`http.websocket`) are not rows: the player
// shows them.

import { decisionBadge, formatMicros, formatOffset, formatSpan, formatTime, h, maskedCount, replace } from '../dom.js';
import { renderDetail } from './timeline-detail.js';

/** Kind prefixes the session page asks the API for (`kinds=`). */
export const TIMELINE_KINDS = [
  'session.', 'pg.', 'approval.decided',
  'ssh.login', 'ssh.shell', 'ssh.exec', 'ssh.subsystem', 'ssh.exit', 'ssh.forward', 'ssh.target_error',
  'git.push', 'git.report', 'sftp.request',
  'http.login', 'http.request', 'http.response', 'http.refused', 'http.upstream_error', 'http.websocket_closed',
];

/** Kinds shown as rows; `kinds=` matches prefixes, so this also drops any near-miss it lets in. */
const ROW_KINDS = new Set([
  'session.start', 'session.end',
  'pg.query', 'pg.execute', 'pg.function_call', 'pg.result', 'pg.function_result',
  'pg.copy_in', 'pg.copy_out', 'pg.notice', 'pg.cancel',
  'approval.decided',
  'ssh.login', 'ssh.shell', 'ssh.exec', 'ssh.subsystem', 'ssh.exit', 'ssh.forward', 'ssh.target_error',
  'git.push', 'git.report', 'sftp.request',
  'http.login', 'http.request', 'http.response', 'http.response_part', 'http.refused', 'http.upstream_error',
  'http.websocket_closed',
]);
const PG_REQUESTS = new Set(['pg.query', 'pg.execute', 'pg.function_call']);
const PG_RESULTS = new Set(['pg.result', 'pg.function_result']);
const CHANNEL_REQUESTS = new Set(['ssh.shell', 'ssh.exec', 'ssh.subsystem']);

/**
 * Groups events (in seq order) into rows `{event, results, exit, approval}`: a PostgreSQL request
 * gets its `pg.result`s, an SSH channel request its `ssh.exit`, a held request its
 * `approval.decided` (which stays a row of its own too, as the moment the wait ended).
 */
export function buildRows(events) {
  const rows = [];
  const waiting = []; // PostgreSQL requests whose results may still come, oldest first
  const byChannel = new Map(); // SSH channel number → its latest request row
  const byApproval = new Map(); // approval id → the held request's row
  const unanswered = []; // HTTP requests whose response may still come, oldest first

  for (const event of events) {
    if (!ROW_KINDS.has(event.kind)) continue;
    const attrs = event.attrs ?? {};
    if (PG_RESULTS.has(event.kind)) {
      const owner = takeOwner(waiting, attrs.statement_index);
      if (owner) {
        owner.results.push(event);
        continue;
      }
    } else if (event.kind === 'http.response_part') {
      // A streamed body as it flowed: its request is still waiting for the response's record.
      if (unanswered[0]) unanswered[0].parts.push(event);
      continue;
    } else if (event.kind === 'http.response' || event.kind === 'http.upstream_error') {
      // The upstream's answer, or why there is none, to the oldest request waiting for one.
      const owner = unanswered.shift();
      if (owner) {
        owner.results.push(event);
        continue;
      }
    } else if (event.kind === 'ssh.exit') {
      const owner = byChannel.get(attrs.channel);
      if (owner && !owner.exit) {
        owner.exit = event;
        continue;
      }
    }
    const row = { event, results: [], parts: [], exit: null, approval: null };
    rows.push(row);
    if (PG_REQUESTS.has(event.kind)) waiting.push(row);
    // A refused request gets witness's answer, which is not recorded as a response.
    if (event.kind === 'http.request' && attrs.decision !== 'deny') unanswered.push(row);
    if (CHANNEL_REQUESTS.has(event.kind)) byChannel.set(attrs.channel, row);
    if (attrs.approval_id && event.kind !== 'approval.decided') byApproval.set(attrs.approval_id, row);
    if (event.kind === 'approval.decided') {
      const held = byApproval.get(attrs.approval_id);
      if (held) held.approval = event;
      // A held HTTP request that was not approved was never forwarded: no answer will come.
      if (held && attrs.outcome !== 'approved' && unanswered.includes(held)) unanswered.splice(unanswered.indexOf(held), 1);
    }
  }
  return rows;
}

/**
 * The request a result belongs to. A simple query gets one result per statement, numbered by
 * `statement_index` from 1; an execution or function call gets exactly one, without it. A
 * request at the head that cannot take this result is finished, so it leaves the queue. A query
 * still without results takes any result, so a missing index cannot orphan its first one.
 */
function takeOwner(waiting, statementIndex) {
  while (waiting.length > 0) {
    const head = waiting[0];
    if (head.event.kind === 'pg.query') {
      if (head.results.length === 0) return head;
      const last = head.results.at(-1).attrs?.statement_index ?? 0;
      if (statementIndex !== undefined && statementIndex > last) return head;
    } else if (statementIndex === undefined) {
      return waiting.shift();
    }
    waiting.shift();
  }
  return null;
}

/**
 * Renders `rows` into the `#timeline` table's body. `expanded` holds the seqs of rows the
 * reviewer opened; it is kept by the caller so that a refresh keeps them open.
 */
export function renderTimeline(tbody, rows, { startNs, expanded }) {
  if (rows.length === 0) {
    replace(tbody, h('tr', {}, h('td', { colspan: 8, class: 'muted empty' }, 'No requests recorded in this session.')));
    return;
  }
  const trs = [];
  for (const row of rows) {
    const seq = row.event.seq;
    const tr = summaryRow(row, startNs);
    if (expanded.has(seq)) {
      tr.classList.add('expanded');
      tr.setAttribute('aria-expanded', 'true');
    }
    trs.push(tr);
    const detail = h('tr', { class: 'timeline-detail', hidden: !expanded.has(seq) },
      h('td', { colspan: 8 }, expanded.has(seq) ? renderDetail(row) : null));
    trs.push(detail);
    tr.addEventListener('click', (event) => {
      // Selecting text in a row should not fold it.
      if (window.getSelection()?.toString()) return;
      if (event.target.closest('a')) return;
      const open = !expanded.has(seq);
      if (open) expanded.add(seq);
      else expanded.delete(seq);
      tr.classList.toggle('expanded', open);
      tr.setAttribute('aria-expanded', String(open));
      // The detail is built on first opening only: a long session has many rows nobody opens.
      if (open && !detail.firstChild.firstChild) detail.firstChild.append(renderDetail(row));
      detail.hidden = !open;
    });
  }
  replace(tbody, trs);
}

function summaryRow(row, startNs) {
  const { event } = row;
  const attrs = event.attrs ?? {};
  const outcome = outcomeOf(row);
  return h('tr', {
    class: ['timeline-row', outcome.tone === 'bad' && 'has-error', row.event.direction === 'gateway' && 'is-gateway'],
    dataset: { kind: event.kind, seq: event.seq },
    tabindex: 0,
    'aria-expanded': 'false',
    onkeydown: (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        e.currentTarget.click();
      }
    },
  },
  h('td', { class: 'col-time mono nowrap', title: formatTime(event.time) }, formatOffset(event.time_ns - startNs)),
  h('td', { class: 'col-kind' }, h('span', { class: 'kind' }, event.kind)),
  h('td', { class: 'col-text' }, h('div', { class: ['summary', isCode(event.kind) && 'mono'] }, event.summary || '')),
  h('td', { class: 'col-decision nowrap', title: attrs.rule ? `rule ${attrs.rule}` : '' },
    decisionBadge(attrs.decision), row.approval && h('span', { class: 'muted small' }, ` ${row.approval.attrs?.outcome ?? ''}`)),
  h('td', { class: 'col-duration num nowrap' }, durationOf(row)),
  h('td', { class: 'col-rows num' }, rowsOf(row)),
  h('td', { class: 'col-masked num' }, maskedOf(row)),
  h('td', { class: ['col-outcome', outcome.tone === 'bad' && 'error-text'] }, outcome.text));
}

/** Kinds whose summary is a statement or a command, shown in monospace. */
function isCode(kind) {
  return PG_REQUESTS.has(kind) || kind === 'ssh.exec' || kind === 'git.push' || kind === 'http.request';
}

function durationOf({ event, results, exit }) {
  // Each result's duration runs from its request's start, so the last one covers them all.
  const micros = results.map((r) => r.attrs?.duration_us).filter((d) => d !== undefined);
  if (micros.length > 0) return formatMicros(Math.max(...micros));
  const millis = results.map((r) => r.attrs?.duration_ms).filter((d) => d !== undefined);
  if (millis.length > 0) return formatSpan(Math.max(...millis));
  if (exit) return formatSpan((exit.time_ns - event.time_ns) / 1e6);
  if (event.kind === 'approval.decided' && event.attrs?.waited_ms !== undefined) return formatSpan(event.attrs.waited_ms);
  return '';
}

function rowsOf({ event, results }) {
  const counts = [event, ...results].map((e) => e.attrs?.rows).filter((n) => typeof n === 'number');
  return counts.length > 0 ? counts.reduce((a, b) => a + b, 0) : '';
}

function maskedOf({ event, results }) {
  const total = [event, ...results].reduce((sum, e) => sum + maskedCount(e.attrs?.masked), 0);
  return total > 0 ? h('span', { class: 'badge badge-mask', title: 'values masked in this request and its results' }, total) : '';
}

/** What came of a row, in a few words: a command tag, an error, an exit status. */
function outcomeOf({ event, results, parts, exit, approval }) {
  const attrs = event.attrs ?? {};
  if (attrs.decision === 'hold' && results.length === 0 && !exit) {
    return approval ? { text: `approval ${approval.attrs?.outcome ?? 'decided'}`, tone: 'ok' } : { text: 'waiting for approval', tone: 'warn' };
  }
  const failed = results.find((r) => r.attrs?.error);
  if (failed) {
    const { sqlstate, message } = failed.attrs.error;
    return { text: `${sqlstate ? `${sqlstate}: ` : ''}${message}`, tone: 'bad' };
  }
  const answer = results.find((r) => r.kind === 'http.response');
  if (results.some((r) => r.kind === 'http.upstream_error')) return { text: 'the upstream did not answer', tone: 'bad' };
  if (answer) {
    const status = answer.attrs?.status;
    const broken = answer.attrs?.body_complete === false ? ', broken off' : '';
    return { text: `${status}${broken}`, tone: status >= 400 || broken ? 'bad' : 'ok' };
  }
  if (parts.length > 0) return { text: 'streaming', tone: 'ok' };
  if (results.length > 0) {
    return { text: results.map((r) => r.attrs?.tag ?? (r.attrs?.skipped ? 'skipped' : r.summary)).join(', '), tone: 'ok' };
  }
  if (exit) return exitOutcome(exit.attrs ?? {});
  switch (event.kind) {
    case 'pg.result': return attrs.error ? { text: `${attrs.error.sqlstate}: ${attrs.error.message}`, tone: 'bad' } : { text: attrs.tag ?? '', tone: 'ok' };
    case 'ssh.exit': return exitOutcome(attrs);
    case 'ssh.target_error': return { text: 'could not reach the target', tone: 'bad' };
    case 'http.upstream_error': return { text: 'the upstream did not answer', tone: 'bad' };
    case 'http.refused': return { text: 'refused: another identity', tone: 'bad' };
    case 'http.request': return attrs.decision === 'deny' ? { text: 'denied', tone: 'bad' } : { text: '', tone: 'ok' };
    case 'approval.decided': return { text: attrs.by ? `${attrs.outcome} by ${attrs.by}` : attrs.outcome, tone: attrs.outcome === 'approved' ? 'ok' : 'bad' };
    case 'session.end': return { text: attrs.reason ?? '', tone: 'ok' };
    case 'ssh.forward': return attrs.allowed === false ? { text: 'refused', tone: 'bad' } : { text: '', tone: 'ok' };
    case 'pg.notice': return { text: attrs.severity ?? '', tone: 'ok' };
    default: return { text: '', tone: 'ok' };
  }
}

function exitOutcome(attrs) {
  if (attrs.signal) return { text: `killed by signal ${attrs.signal}`, tone: 'bad' };
  if (attrs.status === undefined) return { text: '', tone: 'ok' };
  return { text: `exit ${attrs.status}`, tone: attrs.status === 0 ? 'ok' : 'bad' };
}
