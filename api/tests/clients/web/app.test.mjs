// The web app in a real browser (Debian's chromium, driven by
// playwright-core) against a real Beacon that api/tests/it/web.rs starts.
// The browser reaches Beacon through a TCP proxy in this process, so a
// test can cut its connections as a network failure would.
//
// Environment: BEACON_URL, BEACON_WRITE_KEY, BEACON_READ_KEY, BEACON_ADMIN_KEY,
// BEACON_OWNER, BEACON_VIEWER
// (email:password), BEACON_ARTIFACTS (screenshots), CHROMIUM (default
// /usr/bin/chromium).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { createRequire } from 'node:module';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const target = new URL(process.env.BEACON_URL);
const writeKey = process.env.BEACON_WRITE_KEY;
const adminKey = process.env.BEACON_ADMIN_KEY;
const [ownerEmail, ownerPassword] = process.env.BEACON_OWNER.split(/:(.*)/s);
const [viewerEmail, viewerPassword] = process.env.BEACON_VIEWER.split(/:(.*)/s);
const artifacts = process.env.BEACON_ARTIFACTS;
mkdirSync(artifacts, { recursive: true });

/** A TCP proxy to Beacon whose connections can be cut. */
function proxy() {
  const open = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    open.add(client);
    open.add(upstream);
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        cut: () => {
          for (const s of open) s.destroy();
          open.clear();
        },
        close: () => server.close(),
      });
    });
  });
}

