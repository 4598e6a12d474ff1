// Beacon's JavaScript client: the real-time hub's WebSocket protocol
// (docs/realtime.md) and the analytics API, as one dependency-free ES
// module. The web app and the embeddable components are built on it; a
// portal can import it on its own (types in client.d.ts).
//
//   import { BeaconClient } from '/assets/<build>/lib/client.js';
//   const beacon = new BeaconClient({ base: 'https://beacon.example', token });
//   const off = beacon.subscribe('metrics', { onSnapshot: render, onMessage: (m) => render(m.payload) });
//   beacon.onStatus((s) => badge.textContent = s); // connecting | live | reconnecting | closed
//
// Resume: the client remembers the epoch and sequence number of the last
// message of each ordered channel and, after a reconnect, subscribes with
// `resume`, so it gets exactly the messages it missed, once. A message it
// has already seen (same epoch, sequence not after the last) is dropped.
// When the server cannot resume (`history_lost`), `onHistoryLost` is
// called and the snapshot that follows carries the recent messages.

/** Channels whose messages replace each other (the latest value is all). */
export function coalesces(channel) {
  return channel === 'metrics' || channel.startsWith('query:');
}

/**
 * Where one subscription stands: what it has seen, what to resume from.
 * Pure (no socket): the resume logic the unit tests drive.
 */
export class ChannelPosition {
  constructor(channel) {
    this.channel = channel;
    this.epoch = null;
    this.seq = null;
  }

  /**
   * Takes a server message of this channel; answers what to do with it:
   * 'deliver', 'duplicate' (drop it), 'snapshot', 'history_lost',
   * 'lagged' or 'control'.
   */
  accept(msg) {
    switch (msg.type) {
      case 'subscribed':
        if (this.epoch !== null && msg.epoch !== this.epoch) {
          // A new epoch (the server restarted): positions start over.
          this.epoch = msg.epoch;
          this.seq = null;
        }
        return 'control';
      case 'snapshot':
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        return 'snapshot';
      case 'history_lost':
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        return 'history_lost';
      case 'lagged':
        return 'lagged';
      case 'unsubscribed':
      case 'error':
        return 'control';
      default:
        if (typeof msg.seq !== 'number') return 'deliver';
        if (msg.epoch === this.epoch && this.seq !== null && msg.seq <= this.seq) {
          return 'duplicate';
        }
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        return 'deliver';
    }
  }

  /** The `subscribe` message to send (again, after a reconnect). */
  subscribeMessage(options = {}) {
    const msg = { type: 'subscribe', channel: this.channel, ...options };
    if (!coalesces(this.channel) && this.epoch !== null && this.seq !== null) {
      msg.resume = { epoch: this.epoch, seq: this.seq };
    }
    return msg;
  }
}

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter. */
export function backoff(attempt, { initial = 500, max = 15000, random = Math.random } = {}) {
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 16));
  return Math.round(base / 2 + random() * (base / 2));
}

