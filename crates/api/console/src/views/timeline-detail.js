// The opened form of a timeline row: the request's full text and parameters, every recorded
// attribute, and each result with its rows as a table.
//
// It shows what the recording holds and nothing else: values masked at recording time stay
// masked here, and rows past the recorded cap are counted, not fetched.

import { formatMicros, h } from '../dom.js';

/** Attributes shown in a form of their own, so the generic list leaves them out. */
const SHOWN_ELSEWHERE = new Set(['params', 'error', 'ops', 'updates', 'refs']);
/** Result attributes its heading already shows. */
const SUMMARIZED_RESULT_ATTRS = new Set(['tag', 'rows', 'duration_us', 'denied', 'skipped', 'suspended', 'statement_index', 'rows_recorded']);
/** Result rows rendered at most; more would make the page slow without helping a reviewer. */
const MAX_TABLE_ROWS = 500;

export function renderDetail(row) {
  const { event, results, parts, exit, approval } = row;
  return h('div', { class: 'detail' },
    fullText(event),
    paramsTable(event.attrs?.params ?? event.attrs?.args, event.attrs?.params_total),
    lists(event.attrs ?? {}),
    attrsSection('Attributes', event),
    approval && attrsSection('Approval', approval),
    parts.length > 0 && streamedBody(parts),
    results.map((result, i) => resultSection(result, results.length > 1 ? i + 1 : null)),
    exit && attrsSection('Exit', exit));
}

/** The start of a streamed response body, as its parts were recorded while it flowed. */
function streamedBody(parts) {
  const text = parts.every((p) => p.payload_type === 'text' && typeof p.payload_text === 'string');
  const bytes = parts.reduce((sum, p) => sum + (p.payload_bytes ?? 0), 0);
  return h('div', { class: 'detail-block' },
    h('h4', {}, 'Streamed body ', h('span', { class: 'muted small' }, `${parts.length} parts, ${bytes} bytes, recorded as they flowed`)),
    text ? h('pre', { class: 'full-text' }, parts.map((p) => p.payload_text).join('')) : h('p', { class: 'muted' }, 'Binary parts.'));
}

function fullText(event) {
  if (event.payload_purged) {
    return h('p', { class: 'note' }, `The payload of this event (${event.payload_bytes} bytes) was purged from the ledger; its digest still vouches for the rest of the recording.`);
  }
  if (event.payload_type === 'text' && typeof event.payload_text === 'string') {
    return h('div', { class: 'detail-block' },
      h('h4', {}, event.kind.startsWith('pg.') ? 'Statement' : 'Text'),
      h('pre', { class: 'full-text' }, event.payload_text),
      cutNote(event));
  }
  if (event.payload_type === 'binary') {
    return h('p', { class: 'muted' }, `Binary payload, ${event.payload_bytes} bytes.`);
  }
  return null;
}

function cutNote(event) {
  const attrs = event.attrs ?? {};
  if (attrs.text_cut) {
    return h('p', { class: 'note' }, `The gateway recorded the first part of this text only (${attrs.text_bytes} bytes in all).`);
  }
  if (event.payload_cut) {
    return h('p', { class: 'note' }, `Only the start of this payload is shown (${event.payload_bytes} bytes in all); `,
      h('code', {}, 'witness export'), ' writes the whole session.');
  }
  return null;
}

function paramsTable(params, total) {
  if (!Array.isArray(params) || params.length === 0) return null;
  return h('div', { class: 'detail-block' },
    h('h4', {}, 'Parameters'),
    h('table', { class: 'kv-table params-table' },
      h('tbody', {}, params.map((value, i) => h('tr', {}, h('th', { class: 'mono' }, `$${i + 1}`), h('td', { class: 'mono' }, cell(value)))))),
    total > params.length && h('p', { class: 'note' }, `${total - params.length} more parameters were not recorded (over 64 KiB).`));
}

/** SFTP operations, pushed git refs and a push's report, which are lists of records. */
function lists(attrs) {
  const blocks = [];
  if (Array.isArray(attrs.ops)) {
    blocks.push(h('div', { class: 'detail-block' }, h('h4', {}, 'SFTP operations'),
      h('table', { class: 'kv-table' }, h('tbody', {}, attrs.ops.map((op) =>
        h('tr', {}, h('th', { class: 'mono' }, op.op ?? op.reply ?? ''), h('td', { class: 'mono' }, op.summary ?? '')))))));
  }
  if (Array.isArray(attrs.updates)) {
    blocks.push(h('div', { class: 'detail-block' }, h('h4', {}, 'Ref updates'),
      h('table', { class: 'kv-table' }, h('tbody', {}, attrs.updates.map((u) =>
        h('tr', {}, h('th', { class: 'mono' }, u.ref), h('td', { class: 'mono' }, `${u.old} → ${u.new}`)))))));
  }
  if (Array.isArray(attrs.refs)) {
    blocks.push(h('div', { class: 'detail-block' }, h('h4', {}, 'Push report'),
      h('table', { class: 'kv-table' }, h('tbody', {}, attrs.refs.map((r) =>
        h('tr', {}, h('th', { class: 'mono' }, r.ref), h('td', {}, r.ok ? 'ok' : `refused: ${r.reason ?? ''}`)))))));
  }
  return blocks;
}

