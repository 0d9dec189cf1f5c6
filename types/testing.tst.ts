import Fastify from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { expect, test } from 'tstyche'
import { injectSSE, InjectedStream, type InjectedEvent, type InjectSSEOptions } from 'fastify-sse-h2/testing'

test('injectSSE() takes the request and gives an async iterator of events', async () => {
  const app = Fastify({ http2: true })
  const events = await injectSSE(app, { url: '/ticks' })
  expect(events).type.toBe<InjectedStream>()
  expect(events.status).type.toBe<number>()
  expect(events.headers).type.toBe<IncomingHttpHeaders>()
  expect(events.body).type.toBe<string | undefined>()
  expect(events.retry).type.toBe<number | undefined>()
  expect(events.close()).type.toBe<Promise<void>>()
  for await (const event of events) {
    expect(event).type.toBe<InjectedEvent>()
    expect(event.data).type.toBe<string>()
    expect(event.id).type.toBe<string | undefined>()
    expect(event.event).type.toBe<string | undefined>()
  }
  expect(injectSSE(app, { url: '/search', method: 'POST', payload: { q: 1 }, headers: { 'x-tenant': 'a' }, lastEventId: '7' }))
    .type.toBe<Promise<InjectedStream>>()
  expect(injectSSE).type.not.toBeCallableWith(app, {})
  expect(injectSSE).type.not.toBeCallableWith(app, { url: '/', method: 42 })
  expect(injectSSE).type.not.toBeCallableWith(app, { url: '/', lastEventId: 7 })
  expect<InjectSSEOptions>().type.toHaveProperty('url')
})
