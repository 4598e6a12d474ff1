// Building blocks the pages share: loading an API answer, the date range
// picker, summary tiles with their change, tables and the heat grid.
import { html, useEffect, useState } from '../vendor/preact-htm.mjs';

import * as fmt from './format.js';

/** An API error in place of the part that failed. */
export function Failed({ error }) {
  return html`<p class="error" role="alert">${error}</p>`;
}

/** `GET path` (null: nothing yet): `[answer, error]`, both null while it loads. */
export function useApi(client, path) {
  const [state, setState] = useState([null, null]);
  const [round, setRound] = useState(0);
  useEffect(() => {
    if (!path) return undefined;
    let current = true;
    if (round === 0) setState([null, null]);
    client
      .get(path)
      .then((answer) => current && setState([answer, null]))
      .catch((e) => current && setState([null, e.message]));
    return () => {
      current = false;
    };
  }, [client, path, round]);
  // The third element asks again (keeping the last answer meanwhile).
  return [state[0], state[1], () => setRound((r) => r + 1)];
}

/** Query parameters from an object (values as text; objects as JSON). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '' || v === false) continue;
    q.set(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  return q.toString();
}

export const RANGES = [
  ['today', 'Today'],
  ['7d', '7 days'],
  ['30d', '30 days'],
  ['90d', '90 days'],
  ['1y', '12 months'],
  ['custom', 'Custom'],
];

/** The range of a request: `{range, from, to, compare, filters}`. */
export function useRange(initial = '30d') {
  return useState({ range: initial, from: '', to: '', compare: false, filters: [] });
}

/**
 * The range's query parameters (a custom range needs both days), with the
 * property filters (the analytics API's `filters`, as JSON text).
 */
export function rangeParams(r) {
  const filters = r.filters && r.filters.length ? r.filters : undefined;
  if (r.range === 'custom') {
    if (!r.from || !r.to) return null;
    return { range: 'custom', from: r.from, to: r.to, compare: r.compare, filters };
  }
  return { range: r.range, compare: r.compare, filters };
}

/**
 * The date range, the comparison and the property filters of a page; with
 * `app` and `page`, the signed-in user's saved views of the page too
 * (`extra`: the page's own state saved with the range, given back to
 * `onExtra` when a view is opened).
 */
export function RangePicker({ value, onChange, app, page, extra, onExtra }) {
  const set = (patch) => onChange({ ...value, ...patch });
  return html`
    <div class="range" role="group" aria-label="Date range">
      <label class="inline">Range
        <select value=${value.range} onChange=${(e) => set({ range: e.target.value })}>
          ${RANGES.map(([id, label]) => html`<option value=${id}>${label}</option>`)}
        </select>
      </label>
      ${value.range === 'custom' &&
      html`<label class="inline">From<input type="date" value=${value.from} onChange=${(e) => set({ from: e.target.value })} /></label>
        <label class="inline">To<input type="date" value=${value.to} onChange=${(e) => set({ to: e.target.value })} /></label>`}
      <label class="inline check"><input type="checkbox" checked=${value.compare} onChange=${(e) => set({ compare: e.target.checked })} /> Compare to the previous period</label>
    </div>
    <${FilterBar} filters=${value.filters || []} onChange=${(filters) => set({ filters })} />
    ${app && page && app.me && html`<${SavedViews} app=${app} page=${page} state=${{ range: value, extra }} onOpen=${(v) => {
      onChange({ ...value, ...v.range, filters: v.range.filters || [] });
      if (onExtra && v.extra !== undefined) onExtra(v.extra);
    }} />`}
  `;
}

/**
 * Download links of an analytics answer (`path`: its GET address), as the
 * API's CSV (the answer's main table) and Excel (every table). Plain links:
 * the browser sends the session cookie with them.
 */
export function Downloads({ path, label }) {
  if (!path) return null;
  const sep = path.includes('?') ? '&' : '?';
  return html`<p class="downloads">
    <a href=${`${path}${sep}format=csv`} download aria-label=${`Download ${label} as CSV`}>CSV</a>
    <a href=${`${path}${sep}format=xlsx`} download aria-label=${`Download ${label} as Excel`}>Excel</a>
  </p>`;
}

/** Properties offered in the filter bar (any other name may be typed). */
const FILTER_PROPERTIES = ['channel', 'payment_method', 'location', 'staff', 'product', 'category', 'service', 'country', 'currency', 'status', 'utm.source', 'utm.campaign'];

