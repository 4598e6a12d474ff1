// SQL console (analysts and up): a query over the workspace's tables, its
// result as a table and, for a label and a number column, a chart;
// download as CSV, Parquet, Excel (XLSX) or PDF; cancel; save the query
// under a name for the team (and for report blocks) and open a saved one.
// `POST /v1/sql` (docs/sql.md), `/v1/saved-queries` (docs/reports.md).
import { html, useEffect, useRef, useState } from '../vendor/preact-htm.mjs';

import { Chart } from '../lib/chart.js';
import { Failed } from '../lib/ui.js';

const EXAMPLE = "SELECT business_date(timestamp, 'day') AS day, count(*) AS orders, sum(revenue) AS revenue\nFROM orders\nGROUP BY 1\nORDER BY 1 DESC\nLIMIT 30";

/** A column's values as numbers for a chart, or null if any is not one. */
function numeric(rows, i) {
  const values = rows.map((r) => (r[i] === null ? null : Number(r[i])));
  return values.every((v) => v === null || Number.isFinite(v)) ? values : null;
}

export function Sql({ app }) {
  const [text, setText] = useState(EXAMPLE);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(null);
  const [tables, setTables] = useState([]);
  const [saved, setSaved] = useState([]);
  const [name, setName] = useState('');
  const [note, setNote] = useState(null);
  const started = useRef(0);

  const loadSaved = () =>
    app.client
      .get('/v1/saved-queries')
      .then((r) => setSaved(r.queries))
      .catch(() => setSaved([]));
  useEffect(() => {
    loadSaved();
  }, [app.client]);

  const save = async () => {
    setError(null);
    setNote(null);
    try {
      const q = await app.client.post('/v1/saved-queries', { name, sql: text });
      setNote(`Saved as "${q.name}".`);
      setName('');
      loadSaved();
    } catch (e) {
      setError(e.message);
    }
  };

  useEffect(() => {
    app.client
      .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
      .then((r) => setTables(r.rows.map((row) => row[0])))
      .catch(() => setTables([]));
  }, [app.client]);

  const run = async (event) => {
    event?.preventDefault();
    const controller = new AbortController();
    setRunning(controller);
    setError(null);
    started.current = performance.now();
    try {
      // Leaving (or Cancel) closes the request, and the server stops the query.
      const response = await fetch('/v1/sql', {
        method: 'POST',
        headers: app.client.headers({ 'content-type': 'application/json' }),
        body: JSON.stringify({ query: text }),
        signal: controller.signal,
        credentials: 'same-origin',
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
      setResult({ ...body, ms: Math.round(performance.now() - started.current) });
    } catch (e) {
      setError(e.name === 'AbortError' ? 'Cancelled.' : e.message);
    } finally {
      setRunning(null);
    }
  };

  const download = async (format) => {
    setError(null);
    try {
      const response = await fetch('/v1/sql', {
        method: 'POST',
        headers: app.client.headers({ 'content-type': 'application/json' }),
        body: JSON.stringify({ query: text, format }),
        credentials: 'same-origin',
      });
      if (!response.ok) {
        const body = await response.json();
        throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
      }
      const url = URL.createObjectURL(await response.blob());
      const a = document.createElement('a');
      a.href = url;
      a.download = `beacon-query.${format}`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) {
      setError(e.message);
    }
  };

  const columns = result ? result.columns.map((c) => (typeof c === 'string' ? c : c.name)) : [];
  const rows = result ? result.rows : [];
  const values = rows.length > 1 && columns.length >= 2 ? numeric(rows, 1) : null;
  // A time first column and a number second: a chart, in time order.
  const order =
    values && rows.every((r) => Number.isFinite(Date.parse(r[0])))
      ? rows.map((r, i) => [Date.parse(r[0]) / 1000, i]).sort((a, b) => a[0] - b[0])
      : null;
  return html`
    <h1>SQL</h1>
    <form class="sql" onSubmit=${run}>
      <label>Query (read-only; tables: ${tables.join(', ') || '…'})
        <textarea rows="8" spellcheck="false" value=${text} onInput=${(e) => setText(e.target.value)}
          onKeyDown=${(e) => (e.key === 'Enter' && (e.ctrlKey || e.metaKey) ? run(e) : null)}></textarea>
      </label>
      <div class="actions">
        <button type="submit" disabled=${!!running}>${running ? 'Running…' : 'Run (Ctrl+Enter)'}</button>
        ${running && html`<button type="button" onClick=${() => running.abort()}>Cancel</button>`}
        <button type="button" onClick=${() => download('csv')}>Download CSV</button>
        <button type="button" onClick=${() => download('parquet')}>Download Parquet</button>
        <button type="button" onClick=${() => download('xlsx')}>Download Excel</button>
        <button type="button" onClick=${() => download('pdf')}>Download PDF</button>
      </div>
      <div class="actions">
        <label>Saved queries
          <select value="" onChange=${(e) => {
            const q = saved.find((x) => x.id === e.target.value);
            if (q) setText(q.sql);
          }}>
            <option value="">Open a saved query…</option>
            ${saved.map((q) => html`<option value=${q.id}>${q.name}</option>`)}
          </select>
        </label>
        <label>Name <input value=${name} onInput=${(e) => setName(e.target.value)} placeholder="Weekly orders by channel" /></label>
        <button type="button" disabled=${!name.trim()} onClick=${save}>Save query</button>
      </div>
      ${note && html`<p role="status">${note}</p>`}
    </form>
    ${error && html`<${Failed} error=${error} />`}
    ${result &&
    html`<div class="card wide">
      <p class="summary" role="status">${rows.length} rows${result.truncated ? ' (truncated)' : ''} in ${result.ms} ms</p>
      ${order
        ? html`<${Chart}
            x=${order.map((o) => o[0])}
            series=${[{ label: columns[1], values: order.map((o) => values[o[1]]) }]}
            format=${(_s, i) => String(rows[order[i][1]][1])}
            title=${`${columns[1]} by ${columns[0]}`}
          />`
        : null}
      <div class="table-wrap">
        <table class="results">
          <thead><tr>${columns.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
          <tbody>${rows.map((r) => html`<tr>${r.map((v) => html`<td>${v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v)}</td>`)}</tr>`)}</tbody>
        </table>
      </div>
    </div>`}
  `;
}
