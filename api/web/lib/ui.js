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

/** The range of a request: `{range, from, to, compare}`. */
export function useRange(initial = '30d') {
  return useState({ range: initial, from: '', to: '', compare: false });
}

/** The range's query parameters (a custom range needs both days). */
export function rangeParams(r) {
  if (r.range === 'custom') {
    if (!r.from || !r.to) return null;
    return { range: 'custom', from: r.from, to: r.to, compare: r.compare };
  }
  return { range: r.range, compare: r.compare };
}

export function RangePicker({ value, onChange }) {
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
