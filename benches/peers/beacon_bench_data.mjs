// Shared by the benches that drive a release `beacon serve` holding N
// generated events (overview_bench.mjs, report_bench.mjs): the data
// directory (made once per event count and reused), the server, and
// rewriting one section of benches/RESULTS.md.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const EMAIL = 'owner@bench.test';
export const PASSWORD = 'correct horse battery staple';

/** Options every such bench takes: --beacon, --events, --repeat, --work-dir, --reuse. */
export function parseArgs(defaultWork) {
  const args = { beacon: 'target/release/beacon', events: 10_000_000, repeat: 5, workDir: null, reuse: false };
  for (let i = 2; i < process.argv.length; i++) {
    const a = process.argv[i];
    if (a === '--beacon') args.beacon = process.argv[++i];
    else if (a === '--events') args.events = Number(process.argv[++i]);
    else if (a === '--repeat') args.repeat = Number(process.argv[++i]);
    else if (a === '--work-dir') args.workDir = process.argv[++i];
    else if (a === '--reuse') args.reuse = true;
    else throw new Error(`unknown argument ${a}`);
  }
  args.beacon = path.resolve(root, args.beacon);
  args.work = args.workDir ? path.resolve(args.workDir) : path.join(defaultWork);
  args.data = path.join(args.work, `data-${args.events}`);
  return args;
}

export function run(cmd, argv, input) {
  const out = spawnSync(cmd, argv, { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (out.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed: ${out.stderr}`);
  return out.stdout;
}

/** `beacon serve` on a free port: its base URL and process. */
export async function serve(beacon, data) {
  const child = spawn(beacon, ['serve', '--listen', '127.0.0.1:0', '--data-dir', data], {
    env: { ...process.env, BEACON_SQL__PG_LISTEN: '', BEACON_SQL__FLIGHT_LISTEN: '', BEACON_ACCESS__LIMITS__LOGIN__BURST: '1000' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = await new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const m = buffered.match(/Beacon listening on (\S+)/);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`beacon exited (${code}) before listening`)));
  });
  return { base, child };
}

export async function stop(server) {
  const done = new Promise((resolve) => server.child.on('exit', resolve));
  server.child.kill('SIGTERM');
  await done;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * The data directory of `args.events` generated events (seed 42, a year
 * ending today, replayed with --shift-to-now, flushed), a signed-up owner
 * and a saved revenue forecast; made once and reused with --reuse.
 */
export async function prepare(args) {
  const { beacon, data, work } = args;
  if (args.reuse && existsSync(data)) return JSON.parse(readFileSync(path.join(work, `keys-${args.events}.json`), 'utf8'));
  rmSync(data, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const file = path.join(work, `events-${args.events}.parquet`);
  const today = new Date().toISOString().slice(0, 10);
  let started = performance.now();
  if (!existsSync(file)) run(beacon, ['datasets', 'generate', '--events', String(args.events), '--seed', '42', '--end', today, '--output', file]);
  const generateSecs = (performance.now() - started) / 1000;
  // The generator's business: Europe/London, pounds.
  const tenant = JSON.parse(run(beacon, ['tenants', 'create', 'Bench shop', '--timezone', 'Europe/London', '--currency', 'GBP', '--json', '--data-dir', data]));
  run(beacon, ['users', 'create', '--workspace', 'Bench shop', '--email', EMAIL, '--role', 'owner', '--password-stdin', '--data-dir', data], PASSWORD);
  const server = await serve(beacon, data);
  started = performance.now();
  run(beacon, ['datasets', 'replay', file, '--url', server.base, '--key', tenant.write_key, '--speed', 'max', '--shift-to-now', '--json']);
  const replaySecs = (performance.now() - started) / 1000;
  // Everything to Parquet, as a server that ran for a while has it.
  const flushed = await fetch(`${server.base}/v1/workspace/flush`, { method: 'POST', headers: { authorization: `Bearer ${tenant.admin_key}` } });
  if (!flushed.ok) throw new Error(`flush: ${flushed.status} ${await flushed.text()}`);
  // A saved daily revenue forecast, as the models' refit schedule makes.
  const forecast = await fetch(`${server.base}/v1/forecasts`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tenant.admin_key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ metric: 'revenue', interval: 'day', horizon: 14 }),
  });
  if (!forecast.ok) throw new Error(`forecast: ${forecast.status} ${await forecast.text()}`);
  await stop(server);
  const keys = { admin_key: tenant.admin_key, generateSecs, replaySecs };
  writeFileSync(path.join(work, `keys-${args.events}.json`), JSON.stringify(keys));
  return keys;
}


/** Replaces (or appends) the `## title` section of benches/RESULTS.md. */
export function writeSection(title, lines) {
  const section = lines.join('\n');
  console.log(section);
  const results = path.join(root, 'benches/RESULTS.md');
  const text = readFileSync(results, 'utf8');
  const start = text.indexOf(`## ${title}\n`);
  const next = start < 0 ? -1 : text.indexOf('\n## ', start + 1);
  const updated =
    start < 0 ? `${text.trimEnd()}\n\n${section}` : `${text.slice(0, start)}${section}${next < 0 ? '\n' : text.slice(next)}`;
  writeFileSync(results, updated.endsWith('\n') ? updated : `${updated}\n`);
}
