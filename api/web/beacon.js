// Beacon's embeddable components, for portals: one script tag,
//
//   <script type="module" src="https://beacon.example/embed/beacon.js"></script>
//   <meta name="beacon-token" content="be_...">   (or token="..." on each element)
//   <beacon-kpi metric="revenue" range="today"></beacon-kpi>
//   <beacon-chart metric="net" range="30d"></beacon-chart>
//   <beacon-activity limit="10"></beacon-activity>
//   <beacon-inbox token="bt_..." user="ann"></beacon-inbox>
//
// Every number comes from the server: /v1/analytics/revenue for the KPI
// and the chart, the `activity` channel for the feed, /v1/inbox and the
// `notifications:<user>` channel for the inbox. An embed token for one
// customer makes the server answer that customer's rows only; nothing
// here filters. KPIs and charts ask again (at most every `refresh` ms,
// default 1000) when an event arrives on `activity`, so they stay live.
//
// Styling: each element has a shadow root whose pieces carry `part`
// names (label, value, error, bar, item, ...), so a portal styles them
// with `beacon-kpi::part(value) { ... }`; colours follow the custom
// properties --beacon-accent and --beacon-muted.
import { BeaconClient } from './lib/client.js';
import * as fmt from './lib/format.js';

export { BeaconClient };

const ORIGIN = new URL(import.meta.url).origin;

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.getAttribute('content') : null;
}

const clients = new Map();

/** One client per (server, token) on the page, shared by its elements. */
function clientFor(el) {
  const base = el.getAttribute('server') || meta('beacon-server') || ORIGIN;
  const token = el.getAttribute('token') || meta('beacon-token');
  const key = `${base} ${token}`;
  let client = clients.get(key);
  if (!client) {
    client = new BeaconClient({ base, token });
    // The workspace's currency, asked once per client.
    client.workspace = () => {
      client.workspacePromise ||= client.get('/v1/workspace').then((r) => r.workspace);
      return client.workspacePromise;
    };
    clients.set(key, client);
  }
  return client;
}

const STYLE = `
  :host { display: block; font: inherit; color: inherit; }
  [part=label] { color: var(--beacon-muted, #555); font-size: .875em; }
  [part=value] { font-size: 1.75em; font-weight: 600; font-variant-numeric: tabular-nums; }
  [part=error] { color: #a4000f; }
  ul { list-style: none; margin: 0; padding: 0; }
  li { padding: .35em 0; border-bottom: 1px solid #0001; display: flex; gap: .75em; justify-content: space-between; }
  time, .muted { color: var(--beacon-muted, #555); font-size: .875em; }
  svg { width: 100%; height: auto; display: block; }
  rect[part=bar] { fill: var(--beacon-accent, #1f5fbf); }
  button { font: inherit; }
  .unread { font-weight: 600; }
`;

class BeaconElement extends HTMLElement {
  connectedCallback() {
    if (!this.shadowRoot) {
      const root = this.attachShadow({ mode: 'open' });
      root.innerHTML = `<style>${STYLE}</style><div part="body"></div>`;
    }
    this.body = this.shadowRoot.querySelector('[part=body]');
    this.client = clientFor(this);
    this.stops = [];
    this.start();
  }

  disconnectedCallback() {
    for (const stop of this.stops) stop();
    this.stops = [];
    clearTimeout(this.pending);
  }

  /** Shows an API error in place. */
  fail(error) {
    this.dataset.state = 'error';
    this.body.replaceChildren(el('p', { part: 'error', role: 'alert' }, error.message || String(error)));
  }

  /** Calls `load` now and again when events arrive (throttled). */
  live(load) {
    const every = Number(this.getAttribute('refresh') || 1000);
    let last = 0;
    const run = () => {
      last = Date.now();
      this.pending = null;
      load().catch((e) => this.fail(e));
    };
    const soon = () => {
      if (this.pending) return;
      this.pending = setTimeout(run, Math.max(0, last + every - Date.now()));
    };
    run();
    this.stops.push(
      this.client.subscribe('activity', {
        onMessage: soon,
        // After a reconnect: what arrived meanwhile is in the answer.
        onSubscribed: soon,
        onError: (msg) => this.fail(new Error(msg.message)),
      }),
    );
  }
}

