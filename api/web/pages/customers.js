// Customers: new and returning, lifetime value, top customers, RFM
// segments and the churn-risk list. `/v1/analytics/customers`, `/rfm`,
// the `customer_scores` table (`GET /v1/models/churn`).
import { html } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import * as fmt from '../lib/format.js';
import { Downloads, Failed, RangePicker, SummaryTiles, Table, query, rangeParams, useApi, useRange } from '../lib/ui.js';
import { bucketSeconds } from './sales.js';

const SUMMARY = [
  ['customers', 'Customers', 'count'],
  ['new', 'New', 'count'],
  ['returning', 'Returning', 'count'],
  ['new_revenue', 'Revenue from new', 'money'],
  ['returning_revenue', 'Revenue from returning', 'money'],
  ['orders', 'Sales', 'count'],
];

export function Customers({ app }) {
  const [range, setRange] = useRange('90d');
  const params = rangeParams(range);
  const currency = app.workspace.currency;
  const mainPath = params && `/v1/analytics/customers?${query({ ...params, limit: 10 })}`;
  const [answer, error] = useApi(app.client, mainPath);
  const [rfm, rfmError] = useApi(app.client, params && `/v1/analytics/rfm?${query({ ...params, compare: false, limit: 20 })}`);
  const series = (answer && answer.series) || [];
  const ltv = answer && answer.lifetime_value;
  return html`
    <h1>Customers</h1>
    <${RangePicker} value=${range} onChange=${setRange} app=${app} page="customers" />
    <${Downloads} path=${mainPath} label="the customers" />
    ${error && html`<${Failed} error=${error} />`}
    <${SummaryTiles} summary=${answer && answer.summary} change=${answer && answer.change} fields=${SUMMARY} currency=${currency} />
    <div class="grid">
      <div class="card wide">
        <h2>New and returning customers</h2>
        ${answer && series.length > 0
          ? html`<${Chart}
              x=${series.map((r) => bucketSeconds(r.bucket))}
              series=${[
                { label: 'New', values: series.map((r) => r.new) },
                { label: 'Returning', values: series.map((r) => r.returning) },
              ]}
              format=${(s, i) => fmt.count(s === 0 ? series[i].new : series[i].returning)}
              title="New and returning customers per bucket"
            />`
          : html`<p class="loading">Loading…</p>`}
      </div>
      <div class="card">
        <h2>Lifetime value</h2>
        ${ltv &&
        html`<dl class="facts">
          <dt>Customers</dt><dd>${fmt.count(ltv.customers)}</dd>
          <dt>Average</dt><dd>${fmt.money(ltv.average, currency)}</dd>
          <dt>Median</dt><dd>${fmt.money(ltv.median, currency)}</dd>
          <dt>90th percentile</dt><dd>${fmt.money(ltv.p90, currency)}</dd>
        </dl>`}
      </div>
      <div class="card">
        <h2>Top customers by revenue</h2>
        ${answer &&
        html`<${Table} rows=${answer.top_by_revenue} currency=${currency} columns=${[['user_id', 'Customer', 'text'], ['orders', 'Sales', 'count'], ['revenue', 'Revenue', 'money']]} />`}
      </div>
      <div class="card wide">
        <h2>RFM segments</h2>
        ${rfmError && html`<${Failed} error=${rfmError} />`}
        ${rfm &&
        html`<${Table}
          rows=${rfm.segments}
          currency=${currency}
          columns=${[['segment', 'Segment', 'text'], ['customers', 'Customers', 'count'], ['revenue', 'Revenue', 'money'], ['avg_recency_days', 'Days since last sale', 'number'], ['avg_frequency', 'Sales each', 'number']]}
        />`}
      </div>
    </div>
  `;
}