const FILTER_OPS = [
  ['eq', 'is'],
  ['neq', 'is not'],
  ['in', 'is one of'],
  ['contains', 'contains'],
  ['gt', '>'],
  ['lt', '<'],
  ['is_set', 'is set'],
  ['is_not_set', 'is not set'],
];

/** A filter as the API takes it: numbers for comparisons, lists for `in`. */
export function filterOf(property, op, text) {
  const f = { property: property.trim(), op };
  if (op === 'is_set' || op === 'is_not_set') return f;
  if (op === 'in') f.value = text.split(',').map((v) => v.trim()).filter(Boolean);
  else if ((op === 'gt' || op === 'lt') && text.trim() !== '' && !Number.isNaN(Number(text))) f.value = Number(text);
  else f.value = text;
  return f;
}

function filterText(f) {
  const op = (FILTER_OPS.find(([id]) => id === f.op) || [f.op, f.op])[1];
  const value = f.value === undefined ? '' : Array.isArray(f.value) ? f.value.join(', ') : String(f.value);
  return `${f.property} ${op} ${value}`.trim();
}

/** The property filters: the ones applied, removable, and a form to add one. */
export function FilterBar({ filters, onChange }) {
  const [property, setProperty] = useState('');
  const [op, setOp] = useState('eq');
  const [text, setText] = useState('');
  const add = () => {
    if (!property.trim()) return;
    onChange([...filters, filterOf(property, op, text)]);
    setProperty('');
    setText('');
  };
  const enter = (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      add();
    }
  };
  return html`
    <div class="filters" role="group" aria-label="Filters">
      <datalist id="beacon-filter-properties">${FILTER_PROPERTIES.map((p) => html`<option value=${p} />`)}</datalist>
      ${filters.length > 0 &&
      html`<ul class="chips">
        ${filters.map(
          (f, i) => html`<li class="chip" data-filter=${f.property}>
            ${filterText(f)}
            <button type="button" aria-label=${`Remove the filter ${filterText(f)}`} onClick=${() => onChange(filters.filter((_, j) => j !== i))}>×</button>
          </li>`,
        )}
      </ul>`}
      <label class="inline">Filter by<input list="beacon-filter-properties" value=${property} onInput=${(e) => setProperty(e.target.value)} onKeyDown=${enter} size="12" placeholder="property" /></label>
      <label class="inline"><span class="sr-only">Condition</span>
        <select value=${op} onChange=${(e) => setOp(e.target.value)}>${FILTER_OPS.map(([id, label]) => html`<option value=${id}>${label}</option>`)}</select>
      </label>
      ${op !== 'is_set' && op !== 'is_not_set' &&
      html`<label class="inline"><span class="sr-only">Filter value</span><input value=${text} onInput=${(e) => setText(e.target.value)} onKeyDown=${enter} size="10" placeholder="value" /></label>`}
      <button type="button" onClick=${add} disabled=${!property.trim()}>Add filter</button>
    </div>
  `;
}

/**
 * The signed-in user's saved views of a page (`/v1/auth/views`): open one,
 * save the current state under a name (the same name replaces it), delete.
 */
export function SavedViews({ app, page, state, onOpen }) {
  const [views, setViews] = useState(null);
  const [chosen, setChosen] = useState('');
  const [name, setName] = useState('');
  const [message, setMessage] = useState(null);
  const load = () =>
    app.client
      .get(`/v1/auth/views?page=${encodeURIComponent(page)}`)
      .then((r) => setViews(r.views))
      .catch((e) => setMessage(e.message));
  useEffect(() => {
    load();
  }, [app.client, page]);
  const save = () => {
    if (!name.trim()) return;
    app.client
      .post('/v1/auth/views', { page, name: name.trim(), state })
      .then((r) => {
        setMessage(`Saved “${r.view.name}”.`);
        setChosen(r.view.id);
        setName('');
        return load();
      })
      .catch((e) => setMessage(e.message));
  };
  const open = (id) => {
    setChosen(id);
    const v = (views || []).find((x) => x.id === id);
    if (v && v.state && v.state.range) onOpen(v.state);
  };
  const remove = () =>
    app.client
      .request('DELETE', `/v1/auth/views/${encodeURIComponent(chosen)}`)
      .then(() => {
        setMessage('Deleted.');
        setChosen('');
        return load();
      })
      .catch((e) => setMessage(e.message));
  return html`
    <div class="views" role="group" aria-label="Views">
      <label class="inline">Saved views
        <select value=${chosen} onChange=${(e) => open(e.target.value)}>
          <option value="">${views && views.length ? 'Choose a view' : 'None yet'}</option>
          ${(views || []).map((v) => html`<option value=${v.id}>${v.name}</option>`)}
        </select>
      </label>
      ${chosen && html`<button type="button" onClick=${remove}>Delete view</button>`}
      <label class="inline">Name<input value=${name} onInput=${(e) => setName(e.target.value)} onKeyDown=${(e) => e.key === 'Enter' && (e.preventDefault(), save())} size="14" maxlength="80" /></label>
      <button type="button" onClick=${save} disabled=${!name.trim()}>Save view</button>
      ${message && html`<span role="status" class="muted">${message}</span>`}
    </div>
  `;
}