/** A DOM element with attributes and children (text is never parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(
    tag === 'svg' || tag === 'rect' || tag === 'title' || tag === 'text' ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml',
    tag,
  );
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

/** The revenue endpoint's fields a KPI or chart can show. */
const METRICS = {
  revenue: ['gross', 'Revenue', 'money'],
  net: ['net', 'Net revenue', 'money'],
  refunds: ['refunds', 'Refunds', 'money'],
  orders: ['orders', 'Orders', 'count'],
  bookings: ['completed_bookings', 'Completed bookings', 'count'],
  customers: ['customers', 'Customers', 'count'],
  aov: ['aov', 'Average order', 'money'],
};

function metricOf(element) {
  const name = element.getAttribute('metric') || 'revenue';
  const metric = METRICS[name];
  if (!metric) throw new Error(`unknown metric "${name}": one of ${Object.keys(METRICS).join(', ')}`);
  return metric;
}

function show(kind, value, currency) {
  return kind === 'money' ? fmt.money(value, currency) : fmt.count(value);
}

function rangeQuery(element, defaultRange) {
  const params = new URLSearchParams({ range: element.getAttribute('range') || element.getAttribute('period') || defaultRange });
  for (const name of ['from', 'to', 'interval']) {
    if (element.hasAttribute(name)) params.set(name, element.getAttribute(name));
  }
  return params.toString();
}

/**
 * An element showing one metric of `/v1/analytics/revenue` (the
 * `metric` attribute), asked again as events arrive; subclasses draw the
 * answer with `draw(answer, workspace, [field, title, kind])`.
 */
class MetricElement extends BeaconElement {
  start() {
    let metric;
    try {
      metric = metricOf(this);
    } catch (e) {
      this.fail(e);
      return;
    }
    this.live(async () => {
      const [answer, workspace] = await Promise.all([
        this.client.get(`/v1/analytics/revenue?${rangeQuery(this, this.defaultRange)}`),
        this.client.workspace(),
      ]);
      this.dataset.state = 'live';
      this.draw(answer, workspace, metric);
    });
  }
}

/** `<beacon-kpi metric="revenue" range="today" label="...">`: one number, live. */
class BeaconKpi extends MetricElement {
  defaultRange = 'today';

  draw(answer, workspace, [field, title, kind]) {
    const value = answer.summary[field];
    this.dataset.value = value === null || value === undefined ? '' : String(value);
    this.body.replaceChildren(
      el('div', { part: 'label' }, this.getAttribute('label') || title),
      el('div', { part: 'value', 'aria-live': 'polite' }, show(kind, value, workspace.currency)),
    );
  }
}

/** `<beacon-chart metric="net" range="30d" interval="day">`: bars per bucket, live. */
class BeaconChart extends MetricElement {
  defaultRange = '30d';