async function ingest(events) {
  const response = await fetch(`${target.origin}/v1/batch`, {
    method: 'POST',
    headers: { authorization: `Bearer ${writeKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ batch: events }),
  });
  assert.equal(response.status, 200, await response.text());
}

function order(id, revenue) {
  return {
    type: 'track',
    event: 'Order Completed',
    userId: `cust-${id}`,
    messageId: `web-${id}`,
    properties: { order_id: `o-${id}`, revenue, currency: 'EUR', products: [{ product_id: 'p1', name: 'Espresso beans', price: revenue, quantity: 1 }] },
  };
}

let browser;
let front;
const problems = [];

before(async () => {
  front = await proxy();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  front?.close();
});

/** A new page that records console errors and failed requests. */
async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return page;
}

async function signIn(page, email, password) {
  await page.goto(front.url + '/');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  // The feed shows events from its subscription on.
  await page.locator('[data-channel="activity"][data-subscribed="yes"]').waitFor();
}

async function axe(page, name) {
  // Evaluated over the DevTools protocol: the page's CSP (rightly) refuses
  // an injected inline script.
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`),
    [],
    `accessibility of ${name}`,
  );
}

const tile = (page, metric) => page.locator(`.tile[data-metric="${metric}"] .tile-value`);

/** The header's unread count, once the page has it from the server. */
async function unreadCount(page) {
  const link = page.locator('.inbox-link[data-unread]');
  await link.waitFor();
  return Number(await link.getAttribute('data-unread'));
}

test('a wrong password is said in place; the owner signs in to a live overview', async () => {
  const page = await newPage();
  await page.goto(front.url + '/');
  await page.getByRole('heading', { name: 'Sign in to Beacon' }).waitFor();
  await axe(page, 'the sign-in page');
  await page.getByLabel('Email').fill(ownerEmail);
  await page.getByLabel('Password').fill('not the password at all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /password|credentials/i);
  problems.length = 0; // the refused sign-in's 401 is expected

  await signIn(page, ownerEmail, ownerPassword);
  await page.locator('.live[data-status="live"]').waitFor();
  await page.waitForFunction(() => !document.querySelector('.tile[data-metric="revenue"] .tile-value').textContent.includes('…'));
  const before = await tile(page, 'revenue').innerText();
  const ordersBefore = Number((await tile(page, 'orders').innerText()).replace(/\D/g, ''));

  // An order through the API moves the tiles, without a reload.
  await ingest([order('live-1', '12.50')]);
  await page.waitForFunction(
    (b) => document.querySelector('.tile[data-metric="revenue"] .tile-value').textContent !== b,
    before,
  );
  const ordersAfter = Number((await tile(page, 'orders').innerText()).replace(/\D/g, ''));
  assert.equal(ordersAfter, ordersBefore + 1);
  await page.locator('.feed li[data-message-id="web-live-1"]').waitFor();
  // The saved forecast's next days, after the last 30.
  await page.getByRole('heading', { name: 'Revenue, last 30 days and forecast' }).waitFor();
  await page.locator('.u-legend', { hasText: 'Forecast' }).first().waitFor();
  // The seeded spike is marked as unusual, with the money the API answers
  // for that day, and no other day of steady orders is.
  const spikeDay = process.env.BEACON_SPIKE_DAY;
  const unusual = page.locator(`.anomalies li[data-day="${spikeDay}"]`);
  await unusual.waitFor();
  const month = await api('/v1/analytics/revenue?range=30d&interval=day');
  const gross = month.series.find((r) => r.bucket === spikeDay).gross;
  const euro = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'EUR' }).format(gross);
  const text = await unusual.innerText();
  assert.ok(text.includes(euro) && /above the expected/.test(text), `${text} (the API: ${gross})`);
  assert.equal(await page.locator('.anomalies li').count(), 1, await page.locator('.anomalies').innerText());
  await axe(page, 'the overview');
  await page.screenshot({ path: `${artifacts}/overview-desktop.png`, fullPage: true });
  await page.context().close();

  // On a phone, 360 px wide: nothing wider than the screen.
  const phone = await newPage({ width: 360, height: 780 });
  await signIn(phone, ownerEmail, ownerPassword);
  await phone.waitForFunction(() => !document.querySelector('.tile[data-metric="revenue"] .tile-value').textContent.includes('…'));
  await phone.locator('.chart canvas').waitFor();
  // A new page's feed starts with the latest events (subscribed with
  // `recent`), not empty: the order of the desktop page is there.
  await phone.locator('.feed li[data-message-id="web-live-1"]').waitFor();
  await phone.screenshot({ path: `${artifacts}/overview-phone.png`, fullPage: true });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the overview fits 360 px (overflows by ${overflow} px)`);
  await axe(phone, 'the overview on a phone');
  await phone.context().close();
});

test('a cut connection shows reconnecting, then resumes with no duplicate and no gap', async () => {
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  await page.locator('.live[data-status="live"]').waitFor();
  await ingest([order('cut-1', '5.00')]);
  await page.locator('.feed li[data-message-id="web-cut-1"]').waitFor();

  front.cut();
  await page.locator('.live[data-status="reconnecting"]').waitFor();
  // Sent while the page is cut off.
  await ingest([order('cut-2', '6.00'), order('cut-3', '7.00')]);
  await page.locator('.live[data-status="live"]').waitFor({ timeout: 20000 });
  await page.locator('.feed li[data-message-id="web-cut-3"]').waitFor();
  await ingest([order('cut-4', '8.00')]);
  await page.locator('.feed li[data-message-id="web-cut-4"]').waitFor();
  const ids = await page.locator('.feed li').evaluateAll((items) => items.map((li) => li.dataset.messageId));
  const mine = ids.filter((id) => id.startsWith('web-cut-'));
  assert.deepEqual(mine, ['web-cut-4', 'web-cut-3', 'web-cut-2', 'web-cut-1']);
  await page.context().close();
});

async function api(path, init = {}) {
  const response = await fetch(`${target.origin}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${process.env.BEACON_READ_KEY}`, 'content-type': 'application/json', ...(init.headers || {}) },
  });
  assert.equal(response.status, 200, path);
  return init.raw ? response.text() : response.json();
}

test('every page draws the numbers of the API, passes axe and logs no error', async () => {
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  const euro = (text) => new Intl.NumberFormat('en-US', { style: 'currency', currency: 'EUR' }).format(text);

  await page.goto(front.url + '/#/sales');
  await page.getByRole('heading', { name: 'Sales', exact: true }).waitFor();
  const revenue = await api('/v1/analytics/revenue?range=30d');
  await page.waitForFunction(
    (want) => document.querySelector('.tile[data-metric="gross"] .tile-value')?.textContent === want,
    euro(revenue.summary.gross),
  );
  await page.getByLabel('Compare to the previous period').check();
  await page.locator('.tile[data-metric="gross"] .tile-change').waitFor();
  await axe(page, 'sales');
  await page.screenshot({ path: `${artifacts}/sales.png`, fullPage: true });

  await page.goto(front.url + '/#/bookings');
  await page.getByRole('heading', { name: 'Peak times (appointments' }).waitFor();
  await axe(page, 'bookings');

  await page.goto(front.url + '/#/customers');
  await page.getByRole('heading', { name: 'RFM segments' }).waitFor();
  const customers = await api('/v1/analytics/customers?range=90d');
  await page.waitForFunction(
    (want) => document.querySelector('.tile[data-metric="customers"] .tile-value')?.textContent === want,
    String(customers.summary.customers),
  );
  await axe(page, 'customers');

  // A funnel built in the page equals the API's.
  await ingest([
    ...['fa', 'fb', 'fc'].map((u, i) => ({ type: 'track', event: 'Product Viewed', userId: u, messageId: `fv-${i}`, properties: { product_id: 'p1' } })),
    ...['fa', 'fb'].map((u, i) => ({ type: 'track', event: 'Order Completed', userId: u, messageId: `fo-${i}`, properties: { order_id: `fo-${i}`, revenue: '3.00', currency: 'EUR' } })),
  ]);
  await page.goto(front.url + '/#/funnels');
  await page.getByRole('button', { name: 'Show the funnel' }).click();
  await page.locator('[data-funnel="answer"] li[data-step="2"]').waitFor();
  const steps = JSON.stringify([{ event: 'Product Viewed' }, { event: 'Order Completed' }]);
  const funnel = await api(`/v1/analytics/funnel?range=30d&window=14d&mode=sequential&count_by=person&steps=${encodeURIComponent(steps)}`);
  for (const [i, s] of funnel.steps.entries()) {
    assert.equal(Number(await page.locator(`[data-funnel="answer"] li[data-step="${i + 1}"]`).getAttribute('data-entered')), s.entered);
  }
  assert.ok(funnel.steps[0].entered >= 3 && funnel.steps[1].entered >= 2, JSON.stringify(funnel.steps));
  await axe(page, 'funnels');

  await page.goto(front.url + '/#/retention');
  const retention = await api('/v1/analytics/retention?range=90d&period=week&periods=12');
  if (retention.cohorts.length > 0) {
    await page.locator('table.cohorts tbody tr').first().waitFor();
    assert.equal(await page.locator('table.cohorts tbody tr').count(), retention.cohorts.length);
  }
  await axe(page, 'retention');

  await page.goto(front.url + '/#/peak-times');
  await page.locator('table.heat tbody tr').first().waitFor();
  assert.equal(await page.locator('table.heat tbody tr').count(), 7);
  await axe(page, 'peak times');
  await page.screenshot({ path: `${artifacts}/peak-times.png`, fullPage: true });

  // SQL: the result, and the CSV the console downloads equals the API's.
  await page.goto(front.url + '/#/sql');
  const query = "SELECT event, count(*) AS n FROM events GROUP BY 1 ORDER BY 1";
  await page.getByLabel(/Query/).fill(query);
  await page.getByRole('button', { name: /^Run/ }).click();
  await page.getByRole('status').filter({ hasText: 'rows' }).waitFor();
  const answer = await api('/v1/sql', { method: 'POST', body: JSON.stringify({ query }) });
  assert.equal(await page.locator('table.results tbody tr').count(), answer.rows.length);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.equal(csv, await api('/v1/sql', { method: 'POST', body: JSON.stringify({ query, format: 'csv' }), raw: true }));
  // Excel: a workbook (a zip) named for the query's result.
  const [xlsx] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download Excel' }).click()]);
  assert.equal(xlsx.suggestedFilename(), 'beacon-query.xlsx');
  assert.equal(readFileSync(await xlsx.path()).subarray(0, 2).toString(), 'PK');
  await axe(page, 'sql');
  await page.screenshot({ path: `${artifacts}/sql.png`, fullPage: true });
  await page.context().close();
});

test('a property filter narrows the numbers, a saved view brings it back, the overview keeps its arranged order', async () => {
  const web = order('filter-web', '31.00');
  web.properties.channel = 'web';
  await ingest([web]);
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  const euro = (text) => new Intl.NumberFormat('en-US', { style: 'currency', currency: 'EUR' }).format(text);
  const gross = (want) => page.waitForFunction((w) => document.querySelector('.tile[data-metric="gross"] .tile-value')?.textContent === w, want);
  await page.goto(front.url + '/#/sales');
  await page.getByRole('heading', { name: 'Sales', exact: true }).waitFor();
  const all = await api('/v1/analytics/revenue?range=30d');
  const filters = JSON.stringify([{ property: 'channel', op: 'eq', value: 'web' }]);
  const onlyWeb = await api(`/v1/analytics/revenue?range=30d&filters=${encodeURIComponent(filters)}`);
  assert.notEqual(onlyWeb.summary.gross, all.summary.gross);
  await gross(euro(all.summary.gross));
  // The filter, added in the bar: the tiles are the API's with the filter.
  await page.getByLabel('Filter by').fill('channel');
  await page.getByLabel('Filter value').fill('web');
  await page.getByRole('button', { name: 'Add filter' }).click();
  await gross(euro(onlyWeb.summary.gross));
  // The page's answer, filtered, as the API's CSV file.
  const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download the sales as CSV' }).click()]);
  const csv = readFileSync(await file.path(), 'utf8');
  const href = await page.getByRole('link', { name: 'Download the sales as CSV' }).getAttribute('href');
  assert.ok(href.includes('filters='), href);
  assert.equal(csv, await api(href, { raw: true }));
  assert.ok(csv.startsWith('bucket,'), csv);
  // Saved as a view, removed, and brought back by opening the view.
  await page.getByLabel('Name', { exact: true }).fill('Web only');
  await page.getByRole('button', { name: 'Save view' }).click();
  await page.locator('.views [role=status]', { hasText: 'Saved' }).waitFor();
  await page.getByRole('button', { name: 'Remove the filter channel is web' }).click();
  await gross(euro(all.summary.gross));
  await page.getByLabel('Saved views').selectOption({ label: 'Web only' });
  await gross(euro(onlyWeb.summary.gross));
  await page.locator('.chip[data-filter="channel"]').waitFor();
  await axe(page, 'sales with a filter and a saved view');

  // The overview, arranged: the activity feed moved up stays there after a reload.
  const widgets = () => page.locator('[data-widget]').evaluateAll((els) => els.map((e) => e.dataset.widget));
  await page.goto(front.url + '/#/overview');
  await page.getByRole('button', { name: 'Arrange' }).click();
  await page.getByRole('button', { name: 'Move Live activity up' }).click();
  // The move re-renders after the click returns.
  await page.locator('[data-widget="activity"] + [data-widget="products"]').waitFor();
  assert.deepEqual(await widgets(), ['tiles', 'revenue', 'activity', 'products']);
  await axe(page, 'the overview being arranged');
  await page.getByRole('button', { name: 'Done' }).click();
  await page.reload();
  await page.locator('[data-widget="activity"] + [data-widget="products"]').waitFor();
  assert.deepEqual(await widgets(), ['tiles', 'revenue', 'activity', 'products']);
  await page.getByRole('button', { name: 'Arrange' }).click();
  await page.getByRole('button', { name: 'Reset layout' }).click();
  await page.locator('[data-widget="products"] + [data-widget="activity"]').waitFor();
  await page.context().close();
});

test('a notification raises the inbox badge live; marking it read lowers it', async () => {
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  await page.locator('.live[data-status="live"]').waitFor();
  const badge = page.locator('.inbox-link .badge');
  const before = await unreadCount(page);
  const response = await fetch(`${target.origin}/v1/notifications`, {
    method: 'POST',
    headers: { authorization: `Bearer ${process.env.BEACON_ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ recipients: [ownerEmail], category: 'ops', title: 'Low stock: espresso beans', body: '3 bags left', channels: ['inbox'] }),
  });
  const sent = await response.text();
  assert.ok(response.ok, sent);
  const { id } = JSON.parse(sent);
  await page.locator(`.inbox-link .badge[data-unread="${before + 1}"]`).waitFor();
  await page.getByRole('link', { name: /Inbox/ }).click();
  await page.getByRole('heading', { name: 'Inbox' }).waitFor();
  const item = page.locator(`ul.inbox li[data-id="${id}"]`);
  await item.getByText('Low stock: espresso beans').waitFor();
  // The user's own notification settings, saved on the server.
  await page.getByText('Your notification settings').click();
  await page.getByLabel('Email me').uncheck();
  await page.getByLabel('Emails').selectOption('daily');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.locator('.prefs [role=status]', { hasText: 'Saved.' }).waitFor();
  const user = await call('GET', `/v1/users/${encodeURIComponent(ownerEmail)}`, adminKey);
  assert.equal(user.body.preferences.channels.email, false, JSON.stringify(user.body));
  assert.equal(user.body.preferences.digest, 'daily');
  await axe(page, 'the inbox');
  await item.getByRole('button', { name: 'Mark read' }).click();
  await item.getByRole('button', { name: 'Mark unread' }).waitFor();
  if (before === 0) await badge.waitFor({ state: 'detached' });
  else await page.locator(`.inbox-link .badge[data-unread="${before}"]`).waitFor();
  await page.context().close();
});

