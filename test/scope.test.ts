import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import sse, { MemoryStore, type FastifySseOptions } from '../index'
import { openStream } from './helpers/client'
import type { TestServer } from './helpers/server'
import { within } from './helpers/wait'
import { injectSSE, type InjectedStream } from '../testing'

// What README says of the plugin's reach: channels belong to the registration that made them, and a route's
// response schema does not shape its events.

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** One app, the plugin registered in two encapsulated parts of it, /a and /b: each has a channel named news. */
async function twoRegistrations (t: Teardown, options: () => FastifySseOptions): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  for (const prefix of ['/a', '/b']) {
    await app.register(async function part (child) {
      await child.register(sse, options())
      child.get('/news', (request, reply) => reply.sse(child.sse.channel('news')))
      child.post('/news', async () => ({ id: await child.sse.channel('news').publish({ data: `from ${prefix}` }) }))
    }, { prefix })
  }
  return app
}

/** The data of the next event of a subscriber, within a bound. */
async function nextData (subscriber: InjectedStream): Promise<string | undefined> {
  return (await within(subscriber.next(), 'an event')).value?.data
}

test('channels belong to one registration of the plugin; two registrations share them only through a store', async (t) => {
  const apart = await twoRegistrations(t, () => ({}))
  const onA = await injectSSE(apart, { url: '/a/news' })
  const onB = await injectSSE(apart, { url: '/b/news' })
  await apart.inject({ method: 'POST', url: '/b/news' })
  await apart.inject({ method: 'POST', url: '/a/news' })
  t.equal(await nextData(onA), 'from /a', 'a channel of the same name in another registration is another channel')
  t.equal(await nextData(onB), 'from /b')

  const store = new MemoryStore()
  const shared = await twoRegistrations(t, () => ({ store }))
  const subscriber = await injectSSE(shared, { url: '/a/news' })
  await shared.inject({ method: 'POST', url: '/b/news' })
  t.equal(await nextData(subscriber), 'from /b', 'with one store, a publish reaches both')
  await Promise.all([onA, onB, subscriber].map(async (stream) => await stream.close()))
})

test('a route\'s JSON response schema does not shape its event stream: only an event schema does', async (t) => {
  const app = Fastify({ http2: true })
  t.teardown(() => app.close())
  await app.register(sse)
  app.get('/prices', {
    schema: { response: { 200: { type: 'object', properties: { price: { type: 'number' } }, additionalProperties: false } } }
  }, (request, reply) => reply.sse([{ data: { price: 1, extra: 'kept' } }, { data: { price: 'not a number' } }]))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const server = { app, protocol: 'h2c', origin: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` } as unknown as TestServer
  const client = await openStream(t, server, '/prices')
  await client.waitForEnd()
  t.equal(client.status, 200)
  t.same(client.events.map((event) => event.data), ['{"price":1,"extra":"kept"}', '{"price":"not a number"}'],
    'the events as the source gave them, through the plugin\'s serializer')
})
