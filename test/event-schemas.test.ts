import { test } from 'tap'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { ERROR } from './helpers/logs'
import { errors } from '../index'

const Price = {
  type: 'object',
  properties: { symbol: { type: 'string' }, price: { type: 'number' } },
  required: ['symbol', 'price']
} as const

const Alert = { type: 'object', properties: { text: { type: 'string' } } } as const

function eventStreamResponse (schema: object, status: string = '200'): { response: Record<string, unknown> } {
  return { response: { [status]: { content: { 'text/event-stream': { schema } } } } }
}

// A map by event type: each branch declares its `event` as a constant, and the schema of its data.
const PriceOrAlert = {
  oneOf: [
    { type: 'object', properties: { event: { const: 'price' }, data: Price } },
    { type: 'object', properties: { event: { enum: ['alert'] }, data: Alert } },
    { type: 'object', properties: { event: { const: 'message' } } }
  ]
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a route's event schema serializes each event's data, dropping what it does not declare`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/prices', { schema: eventStreamResponse(Price) }, (request, reply) => reply.sse([
        { id: '1', data: { symbol: 'ACME', price: 12.5, secret: 'the cost price' } },
        { id: '2', event: 'price', data: { symbol: 'INIT', price: 3, owner: { password: 'hunter2' } } },
        { id: '3', data: 'text data is written as it is' }
      ]))
    })
    const client = await openStream(t, server, '/prices')
    await client.waitForEnd()
    t.same(client.events.map((event) => [event.id, event.event, event.data]), [
      ['1', undefined, '{"symbol":"ACME","price":12.5}'],
      ['2', 'price', '{"symbol":"INIT","price":3}'],
      ['3', undefined, 'text data is written as it is']
    ])
    t.notOk(client.text.includes('secret') || client.text.includes('hunter2'), 'nothing undeclared reached the client')
  })
}

test('the push handle and a function source use the schema too; a schema under 2xx or default applies', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', { schema: eventStreamResponse(Price, '2XX') }, (request, reply) => {
      const stream = reply.sse()
      stream.send({ data: { symbol: 'A', price: 1, secret: 's' } })
      stream.close()
    })
    app.get('/default', { schema: eventStreamResponse(Price, 'default') }, (request, reply) =>
      reply.sse(function * () { yield { data: { symbol: 'B', price: 2, secret: 's' } } }))
  })
  const compiledOnce = [['/push', '{"symbol":"A","price":1}'], ['/push', '{"symbol":"A","price":1}']]
  for (const [path, data] of [...compiledOnce, ['/default', '{"symbol":"B","price":2}']]) {
    const client = await openStream(t, server, path)
    await client.waitForEnd()
    t.same(client.events.map((event) => event.data), [data], path)
  }
})

test('the app\'s own serializer compiler, and a route\'s, serialize its events', async (t) => {
  const compiled: string[] = []
  const server = await startServer(t, 'h2c', (app) => {
    app.setSerializerCompiler(({ schema, contentType }) => {
      compiled.push(`app ${String(contentType)} ${JSON.stringify(Object.keys(schema as object))}`)
      return (data) => `app:${JSON.stringify(data)}`
    })
    app.get('/app', { schema: eventStreamResponse(Price) }, (request, reply) => reply.sse([{ data: { n: 1 } }]))
    app.get('/route', {
      schema: eventStreamResponse(Price),
      serializerCompiler: () => (data) => `route:${JSON.stringify(data)}`
    }, (request, reply) => reply.sse([{ data: { n: 2 } }]))
  })
  for (const [path, data] of [['/app', 'app:{"n":1}'], ['/route', 'route:{"n":2}']]) {
    const client = await openStream(t, server, path)
    await client.waitForEnd()
    t.same(client.events.map((event) => event.data), [data], path)
  }
  t.ok(compiled.some((line) => line.startsWith('app text/event-stream')), 'compiled for the event-stream media type')
})

test('an event map serializes each event type with its own data schema', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', { schema: eventStreamResponse(PriceOrAlert) }, (request, reply) => reply.sse([
      { event: 'price', data: { symbol: 'A', price: 1, secret: 's' } },
      { event: 'alert', data: { text: 'halted', secret: 's' } },
      // No `event`: a message, whose branch declares no data schema: the plugin's serializer writes it.
      { data: { note: 'as JSON.stringify writes it' } }
    ]))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.same(client.events.map((event) => [event.event, event.data]), [
    ['price', '{"symbol":"A","price":1}'],
    ['alert', '{"text":"halted"}'],
    [undefined, '{"note":"as JSON.stringify writes it"}']
  ])
})

test('an event of a type the map does not declare is refused: send() throws, a pulled source is logged and closed', async (t) => {
  const thrown = signalled<unknown>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', { schema: eventStreamResponse(PriceOrAlert) }, (request, reply) => {
      const stream = reply.sse()
      try {
        stream.send({ event: 'trade', data: { symbol: 'A' } })
      } catch (error) {
        thrown.resolve(error)
      }
      stream.send({ event: 'alert', data: { text: 'still open' } })
      stream.close()
    })
    app.get('/pull', { schema: eventStreamResponse(PriceOrAlert) }, (request, reply) => reply.sse([
      { event: 'alert', data: { text: 'before' } },
      { event: 'trade', data: { symbol: 'A' } },
      { event: 'alert', data: { text: 'after' } }
    ]))
  })
  const push = await openStream(t, server, '/push')
  await push.waitForEnd()
  const error = await within(thrown.promise, 'the refusal')
  t.ok(error instanceof errors.FST_SSE_UNDECLARED_EVENT)
  t.match(error, { code: 'FST_SSE_UNDECLARED_EVENT', message: /declares no event of type 'trade'/ })
  t.same(push.events.map((event) => event.data), ['{"text":"still open"}'], 'nothing written for it; the stream went on')

  const pull = await openStream(t, server, '/pull')
  await pull.waitForEnd()
  t.same(pull.events.map((event) => event.data), ['{"text":"before"}'])
  const logged = await server.logs.waitFor((record) => record.err?.code === 'FST_SSE_UNDECLARED_EVENT', 'the refusal')
  t.equal(logged.level, ERROR)
})

test('a data schema may reference a shared schema; the serializer option of reply.sse() replaces the schema', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.addSchema({ $id: 'price', ...Price })
    app.get('/ref', { schema: eventStreamResponse({ $ref: 'price#' }) }, (request, reply) =>
      reply.sse([{ data: { symbol: 'R', price: 5, secret: 's' } }]))
    app.get('/own', { schema: eventStreamResponse(Price) }, (request, reply) =>
      reply.sse([{ data: { symbol: 'O', price: 6 } }], { serializer: () => 'mine' }))
  })
  const ref = await openStream(t, server, '/ref')
  await ref.waitForEnd()
  t.same(ref.events.map((event) => event.data), ['{"symbol":"R","price":5}'])
  const own = await openStream(t, server, '/own')
  await own.waitForEnd()
  t.same(own.events.map((event) => event.data), ['mine'])
})

test('a route whose schema declares other media types only keeps the plugin\'s serializer', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', { schema: { response: { 200: { content: { 'application/json': { schema: Price } } }, 404: Price } } },
      (request, reply) => reply.sse([{ data: { symbol: 'A', price: 1, extra: true } }]))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.same(client.events.map((event) => event.data), ['{"symbol":"A","price":1,"extra":true}'])
})

test('a oneOf whose branches do not all declare an event constant is a data schema', async (t) => {
  const Shape = {
    oneOf: [
      { type: 'object', properties: { kind: { const: 'circle' }, radius: { type: 'number' } }, required: ['kind'] },
      { type: 'object', properties: { event: { type: 'string' }, side: { type: 'number' } }, required: ['side'] }
    ]
  }
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', { schema: eventStreamResponse(Shape) }, (request, reply) => reply.sse([
      { event: 'shape', data: { kind: 'circle', radius: 2, secret: 's' } }
    ]))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.same(client.events.map((event) => [event.event, event.data]), [['shape', '{"kind":"circle","radius":2}']])
})