test('a rule made in the editor is simulated, saved, fires on new data and raises the inbox badge', async () => {
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  await page.locator('.live[data-status="live"]').waitFor();
  const badge = page.locator('.inbox-link .badge');
  const before = await unreadCount(page);
  await page.getByRole('link', { name: 'Alerts' }).click();
  await page.getByRole('heading', { name: 'Alerts', exact: true }).waitFor();
  await page.getByLabel('Name').fill('Payment failures (web)');
  await page.getByLabel('Metric').selectOption('payment_failures');
  await page.getByLabel('Value').fill('0');
  await page.getByLabel('Check every').fill('1s');
  await page.getByRole('button', { name: 'Simulate over the last 3 days' }).click();
  // 3 days at one evaluation an hour; no failures yet, so it never fired.
  await page.locator('.simulation[data-firing="0"]').waitFor();
  assert.match(await page.locator('.simulation [role=status]').innerText(), /73 evaluations/);
  await page.locator('.simulation .chart canvas').waitFor();
  await axe(page, 'the alerts page');
  await page.getByRole('button', { name: 'Save rule' }).click();
  await page.locator('table.rules tr', { hasText: 'Payment failures (web)' }).waitFor();
  // A failed payment makes it fire: the history shows it, the badge rises.
  await ingest([{ type: 'track', event: 'Payment Failed', userId: 'cust-pf', messageId: 'web-pf-1', properties: { order_id: 'o-pf' } }]);
  await page.locator('table.history tr', { hasText: 'Firing' }).first().waitFor();
  await page.locator(`.inbox-link .badge[data-unread="${before + 1}"]`).waitFor();
  await page.screenshot({ path: `${artifacts}/alerts.png`, fullPage: true });
  await page.getByRole('link', { name: /Inbox/ }).click();
  const item = page.locator('ul.inbox li', { hasText: 'Payment failures (web)' }).first();
  await item.waitFor();
  await item.getByRole('button', { name: 'Mark read' }).click();
  if (before === 0) await badge.waitFor({ state: 'detached' });
  else await page.locator(`.inbox-link .badge[data-unread="${before}"]`).waitFor();
  await page.context().close();
});