/** An HTTP error of the API, with Beacon's `{"error": {code, message}}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'http_error';
    this.body = body;
  }
}

export class BeaconClient {
  /**
   * @param {object} options
   * @param {string} [options.base] the server's origin (default: this page's)
   * @param {string} [options.key] an API key (read scope)
   * @param {string} [options.token] an embed or user token
   * @param {string} [options.csrf] the session's CSRF token (signed-in pages)
   * @param {Function} [options.WebSocket] a WebSocket class (tests, node)
   * @param {Function} [options.fetch] a fetch function (tests, node)
   * @param {object} [options.backoff] `{initial, max}` reconnect delays, ms
   * @param {Function} [options.setTimeout] a timer (tests)
   */
  constructor(options = {}) {
    const here = typeof location !== 'undefined' ? location.origin : 'http://127.0.0.1:7400';
    this.base = (options.base || here).replace(/\/$/, '');
    this.key = options.key || null;
    this.token = options.token || null;
    this.csrf = options.csrf || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.fetch = options.fetch || globalThis.fetch.bind(globalThis);
    this.backoffOptions = options.backoff || {};
    this.setTimeout = options.setTimeout || globalThis.setTimeout.bind(globalThis);
    this.subscriptions = new Map();
    this.statusListeners = new Set();
    this.status = 'closed';
    this.socket = null;
    this.attempt = 0;
    this.closed = false;
    this.timer = null;
  }

  /** The hub's URL. */
  wsUrl() {
    return this.base.replace(/^http/, 'ws') + '/v1/ws';
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }

  /** Calls `listener(status)` on every change; returns a function that stops it. */
  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  /**
   * Subscribes to a channel. Handlers: `onMessage(msg)` for each live
   * message, `onSnapshot(payload, msg)`, `onHistoryLost(msg)`,
   * `onSubscribed(msg)` (each time the server confirms, also after a
   * reconnect), `onError(msg)`. `options` go into the subscribe message (`events`,
   * `sql`). Returns a function that unsubscribes.
   */
  subscribe(channel, handlers = {}, options = {}) {
    // Several parts of a page may watch one channel (a badge and a list):
    // one subscription, every listener called. A new listener of a
    // channel already subscribed gets its latest snapshot at once.
    let sub = this.subscriptions.get(channel);
    if (!sub) {
      sub = { position: new ChannelPosition(channel), listeners: new Set(), options, snapshot: null };
      this.subscriptions.set(channel, sub);
      if (this.status === 'live') this.send(sub.position.subscribeMessage(options));
      else this.connect();
    } else if (sub.snapshot && handlers.onSnapshot) {
      handlers.onSnapshot(sub.snapshot.payload, sub.snapshot);
    }
    sub.listeners.add(handlers);
    return () => {
      sub.listeners.delete(handlers);
      if (sub.listeners.size > 0 || this.subscriptions.get(channel) !== sub) return;
      this.subscriptions.delete(channel);
      if (this.status === 'live') this.send({ type: 'unsubscribe', channel });
      if (this.subscriptions.size === 0) this.close();
    };
  }

  send(msg) {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(msg));
  }

  connect() {
    if (this.socket || this.timer !== null) return;
    this.closed = false;
    this.setStatus(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const socket = new this.WebSocket(this.wsUrl());
    this.socket = socket;
    socket.onopen = () => {
      if (this.key || this.token) {
        const auth = { type: 'auth' };
        if (this.key) auth.key = this.key;
        else auth.token = this.token;
        socket.send(JSON.stringify(auth));
      }
    };
    socket.onmessage = (event) => this.handle(JSON.parse(event.data));
    socket.onclose = (event) => this.lost(event);
    socket.onerror = () => {};
  }

  /** Handles one server message. */
  handle(msg) {
    if (msg.type === 'welcome') {
      this.attempt = 0;
      this.setStatus('live');
      for (const sub of this.subscriptions.values()) {
        this.send(sub.position.subscribeMessage(sub.options));
      }
      return;
    }
    if (!msg.channel) return;
    const sub = this.subscriptions.get(msg.channel);
    if (!sub) return;
    const call = (name, ...args) => {
      for (const h of sub.listeners) if (h[name]) h[name](...args);
    };
    switch (sub.position.accept(msg)) {
      case 'deliver':
        // A coalescing channel's update is its new state.
        if (coalesces(msg.channel)) sub.snapshot = msg;
        call('onMessage', msg);
        break;
      case 'snapshot':
        sub.snapshot = msg;
        call('onSnapshot', msg.payload, msg);
        break;
      case 'history_lost':
        call('onHistoryLost', msg);
        break;
      case 'lagged':
        // The subscription ended after msg.seq: continue from where we are.
        this.send(sub.position.subscribeMessage(sub.options));
        break;
      default:
        if (msg.type === 'error') call('onError', msg);
        if (msg.type === 'subscribed') call('onSubscribed', msg);
    }
  }

  lost(event) {
    this.socket = null;
    if (this.closed) {
      this.setStatus('closed');
      return;
    }
    // 4001/4003: the credentials are refused; 4004: the workspace is gone.
    if (event && [4001, 4003, 4004].includes(event.code)) {
      this.closed = true;
      this.setStatus('closed');
      if (this.onRefused) this.onRefused(event.code, event.reason);
      return;
    }
    this.setStatus('reconnecting');
    const delay = backoff(this.attempt++, this.backoffOptions);
    this.timer = this.setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Drops the connection (as a network failure would: it reconnects). */
  drop() {
    if (this.socket) this.socket.close();
  }

  /** Closes for good. */
  close() {
    this.closed = true;
    if (this.socket) this.socket.close();
    else this.setStatus('closed');
  }

  headers(extra = {}) {
    const headers = { ...extra };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    else if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (this.csrf) headers['x-csrf-token'] = this.csrf;
    return headers;
  }

  /** Calls the HTTP API; answers the parsed JSON or throws an ApiError. */
  async request(method, path, body) {
    const init = { method, headers: this.headers(), credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await this.fetch(this.base + path, init);
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body) {
    return this.request('POST', path, body);
  }

  /** `POST /v1/analytics/{endpoint}` with a request body (docs/analytics.md). */
  analytics(endpoint, body = {}) {
    return this.post(`/v1/analytics/${encodeURIComponent(endpoint)}`, body);
  }

  /** `POST /v1/sql`: `{columns, rows}`. */
  sql(query) {
    return this.post('/v1/sql', { query });
  }
}
