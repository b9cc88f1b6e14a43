// `#/sessions`: the list of recorded sessions, with a filter bar whose values live in the hash
// (`#/sessions?task=…&status=open`) so any filtered view can be linked, refreshed every 3 seconds.
//
// Filtering happens in witness (the ledger's index), never here: the page shows one page of the
// answer and the total.

import * as api from '../api.js';
import { clearError, showError } from '../banner.js';
import { badge, formatSpan, formatTime, h, replace, statusBadge, timeEl, verifyBadge } from '../dom.js';
import { every } from '../poll.js';

const REFRESH_MS = 3000;
const PAGE_SIZE = 50;
/** Filters the bar edits, in its order; each is a query parameter of /api/sessions and of the hash. */
const TEXT_FILTERS = [
  ['identity', 'Identity', 'alice'],
  ['connection', 'Connection', 'prod-db'],
  ['task', 'Task', 'ticket or task id'],
  ['q', 'Search', 'text in statements and commands'],
];
/** Query parameters passed through from the hash though the bar has no field for them. */
const PASSED_THROUGH = ['until'];

export async function renderSessions(view, { params, signal, navigate }) {
  const offset = Math.max(0, Number(params.get('offset')) || 0);
  const form = filterBar(params, (query) => navigate(`#/sessions${api.queryString(query)}`));
  const tbody = h('tbody', {}, h('tr', {}, h('td', { colspan: 9, class: 'muted empty' }, 'Loading sessions…')));
  const summary = h('div', { class: 'table-summary' });
  const refreshed = h('span', { class: 'refresh-note muted' });

  view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Sessions'), refreshed),
    form,
    h('div', { class: 'card table-card' },
      h('table', { id: 'sessions', class: 'data-table clickable' },
        h('thead', {}, h('tr', {},
          ['Started', 'Identity', 'Connection', 'Protocol', 'Task', 'Duration', 'Events', 'Status', 'Ledger']
            .map((label) => h('th', {}, label)))),
        tbody)),
    summary,
  );

  const query = { ...filtersFrom(params), limit: PAGE_SIZE, offset };
  let lastAnswer = null;
  every(REFRESH_MS, signal, async () => {
    let answer;
    try {
      answer = await api.sessions(query);
    } catch (e) {
      if (!signal.aborted) showError(`Could not load sessions: ${e.message}`, 'sessions');
      return;
    }
    if (signal.aborted) return;
    clearError('sessions');
    // Rebuilding identical rows every 3 s would reset focus and hover for nothing; open sessions
    // are the exception, as their duration keeps growing.
    const fingerprint = JSON.stringify(answer);
    if (fingerprint !== lastAnswer || answer.sessions.some((s) => s.status === 'open')) {
      renderRows(tbody, answer.sessions, navigate);
    }
    lastAnswer = fingerprint;
    renderSummary(summary, answer.total, offset, answer.sessions.length, params, navigate);
    refreshed.textContent = `Updated ${formatTime(new Date()).slice(11)} · refreshes every 3 s`;
  });
}

/** The filter values of the hash, as /api/sessions takes them. */
function filtersFrom(params) {
  const filters = {};
  for (const key of [...TEXT_FILTERS.map(([k]) => k), 'protocol', 'status', 'since', ...PASSED_THROUGH]) {
    const value = params.get(key);
    if (value) filters[key] = value;
  }
  return filters;
}

