// Alerts: the workspace's rules (with their current state), an editor that
// simulates a rule over the last days before it is saved (a chart of the
// values the rule would have seen, its threshold and when it would have
// fired), the history of state changes and the silences. Everything is
// the alerts API's (docs/alerts.md): /v1/alerts/rules, /simulate,
// /history, /silences. Analysts and above edit; viewers read.
import { html, useEffect, useState } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import * as fmt from '../lib/format.js';
import { Failed } from '../lib/ui.js';

const EDITORS = ['analyst', 'admin', 'owner'];

/** Metrics a rule can watch (docs/alerts.md, "What a rule watches"). */
const METRICS = [
  ['orders', 'Orders'],
  ['revenue', 'Revenue'],
  ['aov', 'Average order'],
  ['refunds', 'Refunds'],
  ['bookings', 'Bookings'],
  ['cancellations', 'Cancellations'],
  ['no_shows', 'No-shows'],
  ['cancellation_rate', 'Cancellation rate (%)'],
  ['payment_failures', 'Payment failures'],
  ['leads', 'Leads'],
  ['visitors', 'Visitors'],
];

const STATE_LABEL = {
  normal: 'Normal',
  pending: 'Pending',
  firing: 'Firing',
  recovering: 'Recovering',
  resolved: 'Resolved',
  no_data: 'No data',
  error: 'Error',
};

function describe(rule) {
  const q = rule.query || {};
  const what = q.sql ? 'SQL' : `${q.metric}${q.event ? ` (${q.event})` : ''} over ${q.window || '?'}`;
  const c = rule.condition || {};
  const when =
    c.type === 'threshold'
      ? `${c.op} ${c.value}`
      : c.type === 'change'
        ? `${c.op} ${c.value}${c.by === 'absolute' ? '' : '%'} vs ${c.compare}`
        : c.type === 'anomaly'
          ? `outside its ${c.sensitivity} band`
          : 'no data';
  const s = rule.schedule || {};
  const every = s.on_ingest ? 'on ingest' : s.cron ? `cron ${s.cron}` : `every ${s.every}`;
  return `${what} ${when}, ${every}`;
}

/** The rule the editor's fields make. */
function ruleOf(form, me) {
  const condition =
    form.type === 'no_data'
      ? { type: 'no_data' }
      : form.type === 'change'
        ? { type: 'change', op: form.op, value: Number(form.value), compare: 'previous_period', by: 'percent' }
        : { type: 'threshold', op: form.op, value: Number(form.value) };
  return {
    name: form.name,
    query: { metric: form.metric, window: form.window },
    condition,
    schedule: { every: form.every },
    for: form.for,
    severity: form.severity,
    notify: { users: me ? [me.user.id] : [], channels: ['inbox', 'websocket'], group_wait: '0s' },
  };
}

