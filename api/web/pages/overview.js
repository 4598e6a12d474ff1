// Overview: the live KPI tiles (the hub's `metrics` channel), the revenue
// chart, top products and the live activity feed (`activity`). Every
// number comes from the server (the live metrics, /v1/analytics/*); the
// page only formats.
import { html, useEffect, useRef, useState } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import * as fmt from '../lib/format.js';
import { Failed, SummaryTiles, useApi } from '../lib/ui.js';

const PERIODS = [
  ['today', 'Today'],
  ['week', 'This week'],
  ['month', 'This month'],
];

/** What each period's change is measured against (the same span before). */
const VERSUS = { today: 'vs yesterday so far', week: 'vs last week so far', month: 'vs last month so far' };

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
      <${SummaryTiles} summary=${metrics && metrics[period]} change=${metrics && metrics[period] && metrics[period].change} versus=${VERSUS[period]} fields=${TILES} currency=${app.workspace.currency} />
    </section>
  `;
}

/**
 * The saved daily revenue forecast's days after the last bucket shown
 * (`GET /v1/forecasts?points=true`; the models refit it on their
 * schedule): the expected value and its widest band.
 */
function forecastAfter(forecasts, lastBucket) {
  const saved = ((forecasts && forecasts.forecasts) || []).find((f) => f.metric === 'revenue' && f.interval === 'day');
  if (!saved || !saved.points) return [];
  return saved.points
    .map((p) => {
      const levels = Object.keys(p).filter((k) => k.startsWith('lower_')).map((k) => Number(k.slice(6)));
      const level = Math.max(...levels);
      return { day: p.period.slice(0, 10), value: p.value, lower: p[`lower_${level}`], upper: p[`upper_${level}`], level };
    })
    .filter((p) => p.day > lastBucket);
}

/**
 * The days of the last month whose revenue fell outside the expected band
 * (`GET /v1/anomalies`, the models' seasonal band at medium
 * sensitivity), by day, without the day in progress (its revenue is not
 * all in yet). Optional: null until answered or when refused.
 */
function useAnomalies(app) {
  const [marks, setMarks] = useState(null);
  useEffect(() => {
    let current = true;
    app.client
      .get('/v1/anomalies?metric=revenue&interval=day&history_days=120&last=31')
      .then((answer) => {
        const points = (answer.points || []).slice(0, -1).filter((p) => p.anomalous);
        if (current) setMarks(new Map(points.map((p) => [p.period.slice(0, 10), p])));
      })
      .catch(() => {});
    return () => {
      current = false;
    };
  }, [app.client]);
  return marks;
}

function RevenueChart({ app }) {
  const [answer, error] = useApi(app.client, '/v1/analytics/revenue?range=30d&interval=day');
  // Optional: without a saved forecast (or the right to read it) the
  // chart has no band; without anomalies, no marks.
  const [forecasts] = useApi(app.client, '/v1/forecasts?points=true');
  const anomalies = useAnomalies(app);
  if (error) return html`<${Failed} error=${error} />`;
  if (!answer) return html`<p class="loading">Loading revenue…</p>`;
  const rows = answer.series || [];
  const unusual = anomalies ? rows.filter((r) => anomalies.has(r.bucket)) : [];
  const ahead = forecastAfter(forecasts, rows.length ? rows[rows.length - 1].bucket : '');
  const days = [...rows.map((r) => r.bucket), ...ahead.map((p) => p.day)];
  const x = days.map((d) => Date.parse(d + 'T00:00:00Z') / 1000);
  const pad = (values, before, after) => [...Array(before).fill(null), ...values, ...Array(after).fill(null)];
  // Plotted as numbers; the legend shows the server's decimal text (the
  // forecast, an estimate, to whole units).
  const series = [{ label: 'Revenue', values: pad(rows.map((r) => Number(r.gross)), 0, ahead.length) }];
  if (ahead.length) {
    const level = ahead[0].level;
    series.push(
      { label: 'Forecast', values: pad(ahead.map((p) => p.value), rows.length, 0) },
      { label: `${level}% low`, values: pad(ahead.map((p) => p.lower), rows.length, 0), band: true },
      { label: `${level}% high`, values: pad(ahead.map((p) => p.upper), rows.length, 0), band: true },
    );
  }
  const marked = series.length;
  if (unusual.length) {
    series.push({ label: 'Unusual', values: pad(rows.map((r) => (anomalies.has(r.bucket) ? Number(r.gross) : null)), 0, ahead.length), marks: true });
  }
  const format = (s, i) => {
    if (s === 0 || s === marked) return i < rows.length ? fmt.money(rows[i].gross, app.workspace.currency) : '–';
    const p = ahead[i - rows.length];
    if (!p) return '–';
    const v = [p.value, p.lower, p.upper][s - 1];
    return fmt.money(String(Math.round(v)), app.workspace.currency);
  };
  const title = ahead.length ? `Revenue per day, last 30 days, and the forecast for the next ${ahead.length}` : 'Revenue per day, last 30 days';
  return html`
    <section aria-labelledby="revenue-title">
      <h2 id="revenue-title">Revenue, last 30 days${ahead.length ? ' and forecast' : ''}</h2>
      <p class="summary">
        ${`${fmt.money(answer.summary.gross, app.workspace.currency)} gross · ${fmt.count(answer.summary.orders)} ${
          answer.summary.orders === 1 ? 'order' : 'orders'
        } · ${fmt.money(answer.summary.aov, app.workspace.currency)} average order`}
      </p>
      <${Chart} x=${x} series=${series} format=${format} title=${title} />
      ${unusual.length > 0 &&
      html`<div class="anomalies">
        <h3>Unusual days</h3>
        <ul>
          ${unusual.map((r) => {
            const p = anomalies.get(r.bucket);
            const band = `${fmt.money(String(Math.round(p.lower)), app.workspace.currency)} to ${fmt.money(String(Math.round(p.upper)), app.workspace.currency)}`;
            return html`<li data-day=${r.bucket}>
              <time datetime=${r.bucket}>${fmt.day(r.bucket)}</time>: ${fmt.money(r.gross, app.workspace.currency)}, ${Number(r.gross) > p.upper ? 'above' : 'below'} the
              expected ${band}
            </li>`;
          })}
        </ul>
      </div>`}
    </section>
  `;
}

function TopProducts({ app }) {
  const [answer, error] = useApi(app.client, '/v1/analytics/products?range=30d&limit=5&pairs=false');
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
          // At subscribe (`recent`) and after history_lost: the recent
          // events replace the list.
          const recent = (payload && payload.recent) || [];
          setItems(recent.slice(-FEED_LENGTH).reverse().map((p, i) => ({ key: `${msg.epoch}:r${msg.seq}:${i}`, ...p })));
        },
      }, { recent: 20 }),
    [app.client],
  );
  // The list scrolls: focusable, so a keyboard can scroll it too.
  return html`
    <section aria-labelledby="activity-title" data-channel="activity" data-subscribed=${subscribed ? 'yes' : 'no'}>
      <h2 id="activity-title">Live activity</h2>
      ${items.length === 0
        ? html`<p class="muted">Waiting for events…</p>`
        : html`<ol class="feed" tabindex="0" aria-label="Recent events, newest first">
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

/** The Overview's widgets: id, name, component, whether it spans the row. */
const WIDGETS = [
  ['tiles', 'Key numbers', Tiles, true],
  ['revenue', 'Revenue chart', RevenueChart, true],
  ['products', 'Top products', TopProducts, false],
  ['activity', 'Live activity', Activity, false],
];

/**
 * The widgets in the user's order (`/v1/auth/layouts/overview`): ids the
 * page does not know are skipped, widgets missing from it come after.
 */
export function ordered(layout) {
  const ids = WIDGETS.map(([id]) => id);
  const known = (layout || []).filter((id, i, all) => ids.includes(id) && all.indexOf(id) === i);
  return [...known, ...ids.filter((id) => !known.includes(id))];
}

/** The signed-in user's widget order and a setter that saves it. */
function useLayout(app) {
  const [order, setOrder] = useState(ordered(null));
  const [error, setError] = useState(null);
  // A move made before the saved layout arrives wins over it (it is saved
  // too, after it).
  const moved = useRef(false);
  useEffect(() => {
    if (!app.me) return undefined;
    let current = true;
    app.client
      .get('/v1/auth/layouts/overview')
      .then((r) => current && !moved.current && setOrder(ordered(r.layout)))
      .catch(() => {});
    return () => {
      current = false;
    };
  }, [app.client]);
  const save = (next) => {
    moved.current = true;
    setOrder(next);
    setError(null);
    app.client.request('PUT', '/v1/auth/layouts/overview', { layout: next }).catch((e) => setError(e.message));
  };
  return [order, save, error];
}

export function Overview({ app }) {
  const [order, save, error] = useLayout(app);
  const [arranging, setArranging] = useState(false);
  const move = (i, by) => {
    const next = [...order];
    [next[i], next[i + by]] = [next[i + by], next[i]];
    save(next);
  };
  return html`
    <div class="section-head">
      <h1>Overview</h1>
      ${app.me &&
      html`<div class="actions">
        ${arranging && html`<button type="button" onClick=${() => save(ordered(null))}>Reset layout</button>`}
        <button type="button" aria-pressed=${arranging} onClick=${() => setArranging(!arranging)}>${arranging ? 'Done' : 'Arrange'}</button>
      </div>`}
    </div>
    ${error && html`<${Failed} error=${error} />`}
    <div class="grid widgets">
      ${order.map((id, i) => {
        const [, name, Widget, wide] = WIDGETS.find(([w]) => w === id);
        return html`<div key=${id} class=${`card widget${wide ? ' wide' : ''}`} data-widget=${id}>
          ${arranging &&
          html`<div class="arrange" role="group" aria-label=${`Move ${name}`}>
            <button type="button" disabled=${i === 0} onClick=${() => move(i, -1)} aria-label=${`Move ${name} up`}>↑</button>
            <button type="button" disabled=${i === order.length - 1} onClick=${() => move(i, 1)} aria-label=${`Move ${name} down`}>↓</button>
          </div>`}
          <${Widget} app=${app} />
        </div>`;
      })}
    </div>
  `;
}
