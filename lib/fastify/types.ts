import type { Readable } from 'node:stream'
import type { FastifyTypeProvider } from 'fastify'
import type { Channel, ChannelFilter } from '../channels/channel'
import type { EventStream } from '../stream/transport'
import type { SseStore } from '../stores/store'

/**
 * One server-sent event: at least one of these fields, and no other (an object with none, or another, is refused).
 * `Data` is the type of its data: what an event schema declares, with a type provider.
 */
export interface SseEvent<Data = unknown> {
  /**
   * The event's data. A string is written as it is, one `data:` line per line of text;
   * a Buffer or Uint8Array is written base64-encoded; any other value goes through the serializer
   * (or the event schema's).
   * `undefined` writes no `data:` line (the client then dispatches no event).
   */
  data?: Data
  /** The event id: the client sends it back as `Last-Event-ID` when it reconnects. `0` and `''` are sent. */
  id?: string | number
  /** The event type: the client's `addEventListener(type)` receives it. Default on the client: `message`. */
  event?: string
  /** Milliseconds the client waits before reconnecting, from now on. */
  retry?: number
  /** A comment line (`: text`): clients ignore it; proxies see traffic. */
  comment?: string
}

/**
 * An event, or a plain string that is sent as the data of a `message` event (where the data may be any
 * string: not with an event schema that declares other data).
 */
export type SseMessage<Data = unknown> = SseEvent<Data> | (string extends Data ? string : never)

/**
 * Turns a value that is not a string into the text of `data:` lines. It is also given the event's type, as a
 * second argument (`undefined` for a `message` event).
 */
export type SseSerializer = (data: unknown) => string

/** The fields of an event besides its type and data. */
export type SseEventFields = Omit<SseEvent, 'event' | 'data'>

// An event map: a oneOf or anyOf each branch of which declares its `event` as a constant (see lib/event-schema.ts).
interface EventMapBranch {
  properties: { event: { const: string } | { enum: readonly [string] } }
}
type IsEventMap<Schema> = Schema extends { oneOf: readonly EventMapBranch[] } ? true
  : Schema extends { anyOf: readonly EventMapBranch[] } ? true : false

/** The type a type provider gives the value a schema serializes (as Fastify's own CallSerializerTypeProvider). */
type SerializedType<TypeProvider extends FastifyTypeProvider, Schema> = (TypeProvider & { schema: Schema })['serializer']

/**
 * The messages an event schema allows: events whose data it declares, or, for an event map, the events of the
 * types it declares. Without a type provider, any message.
 */
export type SseMessageOf<TypeProvider extends FastifyTypeProvider, Schema> =
  SerializedType<TypeProvider, Schema> extends infer Data
    ? unknown extends Data
      ? SseMessage
      : IsEventMap<Schema> extends true ? Data & SseEventFields : SseMessage<Data>
    : never

/** The event schema a route declares: `schema.response[status].content['text/event-stream'].schema`. */
export type EventSchemaOf<SchemaCompiler> = SchemaCompiler extends { response: infer Responses }
  ? { [Status in keyof Responses]: Responses[Status] extends { content: { 'text/event-stream': { schema: infer Schema } } }
      ? Schema
      : never }[keyof Responses]
  : never

/**
 * The handle `reply.sse()` gives on a route. Where a type provider types the route's replies, it is also `void`
 * to the handler's return type: `return reply.sse(...)` returns nothing for Fastify to serialize (the reply is
 * the stream's), as at run time.
 */
export type RouteEventStream<Message extends SseMessage, ReplyType> = unknown extends ReplyType
  ? EventStream<Message>
  : EventStream<Message> & void

/** What the streams of a route send: the messages its event schema allows, or any message. */
export type RouteSseMessage<TypeProvider extends FastifyTypeProvider, SchemaCompiler> =
  [EventSchemaOf<SchemaCompiler>] extends [never] ? SseMessage : SseMessageOf<TypeProvider, EventSchemaOf<SchemaCompiler>>

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
export type SseIterableSource<Message = SseMessage> = AsyncIterable<Message> | (Iterable<Message> & object) | Readable

/**
 * A source, a function that makes one from the stream's signal and the client's last event id, a channel to
 * subscribe to, or a list of channels: one stream for all of them, resumed by one cursor.
 */
export type SseSource<Message = SseMessage> = SseIterableSource<Message> |
((context: SseSourceContext) => SseIterableSource<Message>) | Channel<never> | readonly SseChannelEntry[]

/** A channel of a stream of several (`reply.sse([...])`): a channel, or one and which of its events the stream gets. */
export type SseChannelEntry = Channel<never> | { channel: Channel<never>, filter?: ChannelFilter }

/** Options of `stream.subscribe(channel, options)`. */
export interface SseSubscribeOptions {
  /** Which of the channel's events this stream receives, as `reply.sse(channel, { filter })`'s. */
  filter?: ChannelFilter
}

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
  /**
   * The route serves JSON or an event stream, by the request's `Accept`: `request.wantsEventStream` tells the
   * handler which, and a request that accepts neither is answered 406 before the handler runs.
   * @default false
   */
  negotiate?: boolean
}

/** Options of a channel, given when it is made: `app.sse.channel(name, { schema })`. */
export interface SseChannelOptions<Schema extends object = object> {
  /**
   * Event schema of the channel's events: their data is serialized by it (compiled once, with the app's
   * serializer compiler), and what it does not declare is dropped. A data schema, or an event map.
   */
  schema?: Schema
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
}

/** Content encodings the plugin can compress streams with. */
export type SseEncoding = 'br' | 'gzip'

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
