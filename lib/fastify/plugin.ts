import type { FastifyInstance, RouteOptions } from 'fastify'
import type { FastifySseOptions } from './types'
import { EventStream } from '../channels/event-stream'
import { Channels } from '../channels/channels'
import { ChannelSchemas } from '../channels/channel-schemas'
import { StreamGroups } from '../stream/stream-groups'
import { ClosingConnections } from '../stream/closing-connections'
import { ServerConnections } from '../stream/server-connections'
import { Stats } from '../observe/stats'
import { wantsEventStream } from '../protocol/negotiation'
import { resolveOptions } from './options'
import { createReplySse } from './reply-sse'
import { createRouteOptionsReader } from './route-options'
import { claimContext } from './registration'
import { isRefused } from './refusal'

/** The plugin: `app.sse` (channels), `reply.sse()`, `request.wantsEventStream`, and the hooks that close streams. */
export async function registerSse (fastify: FastifyInstance, options: FastifySseOptions): Promise<void> {
  const settings = resolveOptions(options)
  claimContext(fastify)
  const stats = new Stats()
  const streamGroups = new StreamGroups(settings, settings.limits, stats, settings.shutdownRetry)
  const serverConnections = new ServerConnections()
  serverConnections.watch(fastify.server)
  const connections = new ClosingConnections(serverConnections)
  const schemas = new ChannelSchemas(fastify, settings.serializer)
  const channels = new Channels(settings.store, settings.serializer, fastify.log, schemas, stats, settings.shutdownRetry)

  fastify.decorate('sse', channels)
  fastify.decorateReply('sse', createReplySse(settings, streamGroups, schemas, connections, channels))
  // The same everywhere: where the plugin is registered in encapsulated contexts only, the root has it already.
  if (!fastify.hasRequestDecorator('wantsEventStream')) fastify.decorateRequest('wantsEventStream', { getter: wantsEventStream })
  fastify.addHook('onRoute', createRouteOptionsReader(settings, streamGroups))
  fastify.addHook('onRoute', quietSseReturn)
  // Before the server stops accepting: it waits for open connections, and event streams never end by themselves.
  fastify.addHook('preClose', async function closeEventStreams () {
    streamGroups.closeAll(connections, settings.shutdownRetry)
    serverConnections.goAway()
    for (const socket of serverConnections.unused()) connections.addUnused(socket)
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
