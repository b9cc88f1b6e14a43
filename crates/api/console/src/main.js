// The console's entry point: who is logged in, the nav bar, and hash routing to the views.
//
// Routes are hashes (`#/sessions?task=…`) so that witness serves one page for every URL and a
// filtered view can be linked. Each route change aborts the previous page's AbortSignal, which
// stops its polling; views never keep timers of their own beyond that signal.

import 'asciinema-player/dist/bundle/asciinema-player.css';
import './style.css';

import * as api from './api.js';
import { clearAll, showError } from './banner.js';
import { h, replace } from './dom.js';
import { renderLedger } from './ledger.js';
import { every } from './poll.js';
import { renderApprovals } from './views/approvals.js';
import { renderAudit } from './views/audit.js';
import { renderLogin } from './views/login.js';
import { renderSession } from './views/session.js';
import { renderSessions } from './views/sessions.js';
import { renderTokens } from './views/tokens.js';

/** How often the nav bar's count of waiting approvals is refreshed. */
const WAITING_REFRESH_MS = 5000;

const ROUTES = [
  { path: /^\/login$/, render: renderLogin, public: true },
  { path: /^\/sessions$/, render: renderSessions, nav: 'sessions' },
  { path: /^\/sessions\/([^/]+)$/, render: renderSession, nav: 'sessions' },
  { path: /^\/approvals$/, render: renderApprovals, nav: 'approvals' },
  { path: /^\/audit$/, render: renderAudit, nav: 'audit' },
  { path: /^\/tokens$/, render: renderTokens, nav: 'tokens' },
];

const NAV = [
  ['sessions', 'Sessions'],
  ['approvals', 'Approvals'],
  ['audit', 'Audit'],
  ['tokens', 'Tokens'],
];

/**
 * Where a logged-in reviewer lands: the sessions, or for someone who may only decide approvals
 * (witness refuses them the recordings), the approvals inbox.
 */
function homeRoute() {
  const roles = me?.roles ?? [];
  return roles.includes('admin') || roles.includes('auditor') || !roles.includes('approver') ? '#/sessions' : '#/approvals';
}

/** The logged-in identity (`/api/me`), or null. */
let me = null;
/** Aborted when the logged-in identity changes: stops the nav bar's ledger check. */
let loginAbort = null;
/** Aborted on every route change: stops the current page's polling. */
let pageAbort = null;
/** Shown on the login page once, e.g. why the reviewer was sent back there. */
let loginNotice = null;

function parseHash() {
  const hash = location.hash.replace(/^#/, '');
  const [path, query = ''] = hash.split('?', 2);
  return { path: path || '/', params: new URLSearchParams(query) };
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  pageAbort?.abort();
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  clearAll();

  const { path, params } = parseHash();
  let match = null;
  const found = ROUTES.find((r) => (match = r.path.exec(path)));
  if (path === '/' || !found) {
    // An unknown hash is most likely an old or mistyped link: the home page is a safe place.
    navigate(homeRoute());
    return;
  }
  if (!found.public && !me) {
    navigate(`#/login?next=${encodeURIComponent(location.hash)}`);
    return;
  }
  if (found.public && me) {
    navigate(nextRoute(params));
    return;
  }

  markActiveNav(found.nav);
  const view = document.getElementById('view');
  view.replaceChildren();
  view.className = `page-${path.split('/')[1]}`;
  const context = {
    params,
    id: match[1] ? decodeId(match[1]) : null,
    me,
    signal,
    notice: takeLoginNotice(),
    loggedIn,
    navigate,
  };
  Promise.resolve()
    .then(() => found.render(view, context))
    .catch((e) => {
      if (!signal.aborted) showError(e);
    });
}

/** Where to go after logging in: the `next` of the login link, if it is a route of this page. */
function nextRoute(params) {
  const next = params.get('next');
  return next && next.startsWith('#/') ? next : homeRoute();
}

function decodeId(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    // A malformed escape in a hand-edited link: let the API say there is no such session.
    return text;
  }
}

function takeLoginNotice() {
  const notice = loginNotice;
  loginNotice = null;
  return notice;
}

// === Login state ===

/** Called with `/api/login`'s answer: remembers the identity and goes where the reviewer was headed. */
function loggedIn(identity) {
  setIdentity(identity);
  navigate(nextRoute(parseHash().params));
}

function setIdentity(identity) {
  me = identity;
  api.setCsrfToken(identity?.csrf);
  loginAbort?.abort();
  loginAbort = identity ? new AbortController() : null;
  const topbar = document.getElementById('topbar');
  if (identity) {
    buildTopbar(topbar, identity, loginAbort.signal);
  } else {
    topbar.hidden = true;
    topbar.replaceChildren();
  }
}

async function logOut() {
  try {
    await api.logout();
  } catch (e) {
    // The server-side logout failed (witness unreachable, say): the reviewer must know the cookie
    // may still be valid, so say so on the login page rather than pretending all went well.
    loginNotice = `Logging out on the server failed (${e.message}); close the browser to be sure the login cookie is gone.`;
  }
  setIdentity(null);
  navigate('#/login');
}

api.setUnauthorizedHandler(() => {
  if (!me) return;
  setIdentity(null);
  loginNotice = 'Your login has expired or was revoked: log in again.';
  navigate(`#/login?next=${encodeURIComponent(location.hash)}`);
});

// === Nav bar ===

function buildTopbar(topbar, identity, signal) {
  const roles = identity.roles ?? [];
  const ledger = h('div', { class: 'ledger-slot' });
  replace(
    topbar,
    h('a', { class: 'brand', href: homeRoute() }, h('span', { class: 'brand-mark' }, '◉'), 'Witness'),
    h('nav', { class: 'nav' }, NAV.map(([key, label]) => h('a', { id: `nav-${key}`, href: `#/${key}`, dataset: { nav: key } }, label))),
    h('div', { class: 'topbar-spacer' }),
    ledger,
    h('div', { class: 'whoami' },
      h('span', { id: 'identity', title: `groups: ${(identity.groups ?? []).join(', ') || 'none'}` }, identity.identity),
      roles.map((role) => h('span', { class: 'role' }, role))),
    h('button', { id: 'logout', type: 'button', class: 'button button-quiet', onclick: logOut }, 'Log out'),
  );
  topbar.hidden = false;
  renderLedger(ledger, signal);
  countWaiting(signal);
}

/** The number of requests waiting for the caller (to decide, or its own), beside "Approvals". */
function countWaiting(signal) {
  const link = document.getElementById('nav-approvals');
  if (!link) return;
  const count = h('span', { class: 'nav-count', hidden: true });
  link.append(count);
  every(WAITING_REFRESH_MS, signal, async () => {
    try {
      const waiting = (await api.approvals()).filter((a) => (a.status ?? 'waiting') === 'waiting').length;
      count.textContent = String(waiting);
      count.hidden = waiting === 0;
      count.title = `${waiting} waiting for approval`;
    } catch {
      // The approvals page says what is wrong; the count keeps its last value.
    }
  });
}

function markActiveNav(active) {
  for (const link of document.querySelectorAll('#topbar .nav a')) {
    link.classList.toggle('active', link.dataset.nav === active);
  }
}

// === Start ===

async function start() {
  try {
    setIdentity(await api.me());
  } catch (e) {
    // 401 just means nobody is logged in yet; anything else is worth showing on the login page.
    if (e.status !== 401) loginNotice = e.message;
    setIdentity(null);
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