/**
 * Summary tiles: `[field, title, kind]` of `summary`, with `change[field]`
 * when the answer has one (kind: money, count, percent, days, number).
 */
export function SummaryTiles({ summary, change, fields, currency, versus = 'vs previous' }) {
  return html`
    <div class="tiles">
      ${fields.map(([field, title, kind]) => {
        const c = change ? change[field] : undefined;
        // No change from nothing to nothing ("new" is for something from nothing).
        const v = summary ? summary[field] : undefined;
        const nothing = c === null && (v === null || v === 0 || (typeof v === 'string' && /^0(\.0*)?$/.test(v)));
        return html`<div class="tile" data-metric=${field}>
          <span class="tile-title">${title}</span>
          <strong class="tile-value">${show(kind, summary ? summary[field] : undefined, currency)}</strong>
          ${c !== undefined &&
          html`<span class=${'tile-change ' + (c === null ? '' : c >= 0 ? 'up' : 'down')}>${nothing ? '–' : fmt.change(c)} <span class="muted">${versus}</span></span>`}
        </div>`;
      })}
    </div>
  `;
}

export function show(kind, value, currency) {
  if (value === undefined) return '…';
  switch (kind) {
    case 'money':
      return fmt.money(value, currency);
    case 'percent':
      return fmt.percent(value);
    case 'days':
      return value === null ? '–' : `${fmt.number(value, 1)} d`;
    case 'number':
      return value === null ? '–' : fmt.number(value, 2);
    default:
      return fmt.count(value);
  }
}

/** A table of `rows` with `columns`: `[field, title, kind]`. */
export function Table({ rows, columns, currency, caption, empty = 'Nothing in this range.' }) {
  if (!rows || rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`
    <div class="table-wrap">
      <table>
        ${caption && html`<caption>${caption}</caption>`}
        <thead>
          <tr>${columns.map(([, title, kind]) => html`<th scope="col" class=${kind && kind !== 'text' ? 'num' : ''}>${title}</th>`)}</tr>
        </thead>
        <tbody>
          ${rows.map(
            (r) => html`<tr>${columns.map(([field, , kind]) =>
              kind && kind !== 'text'
                ? html`<td class="num">${show(kind, r[field], currency)}</td>`
                : html`<td>${r[field] ?? '(none)'}</td>`,
            )}</tr>`,
          )}
        </tbody>
      </table>
    </div>
  `;
}

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/**
 * A weekday x hour grid: `cells` of `{weekday (1 = Monday), hour, value}`;
 * the shade is the value over the largest. Each cell also says its value
 * as text (title and the accessible table).
 */
export function HeatGrid({ cells, label, format = (v) => fmt.number(v, 0) }) {
  const max = Math.max(0, ...cells.map((c) => c.value || 0));
  const at = new Map(cells.map((c) => [`${c.weekday}:${c.hour}`, c.value || 0]));
  const hours = Array.from({ length: 24 }, (_, h) => h);
  return html`
    <div class="table-wrap">
      <table class="heat" aria-label=${label}>
        <thead><tr><th scope="col"><span class="sr-only">Weekday</span></th>${hours.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
        <tbody>
          ${WEEKDAYS.map(
            (day, i) => html`<tr>
              <th scope="row">${day}</th>
              ${hours.map((h) => {
                const v = at.get(`${i + 1}:${h}`) || 0;
                const level = max > 0 ? Math.ceil((v / max) * 5) : 0;
                return html`<td class=${'heat-' + level} title=${`${day} ${h}:00: ${format(v)}`}>${format(v)}</td>`;
              })}
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  `;
}
