// `#/approvals`: the inbox of requests held by policy until a person decides, polled every
// second because a client (and the person behind it) is blocked until then. The same cards show
// on a live session's page, for that session's requests. An approver may say why; the requester's
// client is told.
//
// Cards are kept by approval id across polls rather than rebuilt, so a button does not move or
// lose focus under the reviewer's pointer while they read the statement.

import * as api from '../api.js';
import { clearError, showError } from '../banner.js';
import { badge, formatSpan, h, replace, sessionLink, timeEl } from '../dom.js';
import { every } from '../poll.js';

const REFRESH_MS = 1000;

export async function renderApprovals(view, { me, signal }) {
  const list = h('div', { id: 'approvals', class: 'approvals' });
  const empty = h('div', { class: 'card empty-state', hidden: true },
    h('p', {}, 'Nothing is waiting for approval.'),
    h('p', { class: 'muted small' }, 'Requests held by a policy rule appear here as they arrive; this page checks every second.'));
  // Readers' requests to open recordings a review rule covers, which the reviewer may grant.
  const reads = h('div', { id: 'access-requests', class: 'approvals' });
  const readsSection = h('section', { hidden: true }, h('h2', {}, 'Requests to read recordings'), reads);
  view.append(h('div', { class: 'page-head' }, h('h1', {}, 'Approvals')), empty, list, readsSection);
  followApprovals(list, { signal, onCount: (n) => { empty.hidden = n > 0; } });
  followAccessRequests(reads, { me: me?.identity, signal, onCount: (n) => { readsSection.hidden = n === 0; } });
}

/** Keeps `list` showing the pending requests to read recordings this reviewer may decide. */
function followAccessRequests(list, { me, signal, onCount }) {
  followCards(list, {
    signal,
    onCount,
    load: api.accessRequests,
    // Another reviewer's pending requests: a reader's own are on the session's page.
    shows: (r) => r.status === 'pending' && r.reader !== me,
    makeCard: accessCard,
    send: api.decideAccess,
    words: { yes: 'grant', what: 'requests to read recordings', decideError: 'access', loadError: 'access' },
  });
}

function accessCard(request, decide) {
  const card = h('article', { class: 'card approval access-request', dataset: { accessId: request.id } });
  replace(card,
    h('div', { class: 'approval-head' },
      h('div', {}, h('strong', {}, request.reader), ' asks to read a recording of ', h('strong', {}, request.connection))),
    h('p', { class: 'access-reason-given' }, request.reason),
    h('div', { class: 'approval-meta' },
      h('span', {}, 'rule ', h('code', {}, request.rule)),
      h('span', { class: 'muted' }, 'requested ', timeEl(new Date(request.requested_at_ms).toISOString())),
      h('span', { class: 'muted' }, 'session ', sessionLink(request.session)),
      h('span', { class: 'muted mono' }, request.id)),
    h('div', { class: 'approval-actions' },
      h('input', { type: 'text', class: 'approval-reason', maxlength: '500', placeholder: 'Reason (optional)', 'aria-label': 'Reason for the decision' }),
      h('button', { type: 'button', class: 'button button-good grant', onclick: () => decide(request, true, card) }, 'Grant'),
      h('button', { type: 'button', class: 'button button-bad deny', onclick: () => decide(request, false, card) }, 'Deny')));
  return card;
}

/**
 * Keeps `list` showing the waiting requests (those of `session` only, when given) as cards an
 * approver decides from; `onCount` hears how many are shown after each change.
 */
export function followApprovals(list, { signal, session, onCount }) {
  followCards(list, {
    signal,
    onCount,
    load: api.approvals,
    shows: (a) => (a.status ?? 'waiting') === 'waiting' && (!session || a.session === session),
    // Oldest first: the longest wait is the most urgent.
    order: (a, b) => a.requested_at_ms - b.requested_at_ms,
    makeCard: approvalCard,
    refresh: updateClock,
    send: api.decide,
    words: { yes: 'approve', what: 'approvals', decideError: 'decide', loadError: 'approvals' },
  });
}

