import type { FastifyInstance } from 'fastify'
import SerializerSelector from '@fastify/fast-json-stringify-compiler'
import type { SseSerializer } from '../core/events'
import type { SseChannelOptions } from './channels'
import type { Channel } from './channel'
import { EVENT_STREAM, eventSerializer } from '../protocol/event-schema'
import { CHANNEL_OPTIONS, refuseUnknownOptions } from '../core/option-names'
import { check } from '../core/checks'

// What Fastify gives a serializer compiler (FastifyRouteSchemaDef), as a channel has it.
type SerializerCompiler = (route: { schema: object, method: string, url: string, httpStatus: string, contentType: string }) =>
SseSerializer

/**
 * The event schemas of one plugin instance's channels: each compiled once, when its channel is made, with the
 * app's serializer compiler (fast-json-stringify, with the app's shared schemas, unless the app set its own).
 */
export class ChannelSchemas {
  private readonly app: FastifyInstance
  private readonly untyped: SseSerializer
  private readonly schemas = new WeakMap<Channel<never>, object>()
  private defaultCompiler: SerializerCompiler | undefined

  constructor (app: FastifyInstance, untyped: SseSerializer) {
    this.app = app
    this.untyped = untyped
  }

  /** The serializer of a channel made with these options; checks them. */
  serializerFor (options: SseChannelOptions | undefined): SseSerializer {
    const schema = checkChannelOptions(options)
    if (schema === undefined) return this.untyped
    const compiler = this.compiler()
    return eventSerializer(schema, (part) => compiler({ schema: part, method: 'GET', url: '', httpStatus: '200', contentType: EVENT_STREAM }),
      this.untyped)
  }

  /** Remembers the schema a channel was made with. */
  remember (channel: Channel<never>, options: SseChannelOptions | undefined): void {
    if (options?.schema !== undefined) this.schemas.set(channel, options.schema)
  }

  /** The schema a channel was made with, if any. */
  schemaOf (channel: Channel<never>): object | undefined {
    return this.schemas.get(channel)
  }

  /** A channel keeps the schema it was made with: asking for it with another one is a mistake. */
  checkSame (channel: Channel<never>, options: SseChannelOptions): void {
    const schema = checkChannelOptions(options)
    check('schema', schema === undefined || schema === this.schemas.get(channel),
      `the schema channel ${channel.name} was made with (a channel keeps its first schema)`, schema)
  }

  private compiler (): SerializerCompiler {
    // The app's own compiler, or the default one Fastify has set up already; else the default, made here as
    // Fastify makes it (its schema controller does so only when a route has a response schema).
    return this.app.serializerCompiler ?? (this.defaultCompiler ??= SerializerSelector()(this.app.getSchemas()))
  }
}

function checkChannelOptions (options: SseChannelOptions | undefined): object | undefined {
  if (options === undefined) return undefined
  check('channel options', typeof options === 'object' && options !== null, 'an object', options)
  refuseUnknownOptions(options, CHANNEL_OPTIONS)
  const { schema } = options
  check('schema', schema === undefined || (typeof schema === 'object' && schema !== null),
    'a JSON Schema (an object)', schema)
  return schema
}
