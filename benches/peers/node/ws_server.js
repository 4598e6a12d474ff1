// The Node `ws` peer of the WebSocket suite (benches/src/bin/ws_bench.rs):
// a broadcast server doing the hub's work in the plainest way: clients
// subscribe to channels over a WebSocket; POST /publish?channel=C with a
// JSON array of payloads numbers each message per channel, keeps the last
// 1024 in a history (as Beacon does for resume), serializes it once and
// sends it to every subscriber of C, corking each socket so that one
// publish is one write per subscriber (--plain: one write per message).
// Prints "listening <port>".
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const plain = process.argv.includes('--plain');
const channels = new Map(); // name -> {seq, history, clients:Set}
const epoch = Math.random().toString(16).slice(2, 14);
function channel(name) {
  let c = channels.get(name);
  if (!c) { c = { seq: 0, history: [], clients: new Set() }; channels.set(name, c); }
  return c;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method !== 'POST' || url.pathname !== '/publish') { res.statusCode = 404; res.end(); return; }
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    let payloads;
    try { payloads = JSON.parse(Buffer.concat(chunks).toString()); } catch (e) { res.statusCode = 400; res.end(); return; }
    const c = channel(url.searchParams.get('channel') || 'activity');
    const texts = [];
    for (const payload of payloads) {
      c.seq += 1;
      const text = JSON.stringify({ channel: url.searchParams.get('channel') || 'activity', type: 'event', epoch, seq: c.seq, payload });
      c.history.push(text);
      if (c.history.length > 1024) c.history.shift();
      texts.push(text);
    }
    // One socket write per client per publish, as Beacon does per batch:
    // cork the socket, queue every frame, uncork (one writev). With
    // --plain: one ws.send (one write) per message, ws's default.
    for (const ws of c.clients) {
      if (!plain) ws._socket.cork();
      for (const text of texts) ws.send(text);
      if (!plain) ws._socket.uncork();
    }
    res.setHeader('content-type', 'application/json');
    res.end('{"accepted":' + payloads.length + '}');
  });
});

const wss = new WebSocketServer({ server, path: '/v1/ws', maxPayload: 65536 });
wss.on('connection', (ws) => {
  const subs = new Set();
  ws.send(JSON.stringify({ type: 'welcome' }));
  ws.on('message', (data) => {
    let m;
    try { m = JSON.parse(data.toString()); } catch (e) { ws.send('{"type":"error","code":"invalid_message"}'); return; }
    if (m.type === 'subscribe' && typeof m.channel === 'string') {
      const c = channel(m.channel);
      c.clients.add(ws); subs.add(c);
      ws.send(JSON.stringify({ type: 'subscribed', channel: m.channel, epoch, seq: c.seq }));
    } else if (m.type === 'ping') {
      ws.send(JSON.stringify({ type: 'pong', id: m.id }));
    }
  });
  ws.on('close', () => { for (const c of subs) c.clients.delete(ws); });
});

server.listen(0, '127.0.0.1', () => { console.log('listening ' + server.address().port); });