function Editor({ app, onSaved }) {
  const [form, setForm] = useState({
    name: '',
    metric: 'orders',
    window: '1h',
    type: 'threshold',
    op: 'above',
    value: '10',
    every: '1m',
    for: '0s',
    severity: 'warning',
  });
  const [sim, setSim] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (e) => setForm({ ...form, [name]: e.target.value });
  const rule = () => ruleOf(form, app.me);

  const simulate = async () => {
    setBusy(true);
    setError(null);
    try {
      const to = new Date();
      const from = new Date(to.getTime() - 3 * 86400 * 1000);
      const answer = await app.client.post('/v1/alerts/simulate', {
        rule: { ...rule(), name: form.name || 'Simulation' },
        from: from.toISOString(),
        to: to.toISOString(),
        step: '1h',
      });
      setSim(answer);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const save = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await app.client.post('/v1/alerts/rules', rule());
      setSim(null);
      setForm({ ...form, name: '' });
      onSaved();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  // The simulated values (one line per instance) and the threshold.
  const points = (sim && sim.points) || [];
  const times = [...new Set(points.map((p) => p.at))];
  const x = times.map((t) => Date.parse(t) / 1000);
  const keys = [...new Set(points.map((p) => p.key))].slice(0, 3);
  const series = keys.map((k) => ({
    label: k || form.metric,
    values: times.map((t) => {
      const p = points.find((q) => q.at === t && q.key === k);
      return p && p.value !== null ? p.value : null;
    }),
  }));
  if (form.type === 'threshold' && x.length) {
    series.push({ label: `threshold (${form.op})`, values: x.map(() => Number(form.value)), band: true });
  }

  return html`
    <section aria-labelledby="editor-title" class="panel">
      <h2 id="editor-title">New rule</h2>
      <form class="rule-form" onSubmit=${save}>
        <label>Name <input required maxlength="200" value=${form.name} onInput=${set('name')} /></label>
        <label>Metric <select value=${form.metric} onChange=${set('metric')}>${METRICS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select></label>
        <label>Window <input value=${form.window} onInput=${set('window')} placeholder="1h" /></label>
        <label>Condition <select value=${form.type} onChange=${set('type')}>
          <option value="threshold">Threshold</option>
          <option value="change">Change vs previous window (%)</option>
          <option value="no_data">No data</option>
        </select></label>
        ${form.type !== 'no_data' &&
        html`<label>When <select value=${form.op} onChange=${set('op')}><option value="above">above</option><option value="below">below</option></select></label>
          <label>Value <input type="number" step="any" required value=${form.value} onInput=${set('value')} /></label>`}
        <label>Check every <input value=${form.every} onInput=${set('every')} placeholder="1m" /></label>
        <label>For <input value=${form.for} onInput=${set('for')} placeholder="0s" /></label>
        <label>Severity <select value=${form.severity} onChange=${set('severity')}>
          <option value="info">Info</option><option value="warning">Warning</option><option value="critical">Critical</option>
        </select></label>
        <p class="hint">Notifies you in the inbox and live.</p>
        <div class="actions">
          <button type="button" onClick=${simulate} disabled=${busy}>Simulate over the last 3 days</button>
          <button type="submit" disabled=${busy}>Save rule</button>
        </div>
      </form>
      ${error && html`<${Failed} error=${error} />`}
      ${sim &&
      html`<div class="simulation" data-firing=${sim.firing}>
        <p role="status">
          ${fmt.count(sim.evaluations)} evaluations: it would have fired
          <strong>${fmt.count(sim.firing)}</strong> time${sim.firing === 1 ? '' : 's'}${sim.first_firing_at ? `, first ${fmt.time(sim.first_firing_at, app.workspace.timezone)}` : ''}.
        </p>
        ${x.length > 0 && html`<${Chart} x=${x} series=${series} title=${`Simulated ${form.metric} over the last 3 days`} height=${200} />`}
      </div>`}
    </section>
  `;
}

export function Alerts({ app }) {
  const [rules, setRules] = useState(null);
  const [history, setHistory] = useState(null);
  const [silences, setSilences] = useState(null);
  const [error, setError] = useState(null);
  const editor = EDITORS.includes(app.role);
  const load = async () => {
    try {
      const [r, h, s] = await Promise.all([
        app.client.get('/v1/alerts/rules'),
        app.client.get('/v1/alerts/history?limit=50'),
        app.client.get('/v1/alerts/silences'),
      ]);
      setRules(r.rules);
      setHistory(h.history);
      setSilences(s.silences);
      setError(null);
    } catch (e) {
      setError(e.message);
    }
  };
  useEffect(() => {
    load();
    // State changes arrive live on the `alerts` channel.
    return app.client.subscribe('alerts', { onMessage: load, onSubscribed: load });
  }, [app.client]);
  const act = async (fn) => {
    try {
      await fn();
      await load();
    } catch (e) {
      setError(e.message);
    }
  };
  const names = new Map((rules || []).map((r) => [r.id, r.name]));
  const tz = app.workspace.timezone;
  return html`
    <h1>Alerts</h1>
    ${error && html`<${Failed} error=${error} />`}
    <section aria-labelledby="rules-title">
      <h2 id="rules-title">Rules</h2>
      ${rules === null
        ? html`<p class="loading">Loading…</p>`
        : rules.length === 0
          ? html`<p>No rules yet.</p>`
          : html`<div class="table-wrap"><table class="rules">
              <thead><tr><th scope="col">Rule</th><th scope="col">Watches</th><th scope="col">Severity</th>${editor && html`<th scope="col"><span class="sr-only">Actions</span></th>`}</tr></thead>
              <tbody>${rules.map(
                (r) => html`<tr data-rule=${r.id}>
                  <td>${r.name}</td><td>${describe(r)}</td><td>${r.severity || 'warning'}</td>
                  ${editor &&
                  html`<td class="row-actions">
                    <button type="button" onClick=${() => act(() => app.client.post(`/v1/alerts/rules/${r.id}/evaluate`))}>Evaluate now</button>
                    <button type="button" onClick=${() => act(() => app.client.post('/v1/alerts/silences', { rule_id: r.id, duration: '1h', comment: 'from the web app' }))}>Silence 1 h</button>
                    <button type="button" class="danger" onClick=${() => confirm(`Delete the rule "${r.name}"?`) && act(() => app.client.request('DELETE', `/v1/alerts/rules/${r.id}`))}>Delete</button>
                  </td>`}
                </tr>`,
              )}</tbody></table></div>`}
    </section>
    ${editor && html`<${Editor} app=${app} onSaved=${load} />`}
    <section aria-labelledby="history-title">
      <h2 id="history-title">History</h2>
      ${history === null
        ? html`<p class="loading">Loading…</p>`
        : history.length === 0
          ? html`<p>No state changes yet.</p>`
          : html`<div class="table-wrap"><table class="history">
              <thead><tr><th scope="col">When</th><th scope="col">Rule</th><th scope="col">Instance</th><th scope="col">Change</th><th scope="col" class="num">Value</th></tr></thead>
              <tbody>${history.map(
                (h) => html`<tr>
                  <td>${fmt.time(new Date(h.at_us / 1000).toISOString(), tz)}</td>
                  <td>${names.get(h.rule_id) || h.rule_id}</td>
                  <td>${h.key || '–'}</td>
                  <td>${STATE_LABEL[h.from] || h.from} → <strong>${STATE_LABEL[h.to] || h.to}</strong>${h.silenced ? ' (silenced)' : ''}</td>
                  <td class="num">${h.value === null ? '–' : fmt.number(h.value)}</td>
                </tr>`,
              )}</tbody></table></div>`}
    </section>
    <section aria-labelledby="silences-title">
      <h2 id="silences-title">Silences</h2>
      ${silences === null
        ? html`<p class="loading">Loading…</p>`
        : silences.length === 0
          ? html`<p>Nothing is silenced.</p>`
          : html`<ul class="silences">${silences.map(
              (s) => html`<li>
                ${s.rule_id ? names.get(s.rule_id) || s.rule_id : 'Any rule'}
                ${Object.entries(s.matchers || {}).map(([k, v]) => ` ${k}=${v}`)}
                until ${fmt.time(new Date(s.ends_at_us / 1000).toISOString(), tz)}${s.comment ? ` · ${s.comment}` : ''}
                ${editor && html` <button type="button" onClick=${() => act(() => app.client.request('DELETE', `/v1/alerts/silences/${s.id}`))}>End</button>`}
              </li>`,
            )}</ul>`}
    </section>
  `;
}
