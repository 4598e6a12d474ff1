#!/usr/bin/env node
// Report rendering: the weekly sales summary and the monthly bookings
// report rendered as PDF and as Excel (`POST /v1/reports/preview?format=`,
// which runs every block, computes the summary and writes the file)
// against a release `beacon serve` holding N generated events, next to the
// time of the API calls the report makes, called one after another. The
// difference is what rendering adds (target: at most 1 s). Rewrites the
// "Report rendering" section of benches/RESULTS.md.
//
//   node benches/peers/report_bench.mjs --beacon target/release/beacon \
//     --events 1000000,10000000 [--repeat 5] [--work-dir DIR] [--reuse]
//
// The data directories are overview_bench.mjs's (beacon_bench_data.mjs),
// so one --work-dir serves both benches.
import os from 'node:os';
import path from 'node:path';

import { median, parseArgs, prepare, serve, stop, writeSection } from './beacon_bench_data.mjs';

const counts = process.argv.includes('--events')
  ? process.argv[process.argv.indexOf('--events') + 1].split(',').map(Number)
  : [1_000_000, 10_000_000];
const argv = [...process.argv];
const TEMPLATES = ['weekly_sales', 'monthly_bookings'];
const FORMATS = ['pdf', 'xlsx'];

/** The analytics calls a template's blocks make, as (endpoint, request). */
function calls(definition, from, to) {
  const base = { from, to };
  return definition.blocks.flatMap((b) => {
    switch (b.type) {
      case 'kpi':
        return [['revenue', { ...base, compare: true }], ...(b.bookings ? [['bookings', { ...base, compare: true }]] : [])];
      case 'timeseries':
        return [[b.endpoint || 'revenue', { ...base, ...(b.interval ? { interval: b.interval } : {}) }]];
      case 'breakdown':
        return [[b.endpoint || 'revenue', { ...base, breakdown: b.by, limit: b.limit || 50 }]];
      case 'products':
        return [['products', { ...base, limit: b.limit || 20, pairs: false }]];
      default:
        throw new Error(`the bench does not know block ${b.type}`);
    }
  });
}

async function timed(f) {
  const started = performance.now();
  const out = await f();
  return [performance.now() - started, out];
}

const rows = [];
let repeat = 5;
for (const events of counts) {
  process.argv = [...argv.filter((a, i) => a !== '--events' && argv[i - 1] !== '--events'), '--events', String(events)];
  const args = parseArgs(path.join(os.tmpdir(), 'beacon-overview-bench'));
  repeat = args.repeat;
  const keys = await prepare(args);
  const server = await serve(args.beacon, args.data);
  const auth = { authorization: `Bearer ${keys.admin_key}`, 'content-type': 'application/json' };
  const post = (p, body) => fetch(server.base + p, { method: 'POST', headers: auth, body: JSON.stringify(body) });
  const templates = await (await fetch(`${server.base}/v1/reports/templates`, { headers: auth })).json();
  for (const name of TEMPLATES) {
    const definition = templates.templates.find((t) => t.name === name).definition;
    // Warm: the first preview fills the caches (as a dashboard would have).
    const first = await (await post('/v1/reports/preview', { template: name })).json();
    const { from, to } = first.range;
    const rendered = {};
    for (const format of FORMATS) {
      const renders = [];
      let bytes = 0;
      for (let i = 0; i < args.repeat; i++) {
        const [ms, r] = await timed(async () => {
          const resp = await post(`/v1/reports/preview?format=${format}`, { template: name });
          if (!resp.ok) throw new Error(`preview ${name} as ${format}: ${resp.status} ${await resp.text()}`);
          return resp.arrayBuffer();
        });
        renders.push(ms);
        bytes = r.byteLength;
      }
      rendered[format] = { ms: median(renders), bytes };
    }
    const days = Math.round((Date.parse(to) - Date.parse(from)) / 86400000) + 1;
    const apis = [];
    for (let i = 0; i < args.repeat; i++) {
      const [ms] = await timed(async () => {
        for (const [endpoint, request] of calls(definition, from, to)) {
          const resp = await post(`/v1/analytics/${endpoint}`, request);
          if (!resp.ok) throw new Error(`${endpoint}: ${resp.status} ${await resp.text()}`);
          await resp.arrayBuffer();
        }
        // The summary's unusual days (the anomaly band of daily revenue)
        // and its forecast against the actual (a daily revenue forecast
        // over the range's days).
        const resp = await fetch(`${server.base}/v1/anomalies?metric=revenue&interval=day&history_days=180`, { headers: auth });
        await resp.arrayBuffer();
        const fc = await post('/v1/forecasts', { metric: 'revenue', interval: 'day', horizon: days, levels: [0.8] });
        await fc.arrayBuffer();
      });
      apis.push(ms);
    }
    const api = median(apis);
    for (const format of FORMATS) {
      rows.push({ events, name, format, blocks: definition.blocks.length, render: rendered[format].ms, api, bytes: rendered[format].bytes, range: `${from} to ${to}` });
    }
  }
  await stop(server);
}

const fmt = (ms) => ms.toFixed(0);
const millions = (n) => (n >= 1e6 ? `${n / 1e6}M` : String(n));
writeSection('Report rendering', [
  '## Report rendering',
  '',
  `Command: \`cargo build --release -p beacon-api && node benches/peers/report_bench.mjs --beacon target/release/beacon --events ${counts.join(',')} --repeat ${repeat}\` (\`benches/run.sh report\`)`,
  '',
  `Machine: 2 cores, x64; date ${new Date().toISOString().slice(0, 10)}. Data: the generator's events (seed 42, a year ending today, Europe/London, GBP; the Overview bench's data directories), loopback, warm (one preview first).`,
  '',
  'A report rendered by `POST /v1/reports/preview?format=pdf|xlsx` (every block queried, the summary computed, the file written: the PDF typeset by Typst with its charts), next to the same analytics calls (and the anomaly band and the forecast the summary uses) made one after another over HTTP; medians. The target is that rendering adds at most 1 s to the queries.',
  '',
  '| events | report (range) | blocks | format | rendered | its API calls | rendering adds | file |',
  '|---:|---|---:|---|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${millions(r.events)} | ${r.name} (${r.range}) | ${r.blocks} | ${r.format} | ${fmt(r.render)} ms | ${fmt(r.api)} ms | ${fmt(r.render - r.api)} ms | ${(r.bytes / 1024).toFixed(1)} KiB |`,
  ),
  '',
]);
