// Overview: the live KPI tiles (the hub's `metrics` channel), the revenue
// chart, top products and the live activity feed (`activity`). Every
// number comes from the server (the live metrics, /v1/analytics/*); the
// page only formats.
import { html, useEffect, useState } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import * as fmt from '../lib/format.js';
import { Failed, SummaryTiles, useApi } from '../lib/ui.js';

const PERIODS = [
  ['today', 'Today'],
  ['week', 'This week'],
  ['month', 'This month'],
];

/** The tiles: field of the metrics payload, title, how it is shown. */
const TILES = [
  ['revenue', 'Revenue', 'money'],
  ['orders', 'Orders', 'count'],
  ['aov', 'Average order', 'money'],
  ['bookings', 'Bookings', 'count'],
  ['cancellations', 'Cancellations', 'count'],
  ['no_shows', 'No-shows', 'count'],
  ['visitors', 'Visitors', 'count'],
  ['conversion_rate', 'Conversion', 'percent'],
];

function Tiles({ app }) {
  const [metrics, setMetrics] = useState(null);
  const [period, setPeriod] = useState('today');
  const [error, setError] = useState(null);
  useEffect(
    () =>
      app.client.subscribe('metrics', {
        onSnapshot: (payload) => setMetrics(payload),
        onMessage: (msg) => setMetrics(msg.payload),
        onError: (msg) => setError(msg.message),
      }),
    [app.client],
  );
  return html`
    <section class="tiles-section" aria-labelledby="tiles-title">
      <div class="section-head">
        <h2 id="tiles-title">Key numbers</h2>
        <div class="segmented" role="group" aria-label="Period">
          ${PERIODS.map(
            ([id, label]) => html`<button type="button" aria-pressed=${period === id} onClick=${() => setPeriod(id)}>${label}</button>`,
          )}
        </div>
      </div>
      ${error && html`<${Failed} error=${error} />`}
      <${SummaryTiles} summary=${metrics && metrics[period]} fields=${TILES} currency=${app.workspace.currency} />
    </section>
  `;
}

function RevenueChart({ app }) {
  const [answer, error] = useApi(app.client, '/v1/analytics/revenue?range=30d&interval=day');
  if (error) return html`<${Failed} error=${error} />`;
  if (!answer) return html`<p class="loading">Loading revenue…</p>`;
  const rows = answer.series || [];
  const x = rows.map((r) => Date.parse(r.bucket + 'T00:00:00Z') / 1000);
  // Plotted as numbers; the legend shows the server's decimal text.
  const values = rows.map((r) => Number(r.gross));
  const format = (_s, i) => fmt.money(rows[i].gross, app.workspace.currency);
  return html`
    <section aria-labelledby="revenue-title">
      <h2 id="revenue-title">Revenue, last 30 days</h2>
      <p class="summary">
        ${`${fmt.money(answer.summary.gross, app.workspace.currency)} gross · ${fmt.count(answer.summary.orders)} ${
          answer.summary.orders === 1 ? 'order' : 'orders'
        } · ${fmt.money(answer.summary.aov, app.workspace.currency)} average order`}
      </p>
      <${Chart} x=${x} series=${[{ label: 'Revenue', values }]} format=${format} title="Revenue per day, last 30 days" />
    </section>
  `;
}

function TopProducts({ app }) {
  const [answer, error] = useApi(app.client, '/v1/analytics/products?range=30d&limit=5');
  if (error) return html`<${Failed} error=${error} />`;
  const rows = (answer && answer.top_by_revenue) || [];
  return html`
    <section aria-labelledby="products-title">
      <h2 id="products-title">Top products, last 30 days</h2>
      ${!answer
        ? html`<p class="loading">Loading products…</p>`
        : rows.length === 0
          ? html`<p class="muted">No orders with products yet.</p>`
          : html`<table>
              <thead><tr><th scope="col">Product</th><th scope="col" class="num">Quantity</th><th scope="col" class="num">Revenue</th></tr></thead>
              <tbody>
                ${rows.map(
                  (r) => html`<tr><td>${r.name || r.value || r.product_id}</td><td class="num">${fmt.count(r.quantity)}</td><td class="num">${fmt.money(r.gross ?? r.revenue, app.workspace.currency)}</td></tr>`,
                )}
              </tbody>
            </table>`}
    </section>
  `;
}

const FEED_LENGTH = 50;

function Activity({ app }) {
  const [items, setItems] = useState([]);
  const [subscribed, setSubscribed] = useState(false);
  useEffect(
    () =>
      app.client.subscribe('activity', {
        onSubscribed: () => setSubscribed(true),
        onMessage: (msg) => setItems((list) => [{ key: `${msg.epoch}:${msg.seq}`, ...msg.payload }, ...list].slice(0, FEED_LENGTH)),
        onSnapshot: (payload, msg) => {
          // After history_lost: the recent events replace the list.
          const recent = (payload && payload.recent) || [];
          setItems(recent.slice(-FEED_LENGTH).reverse().map((p, i) => ({ key: `${msg.epoch}:r${msg.seq}:${i}`, ...p })));
        },
      }),
    [app.client],
  );
  return html`
    <section aria-labelledby="activity-title" data-channel="activity" data-subscribed=${subscribed ? 'yes' : 'no'}>
      <h2 id="activity-title">Live activity</h2>
      ${items.length === 0
        ? html`<p class="muted">Waiting for events…</p>`
        : html`<ol class="feed">
            ${items.map(
              (e) => html`<li key=${e.key} data-message-id=${e.message_id}>
                <time>${fmt.time(e.timestamp, app.workspace.timezone)}</time>
                <span class="event">${e.event || e.type}</span>
                <span class="who">${e.user_id || e.anonymous_id || ''}</span>
                ${e.revenue && html`<span class="num">${fmt.money(e.revenue, e.currency || app.workspace.currency)}</span>`}
              </li>`,
            )}
          </ol>`}
    </section>
  `;
}

export function Overview({ app }) {
  return html`
    <h1>Overview</h1>
    <${Tiles} app=${app} />
    <div class="grid">
      <div class="card wide"><${RevenueChart} app=${app} /></div>
      <div class="card"><${TopProducts} app=${app} /></div>
      <div class="card"><${Activity} app=${app} /></div>
    </div>
  `;
}
