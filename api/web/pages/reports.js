// Reports: the workspace's reports (a template or the blocks of a custom
// one, a range relative to each run, a format, a cron schedule in the
// workspace's time zone, recipients), a preview of what a report would
// say now, run now / pause / resume / test-send / delete, and the log of
// runs with their files. Everything is the reports API's (docs/reports.md):
// /v1/reports, /templates, /preview, /runs. Analysts and above make and
// change reports; viewers read them and download their files.
import { html, useEffect, useState } from '../vendor/preact-htm.mjs';

import * as fmt from '../lib/format.js';
import { Failed, useApi } from '../lib/ui.js';

const EDITORS = ['analyst', 'admin', 'owner'];

const RANGES = [
  ['yesterday', 'Yesterday'],
  ['last_7_days', 'Last 7 days'],
  ['last_week', 'Last week'],
  ['week_to_date', 'Week to date'],
  ['last_30_days', 'Last 30 days'],
  ['last_month', 'Last month'],
  ['month_to_date', 'Month to date'],
  ['last_quarter', 'Last quarter'],
  ['year_to_date', 'Year to date'],
];

const FORMATS = [
  ['pdf', 'PDF'],
  ['xlsx', 'Excel (XLSX)'],
  ['csv', 'CSV (a file per block)'],
  ['parquet', 'Parquet (a file per block)'],
];

/** Recipients as typed: user ids and email addresses, comma-separated. */
function recipientsOf(text) {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (s.includes('@') ? { email: s } : s));
}

