// An example client portal's backend: it shows each signed-in client
// their own numbers from Beacon, with the components of /embed/beacon.js.
//
// For every page view it mints an embed token for that client
// (POST /v1/embed/tokens with the workspace's admin key, which never
// leaves this server) and renders index.html with it. The token expires
// in an hour; Beacon answers with that client's rows only.
//
//   BEACON_URL=http://127.0.0.1:7400 BEACON_ADMIN_KEY=bk_... node serve.mjs
//   open http://127.0.0.1:<port>/?customer=cus_42
//
// A real portal takes the customer from its own sign-in; this example
// takes it from the address to stay short. PORT picks the port (default:
// any free one); the first line printed is the address.
import { readFileSync } from 'node:fs';
import http from 'node:http';

const beacon = (process.env.BEACON_URL || 'http://127.0.0.1:7400').replace(/\/$/, '');
const adminKey = process.env.BEACON_ADMIN_KEY;
if (!adminKey) {
  console.error('set BEACON_ADMIN_KEY to an admin key of the workspace');
  process.exit(2);
}
const page = readFileSync(new URL('./index.html', import.meta.url), 'utf8');

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function mint(customer) {
  const response = await fetch(`${beacon}/v1/embed/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Example portal', customer, expires_in: '1h' }),
  });
  const body = await response.json();
  if (response.status !== 201) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body.token;
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://portal');
  if (url.pathname !== '/') {
    res.writeHead(404).end('not found');
    return;
  }
  const customer = url.searchParams.get('customer');
  if (!customer) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('give ?customer=<user id>');
    return;
  }
  try {
    const token = await mint(customer);
    const html = page
      .replaceAll('{{server}}', escape(beacon))
      .replaceAll('{{token}}', escape(token))
      .replaceAll('{{customer}}', escape(customer));
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
  } catch (e) {
    res.writeHead(502, { 'content-type': 'text/plain' }).end(`Beacon refused the token: ${e.message}`);
  }
});

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
