import { EVENT_STREAM, eventMap } from '../protocol/event-schema'

// @fastify/swagger documents a route's `text/event-stream` response with the schema the route declares, as the
// `schema` of that media type: what OpenAPI 3.0 and 3.1 have. OpenAPI 3.2 describes each event of a stream
// with `itemSchema` instead (its "Special Considerations for Server-Sent Events"): an object with the fields
// of the wire format, whose `data` is a string (here JSON, described by `contentSchema`).

type JsonObject = Record<string, unknown>

/** The document @fastify/swagger gives a `transformObject`: an OpenAPI one, or a Swagger 2.0 one. */
type DocumentOf<Given> = Given extends { openapiObject: infer Document } ? Document
  : Given extends { swaggerObject: infer Document } ? Document : never

/**
 * A `transformObject` for @fastify/swagger: in an OpenAPI 3.2 document, each `text/event-stream` response's
 * `schema` (the event schema of its route) becomes the `itemSchema` of its events. Other documents are left
 * as they are.
 */
export function eventStreamItemSchemas<Given extends { openapiObject: object } | { swaggerObject: object }> (
  documentObject: Given): DocumentOf<Given> {
  if (!('openapiObject' in documentObject)) return documentObject.swaggerObject as DocumentOf<Given>
  const document = documentObject.openapiObject as JsonObject
  if (typeof document.openapi !== 'string' || !document.openapi.startsWith('3.2')) return document as DocumentOf<Given>
  for (const pathItem of Object.values((document.paths ?? {}) as Record<string, JsonObject>)) {
    const operations = [...Object.values(pathItem), ...Object.values((pathItem.additionalOperations ?? {}) as JsonObject)]
    for (const operation of operations) {
      const responses = (operation as JsonObject | null)?.responses as Record<string, JsonObject> | undefined
      for (const response of Object.values(responses ?? {})) {
        const content = response.content as Record<string, JsonObject> | undefined
        const media = content?.[EVENT_STREAM]
        if (media === undefined || media.itemSchema !== undefined || typeof media.schema !== 'object') continue
        const { schema, ...rest } = media
        ;(content as Record<string, JsonObject>)[EVENT_STREAM] = { ...rest, itemSchema: itemSchemaOf(schema as JsonObject) }
      }
    }
  }
  return document as DocumentOf<Given>
}

/** The item schema of the events an event schema describes. */
function itemSchemaOf (schema: JsonObject): JsonObject {
  const map = eventMap(schema)
  if (map === undefined) return eventItem(undefined, schema)
  return { oneOf: [...map].map(([type, data]) => eventItem(type, data)) }
}

function eventItem (type: string | undefined, data: object | undefined): JsonObject {
  return {
    type: 'object',
    required: ['data'],
    properties: {
      event: type === undefined ? { type: 'string' } : { type: 'string', const: type },
      data: data === undefined
        ? { type: 'string' }
        : { type: 'string', contentMediaType: 'application/json', contentSchema: data },
      id: { type: 'string' },
      retry: { type: 'integer', minimum: 0 }
    }
  }
}
