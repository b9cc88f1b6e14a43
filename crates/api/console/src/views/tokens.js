// `#/tokens`: the tokens agents and people authenticate with: list, create (the secret is shown
// once), revoke. Admins only; witness answers others with 403, whose message is shown as is.
//
// Revoking asks for a second click instead of a browser dialog, which would block the page.

import * as api from '../api.js';
import { clearError, showError } from '../banner.js';
import { badge, h, replace, timeEl } from '../dom.js';

export async function renderTokens(view, { signal }) {
  const tbody = h('tbody', {}, h('tr', {}, h('td', { colspan: 8, class: 'muted empty' }, 'Loading tokens…')));
  const created = h('div', { class: 'created-token', hidden: true });
  const form = createForm(async (spec, submit) => {
    submit.disabled = true;
    try {
      const answer = await api.createToken(spec);
      if (signal.aborted) return;
      clearError('tokens-create');
      showCreated(created, answer);
      form.reset();
      form.querySelector('[name=ttl]').value = '8h';
      await reload();
    } catch (e) {
      if (!signal.aborted) showError(`Could not create the token: ${e.message}`, 'tokens-create');
    } finally {
      submit.disabled = false;
    }
  });
  const body = h('div', {},
    h('section', { class: 'card' }, h('h2', {}, 'New token'), form, created),
    h('section', { class: 'card table-card' },
      h('table', { id: 'tokens', class: 'data-table' },
        h('thead', {}, h('tr', {}, ['ID', 'Identity', 'Groups', 'Task', 'Created', 'Expires', 'State', ''].map((label) => h('th', {}, label)))),
        tbody)));
  view.append(h('div', { class: 'page-head' }, h('h1', {}, 'Tokens')), body);

  const revoke = async (token, button) => {
    button.disabled = true;
    try {
      await api.revokeToken(token.id);
      clearError('tokens-revoke');
      await reload();
    } catch (e) {
      if (!signal.aborted) showError(`Could not revoke ${token.id}: ${e.message}`, 'tokens-revoke');
      button.disabled = false;
    }
  };

  const reload = async () => {
    const answer = await api.tokens();
    if (signal.aborted) return;
    const tokens = answer.tokens ?? [];
    replace(tbody, tokens.length > 0
      ? tokens.map((token) => tokenRow(token, revoke))
      : h('tr', {}, h('td', { colspan: 8, class: 'muted empty' }, 'No tokens yet.')));
  };

  try {
    await reload();
  } catch (e) {
    if (signal.aborted) return;
    // Not an admin (403), most likely: the form would only fail too, so show why instead.
    replace(body, h('div', { class: 'card empty-state' }, h('p', { class: 'form-error' }, e.message)));
    throw e;
  }
}

function createForm(onCreate) {
  const field = (name, label, props) => h('label', { class: 'field' }, h('span', {}, label), h('input', { name, ...props }));
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Create token');
  const form = h('form', { class: 'token-form', onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const text = (name) => String(data.get(name) ?? '').trim();
    const spec = {
      identity: text('identity'),
      groups: text('groups').split(',').map((g) => g.trim()).filter(Boolean),
      ttl: text('ttl') || '8h',
    };
    if (text('task')) spec.task = text('task');
    onCreate(spec, submit);
  } },
  field('identity', 'Identity', { required: true, placeholder: 'agent-7 or alice', autocomplete: 'off' }),
  field('groups', 'Groups', { placeholder: 'comma-separated, e.g. agents, dba', autocomplete: 'off' }),
  field('ttl', 'Lifetime', { value: '8h', placeholder: '8h, 30m, 7d', class: 'narrow', autocomplete: 'off' }),
  field('task', 'Task', { placeholder: 'optional', autocomplete: 'off' }),
  h('div', { class: 'filter-actions' }, submit));
  return form;
}

function showCreated(el, answer) {
  const secret = h('input', { class: 'mono secret', readonly: true, value: answer.token, 'aria-label': 'The new token' });
  const copied = h('span', { class: 'muted small' });
  const copy = async () => {
    secret.select();
    try {
      await navigator.clipboard.writeText(answer.token);
      copied.textContent = 'Copied.';
    } catch {
      // The clipboard API needs a secure context (HTTPS or localhost); the text is selected, so
      // Ctrl+C / ⌘C still works.
      copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  };
  replace(el,
    h('p', {}, h('strong', {}, `Token ${answer.id} for ${answer.identity ?? 'the identity'}. `),
      'Copy it now: witness keeps only its hash and cannot show it again.'),
    h('div', { class: 'secret-row' }, secret, h('button', { type: 'button', class: 'button', onclick: copy }, 'Copy'), copied),
    h('button', { type: 'button', class: 'button button-quiet', onclick: () => { el.hidden = true; el.replaceChildren(); } }, 'Done'));
  el.hidden = false;
  secret.select();
}

function tokenRow(token, revoke) {
  const expired = token.expires && Date.parse(token.expires) < Date.now();
  const state = token.revoked ? badge('revoked', 'bad') : expired ? badge('expired', 'neutral') : badge('active', 'good');
  let armed = false;
  const button = token.revoked || expired ? null : h('button', { type: 'button', class: 'button button-quiet button-small revoke' }, 'Revoke');
  button?.addEventListener('click', () => {
    if (!armed) {
      armed = true;
      button.textContent = 'Click again to revoke';
      button.classList.add('button-bad');
      // Disarm after a while, so a stray click much later does not revoke.
      setTimeout(() => {
        armed = false;
        button.textContent = 'Revoke';
        button.classList.remove('button-bad');
      }, 4000);
      return;
    }
    revoke(token, button);
  });
  return h('tr', { dataset: { tokenId: token.id } },
    h('td', { class: 'mono' }, token.id),
    h('td', {}, token.identity),
    h('td', {}, (token.groups ?? []).join(', ') || h('span', { class: 'muted' }, '—')),
    h('td', {}, token.task ?? h('span', { class: 'muted' }, '—')),
    h('td', { class: 'nowrap' }, timeEl(token.created)),
    h('td', { class: 'nowrap' }, token.expires ? timeEl(token.expires) : h('span', { class: 'muted' }, 'never')),
    h('td', {}, state, typeof token.revoked === 'string' && h('div', { class: 'muted small' }, timeEl(token.revoked))),
    h('td', {}, button));
}
