import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type {
  FastifySseOptions, SseIterableSource, SseReplyOptions, SseSource, SseLimits, SseShutdownRetry, SseRouteOptions,
  RouteEventStream, SseChannelEntry
} from './lib/fastify/types'
import type { SseEvent, SseMessage, SseSerializer, SseSourceContext, SseEventFields, ChannelEvent } from './lib/core/events'
import type { SseCloseCode, SseRefusalCode, SseReplayOutcome } from './lib/core/codes'
import type { SseMessageOf, RouteSseMessage } from './lib/protocol/schema-types'
import type { SseEncoding } from './lib/stream/compression'
import type { ChannelFilter } from './lib/channels/channel'
import type { SseSubscribeOptions } from './lib/channels/channel-list'
import type { SseChannelOptions } from './lib/channels/channels'
import type { SseSteerResult, SsePresence } from './lib/channels/steering'
import type { SseTagged, SseTaggedSubscribeOptions } from './lib/channels/tagged'
import type {
  EventToStore, Replay, SseStore, StoredEvent, StoredEventListener, SseStoreControl, ControlMember, ControlHandler,
  ControlMessage, ControlResult
} from './lib/stores/store'
import type { MemoryStoreOptions } from './lib/stores/memory-store'
import type { SseStats, SseProtocolStats } from './lib/observe/stats'
import type * as diagnostics from './lib/observe/diagnostics'
import { EventStream } from './lib/channels/event-stream'
import { Channel, MISSED_EVENT } from './lib/channels/channel'
import { Channels } from './lib/channels/channels'
import { MemoryStore } from './lib/stores/memory-store'
import { SnapshotEvent } from './lib/protocol/snapshot'
import { eventStreamItemSchemas } from './lib/fastify/openapi'
import { registerSse } from './lib/fastify/plugin'
import * as errors from './lib/core/errors'

/** `fastify-sse-h2:stream:open`: a stream opened (its headers are sent), in the request's async context. */
type StreamOpenMessage = diagnostics.StreamOpenMessage<EventStream>
/** `fastify-sse-h2:stream:close`: a stream that opened has ended; `code` says why. */
type StreamCloseMessage = diagnostics.StreamCloseMessage<EventStream>
/** `fastify-sse-h2:stream:drop`: the server is dropping a client that fell behind or took nothing for `writeTimeout`. */
type StreamDropMessage = diagnostics.StreamDropMessage<EventStream>
/** `fastify-sse-h2:stream:refuse`: a stream was refused before it opened (a `503`, or a reply already sent). */
type StreamRefuseMessage = diagnostics.StreamRefuseMessage
/** `fastify-sse-h2:channel:publish`: the store took an event published in this process. */
type ChannelPublishMessage = diagnostics.ChannelPublishMessage
/** `fastify-sse-h2:channel:replay`: a subscriber's replay after its `Last-Event-ID` was written, or failed. */
type ChannelReplayMessage = diagnostics.ChannelReplayMessage<EventStream>

/** The plugin: `app.register(sse, options)` (lib/fastify/plugin.ts). */
async function fastifySseH2 (fastify: FastifyInstance, options: FastifySseOptions): Promise<void> {
  await registerSse(fastify, options)
}

fp(fastifySseH2, { fastify: '5.x', name: 'fastify-sse-h2' })

/* eslint-disable @typescript-eslint/no-unused-vars -- declaration merging repeats Fastify's type parameters */
declare module 'fastify' {
  // The route's schema and type provider type what its streams send, the app's type provider its channels.
  interface FastifyReply<RouteGeneric, RawServer, RawRequest, RawReply, ContextConfig, SchemaCompiler, TypeProvider,
    ReplyType> {
    /**
     * Opens a Server-Sent Events stream on this reply and returns its handle.
     * - No source: push events with the handle's `send()`.
     * - An iterable, async iterable or Readable: its events are pulled one at a time, at the client's pace.
     * - A function: called with `{ signal, lastEventId }`, it returns one of the above.
     * - A channel: the request subscribes to it.
     * - A list of channels (each a channel or `{ channel, filter }`): one stream for all of them, whose event ids are
     *   a cursor that resumes every one.
     * With an event schema and a type provider, the events are typed by the schema.
     */
    sse: (source?: SseSource<RouteSseMessage<TypeProvider, SchemaCompiler>>, options?: SseReplyOptions) =>
    RouteEventStream<RouteSseMessage<TypeProvider, SchemaCompiler>, ReplyType>
  }

  interface FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider> {
    /** The plugin's channels: `app.sse.channel(name)`, `app.sse.channel(name, { schema })`. */
    sse: Channels<TypeProvider>
  }

  interface FastifyRequest {
    /**
     * True when the request's `Accept` asks for an event stream rather than JSON (by name: EventSource's
     * `text/event-stream`; JSON wins a tie, and `*\/*`). For a route that serves both (`config.sse.negotiate`).
     */
    readonly wantsEventStream: boolean
  }

  interface FastifyContextConfig {
    /** Options of this route's event streams, read and checked when the route is added. */
    sse?: SseRouteOptions
  }
}
/* eslint-enable @typescript-eslint/no-unused-vars */

declare namespace fastifySseH2 {
  export {
    fastifySseH2 as default, fastifySseH2, errors, EventStream, Channel, Channels, MemoryStore, SnapshotEvent,
    MISSED_EVENT, eventStreamItemSchemas
  }
  export type {
    FastifySseOptions, SseEvent, SseIterableSource, SseMessage, SseReplyOptions, SseSerializer, SseSource,
    SseSourceContext, ChannelEvent, ChannelFilter, SseStore, StoredEvent, EventToStore, Replay, StoredEventListener,
    MemoryStoreOptions, SseEncoding, SseLimits, SseShutdownRetry, SseRouteOptions, SseChannelOptions, SseMessageOf,
    SseEventFields, RouteSseMessage, RouteEventStream, SseChannelEntry, SseSubscribeOptions, SseStats, SseProtocolStats,
    SseCloseCode, SseRefusalCode, SseReplayOutcome, StreamOpenMessage, StreamCloseMessage, StreamDropMessage,
    StreamRefuseMessage, ChannelPublishMessage, ChannelReplayMessage, SseTagged, SseTaggedSubscribeOptions, SseSteerResult,
    SsePresence, SseStoreControl, ControlMember, ControlHandler, ControlMessage, ControlResult
  }
}

export = fastifySseH2
// CommonJS users get the plugin itself from require(), with the named exports on it, as with @fastify plugins.
module.exports = fastifySseH2
module.exports.default = fastifySseH2
module.exports.fastifySseH2 = fastifySseH2
module.exports.errors = errors
module.exports.EventStream = EventStream
module.exports.Channel = Channel
module.exports.Channels = Channels
module.exports.MemoryStore = MemoryStore
module.exports.SnapshotEvent = SnapshotEvent
module.exports.MISSED_EVENT = MISSED_EVENT
module.exports.eventStreamItemSchemas = eventStreamItemSchemas
