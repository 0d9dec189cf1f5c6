import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import sse, { eventStreamItemSchemas } from '../index'

const Price = { type: 'object', properties: { symbol: { type: 'string' }, price: { type: 'number' } } }
const PriceOrAlert = {
  oneOf: [
    { type: 'object', properties: { event: { const: 'price' }, data: Price } },
    { type: 'object', properties: { event: { const: 'ping' } } }
  ]
}

async function documented (t: { teardown: (fn: () => unknown) => void }, openapi: string | undefined,
  transform = true): Promise<Record<string, any>> {
  const app: FastifyInstance = Fastify()
  t.teardown(() => app.close())
  await app.register(swagger, {
    ...(openapi === undefined ? {} : { openapi: { openapi } }),
    ...(transform ? { transformObject: eventStreamItemSchemas } : {})
  })
  await app.register(sse)
  const eventStream = (schema: object): object => ({ response: { 200: { content: { 'text/event-stream': { schema } } } } })
  app.get('/prices', { schema: eventStream(Price) }, (request, reply) => reply.sse([]))
  app.get('/market', { schema: eventStream(PriceOrAlert) }, (request, reply) => reply.sse([]))
  app.get('/dual', {
    schema: { response: { 200: { content: { 'application/json': { schema: { type: 'array', items: Price } }, 'text/event-stream': { schema: Price } } } } },
    config: { sse: { negotiate: true } }
  }, (request, reply) => reply.sse([]))
  await app.ready()
  return app.swagger() as Record<string, any>
}

for (const version of ['3.0.3', '3.1.0']) {
  test(`OpenAPI ${version}: an SSE route's 200 response is text/event-stream with its event schema`, async (t) => {
    const document = await documented(t, version)
    t.equal(document.openapi, version)
    t.same(document.paths['/prices'].get.responses['200'].content, { 'text/event-stream': { schema: Price } })
    // @fastify/swagger writes each `const` as a one-value `enum` (its convertConstToEnum option).
    t.same(document.paths['/market'].get.responses['200'].content['text/event-stream'].schema, {
      oneOf: [
        { type: 'object', properties: { event: { enum: ['price'] }, data: Price } },
        { type: 'object', properties: { event: { enum: ['ping'] } } }
      ]
    })
    t.same(Object.keys(document.paths['/dual'].get.responses['200'].content), ['application/json', 'text/event-stream'])
  })
}

test('OpenAPI 3.2: each event is described by itemSchema, its data by contentSchema', async (t) => {
  const document = await documented(t, '3.2.0')
  const fields = { id: { type: 'string' }, retry: { type: 'integer', minimum: 0 } }
  t.same(document.paths['/prices'].get.responses['200'].content['text/event-stream'], {
    itemSchema: {
      type: 'object',
      required: ['data'],
      properties: {
        event: { type: 'string' },
        data: { type: 'string', contentMediaType: 'application/json', contentSchema: Price },
        ...fields
      }
    }
  })
  t.same(document.paths['/market'].get.responses['200'].content['text/event-stream'].itemSchema.oneOf.map(
    (item: any) => [item.properties.event, item.properties.data]), [
    [{ type: 'string', const: 'price' }, { type: 'string', contentMediaType: 'application/json', contentSchema: Price }],
    [{ type: 'string', const: 'ping' }, { type: 'string' }]
  ])
  const dual = document.paths['/dual'].get.responses['200'].content
  t.same(dual['application/json'], { schema: { type: 'array', items: Price } }, 'other media types are left as they are')
  t.ok(dual['text/event-stream'].itemSchema !== undefined && dual['text/event-stream'].schema === undefined)
})

test('OpenAPI 3.2 without the transform keeps the schema; Swagger 2.0 documents are left as they are', async (t) => {
  const untransformed = await documented(t, '3.2.0', false)
  t.same(untransformed.paths['/prices'].get.responses['200'].content['text/event-stream'], { schema: Price })
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(swagger, { swagger: { info: { title: 't', version: '1' } }, transformObject: eventStreamItemSchemas })
  await app.register(sse)
  app.get('/prices', (request, reply) => reply.sse([]))
  await app.ready()
  t.equal((app.swagger() as Record<string, any>).swagger, '2.0')
  const bare = { openapiObject: { openapi: '3.2.0', paths: { '/x': { get: { responses: { 200: { description: 'x' } } }, parameters: [] } } } }
  t.same(eventStreamItemSchemas(bare), bare.openapiObject, 'responses without content, and non-operations, are passed over')
  const versionless = { openapiObject: { paths: {} } }
  t.equal(eventStreamItemSchemas(versionless), versionless.openapiObject)
  t.same(eventStreamItemSchemas({ openapiObject: { openapi: '3.2.0' } }), { openapi: '3.2.0' }, 'no paths')
  const content = { 'text/event-stream': { schema: Price } }
  const additional = { openapiObject: { openapi: '3.2.0', paths: { '/x': { additionalOperations: { SUBSCRIBE: { responses: { 200: { content } } } } } } } }
  t.ok('itemSchema' in (eventStreamItemSchemas(additional) as any).paths['/x'].additionalOperations.SUBSCRIBE.responses[200]
    .content['text/event-stream'], 'the additional operations of a 3.2 path are documented too')
})
