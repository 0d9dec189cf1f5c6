import type { SseSerializer } from '../core/events'
import { FST_SSE_UNDECLARED_EVENT } from '../core/errors'
import { describe } from '../core/describe'

// An event schema is the JSON Schema of the `data` of a stream's events, serialized as Fastify serializes a
// response (fast-json-stringify by default: what it does not declare is dropped). Or it is an event map: a
// `oneOf` (or `anyOf`) each branch of which declares its `event` as a constant, and the schema of its `data`:
//   { oneOf: [{ properties: { event: { const: 'price' }, data: Price } }, { properties: { event: ..., data: ... } }] }
// Each event is then serialized by the data schema of its own type (an event without `event` is a `message`).

export const EVENT_STREAM = 'text/event-stream'

/** Makes the serializer of one JSON Schema, with the compiler that applies (the route's, the app's). */
type CompileSchema = (schema: object) => SseSerializer

/** A serializer that is also given the event's type (framing passes it). */
export type EventSerializer = (data: unknown, event?: string) => string

/** Where a route declares its event schema: the key of the response it is under, and the schema. */
export interface DeclaredEventSchema {
  statusKey: string
  schema: object
}

// Event streams open with 200, unless the handler set another code: its own schema, else 2xx, else default.
const STATUS_KEYS = ['200', '2xx', 'default']

/** The route's `schema.response[200].content['text/event-stream'].schema` (or under 2xx, default). */
export function findEventSchema (routeSchema: unknown): DeclaredEventSchema | undefined {
  const response = (routeSchema as { response?: Record<string, unknown> } | undefined)?.response
  if (response === null || typeof response !== 'object') return undefined
  for (const wanted of STATUS_KEYS) {
    for (const key of Object.keys(response)) {
      if (key.toLowerCase() !== wanted) continue
      const schema = (response[key] as { content?: Record<string, { schema?: unknown }> } | undefined)
        ?.content?.[EVENT_STREAM]?.schema
      if (schema !== null && typeof schema === 'object') return { statusKey: wanted, schema }
    }
  }
  return undefined
}

/** The data schema of each event type of an event map, by type (undefined: data not declared); or undefined. */
export function eventMap (schema: object): Map<string, object | undefined> | undefined {
  const { oneOf, anyOf } = schema as { oneOf?: unknown, anyOf?: unknown }
  const branches = oneOf ?? anyOf
  if (!Array.isArray(branches) || branches.length === 0) return undefined
  const map = new Map<string, object | undefined>()
  for (const branch of branches) {
    const properties = (branch as { properties?: Record<string, unknown> } | null)?.properties
    const name = constantOf(properties?.event)
    if (name === undefined) return undefined
    const data = properties?.data
    map.set(name, data !== null && typeof data === 'object' ? data : undefined)
  }
  return map
}

function constantOf (schema: unknown): string | undefined {
  const { const: value, enum: values } = (schema ?? {}) as { const?: unknown, enum?: unknown }
  if (typeof value === 'string') return value
  if (Array.isArray(values) && values.length === 1 && typeof values[0] === 'string') return values[0]
  return undefined
}

/**
 * The serializer of an event schema. `whole` is the schema's serializer when it is compiled already (Fastify
 * compiles a route's response schemas when the app starts); `untyped` serializes the data of event types that
 * declare no data schema.
 */
export function eventSerializer (schema: object, compile: CompileSchema, untyped: SseSerializer,
  whole?: SseSerializer): SseSerializer {
  const map = eventMap(schema)
  if (map === undefined) return whole ?? compile(schema)
  const byType = new Map<string, SseSerializer>()
  for (const [type, data] of map) byType.set(type, data === undefined ? untyped : compile(data))
  const serializeByType: EventSerializer = (data, event = 'message') => {
    const serialize = byType.get(event)
    if (serialize === undefined) throw new FST_SSE_UNDECLARED_EVENT(describe(event))
    return serialize(data)
  }
  return serializeByType
}
