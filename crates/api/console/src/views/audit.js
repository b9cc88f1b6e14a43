// `#/audit`: what people did through witness (logins to this console, recordings viewed, tokens
// made and revoked, approvals decided), newest first, with older pages on demand.
//
// Watching the watchers: viewing a recording is itself recorded, and shows up here.

import * as api from '../api.js';
import { showError } from '../banner.js';
import { h, replace, sessionLink, timeEl } from '../dom.js';

const PAGE_SIZE = 100;

const KIND_TONES = {
  'token.created': 'warn',
  'token.revoked': 'warn',
  'session.terminated': 'bad',
  'login.refused': 'warn',
  'approval.decided': 'neutral',
  'recording.viewed': 'outline',
  'console.login': 'outline',
};

export async function renderAudit(view, { signal }) {
  const tbody = h('tbody', {}, h('tr', {}, h('td', { colspan: 5, class: 'muted empty' }, 'Loading the audit trail…')));
  const more = h('button', { type: 'button', class: 'button button-quiet', hidden: true }, 'Older events');
  const refresh = h('button', { type: 'button', class: 'button button-quiet' }, 'Refresh');
  view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Audit'), refresh),
    h('div', { class: 'card table-card' },
      h('table', { id: 'audit', class: 'data-table' },
        h('thead', {}, h('tr', {}, ['Time', 'Event', 'Actor', 'Session', 'What'].map((label) => h('th', {}, label)))),
        tbody)),
    h('div', { class: 'table-summary' }, more));

  // `before` pages by time: the next page starts just before the oldest event shown.
  let oldest = null;

  const load = async (before) => {
    const answer = await api.audit({ limit: PAGE_SIZE, before });
    if (signal.aborted) return;
    const rows = answer.events.map(auditRow);
    if (before === undefined) {
      replace(tbody, rows.length > 0 ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted empty' }, 'Nothing audited yet.')));
    } else {
      tbody.append(...rows);
    }
    if (answer.events.length > 0) oldest = answer.events.at(-1).time_ns;
    more.hidden = answer.events.length < PAGE_SIZE;
  };

  const onError = (e) => {
    if (!signal.aborted) showError(`Could not load the audit trail: ${e.message}`);
  };
  more.addEventListener('click', () => load(oldest).catch(onError));
  refresh.addEventListener('click', () => load(undefined).catch(onError));
  await load(undefined);
}

function auditRow(e) {
  return h('tr', { dataset: { kind: e.kind } },
    h('td', { class: 'nowrap' }, timeEl(e.time)),
    h('td', {}, h('span', { class: ['badge', `badge-${KIND_TONES[e.kind] ?? 'neutral'}`, 'kind'] }, e.kind)),
    h('td', {}, e.actor),
    h('td', {}, e.session ? sessionLink(e.session) : h('span', { class: 'muted' }, '—')),
    h('td', {}, e.summary || e.what, e.summary && e.what && e.summary !== e.what && h('div', { class: 'muted small' }, e.what),
      e.reason && h('div', { class: 'muted small' }, `reason: ${e.reason}`)));
}
