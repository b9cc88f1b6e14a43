// The ledger status pill in the nav bar: whether witness's last verification of the ledger
// (hash chains, Merkle log, signed checkpoints) found problems, refreshed every 30 seconds.
//
// It only shows what `/api/verify` reports; it does not verify anything in the browser.

import * as api from './api.js';
import { h, replace, sessionLink, timeEl } from './dom.js';
import { every } from './poll.js';

const REFRESH_MS = 30_000;

/** Fills `slot` with the pill and keeps it current until `signal` aborts. */
export function renderLedger(slot, signal) {
  every(REFRESH_MS, signal, async () => {
    let report;
    try {
      report = await api.verify();
    } catch (e) {
      if (!signal.aborted) showUnknown(slot, e);
      return;
    }
    if (!signal.aborted) showReport(slot, report);
  });
}

function showReport(slot, report) {
  const problems = report.problems ?? [];
  const ok = report.ok && problems.length === 0;
  const label = ok ? 'ledger verified' : `ledger: ${problems.length || 'has'} problem${problems.length === 1 ? '' : 's'}`;
  // Keep the panel open across refreshes if the reviewer opened it.
  const wasOpen = slot.querySelector('details')?.open ?? false;
  const last = report.last_checkpoint;
  replace(
    slot,
    h('details', { class: 'ledger', open: wasOpen },
      h('summary', { id: 'ledger-status', class: ['pill', ok ? 'pill-good' : 'pill-bad'] }, h('span', { class: 'dot' }), label),
      h('div', { class: 'ledger-panel' },
        h('dl', {},
          h('dt', {}, 'Checked'), h('dd', {}, timeEl(report.checked_at)),
          h('dt', {}, 'Records'), h('dd', {}, report.records ?? '—'),
          h('dt', {}, 'Sessions'), h('dd', {}, report.sessions ?? '—'),
          h('dt', {}, 'Checkpoints'), h('dd', {}, report.checkpoints ?? '—'),
          h('dt', {}, 'Last checkpoint'), h('dd', {}, last ? [timeEl(last.time), ` (tree size ${last.tree_size})`] : 'none yet'),
          h('dt', {}, 'Not yet sealed'), h('dd', {}, `${report.unsealed_records ?? 0} records`)),
        problems.length > 0 && h('ul', { class: 'ledger-problems' },
          problems.map((p) => h('li', {}, p.session ? [sessionLink(p.session), ': '] : null, p.what))))),
  );
}

function showUnknown(slot, error) {
  replace(
    slot,
    h('span', { id: 'ledger-status', class: 'pill pill-warn', title: error.message },
      h('span', { class: 'dot' }), 'ledger: status unavailable'),
  );
}
