// Types of client.js, Beacon's JavaScript client (docs/web.md).

export type Status = 'connecting' | 'live' | 'reconnecting' | 'closed';

/** A message of a channel (docs/realtime.md, "Messages"). */
export interface ChannelMessage<P = unknown> {
  channel: string;
  type: string;
  epoch: string;
  seq: number;
  payload: P;
}

export interface Handlers<P = unknown> {
  /** Each live message, once, in order. */
  onMessage?(msg: ChannelMessage<P>): void;
  /** The current state (`metrics`, `query:`), or the recent messages after `history_lost`. */
  onSnapshot?(payload: any, msg: ChannelMessage): void;
  /** The resume position was no longer available; a snapshot follows. */
  onHistoryLost?(msg: { channel: string; epoch: string; seq: number; reason: string }): void;
  /** The server confirmed the subscription (also after each reconnect). */
  onSubscribed?(msg: { channel: string; epoch: string; seq: number }): void;
  /** A refused subscription or bad message. */
  onError?(msg: { code: string; message: string; channel?: string }): void;
}

export interface ClientOptions {
  /** The server's origin; default: the page's. */
  base?: string;
  /** An API key with the `realtime` or `query` scope. */
  key?: string;
  /** An embed or user token. */
  token?: string;
  /** The session's CSRF token (pages of a signed-in user). */
  csrf?: string;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  backoff?: { initial?: number; max?: number };
  setTimeout?: (f: () => void, ms: number) => unknown;
}

export declare class ApiError extends Error {
  status: number;
  code: string;
  body: unknown;
}

export declare class ChannelPosition {
  constructor(channel: string);
  epoch: string | null;
  seq: number | null;
  accept(msg: { type: string; epoch?: string; seq?: number }): 'deliver' | 'duplicate' | 'snapshot' | 'history_lost' | 'lagged' | 'control';
  subscribeMessage(options?: Record<string, unknown>): Record<string, unknown>;
}

export declare function coalesces(channel: string): boolean;
export declare function backoff(attempt: number, options?: { initial?: number; max?: number; random?: () => number }): number;

export declare class BeaconClient {
  constructor(options?: ClientOptions);
  readonly status: Status;
  /** Called with the close code when the server refuses the credentials (4001, 4003) or the workspace is gone (4004). */
  onRefused?: (code: number, reason: string) => void;
  onStatus(listener: (status: Status) => void): () => void;
  /** Subscribes; options go into the subscribe message (`events`, `sql`). Returns an unsubscribe function. */
  subscribe<P = unknown>(channel: string, handlers?: Handlers<P>, options?: Record<string, unknown>): () => void;
  /** Drops the connection as a network failure would (it reconnects and resumes). */
  drop(): void;
  close(): void;
  request<T = any>(method: string, path: string, body?: unknown): Promise<T>;
  get<T = any>(path: string): Promise<T>;
  post<T = any>(path: string, body?: unknown): Promise<T>;
  analytics<T = any>(endpoint: string, body?: Record<string, unknown>): Promise<T>;
  sql(query: string): Promise<{ columns: unknown[]; rows: unknown[][]; truncated: boolean }>;
}
