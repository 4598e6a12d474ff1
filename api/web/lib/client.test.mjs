// Unit tests of the client's resume logic: `node --test api/web/lib/`
// (run by api/tests/it/web.rs). A fake hub plays the server's side of
// docs/realtime.md: history per channel, resume, history_lost, lagged.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { BeaconClient, ChannelPosition, backoff } from './client.js';

/** A server holding one ordered channel's history, as the hub does. */
class FakeHub {
  constructor() {
    this.epoch = 'e1';
    this.history = [];
    this.historyLimit = 1000;
    this.sockets = new Set();
    this.subscribes = [];
  }

  publish(payload) {
    const seq = (this.history.at(-1)?.seq ?? 0) + 1;
    const msg = { channel: 'activity', type: 'event', epoch: this.epoch, seq, payload };
    this.history.push(msg);
    this.history = this.history.slice(-this.historyLimit);
    for (const s of this.sockets) if (s.subscribed) s.deliver(msg);
  }

  restart() {
    this.epoch = 'e2';
    this.history = [];
  }
}

function fakeSocketClass(hub) {
  return class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.subscribed = false;
      this.sent = [];
      hub.sockets.add(this);
      queueMicrotask(() => {
        this.readyState = 1;
        this.onopen?.();
        this.deliver({ type: 'welcome', tenant: 'ws_1' });
      });
    }

    deliver(msg) {
      if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(msg) });
    }

    send(text) {
      const msg = JSON.parse(text);
      this.sent.push(msg);
      if (msg.type !== 'subscribe') return;
      hub.subscribes.push(msg);
      const latest = hub.history.at(-1)?.seq ?? 0;
      this.deliver({ type: 'subscribed', channel: msg.channel, epoch: hub.epoch, seq: latest });
      if (msg.resume) {
        const first = hub.history[0]?.seq ?? latest + 1;
        const lost = msg.resume.epoch !== hub.epoch || msg.resume.seq > latest || msg.resume.seq < first - 1;
        if (lost) {
          this.deliver({ type: 'history_lost', channel: msg.channel, epoch: hub.epoch, seq: latest, reason: 'gone' });
          this.deliver({ type: 'snapshot', channel: msg.channel, epoch: hub.epoch, seq: latest, payload: { recent: hub.history.map((m) => m.payload) } });
        } else {
          for (const m of hub.history) if (m.seq > msg.resume.seq) this.deliver(m);
        }
      }
      this.subscribed = true;
    }

    close(code = 1006) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      hub.sockets.delete(this);
      queueMicrotask(() => this.onclose?.({ code }));
    }
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function client(hub) {
  return new BeaconClient({
    base: 'http://127.0.0.1:1',
    key: 'bk_r_test',
    WebSocket: fakeSocketClass(hub),
    fetch: async () => ({ ok: true, text: async () => '{}' }),
    setTimeout: (f) => setTimeout(f, 0),
  });
}

test('a reconnect resumes after the last message: no gap, no duplicate', async () => {
  const hub = new FakeHub();
  const beacon = client(hub);
  const seen = [];
  const statuses = [];
  beacon.onStatus((s) => statuses.push(s));
  beacon.subscribe('activity', { onMessage: (m) => seen.push(m.payload) });
  await tick();
  hub.publish(1);
  hub.publish(2);
  // The connection drops; events keep coming meanwhile.
  for (const s of hub.sockets) s.close();
  hub.publish(3);
  hub.publish(4);
  await tick();
  await tick();
  await tick();
  hub.publish(5);
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.deepEqual(statuses, ['closed', 'connecting', 'live', 'reconnecting', 'live']);
  const resumed = hub.subscribes.at(-1);
  assert.deepEqual(resumed.resume, { epoch: 'e1', seq: 2 });
  assert.equal(beacon.key, 'bk_r_test');
  const auth = [...hub.sockets][0].sent[0];
  assert.deepEqual(auth, { type: 'auth', key: 'bk_r_test' });
});

