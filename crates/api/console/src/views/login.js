// `#/login`: logging in with a witness token, or through single sign-on when witness has OIDC.
//
// The token is sent once to /api/login, which answers with an HttpOnly cookie; the console never
// stores the token itself.

import * as api from '../api.js';
import { h } from '../dom.js';

export async function renderLogin(view, { params, notice, loggedIn, signal }) {
  const token = h('input', {
    id: 'login-token',
    type: 'password',
    name: 'token',
    autocomplete: 'current-password',
    placeholder: 'witness token',
    required: true,
    autofocus: true,
  });
  const error = h('p', { id: 'login-error', class: 'form-error', role: 'alert', hidden: true });
  // A single sign-on that failed comes back here with witness's reason in `error`.
  const ssoError = params?.get('error');
  if (ssoError) {
    error.textContent = ssoError;
    error.hidden = false;
  }
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'button button-primary' }, 'Log in');
  const sso = h('div', { class: 'sso', hidden: true });

  const form = h('form', { class: 'login-form', onsubmit: onSubmit },
    h('label', { for: 'login-token' }, 'Token'),
    token,
    h('p', { class: 'hint' }, 'A token an admin made for you with ', h('code', {}, 'witness token create'), ' or on the Tokens page.'),
    error,
    submit);

  view.append(h('div', { class: 'login-card card' },
    h('h1', {}, h('span', { class: 'brand-mark' }, '◉'), 'Witness'),
    h('p', { class: 'muted' }, 'Review console: recorded sessions, approvals and the audit trail.'),
    notice && h('p', { class: 'login-notice' }, notice),
    form,
    sso));
  token.focus();

  async function onSubmit(event) {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const identity = await api.login(token.value.trim());
      if (!signal.aborted) loggedIn(identity);
    } catch (e) {
      // 401 (unknown token) and 403 (an identity with no role: an agent's token, say) both come
      // with a message that says what to do; show it as it is.
      error.textContent = e.message;
      error.hidden = false;
      token.select();
    } finally {
      submit.disabled = false;
    }
  }

  try {
    const options = await api.loginOptions();
    if (options?.oidc && !signal.aborted) {
      sso.append(
        h('div', { class: 'divider' }, h('span', {}, 'or')),
        h('a', { id: 'login-sso', class: 'button button-wide', href: '/api/login/oidc' }, 'Log in with single sign-on'));
      sso.hidden = false;
    }
  } catch (e) {
    // Token login still works; say why single sign-on is not offered instead of hiding it silently.
    if (!signal.aborted) {
      sso.append(h('p', { class: 'hint' }, `Could not ask witness whether single sign-on is set up: ${e.message}`));
      sso.hidden = false;
    }
  }
}