  draw(answer, workspace, [field, title, kind]) {
    const series = answer.series || [];
    const values = series.map((b) => Number(b[field] || 0));
    const top = Math.max(0, ...values) || 1;
    const width = 600;
    const height = 160;
    const step = width / Math.max(1, series.length);
    const label = this.getAttribute('label') || title;
    const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${label} by ${(answer.range && answer.range.interval) || 'bucket'}` });
    series.forEach((bucket, i) => {
      const h = Math.max(0, (values[i] / top) * (height - 4));
      const bar = el('rect', { part: 'bar', x: i * step + 1, y: height - h, width: Math.max(1, step - 2), height: h, 'data-value': String(bucket[field] ?? '') });
      bar.append(el('title', {}, `${bucket.bucket || bucket.start || i}: ${show(kind, bucket[field], workspace.currency)}`));
      svg.append(bar);
    });
    this.body.replaceChildren(el('div', { part: 'label' }, label), svg);
  }
}

/** `<beacon-activity limit="10" events="Order Completed,Booking Created">`: the live feed. */
class BeaconActivity extends BeaconElement {
  start() {
    const limit = Number(this.getAttribute('limit') || 10);
    const events = this.getAttribute('events');
    const items = [];
    const list = el('ul', { part: 'list', 'aria-live': 'polite' });
    this.body.replaceChildren(list);
    this.dataset.state = 'live';
    const render = async () => {
      const workspace = await this.client.workspace().catch(() => ({}));
      list.replaceChildren(
        ...items.map((e) =>
          el(
            'li',
            { part: 'item', 'data-id': e.message_id },
            el('span', {}, e.event || e.type),
            e.revenue ? el('span', { part: 'amount' }, fmt.money(e.revenue, e.currency || workspace.currency)) : '',
            el('time', { datetime: e.timestamp }, fmt.time(e.timestamp, workspace.timezone)),
          ),
        ),
      );
      if (items.length === 0) list.replaceChildren(el('li', { class: 'muted' }, 'No activity yet'));
    };
    const add = (e) => {
      if (items.some((x) => x.message_id === e.message_id)) return;
      items.unshift(e);
      items.length = Math.min(items.length, limit);
    };
    render();
    this.stops.push(
      this.client.subscribe(
        'activity',
        {
          onSnapshot: (payload) => {
            for (const e of payload.recent || []) add(e);
            render();
          },
          onMessage: (msg) => {
            add(msg.payload);
            render();
          },
          onError: (msg) => this.fail(new Error(msg.message)),
        },
        // Starts with the last events (the server's `recent`), not empty.
        { recent: Math.max(1, Math.min(limit || 10, 50)), ...(events ? { events: events.split(',').map((s) => s.trim()).filter(Boolean) } : {}) },
      ),
    );
  }
}

/** `<beacon-inbox token="bt_..." user="ann">`: a user's notifications, live. */
class BeaconInbox extends BeaconElement {
  start() {
    const user = this.getAttribute('user');
    if (!user) {
      this.fail(new Error('beacon-inbox needs user="<id>" and that user\'s session token'));
      return;
    }
    const load = async () => {
      const answer = await this.client.get('/v1/inbox?limit=20');
      const notes = answer.notifications || [];
      const workspace = await this.client.workspace().catch(() => ({}));
      const unread = notes.filter((n) => n.unread).length;
      this.dataset.state = 'live';
      this.dataset.unread = String(unread);
      const markAll = el('button', { type: 'button', part: 'button' }, 'Mark all read');
      markAll.addEventListener('click', () => this.client.post('/v1/inbox/mark', { ids: [], action: 'read' }).then(load, (e) => this.fail(e)));
      this.body.replaceChildren(
        el('div', { part: 'label' }, `${unread} unread`),
        el(
          'ul',
          { part: 'list' },
          ...notes.map((n) =>
            el('li', { part: 'item', class: n.unread ? 'unread' : null, 'data-id': n.id }, el('span', {}, n.title), el('time', {}, fmt.time(new Date(n.created_at_us / 1000).toISOString(), workspace.timezone))),
          ),
        ),
        markAll,
      );
    };
    load().catch((e) => this.fail(e));
    this.stops.push(
      this.client.subscribe(`notifications:${user}`, {
        onMessage: () => load().catch((e) => this.fail(e)),
        onSubscribed: () => load().catch((e) => this.fail(e)),
        onError: (msg) => this.fail(new Error(msg.message)),
      }),
    );
  }
}

for (const [name, type] of [
  ['beacon-kpi', BeaconKpi],
  ['beacon-chart', BeaconChart],
  ['beacon-activity', BeaconActivity],
  ['beacon-inbox', BeaconInbox],
]) {
  if (!customElements.get(name)) customElements.define(name, type);
}