test('a message seen before is dropped', () => {
  const p = new ChannelPosition('activity');
  const m = (seq, epoch = 'e1') => ({ channel: 'activity', type: 'event', epoch, seq });
  assert.equal(p.accept(m(1)), 'deliver');
  assert.equal(p.accept(m(2)), 'deliver');
  assert.equal(p.accept(m(2)), 'duplicate');
  assert.equal(p.accept(m(1)), 'duplicate');
  assert.equal(p.accept(m(7)), 'deliver', 'a filtered channel has gaps');
  assert.equal(p.accept(m(1, 'e2')), 'deliver', 'a new epoch starts over');
});

test('a position the server no longer has gives history_lost and the snapshot', async () => {
  const hub = new FakeHub();
  hub.historyLimit = 2;
  const beacon = client(hub);
  const seen = [];
  let lost = null;
  let snapshot = null;
  beacon.subscribe('activity', {
    onMessage: (m) => seen.push(m.payload),
    onHistoryLost: (m) => (lost = m),
    onSnapshot: (p) => (snapshot = p),
  });
  await tick();
  hub.publish(1);
  for (const s of hub.sockets) s.close();
  for (const n of [2, 3, 4, 5]) hub.publish(n);
  await tick();
  await tick();
  await tick();
  assert.equal(lost.reason, 'gone');
  assert.deepEqual(snapshot.recent, [4, 5]);
  hub.publish(6);
  assert.deepEqual(seen, [1, 6]);
});

test('after a server restart the client starts over in the new epoch', async () => {
  const hub = new FakeHub();
  const beacon = client(hub);
  const seen = [];
  beacon.subscribe('activity', { onMessage: (m) => seen.push(m.payload), onSnapshot: () => {} });
  await tick();
  hub.publish('a');
  for (const s of hub.sockets) s.close();
  hub.restart();
  await tick();
  await tick();
  await tick();
  hub.publish('b');
  assert.deepEqual(seen, ['a', 'b']);
});

test('metrics and live queries never resume: they start from a snapshot', () => {
  const p = new ChannelPosition('metrics');
  p.accept({ channel: 'metrics', type: 'snapshot', epoch: 'e1', seq: 4, payload: {} });
  assert.equal(p.subscribeMessage().resume, undefined);
  const q = new ChannelPosition('activity');
  q.accept({ channel: 'activity', type: 'event', epoch: 'e1', seq: 9 });
  assert.deepEqual(q.subscribeMessage({ events: ['Order Completed'] }), {
    type: 'subscribe',
    channel: 'activity',
    events: ['Order Completed'],
    resume: { epoch: 'e1', seq: 9 },
  });
});

test('refused credentials stop reconnecting', async () => {
  const hub = new FakeHub();
  const beacon = client(hub);
  let refused = null;
  beacon.onRefused = (code) => (refused = code);
  beacon.subscribe('activity', {});
  await tick();
  for (const s of hub.sockets) s.close(4004);
  await tick();
  await tick();
  assert.equal(refused, 4004);
  assert.equal(beacon.status, 'closed');
  assert.equal(hub.sockets.size, 0);
});

test('two listeners of one channel share one subscription', async () => {
  const hub = new FakeHub();
  const beacon = client(hub);
  const a = [];
  const b = [];
  const offA = beacon.subscribe('activity', { onMessage: (m) => a.push(m.payload) });
  beacon.subscribe('activity', { onMessage: (m) => b.push(m.payload) });
  await tick();
  hub.publish(1);
  offA();
  hub.publish(2);
  assert.deepEqual(a, [1]);
  assert.deepEqual(b, [1, 2]);
  assert.equal(hub.subscribes.length, 1);
  const sent = [...hub.sockets][0].sent.map((m) => m.type);
  assert.ok(!sent.includes('unsubscribe'), 'one listener is left');
});

test('backoff grows, is capped and jittered', () => {
  const fixed = { initial: 100, max: 1000, random: () => 1 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoff(a, fixed)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoff(3, { initial: 100, max: 1000, random: () => 0 }), 400);
});
