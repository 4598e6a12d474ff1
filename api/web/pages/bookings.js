// Bookings: bookings made in the range and their outcome, cancellation
// reasons, services, staff, peak times. `/v1/analytics/bookings`.
import { html } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import * as fmt from '../lib/format.js';
import { Downloads, Failed, HeatGrid, RangePicker, SummaryTiles, Table, query, rangeParams, useApi, useRange } from '../lib/ui.js';
import { bucketSeconds } from './sales.js';

const SUMMARY = [
  ['bookings', 'Bookings', 'count'],
  ['completed', 'Completed', 'count'],
  ['cancelled', 'Cancelled', 'count'],
  ['no_shows', 'No-shows', 'count'],
  ['cancellation_rate', 'Cancellation rate', 'percent'],
  ['no_show_rate', 'No-show rate', 'percent'],
  ['revenue', 'Revenue of completed', 'money'],
  ['avg_lead_time_days', 'Average lead time', 'days'],
  ['avg_rating', 'Average rating', 'number'],
];

export function Bookings({ app }) {
  const [range, setRange] = useRange('30d');
  const params = rangeParams(range);
  const currency = app.workspace.currency;
  const mainPath = params && `/v1/analytics/bookings?${query({ ...params, limit: 20 })}`;
  const [answer, error] = useApi(app.client, mainPath);
  const series = (answer && answer.series) || [];
  const outcome = (field) => series.map((r) => r[field]);
  return html`
    <h1>Bookings</h1>
    <${RangePicker} value=${range} onChange=${setRange} app=${app} page="bookings" />
    <${Downloads} path=${mainPath} label="the bookings" />
    ${error && html`<${Failed} error=${error} />`}
    <${SummaryTiles} summary=${answer && answer.summary} change=${answer && answer.change} fields=${SUMMARY} currency=${currency} />
    <div class="grid">
      <div class="card wide">
        <h2>Bookings made, by outcome</h2>
        ${answer && series.length > 0
          ? html`<${Chart}
              x=${series.map((r) => bucketSeconds(r.bucket))}
              series=${[
                { label: 'Bookings', values: outcome('bookings') },
                { label: 'Completed', values: outcome('completed') },
                { label: 'Cancelled', values: outcome('cancelled') },
              ]}
              format=${(s, i) => fmt.count([series[i].bookings, series[i].completed, series[i].cancelled][s])}
              title="Bookings made per bucket by outcome"
            />`
          : html`<p class="loading">Loading…</p>`}
      </div>
      <div class="card">
        <h2>Cancellation reasons</h2>
        ${answer && html`<${Table} rows=${answer.cancellation_reasons} columns=${[['reason', 'Reason', 'text'], ['bookings', 'Bookings', 'count'], ['share', 'Share', 'percent']]} />`}
      </div>
      <div class="card">
        <h2>Services</h2>
        ${answer &&
        html`<${Table}
          rows=${answer.services}
          currency=${currency}
          columns=${[['service_id', 'Service', 'text'], ['bookings', 'Bookings', 'count'], ['completed', 'Completed', 'count'], ['cancelled', 'Cancelled', 'count'], ['revenue', 'Revenue', 'money']]}
        />`}
      </div>
      <div class="card wide">
        <h2>Staff</h2>
        ${answer &&
        html`<${Table}
          rows=${answer.staff}
          currency=${currency}
          columns=${[['staff_id', 'Staff', 'text'], ['bookings', 'Bookings', 'count'], ['completed', 'Completed', 'count'], ['no_shows', 'No-shows', 'count'], ['revenue', 'Revenue', 'money'], ['avg_rating', 'Rating', 'number']]}
        />`}
      </div>
      <div class="card wide">
        <h2>Peak times (appointments, ${app.workspace.timezone})</h2>
        ${answer &&
        html`<${HeatGrid}
          cells=${answer.peak_times.map((c) => ({ weekday: c.weekday, hour: c.hour, value: c.bookings }))}
          label="Bookings by weekday and hour of the appointment"
        />`}
      </div>
    </div>
  `;
}