function recipientText(r) {
  if (typeof r === 'string') return r;
  return r.email || r.user || `webhook ${r.webhook}`;
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A cell of a preview table as shown (money as the workspace's currency). */
function cell(v, currency) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string' && /^-?\d+\.\d+$/.test(v)) return fmt.money(v, currency);
  if (typeof v === 'number') return Number.isInteger(v) ? fmt.count(v) : fmt.number(v, 2);
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function Preview({ preview }) {
  return html`<div class="card wide" data-report="preview">
    <h3>${preview.title}: ${preview.range.from} to ${preview.range.to}</h3>
    ${preview.summary.length > 0 && html`<ul class="summary-lines">${preview.summary.map((s) => html`<li>${s}</li>`)}</ul>`}
    ${preview.blocks.map(
      (b) => html`<div class="table-wrap"><table>
        <caption>${b.heading}</caption>
        <thead><tr>${b.columns.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
        <tbody>${b.rows.slice(0, 50).map((r) => html`<tr>${b.columns.map((c) => html`<td>${cell(r[c], preview.currency)}</td>`)}</tr>`)}</tbody>
      </table></div>`,
    )}
  </div>`;
}

const pretty = (v) => JSON.stringify(v, null, 2);

/** The editor's fields for a new report from `template`, or of `report`. */
function formOf(templates, report, template = 'weekly_sales') {
  if (report) {
    return {
      template: '',
      title: report.definition.title,
      range: report.definition.range,
      format: report.format,
      schedule: report.schedule || '',
      recipients: report.recipients.filter((r) => typeof r === 'string' || r.email).map(recipientText).join(', '),
      blocks: pretty(report.definition.blocks),
    };
  }
  const t = templates.find((x) => x.name === template);
  return { template, title: '', range: '', format: 'pdf', schedule: '', recipients: '', blocks: t ? pretty(t.definition.blocks) : '[]' };
}

function Editor({ app, templates, editing, onSaved, onCancel }) {
  const [form, setForm] = useState(() => formOf(templates, editing));
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    setForm(formOf(templates, editing));
    setPreview(null);
  }, [editing]);
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const template = templates.find((t) => t.name === form.template);
  const body = () => {
    let blocks;
    try {
      blocks = JSON.parse(form.blocks);
    } catch (e) {
      throw new Error(`Blocks are not JSON: ${e.message}`);
    }
    const b = { format: form.format, recipients: recipientsOf(form.recipients), blocks };
    if (template) b.template = template.name;
    if (form.title.trim()) b.title = form.title.trim();
    if (form.range) b.range = form.range;
    if (form.schedule.trim()) b.schedule = form.schedule.trim();
    if (editing) {
      // Webhook recipients and filtered copies are kept as they were.
      b.recipients = [...b.recipients, ...editing.recipients.filter((r) => typeof r !== 'string' && !r.email)];
      b.filters = editing.definition.filters;
      b.paused = editing.paused;
    }
    return b;
  };
  const act = (f) => async (event) => {
    event?.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const save = act(async () => {
    if (editing) await app.client.request('PUT', `/v1/reports/${encodeURIComponent(editing.id)}`, body());
    else await app.client.post('/v1/reports', body());
    setPreview(null);
    setForm(formOf(templates, null));
    onSaved();
  });
  return html`
    <section aria-labelledby="report-editor" class="panel">
      <h2 id="report-editor">${editing ? `Edit ${editing.definition.title}` : 'New report'}</h2>
      <form class="rule-form" onSubmit=${save}>
        ${!editing &&
        html`<label>Template
          <select value=${form.template} onChange=${(e) => setForm(formOf(templates, null, e.target.value))}>
            ${templates.map((t) => html`<option value=${t.name}>${t.definition.title}</option>`)}
          </select>
        </label>`}
        <label>Title <input value=${form.title} placeholder=${template ? template.definition.title : ''} onInput=${set('title')} /></label>
        <label>Range
          <select value=${form.range} onChange=${set('range')}>
            ${!editing && html`<option value="">Default (${template ? template.definition.range.replaceAll('_', ' ') : ''})</option>`}
            ${RANGES.map(([v, t]) => html`<option value=${v}>${t}</option>`)}
          </select>
        </label>
        <label>Format
          <select value=${form.format} onChange=${set('format')}>${FORMATS.map(([v, t]) => html`<option value=${v}>${t}</option>`)}</select>
        </label>
        <label>Schedule (cron, ${app.workspace.timezone})
          <input value=${form.schedule} placeholder="0 9 * * MON (empty: on demand)" onInput=${set('schedule')} />
        </label>
        <label>Recipients (user ids or email addresses, comma-separated)
          <input value=${form.recipients} placeholder="ann, accountant@example.com" onInput=${set('recipients')} />
        </label>
        ${template && html`<p class="hint">${template.description}</p>`}
        <details class="hint">
          <summary>Blocks (JSON: kpi, timeseries, breakdown, products, funnel, cohorts, heatmap, customers, forecast, sql, saved_query; docs/reports.md)</summary>
          <label>Blocks <textarea rows="10" spellcheck="false" value=${form.blocks} onInput=${set('blocks')}></textarea></label>
        </details>
        <div class="actions">
          <button type="button" disabled=${busy} onClick=${act(async () => setPreview(await app.client.post('/v1/reports/preview', body())))}>Preview</button>
          <button type="submit" disabled=${busy}>${editing ? 'Save changes' : 'Create report'}</button>
          ${editing && html`<button type="button" onClick=${onCancel}>Cancel</button>`}
        </div>
      </form>
      ${error && html`<${Failed} error=${error} />`}
      ${preview && html`<${Preview} preview=${preview} />`}
    </section>
  `;
}

function Runs({ app, report, round }) {
  const [runs, error, again] = useApi(app.client, `/v1/reports/runs?report=${encodeURIComponent(report.id)}&limit=10`);
  useEffect(() => {
    if (round > 0) again();
  }, [round]);
  if (error) return html`<${Failed} error=${error} />`;
  if (!runs) return html`<p class="loading">Loading runs…</p>`;
  if (runs.runs.length === 0) return html`<p class="muted">No runs yet.</p>`;
  return html`<div class="table-wrap"><table class="runs" data-report=${report.id}>
    <caption>Runs of ${report.definition.title}</caption>
    <thead><tr><th scope="col">Started</th><th scope="col">Trigger</th><th scope="col">Range</th><th scope="col">Outcome</th><th scope="col" class="num">Time</th><th scope="col" class="num">Size</th><th scope="col">File</th></tr></thead>
    <tbody>${runs.runs.map(
      (r) => html`<tr data-run=${r.id} data-outcome=${r.outcome}>
        <td>${fmt.time(r.started_at, app.workspace.timezone)}</td>
        <td>${r.trigger}</td>
        <td>${r.range_from ? `${r.range_from} to ${r.range_to}` : '–'}</td>
        <td>${r.outcome}${r.error ? html`: <span class="error-text">${r.error}</span>` : ''}</td>
        <td class="num">${r.duration_ms === null ? '–' : `${r.duration_ms} ms`}</td>
        <td class="num">${bytes(r.bytes)}</td>
        <td>${r.outcome === 'ok' ? html`<a href=${`/v1/reports/runs/${encodeURIComponent(r.id)}/file`} download>Download ${r.format.toUpperCase()}</a>` : '–'}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

function Report({ app, report, onChanged, onEdit }) {
  const editor = EDITORS.includes(app.role);
  const [round, setRound] = useState(0);
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  const act = (label, f) => async () => {
    setError(null);
    setNote(null);
    try {
      const answer = await f();
      setNote(label(answer));
      setRound((r) => r + 1);
      onChanged();
    } catch (e) {
      setError(e.message);
    }
  };
  const path = `/v1/reports/${encodeURIComponent(report.id)}`;
  const schedule = report.schedule
    ? `${report.schedule}${report.paused ? ' (paused)' : report.next_run_at ? `, next ${fmt.time(report.next_run_at, app.workspace.timezone)}` : ''}`
    : 'on demand';
  return html`<article class="card wide report" data-report=${report.id} aria-labelledby=${`r-${report.id}`}>
    <h3 id=${`r-${report.id}`}>${report.definition.title}</h3>
    <p class="muted">${[report.definition.range.replaceAll('_', ' '), report.format.toUpperCase(), schedule, report.recipients.length ? `to ${report.recipients.map(recipientText).join(', ')}` : 'no recipients'].join(' · ')}</p>
    ${editor &&
    html`<div class="actions">
      <button type="button" onClick=${act((a) => `Run ${a.run.outcome}.`, () => app.client.post(`${path}/run`))}>Run now</button>
      ${app.me && html`<button type="button" onClick=${act(() => 'Sent to you.', () => app.client.post(`${path}/test`))}>Send me a test</button>`}
      ${report.schedule &&
      (report.paused
        ? html`<button type="button" onClick=${act(() => 'Resumed.', () => app.client.post(`${path}/resume`))}>Resume</button>`
        : html`<button type="button" onClick=${act(() => 'Paused.', () => app.client.post(`${path}/pause`))}>Pause</button>`)}
      <button type="button" onClick=${() => onEdit(report)}>Edit</button>
      <button type="button" class="danger" onClick=${act(() => 'Deleted.', () => app.client.request('DELETE', path))}>Delete</button>
    </div>`}
    ${note && html`<p role="status">${note}</p>`}
    ${error && html`<${Failed} error=${error} />`}
    <${Runs} app=${app} report=${report} round=${round} />
  </article>`;
}

export function Reports({ app }) {
  const [reports, error, again] = useApi(app.client, '/v1/reports');
  const [templates] = useApi(app.client, '/v1/reports/templates');
  const editor = EDITORS.includes(app.role);
  const [editing, setEditing] = useState(null);
  const saved = () => {
    setEditing(null);
    again();
  };
  return html`
    <h1>Reports</h1>
    <p class="muted">Scheduled and on-demand reports as PDF, Excel, CSV or Parquet, in ${app.workspace.timezone} time and ${app.workspace.currency}.</p>
    ${editor && templates && html`<${Editor} app=${app} templates=${templates.templates} editing=${editing} onSaved=${saved} onCancel=${() => setEditing(null)} />`}
    <section aria-labelledby="reports-title">
      <h2 id="reports-title">Reports</h2>
      ${error && html`<${Failed} error=${error} />`}
      ${!reports && !error && html`<p class="loading">Loading reports…</p>`}
      ${reports && reports.reports.length === 0 && html`<p class="muted">No reports yet${editor ? ': make one from a template above.' : '.'}</p>`}
      ${reports &&
      reports.reports.map(
        (r) => html`<${Report} key=${r.id} app=${app} report=${r} onChanged=${again} onEdit=${(x) => {
          setEditing(x);
          scrollTo(0, 0);
        }} />`,
      )}
    </section>
  `;
}
