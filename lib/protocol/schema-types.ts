import type { FastifyTypeProvider } from 'fastify'
import type { SseEventFields, SseMessage } from '../core/events'

// An event map: a oneOf or anyOf each branch of which declares its `event` as a constant (see event-schema.ts).
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
type EventSchemaOf<SchemaCompiler> = SchemaCompiler extends { response: infer Responses }
  ? { [Status in keyof Responses]: Responses[Status] extends { content: { 'text/event-stream': { schema: infer Schema } } }
      ? Schema
      : never }[keyof Responses]
  : never

/** What the streams of a route send: the messages its event schema allows, or any message. */
export type RouteSseMessage<TypeProvider extends FastifyTypeProvider, SchemaCompiler> =
  [EventSchemaOf<SchemaCompiler>] extends [never] ? SseMessage : SseMessageOf<TypeProvider, EventSchemaOf<SchemaCompiler>>