function attrsSection(title, event, alsoLeftOut) {
  const entries = Object.entries(event.attrs ?? {})
    .filter(([key]) => !SHOWN_ELSEWHERE.has(key) && !alsoLeftOut?.has(key))
    .sort(([a], [b]) => a.localeCompare(b));
  // A result's usual attributes are already in its heading; list the rest only when there is one.
  if (alsoLeftOut && entries.length === 0) return null;
  return h('div', { class: 'detail-block' },
    h('h4', {}, title, h('span', { class: 'muted small' }, ` ${event.kind} · seq ${event.seq}`)),
    entries.length === 0
      ? h('p', { class: 'muted' }, 'No attributes.')
      : h('table', { class: 'kv-table attrs' }, h('tbody', {}, entries.map(([key, value]) =>
        h('tr', {}, h('th', {}, key), h('td', {}, attrValue(value)))))));
}

function attrValue(value) {
  if (value !== null && typeof value === 'object') {
    if (Array.isArray(value) && value.every((v) => typeof v !== 'object' || v === null)) return value.join(', ');
    return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
  }
  return String(value);
}

function resultSection(result, number) {
  if (result.kind === 'http.response' || result.kind === 'http.upstream_error') {
    return h('div', { class: 'detail-block result' },
      h('h4', {}, result.kind === 'http.response' ? `Response ${result.attrs?.status ?? ''}` : 'No response', ' ',
        h('span', { class: 'muted small' }, result.summary ?? '')),
      fullText(result),
      attrsSection('Response attributes', result));
  }
  const attrs = result.attrs ?? {};
  const heading = [number ? `Result ${number}` : 'Result', ' ', h('span', { class: 'muted small' }, [
    attrs.tag, attrs.rows !== undefined && `${attrs.rows} rows`, attrs.duration_us !== undefined && formatMicros(attrs.duration_us),
    attrs.denied && 'denied by policy', attrs.skipped && 'not executed', attrs.suspended && 'suspended',
  ].filter(Boolean).join(' · '))];
  return h('div', { class: 'detail-block result' },
    h('h4', {}, heading),
    attrs.error && h('div', { class: 'result-error' },
      h('strong', {}, `${attrs.error.severity ?? 'ERROR'} ${attrs.error.sqlstate ?? ''}`), ' ', attrs.error.message),
    resultTable(result),
    attrsSection('Result attributes', result, SUMMARIZED_RESULT_ATTRS));
}

function resultTable(result) {
  if (result.payload_purged) return h('p', { class: 'note' }, 'The result rows were purged from the ledger.');
  if (result.payload_type !== 'json' || typeof result.payload_text !== 'string') return null;
  let payload;
  try {
    payload = JSON.parse(result.payload_text);
  } catch {
    // A payload the API cut mid-way is not valid JSON: show what arrived rather than nothing.
    return h('div', {},
      h('p', { class: 'note' }, 'The result rows could not be read as JSON', result.payload_cut ? ' (the API sent only the start of them).' : '.'),
      h('pre', { class: 'full-text' }, result.payload_text));
  }
  const columns = payload?.columns ?? [];
  const rows = payload?.rows ?? [];
  if (columns.length === 0) return null;
  const total = result.attrs?.rows ?? rows.length;
  const shown = rows.slice(0, MAX_TABLE_ROWS);
  return h('div', { class: 'result-wrap' },
    h('table', { class: 'result-table' },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { title: `type oid ${c.type_oid}${c.format === 1 ? ', binary' : ''}` }, c.name)))),
      h('tbody', {}, shown.map((r) => h('tr', {}, r.map((value) => h('td', { class: value === null ? 'null' : '' }, cell(value))))))),
    total > shown.length && h('p', { class: 'note' },
      `${shown.length} of ${total} rows shown${rows.length < total ? ' (the gateway records the first rows of each result only)' : ''}.`));
}

function cell(value) {
  if (value === null) return 'NULL';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}
