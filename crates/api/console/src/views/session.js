// `#/sessions/ID`: one recorded session: who, where and when, whether the ledger vouches for it,
// the terminal replay when it had a pty, and its request timeline. An open session is followed:
// new events are fetched every 3 seconds. An admin may end a live session, saying why.

import * as api from '../api.js';
import { clearError, showError } from '../banner.js';
import { badge, formatSpan, h, replace, statusBadge, timeEl, verifyBadge } from '../dom.js';
import { every } from '../poll.js';
import { followApprovals } from './approvals.js';
import { renderPlayer } from './player.js';
import { TIMELINE_KINDS, buildRows, renderTimeline } from './timeline.js';

const FOLLOW_MS = 3000;

export async function renderSession(view, { id, me, signal }) {
  const header = h('section', { id: 'session-header', class: 'card session-header' }, h('p', { class: 'muted' }, 'Loading session…'));
  // Apart from the header, which is drawn again at every refresh: a reason being typed stays.
  const endSection = h('section', { id: 'end-session', class: 'card end-session', hidden: true });
  // This session's requests waiting for approval, decided here as in the inbox.
  const waitingList = h('div', { id: 'session-approvals', class: 'approvals' });
  const waitingSection = h('section', { class: 'session-approvals', hidden: true }, h('h2', {}, 'Waiting for approval'), waitingList);
  const playerSection = h('section', { class: 'card player-card', hidden: true });
  const count = h('span', { class: 'muted small' });
  const filter = h('input', { id: 'timeline-filter', type: 'search', placeholder: 'Filter rows', 'aria-label': 'Filter timeline rows' });
  const tbody = h('tbody', {}, emptyRow('Loading events…'));
  view.append(
    h('a', { class: 'back', href: '#/sessions' }, '← Sessions'),
    header,
    waitingSection,
    endSection,
    playerSection,
    h('section', { class: 'card table-card' },
      h('div', { class: 'section-head' }, h('h2', {}, 'Timeline ', count), filter),
      h('table', { id: 'timeline', class: 'data-table timeline' },
        h('thead', {}, h('tr', {},
          ['Time', 'Kind', 'Statement / command', 'Decision', 'Duration', 'Rows', 'Masked', 'Outcome']
            .map((label) => h('th', {}, label)))),
        tbody)));

  let session;
  try {
    session = await api.session(id);
  } catch (e) {
    // The banner says it too; this keeps the page from claiming it is still loading.
    replace(header, h('p', { class: 'form-error' }, `Session ${id}: ${e.message}`));
    replace(tbody, emptyRow('No events: the session could not be read.'));
    throw e;
  }
  if (signal.aborted) return;
  renderHeader(header, session);
  renderEndSession(endSection, session, me);
  if (session.live && (me?.roles ?? []).some((role) => role === 'approver' || role === 'admin')) {
    // The section shows only while something waits.
    followApprovals(waitingList, { signal, session: session.id, onCount: (n) => { waitingSection.hidden = n === 0; } });
  }
  if (session.terminal) {
    playerSection.hidden = false;
    renderPlayer(playerSection, id, { live: session.status === 'open', signal });
  }

  // Everything fetched so far; the next fetch continues after `last`.
  const events = [];
  let last;
  // Rows the reviewer opened, by seq: kept across refreshes of an open session.
  const expanded = new Set();
  const showTimeline = () => {
    const rows = buildRows(events);
    count.textContent = `${rows.length} rows`;
    renderTimeline(tbody, rows, { startNs: session.started_ns, expanded });
    applyFilter(tbody, filter.value);
  };
  filter.addEventListener('input', () => applyFilter(tbody, filter.value));

  const fetchEvents = async () => {
    const page = await api.allEvents(id, { after: last, kinds: TIMELINE_KINDS });
    last = page.last;
    events.push(...page.events);
    return page.events.length;
  };
  try {
    await fetchEvents();
  } catch (e) {
    if (e.status === 403 && e.body?.access) {
      // A review rule covers this session: ask another reviewer, and show the request waiting.
      replace(tbody, emptyRow('Reading this recording needs another reviewer\'s approval.'));
      view.insertBefore(accessPanel(id, e.body.access, me?.identity, signal), playerSection);
      playerSection.hidden = true;
      return;
    }
    replace(tbody, emptyRow(`The events could not be read: ${e.message}`));
    throw e;
  }
  if (signal.aborted) return;
  showTimeline();
  if (session.status !== 'open') return;

  // Following stops when the page goes away or when the session closes, whichever comes first.
  const follow = new AbortController();
  signal.addEventListener('abort', () => follow.abort(), { once: true });
  every(FOLLOW_MS, follow.signal, async () => {
    try {
      const now = await api.session(id);
      const added = await fetchEvents();
      if (follow.signal.aborted) return;
      clearError('follow');
      renderHeader(header, now);
      if (!now.live) endSection.hidden = true;
      if (added > 0) showTimeline();
      // Once closed, nothing more will be recorded; the last fetch above came after the close.
      if (now.status !== 'open') follow.abort();
    } catch (e) {
      if (!follow.signal.aborted) showError(`Could not follow the session: ${e.message}`, 'follow');
    }
  });
}

/**
 * The card of a recording a `[[review.rules]]` rule covers: the rule and who may grant, a reason
 * field and a button to ask, then the request waiting (checked every 3 seconds); once granted,
 * the page opens the recording.
 */
