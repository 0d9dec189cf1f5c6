import type { Readable } from 'node:stream'
import type { SseMessage, SseSerializer, SseSourceContext } from '../core/events'
import type { SseEncoding } from '../stream/compression'
import type { SseStore } from '../stores/store'
import type { Channel, ChannelFilter } from '../channels/channel'
import type { EventStream } from '../channels/event-stream'

/**
 * The handle `reply.sse()` gives on a route. Where a type provider types the route's replies, it is also `void`
 * to the handler's return type: `return reply.sse(...)` returns nothing for Fastify to serialize (the reply is
 * the stream's), as at run time.
 */
export type RouteEventStream<Message extends SseMessage, ReplyType> = unknown extends ReplyType
  ? EventStream<Message>
  : EventStream<Message> & void

/**
 * What `reply.sse()` can stream: events pulled one at a time, with backpressure. A string is iterable
 * but is not a source (one character per event is never what was meant): `& object` keeps it out.
 */
export type SseIterableSource<Message = SseMessage> = AsyncIterable<Message> | (Iterable<Message> & object) | Readable

/**
 * A source, a function that makes one from the stream's signal and the client's last event id, a channel to
 * subscribe to, or a list of channels: one stream for all of them, resumed by one cursor.
 */
export type SseSource<Message = SseMessage> = SseIterableSource<Message> |
((context: SseSourceContext) => SseIterableSource<Message>) | Channel<never> | readonly SseChannelEntry[]

/** A channel of a stream of several (`reply.sse([...])`): a channel, or one and which of its events the stream gets. */
export type SseChannelEntry = Channel<never> | { channel: Channel<never>, filter?: ChannelFilter }

/** Options of one `reply.sse()` call; they override the route's and the plugin's. */
export interface SseReplyOptions {
  /** Serializer for this stream's data, in place of the route's event schema. Default: the route's, the plugin's. */
  serializer?: SseSerializer
  /** `retry:` sent when this stream opens. Default: the route's `retry`, the plugin's. */
  retry?: number
  /**
   * With a channel only: which of its events this subscriber receives (one user's, one tenant's). Given each
   * event as it was published, with its id. Subscribers without a filter cost the fan-out nothing extra. (A list
   * of channels gives each its own: `{ channel, filter }`.)
   */
  filter?: ChannelFilter
  /** Compression of this stream. Default: the route's `compression`, the plugin's. */
  compression?: boolean | readonly SseEncoding[]
  /**
   * Names this stream answers to (`'user:42'`, `'team:7'`): `app.sse.tagged(tag)` closes it, subscribes it to a channel,
   * or counts it, from any instance that shares the store. At most 64, each a non-empty string.
   */
  tags?: readonly string[]
  /**
   * When the stream ends (a `Date`, or ms since the epoch: a JWT's `exp` times 1000): it is closed then, with a `retry:`
   * so that the client comes back (with fresh credentials), and `signal.reason.code` `FST_SSE_EXPIRED`. Checked at each
   * tick of the heartbeat timer: closed up to a quarter of `heartbeatInterval` after it (or of `writeTimeout`, if
   * smaller), never before.
   */
  expiresAt?: Date | number
}

/**
 * Options of the streams of one route, set in its `config: { sse: { ... } }`, read and checked when the route is
 * added. Each overrides the plugin's option of that name.
 */
export interface SseRouteOptions {
  /** Milliseconds a stream of this route may stay silent before a heartbeat. `0` turns them off. */
  heartbeatInterval?: number
  /** `retry:` sent when a stream of this route opens. */
  retry?: number
  /** Serializer of the data of this route's events (not with an event schema, which serializes them). */
  serializer?: SseSerializer
  /** Compression of this route's streams. */
  compression?: boolean | readonly SseEncoding[]
  /** Most bytes a client of this route may fall behind by before its stream is closed. */
  maxBufferedBytes?: number
  /** Milliseconds writes may wait for a client of this route that takes nothing. `0` turns it off. */
  writeTimeout?: number
  /** Ms after which a stream of this route is closed, so that it reconnects (`FST_SSE_MAX_AGE`). `0`: never. */
  maxStreamAge?: number
  /**
   * The route serves JSON or an event stream, by the request's `Accept`: `request.wantsEventStream` tells the
   * handler which, and a request that accepts neither is answered 406 before the handler runs.
   * @default false
   */
  negotiate?: boolean
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
   * Most bytes that may wait for one client, of what it was given before the last two turns of the event loop
   * (what was just written had no chance to reach it). A stream over it is closed and logged as a warning: the
   * client reconnects and resumes from its last event id, and the server's memory stays bounded. One event or
   * replay larger than this may take its time. Pulled sources never reach it: they are paused while the client
   * is behind.
   * @default 262144 (256 KiB)
   */
  maxBufferedBytes?: number
  /**
   * Milliseconds bytes may wait for a client that takes none of them (a frozen tab, a dead peer whose connection
   * did not close) before the stream is dropped and logged as a warning; also a stream the server closed, whose
   * last bytes wait, so that its `limits` slot is freed. `0` turns it off.
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
  /**
   * The `retry:` sent to each stream that `app.close()` ends: a delay drawn at random from this window, so
   * that the clients of an instance that closes reconnect (to the others) spread over it instead of all at
   * once. Streams refused while the server closes get a `Retry-After` drawn from it too.
   * @default { min: 1000, max: 10000 }
   */
  shutdownRetry?: SseShutdownRetry
  /**
   * Milliseconds after which each stream is closed, with a `retry:`, so that its client reconnects (to whichever
   * instance the load balancer picks: after a scale-out, connections rebalance onto the new ones) and resumes from its
   * last event id. Each stream's moment is drawn between 90% and all of it, so that streams opened together do not
   * come back together. Its close code is `FST_SSE_MAX_AGE`. `0`: streams live as long as their clients.
   * @default 0
   */
  maxStreamAge?: number
}

/** A window of reconnection delays, in whole milliseconds. */
export interface SseShutdownRetry {
  /** The shortest delay. */
  min: number
  /** The longest delay: at least `min`. */
  max: number
}

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
