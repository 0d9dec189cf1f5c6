import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import type {
  ChannelEvent, ControlMember, SsePresence, SseSteerResult, SseStore, SseStoreControl, SseTagged, SseReplyOptions
} from 'fastify-sse-h2'

test('reply.sse() takes tags and expiresAt, for any source', () => {
  const app = Fastify({ http2: true })
  app.get('/push', (request, reply) => reply.sse(undefined, { tags: ['user:42', 'team:7'], expiresAt: new Date() }))
  app.get('/channel', (request, reply) => reply.sse(app.sse.channel('news'), { tags: ['user:42'], expiresAt: Date.now() + 60_000 }))
  app.get('/list', (request, reply) => reply.sse([app.sse.channel('a'), app.sse.channel('b')], { tags: ['user:42'] }))
  expect<SseReplyOptions>().type.toBeAssignableFrom({ tags: ['a'] as readonly string[], expiresAt: 1 })
  expect<SseReplyOptions>().type.not.toBeAssignableFrom({ tags: 'user:42' })
  expect<SseReplyOptions>().type.not.toBeAssignableFrom({ expiresAt: '2026-12-07' })
  expect<SseReplyOptions>().type.not.toBeAssignableFrom({ maxStreamAge: 1000 })
})

test('maxStreamAge is an option of the plugin and of a route', () => {
  const app = Fastify()
  app.get('/aged', { config: { sse: { maxStreamAge: 60_000 } } }, (request, reply) => reply.sse())
  expect(app.get).type.not.toBeCallableWith('/bad', { config: { sse: { maxStreamAge: '1h' } } }, () => {})
})

test('app.sse.tagged(tag): actions resolve to what they reached, count() to a number', async () => {
  const app = Fastify()
  const tagged = app.sse.tagged('user:42')
  expect(tagged).type.toBe<SseTagged>()
  expect(await tagged.close()).type.toBe<SseSteerResult>()
  expect(await tagged.subscribe(app.sse.channel('room:7'))).type.toBe<SseSteerResult>()
  const filter = app.sse.filter('messages', (event: ChannelEvent) => event.event === 'message')
  expect(filter).type.toBe<(event: ChannelEvent) => boolean>()
  expect(await tagged.subscribe(app.sse.channel('room:7'), { filter })).type.toBe<SseSteerResult>()
  expect(await tagged.unsubscribe(app.sse.channel('room:7'))).type.toBe<SseSteerResult>()
  expect(await tagged.count()).type.toBe<number>()
  expect<SseSteerResult>().type.toBe<{ streams: number, unanswered: string[] }>()
  expect(tagged.subscribe).type.not.toBeCallableWith('room:7')
  expect(app.sse.tagged).type.not.toBeCallableWith(['user:42'])
})

test('channel.presence() resolves to the subscribers of every instance', async () => {
  const app = Fastify()
  expect(await app.sse.channel('news').presence()).type.toBe<SsePresence>()
  expect<SsePresence>().type.toBe<{ subscribers: number }>()
})

test('a store may have a control, which a store of your own can give', () => {
  expect<SseStore['control']>().type.toBe<SseStoreControl | undefined>()
  expect<ReturnType<SseStoreControl['join']>>().type.toBe<Promise<ControlMember>>()
  expect<ReturnType<SseStoreControl['sum']>>().type.toBe<Promise<number>>()
  expect<SseStoreControl>().type.not.toBeAssignableFrom({ leaseMs: 0, join: async () => undefined })
})
