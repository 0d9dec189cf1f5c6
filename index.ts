import fp from 'fastify-plugin'
import type { FastifyInstance, RouteOptions } from 'fastify'
import type {
  FastifySseOptions, SseEvent, SseIterableSource, SseMessage, SseReplyOptions, SseSerializer, SseSource,
  SseSourceContext, SseEncoding, SseLimits, SseShutdownRetry, SseRouteOptions, SseChannelOptions, SseMessageOf,
  SseEventFields, RouteSseMessage, RouteEventStream, SseChannelEntry, SseSubscribeOptions
} from './lib/fastify/types'
import type { ChannelEvent, ChannelFilter } from './lib/channels/channel'
import type { EventToStore, Replay, SseStore, StoredEvent, StoredEventListener } from './lib/stores/store'
import type { MemoryStoreOptions } from './lib/stores/memory-store'
import type { SseStats, SseProtocolStats } from './lib/observe/stats'
import type {
  SseCloseCode, SseRefusalCode, SseReplayOutcome, StreamOpenMessage, StreamCloseMessage, StreamDropMessage,
  StreamRefuseMessage, ChannelPublishMessage, ChannelReplayMessage
} from './lib/observe/diagnostics'
import { EventStream } from './lib/stream/transport'
import { Channel, MISSED_EVENT } from './lib/channels/channel'
import { Channels } from './lib/channels/channels'
import { MemoryStore } from './lib/stores/memory-store'
import { SnapshotEvent } from './lib/stores/store'
import { StreamGroups } from './lib/stream/stream-groups'
import { Stats } from './lib/observe/stats'
import { ChannelSchemas } from './lib/channels/channel-schemas'
import { ClosingConnections } from './lib/stream/closing-connections'
import { ServerSessions } from './lib/stream/server-sessions'
import { resolveOptions } from './lib/fastify/options'
import { createReplySse } from './lib/fastify/reply-sse'
import { createRouteOptionsReader } from './lib/fastify/route-options'
import { claimContext } from './lib/fastify/registration'
import { wantsEventStream } from './lib/protocol/negotiation'
import { eventStreamItemSchemas } from './lib/fastify/openapi'
import { isRefused } from './lib/fastify/refusal'
import * as errors from './lib/core/errors'

async function fastifySseH2 (fastify: FastifyInstance, options: FastifySseOptions): Promise<void> {
  const settings = resolveOptions(options)
  claimContext(fastify)
  const stats = new Stats()
  const openStreams = new StreamGroups(settings, settings.limits, stats)
  const sessions = new ServerSessions()
  if (fastify.initialConfig.http2 === true) sessions.watch(fastify.server)
  const connections = new ClosingConnections(sessions)
  const schemas = new ChannelSchemas(fastify, settings.serializer)
  const channels = new Channels(settings.store, settings.serializer, fastify.log, schemas, stats)

  fastify.decorate('sse', channels)
  fastify.decorateReply('sse', createReplySse(settings, openStreams, schemas, connections))
  // The same everywhere: where the plugin is registered in encapsulated contexts only, the root has it already.
  if (!fastify.hasRequestDecorator('wantsEventStream')) fastify.decorateRequest('wantsEventStream', { getter: wantsEventStream })
  fastify.addHook('onRoute', createRouteOptionsReader(settings, openStreams))
  fastify.addHook('onRoute', quietSseReturn)
  // Before the server stops accepting: it waits for open connections, and event streams never end by themselves.
  fastify.addHook('preClose', async function closeEventStreams () {
    openStreams.closeAll(connections, settings.shutdownRetry)
    sessions.goAway()
    // A client that has not let go of its connection within the grace is dropped with it.
    await connections.closed()
  })
  fastify.addHook('onClose', async function closeChannels () {
    await channels.close()
  })
}

/**
 * `return reply.sse(...)` and a bare `reply.sse(...)` must be quiet in sync and async handlers alike. Fastify
 * sends what a handler returns, and warns when the reply was hijacked or sent already; and when an async
 * handler resolves to nothing while its reply is still being sent (a refusal going through async hooks), it
 * sends the reply a second time. So a sync handler's stream becomes nothing, and an async handler whose stream
 * was refused resolves to the reply, which Fastify waits for as it does for `return reply`.
 */
function quietSseReturn (route: RouteOptions): void {
  const handler = route.handler
  if (handler.constructor.name === 'AsyncFunction') {
    route.handler = async function sseAwareAsyncHandler (this: FastifyInstance, request, reply) {
      const result = await handler.call(this, request, reply)
      return result instanceof EventStream || isRefused(reply) ? reply : result
    }
    return
  }
  route.handler = function sseAwareHandler (this: FastifyInstance, request, reply) {
    const result = handler.call(this, request, reply)
    return result instanceof EventStream ? undefined : result
  }
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
    StreamRefuseMessage, ChannelPublishMessage, ChannelReplayMessage
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
