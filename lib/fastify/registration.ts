import type { FastifyInstance } from 'fastify'
import { FST_SSE_ALREADY_REGISTERED, FST_SSE_NOT_REGISTERED } from '../core/errors'
import { wantsEventStream } from '../protocol/negotiation'
import type { Channels } from '../channels/channels'

// Where the plugin is registered: one registration serves its context and every context inside it, with one
// set of channels. Sibling contexts may each have their own. A second registration inside the first (or the
// first inside the second, registered earlier) would shadow its channels silently: it is refused. And the root
// of an app where the plugin is registered only in encapsulated contexts gets decorators that say so, with a
// code, instead of `reply.sse is not a function`.
const registered = new WeakSet<object>()
const stubbed = new WeakSet<object>()

/** Claims the context for the plugin, or throws FST_SSE_ALREADY_REGISTERED. */
export function claimContext (fastify: FastifyInstance): void {
  if (registered.has(fastify)) throw new FST_SSE_ALREADY_REGISTERED('in this context')
  let root = fastify
  // Fastify makes each encapsulated context with Object.create(its parent) (lib/plugin-override.js); the root's
  // prototype is a plain object's.
  for (let parent = parentOf(fastify); parent !== undefined; parent = parentOf(parent)) {
    if (registered.has(parent)) throw new FST_SSE_ALREADY_REGISTERED('in a parent context')
    root = parent
  }
  if (root === fastify) {
    if (stubbed.has(root)) throw new FST_SSE_ALREADY_REGISTERED('in an encapsulated context inside this one')
  } else if (!stubbed.has(root)) {
    stubRoot(root)
  }
  registered.add(fastify)
}

function parentOf (context: FastifyInstance): FastifyInstance | undefined {
  const parent: unknown = Object.getPrototypeOf(context)
  return typeof (parent as FastifyInstance | null)?.decorateReply === 'function' ? parent as FastifyInstance : undefined
}

function stubRoot (root: FastifyInstance): void {
  stubbed.add(root)
  if (!root.hasReplyDecorator('sse')) {
    root.decorateReply('sse', function sseNotRegistered (): never {
      throw new FST_SSE_NOT_REGISTERED('reply.sse()')
    })
  }
  if (!root.hasDecorator('sse')) root.decorate('sse', unregisteredChannels as unknown as Channels)
  if (!root.hasRequestDecorator('wantsEventStream')) root.decorateRequest('wantsEventStream', { getter: wantsEventStream })
}

// `app.sse` where the plugin is not registered.
const unregisteredChannels = Object.freeze({
  channel (): never {
    throw new FST_SSE_NOT_REGISTERED('app.sse.channel()')
  },
  tagged (): never {
    throw new FST_SSE_NOT_REGISTERED('app.sse.tagged()')
  },
  filter (): never {
    throw new FST_SSE_NOT_REGISTERED('app.sse.filter()')
  },
  get store (): never {
    throw new FST_SSE_NOT_REGISTERED('app.sse.store')
  }
})