function accessPanel(sessionId, access, reader, signal) {
  const status = h('p', { id: 'access-status', class: 'muted' });
  const reason = h('input', {
    id: 'access-reason', type: 'text', maxlength: '500', value: api.givenReason() ?? '',
    placeholder: 'Why you need to read it (a ticket)', 'aria-label': 'Reason for reading this recording',
  });
  const ask = h('button', { id: 'access-ask', type: 'button', class: 'button' }, 'Ask for access');
  const form = h('div', { class: 'approval-actions' }, reason, ask);
  const card = h('section', { id: 'access', class: 'card access' },
    h('h2', {}, 'Approval needed to read'),
    h('p', {}, 'Rule ', h('code', {}, access.rule), ': a member of ', h('strong', {}, (access.approvers ?? []).join(', ')),
      ' other than you grants reading this recording for a while.'),
    form, status);
  const show = (request) => {
    if (!request) return;
    form.hidden = request.status === 'pending' || request.status === 'granted';
    status.textContent = {
      pending: `Request ${request.id} waits for a reviewer (asked ${new Date(request.requested_at_ms).toISOString()}: ${request.reason}).`,
      granted: `Granted by ${request.decided_by}; opening the recording…`,
      denied: `Denied by ${request.decided_by}${request.decision_reason ? `: ${request.decision_reason}` : ''}. You may ask again.`,
      expired: 'The last grant has expired. Ask again.',
    }[request.status] ?? request.status;
    if (request.status === 'granted') window.dispatchEvent(new HashChangeEvent('hashchange'));
  };
  show(access.request);
  ask.addEventListener('click', async () => {
    if (!reason.value.trim()) {
      status.textContent = 'Say why you need to read it first.';
      return;
    }
    ask.disabled = true;
    try {
      show(await api.askAccess(sessionId, reason.value.trim()));
      clearError('access');
    } catch (e) {
      showError(`Could not ask for access: ${e.message}`, 'access');
    } finally {
      ask.disabled = false;
    }
  });
  every(FOLLOW_MS, signal, async () => {
    try {
      const mine = (await api.accessRequests()).find((r) => r.session === sessionId && r.reader === reader && r.status !== 'denied');
      if (!signal.aborted && mine) show(mine);
    } catch (e) {
      if (!signal.aborted) showError(`Could not check the request: ${e.message}`, 'access');
    }
  });
  return card;
}

function emptyRow(text) {
  return h('tr', {}, h('td', { colspan: 8, class: 'muted empty' }, text));
}

function renderHeader(header, s) {
  const ended = s.ended ? Date.parse(s.ended) : Date.now();
  const facts = [
    ['Identity', s.identity],
    ['Connection', s.connection],
    ['Protocol', badge(s.protocol, 'outline')],
    ['Task', s.task ?? h('span', { class: 'muted' }, '—')],
    ['Client', h('span', { class: 'mono' }, s.client_addr ?? '—')],
    ['Groups', s.groups?.length ? s.groups.join(', ') : h('span', { class: 'muted' }, '—')],
    ['Started', timeEl(s.started)],
    ['Ended', s.ended ? timeEl(s.ended) : h('span', { class: 'muted' }, 'still open')],
    ['Duration', formatSpan(ended - Date.parse(s.started))],
    ['Events', s.events],
  ];
  replace(header,
    h('div', { class: 'session-title' },
      h('h1', {}, s.identity, h('span', { class: 'arrow' }, ' → '), s.connection),
      h('div', { class: 'session-badges' }, statusBadge(s.status), verifyBadge(s.verify))),
    h('p', { class: 'mono muted small session-id' }, s.id),
    h('dl', { class: 'facts' }, facts.map(([label, value]) => h('div', {}, h('dt', {}, label), h('dd', {}, value)))),
    s.end_reason && h('p', { class: 'end-reason' }, h('strong', {}, 'Ended: '), s.end_reason),
    s.verify === 'failed' && h('p', { class: 'form-error' },
      'Verification found a problem with this recording: see the ledger status in the nav bar for what failed.'));
}

/** For an admin, while the session is live: a reason and a button that ends the session. */
function renderEndSession(section, s, me) {
  if (!s.live || !(me?.roles ?? []).includes('admin')) return;
  const reason = h('input', {
    id: 'end-reason', type: 'text', maxlength: '500', required: true,
    placeholder: 'Why (recorded, and told to its client)', 'aria-label': 'Why the session ends',
  });
  const button = h('button', { type: 'submit', class: 'button button-bad' }, 'End session');
  const form = h('form', { class: 'end-session-form' }, h('h2', {}, 'End this live session'), reason, button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      await api.endSession(s.id, reason.value);
      clearError('end-session');
      replace(section, h('p', { class: 'muted' }, 'Ending the session: its end appears here once recorded.'));
    } catch (e) {
      showError(`Could not end the session: ${e.message}`, 'end-session');
      button.disabled = false;
    }
  });
  replace(section, form);
  section.hidden = false;
}

/** Hides the rows (and their opened details) whose text does not contain `query`. */
function applyFilter(tbody, query) {
  const needle = query.trim().toLowerCase();
  for (const row of tbody.querySelectorAll('tr.timeline-row')) {
    const match = !needle || row.textContent.toLowerCase().includes(needle);
    row.hidden = !match;
    const detail = row.nextElementSibling;
    if (detail?.classList.contains('timeline-detail')) {
      detail.hidden = !match || !row.classList.contains('expanded');
    }
  }
}
