import type { Readable } from 'node:stream'
import type { Channel, ChannelFilter } from './channel'
import type { SseStore } from './store'

/** One server-sent event: at least one of these fields, and no other (an object with none, or another, is refused). */
export interface SseEvent {
  /**
   * The event's data. A string is written as it is, one `data:` line per line of text;
   * a Buffer or Uint8Array is written base64-encoded; any other value goes through the serializer.
   * `undefined` writes no `data:` line (the client then dispatches no event).
   */
  data?: unknown
  /** The event id: the client sends it back as `Last-Event-ID` when it reconnects. `0` and `''` are sent. */
  id?: string | number
  /** The event type: the client's `addEventListener(type)` receives it. Default on the client: `message`. */
  event?: string
  /** Milliseconds the client waits before reconnecting, from now on. */
  retry?: number
  /** A comment line (`: text`): clients ignore it; proxies see traffic. */
  comment?: string
}

/** An event, or a plain string that is sent as the data of a `message` event. */
export type SseMessage = SseEvent | string

/** Turns a value that is not a string into the text of `data:` lines. */
export type SseSerializer = (data: unknown) => string

/** What a function source is given. */
export interface SseSourceContext {
  /** Aborted when the stream ends: the client went away, the server closes, or the stream was closed. */
  signal: AbortSignal
  /** The id the client last received (`Last-Event-ID`, or the query fallback), or `undefined`. */
  lastEventId: string | undefined
}

/**
 * What `reply.sse()` can stream: events pulled one at a time, with backpressure. A string is iterable
 * but is not a source (one character per event is never what was meant): `& object` keeps it out.
 */
export type SseIterableSource = AsyncIterable<SseMessage> | (Iterable<SseMessage> & object) | Readable

/**
 * A source, a function that makes one from the stream's signal and the client's last event id, or a channel
 * to subscribe to.
 */
export type SseSource = SseIterableSource | ((context: SseSourceContext) => SseIterableSource) | Channel

/** Options of one `reply.sse()` call; they override the plugin's. */
export interface SseReplyOptions {
  /** Serializer for this stream's data. Default: the plugin's `serializer`. */
  serializer?: SseSerializer
  /** `retry:` sent when this stream opens. Default: the plugin's `retry`. */
  retry?: number
  /**
   * With a channel only: which of its events this subscriber receives (one user's, one tenant's). Given each
   * event as it was published, with its id. Subscribers without a filter cost the fan-out nothing extra.
   */
  filter?: ChannelFilter
  /** Compression of this stream. Default: the plugin's `compression`. */
  compression?: boolean | readonly SseEncoding[]
}

/** Options of the plugin, given to `app.register(sse, options)`. */
export interface FastifySseOptions {
  /**
   * Milliseconds a stream may stay silent before a comment line (`:`) is written to keep proxies and
   * idle timeouts from cutting it. One timer serves every stream. `0` turns heartbeats off.
   * @default 15000
   */
  heartbeatInterval?: number
  /**
   * Milliseconds the client should wait before reconnecting, sent as `retry:` when a stream opens.
   * Unset: nothing is sent and the browser uses its own default (about 3 s).
   * @default undefined
   */
  retry?: number
  /**
   * Turns `data` that is not a string, Buffer or Uint8Array into text.
   * @default JSON.stringify
   */
  serializer?: SseSerializer
  /**
   * Name of the query parameter read as the last event id when no `Last-Event-ID` header is sent
   * (a page that reloads cannot send the header). `false` turns the fallback off.
   * @default 'lastEventId'
   */
  lastEventIdQuery?: string | false
  /**
   * Most bytes that may wait for one client. A stream over it is closed and logged as a warning:
   * the client reconnects and resumes from its last event id, and the server's memory stays bounded.
   * Pulled sources never reach it: they are paused while the client is behind.
   * @default 262144 (256 KiB)
   */
  maxBufferedBytes?: number
  /**
   * Milliseconds a stream's writes may wait for a client that takes nothing (a frozen tab, a dead peer
   * whose connection did not close) before the stream is closed and logged as a warning. `0` turns it off.
   * @default 30000
   */
  writeTimeout?: number
  /**
   * Where channels keep their history and ids, and how a publish reaches every process.
   * @default a MemoryStore with historySize and historyMaxAge
   */
  store?: SseStore
  /**
   * Most events each channel keeps for replay after `Last-Event-ID` (default store only).
   * @default 1000
   */
  historySize?: number
  /**
   * Milliseconds an event stays available for replay; `0`: no age limit (default store only).
   * @default 300000 (5 minutes)
   */
  historyMaxAge?: number
  /**
   * The most streams open at once. A stream past them is answered `503` with `Retry-After`, before any
   * SSE header; open streams are untouched.
   * @default no limit
   */
  limits?: SseLimits
  /**
   * Compresses streams for clients that accept it, flushing after each write so that no event waits:
   * `true` offers brotli then gzip, or give the encodings in your order of preference. About 64 KiB of
   * memory per compressed stream, and CPU per stream (a channel's events are compressed per subscriber).
   * @default false
   */
  compression?: boolean | readonly SseEncoding[]
}

/** Content encodings the plugin can compress streams with. */
export type SseEncoding = 'br' | 'gzip'

export interface SseLimits {
  /** The most streams open at once on this app. */
  maxStreams?: number
  /** The most streams open at once from one client address (`request.ip`: set Fastify's `trustProxy` behind a proxy). */
  maxStreamsPerAddress?: number
  /**
   * Seconds a refused client is asked to wait, in the `Retry-After` header.
   * @default 5
   */
  retryAfter?: number
}
