// Sales: revenue over a range (with the previous period), split by a
// property; top products. `/v1/analytics/revenue` and `/products`.
import { html, useState } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import * as fmt from '../lib/format.js';
import { Downloads, Failed, RangePicker, SummaryTiles, Table, query, rangeParams, useApi, useRange } from '../lib/ui.js';

const BREAKDOWNS = [
  ['channel', 'Channel'],
  ['payment_method', 'Payment method'],
  ['location', 'Location'],
  ['staff', 'Staff'],
  ['product', 'Product'],
  ['category', 'Category'],
  ['country', 'Country'],
];

const SUMMARY = [
  ['gross', 'Gross revenue', 'money'],
  ['refunds', 'Refunds', 'money'],
  ['net', 'Net revenue', 'money'],
  ['orders', 'Orders', 'count'],
  ['completed_bookings', 'Completed bookings', 'count'],
  ['aov', 'Average order', 'money'],
  ['customers', 'Customers', 'count'],
];

/** A day or period label as seconds since the epoch (charts' x). */
export function bucketSeconds(bucket) {
  return Date.parse(bucket + 'T00:00:00Z') / 1000;
}

export function Sales({ app }) {
  const [range, setRange] = useRange('30d');
  const [breakdown, setBreakdown] = useState('channel');
  const params = rangeParams(range);
  const currency = app.workspace.currency;
  const revenuePath = params && `/v1/analytics/revenue?${query({ ...params, breakdown, limit: 20 })}`;
  const [answer, error] = useApi(app.client, revenuePath);
  const [products, productsError] = useApi(app.client, params && `/v1/analytics/products?${query({ ...params, compare: false, limit: 10, pairs: 'false' })}`);
  const series = (answer && answer.series) || [];
  const previous = answer && answer.previous ? answer.previous.series : null;
  const chartSeries = [{ label: 'Gross revenue', values: series.map((r) => Number(r.gross)) }];
  if (previous) {
    chartSeries.push({ label: 'Previous period', band: true, values: series.map((_, i) => (previous[i] ? Number(previous[i].gross) : null)) });
  }
  const format = (s, i) => fmt.money(s === 0 ? series[i].gross : previous[i] ? previous[i].gross : null, currency);
  return html`
    <h1>Sales</h1>
    <${RangePicker} value=${range} onChange=${setRange} app=${app} page="sales" extra=${{ breakdown }} onExtra=${(x) => x.breakdown && setBreakdown(x.breakdown)} />
    <${Downloads} path=${revenuePath} label="the sales" />
    ${error && html`<${Failed} error=${error} />`}
    <${SummaryTiles} summary=${answer && answer.summary} change=${answer && answer.change} fields=${SUMMARY} currency=${currency} />
    ${answer && answer.other_currencies && answer.other_currencies.length > 0 &&
    html`<p class="muted">Also sold in other currencies (not added): ${answer.other_currencies.map((c) => `${fmt.money(c.gross, c.currency)}`).join(', ')}</p>`}
    <div class="grid">
      <div class="card wide">
        <h2>Revenue by ${answer ? answer.range.interval : 'day'}</h2>
        ${answer && series.length > 0
          ? html`<${Chart} x=${series.map((r) => bucketSeconds(r.bucket))} series=${chartSeries} format=${format} title="Gross revenue per bucket" />`
          : html`<p class="loading">Loading…</p>`}
      </div>
      <div class="card wide">
        <div class="section-head">
          <h2>By ${BREAKDOWNS.find(([id]) => id === breakdown)[1].toLowerCase()}</h2>
          <label class="inline">Split by
            <select value=${breakdown} onChange=${(e) => setBreakdown(e.target.value)}>
              ${BREAKDOWNS.map(([id, label]) => html`<option value=${id}>${label}</option>`)}
            </select>
          </label>
        </div>
        ${answer && answer.breakdown &&
        html`<${Table}
          rows=${answer.breakdown.rows}
          currency=${currency}
          columns=${[['value', 'Value', 'text'], ['gross', 'Gross', 'money'], ['refunds', 'Refunds', 'money'], ['net', 'Net', 'money'], ['orders', 'Orders', 'count'], ['aov', 'Average order', 'money']]}
        />`}
      </div>
      <div class="card wide">
        <h2>Top products</h2>
        ${productsError && html`<${Failed} error=${productsError} />`}
        ${products &&
        html`<${Table}
          rows=${products.top_by_revenue}
          currency=${currency}
          columns=${[['name', 'Product', 'text'], ['product_id', 'Id', 'text'], ['quantity', 'Quantity', 'count'], ['revenue', 'Revenue', 'money']]}
        />`}
      </div>
    </div>
  `;
}