/**
 * Keeps `list` showing, polled every second, the requests `load` answers that `shows` keeps, in
 * `order`, as cards `makeCard(request, decide)` builds and `refresh(card, request)` updates. A
 * card's buttons call `decide(request, yes, card)`, which sends the card's reason with `send`.
 * A request decided here is never brought back by a poll that started before the decision.
 */
function followCards(list, { signal, onCount, load, shows, order, makeCard, refresh = () => {}, send, words }) {
  /** Cards on screen, by request id. */
  const cards = new Map();
  /** Requests decided here. */
  const decided = new Set();

  const decide = async (request, yes, card) => {
    for (const button of card.querySelectorAll('button')) button.disabled = true;
    try {
      await send(request.id, yes, card.querySelector('.approval-reason').value.trim());
      decided.add(request.id);
      card.remove();
      cards.delete(request.id);
      onCount(cards.size);
      clearError(words.decideError);
    } catch (e) {
      showError(`Could not ${yes ? words.yes : 'deny'} ${request.id}: ${e.message}`, words.decideError);
      for (const button of card.querySelectorAll('button')) button.disabled = false;
    }
  };

  every(REFRESH_MS, signal, async () => {
    let answer;
    try {
      answer = await load();
    } catch (e) {
      if (!signal.aborted) showError(`Could not load ${words.what}: ${e.message}`, words.loadError);
      return;
    }
    if (signal.aborted) return;
    clearError(words.loadError);
    const shown = answer.filter((r) => shows(r) && !decided.has(r.id));
    if (order) shown.sort(order);
    const ids = new Set(shown.map((r) => r.id));
    for (const [id, card] of cards) {
      if (!ids.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    for (const request of shown) {
      let card = cards.get(request.id);
      if (!card) {
        card = makeCard(request, decide);
        cards.set(request.id, card);
      }
      refresh(card, request);
      list.append(card); // moves an existing card into its place
    }
    onCount(cards.size);
  });
}

function approvalCard(approval, decide) {
  const card = h('article', { class: 'card approval', dataset: { approvalId: approval.id } });
  replace(card,
    h('div', { class: 'approval-head' },
      h('div', {},
        h('strong', {}, approval.requester), ' on ', h('strong', {}, approval.connection),
        approval.task && [' · task ', h('span', { class: 'task' }, approval.task)]),
      h('span', { class: 'approval-clock muted' })),
    h('pre', { class: 'approval-statement' }, approval.statement),
    h('div', { class: 'approval-meta' },
      h('span', {}, 'rule ', h('code', {}, approval.rule)),
      (approval.classes ?? []).map((c) => badge(c, 'warn')),
      h('span', { class: 'muted' }, 'approvers: ', (approval.approvers ?? []).join(', ') || '—'),
      h('span', { class: 'muted' }, 'requested ', timeEl(new Date(approval.requested_at_ms).toISOString())),
      h('span', { class: 'muted' }, 'session ', sessionLink(approval.session)),
      h('span', { class: 'muted mono' }, approval.id)),
    h('div', { class: 'approval-actions' },
      h('input', {
        type: 'text', class: 'approval-reason', maxlength: '500',
        placeholder: 'Reason (optional; the requester sees it)', 'aria-label': 'Reason for the decision',
      }),
      h('button', { type: 'button', class: 'button button-good approve', onclick: () => decide(approval, true, card) }, 'Approve'),
      h('button', { type: 'button', class: 'button button-bad deny', onclick: () => decide(approval, false, card) }, 'Deny')));
  return card;
}

function updateClock(card, approval) {
  const now = Date.now();
  const left = approval.expires_at_ms - now;
  card.querySelector('.approval-clock').textContent =
    `waiting ${formatSpan(now - approval.requested_at_ms)}${left > 0 ? ` · expires in ${formatSpan(left)}` : ' · expiring'}`;
}
