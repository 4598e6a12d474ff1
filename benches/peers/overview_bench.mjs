#!/usr/bin/env node
// The Overview's load time: from opening the page to every tile, the
// revenue chart (with its forecast band and anomaly marks), the top
// products and the live feed drawn, in Debian's chromium (playwright-core)
// against a release `beacon serve` on loopback holding N generated events;
// next to the time of each API call the page makes, called alone. Rewrites
// the "Overview load" section of benches/RESULTS.md.
//
//   node benches/peers/overview_bench.mjs --beacon target/release/beacon \
//     --events 10000000 [--repeat 5] [--work-dir DIR] [--reuse]
//
// The events are the built-in generator's (seed 42, a year ending today;
// kept in the work dir and reused), replayed over HTTP with --shift-to-now, so today, this week and the last
// 30 days hold data. The first load is right after a restart (nothing in
// the column cache); the others are warm (median of --repeat).
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import { EMAIL, PASSWORD, median, parseArgs, prepare, root, run, serve, stop, writeSection } from './beacon_bench_data.mjs';

const require = createRequire(path.join(root, 'api/tests/clients/web/package.json'));
const { chromium } = require('playwright-core');

const args = parseArgs(path.join(os.tmpdir(), 'beacon-overview-bench'));
const { beacon, data } = args;

async function signIn(base) {
  const r = await fetch(`${base}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
  });
  if (!r.ok) throw new Error(`sign-in: ${r.status} ${await r.text()}`);
  const cookie = r.headers.get('set-cookie').split(';')[0];
  return cookie;
}

/** Opens the Overview and waits for everything drawn: milliseconds since navigation, and the page's API calls. */
async function load(browser, base, cookie) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const [name, value] = cookie.split('=');
  await context.addCookies([{ name, value, url: base }]);
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${base}/#/overview`, { waitUntil: 'commit' });
  const drawn = await page.waitForFunction(
    () => {
      const tiles = [...document.querySelectorAll('.tile .tile-value')];
      // When each part was first drawn (for the table of parts).
      const parts = {
        tiles: tiles.length >= 8 && tiles.every((t) => !t.textContent.includes('…')) && document.querySelector('.live[data-status="live"]'),
        chart: document.querySelector('[data-widget="revenue"] .chart canvas') && document.querySelector('[data-widget="revenue"] .u-legend'),
        products: document.querySelector('[data-widget="products"] table'),
        feed: document.querySelector('[data-widget="activity"] section[data-subscribed="yes"]'),
      };
      window.__drawn = window.__drawn || {};
      for (const [k, v] of Object.entries(parts)) if (v && !(k in window.__drawn)) window.__drawn[k] = performance.now();
      const ready = Object.values(parts).every(Boolean) && !document.querySelector('.loading');
      return ready ? performance.now() : false;
    },
    null,
    { polling: 'raf', timeout: 120_000 },
  );
  const ms = await drawn.jsonValue();
  const parts = await page.evaluate(() => window.__drawn);
  const calls = await page.evaluate(() =>
    performance
      .getEntriesByType('resource')
      .filter((e) => e.name.includes('/v1/'))
      .map((e) => ({ path: new URL(e.name).pathname + new URL(e.name).search, ms: e.responseEnd - e.startTime })),
  );
  await context.close();
  if (errors.length) throw new Error(`console errors: ${errors.join('; ')}`);
  return { ms, calls, parts };
}

/** Each API call of the page alone, sequentially: median milliseconds. */
async function apiAlone(base, cookie, paths) {
  const out = {};
  for (const p of paths) {
    const times = [];
    for (let i = 0; i < args.repeat; i++) {
      const started = performance.now();
      const r = await fetch(base + p, { headers: { cookie } });
      await r.arrayBuffer();
      if (!r.ok) throw new Error(`${p}: ${r.status}`);
      times.push(performance.now() - started);
    }
    out[p] = median(times);
  }
  return out;
}

const keys = await prepare(args);
const server = await serve(beacon, data);
const cookie = await signIn(server.base);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
// The browser's own first start (its processes, the first page's JS
// compilation) is not the server's: draw the sign-in page once, in a
// context of its own that reads none of the data.
{
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.base}/#/login`);
  await page.waitForSelector('form');
  await context.close();
}
const cold = await load(browser, server.base, cookie);
const warm = [];
for (let i = 0; i < args.repeat; i++) warm.push(await load(browser, server.base, cookie));
await browser.close();
const paths = [...new Set(warm[0].calls.map((c) => c.path))].filter((p) => !p.startsWith('/v1/ws'));
const alone = await apiAlone(server.base, cookie, paths);
await stop(server);

const version = run(process.env.CHROMIUM || '/usr/bin/chromium', ['--version']).trim();
const inPage = (p, loads) => median(loads.map((l) => (l.calls.find((c) => c.path === p) || { ms: NaN }).ms));
const fmt = (ms) => (Number.isFinite(ms) ? ms.toFixed(0) : 'n/a');
const warmMs = median(warm.map((l) => l.ms));
const millions = args.events >= 1e6 ? `${args.events / 1e6}M` : String(args.events);
const lines = [
  '## Overview load',
  '',
  `Command: \`cargo build --release -p beacon-api && node benches/peers/overview_bench.mjs --beacon target/release/beacon --events ${args.events} --repeat ${args.repeat}\` (\`benches/run.sh overview\`)`,
  '',
  `Machine: ${os.cpus().length} cores, ${os.arch()}; date ${new Date().toISOString().slice(0, 10)}. Browser: ${version}, headless, 1280 x 900, on loopback. Data: ${millions} events of the built-in generator (seed 42, about a year, Europe/London, GBP; replayed over HTTP with \`--shift-to-now\` in ${keys.replaySecs.toFixed(0)} s, so the last event is now; flushed to Parquet), a saved 14-day revenue forecast, one signed-in owner.`,
  '',
  'Time from opening `/#/overview` to every tile showing its number over the live WebSocket, the revenue chart drawn with its forecast band and anomaly marks, the top products table and the live feed subscribed (target: under 1 s). Cold: the first load after a restart (nothing in the column cache, the rollups read back from disk, no live metrics yet; the browser has drawn the sign-in page once, in another context); warm: median of the next loads. Each API call is also timed in the page (Resource Timing; calls overlap) and alone (sequential, median).',
  '',
  '| | cold (first load after a restart) | warm (median) |',
  '|---|---:|---:|',
  `| **Overview drawn** | **${fmt(cold.ms)} ms** | **${fmt(warmMs)} ms** |`,
  ...[['tiles', 'KPI tiles live (WebSocket)'], ['chart', 'revenue chart with band and marks'], ['products', 'top products'], ['feed', 'activity feed subscribed']].map(
    ([k, label]) => `| ${label} | ${fmt(cold.parts[k])} ms | ${fmt(median(warm.map((l) => l.parts[k])))} ms |`,
  ),
  '',
  '| API call of the page | in the cold load | in warm loads (median) | alone, warm (median) |',
  '|---|---:|---:|---:|',
  ...paths.map((p) => `| \`${p}\` | ${fmt(inPage(p, [cold]))} ms | ${fmt(inPage(p, warm))} ms | ${fmt(alone[p])} ms |`),
  '',
];
writeSection('Overview load', lines);
