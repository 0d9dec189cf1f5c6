import type { FastifyReply, RouteOptions } from 'fastify'
import type { SseReplyOptions, SseRouteOptions } from './types'
import type { SseSerializer } from '../core/events'
import type { SseEncoding } from '../stream/compression'
import type { Settings } from './options'
import type { StreamGroup } from '../stream/stream-group'
import type { StreamGroups } from '../stream/stream-groups'
import { checkSerializerAndRetry, checkStreamOptions, checkTiming, resolveCompression } from './options'
import { check } from '../core/checks'
import { ROUTE_OPTIONS, refuseUnknownOptions } from '../core/option-names'
import { EVENT_STREAM, eventSerializer, findEventSchema, type DeclaredEventSchema } from '../protocol/event-schema'
import { refuseUnacceptable } from '../protocol/negotiation'
import { FST_SSE_INVALID_OPTION } from '../core/errors'
import { describe } from '../core/describe'

// Where a route's resolved settings are kept: in its config, which Fastify copies into the route's context
// after the onRoute hooks, and gives back as reply.routeOptions.config.
const kRouteSettings = Symbol('fastify-sse-h2.route')

/** A route's `config.sse` and event schema, read and checked once, when the route is added. */
interface RouteSettings {
  retry: number | undefined
  serializer: SseSerializer | undefined
  compression: readonly SseEncoding[] | false | undefined
  /** The group of streams with this route's timing (heartbeat, buffer bound, write timeout). */
  group: StreamGroup
  eventSchema: DeclaredEventSchema | undefined
  /** The event schema's serializer, made for the route's first stream. */
  eventSerializer: SseSerializer | undefined
  negotiate: boolean
}

/** What one stream uses: its `reply.sse()` options, else its route's, else the plugin's. */
interface StreamSettings {
  serializer: SseSerializer
  retry: number | undefined
  compression: readonly SseEncoding[] | false
  group: StreamGroup
  /** The route's event schema, when its serializer is the one used. */
  eventSchema: DeclaredEventSchema | undefined
}

/** The onRoute hook that reads `config.sse` and the event schema of each route, as @fastify/rate-limit does. */
export function createRouteOptionsReader (settings: Settings, groups: StreamGroups): (route: RouteOptions) => void {
  return function readSseRouteOptions (route: RouteOptions): void {
    const config = route.config as Record<PropertyKey, unknown> | undefined
    const options = config?.sse
    const eventSchema = findEventSchema(route.schema)
    if (options === undefined && eventSchema === undefined) return
    let resolved: RouteSettings
    try {
      resolved = resolveRouteOptions(options, eventSchema, settings, groups)
    } catch (error) {
      // Thrown from app.get() and the like: the route says which.
      (error as Error).message += ` (route ${String(route.method)} ${route.url})`
      throw error
    }
    route.config = { ...config, [kRouteSettings]: resolved } as RouteOptions['config']
    if (resolved.negotiate) route.onRequest = [refuseUnacceptable, ...[route.onRequest ?? []].flat()]
  }
}

function resolveRouteOptions (options: unknown, eventSchema: DeclaredEventSchema | undefined, settings: Settings,
  groups: StreamGroups): RouteSettings {
  check('config.sse', options === undefined || (typeof options === 'object' && options !== null && !Array.isArray(options)),
    'an object', options)
  const route = (options ?? {}) as SseRouteOptions
  refuseUnknownOptions(route, ROUTE_OPTIONS, 'config.sse.')
  checkSerializerAndRetry(route, 'config.sse.')
  check('config.sse.serializer', route.serializer === undefined || eventSchema === undefined,
    'unset on a route with an event schema (the schema serializes its events)', route.serializer)
  check('config.sse.negotiate', route.negotiate === undefined || typeof route.negotiate === 'boolean', 'a boolean',
    route.negotiate)
  const timing = {
    heartbeatInterval: route.heartbeatInterval ?? settings.heartbeatInterval,
    maxBufferedBytes: route.maxBufferedBytes ?? settings.maxBufferedBytes,
    writeTimeout: route.writeTimeout ?? settings.writeTimeout,
    maxStreamAge: route.maxStreamAge ?? settings.maxStreamAge
  }
  checkTiming(timing, 'config.sse.')
  return {
    retry: route.retry,
    serializer: route.serializer,
    compression: route.compression === undefined ? undefined : resolveCompression(route.compression, 'config.sse.'),
    group: groups.group(timing),
    eventSchema,
    eventSerializer: undefined,
    negotiate: route.negotiate === true
  }
}

/** Resolves what a stream of this reply uses; checks the `reply.sse()` options. */
export function resolveStreamSettings (reply: FastifyReply, settings: Settings, groups: StreamGroups,
  options: SseReplyOptions | undefined): StreamSettings {
  if (options !== undefined) checkStreamOptions(options)
  const route = routeSettingsOf(reply)
  const schemaApplies = options?.serializer === undefined && route?.eventSchema !== undefined
  return {
    serializer: options?.serializer ??
      (schemaApplies ? routeEventSerializer(route as RouteSettings, reply, settings) : route?.serializer ?? settings.serializer),
    retry: options?.retry ?? route?.retry ?? settings.retry,
    compression: options?.compression !== undefined
      ? resolveCompression(options.compression)
      : route?.compression ?? settings.compression,
    group: route?.group ?? groups.main,
    eventSchema: schemaApplies ? route?.eventSchema : undefined
  }
}

function routeSettingsOf (reply: FastifyReply): RouteSettings | undefined {
  const config = reply.routeOptions.config as unknown as Record<PropertyKey, unknown> | undefined
  const route = config?.[kRouteSettings] as RouteSettings | undefined
  if (route === undefined && config?.sse !== undefined) {
    // The route was added before the plugin's onRoute hook was: its options would be ignored.
    throw new FST_SSE_INVALID_OPTION('config.sse', 'read when the route is added: register the plugin (and await ' +
      'it) before adding the route', describe(config.sse))
  }
  return route
}

function routeEventSerializer (route: RouteSettings, reply: FastifyReply, settings: Settings): SseSerializer {
  if (route.eventSerializer !== undefined) return route.eventSerializer
  const { statusKey, schema } = route.eventSchema as DeclaredEventSchema
  // Fastify compiled the route's response schemas when the app started, with the route's serializer compiler or
  // the app's; the parts of an event map are compiled the same way, once, and cached by Fastify for the route.
  route.eventSerializer = eventSerializer(schema,
    (part) => reply.compileSerializationSchema(part as Record<string, unknown>, statusKey, EVENT_STREAM) as SseSerializer,
    settings.serializer, reply.getSerializationFunction(statusKey, EVENT_STREAM) as SseSerializer | undefined)
  return route.eventSerializer
}