function filterBar(params, apply) {
  const input = (key, label, placeholder) => h('label', { class: 'field' }, h('span', {}, label),
    h('input', { id: `filter-${key}`, name: key, type: 'search', placeholder, value: params.get(key) ?? '' }));
  const select = (key, label, options) => h('label', { class: 'field field-narrow' }, h('span', {}, label),
    h('select', { id: `filter-${key}`, name: key },
      options.map(([value, text]) => h('option', { value, selected: (params.get(key) ?? '') === value }, text))));
  const since = h('input', { id: 'filter-since', name: 'since', type: 'datetime-local', value: toLocalInput(params.get('since')) });

  const form = h('form', { class: 'filter-bar card', onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const query = {};
    for (const [key, value] of data) if (value.trim()) query[key] = value.trim();
    // The input gives local wall-clock time; the API and the link get an unambiguous instant.
    if (query.since) query.since = new Date(query.since).toISOString();
    for (const key of PASSED_THROUGH) if (params.get(key)) query[key] = params.get(key);
    apply(query);
  } },
  TEXT_FILTERS.slice(0, 2).map(([key, label, placeholder]) => input(key, label, placeholder)),
  select('protocol', 'Protocol', [['', 'any'], ['postgres', 'postgres'], ['ssh', 'ssh']]),
  TEXT_FILTERS.slice(2).map(([key, label, placeholder]) => input(key, label, placeholder)),
  select('status', 'Status', [['', 'any'], ['open', 'open'], ['closed', 'closed']]),
  h('label', { class: 'field field-since' }, h('span', {}, 'Since'), since),
  h('div', { class: 'filter-actions' },
    h('button', { id: 'filter-apply', type: 'submit', class: 'button button-primary' }, 'Apply'),
    h('a', { class: 'button button-quiet', href: '#/sessions' }, 'Clear')));
  return form;
}

/** An RFC 3339 instant as a `datetime-local` input's value, in local time. */
function toLocalInput(value) {
  if (!value) return '';
  const date = new Date(/^\d+$/.test(value) ? Number(value) : value);
  if (Number.isNaN(date.getTime())) return '';
  return formatTime(date).replace(' ', 'T');
}

function renderRows(tbody, sessions, navigate) {
  if (sessions.length === 0) {
    replace(tbody, h('tr', {}, h('td', { colspan: 9, class: 'muted empty' }, 'No sessions match these filters.')));
    return;
  }
  replace(tbody, sessions.map((s) => sessionRow(s, navigate)));
}

function sessionRow(s, navigate) {
  const href = `#/sessions/${encodeURIComponent(s.id)}`;
  const open = () => navigate(href);
  return h('tr', {
    dataset: { sessionId: s.id },
    tabindex: 0,
    onclick: (event) => {
      // Let the link in the first cell do its own thing (open in a new tab, say).
      if (!event.target.closest('a')) open();
    },
    onkeydown: (event) => {
      if (event.key === 'Enter') open();
    },
  },
  h('td', { class: 'col-started nowrap' }, h('a', { href }, timeEl(s.started))),
  h('td', { class: 'col-identity' }, s.identity),
  h('td', { class: 'col-connection' }, s.connection),
  h('td', { class: 'col-protocol' }, badge(s.protocol, 'outline'), s.terminal && h('span', { class: 'muted small', title: 'Has a terminal replay' }, ' ▶')),
  h('td', { class: 'col-task' }, s.task ?? h('span', { class: 'muted' }, '—')),
  h('td', { class: 'col-duration nowrap' }, duration(s)),
  h('td', { class: 'col-events num' }, s.events,
    s.denied > 0 && [' ', badge(`${s.denied} denied`, 'bad', 'denied-count')],
    s.held > 0 && [' ', badge(`${s.held} held`, 'warn', 'held-count')]),
  h('td', { class: 'col-status', title: s.end_reason ?? '' }, statusBadge(s.status)),
  h('td', { class: 'col-verify' }, verifyBadge(s.verify)));
}

function duration(s) {
  const start = Date.parse(s.started);
  const end = s.ended ? Date.parse(s.ended) : Date.now();
  return formatSpan(end - start);
}

function renderSummary(el, total, offset, shown, params, navigate) {
  const page = (newOffset) => {
    const next = new URLSearchParams(params);
    if (newOffset > 0) next.set('offset', String(newOffset));
    else next.delete('offset');
    const query = next.toString();
    navigate(`#/sessions${query ? `?${query}` : ''}`);
  };
  replace(el,
    h('span', { class: 'muted' }, shown === 0 ? 'No sessions' : `${offset + 1}–${offset + shown} of ${total} sessions`),
    h('div', { class: 'pager' },
      h('button', { type: 'button', class: 'button button-quiet', disabled: offset === 0, onclick: () => page(Math.max(0, offset - PAGE_SIZE)) }, '← Newer'),
      h('button', { type: 'button', class: 'button button-quiet', disabled: offset + shown >= total, onclick: () => page(offset + PAGE_SIZE) }, 'Older →')));
}
