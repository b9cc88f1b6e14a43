// The red banner under the nav bar that shows what an API call answered when it failed.
//
// Errors are never swallowed: a reviewer must know when what they see is stale or incomplete.
// Each message has a source (e.g. "sessions-refresh"), so a poll that recovers can take down its
// own message without hiding someone else's.

import { h, replace } from './dom.js';

const messages = new Map();

function banner() {
  return document.getElementById('error-banner');
}

function render() {
  const el = banner();
  if (messages.size === 0) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  replace(
    el,
    h('div', { class: 'banner-messages' }, [...messages.values()].map((message) => h('p', {}, message))),
    h('button', { type: 'button', class: 'banner-close', title: 'Dismiss', 'aria-label': 'Dismiss', onclick: clearAll }, '×'),
  );
  el.hidden = false;
}

/** Shows `error` (an Error or a string) under `source`, replacing that source's last message. */
export function showError(error, source = 'page') {
  messages.set(source, typeof error === 'string' ? error : error.message || String(error));
  render();
}

/** Takes down the message of `source`, if it has one. */
export function clearError(source = 'page') {
  if (messages.delete(source)) render();
}

/** Takes down every message (on navigation, and when the reviewer dismisses the banner). */
export function clearAll() {
  messages.clear();
  render();
}
