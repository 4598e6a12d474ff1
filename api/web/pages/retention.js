// Retention: the cohort table as a heatmap, and the weekday x hour
// heatmap of an event. `/v1/analytics/retention`, `/heatmap`.
import { html, useState } from '../vendor/preact-htm.mjs';

import * as fmt from '../lib/format.js';
import { Downloads, Failed, HeatGrid, RangePicker, query, rangeParams, useApi, useRange } from '../lib/ui.js';

export function Retention({ app }) {
  const [range, setRange] = useRange('90d');
  const [period, setPeriod] = useState('week');
  const params = rangeParams(range);
  const path = params && `/v1/analytics/retention?${query({ ...params, compare: false, period, periods: 12 })}`;
  const [answer, error] = useApi(app.client, path);
  const cohorts = (answer && answer.cohorts) || [];
  const width = Math.max(0, ...cohorts.map((c) => c.periods.length));
  return html`
    <h1>Retention</h1>
    <${RangePicker} value=${range} onChange=${setRange} app=${app} page="retention" extra=${{ period }} onExtra=${(x) => x.period && setPeriod(x.period)} />
    <${Downloads} path=${path} label="the cohorts" />
    <label class="inline">Period
      <select value=${period} onChange=${(e) => setPeriod(e.target.value)}>
        <option value="day">Day</option><option value="week">Week</option><option value="month">Month</option>
      </select>
    </label>
    ${error && html`<${Failed} error=${error} />`}
    <div class="card wide">
      <h2>Customers coming back, by first-order ${period}</h2>
      ${!answer
        ? html`<p class="loading">Loading…</p>`
        : cohorts.length === 0
          ? html`<p class="muted">No cohorts start in this range.</p>`
          : html`<div class="table-wrap"><table class="heat cohorts">
              <thead><tr><th scope="col">Cohort</th><th scope="col" class="num">People</th>
                ${Array.from({ length: width }, (_, i) => html`<th scope="col" class="num">${period} ${i}</th>`)}</tr></thead>
              <tbody>
                ${cohorts.map(
                  (c) => html`<tr>
                    <th scope="row">${fmt.day(c.cohort)}</th>
                    <td class="num">${fmt.count(c.size)}</td>
                    ${Array.from({ length: width }, (_, i) => {
                      const p = c.periods[i];
                      if (!p) return html`<td></td>`;
                      return html`<td class=${'num heat-' + Math.ceil(p.percentage * 5)} title=${`${fmt.count(p.people)} people`}>${fmt.percent(p.percentage, 0)}</td>`;
                    })}
                  </tr>`,
                )}
              </tbody>
            </table></div>`}
    </div>
  `;
}

export function Heatmap({ app }) {
  const [range, setRange] = useRange('30d');
  const [event, setEvent] = useState('Order Completed');
  const params = rangeParams(range);
  const path = params && `/v1/analytics/heatmap?${query({ ...params, compare: false, event: { event } })}`;
  const [answer, error] = useApi(app.client, path);
  return html`
    <h1>Peak times</h1>
    <${RangePicker} value=${range} onChange=${setRange} app=${app} page="peak-times" />
    <${Downloads} path=${path} label="the peak times" />
    <label class="inline">Event
      <select value=${event} onChange=${(e) => setEvent(e.target.value)}>
        ${['Order Completed', 'Booking Created', 'Page Viewed', 'Product Viewed', 'Lead Created', '*'].map(
          (e) => html`<option value=${e}>${e === '*' ? 'Every event' : e}</option>`,
        )}
      </select>
    </label>
    ${error && html`<${Failed} error=${error} />`}
    <div class="card wide">
      <h2>${event === '*' ? 'Events' : event} by weekday and hour (${app.workspace.timezone})</h2>
      ${answer
        ? html`<p class="summary">${fmt.count(answer.total)} in all${answer.peak
              ? `; busiest: ${['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][answer.peak.weekday - 1]} ${answer.peak.hour}:00 (${fmt.count(answer.peak.value)})`
              : ''}</p>
            <${HeatGrid} cells=${answer.cells} label="Events by weekday and hour" />`
        : html`<p class="loading">Loading…</p>`}
    </div>
  `;
}