test('an owner changes settings: the workspace, a key shown once, a TV link', async () => {
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  await page.locator('table.people tr').nth(1).waitFor();
  await axe(page, 'the settings page');
  // The workspace's name, saved and shown in the header.
  await page.getByLabel('Name', { exact: true }).first().fill('Web test shop');
  await page.getByRole('button', { name: 'Save workspace' }).click();
  await page.locator('.top .workspace', { hasText: 'Web test shop' }).waitFor();
  // A read key: its secret shown once, then listed by prefix.
  await page.getByLabel('Label').fill('from the browser');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = await page.locator('[data-secret]').first().innerText();
  const check = await call('GET', '/v1/analytics/revenue?range=today', secret);
  assert.equal(check.status, 200, JSON.stringify(check.body));
  await page.locator('table.keys tr', { hasText: 'from the browser' }).waitFor();
  // A TV link that works.
  await page.getByRole('button', { name: 'Make a TV link' }).click();
  const link = await page.locator('.secret', { hasText: 'TV link' }).locator('[data-secret]').innerText();
  assert.match(link, /#\/tv\?token=be_/);
  const tv = await newPage();
  await tv.goto(link.replace(/^https?:\/\/[^/]+/, front.url));
  await tv.getByRole('heading', { name: 'Overview' }).waitFor();
  await tv.context().close();
  await page.screenshot({ path: `${artifacts}/settings.png`, fullPage: true });
  await page.context().close();
});

test('a signed-out browser goes to the sign-in page; a viewer has no SQL console and no Settings', async () => {
  const page = await newPage();
  await signIn(page, viewerEmail, viewerPassword);
  const nav = await page.getByRole('navigation', { name: 'Pages' }).innerText();
  assert.ok(nav.includes('Sales') && !nav.includes('SQL') && !nav.includes('Settings'), nav);
  await page.goto(front.url + '/#/sql');
  await page.getByRole('heading', { name: 'Not available' }).waitFor();
  await page.goto(front.url + '/#/settings');
  await page.getByRole('heading', { name: 'Not available' }).waitFor();
  // And the server refuses what the page would call.
  const keys = await page.evaluate(async () => (await fetch('/v1/workspace/keys')).status);
  assert.equal(keys, 403);
  expectRefusals(403);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Beacon' }).waitFor();
  // The session cookie is gone: a reload stays on the sign-in page.
  await page.reload();
  await page.getByRole('heading', { name: 'Sign in to Beacon' }).waitFor();
  await page.context().close();
});

/** Calls Beacon's API directly with a key or token. */
async function call(method, path, credential, body) {
  const response = await fetch(`${target.origin}${path}`, {
    method,
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Forgets the console lines of responses a test provoked on purpose. */
function expectRefusals(status) {
  for (let i = problems.length - 1; i >= 0; i--) {
    if (problems[i].includes(`status of ${status}`)) problems.splice(i, 1);
  }
}

test('a TV link shows the overview live without signing in, survives a reload and stops when revoked', async () => {
  const minted = await call('POST', '/v1/embed/tokens', adminKey, { name: 'Shop TV', expires_in: '30days' });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  const page = await newPage({ width: 1920, height: 1080 });
  await page.goto(`${front.url}/#/tv?token=${minted.body.token}`);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  assert.equal(await page.evaluate(() => location.hash), '#/tv', 'the token leaves the address bar');
  await page.locator('.live[data-status="live"]').waitFor();
  await page.waitForFunction(() => !document.querySelector('.tile[data-metric="revenue"] .tile-value').textContent.includes('…'));
  const before = await tile(page, 'revenue').innerText();
  await ingest([order('tv-1', '7.25')]);
  await page.waitForFunction((b) => document.querySelector('.tile[data-metric="revenue"] .tile-value').textContent !== b, before);
  await page.locator('.feed li[data-message-id="web-tv-1"]').waitFor();
  // No session ever: clearing cookies and reloading stays on the screen.
  await page.context().clearCookies();
  await page.reload();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.locator('.live[data-status="live"]').waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Sign in to Beacon' }).count(), 0);
  await axe(page, 'TV mode');
  await page.screenshot({ path: `${artifacts}/tv.png` });
  // Revoked: the screen says so (and never asks to sign in).
  const revoked = await call('DELETE', `/v1/embed/tokens/${minted.body.id}`, adminKey);
  assert.equal(revoked.status, 204);
  await page.reload();
  await page.getByRole('heading', { name: 'This TV link does not work' }).waitFor();
  expectRefusals(401);
  await page.context().close();
});

test('an embedded portal shows a customer only their own numbers, live; a tampered token is refused', async () => {
  await ingest([
    { ...order('portal-a1', '40.00'), userId: 'portal-a' },
    { ...order('portal-a2', '2.50'), userId: 'portal-a' },
    { ...order('portal-b1', '900.00'), userId: 'portal-b' },
  ]);
  // The example portal's backend (examples/portal/serve.mjs), on an
  // origin of its own, minting a token per page view.
  const portal = spawn(process.execPath, [new URL('../../../../examples/portal/serve.mjs', import.meta.url).pathname], {
    env: { ...process.env, BEACON_URL: front.url, BEACON_ADMIN_KEY: adminKey, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const portalUrl = await new Promise((resolve, reject) => {
      portal.stdout.once('data', (d) => resolve(String(d).trim()));
      portal.once('exit', (code) => reject(new Error(`the portal exited with ${code}`)));
    });
    const page = await newPage();
    await page.goto(`${portalUrl}/?customer=portal-a`);
    await page.locator('beacon-kpi#spend[data-state="live"]').waitFor();
    // What Beacon answers for this customer, and for the workspace.
    const token = await page.locator('meta[name="beacon-token"]').getAttribute('content');
    const own = await call('GET', '/v1/analytics/revenue?range=today', token);
    const whole = await call('GET', '/v1/analytics/revenue?range=today', adminKey);
    assert.equal(own.body.summary.gross, '42.5000');
    assert.notEqual(whole.body.summary.gross, own.body.summary.gross);
    assert.equal(await page.locator('beacon-kpi#spend').getAttribute('data-value'), '42.5000');
    assert.match(await page.locator('beacon-kpi#spend [part=value]').innerText(), /42\.50/);
    // The chart's last bar is today's: the same amount.
    await page.locator('beacon-chart#chart[data-state="live"]').waitFor();
    assert.equal(await page.locator('beacon-chart#chart rect[part=bar]').last().getAttribute('data-value'), '42.5000');
    // Live: the customer's next order moves the tile and enters the feed;
    // another customer's never shows.
    await ingest([{ ...order('portal-b2', '500.00'), userId: 'portal-b' }, { ...order('portal-a3', '10.00'), userId: 'portal-a' }]);
    await page.locator('beacon-activity#feed li[data-id="web-portal-a3"]').waitFor();
    await page.locator('beacon-kpi#spend[data-value="52.5000"]').waitFor();
    assert.equal(await page.locator('beacon-activity#feed li[data-id^="web-portal-b"]').count(), 0);
    await axe(page, 'the example portal');
    await page.screenshot({ path: `${artifacts}/portal.png`, fullPage: true });
    // The other customer's id swapped into the token: refused, said in place.
    await page.evaluate((t) => {
      const [payload, sig] = t.slice(3).split('.');
      const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/')));
      claims.c = 'portal-b';
      const forged = btoa(JSON.stringify(claims)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      const kpi = document.createElement('beacon-kpi');
      kpi.id = 'forged';
      kpi.setAttribute('token', `be_${forged}.${sig}`);
      document.querySelector('main').append(kpi);
    }, token);
    await page.locator('beacon-kpi#forged[data-state="error"]').waitFor();
    assert.match(await page.locator('beacon-kpi#forged [part=error]').innerText(), /invalid embed token/);
    expectRefusals(401);
    await page.context().close();
  } finally {
    portal.kill();
  }
});

test('a report made from a template is previewed, run and downloaded as a PDF; a saved query opens in the console', async () => {
  const page = await newPage();
  await signIn(page, ownerEmail, ownerPassword);
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Reports' }).click();
  await page.getByRole('heading', { name: 'Reports', exact: true, level: 1 }).waitFor();
  await page.getByLabel('Template').selectOption('weekly_sales');
  await page.getByLabel('Range').selectOption('last_30_days');
  await page.getByLabel('Format').selectOption('pdf');
  await page.getByRole('button', { name: 'Preview' }).click();
  // The preview's key numbers are the revenue API's for the same range.
  const preview = page.locator('[data-report="preview"]');
  await preview.waitFor();
  const heading = await preview.locator('h3').innerText();
  const [, from, to] = heading.match(/(\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})/);
  const revenue = await api('/v1/analytics/revenue', { method: 'POST', body: JSON.stringify({ from, to }) });
  const euro = (text) => new Intl.NumberFormat('en-US', { style: 'currency', currency: 'EUR' }).format(text);
  await preview.locator('td', { hasText: euro(revenue.summary.gross) }).first().waitFor();
  await axe(page, 'reports with a preview');
  await page.getByRole('button', { name: 'Create report' }).click();
  const report = page.locator('article.report').first();
  await report.waitFor();
  await report.getByRole('button', { name: 'Run now' }).click();
  await report.locator('tr[data-outcome="ok"]').first().waitFor();
  const [pdf] = await Promise.all([page.waitForEvent('download'), report.getByRole('link', { name: 'Download PDF' }).first().click()]);
  assert.equal(readFileSync(await pdf.path()).subarray(0, 5).toString(), '%PDF-');
  // Edited: a new title and a block fewer, saved with PUT.
  await report.getByRole('button', { name: 'Edit' }).click();
  await page.getByRole('heading', { name: 'Edit Weekly sales summary' }).waitFor();
  await page.getByLabel('Title').fill('Weekly sales, short');
  await page.locator('details').locator('summary').click();
  const blocks = JSON.parse(await page.getByLabel('Blocks').inputValue());
  await page.getByLabel('Blocks').fill(JSON.stringify(blocks.slice(0, 2)));
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.getByRole('heading', { name: 'Weekly sales, short' }).waitFor();
  const saved = await api('/v1/reports');
  assert.equal(saved.reports.find((r) => r.definition.title === 'Weekly sales, short').definition.blocks.length, 2);
  await axe(page, 'reports');
  await page.screenshot({ path: `${artifacts}/reports.png`, fullPage: true });

  // The SQL console saves a query for the team and opens it again.
  await page.goto(front.url + '/#/sql');
  const query = 'SELECT count(*) AS orders FROM orders';
  await page.getByLabel(/Query/).fill(query);
  await page.getByLabel('Name').fill('Order count');
  await page.getByRole('button', { name: 'Save query' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved as' }).waitFor();
  await page.getByLabel(/Query/).fill('SELECT 1');
  await page.getByLabel('Saved queries').selectOption({ label: 'Order count' });
  assert.equal(await page.getByLabel(/Query/).inputValue(), query);
  await page.context().close();
});

test('no console errors on any page', () => {
  assert.deepEqual(problems, []);
});
