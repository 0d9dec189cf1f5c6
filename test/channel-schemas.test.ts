import { test } from 'tap'
import Fastify from 'fastify'
import sse, { errors } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'

const Price = { type: 'object', properties: { symbol: { type: 'string' }, price: { type: 'number' } } } as const

test('a channel with a schema serializes what it publishes by it, for every subscriber and in the replay', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/prices', (request, reply) => reply.sse(app.sse.channel('prices', { schema: Price })))
  })
  const prices = server.app.sse.channel('prices', { schema: Price })
  t.equal(server.app.sse.channel('prices'), prices, 'the same channel, with or without its options')
  const live = await openStream(t, server, '/prices')
  const firstId = await prices.publish({ data: { symbol: 'A', price: 1, secret: 'the margin' } })
  await prices.publish({ data: { symbol: 'B', price: 2, internal: { note: 'x' } } })
  await live.waitForEvents(2)
  t.same(live.events.map((event) => event.data), ['{"symbol":"A","price":1}', '{"symbol":"B","price":2}'])
  const replayed = await openStream(t, server, '/prices', { headers: { 'last-event-id': firstId } })
  await replayed.waitForEvents(1)
  t.same(replayed.events.map((event) => event.data), ['{"symbol":"B","price":2}'], 'the replay holds the same bytes')
  t.notOk(live.text.includes('secret') || live.text.includes('internal'))
})

test('a channel schema is compiled once, with the app\'s serializer compiler', async (t) => {
  const compiled: unknown[] = []
  const app = Fastify()
  t.teardown(() => app.close())
  app.setSerializerCompiler(({ schema, httpStatus, contentType }) => {
    compiled.push({ schema, httpStatus, contentType })
    return (data) => `compiled:${JSON.stringify(data)}`
  })
  await app.register(sse)
  const channel = app.sse.channel('news', { schema: Price })
  app.sse.channel('news', { schema: Price })
  app.sse.channel('news')
  t.same(compiled, [{ schema: Price, httpStatus: '200', contentType: 'text/event-stream' }])
  const seen: string[] = []
  app.sse.store.listen('news', (event) => seen.push(event.frame))
  await channel.publish({ data: { n: 1 } })
  t.match(seen[0], /data: compiled:{"n":1}\n\n$/)
})

test('a channel event map serializes each type by its own data schema, and refuses an undeclared type', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse)
  app.addSchema({ $id: 'price', ...Price })
  const channel = app.sse.channel('market', {
    schema: { anyOf: [{ properties: { event: { const: 'price' }, data: { $ref: 'price#' } } }] }
  })
  const frames: string[] = []
  app.sse.store.listen('market', (event) => frames.push(event.frame))
  await channel.publish({ event: 'price', data: { symbol: 'A', price: 1, secret: 's' } })
  t.match(frames[0], /event: price\ndata: {"symbol":"A","price":1}\n\n$/)
  await t.rejects(channel.publish({ event: 'trade', data: {} }), errors.FST_SSE_UNDECLARED_EVENT)
  await t.rejects(channel.publish({ data: {} }), { code: 'FST_SSE_UNDECLARED_EVENT', message: /type 'message'/ })
})

test('channel options are checked: unknown names, a schema that is not an object, another schema for the same channel', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse)
  const channels = app.sse
  t.throws(() => channels.channel('a', { shema: Price } as never), {
    code: 'FST_SSE_INVALID_OPTION', message: /option shema must be a known option \(did you mean schema\?\)/
  })
  t.throws(() => channels.channel('a', { schema: 'price' } as never), { code: 'FST_SSE_INVALID_OPTION', message: /option schema must be a JSON Schema/ })
  t.throws(() => channels.channel('a', null as never), { code: 'FST_SSE_INVALID_OPTION', message: /option channel options must be an object/ })
  channels.channel('a', { schema: Price })
  t.throws(() => channels.channel('a', { schema: { ...Price } }), { code: 'FST_SSE_INVALID_OPTION', message: /the schema channel a was made with/ })
  channels.channel('plain')
  t.throws(() => channels.channel('plain', { schema: Price }), { code: 'FST_SSE_INVALID_OPTION' })
  t.doesNotThrow(() => channels.channel('plain', {}), 'no schema asked for: no conflict')
})

test('a route with an event schema refuses a channel without one, or with another: its events would not be shaped by the route\'s', async (t) => {
  const Wider = { ...Price, properties: { ...Price.properties, secret: { type: 'string' } } }
  const server = await startServer(t, 'h2c', (app) => {
    const schema = { response: { 200: { content: { 'text/event-stream': { schema: Price } } } } }
    app.get('/plain', { schema }, (request, reply) => reply.sse(app.sse.channel('plain')))
    app.get('/wider', { schema }, (request, reply) => reply.sse([app.sse.channel('wider', { schema: Wider })]))
    app.get('/typed', { schema }, (request, reply) => reply.sse(app.sse.channel('typed', { schema: Price })))
    app.get('/copy', { schema }, (request, reply) => reply.sse(app.sse.channel('copy', { schema: JSON.parse(JSON.stringify(Price)) })))
  })
  const refused = await openStream(t, server, '/plain')
  await refused.waitForEnd()
  t.equal(refused.status, 500)
  t.match(JSON.parse(refused.text), { code: 'FST_SSE_SCHEMA_MISMATCH', message: /channel plain has none/ })
  const wider = await openStream(t, server, '/wider')
  await wider.waitForEnd()
  t.equal(wider.status, 500)
  t.match(JSON.parse(wider.text), { code: 'FST_SSE_SCHEMA_MISMATCH', message: /channel wider has another one/ })
  const copy = await openStream(t, server, '/copy')
  t.equal(copy.status, 200, 'the same schema, another object: streamed')
  const typed = await openStream(t, server, '/typed')
  t.equal(typed.status, 200)
  await server.app.sse.channel('typed').publish({ data: { symbol: 'T', price: 1, secret: 's' } })
  await typed.waitForEvents(1)
  t.same(typed.events.map((event) => event.data), ['{"symbol":"T","price":1}'])
})

test('without a compiler of the app\'s, a channel schema is compiled as Fastify compiles responses', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse)
  t.equal(app.serializerCompiler, undefined, 'Fastify has not set its default one up yet')
  const first = app.sse.channel('one', { schema: Price })
  const second = app.sse.channel('two', { schema: { type: 'array', items: Price } })
  const frames: string[] = []
  app.sse.store.listen('one', (event) => frames.push(event.frame))
  app.sse.store.listen('two', (event) => frames.push(event.frame))
  await first.publish({ data: { symbol: 'A', price: 1, secret: 's' } })
  await second.publish({ data: [{ symbol: 'B', price: 2, secret: 's' }] })
  t.match(frames, [/data: {"symbol":"A","price":1}\n\n$/, /data: \[{"symbol":"B","price":2}\]\n\n$/])
})
